//! The kcp-go `BlockCrypt` ciphers (docs/wire-format.md#crypt-cfb to #crypt-salsa20-xor): whole datagram, in place, no
//! authentication and a fresh cipher state per datagram.

use cipher::{Block, BlockCipherEncrypt, BlockSizeUser, InnerIvInit, KeyInit, typenum::Unsigned};

#[cfg(feature = "legacy-ciphers")]
use crate::ciphers::{Blowfish, Cast5, Sm4, Tea8, TripleDes, Twofish, Xtea};
use crate::kind::CipherKind;

/// kcp-go's fixed CFB initial vector (docs/wire-format.md#crypt-cfb); 8-byte-block ciphers use its first 8 bytes.
pub const INITIAL_VECTOR: [u8; 16] = [
    0xa7, 0x73, 0x4f, 0x9c, 0x12, 0xac, 0x1b, 0x01, 0xa4, 0x15, 0xf2, 0xc1, 0xfc, 0x78, 0xe6, 0x6b,
];

/// Salt of the `xor` cipher's PBKDF2 table (docs/wire-format.md#crypt-salsa20-xor).
const XOR_SALT: &[u8] = b"sH3CIVoF#rWLtJo6";
/// kcp-go's `mtuLimit`: the `xor` table length, and so the longest prefix it scrambles.
pub(crate) const XOR_TABLE_LEN: usize = 1500;
/// PBKDF2 iterations for the `xor` table.
const XOR_ITERATIONS: u32 = 32;
/// Salsa20's clear nonce prefix (docs/wire-format.md#crypt-salsa20-xor).
#[cfg(feature = "legacy-ciphers")]
const SALSA20_NONCE_LEN: usize = 8;

/// A kcp-go packet cipher: transforms a **whole datagram** in place, nonce and CRC included
/// (docs/wire-format.md#crypt-contract).
///
/// Implementations keep their expanded key and restart the cipher state for every call, so
/// `encrypt` and `decrypt` are pure functions of the key and the buffer and can run
/// concurrently from many threads. They never panic, whatever the buffer length (an empty
/// buffer is left as is). Most callers want [`PacketCrypt`](crate::PacketCrypt), which adds the
/// nonce and CRC32 header on top.
///
/// ```
/// use rkcp_crypt::{BlockCrypt, CipherKind, derive_key, new_block_crypt};
///
/// let bc = new_block_crypt(CipherKind::Aes, &derive_key(b"it's a secrect")).unwrap();
/// let mut buf = *b"sixteen byte nonce, crc, then kcp";
/// bc.encrypt(&mut buf);
/// assert_ne!(&buf, b"sixteen byte nonce, crc, then kcp");
/// bc.decrypt(&mut buf);
/// assert_eq!(&buf, b"sixteen byte nonce, crc, then kcp");
/// ```
pub trait BlockCrypt: Send + Sync {
    /// Encrypts `buf` in place.
    fn encrypt(&self, buf: &mut [u8]);
    /// Decrypts `buf` in place.
    fn decrypt(&self, buf: &mut [u8]);
}

/// Builds the kcp-go cipher for `kind` from the 32-byte derived key exactly as kcptun does
/// (docs/wire-format.md#crypt-ciphers: which prefix of the key each cipher takes). Returns `None` for the
/// authenticated kinds, which are not `BlockCrypt`s (see [`PacketCrypt`](crate::PacketCrypt)),
/// and for the legacy kinds ([`CipherKind::is_legacy`]) when the `legacy-ciphers` feature is off.
pub fn new_block_crypt(kind: CipherKind, key: &[u8; 32]) -> Option<Box<dyn BlockCrypt>> {
    let k16: &[u8; 16] = key.first_chunk().unwrap_or(&[0; 16]);
    Some(match kind {
        CipherKind::Aes => aes256_cfb(key),
        CipherKind::Aes128 => cfb(aes::Aes128::new(k16.into())),
        CipherKind::Aes192 => cfb(<aes::Aes192 as KeyInit>::new_from_slice(&key[..24]).ok()?),
        #[cfg(feature = "legacy-ciphers")]
        CipherKind::Salsa20 => Box::new(Salsa20Crypt { key: *key }),
        #[cfg(feature = "legacy-ciphers")]
        CipherKind::Blowfish => cfb(Blowfish::new(key)),
        #[cfg(feature = "legacy-ciphers")]
        CipherKind::Twofish => cfb(Twofish::new(key)),
        #[cfg(feature = "legacy-ciphers")]
        CipherKind::Cast5 => cfb(Cast5::new(k16)),
        #[cfg(feature = "legacy-ciphers")]
        CipherKind::TripleDes => cfb(TripleDes::new(key.first_chunk().unwrap_or(&[0; 24]))),
        #[cfg(feature = "legacy-ciphers")]
        CipherKind::Tea => cfb(Tea8::new(k16)),
        #[cfg(feature = "legacy-ciphers")]
        CipherKind::Xtea => cfb(Xtea::new(k16)),
        #[cfg(feature = "legacy-ciphers")]
        CipherKind::Sm4 => cfb(Sm4::new(k16)),
        #[cfg(not(feature = "legacy-ciphers"))]
        CipherKind::Salsa20
        | CipherKind::Blowfish
        | CipherKind::Twofish
        | CipherKind::Cast5
        | CipherKind::TripleDes
        | CipherKind::Tea
        | CipherKind::Xtea
        | CipherKind::Sm4 => return None,
        CipherKind::Xor => Box::new(XorCrypt::new(key)),
        CipherKind::None => Box::new(NoneCrypt),
        CipherKind::Aes256Gcm | CipherKind::ChaCha20Poly1305 => return None,
    })
}

/// kcptun's default cipher: straight on AES-NI where the CPU has it (see `crate::aesni`), else through
/// `cfb_mode` and the `aes` crate.
fn aes256_cfb(key: &[u8; 32]) -> Box<dyn BlockCrypt> {
    #[cfg(target_arch = "x86_64")]
    if let Some(c) = crate::aesni::AesNiCfb::new(key) {
        return Box::new(c);
    }
    cfb(aes::Aes256::new(key.into()))
}

fn cfb<C>(cipher: C) -> Box<dyn BlockCrypt>
where
    C: BlockCipherEncrypt + Send + Sync + 'static,
{
    let mut iv = Block::<C>::default();
    let n = C::BlockSize::USIZE;
    iv.copy_from_slice(&INITIAL_VECTOR[..n]);
    Box::new(Cfb { cipher, iv })
}

/// Full-block CFB with kcp-go's fixed IV (docs/wire-format.md#crypt-cfb). The key schedule is expanded once, at
/// construction; each call borrows it (`Encryptor<&C>`), so a packet costs no key setup, only
/// the `E(IV)` block that restarts the mode. Encryption is inherently serial (each block's
/// keystream is the encryption of the previous ciphertext block), so its speed is the cipher's
/// single-block latency; decryption runs several blocks at once (AES-NI pipelining, four lanes
/// in `crate::ciphers`), because there every keystream block depends only on ciphertext.
struct Cfb<C: BlockSizeUser> {
    cipher: C,
    iv: Block<C>,
}

impl<C> BlockCrypt for Cfb<C>
where
    C: BlockCipherEncrypt + Send + Sync,
{
    #[inline]
    fn encrypt(&self, buf: &mut [u8]) {
        cfb_mode::Encryptor::<&C>::inner_iv_init(&self.cipher, &self.iv).encrypt(buf);
    }

    #[inline]
    fn decrypt(&self, buf: &mut [u8]) {
        cfb_mode::Decryptor::<&C>::inner_iv_init(&self.cipher, &self.iv).decrypt(buf);
    }
}

/// kcp-go's `salsa20BlockCrypt` (docs/wire-format.md#crypt-salsa20-xor): the first 8 bytes of the datagram (the start
/// of the random packet nonce) are the Salsa20 nonce and stay in clear; the rest is XORed with
/// the keystream from block counter 0. A datagram of 8 bytes or fewer is left unchanged (kcp-go
/// would panic on fewer than 8).
#[cfg(feature = "legacy-ciphers")]
struct Salsa20Crypt {
    key: [u8; 32],
}

#[cfg(feature = "legacy-ciphers")]
impl Salsa20Crypt {
    #[inline]
    fn apply(&self, buf: &mut [u8]) {
        let Some((nonce, body)) = buf.split_first_chunk_mut::<SALSA20_NONCE_LEN>() else {
            return;
        };
        crate::salsa::xor_keystream(&self.key, nonce, body);
    }
}

#[cfg(feature = "legacy-ciphers")]
impl BlockCrypt for Salsa20Crypt {
    fn encrypt(&self, buf: &mut [u8]) {
        self.apply(buf);
    }
    fn decrypt(&self, buf: &mut [u8]) {
        self.apply(buf);
    }
}

/// kcp-go's `simpleXORBlockCrypt` (docs/wire-format.md#crypt-salsa20-xor): byte `i` is XORed with `table[i]` for the
/// first 1500 bytes; anything beyond the table stays in clear, as in kcp-go.
struct XorCrypt {
    table: Box<[u8; XOR_TABLE_LEN]>,
}

impl XorCrypt {
    fn new(key: &[u8; 32]) -> Self {
        let mut table = Box::new([0u8; XOR_TABLE_LEN]);
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(key, XOR_SALT, XOR_ITERATIONS, &mut table[..]);
        XorCrypt { table }
    }

    #[inline]
    fn apply(&self, buf: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 support was just detected at run time.
            unsafe { xor_prefix_avx2(buf, &self.table[..]) };
            return;
        }
        xor_prefix(buf, &self.table[..]);
    }

    #[cfg(all(test, feature = "legacy-ciphers"))]
    pub(crate) fn table(&self) -> &[u8] {
        &self.table[..]
    }
}

/// `buf[i] ^= table[i]` for `i < min(len)`. Fixed-width chunks let the compiler emit wide vector
/// XORs (SSE2 here, AVX2 in the copy below).
#[inline(always)]
fn xor_prefix(buf: &mut [u8], table: &[u8]) {
    let mut bufs = buf.chunks_exact_mut(64);
    let mut tabs = table.chunks_exact(64);
    for (b, t) in (&mut bufs).zip(&mut tabs) {
        for (x, y) in b.iter_mut().zip(t) {
            *x ^= *y;
        }
    }
    let consumed = buf.len().min(table.len()) / 64 * 64;
    let rest_b = buf.get_mut(consumed..).unwrap_or_default();
    let rest_t = table.get(consumed..).unwrap_or_default();
    for (x, y) in rest_b.iter_mut().zip(rest_t) {
        *x ^= *y;
    }
}

/// [`xor_prefix`] compiled for AVX2 (kcp-go uses AVX2 here too, via xorsimd).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn xor_prefix_avx2(buf: &mut [u8], table: &[u8]) {
    xor_prefix(buf, table);
}

impl BlockCrypt for XorCrypt {
    fn encrypt(&self, buf: &mut [u8]) {
        self.apply(buf);
    }
    fn decrypt(&self, buf: &mut [u8]) {
        self.apply(buf);
    }
}

/// kcp-go's `noneBlockCrypt`: identity. The header is still written and checked, so the CRC
/// still catches corruption.
struct NoneCrypt;

impl BlockCrypt for NoneCrypt {
    fn encrypt(&self, _buf: &mut [u8]) {}
    fn decrypt(&self, _buf: &mut [u8]) {}
}

#[cfg(all(test, feature = "legacy-ciphers"))]
pub(crate) fn xor_table(key: &[u8; 32]) -> Vec<u8> {
    XorCrypt::new(key).table().to_vec()
}
