//! Adaptive parity for one connection ([`AdaptiveFec`](crate::AdaptiveFec), not in kcp-go): the policy of
//! [`rkcp_fec::AdaptiveParity`] fed with the engine's counters, as its docs prescribe.
//!
//! The sender cannot see the channel loss: FEC hides what it repairs. What it sees is what the peer still
//! lacked, the retransmissions; the policy inverts its loss model for the parity in force to estimate the
//! channel loss from them. Every observation passes the deltas since the previous one of
//! - new data segments: `snd_nxt` (each sequence number is sent for the first time once), and
//! - retransmissions: [`KcpStats::retrans_segs`](rkcp_engine::KcpStats::retrans_segs) (fast, early and
//!   RTO retransmissions, as kcp-go counts `RetransSegs`), less those found unnecessary
//!   ([`Kcp::spurious_retrans_segs`]: the ACK of an
//!   earlier transmission came back). A delay spike fires RTOs on a clean link; counted as losses, they
//!   made the policy climb to its maximum there, since at `ps` copies one spurious retransmission in a
//!   thousand reads as a loss of `0.001^(1 / (ps + 1))`.
//!
//! A choice of `ps` parity shards reaches the wire without changing the FEC shape: adaptive FEC has one
//! data shard (`KcpConfig::validate` refuses more), the groups stay (1, 1), and the one parity packet is
//! sent `ps` times, every copy with the same seqid. With one data shard every parity shard is a copy of
//! the data shard anyway (the parity rows of the systematic Vandermonde code are all `[1]`), so this
//! protects exactly as (1, ps) would, no receiver (ours or any kcp-go version) ever has to find a new
//! shape, and every decoder drops the copies it does not need as duplicates of a seqid.
//!
//! Why not change the shape ([`rkcp_fec::FecEncoder::set_parity_shards`]) when there are more data
//! shards: until its autotune has relocked, kcp-go 5.6.1 keeps decoding with the old shape, and a
//! rebuild from misaligned shards can be an XOR of whole segments of the conversation (parity row 0 is
//! all ones), whose conversation id and command survive the XOR; its KCP accepted such a segment and
//! handed the application corrupt bytes (`interop_adaptive_fec_over_a_lossy_path` did, with 3 data
//! shards, before this was restricted).

use rkcp_engine::Kcp;
use rkcp_fec::{AdaptiveParity, FecEncoder};

use crate::config::FecConfig;
use crate::error::ConfigError;

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

    /// The parity count of the FEC shape `fec` sends: 1 when adaptive (the policy's count is sent as
    /// copies), otherwise `parity_shards`.
    pub(crate) fn wire_parity(fec: &FecConfig) -> usize {
        if fec.adaptive.is_some() {
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
            .map_or(1, |a| a.policy.parity_shards())
    }

    /// Lets the policy see what the engine sent and retransmitted since its last look; its choice applies
    /// to the next parity packet. Returns the new choice when it changed.
    pub(crate) fn adapt(&mut self, kcp: &Kcp) -> Option<usize> {
        self.adaptive.as_mut()?.observe(kcp)
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
    spurious: u32,
    /// Losses not passed on yet: the policy counts at most as many losses as packets per observation,
    /// and retransmissions mostly happen in flushes that send nothing new. Negative when a retransmission
    /// already passed on turned out spurious (its ACK comes later).
    carry: i64,
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
            spurious: kcp.spurious_retrans_segs(),
            carry: 0,
        }))
    }

    /// Feeds what the engine sent and retransmitted since the last call; the policy's new choice, if it
    /// made one.
    pub(crate) fn observe(&mut self, kcp: &Kcp) -> Option<usize> {
        let snd_nxt = kcp.snd_nxt();
        let (retrans, spurious) = (kcp.stats().retrans_segs, kcp.spurious_retrans_segs());
        let sent = u64::from(snd_nxt.wrapping_sub(self.snd_nxt));
        // Counters only grow; the casts hold any realistic count.
        let lost = self.carry + retrans.saturating_sub(self.retrans) as i64
            - i64::from(spurious.wrapping_sub(self.spurious));
        self.snd_nxt = snd_nxt;
        self.retrans = retrans;
        self.spurious = spurious;
        // Retransmissions of segments first sent in an earlier observation count against later new
        // segments: over a window of many observations the rate is the same.
        let counted = lost.clamp(0, sent as i64);
        self.carry = lost - counted;
        let counted = counted as u64;
        if sent == 0 {
            return None;
        }
        self.policy.observe(sent, counted)
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

    fn fec(start: usize, min: usize, max: usize) -> FecConfig {
        KcpConfig::default()
            .with_adaptive_fec(start, AdaptiveFec::new(min, max))
            .fec
            .unwrap()
    }

    fn sender(f: &FecConfig, kcp: &Kcp) -> FecSender {
        FecSender::new(f, 0, kcp).unwrap()
    }

    fn state(s: &mut FecSender) -> &mut AdaptiveState {
        s.adaptive.as_mut().unwrap()
    }

    #[test]
    fn fixed_fec_has_no_policy() {
        let kcp = Kcp::new(1);
        for (ds, ps) in [(10, 3), (1, 3)] {
            let f = KcpConfig::default().with_fec(ds, ps).fec.unwrap();
            let s = sender(&f, &kcp);
            assert!(s.adaptive.is_none());
            assert_eq!(
                (s.enc.parity_shards(), s.copies()),
                (ps, 1),
                "kcp-go's {ds}/{ps}"
            );
        }
    }

    #[test]
    fn starts_where_configured_as_copies_and_reports_bad_bounds() {
        let kcp = Kcp::new(1);
        let s = sender(&fec(2, 1, 3), &kcp);
        // A (1, 1) encoder whose parity goes out twice.
        assert_eq!(
            (s.enc.parity_shards(), s.copies(), s.parity_sent()),
            (1, 2, 2)
        );
        assert!(AdaptiveState::new(&fec(1, 0, 3), &kcp).is_err());
        assert!(AdaptiveState::new(&fec(4, 4, 3), &kcp).is_err());
    }

    #[test]
    fn observes_counter_deltas_including_the_sequence_wrap() {
        // fast3: no congestion window, so the five segments leave at once.
        let mut kcp = Kcp::fast3(1);
        let mut s = sender(&fec(1, 1, 3), &kcp);
        // Nothing sent: no observation.
        assert_eq!(s.adapt(&kcp), None);
        // A wrapped snd_nxt still gives a small delta.
        state(&mut s).snd_nxt = u32::MAX - 9;
        let mut out = Vec::new();
        for _ in 0..5 {
            kcp.send(b"x").unwrap();
        }
        kcp.update(0, &mut |d: &mut [u8]| out.push(d.to_vec()));
        kcp.flush(1, &mut |d: &mut [u8]| out.push(d.to_vec()));
        assert_eq!(kcp.snd_nxt(), 5);
        assert_eq!(s.adapt(&kcp), None, "15 of 50 packets: no window yet");
        assert_eq!(state(&mut s).snd_nxt, 5);
        assert_eq!(state(&mut s).loss_estimate(), None);
    }

    /// Residual losses of `lost` in 50 new segments since the last look, as the engine would count them.
    fn window(s: &mut FecSender, kcp: &Kcp, lost: u64) -> Option<usize> {
        let a = state(s);
        a.snd_nxt = kcp.snd_nxt().wrapping_sub(50);
        a.retrans = kcp.stats().retrans_segs;
        a.carry += lost as i64;
        s.adapt(kcp)
    }

    #[test]
    fn losses_raise_the_copies_never_the_shape() {
        let kcp = Kcp::new(1);
        let mut s = sender(&fec(1, 1, 3), &kcp);
        // As if 40 retransmissions happened in flushes that sent nothing new: kept for new segments.
        state(&mut s).carry = 40;
        assert_eq!(s.adapt(&kcp), None);
        assert_eq!(state(&mut s).carry, 40);
        // 50 new segments close a window with 40 % residual loss; a second one raises parity one step.
        assert_eq!(window(&mut s, &kcp, 0), None);
        assert_eq!(state(&mut s).carry, 0);
        assert!(state(&mut s).loss_estimate().unwrap() > 0.3);
        assert_eq!(window(&mut s, &kcp, 40), Some(2));
        assert_eq!((s.enc.parity_shards(), s.copies()), (1, 2));
        assert_eq!(window(&mut s, &kcp, 40), None);
        assert_eq!(window(&mut s, &kcp, 40), Some(3));
        assert_eq!((s.enc.parity_shards(), s.copies()), (1, 3));
    }

    #[test]
    fn spurious_retransmissions_cancel_counted_losses() {
        let kcp = Kcp::new(1);
        let mut s = sender(&fec(1, 1, 3), &kcp);
        // Two retransmissions already counted turned out spurious (their ACKs came back late): the next
        // two retransmissions do not count, and 40 % residual loss less them still raises parity.
        state(&mut s).carry = -2;
        assert_eq!(window(&mut s, &kcp, 2), None);
        assert_eq!(state(&mut s).carry, 0);
        assert_eq!(
            state(&mut s).loss_estimate(),
            None,
            "50 clean packets: no evidence yet"
        );
    }
}
