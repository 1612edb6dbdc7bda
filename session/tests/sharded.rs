//! A listener sharded over `SO_REUSEPORT` sockets (`KcpListener::bind_sharded`), over 127.0.0.1: many clients
//! spread over the shards and all served; a session whose peer moves to an address the kernel hashes to
//! another shard stays one session (our client moving its socket, a NAT rebinding its port); a replay from
//! new ports, wherever the kernel sends it, neither creates nor moves a session.
#![cfg(unix)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::nat::Nat;
use common::*;
use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

fn aes() -> PacketCrypt {
    PacketCrypt::from_passphrase(CipherKind::Aes, "sharded")
}

async fn sharded(cfg: KcpConfig, n: usize) -> Arc<KcpListener> {
    let l = KcpListener::bind_sharded("127.0.0.1:0", cfg, n)
        .await
        .unwrap();
    assert_eq!(l.shards(), n);
    Arc::new(l)
}

/// 64 clients on 2 and on 4 shards (plain, and aes + FEC 10/3): every one served, every byte once and in
/// order; the sessions are spread over every shard, and none was forwarded (no peer moved).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_clients_are_spread_over_the_shards_and_all_served() {
    for (n, cfg) in [(2, fast()), (4, fast().with_crypt(aes()).with_fec(10, 3))] {
        let listener = sharded(cfg.clone(), n).await;
        let _srv = spawn_echo_shared(Arc::clone(&listener));
        let addr = listener.local_addr().unwrap();
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let cfg = cfg.clone();
            tasks.push(tokio::spawn(async move {
                let c = KcpStream::connect(addr, cfg).await.unwrap();
                let data = pattern(i + 1, 30_000 + i as usize * 500);
                let got = echo_roundtrip(c, data.clone()).await;
                assert!(got == data, "client {i}: bytes differ");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let st = listener.stats();
        assert_eq!(st.created, 64, "{n} shards: {st:?}");
        assert_eq!((st.forwarded, st.roamed, st.stale), (0, 0, 0), "{st:?}");
        let per = listener.shard_stats();
        assert_eq!(per.len(), n);
        assert!(
            per.iter().all(|s| s.created > 0),
            "{n} shards: sessions per shard {:?}",
            per.iter().map(|s| s.created).collect::<Vec<_>>()
        );
        assert_eq!(per.iter().map(|s| s.created).sum::<u64>(), 64);
    }
}

/// Our client moves its session to new sockets until its datagrams have reached another shard at least
/// twice (`KcpStream::move_to_socket`): one session, every byte back once and in order, and the datagrams
/// that reached the other shard were handed to the owner. With a kcp-go cipher and with an AEAD kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_its_socket_keeps_its_session_across_shards() {
    for crypt in [
        aes(),
        PacketCrypt::from_passphrase(CipherKind::Aes256Gcm, "move"),
    ] {
        let kind = crypt.kind();
        let cfg = fast().with_crypt(crypt);
        let listener = sharded(cfg.clone(), 2).await;
        let _srv = spawn_echo_shared(Arc::clone(&listener));
        let mut c = KcpStream::connect(listener.local_addr().unwrap(), cfg)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let (mut moves, mut crossings, mut last_forwarded) = (0u32, 0u32, 0u64);
        let mut seed = 100;
        while crossings < 2 {
            assert!(moves < 40, "{kind}: never reached the other shard");
            let data = pattern(seed, 100_000);
            seed += 1;
            let local = c.local_addr();
            let (mut r, mut w) = c.into_split();
            let mut got = Vec::with_capacity(data.len());
            let write = async { w.write_all(&data).await.unwrap() };
            let read = async {
                while got.len() < data.len() {
                    let n = r.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
            };
            tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(write, read) })
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{kind}: the echo stalled after {moves} moves; shards: {:?}; client at {:?}",
                        listener.shard_stats(),
                        local
                    )
                });
            assert!(got == data, "{kind}: bytes differ after {moves} moves");
            c = r.reunite(w).unwrap();
            let f = listener.stats().forwarded;
            if f > last_forwarded {
                crossings += 1;
            }
            last_forwarded = f;
            c.move_to_socket(UdpSocket::bind("127.0.0.1:0").await.unwrap())
                .unwrap();
            moves += 1;
        }
        let st = listener.stats();
        assert_eq!(st.created, 1, "{kind}: {st:?}");
        assert!(st.roamed >= 2, "{kind}: {st:?}");
        assert!(st.forwarded > 0, "{kind}: {st:?}");
        assert_eq!(st.forward_full, 0, "{kind}: {st:?}");
    }
}

/// An unmodified-client situation: the NAT in front of our client gives it a new outside port every 150 ms
/// (server-side roaming only) while a paced 2 MB echo runs, on 4 shards, until the session has been
/// forwarded across shards and rebound at least 6 times: one session, every byte once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_nat_keeps_one_session_across_shards() {
    let cfg = fast().with_crypt(aes()).with_fec(10, 3);
    let listener = sharded(cfg.clone(), 4).await;
    let _srv = spawn_echo_shared(Arc::clone(&listener));
    let nat = Nat::start(
        listener.local_addr().unwrap(),
        Some(Duration::from_millis(150)),
    )
    .await;
    let c = KcpStream::connect(nat.inside, cfg).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let start = Instant::now();
    let mut seed = 1;
    loop {
        let data = pattern(seed, 1_000_000);
        seed += 1;
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(20_000) {
                w.write_all(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            w
        });
        let mut got = vec![0u8; data.len()];
        tokio::time::timeout(Duration::from_secs(60), r.read_exact(&mut got))
            .await
            .expect("the transfer stalled")
            .unwrap();
        w = writer.await.unwrap();
        assert!(got == data, "bytes differ");
        let st = listener.stats();
        if (st.forwarded > 0 && nat.rebinds.load(Ordering::Relaxed) >= 6)
            || start.elapsed() > Duration::from_secs(40)
        {
            break;
        }
    }
    let rebinds = nat.rebinds.load(Ordering::Relaxed);
    let st = listener.stats();
    eprintln!("{rebinds} rebinds: {st:?}");
    assert!(rebinds >= 6, "only {rebinds} rebinds");
    assert_eq!(st.created, 1, "{st:?}");
    assert!(st.forwarded > 0, "{st:?}");
    // Every rebind moves the session (through the owner shard when the kernel picks another one); without
    // the hand-over only the rebinds that happen to hash to the owner would.
    assert!(
        st.roamed * 10 >= rebinds * 8,
        "{st:?} after {rebinds} rebinds"
    );
    assert_eq!(st.forward_full, 0, "{st:?}");
    // FEC parity (no conversation id) from a moved peer is handed over by address: only the few that race
    // ahead of the datagram that moves the session are dropped (about a third were, before).
    assert!(st.unknown_peer * 10 <= st.forwarded + 100, "{st:?}");
}

/// A request captured on the wire and replayed from 64 new ports (which the kernel spreads over both shards),
/// while the session lives and after it closed: never delivered again, no session created or moved. With a
/// kcp-go cipher and with the AEAD kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_reaching_another_shard_neither_create_nor_move_a_session() {
    for crypt in [
        aes(),
        PacketCrypt::from_passphrase(CipherKind::Aes256Gcm, "replay"),
    ] {
        let kind = crypt.kind();
        let cfg = fast().with_crypt(crypt).with_fec(10, 3);
        let listener = sharded(cfg.clone(), 2).await;
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

        replay(&captured, server, 64).await;
        let st = wait_for(&listener, |s| s.forwarded > 0 && s.stale + s.replayed >= 64).await;
        assert!(
            st.forwarded > 0,
            "{kind}: no replay reached the other shard: {st:?}"
        );
        assert!(st.stale + st.replayed >= 64, "{kind}: {st:?}");
        assert_eq!((st.created, st.roamed), (1, 0), "{kind}: {st:?}");
        let mut more = [0u8; 1];
        let again = tokio::time::timeout(Duration::from_millis(300), s.read(&mut more)).await;
        assert!(again.is_err(), "{kind}: the request was delivered again");
        // The session still works from its own address.
        c.write_all(b"GET").await.unwrap();
        let mut get = [0u8; 3];
        s.read_exact(&mut get).await.unwrap();
        assert_eq!(&get, b"GET");

        // After it closed, from new ports: the owner shard still remembers the conversation.
        drop(s);
        drop(c);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = listener.stats().forwarded;
        replay(&captured, server, 32).await;
        let r = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
        assert!(r.is_err(), "{kind}: a replay created a session");
        let st = listener.stats();
        assert_eq!(st.created, 1, "{kind}: {st:?}");
        assert!(st.forwarded > before, "{kind}: {st:?}");
    }
}

/// Sends every captured datagram from `ports` fresh sockets.
async fn replay(captured: &[Vec<u8>], to: SocketAddr, ports: usize) {
    for _ in 0..ports {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for d in captured {
            s.send_to(d, to).await.unwrap();
        }
    }
}

/// One shard is `bind` exactly; zero shards is refused; closing a sharded listener ends accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_counts_and_close() {
    let one = KcpListener::bind_sharded("127.0.0.1:0", fast(), 1)
        .await
        .unwrap();
    assert_eq!(one.shards(), 1);
    let zero = KcpListener::bind_sharded("127.0.0.1:0", fast(), 0).await;
    assert!(matches!(
        zero,
        Err(rkcp_session::SessionError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidInput
    ));
    let l = sharded(fast(), 3).await;
    let l2 = Arc::clone(&l);
    let pending = tokio::spawn(async move { l2.accept().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    l.close();
    let r = tokio::time::timeout(Duration::from_secs(2), pending).await;
    assert!(matches!(
        r,
        Ok(Ok(Err(rkcp_session::SessionError::ListenerClosed)))
    ));
}
