//! smux over KcpStream, the stack kcptun runs: an echo of a large, patterned transfer in both
//! versions. A KcpStream accepts partial writes whenever its send queue is full, which a TCP loopback
//! rarely does, so this catches frame interleaving that smux's own pipe and TCP tests miss.

use rkcp_session::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

async fn echo(version: rkcp_smux::Version, total: usize) {
    let cfg = KcpConfig::fast3().with_window(1024, 1024).with_mtu(1350);
    let mut sc = rkcp_smux::Config::default();
    sc.version = version;
    sc.max_stream_buffer = 2 << 20;
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let scs = sc.clone();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let mux = rkcp_smux::Session::server(s, scs).unwrap();
        let st = mux.accept_stream().await.unwrap();
        let (mut r, mut w) = tokio::io::split(st);
        // Reads of every size, small to larger than a frame, as applications do.
        let sizes = [256usize, 1000, 4096, 40_000, 262_144];
        let mut buf = vec![0u8; 262_144];
        for i in 0.. {
            let n = r.read(&mut buf[..sizes[i % sizes.len()]]).await.unwrap();
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n]).await.unwrap();
        }
        w.shutdown().await.unwrap();
        mux
    });
    let c = KcpStream::connect(addr, cfg).await.unwrap();
    let mux = rkcp_smux::Session::client(c, sc).unwrap();
    let st = mux.open_stream().await.unwrap();
    let (mut r, mut w) = tokio::io::split(st);
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..total).map(pattern).collect();
        for chunk in data.chunks(262_144) {
            w.write_all(chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 262_144];
    let sizes = [100usize, 7000, 262_144, 33_000];
    for i in 0.. {
        let n = r.read(&mut buf[..sizes[i % sizes.len()]]).await.unwrap();
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(
                *b,
                pattern(got + k),
                "{version:?}: byte {} differs",
                got + k
            );
        }
        got += n;
    }
    assert_eq!(got, total, "{version:?}: echoed length");
    writer.await.unwrap();
    drop(server.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smux_v1_echo_over_kcp_is_exact() {
    echo(rkcp_smux::Version::V1, 48 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smux_v2_echo_over_kcp_is_exact() {
    echo(rkcp_smux::Version::V2, 48 << 20).await;
}

/// The engine's knobs stay reachable through a `KcpControl` after smux took the stream: retuning the mode
/// from another thread changes the live engine (its reported interval), windows and MTU follow, counters
/// move with smux traffic, and the control does not keep the session open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_retunes_a_session_owned_by_smux() {
    fn send_sync_clone<T: Clone + Send + Sync + 'static>() {}
    send_sync_clone::<rkcp_session::KcpControl>();

    let listener = KcpListener::bind("127.0.0.1:0", KcpConfig::fast3())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (kcp, _) = listener.accept().await.unwrap();
        let mux = rkcp_smux::Session::server(kcp, rkcp_smux::Config::default()).unwrap();
        let mut s = mux.accept_stream().await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
        s.flush().await.unwrap();
        // Keep the session until the client has read the echo.
        let _ = s.read(&mut buf).await;
    });

    let kcp = KcpStream::connect(addr, KcpConfig::fast3()).await.unwrap();
    let control = kcp.control();
    assert_eq!(control.interval(), 10);
    let mux = rkcp_smux::Session::client(kcp, rkcp_smux::Config::default()).unwrap();

    // The stream now belongs to smux: retune from another thread through a clone.
    let other = control.clone();
    std::thread::spawn(move || other.set_mode(false, 40, 0, false))
        .join()
        .unwrap();
    assert_eq!(
        control.interval(),
        40,
        "the live engine took the new interval"
    );
    control.set_window(64, 128);
    assert_eq!(control.windows(), (64, 128));
    control.set_mtu(600).unwrap();
    assert_eq!(control.mss(), 600 - 24);

    let out_before = control.stats().out_segs;
    let mut s = mux.open_stream().await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut reply = [0u8; 4];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"ping");
    assert!(control.stats().out_segs > out_before);
    assert!(control.snmp().bytes_sent > 0);
    assert!(!control.is_closed());
    drop(s);
    srv.abort();
    drop(mux);

    // A control alone does not keep a session open.
    let lone = KcpStream::connect(addr, KcpConfig::fast3()).await.unwrap();
    let c = lone.control();
    assert!(!c.is_closed());
    drop(lone);
    assert!(c.is_closed());
}
