//! The KCP state machine (docs/wire-format.md#kcp-state), sans-IO.
//!
//! This file holds the engine's state ([`Kcp`]), its constructors and read-only accessors. The
//! behaviour lives in one module per concern, each an `impl Kcp` block that can be read alone:
//!
//! * [`knobs`]: kcp-go's setters and the options beyond kcp-go.
//! * [`queues`]: `send`/`recv`/`peek_size` and the queues (`snd_queue`, `rcv_buf`, `rcv_queue`).
//! * [`input`]: datagrams from the peer, ACK/`una` processing, the ACK list.
//! * [`output`]: `flush`: ACKs, probes, new segments, retransmissions into datagrams.
//! * [`timers`]: RTT/RTO estimation and the scheduling of `update` (`next_deadline`).
//! * [`congestion`]: the congestion controller: kcp-go's window, its loss-tolerant variant, none,
//!   or [`rate`], the delivery-rate model and pacer.
//! * [`recovery`]: loss recovery beyond kcp-go (RACK-style loss detection, tail loss probe).

use std::collections::VecDeque;

use crate::config::{Congestion, KcpConfig};
use crate::{KcpError, KcpStats, OVERHEAD};
use congestion::THRESH_INIT;
use timers::{RTO_DEF, RTO_MIN};

mod congestion;
pub(crate) mod echo;
mod input;
pub use input::Freshness;
mod knobs;
mod output;
mod queues;
mod rate;
mod recovery;
mod spare;
mod timers;

use rate::{DeliveryRate, TxState};
use recovery::Recovery;

const ASK_SEND: u32 = 1;
const ASK_TELL: u32 = 2;

/// `itimediff`: wrapping difference read as signed (docs/wire-format.md#kcp-segment).
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
    /// Delivery-rate sample state of the last transmission (`Congestion::DeliveryRate` only).
    tx: TxState,
}

/// The state of `ack_repeat` (see [`KcpConfig::ack_repeat`]).
#[derive(Debug, Default)]
struct Reacks {
    /// Later ACK flushes that repeat an out-of-order segment's ACK, at least 1.
    n: u32,
    /// Out-of-order segments to acknowledge again: `[sn, ts, repeats left]`.
    list: VecDeque<[u32; 3]>,
}

/// A received segment (out of order in `rcv_buf`, in order in `rcv_queue`).
#[derive(Debug)]
struct RcvSeg {
    sn: u32,
    frg: u8,
    data: Vec<u8>,
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
    /// Segments in `snd_buf` not yet acknowledged (kept for every controller).
    unacked: u32,
    /// The delivery-rate controller, when `Congestion::DeliveryRate` is chosen.
    rate: Option<Box<DeliveryRate>>,
    /// New data waits for the pacer: the next paced flush is due then.
    pace_at: Option<u32>,
    /// RACK and TLP (beyond kcp-go, off by default).
    rec: Recovery,
    /// The loss-tolerant window's state (`Congestion::LossTolerant` only).
    tol: congestion::Tolerant,
    /// Longest time an ACK waits for a flush (beyond kcp-go; `None`: until the next interval).
    ack_delay: Option<u32>,
    /// Pending ACKs must go out by then (`ack_delay`).
    ack_at: Option<u32>,
    /// `ack_repeat` (beyond kcp-go), boxed so that engines without it stay small; `None`: 0,
    /// kcp-go (every ACK once, every ACK counted).
    reacks: Option<Box<Reacks>>,
    /// Redundant copies of older segments in the room of a thin stream's datagrams (`bundle`).
    bundle: bool,

    snd_queue: VecDeque<SndSeg>,
    snd_buf: VecDeque<SndSeg>,
    rcv_buf: VecDeque<RcvSeg>,
    rcv_queue: VecDeque<RcvSeg>,
    /// Bytes of `rcv_queue[0]` already handed out (stream mode reads segments partially).
    rcv_head_off: usize,
    acklist: VecDeque<(u32, u32)>,

    /// Scratch datagram, `mtu` bytes (more only for segments made before an MTU decrease); empty while
    /// idle and before the first flush (see `take_scratch`).
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
    /// The receive window the peer last heard: the `wnd` of the last segment sent (see
    /// [`Kcp::window_update_due`]).
    adv_wnd: u16,
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

    // --- address validation (not in kcp-go; see echo.rs) ---
    /// The `ts` of the echo request awaiting its answer.
    echo_ts: Option<u32>,
    /// The peer acknowledged something this engine sent (data, or an echo request).
    peer_proven: bool,
    /// See [`Kcp::spurious_retrans_segs`]. Outside [`KcpStats`] (all u64) so that it fits the engine's
    /// padding: 10,000 idle sessions' memory is counted to the byte.
    spurious_retrans: u32,
    /// Cap on out-of-order segments held in `rcv_buf` (`None`: the receive window).
    ooo_limit: Option<u32>,
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
            unacked: 0,
            rate: None,
            pace_at: None,
            rec: Recovery::default(),
            tol: congestion::Tolerant::default(),
            ack_delay: cfg.ack_delay,
            ack_at: None,
            reacks: None,
            bundle: cfg.bundle,
            snd_queue: VecDeque::new(),
            snd_buf: VecDeque::new(),
            rcv_buf: VecDeque::new(),
            rcv_queue: VecDeque::new(),
            rcv_head_off: 0,
            acklist: VecDeque::new(),
            buffer: Vec::new(),
            pool: Vec::new(),
            dead: false,
            stats: KcpStats::default(),
            hint_resendts: None,
            hint_fastack: false,
            scan_skip_allowed: true,
            hint_exact: false,
            started: false,
            pending_full: false,
            adv_wnd: 0,
            pending_ack: false,
            timer_at: None,
            anchor: 0,
            last_now: 0,
            skip: None,
            skip_stale: false,
            tick_skip_allowed: true,
            echo_ts: None,
            peer_proven: false,
            spurious_retrans: 0,
            ooo_limit: None,
        };
        k.set_nodelay(cfg.nodelay, cfg.interval, cfg.resend, cfg.nc);
        if cfg.congestion != Congestion::KcpGo {
            k.set_congestion(cfg.congestion);
        }
        if let Some(m) = cfg.min_rto {
            k.rx_minrto = m;
        }
        k.set_ack_repeat(cfg.ack_repeat.unwrap_or(match cfg.congestion {
            Congestion::DeliveryRate | Congestion::LossTolerant => 2,
            _ => 0,
        }));
        k.rec.rack = cfg.rack;
        k.rec.tlp = cfg.tlp;
        k
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.conv
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

    /// Retransmissions the peer did not need (rkcp only; not one of kcp-go's SNMP counters), wrapping at
    /// `u32::MAX`: the segment's ACK echoed the timestamp of an earlier transmission than the last, so that
    /// one had arrived and the retransmission answered a delay, not a loss (the test of Eifel, RFC 3522).
    /// At most one per ACK; a segment that a cumulative `una` covers before its own ACK arrives is not
    /// examined.
    pub fn spurious_retrans_segs(&self) -> u32 {
        self.spurious_retrans
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
