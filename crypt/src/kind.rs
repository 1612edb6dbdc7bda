//! Cipher names as kcptun spells them (docs/wire-format.md#crypt-ciphers), plus the Rust-only authenticated modes.

use core::fmt;
use core::str::FromStr;

use crate::CryptError;

/// Which packet cipher a [`PacketCrypt`](crate::PacketCrypt) uses.
///
/// The first thirteen variants are kcptun's `--crypt` values and are byte-compatible with kcp-go
/// (docs/wire-format.md#crypt-ciphers). [`CipherKind::Aes256Gcm`] and [`CipherKind::ChaCha20Poly1305`] are an extension
/// of this crate: their packets are **not understood by Go peers** (a Go kcptun maps those names to
/// `aes` and every packet would fail its CRC), so use them only when both ends run this crate.
///
/// ```
/// use rkcp_crypt::CipherKind;
///
/// assert_eq!(CipherKind::from_kcptun_name("3des"), CipherKind::TripleDes);
/// // kcptun silently falls back to AES-256 for a name it does not know, and so does a Go peer
/// // for the Rust-only names ...
/// assert_eq!(CipherKind::from_kcptun_name("rot13"), CipherKind::Aes);
/// assert_eq!(CipherKind::from_kcptun_name("aes-256-gcm"), CipherKind::Aes);
/// // ... `kcptun_lookup` says when that fallback happens ...
/// assert_eq!(CipherKind::kcptun_lookup("rot13"), None);
/// // ... while `FromStr` is strict and knows every name this crate implements.
/// assert!("rot13".parse::<CipherKind>().is_err());
/// assert_eq!("aes-256-gcm".parse::<CipherKind>(), Ok(CipherKind::Aes256Gcm));
/// assert_eq!(CipherKind::Aes128.to_string(), "aes-128");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CipherKind {
    /// `aes`: AES-256 in full-block CFB with the fixed IV; kcptun's default.
    Aes,
    /// `aes-128`: AES-128 keyed with the first 16 bytes of the derived key.
    Aes128,
    /// `aes-192`: AES-192 keyed with the first 24 bytes of the derived key.
    Aes192,
    /// `salsa20`: Salsa20/20 keyed with the 32-byte key; the first 8 bytes of each datagram are
    /// the (clear) nonce (docs/wire-format.md#crypt-salsa20-xor).
    Salsa20,
    /// `blowfish`: Blowfish with the 32-byte key, CFB-64.
    Blowfish,
    /// `twofish`: Twofish-256, CFB-128.
    Twofish,
    /// `cast5`: CAST-128 with the first 16 key bytes, CFB-64.
    Cast5,
    /// `3des`: DES-EDE3 with the first 24 key bytes, CFB-64.
    TripleDes,
    /// `tea`: TEA with Go's 16 "rounds" (8 cycles), big-endian, first 16 key bytes, CFB-64.
    Tea,
    /// `xtea`: XTEA (32 cycles), big-endian as Go's x/crypto, first 16 key bytes, CFB-64.
    Xtea,
    /// `sm4`: SM4 with the first 16 key bytes, CFB-128.
    Sm4,
    /// `xor`: XOR with a 1500-byte PBKDF2 table (docs/wire-format.md#crypt-salsa20-xor). Obfuscation only.
    Xor,
    /// `none`: no encryption, but the nonce and CRC32 header are still sent and checked.
    None,
    /// `aes-256-gcm`: authenticated AES-256-GCM. **Rust-only**, not understood by Go peers.
    /// Sealed and opened per session only ([`PacketCrypt::client_session`](crate::PacketCrypt::client_session),
    /// [`SessionCrypt`](crate::SessionCrypt)); `PacketCrypt::seal`/`open` refuse it
    /// ([`CryptError::SessionRequired`]).
    Aes256Gcm,
    /// `chacha20-poly1305`: authenticated ChaCha20-Poly1305. **Rust-only**, not understood by Go peers.
    /// Sealed and opened per session only, as [`CipherKind::Aes256Gcm`].
    ChaCha20Poly1305,
}

impl CipherKind {
    /// The thirteen kcptun ciphers, in the order of docs/wire-format.md#crypt-ciphers (all interoperate with kcp-go).
    pub const KCPTUN: [CipherKind; 13] = [
        CipherKind::Aes,
        CipherKind::Aes128,
        CipherKind::Aes192,
        CipherKind::Salsa20,
        CipherKind::Blowfish,
        CipherKind::Twofish,
        CipherKind::Cast5,
        CipherKind::TripleDes,
        CipherKind::Tea,
        CipherKind::Xtea,
        CipherKind::Sm4,
        CipherKind::Xor,
        CipherKind::None,
    ];

    /// The authenticated, Rust-only modes.
    pub const AUTHENTICATED: [CipherKind; 2] =
        [CipherKind::Aes256Gcm, CipherKind::ChaCha20Poly1305];

    /// Every kind this crate implements: [`CipherKind::KCPTUN`] then [`CipherKind::AUTHENTICATED`].
    pub const ALL: [CipherKind; 15] = [
        CipherKind::Aes,
        CipherKind::Aes128,
        CipherKind::Aes192,
        CipherKind::Salsa20,
        CipherKind::Blowfish,
        CipherKind::Twofish,
        CipherKind::Cast5,
        CipherKind::TripleDes,
        CipherKind::Tea,
        CipherKind::Xtea,
        CipherKind::Sm4,
        CipherKind::Xor,
        CipherKind::None,
        CipherKind::Aes256Gcm,
        CipherKind::ChaCha20Poly1305,
    ];

    /// Maps a `--crypt` value exactly as kcptun's `main.go` does: any name it does not know becomes
    /// [`CipherKind::Aes`] (`docs/wire-format.md#crypt-kcptun-key`), so a typo silently selects AES-256 on both ends. That includes the Rust-only names
    /// `aes-256-gcm` and `chacha20-poly1305`: a Go peer reads them as `aes` (AES-256-CFB), and so
    /// does this function. Use [`CipherKind::kcptun_lookup`] to notice the fallback and `FromStr`
    /// to select an authenticated mode.
    pub fn from_kcptun_name(name: &str) -> CipherKind {
        Self::kcptun_lookup(name).unwrap_or(CipherKind::Aes)
    }

    /// The kcptun cipher called `name`, or `None` where kcptun would fall back to `aes` (an unknown
    /// name, or one of the Rust-only names, which kcptun does not know either).
    pub fn kcptun_lookup(name: &str) -> Option<CipherKind> {
        CipherKind::KCPTUN.into_iter().find(|k| k.name() == name)
    }

    fn lookup(name: &str) -> Option<CipherKind> {
        CipherKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kcptun `--crypt` spelling of this kind.
    pub fn name(&self) -> &'static str {
        match self {
            CipherKind::Aes => "aes",
            CipherKind::Aes128 => "aes-128",
            CipherKind::Aes192 => "aes-192",
            CipherKind::Salsa20 => "salsa20",
            CipherKind::Blowfish => "blowfish",
            CipherKind::Twofish => "twofish",
            CipherKind::Cast5 => "cast5",
            CipherKind::TripleDes => "3des",
            CipherKind::Tea => "tea",
            CipherKind::Xtea => "xtea",
            CipherKind::Sm4 => "sm4",
            CipherKind::Xor => "xor",
            CipherKind::None => "none",
            CipherKind::Aes256Gcm => "aes-256-gcm",
            CipherKind::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// True for the authenticated Rust-only modes, whose packets a Go peer cannot read.
    pub fn is_authenticated(&self) -> bool {
        matches!(self, CipherKind::Aes256Gcm | CipherKind::ChaCha20Poly1305)
    }

    /// True when kcp-go speaks this cipher (the thirteen kcptun names).
    pub fn is_kcp_go_compatible(&self) -> bool {
        !self.is_authenticated()
    }

    /// True for kcptun's older ciphers, compiled only with the crate's `legacy-ciphers` feature
    /// (on by default): `salsa20`, `blowfish`, `twofish`, `cast5`, `3des`, `tea`, `xtea`, `sm4`.
    pub fn is_legacy(&self) -> bool {
        matches!(
            self,
            CipherKind::Salsa20
                | CipherKind::Blowfish
                | CipherKind::Twofish
                | CipherKind::Cast5
                | CipherKind::TripleDes
                | CipherKind::Tea
                | CipherKind::Xtea
                | CipherKind::Sm4
        )
    }

    /// True when this build can construct the cipher: always, except for the legacy kinds
    /// ([`CipherKind::is_legacy`]) when the `legacy-ciphers` feature is off.
    pub fn is_available(&self) -> bool {
        cfg!(feature = "legacy-ciphers") || !self.is_legacy()
    }
}

impl fmt::Display for CipherKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CipherKind {
    type Err = CryptError;

    /// Strict parse: unlike [`CipherKind::from_kcptun_name`], an unknown name is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::lookup(s).ok_or_else(|| CryptError::UnknownCipher {
            name: s.chars().take(64).collect(),
        })
    }
}
