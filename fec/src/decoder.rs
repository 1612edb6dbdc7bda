//! The receiver side (docs/wire-format.md#fec-decoder, kcp-go `fecDecoder`, with `#fec-autotune`).

use std::collections::VecDeque;

use crate::autotune::AutoTune;
use crate::code::{Code, ShardSet, set_insert};
use crate::header::{FecHeader, HEADER_SIZE, HEADER_SIZE_PLUS2, PacketKind};
use crate::{FEC_EXPIRE_MS, FecError, MTU_LIMIT, RX_FEC_MULTI, gf};

/// What one [`FecDecoder::decode`] call did, for the session's SNMP counters (docs/wire-format.md#session-snmp).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeOutcome {
    /// Data packets rebuilt with a valid size field and handed to the callback
    /// (kcp-go counts those KCP accepts as `FECRecovered`).
    pub recovered: usize,
    /// Rebuilt packets whose size field was invalid (`FECErrs`): not handed over.
    pub fec_errs: usize,
    /// Data shards evicted from the receive window unrecovered (`FECShortShards`).
    pub short_shards: usize,
    /// Entries dropped because they waited longer than 60 s.
    pub expired: usize,
    /// The packet's seqid was already in the window: it was ignored. A duplicate data
    /// packet is still handed to KCP by the session, as kcp-go does (KCP discards it).
    pub duplicate: bool,
    /// Autotune switched the decoder to these (ds, ps) while handling this packet.
    pub retuned: Option<(usize, usize)>,
}

#[derive(Debug)]
struct Entry {
    seqid: u32,
    kind: PacketKind,
    ts: u32,
    /// The whole packet from the seqid on; `buf[6..]` is the Reed–Solomon shard.
    buf: Vec<u8>,
}

/// Freed packet buffers kept for reuse; more than this are released.
const POOL_MAX: usize = 64;

/// Wrap-aware `a - b` (kcp-go `_itimediff`).
fn diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Rebuilds lost data packets from the kcp-go FEC stream.
///
/// Differences from kcp-go, none visible on the wire: after a packet contradicts the assumed
/// (ds, ps) (a data type at a parity position or the reverse), no shards are combined until
/// autotune has established the parameters again and a whole group of agreeing packets has
/// followed, nor in a group whose types contradict their positions, so an unsynchronised
/// decoder never hands KCP garbage; packets longer than 1500 bytes are rejected; a retune to a
/// total above 256 shards is ignored.
///
/// Keeps an ordered window of received shards (at most `3 x (ds + ps)` entries of at most
/// [`MTU_LIMIT`] bytes each, entries older than 60 s dropped), rebuilds a group's missing data
/// packets as soon as any `ds` of its shards are present, and follows the sender's (ds, ps)
/// through autotune. A session with FEC off locally starts one at (1, 1) when the first FEC
/// packet arrives (docs/wire-format.md#session-input), and it locks on within a few groups.
///
/// Memory is bounded whatever the peer sends: the window (at most 768 entries, since ds + ps
/// <= 256), a pool of 64 reusable buffers, and a 64 KiB cache of decode coefficients.
///
/// ```
/// use rkcp_fec::{FecDecoder, FecEncoder};
/// let mut enc = FecEncoder::new(3, 2, 0).unwrap();
/// let mut wire = Vec::new();
/// for kcp in [&b"ABCDEFGHIJ"[..], b"xyz", b"0123456789abcdef"] {
///     let mut pkt = vec![0u8; 8];
///     pkt.extend_from_slice(kcp);
///     let mut parity = Vec::new();
///     enc.encode(&mut pkt, |p| parity.push(p.to_vec()));
///     wire.push(pkt);
///     wire.append(&mut parity);
/// }
/// // Lose data1 and data2; data0 + both parity shards rebuild them.
/// let mut dec = FecDecoder::new(3, 2).unwrap();
/// let mut rebuilt = Vec::new();
/// for pkt in [&wire[0], &wire[3], &wire[4]] {
///     dec.decode(0, pkt, |kcp| rebuilt.push(kcp.to_vec())).unwrap();
/// }
/// assert_eq!(rebuilt, [b"xyz".to_vec(), b"0123456789abcdef".to_vec()]);
/// ```
pub struct FecDecoder {
    code: Code,
    shard_size: usize,
    rxlimit: usize,
    rx: VecDeque<Entry>,
    pool: Vec<Vec<u8>>,
    tune: AutoTune,
    /// Rebuilt packet under construction.
    scratch: Vec<u8>,
    /// Per shard slot of the group being assembled: its index in `rx`.
    slots: Vec<Option<usize>>,
    chosen: Vec<usize>,
    /// Packets agreeing with (ds, ps) still needed before reconstruction resumes.
    quiet: usize,
    /// Whether (ds, ps) are believed to be the sender's: the constructor's values (as kcp-go
    /// trusts them), or autotune's detection. Cleared by a contradicting packet that autotune
    /// could not explain.
    trusted: bool,
}

impl std::fmt::Debug for FecDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FecDecoder")
            .field("data_shards", &self.code.data_shards())
            .field("parity_shards", &self.code.parity_shards())
            .field("rx_len", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl FecDecoder {
    /// A decoder expecting groups of `data_shards` + `parity_shards` (autotune corrects them if
    /// the sender uses others). Both must be >= 1 and sum to at most 256.
    pub fn new(data_shards: usize, parity_shards: usize) -> Result<Self, FecError> {
        let code = Code::new(data_shards, parity_shards)?;
        let shard_size = data_shards + parity_shards;
        Ok(FecDecoder {
            code,
            shard_size,
            rxlimit: RX_FEC_MULTI * shard_size,
            rx: VecDeque::new(),
            pool: Vec::new(),
            tune: AutoTune::default(),
            scratch: Vec::with_capacity(MTU_LIMIT + 32),
            slots: vec![None; shard_size],
            chosen: Vec::with_capacity(data_shards),
            quiet: 0,
            trusted: true,
        })
    }

    /// Data shards per group currently assumed.
    pub fn data_shards(&self) -> usize {
        self.code.data_shards()
    }

    /// Parity shards per group currently assumed.
    pub fn parity_shards(&self) -> usize {
        self.code.parity_shards()
    }

    /// Shards waiting in the receive window.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }

    /// Handles one received FEC packet (docs/wire-format.md#fec-decoder).
    ///
    /// `pkt` starts at the FEC header (crypt header already removed); `now` is the caller's
    /// clock in ms (wrapping), used for the 60 s expiry. `recovered` is called with the KCP
    /// bytes of each rebuilt data packet (`r[2..size]`, the size field validated); feed them to
    /// KCP as `Freshness::Stale` (kcp-go `regular = false`). The data packet itself is not handed back: the session gives
    /// `pkt[8..]` to KCP at once, as kcp-go does, whatever this returns.
    ///
    /// Errors reject the packet before it touches any state: shorter than 8 bytes, longer
    /// than [`MTU_LIMIT`], or not type 0xF1/0xF2. Never panics.
    pub fn decode<F: FnMut(&[u8])>(
        &mut self,
        now: u32,
        pkt: &[u8],
        mut recovered: F,
    ) -> Result<DecodeOutcome, FecError> {
        self.decode_full(now, pkt, |r| {
            // docs/wire-format.md#session-input: 2 <= size <= len(r), else FECErrs.
            let Some(&[lo, hi]) = r.get(..2) else {
                return false;
            };
            let sz = usize::from(u16::from_le_bytes([lo, hi]));
            match r.get(2..sz) {
                Some(kcp) if sz >= 2 => {
                    recovered(kcp);
                    true
                }
                _ => false,
            }
        })
    }

    /// [`FecDecoder::decode`] handing out each rebuilt shard whole (size field and zero
    /// padding included, as kcp-go's `decode` returns it); `emit` says whether its size field
    /// was valid.
    fn decode_full<F: FnMut(&[u8]) -> bool>(
        &mut self,
        now: u32,
        pkt: &[u8],
        mut recovered: F,
    ) -> Result<DecodeOutcome, FecError> {
        if pkt.len() < HEADER_SIZE_PLUS2 {
            return Err(FecError::Truncated {
                len: pkt.len(),
                min: HEADER_SIZE_PLUS2,
            });
        }
        if pkt.len() > MTU_LIMIT {
            return Err(FecError::TooLarge {
                len: pkt.len(),
                max: MTU_LIMIT,
            });
        }
        let FecHeader { seqid, kind } = FecHeader::decode(pkt)?;
        let mut out = DecodeOutcome::default();

        // 1. autotune (`#fec-autotune`)
        let is_data = kind == PacketKind::Data;
        self.tune.sample(is_data, seqid);
        if self.is_data_position(seqid) != is_data {
            // Beyond kcp-go: the stream contradicts our (ds, ps), so groups may not be where we
            // think they are, and rebuilding would combine shards with the wrong coefficients,
            // handing KCP garbage whenever a size field happens to look valid (kcp-go does
            // that while it has not locked on, e.g. a (1,1) decoder facing 10/3). Rebuild
            // again only once autotune has (re)established the parameters and a whole group of
            // agreeing packets has followed.
            self.trusted = self.try_retune(&mut out);
            self.quiet = self.shard_size;
        } else if self.quiet > 0 {
            self.quiet -= 1;
        } else if !self.trusted {
            let detected = (self.tune.find_period(true), self.tune.find_period(false));
            self.trusted = usize::try_from(detected.0).ok() == Some(self.code.data_shards())
                && usize::try_from(detected.1).ok() == Some(self.code.parity_shards());
        }

        // 2. ordered insertion, duplicates ignored
        let mut insert_idx = 0;
        for (i, e) in self.rx.iter().enumerate().rev() {
            if e.seqid == seqid {
                out.duplicate = true;
                return Ok(out);
            }
            if diff(seqid, e.seqid) > 0 {
                insert_idx = i + 1;
                break;
            }
        }
        let mut buf = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MTU_LIMIT));
        buf.clear();
        buf.extend_from_slice(pkt);
        self.rx.insert(
            insert_idx,
            Entry {
                seqid,
                kind,
                ts: now,
                buf,
            },
        );

        // 3.-4. try to complete the packet's group
        self.try_group(seqid, insert_idx, &mut out, &mut recovered);

        // 5. window cap: one entry per call, as kcp-go
        if self.rx.len() > self.rxlimit
            && let Some(e) = self.rx.pop_front()
        {
            if e.kind == PacketKind::Data {
                out.short_shards += 1;
            }
            self.recycle(e.buf);
        }

        // 6. expiry
        while let Some(e) = self.rx.front() {
            if diff(now, e.ts) <= FEC_EXPIRE_MS as i32 {
                break;
            }
            if let Some(e) = self.rx.pop_front() {
                out.expired += 1;
                self.recycle(e.buf);
            }
        }
        Ok(out)
    }

    fn is_data_position(&self, seqid: u32) -> bool {
        // shard_size is in 2..=256.
        (seqid % self.shard_size as u32) < self.code.data_shards() as u32
    }

    /// `#fec-autotune` retune; returns whether the parameters were changed to detected ones.
    fn try_retune(&mut self, out: &mut DecodeOutcome) -> bool {
        let ds = self.tune.find_period(true);
        let ps = self.tune.find_period(false);
        if !(1..256).contains(&ds) || !(1..256).contains(&ps) {
            return false;
        }
        // In 1..256, so the casts are exact.
        let (ds, ps) = (ds as usize, ps as usize);
        if (ds, ps) == (self.code.data_shards(), self.code.parity_shards()) {
            return false;
        }
        // kcp-go leaves its old codec in place if the new one cannot be built (a sum above
        // 256); keep all the old parameters instead, consistently.
        let Ok(code) = Code::new(ds, ps) else {
            return false;
        };
        self.code = code;
        self.shard_size = ds + ps;
        self.rxlimit = RX_FEC_MULTI * self.shard_size;
        self.slots = vec![None; self.shard_size];
        out.retuned = Some((ds, ps));
        true
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX {
            self.pool.push(buf);
        }
    }

    /// Steps 3 and 4 of `docs/wire-format.md#fec-decoder` for the group of `seqid`, just inserted at `insert_idx`.
    fn try_group<F: FnMut(&[u8]) -> bool>(
        &mut self,
        seqid: u32,
        insert_idx: usize,
        out: &mut DecodeOutcome,
        recovered: &mut F,
    ) {
        let n = self.shard_size;
        let ds = self.code.data_shards();
        let pos_in_group = (seqid % n as u32) as usize;
        let begin = seqid.wrapping_sub(pos_in_group as u32);
        let end = begin.wrapping_add(n as u32 - 1);
        let search_begin = insert_idx.saturating_sub(pos_in_group);
        let search_end = (search_begin + n - 1).min(self.rx.len() - 1);
        if search_end + 1 - search_begin < ds {
            return;
        }

        self.slots.iter_mut().for_each(|s| *s = None);
        let (mut numshard, mut num_data, mut maxlen) = (0usize, 0usize, 0usize);
        let (mut first, mut last) = (usize::MAX, 0usize);
        // Beyond kcp-go: a shard whose type contradicts its position (the sender's parameters
        // changed and autotune has not caught up) must not be combined with the wrong
        // coefficients, which would hand KCP garbage with a plausible size field.
        let mut consistent = true;
        for i in search_begin..=search_end {
            let Some(e) = self.rx.get(i) else { break };
            if diff(e.seqid, end) > 0 {
                break;
            }
            if diff(e.seqid, begin) < 0 {
                continue;
            }
            let slot = (e.seqid % n as u32) as usize;
            let Some(s) = self.slots.get_mut(slot) else {
                continue;
            };
            if s.is_some() {
                continue;
            }
            *s = Some(i);
            numshard += 1;
            if e.kind == PacketKind::Data {
                num_data += 1;
            }
            if (e.kind == PacketKind::Data) != (slot < ds) {
                consistent = false;
            }
            first = first.min(i);
            last = i;
            maxlen = maxlen.max(e.buf.len() - HEADER_SIZE);
        }

        if num_data == ds {
            // Nothing lost in this group.
            self.free_range(first, last);
        } else if numshard >= ds && consistent && self.quiet == 0 && self.trusted {
            self.rebuild(maxlen, out, recovered);
            self.free_range(first, last);
        }
    }

    /// Rebuilds every missing data slot of the assembled group from its first `ds` shards.
    fn rebuild<F: FnMut(&[u8]) -> bool>(
        &mut self,
        maxlen: usize,
        out: &mut DecodeOutcome,
        recovered: &mut F,
    ) {
        let ds = self.code.data_shards();
        let mut set: ShardSet = [0; 4];
        self.chosen.clear();
        for (slot, s) in self.slots.iter().enumerate() {
            if s.is_some() && self.chosen.len() < ds {
                self.chosen.push(slot);
                set_insert(&mut set, slot);
            }
        }
        let Some(rows) = self.code.decode_rows(&set, &self.chosen) else {
            return;
        };
        let mut row = 0;
        for s in self.slots.iter().take(ds) {
            if s.is_some() {
                continue;
            }
            let Some(coefs) = rows.get(row * ds..(row + 1) * ds) else {
                return;
            };
            row += 1;
            self.scratch.clear();
            // 32 bytes of zero slack let the SIMD kernel finish each shard's tail in one step.
            self.scratch.resize(maxlen + 32, 0);
            for (&c, &idx) in coefs.iter().zip(&self.chosen) {
                let Some(e) = self
                    .slots
                    .get(idx)
                    .copied()
                    .flatten()
                    .and_then(|i| self.rx.get(i))
                else {
                    continue;
                };
                // Every shard is at most maxlen long.
                gf::mul_acc(c, &e.buf[HEADER_SIZE..], &mut self.scratch);
            }
            if recovered(&self.scratch[..maxlen]) {
                out.recovered += 1;
            } else {
                out.fec_errs += 1;
            }
        }
    }

    fn free_range(&mut self, first: usize, last: usize) {
        if first > last || last >= self.rx.len() {
            return;
        }
        let pool = &mut self.pool;
        for e in self.rx.drain(first..=last) {
            if pool.len() < POOL_MAX {
                pool.push(e.buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// docs/wire-format.md#vectors: data0 + parity0 + parity1 rebuild data1 and data2, whole buffers
    /// (size field and zero padding to maxlen 18 included), as kcp-go returns them.
    #[test]
    fn appendix_g_rebuild_is_byte_exact() {
        let data0 = hex("00000000 f100 0c00 4142434445464748494a");
        let parity0 = hex("03000000 f200 1b00090a0b777173717f7173616263646566");
        let parity1 = hex("04000000 f200 0000afb0ad716c7b7e2d00175b5157454349");
        let mut dec = FecDecoder::new(3, 2).unwrap();
        let mut rebuilt = Vec::new();
        for pkt in [&data0, &parity0, &parity1] {
            let out = dec
                .decode_full(0, pkt, |r| {
                    rebuilt.push(r.to_vec());
                    true
                })
                .unwrap();
            assert_eq!(out.fec_errs, 0);
        }
        assert_eq!(
            rebuilt,
            [
                hex("050078797a00000000000000000000000000"),
                hex("120030313233343536373839616263646566"),
            ]
        );
        assert_eq!(dec.pending(), 0, "the completed group is freed");
    }

    #[test]
    fn invalid_rebuilt_size_counts_as_fec_err() {
        // A (3,2) group whose data1 carries size 0xFFFF (longer than the shard), with parity
        // consistent with it: rebuilding data1 yields that size, which must be rejected.
        let mut enc = crate::FecEncoder::new(3, 2, 0).unwrap();
        let mut wire = Vec::new();
        for len in [10usize, 4, 12] {
            let mut pkt = vec![0u8; 8 + len];
            let mut par = Vec::new();
            enc.encode(&mut pkt, |p| par.push(p.to_vec()));
            wire.push(pkt);
            wire.append(&mut par);
        }
        // Corrupt data1's size to 0xFFFF and recompute parity as the sender would have.
        let code = Code::new(3, 2).unwrap();
        let shards: Vec<Vec<u8>> = wire[..3]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut v = p[6..].to_vec();
                if i == 1 {
                    v[0] = 0xFF;
                    v[1] = 0xFF;
                }
                v.resize(14, 0);
                v
            })
            .collect();
        for j in 0..2 {
            let mut par = vec![0u8; 14];
            for (i, sh) in shards.iter().enumerate() {
                gf::mul_acc(code.parity_row(j)[i], sh, &mut par);
            }
            wire[3 + j][6..].copy_from_slice(&par);
        }
        let mut dec = FecDecoder::new(3, 2).unwrap();
        let mut got = Vec::new();
        let mut errs = 0;
        for k in [0, 2, 3] {
            let out = dec
                .decode(0, &wire[k], |kcp| got.push(kcp.to_vec()))
                .unwrap();
            errs += out.fec_errs;
        }
        assert!(got.is_empty());
        assert_eq!(errs, 1);
    }
}
