//! TEA and XTEA exactly as Go's x/crypto computes them for kcptun's `tea` and `xtea`
//! (PROTOCOL D.3).

use cipher::{
    Block, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, InOut,
    KeyInit, ParBlocksSizeUser,
    consts::{U1, U8},
};

/// TEA's key-schedule constant.
const DELTA: u32 = 0x9E37_79B9;

/// Go's `tea.NewCipherWithRounds(key, 16)` as kcp-go builds it: 16 Go "rounds" are 8 TEA cycles
/// (the `sum += delta` loop runs 8 times, against 32 in standard TEA), big-endian key and block
/// words. No crate offers a round count, hence this hand-written version.
pub(crate) struct Tea8 {
    k: [u32; 4],
}

/// Go's rounds / 2.
const TEA_CYCLES: usize = 8;

impl Tea8 {
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        let mut k = [0u32; 4];
        for (w, c) in k.iter_mut().zip(key.chunks_exact(4)) {
            *w = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        Tea8 { k }
    }
}

impl BlockSizeUser for Tea8 {
    type BlockSize = U8;
}

impl ParBlocksSizeUser for Tea8 {
    type ParBlocksSize = U1;
}

impl BlockCipherEncrypt for Tea8 {
    #[inline]
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = Self::BlockSize>) {
        f.call(self)
    }
}

impl BlockCipherEncBackend for Tea8 {
    #[inline]
    fn encrypt_block(&self, mut block: InOut<'_, '_, Block<Self>>) {
        let b = block.get_in();
        let mut v0 = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let mut v1 = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let [k0, k1, k2, k3] = self.k;
        let mut sum = 0u32;
        for _ in 0..TEA_CYCLES {
            sum = sum.wrapping_add(DELTA);
            v0 = v0.wrapping_add(
                (v1 << 4).wrapping_add(k0) ^ v1.wrapping_add(sum) ^ (v1 >> 5).wrapping_add(k1),
            );
            v1 = v1.wrapping_add(
                (v0 << 4).wrapping_add(k2) ^ v0.wrapping_add(sum) ^ (v0 >> 5).wrapping_add(k3),
            );
        }
        let out = block.get_out();
        out[..4].copy_from_slice(&v0.to_be_bytes());
        out[4..].copy_from_slice(&v1.to_be_bytes());
    }
}

/// Go's x/crypto `xtea` reads key and block as big-endian words, the `xtea` crate as
/// little-endian ones; the rounds are identical. Reversing each 4-byte word of the key once and
/// of the block before and after each encryption turns one into the other, so this keeps the
/// crate's (reviewed) round function and costs two byte swaps per block.
pub(crate) struct XteaBe {
    inner: xtea::Xtea,
}

impl XteaBe {
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        let mut k = *key;
        for w in k.chunks_exact_mut(4) {
            w.reverse();
        }
        XteaBe {
            inner: xtea::Xtea::new(&k.into()),
        }
    }
}

impl BlockSizeUser for XteaBe {
    type BlockSize = U8;
}

impl ParBlocksSizeUser for XteaBe {
    type ParBlocksSize = U1;
}

impl BlockCipherEncrypt for XteaBe {
    #[inline]
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = Self::BlockSize>) {
        f.call(self)
    }
}

impl BlockCipherEncBackend for XteaBe {
    #[inline]
    fn encrypt_block(&self, mut block: InOut<'_, '_, Block<Self>>) {
        let mut b = *block.get_in();
        swap_words(&mut b);
        BlockCipherEncBackend::encrypt_block(&self.inner, (&mut b).into());
        swap_words(&mut b);
        *block.get_out() = b;
    }
}

#[inline(always)]
fn swap_words(b: &mut Block<XteaBe>) {
    let v0 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]).swap_bytes();
    let v1 = u32::from_le_bytes([b[4], b[5], b[6], b[7]]).swap_bytes();
    b[..4].copy_from_slice(&v0.to_le_bytes());
    b[4..].copy_from_slice(&v1.to_le_bytes());
}
