//! One test per rule of docs/wire-format.md#kcp, driving engines with explicit `now` and hand-built
//! datagrams.

use super::input::ACKLIST_MIN;
use super::output::PROBE_LIMIT;
use super::*;
use crate::Freshness;
use crate::{Command, SegmentHeader};

const CONV: u32 = 0x1122_3344;

type Seg = (SegmentHeader, Vec<u8>);

#[allow(clippy::too_many_arguments)]
fn seg(cmd: Command, frg: u8, wnd: u16, ts: u32, sn: u32, una: u32, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0; OVERHEAD];
    SegmentHeader {
        conv: CONV,
        cmd,
        frg,
        wnd,
        ts,
        sn,
        una,
        len: data.len() as u32,
    }
    .encode(&mut v);
    v.extend_from_slice(data);
    v
}

fn push(sn: u32, una: u32, ts: u32, data: &[u8]) -> Vec<u8> {
    seg(Command::Push, 0, 32, ts, sn, una, data)
}

fn ack(sn: u32, ts: u32, una: u32) -> Vec<u8> {
    seg(Command::Ack, 0, 32, ts, sn, una, &[])
}

fn parse(d: &[u8], reserved: usize) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut rest = &d[reserved..];
    while !rest.is_empty() {
        let h = SegmentHeader::decode(rest).expect("engine output decodes");
        let end = OVERHEAD + h.len as usize;
        out.push((h, rest[OVERHEAD..end].to_vec()));
        rest = &rest[end..];
    }
    out
}

fn flush_dgrams(k: &mut Kcp, now: u32) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    k.flush(now, &mut |d: &mut [u8]| v.push(d.to_vec()));
    v
}

fn flush_segs(k: &mut Kcp, now: u32) -> Vec<Seg> {
    let r = k.reserved();
    flush_dgrams(k, now)
        .iter()
        .flat_map(|d| parse(d, r))
        .collect()
}

fn update_segs(k: &mut Kcp, now: u32) -> Vec<Seg> {
    let r = k.reserved();
    let mut v = Vec::new();
    k.update(now, &mut |d: &mut [u8]| v.extend(parse(d, r)));
    v
}

fn pushes(segs: &[Seg]) -> Vec<u32> {
    segs.iter()
        .filter(|(h, _)| h.cmd == Command::Push)
        .map(|(h, _)| h.sn)
        .collect()
}

fn cmds(segs: &[Seg]) -> Vec<Command> {
    segs.iter().map(|(h, _)| h.cmd).collect()
}

/// Engine with kcp-go defaults except `nc` (on: no cwnd ramp-up to wade through).
fn engine(nc: bool) -> Kcp {
    let mut k = Kcp::new(CONV);
    k.set_nodelay(false, 100, 0, nc);
    k
}

#[test]
fn a1_vector_written_by_flush() {
    let mut k = engine(true);
    k.set_window(32, 512);
    // sn 0..6 sent and acknowledged, so the next PUSH gets sn 7.
    for _ in 0..7 {
        k.send(b"x").unwrap();
    }
    assert_eq!(pushes(&flush_segs(&mut k, 0)), (0..7).collect::<Vec<_>>());
    k.input(1, &ack(6, 0, 7), Freshness::Fresh).unwrap();
    assert_eq!(k.wait_snd(), 0);
    // Peer's sn 0..4 received and read, so una = rcv_nxt = 5 and the window is empty (512).
    let mut d = Vec::new();
    for sn in 0..5 {
        d.extend(push(sn, 7, 0, b"a"));
    }
    k.input(2, &d, Freshness::Fresh).unwrap();
    let mut buf = [0u8; 8];
    for _ in 0..5 {
        assert_eq!(k.recv(&mut buf).unwrap(), 1);
    }
    k.flush_acks(3, &mut |_: &mut [u8]| {});
    k.send(b"hello").unwrap();
    let out = flush_dgrams(&mut k, 1000);
    let want: Vec<u8> = [
        "44332211",
        "51",
        "00",
        "0002",
        "e8030000",
        "07000000",
        "05000000",
        "05000000",
        "68656c6c6f",
    ]
    .concat()
    .as_bytes()
    .chunks(2)
    .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
    .collect();
    assert_eq!(out, vec![want]);
}

#[test]
fn initial_cwnd_is_zero_then_one() {
    let mut k = engine(false);
    assert_eq!(k.cwnd(), 0);
    k.send(b"data").unwrap();
    // The first flush moves nothing (cwnd 0), then raises cwnd to 1 (A.3).
    assert!(pushes(&flush_segs(&mut k, 0)).is_empty());
    assert_eq!(k.cwnd(), 1);
    assert_eq!(pushes(&flush_segs(&mut k, 10)), vec![0]);
}

#[test]
fn ack_filter_sends_only_the_last_covered_ack() {
    let mut k = engine(true);
    let mut d = Vec::new();
    for sn in 0..4 {
        d.extend(push(sn, 0, 100 + sn, b"p"));
    }
    k.input(0, &d, Freshness::Fresh).unwrap();
    let segs = flush_segs(&mut k, 10);
    assert_eq!(cmds(&segs), vec![Command::Ack]);
    let (h, _) = &segs[0];
    assert_eq!((h.sn, h.una, h.ts), (3, 4, 103));
}

#[test]
fn ack_filter_keeps_acks_at_or_above_rcv_nxt() {
    let mut k = engine(true);
    // sn 2 and 3 are out of order: ACKed individually; sn 0 is then a new in-order one.
    let d = [
        push(2, 0, 1, b"a"),
        push(3, 0, 2, b"b"),
        push(0, 0, 3, b"c"),
    ]
    .concat();
    k.input(0, &d, Freshness::Fresh).unwrap();
    assert_eq!(k.rcv_nxt(), 1);
    let segs = flush_segs(&mut k, 10);
    let acked: Vec<u32> = segs.iter().map(|(h, _)| h.sn).collect();
    // 2 and 3 are >= rcv_nxt (1); 0 < rcv_nxt but it is the last entry.
    assert_eq!(acked, vec![2, 3, 0]);
}

#[test]
fn duplicates_below_rcv_nxt_are_acked_and_counted() {
    let mut k = engine(true);
    k.input(0, &push(0, 0, 5, b"a"), Freshness::Fresh).unwrap();
    flush_segs(&mut k, 1);
    assert_eq!(k.stats().repeat_segs, 0);
    k.input(2, &push(0, 0, 6, b"a"), Freshness::Fresh).unwrap();
    assert_eq!(k.stats().repeat_segs, 1);
    let segs = flush_segs(&mut k, 3);
    assert_eq!(cmds(&segs), vec![Command::Ack]);
    assert_eq!((segs[0].0.sn, segs[0].0.ts), (0, 6));
    // An in-window duplicate out of order is acked again and counted.
    k.input(4, &push(5, 0, 7, b"z"), Freshness::Fresh).unwrap();
    k.input(5, &push(5, 0, 8, b"z"), Freshness::Fresh).unwrap();
    assert_eq!(k.stats().repeat_segs, 2);
    assert_eq!(k.rcv_buf.len(), 1);
    assert_eq!(flush_segs(&mut k, 6).len(), 2);
    // FEC-rebuilt (non-regular) repeats are not counted.
    k.input(7, &push(0, 0, 6, b"a"), Freshness::Stale).unwrap();
    assert_eq!(k.stats().repeat_segs, 2);
}

#[test]
fn push_beyond_window_is_dropped_without_ack() {
    let mut k = engine(true);
    k.set_window(32, 8);
    k.input(0, &push(8, 0, 1, b"far"), Freshness::Fresh)
        .unwrap();
    assert!(k.acklist.is_empty());
    assert!(k.rcv_buf.is_empty());
    assert_eq!(k.stats().repeat_segs, 1);
    assert!(flush_segs(&mut k, 1).is_empty());
    k.input(2, &push(7, 0, 1, b"edge"), Freshness::Fresh)
        .unwrap();
    assert_eq!(k.rcv_buf.len(), 1);
    assert_eq!(flush_segs(&mut k, 3).len(), 1);
}

#[test]
fn early_retransmit_when_no_new_segment_moves() {
    let mut k = engine(true);
    for _ in 0..3 {
        k.send(b"seg").unwrap();
    }
    assert_eq!(pushes(&flush_segs(&mut k, 0)), vec![0, 1, 2]);
    // ACK of sn 1 (sent at ts 0) counts a skip for sn 0: fastack 1 even with resend = 0.
    k.input(5, &ack(1, 0, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.snd_buf[0].fastack, 1);
    assert_eq!(k.snd_buf[2].fastack, 0);
    let segs = flush_segs(&mut k, 10);
    assert_eq!(pushes(&segs), vec![0]);
    assert_eq!(segs[0].0.ts, 10, "ts is the flush's now");
    assert_eq!(k.stats().early_retrans_segs, 1);
    assert_eq!(k.stats().retrans_segs, 1);
    assert_eq!(k.snd_buf[0].fastack, 0);
}

#[test]
fn no_early_retransmit_when_new_data_moves() {
    let mut k = engine(true);
    for _ in 0..3 {
        k.send(b"seg").unwrap();
    }
    flush_segs(&mut k, 0);
    k.input(5, &ack(1, 0, 0), Freshness::Fresh).unwrap();
    k.send(b"new").unwrap();
    assert_eq!(pushes(&flush_segs(&mut k, 10)), vec![3]);
    assert_eq!(k.stats().early_retrans_segs, 0);
}

#[test]
fn fastack_ignores_segments_sent_after_the_acked_one() {
    let mut k = engine(true);
    k.send(b"a").unwrap();
    k.send(b"b").unwrap();
    flush_segs(&mut k, 0);
    // sn 0 retransmitted by RTO at 200: its ts is now 200.
    assert_eq!(pushes(&flush_segs(&mut k, 200)), vec![0, 1]);
    k.input(250, &ack(1, 100, 0), Freshness::Fresh).unwrap();
    // The ACK echoes ts 100 < 200, so sn 0 was (re)sent after sn 1's copy: no fastack.
    assert_eq!(k.snd_buf[0].fastack, 0);
    k.input(251, &ack(1, 200, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.snd_buf[0].fastack, 1);
}

#[test]
fn fast_retransmit_at_threshold() {
    let mut k = engine(true);
    k.set_nodelay(false, 100, 2, true);
    k.set_window(64, 32);
    for _ in 0..4 {
        k.send(b"seg").unwrap();
    }
    flush_segs(&mut k, 0);
    k.input(5, &ack(1, 0, 0), Freshness::Fresh).unwrap();
    k.send(b"more").unwrap();
    // fastack(sn0) = 1 < 2, and a new segment moved: no retransmission.
    assert_eq!(pushes(&flush_segs(&mut k, 6)), vec![4]);
    k.input(7, &ack(2, 0, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.snd_buf[0].fastack, 2);
    k.send(b"more").unwrap();
    assert_eq!(pushes(&flush_segs(&mut k, 8)), vec![0, 5]);
    assert_eq!(k.stats().fast_retrans_segs, 1);
    assert_eq!(k.stats().early_retrans_segs, 0);
}

#[test]
fn rto_backoff_nodelay_off_adds_full_rto() {
    let mut k = engine(true);
    k.send(b"x").unwrap();
    assert_eq!(pushes(&flush_segs(&mut k, 0)), vec![0]); // rto 200, resendts 200
    assert!(pushes(&flush_segs(&mut k, 199)).is_empty());
    assert_eq!(pushes(&flush_segs(&mut k, 200)), vec![0]); // rto 400 -> 600
    assert!(pushes(&flush_segs(&mut k, 599)).is_empty());
    assert_eq!(pushes(&flush_segs(&mut k, 600)), vec![0]); // rto 600 -> 1200
    assert!(pushes(&flush_segs(&mut k, 1199)).is_empty());
    assert_eq!(pushes(&flush_segs(&mut k, 1200)), vec![0]);
    assert_eq!(k.stats().lost_segs, 3);
    assert_eq!(k.snd_buf[0].xmit, 4);
}

#[test]
fn rto_backoff_nodelay_on_adds_half_rto() {
    let mut k = engine(true);
    k.set_nodelay(true, 100, 0, true);
    k.send(b"x").unwrap();
    flush_segs(&mut k, 0); // rto 200
    assert_eq!(pushes(&flush_segs(&mut k, 200)), vec![0]); // rto 300 -> 500
    assert!(pushes(&flush_segs(&mut k, 499)).is_empty());
    assert_eq!(pushes(&flush_segs(&mut k, 500)), vec![0]); // rto 400 -> 900
    assert!(pushes(&flush_segs(&mut k, 899)).is_empty());
    assert_eq!(pushes(&flush_segs(&mut k, 900)), vec![0]);
}

#[test]
fn flush_returns_time_to_nearest_retransmission() {
    let mut k = engine(true);
    k.send(b"x").unwrap();
    assert_eq!(k.flush(0, &mut |_: &mut [u8]| {}), 100); // resendts 200 > interval
    assert_eq!(k.flush(150, &mut |_: &mut [u8]| {}), 50);
}

#[test]
fn rtt_formulas() {
    let mut k = engine(true);
    k.input(1000, &ack(0, 900, 0), Freshness::Fresh).unwrap();
    assert_eq!((k.srtt(), k.srttvar(), k.rto()), (100, 50, 300));
    k.input(2000, &ack(0, 1950, 0), Freshness::Fresh).unwrap();
    // delta -50, srtt += -50 >> 3 = -7 (arithmetic shift), rttvar += 0.
    assert_eq!((k.srtt(), k.srttvar(), k.rto()), (93, 50, 293));
    k.input(3000, &ack(0, 2990, 0), Freshness::Fresh).unwrap();
    // delta -83 -> srtt 82; 10 < 82 - 50: low sample, rttvar += (83 - 50) >> 5 = 1.
    assert_eq!((k.srtt(), k.srttvar(), k.rto()), (82, 51, 286));
    k.input(4000, &ack(0, 3700, 0), Freshness::Fresh).unwrap();
    // delta 218 -> srtt 82 + 27 = 109; rttvar += (218 - 51) >> 2 = 41 -> 92.
    assert_eq!((k.srtt(), k.srttvar(), k.rto()), (109, 92, 109 + 368));
}

#[test]
fn rtt_once_per_datagram_from_last_ack() {
    let mut k = engine(true);
    let d = [ack(0, 900, 0), ack(1, 990, 0), ack(2, 950, 0)].concat();
    k.input(1000, &d, Freshness::Fresh).unwrap();
    assert_eq!(k.srtt(), 50, "the last ACK's ts wins, not the highest");
    // Not from FEC-rebuilt packets, and not from a ts in the future.
    let mut k = engine(true);
    k.input(1000, &ack(0, 900, 0), Freshness::Stale).unwrap();
    k.input(1000, &ack(0, 1001, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.srtt(), 0);
    // An rtt of 0 on a fresh estimator leaves srtt at 0.
    k.input(1000, &ack(0, 1000, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.srtt(), 0);
}

#[test]
fn min_rto_and_max_rto() {
    let mut k = engine(true);
    k.set_nodelay(false, 10, 0, true);
    k.input(1000, &ack(0, 999, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.rto(), 100);
    let mut k = engine(true);
    k.set_nodelay(true, 10, 0, true);
    k.input(1000, &ack(0, 999, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.rto(), 30);
    k.set_min_rto(10);
    k.input(2000, &ack(0, 1999, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.rto(), 11);
    let mut k = engine(true);
    k.input(100_000, &ack(0, 0, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.rto(), 60_000);
}

#[test]
fn interval_is_clamped() {
    let mut k = engine(true);
    k.set_nodelay(false, 1, 0, true);
    assert_eq!(k.interval(), 10);
    k.set_nodelay(false, 100_000, 0, true);
    assert_eq!(k.interval(), 5000);
}

#[test]
fn cwnd_slow_start_and_congestion_avoidance() {
    let mut k = engine(false);
    k.set_window(64, 64);
    let mss = k.mss() as u32;
    flush_segs(&mut k, 0); // cwnd 0 -> 1
    for _ in 0..40 {
        k.send(b"d").unwrap();
    }
    assert_eq!(pushes(&flush_segs(&mut k, 1)), vec![0]);
    k.input(2, &ack(0, 1, 1), Freshness::Fresh).unwrap();
    assert_eq!((k.cwnd(), k.incr), (2, 2 * mss)); // slow start: cwnd < ssthresh 2
    // The window slid: the due flush sends two segments.
    assert_eq!(pushes(&update_segs(&mut k, 2)), vec![1, 2]);
    k.input(3, &ack(1, 2, 2), Freshness::Fresh).unwrap();
    // cwnd 2 == ssthresh: congestion avoidance. incr += mss*mss/incr + mss/16.
    let incr = 2 * mss + mss / 2 + mss / 16;
    assert_eq!((k.cwnd(), k.incr), (2, incr));
    k.input(4, &ack(2, 2, 3), Freshness::Fresh).unwrap();
    let incr2 = incr + mss * mss / incr + mss / 16;
    assert_eq!(k.incr, incr2);
    assert_eq!(
        k.cwnd(),
        if 3 * mss <= incr2 {
            incr2.div_ceil(mss)
        } else {
            2
        }
    );
    // A jump in congestion avoidance is capped by the remote window.
    let mut k = engine(false);
    k.set_window(64, 64);
    k.cwnd = 3;
    k.incr = 10 * mss;
    for _ in 0..3 {
        k.send(b"d").unwrap();
    }
    flush_segs(&mut k, 0);
    k.input(1, &seg(Command::Ack, 0, 4, 0, 0, 1, &[]), Freshness::Fresh)
        .unwrap();
    assert_eq!((k.cwnd(), k.incr), (4, 4 * mss));
}

#[test]
fn cwnd_collapses_on_rto_loss() {
    let mut k = engine(false);
    k.set_window(64, 64);
    k.cwnd = 8;
    k.ssthresh = 16;
    for _ in 0..8 {
        k.send(b"d").unwrap();
    }
    assert_eq!(pushes(&flush_segs(&mut k, 0)).len(), 8);
    assert_eq!(pushes(&flush_segs(&mut k, 200)).len(), 8);
    assert_eq!(k.stats().lost_segs, 8);
    // ssthresh = cwnd_eff / 2 = min(64, 32, 8) / 2 = 4.
    assert_eq!((k.cwnd(), k.ssthresh(), k.incr), (1, 4, k.mss() as u32));
}

#[test]
fn cwnd_after_fast_retransmit_and_the_early_retransmit_quirk() {
    // Fast retransmit with resend 2: cwnd = ssthresh + 2.
    let mut k = engine(false);
    k.set_nodelay(false, 100, 2, false);
    k.set_window(64, 64);
    k.cwnd = 10;
    for _ in 0..6 {
        k.send(b"d").unwrap();
    }
    flush_segs(&mut k, 0);
    k.input(1, &[ack(1, 0, 0), ack(2, 0, 0)].concat(), Freshness::Fresh)
        .unwrap();
    assert_eq!(pushes(&flush_segs(&mut k, 2)), vec![0]);
    // inflight 6 -> ssthresh 3, cwnd 3 + 2.
    assert_eq!((k.ssthresh(), k.cwnd()), (3, 5));

    // Early retransmit with resend 0 (resent = 0xFFFFFFFF): cwnd = ssthresh - 1, wrapping.
    let mut k = engine(false);
    k.set_window(64, 64);
    k.cwnd = 10;
    for _ in 0..6 {
        k.send(b"d").unwrap();
    }
    flush_segs(&mut k, 0);
    k.input(1, &ack(1, 0, 0), Freshness::Fresh).unwrap();
    assert_eq!(pushes(&flush_segs(&mut k, 2)), vec![0]);
    assert_eq!((k.ssthresh(), k.cwnd()), (3, 2));
    assert_eq!(k.incr, 2 * k.mss() as u32);

    // With a tiny flight ssthresh stays at 2 and cwnd = 1: the "cwnd < 1" guard is not needed.
    let mut k = engine(false);
    k.cwnd = 10;
    k.send(b"a").unwrap();
    k.send(b"b").unwrap();
    flush_segs(&mut k, 0);
    k.input(1, &ack(1, 0, 0), Freshness::Fresh).unwrap();
    flush_segs(&mut k, 2);
    assert_eq!((k.ssthresh(), k.cwnd()), (2, 1));
}

#[test]
fn nc_ignores_cwnd() {
    let mut k = engine(true);
    for _ in 0..40 {
        k.send(b"d").unwrap();
    }
    // min(snd_wnd 32, rmt_wnd 32); cwnd (0) plays no part.
    assert_eq!(pushes(&flush_segs(&mut k, 0)).len(), 32);
    assert_eq!(k.cwnd(), 0);
}

#[test]
fn zero_window_probing_with_backoff() {
    let mut k = engine(true);
    k.send(b"blocked").unwrap();
    // The peer announces a zero window (in a WINS; any regular segment would do).
    k.input(0, &seg(Command::Wins, 0, 0, 0, 0, 0, &[]), Freshness::Fresh)
        .unwrap();
    assert_eq!(k.rmt_wnd(), 0);
    assert!(flush_segs(&mut k, 0).is_empty()); // arms the probe: ts_probe 7000
    assert!(flush_segs(&mut k, 6999).is_empty());
    let mut times = Vec::new();
    let mut now = 7000;
    while now < 700_000 {
        let segs = flush_segs(&mut k, now);
        if !segs.is_empty() {
            assert_eq!(cmds(&segs), vec![Command::Wask]);
            times.push(now);
        }
        now += 10;
    }
    let gaps: Vec<u32> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(times[0], 7000);
    // probe_wait 7000 * 1.5 = 10500, then 15750, 23625, 35437, 53155, 79732, 119598, 120000
    // (the limit); each WASK goes out at the first 10 ms flush at or after ts_probe.
    assert_eq!(
        &gaps[..9],
        &[
            10_500, 15_750, 23_630, 35_440, 53_160, 79_740, 119_600, 120_000, 120_000
        ]
    );
    assert_eq!(k.probe_wait, PROBE_LIMIT);
    // A window update stops probing and resets the timer.
    k.input(
        now,
        &seg(Command::Wins, 0, 5, 0, 0, 0, &[]),
        Freshness::Fresh,
    )
    .unwrap();
    let segs = flush_segs(&mut k, now + 1);
    assert_eq!(pushes(&segs), vec![0]);
    assert_eq!((k.probe_wait, k.ts_probe), (0, 0));
}

#[test]
fn wask_is_answered_by_wins_with_the_free_window() {
    let mut k = engine(true);
    k.set_window(32, 100);
    k.input(0, &push(0, 0, 0, b"queued"), Freshness::Fresh)
        .unwrap();
    k.input(
        0,
        &seg(Command::Wask, 0, 32, 0, 0, 0, &[]),
        Freshness::Fresh,
    )
    .unwrap();
    let segs = flush_segs(&mut k, 5);
    assert_eq!(cmds(&segs), vec![Command::Ack, Command::Wins]);
    let wins = &segs[1].0;
    assert_eq!((wins.wnd, wins.una, wins.sn, wins.ts), (99, 1, 0, 0));
    // Nothing left to tell.
    assert!(flush_segs(&mut k, 6).is_empty());
}

#[test]
fn fast_recover_sends_wins_after_full_queue_drains() {
    let mut k = engine(true);
    k.set_window(32, 4);
    let d: Vec<u8> = (0..4).flat_map(|sn| push(sn, 0, 0, b"m")).collect();
    k.input(0, &d, Freshness::Fresh).unwrap();
    let segs = flush_segs(&mut k, 1);
    assert_eq!(
        segs[0].0.wnd, 0,
        "full receive queue announces a zero window"
    );
    let mut buf = [0u8; 4];
    assert_eq!(k.recv(&mut buf).unwrap(), 1);
    assert!(k.next_deadline().is_some());
    let segs = flush_segs(&mut k, 2);
    assert_eq!(cmds(&segs), vec![Command::Wins]);
    assert_eq!(segs[0].0.wnd, 1);
    // A receive from a queue that was not full tells nothing.
    assert_eq!(k.recv(&mut buf).unwrap(), 1);
    assert!(flush_segs(&mut k, 3).is_empty());
}

#[test]
fn rmt_wnd_only_from_regular_packets() {
    let mut k = engine(true);
    k.input(0, &seg(Command::Wins, 0, 7, 0, 0, 0, &[]), Freshness::Stale)
        .unwrap();
    assert_eq!(k.rmt_wnd(), 32);
    k.input(0, &seg(Command::Wins, 0, 7, 0, 0, 0, &[]), Freshness::Fresh)
        .unwrap();
    assert_eq!(k.rmt_wnd(), 7);
}

#[test]
fn input_errors_keep_earlier_segments() {
    let mut k = engine(true);
    assert_eq!(
        k.input(0, &[0; 23], Freshness::Fresh),
        Err(KcpError::Truncated)
    );
    let mut other = push(1, 0, 0, b"b");
    other[0] ^= 1;
    let d = [push(0, 0, 0, b"a"), other].concat();
    assert_eq!(
        k.input(0, &d, Freshness::Fresh),
        Err(KcpError::ConvMismatch {
            expected: CONV,
            got: CONV ^ 1
        })
    );
    assert_eq!(k.rcv_nxt(), 1, "the segment before the bad one is applied");
    let mut short = push(2, 0, 0, b"cc");
    short.pop();
    assert_eq!(
        k.input(0, &[push(1, 0, 0, b"b"), short].concat(), Freshness::Fresh),
        Err(KcpError::Truncated)
    );
    assert_eq!(k.rcv_nxt(), 2);
    let mut bad = push(2, 0, 0, b"c");
    bad[4] = 99;
    assert_eq!(
        k.input(0, &bad, Freshness::Fresh),
        Err(KcpError::BadCommand(99))
    );
    assert_eq!(k.rcv_nxt(), 2);
    // A trailing remainder shorter than a header is ignored.
    let mut d = push(2, 0, 0, b"c");
    d.extend_from_slice(&[1, 2, 3]);
    assert_eq!(k.input(0, &d, Freshness::Fresh), Ok(()));
    assert_eq!(k.rcv_nxt(), 3);
}

#[test]
fn conv_mismatch_skips_rtt_and_flush() {
    let mut k = engine(true);
    k.send(b"x").unwrap();
    flush_segs(&mut k, 0);
    let mut bad = ack(0, 0, 0);
    bad[0] ^= 1;
    let d = [ack(0, 0, 1), bad].concat();
    assert!(k.input(50, &d, Freshness::Fresh).is_err());
    assert_eq!(k.wait_snd(), 0, "una applied");
    assert_eq!(k.srtt(), 0, "RTT step skipped");
    assert!(!k.pending_full, "flush step skipped");
}

#[test]
fn acked_segments_stay_until_una_and_are_skipped() {
    let mut k = engine(true);
    for _ in 0..3 {
        k.send(b"s").unwrap();
    }
    flush_segs(&mut k, 0);
    k.input(10, &ack(1, 0, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.snd_buf.len(), 3);
    assert!(k.snd_buf[1].acked);
    assert!(k.snd_buf[1].data.is_empty(), "payload released on ACK");
    // sn 0 goes out by early retransmit, sn 2 by RTO, the acked sn 1 not at all.
    let segs = flush_segs(&mut k, 200);
    assert_eq!(pushes(&segs), vec![0, 2]);
    assert_eq!((k.stats().early_retrans_segs, k.stats().lost_segs), (1, 1));
    k.input(210, &ack(2, 200, 3), Freshness::Fresh).unwrap();
    assert_eq!(k.wait_snd(), 0);
    assert_eq!(k.snd_una(), 3);
}

#[test]
fn message_mode_fragments_and_buffer_too_small() {
    let mut a = engine(true);
    a.set_mtu(50).unwrap();
    assert_eq!(a.mss(), 26);
    let msg: Vec<u8> = (0..100u8).collect();
    assert_eq!(a.send(&msg), Ok(100));
    let segs = flush_segs(&mut a, 0);
    let frgs: Vec<u8> = segs.iter().map(|(h, _)| h.frg).collect();
    assert_eq!(frgs, vec![3, 2, 1, 0]);
    let mut b = engine(true);
    for (i, (h, d)) in segs.iter().enumerate() {
        assert_eq!(b.peek_size(), None, "incomplete message");
        let mut s = seg(Command::Push, h.frg, 32, 0, h.sn, 0, d);
        if i == 3 {
            s.extend(seg(Command::Push, 0, 32, 0, 4, 0, b"next"));
        }
        b.input(1, &s, Freshness::Fresh).unwrap();
    }
    assert_eq!(b.peek_size(), Some(100));
    let mut small = [0u8; 99];
    assert_eq!(
        b.recv(&mut small),
        Err(KcpError::BufferTooSmall { needed: 100 })
    );
    let mut buf = [0u8; 200];
    assert_eq!(b.recv(&mut buf), Ok(100));
    assert_eq!(&buf[..100], &msg[..]);
    assert_eq!(b.recv(&mut buf), Ok(4));
    assert_eq!(&buf[..4], b"next");
    assert_eq!(b.recv(&mut buf), Ok(0));
}

#[test]
fn message_limit_is_255_fragments() {
    let mut k = engine(true);
    k.set_mtu(50).unwrap();
    assert_eq!(k.send(&vec![0; 255 * 26]), Ok(255 * 26));
    assert_eq!(k.snd_queue.len(), 255);
    assert_eq!(k.snd_queue[0].frg, 254);
    assert_eq!(
        k.send(&vec![0; 255 * 26 + 1]),
        Err(KcpError::MessageTooLarge {
            len: 255 * 26 + 1,
            fragments: 256
        })
    );
    assert_eq!(k.snd_queue.len(), 255, "nothing queued on error");
    assert_eq!(k.send(&[]), Ok(0));
    k.set_stream_mode(true);
    assert_eq!(k.send(&vec![0; 300 * 26]), Ok(300 * 26));
}

#[test]
fn stream_mode_fills_the_tail_segment() {
    let mut a = engine(true);
    a.set_mtu(50).unwrap();
    a.set_stream_mode(true);
    a.send(b"0123456789").unwrap();
    a.send(b"abcdefghijklmnopqrst").unwrap();
    let lens: Vec<usize> = a.snd_queue.iter().map(|s| s.data.len()).collect();
    assert_eq!(lens, vec![26, 4]);
    assert!(a.snd_queue.iter().all(|s| s.frg == 0));
    a.send(b"XY").unwrap();
    assert_eq!(a.snd_queue.len(), 2);
    let segs = flush_segs(&mut a, 0);
    let mut b = engine(true);
    b.set_stream_mode(true);
    for (h, d) in &segs {
        b.input(
            1,
            &seg(Command::Push, 0, 32, 0, h.sn, 0, d),
            Freshness::Fresh,
        )
        .unwrap();
    }
    assert_eq!(b.peek_size(), Some(26));
    // Partial reads across segment boundaries.
    let mut got = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = b.recv(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"0123456789abcdefghijklmnopqrstXY");
    assert_eq!(b.rcv_queue_len(), 0);
}

#[test]
fn datagrams_respect_mtu_and_reserved() {
    let mut k = engine(true);
    k.set_mtu(200).unwrap();
    k.set_reserved(8).unwrap();
    assert_eq!(k.mss(), 168);
    k.set_window(64, 64);
    // ACKs first, then data, packed several per datagram.
    let d: Vec<u8> = (0..10).flat_map(|sn| push(sn, 0, 0, b"p")).collect();
    k.input(0, &d, Freshness::Fresh).unwrap();
    for len in [1, 10, 50, 168, 100, 7] {
        k.send(&vec![0xAB; len]).unwrap();
    }
    let dgrams = flush_dgrams(&mut k, 0);
    let mut total_pushes = 0;
    for d in &dgrams {
        assert!(d.len() <= 200 && d.len() >= 8 + OVERHEAD, "len {}", d.len());
        total_pushes += pushes(&parse(d, 8)).len();
    }
    assert_eq!(total_pushes, 6);
    assert!(dgrams.len() < 16, "segments share datagrams");
    assert!(matches!(
        k.set_mtu(49),
        Err(KcpError::InvalidMtu { mtu: 49 })
    ));
    assert!(matches!(
        k.set_reserved(176),
        Err(KcpError::InvalidReserved { reserved: 176, .. })
    ));
    k.set_reserved(175).unwrap();
    assert_eq!(k.mss(), 1);
    assert!(matches!(
        k.set_mtu(199),
        Err(KcpError::InvalidReserved { .. })
    ));
}

#[test]
fn oversized_segments_after_mtu_decrease_still_go_out() {
    let mut k = engine(true);
    k.send(&[1; 1000]).unwrap();
    k.send(&[2; 10]).unwrap();
    k.set_mtu(100).unwrap();
    let dgrams = flush_dgrams(&mut k, 0);
    assert_eq!(dgrams.len(), 2);
    assert_eq!(dgrams[0].len(), 1024);
    assert_eq!(dgrams[1].len(), 34);
}

#[test]
fn dead_link_after_dead_link_transmissions() {
    let mut k = engine(true);
    k.set_dead_link(3);
    k.send(b"x").unwrap();
    let mut now = 0;
    let mut sends = 0;
    while !k.is_dead_link() {
        sends += pushes(&flush_segs(&mut k, now)).len();
        now += 10;
        assert!(now < 100_000);
    }
    assert_eq!(sends, 3);
}

/// An idle engine holds no scratch datagram (10,000 idle sessions would keep 13.5 MB of them); the next
/// flush allocates it again and sends the same bytes.
#[test]
fn an_idle_engine_releases_its_scratch_datagram() {
    let mut k = engine(true);
    assert_eq!(
        k.buffer.capacity(),
        0,
        "nothing allocated before the first flush"
    );
    k.update(1000, &mut |_: &mut [u8]| panic!("nothing to send"));
    assert_eq!(k.buffer.capacity(), 0, "idle after the first flush");
    k.send(b"x").unwrap();
    let mut sent = Vec::new();
    k.update(1005, &mut |d: &mut [u8]| sent.push(d.to_vec()));
    assert_eq!(sent.len(), 1);
    assert!(
        k.buffer.capacity() >= k.mtu(),
        "in flight: kept for the flushes to come"
    );
    // The peer acknowledges: idle again.
    let mut peer = engine(true);
    peer.update(1000, &mut |_: &mut [u8]| {});
    for d in &sent {
        peer.input(1006, d, Freshness::Fresh).unwrap();
    }
    let mut acks = Vec::new();
    peer.flush(1007, &mut |d: &mut [u8]| acks.push(d.to_vec()));
    assert!(!acks.is_empty());
    for d in &acks {
        k.input(1008, d, Freshness::Fresh).unwrap();
    }
    k.update(1008, &mut |_: &mut [u8]| {});
    assert_eq!(k.next_deadline(), None, "idle");
    assert_eq!(k.buffer.capacity(), 0, "released once idle");
}

#[test]
fn next_deadline_idle_and_active() {
    let mut k = engine(true);
    assert_eq!(k.next_deadline(), Some(0), "not started yet");
    k.update(1000, &mut |_: &mut [u8]| panic!("nothing to send"));
    assert_eq!(k.next_deadline(), None, "idle engine needs no timer");
    k.send(b"x").unwrap();
    assert_eq!(k.next_deadline(), Some(1000), "send makes a flush due now");
    assert_eq!(pushes(&update_segs(&mut k, 1005)), vec![0]);
    let t = k.next_deadline().expect("data in flight");
    // The ticks before the RTO (1205) could send nothing: the timer goes straight there.
    assert_eq!(t, 1205);
    // Nothing is due before the deadline.
    assert!(update_segs(&mut k, t - 1).is_empty());
    // The RTO fires exactly at resendts (1205) even though the tick phase is elsewhere.
    let mut now = t;
    let mut seen = Vec::new();
    while seen.is_empty() {
        let d = k.next_deadline().unwrap();
        assert!(diff(d, now) >= 0);
        now = d;
        seen = pushes(&update_segs(&mut k, now));
    }
    assert_eq!(now, 1205);
    // ACK with una: window slides, a flush is due now; afterwards the engine is idle again.
    k.input(1300, &ack(0, 1205, 1), Freshness::Fresh).unwrap();
    assert_eq!(k.next_deadline(), Some(1300));
    update_segs(&mut k, 1300);
    assert_eq!(k.next_deadline(), None);
    assert!(k.pool.is_empty(), "idle engines drop spare buffers");
}

#[test]
fn acks_wait_for_the_tick_in_phase_or_go_at_once_with_ack_nodelay() {
    let mut k = engine(true);
    k.update(0, &mut |_: &mut [u8]| {});
    assert_eq!(k.next_deadline(), None);
    k.input(1234, &push(0, 0, 7, b"p"), Freshness::Fresh)
        .unwrap();
    // kcp-go's timer would have kept ticking every 100 ms since 0 + 100.
    assert_eq!(k.next_deadline(), Some(1300));
    assert!(update_segs(&mut k, 1299).is_empty());
    assert_eq!(cmds(&update_segs(&mut k, 1300)), vec![Command::Ack]);
    assert_eq!(k.next_deadline(), None);

    k.set_ack_nodelay(true);
    k.input(1350, &push(1, 0, 8, b"q"), Freshness::Fresh)
        .unwrap();
    assert_eq!(k.next_deadline(), Some(1350));
    assert_eq!(cmds(&update_segs(&mut k, 1350)), vec![Command::Ack]);
    assert_eq!(k.next_deadline(), None);
}

#[test]
fn acklist_is_bounded() {
    let mut k = engine(true);
    let d: Vec<u8> = (0..1000).flat_map(|_| push(5, 0, 0, b"")).collect();
    for _ in 0..10 {
        k.input(0, &d, Freshness::Fresh).unwrap();
    }
    assert_eq!(k.acklist.len(), ACKLIST_MIN);
    assert_eq!(k.rcv_buf.len(), 1);
}

#[test]
fn sequence_and_time_wrap_around() {
    let mut a = engine(true);
    let mut b = engine(true);
    let start = u32::MAX - 3;
    a.snd_una = start;
    a.snd_nxt = start;
    b.rcv_nxt = start;
    let mut now = u32::MAX - 150;
    let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 3]).collect();
    for m in &msgs {
        a.send(m).unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..200 {
        let mut ab = Vec::new();
        a.update(now, &mut |d: &mut [u8]| ab.push(d.to_vec()));
        // Lose every datagram of the first flush to force retransmission across the wrap.
        if diff(now, u32::MAX - 150) > 0 {
            for d in &ab {
                b.input(now, d, Freshness::Fresh).unwrap();
            }
        }
        let mut ba = Vec::new();
        b.update(now, &mut |d: &mut [u8]| ba.push(d.to_vec()));
        for d in &ba {
            a.input(now.wrapping_add(5), d, Freshness::Fresh).unwrap();
        }
        let mut buf = [0u8; 16];
        while let Ok(n @ 1..) = b.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        now = now.wrapping_add(10);
    }
    assert_eq!(got, msgs);
    assert_eq!(a.snd_una(), start.wrapping_add(10));
    assert_eq!(b.rcv_nxt(), 6);
    assert_eq!(a.srtt(), 5, "RTT measured across the ts wrap");
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn switching_stream_to_message_mode_keeps_partial_reads() {
    let mut k = engine(true);
    k.set_stream_mode(true);
    k.input(0, &push(0, 0, 0, b"abcdef"), Freshness::Fresh)
        .unwrap();
    let mut buf = [0u8; 2];
    assert_eq!(k.recv(&mut buf), Ok(2));
    k.set_stream_mode(false);
    assert_eq!(k.peek_size(), Some(4));
    let mut buf = [0u8; 8];
    assert_eq!(k.recv(&mut buf), Ok(4));
    assert_eq!(&buf[..4], b"cdef");
}

/// The flush may skip old in-flight segments (see `hint_resendts`); across random lossy
/// exchanges its output must be byte-identical to the full kcp-go scan, return value included.
#[test]
fn skipping_the_retransmission_scan_is_invisible() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u32| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % u64::from(n)) as u32
    };
    for round in 0..24 {
        let cfg = KcpConfig {
            nodelay: round % 2 == 0,
            interval: [10, 20, 40][round % 3],
            resend: [0, 1, 2][(round / 3) % 3],
            nc: round % 4 != 3,
            snd_wnd: 128,
            rcv_wnd: 128,
            stream: round % 5 == 0,
            ..KcpConfig::default()
        };
        let mut a = Kcp::with_config(CONV, &cfg).unwrap();
        let mut r = Kcp::with_config(CONV, &cfg).unwrap();
        r.scan_skip_allowed = false;
        // Deadlines are compared below; tick skipping (tested on its own) needs exact hints.
        a.tick_skip_allowed = false;
        r.tick_skip_allowed = false;
        let mut b = Kcp::with_config(CONV, &cfg).unwrap();
        let loss = 1 + next(30);
        let mut now = (u32::MAX - 5000).wrapping_add(next(10_000));
        let mut in_flight: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut skipped = 0;
        for step in 0..1500 {
            if step % 3 == 0 && a.wait_snd() < 200 {
                let msg = vec![step as u8; 1 + next(3000) as usize];
                a.send(&msg).unwrap();
                r.send(&msg).unwrap();
            }
            let (mut oa, mut or) = (Vec::new(), Vec::new());
            if next(4) == 0 {
                let da = a.flush(now, &mut |d: &mut [u8]| oa.push(d.to_vec()));
                let dr = r.flush(now, &mut |d: &mut [u8]| or.push(d.to_vec()));
                assert_eq!(da, dr, "flush delay, round {round} step {step}");
            } else {
                a.update(now, &mut |d: &mut [u8]| oa.push(d.to_vec()));
                r.update(now, &mut |d: &mut [u8]| or.push(d.to_vec()));
            }
            assert!(oa == or, "datagrams differ, round {round} step {step}");
            assert_eq!(a.next_deadline(), r.next_deadline());
            if a.hint_resendts.is_some() && !a.hint_fastack {
                skipped += 1;
            }
            for d in oa {
                if next(100) >= loss {
                    in_flight.push((now.wrapping_add(20 + next(40)), d));
                }
            }
            let (due, later): (Vec<_>, Vec<_>) =
                in_flight.drain(..).partition(|(t, _)| diff(now, *t) >= 0);
            in_flight = later;
            for (_, d) in due {
                b.input(now, &d, Freshness::Fresh).unwrap();
            }
            let mut ob = Vec::new();
            b.update(now, &mut |d: &mut [u8]| ob.push(d.to_vec()));
            while let Ok(1..) = b.recv(&mut buf) {}
            for d in ob {
                if next(100) >= loss {
                    let freshness = if next(10) != 0 {
                        Freshness::Fresh
                    } else {
                        Freshness::Stale
                    };
                    a.input(now, &d, freshness).unwrap();
                    r.input(now, &d, freshness).unwrap();
                }
            }
            now = now.wrapping_add(1 + next(15));
        }
        assert!(skipped > 0);
        assert_eq!(a.stats(), r.stats());
    }
}

#[test]
fn write_delay_waits_for_the_periodic_flush() {
    let mut k = engine(true);
    k.update(0, &mut |_: &mut [u8]| {});
    k.set_write_delay(true);
    k.send(b"a").unwrap();
    k.send(b"b").unwrap();
    // Not due now: the next tick of the timer started at 0 + 100.
    assert_eq!(k.next_deadline(), Some(100));
    assert!(update_segs(&mut k, 50).is_empty());
    assert_eq!(pushes(&update_segs(&mut k, 100)), vec![0, 1]);
    k.set_write_delay(false);
    k.send(b"c").unwrap();
    assert_eq!(k.next_deadline(), Some(100));
}

/// Tick skipping (`skip_idle_ticks`) changes only how often the engine is woken: over lossy,
/// reordering links, with sparse echoes (the many-idle-sessions case) and bursts, engines that
/// skip send exactly the datagrams, at exactly the times, of engines that run every tick of
/// kcp-go's timer.
#[test]
fn skipping_idle_ticks_is_invisible() {
    use crate::sim::{LinkConfig, Network, NetworkConfig, Side};
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<(Side, u32, Vec<u8>)>>>;
    let run = |cfg: &KcpConfig, seed: u64, skip: bool| -> (Vec<(Side, u32, Vec<u8>)>, u64) {
        let mut a = Kcp::with_config(CONV, cfg).unwrap();
        let mut b = Kcp::with_config(CONV, cfg).unwrap();
        a.tick_skip_allowed = skip;
        b.tick_skip_allowed = skip;
        let link = LinkConfig::default()
            .loss(0.1)
            .delay(5, 40)
            .reorder(seed.is_multiple_of(2));
        let mut net = Network::new(NetworkConfig::symmetric(link).seed(seed), a, b).unwrap();
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        net.set_observer(Some(Box::new(move |side, now, d: &[u8]| {
            sink.lock().unwrap().push((side, now, d.to_vec()));
        })));
        let mut buf = vec![0u8; 1 << 16];
        for step in 0..400u32 {
            // Mostly idle: a 16-byte message now and then, echoed; a burst every so often.
            if step % 7 == 0 {
                net.send(Side::A, &[step as u8; 16]).unwrap();
            }
            if step % 97 == 50 {
                net.send(Side::A, &vec![1u8; 20_000]).unwrap();
            }
            while let Ok(n @ 1..) = net.recv(Side::B, &mut buf) {
                let echo = buf[..n.min(64)].to_vec();
                net.send(Side::B, &echo).unwrap();
            }
            while let Ok(1..) = net.recv(Side::A, &mut buf) {}
            net.run_for(1 + (step * 37 + seed as u32) % 45);
        }
        net.run_for(5_000);
        let updates = net.endpoint_stats(Side::A).updates + net.endpoint_stats(Side::B).updates;
        let log = std::mem::take(&mut *log.lock().unwrap());
        (log, updates)
    };
    let mut fewer = 0;
    for (i, base) in [
        KcpConfig::normal(),
        KcpConfig::fast(),
        KcpConfig::fast2(),
        KcpConfig::fast3(),
        KcpConfig::default(),
    ]
    .into_iter()
    .enumerate()
    {
        for seed in 1..7 {
            let cfg = KcpConfig {
                snd_wnd: 64,
                rcv_wnd: 64,
                stream: i % 2 == 0,
                write_delay: seed == 4,
                ack_nodelay: seed == 5,
                ..base.clone()
            };
            let (reference, every_tick) = run(&cfg, seed, false);
            let (skipping, updates) = run(&cfg, seed, true);
            assert!(reference.len() > 100, "too little traffic to compare");
            for (n, (r, s)) in reference.iter().zip(&skipping).enumerate() {
                assert!(
                    r == s,
                    "config {i} seed {seed}: datagram {n} differs: {r:?} vs {s:?}"
                );
            }
            assert_eq!(reference.len(), skipping.len(), "config {i} seed {seed}");
            if updates < every_tick {
                fewer += 1;
            }
        }
    }
    assert!(fewer > 0, "skipping never saved an update");
}

/// A receiver whose reader lagged advertised a small window in its ACKs; once the reader catches
/// up by a quarter of `rcv_wnd` a window update is due, and `flush_window` sends the pending ACKs
/// and one WINS with the reopened window and `una`. Reading less is not worth a datagram.
#[test]
fn window_update_after_a_lagging_reader_catches_up() {
    let mut k = engine(true);
    k.set_window(32, 16);
    k.update(0, &mut |_: &mut [u8]| {});
    for sn in 0..12 {
        k.input(1, &push(sn, 0, 1, b"x"), Freshness::Fresh).unwrap();
    }
    // The ACKs advertise 16 - 12 = 4.
    let segs = flush_segs(&mut k, 2);
    assert!(segs.iter().all(|(h, _)| h.wnd == 4));
    assert!(!k.window_update_due());
    let mut buf = [0u8; 1];
    // Three read: the window is 7, up by 3 < 16 / 4.
    for _ in 0..3 {
        assert_eq!(k.recv(&mut buf).unwrap(), 1);
    }
    assert!(!k.window_update_due());
    assert_eq!(k.recv(&mut buf).unwrap(), 1);
    assert!(k.window_update_due());
    // One more segment arrived meanwhile: its ACK rides along.
    k.input(3, &push(12, 0, 3, b"x"), Freshness::Fresh).unwrap();
    let mut dgrams = Vec::new();
    k.flush_window(4, &mut |d: &mut [u8]| dgrams.push(d.to_vec()));
    assert_eq!(dgrams.len(), 1);
    let segs = parse(&dgrams[0], k.reserved());
    assert_eq!(cmds(&segs), vec![Command::Ack, Command::Wins]);
    let wins = &segs[1].0;
    assert_eq!((wins.wnd, wins.una), (16 - 9, 13));
    assert!(!k.window_update_due());
    // Nothing more is pending: the next periodic flush sends no second WINS.
    assert!(update_segs(&mut k, 200).is_empty());
}

/// One segment sent at 0 and retransmitted on its RTO; returns the engine and the retransmission's ts.
fn retransmitted() -> (Kcp, u32) {
    let mut k = Kcp::fast3(CONV);
    k.send(b"x").unwrap();
    let mut ts = Vec::new();
    let mut now = 0;
    while ts.len() < 2 {
        k.update(now, &mut |d: &mut [u8]| {
            let h = SegmentHeader::decode(d).unwrap();
            if h.cmd == Command::Push {
                ts.push(h.ts);
            }
        });
        now += 1;
    }
    assert_eq!(k.stats().retrans_segs, 1);
    (k, ts[1])
}

#[test]
fn an_ack_of_the_first_transmission_marks_the_retransmission_spurious() {
    let (mut k, _) = retransmitted();
    k.input(200, &ack(0, 0, 1), Freshness::Fresh).unwrap();
    assert_eq!(k.spurious_retrans_segs(), 1);
    // The ACK of the retransmission: it was needed.
    let (mut k, ts) = retransmitted();
    k.input(200, &ack(0, ts, 1), Freshness::Fresh).unwrap();
    assert_eq!(k.spurious_retrans_segs(), 0);
    // Acknowledged already: a late ACK of the first transmission counts nothing.
    k.input(210, &ack(0, 0, 1), Freshness::Fresh).unwrap();
    assert_eq!(k.spurious_retrans_segs(), 0);
}

#[test]
fn ack_repeat_acks_out_of_order_segments_again_first_and_only_with_fresh_acks() {
    let mut k = engine(true);
    assert_eq!(k.ack_repeat(), 0);
    k.set_ack_repeat(2);
    // sn 0 is missing: 1 and 2 are out of order.
    k.input(
        0,
        &[push(1, 0, 11, b"a"), push(2, 0, 12, b"b")].concat(),
        Freshness::Fresh,
    )
    .unwrap();
    let acks = |segs: &[Seg]| -> Vec<(u32, u32)> {
        segs.iter()
            .filter(|(h, _)| h.cmd == Command::Ack)
            .map(|(h, _)| (h.sn, h.ts))
            .collect()
    };
    assert_eq!(acks(&flush_segs(&mut k, 1)), vec![(1, 11), (2, 12)]);
    // No fresh ACK: no repeat on its own.
    assert!(flush_segs(&mut k, 2).is_empty());
    // Next fresh ACK (sn 4): 1 and 2 again, before it.
    k.input(3, &push(4, 0, 14, b"c"), Freshness::Fresh).unwrap();
    assert_eq!(
        acks(&flush_segs(&mut k, 4)),
        vec![(1, 11), (2, 12), (4, 14)]
    );
    // Second repeat of 1 and 2, first of 4.
    k.input(5, &push(5, 0, 15, b"d"), Freshness::Fresh).unwrap();
    assert_eq!(
        acks(&flush_segs(&mut k, 6)),
        vec![(1, 11), (2, 12), (4, 14), (5, 15)]
    );
    // The hole fills: una covers 1 and 2 (done with anyway) and 4, 5; only the fresh ACK goes.
    k.input(
        7,
        &[push(0, 0, 10, b"e"), push(3, 0, 13, b"f")].concat(),
        Freshness::Fresh,
    )
    .unwrap();
    let segs = flush_segs(&mut k, 8);
    assert_eq!(acks(&segs), vec![(3, 13)]);
    assert_eq!(segs[0].0.una, 6);
    assert!(k.reacks.as_ref().is_some_and(|r| r.list.is_empty()));
}

#[test]
fn ack_repeat_sender_counts_each_segment_once_for_fast_retransmit_and_rtt() {
    let mut k = engine(true);
    k.set_nodelay(false, 100, 2, true);
    k.set_window(64, 32);
    k.set_ack_repeat(2);
    for _ in 0..4 {
        k.send(b"seg").unwrap();
    }
    flush_segs(&mut k, 0);
    k.input(50, &ack(1, 0, 0), Freshness::Fresh).unwrap();
    let srtt = k.srtt();
    assert_eq!(k.snd_buf[0].fastack, 1);
    // The same ACK repeated: neither a second skip nor an RTT sample.
    k.input(90, &ack(1, 0, 0), Freshness::Fresh).unwrap();
    k.input(95, &ack(1, 0, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.snd_buf[0].fastack, 1);
    assert_eq!(k.srtt(), srtt);
    // Without ack_repeat every ACK counts (kcp-go).
    k.set_ack_repeat(0);
    k.input(96, &ack(1, 0, 0), Freshness::Fresh).unwrap();
    assert_eq!(k.snd_buf[0].fastack, 2);
    assert_ne!(k.srtt(), srtt);
}

#[test]
fn ack_repeat_follows_the_controller_unless_set() {
    let with = |congestion, ack_repeat| {
        Kcp::with_config(
            CONV,
            &KcpConfig {
                congestion,
                ack_repeat,
                ..KcpConfig::fast3()
            },
        )
        .unwrap()
        .ack_repeat()
    };
    assert_eq!(with(Congestion::KcpGo, None), 0);
    assert_eq!(with(Congestion::None, None), 0);
    assert_eq!(with(Congestion::DeliveryRate, None), 2);
    assert_eq!(with(Congestion::LossTolerant, None), 2);
    assert_eq!(with(Congestion::LossTolerant, Some(0)), 0);
    assert_eq!(with(Congestion::KcpGo, Some(1)), 1);
}

#[test]
fn bundle_copies_older_unacked_segments_into_the_room_of_new_datagrams() {
    let mut k = engine(true);
    k.set_nodelay(true, 10, 2, true);
    assert!(!k.bundle());
    k.set_bundle(true);
    k.send(b"a").unwrap();
    let d = flush_dgrams(&mut k, 0);
    assert_eq!(d.len(), 1);
    assert_eq!(pushes(&parse(&d[0], 0)), vec![0]);
    // New data: the copy of 0 rides in the same datagram, after the new segment, stamped now.
    k.send(b"b").unwrap();
    let d = flush_dgrams(&mut k, 5);
    assert_eq!(d.len(), 1);
    let segs = parse(&d[0], 0);
    assert_eq!(pushes(&segs), vec![1, 0]);
    assert!(segs.iter().all(|(h, _)| h.ts == 5));
    assert_eq!(segs[1].1, b"a");
    // Not a retransmission: no counter moves, no extra transmission counted.
    assert_eq!(k.stats().retrans_segs, 0);
    assert_eq!(k.snd_buf[0].xmit, 1);
    // A flush without new data copies nothing.
    assert!(flush_dgrams(&mut k, 6).is_empty());
    // Once 0 is acknowledged only 1 is copied.
    k.input(7, &ack(0, 5, 1), Freshness::Fresh).unwrap();
    k.send(b"c").unwrap();
    assert_eq!(pushes(&flush_segs(&mut k, 8)), vec![2, 1]);
    // Never an extra datagram: a full datagram of new data leaves no room for copies.
    k.send(&vec![7u8; k.mss()]).unwrap();
    let d = flush_dgrams(&mut k, 9);
    assert_eq!(d.len(), 1);
    assert_eq!(pushes(&parse(&d[0], 0)), vec![3]);
}
