//! Congestion control: kcp-go's congestion window (PROTOCOL.md A.5 "cwnd growth", A.7 steps 6
//! and 11), off with `nc`.

use super::Kcp;

pub(super) const THRESH_INIT: u32 = 2;
const THRESH_MIN: u32 = 2;

impl Kcp {
    /// A.7 step 6: how far past `snd_una` new segments may go, `min(snd_wnd, rmt_wnd)` and, unless
    /// `nc`, `cwnd`.
    pub(super) fn send_window(&self) -> u32 {
        let wnd = self.snd_wnd.min(self.rmt_wnd);
        if self.nocwnd { wnd } else { wnd.min(self.cwnd) }
    }

    /// A.5: `input` moved `snd_una` forward: slow start below `ssthresh`, kcp-go's byte-counting
    /// congestion avoidance above it, never past the peer's window (u32 wrapping like kcp-go).
    pub(super) fn cwnd_on_una_advance(&mut self) {
        if self.nocwnd || self.cwnd >= self.rmt_wnd {
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
        if self.nocwnd {
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
