//! Engine configuration with kcp-go's defaults and kcptun's presets.

use crate::{KcpError, OVERHEAD};

/// Smallest MTU accepted (kcp-go `SetMtu` rejects `mtu < 50`).
pub const MIN_MTU: usize = 50;
/// Largest MTU accepted by the engine. The engine itself has no reason to stop at kcp-go's
/// 1500-byte session limit (docs/wire-format.md#kcp-knobs); the session layer enforces that for Go peers.
pub const MAX_MTU: usize = 65535;
/// Largest receive window: the window travels in the 16-bit `wnd` header field.
pub const MAX_RCV_WND: u32 = 65535;

/// The congestion controller of an engine ([`KcpConfig::congestion`]). None of them changes the
/// wire format: they only decide when segments go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Congestion {
    /// kcp-go's congestion window (the default): slow start and byte-counting congestion
    /// avoidance on `una` advances, halved on fast retransmissions, collapsed to one segment on a
    /// retransmission timeout; no pacing. With [`KcpConfig::nc`] set it is [`Congestion::None`],
    /// exactly as kcp-go's `nc` flag. Random loss keeps this window small but never stuck: on
    /// 100 Mbit/s, 40 ms and 1 % loss it averages about ten segments, about 0.3 MB/s
    /// (`kcp/tests/kcpgo_window.rs`; kcp-go does no better); [`Congestion::LossTolerant`] is
    /// the repaired variant.
    #[default]
    KcpGo,
    /// No congestion control (kcp-go's `nc`): the send window is `min(snd_wnd, rmt_wnd)`, no
    /// pacing.
    None,
    /// A delivery-rate (BBR-style) controller with pacing, beyond kcp-go and invisible on the
    /// wire. Every ACK yields a delivery-rate sample (bytes delivered between a segment's
    /// transmission and its ACK over the elapsed time); the bottleneck bandwidth is the windowed
    /// maximum of the samples over ten round trips, the path RTT the windowed minimum over ten
    /// seconds. The segments in flight are capped at a gain times the bandwidth-delay product and
    /// new segments are paced at a gain times the bottleneck bandwidth, in bursts of about
    /// two milliseconds of data (at least two segments; drivers wake up to a millisecond late), so [`Kcp::next_deadline`](crate::Kcp::next_deadline)
    /// also reports the next paced send. Losses are repaired but do not shrink the rate: random
    /// loss is not taken for congestion, and the bounded in-flight data keeps the bottleneck
    /// queue short. Phases: startup (gain 2.89 until the bandwidth stops growing by 25 % for three
    /// rounds), drain, probe-bandwidth (pacing gain cycling 1.25, 0.75, 1 x 6 per RTT), and
    /// probe-RTT (four segments for 200 ms when the minimum RTT is ten seconds old).
    ///
    /// The window still counts from `snd_una` as KCP's does, so use windows well above the
    /// path's bandwidth-delay product (e.g. 1024 to 4096 segments) and let this controller keep
    /// the data in flight near it. Ignores `nc`.
    DeliveryRate,
    /// kcp-go's congestion window repaired for random loss, beyond kcp-go and invisible on the
    /// wire. kcp-go grows its window by one segment per input datagram that moves `una` (not
    /// per segment acknowledged), starts congestion avoidance at two segments and halves the
    /// window at every loss; since a KCP receiver acknowledges a whole interval's segments in
    /// one datagram, the window grows by a few segments per round trip at best, and on a path
    /// with 1 % random loss it settles near ten segments (about 0.2 MB/s on a 40 ms path,
    /// whatever its capacity). This variant counts growth per segment acknowledged (slow start
    /// doubles the window every round trip, congestion avoidance adds one segment per round
    /// trip), starts with ten segments and no slow-start threshold, and takes a loss for
    /// congestion only when the RTT shows a queue (smoothed RTT above the minimum by more than a
    /// quarter of it and at least `interval`): then the window shrinks to 70 % (50 % on an RTO),
    /// at most once per round trip; slow start also ends when the RTT shows a queue. Random loss
    /// on an uncongested path leaves it alone. The window caps the segments in flight (not the
    /// distance from `snd_una`) and never exceeds `min(snd_wnd, rmt_wnd)`. The RTO is kept at
    /// least twice the minimum RTT plus the interval (the queue it lets build would otherwise
    /// fire spurious RTOs with `nodelay`'s 30 ms floor). Ignores `nc`.
    LossTolerant,
}

/// Configuration of one [`Kcp`](crate::Kcp) engine.
///
/// `Default` is exactly kcp-go's `NewKCP` (docs/wire-format.md#kcp-state); the named presets are the
/// kcptun modes of docs/wire-format.md#kcptun-modes, applied on top of the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcpConfig {
    /// Lower minimum RTO (30 ms instead of 100) and gentler RTO backoff (`rto += rto_base/2`
    /// instead of `+= rto_base`). Default `false`: kcp-go's conservative behaviour.
    pub nodelay: bool,
    /// Flush interval in ms, `10..=5000` (kcp-go clamps to that range). Default 100. Also the
    /// largest ACK delay and the floor of the RTO's variance term.
    pub interval: u32,
    /// Fast-retransmit threshold: a segment is resent once this many later-sent segments were
    /// acked. 0 disables fast retransmit (early retransmit stays on). Default 0.
    pub resend: u32,
    /// `nc`: disable the congestion window, so the send window is `min(snd_wnd, rmt_wnd)`.
    /// Default `false`; every kcptun preset turns it on.
    pub nc: bool,
    /// Send window in segments. Default 32.
    pub snd_wnd: u32,
    /// Receive window in segments, at most 65535. Default 32 (kcp-go; the C ikcp uses 128).
    pub rcv_wnd: u32,
    /// Largest datagram the engine emits, reserved bytes included. Default 1400.
    pub mtu: usize,
    /// Stream mode: no message boundaries, the tail segment is filled up to the MSS. Default
    /// `false` (message mode); kcptun uses stream mode.
    pub stream: bool,
    /// Bytes left free at the front of every output datagram for the session's FEC/crypto
    /// headers (kcp-go `ReserveBytes`). Default 0.
    pub reserved: usize,
    /// Send ACKs right after each input instead of at the next interval flush. Default `false`.
    pub ack_nodelay: bool,
    /// Leave data written by `send` for the next periodic flush instead of flushing at once
    /// (kcp-go session `SetWriteDelay`). Default `false`.
    pub write_delay: bool,
    /// Transmissions of one segment after which the link counts as dead
    /// ([`Kcp::is_dead_link`](crate::Kcp::is_dead_link)). Default 20 (`IKCP_DEADLINK`).
    pub dead_link: u32,
    /// Overrides the minimum RTO that `nodelay` selects (100 or 30 ms). `None` by default. The
    /// original KCP's latency test uses 10 ms in its fast mode.
    pub min_rto: Option<u32>,
    /// Caps the segments sent but not yet acknowledged (see
    /// [`Kcp::set_max_inflight`](crate::Kcp::set_max_inflight)). `None` by default (kcp-go).
    pub max_inflight: Option<u32>,
    /// The congestion controller. Default [`Congestion::KcpGo`] (with `nc` set: none), which
    /// keeps kcp-go's behaviour byte for byte.
    pub congestion: Congestion,
    /// RACK-style time-based loss detection (beyond kcp-go, invisible on the wire): a segment
    /// still unacknowledged `rtt + max(srtt/4, 2 ms)` after its transmission, while a segment
    /// sent after it was acknowledged, is resent at once (also while new data goes out, and
    /// without waiting for `resend` duplicate ACKs). Default `false` (kcp-go).
    pub rack: bool,
    /// Tail loss probe (beyond kcp-go, invisible on the wire): when nothing was acknowledged
    /// for `max(2 x srtt, 10 ms)` after the last transmission, the newest unacknowledged segment
    /// is sent once more, so a lost last segment costs about a round trip instead of an RTO.
    /// Not a congestion signal. Default `false` (kcp-go).
    pub tlp: bool,
    /// Longest time, ms, an ACK waits before it is flushed on its own (an ACK-only flush, kcp-go
    /// `flush(true)`), instead of waiting for the next periodic flush (up to `interval`).
    /// `None` by default (kcp-go). A sender whose window is full waits for these ACKs, so the
    /// ACK delay caps a window-limited transfer at `window / (rtt + delay)`.
    pub ack_delay: Option<u32>,
    /// Beyond kcp-go, invisible on the wire (an ACK repeated is an ordinary ACK; kcp-go peers
    /// take it as a duplicate): how many later ACK flushes acknowledge an out-of-order segment
    /// again, as long as it is still out of order (`una` does not cover it yet). KCP acknowledges
    /// each segment once; when that ACK is lost while an earlier segment is missing, the sender
    /// sees later segments acknowledged and resends a segment the receiver already has (with 10 %
    /// loss each way about half of all retransmissions were of that kind). Repeating the ACK in
    /// the next `n` flushes that send ACKs anyway lowers the chance that every ACK of a segment is
    /// lost from `p` to `p^(n+1)`. Repeats ride along with fresh ACKs only (never a datagram of
    /// their own), go first in the datagram (the last ACK, whose `ts` kcp-go takes as its RTT
    /// sample, stays a fresh one), and at most one datagram's worth per flush. The sender side
    /// of this engine then ignores ACKs of segments already acknowledged for fast retransmit and
    /// RTT (kcp-go counts every ACK). Cost: up to `n` x 24 bytes on the ACK path per
    /// out-of-order segment.
    ///
    /// `None` (the default): 2 with [`Congestion::DeliveryRate`] and [`Congestion::LossTolerant`],
    /// 0 (kcp-go) otherwise. `Some(n)`: `n`, whatever the controller.
    pub ack_repeat: Option<u32>,
    /// Redundant bundling for thin streams (beyond kcp-go, invisible on the wire: the copies are
    /// ordinary PUSH segments, which any KCP receiver acknowledges and drops as duplicates).
    /// When a flush sends new data while at most 16 segments are unacknowledged, copies of the
    /// older unacknowledged segments fill the room left in its last datagram (never an extra
    /// datagram). A sparse sender (a message every few ms, a few segments per round trip) then
    /// repairs a lost datagram with the next one instead of waiting a round trip for loss
    /// detection, which is what dominates its tail latency on lossy paths. Cost: bigger
    /// datagrams (each small message travels again in every later datagram until acknowledged,
    /// about `rtt / period` times) and as many more ACKs; bulk transfers fill their datagrams and
    /// are not affected. Default `false` (kcp-go).
    pub bundle: bool,
}

impl Default for KcpConfig {
    fn default() -> Self {
        KcpConfig {
            nodelay: false,
            interval: 100,
            resend: 0,
            nc: false,
            snd_wnd: 32,
            rcv_wnd: 32,
            mtu: 1400,
            stream: false,
            reserved: 0,
            ack_nodelay: false,
            write_delay: false,
            dead_link: 20,
            min_rto: None,
            max_inflight: None,
            congestion: Congestion::KcpGo,
            rack: false,
            tlp: false,
            ack_delay: None,
            ack_repeat: None,
            bundle: false,
        }
    }
}

impl KcpConfig {
    fn with_nodelay(nodelay: bool, interval: u32, resend: u32, nc: bool) -> Self {
        KcpConfig {
            nodelay,
            interval,
            resend,
            nc,
            ..KcpConfig::default()
        }
    }

    /// kcptun `normal`: nodelay 0, interval 40, resend 2, nc 1.
    pub fn normal() -> Self {
        Self::with_nodelay(false, 40, 2, true)
    }

    /// kcptun `fast` (its default mode): nodelay 0, interval 30, resend 2, nc 1.
    pub fn fast() -> Self {
        Self::with_nodelay(false, 30, 2, true)
    }

    /// kcptun `fast2`: nodelay 1, interval 20, resend 2, nc 1.
    pub fn fast2() -> Self {
        Self::with_nodelay(true, 20, 2, true)
    }

    /// kcptun `fast3`: nodelay 1, interval 10, resend 2, nc 1.
    pub fn fast3() -> Self {
        Self::with_nodelay(true, 10, 2, true)
    }

    /// Checks every field; [`Kcp::with_config`](crate::Kcp::with_config) calls it.
    ///
    /// # Errors
    /// The first offending field: [`KcpError::InvalidMtu`], [`KcpError::InvalidReserved`],
    /// [`KcpError::InvalidWindow`], [`KcpError::InvalidInterval`] or [`KcpError::InvalidDeadLink`].
    pub fn validate(&self) -> Result<(), KcpError> {
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(KcpError::InvalidMtu { mtu: self.mtu });
        }
        if self.reserved >= self.mtu - OVERHEAD {
            return Err(KcpError::InvalidReserved {
                reserved: self.reserved,
                mtu: self.mtu,
            });
        }
        if self.snd_wnd == 0 || self.rcv_wnd == 0 || self.rcv_wnd > MAX_RCV_WND {
            return Err(KcpError::InvalidWindow {
                snd: self.snd_wnd,
                rcv: self.rcv_wnd,
            });
        }
        if !(10..=5000).contains(&self.interval) {
            return Err(KcpError::InvalidInterval(self.interval));
        }
        if self.dead_link == 0 {
            return Err(KcpError::InvalidDeadLink);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_kcptun() {
        let t = |c: KcpConfig| (c.nodelay, c.interval, c.resend, c.nc);
        assert_eq!(t(KcpConfig::default()), (false, 100, 0, false));
        assert_eq!(t(KcpConfig::normal()), (false, 40, 2, true));
        assert_eq!(t(KcpConfig::fast()), (false, 30, 2, true));
        assert_eq!(t(KcpConfig::fast2()), (true, 20, 2, true));
        assert_eq!(t(KcpConfig::fast3()), (true, 10, 2, true));
        for c in [
            KcpConfig::default(),
            KcpConfig::normal(),
            KcpConfig::fast(),
            KcpConfig::fast2(),
            KcpConfig::fast3(),
        ] {
            c.validate().unwrap();
        }
    }

    #[test]
    fn validate_rejects() {
        let bad = |f: fn(&mut KcpConfig)| {
            let mut c = KcpConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.mtu = 49), KcpError::InvalidMtu { mtu: 49 });
        assert_eq!(bad(|c| c.mtu = 65536), KcpError::InvalidMtu { mtu: 65536 });
        assert!(matches!(
            bad(|c| c.reserved = 1376),
            KcpError::InvalidReserved { .. }
        ));
        assert!(matches!(
            bad(|c| c.snd_wnd = 0),
            KcpError::InvalidWindow { .. }
        ));
        assert!(matches!(
            bad(|c| c.rcv_wnd = 65536),
            KcpError::InvalidWindow { .. }
        ));
        assert_eq!(bad(|c| c.interval = 9), KcpError::InvalidInterval(9));
        assert_eq!(bad(|c| c.interval = 5001), KcpError::InvalidInterval(5001));
        assert_eq!(bad(|c| c.dead_link = 0), KcpError::InvalidDeadLink);
        let ok = KcpConfig {
            reserved: 1375,
            ..KcpConfig::default()
        };
        ok.validate().unwrap();
    }
}
