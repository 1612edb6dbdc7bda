//! The whole packet pipeline in virtual time: a client [`Connection`] and a server [`Endpoint`] (crypt + FEC +
//! KCP, both directions) over a seeded lossy, reordering, duplicating link. No sockets, no sleeping.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;

use rkcp_crypt::{CipherKind, PacketCrypt};
use rkcp_engine::sim::{LinkConfig, Rng};

use super::connection::Connection;
use super::endpoint::{Action, ConnHandle, Endpoint};
use super::packet::DropReason;
use super::time::Timestamp;
use crate::config::{AdaptiveFec, KcpConfig};
use crate::error::{CloseReason, SessionError};

/// One direction of the simulated path.
pub(super) struct Link {
    cfg: LinkConfig,
    rng: Rng,
    /// (arrival, sequence, datagram)
    flight: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>,
    seq: u64,
    last_arrival: u64,
}

impl Link {
    pub(super) fn new(cfg: LinkConfig, seed: u64) -> Link {
        Link {
            cfg,
            rng: Rng::new(seed),
            flight: BinaryHeap::new(),
            seq: 0,
            last_arrival: 0,
        }
    }

    pub(super) fn send(&mut self, now: u64, pkt: &[u8]) {
        if self.rng.chance(self.cfg.loss) {
            return;
        }
        let copies = if self.rng.chance(self.cfg.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.rng.range(
                u64::from(self.cfg.delay_min),
                u64::from(self.cfg.delay_max) + 1,
            );
            let mut at = now + d;
            if !self.cfg.reorder {
                at = at.max(self.last_arrival);
                self.last_arrival = at;
            }
            self.seq += 1;
            self.flight.push(Reverse((at, self.seq, pkt.to_vec())));
        }
    }

    pub(super) fn next(&self) -> Option<u64> {
        self.flight.peek().map(|Reverse((at, ..))| *at)
    }

    pub(super) fn pop_due(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.next()? <= now {
            self.flight.pop().map(|Reverse((.., p))| p)
        } else {
            None
        }
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng::new(seed ^ 0x5eed);
    let mut v = vec![0u8; len];
    r.fill(&mut v);
    v
}

/// Hands the connection's queued datagrams to the link.
pub(super) fn drain(conn: &mut Connection, link: &mut Link, now: u64) {
    let q = conn.transmits();
    for i in 0..q.len() {
        link.send(now, q.get(i));
    }
    let n = q.len();
    conn.transmitted(n);
}

/// Moves `data` from `from` to `to` as far as the windows allow.
fn pump_app(conn: &mut Connection, now: Timestamp, data: &[u8], sent: &mut usize) {
    while *sent < data.len() {
        match conn.write(now, &data[*sent..]).unwrap() {
            Some(n) => *sent += n,
            None => break,
        }
    }
}

fn read_all(conn: &mut Connection, now: Timestamp, got: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    while let Some(n) = conn.read(now, &mut buf).unwrap() {
        got.extend_from_slice(&buf[..n]);
    }
}

struct Case {
    seed: u64,
    link: LinkConfig,
    cfg: KcpConfig,
    bytes: usize,
    /// The client's NAT gives it a new source port this often (ms of virtual time).
    rebind_every: Option<u64>,
}

/// What a run did, besides delivering every byte.
struct Outcome {
    elapsed: u64,
    roamed: u64,
}

/// Runs one transfer both ways.
fn run(case: &Case) -> Outcome {
    let mut up = Link::new(case.link.clone(), case.seed);
    let mut down = Link::new(
        case.link.clone(),
        case.seed.wrapping_mul(31).wrapping_add(7),
    );
    // The server first: an AEAD listener refuses sessions created before it started (replays across a restart).
    let mut ep = Endpoint::new(case.cfg.clone());
    let (sealer, mut opener) = match case.cfg.crypt.as_ref() {
        Some(pc) => {
            let (s, o) = pc.client_session(rkcp_crypt::SessionId::now()).split();
            (Some(s), Some(o))
        }
        None => (None, None),
    };
    let mut client = Connection::new(0x1234_5678, &case.cfg, sealer).unwrap();
    let mut server: Option<(ConnHandle, Box<Connection>)> = None;
    let up_data = pattern(case.seed, case.bytes);
    let down_data = pattern(case.seed + 1, case.bytes);
    let (mut up_sent, mut down_sent) = (0usize, 0usize);
    let (mut up_got, mut down_got) = (Vec::new(), Vec::new());
    let mut now = 0u64;
    let limit = 600_000; // ms of virtual time
    while now < limit {
        let t = Timestamp::from_millis(now);
        pump_app(&mut client, t, &up_data, &mut up_sent);
        read_all(&mut client, t, &mut down_got);
        if let Some((_, s)) = server.as_mut() {
            pump_app(s, t, &down_data, &mut down_sent);
            read_all(s, t, &mut up_got);
        }
        if up_got.len() == case.bytes && down_got.len() == case.bytes {
            break;
        }
        drain(&mut client, &mut up, now);
        if let Some((_, s)) = server.as_mut() {
            drain(s, &mut down, now);
        }
        // Next event: a datagram arriving or a timer.
        let mut next = [
            up.next(),
            down.next(),
            client.poll_timeout(t).map(Timestamp::as_millis),
            server
                .as_ref()
                .and_then(|(_, s)| s.poll_timeout(t).map(Timestamp::as_millis)),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("the transfer stalled: no datagram in flight and no timer");
        next = next.max(now);
        now = next;
        let t = Timestamp::from_millis(now);
        let mut fed = false;
        while let Some(mut pkt) = up.pop_due(now) {
            let port = 5000 + case.rebind_every.map_or(0, |e| now / e) as u16;
            let client_addr: SocketAddr = ([10, 0, 0, 1], port).into();
            let routed = ep.handle(t, client_addr, &mut pkt);
            if let Some(h) = routed.moved {
                assert!(case.rebind_every.is_some(), "seed {}: moved", case.seed);
                assert_eq!(server.as_ref().map(|(sh, _)| *sh), Some(h));
            }
            match routed.action {
                Action::Accept(h, mut c, data) => {
                    assert!(server.is_none(), "seed {}: a second connection", case.seed);
                    ep.accepted();
                    c.handle_datagram(t, data);
                    server = Some((h, c));
                }
                Action::Deliver(h, data) => {
                    let (sh, s) = server.as_mut().expect("delivered before accepted");
                    assert_eq!(*sh, h);
                    s.handle_datagram(t, data);
                }
                // A parity shard whose data shard was lost cannot start the connection (kcp-go), nor
                // reach it from an address it has not moved to yet.
                Action::Drop(DropReason::UnknownPeer)
                    if server.is_none() || case.rebind_every.is_some() => {}
                // AEAD kinds: a datagram the link duplicated is refused by the replay window.
                Action::Drop(DropReason::Replayed)
                    if case
                        .cfg
                        .crypt
                        .as_ref()
                        .is_some_and(|c| c.kind().is_authenticated()) => {}
                Action::Drop(r) => panic!("seed {}: dropped {r:?}", case.seed),
                // After a rebind mid-burst: the path check goes back to the client, whose answer moves the
                // connection.
                Action::Respond(reply) if case.rebind_every.is_some() => down.send(now, reply),
                Action::Respond(_) => panic!("seed {}: an address check", case.seed),
                Action::Forward(_) => panic!("seed {}: forwarded, not sharded", case.seed),
            }
            fed = true;
        }
        if fed && let Some((_, s)) = server.as_mut() {
            s.finish_input(t);
        }
        let mut fed = false;
        while let Some(mut pkt) = down.pop_due(now) {
            let Ok((r, _)) = crate::proto::packet::open_with(opener.as_mut(), &mut pkt) else {
                // A duplicated datagram of the AEAD kinds is refused by the replay window; nothing else is.
                assert!(
                    case.cfg
                        .crypt
                        .as_ref()
                        .is_some_and(|c| c.kind().is_authenticated())
                );
                continue;
            };
            client.handle_datagram(t, &pkt[r]);
            fed = true;
        }
        if fed {
            client.finish_input(t);
        }
        if client.poll_timeout(t).is_some_and(|d| d <= t) {
            client.handle_timeout(t);
        }
        if let Some((_, s)) = server.as_mut()
            && s.poll_timeout(t).is_some_and(|d| d <= t)
        {
            s.handle_timeout(t);
        }
        assert!(
            client.closed().is_none(),
            "seed {}: client closed",
            case.seed
        );
    }
    assert!(
        up_got == up_data,
        "seed {}: client→server bytes differ ({} of {})",
        case.seed,
        up_got.len(),
        case.bytes
    );
    assert!(
        down_got == down_data,
        "seed {}: server→client bytes differ ({} of {})",
        case.seed,
        down_got.len(),
        case.bytes
    );
    let st = ep.stats();
    assert_eq!(st.created, 1, "seed {}: one connection only", case.seed);
    Outcome {
        elapsed: now,
        roamed: st.roamed,
    }
}

fn config(seed: u64) -> KcpConfig {
    let mut cfg = match seed % 3 {
        0 => KcpConfig::fast3(),
        1 => KcpConfig::fast(),
        _ => KcpConfig::default(),
    };
    if seed.is_multiple_of(2) {
        cfg = cfg.with_crypt(PacketCrypt::new(CipherKind::Aes, &[7u8; 32]));
    } else if seed % 5 == 1 {
        cfg = cfg.with_crypt(PacketCrypt::new(CipherKind::Aes256Gcm, &[9u8; 32]));
    }
    if seed % 4 < 2 {
        cfg = cfg.with_fec(4, 2);
    }
    cfg
}

/// [`config`], with adaptive parity (copies of the parity packet varying) on a quarter of the seeds without
/// FEC.
fn config_any_fec(seed: u64) -> KcpConfig {
    let cfg = config(seed);
    match seed % 8 {
        2 => cfg.with_adaptive_fec(1, AdaptiveFec::new(1, 4)),
        6 => cfg.with_adaptive_fec(2, AdaptiveFec::new(1, 3)),
        _ => cfg,
    }
}

fn link(seed: u64) -> LinkConfig {
    let mut r = Rng::new(seed);
    let loss = [0.0, 0.01, 0.05, 0.1, 0.2][r.below(5) as usize];
    let lo = r.range(1, 40) as u32;
    LinkConfig::default()
        .loss(loss)
        .duplicate(if r.chance(0.3) { 0.05 } else { 0.0 })
        .delay(lo, lo + r.range(0, 40) as u32)
        .reorder(r.chance(0.5))
}

/// Exactly-once, in-order delivery both ways through crypt + FEC + KCP, over 2,000 seeded links (loss up to
/// 20 %, duplication, reordering, 1–80 ms delay), kcptun's presets, with and without ciphers and FEC (fixed or
/// adaptive).
#[test]
fn every_byte_arrives_once_and_in_order_over_2000_seeds() {
    let mut worst = 0;
    for seed in 0..2000u64 {
        let case = Case {
            seed,
            link: link(seed),
            cfg: config_any_fec(seed),
            bytes: 3000 + (seed as usize * 7919) % 60_000,
            rebind_every: None,
        };
        worst = worst.max(run(&case).elapsed);
    }
    assert!(worst > 0);
}

/// A NAT that gives the client a new source port every 300 ms–2 s of virtual time, mid-transfer, over lossy,
/// reordering links with every cipher/FEC mix: the one connection follows its peer (server-side rule only:
/// the client is not told), every byte arrives once and in order.
#[test]
fn a_rebinding_nat_keeps_the_session_over_300_seeds() {
    let mut roamed = 0;
    for seed in 0..300u64 {
        let mut r = Rng::new(seed ^ 0xbeef);
        let case = Case {
            seed,
            link: link(seed).loss(0.02),
            cfg: config(seed),
            bytes: 400_000,
            rebind_every: Some(r.range(300, 2000)),
        };
        let o = run(&case);
        assert!(
            o.roamed >= o.elapsed / case.rebind_every.unwrap() / 2,
            "seed {}: {} moves in {} ms",
            seed,
            o.roamed,
            o.elapsed
        );
        roamed += o.roamed;
    }
    assert!(roamed > 300);
}

/// Garbage and replays from strangers never reach the live connection and are counted.
#[test]
fn strangers_are_dropped_and_counted() {
    let cfg = KcpConfig::fast3().with_crypt(PacketCrypt::new(CipherKind::Aes, &[7u8; 32]));
    let mut ep = Endpoint::new(cfg.clone());
    let mut rng = Rng::new(3);
    let t = Timestamp::from_millis(1);
    let mut seen: HashMap<&'static str, u64> = HashMap::new();
    for i in 0..5000u16 {
        let mut pkt = vec![0u8; rng.range(0, 1500) as usize];
        rng.fill(&mut pkt);
        let from: SocketAddr = ([10, 0, 0, 2], i).into();
        let r = ep.handle(t, from, &mut pkt);
        let k = match r.action {
            Action::Drop(_) => "drop",
            _ => "other",
        };
        *seen.entry(k).or_default() += 1;
    }
    assert_eq!(seen.get("drop"), Some(&5000));
    let s = ep.stats();
    assert_eq!(s.short + s.checksum, 5000);
    assert_eq!(ep.len(), 0);
}

/// Hands everything `from` has queued to `to` at once, over a perfect link.
fn deliver(from: &mut Connection, to: &mut Connection, now: Timestamp) {
    let q = from.transmits();
    for i in 0..q.len() {
        let d = q.get(i).to_vec();
        to.handle_datagram(now, &d);
    }
    let n = from.transmits().len();
    from.transmitted(n);
    to.finish_input(now);
}

/// Runs `conn`'s timers alone in virtual time (its datagrams go nowhere) until it closes or `limit` ms pass;
/// returns when it closed.
fn run_timers_alone(conn: &mut Connection, from: u64, limit: u64) -> Option<u64> {
    let mut now = Timestamp::from_millis(from);
    while now.as_millis() <= limit {
        conn.handle_timeout(now);
        let n = conn.transmits().len();
        conn.transmitted(n);
        if conn.closed().is_some() {
            return Some(now.as_millis());
        }
        now = conn.poll_timeout(now)?.max(now.add_millis(1));
    }
    None
}

/// Idle timeout: a session that hears nothing for `idle_timeout` closes with a typed reason that a pure
/// reader sees; anything from the peer moves the deadline; `None` leaves an idle session without any timer.
#[test]
fn idle_timeout_closes_a_silent_session_and_traffic_resets_it() {
    use std::time::Duration;
    let cfg = KcpConfig::fast3().with_idle_timeout(Some(Duration::from_millis(1000)));
    let mut a = Connection::new(9, &cfg, None).unwrap();
    let mut b = Connection::new(9, &cfg, None).unwrap();
    let t = Timestamp::from_millis;
    a.handle_timeout(t(0));
    b.handle_timeout(t(0));
    let n = a.transmits().len();
    a.transmitted(n);
    assert_eq!(
        a.poll_timeout(t(0)),
        Some(t(1000)),
        "an idle engine: only the idle deadline"
    );
    // The peer says something at 800: the deadline moves to 1800.
    b.write(t(800), b"hello").unwrap();
    deliver(&mut b, &mut a, t(800));
    let mut buf = [0u8; 16];
    assert_eq!(a.read(t(800), &mut buf).unwrap(), Some(5));
    let closed = run_timers_alone(&mut a, 800, 10_000).expect("idle timeout fired");
    assert_eq!(closed, 1800);
    assert_eq!(a.closed(), Some(CloseReason::IdleTimeout(1000)));
    // A side that only reads gets the typed error, not a hang and not "closed locally".
    assert!(matches!(
        a.read(t(1801), &mut buf),
        Err(SessionError::IdleTimeout(d)) if d == Duration::from_millis(1000)
    ));
    assert!(matches!(
        a.write(t(1801), b"x"),
        Err(SessionError::IdleTimeout(_))
    ));
    assert_eq!(a.poll_timeout(t(1801)), None);

    // Disabled: an idle session has no timer at all (10,000 idle sessions cost nothing).
    let mut c = Connection::new(9, &cfg.clone().with_idle_timeout(None), None).unwrap();
    c.handle_timeout(t(0));
    let n = c.transmits().len();
    c.transmitted(n);
    assert_eq!(c.poll_timeout(t(0)), None);
    assert_eq!(run_timers_alone(&mut c, 0, 1_000_000), None);
}

/// A healthy session with steady traffic both ways never idles out, even with a short idle timeout and a
/// lossy link (the 2,000-seed suite runs the default 60 s timeout).
#[test]
fn traffic_keeps_a_short_idle_timeout_from_firing() {
    use std::time::Duration;
    for seed in 0..50u64 {
        let case = Case {
            seed,
            link: LinkConfig::default().loss(0.05).delay(20, 60),
            cfg: KcpConfig::fast3().with_idle_timeout(Some(Duration::from_millis(2000))),
            bytes: 200_000,
            rebind_every: None,
        };
        run(&case);
    }
}

/// Close bound: `shutdown` against a frozen peer ends at `close_timeout` with its own reason (before the
/// dead-link check would); against a live peer it completes once everything is acknowledged.
#[test]
fn shutdown_is_bounded_when_the_peer_is_frozen() {
    use std::time::Duration;
    let mut cfg = KcpConfig::fast3();
    cfg.kcp.dead_link = 1000;
    let cfg = cfg
        .with_close_timeout(Duration::from_millis(1500))
        .with_idle_timeout(None);
    let t = Timestamp::from_millis;
    let mut a = Connection::new(5, &cfg, None).unwrap();
    a.handle_timeout(t(0));
    a.write(t(10), &[1u8; 5000]).unwrap();
    a.begin_shutdown(t(10));
    a.begin_shutdown(t(500)); // only the first call counts
    assert!(!a.all_acked());
    let closed = run_timers_alone(&mut a, 10, 100_000).expect("bounded");
    assert_eq!(closed, 1510);
    assert_eq!(a.closed(), Some(CloseReason::CloseTimeout(1500)));
    assert!(matches!(
        a.flush(t(1511)),
        Err(SessionError::CloseTimeout(d)) if d == Duration::from_millis(1500)
    ));

    // A live peer acknowledges: the bound never fires.
    let mut a = Connection::new(5, &cfg, None).unwrap();
    let mut b = Connection::new(5, &cfg, None).unwrap();
    a.handle_timeout(t(0));
    b.handle_timeout(t(0));
    a.write(t(10), &[1u8; 5000]).unwrap();
    a.begin_shutdown(t(10));
    let mut now = 10;
    while !a.all_acked() && now < 1500 {
        let tt = t(now);
        deliver(&mut a, &mut b, tt);
        deliver(&mut b, &mut a, tt);
        let mut buf = [0u8; 8192];
        while b.read(tt, &mut buf).unwrap().is_some() {}
        a.handle_timeout(tt);
        b.handle_timeout(tt);
        now += 5;
    }
    assert!(a.all_acked(), "acknowledged within the bound");
    assert_eq!(run_timers_alone(&mut a, now, 1600).map(|_| ()), None);
    assert!(a.closed().is_none());
}
