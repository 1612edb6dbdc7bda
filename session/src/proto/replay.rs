//! A bounded, time-windowed record of conversation ids, so that a replayed datagram of a connection that
//! is live or closed recently cannot create a connection again.
//!
//! With each conversation it keeps fingerprints of the session starts (datagrams carrying its first data
//! segment, see [`Progress::is_start`](crate::proto::routes::Progress::is_start)) that reached its connection,
//! so that a start of the same id that is *not* one of those (another peer that picked the same random id:
//! with 10,000 clients about one chance in a hundred) can still get a connection of its own.

use std::collections::{HashMap, VecDeque};

use crate::proto::time::Timestamp;

/// Conversation ids seen within a window, at most `cap` of them.
#[derive(Debug)]
pub(crate) struct ConvRecord {
    window_ms: u64,
    cap: usize,
    /// conv → the time it stops being remembered, and the fingerprint of the first session start its
    /// connection received.
    until: HashMap<u32, Remembered>,
    /// `(until, conv)` in the order recorded; an entry superseded by a later `until` is skipped.
    order: VecDeque<(Timestamp, u32)>,
    /// Entries forgotten early because the record was full.
    pub(crate) overflowed: u64,
    /// conv → fingerprints of further session starts its connection received (the first one resent): rare,
    /// so kept apart. With the first, at most [`MAX_STARTS`]; a full list admits no other start.
    more_starts: HashMap<u32, Vec<u64>>,
}

/// What the record keeps of one conversation.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    until: Timestamp,
    /// The first session start's fingerprint (never 0: see [`print`]); 0 while none was noted.
    first_start: u64,
}

/// A fingerprint as kept: 0 stands for "none".
fn print(p: u64) -> u64 {
    p.max(1)
}

/// Session starts fingerprinted per conversation: a client resends its first datagram a few times at most
/// before it gives up (kcp-go's dead link is 20 transmissions; this many means a very bad path, and from
/// then on every start of that id counts as a replay).
pub(crate) const MAX_STARTS: usize = 8;

impl ConvRecord {
    pub(crate) fn new(window_ms: u64, cap: usize) -> ConvRecord {
        ConvRecord {
            window_ms,
            cap: cap.max(1),
            until: HashMap::new(),
            order: VecDeque::new(),
            overflowed: 0,
            more_starts: HashMap::new(),
        }
    }

    /// Remembers `conv` until `window` after `now` (later if it was already remembered longer).
    pub(crate) fn remember(&mut self, conv: u32, now: Timestamp) {
        self.expire(now);
        let until = now.add_millis(self.window_ms);
        match self.until.get_mut(&conv) {
            Some(r) if r.until >= until => return,
            Some(r) => r.until = until,
            None => {
                while self.until.len() >= self.cap {
                    self.pop_oldest();
                    self.overflowed += 1;
                }
                self.until.insert(
                    conv,
                    Remembered {
                        until,
                        first_start: 0,
                    },
                );
            }
        }
        self.order.push_back((until, conv));
        // Superseded entries are dropped lazily; keep the queue within twice the live entries.
        if self.order.len() > 2 * self.cap {
            let until = &self.until;
            self.order
                .retain(|(t, c)| until.get(c).is_some_and(|r| r.until == *t));
        }
    }

    /// Whether `conv` is remembered at `now`.
    pub(crate) fn contains(&self, conv: u32, now: Timestamp) -> bool {
        self.until.get(&conv).is_some_and(|r| r.until > now)
    }

    /// Notes that a session start with fingerprint `print` reached the connection of `conv` (which this
    /// record remembers; otherwise nothing is noted).
    pub(crate) fn note_start(&mut self, conv: u32, p: u64) {
        let p = print(p);
        let Some(r) = self.until.get_mut(&conv) else {
            return;
        };
        if r.first_start == 0 {
            r.first_start = p;
            return;
        }
        if r.first_start == p {
            return;
        }
        let more = self.more_starts.entry(conv).or_default();
        if more.len() + 1 < MAX_STARTS && !more.contains(&p) {
            more.push(p);
        }
    }

    /// Whether a session start with fingerprint `print` for the remembered `conv` is one its connection never
    /// received, i.e. from a different peer that picked the same id, not a replay. A conversation remembered
    /// without fingerprints, or with a full list, admits none.
    pub(crate) fn is_other_start(&self, conv: u32, p: u64, now: Timestamp) -> bool {
        let p = print(p);
        let Some(r) = self.until.get(&conv).filter(|r| r.until > now) else {
            return false;
        };
        if r.first_start == 0 || r.first_start == p {
            return false;
        }
        match self.more_starts.get(&conv) {
            Some(more) => more.len() + 1 < MAX_STARTS && !more.contains(&p),
            None => true,
        }
    }

    /// Forgets what expired by `now`.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        while let Some(&(t, c)) = self.order.front()
            && t <= now
        {
            self.order.pop_front();
            if self.until.get(&c).is_some_and(|r| r.until == t) {
                self.until.remove(&c);
                self.more_starts.remove(&c);
            }
        }
    }

    fn pop_oldest(&mut self) {
        while let Some((t, c)) = self.order.pop_front() {
            if self.until.get(&c).is_some_and(|r| r.until == t) {
                self.until.remove(&c);
                self.more_starts.remove(&c);
                return;
            }
        }
    }

    /// When the next entry expires.
    #[cfg(test)]
    pub(crate) fn next_expiry(&self) -> Option<Timestamp> {
        self.order.front().map(|&(t, _)| t)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_for_the_window_then_forgets() {
        let t = Timestamp::from_millis;
        let mut r = ConvRecord::new(1000, 10);
        r.remember(7, t(0));
        assert!(r.contains(7, t(999)));
        assert!(!r.contains(7, t(1000)));
        // Remembering again extends.
        r.remember(7, t(500));
        assert!(r.contains(7, t(1400)));
        r.expire(t(1000));
        assert!(r.contains(7, t(1400)));
        r.expire(t(1500));
        assert_eq!(r.len(), 0);
        assert_eq!(r.next_expiry(), None);
    }

    #[test]
    fn starts_it_received_are_replays_others_are_not() {
        let t = Timestamp::from_millis;
        let mut r = ConvRecord::new(1000, 10);
        // Not remembered: nothing to compare with, and nothing is noted.
        r.note_start(7, 11);
        assert!(!r.is_other_start(7, 12, t(0)));
        r.remember(7, t(0));
        // Remembered without a fingerprint (a conversation created otherwise): no start is admitted.
        assert!(!r.is_other_start(7, 12, t(0)));
        r.note_start(7, 11);
        assert!(!r.is_other_start(7, 11, t(0)));
        assert!(r.is_other_start(7, 12, t(0)));
        // Resends of the first start are noted too, up to MAX_STARTS in all; then nothing else is admitted.
        for p in 100..100 + MAX_STARTS as u64 - 2 {
            r.note_start(7, p);
            assert!(!r.is_other_start(7, p, t(0)));
        }
        assert!(r.is_other_start(7, 12, t(0)));
        r.note_start(7, 13);
        assert!(
            !r.is_other_start(7, 12, t(0)),
            "a full list admits no other start"
        );
        // Forgotten with the window.
        assert!(!r.is_other_start(7, 12, t(1000)));
        r.expire(t(1000));
        assert!(r.more_starts.is_empty());
    }

    #[test]
    fn bounded_oldest_forgotten_first() {
        let t = Timestamp::from_millis;
        let mut r = ConvRecord::new(1_000_000, 100);
        for c in 0..10_000u32 {
            r.remember(c, t(u64::from(c)));
            r.remember(c, t(u64::from(c) + 1)); // superseded entries too
        }
        assert_eq!(r.len(), 100);
        assert!(r.order.len() <= 200);
        assert!(r.contains(9_999, t(20_000)));
        assert!(!r.contains(9_899, t(20_000)));
        assert!(r.contains(9_900, t(20_000)));
        assert_eq!(r.overflowed, 9_900);
    }
}
