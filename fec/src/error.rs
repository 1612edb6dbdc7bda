//! Typed errors of the FEC layer.

/// Everything that can go wrong when building an FEC codec or decoding an FEC packet.
///
/// Decoding errors concern one packet only: the session drops that packet (kcp-go counts it
/// in `InErrs`) and carries on; the decoder's state is unchanged by a rejected packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FecError {
    /// `data_shards` or `parity_shards` is zero, or their sum exceeds the 256 shards GF(2^8)
    /// Reed–Solomon allows (docs/wire-format.md#fec-reed-solomon). kcp-go disables FEC when either count is 0: do the
    /// same (create no encoder/decoder) instead of passing 0 here.
    #[error(
        "invalid FEC shard counts ({data_shards}, {parity_shards}): each must be >= 1 and the sum <= 256"
    )]
    InvalidShards {
        /// The requested data shard count.
        data_shards: usize,
        /// The requested parity shard count.
        parity_shards: usize,
    },
    /// The header offset leaves no room for the FEC header and a payload inside
    /// [`MTU_LIMIT`](crate::MTU_LIMIT) bytes. Use 0 (no crypto) or the crypt header length (20).
    #[error(
        "invalid FEC header offset {offset}: must leave room for the 8-byte FEC header within {max} bytes"
    )]
    InvalidHeaderOffset {
        /// The requested offset.
        offset: usize,
        /// The largest datagram the FEC layer handles.
        max: usize,
    },
    /// The packet is shorter than the 8 bytes every FEC packet carries (seqid, type and the
    /// size field or first parity bytes). Drop it; kcp-go counts it in `InErrs`.
    #[error("FEC packet truncated: {len} bytes, at least {min} needed")]
    Truncated {
        /// Length of the rejected packet.
        len: usize,
        /// The minimum length.
        min: usize,
    },
    /// The packet is longer than [`MTU_LIMIT`](crate::MTU_LIMIT) (1500), the largest datagram
    /// kcp-go ever reads. Drop it: no legitimate peer sends one, and accepting it would let a
    /// peer grow the receive window's memory.
    #[error("FEC packet too large: {len} bytes, at most {max} accepted")]
    TooLarge {
        /// Length of the rejected packet.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// The type field is neither 0xF1 (data) nor 0xF2 (parity): this is not an FEC packet.
    /// Check with [`is_fec_packet`](crate::is_fec_packet) first; a plain KCP packet goes
    /// straight to the engine.
    #[error("not an FEC packet: type field {kind:#06x}")]
    NotFec {
        /// The type field found at bytes 4..6.
        kind: u16,
    },
    /// An [`AdaptiveConfig`](crate::AdaptiveConfig) field is out of range; `reason` names it.
    /// Fix the configuration (the defaults are valid).
    #[error("invalid adaptive parity configuration: {reason}")]
    InvalidAdaptiveConfig {
        /// Which field is wrong and its valid range.
        reason: &'static str,
    },
}
