//! Close paths: local close, graceful shutdown, dead link, listener close, session replacement.

mod common;

use std::io;
use std::time::Duration;

use common::*;
use rkcp_session::{KcpConfig, KcpListener, KcpStream, SessionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

fn session_error(e: &io::Error) -> &SessionError {
    e.get_ref()
        .and_then(|e| e.downcast_ref::<SessionError>())
        .expect("a SessionError inside")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_after_close_fail_clearly() {
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _srv = spawn_echo(listener);
    let mut c = KcpStream::connect(addr, fast()).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    let mut b = [0u8; 5];
    c.read_exact(&mut b).await.unwrap();
    c.close();
    let e = c.read(&mut b).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    assert!(matches!(session_error(&e), SessionError::Closed));
    let e = c.write(b"x").await.unwrap_err();
    assert!(matches!(session_error(&e), SessionError::Closed));
    // A second close is harmless, shutdown after close is Ok.
    c.close();
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_until_everything_is_acknowledged() {
    const LEN: usize = 600_000;
    let listener = KcpListener::bind("127.0.0.1:0", KcpConfig::fast3())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = vec![0u8; LEN];
        s.read_exact(&mut got).await.unwrap();
        fnv(&got)
    });
    let mut c = KcpStream::connect(addr, KcpConfig::fast3()).await.unwrap();
    let data = pattern(3, LEN);
    c.write_all(&data).await.unwrap();
    c.shutdown().await.unwrap();
    assert_eq!(c.wait_snd(), 0);
    assert_eq!(srv.await.unwrap(), fnv(&data));
    let e = c.read(&mut [0u8; 4]).await.unwrap_err();
    assert!(matches!(session_error(&e), SessionError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_link_ends_the_stream_with_an_error() {
    // A peer that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = KcpConfig::fast3();
    cfg.kcp.dead_link = 3;
    let mut c = KcpStream::connect(silent.local_addr().unwrap(), cfg)
        .await
        .unwrap();
    c.write_all(b"anyone there?").await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(30), c.read(&mut [0u8; 16]))
        .await
        .expect("no hang")
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(matches!(session_error(&e), SessionError::DeadLink(3)));
    let e = c.write(b"x").await.unwrap_err();
    assert!(matches!(session_error(&e), SessionError::DeadLink(3)));
    assert!(c.snmp().retrans_segs >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_close_is_clean_and_keeps_accepted_sessions() {
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, fast()).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let (mut s, peer) = listener.accept().await.unwrap();
    assert_eq!(peer.port(), c.local_addr().unwrap().port());
    assert_eq!(s.conv(), c.conv());
    assert_eq!(s.peer_addr().unwrap(), peer);
    assert!(matches!(
        s.set_dscp(10),
        Err(SessionError::InvalidOperation)
    ));
    c.set_dscp(46).unwrap();
    listener.set_dscp(46).unwrap();

    // A pending accept is released by close.
    let l = std::sync::Arc::new(listener);
    let l2 = std::sync::Arc::clone(&l);
    let pending = tokio::spawn(async move { l2.accept().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    l.close();
    assert!(matches!(
        pending.await.unwrap(),
        Err(SessionError::ListenerClosed)
    ));
    assert!(matches!(
        l.accept().await,
        Err(SessionError::ListenerClosed)
    ));

    // The accepted session still works.
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await.unwrap();
    s.write_all(b"pong").await.unwrap();
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"pong");
    // New peers are ignored after close.
    let c2 = KcpStream::connect(addr, fast()).await.unwrap();
    c2.send_msg(b"x").await.unwrap_err(); // stream mode: message ops refused
    let mut c2 = c2;
    c2.write_all(b"late").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(l.stats().created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_conversation_from_the_same_address_does_not_kill_the_old_one() {
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    std_sock.set_nonblocking(true).unwrap();
    let clone = std_sock.try_clone().unwrap();

    let mut c1 =
        KcpStream::connect_with_conv(UdpSocket::from_std(std_sock).unwrap(), addr, 1111, fast())
            .unwrap();
    c1.write_all(b"one").await.unwrap();
    let (mut s1, _) = listener.accept().await.unwrap();
    let mut b = [0u8; 3];
    s1.read_exact(&mut b).await.unwrap();
    assert_eq!(s1.conv(), 1111);

    // kcp-go replaced the session here (sn 0 of a new conv from the same address), so one forged or
    // replayed datagram could kill a live session. Both live on; the old one ends by its own timeouts.
    let mut c2 =
        KcpStream::connect_with_conv(UdpSocket::from_std(clone).unwrap(), addr, 2222, fast())
            .unwrap();
    c2.write_all(b"two").await.unwrap();
    let (mut s2, _) = listener.accept().await.unwrap();
    assert_eq!(s2.conv(), 2222);
    s2.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"two");
    // The old session still takes its peer's data. (Checked on the server's side: the two clients share one
    // UDP socket, so which of their read loops gets a datagram the server sends them is a race between the
    // loops, which can starve one of them; the server routes by conversation.)
    c1.write_all(b"uno").await.unwrap();
    s1.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"uno");
    assert_eq!(listener.stats().created, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_sessions_conversation_is_not_revived_by_its_old_peer() {
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, fast()).await.unwrap();
    c.write_all(b"a").await.unwrap();
    let (s, _) = listener.accept().await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(30)).await;
    // kcp-go created a new session for the same conv here (a zombie that can never deliver in order);
    // replays of a closed session must not revive it either. The conv is remembered.
    c.write_all(b"b").await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
    assert!(r.is_err(), "no session may be created");
    let st = listener.stats();
    assert_eq!(st.created, 1);
    assert!(st.stale >= 1);
}
