//! The authenticated, Rust-only packet modes (AES-256-GCM and ChaCha20-Poly1305).
//!
//! **Superseded** by the per-session layout of `aead_session.rs` ([`crate::SessionCrypt`]); the
//! listener-wide layout below (one key for every session and both directions, a shared nonce
//! generator with a 32-bit random prefix, no replay window) stays only until the session layer
//! has switched over, then `PacketCrypt`'s AEAD seal/open and `NonceGen::next_counter96` go.
//! The `Aead` type itself (`seal_aad`/`open_aad`) is shared by both layouts.
//!
//! Wire layout: `nonce (12) ‖ ciphertext ‖ tag (16)`. The nonce is a counter nonce
//! (`NonceGen::next_counter96`), sent in clear and also passed as associated data, so the whole
//! header is authenticated. **kcp-go cannot read these packets**: there is no CRC field and the
//! layout differs, so a Go peer drops every one as a checksum error.
//!
//! There is deliberately no replay window: an exact replay decrypts (KCP discards the duplicate
//! segment by its sequence number, as it does for a duplicated datagram), while any modified,
//! truncated, extended or re-spliced packet fails the tag check.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;

/// Length of the clear nonce in front of an authenticated packet.
pub const AEAD_NONCE_LEN: usize = 12;
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

    /// `header` holds the nonce (already filled), `body` the plaintext, `tag` receives the tag.
    pub(crate) fn seal(
        &self,
        header: &[u8; AEAD_NONCE_LEN],
        body: &mut [u8],
        tag: &mut [u8; AEAD_TAG_LEN],
    ) {
        self.seal_aad(header, header, body, tag);
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

    pub(crate) fn open(
        &self,
        header: &[u8; AEAD_NONCE_LEN],
        body: &mut [u8],
        tag: &[u8; AEAD_TAG_LEN],
    ) -> Result<(), AuthFailed> {
        self.open_aad(header, header, body, tag)
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
