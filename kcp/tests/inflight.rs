//! `max_inflight`: the cap on sent, unacknowledged segments (beyond kcp-go, invisible on the wire).

use rkcp_engine::Freshness;
use std::collections::{BTreeSet, VecDeque};

use rkcp_engine::sim::Rng;
use rkcp_engine::{Command, Kcp, KcpConfig, OVERHEAD, SegmentHeader};

fn headers(dgram: &[u8]) -> Vec<SegmentHeader> {
    let mut out = Vec::new();
    let mut rest = dgram;
    while rest.len() >= OVERHEAD {
        let h = SegmentHeader::decode(rest).expect("our own output decodes");
        out.push(h);
        rest = &rest[OVERHEAD + h.len as usize..];
    }
    out
}

fn config(cap: Option<u32>) -> KcpConfig {
    KcpConfig {
        snd_wnd: 4096,
        rcv_wnd: 4096,
        stream: true,
        max_inflight: cap,
        ..KcpConfig::fast3()
    }
}

/// With RACK and the tail loss probe (they only resend segments already in flight).
fn with_recovery(cap: Option<u32>) -> KcpConfig {
    KcpConfig {
        rack: true,
        tlp: true,
        ..config(cap)
    }
}

/// Runs a one-way transfer of `total` bytes with `loss` on both directions; returns the largest number of
/// sent-but-unacknowledged segments seen, and checks every byte arrives once and in order.
fn transfer(cap: Option<u32>, loss: f64, seed: u64, total: usize) -> usize {
    transfer_with(&config(cap), loss, seed, total)
}

fn transfer_with(cfg: &KcpConfig, loss: f64, seed: u64, total: usize) -> usize {
    let mut rng = Rng::new(seed);
    let mut a = Kcp::with_config(1, cfg).unwrap();
    let mut b = Kcp::with_config(1, &config(None)).unwrap();
    let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 251) as u8).collect();
    a.send(&data).unwrap();
    // Datagrams in flight, delivered 20 ms after they were sent.
    let mut to_b: VecDeque<(u32, Vec<u8>)> = VecDeque::new();
    let mut to_a: VecDeque<(u32, Vec<u8>)> = VecDeque::new();
    let mut unacked = BTreeSet::new();
    let mut una = 0u32;
    let mut max_seen = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    for now in 0..60_000u32 {
        while to_b.front().is_some_and(|(t, _)| *t <= now) {
            let (_, d) = to_b.pop_front().unwrap();
            b.input(now, &d, Freshness::Fresh).unwrap();
        }
        while to_a.front().is_some_and(|(t, _)| *t <= now) {
            let (_, d) = to_a.pop_front().unwrap();
            for h in headers(&d) {
                una = una.max(h.una);
                if h.cmd == Command::Ack {
                    unacked.remove(&h.sn);
                }
            }
            unacked.retain(|&sn| sn >= una);
            a.input(now, &d, Freshness::Fresh).unwrap();
        }
        a.update(now, &mut |d: &mut [u8]| {
            for h in headers(d) {
                if h.cmd == Command::Push && h.sn >= una {
                    unacked.insert(h.sn);
                }
            }
            if !rng.chance(loss) {
                to_b.push_back((now + 20, d.to_vec()));
            }
        });
        max_seen = max_seen.max(unacked.len());
        b.update(now, &mut |d: &mut [u8]| {
            if !rng.chance(loss) {
                to_a.push_back((now + 20, d.to_vec()));
            }
        });
        loop {
            match b.recv(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        if got.len() == total {
            assert_eq!(got, data, "seed {seed}: bytes differ");
            return max_seen;
        }
    }
    panic!(
        "seed {seed}: transfer did not finish ({} of {total} bytes)",
        got.len()
    );
}

#[test]
fn cap_bounds_unacknowledged_segments_under_loss() {
    for seed in 0..20 {
        let max = transfer(Some(64), 0.1, seed, 1_000_000);
        assert!(
            max <= 64,
            "seed {seed}: {max} segments in flight with a cap of 64"
        );
        assert!(max >= 60, "seed {seed}: the cap is reached ({max})");
    }
}

/// RACK and TLP keep `max_inflight`'s bound: they only resend what is already in flight.
#[test]
fn cap_holds_with_rack_and_tail_loss_probe() {
    for seed in 0..10 {
        let max = transfer_with(&with_recovery(Some(64)), 0.1, seed, 500_000);
        assert!(
            (60..=64).contains(&max),
            "seed {seed}: {max} segments in flight with a cap of 64"
        );
    }
}

#[test]
fn without_cap_the_window_is_the_only_limit() {
    let max = transfer(None, 0.1, 7, 1_000_000);
    assert!(max > 64, "no cap: {max} in flight");
}

#[test]
fn acks_beyond_a_hole_clock_out_new_segments() {
    let mut a = Kcp::with_config(1, &config(Some(8))).unwrap();
    let mut b = Kcp::with_config(1, &config(None)).unwrap();
    a.send(&vec![1u8; 100 * 1376]).unwrap();
    let mut first = Vec::new();
    a.update(0, &mut |d: &mut [u8]| first.push(d.to_vec()));
    let sent: Vec<u32> = first
        .iter()
        .flat_map(|d| headers(d))
        .filter(|h| h.cmd == Command::Push)
        .map(|h| h.sn)
        .collect();
    assert_eq!(
        sent,
        (0..8).collect::<Vec<_>>(),
        "the cap limits the first flight"
    );
    // sn 0 is lost; 1..=7 arrive and are acknowledged (una stays 0).
    for d in &first[1..] {
        b.input(5, d, Freshness::Fresh).unwrap();
    }
    let mut acks = Vec::new();
    b.update(10, &mut |d: &mut [u8]| acks.push(d.to_vec()));
    for d in &acks {
        a.input(15, d, Freshness::Fresh).unwrap();
    }
    let mut second = Vec::new();
    a.update(20, &mut |d: &mut [u8]| second.push(d.to_vec()));
    let new: Vec<u32> = second
        .iter()
        .flat_map(|d| headers(d))
        .filter(|h| h.cmd == Command::Push && h.sn >= 8)
        .map(|h| h.sn)
        .collect();
    assert_eq!(
        new,
        (8..15).collect::<Vec<_>>(),
        "7 acknowledged beyond the hole: 7 new segments"
    );
}
