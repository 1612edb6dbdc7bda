//! The classic KCP latency table, on the deterministic simulated network (`rkcp_engine::sim`).
//!
//! This is the scenario of the original C implementation's test program (`test.cpp`): 10 %
//! round-trip loss (5 % each way), one-way delay uniform in 30–62 ms, FIFO links (a datagram never
//! overtakes the one sent before it), an 8-byte message every 20 ms echoed back by the peer,
//! windows 128/128, 1,000 echoes. For each mode it prints the round-trip time the application
//! sees (send of the message → arrival of its echo): average, median, 99th percentile and maximum,
//! pooled over several seeds (max is the mean of each seed's maximum; worst is the largest of all).
//!
//! ```text
//! cargo run --release -p rkcp-engine --example latency_table
//! ```
//!
//! Modes (nodelay, interval, resend, nc):
//! - `default (0,10,0,0)` and `normal (0,10,0,1)` as in test.cpp.
//! - `fast (2,10,2,1)`: kcp-go has no `nodelay = 2` (its only effect in C is the RTO backoff of
//!   `rto += rx_rto/2`, which kcp-go applies for any non-zero nodelay), so both engines use
//!   `nodelay = true, interval 10, resend 2, nc`, and — as test.cpp does for its first endpoint
//!   only — the sender also gets `min_rto = 10` ms and `resend = 1`.
//! - `kcptun fast3`: kcptun's fastest preset (1,10,2,1) on both ends, windows 128/128.
//! - `+ ack_nodelay`: the opt-in of sending ACKs right after each input instead of at the next
//!   interval flush. On these FIFO links it costs a few ms: every extra ACK datagram is one more
//!   packet later packets may have to queue behind.
//! - `+ rack + tlp`, `+ ackrep 2`, `+ bundle`: the options beyond kcp-go on both ends (RACK loss
//!   detection, tail loss probe, repeated ACKs of out-of-order segments, redundant bundling for
//!   thin streams). RACK and TLP cannot beat the round trip that detecting a loss takes (the same
//!   table without loss averages 97 ms); on this sparse stream `bundle` repairs a lost datagram
//!   with the next one, 20 ms later, which brings the average near the lossless figure.
//!
//! The default mode is far slower than the C figure, as in kcp-go itself: with congestion control
//! on, kcp-go's early retransmit (absent in C) fires with `resend = 0` and its `cwnd = ssthresh +
//! resent` wraps to `ssthresh - 1` (docs/wire-format.md#kcp-flush-cwnd), so the window keeps collapsing to 1
//! and the 50 messages/s queue up. The real kcp-go 5.6.1 engine, run on this same scenario in real
//! time, averaged 2.7–3.8 s (max 5.0–6.2 s) in default mode and 138–141 ms (max 373–486 ms) in
//! normal mode.

use rkcp_engine::sim::{LinkConfig, Network, NetworkConfig, Side};
use rkcp_engine::{Kcp, KcpConfig};

/// Echoes per run, as in test.cpp.
const ECHOES: usize = 1000;
/// Seeds averaged per mode.
const SEEDS: u64 = 8;
const CONV: u32 = 0x1122_3344;

struct Mode {
    name: &'static str,
    /// The C implementation's published avg/max, when it has a row for this mode.
    published: Option<(u32, u32)>,
    /// Configuration of the sender (A) and the echoing peer (B).
    configs: fn() -> (KcpConfig, KcpConfig),
}

fn base(nodelay: bool, interval: u32, resend: u32, nc: bool) -> KcpConfig {
    KcpConfig {
        nodelay,
        interval,
        resend,
        nc,
        snd_wnd: 128,
        rcv_wnd: 128,
        ..KcpConfig::default()
    }
}

fn fast_c() -> (KcpConfig, KcpConfig) {
    let peer = base(true, 10, 2, true);
    let sender = KcpConfig {
        resend: 1,
        min_rto: Some(10),
        ..peer.clone()
    };
    (sender, peer)
}

fn with_ack_nodelay(f: fn() -> (KcpConfig, KcpConfig)) -> (KcpConfig, KcpConfig) {
    let (mut a, mut b) = f();
    a.ack_nodelay = true;
    b.ack_nodelay = true;
    (a, b)
}

/// The opt-in recovery beyond kcp-go on both ends: RACK, tail loss probe, and repeated ACKs of
/// out-of-order segments (`ack_repeat`).
fn with_recovery(
    f: fn() -> (KcpConfig, KcpConfig),
    ack_repeat: u32,
    bundle: bool,
) -> (KcpConfig, KcpConfig) {
    let (mut a, mut b) = f();
    for c in [&mut a, &mut b] {
        c.rack = true;
        c.tlp = true;
        c.ack_repeat = Some(ack_repeat);
        c.bundle = bundle;
    }
    (a, b)
}

fn fast3() -> (KcpConfig, KcpConfig) {
    let c = KcpConfig {
        snd_wnd: 128,
        rcv_wnd: 128,
        ..KcpConfig::fast3()
    };
    (c.clone(), c)
}

const MODES: &[Mode] = &[
    Mode {
        name: "default (0,10,0,0)",
        published: Some((740, 1507)),
        configs: || {
            let c = base(false, 10, 0, false);
            (c.clone(), c)
        },
    },
    Mode {
        name: "normal  (0,10,0,1)",
        published: Some((156, 571)),
        configs: || {
            let c = base(false, 10, 0, true);
            (c.clone(), c)
        },
    },
    Mode {
        name: "fast    (2,10,2,1)",
        published: Some((138, 392)),
        configs: fast_c,
    },
    Mode {
        name: "kcptun fast3 (1,10,2,1)",
        published: None,
        configs: fast3,
    },
    Mode {
        name: "normal + ack_nodelay",
        published: None,
        configs: || {
            with_ack_nodelay(|| {
                let c = base(false, 10, 0, true);
                (c.clone(), c)
            })
        },
    },
    Mode {
        name: "fast + ack_nodelay",
        published: None,
        configs: || with_ack_nodelay(fast_c),
    },
    Mode {
        name: "fast3 + ack_nodelay",
        published: None,
        configs: || with_ack_nodelay(fast3),
    },
    Mode {
        name: "fast + rack + tlp",
        published: None,
        configs: || with_recovery(fast_c, 0, false),
    },
    Mode {
        name: "fast + rack+tlp+ackrep 2",
        published: None,
        configs: || with_recovery(fast_c, 2, false),
    },
    Mode {
        name: "fast3 + rack + tlp",
        published: None,
        configs: || with_recovery(fast3, 0, false),
    },
    Mode {
        name: "fast3 + rack+tlp+ackrep 2",
        published: None,
        configs: || with_recovery(fast3, 2, false),
    },
    Mode {
        name: "fast + rack+tlp+bundle",
        published: None,
        configs: || with_recovery(fast_c, 0, true),
    },
    Mode {
        name: "fast3 + rack+tlp+bundle",
        published: None,
        configs: || with_recovery(fast3, 0, true),
    },
    Mode {
        name: "fast3 + bundle",
        published: None,
        configs: || {
            let (mut a, mut b) = fast3();
            a.bundle = true;
            b.bundle = true;
            (a, b)
        },
    },
];

/// One run: returns the RTT of every echo, in order.
fn run(mode: &Mode, seed: u64) -> Vec<u32> {
    let (ca, cb) = (mode.configs)();
    let a = Kcp::with_config(CONV, &ca).expect("valid sender config");
    let b = Kcp::with_config(CONV, &cb).expect("valid peer config");
    let link = LinkConfig::default()
        .loss(0.05)
        .delay(30, 62)
        .reorder(false);
    let mut net =
        Network::new(NetworkConfig::symmetric(link).seed(seed), a, b).expect("valid link");

    let mut rtts = Vec::with_capacity(ECHOES);
    let mut sent = 0usize;
    let mut next_send = 0u64;
    let mut buf = [0u8; 64];
    while rtts.len() < ECHOES {
        if sent < ECHOES && net.elapsed() >= next_send {
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&(sent as u32).to_le_bytes());
            msg[4..].copy_from_slice(&net.now().to_le_bytes());
            net.send(Side::A, &msg).expect("send");
            sent += 1;
            next_send += 20;
        }
        while let Ok(n @ 1..) = net.recv(Side::B, &mut buf) {
            let echo = buf;
            net.send(Side::B, &echo[..n]).expect("echo");
        }
        while let Ok(n @ 1..) = net.recv(Side::A, &mut buf) {
            assert_eq!(n, 8, "echo size");
            let idx = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            assert_eq!(idx, rtts.len(), "echo out of order");
            let ts = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
            rtts.push(net.now().wrapping_sub(ts));
        }
        if rtts.len() == ECHOES {
            break;
        }
        // Jump to the next network event or the next 20 ms tick, whichever comes first, so the
        // applications react at the exact millisecond data arrives.
        let to_tick = (sent < ECHOES).then(|| next_send.saturating_sub(net.elapsed()));
        match (net.time_to_next_event(), to_tick) {
            (Some(e), Some(t)) if t < u64::from(e) => net.run_for(t as u32),
            (Some(_), _) => {
                net.step();
            }
            (None, Some(t)) => net.run_for(t as u32),
            (None, None) => panic!(
                "network went idle with {} echoes missing",
                ECHOES - rtts.len()
            ),
        }
    }
    rtts
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    println!(
        "KCP latency table: {ECHOES} echoes of an 8-byte message sent every 20 ms, 5 % loss each way \
         (10 % round trip),\none-way delay uniform 30-62 ms, FIFO links, windows 128/128; \
         {SEEDS} seeds, RTT in ms (max = mean of the seeds' maxima).\n"
    );
    println!(
        "{:<26} {:>6} {:>6} {:>6} {:>6} {:>6}   {:>12}",
        "mode", "avg", "p50", "p99", "max", "worst", "C ikcp avg/max"
    );
    for mode in MODES {
        let mut all = Vec::new();
        let mut max_sum = 0u64;
        for seed in 1..=SEEDS {
            let rtts = run(mode, seed);
            max_sum += u64::from(*rtts.iter().max().expect("echoes"));
            all.extend(rtts);
        }
        all.sort_unstable();
        let avg = all.iter().map(|&r| u64::from(r)).sum::<u64>() as f64 / all.len() as f64;
        let published = mode
            .published
            .map_or_else(|| "-".to_string(), |(a, m)| format!("{a}/{m}"));
        println!(
            "{:<26} {:>6.0} {:>6} {:>6} {:>6.0} {:>6}   {:>12}",
            mode.name,
            avg,
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            max_sum as f64 / SEEDS as f64,
            all.last().copied().unwrap_or(0),
            published
        );
    }
}
