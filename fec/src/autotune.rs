//! Receiver-side detection of the sender's (ds, ps) from the seqid/type pattern (docs/wire-format.md#fec-autotune,
//! kcp-go autotune.go). It only reads what is on the wire, so it follows any sender: a kcp-go
//! peer, or our own encoder changing its parity count through [`crate::AdaptiveParity`].

/// Ring size of kcp-go's `maxAutoTuneSamples`.
pub(crate) const SAMPLES: usize = 258;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pulse {
    bit: bool,
    seq: u32,
}

/// A ring of `(is_data, seqid)` samples indexed by `seqid % 258`.
#[derive(Debug, Clone)]
pub(crate) struct AutoTune {
    pulses: [Pulse; SAMPLES],
}

impl Default for AutoTune {
    fn default() -> Self {
        AutoTune {
            pulses: [Pulse::default(); SAMPLES],
        }
    }
}

impl AutoTune {
    /// Records one received FEC packet.
    pub(crate) fn sample(&mut self, is_data: bool, seq: u32) {
        // `seq % 258 < 258`, so the index is in bounds.
        self.pulses[(seq % SAMPLES as u32) as usize] = Pulse { bit: is_data, seq };
    }

    /// kcp-go `FindPeriod`: the length of the first complete run of `bit` (between a rising and
    /// a falling edge, consecutive seqids throughout), walking the ring in index order. Returns
    /// -1 when the run is broken by a gap, and 0 or a negative value when no edge was found;
    /// callers only accept results in `1..256`.
    pub(crate) fn find_period(&self, bit: bool) -> i32 {
        let p = &self.pulses;
        let mut last = p[0];
        let mut left = 0usize;
        for (idx, cur) in p.iter().enumerate().skip(1) {
            if last.bit != bit && cur.bit == bit && last.seq.wrapping_add(1) == cur.seq {
                left = idx;
                break;
            }
            last = *cur;
        }
        let mut right = 0usize;
        let mut last = p[left];
        for (idx, cur) in p.iter().enumerate().skip(left + 1) {
            if last.seq.wrapping_add(1) != cur.seq {
                return -1;
            }
            if last.bit == bit && cur.bit != bit {
                right = idx;
                break;
            }
            last = *cur;
        }
        // Both indices are < 258.
        right as i32 - left as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tune(signals: &[u8]) -> AutoTune {
        let mut t = AutoTune::default();
        for (i, &s) in signals.iter().enumerate() {
            t.sample(s == 1, i as u32);
        }
        t
    }

    /// The cases of kcp-go's autotune_test.go.
    #[test]
    fn kcp_go_autotune_cases() {
        let t = tune(&[0, 0, 0, 0, 0, 0]);
        assert_eq!(t.find_period(false), -1);
        assert_eq!(t.find_period(true), -1);
        let t = tune(&[1, 0, 1, 0, 0, 1]);
        assert_eq!(t.find_period(false), 1);
        assert_eq!(t.find_period(true), 1);
        let t = tune(&[1, 0, 0, 0, 0, 1]);
        assert_eq!(t.find_period(true), -1);
        assert_eq!(t.find_period(false), 4);
    }

    #[test]
    fn detects_10_3_after_two_groups_even_past_the_ring() {
        for start in [0u32, 1000 * 13, 300_000_000 * 13] {
            let mut t = AutoTune::default();
            for s in start..start + 26 {
                t.sample((s - start) % 13 < 10, s);
            }
            if start == 0 {
                assert_eq!((t.find_period(true), t.find_period(false)), (10, 3));
            }
            for s in start + 26..start + 26 + 300 {
                t.sample((s - start) % 13 < 10, s);
            }
            assert_eq!(
                (t.find_period(true), t.find_period(false)),
                (10, 3),
                "start {start}"
            );
        }
    }
}
