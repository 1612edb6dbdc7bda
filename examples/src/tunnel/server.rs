//! The tunnel server (kcptun `server/main.go`; `docs/wire-format.md#kcptun-session`, `#kcptun-tunnel`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rkcp_session::{KcpListener, KcpStream};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;

use super::{CompStream, Params, ServerConfig, Target, metrics, pipe, snmp_logger};

/// A bound tunnel server: the KCP listener plus the session parameters. [`Server::run`] serves it.
#[derive(Debug)]
pub struct Server {
    listener: KcpListener,
    metrics: Option<tokio::net::TcpListener>,
    cfg: ServerConfig,
    params: Arc<Params>,
    target: Arc<Target>,
}

impl Server {
    /// Checks the configuration, derives the key and listens on `--listen` (UDP; Go's `:port` is every
    /// interface, IPv4 and IPv6) and, with `--metrics`, on the metrics address (TCP).
    ///
    /// # Errors
    /// An invalid configuration (see [`ServerConfig::params`]) or a bind error.
    pub async fn bind(cfg: ServerConfig) -> anyhow::Result<Server> {
        let params = cfg.params()?;
        let sock = crate::cli::bind_udp(&cfg.listen)?;
        let listener = KcpListener::from_std(sock, params.kcp.clone())
            .with_context(|| format!("listening on {} (UDP)", cfg.listen))?;
        let metrics = if cfg.metrics.is_empty() {
            None
        } else {
            Some(metrics::bind(&cfg.metrics).await?)
        };
        let target = Target::parse(&cfg.target);
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
        if let Some(m) = &metrics {
            tracing::info!("metrics: {}", metrics::url(m.local_addr()?));
        }
        tracing::info!("target: {}", cfg.target);
        tracing::info!("encryption: {}", params.crypt_name);
        tracing::info!(
            "nodelay parameters: {} {} {} {}",
            u8::from(k.nodelay),
            k.interval,
            k.resend,
            u8::from(k.nc)
        );
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
        tracing::info!("snmplog: {}", cfg.snmplog);
        tracing::info!("snmpperiod: {}", cfg.snmpperiod);
        tracing::info!("quiet: {}", cfg.quiet);
        if cfg.pprof {
            tracing::warn!("--pprof is a Go profiler endpoint; ignored");
        }
        Ok(Server {
            listener,
            metrics,
            cfg,
            params: Arc::new(params),
            target: Arc::new(target),
        })
    }

    /// The UDP address the server listens on.
    ///
    /// # Errors
    /// As [`rkcp_session::KcpListener::local_addr`].
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The TCP address of the `--metrics` endpoint, if one was asked for.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then closes the listener and every session and returns.
    ///
    /// # Errors
    /// The listener fails (its socket died).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server {
            listener,
            metrics,
            cfg,
            params,
            target,
        } = self;
        let snmp = tokio::spawn(snmp_logger(cfg.snmplog.clone(), cfg.snmpperiod));
        let metrics = metrics.map(|m| tokio::spawn(metrics::serve(m)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut muxes = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        let res = loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((kcp, peer)) => {
                        if !cfg.quiet {
                            tracing::info!("remote address: {peer}");
                        }
                        muxes.spawn(handle_mux(kcp, params.clone(), target.clone(), cfg.quiet, stop_rx.clone()));
                    }
                    Err(e) => break Err(anyhow::Error::new(e).context("accepting KCP sessions")),
                },
                Some(_) = muxes.join_next(), if !muxes.is_empty() => {}
                () = &mut shutdown => break Ok(()),
            }
        };
        listener.close();
        snmp.abort();
        if let Some(m) = metrics {
            m.abort();
        }
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while muxes.join_next().await.is_some() {}
        })
        .await;
        res
    }
}

/// kcptun `handleMux`: a smux server over one KCP session (or its [`CompStream`]); each stream dials the target.
async fn handle_mux(
    kcp: KcpStream,
    params: Arc<Params>,
    target: Arc<Target>,
    quiet: bool,
    mut stop: watch::Receiver<bool>,
) {
    let local = kcp.local_addr().ok();
    let Ok(peer) = kcp.peer_addr() else {
        return;
    };
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
    let mux = if params.comp {
        rkcp_smux::Session::server(CompStream::new(kcp), params.smux.clone())
    } else {
        rkcp_smux::Session::server(kcp, params.smux.clone())
    };
    let mux = match mux {
        Ok(m) => m.with_addrs(local, Some(peer)),
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    loop {
        let stream = tokio::select! {
            r = mux.accept_stream() => match r {
                Ok(s) => s,
                Err(e) => {
                    if !quiet {
                        tracing::info!("session {peer} ended: {e}");
                    }
                    break;
                }
            },
            _ = stop.changed() => break,
        };
        tokio::spawn(handle_stream(stream, target.clone(), peer, quiet));
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), mux.close()).await;
}

/// One accepted stream: dial the target; on failure close the stream (FIN), else pipe both ways.
async fn handle_stream(
    stream: rkcp_smux::Stream,
    target: Arc<Target>,
    peer: SocketAddr,
    quiet: bool,
) {
    let id = stream.id();
    match &*target {
        Target::Tcp(addr) => {
            let dial = if addr.starts_with(':') {
                format!("127.0.0.1{addr}")
            } else {
                addr.clone()
            };
            match TcpStream::connect(&dial).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let out = tcp
                        .peer_addr()
                        .map_or_else(|_| dial.clone(), |a| a.to_string());
                    if !quiet {
                        tracing::info!("stream opened in: {peer}({id}) out: {out}");
                    }
                    pipe(tcp, stream).await;
                    if !quiet {
                        tracing::info!("stream closed in: {peer}({id}) out: {out}");
                    }
                }
                Err(e) => tracing::warn!("dial tcp {dial}: {e}"),
            }
        }
        Target::Unix(path) => match UnixStream::connect(path).await {
            Ok(u) => {
                if !quiet {
                    tracing::info!("stream opened in: {peer}({id}) out: {}", path.display());
                }
                pipe(u, stream).await;
                if !quiet {
                    tracing::info!("stream closed in: {peer}({id}) out: {}", path.display());
                }
            }
            Err(e) => tracing::warn!("dial unix {}: {e}", path.display()),
        },
    }
}
