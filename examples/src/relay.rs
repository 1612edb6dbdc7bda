//! A relay gateway: clients reach named backends through one public relay (binaries `relay`,
//! `relay-backend`, `relay-client`).
//!
//! Every peer dials the relay over KCP and runs an smux *client* on that session; the relay is the smux
//! server. Backends are usually behind NAT or a firewall: they dial out, prove that they hold the shared key
//! and register an id. A client opens an smux stream, names a backend id, and the relay opens a fresh stream
//! to that backend and splices the two, so the backend sees one ordinary stream per client connection.
//!
//! # Control protocol (version 1)
//!
//! Each smux stream opened *by a peer* starts with one control frame; relay-opened streams towards a backend
//! carry application bytes only. A frame is:
//!
//! ```text
//! +---------+------+----------------+--------------------+
//! | ver: u8 | t:u8 | len: u16 (BE)  | payload: len bytes |
//! +---------+------+----------------+--------------------+
//! ```
//!
//! `ver` is 1; a frame with another version is answered with `ERROR` (if possible) and the stream closed, so a
//! later version can change anything after the first byte. `len` is at most [`MAX_PAYLOAD`]; longer frames
//! are a protocol error (nothing is allocated for them).
//!
//! | t | name      | payload                       | sent by | meaning |
//! |---|-----------|-------------------------------|---------|---------|
//! | 1 | HELLO     | backend id                    | backend | first frame of the backend's control stream |
//! | 2 | CHALLENGE | 32 random bytes               | relay   | answer with PROOF |
//! | 3 | PROOF     | HMAC-SHA256(key, challenge)   | backend | 32 bytes, compared in constant time |
//! | 4 | OK        | empty                         | relay   | registered / connected; raw bytes follow on a data stream |
//! | 5 | ERROR     | UTF-8 message                 | relay   | refusal; the relay closes the stream after it |
//! | 6 | CONNECT   | backend id                    | client  | first frame of a client's data stream |
//! | 7 | PING      | empty                         | backend | on the control stream, at least once per idle timeout |
//! | 8 | PONG      | empty                         | relay   | answer to PING |
//!
//! Backend registration: `HELLO(id)` → `CHALLENGE(c)` → `PROOF(HMAC-SHA256(key, c))` → `OK` (or `ERROR` for a
//! bad proof, an invalid id, or an id that is already registered). The control stream then stays open and
//! carries `PING`/`PONG`. If the relay sees no frame on it for its idle timeout, it unregisters the id and
//! closes the backend's whole session; if the control stream or the session ends, the id is unregistered at
//! once. The challenge is fresh per registration, so a recorded proof cannot be replayed. The key is never
//! sent; the KCP layer can additionally be encrypted with a passphrase (`--kcp-key`), which the relay and
//! every peer must then share.
//!
//! Client connection: `CONNECT(id)` → `OK`, after which the stream is spliced with the backend's stream (both
//! directions, until both sides have shut down), or `ERROR("unknown backend id ...")`.
//!
//! Ids are 1 to 64 bytes of `[A-Za-z0-9._-]`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use rkcp_session::{KcpConfig, KcpListener, KcpStream, SessionError};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cli::Chain;

/// Version byte of every control frame.
pub const PROTOCOL_VERSION: u8 = 1;
/// Largest control-frame payload a peer may send (an id or an error message fit easily).
pub const MAX_PAYLOAD: usize = 1024;
/// Length of a challenge and of a proof.
pub const CHALLENGE_LEN: usize = 32;
const MAX_ID_LEN: usize = 64;

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
    /// The peer sent something that is not valid relay protocol version 1 (wrong program or version).
    #[error("relay protocol error: {0}")]
    Protocol(String),
    /// The relay refused the request; the message says why (unknown id, bad proof, id taken).
    #[error("refused by relay: {0}")]
    Refused(String),
    /// The other side did not answer within the handshake timeout.
    #[error("timed out waiting for the {0}")]
    Timeout(&'static str),
}

/// One control frame (see the module docs for the table).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// Backend → relay: register this id.
    Hello(String),
    /// Relay → backend: prove the key over these bytes.
    Challenge([u8; CHALLENGE_LEN]),
    /// Backend → relay: HMAC-SHA256(key, challenge).
    Proof([u8; CHALLENGE_LEN]),
    /// Relay → peer: accepted.
    Ok,
    /// Relay → peer: refused, with a human-readable reason.
    Error(String),
    /// Client → relay: splice this stream with the named backend.
    Connect(String),
    /// Backend → relay keepalive.
    Ping,
    /// Relay → backend keepalive answer.
    Pong,
}

impl Frame {
    /// Encodes the frame (header and payload). Error messages longer than [`MAX_PAYLOAD`] are cut at a
    /// character boundary; ids are validated by the callers.
    pub fn encode(&self) -> Vec<u8> {
        let (t, payload): (u8, &[u8]) = match self {
            Frame::Hello(id) => (1, id.as_bytes()),
            Frame::Challenge(c) => (2, c),
            Frame::Proof(p) => (3, p),
            Frame::Ok => (4, &[]),
            Frame::Error(m) => {
                let mut end = m.len().min(MAX_PAYLOAD);
                while !m.is_char_boundary(end) {
                    end -= 1;
                }
                (5, &m.as_bytes()[..end])
            }
            Frame::Connect(id) => (6, id.as_bytes()),
            Frame::Ping => (7, &[]),
            Frame::Pong => (8, &[]),
        };
        let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
        let mut out = Vec::with_capacity(4 + payload.len());
        out.push(PROTOCOL_VERSION);
        out.push(t);
        // MAX_PAYLOAD < 65536, so the length fits.
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Decodes a frame from its type byte and payload (the header has been checked by [`read_frame`]).
    pub fn decode(t: u8, payload: &[u8]) -> Result<Frame, RelayError> {
        let fixed = |name: &str| -> Result<[u8; CHALLENGE_LEN], RelayError> {
            payload
                .try_into()
                .map_err(|_| RelayError::Protocol(format!("{name} of {} bytes", payload.len())))
        };
        let empty = |f: Frame| {
            if payload.is_empty() {
                Ok(f)
            } else {
                Err(RelayError::Protocol(format!("{f:?} with a payload")))
            }
        };
        match t {
            1 => Ok(Frame::Hello(parse_id(payload)?)),
            2 => Ok(Frame::Challenge(fixed("challenge")?)),
            3 => Ok(Frame::Proof(fixed("proof")?)),
            4 => empty(Frame::Ok),
            5 => Ok(Frame::Error(String::from_utf8_lossy(payload).into_owned())),
            6 => Ok(Frame::Connect(parse_id(payload)?)),
            7 => empty(Frame::Ping),
            8 => empty(Frame::Pong),
            _ => Err(RelayError::Protocol(format!("unknown frame type {t}"))),
        }
    }
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
            "invalid backend id {:?}: use 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 . _ -",
            id.chars().take(MAX_ID_LEN).collect::<String>()
        )))
    }
}

fn parse_id(payload: &[u8]) -> Result<String, RelayError> {
    let id = std::str::from_utf8(payload)
        .map_err(|_| RelayError::Protocol("backend id is not UTF-8".into()))?;
    validate_id(id).map_err(|e| RelayError::Protocol(e.to_string()))?;
    Ok(id.to_owned())
}

/// Reads one frame; fails on a wrong version, an oversized or malformed frame, or EOF.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, RelayError> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await?;
    let [ver, t, l0, l1] = head;
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

/// HMAC-SHA256(key, challenge): the backend's proof.
pub fn prove(key: &[u8], challenge: &[u8; CHALLENGE_LEN]) -> [u8; CHALLENGE_LEN] {
    let mut mac = mac(key);
    mac.update(challenge);
    mac.finalize().into_bytes().into()
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// Constant-time check of a proof (hmac's `verify_slice`).
fn verify(key: &[u8], challenge: &[u8; CHALLENGE_LEN], proof: &[u8; CHALLENGE_LEN]) -> bool {
    let mut mac = mac(key);
    mac.update(challenge);
    mac.verify_slice(proof).is_ok()
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

/// Settings of the relay.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Shared key the backends must prove. Required (non-empty).
    pub key: Vec<u8>,
    /// A backend whose control stream carries no frame for this long is dropped. Default 30 s; backends ping
    /// every 10 s by default.
    pub idle_timeout: Duration,
    /// Longest wait for a peer's first frame or proof. Default 10 s.
    pub handshake_timeout: Duration,
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
            smux: rkcp_smux::Config::default(),
        }
    }
}

struct Registered {
    mux: rkcp_smux::Session,
    generation: u64,
}

struct State {
    backends: Mutex<HashMap<String, Registered>>,
    sessions: Mutex<HashMap<u64, rkcp_smux::Session>>,
    next: AtomicU64,
    /// Set to true when the relay shuts down; registrations then tell their backend why and end.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Default for State {
    fn default() -> Self {
        State {
            backends: Mutex::default(),
            sessions: Mutex::default(),
            next: AtomicU64::default(),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl State {
    fn lock_backends(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registered>> {
        self.backends.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, rkcp_smux::Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
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
    pub fn local_addr(&self) -> SocketAddr {
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

    /// Serves until `shutdown` completes, then closes the listener and every session.
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
                                tracing::debug!("session from {peer} ended: {}", Chain(&e));
                            }
                        });
                    }
                    Err(e) => break Err(RelayError::from(e)),
                },
            }
        };
        self.listener.close();
        // Let each registration send its backend an ERROR ("relay shutting down") so backends exit at once
        // instead of at their next ping; give them a moment, then close everything.
        self.state.stopping.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while !self.state.lock_backends().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        self.state.lock_backends().clear();
        let sessions: Vec<_> = self.state.lock_sessions().drain().map(|(_, s)| s).collect();
        for s in sessions {
            let _ = s.close().await;
        }
        result
    }
}

/// Read-only view of the relay's registered backends.
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
}

async fn serve_session(
    kcp: KcpStream,
    cfg: Arc<RelayConfig>,
    state: Arc<State>,
) -> Result<(), RelayError> {
    let peer = kcp.peer_addr();
    let mux = rkcp_smux::Session::server(kcp, cfg.smux.clone())
        .map_err(|e| RelayError::Config(e.to_string()))?
        .with_addrs(None, Some(peer));
    let sid = state.next.fetch_add(1, Ordering::Relaxed);
    state.lock_sessions().insert(sid, mux.clone());
    let result = loop {
        match mux.accept_stream().await {
            Ok(stream) => {
                let (cfg, state, mux) = (cfg.clone(), state.clone(), mux.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve_stream(stream, mux, cfg, state).await {
                        tracing::info!("{peer}: {}", Chain(&e));
                    }
                });
            }
            Err(e) => break Err(e.into()),
        }
    };
    state.lock_sessions().remove(&sid);
    result
}

async fn refuse(s: &mut rkcp_smux::Stream, msg: String) -> RelayError {
    let _ = write_frame(s, &Frame::Error(msg.clone())).await;
    let _ = s.shutdown().await;
    RelayError::Refused(msg)
}

async fn serve_stream(
    mut s: rkcp_smux::Stream,
    mux: rkcp_smux::Session,
    cfg: Arc<RelayConfig>,
    state: Arc<State>,
) -> Result<(), RelayError> {
    let first = match timed(cfg.handshake_timeout, "first frame", read_frame(&mut s)).await {
        Ok(f) => f,
        Err(e) => return Err(refuse(&mut s, e.to_string()).await),
    };
    match first {
        Frame::Connect(id) => {
            let backend = state.lock_backends().get(&id).map(|r| r.mux.clone());
            let Some(backend) = backend else {
                return Err(refuse(&mut s, format!("unknown backend id {id:?}")).await);
            };
            let mut b = match backend.open_stream().await {
                Ok(b) => b,
                Err(e) => {
                    return Err(refuse(
                        &mut s,
                        format!("backend {id:?} unavailable: {}", Chain(&e)),
                    )
                    .await);
                }
            };
            write_frame(&mut s, &Frame::Ok).await?;
            tracing::debug!("splicing stream {} to backend {id:?}", s.id());
            tokio::io::copy_bidirectional(&mut s, &mut b).await?;
            Ok(())
        }
        Frame::Hello(id) => register(s, mux, id, cfg, state).await,
        other => Err(refuse(&mut s, format!("unexpected first frame {other:?}")).await),
    }
}

async fn register(
    mut ctrl: rkcp_smux::Stream,
    mux: rkcp_smux::Session,
    id: String,
    cfg: Arc<RelayConfig>,
    state: Arc<State>,
) -> Result<(), RelayError> {
    let challenge: [u8; CHALLENGE_LEN] = rand::random();
    write_frame(&mut ctrl, &Frame::Challenge(challenge)).await?;
    match timed(cfg.handshake_timeout, "proof", read_frame(&mut ctrl)).await {
        Ok(Frame::Proof(p)) if verify(&cfg.key, &challenge, &p) => {}
        Ok(Frame::Proof(_)) => {
            return Err(refuse(&mut ctrl, format!("backend {id:?}: wrong key (bad proof)")).await);
        }
        Ok(other) => {
            return Err(refuse(&mut ctrl, format!("expected PROOF, got {other:?}")).await);
        }
        Err(e) => return Err(refuse(&mut ctrl, e.to_string()).await),
    }
    let generation = state.next.fetch_add(1, Ordering::Relaxed);
    let taken = {
        let mut backends = state.lock_backends();
        let taken = backends.get(&id).is_some_and(|r| !r.mux.is_closed());
        if !taken {
            let mux = mux.clone();
            backends.insert(id.clone(), Registered { mux, generation });
        }
        taken
    };
    if taken {
        return Err(refuse(
            &mut ctrl,
            format!("backend id {id:?} is already registered"),
        )
        .await);
    }
    tracing::info!("backend {id:?} registered from {:?}", mux.peer_addr());
    let mut stopping = state.stopping.subscribe();
    let result = async {
        write_frame(&mut ctrl, &Frame::Ok).await?;
        loop {
            let next = tokio::select! {
                _ = stopping.wait_for(|s| *s) => break Err(RelayError::Refused("relay shutting down".into())),
                r = tokio::time::timeout(cfg.idle_timeout, read_frame(&mut ctrl)) => r,
            };
            match next {
                Err(_) => break Err(RelayError::Timeout("backend's ping (idle timeout)")),
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
        tracing::info!("backend {id:?} dropped: {}", Chain(e));
        // Tell the backend why: KCP has no close handshake, so without this it would only notice at its
        // next ping (or smux keepalive timeout).
        let _ = write_frame(
            &mut ctrl,
            &Frame::Error(match e {
                RelayError::Refused(m) => m.clone(),
                e => format!("dropped by the relay: {}", Chain(e)),
            }),
        )
        .await;
    }
    let _ = ctrl.shutdown().await;
    {
        let mut backends = state.lock_backends();
        if backends
            .get(&id)
            .is_some_and(|r| r.generation == generation)
        {
            backends.remove(&id);
        }
    }
    let _ = mux.close().await;
    result
}

fn validate_smux(cfg: &rkcp_smux::Config) -> Result<(), RelayError> {
    cfg.validate()
        .map_err(|e| RelayError::Config(e.to_string()))
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
    pinger: tokio::task::JoinHandle<Result<(), RelayError>>,
}

impl Backend {
    /// Dials the relay, registers `cfg.id` proving `cfg.key`, and starts pinging.
    pub async fn register(
        relay: SocketAddr,
        kcp: KcpConfig,
        cfg: BackendConfig,
    ) -> Result<Backend, RelayError> {
        validate_id(&cfg.id)?;
        validate_smux(&cfg.smux)?;
        let stream = KcpStream::connect(relay, kcp).await?;
        let mux = rkcp_smux::Session::client(stream, cfg.smux.clone())
            .map_err(|e| RelayError::Config(e.to_string()))?;
        let t = cfg.handshake_timeout;
        let mut ctrl = mux.open_stream().await?;
        write_frame(&mut ctrl, &Frame::Hello(cfg.id.clone())).await?;
        let challenge = match timed(t, "relay's challenge", read_frame(&mut ctrl)).await? {
            Frame::Challenge(c) => c,
            Frame::Error(m) => return Err(RelayError::Refused(m)),
            other => {
                return Err(RelayError::Protocol(format!(
                    "expected CHALLENGE, got {other:?}"
                )));
            }
        };
        write_frame(&mut ctrl, &Frame::Proof(prove(&cfg.key, &challenge))).await?;
        match timed(t, "relay's answer to the proof", read_frame(&mut ctrl)).await? {
            Frame::Ok => {}
            Frame::Error(m) => {
                let _ = mux.close().await;
                return Err(RelayError::Refused(m));
            }
            other => return Err(RelayError::Protocol(format!("expected OK, got {other:?}"))),
        }
        let pinger = tokio::spawn(ping_loop(ctrl, mux.clone(), cfg.ping_interval, t));
        Ok(Backend { mux, pinger })
    }

    /// The next client connection spliced through the relay. Fails once the relay dropped this backend or
    /// the session ended.
    pub async fn accept(&self) -> Result<rkcp_smux::Stream, RelayError> {
        Ok(self.mux.accept_stream().await?)
    }

    /// True once the session to the relay is gone (dropped for idleness, relay shut down, link dead).
    pub fn is_closed(&self) -> bool {
        self.mux.is_closed()
    }

    /// Unregisters (closes the session).
    pub async fn close(&self) {
        self.pinger.abort();
        let _ = self.mux.close().await;
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
    let _ = mux.close().await;
    result
}

/// A client session to a relay; every [`open`](Self::open) is one connection to a named backend.
#[derive(Debug, Clone)]
pub struct Client {
    mux: rkcp_smux::Session,
    handshake_timeout: Duration,
}

impl Client {
    /// Dials the relay.
    pub async fn connect(
        relay: SocketAddr,
        kcp: KcpConfig,
        smux_cfg: rkcp_smux::Config,
    ) -> Result<Client, RelayError> {
        validate_smux(&smux_cfg)?;
        let stream = KcpStream::connect(relay, kcp).await?;
        let mux = rkcp_smux::Session::client(stream, smux_cfg)
            .map_err(|e| RelayError::Config(e.to_string()))?;
        Ok(Client {
            mux,
            handshake_timeout: Duration::from_secs(10),
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

    /// Closes the session.
    pub async fn close(&self) {
        let _ = self.mux.close().await;
    }
}

/// KCP settings the relay binaries use: kcp-go's fast2 mode with 256-segment windows, optionally encrypted
/// with AES from a passphrase (all three programs must agree).
pub fn kcp_config(kcp_key: Option<&str>) -> KcpConfig {
    let cfg = KcpConfig {
        snd_wnd: 256,
        rcv_wnd: 256,
        ..KcpConfig::fast2()
    };
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
            Frame::Hello("a-1.b_c".into()),
            Frame::Challenge([7; 32]),
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
        }
    }

    #[tokio::test]
    async fn malformed_frames_are_rejected() {
        let bad: [&[u8]; 8] = [
            &[2, 7, 0, 0],             // version 2
            &[1, 9, 0, 0],             // unknown type
            &[1, 7, 0, 1, 0],          // PING with payload
            &[1, 2, 0, 1, 0],          // short challenge
            &[1, 1, 0, 2, b'a', b' '], // bad id
            &[1, 5, 0x04, 0x01],       // 1025 > MAX_PAYLOAD
            &[1, 6, 0, 0],             // empty id
            &[1, 6, 0, 5, b'a'],       // truncated
        ];
        for b in bad {
            assert!(read_frame(&mut &b[..]).await.is_err(), "{b:?}");
        }
        let long = Frame::Error("é".repeat(MAX_PAYLOAD)).encode();
        assert_eq!(long.len(), 4 + MAX_PAYLOAD);
        assert!(matches!(
            read_frame(&mut &long[..]).await,
            Ok(Frame::Error(_))
        ));
    }

    #[test]
    fn proof_verifies_only_with_the_key() {
        let c = [3u8; CHALLENGE_LEN];
        let p = prove(b"key", &c);
        assert!(verify(b"key", &c, &p));
        assert!(!verify(b"other", &c, &p));
        assert!(!verify(b"key", &[4u8; CHALLENGE_LEN], &p));
    }
}
