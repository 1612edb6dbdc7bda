//! Adaptive parity vs fixed 10/3 on a simulated lossy link.
//!
//! A sender emits 1350-byte datagrams through [`FecEncoder`]; a seeded loss model drops
//! datagrams (data and parity alike); the receiver's [`FecDecoder`] (configured 10/3, as kcptun's
//! default) rebuilds what it can. In the adaptive run the sender owns an [`AdaptiveParity`] and
//! only learns what a real sender learns: how many data packets the peer still lacked after
//! FEC (KCP would retransmit those). It applies the policy's choice with
//! [`FecEncoder::set_parity_shards`]; the receiver follows through autotune alone.
//!
//! Run: `cargo run --release -p rkcp-fec --example adaptive [packets]`
//! Prints, per loss rate and model: packets lost on the link, rebuilt by FEC, lost for good,
//! parity bytes sent, and packets rebuilt per MB of parity.

use rkcp_fec::{AdaptiveParity, FecDecoder, FecEncoder};
use std::collections::HashSet;

const DATAGRAM: usize = 1350;
pub(crate) const DS: usize = 10;

/// Seeded loss processes.
#[derive(Clone, Copy)]
pub(crate) enum Model {
    /// Independent losses with probability p.
    Bernoulli(f64),
    /// Gilbert–Elliott: a "bad" state losing everything, entered with probability p/(b*(1-p))
    /// and left with 1/b per packet, so the average loss is p in bursts of mean length b.
    Bursty { p: f64, burst: f64 },
}

struct Link {
    model: Model,
    state: u64,
    bad: bool,
}

impl Link {
    fn new(model: Model, seed: u64) -> Link {
        Link {
            model,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            bad: false,
        }
    }

    fn uniform(&mut self) -> f64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn lose(&mut self) -> bool {
        match self.model {
            Model::Bernoulli(p) => self.uniform() < p,
            Model::Bursty { p, burst } => {
                let u = self.uniform();
                self.bad = if self.bad {
                    u >= 1.0 / burst
                } else {
                    u < p / (burst * (1.0 - p))
                };
                self.bad
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) data: u64,
    pub(crate) lost_on_link: u64,
    pub(crate) rebuilt: u64,
    pub(crate) parity_bytes: u64,
    pub(crate) parity_shards_sum: u64,
    pub(crate) groups: u64,
}

impl Tally {
    pub(crate) fn lost_for_good(&self) -> u64 {
        self.lost_on_link - self.rebuilt
    }

    pub(crate) fn per_parity_mb(&self) -> f64 {
        self.rebuilt as f64 / (self.parity_bytes as f64 / 1e6)
    }
}

/// Sends `packets` data datagrams over `model`; `policy` = None is fixed 10/3.
pub(crate) fn simulate(
    model: Model,
    packets: u32,
    seed: u64,
    mut policy: Option<AdaptiveParity>,
) -> Tally {
    let start_ps = policy.as_ref().map_or(3, AdaptiveParity::parity_shards);
    let mut enc = FecEncoder::new(DS, start_ps, 0).expect("valid");
    let mut dec = FecDecoder::new(DS, 3).expect("valid");
    let mut link = Link::new(model, seed);
    let mut t = Tally::default();
    // Data packets lost on the link and not (yet) rebuilt, by id.
    let mut missing: HashSet<u32> = HashSet::new();
    let mut window_sent = 0u64;
    let mut window_lost_ids: Vec<u32> = Vec::new();

    for id in 0..packets {
        let mut pkt = vec![0u8; DATAGRAM];
        pkt[8..12].copy_from_slice(&id.to_le_bytes());
        let mut parity: Vec<Vec<u8>> = Vec::new();
        enc.encode(&mut pkt, |p| parity.push(p.to_vec()));
        t.data += 1;
        window_sent += 1;
        let mut wire = vec![(Some(id), pkt)];
        if !parity.is_empty() {
            t.groups += 1;
            t.parity_shards_sum += parity.len() as u64;
        }
        for p in parity {
            t.parity_bytes += p.len() as u64;
            wire.push((None, p));
        }
        for (data_id, p) in wire {
            if link.lose() {
                if let Some(d) = data_id {
                    t.lost_on_link += 1;
                    missing.insert(d);
                    window_lost_ids.push(d);
                }
                continue;
            }
            dec.decode(0, &p, |kcp| {
                let rid = u32::from_le_bytes(kcp[..4].try_into().expect("4 bytes"));
                if missing.remove(&rid) {
                    t.rebuilt += 1;
                }
            })
            .expect("well-formed");
        }
        // The sender learns, per window, which data packets the peer still lacks (KCP's
        // retransmissions). Judge each packet once its group has had time to complete.
        if let Some(pol) = policy.as_mut()
            && window_sent >= 1000
        {
            let horizon = id.saturating_sub(2 * DS as u32);
            let (judged, pending): (Vec<u32>, Vec<u32>) =
                window_lost_ids.iter().partition(|&&d| d < horizon);
            let lost = judged.iter().filter(|d| missing.contains(d)).count() as u64;
            window_lost_ids = pending;
            if let Some(ps) = pol.observe(window_sent, lost) {
                enc.set_parity_shards(ps)
                    .expect("policy stays within bounds");
            }
            window_sent = 0;
        }
    }
    t
}

fn main() {
    let packets: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300_000);
    println!(
        "{packets} data datagrams of {DATAGRAM} bytes per run, ds = {DS}, receiver 10/3 + autotune"
    );
    println!(
        "{:<16} {:<10} {:>9} {:>9} {:>10} {:>8} {:>12} {:>14} {:>8}",
        "loss model",
        "sender",
        "lost",
        "rebuilt",
        "lost4good",
        "resid%",
        "parity MB",
        "rebuilt/parMB",
        "mean ps"
    );
    let models = [
        ("iid 1%", Model::Bernoulli(0.01)),
        ("iid 5%", Model::Bernoulli(0.05)),
        ("iid 15%", Model::Bernoulli(0.15)),
        (
            "bursty 1% b=3",
            Model::Bursty {
                p: 0.01,
                burst: 3.0,
            },
        ),
        (
            "bursty 5% b=3",
            Model::Bursty {
                p: 0.05,
                burst: 3.0,
            },
        ),
        (
            "bursty 15% b=3",
            Model::Bursty {
                p: 0.15,
                burst: 3.0,
            },
        ),
    ];
    for (name, model) in models {
        for adaptive in [false, true] {
            let policy = adaptive.then(|| AdaptiveParity::new(DS, 1, 8).expect("valid"));
            let t = simulate(model, packets, 42, policy);
            println!(
                "{:<16} {:<10} {:>9} {:>9} {:>10} {:>8.3} {:>12.2} {:>14.1} {:>8.2}",
                name,
                if adaptive { "adaptive" } else { "fixed 10/3" },
                t.lost_on_link,
                t.rebuilt,
                t.lost_for_good(),
                100.0 * t.lost_for_good() as f64 / t.data as f64,
                t.parity_bytes as f64 / 1e6,
                t.per_parity_mb(),
                t.parity_shards_sum as f64 / t.groups.max(1) as f64,
            );
        }
    }
}
