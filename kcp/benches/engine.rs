//! Engine micro-benchmarks (criterion, bytes/s):
//! - `transfer`: bulk engine-to-engine transfer in memory at mtu 1400 (stream mode, 1024-segment
//!   windows, `nc`, no loss); datagrams are passed directly between the two engines, no simulator.
//! - `flush_full_window`: one flush that transmits a full 128-segment send window.
//! - `input_acks`: input of one datagram carrying 50 ACK segments for data in flight.
//!
//! ```text
//! cargo bench -p rkcp-engine --bench engine -- --warm-up-time 1 --measurement-time 3
//! ```

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rkcp_engine::Freshness;
use rkcp_engine::{Command, Kcp, KcpConfig, OVERHEAD, SegmentHeader};
use std::hint::black_box;

const CONV: u32 = 0xC0FF_EE00;

/// Datagrams emitted by one engine in one call, stored back to back.
#[derive(Default)]
struct Wire {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Wire {
    fn push(&mut self, d: &[u8]) {
        self.bytes.extend_from_slice(d);
        self.ends.push(self.bytes.len());
    }

    fn drain_into(&mut self, now: u32, k: &mut Kcp) {
        let mut start = 0;
        for &end in &self.ends {
            k.input(now, &self.bytes[start..end], Freshness::Fresh)
                .expect("valid datagram");
            start = end;
        }
        self.bytes.clear();
        self.ends.clear();
    }
}

fn bulk_config() -> KcpConfig {
    KcpConfig {
        nodelay: true,
        interval: 10,
        resend: 2,
        nc: true,
        snd_wnd: 1024,
        rcv_wnd: 1024,
        mtu: 1400,
        stream: true,
        ..KcpConfig::default()
    }
}

/// Moves `total` bytes from a fresh engine A to a fresh engine B; returns the bytes received.
fn transfer(total: usize, chunk: &[u8], sink: &mut [u8]) -> usize {
    let cfg = bulk_config();
    let mut a = Kcp::with_config(CONV, &cfg).expect("config");
    let mut b = Kcp::with_config(CONV, &cfg).expect("config");
    let (mut ab, mut ba) = (Wire::default(), Wire::default());
    let mut now = 1u32;
    let (mut written, mut read) = (0usize, 0usize);
    let high_water = 2 * cfg.snd_wnd as usize;
    while read < total {
        while written < total && a.wait_snd() < high_water {
            let n = chunk.len().min(total - written);
            written += a.send(&chunk[..n]).expect("send");
        }
        a.update(now, &mut |d: &mut [u8]| ab.push(d));
        ab.drain_into(now, &mut b);
        b.update(now, &mut |d: &mut [u8]| ba.push(d));
        loop {
            let n = b.recv(sink).expect("recv");
            if n == 0 {
                break;
            }
            read += n;
        }
        ba.drain_into(now, &mut a);
        now = now.wrapping_add(1);
    }
    read
}

fn bench_transfer(c: &mut Criterion) {
    const TOTAL: usize = 32 << 20;
    let chunk = vec![0x5Au8; 64 * 1024];
    let mut sink = vec![0u8; 64 * 1024];
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.sample_size(10);
    g.bench_function("transfer_mtu1400_32MiB", |bch| {
        bch.iter(|| {
            let got = transfer(TOTAL, &chunk, &mut sink);
            assert_eq!(got, TOTAL);
            black_box(got)
        })
    });
    g.finish();
}

/// An engine with `segs` full segments queued and a peer window that lets them all go out.
fn loaded_engine(segs: usize) -> Kcp {
    let mut cfg = bulk_config();
    cfg.snd_wnd = segs as u32;
    cfg.stream = false;
    let mut k = Kcp::with_config(CONV, &cfg).expect("config");
    // Tell the engine the peer's window is open as wide as ours (a WINS from the peer).
    let mut wins = [0u8; OVERHEAD];
    SegmentHeader {
        conv: CONV,
        cmd: Command::Wins,
        frg: 0,
        wnd: segs as u16,
        ts: 0,
        sn: 0,
        una: 0,
        len: 0,
    }
    .encode(&mut wins);
    k.input(0, &wins, Freshness::Fresh).expect("wins");
    let payload = vec![0xA5u8; k.mss()];
    for _ in 0..segs {
        k.send(&payload).expect("send");
    }
    k
}

fn bench_flush(c: &mut Criterion) {
    const SEGS: usize = 128;
    let probe = loaded_engine(1);
    let bytes = SEGS * probe.mss();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("flush_full_window_128x1376", |bch| {
        bch.iter_batched(
            || loaded_engine(SEGS),
            |mut k| {
                let mut out = 0usize;
                k.flush(1, &mut |d: &mut [u8]| out += d.len());
                assert!(out >= bytes);
                k
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_input_acks(c: &mut Criterion) {
    const ACKS: u32 = 50;
    // An ACK-only datagram: 50 ACKs for sn 0..50, as a receiver's flush would pack them.
    let mut dgram = vec![0u8; ACKS as usize * OVERHEAD];
    for sn in 0..ACKS {
        SegmentHeader {
            conv: CONV,
            cmd: Command::Ack,
            frg: 0,
            wnd: 1024,
            ts: 1,
            sn,
            una: 0,
            len: 0,
        }
        .encode(&mut dgram[sn as usize * OVERHEAD..]);
    }
    let sent = || {
        let mut k = loaded_engine(64);
        k.flush(1, &mut |_: &mut [u8]| {});
        k
    };
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Bytes(dgram.len() as u64));
    g.bench_function("input_50_acks", |bch| {
        bch.iter_batched(
            sent,
            |mut k| {
                k.input(5, black_box(&dgram), Freshness::Fresh)
                    .expect("acks");
                k
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_transfer, bench_flush, bench_input_acks);
criterion_main!(benches);
