//! Output (docs/wire-format.md#kcp-flush): `flush` writes ACKs, window probes, new segments and
//! retransmissions into MTU-sized datagrams.

use std::mem;

use super::{ASK_SEND, ASK_TELL, Kcp, SndSeg, diff};
use crate::segment::encode_raw;
use crate::{Command, OVERHEAD};

/// "No timer" for the retransmission-scan bound: far in the future, yet wrap-safe.
const NO_TIMER: i32 = i32::MAX / 2;
const PROBE_INIT: u32 = 7_000;
pub(super) const PROBE_LIMIT: u32 = 120_000;
/// `bundle` copies older segments only while at most this many are unacknowledged (a thin stream).
const BUNDLE_MAX_INFLIGHT: u32 = 16;

/// Accumulates segments into the scratch datagram, emitting it whenever the next piece would
/// push it past the MTU (kcp-go `makeSpace` / `flushBuffer`).
struct Writer<'a, F: FnMut(&mut [u8])> {
    buf: &'a mut Vec<u8>,
    pos: usize,
    reserved: usize,
    mtu: usize,
    out: &'a mut F,
}

impl<'a, F: FnMut(&mut [u8])> Writer<'a, F> {
    /// An empty datagram in `buf` (the engine's scratch buffer, at least `mtu` bytes).
    fn new(buf: &'a mut Vec<u8>, reserved: usize, mtu: usize, out: &'a mut F) -> Self {
        Writer {
            buf,
            pos: reserved,
            reserved,
            mtu,
            out,
        }
    }

    #[inline]
    fn make_space(&mut self, n: usize) {
        if self.pos + n > self.mtu {
            self.emit();
        }
        // Only segments queued before the MTU was lowered can still be too large; they go out
        // alone in a datagram of their own size.
        if self.pos + n > self.buf.len() {
            self.buf.resize(self.pos + n, 0);
        }
    }

    /// Whether `n` more bytes fit in the pending datagram (and it is not empty).
    #[inline]
    fn fits(&self, n: usize) -> bool {
        self.pos > self.reserved && self.pos + n <= self.mtu
    }

    /// Emits the pending datagram if it holds anything beyond the reserved front.
    #[inline]
    pub(super) fn emit(&mut self) {
        if self.pos > self.reserved {
            (self.out)(&mut self.buf[..self.pos]);
        }
        self.pos = self.reserved;
    }

    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn header(
        &mut self,
        conv: u32,
        cmd: u8,
        frg: u8,
        wnd: u16,
        ts: u32,
        sn: u32,
        una: u32,
        len: u32,
    ) {
        encode_raw(
            &mut self.buf[self.pos..],
            conv,
            cmd,
            frg,
            wnd,
            ts,
            sn,
            una,
            len,
        );
        self.pos += OVERHEAD;
    }

    #[inline]
    pub(super) fn data(&mut self, d: &[u8]) {
        self.buf[self.pos..self.pos + d.len()].copy_from_slice(d);
        self.pos += d.len();
    }

    /// A PUSH of `seg` (its `ts` as the send time) with its data; the caller made the space.
    fn push(&mut self, conv: u32, seg: &SndSeg, wnd: u16, una: u32) {
        let len = seg.data.len() as u32;
        self.header(
            conv,
            Command::Push as u8,
            seg.frg,
            wnd,
            seg.ts,
            seg.sn,
            una,
            len,
        );
        self.data(&seg.data);
    }
}

impl Kcp {
    /// kcp-go `flush(false)`: sends pending ACKs, window probes, new data the windows allow, and
    /// every retransmission that is due at `now`. Returns the delay in ms until the next flush is
    /// needed: `interval`, or less when a retransmission timer expires sooner.
    ///
    /// Each datagram handed to `out` is the engine's scratch buffer: `reserved` bytes of
    /// unspecified content, then segments; at most `mtu` bytes. Copy what you keep.
    ///
    /// Normally [`update`](Kcp::update) decides when to flush; calling this directly is like
    /// kcp-go's session flushing after a write.
    pub fn flush<F: FnMut(&mut [u8])>(&mut self, now: u32, out: &mut F) -> u32 {
        self.last_now = now;
        let d = self.flush_full(now, out);
        self.after_flush(now, d, false);
        d
    }

    /// kcp-go `flush(true)`: sends the pending ACKs only.
    pub fn flush_acks<F: FnMut(&mut [u8])>(&mut self, now: u32, out: &mut F) {
        self.last_now = now;
        self.flush_acks_inner(out);
        self.pending_ack = false;
        self.arm();
    }

    /// Writes the ACK list (A.7 step 1). Returns the template's `(sn, ts)`: those of the last ACK
    /// written, which WASK/WINS then carry (kcp-go reuses one template segment).
    fn write_acks<F: FnMut(&mut [u8])>(&mut self, w: &mut Writer<'_, F>, wnd: u16) -> (u32, u32) {
        let (mut tsn, mut tts) = (0, 0);
        let n = self.acklist.len();
        let rcv_nxt = self.rcv_nxt;
        // Beyond kcp-go (`ack_repeat`): the out-of-order segments of recent flushes are
        // acknowledged again, first, and only along with fresh ACKs; at most what fits in the
        // first datagram beside one fresh ACK.
        let cap = ((self.mtu - self.reserved) / OVERHEAD).saturating_sub(1);
        let mut reacks = if n > 0 { self.reacks.take() } else { None };
        if let Some(r) = reacks.as_deref_mut() {
            r.list.retain(|e| diff(e[0], rcv_nxt) >= 0);
            for e in r.list.iter_mut().take(cap) {
                w.make_space(OVERHEAD);
                w.header(
                    self.conv,
                    Command::Ack as u8,
                    0,
                    wnd,
                    e[1],
                    e[0],
                    rcv_nxt,
                    0,
                );
                self.stats.out_segs += 1;
                e[2] -= 1;
            }
            r.list.retain(|e| e[2] > 0);
        }
        for (i, &(sn, ts)) in self.acklist.iter().enumerate() {
            w.make_space(OVERHEAD);
            // Filter ACKs for segments una already covers, except the last (A.10 item 1).
            if diff(sn, rcv_nxt) >= 0 || i + 1 == n {
                tsn = sn;
                tts = ts;
                w.header(self.conv, Command::Ack as u8, 0, wnd, ts, sn, rcv_nxt, 0);
                self.stats.out_segs += 1;
                if let Some(r) = reacks.as_deref_mut()
                    && diff(sn, rcv_nxt) > 0
                {
                    r.list.push_back([sn, ts, r.n]);
                }
            }
        }
        if let Some(mut r) = reacks {
            while r.list.len() > cap {
                r.list.pop_front();
            }
            self.reacks = Some(r);
        }
        self.acklist.clear();
        self.ack_at = None;
        (tsn, tts)
    }

    /// The scratch datagram, at least `mtu` bytes (an idle engine releases it, see `arm`; the first flush
    /// after takes a spare one of this thread's, or allocates one, see `spare`).
    pub(super) fn take_scratch(&mut self) -> Vec<u8> {
        let mut buffer = mem::take(&mut self.buffer);
        if buffer.capacity() == 0
            && let Some(b) = super::spare::take_scratch(self.mtu, self.reserved)
        {
            buffer = b;
        }
        if buffer.len() < self.mtu {
            buffer.resize(self.mtu, 0);
        }
        buffer
    }

    pub(super) fn flush_acks_inner<F: FnMut(&mut [u8])>(&mut self, out: &mut F) {
        if !self.acklist.is_empty() {
            self.write_ack_datagrams(out, false);
        }
    }

    /// The pending ACKs, then a WINS if `wins`, in as few datagrams as they fit.
    fn write_ack_datagrams<F: FnMut(&mut [u8])>(&mut self, out: &mut F, wins: bool) {
        let wnd = self.wnd_unused();
        self.adv_wnd = wnd;
        let (conv, una) = (self.conv, self.rcv_nxt);
        let mut buffer = self.take_scratch();
        let mut w = Writer::new(&mut buffer, self.reserved, self.mtu, out);
        let (tsn, tts) = self.write_acks(&mut w, wnd);
        if wins {
            w.make_space(OVERHEAD);
            w.header(conv, Command::Wins as u8, 0, wnd, tts, tsn, una, 0);
            self.stats.out_segs += 1;
        }
        w.emit();
        self.buffer = buffer;
    }

    /// Beyond kcp-go (invisible on the wire: a WINS is kcp-go's own window update): whether the
    /// application has read enough since the peer last heard the receive window that telling it
    /// now is worth a datagram, namely when the window has opened by a quarter of `rcv_wnd` or
    /// more since the `wnd` of the last segment sent.
    ///
    /// Why: a sender whose window equals our receive window is held by the `wnd` it last heard.
    /// When our reader lags behind a burst, the ACKs of that burst advertise a small window; once
    /// the reader catches up nothing tells the sender until our next periodic flush (kcp-go
    /// announces a reopened window early only when the receive queue was completely full), and
    /// a sender stalled on the stale window sends no data that would draw an ACK. On loopback
    /// that capped a 1024/1024-window transfer near 0.3 GB/s; with the update, near the CPU's
    /// limit. [`flush_window`](Kcp::flush_window) sends it.
    pub fn window_update_due(&self) -> bool {
        self.started
            && u32::from(self.wnd_unused()) >= u32::from(self.adv_wnd) + (self.rcv_wnd / 4).max(1)
    }

    /// Sends the pending ACKs and a WINS carrying the current receive window and `una`, now, in
    /// one datagram (an ACK-only flush plus the window update; see
    /// [`window_update_due`](Kcp::window_update_due)).
    pub fn flush_window<F: FnMut(&mut [u8])>(&mut self, now: u32, out: &mut F) {
        self.last_now = now;
        self.write_ack_datagrams(out, true);
        self.probe &= !ASK_TELL;
        self.pending_ack = false;
        self.arm();
    }

    pub(super) fn flush_full<F: FnMut(&mut [u8])>(&mut self, now: u32, out: &mut F) -> u32 {
        let wnd = self.wnd_unused();
        let segs_before = self.stats.out_segs;
        let una = self.rcv_nxt;
        let conv = self.conv;
        let mut buffer = self.take_scratch();
        let mut w = Writer::new(&mut buffer, self.reserved, self.mtu, out);

        // 1. ACKs.
        let (tsn, tts) = self.write_acks(&mut w, wnd);

        // 3. Window-probe timer. Beyond kcp-go: also when every in-flight segment is acked but
        // `una` has not passed them (the peer's una update was lost and it has nothing more to
        // send). kcp-go keeps such segments, never resends them and never probes a non-zero
        // window, so it stalls for ever; the WASK's WINS reply carries the peer's una.
        let stale_una =
            self.snd_buf.front().is_some_and(|s| s.acked) && self.snd_buf.iter().all(|s| s.acked);
        if self.rmt_wnd == 0 || stale_una {
            if self.probe_wait == 0 {
                self.probe_wait = PROBE_INIT;
                self.ts_probe = now.wrapping_add(self.probe_wait);
            } else if diff(now, self.ts_probe) >= 0 {
                self.probe_wait = self.probe_wait.max(PROBE_INIT);
                self.probe_wait += self.probe_wait / 2;
                self.probe_wait = self.probe_wait.min(PROBE_LIMIT);
                self.ts_probe = now.wrapping_add(self.probe_wait);
                self.probe |= ASK_SEND;
            }
        } else {
            self.ts_probe = 0;
            self.probe_wait = 0;
        }

        // 4./5. Probe commands, from the template.
        if self.probe & ASK_SEND != 0 {
            w.make_space(OVERHEAD);
            w.header(conv, Command::Wask as u8, 0, wnd, tts, tsn, una, 0);
            self.stats.out_segs += 1;
        }
        if self.probe & ASK_TELL != 0 {
            w.make_space(OVERHEAD);
            w.header(conv, Command::Wins as u8, 0, wnd, tts, tsn, una, 0);
            self.stats.out_segs += 1;
        }
        self.probe = 0;

        // 6. Effective window.
        let cwnd = self.send_window();

        // 7. snd_queue -> snd_buf (never beyond `max_inflight` unacknowledged segments).
        let mut room: u32 = match self.max_inflight {
            Some(max) => {
                max.saturating_sub(self.snd_buf.iter().filter(|s| !s.acked).count() as u32)
            }
            None => u32::MAX,
        };
        self.acked_since_flush = 0;
        self.inflight_blocked = false;
        // The delivery-rate controller caps the segments in flight and paces new ones.
        let inflight_before = self.unacked;
        self.pace_at = None;
        if let Some(rate) = self.rate.as_deref() {
            room = room.min(rate.cwnd_segments().saturating_sub(self.unacked));
        }
        if let Some(cap) = self.tolerant_cap() {
            room = room.min(cap.saturating_sub(self.unacked));
        }
        let mut new_segs = 0u32;
        while diff(self.snd_nxt, self.snd_una.wrapping_add(cwnd)) < 0 {
            if room == 0 {
                self.inflight_blocked = !self.snd_queue.is_empty();
                break;
            }
            if let Some(rate) = self.rate.as_deref_mut() {
                let Some(seg) = self.snd_queue.front() else {
                    break;
                };
                if !rate.may_send(now) {
                    self.pace_at = Some(rate.next_send(now));
                    break;
                }
                rate.charge(now, OVERHEAD + seg.data.len());
            }
            room -= 1;
            let Some(mut seg) = self.snd_queue.pop_front() else {
                break;
            };
            seg.sn = self.snd_nxt;
            self.snd_buf.push_back(seg);
            self.unacked += 1;
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            new_segs += 1;
        }
        let app_limited = self.snd_queue.is_empty()
            && self
                .rate
                .as_deref()
                .is_some_and(|r| self.unacked < r.cwnd_segments());

        // 8./9. (Re)transmissions.
        let resent = if self.fastresend > 0 {
            self.fastresend
        } else {
            u32::MAX
        };
        let mut minrto = self.interval as i32;
        let (mut change, mut lost, mut fast, mut early) = (0u64, 0u64, 0u64, 0u64);
        let rx_rto = self.rx_rto;
        let backoff = if self.nodelay { rx_rto / 2 } else { rx_rto };
        // kcp-go visits every segment in flight on every flush. When no segment has a fastack
        // and the earliest retransmission timer is at least `interval` away, no old segment can
        // be resent nor lower `minrto`, so only the segments that just moved in are visited:
        // the same bytes and the same return value for a fraction of the work on big windows.
        let first_new = self.snd_buf.len() - new_segs as usize;
        // RACK and TLP (beyond kcp-go, off by default): the loss-time check, and the probe.
        let rack = self.rack_check();
        let rack_on = self.rack();
        let probe = if new_segs == 0 {
            self.tlp_due(now)
        } else {
            None
        };
        let skip_old = self.scan_skip_allowed
            && rack.is_none()
            && probe.is_none()
            && !self.hint_fastack
            && self
                .hint_resendts
                .is_some_and(|t| diff(t, now) >= self.interval as i32);
        let start = if skip_old { first_new } else { 0 };
        self.hint_exact = start == 0;
        let mut min_d = NO_TIMER;
        let mut any_fastack = false;
        for (i, seg) in self.snd_buf.range_mut(start..).enumerate() {
            if seg.acked {
                continue;
            }
            let needsend = if seg.xmit == 0 {
                seg.rto = rx_rto;
                seg.resendts = now.wrapping_add(seg.rto);
                true
            } else if seg.fastack >= resent {
                seg.fastack = 0;
                seg.rto = rx_rto;
                seg.resendts = now.wrapping_add(seg.rto);
                change += 1;
                fast += 1;
                true
            } else if seg.fastack > 0 && new_segs == 0 && !rack_on {
                seg.fastack = 0;
                seg.rto = rx_rto;
                seg.resendts = now.wrapping_add(seg.rto);
                change += 1;
                early += 1;
                true
            } else if rack
                .and_then(|c| c.deadline(seg))
                .is_some_and(|d| diff(now, d) >= 0)
            {
                // RACK: sent before a delivered segment, and overdue by more than reordering.
                seg.fastack = 0;
                seg.rto = rx_rto;
                seg.resendts = now.wrapping_add(seg.rto);
                change += 1;
                fast += 1;
                true
            } else if probe == Some(start + i) {
                // Tail loss probe: not a congestion signal.
                seg.rto = rx_rto;
                seg.resendts = now.wrapping_add(seg.rto);
                early += 1;
                true
            } else if diff(now, seg.resendts) >= 0 {
                seg.rto = seg.rto.wrapping_add(backoff);
                seg.fastack = 0;
                seg.resendts = now.wrapping_add(seg.rto);
                lost += 1;
                true
            } else {
                false
            };
            if needsend {
                if let Some(rate) = self.rate.as_deref_mut() {
                    if seg.xmit > 0 {
                        rate.charge(now, OVERHEAD + seg.data.len());
                    }
                    seg.tx = rate.on_transmit(now, inflight_before, app_limited, seg.xmit > 0);
                }
                seg.xmit = seg.xmit.saturating_add(1);
                seg.ts = now;
                w.make_space(OVERHEAD + seg.data.len());
                w.push(conv, seg, wnd, una);
                self.stats.out_segs += 1;
                if seg.xmit >= self.dead_link {
                    self.dead = true;
                }
            }
            let d = diff(seg.resendts, now);
            if d > 0 && d < minrto {
                minrto = d;
            }
            min_d = min_d.min(d);
            any_fastack |= seg.fastack > 0;
        }
        let new_hint = now.wrapping_add(min_d as u32);
        if start > 0 {
            // Old segments are unchanged: the bound only tightens with the new ones.
            self.hint_resendts = self
                .hint_resendts
                .map(|t| if diff(new_hint, t) < 0 { new_hint } else { t });
        } else {
            self.hint_resendts = Some(new_hint);
            self.hint_fastack = any_fastack;
        }

        // Beyond kcp-go (`bundle`): while the stream is thin, copies of the older unacknowledged
        // segments ride in the room left in the last datagram of a flush that sent new data.
        if self.bundle && new_segs > 0 && inflight_before <= BUNDLE_MAX_INFLIGHT {
            for seg in self.snd_buf.range_mut(..first_new) {
                if seg.acked || seg.xmit == 0 || seg.ts == now {
                    continue;
                }
                if !w.fits(OVERHEAD + seg.data.len()) {
                    continue;
                }
                seg.ts = now;
                w.push(conv, seg, wnd, una);
                self.stats.out_segs += 1;
            }
        }

        // 10. Remaining bytes.
        w.emit();
        self.buffer = buffer;
        if self.stats.out_segs != segs_before {
            self.adv_wnd = wnd;
        }
        self.stats.lost_segs += lost;
        self.stats.fast_retrans_segs += fast;
        self.stats.early_retrans_segs += early;
        self.stats.retrans_segs += lost + fast + early;

        // 11. Congestion control.
        self.cwnd_after_flush(cwnd, change, lost, resent);
        self.rec.at = self.recovery_deadline();
        minrto as u32
    }
}
