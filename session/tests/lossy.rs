//! Transfers through a lossy UDP relay (seeded drops): data arrives intact, and FEC rebuilds lost packets.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt};
use tokio::net::UdpSocket;

/// Forwards datagrams between one client and `server`, dropping each with probability `loss_pct`% (seeded).
async fn spawn_relay(server: SocketAddr, loss_pct: u64, seed: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    let dropped = Arc::new(AtomicU64::new(0));
    let d = Arc::clone(&dropped);
    tokio::spawn(async move {
        let mut client: Option<SocketAddr> = None;
        let mut buf = vec![0u8; 2048];
        let mut x = seed | 1;
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 100 < loss_pct {
                d.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let to = if from == server {
                match client {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                client = Some(from);
                server
            };
            let _ = sock.send_to(&buf[..n], to).await;
        }
    });
    (addr, dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_link_with_fec_recovers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LEN: usize = 1 << 20;
    let cfg = fast()
        .with_crypt(PacketCrypt::from_passphrase(CipherKind::Aes, "loss"))
        .with_fec(10, 3);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let (relay, dropped) = spawn_relay(listener.local_addr().unwrap(), 10, 0x5eed).await;
    let srv = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = vec![0u8; LEN];
        s.read_exact(&mut got).await.unwrap();
        s.write_all(&fnv(&got).to_le_bytes()).await.unwrap();
        let snmp = s.snmp();
        s.shutdown().await.unwrap();
        snmp
    });
    let mut c = KcpStream::connect(relay, cfg).await.unwrap();
    let data = pattern(77, LEN);
    c.write_all(&data).await.unwrap();
    let mut sum = [0u8; 8];
    c.read_exact(&mut sum).await.unwrap();
    assert_eq!(u64::from_le_bytes(sum), fnv(&data));
    let server = srv.await.unwrap();
    let client = c.snmp();
    assert!(
        dropped.load(Ordering::Relaxed) > 50,
        "the relay dropped packets"
    );
    assert!(
        server.fec_recovered > 0,
        "FEC rebuilt lost packets: {server}"
    );
    assert!(server.fec_parity_shards > 0);
    assert_eq!(server.bytes_received, LEN as u64);
    assert_eq!(client.bytes_sent, LEN as u64);
    assert!(client.out_pkts > 0 && client.out_segs > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_link_without_fec_retransmits() {
    let cfg = KcpConfig::fast3().with_window(128, 128);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let (relay, dropped) = spawn_relay(listener.local_addr().unwrap(), 15, 42).await;
    let _srv = spawn_echo(listener);
    let c = KcpStream::connect(relay, cfg).await.unwrap();
    let data = pattern(78, 300_000);
    let got = echo_roundtrip(c, data.clone()).await;
    assert_eq!(got, data);
    assert!(dropped.load(Ordering::Relaxed) > 20);
}
