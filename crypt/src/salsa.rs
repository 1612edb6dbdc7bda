//! Salsa20/20 keystream, four blocks at a time.
//!
//! The `salsa20` crate only has a one-block scalar backend, about half of kcp-go's SSE2 assembly
//! speed. Here the state is kept as sixteen 4-lane vectors (lane = block): SSE2 intrinsics on
//! x86_64 (SSE2 is part of the baseline target, so no run-time detection), plain `[u32; 4]`
//! arithmetic elsewhere. Property tests check both against the crate.

/// "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
/// Bytes per Salsa20 block and per four-block batch.
const BLOCK: usize = 64;
const BATCH: usize = 4 * BLOCK;

type V = [u32; 4];

#[inline(always)]
fn add(a: V, b: V) -> V {
    [
        a[0].wrapping_add(b[0]),
        a[1].wrapping_add(b[1]),
        a[2].wrapping_add(b[2]),
        a[3].wrapping_add(b[3]),
    ]
}

#[inline(always)]
fn xor_rotl<const N: u32>(x: V, y: V) -> V {
    [
        x[0] ^ y[0].rotate_left(N),
        x[1] ^ y[1].rotate_left(N),
        x[2] ^ y[2].rotate_left(N),
        x[3] ^ y[3].rotate_left(N),
    ]
}

#[inline(always)]
fn quarter(s: &mut [V; 16], a: usize, b: usize, c: usize, d: usize) {
    s[b] = xor_rotl::<7>(s[b], add(s[a], s[d]));
    s[c] = xor_rotl::<9>(s[c], add(s[b], s[a]));
    s[d] = xor_rotl::<13>(s[d], add(s[c], s[b]));
    s[a] = xor_rotl::<18>(s[a], add(s[d], s[c]));
}

/// XORs the Salsa20/20 keystream for `key`/`nonce`, starting at block 0, into `buf`.
pub(crate) fn xor_keystream(key: &[u8; 32], nonce: &[u8; 8], buf: &mut [u8]) {
    let kw =
        |i: usize| u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]);
    let nw = |i: usize| {
        u32::from_le_bytes([
            nonce[4 * i],
            nonce[4 * i + 1],
            nonce[4 * i + 2],
            nonce[4 * i + 3],
        ])
    };
    let state: [u32; 16] = [
        SIGMA[0],
        kw(0),
        kw(1),
        kw(2),
        kw(3),
        SIGMA[1],
        nw(0),
        nw(1),
        0,
        0,
        SIGMA[2],
        kw(4),
        kw(5),
        kw(6),
        kw(7),
        SIGMA[3],
    ];

    let mut counter = 0u64;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let mut wide = buf.chunks_exact_mut(2 * BATCH);
        for chunk in &mut wide {
            // SAFETY: AVX2 support was just detected at run time.
            unsafe { avx2::batch8(&state, counter, chunk) };
            counter += 8;
        }
        let rest = wide.into_remainder();
        if !rest.is_empty() {
            let mut ks = [0u8; 2 * BATCH];
            // SAFETY: as above.
            unsafe { avx2::batch8(&state, counter, &mut ks) };
            for (b, k) in rest.iter_mut().zip(ks) {
                *b ^= k;
            }
        }
        return;
    }
    let mut batches = buf.chunks_exact_mut(BATCH);
    for chunk in &mut batches {
        batch(&state, counter, chunk);
        counter += 4;
    }
    let rest = batches.into_remainder();
    if !rest.is_empty() {
        // A last, partial batch: one more vector pass into a scratch buffer is faster than
        // a scalar one-block path for even a single block.
        let mut ks = [0u8; BATCH];
        batch(&state, counter, &mut ks);
        for (b, k) in rest.iter_mut().zip(ks) {
            *b ^= k;
        }
    }
}

#[inline]
fn batch(state: &[u32; 16], counter: u64, chunk: &mut [u8]) {
    // SAFETY: SSE2 is part of the x86_64 baseline, so every x86_64 CPU has it.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        sse2::batch(state, counter, chunk)
    };
    #[cfg(not(target_arch = "x86_64"))]
    portable_batch(state, counter, chunk);
}

/// Four keystream blocks from block `counter` XORed into `chunk` (`BATCH` bytes).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn portable_batch(state: &[u32; 16], counter: u64, chunk: &mut [u8]) {
    let mut s: [V; 16] = state.map(|w| [w; 4]);
    let ctr = [counter, counter + 1, counter + 2, counter + 3];
    s[8] = ctr.map(|c| c as u32);
    s[9] = ctr.map(|c| (c >> 32) as u32);
    let orig = s;
    for _ in 0..10 {
        quarter(&mut s, 0, 4, 8, 12);
        quarter(&mut s, 5, 9, 13, 1);
        quarter(&mut s, 10, 14, 2, 6);
        quarter(&mut s, 15, 3, 7, 11);
        quarter(&mut s, 0, 1, 2, 3);
        quarter(&mut s, 5, 6, 7, 4);
        quarter(&mut s, 10, 11, 8, 9);
        quarter(&mut s, 15, 12, 13, 14);
    }
    for (w, o) in s.iter_mut().zip(&orig) {
        *w = add(*w, *o);
    }
    for (lane, block) in chunk.chunks_exact_mut(BLOCK).enumerate() {
        for (word, bytes) in block.chunks_exact_mut(4).enumerate() {
            let k = s[word][lane].to_le_bytes();
            for (b, k) in bytes.iter_mut().zip(k) {
                *b ^= k;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use core::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_loadu_si128, _mm_or_si128, _mm_set_epi32, _mm_set1_epi32,
        _mm_slli_epi32, _mm_srli_epi32, _mm_storeu_si128, _mm_unpackhi_epi32, _mm_unpackhi_epi64,
        _mm_unpacklo_epi32, _mm_unpacklo_epi64, _mm_xor_si128,
    };

    use super::BLOCK;

    #[inline]
    #[target_feature(enable = "sse2")]
    fn rotl<const L: i32, const R: i32>(x: __m128i) -> __m128i {
        _mm_or_si128(_mm_slli_epi32::<L>(x), _mm_srli_epi32::<R>(x))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn quarter(s: &mut [__m128i; 16], a: usize, b: usize, c: usize, d: usize) {
        s[b] = _mm_xor_si128(s[b], rotl::<7, 25>(_mm_add_epi32(s[a], s[d])));
        s[c] = _mm_xor_si128(s[c], rotl::<9, 23>(_mm_add_epi32(s[b], s[a])));
        s[d] = _mm_xor_si128(s[d], rotl::<13, 19>(_mm_add_epi32(s[c], s[b])));
        s[a] = _mm_xor_si128(s[a], rotl::<18, 14>(_mm_add_epi32(s[d], s[c])));
    }

    /// Four keystream blocks from block `counter` XORed into `chunk` (256 bytes).
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn batch(state: &[u32; 16], counter: u64, chunk: &mut [u8]) {
        let mut s: [__m128i; 16] = state.map(|w| _mm_set1_epi32(w as i32));
        let lo = |k: u64| (counter.wrapping_add(k)) as u32 as i32;
        let hi = |k: u64| (counter.wrapping_add(k) >> 32) as u32 as i32;
        s[8] = _mm_set_epi32(lo(3), lo(2), lo(1), lo(0));
        s[9] = _mm_set_epi32(hi(3), hi(2), hi(1), hi(0));
        let orig = s;
        for _ in 0..10 {
            quarter(&mut s, 0, 4, 8, 12);
            quarter(&mut s, 5, 9, 13, 1);
            quarter(&mut s, 10, 14, 2, 6);
            quarter(&mut s, 15, 3, 7, 11);
            quarter(&mut s, 0, 1, 2, 3);
            quarter(&mut s, 5, 6, 7, 4);
            quarter(&mut s, 10, 11, 8, 9);
            quarter(&mut s, 15, 12, 13, 14);
        }
        for (w, o) in s.iter_mut().zip(orig) {
            *w = _mm_add_epi32(*w, o);
        }
        // Words 4g..4g+3 of the four blocks, transposed into each block's bytes 16g..16g+16.
        for g in 0..4 {
            let (a, b, c, d) = (s[4 * g], s[4 * g + 1], s[4 * g + 2], s[4 * g + 3]);
            let ab_lo = _mm_unpacklo_epi32(a, b);
            let cd_lo = _mm_unpacklo_epi32(c, d);
            let ab_hi = _mm_unpackhi_epi32(a, b);
            let cd_hi = _mm_unpackhi_epi32(c, d);
            let rows = [
                _mm_unpacklo_epi64(ab_lo, cd_lo),
                _mm_unpackhi_epi64(ab_lo, cd_lo),
                _mm_unpacklo_epi64(ab_hi, cd_hi),
                _mm_unpackhi_epi64(ab_hi, cd_hi),
            ];
            for (blk, row) in rows.into_iter().enumerate() {
                let off = blk * BLOCK + 16 * g;
                let Some(dst) = chunk.get_mut(off..off + 16) else {
                    return;
                };
                let p = dst.as_mut_ptr().cast::<__m128i>();
                // SAFETY: `dst` is 16 valid, exclusively borrowed bytes; the unaligned
                // load/store intrinsics have no alignment requirement.
                unsafe { _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), row)) };
            }
        }
    }
}

/// Eight blocks at a time: each 256-bit register holds one state word of blocks 0..4 in its low
/// half and of blocks 4..8 in its high half, so the SSE2 transpose works per half unchanged.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm_storeu_si128, _mm_xor_si128, _mm256_add_epi32,
        _mm256_castsi256_si128, _mm256_extracti128_si256, _mm256_or_si256, _mm256_set_epi32,
        _mm256_set1_epi32, _mm256_slli_epi32, _mm256_srli_epi32, _mm256_unpackhi_epi32,
        _mm256_unpackhi_epi64, _mm256_unpacklo_epi32, _mm256_unpacklo_epi64, _mm256_xor_si256,
    };

    use super::{BATCH, BLOCK};

    #[inline]
    #[target_feature(enable = "avx2")]
    fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi32::<L>(x), _mm256_srli_epi32::<R>(x))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn quarter(s: &mut [__m256i; 16], a: usize, b: usize, c: usize, d: usize) {
        s[b] = _mm256_xor_si256(s[b], rotl::<7, 25>(_mm256_add_epi32(s[a], s[d])));
        s[c] = _mm256_xor_si256(s[c], rotl::<9, 23>(_mm256_add_epi32(s[b], s[a])));
        s[d] = _mm256_xor_si256(s[d], rotl::<13, 19>(_mm256_add_epi32(s[c], s[b])));
        s[a] = _mm256_xor_si256(s[a], rotl::<18, 14>(_mm256_add_epi32(s[d], s[c])));
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn xor_into(chunk: &mut [u8], off: usize, v: __m128i) {
        let Some(dst) = chunk.get_mut(off..off + 16) else {
            return;
        };
        let p = dst.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `dst` is 16 valid, exclusively borrowed bytes; the unaligned load/store
        // intrinsics have no alignment requirement.
        unsafe { _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), v)) };
    }

    /// Eight keystream blocks from block `counter` XORed into `chunk` (512 bytes).
    #[target_feature(enable = "avx2")]
    pub(super) fn batch8(state: &[u32; 16], counter: u64, chunk: &mut [u8]) {
        let mut s: [__m256i; 16] = state.map(|w| _mm256_set1_epi32(w as i32));
        let lo = |k: u64| (counter.wrapping_add(k)) as u32 as i32;
        let hi = |k: u64| (counter.wrapping_add(k) >> 32) as u32 as i32;
        s[8] = _mm256_set_epi32(lo(7), lo(6), lo(5), lo(4), lo(3), lo(2), lo(1), lo(0));
        s[9] = _mm256_set_epi32(hi(7), hi(6), hi(5), hi(4), hi(3), hi(2), hi(1), hi(0));
        let orig = s;
        for _ in 0..10 {
            quarter(&mut s, 0, 4, 8, 12);
            quarter(&mut s, 5, 9, 13, 1);
            quarter(&mut s, 10, 14, 2, 6);
            quarter(&mut s, 15, 3, 7, 11);
            quarter(&mut s, 0, 1, 2, 3);
            quarter(&mut s, 5, 6, 7, 4);
            quarter(&mut s, 10, 11, 8, 9);
            quarter(&mut s, 15, 12, 13, 14);
        }
        for (w, o) in s.iter_mut().zip(orig) {
            *w = _mm256_add_epi32(*w, o);
        }
        for g in 0..4 {
            let (a, b, c, d) = (s[4 * g], s[4 * g + 1], s[4 * g + 2], s[4 * g + 3]);
            let ab_lo = _mm256_unpacklo_epi32(a, b);
            let cd_lo = _mm256_unpacklo_epi32(c, d);
            let ab_hi = _mm256_unpackhi_epi32(a, b);
            let cd_hi = _mm256_unpackhi_epi32(c, d);
            let rows = [
                _mm256_unpacklo_epi64(ab_lo, cd_lo),
                _mm256_unpackhi_epi64(ab_lo, cd_lo),
                _mm256_unpacklo_epi64(ab_hi, cd_hi),
                _mm256_unpackhi_epi64(ab_hi, cd_hi),
            ];
            for (blk, row) in rows.into_iter().enumerate() {
                let off = blk * BLOCK + 16 * g;
                xor_into(chunk, off, _mm256_castsi256_si128(row));
                xor_into(chunk, BATCH + off, _mm256_extracti128_si256::<1>(row));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cipher::{Array, KeyIvInit, StreamCipher, StreamCipherSeek};
    use proptest::prelude::*;

    use super::*;

    fn state_of(key: &[u8; 32], nonce: &[u8; 8]) -> [u32; 16] {
        let kw = |i: usize| u32::from_le_bytes(key[4 * i..4 * i + 4].try_into().unwrap());
        let nw = |i: usize| u32::from_le_bytes(nonce[4 * i..4 * i + 4].try_into().unwrap());
        [
            SIGMA[0],
            kw(0),
            kw(1),
            kw(2),
            kw(3),
            SIGMA[1],
            nw(0),
            nw(1),
            0,
            0,
            SIGMA[2],
            kw(4),
            kw(5),
            kw(6),
            kw(7),
            SIGMA[3],
        ]
    }

    /// Four blocks of the crate's keystream from block `start`.
    fn reference_at(key: &[u8; 32], nonce: &[u8; 8], start: u64) -> Vec<u8> {
        let mut out = vec![0u8; BATCH];
        let n: Array<u8, _> = (*nonce).into();
        let mut c = salsa20::Salsa20::new(&(*key).into(), &n);
        c.seek(start * BLOCK as u64);
        c.apply_keystream(&mut out);
        out
    }

    proptest! {
        #[test]
        fn matches_salsa20_crate(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 8]>(),
            data in proptest::collection::vec(any::<u8>(), 0..1700),
        ) {
            let mut ours = data.clone();
            xor_keystream(&key, &nonce, &mut ours);
            let mut reference = data;
            let n: Array<u8, _> = nonce.into();
            salsa20::Salsa20::new(&key.into(), &n).apply_keystream(&mut reference);
            prop_assert_eq!(ours, reference);
        }

        #[test]
        fn four_block_batch_matches_crate(key in any::<[u8; 32]>(), nonce in any::<[u8; 8]>(), start in 0u64..1000) {
            // The SSE2 path on x86_64 (used when AVX2 is absent), the portable one elsewhere.
            let state = state_of(&key, &nonce);
            let mut ours = vec![0u8; BATCH];
            batch(&state, start, &mut ours);
            prop_assert_eq!(ours, reference_at(&key, &nonce, start));
        }

        #[test]
        fn portable_batch_matches_crate(key in any::<[u8; 32]>(), nonce in any::<[u8; 8]>(), start in 0u64..1000) {
            let mut ours = vec![0u8; BATCH];
            portable_batch(&state_of(&key, &nonce), start, &mut ours);
            prop_assert_eq!(ours, reference_at(&key, &nonce, start));
        }
    }
}
