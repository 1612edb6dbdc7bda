//! Shared helpers for the tunnel tests: a TCP echo server and checksummed bulk transfers through a tunnel.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP echo server on an ephemeral loopback port; runs until the runtime ends.
pub async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Random-ish (seeded) or compressible payload.
pub fn payload(len: usize, seed: u64, compressible: bool) -> Vec<u8> {
    if compressible {
        let text = format!("line {seed}: the quick brown fox jumps over the lazy dog\n");
        return text.bytes().cycle().take(len).collect();
    }
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Connects to `addr`, sends `data` while reading the echo, and checks the SHA-256 of what came back.
pub async fn echo_roundtrip(addr: SocketAddr, data: Vec<u8>) {
    let want = Sha256::digest(&data);
    let len = data.len();
    let s = connect_retry(addr).await;
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w
    });
    let mut got = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(60), r.read_exact(&mut got))
        .await
        .expect("echo timed out")
        .expect("echo read failed");
    let _w = writer.await.unwrap();
    assert_eq!(Sha256::digest(&got), want, "echo of {len} bytes differs");
}

/// TCP connect, retrying briefly while a freshly started program binds.
pub async fn connect_retry(addr: SocketAddr) -> TcpStream {
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(addr).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to {addr}");
}

/// Runs `conns` concurrent echo round trips of `bytes` each (alternating random and compressible payloads).
pub async fn bulk(addr: SocketAddr, conns: usize, bytes: usize) {
    let mut tasks = Vec::new();
    for i in 0..conns {
        let data = payload(bytes, i as u64 + 1, i % 2 == 1);
        tasks.push(tokio::spawn(echo_roundtrip(addr, data)));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
