//! Session timers of one socket, run by its read loop ([`crate::driver::drive`]).
//!
//! Every session reports its next deadline ([`Connection::poll_timeout`](crate::proto::connection::Connection::poll_timeout))
//! into the [`Timers`] of the socket it lives on; the read loop sleeps until the earliest one and then runs
//! the due sessions' timer work itself. Compared with one tokio task per session this costs no task wake-up,
//! no tokio timer registration and no select per deadline: a deadline that moved later (an ACK idled the
//! engine) is found stale when it comes up, for the price of a heap pop and a lock.
//!
//! Invariant (what keeps deadlines from being lost): a live session always has an entry in the heap at or
//! before its connection's next deadline. Each session remembers the deadlines of its own entries that it
//! knows of ([`Queued`]); after any change it adds an entry only if none of those is at or before the new
//! deadline, and when an entry comes up the session forgets it, runs what is due and re-checks. Entries a
//! session forgot (its list was full) still come up and are handled like any other: an early check is
//! harmless. So each session has at most a few entries queued, and the heap stays proportional to the
//! sessions.
//!
//! Before the loop sleeps it drops stale entries from the front of the heap ([`Timers::head`],
//! [`Session::drop_if_stale`](crate::session::Session::drop_if_stale)), so it sleeps towards a deadline that
//! is still live: an echo's retransmission timer whose ACK came, or an ACK delay whose ACK went out with the
//! reply, wakes nobody. On a server of many light sessions those were most of its timer wake-ups.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Weak;

use parking_lot::Mutex;

use crate::proto::time::Timestamp;
use crate::session::Session;

/// The deadlines of a session's own heap entries, as far as it keeps track (a few: deadlines only come
/// earlier a few times before the earliest comes up).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Queued([Option<Timestamp>; 3]);

impl Queued {
    /// The earliest entry this session knows of.
    pub(crate) fn earliest(&self) -> Option<Timestamp> {
        self.0.iter().flatten().min().copied()
    }

    /// Remembers a new entry; when full, forgets the latest (it stays in the heap and comes up as usual).
    pub(crate) fn insert(&mut self, at: Timestamp) {
        let slot = match self.0.iter().position(Option::is_none) {
            Some(i) => i,
            None => (0..self.0.len()).max_by_key(|&i| self.0[i]).unwrap_or(0),
        };
        self.0[slot] = Some(at);
    }

    /// The entry at `at` came up.
    pub(crate) fn remove(&mut self, at: Timestamp) {
        if let Some(slot) = self.0.iter_mut().find(|q| **q == Some(at)) {
            *slot = None;
        }
    }
}

/// One queued check of a session.
struct Entry {
    at: Timestamp,
    seq: u64,
    session: Weak<Session>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest deadline must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Inner {
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// What the read loop sleeps towards (`None`: no timer, it waits for datagrams or a wake-up).
    sleeping_to: Option<Timestamp>,
    /// The read loop is awake: it looks at the heap before it sleeps again, so nobody needs to wake it.
    awake: bool,
}

/// The session timers of one socket (see the module docs).
#[derive(Default)]
pub(crate) struct Timers {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers")
            .field("queued", &self.inner.lock().heap.len())
            .finish()
    }
}

impl Timers {
    /// Queues a check of `session` at `at`. Returns whether the read loop must be woken: it sleeps past `at`.
    pub(crate) fn schedule(&self, at: Timestamp, session: Weak<Session>) -> bool {
        let mut i = self.inner.lock();
        i.seq += 1;
        let seq = i.seq;
        i.heap.push(Entry { at, seq, session });
        if !i.awake && i.sleeping_to.is_none_or(|t| at < t) {
            i.sleeping_to = Some(at);
            true
        } else {
            false
        }
    }

    /// The read loop woke up (it calls [`Timers::next`] before it sleeps again).
    pub(crate) fn awake(&self) {
        self.inner.lock().awake = true;
    }

    /// The read loop is about to sleep: the earliest entry, which it sleeps towards.
    pub(crate) fn next(&self) -> Option<Timestamp> {
        let mut i = self.inner.lock();
        let next = i.heap.peek().map(|e| e.at);
        i.sleeping_to = next;
        i.awake = false;
        next
    }

    /// Takes out the entries due at `now` (in deadline order) into `due`.
    pub(crate) fn take_due(&self, now: Timestamp, due: &mut Vec<(Timestamp, Weak<Session>)>) {
        let mut i = self.inner.lock();
        i.awake = true;
        while i.heap.peek().is_some_and(|e| e.at <= now) {
            if let Some(e) = i.heap.pop() {
                due.push((e.at, e.session));
            }
        }
    }

    /// The earliest entry, if any: its deadline, sequence number and session.
    pub(crate) fn head(&self) -> Option<(Timestamp, u64, Weak<Session>)> {
        let i = self.inner.lock();
        i.heap.peek().map(|e| (e.at, e.seq, e.session.clone()))
    }

    /// Removes the earliest entry if it is still the one [`Timers::head`] returned as `seq`.
    pub(crate) fn pop_head(&self, seq: u64) {
        let mut i = self.inner.lock();
        if i.heap.peek().is_some_and(|e| e.seq == seq) {
            i.heap.pop();
        }
    }

    /// Whether an entry for `at` is queued.
    #[cfg(test)]
    pub(crate) fn has_entry_at(&self, at: Timestamp) -> bool {
        self.inner.lock().heap.iter().any(|e| e.at == at)
    }

    /// Entries queued (stale ones included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    /// The loop is woken only for an entry before what it sleeps towards, and takes out exactly the due
    /// entries, earliest first.
    #[test]
    fn the_loop_is_woken_only_for_earlier_entries() {
        let timers = Timers::default();
        // Nothing queued: the loop sleeps without a timer, so any entry wakes it.
        assert_eq!(timers.next(), None);
        assert!(timers.schedule(t(30), Weak::new()));
        assert!(!timers.schedule(t(40), Weak::new()));
        assert!(timers.schedule(t(20), Weak::new()));
        assert!(!timers.schedule(t(20), Weak::new()));
        assert_eq!(timers.next(), Some(t(20)));
        let mut due = Vec::new();
        timers.take_due(t(19), &mut due);
        assert!(due.is_empty());
        timers.take_due(t(30), &mut due);
        let at: Vec<_> = due.iter().map(|(at, _)| *at).collect();
        assert_eq!(at, vec![t(20), t(20), t(30)]);
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.next(), Some(t(40)));
        assert!(!timers.schedule(t(45), Weak::new()));
        assert!(timers.schedule(t(35), Weak::new()));
        // Awake (between its wake-up and its next `next`), the loop needs no wake-up for any entry.
        timers.awake();
        assert!(!timers.schedule(t(1), Weak::new()));
        assert_eq!(timers.next(), Some(t(1)));
        assert!(timers.schedule(t(0), Weak::new()));
    }

    /// Pruning looks at the earliest entry and removes exactly that one: not an earlier entry queued in
    /// between (which must stay, or its deadline would be lost).
    #[test]
    fn pop_head_removes_only_the_entry_looked_at() {
        let timers = Timers::default();
        assert!(timers.head().is_none());
        timers.schedule(t(30), Weak::new());
        timers.schedule(t(50), Weak::new());
        let (at, seq, _) = timers.head().unwrap();
        assert_eq!(at, t(30));
        // An earlier entry arrives between the look and the removal: the removal does nothing.
        timers.schedule(t(10), Weak::new());
        timers.pop_head(seq);
        assert_eq!(timers.len(), 3);
        let (at, seq, _) = timers.head().unwrap();
        assert_eq!(at, t(10));
        timers.pop_head(seq);
        assert_eq!(timers.head().map(|h| h.0), Some(t(30)));
        assert_eq!(timers.len(), 2);
    }

    #[test]
    fn queued_keeps_the_earliest_when_full() {
        let mut q = Queued::default();
        assert_eq!(q.earliest(), None);
        for at in [50, 40, 30, 20] {
            q.insert(t(at));
        }
        // 50 was forgotten (the latest), the rest is known.
        assert_eq!(q.earliest(), Some(t(20)));
        q.remove(t(20));
        assert_eq!(q.earliest(), Some(t(30)));
        q.remove(t(50)); // forgotten: nothing to remove
        q.remove(t(30));
        q.remove(t(40));
        assert_eq!(q.earliest(), None);
    }
}
