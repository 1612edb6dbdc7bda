//! Bad input (docs/wire-format.md#session-bad-input): every malformed, short, wrongly encrypted or foreign datagram is counted and
//! dropped, and the sessions keep working.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rkcp_session::{CipherKind, KcpListener, KcpStream, PacketCrypt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_listener_counts_and_drops_garbage() {
    let crypt = PacketCrypt::from_passphrase(CipherKind::Aes, "right key");
    let cfg = fast().with_crypt(crypt.clone()).with_fec(10, 3);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let csum_before = rkcp_session::global_snmp().in_csum_errors;

    // 10 short datagrams (< 20-byte crypt header).
    for len in 0..10 {
        attacker.send_to(&vec![0xAB; len], addr).await.unwrap();
    }
    // 20 random datagrams: CRC fails.
    for i in 0..20 {
        attacker
            .send_to(&pattern(i, 100 + i as usize), addr)
            .await
            .unwrap();
    }
    // 5 well-formed packets under the wrong key: CRC fails too.
    let wrong = PacketCrypt::from_passphrase(CipherKind::Aes, "wrong key");
    for _ in 0..5 {
        let mut p = vec![0u8; 20 + 8 + 24];
        p[20 + 4] = 0xF1;
        p[20 + 8 + 4] = 81;
        wrong.seal(&mut p);
        attacker.send_to(&p, addr).await.unwrap();
    }
    // 3 valid FEC parity packets from an unknown peer: cannot start a session.
    for _ in 0..3 {
        let mut p = vec![0u8; 20 + 6 + 40];
        p[20 + 4] = 0xF2;
        crypt.seal(&mut p);
        attacker.send_to(&p, addr).await.unwrap();
    }
    // 4 datagrams decrypting to fewer than 24 bytes.
    for _ in 0..4 {
        let mut p = vec![0u8; 20 + 10];
        crypt.seal(&mut p);
        attacker.send_to(&p, addr).await.unwrap();
    }
    let st = wait_for(&listener, |s| {
        s.short == 14 && s.checksum == 25 && s.unknown_peer == 3
    })
    .await;
    assert_eq!(st.short, 14, "{st:?}");
    assert_eq!(st.checksum, 25, "{st:?}");
    assert_eq!(st.unknown_peer, 3, "{st:?}");
    assert_eq!(st.created, 0);
    assert!(rkcp_session::global_snmp().in_csum_errors >= csum_before + 25);

    // The listener still serves a real client.
    let _srv = spawn_echo(listener);
    let c = KcpStream::connect(addr, cfg).await.unwrap();
    let data = pattern(1, 50_000);
    assert_eq!(echo_roundtrip(c, data.clone()).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_conv_and_bad_segments_are_counted() {
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, fast()).await.unwrap();
    c.write_all(b"hi").await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).await.unwrap();

    // A stranger's datagrams that cannot start a session create nothing and are counted: a bad command
    // (kcp-go would create a session whose engine rejects it), and a segment whose sender already had data
    // from us (`una != 0`).
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seg = vec![0u8; 24];
    seg[0..4].copy_from_slice(&c.conv().wrapping_add(1).to_le_bytes());
    seg[4] = 81;
    seg[12] = 5;
    let mut bad = seg.clone();
    bad[4] = 99;
    attacker.send_to(&bad, addr).await.unwrap();
    let mut late = seg.clone();
    late[16] = 3;
    attacker.send_to(&late, addr).await.unwrap();
    let st = wait_for(&listener, |s| s.not_a_start == 2).await;
    assert_eq!((st.not_a_start, st.created), (2, 1));
    // The live session's conversation from another address, showing nothing new (not a session start:
    // `sn` 1): stale, nothing moves.
    let mut replay = seg.clone();
    replay[0..4].copy_from_slice(&c.conv().to_le_bytes());
    replay[12] = 1;
    replay[8] = 0; // ts 0: older than anything the session saw
    attacker.send_to(&replay, addr).await.unwrap();
    let st = wait_for(&listener, |s| s.stale == 1).await;
    assert_eq!((st.stale, st.roamed, st.created), (1, 0, 1));
    s.write_all(b"ok").await.unwrap();
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ok");

    // Datagrams to the client from a stranger: InErrs on the client.
    let client_port = c.local_addr().unwrap().port();
    for _ in 0..7 {
        attacker
            .send_to(&seg, ("127.0.0.1", client_port))
            .await
            .unwrap();
    }
    let start = Instant::now();
    while c.snmp().in_errs < 7 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(c.snmp().in_errs, 7);

    // Everything still works.
    c.write_all(b"ok").await.unwrap();
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_and_session_cap_drop_new_peers() {
    let mut cfg = fast();
    cfg.listener.accept_backlog = 2;
    cfg.listener.max_sessions = 3;
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = KcpStream::connect(addr, cfg.clone()).await.unwrap();
        c.write_all(b"x").await.unwrap();
        clients.push(c);
    }
    // Backlog 2: the 3rd and 4th peers are dropped while nobody accepts.
    let st = wait_for(&listener, |s| s.created == 2 && s.backlog_full >= 2).await;
    assert_eq!(st.created, 2);
    assert!(st.backlog_full >= 2);
    let _a = listener.accept().await.unwrap();
    let _b = listener.accept().await.unwrap();
    // Their retransmissions now get in, up to the cap of 3 live sessions.
    let st = wait_for(&listener, |s| s.created == 3 && s.session_cap >= 1).await;
    assert_eq!(st.created, 3, "{st:?}");
    assert!(st.session_cap >= 1, "{st:?}");
}
