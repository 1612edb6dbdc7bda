//! smux v2 flow control: the one owner of window arithmetic.
//!
//! Three types, each keeping its own invariant:
//!
//! - [`SendFlow`], per stream, sender side: what the application committed, what went
//!   to the transport, and what the peer's last UPD says it consumed and allows
//!   (Go's `numWritten`, `peerConsumed`, `peerWindow`).
//! - [`SendCredit`], per session, sender side: the bytes sent on all streams and not yet
//!   reported consumed, kept below the peer's session receive buffer.
//! - [`RecvFlow`], per stream, receiver side: consumption reporting (Go's `numRead`,
//!   `incr`), the window we advertise (auto-tuned), and the most the peer was ever
//!   entitled to send.
//!
//! # Why no deadlock
//!
//! A smux session is one ordered byte stream, so a window update (UPD) can only be read
//! after every frame written before it. A Go peer stops reading its transport while its
//! session receive buffer (`MaxReceiveBuffer`, a token bucket) is used up, and refills it
//! only when its application reads. If its application waits for *our* UPD (an echo
//! writing back to us, blocked on our window) while that UPD sits unread behind our data,
//! nobody moves again. Two rules make that impossible:
//!
//! 1. **Sender**: the bytes we have sent and the peer has not reported consumed, summed
//!    over all streams, stay below the peer's receive buffer
//!    ([`Config::peer_receive_buffer`](crate::Config::peer_receive_buffer), Go's default
//!    4 MiB). What the peer holds unread of our data is at most that sum (it reports
//!    consumption only after reading), so its token bucket never runs dry because of us,
//!    its reader never stops, and every UPD we write reaches it.
//! 2. **Receiver**: we never stop reading the transport for data the peer was entitled
//!    to send (within a window we advertised, or Go's initial 256 KiB guess before our
//!    first UPD reached it). Only data beyond every window we ever gave — which no
//!    conforming peer sends — counts against the receive buffer and can pause reading.
//!    So the peer's UPDs are never stuck behind data on our side either. Memory stays
//!    bounded by the windows: we advertise at most a fair share of `max_receive_buffer`
//!    per live stream, plus Go's 256 KiB guess for streams the peer just opened.
//!
//! The sender rule has one cost. Go reports consumption only every half window
//! (`MaxStreamBuffer/2`), so bytes the peer has read may still look in flight to us,
//! forever if the stream goes idle ("unreported"). Counting them could block a session
//! for good once such bytes fill the credit — quickly with kcptun's 2 MiB windows (1 MiB
//! unreported per stream, a 4 MiB buffer). So when the credit has run out and no report
//! (UPD or FIN) has released any for [`QUIET`], the part of each stream's in-flight bytes
//! the peer may have read unreported (less than half its window) stops counting, until
//! the next report. That is the only place where we trust time instead of arithmetic: in
//! a live exchange reports keep coming, and a peer whose reads stalled for that long is
//! not waiting for us (and Go itself would have sent without any cap).

use std::time::Duration;

/// Window Go assumes for the peer until the first UPD arrives (`initialPeerWindow`).
pub(crate) const INITIAL_PEER_WINDOW: u32 = 262_144;

/// Starting advertised window when auto-tuning (capped by `max_stream_buffer`).
pub(crate) const AUTOTUNE_INITIAL_WINDOW: u32 = 65_536;

/// Smallest window the fair-share cap ever advertises.
pub(crate) const MIN_WINDOW: u32 = 4096;

/// How long the send credit must have been exhausted without any report (UPD or FIN)
/// releasing part of it before the bytes the peer may have read unreported stop counting.
pub(crate) const QUIET: Duration = Duration::from_secs(1);

/// Wrap-aware `a - b` (Go's `int32(a - b)` on uint32 counters).
fn diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// The peer reported consuming more than we sent (Go's `ErrConsumed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConsumedTooMuch;

/// Sender side of one v2 stream.
///
/// Invariant: `peer_consumed <= sent <= committed` (wrap-aware), and a write never
/// commits beyond `peer_consumed + peer_window`.
#[derive(Debug, Clone)]
pub(crate) struct SendFlow {
    committed: u32,
    sent: u32,
    peer_consumed: u32,
    peer_window: u32,
    /// A UPD arrived (Go sends one on the first read, so the peer has read something).
    updated: bool,
    /// The peer sent FIN: a Go peer has dropped the stream and released what it held,
    /// and discards anything we still send, so nothing of it counts any more.
    peer_closed: bool,
}

impl Default for SendFlow {
    fn default() -> Self {
        Self {
            committed: 0,
            sent: 0,
            peer_consumed: 0,
            peer_window: INITIAL_PEER_WINDOW,
            updated: false,
            peer_closed: false,
        }
    }
}

impl SendFlow {
    fn check(&self) {
        debug_assert!(diff(self.sent, self.peer_consumed) >= 0, "{self:?}");
        debug_assert!(diff(self.committed, self.sent) >= 0, "{self:?}");
    }

    /// Bytes a write may commit now: the peer's window minus what is committed and not
    /// consumed. May be negative after the peer shrank its window.
    pub(crate) fn writable(&self) -> i64 {
        let inflight = i64::from(diff(self.committed, self.peer_consumed));
        i64::from(self.peer_window as i32) - inflight
    }

    /// A write committed `n` bytes (at most [`writable`](Self::writable)).
    pub(crate) fn commit(&mut self, n: u32) {
        debug_assert!(i64::from(n) <= self.writable().max(0), "{self:?} +{n}");
        self.committed = self.committed.wrapping_add(n);
        self.check();
    }

    /// `n` committed bytes went to the transport.
    pub(crate) fn on_sent(&mut self, n: u32) {
        self.sent = self.sent.wrapping_add(n);
        self.check();
    }

    /// Takes back `n` bytes that [`commit`](Self::commit) and [`on_sent`](Self::on_sent)
    /// counted ahead of a direct write (see `write.rs`) but the transport did not take.
    /// The peer cannot have reported them consumed, so the invariant still holds.
    pub(crate) fn unsend(&mut self, n: u32) {
        self.committed = self.committed.wrapping_sub(n);
        self.sent = self.sent.wrapping_sub(n);
        self.check();
    }

    /// Bytes sent and not reported consumed (0 once the peer closed).
    pub(crate) fn inflight(&self) -> u32 {
        if self.peer_closed {
            0
        } else {
            diff(self.sent, self.peer_consumed).max(0) as u32
        }
    }

    /// Applies a UPD, or fails if the peer claims to have consumed more than we sent.
    pub(crate) fn on_update(&mut self, consumed: u32, window: u32) -> Result<(), ConsumedTooMuch> {
        if diff(self.sent, consumed) < 0 {
            return Err(ConsumedTooMuch);
        }
        // Frames arrive in order and Go's numRead only grows, so `consumed` does not go
        // back; ignore it if it does (a misbehaving peer) rather than re-count bytes.
        if diff(consumed, self.peer_consumed) >= 0 {
            self.peer_consumed = consumed;
        }
        self.peer_window = window;
        self.updated = true;
        self.check();
        Ok(())
    }

    /// The peer sent FIN: nothing sent on this stream counts any more.
    pub(crate) fn is_peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The peer sent FIN.
    pub(crate) fn on_peer_fin(&mut self) {
        self.peer_closed = true;
    }

    /// Bytes sent and not reported consumed that the peer may nevertheless have read: Go reports only
    /// once half its window (`MaxStreamBuffer/2`) was read since its last report, so less than that. Zero
    /// before any UPD (Go's first read always reports).
    pub(crate) fn unreported(&self) -> u32 {
        if !self.updated {
            return 0;
        }
        self.inflight()
            .min((self.peer_window / 2).saturating_sub(1))
    }
}

/// Session-wide sender credit (rule 1 of the module docs).
///
/// Invariant: `total` equals the sum of [`SendFlow::inflight`] over the session's
/// streams (checked by the session in debug builds).
#[derive(Debug, Clone)]
pub(crate) struct SendCredit {
    cap: u64,
    total: u64,
}

impl SendCredit {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap: cap as u64,
            total: 0,
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// May a frame of `len` payload bytes go out, given `unreported` bytes of the total
    /// the peer may have read without saying so? The total stays strictly below the cap
    /// (a Go peer stops reading once its bucket is at zero); an empty frame always may,
    /// and so may a lone frame, so that a cap below the frame size cannot stall.
    pub(crate) fn allows(&self, len: u32, unreported: u64) -> bool {
        let counted = self.total.saturating_sub(unreported);
        len == 0 || counted == 0 || counted + u64::from(len) < self.cap
    }

    /// May a direct write (several frames at once, bypassing the shaper) take `len`
    /// credit? Only while the total stays below half the cap: stricter than
    /// [`allows`](Self::allows) frame by frame, so once credit gets scarce it is shared
    /// by the shaper (least sent first) and the streams waiting for it (first come,
    /// first served) instead of going to whoever writes first.
    pub(crate) fn allows_direct(&self, len: u32) -> bool {
        len == 0 || self.total + u64::from(len) < self.cap / 2
    }

    /// A stream's in-flight bytes went from `before` to `after`.
    pub(crate) fn adjust(&mut self, before: u32, after: u32) {
        debug_assert!(self.total >= u64::from(before), "{self:?} {before}");
        self.total = self.total - u64::from(before) + u64::from(after);
    }
}

/// Receiver side of one v2 stream.
///
/// Invariant: `entitled` never goes back (wrap-aware) and `entitled >= limit`; the
/// application never consumed more than arrived.
#[derive(Debug, Clone)]
pub(crate) struct RecvFlow {
    /// Bytes the application consumed (Go's `numRead`).
    num_read: u32,
    /// Consumed since the last UPD (Go's `incr`).
    incr: u32,
    /// Our own (auto-tuned or configured) window, before the fair-share cap.
    window: u32,
    /// Payload bytes received.
    received: u32,
    /// The peer may send up to this total given the last UPD we sent (or Go's initial
    /// guess before any).
    limit: u32,
    /// The most the peer was ever allowed: the maximum over every limit we gave and
    /// Go's initial guess (the peer may not have seen a later, smaller one yet).
    entitled: u32,
}

/// A window update to send: `UPD(consumed, window)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Update {
    pub(crate) consumed: u32,
    pub(crate) window: u32,
}

impl RecvFlow {
    pub(crate) fn new(window: u32) -> Self {
        Self {
            num_read: 0,
            incr: 0,
            window,
            received: 0,
            limit: INITIAL_PEER_WINDOW,
            entitled: INITIAL_PEER_WINDOW,
        }
    }

    fn check(&self) {
        debug_assert!(diff(self.entitled, self.limit) >= 0, "{self:?}");
        debug_assert!(diff(self.received, self.num_read) >= 0, "{self:?}");
    }

    /// Our own window (before the fair-share cap).
    #[cfg(test)]
    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    /// Would `len` more bytes stay within what the peer was entitled to send?
    pub(crate) fn within_entitlement(&self, len: usize) -> bool {
        let end = self.received.wrapping_add(len as u32);
        len <= i32::MAX as usize && diff(self.entitled, end) >= 0
    }

    /// Records `len` received payload bytes.
    pub(crate) fn on_data(&mut self, len: usize) {
        self.received = self.received.wrapping_add(len as u32);
    }

    fn window_used_up(&self) -> bool {
        diff(self.received, self.limit) >= 0
    }

    fn advertise(&mut self, window: u32) -> Update {
        self.incr = 0;
        self.limit = self.num_read.wrapping_add(window);
        if diff(self.limit, self.entitled) > 0 {
            self.entitled = self.limit;
        }
        self.check();
        Update {
            consumed: self.num_read,
            window,
        }
    }

    /// Announces the window of a new stream (`UPD(0, window)`) so a sender does not
    /// assume Go's 256 KiB for a stream nobody reads yet.
    pub(crate) fn announce(&mut self, effective: impl Fn(u32) -> u32) -> Update {
        let w = effective(self.window);
        self.advertise(w)
    }

    /// The application consumed `n` bytes; `buffered` are still unread. Returns the UPD
    /// to send, if Go would send one now or the window grew.
    ///
    /// `autotune_max`: grow the window (doubling, up to this) while the reader keeps up
    /// with a sustained transfer — it drained everything when half a window was consumed
    /// since the last report, or when the sender had used the whole window. Then the
    /// window, not the reader, is what can limit the stream (a path longer than half a
    /// window per round trip), and a larger one costs nothing while the reader keeps up;
    /// a reader that falls behind stops the growth. (Without a round-trip time at this
    /// layer, "the window was consumed within a round trip" cannot be measured directly.)
    /// `effective` applies the session's fair-share cap to a window.
    pub(crate) fn on_read(
        &mut self,
        n: u32,
        buffered: usize,
        autotune_max: Option<u32>,
        effective: impl Fn(u32) -> u32,
    ) -> Option<Update> {
        if n == 0 {
            return None;
        }
        self.num_read = self.num_read.wrapping_add(n);
        self.incr = self.incr.wrapping_add(n);
        let first = self.num_read == n;
        // Go's threshold is half the window it advertises; ours is half the window we
        // last advertised (the fair-share cap may have made it smaller than `window`), or
        // the sender could stall waiting for a UPD.
        let advertised = self
            .limit
            .wrapping_sub(self.num_read.wrapping_sub(self.incr));
        let due = self.incr >= advertised / 2;
        let mut send = due || first;
        if let Some(max) = autotune_max
            && buffered == 0
            && self.window < max
            && (due || self.window_used_up())
            && !first
        {
            self.window = self.window.saturating_mul(2).min(max);
            send = true;
        }
        self.check();
        send.then(|| {
            let w = effective(self.window);
            self.advertise(w)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn credit_allows_a_lone_frame_and_stays_below_cap() {
        let mut c = SendCredit::new(100);
        assert!(c.allows(1000, 0));
        c.adjust(0, 60);
        assert!(c.allows(39, 0));
        assert!(!c.allows(40, 0));
        assert!(c.allows(40, 10));
        assert!(c.allows(0, 0));
        c.adjust(60, 0);
        assert_eq!(c.total(), 0);
    }

    #[test]
    fn send_flow_window_consumed_and_unreported() {
        let mut s = SendFlow::default();
        assert_eq!(s.writable(), i64::from(INITIAL_PEER_WINDOW));
        s.commit(1000);
        s.on_sent(1000);
        // Before any UPD the peer has read nothing (its first read reports).
        assert_eq!(s.unreported(), 0);
        assert_eq!(s.on_update(2000, 65536), Err(ConsumedTooMuch));
        assert_eq!(s.on_update(400, 65536), Ok(()));
        assert_eq!(s.inflight(), 600);
        assert_eq!(s.writable(), 65536 - 600);
        assert_eq!(s.unreported(), 600);
        s.commit(40_000);
        s.on_sent(40_000);
        assert_eq!(s.unreported(), 32767);
        s.on_peer_fin();
        assert_eq!(s.inflight(), 0);
        s.commit(10);
        s.on_sent(10);
        assert_eq!(s.inflight(), 0);
    }

    #[test]
    fn recv_flow_entitlement_survives_a_smaller_window() {
        let mut r = RecvFlow::new(65536);
        // Before any UPD the peer may assume 256 KiB.
        assert!(r.within_entitlement(INITIAL_PEER_WINDOW as usize));
        assert!(!r.within_entitlement(INITIAL_PEER_WINDOW as usize + 1));
        let u = r.announce(|w| w.min(4096));
        assert_eq!(
            u,
            Update {
                consumed: 0,
                window: 4096
            }
        );
        // A peer that has not seen the announcement yet may still send 256 KiB.
        assert!(r.within_entitlement(INITIAL_PEER_WINDOW as usize));
        r.on_data(300_000 - 1);
        assert!(!r.within_entitlement(INITIAL_PEER_WINDOW as usize));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u32),
        Deliver(u32),
        Read(u32),
        Ack,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u32..100_000).prop_map(Op::Write),
            (1u32..100_000).prop_map(Op::Deliver),
            (1u32..100_000).prop_map(Op::Read),
            Just(Op::Ack),
        ]
    }

    proptest! {
        /// A sender and a receiver with UPDs delivered in order at random times: the
        /// sender never exceeds what the receiver entitled it to, the credit always
        /// equals the bytes in flight and covers what the receiver holds unread, and once
        /// the reader has read everything the sender can write again and everything
        /// still counted is within the unreported bound (so the quiet rule frees it).
        #[test]
        fn sender_and_receiver_agree(
            ops in proptest::collection::vec(op(), 1..400),
            start in any::<u32>(),
            autotune in any::<bool>(),
            share in 4096u32..1_000_000,
        ) {
            let mut s = SendFlow::default();
            let mut r = RecvFlow::new(65536);
            // Start the counters anywhere: every comparison must be wrap-aware.
            s.committed = start; s.sent = start; s.peer_consumed = start;
            r.num_read = start; r.received = start;
            r.limit = start.wrapping_add(INITIAL_PEER_WINDOW);
            r.entitled = r.limit;
            let mut credit = SendCredit::new(usize::MAX >> 1);
            let mut wire: u32 = 0; // sent, not yet delivered
            let mut buffered: u32 = 0; // delivered, not yet read
            let mut upds: std::collections::VecDeque<Update> = Default::default();
            let eff = |w: u32| w.min(share).max(MIN_WINDOW);
            let max = autotune.then_some(4 << 20);
            let u = r.announce(eff);
            upds.push_back(u);
            for op in ops {
                let before = s.inflight();
                match op {
                    Op::Write(n) => {
                        let n = i64::from(n).min(s.writable());
                        if n > 0 {
                            s.commit(n as u32);
                            s.on_sent(n as u32);
                            wire += n as u32;
                        }
                    }
                    Op::Deliver(n) => {
                        let n = n.min(wire);
                        prop_assert!(r.within_entitlement(n as usize));
                        r.on_data(n as usize);
                        wire -= n;
                        buffered += n;
                    }
                    Op::Read(n) => {
                        let n = n.min(buffered);
                        buffered -= n;
                        if let Some(u) = r.on_read(n, buffered as usize, max, eff) {
                            upds.push_back(u);
                        }
                    }
                    Op::Ack => {
                        if let Some(u) = upds.pop_front() {
                            prop_assert!(s.on_update(u.consumed, u.window).is_ok());
                        }
                    }
                }
                credit.adjust(before, s.inflight());
                prop_assert_eq!(credit.total(), u64::from(s.inflight()));
                // What the receiver holds unread is covered by the credit.
                prop_assert!(u64::from(wire + buffered) <= credit.total());
            }
            // Deliver and read everything, deliver every UPD: the sender must be able
            // to write again, and what still looks in flight is all "unreported".
            r.on_data(wire as usize);
            buffered += wire;
            if let Some(u) = r.on_read(buffered, 0, max, eff) { upds.push_back(u); }
            while let Some(u) = upds.pop_front() {
                s.on_update(u.consumed, u.window).unwrap();
            }
            prop_assert!(s.writable() > 0, "stalled: {:?} {:?}", s, r);
            prop_assert_eq!(s.unreported(), s.inflight(), "{:?} {:?}", s, r);
        }
    }
}
