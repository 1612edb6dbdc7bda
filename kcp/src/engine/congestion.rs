//! Congestion control, chosen with [`Congestion`]: kcp-go's congestion window (docs/wire-format.md#kcp-input
//! "cwnd growth", A.7 steps 6 and 11), none (`nc`), or the delivery-rate controller of
//! [`super::rate`], which `flush` asks for its in-flight cap and pacing and `input` feeds with
//! deliveries.

use super::rate::DeliveryRate;
use super::{Kcp, diff};
use crate::{Congestion, OVERHEAD};

pub(super) const THRESH_INIT: u32 = 2;
const THRESH_MIN: u32 = 2;
/// Initial window of the loss-tolerant controller, segments.
const TOLERANT_IW: u32 = 10;

/// State of [`Congestion::LossTolerant`] (kcp-go's `cwnd`/`ssthresh` fields hold its window).
#[derive(Debug, Default)]
pub(super) struct Tolerant {
    on: bool,
    /// Smallest RTT sample, ms.
    min_rtt: Option<u32>,
    /// Segments acknowledged towards the next one-segment step of congestion avoidance.
    acked: u32,
    /// No further reduction until `snd_una` passes this (one reduction per round trip).
    recover: Option<u32>,
}

impl Kcp {
    /// A.7 step 6: how far past `snd_una` new segments may go, `min(snd_wnd, rmt_wnd)` and, unless
    /// `nc`, `cwnd` (the delivery-rate and loss-tolerant controllers cap the segments in flight
    /// instead, see [`Kcp::tolerant_cap`]).
    pub(super) fn send_window(&self) -> u32 {
        let wnd = self.snd_wnd.min(self.rmt_wnd);
        if self.nocwnd || self.rate.is_some() || self.tol.on {
            wnd
        } else {
            wnd.min(self.cwnd)
        }
    }

    /// The loss-tolerant controller's cap on unacknowledged segments: its window counts the
    /// segments in flight (like TCP's SACK pipe), not from `snd_una`, so a hole being repaired
    /// does not stop new segments while later ones are acknowledged.
    pub(super) fn tolerant_cap(&self) -> Option<u32> {
        self.tol.on.then_some(self.cwnd)
    }

    /// After an input: `acked` segments newly acknowledged, `una_moved`, an RTT sample.
    pub(super) fn cwnd_on_input(&mut self, acked: u32, una_moved: bool, rtt: Option<u32>) {
        if self.tol.on {
            self.tolerant_on_input(acked, rtt);
        } else if una_moved {
            self.cwnd_on_una_advance();
        }
    }

    fn tolerant_on_input(&mut self, acked: u32, rtt: Option<u32>) {
        let t = &mut self.tol;
        if let Some(r) = rtt {
            t.min_rtt = Some(t.min_rtt.map_or(r, |m| m.min(r)));
        }
        if t.recover.is_some_and(|r| diff(self.snd_una, r) >= 0) {
            t.recover = None;
        }
        if acked == 0 {
            return;
        }
        // Slow start ends when the RTT shows a queue, before the queue overflows (HyStart's
        // delay exit): overshooting a deep buffer stretches the RTT past the RTO.
        if self.cwnd < self.ssthresh && self.queue_seen() {
            self.ssthresh = self.cwnd;
        }
        let t = &mut self.tol;
        let cap = self.snd_wnd.min(self.rmt_wnd).max(1);
        if self.cwnd < self.ssthresh {
            self.cwnd = self
                .cwnd
                .saturating_add(acked)
                .min(self.ssthresh.max(self.cwnd + 1));
        } else {
            t.acked += acked;
            while t.acked >= self.cwnd.max(1) {
                t.acked -= self.cwnd.max(1);
                self.cwnd += 1;
            }
        }
        // Growth beyond what the windows let out would only be released in one burst later.
        self.cwnd = self.cwnd.min(cap);
    }

    /// The loss-tolerant controller's minimum RTT (`None` with another controller).
    pub(super) fn tolerant_min_rtt(&self) -> Option<u32> {
        self.tol.min_rtt.filter(|_| self.tol.on)
    }

    /// The smoothed RTT stands above the minimum by more than a quarter of it and at least
    /// `interval` (the receiver's ACK delay varies by up to that much): a queue on the path.
    fn queue_seen(&self) -> bool {
        let Some(min) = self.tol.min_rtt else {
            return false;
        };
        self.rx_srtt.max(0) as u32 > min + (min / 4).max(self.interval)
    }

    /// A loss in this flush (`lost`: by RTO): a congestion signal only with a queue on the path.
    fn tolerant_after_flush(&mut self, change: u64, lost: u64) {
        if change == 0 && lost == 0 {
            return;
        }
        if !self.queue_seen() || self.tol.recover.is_some() {
            return;
        }
        self.ssthresh = if lost > 0 {
            self.cwnd / 2
        } else {
            self.cwnd * 7 / 10
        }
        .max(THRESH_MIN);
        self.cwnd = self.ssthresh;
        self.tol.acked = 0;
        self.tol.recover = Some(self.snd_nxt);
    }

    /// A.5: `input` moved `snd_una` forward: slow start below `ssthresh`, kcp-go's byte-counting
    /// congestion avoidance above it, never past the peer's window (u32 wrapping like kcp-go).
    fn cwnd_on_una_advance(&mut self) {
        if self.nocwnd || self.rate.is_some() || self.cwnd >= self.rmt_wnd {
            return;
        }
        let mss = self.mss as u32;
        if self.cwnd < self.ssthresh {
            self.cwnd += 1;
            self.incr = self.incr.wrapping_add(mss);
        } else {
            if self.incr < mss {
                self.incr = mss;
            }
            self.incr = self
                .incr
                .wrapping_add((mss.wrapping_mul(mss)) / self.incr + mss / 16);
            if (self.cwnd.wrapping_add(1)).wrapping_mul(mss) <= self.incr {
                self.cwnd = self.incr.wrapping_add(mss - 1) / mss;
            }
        }
        if self.cwnd > self.rmt_wnd {
            self.cwnd = self.rmt_wnd;
            self.incr = self.rmt_wnd.wrapping_mul(mss);
        }
    }

    /// A.7 step 11, after a flush: fast/early retransmissions (`change`) halve the window to half
    /// the data in flight plus the fast-resend threshold `resent`; RTO losses (`lost`) collapse it
    /// to 1 with `ssthresh` at half of `wnd`, the flush's effective window (kcp-go's quirk: not
    /// `cwnd`). u32 wrapping like kcp-go.
    pub(super) fn cwnd_after_flush(&mut self, wnd: u32, change: u64, lost: u64, resent: u32) {
        if self.tol.on {
            return self.tolerant_after_flush(change, lost);
        }
        if self.nocwnd || self.rate.is_some() {
            return;
        }
        let mss = self.mss as u32;
        if change > 0 {
            let inflight = self.snd_nxt.wrapping_sub(self.snd_una);
            self.ssthresh = (inflight / 2).max(THRESH_MIN);
            self.cwnd = self.ssthresh.wrapping_add(resent);
            self.incr = self.cwnd.wrapping_mul(mss);
        }
        if lost > 0 {
            self.ssthresh = (wnd / 2).max(THRESH_MIN);
            self.cwnd = 1;
            self.incr = mss;
        }
        if self.cwnd < 1 {
            self.cwnd = 1;
            self.incr = mss;
        }
    }
}

impl Kcp {
    /// Chooses the congestion controller (see [`Congestion`]). Switching to
    /// [`Congestion::DeliveryRate`] starts a fresh model (startup); switching away drops it.
    /// [`Congestion::KcpGo`] clears `nc`, [`Congestion::None`] sets it, like kcp-go's
    /// [`set_nodelay`](Kcp::set_nodelay) flag. Beyond kcp-go; the default is `KcpGo`.
    pub fn set_congestion(&mut self, cc: Congestion) {
        if self.tol.on && cc != Congestion::LossTolerant {
            self.ssthresh = THRESH_INIT;
        }
        self.tol.on = false;
        match cc {
            Congestion::LossTolerant => {
                self.rate = None;
                self.tol = Tolerant {
                    on: true,
                    ..Tolerant::default()
                };
                self.cwnd = self.cwnd.max(TOLERANT_IW);
                self.ssthresh = u32::MAX;
            }
            Congestion::KcpGo => {
                self.rate = None;
                self.nocwnd = false;
            }
            Congestion::None => {
                self.rate = None;
                self.nocwnd = true;
            }
            Congestion::DeliveryRate => {
                if self.rate.is_none() {
                    self.rate = Some(Box::new(DeliveryRate::new(
                        self.mss + OVERHEAD,
                        self.last_now,
                        self.conv,
                    )));
                }
            }
        }
        self.pace_at = None;
        if self.skip.is_some() {
            self.skip_stale = true;
        }
    }

    /// The congestion controller in use (`nc` reads as [`Congestion::None`]).
    pub fn congestion(&self) -> Congestion {
        if self.tol.on {
            Congestion::LossTolerant
        } else if self.rate.is_some() {
            Congestion::DeliveryRate
        } else if self.nocwnd {
            Congestion::None
        } else {
            Congestion::KcpGo
        }
    }

    /// The delivery-rate controller's bottleneck-bandwidth estimate in bytes per second (KCP
    /// segments, headers included); `None` with another controller or before the first sample.
    pub fn bandwidth_estimate(&self) -> Option<u64> {
        let bw = self.rate.as_deref()?.btlbw();
        (bw > 0.0).then_some((bw * 1000.0) as u64)
    }

    /// The delivery-rate controller's pacing rate in bytes per second; `None` with another
    /// controller.
    pub fn pacing_rate(&self) -> Option<u64> {
        Some((self.rate.as_deref()?.pacing_rate() * 1000.0) as u64)
    }

    /// The delivery-rate controller's minimum RTT (ms, over the last 10 s); `None` with another
    /// controller or before the first sample.
    pub fn min_rtt(&self) -> Option<u32> {
        self.rate.as_deref()?.min_rtt()
    }

    /// The delivery-rate controller's cap on segments in flight; `None` with another controller.
    pub fn inflight_cap(&self) -> Option<u32> {
        Some(self.rate.as_deref()?.cwnd_segments())
    }

    /// Segments sent and not yet acknowledged.
    pub fn inflight(&self) -> u32 {
        self.unacked
    }
}
