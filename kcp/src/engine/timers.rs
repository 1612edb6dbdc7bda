//! Time: the RTT estimator and RTO (docs/wire-format.md#kcp-rto), and the scheduling of `update` — kcp-go's
//! periodic flush timer, the retransmission deadlines and the skipping of idle ticks.

use std::collections::VecDeque;

use super::{Kcp, diff};

/// Minimum RTO with `nodelay` (kcp-go `IKCP_RTO_NDL`).
pub(super) const RTO_NDL: u32 = 30;
/// Minimum RTO without `nodelay` (`IKCP_RTO_MIN`).
pub(super) const RTO_MIN: u32 = 100;
/// RTO before the first RTT sample (`IKCP_RTO_DEF`).
pub(super) const RTO_DEF: u32 = 200;
/// Largest RTO (`IKCP_RTO_MAX`).
const RTO_MAX: u32 = 60_000;
/// Queue capacity (entries) an idle engine may keep; larger allocations are released.
const IDLE_QUEUE_CAP: usize = 64;

impl Kcp {
    /// RTT sample → srtt/rttvar/rto (docs/wire-format.md#kcp-rto), all in signed 32-bit arithmetic.
    pub(super) fn update_ack(&mut self, rtt: i32) {
        if self.rx_srtt == 0 {
            self.rx_srtt = rtt;
            self.rx_rttvar = rtt >> 1;
        } else {
            let mut delta = rtt.wrapping_sub(self.rx_srtt);
            self.rx_srtt = self.rx_srtt.wrapping_add(delta >> 3);
            delta = delta.wrapping_abs();
            if rtt < self.rx_srtt.wrapping_sub(self.rx_rttvar) {
                self.rx_rttvar = self
                    .rx_rttvar
                    .wrapping_add(delta.wrapping_sub(self.rx_rttvar) >> 5);
            } else {
                self.rx_rttvar = self
                    .rx_rttvar
                    .wrapping_add(delta.wrapping_sub(self.rx_rttvar) >> 2);
            }
        }
        let rto =
            (self.rx_srtt as u32).wrapping_add(self.interval.max((self.rx_rttvar as u32) << 2));
        self.rx_rto = rto.max(self.rx_minrto).min(RTO_MAX);
        // The delivery-rate controller keeps at most two bandwidth-delay products in flight, so
        // queueing alone can stretch the RTT to twice the minimum plus the peer's ACK delay; a
        // shorter RTO would resend in-flight data spuriously. Losses are found by duplicate ACKs
        // (fast/early retransmit, RACK) well before.
        // The loss-tolerant window lets a queue build up to the point where the RTT shows it (and
        // slow start may overshoot that by a round trip): the same floor keeps its RTO above the
        // queueing delay.
        let min_rtt = match self.rate.as_deref() {
            Some(r) => r.min_rtt(),
            None => self.tolerant_min_rtt(),
        };
        if let Some(min_rtt) = min_rtt {
            let floor = (2 * min_rtt).saturating_add(self.interval);
            self.rx_rto = self.rx_rto.max(floor).min(RTO_MAX);
        }
    }

    // ------------------------------------------------------------------ scheduling

    /// Does whatever is due at `now`: the full flush kcp-go's `Input` does right after a window
    /// slide (or its `Write` after queuing data), an ACK-only flush when ack-nodelay is on and
    /// ACKs are pending, or the periodic flush (ACKs, probes, new data, retransmissions) when
    /// its deadline has passed. Does nothing when nothing is due, so calling it early is harmless.
    ///
    /// The periodic flush is kcp-go's session timer: after each timer flush the next one is due
    /// `flush()`'s return value later (at most `interval`). Unlike kcp-go the timer stops while
    /// the engine is idle (see [`next_deadline`](Kcp::next_deadline)) and restarts in the same
    /// phase, which sends the same packets at the same times.
    ///
    /// Call it once right after creating the engine (kcp-go's session flushes at creation;
    /// that first flush raises `cwnd` from 0 to 1).
    pub fn update<F: FnMut(&mut [u8])>(&mut self, now: u32, out: &mut F) {
        self.last_now = now;
        if self.pending_full || self.pending_ack || self.skip_stale {
            // Something changed since the ticks were skipped: back to kcp-go's next tick first, so
            // that a tick due now runs as the periodic flush it is.
            self.unskip();
        }
        let timer_due = self.timer_at.is_some_and(|t| diff(now, t) >= 0);
        // The pacer let new data wait (delivery-rate controller only).
        let pace_due = self.pace_at.is_some_and(|t| diff(now, t) >= 0);
        // A RACK loss or tail probe is due (options beyond kcp-go).
        let rec_due = self.rec.at.is_some_and(|t| diff(now, t) >= 0);
        // ACKs have waited `ack_delay` (option beyond kcp-go).
        let ack_due = self.ack_at.is_some_and(|t| diff(now, t) >= 0);
        if !self.started || self.pending_full || timer_due || pace_due || rec_due {
            let d = self.flush_full(now, out);
            self.after_flush(now, d, timer_due);
        } else if self.pending_ack || ack_due {
            self.flush_acks_inner(out);
            self.pending_ack = false;
            self.arm();
        }
    }

    pub(super) fn after_flush(&mut self, now: u32, d: u32, timer: bool) {
        self.unskip();
        let timer = timer || !self.started;
        let next = now.wrapping_add(d);
        self.started = true;
        self.pending_full = false;
        self.pending_ack = false;
        if timer {
            self.timer_at = Some(next);
            self.anchor = next;
        } else if let Some(t) = self.timer_at {
            // A retransmission timer set by this flush may expire before the periodic tick.
            if diff(next, t) < 0 {
                self.timer_at = Some(next);
            }
        } else {
            let tick = self.tick_at_or_after(now.wrapping_add(1));
            self.timer_at = Some(if diff(next, tick) < 0 { next } else { tick });
        }
        self.arm();
        self.skip_idle_ticks();
    }

    /// The first tick of the periodic timer's phase at or after `t`.
    fn tick_at_or_after(&self, t: u32) -> u32 {
        self.grid_tick(t, self.interval)
    }

    /// The first of the ticks `anchor + k * iv` (k >= 0) at or after `t`.
    fn grid_tick(&self, t: u32, iv: u32) -> u32 {
        let since = diff(t, self.anchor);
        if since <= 0 {
            return self.anchor;
        }
        let iv = iv.max(1);
        let k = (since as u32).div_ceil(iv);
        self.anchor.wrapping_add(k.wrapping_mul(iv))
    }

    /// Skips the periodic flushes that cannot send anything (beyond kcp-go, whose timer runs
    /// every one of them; an idle-but-connected session then costs no wake-ups while it waits
    /// for an ACK). They are the ticks before the earliest retransmission deadline `r` while the
    /// only thing in flight is data whose timers have not expired: no ACK, probe or new segment
    /// pending, no duplicate-ACK count (early retransmit), a non-zero peer window. Each such
    /// flush would send nothing, change no state, and schedule the next tick at
    /// `min(tick + interval, r)`, so kcp-go's chain of ticks reaches `r` exactly and the first
    /// packet goes out then, as here. Only a tick of the current phase is skipped from, and only
    /// when the last scan was complete (`r` exact).
    pub(super) fn skip_idle_ticks(&mut self) {
        let (Some(t), Some(r)) = (self.timer_at, self.hint_resendts) else {
            return;
        };
        let quiet = self.tick_skip_allowed
            && self.hint_exact
            && !self.hint_fastack
            && self.quiet()
            && self.snd_buf.iter().any(|s| !s.acked);
        let iv = self.interval;
        let on_grid = diff(t, self.anchor) >= 0 && (t.wrapping_sub(self.anchor)) % iv.max(1) == 0;
        if quiet && on_grid && diff(r, t) > 0 {
            self.skip = Some((r, iv));
            self.timer_at = Some(r);
        }
    }

    /// Nothing but retransmission timers can make a periodic flush send something.
    fn quiet(&self) -> bool {
        !self.pending_full
            && !self.pending_ack
            && self.acklist.is_empty()
            && self.probe == 0
            && self.probe_wait == 0
            && self.rmt_wnd != 0
            && (self.nocwnd || self.cwnd >= 1)
            && self.snd_queue.is_empty()
    }

    /// Ends a skip (see [`Kcp::skip_idle_ticks`]): the timer goes back to the tick kcp-go's
    /// would fire next at `last_now`, the skipped phase's or the retransmission deadline.
    pub(super) fn unskip(&mut self) {
        self.skip_stale = false;
        if let Some((r, iv)) = self.skip.take() {
            let now = self.last_now;
            let g = self.grid_tick(now, iv);
            if diff(now, r) < 0 && diff(g, r) < 0 {
                self.timer_at = Some(g);
            } else {
                // The last tick before `r` has run (in kcp-go's timer), and it scheduled `r`: the
                // phase continues from there, also while idle.
                self.timer_at = Some(r);
                self.anchor = r;
            }
        }
    }

    /// Nothing to send, nothing in flight, no ACK or probe pending: no flush can emit anything.
    fn is_idle(&self) -> bool {
        self.started
            && !self.pending_full
            && !self.pending_ack
            && self.acklist.is_empty()
            && self.probe == 0
            && self.snd_buf.is_empty()
            && self.snd_queue.is_empty()
            && self.rmt_wnd != 0
            && self.probe_wait == 0
    }

    /// Keeps `timer_at` consistent with the state after any change.
    pub(super) fn arm(&mut self) {
        if self.skip.is_some() && !self.quiet() {
            // Called without a fresh `now` (`recv`, a write-delayed `send`): resolved by the next
            // `update`, which `next_deadline` asks for at once.
            self.skip_stale = true;
        }
        if self.is_idle() {
            self.unskip(); // keeps the phase right (only fresh-`now` callers get here skipping)
            self.timer_at = None;
            // An idle engine keeps no spare buffers, no scratch datagram (`mtu` bytes, taken again
            // by the next flush) and no large queue allocations: 10,000 idle sessions cost no
            // payload memory. The buffers go to the next engine on this thread that starts working
            // (a few per thread, see `spare`).
            super::spare::put_segments(std::mem::take(&mut self.pool));
            super::spare::put_scratch(std::mem::take(&mut self.buffer));
            if self.snd_buf.capacity() > IDLE_QUEUE_CAP {
                self.snd_buf = VecDeque::new();
            }
            if self.snd_queue.capacity() > IDLE_QUEUE_CAP {
                self.snd_queue = VecDeque::new();
            }
            if self.acklist.capacity() > IDLE_QUEUE_CAP {
                self.acklist = VecDeque::new();
            }
            if self.rcv_buf.is_empty() && self.rcv_buf.capacity() > IDLE_QUEUE_CAP {
                self.rcv_buf = VecDeque::new();
            }
        } else if self.timer_at.is_none() && self.started {
            self.timer_at = Some(self.tick_at_or_after(self.last_now));
        }
    }

    /// When [`update`](Kcp::update) next has work: `None` while fully idle (nothing queued or in
    /// flight, no ACK or window probe pending), so an idle session needs no timer at all.
    /// Otherwise the earliest of the periodic flush and the nearest retransmission (periodic
    /// flushes that could send nothing are skipped, see the crate docs); the `now`
    /// of the last call (so: immediately) after an input that slid the window, a `send`, or
    /// pending ACKs with ack-nodelay. With [`Congestion::DeliveryRate`](crate::Congestion) also
    /// the next paced send while new data waits for the pacer, so any driver paces by calling
    /// `update` on time. Compare wrap-aware: due when `(now - t) as i32 >= 0`.
    ///
    /// A new engine reports `Some(0)` until its first `update`.
    pub fn next_deadline(&self) -> Option<u32> {
        if !self.started || self.pending_full || self.pending_ack || self.skip_stale {
            return Some(self.last_now);
        }
        [self.timer_at, self.pace_at, self.rec.at, self.ack_at]
            .into_iter()
            .flatten()
            .reduce(|a, b| if diff(b, a) < 0 { b } else { a })
    }

    /// `input` queued ACKs: with [`KcpConfig::ack_delay`](crate::KcpConfig::ack_delay) they
    /// leave at most that long after the first of them.
    pub(super) fn ack_deadline(&mut self, now: u32) {
        if let Some(d) = self.ack_delay
            && self.ack_at.is_none()
            && !self.acklist.is_empty()
        {
            self.ack_at = Some(now.wrapping_add(d));
        }
    }
}
