//! kcp-go packet encryption, byte-compatible with kcp-go 5.6.1 and kcptun (`docs/wire-format.md#crypt`,
//! `#session-output-crypt`, `#session-input-crypt`), plus an authenticated mode for Rust-to-Rust links.
//!
//! Every datagram a kcp-go session sends with crypto on starts with a 20-byte header: a random
//! 16-byte nonce and the little-endian CRC32-IEEE of everything after the header. The whole
//! datagram, header included, is then encrypted with one of kcptun's thirteen ciphers, block
//! ciphers in full-block CFB mode restarted for each datagram from a fixed IV (docs/wire-format.md#crypt-cfb).
//! The random nonce, being the first plaintext block, is what makes two equal payloads encrypt
//! differently.
//!
//! * [`PacketCrypt`] does the whole job for the kcp-go ciphers: [`PacketCrypt::seal`] before
//!   sending, [`PacketCrypt::open`] on receipt, with a typed [`CryptError`] for short, corrupted
//!   or forged input. For the authenticated kinds it holds the keys [`SessionCrypt`]s are made
//!   from.
//! * [`CipherKind`] names the ciphers as kcptun's `--crypt` does; [`derive_key`] is kcptun's
//!   `--key` to key derivation.
//! * [`BlockCrypt`] / [`new_block_crypt`] expose the bare kcp-go ciphers.
//! * [`SessionCrypt`] ([`PacketCrypt::client_session`], [`PacketCrypt::server_session`]) seals
//!   and opens one session's datagrams: for the authenticated kinds with per-session,
//!   per-direction keys, counter nonces and a replay window (the construction and its argument
//!   are in [`SessionCrypt`]'s docs); for the kcp-go
//!   kinds exactly as [`PacketCrypt`]. [`FreshnessRecord`] lets a listener accept a session's
//!   creation only once and only while fresh.
//!
//! # Features
//! * `legacy-ciphers` (on by default): kcptun's older block and stream ciphers, `salsa20`,
//!   `blowfish`, `twofish`, `cast5`, `3des`, `tea`, `xtea` and `sm4` ([`CipherKind::is_legacy`]).
//!   Without it those [`CipherKind`]s still exist (names parse, the enum does not change) but are
//!   not compiled in: [`PacketCrypt::try_new`] returns [`CryptError::CipherUnavailable`],
//!   [`new_block_crypt`] returns `None` and [`PacketCrypt::new`] panics with that message.
//!   `aes`, `aes-128`, `aes-192`, `xor`, `none` and the authenticated modes are always there.
//!
//! # Security
//! The kcp-go format has **no authentication**: the CRC detects accidents, not attackers, and
//! there is no replay protection (docs/wire-format.md#crypt-contract). `xor` and `none` are not encryption at all. For
//! links where both ends run this crate, [`CipherKind::Aes256Gcm`] and
//! [`CipherKind::ChaCha20Poly1305`] authenticate every packet; **Go peers do not understand
//! them**. They seal and open only through [`SessionCrypt`] (docs/wire-format.md#crypt-aead);
//! [`PacketCrypt::seal`] and [`PacketCrypt::open`] refuse them ([`CryptError::SessionRequired`]).
//!
//! ```
//! use rkcp_crypt::{CipherKind, PacketCrypt};
//!
//! // kcptun's defaults: `--crypt aes --key "it's a secrect"`.
//! let tx = PacketCrypt::from_passphrase(CipherKind::from_kcptun_name("aes"), "it's a secrect");
//! let rx = tx.clone();
//!
//! let mut datagram = vec![0u8; tx.header_len() + 5];
//! datagram[tx.header_len()..].copy_from_slice(b"hello");
//! tx.seal(&mut datagram);
//! let payload = rx.open(&mut datagram).unwrap();
//! assert_eq!(&datagram[payload], b"hello");
//! ```

mod aead;
mod aead_session;
#[cfg(target_arch = "x86_64")]
mod aesni;
mod block;
#[cfg(feature = "legacy-ciphers")]
mod ciphers;
mod fresh;
mod kind;
mod nonce;
mod packet;
mod replay;
#[cfg(feature = "legacy-ciphers")]
mod salsa;

// The appendix G vectors and the round trips cover every kcptun cipher, so they need them all.
#[cfg(all(test, feature = "legacy-ciphers"))]
mod tests;
#[cfg(all(test, not(feature = "legacy-ciphers")))]
mod tests_without_legacy;

pub use aead::AEAD_TAG_LEN;
pub use aead_session::{
    Opened, Role, SESSION_COUNTER_LEN, SESSION_HEADER_LEN, SESSION_ID_LEN, SESSION_OVERHEAD,
    SessionCrypt, SessionId, SessionOpener, SessionSealer, peek_session_id, unix_time_ms,
};
pub use block::{BlockCrypt, INITIAL_VECTOR, new_block_crypt};
pub use fresh::{
    DEFAULT_FRESHNESS_CAPACITY, DEFAULT_FRESHNESS_WINDOW_MS, FreshnessRecord, Refusal,
};
pub use kind::CipherKind;
pub use packet::PacketCrypt;
pub use replay::REPLAY_WINDOW;

/// Length of kcp-go's random nonce at the start of each datagram (docs/wire-format.md#session-headers).
pub const NONCE_LEN: usize = 16;
/// Length of the CRC32 field after the nonce (docs/wire-format.md#session-headers).
pub const CRC_LEN: usize = 4;
/// kcp-go's `cryptHeaderSize`: nonce + CRC, in front of every datagram when crypto is on.
pub const HEADER_LEN: usize = NONCE_LEN + CRC_LEN;

/// kcptun's PBKDF2 salt (docs/wire-format.md#crypt-kcptun-key).
const KEY_SALT: &[u8] = b"kcp-go";
/// kcptun's PBKDF2 iteration count (docs/wire-format.md#crypt-kcptun-key).
const KEY_ITERATIONS: u32 = 4096;

/// kcptun's key derivation (docs/wire-format.md#crypt-kcptun-key): PBKDF2-HMAC-SHA1 of the `--key` string with salt
/// `"kcp-go"`, 4096 iterations, 32 bytes. Each cipher then takes the prefix it needs (`#crypt-ciphers`).
///
/// ```
/// let key = rkcp_crypt::derive_key(b"it's a secrect"); // kcptun's default --key
/// assert_eq!(key[..4], [0x25, 0xd7, 0xd7, 0xbd]);
/// ```
pub fn derive_key(passphrase: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(passphrase, KEY_SALT, KEY_ITERATIONS, &mut key);
    key
}

/// Errors of this crate. Every `open` failure means "drop this datagram"; none is fatal to a
/// session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    /// The datagram is shorter than the crypto header (plus tag): it cannot be a sealed packet.
    /// kcp-go drops these silently (docs/wire-format.md#session-input-crypt); drop it.
    #[error("packet of {len} bytes is shorter than the {min}-byte crypto overhead")]
    TooShort {
        /// Received length.
        len: usize,
        /// Least length a sealed packet has.
        min: usize,
    },
    /// The decrypted CRC32 does not match the payload: corruption, a wrong key or cipher on
    /// one side, or garbage. Count it as kcp-go's `InCsumErrors` and drop the datagram.
    #[error("CRC32 mismatch: header says {expected:#010x}, payload gives {computed:#010x}")]
    ChecksumMismatch {
        /// CRC found in the decrypted header.
        expected: u32,
        /// CRC computed over the decrypted payload.
        computed: u32,
    },
    /// An authenticated packet failed its tag check: it was modified, truncated, forged, or
    /// sealed with another key or cipher. Count and drop it.
    #[error("authentication tag check failed")]
    AuthenticationFailed,
    /// An AEAD session datagram ([`SessionCrypt::open`]) whose counter was seen before, or is
    /// [`REPLAY_WINDOW`] or more behind the newest seen: a replay (or hopelessly late). Drop it.
    #[error("datagram counter {counter} replayed or older than the replay window")]
    Replayed {
        /// The datagram's counter.
        counter: u64,
    },
    /// A [`SessionCrypt`] sealed 2^64 − 1 datagrams and will not reuse a counter: start a new
    /// session.
    #[error("session counter exhausted")]
    CounterExhausted,
    /// The authenticated kinds ([`CipherKind::Aes256Gcm`], [`CipherKind::ChaCha20Poly1305`])
    /// given to [`PacketCrypt::try_seal`], [`PacketCrypt::seal`] (which panics with this) or
    /// [`PacketCrypt::open`]: they seal and open only per session, through the
    /// [`SessionCrypt`] of [`PacketCrypt::client_session`] / [`PacketCrypt::server_session`].
    /// A caller bug, never caused by peer input.
    #[error(
        "the authenticated kinds seal and open per session: use PacketCrypt::client_session/server_session"
    )]
    SessionRequired,
    /// [`PacketCrypt::try_seal`] got a buffer with no room for the header and trailer;
    /// reserve [`PacketCrypt::overhead`] bytes.
    #[error("buffer of {len} bytes cannot hold the {min}-byte crypto overhead")]
    SealBufferTooSmall {
        /// Buffer length given.
        len: usize,
        /// Least length needed.
        min: usize,
    },
    /// One of kcptun's older ciphers ([`CipherKind::is_legacy`]) was asked for, but this build
    /// of the crate leaves them out: enable its `legacy-ciphers` feature (on by default; the
    /// `rkcp-session` and `rkcp` crates forward it under the same name).
    #[error("cipher {kind} is not compiled in: enable the `legacy-ciphers` feature of rkcp-crypt")]
    CipherUnavailable {
        /// The cipher asked for.
        kind: CipherKind,
    },
    /// A cipher name not known to this crate, from the strict [`core::str::FromStr`] of
    /// [`CipherKind`]. Use one of the names of [`CipherKind::ALL`], or
    /// [`CipherKind::from_kcptun_name`] for kcptun's fallback to `aes`.
    #[error("unknown cipher name {name:?}")]
    UnknownCipher {
        /// The rejected name (at most 64 characters of it).
        name: String,
    },
}
