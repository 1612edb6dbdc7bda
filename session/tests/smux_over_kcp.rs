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
    let addr = listener.local_addr();
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
