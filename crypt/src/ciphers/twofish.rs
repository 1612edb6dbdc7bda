//! Twofish-256 with the key-dependent S-boxes and MDS matrix folded into four 256-entry tables
//! at key setup (the classic "full keying" of the Twofish paper, as Go's x/crypto does), so a
//! round costs eight table lookups. kcptun's `twofish` always has a 32-byte key (docs/wire-format.md#crypt-ciphers).

use cipher::consts::U16;

use super::le;

/// The nibble tables t0..t3 of the permutations q0 and q1 (Twofish paper, section 4.3.5).
const QT: [[[u8; 16]; 4]; 2] = [
    [
        [8, 1, 7, 13, 6, 15, 3, 2, 0, 11, 5, 9, 14, 12, 10, 4],
        [14, 12, 11, 8, 1, 2, 3, 5, 15, 4, 10, 6, 7, 0, 9, 13],
        [11, 10, 5, 14, 6, 13, 9, 0, 12, 8, 15, 3, 2, 4, 7, 1],
        [13, 7, 15, 4, 1, 2, 6, 14, 9, 11, 3, 0, 8, 5, 12, 10],
    ],
    [
        [2, 8, 11, 13, 15, 7, 6, 14, 3, 1, 9, 4, 0, 10, 12, 5],
        [1, 14, 2, 11, 4, 12, 3, 7, 6, 13, 10, 5, 15, 9, 0, 8],
        [4, 12, 7, 5, 1, 6, 9, 10, 0, 14, 13, 8, 2, 11, 3, 15],
        [11, 9, 5, 1, 12, 3, 13, 14, 6, 4, 7, 15, 2, 0, 8, 10],
    ],
];

/// The Reed-Solomon matrix that turns key bytes into the S-box key words.
const RS: [[u8; 8]; 4] = [
    [0x01, 0xa4, 0x55, 0x87, 0x5a, 0x58, 0xdb, 0x9e],
    [0xa4, 0x56, 0x82, 0xf3, 0x1e, 0xc6, 0x68, 0xe5],
    [0x02, 0xa1, 0xfc, 0xc1, 0x47, 0xae, 0x3d, 0x19],
    [0xa4, 0x55, 0x87, 0x5a, 0x58, 0xdb, 0x9e, 0x03],
];

/// Low bytes of the field polynomials x^8+x^6+x^5+x^3+1 (MDS) and x^8+x^6+x^3+x^2+1 (RS).
const MDS_POLY: u8 = 0x69;
const RS_POLY: u8 = 0x4d;

const fn gf_mul(mut a: u8, mut b: u8, poly: u8) -> u8 {
    let mut r = 0;
    while a != 0 {
        if a & 1 != 0 {
            r ^= b;
        }
        a >>= 1;
        b = if b & 0x80 != 0 {
            (b << 1) ^ poly
        } else {
            b << 1
        };
    }
    r
}

const fn q_byte(t: &[[u8; 16]; 4], x: u8) -> u8 {
    let (a0, b0) = (x >> 4, x & 15);
    let a1 = a0 ^ b0;
    let b1 = (a0 ^ ((b0 >> 1) | (b0 << 3)) ^ (a0 << 3)) & 15;
    let (a2, b2) = (t[0][a1 as usize], t[1][b1 as usize]);
    let a3 = a2 ^ b2;
    let b3 = (a2 ^ ((b2 >> 1) | (b2 << 3)) ^ (a2 << 3)) & 15;
    let (a4, b4) = (t[2][a3 as usize], t[3][b3 as usize]);
    (b4 << 4) | a4
}

const fn q_table(t: &[[u8; 16]; 4]) -> [u8; 256] {
    let mut out = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = q_byte(t, i as u8);
        i += 1;
    }
    out
}

/// q0 and q1 as full byte permutations.
const Q: [[u8; 256]; 2] = [q_table(&QT[0]), q_table(&QT[1])];

/// Column `col` of the MDS matrix times `x`, as a little-endian word.
fn mds_column(x: u8, col: usize) -> u32 {
    let x5b = gf_mul(x, 0x5b, MDS_POLY);
    let xef = gf_mul(x, 0xef, MDS_POLY);
    let v = match col {
        0 => [x, x5b, xef, xef],
        1 => [xef, xef, x5b, x],
        2 => [x5b, xef, x, xef],
        _ => [x5b, x, xef, x5b],
    };
    u32::from_le_bytes(v)
}

/// Which q permutation each byte lane passes through at each of the five stages of `h` for a
/// 256-bit key (the paper's figure 2), first stage first.
const QORD: [[usize; 5]; 4] = [
    [1, 1, 0, 0, 1],
    [0, 1, 1, 0, 0],
    [0, 0, 0, 1, 1],
    [1, 0, 1, 1, 0],
];

/// The function h for a 256-bit key: `l[i]` are the four key words, applied `l[3]` first.
fn h(x: u32, l: &[[u8; 4]; 4]) -> u32 {
    let y = x.to_le_bytes();
    let mut z = 0;
    for (lane, &yb) in y.iter().enumerate() {
        let ord = QORD[lane];
        let mut v = Q[ord[0]][usize::from(yb)];
        for stage in 1..5 {
            v = Q[ord[stage]][usize::from(v ^ l[4 - stage][lane])];
        }
        z ^= mds_column(v, lane);
    }
    z
}

pub(crate) struct Twofish {
    /// Whitening (0..8) and round (8..40) subkeys.
    k: [u32; 40],
    /// g's lane tables: `s[lane][x]` = MDS column `lane` of the key-dependent S-box of `x`.
    s: Box<[[u32; 256]; 4]>,
}

impl Twofish {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let word =
            |i: usize| -> [u8; 4] { [key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]] };
        let me = [word(0), word(2), word(4), word(6)];
        let mo = [word(1), word(3), word(5), word(7)];
        // S-box key words S_0..S_3; h takes them in reverse order (S = (S_3, .., S_0)).
        let mut sw = [[0u8; 4]; 4];
        for (i, s) in sw.iter_mut().enumerate() {
            for (j, row) in RS.iter().enumerate() {
                s[j] = row
                    .iter()
                    .zip(&key[8 * i..8 * i + 8])
                    .fold(0, |acc, (&r, &m)| acc ^ gf_mul(m, r, RS_POLY));
            }
        }
        let s_list = [sw[3], sw[2], sw[1], sw[0]];

        let mut k = [0u32; 40];
        const RHO: u32 = 0x0101_0101;
        for i in 0..20u32 {
            let a = h(RHO.wrapping_mul(2 * i), &me);
            let b = h(RHO.wrapping_mul(2 * i + 1), &mo).rotate_left(8);
            k[2 * i as usize] = a.wrapping_add(b);
            k[2 * i as usize + 1] = a.wrapping_add(b.wrapping_mul(2)).rotate_left(9);
        }

        let mut s = Box::new([[0u32; 256]; 4]);
        for (lane, table) in s.iter_mut().enumerate() {
            let ord = QORD[lane];
            for (x, e) in table.iter_mut().enumerate() {
                let mut v = Q[ord[0]][x];
                for stage in 1..5 {
                    v = Q[ord[stage]][usize::from(v ^ s_list[4 - stage][lane])];
                }
                *e = mds_column(v, lane);
            }
        }
        Twofish { k, s }
    }

    #[inline(always)]
    fn g0(&self, x: u32) -> u32 {
        let [a, b, c, d] = x.to_le_bytes();
        self.s[0][usize::from(a)]
            ^ self.s[1][usize::from(b)]
            ^ self.s[2][usize::from(c)]
            ^ self.s[3][usize::from(d)]
    }

    /// g(ROL(x, 8)) without the rotation: the lanes shift by one table.
    #[inline(always)]
    fn g1(&self, x: u32) -> u32 {
        let [a, b, c, d] = x.to_le_bytes();
        self.s[1][usize::from(a)]
            ^ self.s[2][usize::from(b)]
            ^ self.s[3][usize::from(c)]
            ^ self.s[0][usize::from(d)]
    }

    #[inline(always)]
    fn encrypt_lanes<const L: usize>(&self, b: &mut [[u8; 16]; L]) {
        let k = &self.k;
        let mut r0: [u32; L] = core::array::from_fn(|i| le(&b[i], 0) ^ k[0]);
        let mut r1: [u32; L] = core::array::from_fn(|i| le(&b[i], 1) ^ k[1]);
        let mut r2: [u32; L] = core::array::from_fn(|i| le(&b[i], 2) ^ k[2]);
        let mut r3: [u32; L] = core::array::from_fn(|i| le(&b[i], 3) ^ k[3]);
        for r in 0..8 {
            let kk = 8 + 4 * r;
            for i in 0..L {
                let t0 = self.g0(r0[i]);
                let t1 = self.g1(r1[i]);
                r2[i] = (r2[i] ^ t0.wrapping_add(t1).wrapping_add(k[kk])).rotate_right(1);
                r3[i] = r3[i].rotate_left(1)
                    ^ t0.wrapping_add(t1.wrapping_mul(2)).wrapping_add(k[kk + 1]);
            }
            for i in 0..L {
                let t0 = self.g0(r2[i]);
                let t1 = self.g1(r3[i]);
                r0[i] = (r0[i] ^ t0.wrapping_add(t1).wrapping_add(k[kk + 2])).rotate_right(1);
                r1[i] = r1[i].rotate_left(1)
                    ^ t0.wrapping_add(t1.wrapping_mul(2)).wrapping_add(k[kk + 3]);
            }
        }
        for i in 0..L {
            let out = [r2[i] ^ k[4], r3[i] ^ k[5], r0[i] ^ k[6], r1[i] ^ k[7]];
            for (chunk, v) in b[i].chunks_exact_mut(4).zip(out) {
                chunk.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

impl_block_encrypt!(Twofish, U16);
