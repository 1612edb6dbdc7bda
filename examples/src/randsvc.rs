//! The random-number service behind an HTTP gateway: smux's classic connection-sharing scenario.
//!
//! [`serve`] (binary `rand-service`) accepts KCP sessions carrying smux; every smux stream sends the 4 bytes
//! [`REQUEST`] and gets 8 big-endian random bytes back. [`Pool`] + [`router`] (binary `api-gateway`) answer
//! `GET /rand` over HTTP by opening one short stream per request on one of N shared KCP+smux sessions, so
//! thousands of HTTP requests cost no KCP handshakes and no extra UDP sockets.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use rkcp_session::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a client writes on each stream.
pub const REQUEST: &[u8; 4] = b"RAND";

/// How long the service waits for a stream's 4-byte request before dropping the stream (a stalled or
/// misbehaving client must not pin a task forever).
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a gateway request (or a pool connection) failed. Wrapped errors come back from `source()` and are not
/// repeated in the message ([`crate::cli::Chain`] prints both).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RandError {
    /// The KCP session could not be created (bad config, socket error, unresolvable address). Check `--target`.
    #[error("connecting to the rand service")]
    Connect(#[from] rkcp_session::SessionError),
    /// smux refused the config. Check the smux options.
    #[error("smux config")]
    SmuxConfig(#[from] rkcp_smux::ConfigError),
    /// Opening a stream or exchanging bytes on it failed; the session is replaced on the next request.
    #[error("talking to the rand service")]
    Stream(#[from] std::io::Error),
    /// The smux session died; it is replaced on the next request.
    #[error("smux session")]
    Smux(#[from] rkcp_smux::Error),
    /// The service did not answer within the request timeout (it may be down or restarting); the session is
    /// replaced on the next request.
    #[error("the rand service did not answer within {0:?}")]
    Timeout(Duration),
}

/// The KCP settings both programs use: kcptun's `fast` profile, no encryption or FEC (loopback/LAN demo).
pub fn kcp_config() -> KcpConfig {
    KcpConfig::fast()
}

/// Runs the service on `listener` until `shutdown` resolves: each KCP session becomes a smux server, each
/// stream gets one answer. Streams whose first 4 bytes are not [`REQUEST`] are closed without an answer.
pub async fn serve(
    listener: KcpListener,
    smux_config: rkcp_smux::Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RandError> {
    smux_config.validate()?;
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((kcp, peer)) => {
                    tracing::debug!(%peer, "new KCP session");
                    let cfg = smux_config.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_session(kcp, cfg).await {
                            tracing::debug!(%peer, "session ended: {}", crate::cli::Chain(&e));
                        }
                    });
                }
                Err(e) => return Err(RandError::Connect(e)),
            }
        }
    };
    tokio::select! {
        r = accept => r,
        () = shutdown => {
            listener.close();
            Ok(())
        }
    }
}

async fn serve_session(kcp: KcpStream, cfg: rkcp_smux::Config) -> Result<(), RandError> {
    let sess = rkcp_smux::Session::server(kcp, cfg)?;
    loop {
        let mut stream = sess.accept_stream().await?;
        tokio::spawn(async move {
            let mut req = [0u8; 4];
            let read =
                tokio::time::timeout(REQUEST_READ_TIMEOUT, stream.read_exact(&mut req)).await;
            if !matches!(read, Ok(Ok(_))) || &req != REQUEST {
                tracing::debug!("bad or missing request on stream; closing it");
                return;
            }
            let answer = rand::random::<u64>().to_be_bytes();
            if stream.write_all(&answer).await.is_ok() {
                let _ = stream.shutdown().await;
            }
        });
    }
}

/// One slot of the pool: the current session (if any) and a lock so only one task reconnects it.
type Slot = tokio::sync::Mutex<Option<Arc<rkcp_smux::Session>>>;

/// N KCP+smux client sessions to the service, used round-robin. A session that died, or on which a request
/// failed or timed out, is dropped and replaced by a fresh one (new UDP socket, new conversation) the next
/// time its slot is picked.
pub struct Pool {
    target: SocketAddr,
    kcp: KcpConfig,
    smux: rkcp_smux::Config,
    timeout: Duration,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("size", &self.slots.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of `size` (at least 1) sessions to `target`, connected lazily. `timeout` bounds each request
    /// (open, write, read the answer).
    pub fn new(
        target: SocketAddr,
        size: usize,
        kcp: KcpConfig,
        smux: rkcp_smux::Config,
        timeout: Duration,
    ) -> Result<Pool, RandError> {
        kcp.validate().map_err(rkcp_session::SessionError::from)?;
        smux.validate()?;
        Ok(Pool {
            target,
            kcp,
            smux,
            timeout,
            slots: (0..size.max(1)).map(|_| Slot::new(None)).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// Number of sessions in the pool.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    async fn session(&self, slot: &Slot) -> Result<Arc<rkcp_smux::Session>, RandError> {
        let mut cur = slot.lock().await;
        if let Some(s) = cur.as_ref().filter(|s| !s.is_closed()) {
            return Ok(Arc::clone(s));
        }
        let kcp = KcpStream::connect(self.target, self.kcp.clone()).await?;
        let sess = Arc::new(rkcp_smux::Session::client(kcp, self.smux.clone())?);
        tracing::info!(target = %self.target, "pool: new session");
        *cur = Some(Arc::clone(&sess));
        Ok(sess)
    }

    async fn exchange(sess: &rkcp_smux::Session) -> Result<u64, RandError> {
        let mut stream = sess.open_stream().await?;
        stream.write_all(REQUEST).await?;
        let mut answer = [0u8; 8];
        stream.read_exact(&mut answer).await?;
        Ok(u64::from_be_bytes(answer))
    }

    /// Fetches one random number. If the request fails on a session, that session is discarded and the
    /// request is retried once on a fresh one (this is what makes a service restart invisible to HTTP
    /// clients, apart from one timeout's delay).
    pub async fn fetch(&self) -> Result<u64, RandError> {
        let idx = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[idx];
        let mut last = None;
        for _ in 0..2 {
            let sess = self.session(slot).await?;
            match tokio::time::timeout(self.timeout, Self::exchange(&sess)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(RandError::Timeout(self.timeout)),
            }
            let mut cur = slot.lock().await;
            if cur.as_ref().is_some_and(|s| Arc::ptr_eq(s, &sess)) {
                tracing::warn!(target = %self.target, "pool: dropping session after error");
                *cur = None;
                // Closing flushes towards a peer that may be gone: do it off the request path.
                tokio::spawn(async move { sess.close().await });
            }
        }
        Err(last.unwrap_or(RandError::Timeout(self.timeout)))
    }
}

/// The gateway's HTTP routes: `GET /rand` answers `200` with 16 lowercase hex digits (the service's 8 bytes,
/// big-endian), or `502` with the error text when the service cannot be reached.
pub fn router(pool: Arc<Pool>) -> axum::Router {
    axum::Router::new()
        .route("/rand", axum::routing::get(get_rand))
        .with_state(pool)
}

async fn get_rand(
    axum::extract::State(pool): axum::extract::State<Arc<Pool>>,
) -> axum::response::Response {
    match pool.fetch().await {
        Ok(v) => format!("{v:016x}").into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("{}\n", crate::cli::Chain(&e)),
        )
            .into_response(),
    }
}
