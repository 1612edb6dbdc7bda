//! A UDP relay between one client and a server that drops datagrams at random (seeded), both ways, and
//! records what the client sent (before the drops).
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::UdpSocket;

/// The relay; its tasks stop when it is dropped.
pub struct Lossy {
    /// The address the client talks to.
    pub inside: SocketAddr,
    /// Every client→server datagram, in order, before the drops.
    pub from_client: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Every server→client datagram, in order, before the drops.
    pub from_server: Arc<Mutex<Vec<Vec<u8>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// xorshift64*: a unit draw per datagram.
fn chance(state: &mut u64, p: f64) -> bool {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let x = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
    ((x >> 11) as f64 / (1u64 << 53) as f64) < p
}

impl Lossy {
    /// Relays to `server`, dropping each datagram with probability `loss` in each direction.
    pub async fn start(server: SocketAddr, loss: f64, seed: u64) -> Lossy {
        let inside_sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let inside = inside_sock.local_addr().unwrap();
        let outside = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let from_client = Arc::new(Mutex::new(Vec::new()));
        let from_server = Arc::new(Mutex::new(Vec::new()));
        let (i, o, c, rec) = (
            Arc::clone(&inside_sock),
            Arc::clone(&outside),
            Arc::clone(&client),
            Arc::clone(&from_client),
        );
        let up = tokio::spawn(async move {
            let mut rng = seed | 1;
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = i.recv_from(&mut buf).await {
                *c.lock() = Some(from);
                rec.lock().push(buf[..n].to_vec());
                if !chance(&mut rng, loss) {
                    let _ = o.send_to(&buf[..n], server).await;
                }
            }
        });
        let rec = Arc::clone(&from_server);
        let down = tokio::spawn(async move {
            let mut rng = seed.wrapping_mul(31) | 1;
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = outside.recv_from(&mut buf).await {
                rec.lock().push(buf[..n].to_vec());
                let to = *client.lock();
                if let Some(to) = to
                    && !chance(&mut rng, loss)
                {
                    let _ = inside_sock.send_to(&buf[..n], to).await;
                }
            }
        });
        Lossy {
            inside,
            from_client,
            from_server,
            tasks: vec![up, down],
        }
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What the FEC headers of unencrypted datagrams show: the largest number of times one parity seqid was
/// sent, and the distinct lengths of runs of consecutive parity seqids (the parity counts used).
pub fn fec_shapes(datagrams: &[Vec<u8>]) -> (usize, Vec<usize>) {
    use std::collections::{BTreeSet, HashMap};
    let mut copies: HashMap<u32, usize> = HashMap::new();
    let mut parity: BTreeSet<u32> = BTreeSet::new();
    for d in datagrams {
        if d.len() < 8 || d[5] != 0 || !matches!(d[4], 0xF1 | 0xF2) {
            continue;
        }
        let seqid = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        if d[4] == 0xF2 {
            *copies.entry(seqid).or_default() += 1;
            parity.insert(seqid);
        }
    }
    let mut runs = BTreeSet::new();
    let mut run = 0usize;
    let mut last: Option<u32> = None;
    for &s in &parity {
        if last.is_some_and(|l| l.wrapping_add(1) == s) {
            run += 1;
        } else {
            if run > 0 {
                runs.insert(run);
            }
            run = 1;
        }
        last = Some(s);
    }
    if run > 0 {
        runs.insert(run);
    }
    (
        copies.values().copied().max().unwrap_or(0),
        runs.into_iter().collect(),
    )
}
