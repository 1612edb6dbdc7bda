//! A relay gateway: clients reach named backends through one public relay (binaries `relay`,
//! `relay-backend`, `relay-client`).
//!
//! Every peer dials the relay over KCP and runs an smux *client* on that session; the relay is the smux
//! server. Backends are usually behind NAT or a firewall: they dial out and register an id. A client opens an
//! smux stream, names a backend id, and the relay opens a fresh stream to that backend and splices the two,
//! so the backend sees one ordinary stream per client connection.
//!
//! Both kinds of peer authenticate with the shared key, and the relay proves the key to them first (mutual
//! HMAC-SHA256 challenge-response bound to role, id, both nonces and direction). The full protocol (frames,
//! handshake, limits, what it does not protect) is in `docs/relay.md`; in short:
//!
//! ```text
//! peer  → relay   HELLO(role, peer_nonce, id)            first frame of the session's first stream
//! relay → peer    CHALLENGE(relay_nonce, relay_proof)    relay_proof = MAC(relay→peer, …)
//! peer  → relay   PROOF(peer_proof)                      only if relay_proof verified; MAC(peer→relay, …)
//! relay → peer    OK | ERROR(reason)
//! MAC(dir, …) = HMAC-SHA256(key, "rkcp-relay v2" 0x00 | dir | role | len(id) | id | relay_nonce | peer_nonce)
//! ```
//!
//! That stream then stays open as the peer's control stream (PING/PONG keepalive). A client opens one more
//! stream per connection, starting with `CONNECT(id)`; the relay answers `OK` and splices, or `ERROR`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use rkcp_session::{KcpConfig, KcpListener, KcpStream, SessionError};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cli::Chain;
use crate::kcpwatch::{KcpHandle, watch};

/// Version byte of every control frame (2: mutual authentication of backends and clients).
pub const PROTOCOL_VERSION: u8 = 2;
/// Largest control-frame payload a peer may send (an id or an error message fit easily).
pub const MAX_PAYLOAD: usize = 1024;
/// Length of a nonce and of a proof.
pub const NONCE_LEN: usize = 32;
/// Domain-separation label at the start of every MAC input.
pub const MAC_LABEL: &[u8] = b"rkcp-relay v2";
const MAX_ID_LEN: usize = 64;
/// The relay's ERROR to a backend whose id was registered again by another session.
pub const REPLACED: &str = "replaced by a newer registration of this id";
/// Longest wait for a frame write or a session close during teardown (a frozen peer never acknowledges).
const TEARDOWN: Duration = Duration::from_millis(500);

/// Errors of the relay, its backends and clients. A variant that wraps another error returns it from
/// `source()` and does not repeat it in its own message; print the chain with [`crate::cli::Chain`] (or anyhow's
/// `{:#}`) to see both.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The KCP layer failed (bind, connect, dead link). Check the address and that the relay is running.
    #[error("KCP")]
    Kcp(#[from] SessionError),
    /// The smux session or stream failed (usually: the other side closed the session).
    #[error("smux")]
    Smux(#[from] rkcp_smux::Error),
    /// A configuration value is invalid (smux config, empty key, bad id); fix the options.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Reading or writing a stream failed, e.g. the relay closed it.
    #[error("stream i/o")]
    Io(#[from] io::Error),
    /// The peer sent something that is not valid relay protocol version 2 (wrong program or version).
    #[error("relay protocol error: {0}")]
    Protocol(String),
    /// The relay refused the request; the message says why (unknown id, bad proof).
    #[error("refused by relay: {0}")]
    Refused(String),
    /// The relay did not prove that it holds the shared key: the keys differ, or this is not our relay. No
    /// proof was sent to it.
    #[error("the relay failed to prove the shared key (different keys, or not our relay)")]
    RelayUnauthenticated,
    /// The other side did not answer within the handshake timeout.
    #[error("timed out waiting for the {0}")]
    Timeout(&'static str),
}

impl RelayError {
    /// True for errors that retrying will not fix: a refusal (wrong key, bad id), a relay that cannot prove
    /// the key, an invalid configuration.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            RelayError::Config(_) | RelayError::Refused(_) | RelayError::RelayUnauthenticated
        )
    }
}

/// Which kind of peer a session belongs to; bound into every proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Registers an id and serves the streams the relay opens.
    Backend = 1,
    /// Opens streams to registered backends.
    Client = 2,
}

impl Role {
    fn from_u8(b: u8) -> Option<Role> {
        match b {
            1 => Some(Role::Backend),
            2 => Some(Role::Client),
            _ => None,
        }
    }
}

/// Who computes a proof; bound into it, so a proof is never valid in the other direction (no reflection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// The relay's proof, sent in CHALLENGE.
    RelayToPeer = 1,
    /// The peer's proof, sent in PROOF.
    PeerToRelay = 2,
}

/// One control frame (see `docs/relay.md` for the table).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// Peer → relay, first frame of a session: who I am, and my fresh nonce.
    Hello {
        /// Backend or client.
        role: Role,
        /// The peer's fresh random nonce.
        nonce: [u8; NONCE_LEN],
        /// The backend id to register, or the client's name (logged and bound into the proofs).
        id: String,
    },
    /// Relay → peer: the relay's fresh nonce and its proof of the key.
    Challenge {
        /// The relay's fresh random nonce.
        nonce: [u8; NONCE_LEN],
        /// [`proof`] in direction [`Direction::RelayToPeer`].
        proof: [u8; NONCE_LEN],
    },
    /// Peer → relay: [`proof`] in direction [`Direction::PeerToRelay`].
    Proof([u8; NONCE_LEN]),
    /// Relay → peer: accepted.
    Ok,
    /// Either side: refused or dropped, with a human-readable reason.
    Error(String),
    /// Client → relay, first frame of a data stream: splice it with this backend.
    Connect(String),
    /// Peer → relay keepalive on the control stream.
    Ping,
    /// Relay → peer keepalive answer.
    Pong,
}

fn cut(m: &str) -> &[u8] {
    let mut end = m.len().min(MAX_PAYLOAD);
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    &m.as_bytes()[..end]
}

impl Frame {
    /// Encodes the frame (header and payload). Error messages longer than [`MAX_PAYLOAD`] are cut at a
    /// character boundary; ids are validated by the callers.
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        let t = match self {
            Frame::Hello { role, nonce, id } => {
                payload.push(*role as u8);
                payload.extend_from_slice(nonce);
                payload.extend_from_slice(id.as_bytes());
                1
            }
            Frame::Challenge { nonce, proof } => {
                payload.extend_from_slice(nonce);
                payload.extend_from_slice(proof);
                2
            }
            Frame::Proof(p) => {
                payload.extend_from_slice(p);
                3
            }
            Frame::Ok => 4,
            Frame::Error(m) => {
                payload.extend_from_slice(cut(m));
                5
            }
            Frame::Connect(id) => {
                payload.extend_from_slice(id.as_bytes());
                6
            }
            Frame::Ping => 7,
            Frame::Pong => 8,
        };
        payload.truncate(MAX_PAYLOAD);
        let mut out = Vec::with_capacity(4 + payload.len());
        out.push(PROTOCOL_VERSION);
        out.push(t);
        // MAX_PAYLOAD < 65536, so the length fits.
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Decodes one frame from the start of `buf`: `Ok(None)` if `buf` holds less than a whole frame, else the
    /// frame and the bytes it used. Fails on a wrong version, an oversized length (before its payload
    /// arrives) or a malformed payload.
    pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, RelayError> {
        let Some(&[ver, t, l0, l1]) = buf.get(..4) else {
            return Ok(None);
        };
        let len = check_header(ver, l0, l1)?;
        match buf.get(4..4 + len) {
            Some(payload) => Ok(Some((Frame::decode(t, payload)?, 4 + len))),
            None => Ok(None),
        }
    }

    /// Decodes a frame from its type byte and payload (the header has been checked).
    pub fn decode(t: u8, payload: &[u8]) -> Result<Frame, RelayError> {
        let fixed = |p: &[u8], name: &str| -> Result<[u8; NONCE_LEN], RelayError> {
            p.try_into()
                .map_err(|_| RelayError::Protocol(format!("{name} of {} bytes", p.len())))
        };
        let empty = |f: Frame| {
            if payload.is_empty() {
                Ok(f)
            } else {
                Err(RelayError::Protocol(format!("{f:?} with a payload")))
            }
        };
        match t {
            1 => {
                let (&role, rest) = payload
                    .split_first()
                    .ok_or_else(|| RelayError::Protocol("empty HELLO".into()))?;
                let role = Role::from_u8(role)
                    .ok_or_else(|| RelayError::Protocol(format!("unknown role {role}")))?;
                if rest.len() < NONCE_LEN {
                    return Err(RelayError::Protocol("HELLO without a nonce".into()));
                }
                let (nonce, id) = rest.split_at(NONCE_LEN);
                Ok(Frame::Hello {
                    role,
                    nonce: fixed(nonce, "nonce")?,
                    id: parse_id(id)?,
                })
            }
            2 => {
                if payload.len() != 2 * NONCE_LEN {
                    return Err(RelayError::Protocol(format!(
                        "CHALLENGE of {} bytes",
                        payload.len()
                    )));
                }
                let (nonce, proof) = payload.split_at(NONCE_LEN);
                Ok(Frame::Challenge {
                    nonce: fixed(nonce, "nonce")?,
                    proof: fixed(proof, "proof")?,
                })
            }
            3 => Ok(Frame::Proof(fixed(payload, "proof")?)),
            4 => empty(Frame::Ok),
            5 => Ok(Frame::Error(String::from_utf8_lossy(payload).into_owned())),
            6 => Ok(Frame::Connect(parse_id(payload)?)),
            7 => empty(Frame::Ping),
            8 => empty(Frame::Pong),
            _ => Err(RelayError::Protocol(format!("unknown frame type {t}"))),
        }
    }
}

fn check_header(ver: u8, l0: u8, l1: u8) -> Result<usize, RelayError> {
    if ver != PROTOCOL_VERSION {
        return Err(RelayError::Protocol(format!(
            "unsupported relay protocol version {ver} (this side speaks {PROTOCOL_VERSION})"
        )));
    }
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len > MAX_PAYLOAD {
        return Err(RelayError::Protocol(format!(
            "frame payload of {len} bytes exceeds {MAX_PAYLOAD}"
        )));
    }
    Ok(len)
}

/// Checks an id: 1 to 64 bytes of `[A-Za-z0-9._-]` (printable in logs and error messages, no spoofing with
/// control characters).
pub fn validate_id(id: &str) -> Result<(), RelayError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RelayError::Config(format!(
            "invalid id {:?}: use 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 . _ -",
            id.chars().take(MAX_ID_LEN).collect::<String>()
        )))
    }
}

fn parse_id(payload: &[u8]) -> Result<String, RelayError> {
    let id =
        std::str::from_utf8(payload).map_err(|_| RelayError::Protocol("id is not UTF-8".into()))?;
    validate_id(id).map_err(|e| RelayError::Protocol(e.to_string()))?;
    Ok(id.to_owned())
}

/// Reads one frame; fails on a wrong version, an oversized or malformed frame, or EOF.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, RelayError> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await?;
    let [ver, t, l0, l1] = head;
    let len = check_header(ver, l0, l1)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Frame::decode(t, &payload)
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> Result<(), RelayError> {
    w.write_all(&f.encode()).await?;
    w.flush().await?;
    Ok(())
}

fn mac_over(
    key: &[u8],
    dir: Direction,
    role: Role,
    id: &str,
    relay_nonce: &[u8; NONCE_LEN],
    peer_nonce: &[u8; NONCE_LEN],
) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(MAC_LABEL);
    // Ids are at most 64 bytes (validated), so the length prefix fits a byte and the fields cannot run into
    // each other.
    mac.update(&[0, dir as u8, role as u8, id.len() as u8]);
    mac.update(id.as_bytes());
    mac.update(relay_nonce);
    mac.update(peer_nonce);
    mac
}

/// HMAC-SHA256(key, `"rkcp-relay v2"` 0x00 | direction | role | len(id) | id | relay_nonce | peer_nonce).
pub fn proof(
    key: &[u8],
    dir: Direction,
    role: Role,
    id: &str,
    relay_nonce: &[u8; NONCE_LEN],
    peer_nonce: &[u8; NONCE_LEN],
) -> [u8; NONCE_LEN] {
    mac_over(key, dir, role, id, relay_nonce, peer_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of a [`proof`] (hmac's `verify_slice`).
pub fn verify(
    key: &[u8],
    dir: Direction,
    role: Role,
    id: &str,
    relay_nonce: &[u8; NONCE_LEN],
    peer_nonce: &[u8; NONCE_LEN],
    tag: &[u8; NONCE_LEN],
) -> bool {
    mac_over(key, dir, role, id, relay_nonce, peer_nonce)
        .verify_slice(tag)
        .is_ok()
}

async fn timed<T>(
    d: Duration,
    what: &'static str,
    f: impl Future<Output = Result<T, RelayError>>,
) -> Result<T, RelayError> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| RelayError::Timeout(what))?
}

/// Closes an smux session without waiting on the peer for long: smux flushes what was written (an ERROR
/// frame, say) for up to [`TEARDOWN`], then the KCP session is closed at once.
async fn close_now(mux: &rkcp_smux::Session, kcp: &KcpHandle) {
    let _ = tokio::time::timeout(TEARDOWN, mux.close()).await;
    kcp.close();
}

/// Settings of the relay.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Shared key that backends and clients prove (and the relay proves to them). Required (non-empty).
    pub key: Vec<u8>,
    /// A peer whose control stream carries no frame for this long is dropped. Default 30 s; peers ping every
    /// 10 s by default.
    pub idle_timeout: Duration,
    /// Longest time from a new KCP session to the end of its handshake (HELLO, PROOF), and the longest wait
    /// for a client's CONNECT. Default 10 s.
    pub handshake_timeout: Duration,
    /// Sessions that have not finished the handshake, at most; a new session beyond this is closed at once.
    /// Default 64.
    pub max_unauthenticated: usize,
    /// smux settings for every session (default: Go's defaults, smux v1).
    pub smux: rkcp_smux::Config,
}

impl RelayConfig {
    /// The defaults with this key.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        RelayConfig {
            key: key.into(),
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_unauthenticated: 64,
            smux: rkcp_smux::Config::default(),
        }
    }
}

struct Registered {
    mux: rkcp_smux::Session,
    kcp: KcpHandle,
    generation: u64,
    /// Told when a newer registration of the same id takes over.
    replaced: Arc<tokio::sync::Notify>,
}

struct Live {
    mux: rkcp_smux::Session,
    kcp: KcpHandle,
}

struct State {
    backends: Mutex<HashMap<String, Registered>>,
    sessions: Mutex<HashMap<u64, Live>>,
    next: AtomicU64,
    stopping: tokio::sync::watch::Sender<bool>,
    unauthenticated: AtomicUsize,
    refused: AtomicU64,
    last_cap_warning: Mutex<Option<tokio::time::Instant>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            backends: Mutex::default(),
            sessions: Mutex::default(),
            next: AtomicU64::default(),
            stopping: tokio::sync::watch::Sender::new(false),
            unauthenticated: AtomicUsize::default(),
            refused: AtomicU64::default(),
            last_cap_warning: Mutex::default(),
        }
    }
}

impl State {
    fn lock_backends(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registered>> {
        self.backends.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Live>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a session as unauthenticated while it lives.
struct Unauthenticated<'a>(&'a State);

impl Drop for Unauthenticated<'_> {
    fn drop(&mut self) {
        self.0.unauthenticated.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The relay: accepts KCP sessions from clients and backends (see the module docs).
pub struct Relay {
    listener: KcpListener,
    cfg: Arc<RelayConfig>,
    state: Arc<State>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("local_addr", &self.listener.local_addr())
            .field("backends", &self.backend_ids())
            .finish()
    }
}

impl Relay {
    /// Binds the KCP listener. Fails on an empty key or an invalid smux config.
    pub async fn bind(
        addr: impl tokio::net::ToSocketAddrs,
        kcp: KcpConfig,
        cfg: RelayConfig,
    ) -> Result<Relay, RelayError> {
        Self::check(&cfg)?;
        let listener = KcpListener::bind(addr, kcp).await?;
        Ok(Self::with_listener(listener, cfg))
    }

    /// Serves on an already bound UDP socket (e.g. a dual-stack one from [`crate::cli::bind_udp`]). Must be
    /// called inside a tokio runtime. Fails as [`Relay::bind`] does.
    pub fn from_std(
        sock: std::net::UdpSocket,
        kcp: KcpConfig,
        cfg: RelayConfig,
    ) -> Result<Relay, RelayError> {
        Self::check(&cfg)?;
        let listener = KcpListener::from_std(sock, kcp)?;
        Ok(Self::with_listener(listener, cfg))
    }

    fn check(cfg: &RelayConfig) -> Result<(), RelayError> {
        if cfg.key.is_empty() {
            return Err(RelayError::Config(
                "the shared key must not be empty".into(),
            ));
        }
        if cfg.max_unauthenticated == 0 {
            return Err(RelayError::Config(
                "max_unauthenticated must be at least 1".into(),
            ));
        }
        validate_smux(&cfg.smux)
    }

    fn with_listener(listener: KcpListener, cfg: RelayConfig) -> Relay {
        Relay {
            listener,
            cfg: Arc::new(cfg),
            state: Arc::default(),
        }
    }

    /// The bound UDP address.
    ///
    /// # Errors
    /// As [`rkcp_session::KcpListener::local_addr`].
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that lists registered backend ids while [`run`](Self::run) owns the relay.
    pub fn registry(&self) -> Registry {
        Registry(self.state.clone())
    }

    /// Ids of the registered backends, sorted.
    pub fn backend_ids(&self) -> Vec<String> {
        self.registry().backend_ids()
    }

    /// Serves until `shutdown` completes, then closes the listener and every session and returns within about
    /// two seconds, whatever the peers do.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                r = self.listener.accept() => match r {
                    Ok((kcp, peer)) => {
                        let (cfg, state) = (self.cfg.clone(), self.state.clone());
                        tokio::spawn(async move {
                            if let Err(e) = serve_session(kcp, cfg, state).await {
                                tracing::info!("{peer}: {}", Chain(&e));
                            }
                        });
                    }
                    Err(e) => break Err(RelayError::from(e)),
                },
            }
        };
        self.listener.close();
        // Each control loop sends its peer an ERROR ("relay shutting down") so peers reconnect at once instead
        // of at their next ping, and closes its session (bounded by TEARDOWN). Give them a moment, then close
        // the rest at once: nothing here waits on a peer.
        self.state.stopping.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while !self.state.lock_sessions().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        self.state.lock_backends().clear();
        let sessions: Vec<_> = self.state.lock_sessions().drain().map(|(_, s)| s).collect();
        for s in &sessions {
            s.kcp.close();
        }
        let _ = tokio::time::timeout(TEARDOWN, async {
            for s in &sessions {
                let _ = s.mux.close().await;
            }
        })
        .await;
        result
    }
}

/// Read-only view of the relay's state while it runs.
#[derive(Clone)]
pub struct Registry(Arc<State>);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Registry")
            .field(&self.backend_ids())
            .finish()
    }
}

impl Registry {
    /// Ids of the registered backends, sorted.
    pub fn backend_ids(&self) -> Vec<String> {
        let mut ids: Vec<_> = self.0.lock_backends().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Sessions that have not finished their handshake yet (at most `max_unauthenticated`).
    pub fn unauthenticated(&self) -> usize {
        self.0.unauthenticated.load(Ordering::Relaxed)
    }

    /// New sessions closed at once because `max_unauthenticated` were already pending.
    pub fn refused_sessions(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    /// Open sessions (authenticated or not).
    pub fn sessions(&self) -> usize {
        self.0.lock_sessions().len()
    }
}

async fn serve_session(
    kcp: KcpStream,
    cfg: Arc<RelayConfig>,
    state: Arc<State>,
) -> Result<(), RelayError> {
    let peer = kcp.peer_addr()?;
    if state.unauthenticated.fetch_add(1, Ordering::Relaxed) >= cfg.max_unauthenticated {
        state.unauthenticated.fetch_sub(1, Ordering::Relaxed);
        state.refused.fetch_add(1, Ordering::Relaxed);
        kcp.close();
        let now = tokio::time::Instant::now();
        let mut last = state
            .last_cap_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            *last = Some(now);
            tracing::warn!(
                "{peer}: {} sessions are already in their handshake (max_unauthenticated); closing new ones \
                 ({} so far)",
                cfg.max_unauthenticated,
                state.refused.load(Ordering::Relaxed)
            );
        }
        return Ok(());
    }
    let pending = Unauthenticated(&state);
    let (io, handle) = watch(kcp);
    let mux = rkcp_smux::Session::server(io, cfg.smux.clone())
        .map_err(|e| RelayError::Config(e.to_string()))?
        .with_addrs(None, Some(peer));
    let sid = state.next.fetch_add(1, Ordering::Relaxed);
    state.lock_sessions().insert(
        sid,
        Live {
            mux: mux.clone(),
            kcp: handle.clone(),
        },
    );
    let result = async {
        let auth = timed(
            cfg.handshake_timeout,
            "handshake",
            handshake(&mux, &cfg.key),
        )
        .await;
        drop(pending);
        let (ctrl, role, id) = auth?;
        tracing::info!("{role:?} {id:?} authenticated from {peer}");
        match role {
            Role::Backend => serve_backend(ctrl, &mux, &handle, id, &cfg, &state).await,
            Role::Client => serve_client(ctrl, &mux, &cfg, &state).await,
        }
    }
    .await;
    state.lock_sessions().remove(&sid);
    close_now(&mux, &handle).await;
    result
}

/// Relay side of the handshake on the session's first stream; returns the control stream, the role and id.
async fn handshake(
    mux: &rkcp_smux::Session,
    key: &[u8],
) -> Result<(rkcp_smux::Stream, Role, String), RelayError> {
    let mut ctrl = mux.accept_stream().await?;
    let (role, peer_nonce, id) = match read_frame(&mut ctrl).await {
        Ok(Frame::Hello { role, nonce, id }) => (role, nonce, id),
        Ok(other) => return Err(refuse(&mut ctrl, format!("expected HELLO, got {other:?}")).await),
        Err(e) => return Err(refuse(&mut ctrl, e.to_string()).await),
    };
    let relay_nonce: [u8; NONCE_LEN] = rand::random();
    let mine = proof(
        key,
        Direction::RelayToPeer,
        role,
        &id,
        &relay_nonce,
        &peer_nonce,
    );
    write_frame(
        &mut ctrl,
        &Frame::Challenge {
            nonce: relay_nonce,
            proof: mine,
        },
    )
    .await?;
    match read_frame(&mut ctrl).await {
        Ok(Frame::Proof(p))
            if verify(
                key,
                Direction::PeerToRelay,
                role,
                &id,
                &relay_nonce,
                &peer_nonce,
                &p,
            ) => {}
        Ok(Frame::Proof(_)) => {
            return Err(refuse(&mut ctrl, format!("{role:?} {id:?}: wrong key (bad proof)")).await);
        }
        // The peer could not verify our proof and says so.
        Ok(Frame::Error(m)) => return Err(RelayError::Refused(format!("{role:?} {id:?}: {m}"))),
        Ok(other) => return Err(refuse(&mut ctrl, format!("expected PROOF, got {other:?}")).await),
        Err(e) => return Err(refuse(&mut ctrl, e.to_string()).await),
    }
    Ok((ctrl, role, id))
}

async fn refuse(s: &mut rkcp_smux::Stream, msg: String) -> RelayError {
    let _ = tokio::time::timeout(TEARDOWN, write_frame(s, &Frame::Error(msg.clone()))).await;
    RelayError::Refused(msg)
}

async fn serve_backend(
    ctrl: rkcp_smux::Stream,
    mux: &rkcp_smux::Session,
    kcp: &KcpHandle,
    id: String,
    cfg: &RelayConfig,
    state: &State,
) -> Result<(), RelayError> {
    let generation = state.next.fetch_add(1, Ordering::Relaxed);
    let replaced = Arc::new(tokio::sync::Notify::new());
    // A new registration with a valid proof replaces the old one: a restarted backend must not be locked out
    // until the relay notices that its previous session is dead.
    let old = state.lock_backends().insert(
        id.clone(),
        Registered {
            mux: mux.clone(),
            kcp: kcp.clone(),
            generation,
            replaced: replaced.clone(),
        },
    );
    if let Some(old) = old {
        tracing::info!(
            "backend {id:?} re-registered from {:?}; dropping its previous session",
            mux.peer_addr()
        );
        // Its control loop tells it why and closes its session; should that hang, close it anyway.
        old.replaced.notify_one();
        tokio::spawn(async move {
            tokio::time::sleep(2 * TEARDOWN).await;
            close_now(&old.mux, &old.kcp).await;
        });
    } else {
        tracing::info!("backend {id:?} registered from {:?}", mux.peer_addr());
    }
    // Streams a backend opens itself are not part of the protocol: drop them.
    let ignore = async {
        while mux.accept_stream().await.is_ok() {}
        Err::<(), _>(RelayError::Protocol("session ended".into()))
    };
    let result = tokio::select! {
        r = control_loop(ctrl, cfg, state, Some(&replaced)) => r,
        r = ignore => r,
    };
    if let Err(e) = &result {
        tracing::info!("backend {id:?} dropped: {}", Chain(e));
    }
    let mut backends = state.lock_backends();
    if backends
        .get(&id)
        .is_some_and(|r| r.generation == generation)
    {
        backends.remove(&id);
    }
    result
}

async fn serve_client(
    ctrl: rkcp_smux::Stream,
    mux: &rkcp_smux::Session,
    cfg: &Arc<RelayConfig>,
    state: &Arc<State>,
) -> Result<(), RelayError> {
    let accept = async {
        loop {
            let s = mux.accept_stream().await?;
            let (cfg, state) = (cfg.clone(), state.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_connect(s, cfg, state).await {
                    tracing::info!("client stream: {}", Chain(&e));
                }
            });
        }
    };
    tokio::select! {
        r = control_loop(ctrl, cfg, state, None) => r,
        r = accept => r,
    }
}

/// PING/PONG on a peer's control stream until it ends, idles out or the relay stops; tells the peer why.
async fn control_loop(
    mut ctrl: rkcp_smux::Stream,
    cfg: &RelayConfig,
    state: &State,
    replaced: Option<&tokio::sync::Notify>,
) -> Result<(), RelayError> {
    let mut stopping = state.stopping.subscribe();
    let replaced = async {
        match replaced {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(replaced);
    let result = async {
        write_frame(&mut ctrl, &Frame::Ok).await?;
        loop {
            let next = tokio::select! {
                _ = stopping.wait_for(|s| *s) => break Err(RelayError::Refused("relay shutting down".into())),
                () = &mut replaced => break Err(RelayError::Refused(REPLACED.into())),
                r = tokio::time::timeout(cfg.idle_timeout, read_frame(&mut ctrl)) => r,
            };
            match next {
                Err(_) => break Err(RelayError::Timeout("peer's ping (idle timeout)")),
                Ok(Ok(Frame::Ping)) => write_frame(&mut ctrl, &Frame::Pong).await?,
                Ok(Ok(other)) => {
                    break Err(RelayError::Protocol(format!(
                        "unexpected {other:?} on the control stream"
                    )));
                }
                Ok(Err(e)) => break Err(e),
            }
        }
    }
    .await;
    if let Err(e) = &result {
        // Tell the peer why: KCP has no close handshake, so without this it would only notice at its next
        // ping (or smux keepalive timeout).
        let msg = match e {
            RelayError::Refused(m) => m.clone(),
            e => format!("dropped by the relay: {}", Chain(e)),
        };
        let _ = refuse(&mut ctrl, msg).await;
    }
    result
}

async fn serve_connect(
    mut s: rkcp_smux::Stream,
    cfg: Arc<RelayConfig>,
    state: Arc<State>,
) -> Result<(), RelayError> {
    let id = match timed(cfg.handshake_timeout, "CONNECT", read_frame(&mut s)).await {
        Ok(Frame::Connect(id)) => id,
        Ok(other) => return Err(refuse(&mut s, format!("expected CONNECT, got {other:?}")).await),
        Err(e) => return Err(refuse(&mut s, e.to_string()).await),
    };
    let backend = state.lock_backends().get(&id).map(|r| r.mux.clone());
    let Some(backend) = backend else {
        return Err(refuse(&mut s, format!("unknown backend id {id:?}")).await);
    };
    let mut b = match backend.open_stream().await {
        Ok(b) => b,
        Err(e) => {
            return Err(refuse(&mut s, format!("backend {id:?} unavailable: {}", Chain(&e))).await);
        }
    };
    write_frame(&mut s, &Frame::Ok).await?;
    tracing::debug!("splicing stream {} to backend {id:?}", s.id());
    tokio::io::copy_bidirectional(&mut s, &mut b).await?;
    Ok(())
}

fn validate_smux(cfg: &rkcp_smux::Config) -> Result<(), RelayError> {
    cfg.validate()
        .map_err(|e| RelayError::Config(e.to_string()))
}

/// Peer side of the handshake: opens the control stream, checks the relay's proof before giving its own.
async fn authenticate(
    mux: &rkcp_smux::Session,
    role: Role,
    id: &str,
    key: &[u8],
    t: Duration,
) -> Result<rkcp_smux::Stream, RelayError> {
    let mut ctrl = mux.open_stream().await?;
    let peer_nonce: [u8; NONCE_LEN] = rand::random();
    write_frame(
        &mut ctrl,
        &Frame::Hello {
            role,
            nonce: peer_nonce,
            id: id.to_owned(),
        },
    )
    .await?;
    let relay_nonce = match timed(t, "relay's challenge", read_frame(&mut ctrl)).await? {
        Frame::Challenge { nonce, proof } => {
            if !verify(
                key,
                Direction::RelayToPeer,
                role,
                id,
                &nonce,
                &peer_nonce,
                &proof,
            ) {
                // Our proof is never sent to a relay that cannot prove the key (no HMAC oracle).
                let msg = "the relay's proof is wrong (different keys?)".to_string();
                let _ = tokio::time::timeout(TEARDOWN, write_frame(&mut ctrl, &Frame::Error(msg)))
                    .await;
                return Err(RelayError::RelayUnauthenticated);
            }
            nonce
        }
        Frame::Error(m) => return Err(RelayError::Refused(m)),
        other => {
            return Err(RelayError::Protocol(format!(
                "expected CHALLENGE, got {other:?}"
            )));
        }
    };
    let mine = proof(
        key,
        Direction::PeerToRelay,
        role,
        id,
        &relay_nonce,
        &peer_nonce,
    );
    write_frame(&mut ctrl, &Frame::Proof(mine)).await?;
    match timed(t, "relay's answer to the proof", read_frame(&mut ctrl)).await? {
        Frame::Ok => Ok(ctrl),
        Frame::Error(m) => Err(RelayError::Refused(m)),
        other => Err(RelayError::Protocol(format!("expected OK, got {other:?}"))),
    }
}

/// Dials the relay and authenticates; on failure the session is closed at once.
async fn dial(
    relay: SocketAddr,
    kcp: KcpConfig,
    smux: &rkcp_smux::Config,
    role: Role,
    id: &str,
    key: &[u8],
    t: Duration,
) -> Result<(rkcp_smux::Session, KcpHandle, rkcp_smux::Stream), RelayError> {
    validate_id(id)?;
    validate_smux(smux)?;
    if key.is_empty() {
        return Err(RelayError::Config(
            "the shared key must not be empty".into(),
        ));
    }
    let stream = KcpStream::connect(relay, kcp).await?;
    let (io, handle) = watch(stream);
    let mux = rkcp_smux::Session::client(io, smux.clone())
        .map_err(|e| RelayError::Config(e.to_string()))?;
    match authenticate(&mux, role, id, key, t).await {
        Ok(ctrl) => Ok((mux, handle, ctrl)),
        Err(e) => {
            close_now(&mux, &handle).await;
            Err(e)
        }
    }
}

/// Settings of a backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackendConfig {
    /// The id clients name (see [`validate_id`]).
    pub id: String,
    /// The relay's shared key.
    pub key: Vec<u8>,
    /// How often to PING the relay; `None` never pings (the relay then drops the backend after its idle
    /// timeout). Default 10 s.
    pub ping_interval: Option<Duration>,
    /// Longest wait for the relay's CHALLENGE, OK or PONG. Default 10 s.
    pub handshake_timeout: Duration,
    /// smux settings (default: Go's defaults, smux v1).
    pub smux: rkcp_smux::Config,
}

impl BackendConfig {
    /// The defaults with this id and key.
    pub fn new(id: impl Into<String>, key: impl Into<Vec<u8>>) -> Self {
        BackendConfig {
            id: id.into(),
            key: key.into(),
            ping_interval: Some(Duration::from_secs(10)),
            handshake_timeout: Duration::from_secs(10),
            smux: rkcp_smux::Config::default(),
        }
    }
}

/// A backend registered at a relay; [`accept`](Self::accept) yields one stream per client connection.
#[derive(Debug)]
pub struct Backend {
    mux: rkcp_smux::Session,
    kcp: KcpHandle,
    pinger: tokio::task::JoinHandle<Result<(), RelayError>>,
}

impl Backend {
    /// Dials the relay, checks the relay's proof, registers `cfg.id` proving `cfg.key`, and starts pinging.
    /// A registration replaces an earlier one of the same id.
    pub async fn register(
        relay: SocketAddr,
        kcp: KcpConfig,
        cfg: BackendConfig,
    ) -> Result<Backend, RelayError> {
        let (mux, handle, ctrl) = dial(
            relay,
            kcp,
            &cfg.smux,
            Role::Backend,
            &cfg.id,
            &cfg.key,
            cfg.handshake_timeout,
        )
        .await?;
        let pinger = tokio::spawn(ping_loop(
            ctrl,
            mux.clone(),
            handle.clone(),
            cfg.ping_interval,
            cfg.handshake_timeout,
        ));
        Ok(Backend {
            mux,
            kcp: handle,
            pinger,
        })
    }

    /// The next client connection spliced through the relay. Fails once the relay dropped this backend or
    /// the session ended.
    pub async fn accept(&self) -> Result<rkcp_smux::Stream, RelayError> {
        Ok(self.mux.accept_stream().await?)
    }

    /// True once the session to the relay is gone (dropped for idleness, replaced, relay shut down, link dead).
    pub fn is_closed(&self) -> bool {
        self.mux.is_closed()
    }

    /// Unregisters (closes the session, waiting at most half a second for the relay).
    pub async fn close(&self) {
        self.pinger.abort();
        close_now(&self.mux, &self.kcp).await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.pinger.abort();
    }
}

async fn ping_loop(
    mut ctrl: rkcp_smux::Stream,
    mux: rkcp_smux::Session,
    kcp: KcpHandle,
    interval: Option<Duration>,
    t: Duration,
) -> Result<(), RelayError> {
    let result = async {
        let Some(interval) = interval else {
            // Never ping; hold the control stream and notice when the relay drops us.
            return match read_frame(&mut ctrl).await? {
                Frame::Error(m) => Err(RelayError::Refused(m)),
                other => Err(RelayError::Protocol(format!("unexpected {other:?}"))),
            };
        };
        // Reading and pinging run concurrently so that an ERROR from the relay (idle drop, shutdown) is seen
        // at once, not at the next ping. Neither loop is cancelled mid-frame except when the other ends.
        let (mut r, mut w) = ctrl.split();
        let last_pong = Mutex::new(tokio::time::Instant::now());
        let reader = async {
            loop {
                match read_frame(&mut r).await? {
                    Frame::Pong => {
                        *last_pong.lock().unwrap_or_else(|e| e.into_inner()) =
                            tokio::time::Instant::now();
                    }
                    Frame::Error(m) => return Err(RelayError::Refused(m)),
                    other => {
                        return Err(RelayError::Protocol(format!(
                            "expected PONG, got {other:?}"
                        )));
                    }
                }
            }
        };
        let pinger = async {
            loop {
                tokio::time::sleep(interval).await;
                let last = *last_pong.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() > interval + t {
                    return Err(RelayError::Timeout("relay's PONG"));
                }
                write_frame(&mut w, &Frame::Ping).await?;
            }
        };
        tokio::select! {
            e = reader => e,
            e = pinger => e,
        }
    }
    .await;
    if let Err(e) = &result {
        tracing::warn!("lost the relay: {}", Chain(e));
    }
    close_now(&mux, &kcp).await;
    result
}

/// Settings of a client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The relay's shared key.
    pub key: Vec<u8>,
    /// This client's name (same rules as an id): logged by the relay and bound into the proofs. Default
    /// `client`.
    pub name: String,
    /// How often to PING the relay (so a lost relay is noticed); `None` never pings (the relay then drops the
    /// client after its idle timeout). Default 10 s.
    pub ping_interval: Option<Duration>,
    /// Longest wait for the relay's CHALLENGE, OK, PONG or answer to CONNECT. Default 10 s.
    pub handshake_timeout: Duration,
    /// smux settings (default: Go's defaults, smux v1).
    pub smux: rkcp_smux::Config,
}

impl ClientConfig {
    /// The defaults with this key.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        ClientConfig {
            key: key.into(),
            name: "client".into(),
            ping_interval: Some(Duration::from_secs(10)),
            handshake_timeout: Duration::from_secs(10),
            smux: rkcp_smux::Config::default(),
        }
    }
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), RelayError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An authenticated client session to a relay; every [`open`](Self::open) is one connection to a named
/// backend. Clones share the session.
#[derive(Debug, Clone)]
pub struct Client {
    mux: rkcp_smux::Session,
    kcp: KcpHandle,
    handshake_timeout: Duration,
    _pinger: Arc<AbortOnDrop>,
}

impl Client {
    /// Dials the relay, checks its proof and proves the key.
    pub async fn connect(
        relay: SocketAddr,
        kcp: KcpConfig,
        cfg: ClientConfig,
    ) -> Result<Client, RelayError> {
        let (mux, handle, ctrl) = dial(
            relay,
            kcp,
            &cfg.smux,
            Role::Client,
            &cfg.name,
            &cfg.key,
            cfg.handshake_timeout,
        )
        .await?;
        let pinger = tokio::spawn(ping_loop(
            ctrl,
            mux.clone(),
            handle.clone(),
            cfg.ping_interval,
            cfg.handshake_timeout,
        ));
        Ok(Client {
            mux,
            kcp: handle,
            handshake_timeout: cfg.handshake_timeout,
            _pinger: Arc::new(AbortOnDrop(pinger)),
        })
    }

    /// Opens a stream to backend `id`. Fails with [`RelayError::Refused`] if the relay does not know the id.
    pub async fn open(&self, id: &str) -> Result<rkcp_smux::Stream, RelayError> {
        validate_id(id)?;
        let mut s = self.mux.open_stream().await?;
        write_frame(&mut s, &Frame::Connect(id.to_owned())).await?;
        match timed(self.handshake_timeout, "relay's answer", read_frame(&mut s)).await? {
            Frame::Ok => Ok(s),
            Frame::Error(m) => Err(RelayError::Refused(m)),
            other => Err(RelayError::Protocol(format!("expected OK, got {other:?}"))),
        }
    }

    /// True once the session to the relay is gone.
    pub fn is_closed(&self) -> bool {
        self.mux.is_closed()
    }

    /// Closes the session (waiting at most half a second for the relay).
    pub async fn close(&self) {
        close_now(&self.mux, &self.kcp).await;
    }
}

/// Reconnection delays: the first retry waits `initial`, each failure doubles it up to `max`; a success
/// starts over.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay. Default 1 s.
    pub initial: Duration,
    /// Largest delay. Default 30 s.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    fn next(&self, d: Duration) -> Duration {
        (d * 2).min(self.max)
    }
}

/// Keeps a backend registered until `shutdown`: registers, hands every client stream to `handle` (in its own
/// task), and when the relay or the link goes away registers again after a [`Backoff`] delay (logged).
/// `on_registered` runs after each registration.
///
/// Returns an error for a permanent failure ([`RelayError::is_permanent`]: a refusal such as a wrong key, a
/// relay that cannot prove the key, an invalid configuration) of the **first** registration (later ones are
/// retried like a lost link), and when another instance registered the same id ([`REPLACED`]): registering
/// again would take the id back and forth.
pub async fn run_backend<H, F>(
    relay: SocketAddr,
    kcp: KcpConfig,
    cfg: BackendConfig,
    backoff: Backoff,
    shutdown: impl Future<Output = ()>,
    mut on_registered: impl FnMut(),
    handle: H,
) -> Result<(), RelayError>
where
    H: Fn(rkcp_smux::Stream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    let mut delay = backoff.initial;
    let mut first = true;
    loop {
        let attempt = tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = Backend::register(relay, kcp.clone(), cfg.clone()) => r,
        };
        match attempt {
            Ok(mut backend) => {
                first = false;
                delay = backoff.initial;
                on_registered();
                let lost = loop {
                    tokio::select! {
                        () = &mut shutdown => {
                            backend.close().await;
                            return Ok(());
                        }
                        s = backend.accept() => match s {
                            Ok(s) => { tokio::spawn(handle(s)); }
                            Err(e) => break e,
                        },
                    }
                };
                // The ping loop knows why (the relay's ERROR); it ends within its teardown.
                let why = tokio::time::timeout(4 * TEARDOWN, &mut backend.pinger).await;
                let lost = match why {
                    Ok(Ok(Err(e))) => e,
                    _ => lost,
                };
                // Another instance registered this id: registering again would take it back and forth.
                if matches!(&lost, RelayError::Refused(m) if m == REPLACED) {
                    return Err(lost);
                }
                tracing::warn!(
                    "backend {:?}: lost the relay at {relay} ({}); registering again in {delay:?}",
                    cfg.id,
                    Chain(&lost)
                );
            }
            Err(e) if first && e.is_permanent() => return Err(e),
            Err(e) => {
                tracing::warn!(
                    "backend {:?}: cannot register at {relay} ({}); retrying in {delay:?}",
                    cfg.id,
                    Chain(&e)
                );
            }
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
        delay = backoff.next(delay);
    }
}

/// A client that reconnects: [`open`](Self::open) uses the current session, or dials a new one when there is
/// none or it has closed, but not before the [`Backoff`] delay since the last failed attempt.
#[derive(Debug)]
pub struct ReconnectingClient {
    relay: SocketAddr,
    kcp: KcpConfig,
    cfg: ClientConfig,
    backoff: Backoff,
    state: tokio::sync::Mutex<Reconnect>,
}

#[derive(Debug)]
struct Reconnect {
    client: Option<Client>,
    not_before: tokio::time::Instant,
    delay: Duration,
}

impl ReconnectingClient {
    /// Does not dial yet.
    pub fn new(relay: SocketAddr, kcp: KcpConfig, cfg: ClientConfig, backoff: Backoff) -> Self {
        ReconnectingClient {
            relay,
            kcp,
            cfg,
            backoff,
            state: tokio::sync::Mutex::new(Reconnect {
                client: None,
                not_before: tokio::time::Instant::now(),
                delay: backoff.initial,
            }),
        }
    }

    /// The current session, dialling one if needed. Fails with the dial's error, or with
    /// [`RelayError::Timeout`] while waiting out the backoff after a failure.
    pub async fn client(&self) -> Result<Client, RelayError> {
        let mut st = self.state.lock().await;
        if let Some(c) = &st.client
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        st.client = None;
        let now = tokio::time::Instant::now();
        if now < st.not_before {
            return Err(RelayError::Timeout("relay (reconnecting with backoff)"));
        }
        match Client::connect(self.relay, self.kcp.clone(), self.cfg.clone()).await {
            Ok(c) => {
                st.delay = self.backoff.initial;
                st.client = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot reach the relay at {} ({}); next attempt in {:?}",
                    self.relay,
                    Chain(&e),
                    st.delay
                );
                st.not_before = tokio::time::Instant::now() + st.delay;
                st.delay = self.backoff.next(st.delay);
                Err(e)
            }
        }
    }

    /// Opens a stream to backend `id` over the current (or a new) session.
    pub async fn open(&self, id: &str) -> Result<rkcp_smux::Stream, RelayError> {
        self.client().await?.open(id).await
    }

    /// Closes the current session, if any.
    pub async fn close(&self) {
        if let Some(c) = self.state.lock().await.client.take() {
            c.close().await;
        }
    }
}

/// KCP settings the relay binaries use: kcp-go's fast2 mode with 256-segment windows, optionally encrypted
/// with AES from a passphrase (all three programs must agree).
pub fn kcp_config(kcp_key: Option<&str>) -> KcpConfig {
    let cfg = KcpConfig::fast2().with_window(256, 256);
    match kcp_key {
        Some(k) => cfg.with_crypt(rkcp_session::PacketCrypt::from_passphrase(
            rkcp_session::CipherKind::Aes,
            k,
        )),
        None => cfg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let frames = [
            Frame::Hello {
                role: Role::Backend,
                nonce: [1; 32],
                id: "a-1.b_c".into(),
            },
            Frame::Hello {
                role: Role::Client,
                nonce: [2; 32],
                id: "x".into(),
            },
            Frame::Challenge {
                nonce: [7; 32],
                proof: [8; 32],
            },
            Frame::Proof([9; 32]),
            Frame::Ok,
            Frame::Error("nope ü".into()),
            Frame::Connect("x".into()),
            Frame::Ping,
            Frame::Pong,
        ];
        for f in frames {
            let bytes = f.encode();
            assert_eq!(bytes[0], PROTOCOL_VERSION);
            let got = read_frame(&mut &bytes[..]).await.unwrap();
            assert_eq!(got, f);
            assert_eq!(Frame::parse(&bytes).unwrap(), Some((f, bytes.len())));
            assert_eq!(Frame::parse(&bytes[..bytes.len() - 1]).unwrap(), None);
        }
    }

    #[tokio::test]
    async fn malformed_frames_are_rejected() {
        let mut hello_bad_role = vec![2, 1, 0, 34, 3];
        hello_bad_role.extend_from_slice(&[0; 32]);
        hello_bad_role.push(b'a');
        let bad: [&[u8]; 10] = [
            &[1, 7, 0, 0],             // version 1
            &[2, 9, 0, 0],             // unknown type
            &[2, 7, 0, 1, 0],          // PING with payload
            &[2, 3, 0, 1, 0],          // short proof
            &[2, 1, 0, 2, 1, b'a'],    // HELLO without a nonce
            &[2, 5, 0x04, 0x01],       // 1025 > MAX_PAYLOAD
            &[2, 6, 0, 0],             // empty id
            &[2, 6, 0, 5, b'a'],       // truncated
            &[2, 6, 0, 2, b'a', b' '], // bad id
            &hello_bad_role,
        ];
        for b in bad {
            assert!(read_frame(&mut &b[..]).await.is_err(), "{b:?}");
        }
        // An oversized length fails before its payload arrives.
        assert!(Frame::parse(&[2, 5, 0x04, 0x01]).is_err());
        let long = Frame::Error("é".repeat(MAX_PAYLOAD)).encode();
        assert_eq!(long.len(), 4 + MAX_PAYLOAD);
        assert!(matches!(
            read_frame(&mut &long[..]).await,
            Ok(Frame::Error(_))
        ));
    }

    #[test]
    fn proofs_bind_key_direction_role_id_and_both_nonces() {
        let (r, p) = ([3u8; NONCE_LEN], [4u8; NONCE_LEN]);
        let tag = proof(b"key", Direction::PeerToRelay, Role::Backend, "web", &r, &p);
        let ok = |key: &[u8], d, role, id: &str, r: &[u8; 32], p: &[u8; 32]| {
            verify(key, d, role, id, r, p, &tag)
        };
        assert!(ok(
            b"key",
            Direction::PeerToRelay,
            Role::Backend,
            "web",
            &r,
            &p
        ));
        assert!(!ok(
            b"other",
            Direction::PeerToRelay,
            Role::Backend,
            "web",
            &r,
            &p
        ));
        assert!(!ok(
            b"key",
            Direction::RelayToPeer,
            Role::Backend,
            "web",
            &r,
            &p
        ));
        assert!(!ok(
            b"key",
            Direction::PeerToRelay,
            Role::Client,
            "web",
            &r,
            &p
        ));
        assert!(!ok(
            b"key",
            Direction::PeerToRelay,
            Role::Backend,
            "web2",
            &r,
            &p
        ));
        assert!(!ok(
            b"key",
            Direction::PeerToRelay,
            Role::Backend,
            "web",
            &p,
            &p
        ));
        assert!(!ok(
            b"key",
            Direction::PeerToRelay,
            Role::Backend,
            "web",
            &r,
            &r
        ));
        // Swapping the nonces is a different input too.
        assert!(!ok(
            b"key",
            Direction::PeerToRelay,
            Role::Backend,
            "web",
            &p,
            &r
        ));
    }
}
