//! The layers around KCP in a datagram: opening (crypt), FEC classification, conversation recovery, and the
//! output pipeline (FEC header in place, then nonce + CRC + cipher). FEC and KCP bytes are read only through
//! their own crates' codecs ([`rkcp_fec::classify`], [`rkcp_engine::segment`]).

use std::ops::Range;

use rkcp_crypt::{CryptError, PacketCrypt, SessionOpener, SessionSealer};

use crate::proto::afec::FecSender;
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
    /// A conversation that is live at another address, or was recently, and the datagram shows nothing
    /// newer than what its connection has seen: a replay, or a late datagram from a peer's old address.
    Stale,
    /// From an unknown path, and not a session start (its peer has already received data from us).
    NotAStart,
    /// A new peer too small to answer with an address check while the unverified limits were reached.
    Unverified,
    /// AEAD kinds: a counter already seen in its session, or a session start whose id was seen before.
    Replayed,
    /// AEAD kinds: a session start whose id is outside the freshness window (or from before the listener
    /// started): an old replay, a client clock far off, or garbage.
    NotFresh,
    /// A new peer while the accept backlog was full.
    BacklogFull,
    /// A new peer while the connection cap was reached.
    SessionCap,
    /// A new peer after the endpoint stopped accepting.
    NotAccepting,
}

/// Removes the crypt layer of a received datagram with a session's (or a listener's) opener, in place, and
/// checks that a KCP header can follow. Returns where the opened bytes are in `pkt`, and whether the datagram
/// is newer than any this opener opened before (always true for kcp-go ciphers, which carry no counter).
pub(crate) fn open_with(
    opener: Option<&mut SessionOpener>,
    pkt: &mut [u8],
) -> Result<(Range<usize>, bool), DropReason> {
    let (range, newest) = match opener {
        Some(o) => match o.open(pkt) {
            Ok(opened) if opened.payload.end <= pkt.len() => (opened.payload, opened.newest),
            Ok(_) | Err(CryptError::TooShort { .. }) => return Err(DropReason::Short),
            Err(CryptError::Replayed { .. }) => return Err(DropReason::Replayed),
            Err(_) => return Err(DropReason::Checksum),
        },
        None => (0..pkt.len(), true),
    };
    if range.len() < rkcp_engine::OVERHEAD {
        return Err(DropReason::Short);
    }
    Ok((range, newest))
}

/// Sealing and opening halves of a kcp-go cipher on a listener: one cipher for every session, no per-session
/// state, so the session ids are unused.
pub(crate) fn kcp_go_halves(pc: &PacketCrypt) -> (SessionSealer, SessionOpener) {
    let unused = rkcp_crypt::SessionId::from_bytes([0; 16]);
    pc.server_session(unused, unused).split()
}

/// Writes over `pkt` a sealed datagram holding one echo request (a stateless address check) and returns its
/// length; `None` if `pkt` is too small to hold it (the answer is never larger than what came in).
pub(crate) fn seal_echo_request(
    crypt: Option<&PacketCrypt>,
    pkt: &mut [u8],
    conv: u32,
    cookie: u32,
    wnd: u16,
) -> Option<usize> {
    let (head, tail) = crypt.map_or((0, 0), |c| (c.header_len(), c.trailer_len()));
    let n = head + rkcp_engine::OVERHEAD + tail;
    let out = pkt.get_mut(..n)?;
    rkcp_engine::encode_echo_request(&mut out[head..], conv, cookie, wnd, 0);
    if let Some(c) = crypt {
        c.seal(out);
    }
    Some(n)
}

/// One engine datagram through FEC and the cipher into the send queue.
///
/// `buf` is `reserved` bytes of space (crypt head + FEC header + crypt tail), then KCP segments. The datagram
/// sent is `buf[crypt_tail..]` followed by `crypt_tail` bytes of tag space, so its length is `buf.len()` and
/// it never exceeds the MTU; with a kcp-go cipher (`crypt_tail == 0`) it is exactly `buf`. Parity packets
/// follow the data packet that completed their group, each sent as many times as [`FecSender::copies`]
/// says (adaptive FEC with one data shard), every copy sealed on its own.
pub(crate) fn emit(
    fec: Option<&mut FecSender>,
    mut crypt: Option<&mut SessionSealer>,
    tx: &mut TxQueue,
    crypt_tail: usize,
    buf: &mut [u8],
) {
    let len = buf.len();
    let pkt = &mut buf[crypt_tail..];
    // Reserve the data packet's slot first so that parity packets, produced while encoding, follow it.
    let slot = tx.len();
    tx.push(len);
    if let Some(fec) = fec {
        let copies = fec.copies();
        fec.encoder().encode(pkt, |parity: &mut [u8]| {
            for _ in 0..copies {
                let p = tx.push(parity.len() + crypt_tail);
                p[..parity.len()].copy_from_slice(parity);
                if let Some(c) = crypt.as_deref_mut() {
                    c.seal(p);
                }
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
    use rkcp_crypt::CipherKind;

    #[test]
    fn an_echo_request_opens_to_one_segment_and_never_outgrows_its_trigger() {
        for crypt in [None, Some(PacketCrypt::new(CipherKind::Aes, &[3u8; 32]))] {
            let head = crypt.as_ref().map_or(0, |c| c.overhead());
            let mut small = vec![0u8; head + 23];
            assert_eq!(
                seal_echo_request(crypt.as_ref(), &mut small, 9, 77, 16),
                None
            );
            let mut pkt = vec![0u8; 1400];
            let n = seal_echo_request(crypt.as_ref(), &mut pkt, 9, 77, 16).unwrap();
            assert_eq!(n, head + 24);
            let mut opener = crypt.as_ref().map(|c| kcp_go_halves(c).1);
            let (r, _) = open_with(opener.as_mut(), &mut pkt[..n]).unwrap();
            let h = rkcp_engine::SegmentHeader::decode(&pkt[r]).unwrap();
            assert_eq!(
                (h.conv, h.sn, h.ts, h.wnd, h.len),
                (9, rkcp_engine::ECHO_SN, 77, 16, 0)
            );
        }
        // Garbage never opens to less than a header.
        for len in 0..40 {
            let _ = open_with(None, &mut vec![0xF1; len]);
        }
    }
}
