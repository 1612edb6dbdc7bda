//! GF(2^8) multiply-accumulate kernels over byte slices (`out ^= c * input`).
//!
//! The code itself (generator polynomial 0x11D, Backblaze Vandermonde matrix, decode-matrix
//! inversion) comes from `reed-solomon-erasure`; see [`crate::code`]. Only the inner loop lives
//! here, because the hot paths need shapes that crate does not offer: accumulating one packet at
//! a time into the parity (so the encoder keeps no copy of the group) and multiplying shards of
//! different lengths without zero-padding copies (a shorter shard contributes zeros beyond its
//! end, which is a no-op). On x86-64 with AVX2 it uses the split-nibble `pshufb` method: `c * x =
//! lo[x & 15] ^ hi[x >> 4]`, two 16-entry lookups per byte, 32 bytes at a time. Elsewhere it falls
//! back to `reed-solomon-erasure`'s own `mul_slice_xor`.

/// x^8 + x^4 + x^3 + x^2 + 1, the polynomial of klauspost/reedsolomon and reed-solomon-erasure.
const POLY: u16 = 0x11D;

/// GF(2^8) multiplication by shift-and-add; only used to build [`NIBBLES`] at compile time.
const fn mul_slow(a: u8, b: u8) -> u8 {
    let mut a = a as u16;
    let mut b = b;
    let mut r: u16 = 0;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        a <<= 1;
        if a & 0x100 != 0 {
            a ^= POLY;
        }
        b >>= 1;
    }
    r as u8
}

/// For each coefficient `c`: `[c*0, c*1, .., c*15, c*0x00, c*0x10, .., c*0xF0]`.
pub(crate) static NIBBLES: [[u8; 32]; 256] = {
    let mut t = [[0u8; 32]; 256];
    let mut c = 0;
    while c < 256 {
        let mut i = 0;
        while i < 16 {
            t[c][i] = mul_slow(c as u8, i as u8);
            t[c][16 + i] = mul_slow(c as u8, (i as u8) << 4);
            i += 1;
        }
        c += 1;
    }
    t
};

/// `out[i] ^= c * input[i]` for every `i < input.len()`.
///
/// `out` may be longer than `input`: the shorter input stands for a zero-padded shard.
///
/// # Panics
/// If `out` is shorter than `input` (an internal invariant, never peer-controlled).
pub(crate) fn mul_acc(c: u8, input: &[u8], out: &mut [u8]) {
    assert!(out.len() >= input.len());
    if c == 0 {
        return;
    }
    if c == 1 {
        for (o, i) in out.iter_mut().zip(input) {
            *o ^= *i;
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            let room = out.len();
            // SAFETY: AVX2 support was just checked at run time; `out` is valid for `room >=
            // input.len()` bytes and cannot alias `input` (a shared borrow).
            unsafe { x86::mul_acc_n_avx2([&NIBBLES[c as usize]], input, [out.as_mut_ptr()], room) };
            return;
        }
    }
    let n = input.len();
    reed_solomon_erasure::galois_8::mul_slice_xor(c, input, &mut out[..n]);
}

/// For every `j`: `outs[j][offset + i] ^= coefs[j] * input[i]` for `i < input.len()`.
///
/// The encoder's inner loop: one data packet accumulated into all parity shards at once, reading
/// the packet and splitting its nibbles once for up to four outputs.
///
/// # Panics
/// If `coefs` and `outs` differ in length or an output is shorter than `offset + input.len()`
/// (internal invariants, never peer-controlled).
pub(crate) fn mul_acc_multi(coefs: &[u8], input: &[u8], outs: &mut [Vec<u8>], offset: usize) {
    assert_eq!(coefs.len(), outs.len());
    let end = offset + input.len();
    assert!(outs.iter().all(|o| o.len() >= end));
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            let room = outs.iter().map(Vec::len).min().unwrap_or(end) - offset;
            for (cs, os) in coefs.chunks(4).zip(outs.chunks_mut(4)) {
                let t = |k: usize| &NIBBLES[usize::from(cs[k])];
                let p = |os: &mut [Vec<u8>], k: usize| os[k][offset..].as_mut_ptr();
                // SAFETY: AVX2 was checked at run time; every output pointer is valid for
                // `room >= input.len()` bytes (asserted above), the outputs are distinct Vecs,
                // and none of them aliases `input` (a shared borrow).
                unsafe {
                    match cs.len() {
                        4 => x86::mul_acc_n_avx2(
                            [t(0), t(1), t(2), t(3)],
                            input,
                            [p(os, 0), p(os, 1), p(os, 2), p(os, 3)],
                            room,
                        ),
                        3 => x86::mul_acc_n_avx2(
                            [t(0), t(1), t(2)],
                            input,
                            [p(os, 0), p(os, 1), p(os, 2)],
                            room,
                        ),
                        2 => x86::mul_acc_n_avx2([t(0), t(1)], input, [p(os, 0), p(os, 1)], room),
                        _ => x86::mul_acc_n_avx2([t(0)], input, [p(os, 0)], room),
                    }
                }
            }
            return;
        }
    }
    for (&c, o) in coefs.iter().zip(outs) {
        mul_acc(c, input, &mut o[offset..end]);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// AVX2 body of [`super::mul_acc`] (N = 1) and [`super::mul_acc_multi`] for `N` outputs
    /// (1..=4, so that the 2N tables, the mask and the split input stay in the 16 ymm
    /// registers): 64 bytes per step, then 32. A tail shorter than 32 bytes is zero-padded into
    /// a stack buffer and done as one more step when the outputs have `room` for it (zero
    /// input bytes leave the output unchanged), else byte by byte.
    ///
    /// # Safety
    /// The CPU must support AVX2; `room >= input.len()`; each `outs[k]` must be valid for
    /// reads and writes of `room` bytes, and no two of them nor `input` may overlap.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mul_acc_n_avx2<const N: usize>(
        tbls: [&[u8; 32]; N],
        input: &[u8],
        outs: [*mut u8; N],
        room: usize,
    ) {
        let n = input.len();
        let ip = input.as_ptr();
        let mut lo = [_mm256_setzero_si256(); N];
        let mut hi = [_mm256_setzero_si256(); N];
        for k in 0..N {
            // SAFETY: each table is 32 bytes, so both 16-byte loads are in bounds.
            unsafe {
                lo[k] = _mm256_broadcastsi128_si256(_mm_loadu_si128(tbls[k].as_ptr().cast()));
                hi[k] =
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(tbls[k].as_ptr().add(16).cast()));
            }
        }
        let mask = _mm256_set1_epi8(0x0F);
        let mut i = 0;
        while i + 64 <= n {
            // SAFETY: i + 64 <= n: the input loads and every output access stay within the
            // `n` bytes the caller guarantees.
            unsafe {
                let x0 = _mm256_loadu_si256(ip.add(i).cast());
                let x1 = _mm256_loadu_si256(ip.add(i + 32).cast());
                let l0 = _mm256_and_si256(x0, mask);
                let h0 = _mm256_and_si256(_mm256_srli_epi64::<4>(x0), mask);
                let l1 = _mm256_and_si256(x1, mask);
                let h1 = _mm256_and_si256(_mm256_srli_epi64::<4>(x1), mask);
                for k in 0..N {
                    let p0 = _mm256_xor_si256(
                        _mm256_shuffle_epi8(lo[k], l0),
                        _mm256_shuffle_epi8(hi[k], h0),
                    );
                    let p1 = _mm256_xor_si256(
                        _mm256_shuffle_epi8(lo[k], l1),
                        _mm256_shuffle_epi8(hi[k], h1),
                    );
                    let op = outs[k].add(i);
                    let o0 = _mm256_loadu_si256(op.cast());
                    let o1 = _mm256_loadu_si256(op.add(32).cast());
                    _mm256_storeu_si256(op.cast(), _mm256_xor_si256(o0, p0));
                    _mm256_storeu_si256(op.add(32).cast(), _mm256_xor_si256(o1, p1));
                }
            }
            i += 64;
        }
        if i + 32 <= n {
            // SAFETY: i + 32 <= n: the input load and every output access stay within the
            // `n` bytes the caller guarantees.
            unsafe {
                let x = _mm256_loadu_si256(ip.add(i).cast());
                let l = _mm256_and_si256(x, mask);
                let h = _mm256_and_si256(_mm256_srli_epi64::<4>(x), mask);
                for k in 0..N {
                    let p = _mm256_xor_si256(
                        _mm256_shuffle_epi8(lo[k], l),
                        _mm256_shuffle_epi8(hi[k], h),
                    );
                    let op = outs[k].add(i);
                    let o = _mm256_loadu_si256(op.cast());
                    _mm256_storeu_si256(op.cast(), _mm256_xor_si256(o, p));
                }
            }
            i += 32;
        }
        if i < n && i + 32 <= room {
            let mut pad = [0u8; 32];
            pad[..n - i].copy_from_slice(&input[i..]);
            // SAFETY: i + 32 <= room: every output access stays within the caller's guarantee;
            // `pad` is a 32-byte local.
            unsafe {
                let x = _mm256_loadu_si256(pad.as_ptr().cast());
                let l = _mm256_and_si256(x, mask);
                let h = _mm256_and_si256(_mm256_srli_epi64::<4>(x), mask);
                for k in 0..N {
                    let p = _mm256_xor_si256(
                        _mm256_shuffle_epi8(lo[k], l),
                        _mm256_shuffle_epi8(hi[k], h),
                    );
                    let op = outs[k].add(i);
                    let o = _mm256_loadu_si256(op.cast());
                    _mm256_storeu_si256(op.cast(), _mm256_xor_si256(o, p));
                }
            }
            return;
        }
        while i < n {
            let x = input[i];
            for k in 0..N {
                let t = tbls[k];
                // SAFETY: i < n, within the caller's guarantee for every output.
                unsafe {
                    *outs[k].add(i) ^= t[usize::from(x & 0x0F)] ^ t[16 + usize::from(x >> 4)]
                };
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_acc_multi_matches_single_for_1_to_9_outputs() {
        let input: Vec<u8> = (0..300u32).map(|i| (i * 91 + 7) as u8).collect();
        for outs_n in 1..=9usize {
            for len in [0usize, 1, 31, 32, 33, 100, 300] {
                let coefs: Vec<u8> = (0..outs_n).map(|j| (j * 53 + 2) as u8).collect();
                let mut outs: Vec<Vec<u8>> = (0..outs_n)
                    .map(|j| vec![j as u8; 6 + len + [0, 7, 33][len % 3]])
                    .collect();
                let mut want = outs.clone();
                mul_acc_multi(&coefs, &input[..len], &mut outs, 6);
                for (c, w) in coefs.iter().zip(&mut want) {
                    mul_acc(*c, &input[..len], &mut w[6..]);
                }
                assert_eq!(outs, want, "outs {outs_n} len {len}");
            }
        }
    }
    use reed_solomon_erasure::galois_8;

    #[test]
    fn nibble_tables_match_reed_solomon_erasure() {
        for c in 0..=255u8 {
            for x in 0..=255u8 {
                let t = &NIBBLES[c as usize];
                let got = t[usize::from(x & 15)] ^ t[16 + usize::from(x >> 4)];
                assert_eq!(got, galois_8::mul(c, x), "c={c} x={x}");
            }
        }
    }

    #[test]
    fn mul_acc_matches_scalar_for_every_length_and_coefficient() {
        let input: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for c in [0u8, 1, 2, 3, 29, 128, 255] {
            for len in 0..input.len() {
                let mut out: Vec<u8> = (0..len + [0, 5, 40][len % 3])
                    .map(|i| (i * 13) as u8)
                    .collect();
                let mut want = out.clone();
                mul_acc(c, &input[..len], &mut out);
                for i in 0..len {
                    want[i] ^= galois_8::mul(c, input[i]);
                }
                assert_eq!(out, want, "c={c} len={len}");
            }
        }
    }
}
