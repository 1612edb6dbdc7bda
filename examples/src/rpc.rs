//! Two-way RPC behind NAT (the bidirectional-muxer pattern).
//!
//! The side behind NAT dials out once ([`Peer::connect`]); the public side accepts it ([`Peer::accept`]).
//! From then on either side can [`call`](Peer::call) the other (request, response, timeout) or
//! [`send`](Peer::send) to it (one-way), because smux lets both ends open streams over the one KCP session.
//! Each call uses its own smux stream, so a slow handler never blocks another call.
//!
//! Framing on a stream (all lengths big-endian):
//! - request: kind (1 byte: 0 call, 1 send, 2 hello), route length (1 byte, 1..=255), route (UTF-8),
//!   payload length (4 bytes, at most [`MAX_PAYLOAD`]), payload;
//! - response to a call: status (1 byte: 0 ok, 1 unknown route), payload length (4 bytes), payload.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rkcp_session::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request or response payload either side accepts; a peer cannot make us allocate more.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// How long an incoming stream may take to deliver its request before we drop it.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);

const KIND_CALL: u8 = 0;
const KIND_SEND: u8 = 1;
const KIND_HELLO: u8 = 2;
const STATUS_OK: u8 = 0;
const STATUS_UNKNOWN_ROUTE: u8 = 1;

/// Why an RPC failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The peer has no handler for this route. Check the route name and what the peer registered.
    #[error("the peer has no route {0:?}")]
    UnknownRoute(String),
    /// No response within the caller's timeout (the handler is slow or the link is down). The call's stream
    /// is dropped; the handler may still run to completion on the peer.
    #[error("route {route:?} did not answer within {after:?}")]
    Timeout {
        /// The route called.
        route: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// A route name must be 1..=255 bytes. Use a shorter, non-empty name.
    #[error("route name must be 1..=255 bytes, got {0}")]
    BadRoute(usize),
    /// A payload exceeds [`MAX_PAYLOAD`] (ours or the peer's). Split it.
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    /// The peer answered something that is not a valid response (different software or a bug on its side).
    #[error("malformed response: {0}")]
    Protocol(&'static str),
    /// The smux session is dead (the peer went away or the link failed). Reconnect.
    #[error("smux: {0}")]
    Smux(#[from] rkcp_smux::Error),
    /// Reading or writing the call's stream failed (usually the session died). Reconnect.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The KCP session could not be created or accepted (bad address, config, socket error).
    #[error("KCP: {0}")]
    Kcp(#[from] rkcp_session::SessionError),
    /// smux refused the config.
    #[error("smux config: {0}")]
    SmuxConfig(#[from] rkcp_smux::ConfigError),
}

type BoxFuture = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;
type Handler = Arc<dyn Fn(Vec<u8>) -> BoxFuture + Send + Sync>;

/// Handlers by route name, registered before the peer starts. A call handler's return value is the response;
/// for a one-way `send` it is discarded.
#[derive(Default, Clone)]
pub struct Routes {
    map: HashMap<String, Handler>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Routes {
    /// No routes: every incoming call is answered with [`RpcError::UnknownRoute`].
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Registers `handler` for `route` (replacing an earlier one).
    pub fn route<F, Fut>(mut self, route: &str, handler: F) -> Routes
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<u8>> + Send + 'static,
    {
        let h: Handler = Arc::new(move |req| Box::pin(handler(req)));
        self.map.insert(route.to_string(), h);
        self
    }
}

/// One end of the RPC link. Cheap to clone. The link stays up (serving the peer's calls) until either side
/// calls [`close`](Peer::close) or the session dies (smux keepalive timeout, KCP dead link).
#[derive(Clone, Debug)]
pub struct Peer {
    session: Arc<rkcp_smux::Session>,
}

impl Peer {
    /// The NAT'd side: dials `addr` over KCP once, runs smux as client, and serves `routes`.
    pub async fn connect(
        addr: std::net::SocketAddr,
        kcp: KcpConfig,
        smux_config: rkcp_smux::Config,
        routes: Routes,
    ) -> Result<Peer, RpcError> {
        let stream = KcpStream::connect(addr, kcp).await?;
        let peer = Peer::start(rkcp_smux::Session::client(stream, smux_config)?, routes);
        // KCP has no handshake: announce ourselves so the public side's accept returns now, not at the first
        // keepalive.
        let mut hello = peer.session.open_stream().await?;
        hello.write_all(&[KIND_HELLO]).await?;
        hello.shutdown().await?;
        Ok(peer)
    }

    /// The public side: accepts the next KCP session on `listener`, runs smux as server, and serves `routes`.
    pub async fn accept(
        listener: &KcpListener,
        smux_config: rkcp_smux::Config,
        routes: Routes,
    ) -> Result<Peer, RpcError> {
        let (stream, peer) = listener.accept().await?;
        tracing::info!(%peer, "rpc: peer connected");
        Ok(Peer::start(
            rkcp_smux::Session::server(stream, smux_config)?,
            routes,
        ))
    }

    fn start(session: rkcp_smux::Session, routes: Routes) -> Peer {
        let session = Arc::new(session);
        let routes = Arc::new(routes);
        let sess = Arc::clone(&session);
        tokio::spawn(async move {
            loop {
                match sess.accept_stream().await {
                    Ok(stream) => {
                        let routes = Arc::clone(&routes);
                        tokio::spawn(async move {
                            if let Err(e) = serve_stream(stream, &routes).await {
                                tracing::debug!("rpc: incoming stream: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::info!("rpc: session ended: {e}");
                        return;
                    }
                }
            }
        });
        Peer { session }
    }

    /// Calls `route` on the peer with `request` and waits at most `timeout` for the response.
    pub async fn call(
        &self,
        route: &str,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        check(route, request)?;
        let exchange = async {
            let mut stream = self.session.open_stream().await?;
            write_request(&mut stream, KIND_CALL, route, request).await?;
            let mut head = [0u8; 5];
            stream.read_exact(&mut head).await?;
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > MAX_PAYLOAD {
                return Err(RpcError::TooLarge(len));
            }
            let body = read_payload(&mut stream, len).await?;
            match head[0] {
                STATUS_OK => Ok(body),
                STATUS_UNKNOWN_ROUTE => Err(RpcError::UnknownRoute(route.to_string())),
                _ => Err(RpcError::Protocol("unknown status byte")),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(RpcError::Timeout {
                    route: route.to_string(),
                    after: timeout,
                })
            })
    }

    /// Sends `message` to `route` on the peer without waiting for (or getting) an answer. Returns once the
    /// message is queued on its own stream; an unknown route is only logged by the peer.
    pub async fn send(&self, route: &str, message: &[u8]) -> Result<(), RpcError> {
        check(route, message)?;
        let mut stream = self.session.open_stream().await?;
        write_request(&mut stream, KIND_SEND, route, message).await?;
        stream.shutdown().await?;
        Ok(())
    }

    /// Whether the underlying session is dead (then every call fails; reconnect).
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Closes the link for both sides.
    pub async fn close(&self) -> Result<(), RpcError> {
        Ok(self.session.close().await?)
    }
}

fn check(route: &str, payload: &[u8]) -> Result<(), RpcError> {
    if route.is_empty() || route.len() > 255 {
        return Err(RpcError::BadRoute(route.len()));
    }
    if payload.len() > MAX_PAYLOAD {
        return Err(RpcError::TooLarge(payload.len()));
    }
    Ok(())
}

async fn write_request<S: AsyncWrite + Unpin>(
    s: &mut S,
    kind: u8,
    route: &str,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(6 + route.len() + payload.len());
    buf.push(kind);
    buf.push(route.len() as u8);
    buf.extend_from_slice(route.as_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    s.write_all(&buf).await
}

async fn read_payload<S: AsyncRead + Unpin>(s: &mut S, len: usize) -> std::io::Result<Vec<u8>> {
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads one request (bounded by [`MAX_PAYLOAD`]) and runs its handler; answers calls.
async fn serve_stream(mut stream: rkcp_smux::Stream, routes: &Routes) -> Result<(), RpcError> {
    let request = async {
        let mut kind = [0u8; 1];
        stream.read_exact(&mut kind).await?;
        if kind[0] == KIND_HELLO {
            return Ok(None);
        }
        if kind[0] != KIND_CALL && kind[0] != KIND_SEND {
            return Err(RpcError::Protocol("unknown request kind"));
        }
        let mut rlen = [0u8; 1];
        stream.read_exact(&mut rlen).await?;
        let route = read_payload(&mut stream, usize::from(rlen[0])).await?;
        let route =
            String::from_utf8(route).map_err(|_| RpcError::Protocol("route is not UTF-8"))?;
        let mut plen = [0u8; 4];
        stream.read_exact(&mut plen).await?;
        let len = u32::from_be_bytes(plen) as usize;
        if len > MAX_PAYLOAD {
            return Err(RpcError::TooLarge(len));
        }
        let payload = read_payload(&mut stream, len).await?;
        Ok(Some((kind[0], route, payload)))
    };
    let Some((kind, route, payload)) =
        tokio::time::timeout(REQUEST_READ_TIMEOUT, request)
            .await
            .map_err(|_| RpcError::Protocol("request not received in time"))??
    else {
        return Ok(());
    };
    let handler = routes.map.get(&route).cloned();
    if kind == KIND_SEND {
        match handler {
            Some(h) => {
                h(payload).await;
            }
            None => tracing::warn!("rpc: one-way message for unknown route {route:?} dropped"),
        }
        return Ok(());
    }
    let (status, body) = match handler {
        Some(h) => (STATUS_OK, h(payload).await),
        None => (STATUS_UNKNOWN_ROUTE, Vec::new()),
    };
    if body.len() > MAX_PAYLOAD {
        return Err(RpcError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(status);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    stream.write_all(&out).await?;
    stream.shutdown().await?;
    Ok(())
}
