//! Loss recovery beyond kcp-go, both off by default and invisible on the wire (they only decide
//! when a segment is sent again):
//!
//! * **RACK** (time-based loss detection, after RFC 8985): every ACK echoes the send time `ts` of
//!   the transmission it acknowledges, so the sender knows the most recently sent transmission
//!   that was delivered. A segment sent before it and still unacknowledged once `rtt + reo_wnd`
//!   has passed since its own transmission is lost (`rtt`: that delivered transmission's round
//!   trip, `reo_wnd = max(srtt / 4, 2 ms)`: the reordering the path may show). It is resent at
//!   once, whether or not new segments go out and however few later segments were acknowledged
//!   (kcp-go's fast resend needs `resend` later ACKs, its early retransmit a flush without new
//!   data; otherwise only the RTO repairs). RACK replaces kcp-go's early retransmit, which
//!   resends any segment one later segment overtook (so every reordering costs a spurious
//!   retransmission); fast resend (`resend`) stays as configured.
//! * **TLP** (tail loss probe): when the last transmission has not been acknowledged after
//!   `pto = max(2 * srtt, 10 ms)` (nor anything else for the last `reo_wnd`), the newest unacknowledged segment is sent again once,
//!   so a lost tail is repaired in about a round trip instead of an RTO; its ACK, or the
//!   duplicate-ACK and RACK machinery the probe's ACK feeds, does the rest. A probe is not a
//!   congestion signal (kcp-go's window is not reduced); the next probe waits for an ACK.
//!
//! Both keep `max_inflight`'s benefit: they only resend segments already counted in flight.
//! The timer they need (`Recovery::at`) is reported by `next_deadline` and runs a full flush.

use super::{Kcp, SndSeg, diff};

/// Smallest reordering window, ms (timestamps have millisecond resolution).
const REO_MIN: u32 = 2;
/// Smallest probe timeout, ms.
const PTO_MIN: u32 = 10;

/// State of RACK and TLP (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Recovery {
    pub(super) rack: bool,
    pub(super) tlp: bool,
    /// `(ts, sn)` of the most recently sent transmission known to be delivered.
    latest: Option<(u32, u32)>,
    /// Round trip of that transmission, ms.
    rtt: u32,
    /// When the last ACK arrived.
    last_ack: Option<u32>,
    /// A probe went out and no ACK came since.
    probed: bool,
    /// The next RACK loss or probe is due then (a full flush).
    pub(super) at: Option<u32>,
}

/// What the flush needs to judge each segment (copied out so `snd_buf` can be borrowed).
#[derive(Debug, Clone, Copy)]
pub(super) struct RackCheck {
    latest: (u32, u32),
    /// `rtt + reo_wnd`.
    wait: u32,
}

impl RackCheck {
    /// The time at which `seg` counts as lost, if it was sent before the latest delivered
    /// transmission (and is unacknowledged: the caller checks).
    pub(super) fn deadline(&self, seg: &SndSeg) -> Option<u32> {
        let (ts, sn) = self.latest;
        let before = diff(seg.ts, ts) < 0 || (seg.ts == ts && diff(seg.sn, sn) < 0);
        (seg.xmit > 0 && before).then(|| seg.ts.wrapping_add(self.wait))
    }
}

impl Kcp {
    /// Turns RACK-style time-based loss detection on or off (see [`KcpConfig::rack`]). Off by
    /// default (kcp-go). Invisible on the wire.
    ///
    /// [`KcpConfig::rack`]: crate::KcpConfig::rack
    pub fn set_rack(&mut self, on: bool) {
        self.rec.rack = on;
        self.recovery_rearm();
    }

    /// Turns the tail loss probe on or off (see [`KcpConfig::tlp`]). Off by default (kcp-go).
    /// Invisible on the wire.
    ///
    /// [`KcpConfig::tlp`]: crate::KcpConfig::tlp
    pub fn set_tlp(&mut self, on: bool) {
        self.rec.tlp = on;
        self.recovery_rearm();
    }

    /// Whether RACK loss detection is on.
    pub fn rack(&self) -> bool {
        self.rec.rack
    }

    /// Whether the tail loss probe is on.
    pub fn tlp(&self) -> bool {
        self.rec.tlp
    }

    fn recovery_rearm(&mut self) {
        self.rec.at = self.recovery_deadline();
        if self.skip.is_some() {
            self.skip_stale = true;
        }
    }

    /// `input` saw an ACK of our transmission `(ts, sn)` (`ts` echoed by the peer).
    pub(super) fn recovery_on_ack(&mut self, now: u32, sn: u32, ts: u32) {
        let r = &mut self.rec;
        if !r.rack && !r.tlp {
            return;
        }
        r.last_ack = Some(now);
        r.probed = false;
        let newer = r
            .latest
            .is_none_or(|(lts, lsn)| diff(ts, lts) > 0 || (ts == lts && diff(sn, lsn) > 0));
        if newer && diff(now, ts) >= 0 {
            r.latest = Some((ts, sn));
            r.rtt = now.wrapping_sub(ts);
        }
    }

    /// After an input: re-arms the timer and asks for a flush now if a loss or probe is due.
    pub(super) fn recovery_after_input(&mut self, now: u32) {
        if !self.rec.rack && !self.rec.tlp {
            return;
        }
        self.rec.at = self.recovery_deadline();
        if self.rec.at.is_some_and(|t| diff(now, t) >= 0) {
            self.pending_full = true;
        }
    }

    /// RACK's view for this flush, `None` when off or before the first ACK.
    pub(super) fn rack_check(&self) -> Option<RackCheck> {
        if !self.rec.rack {
            return None;
        }
        Some(RackCheck {
            latest: self.rec.latest?,
            wait: self.rec.rtt.saturating_add(self.reo_wnd()),
        })
    }

    /// Reordering the path may show without a loss, ms.
    fn reo_wnd(&self) -> u32 {
        ((self.rx_srtt.max(0) as u32) / 4).max(REO_MIN)
    }

    fn pto(&self) -> u32 {
        (2 * self.rx_srtt.max(0) as u32).max(PTO_MIN)
    }

    /// When the tail loss probe is due (`None`: off, nothing in flight, already probed).
    fn tlp_deadline(&self) -> Option<u32> {
        if !self.rec.tlp || self.rec.probed || self.rx_srtt == 0 {
            return None;
        }
        let mut last = self
            .snd_buf
            .iter()
            .filter(|s| !s.acked && s.xmit > 0)
            .map(|s| s.ts)
            .reduce(|a, b| if diff(b, a) > 0 { b } else { a })?;
        last = last.wrapping_add(self.pto());
        // ACKs still arriving: not a tail yet.
        if let Some(a) = self.rec.last_ack.map(|a| a.wrapping_add(self.reo_wnd()))
            && diff(a, last) > 0
        {
            last = a;
        }
        Some(last)
    }

    /// Flush step: if the probe is due at `now`, the index in `snd_buf` of the segment to send
    /// again (the newest unacknowledged one). Marks the probe as sent.
    pub(super) fn tlp_due(&mut self, now: u32) -> Option<usize> {
        if self.tlp_deadline().is_none_or(|t| diff(now, t) < 0) {
            return None;
        }
        self.rec.probed = true;
        self.snd_buf.iter().rposition(|s| !s.acked && s.xmit > 0)
    }

    /// The earliest RACK loss time or probe time over the segments in flight.
    pub(super) fn recovery_deadline(&self) -> Option<u32> {
        let mut at = self.tlp_deadline();
        if let Some(check) = self.rack_check() {
            for seg in self.snd_buf.iter().filter(|s| !s.acked) {
                if let Some(d) = check.deadline(seg)
                    && at.is_none_or(|t| diff(d, t) < 0)
                {
                    at = Some(d);
                }
            }
        }
        at
    }
}
