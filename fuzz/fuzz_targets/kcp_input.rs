//! Feeds arbitrary datagrams through `Kcp::input`, interleaved with `send`, `update` and `recv`,
//! checking the engine's output invariants on the way.
//!
//! Input layout: byte 0 picks the configuration; then a sequence of operations, each one byte of
//! opcode followed by its operands.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkcp_engine::{Freshness, Kcp, KcpConfig, OVERHEAD};

const CONV: u32 = 0x0102_0304;

fuzz_target!(|data: &[u8]| {
    let Some((&cfg_byte, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = KcpConfig {
        stream: cfg_byte & 1 != 0,
        nodelay: cfg_byte & 2 != 0,
        nc: cfg_byte & 4 != 0,
        ack_nodelay: cfg_byte & 8 != 0,
        resend: u32::from(cfg_byte >> 6),
        rcv_wnd: if cfg_byte & 16 != 0 { 4 } else { 64 },
        snd_wnd: if cfg_byte & 32 != 0 { 4 } else { 64 },
        mtu: 120,
        reserved: 8,
        ..KcpConfig::default()
    };
    let mut k = Kcp::with_config(CONV, &cfg).expect("valid config");
    let (mtu, reserved) = (k.mtu(), k.reserved());
    let mut now: u32 = 0x7fff_ff00; // crosses the signed wrap point during long runs
    let mut buf = vec![0u8; 1 << 14];
    let mut check = |d: &mut [u8]| {
        assert!(d.len() <= mtu && d.len() >= reserved + OVERHEAD);
    };
    k.update(now, &mut check);
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 6 {
            // A datagram: a length byte, then that many bytes, with our conv patched in front
            // when the opcode says so (so most datagrams get past the conv check).
            0 | 1 => {
                let Some((&len, tail)) = rest.split_first() else {
                    return;
                };
                let len = usize::from(len).min(tail.len());
                let mut d = tail[..len].to_vec();
                rest = &tail[len..];
                if op % 6 == 0 && d.len() >= 4 {
                    d[..4].copy_from_slice(&CONV.to_le_bytes());
                }
                let fresh = if op & 0x80 == 0 {
                    Freshness::Fresh
                } else {
                    Freshness::Stale
                };
                let _ = k.input(now, &d, fresh);
            }
            // Application data.
            2 => {
                let Some((&len, tail)) = rest.split_first() else {
                    return;
                };
                let len = usize::from(len) * 8;
                let _ = k.send(&vec![op; len]);
                rest = tail;
            }
            // Read, with a small or a large buffer.
            3 => {
                let size = if op & 0x80 != 0 { 3 } else { buf.len() };
                let _ = k.recv(&mut buf[..size]);
                let _ = k.peek_size();
            }
            // Advance the clock to the deadline (or a bit), then update.
            4 => {
                let step = u32::from(op >> 3) * 50;
                now = match k.next_deadline() {
                    Some(t) if (t.wrapping_sub(now) as i32) > 0 && op & 4 == 0 => t,
                    _ => now.wrapping_add(step),
                };
                k.update(now, &mut check);
                // After an update nothing is due at the same instant: a driver never spins.
                if let Some(t) = k.next_deadline() {
                    assert!((t.wrapping_sub(now) as i32) > 0);
                }
            }
            // Knobs.
            _ => match op >> 3 {
                0 => k.set_window(u32::from(op & 7), u32::from(op >> 5)),
                1 => k.set_nodelay(op & 1 != 0, u32::from(op), u32::from(op & 3), op & 2 != 0),
                2 => {
                    let _ = k.set_mtu(60 + usize::from(op));
                }
                _ => {
                    let _ = k.flush(now, &mut |_: &mut [u8]| {});
                }
            },
        }
        let _ = (k.wait_snd(), k.is_dead_link(), k.stats().in_segs);
    }
});
