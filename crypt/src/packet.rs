//! [`PacketCrypt`]: the per-datagram header plus cipher the session applies on output
//! (docs/wire-format.md#session-output-crypt) and input (`#session-input-crypt`).

use core::ops::Range;
use std::sync::Arc;

use crate::aead::AEAD_TAG_LEN;
use crate::aead_session::{MasterKey, SESSION_HEADER_LEN};
use crate::block::{BlockCrypt, new_block_crypt};
use crate::kind::CipherKind;
use crate::nonce::NonceGen;
use crate::{CRC_LEN, CryptError, HEADER_LEN, NONCE_LEN, derive_key};

/// Seals and opens whole datagrams for one cipher and key; holds the keys the per-session
/// [`SessionCrypt`](crate::SessionCrypt)s are made from.
///
/// **kcp-go ciphers** (the thirteen of [`CipherKind::KCPTUN`]) use kcp-go's 20-byte header:
/// a fresh 16-byte random nonce, then the CRC32-IEEE of everything after the header,
/// little-endian; then the whole datagram, header included, goes through the cipher
/// (docs/wire-format.md#session-output-crypt). That is confidentiality (except `xor`/`none`) plus error detection,
/// **not** authentication: anyone can forge packets that pass the CRC.
///
/// **Authenticated kinds** ([`CipherKind::Aes256Gcm`], [`CipherKind::ChaCha20Poly1305`]) seal
/// and open **per session only**: a `PacketCrypt` of those kinds holds the master key, and
/// [`PacketCrypt::client_session`] / [`PacketCrypt::server_session`] make the
/// [`SessionCrypt`](crate::SessionCrypt) that seals and opens (24-byte header, 16-byte tag,
/// per-session keys, replay window; docs/wire-format.md#crypt-aead). [`PacketCrypt::try_seal`]
/// and [`PacketCrypt::open`] refuse them with [`CryptError::SessionRequired`] (and
/// [`PacketCrypt::seal`] panics). Only peers running this crate understand them.
///
/// Cheap to clone (an `Arc` inside); `Send + Sync`, and both `seal` and `open` take `&self`, so
/// one instance can serve every session of a listener concurrently. All key schedules are
/// expanded in [`PacketCrypt::new`]; a kcp-go packet costs one nonce (an AES block), the CRC and
/// the cipher itself, without allocating.
///
/// ```
/// use rkcp_crypt::{CipherKind, CryptError, PacketCrypt};
///
/// let pc = PacketCrypt::from_passphrase(CipherKind::Aes, "it's a secrect");
/// let payload = b"kcp segment bytes";
/// let mut buf = vec![0u8; pc.header_len() + payload.len() + pc.trailer_len()];
/// buf[pc.header_len()..pc.header_len() + payload.len()].copy_from_slice(payload);
/// pc.seal(&mut buf);
///
/// let range = pc.open(&mut buf).expect("intact packet");
/// assert_eq!(&buf[range], payload);
///
/// // A flipped bit is caught by the CRC.
/// pc.seal(&mut buf);
/// buf[30] ^= 1;
/// assert!(pc.open(&mut buf).is_err());
///
/// // The authenticated kinds seal and open only through a per-session `SessionCrypt`.
/// let gcm = PacketCrypt::new(CipherKind::Aes256Gcm, &[7; 32]);
/// assert_eq!(gcm.try_seal(&mut buf), Err(CryptError::SessionRequired));
/// assert_eq!(gcm.open(&mut buf), Err(CryptError::SessionRequired));
/// ```
#[derive(Clone)]
pub struct PacketCrypt {
    inner: Arc<Inner>,
}

struct Inner {
    kind: CipherKind,
    mode: Mode,
    nonces: NonceGen,
}

enum Mode {
    Legacy(Box<dyn BlockCrypt>),
    /// The master key of the per-session AEAD layout (`aead_session.rs`); nothing is sealed or
    /// opened with it directly.
    Aead(MasterKey),
}

impl PacketCrypt {
    /// Builds the cipher for `kind` from a 32-byte key, using the key prefix kcptun uses for each
    /// cipher (docs/wire-format.md#crypt-ciphers). The authenticated kinds use all 32 bytes.
    ///
    /// # Panics
    /// If `kind` is not compiled in: a legacy cipher ([`CipherKind::is_legacy`]) with the
    /// `legacy-ciphers` feature off. [`PacketCrypt::try_new`] returns the error instead.
    pub fn new(kind: CipherKind, key: &[u8; 32]) -> PacketCrypt {
        match PacketCrypt::try_new(kind, key) {
            Ok(pc) => pc,
            Err(e) => panic!("PacketCrypt::new: {e}"),
        }
    }

    /// [`PacketCrypt::new`] that reports a cipher this build leaves out
    /// ([`CryptError::CipherUnavailable`]) instead of panicking. With the default features it
    /// always succeeds.
    pub fn try_new(kind: CipherKind, key: &[u8; 32]) -> Result<PacketCrypt, CryptError> {
        let mode = match kind {
            CipherKind::Aes256Gcm | CipherKind::ChaCha20Poly1305 => {
                Mode::Aead(MasterKey::new(kind, key))
            }
            // Every kcptun kind accepts the key prefix `#crypt-ciphers` gives it (fixed lengths, checked by
            // the `every_kcptun_kind_constructs` test), so only a kind left out of this build
            // (`legacy-ciphers` off) gives `None`.
            _ => Mode::Legacy(
                new_block_crypt(kind, key).ok_or(CryptError::CipherUnavailable { kind })?,
            ),
        };
        Ok(PacketCrypt {
            inner: Arc::new(Inner {
                kind,
                mode,
                nonces: NonceGen::new(),
            }),
        })
    }

    /// kcptun's construction from its `--key` string: [`derive_key`] (PBKDF2-HMAC-SHA1, salt
    /// `kcp-go`, 4096 iterations), then [`PacketCrypt::new`] (which panics for a cipher this
    /// build leaves out; check [`CipherKind::is_available`] first when the kind comes from
    /// outside). The PBKDF2 costs a few milliseconds: build once and clone.
    pub fn from_passphrase(kind: CipherKind, passphrase: &str) -> PacketCrypt {
        PacketCrypt::new(kind, &derive_key(passphrase.as_bytes()))
    }

    /// The master key of the per-session AEAD layout ([`PacketCrypt::client_session`]);
    /// `None` for the kcp-go kinds.
    pub(crate) fn aead_master(&self) -> Option<&MasterKey> {
        match &self.inner.mode {
            Mode::Aead(m) => Some(m),
            Mode::Legacy(_) => None,
        }
    }

    /// The cipher this instance uses.
    pub fn kind(&self) -> CipherKind {
        self.inner.kind
    }

    /// Bytes in front of the payload: 20 (nonce 16 + CRC 4, docs/wire-format.md#session-headers) for every kcp-go
    /// cipher; for the authenticated kinds 24 ([`SESSION_HEADER_LEN`](crate::SESSION_HEADER_LEN):
    /// session id and counter), the header of their [`SessionCrypt`](crate::SessionCrypt)s. The
    /// session reserves this much in front of each datagram and gives the FEC encoder this
    /// offset.
    pub fn header_len(&self) -> usize {
        match self.inner.mode {
            Mode::Legacy(_) => HEADER_LEN,
            Mode::Aead(..) => SESSION_HEADER_LEN,
        }
    }

    /// Bytes after the payload: 0 for kcp-go ciphers, 16 (the tag) for the authenticated kinds,
    /// as their [`SessionCrypt`](crate::SessionCrypt)s.
    pub fn trailer_len(&self) -> usize {
        match self.inner.mode {
            Mode::Legacy(_) => 0,
            Mode::Aead(..) => AEAD_TAG_LEN,
        }
    }

    /// `header_len() + trailer_len()`: the size of a sealed packet with an empty payload. For the
    /// kcp-go ciphers 20, the least [`PacketCrypt::open`] accepts; for the authenticated kinds 40
    /// ([`SESSION_OVERHEAD`](crate::SESSION_OVERHEAD)), as their
    /// [`SessionCrypt`](crate::SessionCrypt)s.
    pub fn overhead(&self) -> usize {
        self.header_len() + self.trailer_len()
    }

    /// Seals `buf` in place for a kcp-go cipher: `buf` is `header_len()` bytes of space, then the
    /// payload. Writes the nonce and CRC and encrypts.
    ///
    /// # Panics
    /// If `buf` is shorter than [`PacketCrypt::overhead`], a caller bug (the buffer is local,
    /// never peer input), or for the authenticated kinds, which seal only per session
    /// ([`CryptError::SessionRequired`]: use [`PacketCrypt::client_session`] /
    /// [`PacketCrypt::server_session`]). Use [`PacketCrypt::try_seal`] to get an error instead.
    pub fn seal(&self, buf: &mut [u8]) {
        if let Err(e) = self.try_seal(buf) {
            panic!("PacketCrypt::seal: {e}");
        }
    }

    /// [`PacketCrypt::seal`] that returns errors instead of panicking, leaving `buf` untouched:
    /// [`CryptError::SessionRequired`] for the authenticated kinds (whatever `buf`), else
    /// [`CryptError::SealBufferTooSmall`] for a buffer shorter than [`PacketCrypt::overhead`].
    pub fn try_seal(&self, buf: &mut [u8]) -> Result<(), CryptError> {
        let inner = &*self.inner;
        let Mode::Legacy(bc) = &inner.mode else {
            return Err(CryptError::SessionRequired);
        };
        let len = buf.len();
        if len < HEADER_LEN {
            return Err(CryptError::SealBufferTooSmall {
                len,
                min: HEADER_LEN,
            });
        }
        let (header, body) = buf.split_at_mut(HEADER_LEN);
        header[..NONCE_LEN].copy_from_slice(&inner.nonces.next());
        let crc = crc32fast::hash(body);
        header[NONCE_LEN..NONCE_LEN + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
        bc.encrypt(buf);
        Ok(())
    }

    /// Opens a received kcp-go datagram in place: decrypts it, verifies the CRC and returns where
    /// the payload lies within `buf`.
    ///
    /// Accepts any bytes and never panics. On error the contents of `buf` are unspecified (kcp-go
    /// decrypts before checking too); the session drops the datagram and counts the error
    /// (`InCsumErrors` for [`CryptError::ChecksumMismatch`], docs/wire-format.md#session-input-crypt).
    ///
    /// The authenticated kinds open only per session ([`PacketCrypt::client_session`] /
    /// [`PacketCrypt::server_session`]): for them this always returns
    /// [`CryptError::SessionRequired`] and leaves `buf` untouched.
    pub fn open(&self, buf: &mut [u8]) -> Result<Range<usize>, CryptError> {
        let Mode::Legacy(bc) = &self.inner.mode else {
            return Err(CryptError::SessionRequired);
        };
        let len = buf.len();
        if len < HEADER_LEN {
            return Err(CryptError::TooShort {
                len,
                min: HEADER_LEN,
            });
        }
        bc.decrypt(buf);
        let (header, body) = buf.split_at(HEADER_LEN);
        let mut c = [0u8; CRC_LEN];
        c.copy_from_slice(&header[NONCE_LEN..]);
        let expected = u32::from_le_bytes(c);
        let computed = crc32fast::hash(body);
        if expected != computed {
            return Err(CryptError::ChecksumMismatch { expected, computed });
        }
        Ok(HEADER_LEN..len)
    }
}

impl core::fmt::Debug for PacketCrypt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        f.debug_struct("PacketCrypt")
            .field("kind", &self.inner.kind)
            .finish_non_exhaustive()
    }
}
