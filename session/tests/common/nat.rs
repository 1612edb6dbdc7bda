//! A UDP relay standing in for a NAT between one client and a server.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::UdpSocket;

/// A UDP relay between one client and a server, standing in for a NAT: it records what the client sends, and
/// can give the client a new outside port (a fresh upstream socket) whenever asked.
pub struct Nat {
    /// The address the client talks to.
    pub inside: SocketAddr,
    /// Every client→server datagram, in order.
    pub captured: Arc<Mutex<Vec<Vec<u8>>>>,
    pub rebinds: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Nat {
    pub async fn start(server: SocketAddr, rebind_every: Option<Duration>) -> Nat {
        let inside_sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let inside = inside_sock.local_addr().unwrap();
        let captured = Arc::new(Mutex::new(Vec::new()));
        let rebinds = Arc::new(AtomicU64::new(0));
        let (cap, reb) = (Arc::clone(&captured), Arc::clone(&rebinds));
        let task = tokio::spawn(async move {
            let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
            let mut outside = Self::outside(Arc::clone(&inside_sock), Arc::clone(&client)).await;
            let mut last_rebind = Instant::now();
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = inside_sock.recv_from(&mut buf).await else {
                    return;
                };
                *client.lock() = Some(from);
                cap.lock().push(buf[..n].to_vec());
                if rebind_every.is_some_and(|e| last_rebind.elapsed() >= e) {
                    outside.1.abort();
                    outside = Self::outside(Arc::clone(&inside_sock), Arc::clone(&client)).await;
                    last_rebind = Instant::now();
                    reb.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let _ = outside.0.send_to(&buf[..n], server).await;
            }
        });
        Nat {
            inside,
            captured,
            rebinds,
            task,
        }
    }

    /// A new outside socket, with a task relaying what comes back to the client.
    async fn outside(
        inside: Arc<UdpSocket>,
        client: Arc<Mutex<Option<SocketAddr>>>,
    ) -> (Arc<UdpSocket>, tokio::task::JoinHandle<()>) {
        let s = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let r = Arc::clone(&s);
        let h = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = r.recv_from(&mut buf).await {
                let to = *client.lock();
                if let Some(to) = to {
                    let _ = inside.send_to(&buf[..n], to).await;
                }
            }
        });
        (s, h)
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
