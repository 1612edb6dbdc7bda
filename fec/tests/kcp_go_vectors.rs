//! docs/wire-format.md#vectors (FEC, ds=3 ps=2), produced by kcp-go 5.6.1: encoder output byte for
//! byte with header offsets 0 and 20, and the decoder rebuilding data1 and data2.

use rkcp_fec::{FecDecoder, FecEncoder};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const PAYLOADS: [&[u8]; 3] = [b"ABCDEFGHIJ", b"xyz", b"0123456789abcdef"];
const DATA: [&str; 3] = [
    "00000000 f100 0c00 4142434445464748494a",
    "01000000 f100 0500 78797a",
    "02000000 f100 1200 30313233343536373839616263646566",
];
const PARITY: [&str; 2] = [
    "03000000 f200 1b00090a0b777173717f7173616263646566",
    "04000000 f200 0000afb0ad716c7b7e2d00175b5157454349",
];

/// Encodes the three payloads; returns the datagrams in wire order.
fn encode(offset: usize) -> Vec<Vec<u8>> {
    let mut enc = FecEncoder::new(3, 2, offset).unwrap();
    let mut wire = Vec::new();
    for p in PAYLOADS {
        let mut pkt = vec![0xEEu8; offset + 8];
        pkt.extend_from_slice(p);
        let mut parity = Vec::new();
        enc.encode(&mut pkt, |b| parity.push(b.to_vec()));
        wire.push(pkt);
        wire.append(&mut parity);
    }
    wire
}

#[test]
fn encoder_matches_kcp_go_at_offset_0() {
    let wire = encode(0);
    let want: Vec<Vec<u8>> = DATA.iter().chain(&PARITY).map(|s| hex(s)).collect();
    assert_eq!(wire, want);
}

#[test]
fn encoder_matches_kcp_go_at_offset_20() {
    let wire = encode(20);
    let want: Vec<Vec<u8>> = DATA.iter().chain(&PARITY).map(|s| hex(s)).collect();
    assert_eq!(wire.len(), 5);
    for (got, want) in wire.iter().zip(&want) {
        assert_eq!(got.len(), want.len() + 20);
        assert_eq!(&got[20..], &want[..]);
    }
    // Data packets keep the caller's reserved bytes untouched (the crypt layer fills them).
    for d in &wire[..3] {
        assert!(d[..20].iter().all(|&b| b == 0xEE));
    }
}

#[test]
fn decoder_rebuilds_data1_and_data2_from_data0_and_parity() {
    let mut dec = FecDecoder::new(3, 2).unwrap();
    let mut rebuilt = Vec::new();
    let mut recovered = 0;
    for s in [DATA[0], PARITY[0], PARITY[1]] {
        let out = dec
            .decode(0, &hex(s), |kcp| rebuilt.push(kcp.to_vec()))
            .unwrap();
        recovered += out.recovered;
    }
    assert_eq!(recovered, 2);
    assert_eq!(rebuilt, [PAYLOADS[1].to_vec(), PAYLOADS[2].to_vec()]);
}

#[test]
fn every_two_shard_loss_of_the_vector_group_is_rebuilt() {
    let wire: Vec<Vec<u8>> = DATA.iter().chain(&PARITY).map(|s| hex(s)).collect();
    for a in 0..5 {
        for b in a + 1..5 {
            let mut dec = FecDecoder::new(3, 2).unwrap();
            let mut got = vec![None; 3];
            for (k, pkt) in wire.iter().enumerate() {
                if k == a || k == b {
                    continue;
                }
                if k < 3 {
                    got[k] = Some(pkt[8..].to_vec());
                }
                let mut rebuilt = Vec::new();
                dec.decode(0, pkt, |kcp| rebuilt.push(kcp.to_vec()))
                    .unwrap();
                let missing: Vec<usize> = (0..3).filter(|&i| got[i].is_none()).collect();
                if !rebuilt.is_empty() {
                    assert_eq!(rebuilt.len(), missing.len());
                    for (i, r) in missing.into_iter().zip(rebuilt) {
                        got[i] = Some(r);
                    }
                }
            }
            let got: Vec<Vec<u8>> = got.into_iter().map(Option::unwrap).collect();
            let want: Vec<Vec<u8>> = PAYLOADS.iter().map(|p| p.to_vec()).collect();
            assert_eq!(got, want, "lost {a} and {b}");
        }
    }
}
