//! Reed–Solomon forward error correction in the exact kcp-go 5.6.1 packet format
//! (docs/wire-format.md#fec).
//!
//! The sender wraps every outgoing KCP datagram in a 6-byte header (seqid, type 0xF1) plus a
//! 2-byte size field, and after every `ds` data packets sends `ps` parity packets (type 0xF2)
//! computed over the group with GF(2^8) Reed–Solomon (generator 0x11D, Backblaze systematic
//! Vandermonde matrix, exactly as klauspost/reedsolomon and `reed-solomon-erasure`). The receiver
//! rebuilds lost data packets as soon as any `ds` shards of a group arrived, and detects the
//! sender's (ds, ps) by itself (autotune), so each direction chooses its parameters
//! independently.
//!
//! * [`FecEncoder`] — `#fec-encoder`: header written in place (at offset 0, or 20 behind the crypt
//!   header), parity emitted through a callback, no allocation per packet.
//! * [`FecDecoder`] — `#fec-decoder`, `#fec-autotune`: ordered receive window, duplicate detection, reconstruction,
//!   size validation, 60 s expiry, autotune. Bounded memory, never panics on input.
//! * [`AdaptiveParity`] — not in kcp-go: a sender-side policy choosing `ps` from the observed
//!   loss. The session applies it to one data shard only, as copies of a fixed (1, 1) shape,
//!   which kcp-go decodes; see [`FecEncoder::set_parity_shards`] for why shape changes are not
//!   safe towards kcp-go with more data shards.
//!
//! ```
//! use rkcp_fec::{FecDecoder, FecEncoder, HEADER_SIZE_PLUS2};
//!
//! let mut enc = FecEncoder::new(10, 3, 0).unwrap();
//! let mut dec = FecDecoder::new(10, 3).unwrap();
//! let mut wire = Vec::new();
//! for i in 0..10u8 {
//!     // The session reserves the header space in front of the KCP bytes.
//!     let mut pkt = vec![0u8; HEADER_SIZE_PLUS2 + 24];
//!     pkt[HEADER_SIZE_PLUS2..].fill(i);
//!     let mut parity = Vec::new();
//!     enc.encode(&mut pkt, |p| parity.push(p.to_vec()));
//!     wire.push(pkt); // the data packet goes first, then any parity it completed
//!     wire.append(&mut parity);
//! }
//! assert_eq!(wire.len(), 13);
//! // Lose data packet 4: the 10th shard to arrive (the first parity) rebuilds it.
//! let mut rebuilt = Vec::new();
//! for (k, pkt) in wire.iter().enumerate().filter(|&(k, _)| k != 4) {
//!     assert!(rkcp_fec::is_fec_packet(pkt));
//!     dec.decode(0, pkt, |kcp| rebuilt.push(kcp.to_vec())).unwrap();
//! }
//! assert_eq!(rebuilt, [vec![4u8; 24]]);
//! ```

mod adaptive;
mod autotune;
mod code;
mod decoder;
mod encoder;
mod error;
mod gf;
mod header;

pub use adaptive::{AdaptiveConfig, AdaptiveParity};
pub use decoder::{DecodeOutcome, FecDecoder};
pub use encoder::FecEncoder;
pub use error::FecError;
pub use header::{
    Classified, FecHeader, HEADER_SIZE, HEADER_SIZE_PLUS2, PacketKind, TYPE_DATA, TYPE_PARITY,
    classify, is_fec_packet,
};

/// kcp-go `mtuLimit`: the largest datagram kcp-go reads or builds. Longer FEC packets are
/// rejected, which bounds the decoder's memory.
pub const MTU_LIMIT: usize = 1500;
/// kcp-go `fecExpire`: shards waiting longer than this many ms are dropped from the window.
pub const FEC_EXPIRE_MS: u32 = 60_000;
/// kcp-go `rxFECMulti`: the receive window holds at most this many groups' worth of shards.
pub const RX_FEC_MULTI: usize = 3;
