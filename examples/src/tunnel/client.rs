//! The tunnel client (kcptun `client/main.go`; `docs/wire-format.md#kcptun-session`, `#kcptun-tunnel`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rkcp_session::KcpStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ClientConfig, CompStream, Params, pipe, snmp_logger};

/// Sessions handed to the scavenger at most (kcptun's channel capacity).
const SCAVENGER_QUEUE: usize = 128;

/// A bound tunnel client: a TCP listener plus the session parameters. [`Client::run`] serves it.
#[derive(Debug)]
pub struct Client {
    listener: TcpListener,
    cfg: ClientConfig,
    params: Arc<Params>,
}

/// One of the `--conn` slots: a smux session and when it expires.
#[derive(Debug, Clone)]
struct Timed {
    session: rkcp_smux::Session,
    expiry: Instant,
}

impl Client {
    /// Checks the configuration, derives the key and listens on `--localaddr` (TCP; Go's `:port` is every
    /// interface, IPv4 and IPv6).
    ///
    /// # Errors
    /// An invalid configuration (see [`ClientConfig::params`]), `--conn` below 1, or the listen error.
    pub async fn bind(cfg: ClientConfig) -> anyhow::Result<Client> {
        let params = cfg.params()?;
        if cfg.conn < 1 {
            anyhow::bail!("--conn must be at least 1, got {}", cfg.conn);
        }
        // An address that does not resolve now fails here, once, with the reason (sessions are dialled at the
        // first connection, and a failure then is retried with backoff).
        crate::cli::resolve("--remoteaddr", &cfg.remoteaddr).await?;
        let listener = crate::cli::bind_tcp(&cfg.localaddr)?;
        let k = &params.kcp.kcp;
        for w in &params.warnings {
            tracing::warn!("{w}");
        }
        tracing::info!("version: {}", env!("CARGO_PKG_VERSION"));
        tracing::info!("smux version: {}", cfg.smuxver);
        tracing::info!(
            "listening on: {}",
            crate::cli::describe_bound(listener.local_addr()?)
        );
        tracing::info!("encryption: {}", params.crypt_name);
        tracing::info!(
            "nodelay parameters: {} {} {} {}",
            u8::from(k.nodelay),
            k.interval,
            k.resend,
            u8::from(k.nc)
        );
        tracing::info!("remote address: {}", cfg.remoteaddr);
        tracing::info!("sndwnd: {} rcvwnd: {}", k.snd_wnd, k.rcv_wnd);
        tracing::info!("compression: {}", params.comp);
        tracing::info!("mtu: {}", k.mtu);
        tracing::info!(
            "datashard: {} parityshard: {}",
            cfg.datashard,
            cfg.parityshard
        );
        tracing::info!("acknodelay: {}", k.ack_nodelay);
        tracing::info!("dscp: {}", cfg.dscp);
        tracing::info!("sockbuf: {}", cfg.sockbuf);
        tracing::info!("smuxbuf: {}", cfg.smuxbuf);
        tracing::info!("streambuf: {}", cfg.streambuf);
        tracing::info!("keepalive: {}", cfg.keepalive);
        tracing::info!("conn: {}", cfg.conn);
        tracing::info!("autoexpire: {}", cfg.autoexpire);
        tracing::info!("scavengettl: {}", cfg.scavengettl);
        tracing::info!("snmplog: {}", cfg.snmplog);
        tracing::info!("snmpperiod: {}", cfg.snmpperiod);
        tracing::info!("quiet: {}", cfg.quiet);
        Ok(Client {
            listener,
            cfg,
            params: Arc::new(params),
        })
    }

    /// The TCP address the client accepts connections on.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then closes every session (flushing what was written) and returns.
    ///
    /// # Errors
    /// The TCP listener fails (kcptun exits then too).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Client {
            listener,
            cfg,
            params,
        } = self;
        let snmp = tokio::spawn(snmp_logger(cfg.snmplog.clone(), cfg.snmpperiod));
        let (scav_tx, scav_rx) = mpsc::channel::<Timed>(SCAVENGER_QUEUE);
        let scav = (cfg.autoexpire > 0)
            .then(|| tokio::spawn(scavenger(scav_rx, cfg.scavengettl, cfg.quiet)));
        let n = cfg.conn as usize;
        let mut muxes: Vec<Option<Timed>> = vec![None; n];
        let mut rr: usize = 0;
        let autoexpire = Duration::from_secs(cfg.autoexpire.max(0) as u64);
        tokio::pin!(shutdown);
        let res = loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => break Err(anyhow::Error::new(e).context("accepting TCP connections")),
                },
                () = &mut shutdown => break Ok(()),
            };
            let idx = rr % n;
            let slot = &mut muxes[idx];
            let stale = match slot {
                None => true,
                Some(t) => {
                    t.session.is_closed() || (cfg.autoexpire > 0 && Instant::now() > t.expiry)
                }
            };
            if stale {
                let session = tokio::select! {
                    s = wait_conn(&cfg.remoteaddr, &params, cfg.quiet) => s,
                    () = &mut shutdown => break Ok(()),
                };
                let t = Timed {
                    session,
                    expiry: Instant::now() + autoexpire,
                };
                if cfg.autoexpire > 0 {
                    let _ = scav_tx.send(t.clone()).await;
                }
                *slot = Some(t);
            }
            if let Some(t) = slot {
                tokio::spawn(handle_client(t.session.clone(), tcp, peer, cfg.quiet));
            }
            rr = rr.wrapping_add(1);
        };
        snmp.abort();
        if let Some(s) = scav {
            s.abort();
        }
        // Close every session: committed frames are flushed, then the KCP sessions close.
        let closes = muxes.into_iter().flatten().map(|t| async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), t.session.close()).await;
        });
        futures_join(closes).await;
        res
    }
}

async fn futures_join<F: Future<Output = ()>>(it: impl Iterator<Item = F>) {
    for f in it {
        f.await;
    }
}

/// kcptun `createConn`: resolve (IPv4 first, as Go does), dial, configure (`docs/wire-format.md#kcptun-session`)
/// and start a smux client over the session or its [`CompStream`].
///
/// Also starts [`watch_answers`] on the session.
///
/// # Errors
/// The address does not resolve or the socket cannot be created.
pub(crate) async fn create_conn(
    remote: &str,
    params: &Params,
    quiet: bool,
) -> anyhow::Result<rkcp_smux::Session> {
    let addr = crate::cli::resolve("--remoteaddr", remote).await?;
    let kcp = KcpStream::connect(addr, params.kcp.clone())
        .await
        .with_context(|| format!("dialing {remote} ({addr})"))?;
    let local = kcp.local_addr().ok();
    let peer = kcp.peer_addr()?;
    let (kcp, handle) = crate::kcpwatch::watch(kcp);
    if !quiet {
        tracing::info!(
            "smux version: {} on connection: {} -> {}",
            if params.smux.version == rkcp_smux::Version::V2 {
                2
            } else {
                1
            },
            local.map_or_else(|| "?".to_string(), |a| a.to_string()),
            peer
        );
    }
    let session = if params.comp {
        rkcp_smux::Session::client(CompStream::new(kcp), params.smux.clone())?
    } else {
        rkcp_smux::Session::client(kcp, params.smux.clone())?
    };
    let session = session.with_addrs(local, Some(peer));
    tokio::spawn(watch_answers(
        handle,
        session.clone(),
        format!("{remote} ({peer})"),
    ));
    Ok(session)
}

/// Warn when the server has not answered for this long although we sent.
const SILENCE_WARN: Duration = Duration::from_secs(5);
/// At most one such warning per session per this long.
const SILENCE_REPEAT: Duration = Duration::from_secs(30);

/// Warns (at most every [`SILENCE_REPEAT`]) when a session has sent datagrams but received no authentic one for
/// [`SILENCE_WARN`]: the server's datagrams fail authentication ("wrong key or cipher?"), or nothing comes back
/// at all (server down, unreachable, or a different key or cipher, whose packets the server drops silently).
/// kcptun says nothing in either case; the connections just hang.
async fn watch_answers(
    kcp: crate::kcpwatch::KcpHandle,
    session: rkcp_smux::Session,
    remote: String,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let first = kcp.snmp();
    let (mut last_in, mut out_at_last_in) = (first.in_pkts, first.out_pkts);
    let mut unanswered_since: Option<Instant> = None;
    let mut last_warn: Option<Instant> = None;
    loop {
        tick.tick().await;
        if session.is_closed() {
            return;
        }
        let s = kcp.snmp();
        let now = Instant::now();
        if s.in_pkts > last_in {
            (last_in, out_at_last_in) = (s.in_pkts, s.out_pkts);
            unanswered_since = None;
            continue;
        }
        if s.out_pkts == out_at_last_in {
            continue;
        }
        let since = *unanswered_since.get_or_insert(now);
        if now.duration_since(since) < SILENCE_WARN
            || last_warn.is_some_and(|t| now.duration_since(t) < SILENCE_REPEAT)
        {
            continue;
        }
        last_warn = Some(now);
        let secs = now.duration_since(since).as_secs();
        let bad = s.in_csum_errors - first.in_csum_errors;
        if bad > 0 {
            tracing::warn!(
                "datagrams from {remote} fail authentication (wrong key or cipher?): {bad} rejected, none \
                 accepted for {secs} s"
            );
        } else {
            tracing::warn!(
                "no answer from {remote} for {secs} s: is the server running and reachable, with the same \
                 --key and --crypt? (a server drops the packets it cannot authenticate)"
            );
        }
    }
}

/// kcptun `waitConn`: retries until a session exists, waiting 1 s after the first failure and twice as long
/// after each further one (at most 30 s), with one warning per attempt.
async fn wait_conn(remote: &str, params: &Params, quiet: bool) -> rkcp_smux::Session {
    let mut delay = Duration::from_secs(1);
    loop {
        match create_conn(remote, params, quiet).await {
            Ok(s) => return s,
            Err(e) => {
                tracing::warn!(
                    "cannot connect ({}); retrying in {} s",
                    crate::cli::report(&e),
                    delay.as_secs()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One accepted TCP connection: open a stream and pipe both ways.
async fn handle_client(session: rkcp_smux::Session, tcp: TcpStream, peer: SocketAddr, quiet: bool) {
    let _ = tcp.set_nodelay(true);
    let stream = match session.open_stream().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{e}");
            return;
        }
    };
    let id = stream.id();
    let out = session
        .peer_addr()
        .map_or_else(|| "?".to_string(), |a| a.to_string());
    if !quiet {
        tracing::info!("stream opened in: {peer} out: {out}({id})");
    }
    pipe(tcp, stream).await;
    if !quiet {
        tracing::info!("stream closed in: {peer} out: {out}({id})");
    }
}

/// kcptun's scavenger: closes expired sessions `ttl` seconds after their expiry, checking every second.
async fn scavenger(mut rx: mpsc::Receiver<Timed>, ttl: i64, quiet: bool) {
    let ttl = Duration::from_secs(ttl.max(0) as u64);
    let mut list: Vec<Timed> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some(mut t) => {
                    t.expiry += ttl;
                    list.push(t);
                }
                None => return,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let mut keep = Vec::with_capacity(list.len());
                for t in list.drain(..) {
                    if t.session.is_closed() {
                        if !quiet {
                            tracing::info!("scavenger: session normally closed: {:?}", t.session.local_addr());
                        }
                    } else if now > t.expiry {
                        let s = t.session.clone();
                        tokio::spawn(async move { let _ = s.close().await; });
                        if !quiet {
                            tracing::info!("scavenger: session closed due to ttl: {:?}", t.session.local_addr());
                        }
                    } else {
                        keep.push(t);
                    }
                }
                list = keep;
            }
        }
    }
}
