//! Per-packet nonces: cheap, lock-free and unpredictable.
//!
//! kcp-go's `nonceAES128` (docs/wire-format.md#session-output) re-encrypts a seed with a random AES-128 key. This is
//! the same primitive in counter mode: `nonce = AES-128(k, prefix ‖ counter)` with `k`, the
//! 8-byte `prefix` and the counter's start drawn from the OS once per [`NonceGen`]. The counter is
//! an atomic, so `&self` suffices and clones of a `PacketCrypt` share one sequence without a
//! lock. Distinct counters give distinct outputs (AES is a permutation), so one generator never
//! repeats a 16-byte nonce within 2^64 packets, and different generators are independent random
//! streams. The receiver never checks a kcp-go nonce; any 16 random bytes interoperate.

use core::sync::atomic::{AtomicU64, Ordering};

use cipher::{BlockCipherEncrypt, KeyInit};

pub(crate) struct NonceGen {
    cipher: aes::Aes128,
    prefix: [u8; 8],
    counter: AtomicU64,
}

impl NonceGen {
    pub(crate) fn new() -> Self {
        let mut seed = [0u8; 32];
        os_random(&mut seed);
        let (key, rest) = seed.split_at(16);
        let mut k = [0u8; 16];
        k.copy_from_slice(key);
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&rest[..8]);
        let mut start = [0u8; 8];
        start.copy_from_slice(&rest[8..]);
        NonceGen {
            cipher: aes::Aes128::new(&k.into()),
            prefix,
            counter: AtomicU64::new(u64::from_le_bytes(start)),
        }
    }

    /// Returns the next 16-byte nonce.
    #[inline]
    pub(crate) fn next(&self) -> [u8; 16] {
        // Relaxed: only uniqueness of the fetched value matters, no other memory is ordered by it.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&self.prefix);
        block[8..].copy_from_slice(&n.to_le_bytes());
        let mut b = block.into();
        self.cipher.encrypt_block(&mut b);
        b.into()
    }
}

/// Fills `buf` from the OS RNG. If the OS refuses (practically never on Linux), falls back to
/// std's per-process random hasher keys mixed with the clock and a stack address: weaker, but a
/// kcp-go nonce only needs to vary, and construction must not fail (the contract returns a
/// `PacketCrypt`, not a `Result`).
pub(crate) fn os_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_ok() {
        return;
    }
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_usize(chunk.as_ptr() as usize);
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        let v = h.finish().to_le_bytes();
        let n = chunk.len();
        chunk.copy_from_slice(&v[..n]);
    }
}
