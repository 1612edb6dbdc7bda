//! Block ciphers written here because the crates either lack what kcp-go does (TEA with Go's
//! round count, XTEA's big-endian words) or run far below kcp-go's speed: the RustCrypto
//! `twofish`, `des` and `sm4` crates evaluate S-boxes and linear layers bit by bit (Twofish
//! recomputes its key-dependent S-boxes on every block), where kcp-go's Go ciphers use
//! precomputed tables. These table versions are checked against the crates (kept as
//! dev-dependencies) on random keys and blocks, and against docs/wire-format.md#vectors.
//!
//! Only encryption exists: kcp-go's CFB (docs/wire-format.md#crypt-cfb) never runs a block cipher backwards.

/// Implements the `cipher` 0.5 encryption traits for a type with an inherent
/// `fn encrypt_lanes<const L: usize>(&self, blocks: &mut [[u8; N]; L])` that encrypts `L`
/// independent blocks with their rounds interleaved. Single blocks (CFB encryption, inherently
/// serial) use `L = 1`; `cfb_mode`'s decryptor hands over four blocks at a time (their
/// keystream only depends on ciphertext), and running four rounds side by side keeps the
/// table lookups of different blocks in flight together.
macro_rules! impl_block_encrypt {
    ($ty:ty, $bs:ty) => {
        impl cipher::BlockSizeUser for $ty {
            type BlockSize = $bs;
        }

        impl cipher::ParBlocksSizeUser for $ty {
            type ParBlocksSize = cipher::consts::U4;
        }

        impl cipher::BlockCipherEncrypt for $ty {
            #[inline]
            fn encrypt_with_backend(
                &self,
                f: impl cipher::BlockCipherEncClosure<BlockSize = Self::BlockSize>,
            ) {
                f.call(self)
            }
        }

        impl cipher::BlockCipherEncBackend for $ty {
            #[inline]
            fn encrypt_block(&self, mut block: cipher::InOut<'_, '_, cipher::Block<Self>>) {
                let mut b: [[u8; <$bs as cipher::typenum::Unsigned>::USIZE]; 1] =
                    [(*block.get_in()).into()];
                self.encrypt_lanes(&mut b);
                *block.get_out() = b[0].into();
            }

            #[inline]
            fn encrypt_par_blocks(
                &self,
                mut blocks: cipher::InOut<'_, '_, cipher::ParBlocks<Self>>,
            ) {
                let input = blocks.get_in();
                let mut b: [[u8; <$bs as cipher::typenum::Unsigned>::USIZE]; 4] =
                    core::array::from_fn(|i| input[i].into());
                self.encrypt_lanes(&mut b);
                let out = blocks.get_out();
                for (o, v) in out.iter_mut().zip(b) {
                    *o = v.into();
                }
            }
        }
    };
}

/// Big-endian 32-bit word `i` of a block.
#[inline(always)]
fn be(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// Little-endian 32-bit word `i` of a block.
#[inline(always)]
fn le(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

mod blowfish;
mod cast5;
mod des;
mod sm4;
mod tea;
mod twofish;

pub(crate) use blowfish::Blowfish;
pub(crate) use cast5::Cast5;
pub(crate) use des::TripleDes;
pub(crate) use sm4::Sm4;
pub(crate) use tea::{Tea8, Xtea};
pub(crate) use twofish::Twofish;

#[cfg(test)]
mod tests {
    use cipher::{BlockCipherEncrypt, KeyInit};
    use proptest::prelude::*;

    use super::*;

    fn ours<C: BlockCipherEncrypt>(c: &C, block: &[u8]) -> Vec<u8> {
        let mut b = cipher::Block::<C>::default();
        b.copy_from_slice(block);
        c.encrypt_block(&mut b);
        b.to_vec()
    }

    /// `encrypt_blocks` (the four-lane path) agrees with one block at a time.
    fn check_lanes<C: BlockCipherEncrypt>(c: &C, blocks: &[[u8; 16]; 4]) {
        let n = <C::BlockSize as cipher::typenum::Unsigned>::USIZE;
        let mut many: Vec<cipher::Block<C>> = blocks
            .iter()
            .map(|b| {
                let mut x = cipher::Block::<C>::default();
                x.copy_from_slice(&b[..n]);
                x
            })
            .collect();
        let singles: Vec<Vec<u8>> = many.iter().map(|b| ours(c, b)).collect();
        c.encrypt_blocks(&mut many);
        let many: Vec<Vec<u8>> = many.iter().map(|b| b.to_vec()).collect();
        assert_eq!(many, singles);
    }

    proptest! {
        #[test]
        fn twofish_matches_crate(key in any::<[u8; 32]>(), block in any::<[u8; 16]>()) {
            let reference = ::twofish::Twofish::new(&key.into());
            prop_assert_eq!(ours(&Twofish::new(&key), &block), ours(&reference, &block));
        }

        #[test]
        fn triple_des_matches_crate(key in any::<[u8; 24]>(), block in any::<[u8; 8]>()) {
            let reference = ::des::TdesEde3::new(&key.into());
            prop_assert_eq!(ours(&TripleDes::new(&key), &block), ours(&reference, &block));
        }

        #[test]
        fn xtea_matches_crate_with_big_endian_words(key in any::<[u8; 16]>(), block in any::<[u8; 8]>()) {
            // Go's x/crypto XTEA reads big-endian words, the crate little-endian ones.
            let swap = |b: &[u8]| -> Vec<u8> { b.chunks(4).flat_map(|w| w.iter().rev().copied()).collect() };
            let key_le: [u8; 16] = swap(&key).try_into().unwrap();
            let reference = ::xtea::Xtea::new(&key_le.into());
            prop_assert_eq!(ours(&Xtea::new(&key), &block), swap(&ours(&reference, &swap(&block))));
        }

        #[test]
        fn four_lanes_match_one(key in any::<[u8; 32]>(), blocks in any::<[[u8; 16]; 4]>()) {
            let k16: [u8; 16] = key[..16].try_into().unwrap();
            let k24: [u8; 24] = key[..24].try_into().unwrap();
            check_lanes(&Twofish::new(&key), &blocks);
            check_lanes(&Blowfish::new(&key), &blocks);
            check_lanes(&Cast5::new(&k16), &blocks);
            check_lanes(&Sm4::new(&k16), &blocks);
            check_lanes(&TripleDes::new(&k24), &blocks);
            check_lanes(&Tea8::new(&k16), &blocks);
            check_lanes(&Xtea::new(&k16), &blocks);
        }

        #[test]
        fn blowfish_matches_crate(key in any::<[u8; 32]>(), block in any::<[u8; 8]>()) {
            let reference = <::blowfish::Blowfish as KeyInit>::new_from_slice(&key).unwrap();
            prop_assert_eq!(ours(&Blowfish::new(&key), &block), ours(&reference, &block));
        }

        #[test]
        fn cast5_matches_crate(key in any::<[u8; 16]>(), block in any::<[u8; 8]>()) {
            let reference = ::cast5::Cast5::new(&key.into());
            prop_assert_eq!(ours(&Cast5::new(&key), &block), ours(&reference, &block));
        }

        #[test]
        fn sm4_matches_crate(key in any::<[u8; 16]>(), block in any::<[u8; 16]>()) {
            let reference = ::sm4::Sm4::new(&key.into());
            prop_assert_eq!(ours(&Sm4::new(&key), &block), ours(&reference, &block));
        }
    }
}
