//! Compares the congestion controllers on the simulated network: a bulk transfer over a capped,
//! lossy link (`cargo run -p rkcp-engine --release --example cc_compare [seconds]`). The loss
//! applies to both directions; with `NOACKLOSS=1` in the environment only to the data direction.
//!
//! Prints, per controller and loss rate: goodput (application bytes per second at the
//! receiver, as a fraction of the link's capacity), the bottleneck queue (mean and largest), the
//! datagrams dropped at the queue, and the transmissions per unique segment.

use rkcp_engine::sim::{LinkConfig, Network, NetworkConfig, Side};
use rkcp_engine::{Congestion, Kcp, KcpConfig};

/// 10 Mbit/s, 20 ms one way, a queue of two bandwidth-delay products.
const BW: u32 = 1_250;
const DELAY: u32 = 20;
const QUEUE: usize = 100_000;

struct Outcome {
    goodput: f64,
    queue_mean: f64,
    queue_max: u64,
    drops: u64,
    xmit_ratio: f64,
    bw_est: Option<u64>,
    kinds: (u64, u64, u64),
}

fn run(cc: Congestion, loss: f64, seed: u64, secs: u64) -> Outcome {
    let cfg = KcpConfig {
        snd_wnd: 1024,
        rcv_wnd: 1024,
        stream: true,
        nc: cc == Congestion::None,
        congestion: cc,
        ..KcpConfig::fast3()
    };
    let fwd = LinkConfig::default()
        .loss(loss)
        .delay(DELAY, DELAY)
        .bandwidth(BW, QUEUE);
    let back = LinkConfig::default()
        .loss(if std::env::var("NOACKLOSS").is_ok() {
            0.0
        } else {
            loss
        })
        .delay(DELAY, DELAY);
    let net_cfg = NetworkConfig {
        a_to_b: fwd,
        b_to_a: back,
        seed,
        start_time: 0,
    };
    let mut net = Network::new(
        net_cfg,
        Kcp::with_config(1, &cfg).unwrap(),
        Kcp::with_config(1, &cfg).unwrap(),
    )
    .unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut buf = vec![0u8; 1 << 16];
    let warmup = 2_000;
    let (mut got, mut got_at_warmup) = (0u64, 0u64);
    let (mut qsum, mut qn) = (0u64, 0u64);
    for ms in 0..secs * 1000 {
        while net.kcp(Side::A).wait_snd() < 2048 {
            net.send(Side::A, &chunk).unwrap();
        }
        net.run_for(1);
        while let Ok(n @ 1..) = net.recv(Side::B, &mut buf) {
            got += n as u64;
        }
        if ms == warmup {
            got_at_warmup = got;
        }
        if ms >= warmup {
            qsum += net.queue_bytes(Side::A);
            qn += 1;
        }
    }
    let a = net.kcp(Side::A);
    let secs_measured = (secs * 1000 - warmup) as f64 / 1000.0;
    let unique = u64::from(a.snd_nxt());
    Outcome {
        goodput: (got - got_at_warmup) as f64 / secs_measured / (f64::from(BW) * 1000.0),
        queue_mean: qsum as f64 / qn as f64,
        queue_max: net.link_stats(Side::A).max_queue_bytes,
        drops: net.link_stats(Side::A).queue_drops,
        xmit_ratio: (unique + a.stats().retrans_segs) as f64 / unique as f64,
        bw_est: a.bandwidth_estimate(),
        kinds: (
            a.stats().fast_retrans_segs,
            a.stats().early_retrans_segs,
            a.stats().lost_segs,
        ),
    }
}

fn main() {
    let secs = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!(
        "10 Mbit/s, 40 ms RTT, {} kB queue, fast3 + 1024 windows, {secs} s (first 2 s not counted)",
        QUEUE / 1000
    );
    println!(
        "controller    loss  goodput  queue mean/max kB  q-drops  xmit/seg  bw-est kB/s  (fast, early, rto)"
    );
    for cc in [
        Congestion::KcpGo,
        Congestion::None,
        Congestion::DeliveryRate,
    ] {
        for loss in [0.0, 0.01, 0.05, 0.10] {
            let o = run(cc, loss, 1, secs);
            println!(
                "{:<12} {:>4.0}%  {:>6.1}%  {:>7.1} / {:>6.1}  {:>7}  {:>8.3}  {}  {:?}",
                format!("{cc:?}"),
                loss * 100.0,
                o.goodput * 100.0,
                o.queue_mean / 1000.0,
                o.queue_max as f64 / 1000.0,
                o.drops,
                o.xmit_ratio,
                o.bw_est
                    .map_or("-".into(), |b| format!("{:.0}", b as f64 / 1000.0)),
                o.kinds,
            );
        }
    }
}
