//! The delivery-rate congestion controller ([`Congestion::DeliveryRate`](crate::Congestion)):
//! a BBR-style model of the path (bottleneck bandwidth and minimum RTT, both from ACKs), the
//! cap on data in flight it derives, and the pacer.
//!
//! The engine calls it at four points, all without IO: [`DeliveryRate::on_transmit`] for every
//! segment it writes (new or retransmitted), [`DeliveryRate::on_delivered`] for every segment an
//! ACK or `una` newly covers, [`DeliveryRate::on_ack_done`] once per input datagram (one rate
//! sample, one model update), and the pacer ([`DeliveryRate::may_send`],
//! [`DeliveryRate::next_send`]) while moving new segments into flight. Times are the engine's
//! wrapping milliseconds, sizes bytes of KCP segments (header included), rates bytes per ms.
//!
//! The model follows BBR v1 (Cardwell et al., and Linux `tcp_bbr.c`/`tcp_rate.c`):
//!
//! * Each transmitted segment remembers how much had been delivered when it left and when the
//!   delivery count last moved. When it is acknowledged, the data delivered since divided by
//!   the longer of the send and ACK intervals is a delivery-rate sample; samples over an
//!   interval shorter than the minimum RTT are dropped (ACK compression), samples taken while
//!   the application had nothing to send only count when they raise the estimate.
//! * `btlbw` is the maximum sample over the last 10 round trips, `min_rtt` the minimum RTT over
//!   10 s (probe-RTT refreshes it by draining the pipe to four segments for 200 ms).
//! * In flight: at most `2 x btlbw x min_rtt` (also in startup, as BBR v2: the queue this
//!   flow builds stays below one bandwidth-delay product), never below four segments. Pacing:
//!   `pacing_gain x btlbw / (1 - loss)`, where `loss` is the smoothed fraction of transmissions
//!   that were retransmissions (at most 0.3 compensated). The delivery rate counts what arrives:
//!   on a randomly lossy path it is the link rate times `1 - loss`, and sending at it would leave
//!   the link that much idle. Retransmissions are never held back by the pacer but are charged
//!   to it, so new data makes room for them.
//! * Loss does not enter the model: KCP repairs it, and the rate samples of a randomly lossy
//!   path still measure its bandwidth. Congestion shows up as a bandwidth that stops growing
//!   and an RTT that grows, which the bounded in-flight data turns into a short queue.

use std::collections::VecDeque;

/// Startup gain, 2/ln 2: doubles the delivery rate every round.
const HIGH_GAIN: f64 = 2.885;
/// Probe-bandwidth pacing gains, one phase per min RTT.
const CYCLE: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// In-flight cap in probe-bandwidth, in bandwidth-delay products.
const CWND_GAIN: f64 = 2.0;
/// Rounds of the bandwidth max filter.
const BW_ROUNDS: u64 = 10;
/// Lifetime of a min-RTT sample before probe-RTT, ms.
const MIN_RTT_WINDOW: u32 = 10_000;
/// Time spent at the probe-RTT floor, ms.
const PROBE_RTT_TIME: u32 = 200;
/// Smallest in-flight cap, segments.
const MIN_CWND_SEGS: u64 = 4;
/// In-flight cap before the first bandwidth sample, segments.
const INIT_CWND_SEGS: u64 = 16;
/// A round whose smallest RTT exceeds the minimum by more than a quarter of it (at least this
/// many ms) saw a standing queue.
const QUEUE_TARGET_MIN: u32 = 2;
/// Pacing gain of the cruising phases while a standing queue is seen.
const DRAIN_GAIN: f64 = 0.9;
/// Largest loss rate the pacing rate compensates for.
const MAX_LOSS_COMPENSATION: f64 = 0.3;
/// Startup ends after this many rounds without 25 % bandwidth growth.
const FULL_BW_ROUNDS: u32 = 3;

#[inline]
fn diff(later: u32, earlier: u32) -> i32 {
    later.wrapping_sub(earlier) as i32
}

/// What a transmitted segment remembers for its delivery-rate sample.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TxState {
    /// Bytes delivered when the segment was sent.
    delivered: u64,
    /// When `delivered` last changed, as of the send.
    delivered_time: u32,
    /// Send time of the segment whose ACK last moved `delivered` (start of the send interval).
    first_sent: u32,
    /// When this segment was sent.
    sent: u32,
    /// Sent while the application left the pipe partly empty.
    app_limited: bool,
}

/// The rate sample being gathered over one input datagram.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// `TxState` of the most recently sent segment delivered.
    tx: TxState,
    /// Bytes newly delivered by this datagram.
    acked: u64,
}

/// Phases of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// BBR-style controller state (see the module docs).
#[derive(Debug)]
pub(super) struct DeliveryRate {
    /// Bytes of a full segment, header included.
    seg_bytes: u64,

    // Delivery accounting (tcp_rate.c).
    delivered: u64,
    delivered_time: u32,
    first_sent: u32,
    /// Non-zero: samples are app-limited until `delivered` passes this.
    app_limited_until: u64,
    sample: Option<Sample>,

    // The model.
    /// `(round, bytes/ms)`, decreasing values: the max filter's candidates.
    bw_filter: VecDeque<(u64, f64)>,
    min_rtt: Option<u32>,
    min_rtt_stamp: u32,
    round: u64,
    next_round_delivered: u64,
    mode: Mode,
    full_bw: f64,
    full_bw_count: u32,
    filled_pipe: bool,
    cycle_idx: usize,
    cycle_stamp: u32,
    probe_rtt_done: Option<u32>,
    probe_rtt_round_done: bool,
    prior_cwnd: u64,
    pacing_gain: f64,
    cwnd_gain: f64,
    /// In-flight cap, bytes.
    cwnd: u64,

    /// Smallest RTT sample of the current round.
    round_min_rtt: Option<u32>,
    /// The last round's smallest RTT sample stood above the minimum RTT by more than the queue
    /// target: a standing queue, which cruising at gain 1 would keep.
    standing_queue: bool,
    /// A cruising phase is draining a standing queue (pacing without loss compensation).
    draining_queue: bool,
    /// Transmissions and retransmissions in the current round, and the smoothed fraction of
    /// transmissions that were retransmissions (the path's loss rate, roughly).
    tx_round: u64,
    retx_round: u64,
    loss: f64,

    // The pacer: a byte budget refilled at the pacing rate, capped at one burst.
    budget: f64,
    budget_at: u32,
}

impl DeliveryRate {
    /// A controller for segments of at most `seg_bytes` (mss + header); `seed` picks the
    /// starting probe-bandwidth phase (flows that start together then probe at different times).
    pub(super) fn new(seg_bytes: usize, now: u32, seed: u32) -> DeliveryRate {
        let seg_bytes = seg_bytes as u64;
        DeliveryRate {
            seg_bytes,
            delivered: 0,
            delivered_time: now,
            first_sent: now,
            app_limited_until: 0,
            sample: None,
            bw_filter: VecDeque::new(),
            min_rtt: None,
            min_rtt_stamp: now,
            round: 0,
            next_round_delivered: 0,
            mode: Mode::Startup,
            full_bw: 0.0,
            full_bw_count: 0,
            filled_pipe: false,
            cycle_idx: 2 + (seed as usize % 6),
            cycle_stamp: now,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            prior_cwnd: 0,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: CWND_GAIN,
            cwnd: INIT_CWND_SEGS * seg_bytes,
            round_min_rtt: None,
            standing_queue: false,
            draining_queue: false,
            tx_round: 0,
            retx_round: 0,
            loss: 0.0,
            budget: 2.0 * seg_bytes as f64,
            budget_at: now,
        }
    }

    /// The bottleneck bandwidth estimate, bytes/ms (0 before the first sample).
    pub(super) fn btlbw(&self) -> f64 {
        self.bw_filter.front().map_or(0.0, |&(_, bw)| bw)
    }

    /// The minimum RTT seen in the current window, ms.
    pub(super) fn min_rtt(&self) -> Option<u32> {
        self.min_rtt
    }

    /// Bytes delivered so far.
    pub(super) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The pacing rate, bytes/ms. Before the first bandwidth sample: the initial window per
    /// minimum RTT (per ms without one) times the startup gain.
    pub(super) fn pacing_rate(&self) -> f64 {
        let bw = self.btlbw();
        if bw > 0.0 {
            let keep = if self.draining_queue {
                1.0
            } else {
                1.0 - self.loss.min(MAX_LOSS_COMPENSATION)
            };
            return (self.pacing_gain * bw / keep).max(1.0);
        }
        let rtt = f64::from(self.min_rtt.unwrap_or(1).max(1));
        HIGH_GAIN * (INIT_CWND_SEGS * self.seg_bytes) as f64 / rtt
    }

    /// Cap on segments in flight.
    pub(super) fn cwnd_segments(&self) -> u32 {
        let segs = self.cwnd.div_ceil(self.seg_bytes).max(MIN_CWND_SEGS);
        segs.min(u64::from(u32::MAX)) as u32
    }

    fn bdp(&self, gain: f64) -> u64 {
        let (bw, rtt) = (self.btlbw(), self.min_rtt);
        match rtt {
            Some(rtt) if bw > 0.0 => (gain * bw * f64::from(rtt.max(1))) as u64,
            _ => INIT_CWND_SEGS * self.seg_bytes,
        }
    }

    // ------------------------------------------------------------------ pacer

    /// Largest budget: about two milliseconds of data at the pacing rate, at least two segments.
    /// Drivers keep time in whole milliseconds and their timers (tokio's wheel) round up to the
    /// next one, so a paced send due in 1 ms is often run 2 ms later: a one-millisecond cap would
    /// throw that second millisecond's budget away and pace below the rate asked for.
    fn burst(&self) -> f64 {
        (2.0 * self.pacing_rate()).max(2.0 * self.seg_bytes as f64)
    }

    fn refill(&mut self, now: u32) {
        let dt = diff(now, self.budget_at);
        if dt > 0 {
            self.budget = (self.budget + self.pacing_rate() * f64::from(dt)).min(self.burst());
            self.budget_at = now;
        } else if dt < 0 {
            self.budget_at = now;
        }
    }

    /// True when the pacer lets a new segment go out at `now`.
    pub(super) fn may_send(&mut self, now: u32) -> bool {
        self.refill(now);
        self.budget > 0.0
    }

    /// When the pacer next lets a segment go out (at least 1 ms after `now`).
    pub(super) fn next_send(&self, now: u32) -> u32 {
        let missing = (-self.budget).max(0.0) + 1.0;
        let ms = (missing / self.pacing_rate()).ceil().clamp(1.0, 1000.0) as u32;
        now.wrapping_add(ms)
    }

    // ------------------------------------------------------------------ delivery accounting

    /// Takes `bytes` from the pacing budget (a new segment admitted after [`Self::may_send`], or
    /// a retransmission, which is never held back but uses the same bandwidth).
    pub(super) fn charge(&mut self, now: u32, bytes: usize) {
        self.refill(now);
        self.budget -= bytes as f64;
    }

    /// A segment leaves at `now` (first transmission or retransmission); `inflight` segments
    /// were in flight before this flush, `app_limited`: the send queue is empty and the pipe not
    /// full. Returns the segment's rate-sample state.
    pub(super) fn on_transmit(
        &mut self,
        now: u32,
        inflight: u32,
        app_limited: bool,
        retransmit: bool,
    ) -> TxState {
        self.tx_round += 1;
        if retransmit {
            self.retx_round += 1;
        }
        if inflight == 0 {
            self.first_sent = now;
            self.delivered_time = now;
        }
        if app_limited {
            self.app_limited_until = (self.delivered + u64::from(inflight) * self.seg_bytes).max(1);
        }
        TxState {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent: self.first_sent,
            sent: now,
            app_limited: self.app_limited_until != 0,
        }
    }

    /// A segment of `bytes` sent with `tx` is newly acknowledged (selectively or by `una`) at `now`.
    pub(super) fn on_delivered(&mut self, now: u32, bytes: usize, tx: &TxState) {
        self.delivered += bytes as u64;
        self.delivered_time = now;
        let newer = self
            .sample
            .is_none_or(|s| tx.delivered > s.tx.delivered || diff(tx.sent, s.tx.sent) > 0);
        if newer {
            self.first_sent = tx.sent;
        }
        match &mut self.sample {
            Some(s) => {
                s.acked += bytes as u64;
                if newer {
                    s.tx = *tx;
                }
            }
            None => {
                self.sample = Some(Sample {
                    tx: *tx,
                    acked: bytes as u64,
                })
            }
        }
    }

    /// End of an input datagram at `now`: `rtt` is its RTT sample (if any), `inflight` the
    /// unacknowledged segments. Turns what was delivered into one rate sample and updates the
    /// model.
    pub(super) fn on_ack_done(&mut self, now: u32, rtt: Option<u32>, inflight: u32) {
        let expired =
            self.min_rtt.is_some() && diff(now, self.min_rtt_stamp) > MIN_RTT_WINDOW as i32;
        if let Some(rtt) = rtt {
            self.round_min_rtt = Some(self.round_min_rtt.map_or(rtt, |r| r.min(rtt)));
            if self.min_rtt.is_none_or(|m| rtt <= m) || expired {
                self.min_rtt = Some(rtt.max(1));
                self.min_rtt_stamp = now;
            }
        }
        let Some(s) = self.sample.take() else {
            self.update_probe_rtt(now, inflight, expired);
            return;
        };
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }

        // Round trips: a round ends when a segment sent after the previous round's end is acked.
        let round_start = s.tx.delivered >= self.next_round_delivered;
        if round_start {
            self.next_round_delivered = self.delivered;
            self.round += 1;
            if let (Some(r), Some(m)) = (self.round_min_rtt.take(), self.min_rtt) {
                self.standing_queue = r > m + (m / 4).max(QUEUE_TARGET_MIN);
            }
            if self.tx_round >= 8 {
                let r = self.retx_round as f64 / self.tx_round as f64;
                self.loss += (r - self.loss) / 8.0;
                self.tx_round = 0;
                self.retx_round = 0;
            }
        }

        // The delivery-rate sample.
        let send_elapsed = diff(s.tx.sent, s.tx.first_sent).max(0);
        let ack_elapsed = diff(now, s.tx.delivered_time).max(0);
        let interval = send_elapsed.max(ack_elapsed).max(1) as u32;
        let delivered = self.delivered - s.tx.delivered;
        if delivered > 0 && self.min_rtt.is_some_and(|m| interval >= m) {
            // Times are whole milliseconds: the true interval may be up to 1 ms longer. The max
            // filter would pick the samples that rounding flattered, so take the longest.
            let bw = delivered as f64 / f64::from(interval + 1);
            if !s.tx.app_limited || bw >= self.btlbw() {
                self.bw_sample(bw);
            }
        }

        // Phases.
        if round_start && !self.filled_pipe && !s.tx.app_limited {
            let bw = self.btlbw();
            if bw >= self.full_bw * 1.25 {
                self.full_bw = bw;
                self.full_bw_count = 0;
            } else {
                self.full_bw_count += 1;
                if self.full_bw_count >= FULL_BW_ROUNDS {
                    self.filled_pipe = true;
                }
            }
        }
        let inflight_bytes = u64::from(inflight) * self.seg_bytes;
        if self.mode == Mode::Startup && self.filled_pipe {
            self.mode = Mode::Drain;
            self.pacing_gain = 1.0 / HIGH_GAIN;
        }
        if self.mode == Mode::Drain && inflight_bytes <= self.bdp(1.0) {
            self.enter_probe_bw(now);
        }
        if self.mode == Mode::ProbeBw {
            self.advance_cycle(now, inflight_bytes);
            // Cruising phases drain a queue that outlived a whole round (the bandwidth estimate
            // or the loss compensation ran high): the queue stays near the target.
            // Without loss compensation: the loss estimate may be what overfilled it (ACK
            // losses make KCP resend segments that had arrived, and those count as losses).
            let cruise = CYCLE[self.cycle_idx];
            self.draining_queue = cruise == 1.0 && self.standing_queue;
            self.pacing_gain = if self.draining_queue {
                DRAIN_GAIN
            } else {
                cruise
            };
        }
        if round_start && self.probe_rtt_done.is_some() {
            self.probe_rtt_round_done = true;
        }
        self.update_probe_rtt(now, inflight, expired);

        // The in-flight cap: grows by what was acked up to its target; in startup without bound
        // (the pipe is not full yet).
        let target = self.bdp(self.cwnd_gain) + 3 * self.seg_bytes;
        if self.mode == Mode::ProbeRtt {
            self.cwnd = MIN_CWND_SEGS * self.seg_bytes;
        } else if self.filled_pipe {
            self.cwnd = (self.cwnd + s.acked).min(target);
        } else if self.cwnd < target || self.delivered < INIT_CWND_SEGS * self.seg_bytes {
            self.cwnd += s.acked;
        }
        self.cwnd = self.cwnd.max(MIN_CWND_SEGS * self.seg_bytes);
    }

    fn bw_sample(&mut self, bw: f64) {
        let round = self.round;
        while self
            .bw_filter
            .front()
            .is_some_and(|&(r, _)| r + BW_ROUNDS <= round)
        {
            self.bw_filter.pop_front();
        }
        while self.bw_filter.back().is_some_and(|&(_, b)| b <= bw) {
            self.bw_filter.pop_back();
        }
        self.bw_filter.push_back((round, bw));
    }

    fn enter_probe_bw(&mut self, now: u32) {
        self.mode = Mode::ProbeBw;
        self.draining_queue = false;
        self.cwnd_gain = CWND_GAIN;
        self.cycle_stamp = now;
        self.pacing_gain = CYCLE[self.cycle_idx % CYCLE.len()];
    }

    fn advance_cycle(&mut self, now: u32, inflight_bytes: u64) {
        let rtt = self.min_rtt.unwrap_or(1) as i32;
        let full_length = diff(now, self.cycle_stamp) > rtt;
        let gain = CYCLE[self.cycle_idx];
        let next = if gain > 1.0 {
            full_length && inflight_bytes >= self.bdp(gain) || diff(now, self.cycle_stamp) > 2 * rtt
        } else if gain < 1.0 {
            full_length || inflight_bytes <= self.bdp(1.0)
        } else {
            full_length
        };
        if next {
            self.cycle_idx = (self.cycle_idx + 1) % CYCLE.len();
            self.cycle_stamp = now;
            self.pacing_gain = CYCLE[self.cycle_idx];
        }
    }

    /// Probe-RTT: entered when the min-RTT sample has `expired`; holds the floor for 200 ms and
    /// one round once the pipe has drained to it.
    fn update_probe_rtt(&mut self, now: u32, inflight: u32, expired: bool) {
        if expired && self.mode != Mode::ProbeRtt {
            self.mode = Mode::ProbeRtt;
            self.draining_queue = false;
            self.pacing_gain = 1.0;
            self.prior_cwnd = self.cwnd;
            self.probe_rtt_done = None;
            self.probe_rtt_round_done = false;
        }
        if self.mode != Mode::ProbeRtt {
            return;
        }
        match self.probe_rtt_done {
            None if u64::from(inflight) <= MIN_CWND_SEGS => {
                self.probe_rtt_done = Some(now.wrapping_add(PROBE_RTT_TIME));
                self.probe_rtt_round_done = false;
                self.next_round_delivered = self.delivered;
            }
            Some(done) if self.probe_rtt_round_done && diff(now, done) >= 0 => {
                self.min_rtt_stamp = now;
                self.cwnd = self.cwnd.max(self.prior_cwnd);
                self.probe_rtt_done = None;
                if self.filled_pipe {
                    self.enter_probe_bw(now);
                } else {
                    self.mode = Mode::Startup;
                    self.pacing_gain = HIGH_GAIN;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver that runs every paced send a millisecond after it was due (whole-millisecond clocks and
    /// timers) still sends at the pacing rate: the budget it saved while late is not capped away.
    #[test]
    fn a_driver_waking_a_millisecond_late_still_paces_at_the_rate() {
        let seg = 1376;
        let mut p = DeliveryRate::new(seg, 0, 1);
        let rate = p.pacing_rate();
        let (mut now, mut sent) = (0u32, 0usize);
        while now < 200 {
            while p.may_send(now) {
                p.charge(now, seg);
                sent += seg;
            }
            now = p.next_send(now) + 1;
        }
        let achieved = sent as f64 / f64::from(now);
        assert!(
            achieved >= 0.9 * rate,
            "paced {achieved:.0} B/ms of {rate:.0} B/ms"
        );
    }
}
