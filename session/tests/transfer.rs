//! End-to-end transfers over real UDP on 127.0.0.1: stream and message mode, every cipher, FEC on and off,
//! many sessions, runtime re-tuning.

mod common;

use common::*;
use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_mode_echo_plain() {
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _srv = spawn_echo(listener);
    let stream = KcpStream::connect(addr, fast()).await.unwrap();
    let data = pattern(1, 2 << 20);
    let got = echo_roundtrip(stream, data.clone()).await;
    assert_eq!(fnv(&got), fnv(&data));
}

#[tokio::test]
async fn default_config_small_echo() {
    let listener = KcpListener::bind("127.0.0.1:0", KcpConfig::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let _srv = spawn_echo(listener);
    let stream = KcpStream::connect(addr, KcpConfig::default())
        .await
        .unwrap();
    let data = pattern(2, 100_000);
    let got = echo_roundtrip(stream, data.clone()).await;
    assert_eq!(got, data);
}

/// The default config is the engine's (kcp-go's) message mode: a byte-stream reader with a buffer smaller
/// than a message still gets every byte in order (the rest of a message waits for the next read).
#[tokio::test]
async fn default_message_mode_keeps_the_rest_of_a_partly_read_message() {
    use tokio::io::AsyncReadExt;
    assert!(!KcpConfig::default().kcp.stream);
    let listener = KcpListener::bind("127.0.0.1:0", KcpConfig::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, KcpConfig::default())
        .await
        .unwrap();
    // One 3,000-byte message (three segments), then bytes through AsyncWrite (cut into MSS-sized messages).
    let msg = pattern(11, 3000);
    let bytes = pattern(12, 5000);
    c.send_msg(&msg).await.unwrap();
    c.write_all(&bytes).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 100];
    while got.len() < msg.len() + bytes.len() {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0 && n <= 100);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got[..msg.len()], &msg[..]);
    assert_eq!(&got[msg.len()..], &bytes[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cipher_with_and_without_fec() {
    for kind in CipherKind::ALL {
        let crypt = PacketCrypt::from_passphrase(kind, "it's a secrect");
        for fec in [(0, 0), (10, 3)] {
            let cfg = fast().with_crypt(crypt.clone()).with_fec(fec.0, fec.1);
            let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let srv = spawn_echo(listener);
            let stream = KcpStream::connect(addr, cfg).await.unwrap();
            let data = pattern(kind as u64 + 7, 200_000);
            let got = echo_roundtrip(stream, data.clone()).await;
            assert_eq!(fnv(&got), fnv(&data), "cipher {kind} fec {fec:?}");
            srv.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_mode_keeps_boundaries() {
    let mut cfg = fast()
        .with_fec(10, 3)
        .with_crypt(PacketCrypt::from_passphrase(CipherKind::Salsa20, "k"));
    cfg.kcp.stream = false;
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 300_000];
        while let Ok(n) = s.recv_msg(&mut buf).await {
            s.send_msg(&buf[..n]).await.unwrap();
        }
    });
    let c = KcpStream::connect(addr, cfg).await.unwrap();
    let mss = c.mss();
    let sizes = [
        1usize,
        17,
        mss - 1,
        mss,
        mss + 1,
        5 * mss + 3,
        200 * mss,
        0,
        1000,
    ];
    let mut buf = vec![0u8; 300_000];
    for (i, &len) in sizes.iter().enumerate() {
        let msg = pattern(i as u64 + 100, len);
        c.send_msg(&msg).await.unwrap();
        if len == 0 {
            continue; // an empty message is delivered as an empty message; echoed as one too
        }
        let n = loop {
            let n = c.recv_msg(&mut buf).await.unwrap();
            if n > 0 {
                break n;
            }
        };
        assert_eq!(&buf[..n], &msg[..], "message {i} of {len} bytes");
    }
    // A message needing more than 255 fragments is refused.
    let too_big = vec![0u8; 256 * mss];
    assert!(matches!(
        c.send_msg(&too_big).await,
        Err(rkcp_session::SessionError::MessageTooLarge { .. })
    ));
    // A too-small buffer is reported and nothing is consumed.
    c.send_msg(&[9u8; 100]).await.unwrap();
    let mut small = [0u8; 10];
    let err = loop {
        match c.recv_msg(&mut small).await {
            Err(e) => break e,
            Ok(0) => continue,
            Ok(n) => panic!("unexpected {n}"),
        }
    };
    assert!(matches!(
        err,
        rkcp_session::SessionError::BufferTooSmall { needed: 100 }
    ));
    assert_eq!(c.recv_msg(&mut buf).await.unwrap(), 100);
    srv.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_mode_through_async_read_write() {
    let mut cfg = fast();
    cfg.kcp.stream = false;
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _srv = spawn_echo(listener);
    let stream = KcpStream::connect(addr, cfg).await.unwrap();
    let data = pattern(5, 500_000);
    let got = echo_roundtrip(stream, data.clone()).await;
    assert_eq!(fnv(&got), fnv(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_sessions() {
    let cfg = KcpConfig::fast3()
        .with_crypt(PacketCrypt::from_passphrase(CipherKind::Aes, "x"))
        .with_fec(10, 3);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _srv = spawn_echo(listener);
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let s = KcpStream::connect(addr, cfg).await.unwrap();
            let data = pattern(i + 1000, 20_000 + i as usize * 97);
            let got = echo_roundtrip(s, data.clone()).await;
            assert_eq!(got, data);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_retuning_mid_transfer() {
    use tokio::io::AsyncReadExt;
    let listener = KcpListener::bind("127.0.0.1:0", KcpConfig::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        s.set_mode(true, 10, 2, true);
        s.set_window(512, 512);
        let (mut r, mut w) = tokio::io::split(s);
        tokio::io::copy(&mut r, &mut w).await
    });
    let mut c = KcpStream::connect(addr, KcpConfig::default())
        .await
        .unwrap();
    type Tuning = (bool, u32, u32, bool, u32, usize, bool, bool);
    let tunings: [Tuning; 5] = [
        (false, 100, 0, false, 32, 1400, false, false),
        (true, 10, 2, true, 256, 1400, true, false),
        (false, 40, 2, true, 64, 1200, false, true),
        (true, 20, 1, false, 128, 576, true, true),
        (true, 10, 2, true, 1024, 1500, false, false),
    ];
    for (i, &(nd, iv, rs, nc, wnd, mtu, ackn, wdelay)) in tunings.iter().enumerate() {
        c.set_mode(nd, iv, rs, nc);
        c.set_window(wnd, wnd);
        c.set_mtu(mtu).unwrap();
        assert_eq!(c.mss(), mtu - 24);
        c.set_ack_nodelay(ackn);
        c.set_write_delay(wdelay);
        for round in 0..5u64 {
            let data = pattern(i as u64 * 10 + round, 20_000);
            c.write_all(&data).await.unwrap();
            c.flush().await.unwrap();
            let mut got = vec![0u8; data.len()];
            c.read_exact(&mut got).await.unwrap();
            assert_eq!(got, data, "tuning {i} round {round}");
        }
    }
    assert!(c.set_mtu(1501).is_err());
    assert!(c.rto() > 0);
    assert!(c.srtt() >= 0);
    srv.abort();
}
