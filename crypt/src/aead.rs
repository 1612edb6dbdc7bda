//! The AEAD primitives of the authenticated, Rust-only kinds (AES-256-GCM and
//! ChaCha20-Poly1305), as the per-session layout of `aead_session.rs` ([`crate::SessionCrypt`])
//! uses them: detached tags, in-place encryption, caller-chosen nonce and associated data. The
//! wire layout, keys and nonces are documented on [`crate::SessionCrypt`]
//! (docs/wire-format.md#crypt-aead).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;

/// Nonce length of both AEADs (96 bits). Not on the wire: the session layout derives the nonce
/// from the datagram counter.
pub(crate) const AEAD_NONCE_LEN: usize = 12;
/// Length of the authentication tag at the end of an authenticated packet.
pub const AEAD_TAG_LEN: usize = 16;

pub(crate) enum Aead {
    Aes256Gcm(Box<Aes256Gcm>),
    ChaCha20Poly1305(Box<ChaCha20Poly1305>),
}

/// Why an authenticated open failed; mapped to the public error by the caller.
pub(crate) struct AuthFailed;

impl Aead {
    pub(crate) fn aes256gcm(key: &[u8; 32]) -> Self {
        Aead::Aes256Gcm(Box::new(Aes256Gcm::new(key.into())))
    }

    pub(crate) fn chacha20poly1305(key: &[u8; 32]) -> Self {
        Aead::ChaCha20Poly1305(Box::new(ChaCha20Poly1305::new(key.into())))
    }

    /// Encrypts `body` in place under `nonce`, authenticating `aad` too; `tag` receives the tag.
    pub(crate) fn seal_aad(
        &self,
        nonce: &[u8; AEAD_NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
        tag: &mut [u8; AEAD_TAG_LEN],
    ) {
        let nonce = (*nonce).into();
        let t = match self {
            Aead::Aes256Gcm(c) => c.encrypt_inout_detached(&nonce, aad, body.into()),
            Aead::ChaCha20Poly1305(c) => c.encrypt_inout_detached(&nonce, aad, body.into()),
        };
        match t {
            Ok(t) => tag.copy_from_slice(&t),
            // Only for messages over 2^36 bytes (GCM) or 2^38 (ChaCha), far above any datagram.
            // Never let plaintext out: send zeros, which the peer rejects.
            Err(_) => {
                body.fill(0);
                tag.fill(0);
            }
        }
    }

    /// Checks `tag` over `aad` and the ciphertext `body`, decrypting `body` in place.
    pub(crate) fn open_aad(
        &self,
        nonce: &[u8; AEAD_NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
        tag: &[u8; AEAD_TAG_LEN],
    ) -> Result<(), AuthFailed> {
        let nonce = (*nonce).into();
        let tag = (*tag).into();
        let r = match self {
            Aead::Aes256Gcm(c) => c.decrypt_inout_detached(&nonce, aad, body.into(), &tag),
            Aead::ChaCha20Poly1305(c) => c.decrypt_inout_detached(&nonce, aad, body.into(), &tag),
        };
        r.map_err(|_| AuthFailed)
    }
}
