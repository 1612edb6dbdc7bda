//! TEA and XTEA exactly as Go's x/crypto computes them for kcptun's `tea` and `xtea`
//! (docs/wire-format.md#crypt-ciphers): big-endian key and block words (the `xtea` crate reads little-endian ones,
//! and no TEA crate offers Go's round count).

use cipher::consts::U8;

use super::be;

/// TEA's and XTEA's key-schedule constant.
const DELTA: u32 = 0x9E37_79B9;

/// Go's rounds / 2 for `tea.NewCipherWithRounds(key, 16)`.
const TEA_CYCLES: usize = 8;
/// XTEA's 64 rounds, as 32 cycles.
const XTEA_CYCLES: usize = 32;

fn key_words(key: &[u8; 16]) -> [u32; 4] {
    [be(key, 0), be(key, 1), be(key, 2), be(key, 3)]
}

/// Go's `tea.NewCipherWithRounds(key, 16)` as kcp-go builds it: 16 Go "rounds" are 8 TEA
/// cycles (the `sum += delta` loop runs 8 times, against 32 in standard TEA).
pub(crate) struct Tea8 {
    k: [u32; 4],
}

impl Tea8 {
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        Tea8 { k: key_words(key) }
    }

    #[inline(always)]
    fn encrypt_lanes<const L: usize>(&self, b: &mut [[u8; 8]; L]) {
        let mut v0: [u32; L] = core::array::from_fn(|i| be(&b[i], 0));
        let mut v1: [u32; L] = core::array::from_fn(|i| be(&b[i], 1));
        let [k0, k1, k2, k3] = self.k;
        let mut sum = 0u32;
        for _ in 0..TEA_CYCLES {
            sum = sum.wrapping_add(DELTA);
            for i in 0..L {
                let y = v1[i];
                v0[i] = v0[i].wrapping_add(
                    (y << 4).wrapping_add(k0) ^ y.wrapping_add(sum) ^ (y >> 5).wrapping_add(k1),
                );
                let z = v0[i];
                v1[i] = v1[i].wrapping_add(
                    (z << 4).wrapping_add(k2) ^ z.wrapping_add(sum) ^ (z >> 5).wrapping_add(k3),
                );
            }
        }
        for i in 0..L {
            b[i][..4].copy_from_slice(&v0[i].to_be_bytes());
            b[i][4..].copy_from_slice(&v1[i].to_be_bytes());
        }
    }
}

impl_block_encrypt!(Tea8, U8);

/// Go's x/crypto XTEA: 32 cycles, big-endian words. The per-half-round `sum + key` terms do not
/// depend on the data, so they are precomputed (as Go does).
pub(crate) struct Xtea {
    table: [u32; 2 * XTEA_CYCLES],
}

impl Xtea {
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        let k = key_words(key);
        let mut table = [0u32; 2 * XTEA_CYCLES];
        let mut sum = 0u32;
        for pair in table.chunks_exact_mut(2) {
            pair[0] = sum.wrapping_add(k[(sum & 3) as usize]);
            sum = sum.wrapping_add(DELTA);
            pair[1] = sum.wrapping_add(k[((sum >> 11) & 3) as usize]);
        }
        Xtea { table }
    }

    #[inline(always)]
    fn encrypt_lanes<const L: usize>(&self, b: &mut [[u8; 8]; L]) {
        let mut v0: [u32; L] = core::array::from_fn(|i| be(&b[i], 0));
        let mut v1: [u32; L] = core::array::from_fn(|i| be(&b[i], 1));
        for pair in self.table.chunks_exact(2) {
            for i in 0..L {
                let y = v1[i];
                v0[i] = v0[i].wrapping_add((((y << 4) ^ (y >> 5)).wrapping_add(y)) ^ pair[0]);
                let z = v0[i];
                v1[i] = v1[i].wrapping_add((((z << 4) ^ (z >> 5)).wrapping_add(z)) ^ pair[1]);
            }
        }
        for i in 0..L {
            b[i][..4].copy_from_slice(&v0[i].to_be_bytes());
            b[i][4..].copy_from_slice(&v1[i].to_be_bytes());
        }
    }
}

impl_block_encrypt!(Xtea, U8);
