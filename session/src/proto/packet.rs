//! The layers around KCP in a datagram: opening (crypt), FEC classification, conversation recovery, and the
//! output pipeline (FEC header in place, then nonce + CRC + cipher). FEC and KCP bytes are read only through
//! their own crates' codecs ([`rkcp_fec::classify`], [`rkcp_engine::segment::conv_and_sn`]).

use rkcp_crypt::{CryptError, PacketCrypt};
use rkcp_fec::{Classified, FecEncoder};

use crate::udp::TxQueue;

/// Why a datagram was dropped before reaching a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DropReason {
    /// Shorter than the crypt header, or than one KCP segment header after it.
    Short,
    /// CRC mismatch (kcp-go ciphers) or failed authentication (AEAD): wrong key, corruption or foreign
    /// traffic.
    Checksum,
    /// From an unknown address, and not a packet that can start a connection (FEC parity, short FEC data).
    UnknownPeer,
    /// From a known address with another conversation id and `sn != 0`.
    ConvMismatch,
    /// A new peer while the accept backlog was full.
    BacklogFull,
    /// A new peer while the connection cap was reached.
    SessionCap,
    /// A new peer after the endpoint stopped accepting.
    NotAccepting,
}

/// Removes the crypt layer of a received datagram and checks that a KCP header can follow. Returns the
/// opened bytes (FEC header, if any, included).
pub(crate) fn open_datagram<'a>(
    crypt: Option<&PacketCrypt>,
    pkt: &'a mut [u8],
) -> Result<&'a [u8], DropReason> {
    let data: &'a [u8] = match crypt {
        Some(c) => {
            if pkt.len() < c.overhead() {
                return Err(DropReason::Short);
            }
            match c.open(pkt) {
                Ok(r) => pkt.get(r).ok_or(DropReason::Short)?,
                Err(CryptError::TooShort { .. }) => return Err(DropReason::Short),
                Err(_) => return Err(DropReason::Checksum),
            }
        }
        None => pkt,
    };
    if data.len() < rkcp_engine::OVERHEAD {
        return Err(DropReason::Short);
    }
    Ok(data)
}

/// conv and sn of the first segment of an opened datagram, when they can be read (kcp-go's listener reads
/// them from plain datagrams and FEC data shards, never from parity).
pub(crate) fn conv_and_sn(data: &[u8]) -> Option<(u32, u32)> {
    match rkcp_fec::classify(data) {
        Classified::Plain(kcp) | Classified::Data(kcp) => rkcp_engine::segment::conv_and_sn(kcp),
        Classified::Parity | Classified::Truncated => None,
    }
}

/// One engine datagram through FEC and the cipher into the send queue.
///
/// `buf` is `reserved` bytes of space (crypt head + FEC header + crypt tail), then KCP segments. The datagram
/// sent is `buf[crypt_tail..]` followed by `crypt_tail` bytes of tag space, so its length is `buf.len()` and
/// it never exceeds the MTU; with a kcp-go cipher (`crypt_tail == 0`) it is exactly `buf`. Parity packets
/// follow the data packet that completed their group.
pub(crate) fn emit(
    fec_enc: &mut Option<Box<FecEncoder>>,
    crypt: Option<&PacketCrypt>,
    tx: &mut TxQueue,
    crypt_tail: usize,
    buf: &mut [u8],
) {
    let len = buf.len();
    let pkt = &mut buf[crypt_tail..];
    // Reserve the data packet's slot first so that parity packets, produced while encoding, follow it.
    let slot = tx.len();
    tx.push(len);
    if let Some(enc) = fec_enc.as_mut() {
        enc.encode(pkt, |parity: &mut [u8]| {
            let p = tx.push(parity.len() + crypt_tail);
            p[..parity.len()].copy_from_slice(parity);
            if let Some(c) = crypt {
                c.seal(p);
            }
        });
    }
    let out = tx.get_mut(slot);
    out[..len - crypt_tail].copy_from_slice(pkt);
    if let Some(c) = crypt {
        c.seal(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kcp_pkt(conv: u32, sn: u32) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        p[0..4].copy_from_slice(&conv.to_le_bytes());
        p[4] = 81;
        p[12..16].copy_from_slice(&sn.to_le_bytes());
        p
    }

    fn fec_pkt(kind: u16, inner: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 8];
        p[4..6].copy_from_slice(&kind.to_le_bytes());
        p.extend_from_slice(inner);
        p
    }

    #[test]
    fn conv_recovery_like_kcp_go() {
        assert_eq!(conv_and_sn(&kcp_pkt(7, 5)), Some((7, 5)));
        assert_eq!(
            conv_and_sn(&fec_pkt(rkcp_fec::TYPE_DATA, &kcp_pkt(9, 0))),
            Some((9, 0))
        );
        assert_eq!(
            conv_and_sn(&fec_pkt(rkcp_fec::TYPE_PARITY, &[0u8; 30])),
            None
        );
        assert_eq!(conv_and_sn(&fec_pkt(rkcp_fec::TYPE_DATA, &[0u8; 20])), None);
        for len in 0..40 {
            let _ = conv_and_sn(&vec![0xF1; len]);
        }
    }
}
