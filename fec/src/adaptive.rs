//! Sender-side adaptive parity (not in kcp-go); see [`AdaptiveParity`].

use crate::FecError;
use crate::code::MAX_TOTAL_SHARDS;

/// Tuning of [`AdaptiveParity`]; every default is explained on its field.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveConfig {
    /// Data packets per evaluation window. Default 500: at 1 % loss a window holds ~5 losses,
    /// enough for a rough estimate that the EWMA then smooths; ~50 groups of 10.
    pub window: u64,
    /// Weight of the newest window in the loss estimate (EWMA), in (0, 1]. Default 0.2:
    /// follows a change within a few windows without chasing every noisy one.
    pub smoothing: f64,
    /// Data packets a parity shard must rebuild per group, on average, to be worth its bytes,
    /// in (0, 1). Default 0.25: one parity packet in four repairs a loss.
    pub parity_cost: f64,
    /// Consecutive windows that must agree before `ps` is lowered. Default 3.
    pub down_hold: u32,
    /// Relative margin above the loss estimate when checking whether to lower `ps`, >= 0.
    /// Default 0.1, like `up_margin`: a wider band would keep `ps` stuck one step too high
    /// when the loss sits just below a decision boundary (the 3/4 boundary for ds = 10 is at
    /// 15.9 % loss).
    pub down_margin: f64,
    /// Relative margin below the loss estimate when checking whether to raise `ps`, in [0, 1).
    /// Default 0.1: a window's estimate is noisy (at 15 % loss and ps = 4, ~20 losses per
    /// 1000 packets), and without it `ps` ratchets up on noise and comes down only slowly.
    pub up_margin: f64,
    /// Residual observations only ([`AdaptiveParity::observe`]): a window also waits until it holds this
    /// many losses, or until this many were to be expected at the loss where `ps` would change (the
    /// boundary below, or above when `ps` is at its minimum), > 0. Default 3.0: a window without any
    /// loss then rules out that boundary with ~95 % confidence (Poisson, e^-3). Without it a window is
    /// no evidence when FEC works well: at ds = 1, ps = 2 and 10 % loss one packet in a thousand is
    /// lost for good, so windows of 500 packets mostly show none and `ps` would come down on absence of
    /// evidence, then go back up once the losses show again.
    pub min_evidence: f64,
    /// Residual observations only: a window closes after at most this many times `window` packets
    /// even without the evidence of `min_evidence`, >= 1. Default 64: `ps` still comes down within a
    /// bounded time on a link that became clean when the boundary's residual loss is tiny.
    pub evidence_cap: u64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            window: 500,
            smoothing: 0.2,
            parity_cost: 0.25,
            down_hold: 3,
            down_margin: 0.1,
            up_margin: 0.1,
            min_evidence: 3.0,
            evidence_cap: 64,
        }
    }
}

impl AdaptiveConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), FecError> {
        let bad = |reason| Err(FecError::InvalidAdaptiveConfig { reason });
        if self.window == 0 {
            return bad("window must be at least 1 packet");
        }
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return bad("smoothing must be in (0, 1]");
        }
        if !(self.parity_cost > 0.0 && self.parity_cost < 1.0) {
            return bad("parity_cost must be in (0, 1)");
        }
        if !(self.down_margin >= 0.0 && self.down_margin.is_finite()) {
            return bad("down_margin must be finite and >= 0");
        }
        if !(self.up_margin >= 0.0 && self.up_margin < 1.0) {
            return bad("up_margin must be in [0, 1)");
        }
        if !(self.min_evidence > 0.0 && self.min_evidence.is_finite()) {
            return bad("min_evidence must be finite and > 0");
        }
        if self.evidence_cap == 0 {
            return bad("evidence_cap must be at least 1");
        }
        Ok(())
    }
}

/// Sender-side adaptive parity (not in kcp-go): chooses `ps` from the observed loss rate.
///
/// Only the sender's choice is on the wire. How it gets there matters for a kcp-go peer: applied
/// with [`FecEncoder::set_parity_shards`](crate::FecEncoder::set_parity_shards) (the group shape
/// changes at the next boundary), receivers must find the new shape by autotune
/// (docs/wire-format.md#fec-autotune), and until they have, kcp-go 5.6.1 rebuilds from misaligned
/// shards; with `ds > 1` such a rebuild can pass its KCP's checks and corrupt the stream (see
/// `set_parity_shards`). The session (`rkcp_session::AdaptiveFec`) therefore uses the policy with
/// `ds = 1` only, and sends the chosen count as copies of the one parity shard of fixed (1, 1)
/// groups, which every decoder reads without retuning.
///
/// # Model
/// Losses are taken as independent with probability `p`. In a group of `n = ds + ps` shards
/// with `x` lost, everything is rebuilt when `x <= ps`; otherwise the lost data shards
/// (`x * ds / n` on average) stay lost. The policy picks the `ps` in `[min, max]` that maximises
/// `recovered(ps) - parity_cost * ps` per group: a parity shard is worth sending while it
/// rebuilds, on average, at least `parity_cost` data packets. This weighs what FEC is for
/// (sparing retransmission round trips) against what it costs (parity bytes), and avoids the
/// trap of a residual-loss target, which at high loss buys the last fractions of a percent with
/// parity that almost never repairs anything.
///
/// # Estimating p
/// A sender does not see the channel loss directly: FEC hides the losses it repairs. What it
/// sees are the packets the peer still lacked (KCP retransmissions). [`AdaptiveParity::observe`]
/// takes those and inverts the model above for the `ps` in force (the residual loss is
/// increasing in `p`). Since residual losses are rare exactly when FEC works, a window of them
/// closes only once it is evidence ([`AdaptiveConfig::min_evidence`]): it holds a few losses, or
/// enough packets that the loss at the nearest decision boundary would have shown a few. When the caller knows the raw channel loss (a simulation, or a
/// receiver-side count of a symmetric link), [`AdaptiveParity::observe_channel`] takes it
/// directly. Estimates are smoothed over windows of packets (EWMA).
///
/// Wiring in a session: start the encoder at [`AdaptiveParity::parity_shards`], and
/// periodically (e.g. every flush interval) pass the deltas of KCP's sent and retransmitted
/// segment counters to `observe`, applying any `Some(ps)` it returns with `set_parity_shards`.
///
/// Limits: the model assumes independent losses. Under bursty loss one parity shard repairs
/// less than it predicts, so at low average loss the policy provisions too little (see the
/// bursty rows of `examples/adaptive.rs`); raise `min_ps` on links known to be bursty.
///
/// # Hysteresis
/// `ps` rises as soon as the optimum is higher even for a loss estimate `up_margin` lower than
/// measured (losses hurt at once; with residual observations, which are evidence window by window,
/// `ps` rises one step once two windows in a row call for more), but falls one step at a time, only after `down_hold`
/// consecutive windows in which the optimum is lower even for a loss estimate `down_margin`
/// higher than measured. A loss rate sitting on a decision boundary therefore does not make
/// `ps` flap.
///
/// # Example
///
/// ```
/// use rkcp_fec::AdaptiveParity;
/// let mut policy = AdaptiveParity::new(10, 1, 8).unwrap();
/// assert_eq!(policy.parity_shards(), 1); // starts at the minimum
/// // 15 % of 1000 packets lost on the channel: a few parity shards pay off.
/// policy.observe_channel(1000, 150);
/// assert_eq!(policy.parity_shards(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveParity {
    ds: usize,
    min_ps: usize,
    max_ps: usize,
    cfg: AdaptiveConfig,
    ps: usize,
    estimate: Option<f64>,
    sent: u64,
    lost: u64,
    /// Whether the current window's observations are residual (post-FEC) losses.
    residual: bool,
    hold: u32,
    /// Consecutive residual windows that called for more parity.
    up_votes: u32,
    /// The channel loss at which the current `ps` would change (see [`AdaptiveConfig::min_evidence`]).
    boundary: Option<f64>,
}

impl AdaptiveParity {
    /// A policy for `data_shards` per group choosing `ps` in `[min_ps, max_ps]`, with the
    /// default [`AdaptiveConfig`]. Starts at `min_ps`.
    pub fn new(data_shards: usize, min_ps: usize, max_ps: usize) -> Result<Self, FecError> {
        Self::with_config(data_shards, min_ps, max_ps, AdaptiveConfig::default())
    }

    /// [`AdaptiveParity::new`] with an explicit configuration.
    pub fn with_config(
        data_shards: usize,
        min_ps: usize,
        max_ps: usize,
        cfg: AdaptiveConfig,
    ) -> Result<Self, FecError> {
        if data_shards == 0
            || min_ps == 0
            || min_ps > max_ps
            || data_shards + max_ps > MAX_TOTAL_SHARDS
        {
            return Err(FecError::InvalidShards {
                data_shards,
                parity_shards: max_ps,
            });
        }
        cfg.validate()?;
        let mut a = AdaptiveParity {
            ds: data_shards,
            min_ps,
            max_ps,
            cfg,
            ps: min_ps,
            estimate: None,
            sent: 0,
            lost: 0,
            residual: true,
            hold: 0,
            up_votes: 0,
            boundary: None,
        };
        a.boundary = a.boundary();
        Ok(a)
    }

    /// Starts at `ps` (clamped to `[min_ps, max_ps]`) instead of `min_ps`: e.g. at the maximum, so
    /// that the first packets are protected before any loss has been seen, and `ps` comes down once
    /// the windows show it is not needed.
    pub fn with_start(mut self, ps: usize) -> Self {
        self.ps = ps.clamp(self.min_ps, self.max_ps);
        self.boundary = self.boundary();
        self
    }

    /// The parity count to use now.
    pub fn parity_shards(&self) -> usize {
        self.ps
    }

    /// The smoothed channel loss estimate, once a window has been evaluated.
    pub fn loss_estimate(&self) -> Option<f64> {
        self.estimate
    }

    /// Records `sent` data packets of which `lost` never reached the peer even with FEC
    /// (what a sender sees, e.g. KCP retransmissions). Returns the new parity count when this
    /// observation changed it.
    pub fn observe(&mut self, sent: u64, lost: u64) -> Option<usize> {
        self.add(sent, lost, true)
    }

    /// Records `sent` packets of which `lost` were lost on the channel, before FEC.
    /// Returns the new parity count when this observation changed it.
    pub fn observe_channel(&mut self, sent: u64, lost: u64) -> Option<usize> {
        self.add(sent, lost, false)
    }

    fn add(&mut self, sent: u64, lost: u64, residual: bool) -> Option<usize> {
        if residual != self.residual {
            self.sent = 0;
            self.lost = 0;
            self.residual = residual;
        }
        self.sent = self.sent.saturating_add(sent);
        self.lost = self.lost.saturating_add(lost.min(sent));
        if self.sent < self.cfg.window || (residual && !self.enough_evidence()) {
            return None;
        }
        // Precision loss in the casts is irrelevant for a rate.
        let rate = self.lost as f64 / self.sent as f64;
        self.sent = 0;
        self.lost = 0;
        let p = if residual {
            invert_residual(self.ds, self.ps, rate)
        } else {
            rate
        };
        let est = match self.estimate {
            Some(old) => self.cfg.smoothing * p + (1.0 - self.cfg.smoothing) * old,
            None => p,
        };
        self.estimate = Some(est);

        let old = self.ps;
        // Residual windows are evidence by construction (`min_evidence`), so they raise ps by
        // themselves rather than through the average (which would wait for several windows, or jump on
        // the first): one step once two in a row call for more, since one that closed on a few losses
        // may be a burst.
        let up = if residual {
            let more = self.best(p * (1.0 - self.cfg.up_margin)) > self.ps;
            self.up_votes = if more { self.up_votes + 1 } else { 0 };
            if self.up_votes >= RESIDUAL_UP_HOLD {
                self.up_votes = 0;
                self.ps + 1
            } else {
                self.ps
            }
        } else {
            self.best(est * (1.0 - self.cfg.up_margin))
        };
        if up > self.ps {
            self.ps = up;
            self.hold = 0;
        } else if self.best((est * (1.0 + self.cfg.down_margin)).min(MAX_P)) < self.ps {
            self.hold += 1;
            if self.hold >= self.cfg.down_hold {
                self.ps -= 1;
                self.hold = 0;
            }
        } else {
            self.hold = 0;
        }
        if self.ps != old {
            self.boundary = self.boundary();
        }
        (self.ps != old).then_some(self.ps)
    }

    /// Whether the residual window holds enough to say on which side of `boundary` the loss is.
    fn enough_evidence(&self) -> bool {
        if self.lost as f64 >= self.cfg.min_evidence
            || self.sent >= self.cfg.window.saturating_mul(self.cfg.evidence_cap)
        {
            return true;
        }
        match self.boundary {
            Some(p) => {
                self.sent as f64 * group_model(self.ds, self.ps, p).1 >= self.cfg.min_evidence
            }
            None => true,
        }
    }

    /// The channel loss at which the current `ps` would change: the highest at which it would come
    /// down (ignoring `down_hold`), or when it is at its minimum the lowest at which it would rise.
    /// `None` when it can do neither.
    fn boundary(&self) -> Option<f64> {
        let (up, down) = (1.0 - self.cfg.up_margin, 1.0 + self.cfg.down_margin);
        if self.ps > self.min_ps {
            // best() is nondecreasing in p: bisect for the last p that still lowers ps.
            let lowers = |p: f64| self.best((p * down).min(MAX_P)) < self.ps;
            lowers(0.0).then(|| bisect(lowers))
        } else if self.ps < self.max_ps {
            let stays = |p: f64| self.best(p * up) <= self.ps;
            (!stays(MAX_P)).then(|| bisect(stays))
        } else {
            None
        }
    }

    /// The `ps` maximising expected rebuilt packets minus parity cost per group at loss `p`.
    fn best(&self, p: f64) -> usize {
        let mut best = self.min_ps;
        let mut best_score = f64::NEG_INFINITY;
        for ps in self.min_ps..=self.max_ps {
            let (rec, _) = group_model(self.ds, ps, p);
            let score = rec - self.cfg.parity_cost * ps as f64;
            // Strictly better only: ties keep the smaller ps.
            if score > best_score + 1e-12 {
                best = ps;
                best_score = score;
            }
        }
        best
    }
}

const MAX_P: f64 = 0.99;

/// Consecutive residual windows that must call for more parity before `ps` rises (one step).
const RESIDUAL_UP_HOLD: u32 = 2;

/// The point in `[0, MAX_P]` where `holds` turns false (it holds at 0 and not at `MAX_P`).
fn bisect(holds: impl Fn(f64) -> bool) -> f64 {
    let (mut lo, mut hi) = (0.0f64, MAX_P);
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if holds(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// For a group of `ds` data and `ps` parity shards with independent loss `p`: the expected data
/// packets rebuilt per group, and the expected fraction of data packets lost for good.
pub(crate) fn group_model(ds: usize, ps: usize, p: f64) -> (f64, f64) {
    let n = ds + ps;
    let p = p.clamp(0.0, MAX_P);
    if p == 0.0 {
        return (0.0, 0.0);
    }
    let nf = n as f64;
    let ratio = p / (1.0 - p);
    let mut pmf = (1.0 - p).powi(n as i32);
    let (mut rec, mut res) = (0.0, 0.0);
    for x in 0..=n {
        let xf = x as f64;
        if x <= ps {
            rec += pmf * xf * ds as f64 / nf;
        } else {
            res += pmf * xf / nf;
        }
        pmf *= (nf - xf) / (xf + 1.0) * ratio;
    }
    (rec, res)
}

/// The channel loss `p` whose residual loss at (ds, ps) equals `rate` (bisection; the
/// residual is increasing in `p`).
fn invert_residual(ds: usize, ps: usize, rate: f64) -> f64 {
    if rate <= 0.0 {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0f64, MAX_P);
    if group_model(ds, ps, hi).1 <= rate {
        return hi;
    }
    for _ in 0..50 {
        let mid = 0.5 * (lo + hi);
        if group_model(ds, ps, mid).1 < rate {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_matches_closed_form_values() {
        // Values from an independent computation (Python, exact binomials).
        let (rec, res) = group_model(10, 3, 0.15);
        assert!((rec - 1.1037).abs() < 1e-4, "{rec}");
        assert!((res - 0.03963).abs() < 1e-5, "{res}");
        let (rec, res) = group_model(10, 1, 0.05);
        assert!((rec - 0.2994).abs() < 1e-4);
        assert!((res - 0.02006).abs() < 1e-5);
    }

    #[test]
    fn inversion_recovers_p() {
        for p in [0.005, 0.01, 0.05, 0.15, 0.3] {
            for ps in [1, 3, 6] {
                let (_, res) = group_model(10, ps, p);
                let back = invert_residual(10, ps, res);
                assert!((back - p).abs() < 1e-6, "p {p} ps {ps} back {back}");
            }
        }
    }

    #[test]
    fn picks_more_parity_for_more_loss_within_bounds() {
        let choice = |p: f64| {
            let mut a = AdaptiveParity::new(10, 1, 8).unwrap();
            a.observe_channel(10_000, (p * 10_000.0) as u64);
            a.parity_shards()
        };
        assert_eq!(choice(0.0), 1);
        assert_eq!(choice(0.01), 1);
        assert_eq!(choice(0.05), 1);
        assert_eq!(choice(0.15), 3);
        assert_eq!(choice(0.30), 6);
        let mut a = AdaptiveParity::new(10, 1, 5).unwrap();
        a.observe_channel(1000, 300);
        assert_eq!(a.parity_shards(), 5, "capped at max");
        let mut a = AdaptiveParity::new(10, 2, 4).unwrap();
        a.observe_channel(1000, 0);
        assert_eq!(a.parity_shards(), 2, "floored at min");
    }

    #[test]
    fn rises_at_once_falls_slowly_one_step_at_a_time() {
        let mut a = AdaptiveParity::new(10, 1, 8).unwrap();
        assert_eq!(a.observe_channel(500, 150), Some(6));
        // Loss stops: the EWMA decays and ps comes down one step per down_hold windows.
        let mut trace = Vec::new();
        for _ in 0..60 {
            a.observe_channel(500, 0);
            trace.push(a.parity_shards());
        }
        assert_eq!(*trace.last().unwrap(), 1);
        for w in trace.windows(2) {
            assert!(w[0] == w[1] || w[0] == w[1] + 1, "{trace:?}");
        }
        assert!(
            trace[..2].iter().all(|&ps| ps == 6),
            "no drop before down_hold: {trace:?}"
        );
    }

    #[test]
    fn no_flapping_on_a_boundary() {
        // Find a loss rate right on the 2/3 boundary and feed noisy windows around it.
        let mut a = AdaptiveParity::new(10, 1, 8).unwrap();
        let mut changes = 0;
        let mut state = 12345u64;
        for _ in 0..400 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let lost = 55 + (state >> 33) % 20; // 11 % .. 15 % of 500
            if a.observe_channel(500, lost).is_some() {
                changes += 1;
            }
        }
        assert!(changes <= 4, "ps changed {changes} times");
    }

    #[test]
    fn residual_observations_converge_to_the_channel_choice() {
        // Closed loop: the sender sees only what FEC did not repair at the ps in force.
        for (p, want) in [(0.01, 1), (0.15, 3)] {
            let mut a = AdaptiveParity::new(10, 1, 8).unwrap();
            for _ in 0..100 {
                let (_, res) = group_model(10, a.parity_shards(), p);
                a.observe(10_000, (res * 10_000.0).round() as u64);
            }
            assert_eq!(a.parity_shards(), want, "p {p}");
        }
    }

    /// Closed loop at ds = 1 (every parity shard a copy): the residual loss at ps = 2 and 10 % loss is
    /// one packet in a thousand, yet ps stays up, and comes down on a clean link only once the windows
    /// are evidence.
    #[test]
    fn residual_windows_wait_for_evidence() {
        let cfg = AdaptiveConfig {
            window: 50,
            parity_cost: 0.005,
            ..AdaptiveConfig::default()
        };
        let mut a = AdaptiveParity::with_config(1, 1, 3, cfg)
            .unwrap()
            .with_start(2);
        assert_eq!(a.parity_shards(), 2);
        for _ in 0..60 {
            assert_eq!(a.observe(50, 0), None, "3000 clean packets are no evidence");
        }
        assert_eq!(a.loss_estimate(), None);
        let mut n = 3000;
        while a.parity_shards() == 2 {
            a.observe(50, 0);
            n += 50;
            assert!(n < 100_000);
        }
        // Three windows capped at 64 * 50 packets.
        assert_eq!(n, 3 * 64 * 50);
        // Losses rise it at once: 10 % channel loss leaves 1 % at ps = 1.
        let mut state = 7u64;
        let mut lossy = || {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut trace = Vec::new();
        for _ in 0..2000 {
            let ps = a.parity_shards();
            // 50 packets, each lost for good when it and all of its ps copies are lost.
            let lost = (0..50).filter(|_| (0..=ps).all(|_| lossy() < 0.1)).count();
            a.observe(50, lost as u64);
            trace.push(a.parity_shards());
        }
        let first = trace.iter().position(|&ps| ps == 2).unwrap();
        assert!(first < 40, "rose after {first} windows");
        let at_two = trace[first..].iter().filter(|&&ps| ps == 2).count();
        assert!(at_two * 10 >= (trace.len() - first) * 9, "{trace:?}");
        assert!(a.with_start(9).parity_shards() == 3, "clamped");
    }

    #[test]
    fn config_validation() {
        assert!(AdaptiveParity::new(10, 0, 3).is_err());
        assert!(AdaptiveParity::new(10, 4, 3).is_err());
        assert!(AdaptiveParity::new(250, 1, 7).is_err());
        let cfg = AdaptiveConfig {
            smoothing: 0.0,
            ..AdaptiveConfig::default()
        };
        assert!(AdaptiveParity::with_config(10, 1, 3, cfg).is_err());
        assert!(AdaptiveConfig::default().validate().is_ok());
    }
}
