//! Interop with the Go reference (github.com/xtaci/smux from Debian's
//! golang-github-xtaci-smux-dev) through the small peer in interop/go/smuxpeer.
//!
//! Run with `cargo test -p rkcp-smux --release -- --ignored interop_`. Needs `go` and the
//! Debian packages golang-github-xtaci-smux-dev and golang-github-xtaci-kcp-dev (the peer
//! also speaks smux over KCP); every test fails (does not skip) when they are missing.

use std::process::Stdio;
use std::sync::Arc;

use rkcp_smux::{Config, Session, Version};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

mod many;

use many::peer_binary;

fn cfg(v: Version) -> Config {
    let mut c = Config::default();
    c.version = v;
    c
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn go_server(ver: u8) -> (Child, String) {
    let mut child = Command::new(peer_binary())
        .args(["-mode", "server", "-ver", &ver.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start smuxpeer");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    let addr = line
        .trim()
        .strip_prefix("LISTEN ")
        .unwrap_or_else(|| panic!("unexpected peer output {line:?}"))
        .to_string();
    (child, addr)
}

/// Echo: write `E` + data while reading the echo back; close only after the whole
/// echo arrived (smux has no half-close and Go's echo stops at our FIN).
async fn echo(sess: &Session, seed: u64, len: usize) {
    let st = sess.open_stream().await.unwrap();
    let (mut r, mut w) = st.into_split();
    let data = Arc::new(pattern(seed, len));
    let d2 = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(b"E").await.unwrap();
        w.write_all(&d2).await.unwrap();
        w.flush().await.unwrap();
        w
    });
    let mut got = vec![0u8; len];
    r.read_exact(&mut got).await.unwrap();
    let _w = writer.await.unwrap();
    assert!(got == *data, "echo of stream seed {seed} differs");
}

/// Sink: write `S` + data, FIN, and compare the SHA-256 the Go side computed.
async fn sink(sess: &Session, seed: u64, len: usize) {
    let mut st = sess.open_stream().await.unwrap();
    let data = pattern(seed, len);
    st.write_all(b"S").await.unwrap();
    st.write_all(&data).await.unwrap();
    st.shutdown().await.unwrap();
    let mut digest = Vec::new();
    st.read_to_end(&mut digest).await.unwrap();
    assert_eq!(
        digest,
        Sha256::digest(&data).to_vec(),
        "sink digest, seed {seed}"
    );
}

async fn rust_client_go_server(v: Version) {
    let (_child, addr) = go_server(v.byte().unwrap()).await;
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let sess = Arc::new(Session::client(tcp, cfg(v)).unwrap());
    let mut tasks = Vec::new();
    for i in 0..48u64 {
        let s = sess.clone();
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                0 => echo(&s, i, 300_000).await,
                1 => echo(&s, i, 1 + (i as usize) * 997).await,
                _ => sink(&s, i, 2_000_000).await,
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // One large transfer on its own.
    sink(&sess, 1000, 64 << 20).await;
    sess.close().await.unwrap();
}

async fn serve_stream(mut st: rkcp_smux::Stream) {
    let mut kind = [0u8; 1];
    if st.read_exact(&mut kind).await.is_err() {
        return;
    }
    match kind[0] {
        b'E' => {
            let (mut r, mut w) = st.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
        b'S' => {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 65536];
            loop {
                match st.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => h.update(&buf[..n]),
                }
            }
            let _ = st.write_all(&h.finalize()).await;
            let _ = st.shutdown().await;
        }
        _ => {}
    }
}

async fn go_client_rust_server(server_version: Version, client_ver: u8, streams: u32, size: u32) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let sess = Session::server(tcp, cfg(server_version)).unwrap();
        while let Ok(st) = sess.accept_stream().await {
            tokio::spawn(serve_stream(st));
        }
        sess
    });
    let out = Command::new(peer_binary())
        .args(["-mode", "client", "-ver", &client_ver.to_string()])
        .args(["-connect", &addr.to_string()])
        .args(["-streams", &streams.to_string(), "-size", &size.to_string()])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run smuxpeer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("OK"),
        "Go client failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sess = server.await.unwrap();
    assert!(sess.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_rust_client_go_server_v1() {
    rust_client_go_server(Version::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_rust_client_go_server_v2() {
    rust_client_go_server(Version::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_go_client_rust_server_v1() {
    go_client_rust_server(Version::V1, 1, 64, 200_000).await;
    go_client_rust_server(Version::V1, 1, 2, 32 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_go_client_rust_server_v2() {
    go_client_rust_server(Version::V2, 2, 64, 200_000).await;
    go_client_rust_server(Version::V2, 2, 2, 32 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_go_client_rust_server_auto_version() {
    go_client_rust_server(Version::Auto, 2, 16, 100_000).await;
    go_client_rust_server(Version::Auto, 1, 16, 100_000).await;
}
