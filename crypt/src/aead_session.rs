//! Per-session authenticated encryption for the Rust-only AEAD kinds ([`CipherKind::Aes256Gcm`],
//! [`CipherKind::ChaCha20Poly1305`]): [`SessionCrypt`], [`SessionId`], [`peek_session_id`].
//! **Rust-only**: no Go peer reads these datagrams (docs/wire-format.md#crypt-aead).
//!
//! The construction, its argument and the replay rules are documented on [`SessionCrypt`].

use core::fmt;
use core::ops::Range;

use hkdf::Hkdf;
use sha2::Sha256;

use crate::aead::{AEAD_NONCE_LEN, AEAD_TAG_LEN, Aead};
use crate::kind::CipherKind;
use crate::replay::{ReplayWindow, Stale};
use crate::{CryptError, PacketCrypt};

#[cfg(doc)]
use crate::{FreshnessRecord, REPLAY_WINDOW};

/// Length of a [`SessionId`].
pub const SESSION_ID_LEN: usize = 16;
/// Length of the big-endian datagram counter after the session id.
pub const SESSION_COUNTER_LEN: usize = 8;
/// Header of an AEAD session datagram: session id and counter.
pub const SESSION_HEADER_LEN: usize = SESSION_ID_LEN + SESSION_COUNTER_LEN;
/// Overhead of an AEAD session datagram: header and tag (40 bytes).
pub const SESSION_OVERHEAD: usize = SESSION_HEADER_LEN + AEAD_TAG_LEN;

/// HKDF-Extract salt of the master key ("v2": this crate's second AEAD layout, after a removed
/// listener-wide one).
const MASTER_SALT: &[u8] = b"rkcp aead v2";

/// 16 bytes naming one side of one session: 8 bytes of big-endian unix time in milliseconds at
/// creation, then 8 random bytes.
///
/// ```
/// use rkcp_crypt::SessionId;
///
/// let id = SessionId::new(1_700_000_000_123, [1, 2, 3, 4, 5, 6, 7, 8]);
/// assert_eq!(id.timestamp_ms(), 1_700_000_000_123);
/// assert_eq!(SessionId::from_bytes(id.to_bytes()), id);
/// assert_ne!(SessionId::generate(5), SessionId::generate(5));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; SESSION_ID_LEN]);

impl SessionId {
    /// The id created at `created_unix_ms` with the given random bytes.
    pub fn new(created_unix_ms: u64, random: [u8; 8]) -> SessionId {
        let mut b = [0u8; SESSION_ID_LEN];
        b[..8].copy_from_slice(&created_unix_ms.to_be_bytes());
        b[8..].copy_from_slice(&random);
        SessionId(b)
    }

    /// A new id created at `created_unix_ms`, with 8 bytes from the OS random generator.
    pub fn generate(created_unix_ms: u64) -> SessionId {
        let mut r = [0u8; 8];
        crate::nonce::os_random(&mut r);
        SessionId::new(created_unix_ms, r)
    }

    /// A new id created now ([`unix_time_ms`]).
    pub fn now() -> SessionId {
        SessionId::generate(unix_time_ms())
    }

    /// The id with these bytes (as [`SessionId::to_bytes`] gives them).
    pub fn from_bytes(bytes: [u8; SESSION_ID_LEN]) -> SessionId {
        SessionId(bytes)
    }

    /// The 16 bytes as sent.
    pub fn to_bytes(self) -> [u8; SESSION_ID_LEN] {
        self.0
    }

    /// The creation time stamp, unix milliseconds.
    pub fn timestamp_ms(&self) -> u64 {
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(t)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}ms:", self.timestamp_ms())?;
        for b in &self.0[8..] {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The wall clock in unix milliseconds (0 if it reads before 1970), the clock of
/// [`SessionId::now`] and of the freshness checks.
pub fn unix_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The session id at the front of an AEAD session datagram, read without any cryptography (so
/// the endpoint can route before opening), or `None` when the datagram is shorter than
/// [`SESSION_OVERHEAD`]. On a listener this is the client's id; on a client, the server's.
/// Meaningless for the kcp-go kinds (their first 16 bytes are an encrypted nonce).
pub fn peek_session_id(datagram: &[u8]) -> Option<SessionId> {
    if datagram.len() < SESSION_OVERHEAD {
        return None;
    }
    let mut b = [0u8; SESSION_ID_LEN];
    b.copy_from_slice(&datagram[..SESSION_ID_LEN]);
    Some(SessionId(b))
}

/// Which end of a session a [`SessionCrypt`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Dialled: seals client-to-server, opens server-to-client.
    Client,
    /// Accepted: seals server-to-client, opens client-to-server.
    Server,
}

/// The per-passphrase, per-cipher master key of the AEAD kinds (held by [`PacketCrypt`]).
#[derive(Clone)]
pub(crate) struct MasterKey {
    kind: CipherKind,
    prk: Hkdf<Sha256>,
}

impl MasterKey {
    pub(crate) fn new(kind: CipherKind, key: &[u8; 32]) -> MasterKey {
        let extracted = Hkdf::<Sha256>::new(Some(MASTER_SALT), key);
        let mut master = [0u8; 32];
        expand(
            &extracted,
            &[b"master ", kind.name().as_bytes()],
            &mut master,
        );
        let prk = Hkdf::<Sha256>::from_prk(&master).expect("a 32-byte PRK is SHA-256's length");
        MasterKey { kind, prk }
    }

    pub(crate) fn c2s_key(&self, client: &SessionId) -> [u8; 32] {
        let mut k = [0u8; 32];
        expand(&self.prk, &[b"c2s", &client.0], &mut k);
        k
    }

    pub(crate) fn s2c_key(&self, client: &SessionId, server: &SessionId) -> [u8; 32] {
        let mut k = [0u8; 32];
        expand(&self.prk, &[b"s2c", &client.0, &server.0], &mut k);
        k
    }

    fn aead(&self, key: &[u8; 32]) -> Aead {
        match self.kind {
            CipherKind::ChaCha20Poly1305 => Aead::chacha20poly1305(key),
            _ => Aead::aes256gcm(key),
        }
    }
}

fn expand(hk: &Hkdf<Sha256>, info: &[&[u8]], okm: &mut [u8; 32]) {
    hk.expand_multi_info(info, okm)
        .expect("32 bytes is within HKDF-SHA256's output limit");
}

/// What [`SessionCrypt::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Where the payload lies in the opened buffer.
    pub payload: Range<usize>,
    /// The datagram's counter (AEAD kinds); `None` for kcp-go kinds, which have none.
    pub counter: Option<u64>,
    /// True when the datagram is newer than every datagram opened before in this session, the
    /// condition for following the peer to a new address. Always true for kcp-go kinds (no
    /// counter, no replay protection: kcp-go follows every datagram).
    pub newest: bool,
}

/// The sealing half of a [`SessionCrypt`] ([`SessionCrypt::split`]). Not `Clone`: it owns the
/// direction's counter.
pub struct SessionSealer(Sealer);

enum Sealer {
    Kcp(PacketCrypt),
    Aead {
        kind: CipherKind,
        id: SessionId,
        aead: Aead,
        next: u64,
    },
}

/// The opening half of a [`SessionCrypt`] ([`SessionCrypt::split`]). Not `Clone`: it owns the
/// direction's replay window.
pub struct SessionOpener(Opener);

enum Opener {
    Kcp(PacketCrypt),
    Aead(Box<AeadOpener>),
}

struct AeadOpener {
    kind: CipherKind,
    peer: PeerKey,
    window: ReplayWindow,
}

enum PeerKey {
    Known {
        id: SessionId,
        aead: Aead,
    },
    /// A client before the first authenticated server datagram: `S` not known yet.
    AwaitingServer {
        master: MasterKey,
        client: SessionId,
    },
}

/// Seals and opens the datagrams of **one session** at one end ([`Role`]): for the AEAD kinds
/// with per-session, per-direction keys, a counter nonce and a replay window (below); for
/// the kcp-go kinds exactly as [`PacketCrypt`].
///
/// Made by [`PacketCrypt::client_session`] or [`PacketCrypt::server_session`]. Not `Clone`
/// (a clone would reuse counters); [`SessionCrypt::split`] separates the halves when sending and
/// receiving run in different places.
///
/// # Wire layout
/// Every datagram is
///
/// ```text
/// sender's session id (16) ‖ counter (8, big-endian) ‖ ciphertext ‖ tag (16)
/// ```
///
/// 40 bytes of overhead ([`SESSION_OVERHEAD`]). A session id ([`SessionId`]) is 8 bytes of big-endian unix
/// time in milliseconds at its creation, then 8 random bytes. The client draws its id `C` when it
/// dials; the server draws its own id `S` when it accepts `C`. Client-to-server datagrams carry
/// `C` (so the listener routes on it before any cryptography, [`peek_session_id`]),
/// server-to-client datagrams carry `S`. The counter starts at 0 in each direction and grows by
/// one per datagram sealed, including FEC parity datagrams.
///
/// # Keys and nonces
/// ```text
/// master  = HKDF-Expand(HKDF-Extract(salt = "rkcp aead v2", ikm = K), "master " ‖ cipher name, 32)
/// key_c2s = HKDF-Expand(master, "c2s" ‖ C, 32)
/// key_s2c = HKDF-Expand(master, "s2c" ‖ C ‖ S, 32)
/// nonce   = 0x00000000 ‖ counter (big-endian)        AAD = the 24-byte header
/// ```
///
/// with `K` the 32-byte key of [`PacketCrypt::new`] (kcptun's PBKDF2 of the passphrase,
/// [`crate::derive_key`]) and HKDF over SHA-256 (RFC 5869). The master key differs per cipher, so
/// the two AEAD kinds never share a key. The header is the AAD, the counter is the nonce and the
/// sender's id is in the key derivation, so changing any header byte fails the tag check.
///
/// # Why a (key, nonce) pair never repeats
/// Each key has exactly **one sealer**: `key_c2s` is used to seal only by the client that drew
/// `C`, `key_s2c` only by the server session that drew `S` (for that `C`). That sealer takes its
/// nonces from a 64-bit counter it owns (`&mut self`, not `Clone`), which only increases and
/// refuses to wrap ([`CryptError::CounterExhausted`]), so it never repeats a nonce. Two sealers
/// share a key only if their HKDF inputs are equal (HMAC-SHA256 collisions aside): two clients
/// drawing the same `C` — the same millisecond **and** the same 64 random bits, probability
/// `n² / 2^65` for `n` sessions created in one millisecond under one passphrase, whatever the
/// number of clients, servers or restarts — or two server sessions for one `C` drawing the same
/// `S`, likewise. A restarted client or server draws new ids, so it never continues an old
/// counter under an old key; a `C` replayed to a restarted listener, or to another listener
/// sharing the passphrase, gets a new `S` and so a new `key_s2c`.
///
/// # Replays
/// * Within a session: each direction's opener keeps an RFC 6479 sliding window
///   ([`REPLAY_WINDOW`] = 1984 counters): a counter already seen, or that far behind the newest
///   seen, is refused ([`CryptError::Replayed`]) before any cryptography. A counter is recorded
///   only after its datagram authenticated, so a forgery never moves the window.
///   [`Opened::newest`] tells the caller that a datagram is newer than everything seen (the only
///   kind that should make a session follow its peer to a new address). Until its first
///   server datagram authenticates, a client derives a key for each datagram naming a new `S`
///   (HKDF and a key schedule, a few microseconds), then binds to that `S` and drops all others
///   before any cryptography.
/// * Session creation: a listener accepts an unknown `C` only after its datagram authenticated
///   **and** [`FreshnessRecord::check_and_insert`] accepted it ([`FreshnessRecord::check`]
///   first drops stale and replayed ids before any cryptography): `C`'s time stamp within ± 120 s of
///   the listener's clock, not before the listener started, not seen before. Together with the
///   window, a replayed datagram never reaches KCP, so no replay re-executes anything, provided
///   the listener consults the record for *every* datagram with an unknown `C` (a session that
///   ended and left the listener's table included). The
///   record belongs to one listener: listeners sharing a passphrase do not share records, so a
///   capture replayed to *another* listener within 120 s opens a session there (with its own `S`,
///   so still no nonce reuse); give each server its own passphrase where that matters.
///
/// # kcp-go kinds
/// For the thirteen kcp-go ciphers, a [`SessionCrypt`] just wraps the [`PacketCrypt`]: kcp-go's
/// 20-byte header, no ids, no counter, no replay window (the kcp-go wire format has none), so
/// the session layer can hold one type whatever the cipher.
///
/// # Example
/// ```
/// use rkcp_crypt::{CipherKind, CryptError, PacketCrypt, SessionId, peek_session_id};
///
/// let keys = PacketCrypt::new(CipherKind::Aes256Gcm, &[9u8; 32]); // one per listener / dialer
/// let c = SessionId::now();
/// let mut client = keys.client_session(c);
///
/// let mut dgram = vec![0u8; client.header_len() + 5 + client.trailer_len()];
/// dgram[client.header_len()..][..5].copy_from_slice(b"hello");
/// client.seal(&mut dgram);
///
/// // The listener routes on the client's id, then makes (or finds) the session.
/// assert_eq!(peek_session_id(&dgram), Some(c));
/// let mut server = keys.server_session(c, SessionId::now());
/// let replay = dgram.clone();
/// let opened = server.open(&mut dgram).unwrap();
/// assert_eq!(&dgram[opened.payload.clone()], b"hello");
/// assert_eq!((opened.counter, opened.newest), (Some(0), true));
/// // The same datagram again is a replay.
/// assert_eq!(server.open(&mut replay.clone()), Err(CryptError::Replayed { counter: 0 }));
/// ```
pub struct SessionCrypt {
    role: Role,
    sealer: SessionSealer,
    opener: SessionOpener,
}

impl PacketCrypt {
    /// The client end of a new session `id` (draw it with [`SessionId::now`] at each dial).
    /// For the kcp-go kinds `id` is not used.
    pub fn client_session(&self, id: SessionId) -> SessionCrypt {
        let (sealer, opener) = match self.aead_master() {
            None => (Sealer::Kcp(self.clone()), Opener::Kcp(self.clone())),
            Some(m) => (
                Sealer::Aead {
                    kind: self.kind(),
                    id,
                    aead: m.aead(&m.c2s_key(&id)),
                    next: 0,
                },
                Opener::Aead(Box::new(AeadOpener {
                    kind: self.kind(),
                    peer: PeerKey::AwaitingServer {
                        master: m.clone(),
                        client: id,
                    },
                    window: ReplayWindow::new(),
                })),
            ),
        };
        SessionCrypt {
            role: Role::Client,
            sealer: SessionSealer(sealer),
            opener: SessionOpener(opener),
        }
    }

    /// The server end of the session the client calls `client` ([`peek_session_id`] of its
    /// datagrams), with the server's own fresh id `server` (draw it with [`SessionId::now`]).
    /// Check `client` with a [`FreshnessRecord`] once its first datagram opened. For the kcp-go
    /// kinds neither id is used.
    pub fn server_session(&self, client: SessionId, server: SessionId) -> SessionCrypt {
        let (sealer, opener) = match self.aead_master() {
            None => (Sealer::Kcp(self.clone()), Opener::Kcp(self.clone())),
            Some(m) => (
                Sealer::Aead {
                    kind: self.kind(),
                    id: server,
                    aead: m.aead(&m.s2c_key(&client, &server)),
                    next: 0,
                },
                Opener::Aead(Box::new(AeadOpener {
                    kind: self.kind(),
                    peer: PeerKey::Known {
                        id: client,
                        aead: m.aead(&m.c2s_key(&client)),
                    },
                    window: ReplayWindow::new(),
                })),
            ),
        };
        SessionCrypt {
            role: Role::Server,
            sealer: SessionSealer(sealer),
            opener: SessionOpener(opener),
        }
    }
}

impl SessionCrypt {
    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The cipher.
    pub fn kind(&self) -> CipherKind {
        self.sealer.kind()
    }

    /// The id this end puts on its datagrams (AEAD kinds).
    pub fn local_id(&self) -> Option<SessionId> {
        self.sealer.id()
    }

    /// The id the peer puts on its datagrams: the client's id on a server; on a client, the
    /// server's once a server datagram authenticated (AEAD kinds).
    pub fn peer_id(&self) -> Option<SessionId> {
        self.opener.peer_id()
    }

    /// Bytes in front of the payload: 24 for the AEAD kinds, 20 for the kcp-go kinds.
    pub fn header_len(&self) -> usize {
        self.sealer.header_len()
    }

    /// Bytes after the payload: 16 (the tag) for the AEAD kinds, 0 for the kcp-go kinds.
    pub fn trailer_len(&self) -> usize {
        self.sealer.trailer_len()
    }

    /// `header_len() + trailer_len()`.
    pub fn overhead(&self) -> usize {
        self.header_len() + self.trailer_len()
    }

    /// Seals `buf` in place: `header_len()` bytes of space, the payload, `trailer_len()` bytes
    /// of space (for the kcp-go kinds exactly as [`PacketCrypt::seal`]).
    ///
    /// # Panics
    /// On a buffer shorter than [`SessionCrypt::overhead`] or an exhausted counter (2^64 − 1
    /// datagrams); [`SessionCrypt::try_seal`] returns those as errors.
    pub fn seal(&mut self, buf: &mut [u8]) {
        self.sealer.seal(buf)
    }

    /// [`SessionCrypt::seal`] returning [`CryptError::SealBufferTooSmall`] or
    /// [`CryptError::CounterExhausted`] instead of panicking (and then leaving `buf` as it was).
    pub fn try_seal(&mut self, buf: &mut [u8]) -> Result<(), CryptError> {
        self.sealer.try_seal(buf)
    }

    /// Opens a received datagram in place. AEAD kinds: refuses a foreign id or a bad tag
    /// ([`CryptError::AuthenticationFailed`]) and a counter seen before or older than the
    /// window ([`CryptError::Replayed`]); records the counter only when all checks pass. Never
    /// panics; on error the contents of `buf` are unspecified.
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Opened, CryptError> {
        self.opener.open(buf)
    }

    /// The two halves, for callers that seal and open in different places.
    pub fn split(self) -> (SessionSealer, SessionOpener) {
        (self.sealer, self.opener)
    }
}

impl fmt::Debug for SessionCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCrypt")
            .field("role", &self.role)
            .field("sealer", &self.sealer)
            .field("opener", &self.opener)
            .finish()
    }
}

impl SessionSealer {
    fn kind(&self) -> CipherKind {
        match &self.0 {
            Sealer::Kcp(pc) => pc.kind(),
            Sealer::Aead { kind, .. } => *kind,
        }
    }

    fn id(&self) -> Option<SessionId> {
        match &self.0 {
            Sealer::Kcp(_) => None,
            Sealer::Aead { id, .. } => Some(*id),
        }
    }

    /// As [`SessionCrypt::header_len`].
    pub fn header_len(&self) -> usize {
        match &self.0 {
            Sealer::Kcp(pc) => pc.header_len(),
            Sealer::Aead { .. } => SESSION_HEADER_LEN,
        }
    }

    /// As [`SessionCrypt::trailer_len`].
    pub fn trailer_len(&self) -> usize {
        match &self.0 {
            Sealer::Kcp(pc) => pc.trailer_len(),
            Sealer::Aead { .. } => AEAD_TAG_LEN,
        }
    }

    /// The counter the next datagram gets (AEAD kinds): the number sealed so far.
    pub fn next_counter(&self) -> Option<u64> {
        match &self.0 {
            Sealer::Kcp(_) => None,
            Sealer::Aead { next, .. } => Some(*next),
        }
    }

    /// As [`SessionCrypt::seal`].
    ///
    /// # Panics
    /// As [`SessionCrypt::seal`].
    pub fn seal(&mut self, buf: &mut [u8]) {
        if let Err(e) = self.try_seal(buf) {
            panic!("SessionCrypt::seal: {e}");
        }
    }

    /// As [`SessionCrypt::try_seal`].
    pub fn try_seal(&mut self, buf: &mut [u8]) -> Result<(), CryptError> {
        let (id, aead, next) = match &mut self.0 {
            Sealer::Kcp(pc) => return pc.try_seal(buf),
            Sealer::Aead { id, aead, next, .. } => (id, aead, next),
        };
        let len = buf.len();
        let min = SESSION_OVERHEAD;
        if len < min {
            return Err(CryptError::SealBufferTooSmall { len, min });
        }
        // u64::MAX is never used, so that `next` never wraps.
        if *next == u64::MAX {
            return Err(CryptError::CounterExhausted);
        }
        let counter = *next;
        *next += 1;
        let (header, rest) = buf.split_at_mut(SESSION_HEADER_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - AEAD_TAG_LEN);
        header[..SESSION_ID_LEN].copy_from_slice(&id.0);
        header[SESSION_ID_LEN..].copy_from_slice(&counter.to_be_bytes());
        let tag: &mut [u8; AEAD_TAG_LEN] = tag
            .try_into()
            .map_err(|_| CryptError::SealBufferTooSmall { len, min })?;
        aead.seal_aad(&nonce(counter), header, body, tag);
        Ok(())
    }
}

impl fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SessionSealer")
            .field("kind", &self.kind())
            .field("id", &self.id())
            .field("next_counter", &self.next_counter())
            .finish_non_exhaustive()
    }
}

fn nonce(counter: u64) -> [u8; AEAD_NONCE_LEN] {
    let mut n = [0u8; AEAD_NONCE_LEN];
    n[AEAD_NONCE_LEN - 8..].copy_from_slice(&counter.to_be_bytes());
    n
}

impl SessionOpener {
    fn peer_id(&self) -> Option<SessionId> {
        match &self.0 {
            Opener::Aead(o) => match &o.peer {
                PeerKey::Known { id, .. } => Some(*id),
                PeerKey::AwaitingServer { .. } => None,
            },
            Opener::Kcp(_) => None,
        }
    }

    /// As [`SessionCrypt::header_len`].
    pub fn header_len(&self) -> usize {
        match &self.0 {
            Opener::Kcp(pc) => pc.header_len(),
            Opener::Aead(_) => SESSION_HEADER_LEN,
        }
    }

    /// As [`SessionCrypt::trailer_len`].
    pub fn trailer_len(&self) -> usize {
        match &self.0 {
            Opener::Kcp(pc) => pc.trailer_len(),
            Opener::Aead(_) => AEAD_TAG_LEN,
        }
    }

    /// The highest counter opened so far (AEAD kinds).
    pub fn newest_counter(&self) -> Option<u64> {
        match &self.0 {
            Opener::Kcp(_) => None,
            Opener::Aead(o) => o.window.newest(),
        }
    }

    /// As [`SessionCrypt::open`].
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Opened, CryptError> {
        let o = match &mut self.0 {
            Opener::Kcp(pc) => {
                return pc.open(buf).map(|payload| Opened {
                    payload,
                    counter: None,
                    newest: true,
                });
            }
            Opener::Aead(o) => o,
        };
        let len = buf.len();
        if len < SESSION_OVERHEAD {
            return Err(CryptError::TooShort {
                len,
                min: SESSION_OVERHEAD,
            });
        }
        let (header, rest) = buf.split_at_mut(SESSION_HEADER_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - AEAD_TAG_LEN);
        let (Ok(id), Ok(ctr), Ok(tag)) = (
            <[u8; SESSION_ID_LEN]>::try_from(&header[..SESSION_ID_LEN]),
            <[u8; SESSION_COUNTER_LEN]>::try_from(&header[SESSION_ID_LEN..]),
            <&[u8; AEAD_TAG_LEN]>::try_from(&*tag),
        ) else {
            return Err(CryptError::TooShort {
                len,
                min: SESSION_OVERHEAD,
            });
        };
        let id = SessionId(id);
        let counter = u64::from_be_bytes(ctr);
        if let PeerKey::Known { id: peer, .. } = &o.peer
            && id != *peer
        {
            return Err(CryptError::AuthenticationFailed);
        }
        let newest = o.window.check(counter).map_err(|stale| match stale {
            Stale::Seen | Stale::TooOld => CryptError::Replayed { counter },
        })?;
        let n = nonce(counter);
        match &o.peer {
            PeerKey::Known { aead, .. } => {
                aead.open_aad(&n, header, body, tag)
                    .map_err(|_| CryptError::AuthenticationFailed)?;
            }
            PeerKey::AwaitingServer { master, client } => {
                // The first server datagram names S; it is believed only once it authenticates
                // under the key derived from it.
                let aead = master.aead(&master.s2c_key(client, &id));
                aead.open_aad(&n, header, body, tag)
                    .map_err(|_| CryptError::AuthenticationFailed)?;
                o.peer = PeerKey::Known { id, aead };
            }
        }
        o.window.accept(counter);
        Ok(Opened {
            payload: SESSION_HEADER_LEN..len - AEAD_TAG_LEN,
            counter: Some(counter),
            newest,
        })
    }
}

impl fmt::Debug for SessionOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Opener::Kcp(pc) => pc.kind(),
            Opener::Aead(o) => o.kind,
        };
        f.debug_struct("SessionOpener")
            .field("kind", &kind)
            .field("peer_id", &self.peer_id())
            .field("newest_counter", &self.newest_counter())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "tests_session.rs"]
mod tests;
