//! Network input (docs/wire-format.md#kcp-input): datagrams from the peer, ACK and `una` processing,
//! the ACK list.

use std::mem;

use super::{ASK_TELL, Kcp, diff};
use crate::segment::RawHeader;
use crate::{Command, KcpError, OVERHEAD};

/// The ACK list holds at most this many receive windows' worth of entries.
const ACKLIST_WINDOWS: usize = 8;
/// ... and never fewer than this many entries.
pub(super) const ACKLIST_MIN: usize = 256;
/// With `max_inflight`, ACKs of this many segments beyond a hole trigger a flush before the interval.
const INFLIGHT_BATCH: u32 = 16;

/// Whether a datagram given to [`Kcp::input`] carries the peer's current window and our own
/// timestamps (kcp-go's `regular` flag of `Input`).
///
/// ```
/// use rkcp_engine::{Freshness, Kcp};
///
/// let mut k = Kcp::new(1);
/// // A header-only ACK datagram as received; one rebuilt by FEC would be `Freshness::Stale`.
/// let mut ack = [0u8; 24];
/// ack[0] = 1;
/// ack[4] = 82; // IKCP_CMD_ACK
/// k.input(0, &ack, Freshness::Fresh).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Freshness {
    /// Received as the peer just sent it (kcp-go `regular = true`): its window field updates the
    /// peer's window and its ACKs feed the RTT estimate.
    Fresh,
    /// Rebuilt by FEC from parity shards (kcp-go `regular = false`), or otherwise not carrying
    /// usable timing (the session uses it for replies that echo a cookie instead of our clock):
    /// it updates neither `rmt_wnd` nor the RTT; its segments and ACKs are processed as usual.
    Stale,
}

impl Kcp {
    /// Processes one datagram from the peer (kcp-go `Input`). `freshness` says whether it arrived as
    /// sent ([`Freshness::Fresh`]) or was rebuilt by FEC ([`Freshness::Stale`]): a stale
    /// datagram's window and timing are old, so it updates neither `rmt_wnd` nor the RTT.
    ///
    /// Never emits anything itself: when kcp-go would flush right away (the send window slid, or
    /// ACKs are pending with ack-nodelay) this records it, and [`next_deadline`](Kcp::next_deadline)
    /// returns `now` until [`update`](Kcp::update) runs. For kcp-go's exact packet pattern call
    /// `update` after every `input`.
    ///
    /// # Errors
    /// [`KcpError::Truncated`] (shorter than a header, or a segment's data runs past the end),
    /// [`KcpError::ConvMismatch`], [`KcpError::BadCommand`]. Segments before the bad one stay
    /// applied; the RTT and congestion updates of this datagram are skipped, as in kcp-go.
    pub fn input(&mut self, now: u32, data: &[u8], freshness: Freshness) -> Result<(), KcpError> {
        self.last_now = now;
        let r = self.input_inner(now, data, freshness == Freshness::Fresh);
        // ACKs may have moved the earliest retransmission: back to the tick chain.
        self.unskip();
        self.arm();
        r
    }

    fn input_inner(&mut self, now: u32, data: &[u8], regular: bool) -> Result<(), KcpError> {
        let (old_una, unacked_before) = (self.snd_una, self.unacked);
        let delivered_before = self.rate.as_ref().map_or(0, |r| r.delivered());
        if data.len() < OVERHEAD {
            return Err(KcpError::Truncated);
        }
        let mut latest = 0u32;
        let mut flag = false;
        let mut window_slides = false;
        let mut rest = data;
        while let Some(h) = RawHeader::read(rest) {
            if h.conv != self.conv {
                return Err(KcpError::ConvMismatch {
                    expected: self.conv,
                    got: h.conv,
                });
            }
            let body = &rest[OVERHEAD..];
            let len = h.len as usize;
            let Some(payload) = body.get(..len) else {
                return Err(KcpError::Truncated);
            };
            let Some(cmd) = Command::from_u8(h.cmd) else {
                return Err(KcpError::BadCommand(h.cmd));
            };
            if regular {
                self.rmt_wnd = u32::from(h.wnd);
            }
            if cmd == Command::Ack {
                // Before `una` removes the segment the ACK is for.
                self.note_spurious(h.sn, h.ts);
            }
            if self.parse_una(h.una) {
                window_slides = true;
            }
            self.shrink_buf();
            match cmd {
                Command::Ack => {
                    self.note_echo(h.sn, h.ts);
                    // With `ack_repeat` the peer may acknowledge a segment several times: only
                    // the first ACK counts for fast retransmit and the RTT (kcp-go counts all).
                    let dup = self.reacks.is_some() && self.already_acked(h.sn);
                    self.parse_ack(h.sn);
                    if !dup {
                        self.parse_fastack(h.sn, h.ts);
                    }
                    self.recovery_on_ack(now, h.sn, h.ts);
                    if !dup {
                        flag = true;
                        latest = h.ts;
                    }
                }
                Command::Push => {
                    let mut repeat = true;
                    if diff(h.sn, self.rcv_nxt.wrapping_add(self.rcv_wnd)) < 0
                        && !self.refuses_out_of_order(h.sn)
                    {
                        self.ack_push(h.sn, h.ts);
                        if diff(h.sn, self.rcv_nxt) >= 0 {
                            repeat = self.parse_data(h.sn, h.frg, payload);
                        }
                    }
                    if regular && repeat {
                        self.stats.repeat_segs += 1;
                    }
                }
                Command::Wask => self.probe |= ASK_TELL,
                Command::Wins => {}
            }
            self.stats.in_segs += 1;
            rest = &body[len..];
        }

        let mut rtt_sample = None;
        if flag && regular {
            let rtt = diff(now, latest);
            if rtt >= 0 {
                self.update_ack(rtt);
                rtt_sample = Some(rtt as u32);
            }
        }
        if let Some(rate) = self.rate.as_deref_mut() {
            rate.on_ack_done(now, rtt_sample, self.unacked);
            // Room in flight opened up: new data may go (as the pacer allows).
            if rate.delivered() > delivered_before && !self.snd_queue.is_empty() {
                window_slides = true;
            }
        }

        let una_moved = diff(self.snd_una, old_una) > 0;
        self.cwnd_on_input(unacked_before - self.unacked, una_moved, rtt_sample);
        self.recovery_after_input(now);
        self.ack_deadline(now);

        // With `max_inflight`, ACKs beyond a hole free room for new segments without moving
        // `snd_una`: flush once enough room accumulated rather than waiting for the interval.
        if self.inflight_blocked && self.acked_since_flush >= INFLIGHT_BATCH {
            window_slides = true;
        }
        if window_slides {
            self.pending_full = true;
        } else if self.ack_nodelay && !self.acklist.is_empty() {
            self.pending_ack = true;
        }
        Ok(())
    }

    /// Drops every segment below `una` from the front of `snd_buf`; true if any was dropped.
    fn parse_una(&mut self, una: u32) -> bool {
        let mut dropped = false;
        while let Some(seg) = self.snd_buf.front() {
            if diff(una, seg.sn) > 0 {
                if let Some(seg) = self.snd_buf.pop_front() {
                    self.peer_proven = true;
                    if !seg.acked {
                        self.unacked -= 1;
                        if let Some(rate) = self.rate.as_deref_mut() {
                            rate.on_delivered(self.last_now, OVERHEAD + seg.data.len(), &seg.tx);
                        }
                    }
                    self.recycle(seg.data);
                }
                dropped = true;
            } else {
                break;
            }
        }
        dropped
    }

    fn shrink_buf(&mut self) {
        self.snd_una = match self.snd_buf.front() {
            Some(seg) => seg.sn,
            None => self.snd_nxt,
        };
    }

    /// Flags the segment `sn` as acked. Found by index ([`Kcp::in_flight_index`]): kcp-go's linear
    /// walk finds the same segment.
    fn parse_ack(&mut self, sn: u32) {
        if let Some(idx) = self.in_flight_index(sn)
            && let seg = &mut self.snd_buf[idx]
            && !seg.acked
        {
            seg.acked = true;
            self.peer_proven = true;
            self.acked_since_flush += 1;
            self.unacked -= 1;
            if let Some(rate) = self.rate.as_deref_mut() {
                rate.on_delivered(self.last_now, OVERHEAD + seg.data.len(), &seg.tx);
            }
            let data = mem::take(&mut seg.data);
            self.recycle(data);
        }
    }

    /// Where segment `sn` sits in `snd_buf`, if it is in flight. `snd_buf` holds consecutive sequence
    /// numbers starting at `snd_una` (only its front is ever removed), so the index is `sn - snd_una`.
    fn in_flight_index(&self, sn: u32) -> Option<usize> {
        if diff(sn, self.snd_una) < 0 || diff(sn, self.snd_nxt) >= 0 {
            return None;
        }
        let idx = sn.wrapping_sub(self.snd_una) as usize;
        self.snd_buf
            .get(idx)
            .is_some_and(|s| s.sn == sn)
            .then_some(idx)
    }

    /// Whether the segment `sn` is in flight and already selectively acknowledged.
    fn already_acked(&self, sn: u32) -> bool {
        self.in_flight_index(sn)
            .is_some_and(|idx| self.snd_buf[idx].acked)
    }

    /// Counts a retransmission of `sn` the peer did not need: its ACK echoes `ts`, the timestamp of an
    /// earlier transmission than the last (see [`Kcp::spurious_retrans_segs`]).
    fn note_spurious(&mut self, sn: u32, ts: u32) {
        if let Some(idx) = self.in_flight_index(sn)
            && let seg = &self.snd_buf[idx]
            && !seg.acked
            && seg.xmit > 1
            && diff(ts, seg.ts) < 0
        {
            self.spurious_retrans = self.spurious_retrans.wrapping_add(1);
        }
    }

    /// Counts the ACK of `sn` as a "skip" for every earlier segment sent no later than the acked
    /// one (docs/wire-format.md#kcp-input, #kcp-vs-ikcp).
    fn parse_fastack(&mut self, sn: u32, ts: u32) {
        if diff(sn, self.snd_una) < 0 || diff(sn, self.snd_nxt) >= 0 {
            return;
        }
        let end = (sn.wrapping_sub(self.snd_una) as usize).min(self.snd_buf.len());
        for seg in self.snd_buf.range_mut(..end) {
            if diff(seg.ts, ts) <= 0 {
                seg.fastack = seg.fastack.wrapping_add(1);
                self.hint_fastack = true;
            }
        }
    }

    /// Appends to the ACK list. kcp-go's list is unbounded; ours holds at most eight receive
    /// windows (at least 256 entries), so a peer repeating in-window PUSH segments between two
    /// flushes cannot grow it further: the oldest entries are dropped. Legitimate traffic never
    /// comes close (one window of new segments plus retransmissions per flush interval), the
    /// newest entry, which always goes out, carries the cumulative `una`, and a dropped ACK is
    /// regenerated by the peer's next retransmission.
    fn ack_push(&mut self, sn: u32, ts: u32) {
        let cap = (self.rcv_wnd as usize * ACKLIST_WINDOWS).max(ACKLIST_MIN);
        while self.acklist.len() >= cap {
            self.acklist.pop_front();
        }
        self.acklist.push_back((sn, ts));
    }
}
