//! Knobs: kcp-go's setters (docs/wire-format.md#kcp-knobs) and the options beyond kcp-go.

use super::Kcp;
use super::timers::{RTO_MIN, RTO_NDL};
use crate::config::{MAX_MTU, MAX_RCV_WND, MIN_MTU};
use crate::{KcpError, OVERHEAD};

impl Kcp {
    /// kcp-go `NoDelay`: `nodelay` picks the minimum RTO (30 vs 100 ms, replacing any
    /// [`set_min_rto`](Kcp::set_min_rto)) and the RTO backoff; `interval` is clamped to
    /// `10..=5000` ms; `resend` is the fast-retransmit threshold (0 = off); `nc` disables the
    /// congestion window.
    pub fn set_nodelay(&mut self, nodelay: bool, interval: u32, resend: u32, nc: bool) {
        self.nodelay = nodelay;
        self.rx_minrto = if nodelay { RTO_NDL } else { RTO_MIN };
        self.interval = interval.clamp(10, 5000);
        self.fastresend = resend;
        self.nocwnd = nc;
        // kcp-go's next tick was scheduled with the old interval; later ones use the new one.
        if self.skip.is_some() {
            self.skip_stale = true;
        }
    }

    /// Caps the segments that are sent but not yet acknowledged at `max` (`None`: no cap, as
    /// kcp-go). Not in kcp-go, and invisible on the wire.
    ///
    /// KCP's windows count from `snd_una`: while the oldest segment is lost, the window stops
    /// at `snd_una + wnd` even though everything after the hole was delivered and acknowledged.
    /// On a lossy long-fat path that stalls the sender for a retransmission round trip at each
    /// loss, unless the window is several times the path's capacity — and then, with `nc` set,
    /// every repaired hole lets a window's worth of segments out at once and the bottleneck queue
    /// overflows. With a large `snd_wnd`/`rcv_wnd` (e.g. 4096) and `max_inflight` near the
    /// path's bandwidth-delay product plus its queue, new segments are clocked out by the ACKs
    /// of later segments (like TCP's SACK pipe) while holes are repaired, and the queue never
    /// overflows. Counted in segments; retransmissions don't add to it.
    pub fn set_max_inflight(&mut self, max: Option<u32>) {
        self.max_inflight = max.map(|m| m.max(1));
    }

    /// Overrides the minimum RTO (the C KCP test sets 10 ms in its fast mode). Reset by
    /// [`set_nodelay`](Kcp::set_nodelay). Not part of kcp-go's API but it is a plain field there.
    pub fn set_min_rto(&mut self, ms: u32) {
        self.rx_minrto = ms;
    }

    /// kcp-go `WndSize`: 0 leaves a window unchanged. The receive window is capped at 65535,
    /// the largest the 16-bit `wnd` field can announce.
    pub fn set_window(&mut self, snd: u32, rcv: u32) {
        if snd > 0 {
            self.snd_wnd = snd;
        }
        if rcv > 0 {
            self.rcv_wnd = rcv.min(MAX_RCV_WND);
        }
    }

    /// kcp-go `SetMtu`: the largest datagram, reserved bytes included; `mss = mtu - 24 - reserved`.
    ///
    /// Segments created before a decrease keep their size and are sent alone in a datagram
    /// that may exceed the new MTU; set the MTU before sending data.
    ///
    /// # Errors
    /// [`KcpError::InvalidMtu`] outside `50..=65535`, [`KcpError::InvalidReserved`] if the
    /// current reservation would leave no payload room.
    pub fn set_mtu(&mut self, mtu: usize) -> Result<(), KcpError> {
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(KcpError::InvalidMtu { mtu });
        }
        if self.reserved >= mtu - OVERHEAD {
            return Err(KcpError::InvalidReserved {
                reserved: self.reserved,
                mtu,
            });
        }
        self.mtu = mtu;
        self.mss = mtu - OVERHEAD - self.reserved;
        self.buffer = Vec::new();
        Ok(())
    }

    /// kcp-go `ReserveBytes`: keep `n` bytes free at the front of every output datagram (the
    /// session writes its FEC and crypto headers there in place). `mss = mtu - 24 - n`.
    ///
    /// # Errors
    /// [`KcpError::InvalidReserved`] if `n >= mtu - 24`.
    pub fn set_reserved(&mut self, n: usize) -> Result<(), KcpError> {
        if n >= self.mtu - OVERHEAD {
            return Err(KcpError::InvalidReserved {
                reserved: n,
                mtu: self.mtu,
            });
        }
        self.reserved = n;
        self.mss = self.mtu - OVERHEAD - n;
        Ok(())
    }

    /// Stream mode (no message boundaries; `send` tops up the last queued segment) or message mode.
    pub fn set_stream_mode(&mut self, on: bool) {
        self.stream = on;
        // A segment partly read in stream mode must not be handed out again whole.
        if !on && self.rcv_head_off > 0 {
            if let Some(head) = self.rcv_queue.front_mut() {
                head.data.drain(..self.rcv_head_off);
            }
            self.rcv_head_off = 0;
        }
    }

    /// Send ACKs right after each input (kcp-go `SetACKNoDelay`) instead of at the next
    /// interval flush.
    pub fn set_ack_nodelay(&mut self, on: bool) {
        self.ack_nodelay = on;
    }

    /// How many later ACK flushes acknowledge an out-of-order segment again (0: kcp-go). See
    /// [`KcpConfig::ack_repeat`](crate::KcpConfig::ack_repeat). Invisible on the wire.
    pub fn set_ack_repeat(&mut self, n: u32) {
        if n == 0 {
            self.reacks = None;
        } else {
            self.reacks.get_or_insert_with(Box::default).n = n;
        }
    }

    /// Turns redundant bundling for thin streams on or off (see
    /// [`KcpConfig::bundle`](crate::KcpConfig::bundle)). Off by default (kcp-go). Invisible on
    /// the wire.
    pub fn set_bundle(&mut self, on: bool) {
        self.bundle = on;
    }

    /// Whether redundant bundling is on.
    pub fn bundle(&self) -> bool {
        self.bundle
    }

    /// The number of later ACK flushes that acknowledge an out-of-order segment again
    /// ([`KcpConfig::ack_repeat`](crate::KcpConfig::ack_repeat), resolved).
    pub fn ack_repeat(&self) -> u32 {
        self.reacks.as_ref().map_or(0, |r| r.n)
    }

    /// Longest time, ms, an ACK waits for a flush (`None`: until the next periodic flush, as
    /// kcp-go). See [`KcpConfig::ack_delay`](crate::KcpConfig::ack_delay). Invisible on the wire.
    pub fn set_ack_delay(&mut self, ms: Option<u32>) {
        self.ack_delay = ms;
        self.ack_at = None;
        if let Some(d) = ms
            && !self.acklist.is_empty()
        {
            self.ack_at = Some(self.last_now.wrapping_add(d));
        }
    }

    /// kcp-go `SetWriteDelay`: when on, [`send`](Kcp::send) leaves the data for the next periodic
    /// flush instead of making a flush due at once (fewer, fuller datagrams for small writes).
    pub fn set_write_delay(&mut self, on: bool) {
        self.write_delay = on;
    }

    /// Transmissions of one segment after which [`is_dead_link`](Kcp::is_dead_link) turns true
    /// (0 is treated as 1).
    pub fn set_dead_link(&mut self, xmit: u32) {
        self.dead_link = xmit.max(1);
    }
}
