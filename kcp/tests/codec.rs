//! Property tests of the segment codec and of the engine's input path.

use proptest::prelude::*;
use rkcp_engine::Freshness;
use rkcp_engine::{Command, Kcp, KcpConfig, KcpError, OVERHEAD, SegmentHeader};

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Push),
        Just(Command::Ack),
        Just(Command::Wask),
        Just(Command::Wins),
    ]
}

prop_compose! {
    fn header()(conv: u32, cmd in command(), frg: u8, wnd: u16, ts: u32, sn: u32, una: u32, len: u32)
        -> SegmentHeader {
        SegmentHeader { conv, cmd, frg, wnd, ts, sn, una, len }
    }
}

/// A datagram of mostly well-formed segments for conv 1 (so the input path gets past the
/// header checks), with sequence numbers near the window so that data is actually accepted.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let seg = (
        prop_oneof![Just(1u32), any::<u32>()],
        prop_oneof![81u8..=84, any::<u8>()],
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        prop_oneof![0u32..64, any::<u32>()],
        prop_oneof![0u32..64, any::<u32>()],
        proptest::collection::vec(any::<u8>(), 0..40),
        prop_oneof![Just(None), any::<u32>().prop_map(Some)],
    );
    proptest::collection::vec(seg, 1..6).prop_map(|segs| {
        let mut d = Vec::new();
        for (conv, cmd, frg, wnd, ts, sn, una, data, len) in segs {
            let mut h = [0u8; OVERHEAD];
            h[0..4].copy_from_slice(&conv.to_le_bytes());
            h[4] = cmd;
            h[5] = frg;
            h[6..8].copy_from_slice(&wnd.to_le_bytes());
            h[8..12].copy_from_slice(&ts.to_le_bytes());
            h[12..16].copy_from_slice(&sn.to_le_bytes());
            h[16..20].copy_from_slice(&una.to_le_bytes());
            let len = len.unwrap_or(data.len() as u32);
            h[20..24].copy_from_slice(&len.to_le_bytes());
            d.extend_from_slice(&h);
            d.extend_from_slice(&data);
        }
        d
    })
}

proptest! {
    #[test]
    fn header_round_trip(h in header()) {
        let mut buf = [0u8; OVERHEAD + 3];
        h.encode(&mut buf);
        prop_assert_eq!(SegmentHeader::decode(&buf)?, h);
        prop_assert_eq!(SegmentHeader::decode(&buf[..OVERHEAD])?, h);
        // Byte layout: conv, cmd, frg, wnd, ts, sn, una, len, little-endian.
        prop_assert_eq!(&buf[0..4], &h.conv.to_le_bytes());
        prop_assert_eq!(buf[4], h.cmd as u8);
        prop_assert_eq!(buf[5], h.frg);
        prop_assert_eq!(&buf[6..8], &h.wnd.to_le_bytes());
        prop_assert_eq!(&buf[8..12], &h.ts.to_le_bytes());
        prop_assert_eq!(&buf[12..16], &h.sn.to_le_bytes());
        prop_assert_eq!(&buf[16..20], &h.una.to_le_bytes());
        prop_assert_eq!(&buf[20..24], &h.len.to_le_bytes());
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        match SegmentHeader::decode(&bytes) {
            Ok(h) => {
                prop_assert!(bytes.len() >= OVERHEAD);
                let mut again = [0u8; OVERHEAD];
                h.encode(&mut again);
                prop_assert_eq!(&again[..], &bytes[..OVERHEAD]);
            }
            Err(KcpError::Truncated) => prop_assert!(bytes.len() < OVERHEAD),
            Err(KcpError::BadCommand(c)) => prop_assert!(!(81..=84).contains(&c)),
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }

    #[test]
    fn input_of_arbitrary_bytes_never_panics(
        raw in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8),
        crafted in proptest::collection::vec(datagram(), 1..12),
        stream: bool,
        now0: u32,
    ) {
        let cfg = KcpConfig { stream, rcv_wnd: 16, mtu: 200, ..KcpConfig::default() };
        let mut k = Kcp::with_config(1, &cfg).unwrap();
        k.send(&[7u8; 500]).unwrap();
        let mut now = now0;
        let mut buf = vec![0u8; 4096];
        for d in raw.iter().chain(crafted.iter()) {
            let fresh = if now % 3 != 0 {
                Freshness::Fresh
            } else {
                Freshness::Stale
            };
            let _ = k.input(now, d, fresh);
            k.update(now, &mut |out: &mut [u8]| assert!(out.len() <= 200 && out.len() >= OVERHEAD));
            // After an update nothing is due at the same instant: a driver never spins.
            if let Some(t) = k.next_deadline() {
                prop_assert!((t.wrapping_sub(now) as i32) > 0, "deadline {t} not after {now}");
            }
            while let Ok(n @ 1..) = k.recv(&mut buf) {
                prop_assert!(n <= buf.len());
            }
            if let Some(t) = k.next_deadline() {
                now = if (t.wrapping_sub(now) as i32) > 0 { t } else { now.wrapping_add(1) };
            } else {
                now = now.wrapping_add(37);
            }
        }
    }
}
