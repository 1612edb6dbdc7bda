//! The 6-byte FEC header (docs/wire-format.md#fec-header): `seqid` LE u32, `type` LE u16.
//!
//! Data packets follow it with a 2-byte `size` field (counting itself) and the KCP bytes;
//! parity packets follow it directly with the parity bytes.

use crate::FecError;

/// Length of the FEC header: seqid (4) + type (2).
pub const HEADER_SIZE: usize = 6;
/// Length of the FEC header plus the size field of data packets. Every FEC packet is at
/// least this long (a parity packet's first two parity bytes stand where the size is).
pub const HEADER_SIZE_PLUS2: usize = HEADER_SIZE + 2;
/// Type field of a data packet (kcp-go `typeData`).
pub const TYPE_DATA: u16 = 0xF1;
/// Type field of a parity packet (kcp-go `typeParity`).
pub const TYPE_PARITY: u16 = 0xF2;

/// Whether a packet is a data or a parity shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// 0xF1: carries `size` + KCP bytes; handed to KCP at once, whatever FEC does.
    Data,
    /// 0xF2: Reed–Solomon parity over the group's data shards.
    Parity,
}

impl PacketKind {
    /// The wire value of the type field.
    pub const fn wire(self) -> u16 {
        match self {
            PacketKind::Data => TYPE_DATA,
            PacketKind::Parity => TYPE_PARITY,
        }
    }

    /// Parses a type field; `None` when it is not an FEC type.
    pub const fn from_wire(kind: u16) -> Option<PacketKind> {
        match kind {
            TYPE_DATA => Some(PacketKind::Data),
            TYPE_PARITY => Some(PacketKind::Parity),
            _ => None,
        }
    }
}

/// A decoded FEC header.
///
/// ```
/// use rkcp_fec::{FecHeader, PacketKind};
/// let mut buf = [0u8; 6];
/// FecHeader { seqid: 7, kind: PacketKind::Parity }.encode(&mut buf);
/// assert_eq!(buf, [7, 0, 0, 0, 0xF2, 0]);
/// assert_eq!(FecHeader::decode(&buf).unwrap().seqid, 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FecHeader {
    /// Shard sequence number; `seqid % (ds + ps)` is the shard's index in its group.
    pub seqid: u32,
    /// Data or parity.
    pub kind: PacketKind,
}

impl FecHeader {
    /// Writes the 6 header bytes at the start of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than [`HEADER_SIZE`] (a caller bug: the encoder always reserves it).
    pub fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.seqid.to_le_bytes());
        out[4..6].copy_from_slice(&self.kind.wire().to_le_bytes());
    }

    /// Reads the header at the start of `pkt` (docs/wire-format.md#fec-header). Never panics.
    pub fn decode(pkt: &[u8]) -> Result<FecHeader, FecError> {
        let (Some(seq), Some(kind)) = (pkt.get(..4), pkt.get(4..6)) else {
            return Err(FecError::Truncated {
                len: pkt.len(),
                min: HEADER_SIZE,
            });
        };
        let seqid = u32::from_le_bytes([seq[0], seq[1], seq[2], seq[3]]);
        let kind = u16::from_le_bytes([kind[0], kind[1]]);
        match PacketKind::from_wire(kind) {
            Some(kind) => Ok(FecHeader { seqid, kind }),
            None => Err(FecError::NotFec { kind }),
        }
    }
}

/// Whether `pkt` (starting at the FEC header, crypt header already removed) is an FEC packet:
/// its LE16 at bytes 4..6 is 0xF1 or 0xF2 (docs/wire-format.md#session-input-dispatch).
///
/// A plain KCP segment never matches, because bytes 4 and 5 are its `cmd` (81..84) and
/// `frg`; kcp-go therefore auto-detects FEC per packet, whatever the local FEC setting.
///
/// ```
/// assert!(rkcp_fec::is_fec_packet(&[0, 0, 0, 0, 0xF1, 0, 2, 0]));
/// assert!(!rkcp_fec::is_fec_packet(&[1, 0, 0, 0, 81, 0, 0, 0])); // a KCP PUSH segment
/// assert!(!rkcp_fec::is_fec_packet(&[0, 0, 0, 0, 0xF1]));        // too short to tell
/// ```
pub fn is_fec_packet(pkt: &[u8]) -> bool {
    match pkt.get(4..6) {
        Some(t) => PacketKind::from_wire(u16::from_le_bytes([t[0], t[1]])).is_some(),
        None => false,
    }
}

/// What a received (already decrypted) datagram is, FEC-wise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified<'a> {
    /// No FEC header: the bytes are KCP segments.
    Plain(&'a [u8]),
    /// An FEC data shard: the KCP bytes after the header and its size field.
    Data(&'a [u8]),
    /// An FEC parity shard.
    Parity,
    /// An FEC data shard too short to hold its size field.
    Truncated,
}

/// Tells a plain KCP datagram from an FEC data or parity shard (kcp-go `kcpInput`'s type
/// check), and finds the KCP bytes of a data shard. Never panics.
///
/// ```
/// use rkcp_fec::{Classified, classify};
/// assert_eq!(classify(&[0, 0, 0, 0, 0xF2, 0, 9, 9]), Classified::Parity);
/// assert_eq!(classify(&[0, 0, 0, 0, 0xF1, 0, 2, 0, 7]), Classified::Data(&[7]));
/// assert_eq!(classify(&[1, 0, 0, 0, 81, 0]), Classified::Plain(&[1, 0, 0, 0, 81, 0]));
/// ```
pub fn classify(pkt: &[u8]) -> Classified<'_> {
    let kind = pkt
        .get(4..6)
        .and_then(|t| PacketKind::from_wire(u16::from_le_bytes([t[0], t[1]])));
    match kind {
        None => Classified::Plain(pkt),
        Some(PacketKind::Parity) => Classified::Parity,
        Some(PacketKind::Data) => match pkt.get(HEADER_SIZE_PLUS2..) {
            Some(kcp) => Classified::Data(kcp),
            None => Classified::Truncated,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn classify_agrees_with_is_fec_packet(pkt in proptest::collection::vec(any::<u8>(), 0..40)) {
            let c = classify(&pkt);
            prop_assert_eq!(matches!(c, Classified::Plain(_)), !is_fec_packet(&pkt));
            if let Classified::Data(kcp) = c {
                prop_assert_eq!(kcp.len() + HEADER_SIZE_PLUS2, pkt.len());
            }
        }
    }

    proptest! {
        #[test]
        fn header_round_trip(seqid: u32, parity: bool, tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let kind = if parity { PacketKind::Parity } else { PacketKind::Data };
            let mut buf = vec![0u8; HEADER_SIZE];
            FecHeader { seqid, kind }.encode(&mut buf);
            buf.extend_from_slice(&tail);
            prop_assert!(is_fec_packet(&buf));
            prop_assert_eq!(FecHeader::decode(&buf).unwrap(), FecHeader { seqid, kind });
        }

        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let ok = FecHeader::decode(&bytes).is_ok();
            prop_assert_eq!(ok, is_fec_packet(&bytes));
        }
    }

    #[test]
    fn kcp_commands_are_never_fec() {
        for cmd in 81u8..=84 {
            for frg in 0..=255u8 {
                assert!(!is_fec_packet(&[0, 0, 0, 0, cmd, frg, 0, 0]));
            }
        }
    }
}
