//! Owned halves: reunite, message mode on the halves, the poll forms and the next message's size.

mod common;

use std::future::poll_fn;
use std::time::Duration;

use common::*;
use rkcp_session::{KcpConfig, KcpListener, KcpStream, SessionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn msg_mode() -> KcpConfig {
    fast().with_stream(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halves_reunite_into_a_working_stream_and_strangers_do_not() {
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _srv = spawn_echo(listener);
    let a = KcpStream::connect(addr, fast()).await.unwrap();
    let b = KcpStream::connect(addr, fast()).await.unwrap();
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    // Mismatched halves come back intact.
    let e = ar.reunite(bw).unwrap_err();
    assert_eq!(
        e.to_string(),
        "tried to reunite halves of different KCP streams"
    );
    let (ar, bw) = (e.0, e.1);
    let mut b = bw.reunite(br).unwrap();
    let mut a = ar.reunite(aw).unwrap();
    // Reuniting closed nothing: both still echo.
    for s in [&mut a, &mut b] {
        s.write_all(b"again").await.unwrap();
        let mut got = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"again");
    }
    // The reunited stream holds the session alone: splitting and dropping one half keeps it open.
    let (r, w) = a.into_split();
    drop(w);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let watch = tokio::time::timeout(Duration::from_millis(50), r.closed()).await;
    assert!(watch.is_err(), "one half still holds the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_through_the_halves_with_their_size_known_first() {
    let listener = KcpListener::bind("127.0.0.1:0", msg_mode()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = KcpStream::connect(addr, msg_mode()).await.unwrap();
    let (cr, cw) = c.into_split();
    cw.send_msg(b"first").await.unwrap();
    poll_fn(|cx| cw.poll_send_msg(cx, &[7u8; 3000]))
        .await
        .unwrap();
    let (s, _) = listener.accept().await.unwrap();
    let (sr, sw) = s.into_split();
    // The size is known before reading; nothing is consumed by peeking.
    let size = loop {
        if let Some(n) = sr.peek_msg_size().unwrap() {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!(size, 5);
    assert_eq!(sr.peek_msg_size().unwrap(), Some(5));
    let mut buf = vec![0u8; size];
    assert_eq!(sr.recv_msg(&mut buf).await.unwrap(), 5);
    assert_eq!(&buf, b"first");
    let mut big = vec![0u8; 4096];
    let n = poll_fn(|cx| sr.poll_recv_msg(cx, &mut big)).await.unwrap();
    assert_eq!(&big[..n], &[7u8; 3000][..]);
    assert_eq!(sr.peek_msg_size().unwrap(), None);
    // And back, through the other halves.
    sw.send_msg(b"reply").await.unwrap();
    let mut b = [0u8; 16];
    let n = cr.recv_msg(&mut b).await.unwrap();
    assert_eq!(&b[..n], b"reply");

    // Stream mode has no message sizes; a closed session reports why.
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let s = KcpStream::connect(listener.local_addr().unwrap(), fast())
        .await
        .unwrap();
    assert!(matches!(
        s.peek_msg_size(),
        Err(SessionError::NotMessageMode)
    ));
    let m = KcpStream::connect(listener.local_addr().unwrap(), msg_mode())
        .await
        .unwrap();
    m.close();
    assert!(matches!(m.peek_msg_size(), Err(SessionError::Closed)));
}

/// One address convention: `local_addr()`/`peer_addr()` return `io::Result<SocketAddr>` on the stream, both
/// halves and (`local_addr`) the listener, and the two ends agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_agree_across_stream_halves_and_listener() {
    use std::net::SocketAddr;
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let server: SocketAddr = listener.local_addr().unwrap();
    assert_ne!(server.port(), 0);
    let mut c = KcpStream::connect(server, fast()).await.unwrap();
    c.write_all(b"hi").await.unwrap();
    let (s, from) = listener.accept().await.unwrap();
    let client_local = SocketAddr::new(server.ip(), c.local_addr().unwrap().port());
    assert_eq!(c.peer_addr().unwrap(), server);
    assert_eq!(s.peer_addr().unwrap(), from);
    assert_eq!(s.peer_addr().unwrap(), client_local);
    assert_eq!(s.local_addr().unwrap(), server);
    let (r, w) = c.into_split();
    for (local, peer) in [
        (r.local_addr().unwrap(), r.peer_addr().unwrap()),
        (w.local_addr().unwrap(), w.peer_addr().unwrap()),
    ] {
        assert_eq!(local.port(), client_local.port());
        assert_eq!(peer, server);
    }
    assert_eq!(r.control().conv(), s.conv());
    assert_eq!(w.control().conv(), s.conv());
}
