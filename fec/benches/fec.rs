//! FEC encode and decode throughput, 10/3, in the shape of kcp-go's `BenchmarkFECEncode` /
//! `BenchmarkFECDecode` (fec_test.go) so the figures compare directly:
//! * encode: bytes = datagram length per data packet encoded (parity emission included);
//! * decode: one group per iteration, one data shard lost (rotating), bytes = 13 x datagram
//!   length per group (kcp-go's decode bench also counts every shard slot, lost ones included).
//!
//! Sizes: 1350 (kcptun's default MTU) and 1500 (kcp-go's bench payload).

use criterion::{BenchmarkId, Criterion, Throughput};
use rkcp_fec::{FecDecoder, FecEncoder};
use std::hint::black_box;

const DS: usize = 10;
const PS: usize = 3;

fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("fec_encode_10_3");
    for size in [1350usize, 1500] {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let mut enc = FecEncoder::new(DS, PS, 0).unwrap();
            let mut pkt = pseudo_random(size, 7);
            b.iter(|| {
                enc.encode(black_box(&mut pkt), |p| {
                    black_box(p);
                });
            });
        });
    }
    g.finish();
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("fec_decode_10_3_one_loss");
    for size in [1350usize, 1500] {
        // 16 distinct groups, encoded once; seqids are rewritten as the bench advances.
        let mut enc = FecEncoder::new(DS, PS, 0).unwrap();
        let mut groups: Vec<Vec<Vec<u8>>> = Vec::new();
        for gi in 0..16u32 {
            let mut group = Vec::new();
            for k in 0..DS as u32 {
                let mut pkt = pseudo_random(size, gi * 100 + k);
                let mut parity = Vec::new();
                enc.encode(&mut pkt, |p| parity.push(p.to_vec()));
                group.push(pkt);
                group.append(&mut parity);
            }
            // Lose one data shard per group, a different one each time.
            group.remove(gi as usize % DS);
            groups.push(group);
        }
        g.throughput(Throughput::Bytes(((DS + PS) * size) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            let mut dec = FecDecoder::new(DS, PS).unwrap();
            let mut base: u32 = 0;
            let mut gi = 0;
            b.iter(|| {
                let n_groups = groups.len();
                let lost = gi % DS;
                let group = &mut groups[gi];
                gi = (gi + 1) % n_groups;
                let mut recovered = 0;
                for (k, pkt) in group.iter_mut().enumerate() {
                    let idx = if k >= lost { k + 1 } else { k } as u32;
                    pkt[..4].copy_from_slice(&(base + idx).to_le_bytes());
                    let out = dec
                        .decode(0, black_box(pkt), |kcp| {
                            black_box(kcp);
                        })
                        .unwrap();
                    recovered += out.recovered;
                }
                assert_eq!(recovered, 1);
                base = base.wrapping_add((DS + PS) as u32);
            });
        });
    }
    g.finish();
}

// Hand-written `main` instead of `criterion_group!`, whose generated `pub fn` trips `missing_docs`.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_encode(&mut c);
    bench_decode(&mut c);
    c.final_summary();
}
