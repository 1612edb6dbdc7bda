//! The sender side (docs/wire-format.md#fec-encoder, kcp-go `fecEncoder`).

use crate::code::Code;
use crate::header::{FecHeader, HEADER_SIZE, HEADER_SIZE_PLUS2, PacketKind};
use crate::{FecError, MTU_LIMIT, gf};

/// Adds the kcp-go FEC header to every outgoing datagram and emits `ps` parity packets after
/// every `ds` data packets.
///
/// Parity is accumulated as each data packet passes (`parity_j ^= c_ji * payload_i`), so the
/// encoder keeps no copy of the group: its memory is `ps` buffers of about [`MTU_LIMIT`] bytes, reused
/// for every group. The bytes are identical to kcp-go's batch encode, which zero-pads every data
/// shard to the group's longest packet (zeros contribute nothing).
///
/// ```
/// use rkcp_fec::FecEncoder;
/// // (3,2) without crypto: 8 header bytes, then the KCP bytes (docs/wire-format.md#vectors).
/// let mut enc = FecEncoder::new(3, 2, 0).unwrap();
/// let mut parity = Vec::new();
/// for kcp in [&b"ABCDEFGHIJ"[..], b"xyz", b"0123456789abcdef"] {
///     let mut pkt = vec![0u8; 8];
///     pkt.extend_from_slice(kcp);
///     enc.encode(&mut pkt, |p| parity.push(p.to_vec()));
/// }
/// assert_eq!(parity.len(), 2);
/// assert_eq!(parity[0][..6], [3, 0, 0, 0, 0xF2, 0]); // seqid 3, parity
/// assert_eq!(parity[0].len(), 8 + 16); // as long as the longest packet of the group
/// ```
pub struct FecEncoder {
    code: Code,
    header_offset: usize,
    /// `header_offset + 6`: where the size field and the Reed–Solomon input start.
    payload_offset: usize,
    /// Protect Against Wrapped Sequence numbers: the largest multiple of ds+ps <= u32::MAX.
    paws: u32,
    next: u32,
    shard_count: usize,
    max_size: usize,
    /// One buffer per parity shard ([`MTU_LIMIT`] + 32 bytes), all zero between groups.
    parity: Vec<Vec<u8>>,
    /// A parity count to switch to at the next group boundary.
    pending: Option<Code>,
}

impl std::fmt::Debug for FecEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FecEncoder")
            .field("data_shards", &self.code.data_shards())
            .field("parity_shards", &self.code.parity_shards())
            .field("header_offset", &self.header_offset)
            .field("next_seqid", &self.next)
            .field("shard_count", &self.shard_count)
            .finish_non_exhaustive()
    }
}

/// Parity buffer length: [`MTU_LIMIT`] plus 32 bytes of slack, so the SIMD kernel can finish a
/// packet's tail with one full step (see `gf`).
const PARITY_BUF: usize = MTU_LIMIT + 32;

fn paws(total: usize) -> u32 {
    // total is in 2..=256, so the cast is exact and the division cannot be by zero.
    let n = total as u32;
    u32::MAX / n * n
}

impl FecEncoder {
    /// An encoder for groups of `data_shards` data and `parity_shards` parity packets, writing
    /// its header at `header_offset` of each datagram (0, or 20 behind kcp-go's crypt header).
    ///
    /// kcp-go creates no encoder when either count is 0; here that is
    /// [`FecError::InvalidShards`], as is a total above 256.
    pub fn new(
        data_shards: usize,
        parity_shards: usize,
        header_offset: usize,
    ) -> Result<Self, FecError> {
        if header_offset + HEADER_SIZE_PLUS2 > MTU_LIMIT {
            return Err(FecError::InvalidHeaderOffset {
                offset: header_offset,
                max: MTU_LIMIT,
            });
        }
        let code = Code::new(data_shards, parity_shards)?;
        Ok(FecEncoder {
            paws: paws(data_shards + parity_shards),
            parity: vec![vec![0u8; PARITY_BUF]; parity_shards],
            code,
            header_offset,
            payload_offset: header_offset + HEADER_SIZE,
            next: 0,
            shard_count: 0,
            max_size: 0,
            pending: None,
        })
    }

    /// Data shards per group.
    pub fn data_shards(&self) -> usize {
        self.code.data_shards()
    }

    /// Parity shards per group (the current group's; see [`FecEncoder::set_parity_shards`]).
    pub fn parity_shards(&self) -> usize {
        self.code.parity_shards()
    }

    /// The header offset given to [`FecEncoder::new`].
    pub fn header_offset(&self) -> usize {
        self.header_offset
    }

    /// The seqid the next packet will carry.
    pub fn next_seqid(&self) -> u32 {
        self.next
    }

    /// Changes the parity count from the next group boundary on (at once if no group is
    /// open). This is not in kcp-go: the adaptive policy ([`crate::AdaptiveParity`]) uses it.
    ///
    /// Only the sender's choice is on the wire, and receivers follow it through autotune
    /// (docs/wire-format.md#fec-autotune). Because receivers find a packet's group as
    /// `seqid - seqid % (ds + ps)`, the first seqid of the new setting is rounded up to a
    /// multiple of the new group size (wrapping to 0 past the new `paws`): seqids skip a few
    /// values, which receivers tolerate, and no group mixes packets of both settings.
    ///
    /// **Not safe towards kcp-go 5.6.1 with `ds > 1`.** Until its autotune has relocked (a clean
    /// run of a group in its ring; seconds at 10 % loss), it keeps grouping by the old size and
    /// rebuilds from shards of two groups. Parity row 0 is all ones, so such a rebuild can be the
    /// XOR of three segments of the conversation, whose conversation id and command survive the XOR;
    /// its KCP accepted one and delivered corrupt bytes (rkcp-session's interop test over a lossy
    /// path, 3 data shards). Our decoder does not rebuild until it trusts the shape again. With
    /// `ds = 1` every parity shard equals its data shard and any rebuild is a real datagram.
    pub fn set_parity_shards(&mut self, parity_shards: usize) -> Result<(), FecError> {
        if parity_shards == self.code.parity_shards() && self.pending.is_none() {
            return Ok(());
        }
        self.pending = Some(Code::new(self.code.data_shards(), parity_shards)?);
        if self.shard_count == 0 {
            self.apply_pending();
        }
        Ok(())
    }

    fn apply_pending(&mut self) {
        let Some(code) = self.pending.take() else {
            return;
        };
        if code.parity_shards() == self.code.parity_shards() {
            return;
        }
        let total = code.data_shards() + code.parity_shards();
        self.paws = paws(total);
        let n = total as u64;
        let aligned = u64::from(self.next).div_ceil(n) * n;
        self.next = if aligned >= u64::from(self.paws) {
            0
        } else {
            // aligned < paws <= u32::MAX.
            aligned as u32
        };
        self.parity
            .resize_with(code.parity_shards(), || vec![0u8; PARITY_BUF]);
        self.code = code;
    }

    /// Encodes one outgoing datagram in place and emits parity when it completes a group.
    ///
    /// `pkt` is the whole datagram: `header_offset` bytes (the crypt header's space), 8 bytes
    /// for seqid | type | size, then the KCP bytes. This writes seqid, type 0xF1 and
    /// `size = pkt.len() - header_offset - 6` (`docs/wire-format.md#fec-encoder`). When `pkt` is the group's `ds`-th data
    /// packet, `parity` is called once per parity packet with a buffer of the group's longest
    /// datagram length: `header_offset` bytes of unspecified content, then seqid | 0xF2 |
    /// parity bytes. The callee may modify it in place (encrypt it) and must copy what it keeps.
    /// Feed it every datagram the engine emits, pure ACKs included, in emission order.
    ///
    /// # Panics
    /// If `pkt` is shorter than `header_offset + 8` or longer than [`MTU_LIMIT`]: the session
    /// reserves the header space in every datagram and keeps the MTU below 1500, so this is a
    /// caller bug. [`FecEncoder::try_encode`] reports it as an error instead.
    pub fn encode<F: FnMut(&mut [u8])>(&mut self, pkt: &mut [u8], parity: F) {
        if let Err(e) = self.try_encode(pkt, parity) {
            panic!("FecEncoder::encode: {e}");
        }
    }

    /// [`FecEncoder::encode`], returning [`FecError::Truncated`] or [`FecError::TooLarge`]
    /// (and leaving the encoder unchanged) for a datagram of the wrong size.
    pub fn try_encode<F: FnMut(&mut [u8])>(
        &mut self,
        pkt: &mut [u8],
        mut parity: F,
    ) -> Result<(), FecError> {
        let min = self.header_offset + HEADER_SIZE_PLUS2;
        if pkt.len() < min {
            return Err(FecError::Truncated {
                len: pkt.len(),
                min,
            });
        }
        if pkt.len() > MTU_LIMIT {
            return Err(FecError::TooLarge {
                len: pkt.len(),
                max: MTU_LIMIT,
            });
        }
        FecHeader {
            seqid: self.next,
            kind: PacketKind::Data,
        }
        .encode(&mut pkt[self.header_offset..]);
        self.next = self.next.wrapping_add(1);
        // len <= 1500, so the size fits in u16.
        let size = (pkt.len() - self.payload_offset) as u16;
        pkt[self.payload_offset..self.payload_offset + 2].copy_from_slice(&size.to_le_bytes());

        gf::mul_acc_multi(
            self.code.parity_column(self.shard_count),
            &pkt[self.payload_offset..],
            &mut self.parity,
            self.payload_offset,
        );
        self.shard_count += 1;
        self.max_size = self.max_size.max(pkt.len());

        if self.shard_count == self.code.data_shards() {
            for buf in &mut self.parity {
                FecHeader {
                    seqid: self.next,
                    kind: PacketKind::Parity,
                }
                .encode(&mut buf[self.header_offset..]);
                // Seqids wrap only after a parity shard, so `seqid % (ds+ps)` stays the index.
                self.next = self.next.wrapping_add(1) % self.paws;
                parity(&mut buf[..self.max_size]);
                buf[..self.max_size].fill(0);
            }
            self.shard_count = 0;
            self.max_size = 0;
            self.apply_pending();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paws_for_10_3() {
        assert_eq!(paws(13), 4_294_967_287);
        let enc = FecEncoder::new(10, 3, 0).unwrap();
        assert_eq!(enc.paws, 4_294_967_287);
    }

    #[test]
    fn seqid_wraps_at_paws_only_after_parity() {
        let mut enc = FecEncoder::new(10, 3, 0).unwrap();
        enc.next = enc.paws - 13; // start of the last group before the wrap
        let hdr = |p: &[u8]| (u32::from_le_bytes([p[0], p[1], p[2], p[3]]), p[4]);
        let mut wire = Vec::new();
        for _ in 0..19 {
            let mut pkt = vec![0u8; 30];
            let mut par = Vec::new();
            enc.encode(&mut pkt, |p| par.push(hdr(p)));
            wire.push(hdr(&pkt));
            wire.extend(par);
        }
        // The group ends at paws-1 (a parity), then seqids restart at 0.
        let mut want = Vec::new();
        for k in 0..13 {
            want.push((enc.paws - 13 + k, if k < 10 { 0xF1 } else { 0xF2 }));
        }
        for k in 0..9 {
            want.push((k, 0xF1));
        }
        assert_eq!(wire, want);
        assert_eq!(enc.next_seqid(), 9);
    }

    #[test]
    fn rejects_bad_sizes_without_state_change() {
        let mut enc = FecEncoder::new(3, 2, 20).unwrap();
        assert!(matches!(
            enc.try_encode(&mut [0u8; 27], |_| {}),
            Err(FecError::Truncated { len: 27, min: 28 })
        ));
        assert!(matches!(
            enc.try_encode(&mut vec![0u8; 1501], |_| {}),
            Err(FecError::TooLarge { .. })
        ));
        assert_eq!(enc.next_seqid(), 0);
        assert!(enc.try_encode(&mut [0u8; 28], |_| {}).is_ok());
        assert!(FecEncoder::new(3, 2, 1493).is_err());
        assert!(FecEncoder::new(0, 2, 0).is_err());
    }

    #[test]
    fn parity_change_waits_for_group_boundary_and_realigns() {
        let mut enc = FecEncoder::new(10, 3, 0).unwrap();
        let mut parities = 0;
        for _ in 0..4 {
            enc.encode(&mut [0u8; 40], |_| parities += 1);
        }
        enc.set_parity_shards(2).unwrap();
        assert_eq!(enc.parity_shards(), 3, "group still open");
        for _ in 0..6 {
            enc.encode(&mut [0u8; 40], |_| parities += 1);
        }
        assert_eq!(parities, 3);
        assert_eq!(enc.parity_shards(), 2);
        // next was 13; rounded up to a multiple of 12.
        assert_eq!(enc.next_seqid(), 24);
        for _ in 0..10 {
            enc.encode(&mut [0u8; 40], |_| parities += 1);
        }
        assert_eq!(parities, 5);
        assert_eq!(enc.next_seqid(), 36);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use reed_solomon_erasure::galois_8::ReedSolomon;

    proptest! {
        /// Parity equals reed-solomon-erasure's own `encode` over the zero-padded shards
        /// (kcp-go's batch formulation), for ragged packet lengths and both header offsets.
        #[test]
        fn parity_matches_reed_solomon_erasure(
            ds in 1usize..14,
            ps in 1usize..6,
            offset in prop_oneof![Just(0usize), Just(20usize)],
            lens in proptest::collection::vec(0usize..1450, 14),
            seed: u8,
        ) {
            let mut enc = FecEncoder::new(ds, ps, offset).unwrap();
            let mut data = Vec::new();
            let mut parity = Vec::new();
            for (i, &len) in lens.iter().take(ds).enumerate() {
                let mut pkt: Vec<u8> = (0..offset + 8 + len).map(|k| (k as u8).wrapping_mul(seed | 1).wrapping_add(i as u8)).collect();
                enc.encode(&mut pkt, |p| parity.push(p.to_vec()));
                data.push(pkt);
            }
            let max = data.iter().map(Vec::len).max().unwrap();
            let po = offset + HEADER_SIZE;
            let mut shards: Vec<Vec<u8>> = data.iter().map(|d| {
                let mut s = d[po..].to_vec();
                s.resize(max - po, 0);
                s
            }).collect();
            shards.extend((0..ps).map(|_| vec![0u8; max - po]));
            ReedSolomon::new(ds, ps).unwrap().encode(&mut shards).unwrap();
            prop_assert_eq!(parity.len(), ps);
            for (j, p) in parity.iter().enumerate() {
                prop_assert_eq!(p.len(), max);
                prop_assert_eq!(&p[po..], &shards[ds + j][..]);
            }
        }
    }
}
