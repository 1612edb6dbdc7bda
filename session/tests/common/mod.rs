//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod lossy;
pub mod nat;

use std::time::Duration;

use rkcp_session::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deterministic pseudo-random bytes (xorshift), so a transfer can be checked without keeping a copy.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a 64, a cheap checksum.
pub fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A config tuned for fast loopback tests.
pub fn fast() -> KcpConfig {
    KcpConfig::fast3().with_window(256, 256)
}

/// Echo server: accepts sessions and echoes every byte back.
pub fn spawn_echo(listener: KcpListener) -> tokio::task::JoinHandle<()> {
    spawn_echo_shared(std::sync::Arc::new(listener))
}

/// [`spawn_echo`] on a listener the caller keeps (for its stats).
pub fn spawn_echo_shared(listener: std::sync::Arc<KcpListener>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// Polls the listener's counters until `f` holds (at most 10 s); returns the last reading.
pub async fn wait_for(
    listener: &KcpListener,
    f: impl Fn(&rkcp_session::ListenerStats) -> bool,
) -> rkcp_session::ListenerStats {
    let start = std::time::Instant::now();
    loop {
        let s = listener.stats();
        if f(&s) || start.elapsed() > Duration::from_secs(10) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Writes `data` from one task and reads the echo in another; returns the echoed bytes.
pub async fn echo_roundtrip(stream: KcpStream, data: Vec<u8>) -> Vec<u8> {
    let len = data.len();
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w
    });
    let mut got = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(60), r.read_exact(&mut got))
        .await
        .expect("echo timed out")
        .unwrap();
    let _w = writer.await.unwrap();
    got
}
