//! [`FreshnessRecord`]: which session-creating packets a listener has already accepted, for a
//! bounded time window.
//!
//! The rule and the memory bound are documented on [`FreshnessRecord`].

use std::collections::HashMap;

use crate::aead_session::SessionId;

/// Default half-width of the freshness window: creation stamps more than 120 s away from the
/// listener's clock, either way, are refused. Clients' clocks must be that close to the server's.
pub const DEFAULT_FRESHNESS_WINDOW_MS: u64 = 120_000;

/// Default number of keys a [`FreshnessRecord`] holds at most.
pub const DEFAULT_FRESHNESS_CAPACITY: usize = 1 << 16;

/// Why [`FreshnessRecord::check_and_insert`] refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The stamp is more than the window behind the record's clock.
    #[error("session creation stamp older than the freshness window")]
    TooOld,
    /// The stamp is more than the window ahead of the record's clock.
    #[error("session creation stamp ahead of the freshness window")]
    FromFuture,
    /// The stamp is older than the record itself (the listener's start): such a session may
    /// have been accepted by a previous run of this listener.
    #[error("session created before this listener started")]
    BeforeStart,
    /// The key was accepted before: a replay.
    #[error("session creation replayed")]
    Replayed,
    /// The record holds `capacity` keys, all still inside the window.
    #[error("freshness record full")]
    Full,
}

/// A bounded, time-windowed set of the 16-byte keys of accepted session creations.
///
/// # Rule
/// A listener accepts a new session only when its creation time stamp is within
/// `± window` of the listener's clock (default [`DEFAULT_FRESHNESS_WINDOW_MS`], 120 s) **and** its
/// 16-byte key was not accepted before. Since a key older than the window is refused outright,
/// the record only has to remember the keys whose stamps are inside the window: an entry whose
/// stamp falls out of the window can be forgotten, because the same key would now be refused as
/// [`Refusal::TooOld`] before the record is even consulted. The record also refuses stamps older
/// than its own creation ([`Refusal::BeforeStart`]): a restarted listener starts with an empty
/// record, so without that floor a packet captured up to `window` before the restart could open
/// a session again. The price: a client whose clock is `d` behind the listener's is refused for
/// the first `d` after a listener start (its next dial after that draws a newer stamp).
///
/// With the AEAD kinds the key is the client's [`SessionId`], whose first 8 bytes are the
/// client's creation time stamp, authenticated by the datagram's tag (the session keys derive
/// from it): **insert only after the first datagram authenticated**, so that nobody without the
/// key can fill the record. With the kcp-go kinds (no authentication, no time stamp) the endpoint
/// can record the 16-byte nonces of session-creating datagrams with the arrival time as the
/// stamp ([`FreshnessRecord::check_and_insert_at`]); that catches replays within the window only.
///
/// The clock only moves forward inside the record: it keeps the largest `now` it was given, so
/// a wall clock stepped backwards cannot bring expired keys back into the window.
///
/// # Memory
/// At most `capacity` entries (default [`DEFAULT_FRESHNESS_CAPACITY`], 65,536) of a 16-byte key
/// and an 8-byte stamp in a `HashMap`: about 25 bytes per entry plus the table's slack, under
/// 64 bytes per entry, so at most about 4 MiB at the default capacity. When it is full and
/// nothing has expired, new sessions are refused ([`Refusal::Full`]) rather than forgetting a
/// key that is still inside the window. 65,536 entries per 240 s is 270 new sessions per second
/// sustained.
///
/// # Example
/// ```
/// use rkcp_crypt::{FreshnessRecord, Refusal, SessionId};
///
/// let start = 1_700_000_000_000; // listener start, unix ms
/// let mut record = FreshnessRecord::new(start);
/// let id = SessionId::new(start + 5, [7; 8]);
/// assert_eq!(record.check_and_insert(id, start + 40), Ok(()));
/// assert_eq!(record.check_and_insert(id, start + 90), Err(Refusal::Replayed));
/// assert_eq!(record.check_and_insert(id, start + 200_000), Err(Refusal::TooOld));
/// ```
#[derive(Debug, Clone)]
pub struct FreshnessRecord {
    window_ms: u64,
    capacity: usize,
    not_before_ms: u64,
    /// The largest `now` seen.
    now_ms: u64,
    /// Next time a sweep of expired entries is due even if the record is not full.
    sweep_at_ms: u64,
    seen: HashMap<[u8; 16], u64>,
}

impl FreshnessRecord {
    /// A record created at `now_unix_ms` (the listener's start) with the default window and
    /// capacity.
    pub fn new(now_unix_ms: u64) -> Self {
        Self::with_limits(
            now_unix_ms,
            DEFAULT_FRESHNESS_WINDOW_MS,
            DEFAULT_FRESHNESS_CAPACITY,
        )
    }

    /// A record with window `± window_ms` holding at most `capacity` keys.
    pub fn with_limits(now_unix_ms: u64, window_ms: u64, capacity: usize) -> Self {
        FreshnessRecord {
            window_ms,
            capacity,
            not_before_ms: now_unix_ms,
            now_ms: now_unix_ms,
            sweep_at_ms: now_unix_ms.saturating_add(window_ms / 4),
            seen: HashMap::new(),
        }
    }

    /// Accepts a new AEAD session `id` (its creation stamp is [`SessionId::timestamp_ms`]) at
    /// `now_unix_ms` and remembers it, or says why not. Call it once the session's first
    /// datagram has authenticated.
    pub fn check_and_insert(&mut self, id: SessionId, now_unix_ms: u64) -> Result<(), Refusal> {
        self.check_and_insert_at(id.to_bytes(), id.timestamp_ms(), now_unix_ms)
    }

    /// Accepts any 16-byte `key` stamped `stamp_unix_ms` (e.g. a kcp-go nonce, stamped with its
    /// arrival time) and remembers it, or says why not.
    pub fn check_and_insert_at(
        &mut self,
        key: [u8; 16],
        stamp_unix_ms: u64,
        now_unix_ms: u64,
    ) -> Result<(), Refusal> {
        self.now_ms = self.now_ms.max(now_unix_ms);
        self.check_at(key, stamp_unix_ms, self.now_ms)?;
        if self.now_ms >= self.sweep_at_ms || self.seen.len() >= self.capacity {
            self.sweep();
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::Full);
        }
        self.seen.insert(key, stamp_unix_ms);
        Ok(())
    }

    /// What [`FreshnessRecord::check_and_insert`] would say, except [`Refusal::Full`], without
    /// remembering anything: lets a listener drop a stale or replayed session id before spending
    /// any cryptography on its datagram (then insert once the datagram authenticated).
    pub fn check(&self, id: SessionId, now_unix_ms: u64) -> Result<(), Refusal> {
        self.check_at(id.to_bytes(), id.timestamp_ms(), now_unix_ms)
    }

    /// [`FreshnessRecord::check`] for any 16-byte `key` stamped `stamp_unix_ms`.
    pub fn check_at(
        &self,
        key: [u8; 16],
        stamp_unix_ms: u64,
        now_unix_ms: u64,
    ) -> Result<(), Refusal> {
        let now = self.now_ms.max(now_unix_ms);
        if stamp_unix_ms < self.not_before_ms {
            return Err(Refusal::BeforeStart);
        }
        if stamp_unix_ms < now.saturating_sub(self.window_ms) {
            return Err(Refusal::TooOld);
        }
        if stamp_unix_ms > now.saturating_add(self.window_ms) {
            return Err(Refusal::FromFuture);
        }
        if self.seen.contains_key(&key) {
            return Err(Refusal::Replayed);
        }
        Ok(())
    }

    /// Keys held (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The window's half-width in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// The most keys held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every key whose stamp left the window (amortised: runs when the record is full
    /// or a quarter window after the previous sweep).
    fn sweep(&mut self) {
        let floor = self.now_ms.saturating_sub(self.window_ms);
        self.seen.retain(|_, stamp| *stamp >= floor);
        self.sweep_at_ms = self.now_ms.saturating_add(self.window_ms / 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_764_900_000_000;

    #[test]
    fn refuses_old_future_before_start_and_replays() {
        let mut r = FreshnessRecord::with_limits(T0, 1000, 16);
        let now = T0 + 5000;
        let id = |t: u64, n: u8| SessionId::new(t, [n; 8]);
        assert_eq!(
            r.check_and_insert(id(T0 - 1, 0), now),
            Err(Refusal::BeforeStart)
        );
        assert_eq!(
            r.check_and_insert(id(now - 1001, 1), now),
            Err(Refusal::TooOld)
        );
        assert_eq!(
            r.check_and_insert(id(now + 1001, 2), now),
            Err(Refusal::FromFuture)
        );
        assert_eq!(r.check_and_insert(id(now - 1000, 3), now), Ok(()));
        assert_eq!(r.check_and_insert(id(now + 1000, 4), now), Ok(()));
        assert_eq!(
            r.check_and_insert(id(now + 1000, 4), now),
            Err(Refusal::Replayed)
        );
        // Same stamp, other random bytes: another session.
        assert_eq!(r.check_and_insert(id(now + 1000, 5), now), Ok(()));
        // A clock stepped back does not reopen the window.
        assert_eq!(
            r.check_and_insert(id(now - 1001, 6), T0),
            Err(Refusal::TooOld)
        );
    }

    #[test]
    fn full_then_expired_entries_make_room() {
        let mut r = FreshnessRecord::with_limits(T0, 1000, 4);
        for n in 0..4 {
            assert_eq!(
                r.check_and_insert(SessionId::new(T0 + 10, [n; 8]), T0 + 10),
                Ok(())
            );
        }
        let fifth = SessionId::new(T0 + 20, [9; 8]);
        assert_eq!(r.check_and_insert(fifth, T0 + 20), Err(Refusal::Full));
        assert_eq!(r.len(), 4);
        // Once the first four left the window they are forgotten, and refused as too old.
        let later = T0 + 10 + 1001;
        let sixth = SessionId::new(later, [10; 8]);
        assert_eq!(r.check_and_insert(sixth, later), Ok(()));
        assert_eq!(r.len(), 1);
        assert_eq!(
            r.check_and_insert(SessionId::new(T0 + 10, [0; 8]), later),
            Err(Refusal::TooOld)
        );
    }

    #[test]
    fn check_alone_remembers_nothing() {
        let mut r = FreshnessRecord::with_limits(T0, 1000, 1);
        let id = SessionId::new(T0 + 1, [1; 8]);
        assert_eq!(r.check(id, T0 + 2), Ok(()));
        assert_eq!(r.check(id, T0 + 2), Ok(()));
        assert!(r.is_empty());
        assert_eq!(
            r.check(SessionId::new(T0 + 1, [1; 8]), T0 + 1002),
            Err(Refusal::TooOld)
        );
        r.check_and_insert(id, T0 + 2).unwrap();
        assert_eq!(r.check(id, T0 + 3), Err(Refusal::Replayed));
        // `check` does not report Full: an insert may still.
        let other = SessionId::new(T0 + 3, [2; 8]);
        assert_eq!(r.check(other, T0 + 3), Ok(()));
        assert_eq!(r.check_and_insert(other, T0 + 3), Err(Refusal::Full));
    }

    #[test]
    fn kcp_go_nonces_stamped_on_arrival() {
        let mut r = FreshnessRecord::new(T0);
        assert_eq!(r.check_and_insert_at([1; 16], T0 + 1, T0 + 1), Ok(()));
        assert_eq!(
            r.check_and_insert_at([1; 16], T0 + 9, T0 + 9),
            Err(Refusal::Replayed)
        );
        assert_eq!(r.check_and_insert_at([2; 16], T0 + 9, T0 + 9), Ok(()));
    }

    proptest! {
        /// Random arrivals (replays included) against the rule: each key accepted at most once
        /// while its stamp is in the window, never outside it, never more than `capacity` held.
        #[test]
        fn never_accepts_twice_and_stays_bounded(
            events in proptest::collection::vec((0u8..24, 0u64..3000, 0u64..400), 1..300),
        ) {
            let window = 1000;
            let cap = 8;
            let mut r = FreshnessRecord::with_limits(T0, window, cap);
            let mut now = T0;
            let mut accepted: HashMap<[u8; 16], u64> = HashMap::new();
            for (n, stamp_off, dt) in events {
                now += dt;
                let stamp = T0 + stamp_off;
                let id = SessionId::new(stamp, [n; 8]);
                let checked = r.check(id, now);
                let res = r.check_and_insert(id, now);
                if checked.is_err() {
                    prop_assert_eq!(checked, res);
                }
                if res.is_ok() {
                    prop_assert!(stamp + window >= now && stamp <= now + window);
                    prop_assert!(accepted.insert(id.to_bytes(), stamp).is_none(), "accepted twice");
                }
                prop_assert!(r.len() <= cap);
            }
        }
    }
}
