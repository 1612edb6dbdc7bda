//! Errors of the KCP engine.

/// Everything the engine can refuse.
///
/// Errors from [`Kcp::input`](crate::Kcp::input) describe a malformed or foreign datagram; the
/// engine has already applied every complete segment that came before the bad one (as kcp-go does,
/// docs/wire-format.md#kcp-input), so the caller only needs to count the error and move on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KcpError {
    /// A segment carried another conversation id. kcp-go drops the rest of the datagram; so do we.
    /// Usually a stray or late packet of an older conversation: count it and ignore it.
    #[error("conversation mismatch: expected {expected:#010x}, got {got:#010x}")]
    ConvMismatch {
        /// Our conversation id.
        expected: u32,
        /// The id found in the segment.
        got: u32,
    },
    /// The datagram is shorter than a segment header, or a segment's `len` runs past its end.
    /// The packet was damaged or cut; it cannot be repaired, drop it.
    #[error("truncated segment")]
    Truncated,
    /// The `cmd` byte is none of PUSH/ACK/WASK/WINS (81..=84). Not a KCP packet, or a corrupted one.
    #[error("unknown KCP command {0}")]
    BadCommand(u8),
    /// In message mode a message needs more than 255 fragments (`frg` is one byte). Send it in
    /// smaller messages, raise the MTU, or use stream mode.
    #[error("message of {len} bytes needs {fragments} fragments, at most 255 are possible")]
    MessageTooLarge {
        /// Length of the rejected message.
        len: usize,
        /// Fragments it would need at the current MSS.
        fragments: usize,
    },
    /// The next message does not fit in the buffer given to `recv`. Nothing was consumed: call again
    /// with a buffer of at least `needed` bytes.
    #[error("receive buffer too small: the next message has {needed} bytes")]
    BufferTooSmall {
        /// Size of the next message.
        needed: usize,
    },
    /// The MTU is outside `MIN_MTU..=MAX_MTU`, or leaves no room for a payload byte after the header
    /// and the reserved bytes. Pick a value in range.
    #[error("invalid mtu {mtu}")]
    InvalidMtu {
        /// The rejected MTU.
        mtu: usize,
    },
    /// The reserved front bytes leave no room for a segment header plus one payload byte inside the
    /// MTU (kcp-go `ReserveBytes` requires `reserved < mtu - 24`).
    #[error("cannot reserve {reserved} bytes with mtu {mtu}")]
    InvalidReserved {
        /// The rejected reservation.
        reserved: usize,
        /// The MTU it was checked against.
        mtu: usize,
    },
    /// A window of zero segments (or a receive window above 65535, the largest the 16-bit `wnd`
    /// field can announce) was configured.
    #[error("invalid window sizes snd={snd} rcv={rcv}")]
    InvalidWindow {
        /// Configured send window.
        snd: u32,
        /// Configured receive window.
        rcv: u32,
    },
    /// The flush interval is outside kcp-go's clamp range `10..=5000` ms.
    #[error("invalid interval {0} ms (allowed 10..=5000)")]
    InvalidInterval(u32),
    /// `dead_link` of zero would declare every link dead at the first transmission.
    #[error("dead_link must be at least 1")]
    InvalidDeadLink,
}
