//! FEC decoder on arbitrary input: raw packets of any length and type, mixed with a real
//! encoder's stream under fuzzer-chosen loss, clock jumps and parity changes. It must never
//! panic, keep its window bounded and only hand out packets that fit a datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkcp_fec::{FecDecoder, FecEncoder};

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let Ok(mut dec) = FecDecoder::new(usize::from(a % 16) + 1, usize::from(b % 8) + 1) else {
        return;
    };
    let mut enc = FecEncoder::new(10, 3, 0).unwrap();
    let mut now: u32 = 0;
    let mut input = rest;
    while let [op, len, tail @ ..] = input {
        let len = (usize::from(*len) * 7).min(tail.len());
        let (body, next) = tail.split_at(len);
        input = next;
        now = now.wrapping_add(u32::from(op & 0x0F) * 5_000);
        let mut check = |kcp: &[u8]| assert!(kcp.len() <= rkcp_fec::MTU_LIMIT);
        match op >> 4 {
            // A raw packet, as any peer could send.
            0..=5 => {
                let _ = dec.decode(now, body, &mut check);
            }
            // The sender changes its parity count.
            6 => {
                let _ = enc.set_parity_shards(usize::from(len % 6) + 1);
            }
            // A genuine datagram (+ parity), some of it lost according to the op bits.
            _ => {
                let mut pkt = vec![0u8; 8];
                pkt.extend_from_slice(&body[..body.len().min(1400)]);
                let mut wire = Vec::new();
                enc.encode(&mut pkt, |p| wire.push(p.to_vec()));
                wire.insert(0, pkt);
                for (k, p) in wire.iter().enumerate() {
                    if op & (1 << (k % 4)) == 0 {
                        let _ = dec.decode(now, p, &mut check);
                    }
                }
            }
        }
        assert!(dec.pending() <= 3 * 256 + 1);
    }
});
