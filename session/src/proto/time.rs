//! The one clock of the packet path.

/// A point in time, in milliseconds on a monotonic clock whose epoch the driver picks (the tokio driver uses
/// the first time it was asked; a test or a custom loop uses whatever it likes).
///
/// The KCP engine keeps kcp-go's wrapping 32-bit millisecond clock; the only conversions between the two
/// live here ([`Timestamp::engine`], [`Timestamp::from_engine`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Timestamp(u64);

impl Timestamp {
    /// The timestamp `ms` milliseconds after the epoch.
    pub(crate) const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    /// Milliseconds since the epoch.
    pub(crate) const fn as_millis(self) -> u64 {
        self.0
    }

    /// `ms` milliseconds later.
    pub(crate) const fn add_millis(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    #[cfg(test)]
    pub(crate) fn saturating_since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The engine's clock reading at this instant (wrapping).
    pub(crate) const fn engine(self) -> u32 {
        self.0 as u32
    }

    /// An engine deadline (wrapping `u32`) as a timestamp, given the time now; a past deadline is now.
    pub(crate) fn from_engine(deadline: u32, now: Timestamp) -> Timestamp {
        let delta = deadline.wrapping_sub(now.engine()) as i32;
        now.add_millis(delta.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn engine_deadlines_convert_across_the_wrap() {
        let now = Timestamp::from_millis(u64::from(u32::MAX) - 5);
        assert_eq!(
            Timestamp::from_engine(4, now).as_millis(),
            now.as_millis() + 10
        );
        assert_eq!(
            Timestamp::from_engine(now.engine().wrapping_sub(3), now),
            now
        );
        assert_eq!(
            now.add_millis(7).saturating_since(now),
            Duration::from_millis(7)
        );
        assert_eq!(now.saturating_since(now.add_millis(7)), Duration::ZERO);
    }
}
