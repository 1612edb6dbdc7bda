//! Triple DES (DES-EDE3) with combined S-box + P tables, initial and final permutations done
//! once per 3DES block (they cancel between the three DES passes), and round keys laid out so a
//! round is two rotations, two XORs and eight lookups: the classic software DES layout, which is
//! also what Go's crypto/des does. kcptun's `3des` takes the first 24 key bytes (docs/wire-format.md#crypt-ciphers).

use cipher::consts::U8;

/// DES S-boxes, rearranged (as in the RustCrypto `des` crate, MIT/Apache-2.0) so the 6-bit
/// S-box input indexes them directly.
#[rustfmt::skip]
const SBOXES: [[u8; 64]; 8] = [
    [
        14,  0,  4, 15, 13,  7,  1,  4,  2, 14, 15,  2, 11, 13,  8,  1,
         3, 10, 10,  6,  6, 12, 12, 11,  5,  9,  9,  5,  0,  3,  7,  8,
         4, 15,  1, 12, 14,  8,  8,  2, 13,  4,  6,  9,  2,  1, 11,  7,
        15,  5, 12, 11,  9,  3,  7, 14,  3, 10, 10,  0,  5,  6,  0, 13,
    ],
    [
        15,  3,  1, 13,  8,  4, 14,  7,  6, 15, 11,  2,  3,  8,  4, 14,
         9, 12,  7,  0,  2,  1, 13, 10, 12,  6,  0,  9,  5, 11, 10,  5,
         0, 13, 14,  8,  7, 10, 11,  1, 10,  3,  4, 15, 13,  4,  1,  2,
         5, 11,  8,  6, 12,  7,  6, 12,  9,  0,  3,  5,  2, 14, 15,  9,
    ],
    [
        10, 13,  0,  7,  9,  0, 14,  9,  6,  3,  3,  4, 15,  6,  5, 10,
         1,  2, 13,  8, 12,  5,  7, 14, 11, 12,  4, 11,  2, 15,  8,  1,
        13,  1,  6, 10,  4, 13,  9,  0,  8,  6, 15,  9,  3,  8,  0,  7,
        11,  4,  1, 15,  2, 14, 12,  3,  5, 11, 10,  5, 14,  2,  7, 12,
    ],
    [
         7, 13, 13,  8, 14, 11,  3,  5,  0,  6,  6, 15,  9,  0, 10,  3,
         1,  4,  2,  7,  8,  2,  5, 12, 11,  1, 12, 10,  4, 14, 15,  9,
        10,  3,  6, 15,  9,  0,  0,  6, 12, 10, 11,  1,  7, 13, 13,  8,
        15,  9,  1,  4,  3,  5, 14, 11,  5, 12,  2,  7,  8,  2,  4, 14,
    ],
    [
         2, 14, 12, 11,  4,  2,  1, 12,  7,  4, 10,  7, 11, 13,  6,  1,
         8,  5,  5,  0,  3, 15, 15, 10, 13,  3,  0,  9, 14,  8,  9,  6,
         4, 11,  2,  8,  1, 12, 11,  7, 10,  1, 13, 14,  7,  2,  8, 13,
        15,  6,  9, 15, 12,  0,  5,  9,  6, 10,  3,  4,  0,  5, 14,  3,
    ],
    [
        12, 10,  1, 15, 10,  4, 15,  2,  9,  7,  2, 12,  6,  9,  8,  5,
         0,  6, 13,  1,  3, 13,  4, 14, 14,  0,  7, 11,  5,  3, 11,  8,
         9,  4, 14,  3, 15,  2,  5, 12,  2,  9,  8,  5, 12, 15,  3, 10,
         7, 11,  0, 14,  4,  1, 10,  7,  1,  6, 13,  0, 11,  8,  6, 13,
    ],
    [
         4, 13, 11,  0,  2, 11, 14,  7, 15,  4,  0,  9,  8,  1, 13, 10,
         3, 14, 12,  3,  9,  5,  7, 12,  5,  2, 10, 15,  6,  8,  1,  6,
         1,  6,  4, 11, 11, 13, 13,  8, 12,  1,  3,  4,  7, 10, 14,  7,
        10,  9, 15,  5,  6,  0,  8, 15,  0, 14,  5,  2,  9,  3,  2, 12,
    ],
    [
        13,  1,  2, 15,  8, 13,  4,  8,  6, 10, 15,  3, 11,  7,  1,  4,
        10, 12,  9,  5,  3,  6, 14, 11,  5,  0,  0, 14, 12,  9,  7,  2,
         7,  2, 11,  1,  4, 14,  1,  7,  9,  4, 12, 10, 14,  8,  2, 13,
         0, 15,  6, 12, 10,  9, 13,  0, 15,  3,  3,  5,  5,  6,  8, 11,
    ],
];

/// The P permutation: output bit j (1 = most significant) is input bit `P[j - 1]`.
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14, 32, 27, 3, 9, 19,
    13, 30, 6, 22, 11, 4, 25,
];

/// Permuted choice 1 (64 -> 56 key bits) and 2 (56 -> 48), 1 = most significant bit.
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60,
    52, 44, 36, 63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6, 61, 53, 45, 37, 29,
    21, 13, 5, 28, 20, 12, 4,
];
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, 41, 52,
    31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];
/// Left rotations of the key halves per round.
const SHIFTS: [u32; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

const fn permute_p(x: u32) -> u32 {
    let mut out = 0u32;
    let mut j = 0;
    while j < 32 {
        let bit = (x >> (32 - P[j] as u32)) & 1;
        out |= bit << (31 - j as u32);
        j += 1;
    }
    out
}

/// `SP[i][v]` = P(S-box i+1 of v, placed at its nibble).
const fn sp_tables() -> [[u32; 64]; 8] {
    let mut t = [[0u32; 64]; 8];
    let mut i = 0;
    while i < 8 {
        let mut v = 0;
        while v < 64 {
            t[i][v] = permute_p((SBOXES[i][v] as u32) << (28 - 4 * i as u32));
            v += 1;
        }
        i += 1;
    }
    t
}

const SP: [[u32; 64]; 8] = sp_tables();

#[inline(always)]
fn delta_swap(a: u64, delta: u32, mask: u64) -> u64 {
    let b = (a ^ (a >> delta)) & mask;
    a ^ b ^ (b << delta)
}

/// Initial permutation on a big-endian block (bit 1 = most significant).
#[inline(always)]
fn ip(mut m: u64) -> u64 {
    m = delta_swap(m, 9, 0x0055_0055_0055_0055);
    m = delta_swap(m, 18, 0x0000_3333_0000_3333);
    m = delta_swap(m, 36, 0x0000_0000_0F0F_0F0F);
    m = delta_swap(m, 24, 0x0000_0000_FF00_FF00);
    delta_swap(m, 24, 0x0000_00FF_0000_00FF)
}

/// Final permutation, the inverse of [`ip`].
#[inline(always)]
fn fp(mut m: u64) -> u64 {
    m = delta_swap(m, 24, 0x0000_00FF_0000_00FF);
    m = delta_swap(m, 24, 0x0000_0000_FF00_FF00);
    m = delta_swap(m, 36, 0x0000_0000_0F0F_0F0F);
    m = delta_swap(m, 18, 0x0000_3333_0000_3333);
    delta_swap(m, 9, 0x0055_0055_0055_0055)
}

/// One DES key's 16 round keys, each as the pair of words XORed into `R >>> 3` (S-boxes
/// 1, 3, 5, 7 at bytes 3..0) and `R >>> 7` (S-boxes 8, 2, 4, 6 at bytes 3..0).
type RoundKeys = [[u32; 2]; 16];

fn round_keys(key: &[u8; 8]) -> RoundKeys {
    let k = u64::from_be_bytes(*key);
    let bit = |v: u64, width: u32, pos: u8| (v >> (width - u32::from(pos))) & 1;
    let mut cd = 0u64;
    for &p in &PC1 {
        cd = (cd << 1) | bit(k, 64, p);
    }
    let (mut c, mut d) = ((cd >> 28) as u32, (cd & 0x0FFF_FFFF) as u32);
    let rot28 = |x: u32, s: u32| ((x << s) | (x >> (28 - s))) & 0x0FFF_FFFF;
    let mut out = [[0u32; 2]; 16];
    for (r, o) in out.iter_mut().enumerate() {
        c = rot28(c, SHIFTS[r]);
        d = rot28(d, SHIFTS[r]);
        let cd = (u64::from(c) << 28) | u64::from(d);
        let mut sub = 0u64;
        for &p in &PC2 {
            sub = (sub << 1) | bit(cd, 56, p);
        }
        let g = |i: u32| ((sub >> (42 - 6 * i)) & 0x3f) as u32; // i = 0 is S-box 1
        o[0] = (g(0) << 24) | (g(2) << 16) | (g(4) << 8) | g(6);
        o[1] = (g(7) << 24) | (g(1) << 16) | (g(3) << 8) | g(5);
    }
    out
}

#[inline(always)]
fn f(r: u32, k: &[u32; 2]) -> u32 {
    let a = r.rotate_right(3) ^ k[0];
    let b = r.rotate_right(7) ^ k[1];
    // Combined as a tree, not a chain: in the serial CFB encryption direction the round's
    // latency is what counts.
    let x = (SP[0][(a >> 24) as usize & 63] ^ SP[2][(a >> 16) as usize & 63])
        ^ (SP[4][(a >> 8) as usize & 63] ^ SP[6][a as usize & 63]);
    let y = (SP[7][(b >> 24) as usize & 63] ^ SP[1][(b >> 16) as usize & 63])
        ^ (SP[3][(b >> 8) as usize & 63] ^ SP[5][b as usize & 63]);
    x ^ y
}

/// Sixteen rounds on `L` blocks side by side from (L0, R0); returns the pre-output
/// (R16, L16), i.e. already swapped.
#[inline(always)]
fn sixteen<const L: usize>(
    mut l: [u32; L],
    mut r: [u32; L],
    keys: &RoundKeys,
    reverse: bool,
) -> ([u32; L], [u32; L]) {
    for n in 0..8 {
        let (ka, kb) = if reverse {
            (&keys[15 - 2 * n], &keys[14 - 2 * n])
        } else {
            (&keys[2 * n], &keys[2 * n + 1])
        };
        for i in 0..L {
            l[i] ^= f(r[i], ka);
        }
        for i in 0..L {
            r[i] ^= f(l[i], kb);
        }
    }
    (r, l)
}

pub(crate) struct TripleDes {
    k1: RoundKeys,
    k2: RoundKeys,
    k3: RoundKeys,
}

impl TripleDes {
    pub(crate) fn new(key: &[u8; 24]) -> Self {
        let part = |i: usize| -> [u8; 8] {
            let mut p = [0u8; 8];
            p.copy_from_slice(&key[8 * i..8 * i + 8]);
            p
        };
        TripleDes {
            k1: round_keys(&part(0)),
            k2: round_keys(&part(1)),
            k3: round_keys(&part(2)),
        }
    }

    #[inline(always)]
    fn encrypt_lanes<const L: usize>(&self, b: &mut [[u8; 8]; L]) {
        let x: [u64; L] = core::array::from_fn(|i| ip(u64::from_be_bytes(b[i])));
        let l: [u32; L] = core::array::from_fn(|i| (x[i] >> 32) as u32);
        let r: [u32; L] = core::array::from_fn(|i| x[i] as u32);
        // E(K1), D(K2), E(K3). FP then IP between the passes cancel, leaving the swapped
        // pre-output as the next pass's input.
        let (l, r) = sixteen(l, r, &self.k1, false);
        let (l, r) = sixteen(l, r, &self.k2, true);
        let (l, r) = sixteen(l, r, &self.k3, false);
        for i in 0..L {
            b[i] = fp((u64::from(l[i]) << 32) | u64::from(r[i])).to_be_bytes();
        }
    }
}

impl_block_encrypt!(TripleDes, U8);
