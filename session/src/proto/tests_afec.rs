//! Adaptive parity in virtual time: two connections exchanging small paced messages (a client sending
//! 64 bytes every 20 ms, a server echoing them) over seeded lossy links, with the parity each side sends
//! traced as it changes. No sockets, no sleeping; the latencies are virtual-time figures.

use rkcp_engine::sim::LinkConfig;

use super::connection::Connection;
use super::tests::{Link, drain};
use super::time::Timestamp;
use crate::config::{AdaptiveFec, KcpConfig};

/// What one echo run did.
struct Echo {
    /// (time in ms, parity the client sends) at the start and at every change.
    client_ps: Vec<(u64, usize)>,
    /// The same for the server.
    server_ps: Vec<(u64, usize)>,
    /// Round trip of every message in ms, in order.
    rtts: Vec<u64>,
}

const MSG: usize = 64;
const PERIOD: u64 = 20;

fn message(i: usize) -> [u8; MSG] {
    let mut m = [0u8; MSG];
    for (k, b) in m.iter_mut().enumerate() {
        *b = (i.wrapping_mul(131) ^ k.wrapping_mul(7)) as u8;
    }
    m
}

fn note(trace: &mut Vec<(u64, usize)>, now: u64, conn: &Connection) {
    let ps = conn.fec_parity_shards().unwrap_or(0);
    if trace.last().is_none_or(|&(_, last)| last != ps) {
        trace.push((now, ps));
    }
}

/// Sends `count` messages every 20 ms over links of `loss` each way (30 ms one way) and checks that every
/// byte comes back exactly once and in order.
fn echo(seed: u64, loss: f64, cfg: &KcpConfig, count: usize) -> Echo {
    let link = LinkConfig::default().loss(loss).delay(30, 30);
    let mut up = Link::new(link.clone(), seed);
    let mut down = Link::new(link, seed.wrapping_mul(31).wrapping_add(7));
    let mut client = Connection::new(0x0afe_c000, cfg, None).unwrap();
    let mut server = Connection::new(0x0afe_c000, cfg, None).unwrap();
    let mut out = Echo {
        client_ps: Vec::new(),
        server_ps: Vec::new(),
        rtts: Vec::with_capacity(count),
    };
    let mut sent_at = Vec::with_capacity(count);
    let (mut echoed, mut got) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 4096];
    let mut now = 0u64;
    while got.len() < count * MSG {
        assert!(now < count as u64 * PERIOD + 60_000, "seed {seed}: stalled");
        let t = Timestamp::from_millis(now);
        while let Some(pkt) = up.pop_due(now) {
            server.handle_datagram(t, &pkt);
        }
        server.finish_input(t);
        while let Some(pkt) = down.pop_due(now) {
            client.handle_datagram(t, &pkt);
        }
        client.finish_input(t);
        client.handle_timeout(t);
        server.handle_timeout(t);
        if sent_at.len() < count && now >= sent_at.len() as u64 * PERIOD {
            let i = sent_at.len();
            assert_eq!(client.write(t, &message(i)).unwrap(), Some(MSG));
            sent_at.push(now);
        }
        while let Some(n) = server.read(t, &mut buf).unwrap() {
            echoed.extend_from_slice(&buf[..n]);
        }
        if !echoed.is_empty() {
            let n = server.write(t, &echoed).unwrap().unwrap_or(0);
            echoed.drain(..n);
        }
        while let Some(n) = client.read(t, &mut buf).unwrap() {
            for &b in &buf[..n] {
                let i = got.len() / MSG;
                assert_eq!(
                    b,
                    message(i)[got.len() % MSG],
                    "seed {seed}: byte {}",
                    got.len()
                );
                got.push(b);
                if got.len() % MSG == 0 {
                    out.rtts.push(now - sent_at[i]);
                }
            }
        }
        note(&mut out.client_ps, now, &client);
        note(&mut out.server_ps, now, &server);
        drain(&mut client, &mut up, now);
        drain(&mut server, &mut down, now);
        let next_msg = (sent_at.len() < count).then(|| sent_at.len() as u64 * PERIOD);
        now = [
            up.next(),
            down.next(),
            client.poll_timeout(t).map(Timestamp::as_millis),
            server.poll_timeout(t).map(Timestamp::as_millis),
            next_msg,
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("timers run while messages are in flight")
        .max(now + 1);
    }
    assert_eq!(got.len(), count * MSG);
    out
}

/// fast3 with one data shard per group and parity chosen between 1 and 3 for small messages, starting at
/// `start`.
fn adaptive(start: usize) -> KcpConfig {
    KcpConfig::fast3().with_adaptive_fec(start, AdaptiveFec::new(1, 3))
}

/// Where the parity first reached `ps`, and the share of the time after that it stayed at least `ps`.
fn reached(trace: &[(u64, usize)], ps: usize, end: u64) -> Option<(u64, f64)> {
    let first = trace.iter().position(|&(_, p)| p >= ps)?;
    let mut above = 0;
    for (k, &(at, p)) in trace.iter().enumerate().skip(first) {
        let until = trace.get(k + 1).map_or(end, |&(t, _)| t);
        if p >= ps {
            above += until - at;
        }
    }
    let from = trace[first].0;
    Some((from, above as f64 / (end - from).max(1) as f64))
}

/// Started at the minimum, at 10 % loss each way parity rises from 1 to 2 on both sides once the
/// retransmissions are evidence (a few hundred messages: at ps = 1 one packet in a hundred is lost for
/// good), and then stays there; every byte arrives once and in order (checked by `echo`).
#[test]
fn parity_rises_under_ten_percent_loss() {
    for seed in 1..=4 {
        let e = echo(seed, 0.10, &adaptive(1), 3000);
        for (side, trace) in [("client", &e.client_ps), ("server", &e.server_ps)] {
            assert_eq!(
                trace[0],
                (0, 1),
                "seed {seed} {side}: starts at the minimum"
            );
            let (at, share) = reached(trace, 2, 60_000)
                .unwrap_or_else(|| panic!("seed {seed} {side}: parity never rose: {trace:?}"));
            assert!(
                at <= 30_000,
                "seed {seed} {side}: rose at {at} ms: {trace:?}"
            );
            assert!(share >= 0.9, "seed {seed} {side}: fell back: {trace:?}");
        }
    }
}

/// Started where one would set it by hand for 10 % loss (2), parity stays on from the first message, and
/// the messages fare as with a fixed 1/2 (virtual time: one in a few hundred is lost for good on the
/// way out or back and waits for a retransmission, delaying the next two behind it).
#[test]
fn started_at_two_parity_stays_on_under_loss() {
    let slow = |e: &Echo| e.rtts.iter().filter(|&&r| r > 80).count();
    for seed in 5..=8 {
        let e = echo(seed, 0.10, &adaptive(2), 3000);
        for (side, trace) in [("client", &e.client_ps), ("server", &e.server_ps)] {
            assert!(
                trace.iter().all(|&(_, ps)| ps >= 2),
                "seed {seed} {side}: {trace:?}"
            );
        }
        let fixed = echo(seed, 0.10, &KcpConfig::fast3().with_fec(1, 2), 3000);
        assert!(
            slow(&e) <= slow(&fixed) * 3 / 2 + 9,
            "seed {seed}: {} slow messages, {} with 1/2",
            slow(&e),
            slow(&fixed)
        );
        assert!(slow(&e) * 50 <= e.rtts.len(), "seed {seed}: {}", slow(&e));
    }
}

/// Without loss parity stays at the minimum, and every byte arrives.
#[test]
fn parity_stays_low_without_loss() {
    let e = echo(9, 0.0, &adaptive(1), 3000);
    assert_eq!(e.client_ps, vec![(0, 1)]);
    assert_eq!(e.server_ps, vec![(0, 1)]);
}

/// Started at the maximum on a clean link, parity comes down to the minimum one step at a time, once
/// thousands of packets without a retransmission are evidence (minutes at 50 messages a second).
#[test]
fn parity_comes_down_on_a_clean_link() {
    let e = echo(10, 0.0, &adaptive(3), 30_000);
    for trace in [&e.client_ps, &e.server_ps] {
        let steps: Vec<usize> = trace.iter().map(|&(_, ps)| ps).collect();
        assert_eq!(steps, vec![3, 2, 1], "{trace:?}");
        assert!(trace[2].0 <= 600_000, "{trace:?}");
    }
}
