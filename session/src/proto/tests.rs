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
use crate::config::KcpConfig;

/// One direction of the simulated path.
struct Link {
    cfg: LinkConfig,
    rng: Rng,
    /// (arrival, sequence, datagram)
    flight: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>,
    seq: u64,
    last_arrival: u64,
}

impl Link {
    fn new(cfg: LinkConfig, seed: u64) -> Link {
        Link {
            cfg,
            rng: Rng::new(seed),
            flight: BinaryHeap::new(),
            seq: 0,
            last_arrival: 0,
        }
    }

    fn send(&mut self, now: u64, pkt: &[u8]) {
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

    fn next(&self) -> Option<u64> {
        self.flight.peek().map(|Reverse((at, ..))| *at)
    }

    fn pop_due(&mut self, now: u64) -> Option<Vec<u8>> {
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

fn drain(conn: &mut Connection, link: &mut Link, now: u64) {
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
/// 20 %, duplication, reordering, 1–80 ms delay), kcptun's presets, with and without ciphers and FEC.
#[test]
fn every_byte_arrives_once_and_in_order_over_2000_seeds() {
    let mut worst = 0;
    for seed in 0..2000u64 {
        let case = Case {
            seed,
            link: link(seed),
            cfg: config(seed),
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
            bytes: 200_000,
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
