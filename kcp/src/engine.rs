//! The KCP state machine (PROTOCOL.md A.3–A.9), sans-IO.

use std::collections::VecDeque;
use std::mem;

use crate::config::{KcpConfig, MAX_MTU, MAX_RCV_WND, MIN_MTU};
use crate::segment::{RawHeader, encode_raw};
use crate::{Command, KcpError, KcpStats, OVERHEAD};

const RTO_NDL: u32 = 30;
const RTO_MIN: u32 = 100;
const RTO_DEF: u32 = 200;
const RTO_MAX: u32 = 60_000;
const ASK_SEND: u32 = 1;
const ASK_TELL: u32 = 2;
const THRESH_INIT: u32 = 2;
const THRESH_MIN: u32 = 2;
const PROBE_INIT: u32 = 7_000;
const PROBE_LIMIT: u32 = 120_000;
/// Largest number of fragments of one message: `frg` is a byte (PROTOCOL.md A.4).
const MAX_FRAGMENTS: usize = 255;
/// Payload buffers kept for reuse. Enough to absorb a burst without going back to the
/// allocator; dropped entirely whenever the engine becomes idle so idle sessions hold nothing.
const POOL_MAX: usize = 256;
/// "No timer" for the retransmission-scan bound: far in the future, yet wrap-safe.
const NO_TIMER: i32 = i32::MAX / 2;
/// Queue capacity (entries) an idle engine may keep; larger allocations are released.
const IDLE_QUEUE_CAP: usize = 64;
/// The ACK list holds at most this many receive windows' worth of entries.
const ACKLIST_WINDOWS: usize = 8;
/// ... and never fewer than this many entries.
const ACKLIST_MIN: usize = 256;
/// With `max_inflight`, ACKs of this many segments beyond a hole trigger a flush before the interval.
const INFLIGHT_BATCH: u32 = 16;

/// `itimediff`: wrapping difference read as signed (PROTOCOL.md A.1).
#[inline]
fn diff(later: u32, earlier: u32) -> i32 {
    later.wrapping_sub(earlier) as i32
}

/// A segment on the send side (queue or in flight).
#[derive(Debug)]
struct SndSeg {
    sn: u32,
    ts: u32,
    frg: u8,
    rto: u32,
    xmit: u32,
    resendts: u32,
    fastack: u32,
    /// Selectively acked but not yet passed by `una`: kept in place, skipped by flush (A.5).
    acked: bool,
    data: Vec<u8>,
}

/// A received segment (out of order in `rcv_buf`, in order in `rcv_queue`).
#[derive(Debug)]
struct RcvSeg {
    sn: u32,
    frg: u8,
    data: Vec<u8>,
}

/// Accumulates segments into the scratch datagram, emitting it whenever the next piece would
/// push it past the MTU (kcp-go `makeSpace` / `flushBuffer`).
struct Writer<'a, F: FnMut(&mut [u8])> {
    buf: &'a mut Vec<u8>,
    pos: usize,
    reserved: usize,
    mtu: usize,
    out: &'a mut F,
}

impl<F: FnMut(&mut [u8])> Writer<'_, F> {
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

    /// Emits the pending datagram if it holds anything beyond the reserved front.
    #[inline]
    fn emit(&mut self) {
        if self.pos > self.reserved {
            (self.out)(&mut self.buf[..self.pos]);
        }
        self.pos = self.reserved;
    }

    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn header(
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
    fn data(&mut self, d: &[u8]) {
        self.buf[self.pos..self.pos + d.len()].copy_from_slice(d);
        self.pos += d.len();
    }
}

/// One KCP conversation: the ARQ state machine of kcp-go 5.6.1, without IO or clock.
///
/// Feed it with [`send`](Kcp::send) (application data) and [`input`](Kcp::input) (datagrams from
/// the peer), take data out with [`recv`](Kcp::recv), and call [`update`](Kcp::update) whenever
/// [`next_deadline`](Kcp::next_deadline) has passed; `update` hands every datagram to send to
/// its callback. See the crate docs for the full driving loop.
#[derive(Debug)]
pub struct Kcp {
    conv: u32,
    mtu: usize,
    mss: usize,
    reserved: usize,

    snd_una: u32,
    snd_nxt: u32,
    rcv_nxt: u32,

    ssthresh: u32,
    rx_rttvar: i32,
    rx_srtt: i32,
    rx_rto: u32,
    rx_minrto: u32,

    snd_wnd: u32,
    rcv_wnd: u32,
    rmt_wnd: u32,
    cwnd: u32,
    probe: u32,

    interval: u32,
    nodelay: bool,
    ts_probe: u32,
    probe_wait: u32,
    dead_link: u32,
    incr: u32,

    fastresend: u32,
    nocwnd: bool,
    stream: bool,
    ack_nodelay: bool,
    write_delay: bool,
    /// Cap on sent, not yet acknowledged segments (beyond kcp-go; see `set_max_inflight`).
    max_inflight: Option<u32>,
    /// The last flush left new data queued because of `max_inflight`.
    inflight_blocked: bool,
    /// Segments newly acknowledged since the last full flush (counted while `inflight_blocked`).
    acked_since_flush: u32,

    snd_queue: VecDeque<SndSeg>,
    snd_buf: VecDeque<SndSeg>,
    rcv_buf: VecDeque<RcvSeg>,
    rcv_queue: VecDeque<RcvSeg>,
    /// Bytes of `rcv_queue[0]` already handed out (stream mode reads segments partially).
    rcv_head_off: usize,
    acklist: VecDeque<(u32, u32)>,

    /// Scratch datagram, `mtu` bytes (more only for segments made before an MTU decrease).
    buffer: Vec<u8>,
    /// Spare payload buffers.
    pool: Vec<Vec<u8>>,

    dead: bool,
    stats: KcpStats,

    /// Lower bound of `resendts` over the sent, unacked segments (exact after a full scan;
    /// ACKs and una only raise the true minimum). `None`: unknown, scan everything.
    hint_resendts: Option<u32>,
    /// Some segment in flight may have `fastack > 0`.
    hint_fastack: bool,
    /// The flush may skip old segments using the two hints above (tests turn it off to check
    /// that the output is byte-identical either way).
    scan_skip_allowed: bool,
    /// The last flush visited every segment in flight: the two hints above are exact.
    hint_exact: bool,

    // --- scheduling (not in kcp-go, whose session owns a timer; see `update`) ---
    /// `update` has run at least once (kcp-go's session flushes when it is created).
    started: bool,
    /// `input` slid the window or `send` queued data: a full flush is due now.
    pending_full: bool,
    /// `input` queued ACKs with `ack_nodelay` on: an ACK-only flush is due now.
    pending_ack: bool,
    /// The next periodic flush, `None` while idle.
    timer_at: Option<u32>,
    /// Phase of the periodic timer: the last time it was scheduled for. While idle the timer is
    /// conceptually still ticking at `anchor + k * interval`, like kcp-go's, so re-arming it keeps
    /// ACK delays distributed as in kcp-go.
    anchor: u32,
    /// The latest `now` seen, for calls that take none (`send`, `recv`).
    last_now: u32,
    /// Beyond kcp-go: the periodic flushes before the earliest retransmission could send nothing,
    /// so `timer_at` jumps to that retransmission, `(deadline, interval of the skipped ticks)`.
    /// Any change of state ends the skip (back to the tick kcp-go's timer would fire next).
    skip: Option<(u32, u32)>,
    /// A call that knows no time (`recv`, `send` with write delay, a knob) ended the skip: the
    /// next call with a `now` puts the timer back (`next_deadline` asks for it at once).
    skip_stale: bool,
    /// Tick skipping is allowed (tests turn it off to check that the output is identical).
    tick_skip_allowed: bool,
}

impl Kcp {
    /// An engine with kcp-go's `NewKCP` defaults ([`KcpConfig::default`]).
    pub fn new(conv: u32) -> Kcp {
        Kcp::build(conv, &KcpConfig::default())
    }

    /// An engine with the given configuration.
    ///
    /// # Errors
    /// Whatever [`KcpConfig::validate`] reports.
    pub fn with_config(conv: u32, cfg: &KcpConfig) -> Result<Kcp, KcpError> {
        cfg.validate()?;
        Ok(Kcp::build(conv, cfg))
    }

    /// kcptun `normal` preset ([`KcpConfig::normal`]).
    pub fn normal(conv: u32) -> Kcp {
        Kcp::build(conv, &KcpConfig::normal())
    }

    /// kcptun `fast` preset ([`KcpConfig::fast`]).
    pub fn fast(conv: u32) -> Kcp {
        Kcp::build(conv, &KcpConfig::fast())
    }

    /// kcptun `fast2` preset ([`KcpConfig::fast2`]).
    pub fn fast2(conv: u32) -> Kcp {
        Kcp::build(conv, &KcpConfig::fast2())
    }

    /// kcptun `fast3` preset ([`KcpConfig::fast3`]).
    pub fn fast3(conv: u32) -> Kcp {
        Kcp::build(conv, &KcpConfig::fast3())
    }

    fn build(conv: u32, cfg: &KcpConfig) -> Kcp {
        let mut k = Kcp {
            conv,
            mtu: cfg.mtu,
            mss: cfg.mtu - OVERHEAD - cfg.reserved,
            reserved: cfg.reserved,
            snd_una: 0,
            snd_nxt: 0,
            rcv_nxt: 0,
            ssthresh: THRESH_INIT,
            rx_rttvar: 0,
            rx_srtt: 0,
            rx_rto: RTO_DEF,
            rx_minrto: RTO_MIN,
            snd_wnd: cfg.snd_wnd,
            rcv_wnd: cfg.rcv_wnd,
            // kcp-go initialises rmt_wnd with IKCP_WND_RCV, not with our rcv_wnd.
            rmt_wnd: 32,
            cwnd: 0,
            probe: 0,
            interval: 100,
            nodelay: false,
            ts_probe: 0,
            probe_wait: 0,
            dead_link: cfg.dead_link,
            incr: 0,
            fastresend: 0,
            nocwnd: false,
            stream: cfg.stream,
            ack_nodelay: cfg.ack_nodelay,
            write_delay: cfg.write_delay,
            max_inflight: cfg.max_inflight,
            inflight_blocked: false,
            acked_since_flush: 0,
            snd_queue: VecDeque::new(),
            snd_buf: VecDeque::new(),
            rcv_buf: VecDeque::new(),
            rcv_queue: VecDeque::new(),
            rcv_head_off: 0,
            acklist: VecDeque::new(),
            buffer: vec![0; cfg.mtu],
            pool: Vec::new(),
            dead: false,
            stats: KcpStats::default(),
            hint_resendts: None,
            hint_fastack: false,
            scan_skip_allowed: true,
            hint_exact: false,
            started: false,
            pending_full: false,
            pending_ack: false,
            timer_at: None,
            anchor: 0,
            last_now: 0,
            skip: None,
            skip_stale: false,
            tick_skip_allowed: true,
        };
        k.set_nodelay(cfg.nodelay, cfg.interval, cfg.resend, cfg.nc);
        if let Some(m) = cfg.min_rto {
            k.rx_minrto = m;
        }
        k
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.conv
    }

    // ------------------------------------------------------------------ knobs (A.9)

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
        self.buffer = vec![0; mtu];
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

    // ------------------------------------------------------------------ user data

    /// Queues application data (PROTOCOL.md A.4). Returns the number of bytes accepted, which
    /// is all of `data`. An empty `data` is a no-op returning `Ok(0)` (kcp-go returns -1).
    ///
    /// Message mode keeps `data` as one message of up to 255 fragments; stream mode first tops
    /// up the last queued segment and has no size limit. The send queue is bounded only by what
    /// the application queues: check [`wait_snd`](Kcp::wait_snd) against the windows, as the
    /// kcp-go session does before writing.
    ///
    /// A full flush becomes due at once (kcp-go's `Write` flushes right away), unless
    /// [`set_write_delay`](Kcp::set_write_delay) is on.
    ///
    /// # Errors
    /// [`KcpError::MessageTooLarge`] in message mode if more than 255 fragments would be needed.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, KcpError> {
        if data.is_empty() {
            return Ok(0);
        }
        let total = data.len();
        let mss = self.mss;
        let mut rest = data;
        if self.stream {
            if let Some(tail) = self.snd_queue.back_mut() {
                if tail.data.len() < mss {
                    let extend = (mss - tail.data.len()).min(rest.len());
                    tail.data.extend_from_slice(&rest[..extend]);
                    rest = &rest[extend..];
                }
            }
            if rest.is_empty() {
                self.queued();
                return Ok(total);
            }
        }
        let count = rest.len().div_ceil(mss).max(1);
        if !self.stream && count > MAX_FRAGMENTS {
            return Err(KcpError::MessageTooLarge {
                len: total,
                fragments: count,
            });
        }
        for (i, chunk) in rest.chunks(mss).enumerate() {
            let mut buf = self.pool.pop().unwrap_or_default();
            buf.clear();
            buf.reserve(mss);
            buf.extend_from_slice(chunk);
            let frg = if self.stream {
                0
            } else {
                (count - i - 1) as u8
            };
            self.snd_queue.push_back(SndSeg {
                sn: 0,
                ts: 0,
                frg,
                rto: 0,
                xmit: 0,
                resendts: 0,
                fastack: 0,
                acked: false,
                data: buf,
            });
        }
        self.queued();
        Ok(total)
    }

    /// New data is queued: flush now like kcp-go's `Write`, or at the next periodic flush with
    /// write-delay on.
    fn queued(&mut self) {
        if self.write_delay {
            self.arm();
        } else {
            self.pending_full = true;
        }
    }

    /// Size of the next message (message mode) or of the unread rest of the next segment
    /// (stream mode); `None` if nothing is ready (kcp-go `PeekSize` returning -1).
    pub fn peek_size(&self) -> Option<usize> {
        let head = self.rcv_queue.front()?;
        if self.stream {
            return Some(head.data.len() - self.rcv_head_off);
        }
        if head.frg == 0 {
            return Some(head.data.len());
        }
        if self.rcv_queue.len() < usize::from(head.frg) + 1 {
            return None;
        }
        let mut len = 0;
        for seg in &self.rcv_queue {
            len += seg.data.len();
            if seg.frg == 0 {
                break;
            }
        }
        Some(len)
    }

    /// Takes received data out (PROTOCOL.md A.8). `Ok(0)` means nothing is ready (or, in message
    /// mode, that a peer sent an empty message: check [`peek_size`](Kcp::peek_size) to tell).
    ///
    /// Message mode returns exactly one whole message. Stream mode fills `buf` from as many
    /// queued segments as fit, consuming the last one partially if needed (kcp-go hands out one
    /// segment per call; the bytes are the same).
    ///
    /// If the receive queue was full before this call and is not any more, a WINS goes out on the
    /// next flush (kcp-go's `fast_recover`), so a peer stalled on a zero window resumes at once.
    ///
    /// # Errors
    /// [`KcpError::BufferTooSmall`] in message mode when the next message does not fit; nothing
    /// is consumed.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, KcpError> {
        if self.rcv_queue.is_empty() {
            return Ok(0);
        }
        let fast_recover = self.rcv_queue.len() >= self.rcv_wnd as usize;
        let n = if self.stream {
            let mut n = 0;
            while let Some(seg) = self.rcv_queue.front() {
                let avail = &seg.data[self.rcv_head_off..];
                let k = avail.len().min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&avail[..k]);
                n += k;
                self.rcv_head_off += k;
                if self.rcv_head_off < seg.data.len() {
                    break;
                }
                self.rcv_head_off = 0;
                if let Some(seg) = self.rcv_queue.pop_front() {
                    self.recycle(seg.data);
                }
                if n == buf.len() {
                    break;
                }
            }
            n
        } else {
            let Some(size) = self.peek_size() else {
                return Ok(0);
            };
            if size > buf.len() {
                return Err(KcpError::BufferTooSmall { needed: size });
            }
            let mut n = 0;
            while let Some(seg) = self.rcv_queue.pop_front() {
                buf[n..n + seg.data.len()].copy_from_slice(&seg.data);
                n += seg.data.len();
                let last = seg.frg == 0;
                self.recycle(seg.data);
                if last {
                    break;
                }
            }
            n
        };
        self.move_ready();
        if fast_recover && self.rcv_queue.len() < self.rcv_wnd as usize {
            self.probe |= ASK_TELL;
        }
        self.arm();
        Ok(n)
    }

    // ------------------------------------------------------------------ network input (A.5)

    /// Processes one datagram from the peer (kcp-go `Input`). `regular` is false for packets
    /// rebuilt by FEC: their window and timing are stale, so they update neither `rmt_wnd` nor
    /// the RTT.
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
    pub fn input(&mut self, now: u32, data: &[u8], regular: bool) -> Result<(), KcpError> {
        self.last_now = now;
        let r = self.input_inner(now, data, regular);
        // ACKs may have moved the earliest retransmission: back to the tick chain.
        self.unskip();
        self.arm();
        r
    }

    fn input_inner(&mut self, now: u32, data: &[u8], regular: bool) -> Result<(), KcpError> {
        let old_una = self.snd_una;
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
            if self.parse_una(h.una) {
                window_slides = true;
            }
            self.shrink_buf();
            match cmd {
                Command::Ack => {
                    self.parse_ack(h.sn);
                    self.parse_fastack(h.sn, h.ts);
                    flag = true;
                    latest = h.ts;
                }
                Command::Push => {
                    let mut repeat = true;
                    if diff(h.sn, self.rcv_nxt.wrapping_add(self.rcv_wnd)) < 0 {
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

        if flag && regular {
            let rtt = diff(now, latest);
            if rtt >= 0 {
                self.update_ack(rtt);
            }
        }

        if !self.nocwnd && diff(self.snd_una, old_una) > 0 && self.cwnd < self.rmt_wnd {
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

    /// RTT sample → srtt/rttvar/rto (PROTOCOL.md A.6), all in signed 32-bit arithmetic.
    fn update_ack(&mut self, rtt: i32) {
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
    }

    /// Drops every segment below `una` from the front of `snd_buf`; true if any was dropped.
    fn parse_una(&mut self, una: u32) -> bool {
        let mut dropped = false;
        while let Some(seg) = self.snd_buf.front() {
            if diff(una, seg.sn) > 0 {
                if let Some(seg) = self.snd_buf.pop_front() {
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

    /// Flags the segment `sn` as acked. `snd_buf` holds consecutive sequence numbers starting at
    /// `snd_una` (only its front is ever removed), so the segment's index is `sn - snd_una`:
    /// kcp-go's linear walk finds the same segment.
    fn parse_ack(&mut self, sn: u32) {
        if diff(sn, self.snd_una) < 0 || diff(sn, self.snd_nxt) >= 0 {
            return;
        }
        let idx = sn.wrapping_sub(self.snd_una) as usize;
        if let Some(seg) = self.snd_buf.get_mut(idx) {
            if seg.sn == sn && !seg.acked {
                seg.acked = true;
                self.acked_since_flush += 1;
                let data = mem::take(&mut seg.data);
                self.recycle(data);
            }
        }
    }

    /// Counts the ACK of `sn` as a "skip" for every earlier segment sent no later than the acked
    /// one (PROTOCOL.md A.5, A.10 item 3).
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

    /// Inserts an in-window PUSH into `rcv_buf` (sorted, no duplicates), then moves the ready
    /// prefix to `rcv_queue`. Returns true for a repeat.
    fn parse_data(&mut self, sn: u32, frg: u8, payload: &[u8]) -> bool {
        if diff(sn, self.rcv_nxt.wrapping_add(self.rcv_wnd)) >= 0 || diff(sn, self.rcv_nxt) < 0 {
            return true;
        }
        let mut insert_idx = 0;
        let mut repeat = false;
        for (i, seg) in self.rcv_buf.iter().enumerate().rev() {
            if seg.sn == sn {
                repeat = true;
                break;
            }
            if diff(sn, seg.sn) > 0 {
                insert_idx = i + 1;
                break;
            }
        }
        if !repeat {
            let mut buf = self.pool.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(payload);
            self.rcv_buf
                .insert(insert_idx, RcvSeg { sn, frg, data: buf });
        }
        self.move_ready();
        repeat
    }

    /// Moves in-order segments from `rcv_buf` to `rcv_queue` while the queue has room.
    fn move_ready(&mut self) {
        while let Some(seg) = self.rcv_buf.front() {
            if seg.sn == self.rcv_nxt && self.rcv_queue.len() < self.rcv_wnd as usize {
                self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                if let Some(seg) = self.rcv_buf.pop_front() {
                    self.rcv_queue.push_back(seg);
                }
            } else {
                break;
            }
        }
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX && buf.capacity() > 0 {
            self.pool.push(buf);
        }
    }

    fn wnd_unused(&self) -> u16 {
        let q = self.rcv_queue.len();
        let w = self.rcv_wnd as usize;
        if q < w {
            (w - q).min(usize::from(u16::MAX)) as u16
        } else {
            0
        }
    }

    // ------------------------------------------------------------------ output (A.7)

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
        for (i, &(sn, ts)) in self.acklist.iter().enumerate() {
            w.make_space(OVERHEAD);
            // Filter ACKs for segments una already covers, except the last (A.10 item 1).
            if diff(sn, self.rcv_nxt) >= 0 || i + 1 == n {
                tsn = sn;
                tts = ts;
                w.header(
                    self.conv,
                    Command::Ack as u8,
                    0,
                    wnd,
                    ts,
                    sn,
                    self.rcv_nxt,
                    0,
                );
                self.stats.out_segs += 1;
            }
        }
        self.acklist.clear();
        (tsn, tts)
    }

    fn flush_acks_inner<F: FnMut(&mut [u8])>(&mut self, out: &mut F) {
        if self.acklist.is_empty() {
            return;
        }
        let wnd = self.wnd_unused();
        let mut buffer = mem::take(&mut self.buffer);
        let mut w = Writer {
            buf: &mut buffer,
            pos: self.reserved,
            reserved: self.reserved,
            mtu: self.mtu,
            out,
        };
        self.write_acks(&mut w, wnd);
        w.emit();
        self.buffer = buffer;
    }

    fn flush_full<F: FnMut(&mut [u8])>(&mut self, now: u32, out: &mut F) -> u32 {
        let wnd = self.wnd_unused();
        let una = self.rcv_nxt;
        let conv = self.conv;
        let mut buffer = mem::take(&mut self.buffer);
        let mut w = Writer {
            buf: &mut buffer,
            pos: self.reserved,
            reserved: self.reserved,
            mtu: self.mtu,
            out,
        };

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
        let mut cwnd = self.snd_wnd.min(self.rmt_wnd);
        if !self.nocwnd {
            cwnd = cwnd.min(self.cwnd);
        }

        // 7. snd_queue -> snd_buf (never beyond `max_inflight` unacknowledged segments).
        let mut room = match self.max_inflight {
            Some(max) => {
                max.saturating_sub(self.snd_buf.iter().filter(|s| !s.acked).count() as u32)
            }
            None => u32::MAX,
        };
        self.acked_since_flush = 0;
        self.inflight_blocked = false;
        let mut new_segs = 0u32;
        while diff(self.snd_nxt, self.snd_una.wrapping_add(cwnd)) < 0 {
            if room == 0 {
                self.inflight_blocked = !self.snd_queue.is_empty();
                break;
            }
            room -= 1;
            let Some(mut seg) = self.snd_queue.pop_front() else {
                break;
            };
            seg.sn = self.snd_nxt;
            self.snd_buf.push_back(seg);
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            new_segs += 1;
        }

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
        let skip_old = self.scan_skip_allowed
            && !self.hint_fastack
            && self
                .hint_resendts
                .is_some_and(|t| diff(t, now) >= self.interval as i32);
        let start = if skip_old { first_new } else { 0 };
        self.hint_exact = start == 0;
        let mut min_d = NO_TIMER;
        let mut any_fastack = false;
        for seg in self.snd_buf.range_mut(start..) {
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
            } else if seg.fastack > 0 && new_segs == 0 {
                seg.fastack = 0;
                seg.rto = rx_rto;
                seg.resendts = now.wrapping_add(seg.rto);
                change += 1;
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
                seg.xmit = seg.xmit.saturating_add(1);
                seg.ts = now;
                w.make_space(OVERHEAD + seg.data.len());
                w.header(
                    conv,
                    Command::Push as u8,
                    seg.frg,
                    wnd,
                    now,
                    seg.sn,
                    una,
                    seg.data.len() as u32,
                );
                w.data(&seg.data);
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

        // 10. Remaining bytes.
        w.emit();
        self.buffer = buffer;
        self.stats.lost_segs += lost;
        self.stats.fast_retrans_segs += fast;
        self.stats.early_retrans_segs += early;
        self.stats.retrans_segs += lost + fast + early;

        // 11. Congestion control, u32 wrapping like kcp-go.
        if !self.nocwnd {
            let mss = self.mss as u32;
            if change > 0 {
                let inflight = self.snd_nxt.wrapping_sub(self.snd_una);
                self.ssthresh = (inflight / 2).max(THRESH_MIN);
                self.cwnd = self.ssthresh.wrapping_add(resent);
                self.incr = self.cwnd.wrapping_mul(mss);
            }
            if lost > 0 {
                self.ssthresh = (cwnd / 2).max(THRESH_MIN);
                self.cwnd = 1;
                self.incr = mss;
            }
            if self.cwnd < 1 {
                self.cwnd = 1;
                self.incr = mss;
            }
        }
        minrto as u32
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
        if !self.started || self.pending_full || timer_due {
            let d = self.flush_full(now, out);
            self.after_flush(now, d, timer_due);
        } else if self.pending_ack {
            self.flush_acks_inner(out);
            self.pending_ack = false;
            self.arm();
        }
    }

    fn after_flush(&mut self, now: u32, d: u32, timer: bool) {
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
    fn skip_idle_ticks(&mut self) {
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
    fn unskip(&mut self) {
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
    fn arm(&mut self) {
        if self.skip.is_some() && !self.quiet() {
            // Called without a fresh `now` (`recv`, a write-delayed `send`): resolved by the next
            // `update`, which `next_deadline` asks for at once.
            self.skip_stale = true;
        }
        if self.is_idle() {
            self.unskip(); // keeps the phase right (only fresh-`now` callers get here skipping)
            self.timer_at = None;
            // An idle engine keeps no spare buffers and no large queue allocations: 10,000 idle
            // sessions cost no payload memory.
            self.pool = Vec::new();
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
    /// pending ACKs with ack-nodelay. Compare wrap-aware: due when `(now - t) as i32 >= 0`.
    ///
    /// A new engine reports `Some(0)` until its first `update`.
    pub fn next_deadline(&self) -> Option<u32> {
        if !self.started || self.pending_full || self.pending_ack || self.skip_stale {
            return Some(self.last_now);
        }
        self.timer_at
    }

    // ------------------------------------------------------------------ state

    /// Largest datagram, reserved bytes included.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Largest payload of one segment: `mtu - 24 - reserved`.
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// Bytes reserved in front of every output datagram.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Flush interval in ms.
    pub fn interval(&self) -> u32 {
        self.interval
    }

    /// Send window in segments.
    pub fn snd_wnd(&self) -> u32 {
        self.snd_wnd
    }

    /// Receive window in segments.
    pub fn rcv_wnd(&self) -> u32 {
        self.rcv_wnd
    }

    /// The peer's last announced free window (32 until the first regular packet arrives).
    pub fn rmt_wnd(&self) -> u32 {
        self.rmt_wnd
    }

    /// Congestion window in segments (meaningless with `nc`).
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// Slow-start threshold in segments.
    pub fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    /// Segments queued or in flight: `len(snd_buf) + len(snd_queue)` (kcp-go `WaitSnd`).
    pub fn wait_snd(&self) -> usize {
        self.snd_buf.len() + self.snd_queue.len()
    }

    /// Current retransmission timeout in ms.
    pub fn rto(&self) -> u32 {
        self.rx_rto
    }

    /// Smoothed RTT in ms (0 before the first sample).
    pub fn srtt(&self) -> i32 {
        self.rx_srtt
    }

    /// RTT variance estimate in ms.
    pub fn srttvar(&self) -> i32 {
        self.rx_rttvar
    }

    /// True once some segment has been transmitted `dead_link` times (kcp-go sets `state` and
    /// never reads it; the session layer uses this to close a dead peer). Sticky.
    pub fn is_dead_link(&self) -> bool {
        self.dead
    }

    /// Counters of this engine.
    pub fn stats(&self) -> &KcpStats {
        &self.stats
    }

    /// Oldest unacknowledged sequence number.
    pub fn snd_una(&self) -> u32 {
        self.snd_una
    }

    /// Next sequence number to assign.
    pub fn snd_nxt(&self) -> u32 {
        self.snd_nxt
    }

    /// Next sequence number expected from the peer.
    pub fn rcv_nxt(&self) -> u32 {
        self.rcv_nxt
    }

    /// Segments ready for [`recv`](Kcp::recv) (the receive queue).
    pub fn rcv_queue_len(&self) -> usize {
        self.rcv_queue.len()
    }
}

#[cfg(test)]
mod tests;
