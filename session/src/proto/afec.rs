//! Adaptive parity for one connection ([`AdaptiveFec`](crate::AdaptiveFec), not in kcp-go): the policy of
//! [`rkcp_fec::AdaptiveParity`] fed with the engine's counters, as its docs prescribe.
//!
//! The sender cannot see the channel loss: FEC hides what it repairs. What it sees is what the peer still
//! lacked, the retransmissions; the policy inverts its loss model for the parity in force to estimate the
//! channel loss from them. Every observation passes the deltas since the previous one of
//! - new data segments: `snd_nxt` (each sequence number is sent for the first time once), and
//! - retransmissions: [`KcpStats::retrans_segs`](rkcp_engine::KcpStats::retrans_segs) (fast, early and
//!   RTO retransmissions, as kcp-go counts `RetransSegs`).
//!
//! How a choice of `ps` parity shards reaches the wire depends on the data shards:
//! - `data_shards = 1`: the groups stay (1, 1) and the one parity shard is sent `ps` times, each copy
//!   with the same seqid. With one data shard every parity shard is a copy of the data shard anyway
//!   (the parity rows of the systematic Vandermonde code are all `[1]`), so this protects exactly as
//!   (1, ps) would, and the FEC shape on the wire never changes: no receiver (ours or any kcp-go
//!   version) has to find a new shape, and every decoder drops the copies it does not need as
//!   duplicates of a seqid.
//! - otherwise: [`FecEncoder::set_parity_shards`] from the next group boundary on, with the seqids
//!   realigned to the new group size; the receiver follows by autotune. Until it has, ours and current
//!   kcp-go's repair nothing (kcp-go 5.6 decodes with the stale shape; KCP refuses what that rebuilds
//!   wrongly), so observations are paused for [`SETTLE_MS`] after each change.

use rkcp_engine::Kcp;
use rkcp_fec::{AdaptiveParity, FecEncoder};

use crate::config::FecConfig;
use crate::error::ConfigError;
use crate::proto::time::Timestamp;

/// After a change of the parity count, what the engine sends and retransmits is not observed for this
/// long. The receiver finds the new shape by autotune (docs/wire-format.md#fec-autotune), which needs a
/// clean run of a group in its 258-packet ring: at 10 % loss and ~100 packets a second that can take a
/// second or two, in which our decoder (and current kcp-go's) repairs nothing. The retransmissions of
/// that interval say nothing about the new count, and counting them made the policy climb again.
const SETTLE_MS: u64 = 3000;

/// A connection's FEC encoder with its adaptive policy, if any (one box, so an idle connection without FEC
/// pays one pointer for both).
#[derive(Debug)]
pub(crate) struct FecSender {
    enc: FecEncoder,
    adaptive: Option<AdaptiveState>,
}

impl FecSender {
    /// The encoder (and policy) for `fec`, writing its header at `header_offset`, starting from `kcp`'s
    /// counters.
    pub(crate) fn new(
        fec: &FecConfig,
        header_offset: usize,
        kcp: &Kcp,
    ) -> Result<FecSender, ConfigError> {
        let enc = FecEncoder::new(fec.data_shards, Self::wire_parity(fec), header_offset).map_err(
            |_| ConfigError::FecShards {
                data: fec.data_shards,
                parity: fec.parity_shards,
            },
        )?;
        Ok(FecSender {
            enc,
            adaptive: AdaptiveState::new(fec, kcp)?,
        })
    }

    /// The parity count in the FEC shape `fec` starts with on the wire: 1 when adaptive with one data
    /// shard (the policy's count is sent as copies), otherwise `parity_shards`.
    pub(crate) fn wire_parity(fec: &FecConfig) -> usize {
        if fec.adaptive.is_some() && fec.data_shards == 1 {
            1
        } else {
            fec.parity_shards
        }
    }

    /// The encoder.
    pub(crate) fn encoder(&mut self) -> &mut FecEncoder {
        &mut self.enc
    }

    /// How many times each parity packet is sent.
    pub(crate) fn copies(&self) -> usize {
        self.adaptive
            .as_ref()
            .map_or(1, AdaptiveState::parity_copies)
    }

    /// Lets the policy see what the engine sent and retransmitted since its last look, and applies its
    /// choice.
    pub(crate) fn adapt(&mut self, now: Timestamp, kcp: &Kcp) {
        if let Some(a) = self.adaptive.as_mut() {
            a.observe(now, kcp, &mut self.enc);
        }
    }

    /// Parity packets sent per group.
    #[cfg(test)]
    pub(crate) fn parity_sent(&self) -> usize {
        self.enc.parity_shards() * self.copies()
    }
}

/// The policy and the engine counters at its last observation.
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveState {
    policy: AdaptiveParity,
    snd_nxt: u32,
    retrans: u64,
    /// Retransmissions not passed on yet: the policy counts at most as many losses as packets per
    /// observation, and retransmissions mostly happen in flushes that send nothing new.
    carry: u64,
    /// Observations are discarded until then (see [`SETTLE_MS`]).
    settle_until: Option<Timestamp>,
    /// `data_shards = 1`: the choice is applied as copies of the parity shard (see the module docs).
    copies: bool,
}

impl AdaptiveState {
    /// The state for `fec` when it is adaptive (`Ok(None)` otherwise), starting from `kcp`'s counters.
    pub(crate) fn new(fec: &FecConfig, kcp: &Kcp) -> Result<Option<AdaptiveState>, ConfigError> {
        let Some(a) = fec.adaptive else {
            return Ok(None);
        };
        let policy =
            AdaptiveParity::with_config(fec.data_shards, a.min_parity, a.max_parity, a.policy)
                .map_err(|_| ConfigError::FecShards {
                    data: fec.data_shards,
                    parity: a.max_parity,
                })?
                .with_start(fec.parity_shards);
        Ok(Some(AdaptiveState {
            policy,
            snd_nxt: kcp.snd_nxt(),
            retrans: kcp.stats().retrans_segs,
            carry: 0,
            settle_until: None,
            copies: fec.data_shards == 1,
        }))
    }

    /// How many times each parity packet is sent.
    pub(crate) fn parity_copies(&self) -> usize {
        if self.copies {
            self.policy.parity_shards()
        } else {
            1
        }
    }

    /// The parity count the policy wants now.
    #[cfg(test)]
    pub(crate) fn parity_shards(&self) -> usize {
        self.policy.parity_shards()
    }

    /// Feeds what the engine sent and retransmitted since the last call, and applies the policy's new
    /// choice if it made one (returned).
    pub(crate) fn observe(
        &mut self,
        now: Timestamp,
        kcp: &Kcp,
        enc: &mut FecEncoder,
    ) -> Option<usize> {
        let snd_nxt = kcp.snd_nxt();
        let retrans = kcp.stats().retrans_segs;
        let sent = u64::from(snd_nxt.wrapping_sub(self.snd_nxt));
        let lost = self.carry + retrans.saturating_sub(self.retrans);
        self.snd_nxt = snd_nxt;
        self.retrans = retrans;
        if self.settle_until.is_some_and(|t| now < t) {
            self.carry = 0;
            return None;
        }
        // Retransmissions of segments first sent in an earlier observation count against later new
        // segments: over a window of many observations the rate is the same.
        let counted = lost.min(sent);
        self.carry = lost - counted;
        if sent == 0 {
            return None;
        }
        let ps = self.policy.observe(sent, counted)?;
        if !self.copies {
            // The policy chooses within bounds `validate` checked against `data_shards`.
            let _ = enc.set_parity_shards(ps);
            self.settle_until = Some(now.add_millis(SETTLE_MS));
        }
        Some(ps)
    }

    /// The policy's smoothed channel loss estimate, once a window has been evaluated.
    #[cfg(test)]
    pub(crate) fn loss_estimate(&self) -> Option<f64> {
        self.policy.loss_estimate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AdaptiveFec, KcpConfig};

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn fec(ds: usize, start: usize, min: usize, max: usize) -> FecConfig {
        KcpConfig::default()
            .with_adaptive_fec(ds, start, AdaptiveFec::low_latency(min, max))
            .fec
            .unwrap()
    }

    fn state(f: &FecConfig, kcp: &Kcp) -> (AdaptiveState, FecEncoder) {
        let s = AdaptiveState::new(f, kcp).unwrap().unwrap();
        let enc = FecEncoder::new(f.data_shards, FecSender::wire_parity(f), 0).unwrap();
        (s, enc)
    }

    #[test]
    fn fixed_fec_has_no_policy() {
        let kcp = Kcp::new(1);
        let f = KcpConfig::default().with_fec(10, 3).fec.unwrap();
        assert!(AdaptiveState::new(&f, &kcp).unwrap().is_none());
        assert_eq!(FecSender::wire_parity(&f), 3);
        let f = KcpConfig::default().with_fec(1, 3).fec.unwrap();
        assert_eq!(FecSender::wire_parity(&f), 3, "fixed 1/3 is kcp-go's");
    }

    #[test]
    fn starts_where_configured_and_reports_bad_bounds() {
        let kcp = Kcp::new(1);
        let (s, enc) = state(&fec(1, 2, 1, 3), &kcp);
        // One data shard: a (1, 1) encoder whose parity goes out twice.
        assert_eq!((enc.parity_shards(), s.parity_copies()), (1, 2));
        let (s, enc) = state(&fec(4, 2, 1, 3), &kcp);
        assert_eq!((enc.parity_shards(), s.parity_copies()), (2, 1));
        assert_eq!(s.parity_shards(), 2);
        assert!(AdaptiveState::new(&fec(1, 1, 0, 3), &kcp).is_err());
        assert!(AdaptiveState::new(&fec(1, 4, 4, 3), &kcp).is_err());
    }

    #[test]
    fn observes_counter_deltas_including_the_sequence_wrap() {
        // fast3: no congestion window, so the five segments leave at once.
        let mut kcp = Kcp::fast3(1);
        let (mut s, mut enc) = state(&fec(1, 1, 1, 3), &kcp);
        // Nothing sent: no observation.
        assert_eq!(s.observe(at(0), &kcp, &mut enc), None);
        // A wrapped snd_nxt still gives a small delta.
        s.snd_nxt = u32::MAX - 9;
        let mut out = Vec::new();
        for _ in 0..5 {
            kcp.send(b"x").unwrap();
        }
        kcp.update(0, &mut |d: &mut [u8]| out.push(d.to_vec()));
        kcp.flush(1, &mut |d: &mut [u8]| out.push(d.to_vec()));
        assert_eq!(kcp.snd_nxt(), 5);
        assert_eq!(
            s.observe(at(1), &kcp, &mut enc),
            None,
            "15 of 50 packets: no window yet"
        );
        assert_eq!(s.snd_nxt, 5);
        assert_eq!(s.policy.loss_estimate(), None);
    }

    /// Residual losses of `lost` in 50 new segments since the last look, as the engine would count them.
    fn window(s: &mut AdaptiveState, kcp: &Kcp, lost: u64) {
        s.snd_nxt = kcp.snd_nxt().wrapping_sub(50);
        s.retrans = kcp.stats().retrans_segs;
        s.carry = lost;
    }

    #[test]
    fn one_data_shard_raises_copies_not_the_shape() {
        let kcp = Kcp::new(1);
        let (mut s, mut enc) = state(&fec(1, 1, 1, 3), &kcp);
        // As if 40 retransmissions happened in flushes that sent nothing new: kept for new segments.
        s.carry = 40;
        assert_eq!(s.observe(at(0), &kcp, &mut enc), None);
        assert_eq!(s.carry, 40);
        // 50 new segments close a window with 40 % residual loss; a second one raises parity one step,
        // as a copy.
        window(&mut s, &kcp, 40);
        assert_eq!(s.observe(at(0), &kcp, &mut enc), None);
        assert_eq!(s.carry, 0);
        assert!(s.loss_estimate().unwrap() > 0.3);
        window(&mut s, &kcp, 40);
        assert_eq!(s.observe(at(0), &kcp, &mut enc), Some(2));
        assert_eq!((enc.parity_shards(), s.parity_copies()), (1, 2));
        // No pause: the shape on the wire did not change.
        window(&mut s, &kcp, 40);
        assert_eq!(s.observe(at(1), &kcp, &mut enc), None);
        window(&mut s, &kcp, 40);
        assert_eq!(s.observe(at(1), &kcp, &mut enc), Some(3));
        assert_eq!((enc.parity_shards(), s.parity_copies()), (1, 3));
    }

    #[test]
    fn more_data_shards_change_the_shape_then_pause() {
        let kcp = Kcp::new(1);
        let (mut s, mut enc) = state(&fec(4, 1, 1, 3), &kcp);
        window(&mut s, &kcp, 40);
        assert_eq!(s.observe(at(0), &kcp, &mut enc), None);
        window(&mut s, &kcp, 40);
        assert_eq!(s.observe(at(0), &kcp, &mut enc), Some(2));
        assert_eq!((enc.parity_shards(), s.parity_copies()), (2, 1));
        // What follows a change is not observed for a while: the peer is still finding the new shape.
        window(&mut s, &kcp, 40);
        assert_eq!(s.observe(at(SETTLE_MS - 1), &kcp, &mut enc), None);
        assert_eq!((s.carry, s.snd_nxt), (0, kcp.snd_nxt()));
        window(&mut s, &kcp, 40);
        assert_eq!(s.observe(at(SETTLE_MS), &kcp, &mut enc), None);
        window(&mut s, &kcp, 40);
        assert_eq!(s.observe(at(SETTLE_MS), &kcp, &mut enc), Some(3));
        assert_eq!(enc.parity_shards(), 3);
    }
}
