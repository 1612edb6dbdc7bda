//! Where the extra transmissions of a lossy bulk transfer come from (issue 14), on the simulated
//! network: 100 Mbit/s (12,500 bytes/ms), 20 ms each way, a 1 MB tail-drop queue, random loss
//! both ways, fast3 + 4096 windows + the session's 2 ms ACK delay, like the linkem sweep
//! (`cargo run -p rkcp-engine --release --example lossy_diag [seconds] [loss,...]`).
//!
//! Per controller and loss: goodput (fraction of the link), wire bytes over payload bytes
//! delivered, the retransmissions by kind (fast/RACK, early/TLP, RTO), those the receiver
//! already had (duplicates: spurious), queue drops, and the mean queue.

use rkcp_engine::sim::{LinkConfig, Network, NetworkConfig, Side};
use rkcp_engine::{Congestion, Kcp, KcpConfig};

/// 100 Mbit/s less the IP and UDP headers of a 1350-byte datagram (28 bytes), as linkem counts.
const BW: u32 = 12_246;
const DELAY: u32 = 20;
const QUEUE: usize = 1_000_000;

fn run(name: &str, cfg: &KcpConfig, loss: f64, seed: u64, secs: u64) {
    let link = LinkConfig::default()
        .loss(loss)
        .delay(DELAY, DELAY)
        .bandwidth(BW, QUEUE);
    let net_cfg = NetworkConfig::symmetric(link).seed(seed);
    let mut net = Network::new(
        net_cfg,
        Kcp::with_config(1, cfg).unwrap(),
        Kcp::with_config(1, cfg).unwrap(),
    )
    .unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut buf = vec![0u8; 1 << 16];
    let (mut got, mut qsum) = (0u64, 0u64);
    let ms_total = secs * 1000;
    let mut done_at = None;
    for t in 0..ms_total {
        if done_at.is_none() && got >= 32 << 20 {
            done_at = Some(t);
        }
        while net.kcp(Side::A).wait_snd() < 8192 {
            net.send(Side::A, &chunk).unwrap();
        }
        net.run_for(1);
        while let Ok(n @ 1..) = net.recv(Side::B, &mut buf) {
            got += n as u64;
        }
        qsum += net.queue_bytes(Side::A);
    }
    let a = net.kcp(Side::A);
    let b = net.kcp(Side::B);
    let s = a.stats();
    let unique = u64::from(a.snd_nxt());
    let first_32mib = done_at.map_or(0.0, |t| 33.554_432 / (t as f64 / 1000.0));
    println!(
        "{name:<22} {:>4.0}%  32 MiB at {first_32mib:.1} MB/s  goodput {:>5.1}%  wire/payload {:.3}  xmit/seg {:.3}  (fast {}, early {}, rto {})  dup-at-rcv {} ({:.1}% of retrans)  eifel {}  q-drops {}  q-mean {:.0} kB",
        loss * 100.0,
        got as f64 / ms_total as f64 / f64::from(BW) * 100.0,
        net.link_stats(Side::A).sent_bytes as f64 / got as f64,
        (unique + s.retrans_segs) as f64 / unique as f64,
        s.fast_retrans_segs,
        s.early_retrans_segs,
        s.lost_segs,
        b.stats().repeat_segs,
        b.stats().repeat_segs as f64 / (1.0 - loss) / s.retrans_segs.max(1) as f64 * 100.0,
        a.spurious_retrans_segs(),
        net.link_stats(Side::A).queue_drops,
        qsum as f64 / ms_total as f64 / 1000.0,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(6);
    let losses: Vec<f64> = args
        .next()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![0.0, 0.01, 0.05, 0.10]);
    let base = KcpConfig {
        snd_wnd: 4096,
        rcv_wnd: 4096,
        stream: true,
        // kcpbench: MTU 1350, 20 bytes of kcp-go nonce + CRC in front of each datagram.
        mtu: 1350,
        reserved: 20,
        ack_delay: Some(2),
        ..KcpConfig::fast3()
    };
    // The session turns RACK and TLP on with the loss-tolerant controller.
    let tolerant = KcpConfig {
        congestion: Congestion::LossTolerant,
        rack: true,
        tlp: true,
        ..base.clone()
    };
    let rate = KcpConfig {
        congestion: Congestion::DeliveryRate,
        ..base.clone()
    };
    let variants: Vec<(&str, KcpConfig)> = vec![
        (
            "tolerant ack_repeat 0",
            KcpConfig {
                ack_repeat: Some(0),
                ..tolerant.clone()
            },
        ),
        ("tolerant", tolerant),
        (
            "rate ack_repeat 0",
            KcpConfig {
                ack_repeat: Some(0),
                ..rate.clone()
            },
        ),
        ("rate", rate),
    ];
    for &loss in &losses {
        for (name, cfg) in &variants {
            run(name, cfg, loss, 1, secs);
        }
    }
}
