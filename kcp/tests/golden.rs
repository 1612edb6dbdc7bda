//! Golden traces: fixed seeded simulator runs whose every emitted datagram (sender, virtual time,
//! bytes) is folded into a digest recorded at the engine of commit f13f66e (before the engine was
//! split into modules and gained congestion-control options). The default configurations must keep
//! reproducing them exactly: kcp-go's behaviour is the default, byte for byte and millisecond for
//! millisecond.

use rkcp_engine::sim::{LinkConfig, Network, NetworkConfig, Side};
use rkcp_engine::{Kcp, KcpConfig};
use std::sync::{Arc, Mutex};

/// FNV-1a, 64 bits: enough to tell traces apart, no dependency.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[derive(Default)]
struct Trace {
    hash: Option<Fnv>,
    datagrams: u64,
    bytes: u64,
}

/// Runs one scenario and returns `(digest, datagrams, bytes)` of everything both engines emitted.
fn run(cfg: &KcpConfig, link: LinkConfig, seed: u64) -> (u64, u64, u64) {
    let a = Kcp::with_config(9, cfg).unwrap();
    let b = Kcp::with_config(9, cfg).unwrap();
    let mut net = Network::new(
        NetworkConfig::symmetric(link)
            .seed(seed)
            .start_time(u32::MAX - 3_000),
        a,
        b,
    )
    .unwrap();
    let trace = Arc::new(Mutex::new(Trace::default()));
    let sink = Arc::clone(&trace);
    net.set_observer(Some(Box::new(move |side, now, d: &[u8]| {
        let mut t = sink.lock().unwrap();
        let h = t.hash.get_or_insert_with(Fnv::new);
        h.bytes(&[side as u8]);
        h.bytes(&now.to_le_bytes());
        h.bytes(&(d.len() as u32).to_le_bytes());
        h.bytes(d);
        t.datagrams += 1;
        t.bytes += d.len() as u64;
    })));
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i * 31 + i / 977) as u8)
        .collect();
    let (mut sent, mut got, mut echoed) = (0usize, 0usize, 0usize);
    let mut buf = vec![0u8; 1 << 16];
    let wnd = cfg.snd_wnd as usize;
    let done = net.run_until(1_200_000, |n| {
        // A bulk transfer A -> B kept two windows deep, in 1000-byte writes; B echoes a short
        // message for every 20 kB it reads; A reads the echoes.
        while sent < data.len() && n.kcp(Side::A).wait_snd() < 2 * wnd {
            let end = (sent + 1000).min(data.len());
            sent += n.send(Side::A, &data[sent..end]).unwrap();
        }
        loop {
            match n.recv(Side::B, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    assert_eq!(&buf[..k], &data[got..got + k]);
                    got += k;
                }
            }
        }
        while echoed < got / 20_000 {
            n.send(Side::B, &[echoed as u8; 40]).unwrap();
            echoed += 1;
        }
        while let Ok(1..) = n.recv(Side::A, &mut buf) {}
        got == data.len()
    });
    assert!(done, "transfer did not finish");
    net.run_for(2_000);
    let t = trace.lock().unwrap();
    (t.hash.map_or(0, |h| h.0), t.datagrams, t.bytes)
}

fn scenarios() -> Vec<(&'static str, KcpConfig, LinkConfig, u64)> {
    let lossy = LinkConfig::default().loss(0.05).delay(10, 30);
    let reorder = LinkConfig::default()
        .loss(0.03)
        .delay(5, 60)
        .reorder(true)
        .duplicate(0.02);
    let capped = LinkConfig::default()
        .loss(0.01)
        .delay(20, 20)
        .bandwidth(500, 40_000);
    let big = |c: KcpConfig| KcpConfig {
        snd_wnd: 128,
        rcv_wnd: 128,
        ..c
    };
    let stream = |c: KcpConfig| KcpConfig { stream: true, ..c };
    let cwnd = |c: KcpConfig| KcpConfig { nc: false, ..c };
    vec![
        ("default", KcpConfig::default(), lossy.clone(), 1),
        (
            "default-reorder",
            stream(KcpConfig::default()),
            reorder.clone(),
            2,
        ),
        ("normal", big(KcpConfig::normal()), lossy.clone(), 3),
        (
            "normal-cwnd",
            big(cwnd(KcpConfig::normal())),
            reorder.clone(),
            4,
        ),
        ("fast", stream(big(KcpConfig::fast())), lossy.clone(), 5),
        ("fast-cwnd", big(cwnd(KcpConfig::fast())), capped.clone(), 6),
        ("fast2", big(KcpConfig::fast2()), reorder.clone(), 7),
        (
            "fast2-cwnd",
            stream(big(cwnd(KcpConfig::fast2()))),
            lossy.clone(),
            8,
        ),
        ("fast3", stream(big(KcpConfig::fast3())), capped.clone(), 9),
        (
            "fast3-cwnd",
            big(cwnd(KcpConfig::fast3())),
            lossy.clone(),
            10,
        ),
        (
            "fast3-acknodelay",
            KcpConfig {
                ack_nodelay: true,
                ..stream(big(KcpConfig::fast3()))
            },
            reorder.clone(),
            11,
        ),
        (
            "fast3-inflight",
            KcpConfig {
                snd_wnd: 1024,
                rcv_wnd: 1024,
                max_inflight: Some(60),
                ..stream(KcpConfig::fast3())
            },
            capped.clone(),
            12,
        ),
        (
            "default-writedelay",
            KcpConfig {
                write_delay: true,
                ..big(KcpConfig::default())
            },
            capped,
            13,
        ),
    ]
}

/// Recorded at commit f13f66e: `(name, digest, datagrams, bytes)`.
const GOLDEN: &[(&str, u64, u64, u64)] = &[
    ("default", 0x764e2b161abf88cb, 1431, 1114264),
    ("default-reorder", 0xfe478a2cf1dabef3, 1185, 1157216),
    ("normal", 0x563ba7461585b71b, 1222, 1202512),
    ("normal-cwnd", 0xb56450536ae8a632, 1798, 1286192),
    ("fast", 0xcaf70ccc015fa17a, 858, 1120640),
    ("fast-cwnd", 0xd854d2049241ee99, 1321, 1057664),
    ("fast2", 0x28206e7134487603, 2029, 2013192),
    ("fast2-cwnd", 0x8f9b74ab86df7234, 1231, 1177216),
    ("fast3", 0xc5c4a0cc2137cc05, 1904, 2272840),
    ("fast3-cwnd", 0x452f8db02130fe69, 1734, 1185168),
    ("fast3-acknodelay", 0x1b844b88cfcba714, 3542, 2478920),
    ("fast3-inflight", 0xf93cf909305a7e83, 1314, 1485880),
    ("default-writedelay", 0xe4aa8ad6ba6b85de, 1252, 1057160),
];

#[test]
fn default_configurations_reproduce_the_recorded_traces() {
    let mut got = Vec::new();
    for (name, cfg, link, seed) in scenarios() {
        let (h, n, b) = run(&cfg, link, seed);
        got.push((name, h, n, b));
    }
    let listing: String = got
        .iter()
        .map(|(name, h, n, b)| format!("    (\"{name}\", 0x{h:016x}, {n}, {b}),\n"))
        .collect();
    println!("{listing}");
    assert_eq!(got.len(), GOLDEN.len(), "recorded traces:\n{listing}");
    for (g, r) in got.iter().zip(GOLDEN) {
        assert_eq!(g, r, "trace {} differs; all traces now:\n{listing}", g.0);
    }
}
