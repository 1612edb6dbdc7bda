//! Decoder behaviour (docs/wire-format.md#fec-decoder, #fec-autotune) through the public API: duplicates, window cap,
//! expiry, seqid wrap, autotune from (1,1), following a sender that changes `ps`, round trips
//! under loss, and arbitrary input.

use proptest::prelude::*;
use rkcp_fec::{FecDecoder, FecEncoder, FecError, HEADER_SIZE_PLUS2};

/// KCP bytes of packet `id`: the id, then `len - 4` bytes derived from it, so any rebuilt
/// packet can be checked against what was sent.
fn payload(id: u32, len: usize) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    let mut x = id.wrapping_mul(2_654_435_761) | 1;
    while v.len() < len.max(4) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}

fn check(kcp: &[u8]) -> u32 {
    let id = u32::from_le_bytes(kcp[..4].try_into().unwrap());
    assert_eq!(
        kcp,
        payload(id, kcp.len()),
        "rebuilt packet {id} is corrupt"
    );
    id
}

/// One datagram on the wire, FEC header first (crypt header space already stripped).
struct Wire {
    pkt: Vec<u8>,
    /// `Some(id)` for data packets.
    id: Option<u32>,
}

/// Encodes packet `id` of `len` KCP bytes; returns it and any parity, in wire order.
fn send(enc: &mut FecEncoder, id: u32, len: usize) -> Vec<Wire> {
    let off = enc.header_offset();
    let mut pkt = vec![0u8; off + HEADER_SIZE_PLUS2];
    pkt.extend_from_slice(&payload(id, len));
    let mut out = Vec::new();
    let mut parity = Vec::new();
    enc.encode(&mut pkt, |p| parity.push(p[off..].to_vec()));
    out.push(Wire {
        pkt: pkt[off..].to_vec(),
        id: Some(id),
    });
    out.extend(parity.into_iter().map(|pkt| Wire { pkt, id: None }));
    out
}

fn seqid(pkt: &[u8]) -> u32 {
    u32::from_le_bytes(pkt[..4].try_into().unwrap())
}

#[test]
fn duplicates_are_ignored() {
    let mut enc = FecEncoder::new(10, 3, 0).unwrap();
    let mut dec = FecDecoder::new(10, 3).unwrap();
    let w = send(&mut enc, 1, 100);
    let first = dec.decode(0, &w[0].pkt, |_| panic!()).unwrap();
    assert!(!first.duplicate);
    let again = dec.decode(0, &w[0].pkt, |_| panic!()).unwrap();
    assert!(again.duplicate);
    assert_eq!(dec.pending(), 1);
}

#[test]
fn window_is_capped_at_three_groups_and_counts_short_shards() {
    let mut enc = FecEncoder::new(10, 3, 0).unwrap();
    let mut dec = FecDecoder::new(10, 3).unwrap();
    let (mut fed, mut short) = (0usize, 0usize);
    for id in 0..200u32 {
        for w in send(&mut enc, id, 50) {
            // Keep 9 data shards of each group and no parity: nothing is ever recoverable.
            if w.id.is_some_and(|id| id % 10 != 9) {
                let out = dec
                    .decode(0, &w.pkt, |_| panic!("nothing to rebuild"))
                    .unwrap();
                fed += 1;
                short += out.short_shards;
                assert!(dec.pending() <= 39);
            }
        }
    }
    assert_eq!(dec.pending(), 39);
    assert_eq!(short, fed - 39, "every evicted entry was a data shard");
}

#[test]
fn entries_expire_after_60_s_even_across_clock_wrap() {
    for start in [0u32, u32::MAX - 30_000] {
        let mut enc = FecEncoder::new(10, 3, 0).unwrap();
        let mut dec = FecDecoder::new(10, 3).unwrap();
        for id in 0..5 {
            dec.decode(start, &send(&mut enc, id, 40)[0].pkt, |_| {})
                .unwrap();
        }
        let w = send(&mut enc, 5, 40);
        let out = dec
            .decode(start.wrapping_add(60_000), &w[0].pkt, |_| {})
            .unwrap();
        assert_eq!(
            (out.expired, dec.pending()),
            (0, 6),
            "60 s exactly is not expired"
        );
        let w = send(&mut enc, 6, 40);
        let out = dec
            .decode(start.wrapping_add(60_001), &w[0].pkt, |_| {})
            .unwrap();
        assert_eq!(out.expired, 5);
        assert_eq!(dec.pending(), 2);
    }
}

#[test]
fn seqids_wrapping_at_paws_keep_groups_and_order() {
    // The header is not Reed–Solomon coded, so rewriting seqids to the last group before
    // paws and the first after it is what an encoder near the wrap would send.
    let paws: u32 = 4_294_967_287;
    let mut enc = FecEncoder::new(10, 3, 0).unwrap();
    let mut dec = FecDecoder::new(10, 3).unwrap();
    let mut got = Vec::new();
    for id in 0..30u32 {
        for mut w in send(&mut enc, id, 20 + id as usize) {
            let s = ((u64::from(paws) - 13 + u64::from(seqid(&w.pkt))) % u64::from(paws)) as u32;
            w.pkt[..4].copy_from_slice(&s.to_le_bytes());
            if w.id.is_some_and(|id| id % 10 == 3 || id % 10 == 7) {
                continue; // two losses per group
            }
            dec.decode(0, &w.pkt, |kcp| got.push(check(kcp))).unwrap();
        }
    }
    // Groups 0 (before the wrap), 1 and 2 (after it) each rebuild their two lost packets.
    assert_eq!(got, [3, 7, 13, 17, 23, 27]);
}

/// Runs a stream through a decoder: `loss(k)` says whether wire datagram `k` is lost.
/// Returns (ids delivered directly, ids rebuilt); asserts every rebuilt packet is intact.
fn run(
    enc: &mut FecEncoder,
    dec: &mut FecDecoder,
    ids: std::ops::Range<u32>,
    len: impl Fn(u32) -> usize,
    mut loss: impl FnMut(&Wire) -> bool,
) -> (Vec<u32>, Vec<u32>) {
    let (mut direct, mut rebuilt) = (Vec::new(), Vec::new());
    for id in ids {
        for w in send(enc, id, len(id)) {
            if loss(&w) {
                continue;
            }
            if let Some(id) = w.id {
                direct.push(id);
            }
            dec.decode(0, &w.pkt, |kcp| rebuilt.push(check(kcp)))
                .unwrap();
        }
    }
    (direct, rebuilt)
}

#[test]
fn decoder_starting_at_1_1_locks_onto_10_3() {
    let mut enc = FecEncoder::new(10, 3, 0).unwrap();
    let mut dec = FecDecoder::new(1, 1).unwrap();
    // Two clean groups let autotune see a full data run and a full parity run; a third one
    // agreeing with the new parameters re-enables reconstruction. Nothing rebuilt meanwhile
    // may be garbage (`run` checks every rebuilt packet).
    run(&mut enc, &mut dec, 0..30, |_| 100, |_| false);
    assert_eq!((dec.data_shards(), dec.parity_shards()), (10, 3));
    // From now on every group loses 3 data packets, and all are rebuilt.
    let (direct, rebuilt) = run(
        &mut enc,
        &mut dec,
        30..230,
        |i| 40 + (i as usize * 7) % 900,
        |w| w.id.is_some_and(|id| matches!(id % 10, 1 | 4 | 8)),
    );
    assert_eq!(direct.len() + rebuilt.len(), 200);
    assert_eq!(rebuilt.len(), 60);
}

#[test]
fn decoder_follows_an_encoder_changing_parity_mid_stream() {
    let mut enc = FecEncoder::new(10, 3, 0).unwrap();
    let mut dec = FecDecoder::new(10, 3).unwrap();
    let mut id = 0u32;
    for ps in [1usize, 5, 2, 3] {
        enc.set_parity_shards(ps).unwrap();
        // Transition: clean groups until autotune has retuned (bounded by the 258-sample ring).
        let mut groups = 0;
        while (dec.data_shards(), dec.parity_shards()) != (10, ps) {
            run(&mut enc, &mut dec, id..id + 10, |_| 64, |_| false);
            id += 10;
            groups += 1;
            assert!(groups <= 30, "decoder did not follow ps={ps}");
        }
        // One more group agreeing with the new parameters re-enables reconstruction.
        run(&mut enc, &mut dec, id..id + 10, |_| 64, |_| false);
        id += 10;
        eprintln!("ps={ps}: followed after {groups} groups");
        // Then lose exactly ps data packets per group: everything must come back.
        let (direct, rebuilt) = run(
            &mut enc,
            &mut dec,
            id..id + 300,
            |i| 30 + (i as usize % 50),
            |w| w.id.is_some_and(|id| (id % 10) < ps as u32),
        );
        assert_eq!(rebuilt.len(), 30 * ps, "ps={ps}");
        assert_eq!(direct.len() + rebuilt.len(), 300);
        id += 300;
    }
}

#[test]
fn lossy_transition_never_rebuilds_garbage() {
    // Losses during the switch: whatever is rebuilt must be intact (checked by `run`).
    let mut enc = FecEncoder::new(10, 3, 0).unwrap();
    let mut dec = FecDecoder::new(10, 3).unwrap();
    let mut state = 99u64;
    let mut lossy = move |_: &Wire| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % 100 < 12
    };
    let mut id = 0;
    for ps in [1usize, 6, 2, 4, 1, 3] {
        enc.set_parity_shards(ps).unwrap();
        run(
            &mut enc,
            &mut dec,
            id..id + 400,
            |i| 20 + (i as usize % 300),
            &mut lossy,
        );
        id += 400;
    }
}

#[test]
fn rejects_malformed_packets_without_state_change() {
    let mut dec = FecDecoder::new(10, 3).unwrap();
    assert!(matches!(
        dec.decode(0, &[0, 0, 0, 0, 0xF1, 0, 2], |_| {}),
        Err(FecError::Truncated { len: 7, min: 8 })
    ));
    assert!(matches!(
        dec.decode(0, &[0, 0, 0, 0, 0x51, 0, 2, 0], |_| {}),
        Err(FecError::NotFec { kind: 0x51 })
    ));
    let mut big = vec![0u8; 1501];
    big[4] = 0xF1;
    assert!(matches!(
        dec.decode(0, &big, |_| {}),
        Err(FecError::TooLarge { .. })
    ));
    assert_eq!(dec.pending(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random (ds, ps), packet sizes, header offset and loss of up to ps shards per group:
    /// every data packet is either delivered or rebuilt intact.
    #[test]
    fn round_trip_with_up_to_ps_losses_per_group(
        ds in 1usize..12,
        ps in 1usize..5,
        offset in prop_oneof![Just(0usize), Just(20usize)],
        groups in 1usize..12,
        lens in proptest::collection::vec(4usize..1400, 1..40),
        seed: u64,
    ) {
        let mut enc = FecEncoder::new(ds, ps, offset).unwrap();
        let mut dec = FecDecoder::new(ds, ps).unwrap();
        let n = ds + ps;
        let mut state = seed | 1;
        let mut wire_idx = 0usize;
        let mut lost_in_group: Vec<usize> = Vec::new();
        let total = (groups * ds) as u32;
        let (direct, rebuilt) = run(&mut enc, &mut dec, 0..total, |i| lens[i as usize % lens.len()], |_| {
            if wire_idx.is_multiple_of(n) {
                // Choose up to ps distinct positions of this group to lose.
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                let k = (state % (ps as u64 + 1)) as usize;
                lost_in_group.clear();
                while lost_in_group.len() < k {
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                    let p = (state % n as u64) as usize;
                    if !lost_in_group.contains(&p) {
                        lost_in_group.push(p);
                    }
                }
            }
            let lost = lost_in_group.contains(&(wire_idx % n));
            wire_idx += 1;
            lost
        });
        // With ps >= ds, parity arriving after its group completed rebuilds a duplicate
        // (kcp-go does the same; KCP discards it): compare as sets.
        let mut all: Vec<u32> = direct.into_iter().chain(rebuilt).collect();
        all.sort_unstable();
        all.dedup();
        prop_assert_eq!(all, (0..total).collect::<Vec<_>>());
    }

    /// Arbitrary bytes (mostly with an FEC type so they get past the first check), mixed with
    /// a real stream, never panic and never hand out more than the window can hold.
    #[test]
    fn arbitrary_input_never_panics(
        ds in 1usize..20,
        ps in 1usize..6,
        junk in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..1600), any::<u32>(), any::<bool>(), any::<u32>()),
            0..80,
        ),
    ) {
        let mut dec = FecDecoder::new(ds, ps).unwrap();
        let mut enc = FecEncoder::new(10, 3, 0).unwrap();
        for (i, (mut bytes, seq, parity, now)) in junk.into_iter().enumerate() {
            if bytes.len() >= 6 {
                bytes[..4].copy_from_slice(&(seq % 64).to_le_bytes());
                bytes[4] = if parity { 0xF2 } else { 0xF1 };
                bytes[5] = 0;
            }
            let _ = dec.decode(now, &bytes, |kcp| assert!(kcp.len() <= 1500));
            for w in send(&mut enc, i as u32, 10 + i) {
                let _ = dec.decode(now, &w.pkt, |_| {});
            }
            prop_assert!(dec.pending() <= 3 * 256 + 1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Reordering (each datagram delayed by up to `spread` positions) on top of losing up to
    /// ps shards per group: the ordered window still rebuilds everything.
    #[test]
    fn round_trip_with_reordering(
        ds in 2usize..11,
        ps in 1usize..4,
        spread in 1usize..6,
        seed: u64,
    ) {
        let mut enc = FecEncoder::new(ds, ps, 0).unwrap();
        let mut dec = FecDecoder::new(ds, ps).unwrap();
        let total = (20 * ds) as u32;
        let mut wire: Vec<Wire> = Vec::new();
        for id in 0..total {
            wire.extend(send(&mut enc, id, 16 + (id as usize * 37) % 700));
        }
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Lose one shard in every group (ps >= 1), then reorder locally.
        let n = ds + ps;
        let mut kept: Vec<(usize, Wire)> = Vec::new();
        for (k, w) in wire.into_iter().enumerate() {
            let lost_pos = (k / n * 7 + (seed as usize % n)) % n;
            if k % n != lost_pos {
                kept.push((k + (next() % (spread as u64 + 1)) as usize, w));
            }
        }
        kept.sort_by_key(|(key, _)| *key);
        let mut got: Vec<u32> = Vec::new();
        for (_, w) in &kept {
            if let Some(id) = w.id {
                got.push(id);
            }
            dec.decode(0, &w.pkt, |kcp| got.push(check(kcp))).unwrap();
        }
        got.sort_unstable();
        got.dedup();
        prop_assert_eq!(got, (0..total).collect::<Vec<_>>());
    }
}
