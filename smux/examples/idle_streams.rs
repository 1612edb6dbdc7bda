//! Memory used by 10,000 idle open streams (issue target: <= 20 MB).
//!
//! `cargo run -p rkcp-smux --release --example idle_streams`
//!
//! Opens the streams over a TCP loopback session, accepts them all on the server side
//! (both ends live in this process), and prints the growth of the resident set size.

use std::time::Duration;

use rkcp_smux::{Config, Session, Version};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    const N: usize = 10_000;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
    let mut cfg = Config::default();
    cfg.version = Version::V2;
    cfg.accept_backlog = N;
    let client = Session::client(a.unwrap(), cfg.clone()).unwrap();
    let server = Session::server(b.unwrap().0, cfg).unwrap();
    // Warm up allocator and runtime with one stream.
    drop(client.open_stream().await.unwrap());
    drop(server.accept_stream().await.unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = rss_bytes();
    let mut opened = Vec::with_capacity(N);
    let mut accepted = Vec::with_capacity(N);
    for _ in 0..N {
        opened.push(client.open_stream().await.unwrap());
    }
    for _ in 0..N {
        accepted.push(server.accept_stream().await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = rss_bytes();
    let delta = after.saturating_sub(before) as f64 / 1e6;
    println!(
        "{N} idle streams, both ends in this process: RSS +{delta:.2} MB \
         ({:.0} bytes per stream end); client {} streams, server {} streams",
        (after.saturating_sub(before)) as f64 / (2 * N) as f64,
        client.num_streams(),
        server.num_streams()
    );
}
