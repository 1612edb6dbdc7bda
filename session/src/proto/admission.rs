//! Who gets state on a listener: the limits for peers that have not yet proved they receive at their
//! address, and the stateless address check used when those limits are reached.
//!
//! A connection is **unverified** until its peer acknowledged something the server sent (an echo request
//! the connection sends at once — see [`rkcp_engine::encode_echo_request`] — or data). Spoofed datagrams
//! can never do that, so they can only ever create unverified connections, and those are:
//! - cheap: a small receive window and out-of-order cap until verified ([`Admission::unverified_window`]);
//! - bounded: at most [`Admission::unverified_budget`] bytes' worth of them on the listener, and at most
//!   [`Admission::max_unverified_per_ip`] per source address;
//! - short-lived: closed if not verified within [`Admission::unverified_timeout`].
//!
//! When the budget or a source's share is used up, a new peer gets no state at all: the listener answers
//! its datagram with an echo request whose `ts` is a keyed MAC of the peer's address and conversation and
//! of the time (a cookie, as in TCP's SYN cookies or QUIC's Retry), no larger than what it received. A peer
//! that echoes a valid cookie has proved its address and gets a verified connection; spoofed senders never
//! see the cookie. So a flood of spoofed session starts can neither lock out a real client nor evict a
//! verified connection, and never costs more than the budget.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::proto::endpoint::ConnHandle;
use crate::proto::time::Timestamp;

/// A listener's admission limits (see the module docs of the endpoint for the threat model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Memory that connections without a proven round trip may use, in bytes (default 8 MiB). Each such
    /// connection is charged its fixed state plus a full [`Admission::unverified_window`] of segments, so the
    /// default admits about 400 of them at MTU 1400; beyond that new peers must pass the stateless address
    /// check first (one extra round trip), which real clients do and spoofed ones cannot.
    pub unverified_budget: usize,
    /// Unverified connections per source IP address (default 64); beyond that, as for the budget.
    pub max_unverified_per_ip: usize,
    /// How long a connection may stay unverified before it is closed (default 10 s). A real peer answers the
    /// echo request within a round trip (it is repeated every second while unanswered).
    pub unverified_timeout: Duration,
    /// Receive window, in segments, of a connection until it is verified (default 16). Caps what an
    /// unverified peer can make the server hold; a real peer gets the configured window one round trip
    /// later.
    pub unverified_window: u32,
    /// Stateless address checks (echo requests with a cookie) the listener sends per second at most (default
    /// 10,000). Each answers a datagram and is never larger, but under a flood of forged starts they are most
    /// of the listener's work; beyond the rate the datagrams are dropped (a real peer sends its start again).
    pub max_address_checks_per_sec: u64,
    /// How long the conversation ids of live and closed connections are remembered to refuse replays
    /// (default 10 minutes; see the endpoint's docs for what remains possible beyond it).
    pub replay_window: Duration,
    /// Most conversation ids remembered (default 65,536; 24 bytes each). When full the oldest is
    /// forgotten first, which shortens the replay window; counted.
    pub replay_record: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            unverified_budget: 8 << 20,
            max_unverified_per_ip: 64,
            unverified_timeout: Duration::from_secs(10),
            unverified_window: 16,
            max_address_checks_per_sec: 10_000,
            replay_window: Duration::from_secs(600),
            replay_record: 65_536,
        }
    }
}

impl Admission {
    /// What one unverified connection is charged against the budget at this MTU.
    pub(crate) fn charge(&self, mtu: usize) -> usize {
        // Connection and session state, engine scratch buffer, then a full window of held segments.
        4096 + mtu * (1 + self.unverified_window as usize)
    }

    /// Unverified connections the budget admits at this MTU (at least one).
    pub(crate) fn max_unverified(&self, mtu: usize) -> usize {
        (self.unverified_budget / self.charge(mtu)).max(1)
    }
}

/// The unverified connections of an endpoint: oldest first, and counted per source IP.
///
/// A connection that closes before its peer proved its address keeps its slot until it would have expired
/// (a *ghost*): otherwise an application that drops bad sessions at once (the tunnel does, for a start that
/// is not a smux frame) would free the slot for the next forged start, and the limits would bound how many
/// unverified sessions exist at a time but not how many are created. With ghosts they bound the creation
/// rate too: at most the budget's count per `unverified_timeout`, and the per-IP cap per source IP.
#[derive(Debug, Default)]
pub(crate) struct Unverified {
    by_age: BTreeSet<(Timestamp, ConnHandle)>,
    since: HashMap<ConnHandle, (Timestamp, IpAddr)>,
    per_ip: HashMap<IpAddr, usize>,
    /// Slots of connections that closed unverified (no connection behind them any more).
    ghosts: std::collections::HashSet<ConnHandle>,
}

impl Unverified {
    /// Slots taken (live unverified connections and ghosts).
    pub(crate) fn len(&self) -> usize {
        self.since.len()
    }

    /// Live unverified connections (ghosts left out).
    pub(crate) fn live(&self) -> usize {
        self.since.len() - self.ghosts.len()
    }

    pub(crate) fn count_from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    pub(crate) fn insert(&mut self, h: ConnHandle, now: Timestamp, ip: IpAddr) {
        self.by_age.insert((now, h));
        self.since.insert(h, (now, ip));
        *self.per_ip.entry(ip).or_default() += 1;
    }

    /// `h` closed before it was verified: its slot stays taken until its deadline. True if it was unverified.
    pub(crate) fn close(&mut self, h: ConnHandle) -> bool {
        if self.since.contains_key(&h) {
            self.ghosts.insert(h);
            return true;
        }
        false
    }

    /// Forgets `h` (verified, or its slot expired); true if it was unverified.
    pub(crate) fn remove(&mut self, h: ConnHandle) -> bool {
        self.ghosts.remove(&h);
        let Some((t, ip)) = self.since.remove(&h) else {
            return false;
        };
        self.by_age.remove(&(t, h));
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        true
    }

    /// When the oldest one was created.
    pub(crate) fn oldest(&self) -> Option<Timestamp> {
        self.by_age.first().map(|&(t, _)| t)
    }

    /// Takes the ones created at or before `cutoff`: their slots free up, and the live ones (not ghosts) go
    /// to `out` to be closed.
    pub(crate) fn take_older(&mut self, cutoff: Timestamp, out: &mut Vec<ConnHandle>) {
        while let Some(&(t, h)) = self.by_age.first()
            && t <= cutoff
        {
            let ghost = self.ghosts.contains(&h);
            self.remove(h);
            if !ghost {
                out.push(h);
            }
        }
    }
}

/// A token bucket: at most `rate` events per second, bursts of up to one second's worth.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: u64,
    tokens: u64,
    at: Option<Timestamp>,
}

impl Bucket {
    pub(crate) fn new(rate: u64) -> Bucket {
        Bucket {
            rate,
            tokens: rate,
            at: None,
        }
    }

    /// Takes a token if there is one.
    pub(crate) fn take(&mut self, now: Timestamp) -> bool {
        let last = *self.at.get_or_insert(now);
        let elapsed = now.as_millis().saturating_sub(last.as_millis());
        let refill = elapsed * self.rate / 1000;
        if refill > 0 {
            self.tokens = (self.tokens + refill).min(self.rate);
            self.at = Some(now);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Length of a cookie's validity period; a cookie of this period or the previous one is accepted.
const COOKIE_PERIOD_MS: u64 = 4_000;

/// The keyed MAC of stateless address checks (SipHash with a random per-endpoint key).
#[derive(Debug)]
pub(crate) struct CookieKey(std::collections::hash_map::RandomState);

impl CookieKey {
    pub(crate) fn new() -> CookieKey {
        CookieKey(std::collections::hash_map::RandomState::new())
    }

    fn mac(&self, remote: SocketAddr, conv: u32, period: u64) -> u32 {
        let mut h = self.0.build_hasher();
        match remote.ip() {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        h.write_u16(remote.port());
        h.write_u32(conv);
        h.write_u64(period);
        let v = h.finish();
        (v ^ (v >> 32)) as u32
    }

    /// The cookie for `remote`/`conv` now.
    pub(crate) fn cookie(&self, now: Timestamp, remote: SocketAddr, conv: u32) -> u32 {
        self.mac(remote, conv, now.as_millis() / COOKIE_PERIOD_MS)
    }

    /// Whether `ts` is a cookie issued to `remote`/`conv` in this period or the previous one.
    pub(crate) fn check(&self, now: Timestamp, remote: SocketAddr, conv: u32, ts: u32) -> bool {
        let p = now.as_millis() / COOKIE_PERIOD_MS;
        ts == self.mac(remote, conv, p) || (p > 0 && ts == self.mac(remote, conv, p - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unverified_are_counted_per_ip_and_expire_oldest_first() {
        let mut u = Unverified::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let t = Timestamp::from_millis;
        u.insert(ConnHandle(1), t(5), ip);
        u.insert(ConnHandle(2), t(3), ip);
        u.insert(ConnHandle(3), t(9), other);
        assert_eq!((u.len(), u.count_from(ip), u.count_from(other)), (3, 2, 1));
        assert_eq!(u.oldest(), Some(t(3)));
        let mut gone = Vec::new();
        u.take_older(t(5), &mut gone);
        assert_eq!(gone, vec![ConnHandle(2), ConnHandle(1)]);
        assert_eq!(u.count_from(ip), 0);
        assert!(u.remove(ConnHandle(3)));
        assert!(!u.remove(ConnHandle(3)));
        assert_eq!(u.len(), 0);
        assert!(u.per_ip.is_empty());
    }

    #[test]
    fn closed_unverified_sessions_keep_their_slot_until_their_deadline() {
        let mut u = Unverified::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t = Timestamp::from_millis;
        u.insert(ConnHandle(1), t(0), ip);
        u.insert(ConnHandle(2), t(1), ip);
        assert!(u.close(ConnHandle(1)));
        assert!(!u.close(ConnHandle(9)));
        assert_eq!((u.len(), u.count_from(ip)), (2, 2), "a ghost still counts");
        let mut gone = Vec::new();
        u.take_older(t(5), &mut gone);
        assert_eq!(
            gone,
            vec![ConnHandle(2)],
            "only the live one is to be closed"
        );
        assert_eq!((u.len(), u.count_from(ip)), (0, 0));
        assert!(u.ghosts.is_empty());
    }

    #[test]
    fn the_bucket_allows_its_rate_and_refills() {
        let t = Timestamp::from_millis;
        let mut b = Bucket::new(100);
        let n = (0..1000).filter(|_| b.take(t(0))).count();
        assert_eq!(n, 100);
        assert!(!b.take(t(5)));
        assert!(b.take(t(10)));
        let n = (0..1000).filter(|_| b.take(t(2000))).count();
        assert_eq!(n, 100);
    }

    #[test]
    fn cookies_bind_address_conversation_and_time() {
        let k = CookieKey::new();
        let a: SocketAddr = ([10, 0, 0, 1], 5000).into();
        let b: SocketAddr = ([10, 0, 0, 1], 5001).into();
        let t = Timestamp::from_millis(100_000);
        let c = k.cookie(t, a, 7);
        assert!(k.check(t, a, 7, c));
        assert!(k.check(t.add_millis(COOKIE_PERIOD_MS), a, 7, c));
        assert!(!k.check(t.add_millis(3 * COOKIE_PERIOD_MS), a, 7, c));
        assert!(!k.check(t, b, 7, c));
        assert!(!k.check(t, a, 8, c));
        // Another endpoint's key gives other cookies.
        assert!(!CookieKey::new().check(t, a, 7, c));
    }

    #[test]
    fn the_default_budget_admits_hundreds() {
        let a = Admission::default();
        let n = a.max_unverified(1400);
        assert!((300..=1000).contains(&n), "{n}");
    }
}
