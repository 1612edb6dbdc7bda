//! The listener on a hostile network, over 127.0.0.1 (threat model: the crate docs): replays from new ports and
//! from the live address, floods of plausible session starts from a thousand ports during a live session, and a
//! client behind a NAT that keeps rebinding its port.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::nat::Nat;
use common::*;
use rkcp_session::{CipherKind, KcpListener, KcpStream, PacketCrypt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

fn aes() -> PacketCrypt {
    PacketCrypt::from_passphrase(CipherKind::Aes, "hostile")
}

/// Sends every captured datagram from `ports` fresh sockets, and from `also` if given.
async fn replay(captured: &[Vec<u8>], to: SocketAddr, ports: usize, also: Option<&UdpSocket>) {
    for _ in 0..ports {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for d in captured {
            s.send_to(d, to).await.unwrap();
        }
    }
    if let Some(s) = also {
        for d in captured {
            s.send_to(d, to).await.unwrap();
        }
    }
}

/// A request captured on the wire and replayed from 50 new ports, and again after the session closed, is
/// never delivered a second time: no session is created, none is moved. With a kcp-go cipher and with the
/// Rust-only AEAD kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_from_new_ports_never_rerun_a_request() {
    for crypt in [
        aes(),
        PacketCrypt::from_passphrase(CipherKind::Aes256Gcm, "hostile"),
    ] {
        let kind = crypt.kind();
        let cfg = fast().with_crypt(crypt).with_fec(10, 3);
        let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
        let server = listener.local_addr().unwrap();
        let nat = Nat::start(server, None).await;
        let mut c = KcpStream::connect(nat.inside, cfg).await.unwrap();
        c.write_all(b"POST /pay 100").await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = [0u8; 13];
        s.read_exact(&mut req).await.unwrap();
        s.write_all(b"paid").await.unwrap();
        let mut ok = [0u8; 4];
        c.read_exact(&mut ok).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let captured = nat.captured.lock().clone();
        assert!(!captured.is_empty());

        // While the session lives.
        replay(&captured, server, 50, None).await;
        let st = wait_for(&listener, |s| s.stale + s.replayed >= 50).await;
        assert!(st.stale + st.replayed >= 50, "{kind}: {st:?}");
        assert_eq!((st.created, st.roamed), (1, 0), "{kind}: {st:?}");
        let mut more = [0u8; 1];
        let again = tokio::time::timeout(Duration::from_millis(300), s.read(&mut more)).await;
        assert!(again.is_err(), "{kind}: the request was delivered again");

        // After it closed, from new ports.
        drop(s);
        drop(c);
        tokio::time::sleep(Duration::from_millis(100)).await;
        replay(&captured, server, 20, None).await;
        let r = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
        assert!(r.is_err(), "{kind}: a replay created a session");
        let st = listener.stats();
        assert_eq!(st.created, 1, "{kind}: {st:?}");
    }
}

/// A thousand ports sending plausible session starts (no cipher, so anyone can forge them) while a session is
/// live: the flood gets no more than the unverified budget, the live session keeps working, and a new real
/// client is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_session_starts_locks_nobody_out() {
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let server = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    let accept_loop = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
        listener
    });
    let live = KcpStream::connect(server, fast()).await.unwrap();
    let data = pattern(1, 100_000);
    assert_eq!(echo_roundtrip(live, data.clone()).await, data);

    // The flood: a thousand ports, each a forged session start (random conv, una 0, some data).
    let flood = tokio::spawn(async move {
        let mut socks = Vec::new();
        for _ in 0..1000 {
            socks.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        for round in 0..3u32 {
            for (i, s) in socks.iter().enumerate() {
                let mut seg = vec![0u8; 24 + 100];
                let conv = (i as u32).wrapping_mul(2_654_435_761) ^ round;
                seg[0..4].copy_from_slice(&conv.to_le_bytes());
                seg[4] = 81;
                seg[6] = 128;
                seg[20] = 100;
                let _ = s.send_to(&seg, server).await;
            }
        }
        socks
    });
    // A real client during the flood is served within a few seconds.
    let started = Instant::now();
    let c = KcpStream::connect(server, fast()).await.unwrap();
    let data = pattern(2, 50_000);
    assert_eq!(echo_roundtrip(c, data.clone()).await, data);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let socks = flood.await.unwrap();
    let c = KcpStream::connect(server, fast()).await.unwrap();
    assert_eq!(echo_roundtrip(c, data.clone()).await, data);
    drop(socks);
    accept_loop.abort();
    let n = accepted.load(Ordering::Relaxed);
    // At most the per-IP cap of forged sessions got state (plus the three real ones).
    assert!(n <= 64 + 3, "{n} sessions accepted");
}

/// Our client behind a NAT that gives it a new outside port every 200 ms: one session, every byte once and in
/// order, and the session followed each move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_follows_its_client_through_a_rebinding_nat() {
    for crypt in [
        aes(),
        PacketCrypt::from_passphrase(CipherKind::ChaCha20Poly1305, "nat"),
    ] {
        follow_through_nat(crypt).await;
    }
}

async fn follow_through_nat(crypt: PacketCrypt) {
    let cfg = fast().with_crypt(crypt);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let server = listener.local_addr().unwrap();
    let stats_of = Arc::new(listener);
    let _srv = spawn_echo_shared(Arc::clone(&stats_of));
    let nat = Nat::start(server, Some(Duration::from_millis(200))).await;
    let c = KcpStream::connect(nat.inside, cfg).await.unwrap();
    let (mut r, mut w) = c.into_split();
    // Paced, so the transfer spans many rebinds.
    let data = pattern(3, 2_000_000);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(20_000) {
            w.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        w
    });
    let mut got = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(60), r.read_exact(&mut got))
        .await
        .expect("the transfer stalled")
        .unwrap();
    let _w = writer.await.unwrap();
    assert!(got == data, "bytes differ");
    let rebinds = nat.rebinds.load(Ordering::Relaxed);
    let st = stats_of.stats();
    assert!(rebinds >= 5, "only {rebinds} rebinds");
    assert_eq!(st.created, 1, "{st:?}");
    assert!(
        st.roamed >= rebinds.min(5),
        "{st:?} after {rebinds} rebinds"
    );
}

/// Our client moves its session to new local sockets three times in the middle of an echo transfer (a network
/// change, `KcpStream::move_to_socket`): one session, every byte back intact, the listener followed each move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_moves_to_new_sockets_mid_transfer() {
    for crypt in [
        aes(),
        PacketCrypt::from_passphrase(CipherKind::Aes256Gcm, "move"),
    ] {
        let cfg = fast().with_crypt(crypt);
        let listener = Arc::new(KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap());
        let _srv = spawn_echo_shared(Arc::clone(&listener));
        let mut c = KcpStream::connect(listener.local_addr().unwrap(), cfg)
            .await
            .unwrap();
        let first = c.local_addr().unwrap();
        let data = pattern(9, 600_000);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        for (i, chunk) in data.chunks(200_000).enumerate() {
            if i > 0 {
                let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                c.move_to_socket(sock).unwrap();
            }
            let (mut r, mut w) = c.into_split();
            let write = async {
                w.write_all(chunk).await.unwrap();
            };
            let read = async {
                let want = got.len() + chunk.len();
                while got.len() < want {
                    let n = r.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
            };
            tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(write, read) })
                .await
                .expect("the echo finishes after the move");
            c = r.reunite(w).unwrap();
        }
        assert!(got == data, "bytes differ");
        assert_ne!(c.local_addr().unwrap(), first);
        let st = listener.stats();
        assert_eq!(st.created, 1, "{st:?}");
        assert!(st.roamed >= 2, "{st:?}");
    }
}

/// Two clients that picked the same random conversation id, starting at once (kcp-go clients pick theirs at
/// random too: among 10,000 that happens about once in a hundred), with the same first message: each gets a
/// session of its own, neither is taken for the other one moving, and every byte goes back to its sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_picked_the_same_conversation_id_are_served_apart() {
    let listener = Arc::new(KcpListener::bind("127.0.0.1:0", fast()).await.unwrap());
    let server = listener.local_addr().unwrap();
    let _srv = spawn_echo_shared(Arc::clone(&listener));
    let conv = 0x5eed_c0de;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut c = KcpStream::connect_with_conv(sock, server, conv, fast()).unwrap();
        c.write_all(b"hello").await.unwrap();
        clients.push(c);
    }
    let mut done = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        done.push(tokio::spawn(async move {
            let mut c = c;
            let mut b = [0u8; 5];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"hello");
            let data = pattern(10 + i as u64, 200_000);
            echo_roundtrip(c, data.clone()).await == data
        }));
    }
    for d in done {
        assert!(
            tokio::time::timeout(Duration::from_secs(20), d)
                .await
                .expect("each client is served")
                .unwrap()
        );
    }
    let st = listener.stats();
    assert_eq!((st.created, st.roamed), (2, 0), "{st:?}");
}
