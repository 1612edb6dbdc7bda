//! Unit tests of [`Connection`](super::Connection)'s own rules (ACK timing, window updates, size).

use super::*;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// A fast3 sender and receiver at time 0, the sender told the receiver's window (it assumes 32 segments
/// until it hears from the peer), nothing queued.
fn pair_knowing_the_window() -> (Connection, Connection) {
    let cfg = KcpConfig::fast3();
    let mut tx = Connection::new(7, &cfg, None).unwrap();
    let mut rx = Connection::new(7, &cfg, None).unwrap();
    tx.handle_timeout(t(0));
    rx.handle_timeout(t(0));
    rx.kcp.send(b"w").unwrap();
    rx.flush(t(0)).unwrap();
    for i in 0..rx.tx.len() {
        let d = rx.tx.get(i).to_vec();
        tx.handle_datagram(t(0), &d);
    }
    tx.tx.clear();
    rx.tx.clear();
    (tx, rx)
}

/// `n` full data datagrams from a sender, fed to a receiver between its periodic flushes: the receiver
/// sends ACKs early only once a full ACK datagram's worth has arrived.
fn acks_after(n: usize) -> usize {
    let (mut tx, mut rx) = pair_knowing_the_window();
    let mss = tx.kcp.mss();
    tx.kcp.send(&vec![1u8; mss * n]).unwrap();
    tx.flush(t(1)).unwrap();
    // First the ACK for "w" (its window slide makes the receiver flush), then n data datagrams.
    assert_eq!(tx.tx.len(), n + 1);
    let d = tx.tx.get(0).to_vec();
    rx.handle_datagram(t(2), &d);
    rx.finish_input(t(2));
    rx.tx.clear();
    for i in 1..n + 1 {
        let d = tx.tx.get(i).to_vec();
        rx.handle_datagram(t(3), &d);
    }
    rx.finish_input(t(3)); // the periodic flush is due at 10
    rx.tx.len()
}

#[test]
fn acks_leave_early_only_in_full_datagrams_worth() {
    let cfg = KcpConfig::fast3();
    let per_datagram = (cfg.kcp.mtu - cfg.overhead()) / rkcp_engine::OVERHEAD;
    assert_eq!(acks_after(per_datagram - 1), 0);
    // In-order ACKs are filtered down to the last one, so one small datagram answers them all.
    assert_eq!(acks_after(per_datagram), 1);
    assert_eq!(acks_after(per_datagram * 3), 1);
}

/// A data datagram between periodic flushes: its ACK leaves after 2 ms (`DEFAULT_ACK_DELAY_MS`), not at
/// the next periodic flush (10 ms in fast3, 30 ms in kcptun's default `fast`).
#[test]
fn acks_wait_at_most_two_ms() {
    for cfg in [KcpConfig::fast3(), KcpConfig::fast()] {
        acks_wait_at_most_two_ms_with(cfg);
    }
}

fn acks_wait_at_most_two_ms_with(cfg: KcpConfig) {
    let mut tx = Connection::new(7, &cfg, None).unwrap();
    let mut rx = Connection::new(7, &cfg, None).unwrap();
    tx.handle_timeout(t(0));
    rx.handle_timeout(t(0));
    tx.kcp.send(b"data").unwrap();
    tx.flush(t(1)).unwrap();
    let d = tx.tx.get(0).to_vec();
    rx.handle_datagram(t(1), &d);
    rx.finish_input(t(1));
    assert_eq!(rx.tx.len(), 0);
    assert_eq!(rx.poll_timeout(t(1)), Some(t(3)));
    rx.handle_timeout(t(3));
    assert_eq!(rx.tx.len(), 1);
}

/// The commands in a queued datagram (connections without a cipher: the segments start after the
/// reserved front).
fn commands(c: &Connection, i: usize) -> Vec<rkcp_engine::Command> {
    let mut rest = &c.tx.get(i)[c.overhead()..];
    let mut v = Vec::new();
    while let Ok(h) = rkcp_engine::SegmentHeader::decode(rest) {
        v.push(h.cmd);
        rest = &rest[rkcp_engine::OVERHEAD + h.len as usize..];
    }
    v
}

/// A burst fills a third of the receive window before the reader gets to it, so its ACKs advertise
/// two thirds; the reader then catches up between periodic flushes: the reopened window goes out at
/// once (a WINS), not 10 ms later, so a sender held by its window (fast3: 1024 both ways) resumes.
#[test]
fn a_reader_catching_up_tells_the_sender_at_once() {
    let (mut tx, mut rx) = pair_knowing_the_window();
    let n = 340;
    let mss = tx.kcp.mss();
    tx.kcp.send(&vec![1u8; mss * n]).unwrap();
    tx.flush(t(1)).unwrap();
    for i in 0..tx.tx.len() {
        let d = tx.tx.get(i).to_vec();
        rx.handle_datagram(t(2), &d);
    }
    rx.finish_input(t(2));
    assert!(!rx.tx.is_empty(), "a burst this size is acknowledged early");
    rx.tx.clear();
    let mut buf = vec![0u8; mss * 150];
    // 150 segments read: up by less than a quarter window (256), no datagram.
    assert_eq!(rx.read(t(3), &mut buf).unwrap(), Some(buf.len()));
    assert_eq!(rx.tx.len(), 0);
    // 150 more: a WINS goes out now (the periodic flush is due at 10).
    assert_eq!(rx.read(t(3), &mut buf).unwrap(), Some(buf.len()));
    assert_eq!(rx.tx.len(), 1);
    assert_eq!(commands(&rx, 0), vec![rkcp_engine::Command::Wins]);
}

#[test]
fn an_idle_connection_stays_small() {
    // 10,000 idle sessions must fit in a few MB: the FEC coders are boxed.
    assert!(std::mem::size_of::<Connection>() <= 1024);
}
