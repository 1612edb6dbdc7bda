//! The per-direction anti-replay window of an AEAD session ([`crate::SessionCrypt`]).
//!
//! RFC 6479's bitmap ring: [`REPLAY_WINDOW_WORDS`] 64-bit words, one bit per counter, indexed by
//! `counter mod 2048`. The newest counter accepted so far is remembered; a counter is accepted
//! when it is newer than that, or at most [`REPLAY_WINDOW`] behind it and not yet seen. When the
//! newest counter moves forward, the words it passes over are cleared, so a move costs at most
//! 32 word writes whatever the jump. One word of the ring is always being recycled, which is why
//! the guaranteed window is `(32 - 1) × 64 = 1984` counters rather than 2048.
//!
//! Checking ([`ReplayWindow::check`]) and recording ([`ReplayWindow::accept`]) are separate so
//! that the caller records a counter only after its datagram authenticated: a forged datagram
//! can never move the window or burn a counter.

/// Words in the bitmap ring (2048 bits, 256 bytes per session and direction).
pub(crate) const REPLAY_WINDOW_WORDS: usize = 32;

/// How far behind the newest counter seen a datagram may be and still be accepted (once).
/// Counters `newest - REPLAY_WINDOW` and older are refused as too old.
pub const REPLAY_WINDOW: u64 = (REPLAY_WINDOW_WORDS as u64 - 1) * 64;

/// One direction's record of the counters seen (module docs).
#[derive(Clone, Debug)]
pub(crate) struct ReplayWindow {
    /// The highest counter accepted; `None` before the first.
    newest: Option<u64>,
    ring: [u64; REPLAY_WINDOW_WORDS],
}

/// Why [`ReplayWindow::check`] refused a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stale {
    /// Seen before, within the window.
    Seen,
    /// `REPLAY_WINDOW` or more behind the newest counter: cannot be told apart from a replay.
    TooOld,
}

impl ReplayWindow {
    pub(crate) fn new() -> Self {
        ReplayWindow {
            newest: None,
            ring: [0; REPLAY_WINDOW_WORDS],
        }
    }

    /// The highest counter accepted so far.
    pub(crate) fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// Whether `counter` would be accepted, without recording it: `Ok(true)` when it is newer
    /// than every counter accepted so far, `Ok(false)` when it is an unseen one within the window.
    pub(crate) fn check(&self, counter: u64) -> Result<bool, Stale> {
        let Some(top) = self.newest else {
            return Ok(true);
        };
        if counter > top {
            return Ok(true);
        }
        if top - counter >= REPLAY_WINDOW {
            return Err(Stale::TooOld);
        }
        let (word, bit) = Self::slot(counter);
        if self.ring[word] >> bit & 1 == 1 {
            Err(Stale::Seen)
        } else {
            Ok(false)
        }
    }

    /// Records `counter` as seen. Call it only after [`ReplayWindow::check`] accepted the
    /// counter and the datagram carrying it authenticated.
    pub(crate) fn accept(&mut self, counter: u64) {
        match self.newest {
            Some(top) if counter <= top => {}
            Some(top) => {
                // Clear the words between the old newest and the new one (all of them at most).
                let from = top / 64;
                let steps = (counter / 64 - from).min(REPLAY_WINDOW_WORDS as u64);
                for i in 1..=steps {
                    self.ring[((from + i) % REPLAY_WINDOW_WORDS as u64) as usize] = 0;
                }
                self.newest = Some(counter);
            }
            // The ring is all zeros: nothing to clear.
            None => self.newest = Some(counter),
        }
        let (word, bit) = Self::slot(counter);
        self.ring[word] |= 1 << bit;
    }

    fn slot(counter: u64) -> (usize, u32) {
        (
            ((counter / 64) % REPLAY_WINDOW_WORDS as u64) as usize,
            (counter % 64) as u32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn in_order_reordered_replayed_and_too_old() {
        let mut w = ReplayWindow::new();
        for c in [0, 1, 2, 5, 4, 3] {
            assert!(w.check(c).is_ok(), "{c}");
            w.accept(c);
        }
        for c in 0..=5 {
            assert_eq!(w.check(c), Err(Stale::Seen));
        }
        assert_eq!(w.check(6), Ok(true));
        w.accept(5 + REPLAY_WINDOW + 10);
        assert_eq!(w.check(5), Err(Stale::TooOld));
        assert_eq!(w.check(14), Err(Stale::TooOld));
        assert_eq!(w.check(16), Ok(false));
        assert_eq!(w.newest(), Some(5 + REPLAY_WINDOW + 10));
        // The far end of the counter space.
        w.accept(u64::MAX);
        assert_eq!(w.check(u64::MAX), Err(Stale::Seen));
        assert_eq!(w.check(u64::MAX - 1), Ok(false));
        assert_eq!(w.check(u64::MAX - REPLAY_WINDOW), Err(Stale::TooOld));
    }

    proptest! {
        /// Against a model that remembers every counter: the window accepts exactly the counters
        /// never seen and less than REPLAY_WINDOW behind the newest, and accepts each at most once.
        #[test]
        fn matches_exact_model(
            start in prop_oneof![Just(0u64), any::<u64>().prop_map(|x| x >> 1)],
            steps in proptest::collection::vec(-2500i64..2500, 1..400),
        ) {
            let mut w = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            let mut newest: Option<u64> = None;
            let mut at = start;
            for s in steps {
                at = at.saturating_add_signed(s);
                let expected = match newest {
                    None => Ok(true),
                    Some(top) if at > top => Ok(true),
                    Some(top) if top - at >= REPLAY_WINDOW => Err(Stale::TooOld),
                    Some(_) if seen.contains(&at) => Err(Stale::Seen),
                    Some(_) => Ok(false),
                };
                prop_assert_eq!(w.check(at), expected);
                if expected.is_ok() {
                    w.accept(at);
                    seen.insert(at);
                    newest = Some(newest.map_or(at, |n| n.max(at)));
                }
            }
        }
    }
}
