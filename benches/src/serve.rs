//! `kcpbench serve`: the control server and its data listeners (see [`crate::proto`]).
//!
//! Every control connection owns the data listeners it asked for and every connection accepted on them; all
//! of it is torn down when the control connection closes, so one client run cannot leak sessions into the
//! next (and the `conns` figure of `stats` counts only this run's connections).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use rkcp_session::KcpListener;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::BenchConfig;
use crate::procstat;
use crate::proto::{self, HEADER_LEN, MAX_LINE, Op, Request};

/// First read buffer of a data stream. Small, so ten thousand idle sessions cost little; it grows to
/// [`MAX_BUF`] as soon as reads fill it (bulk streams).
const MIN_BUF: usize = 256;
/// Largest read buffer of a data stream.
pub const MAX_BUF: usize = 256 * 1024;

/// A bound control server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    /// Sockets per KCP data listener (`KcpListener::bind_sharded`; 1: `KcpListener::bind`).
    shards: usize,
}

impl Server {
    /// Binds the control socket (TCP).
    ///
    /// # Errors
    /// The bind failed.
    pub async fn bind(addr: &str) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the control address {addr}"))?;
        Ok(Server {
            listener,
            shards: 1,
        })
    }

    /// Shards every KCP data listener over `n` `SO_REUSEPORT` sockets (`kcpbench serve --shards N`).
    #[must_use]
    pub fn with_shards(mut self, n: usize) -> Server {
        self.shards = n.max(1);
        self
    }

    /// The control address (what `READY` announces).
    ///
    /// # Errors
    /// The socket has no local address (cannot happen once bound).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves control connections until the task is dropped.
    ///
    /// # Errors
    /// Accepting failed for good.
    pub async fn run(self) -> anyhow::Result<()> {
        loop {
            let (sock, _) = self.listener.accept().await.context("accepting control")?;
            let shards = self.shards;
            tokio::spawn(async move {
                if let Err(e) = control(sock, shards).await {
                    eprintln!("kcpbench serve: control connection: {e:#}");
                }
            });
        }
    }
}

/// One control connection: its requests, then the teardown of everything it started.
async fn control(sock: TcpStream, shards: usize) -> anyhow::Result<()> {
    sock.set_nodelay(true)?;
    let ip = sock.local_addr()?.ip();
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    let cancel = CancellationToken::new();
    let _teardown = cancel.clone().drop_guard();
    let conns = Arc::new(AtomicU64::new(0));
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut rd).take(MAX_LINE as u64).read_line(&mut line).await?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') {
            anyhow::bail!("control line longer than {MAX_LINE} bytes");
        }
        let reply = match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(Request::Listen { config }) => {
                match start_listener(&config, ip, shards, &cancel, &conns).await {
                    Ok(port) => json!({"ok": true, "port": port}),
                    Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
                }
            }
            Ok(Request::Stats) => json!({
                "ok": true,
                "cpu_ns": procstat::cpu_ns(),
                "rss_bytes": procstat::rss_bytes(),
                "conns": conns.load(Ordering::Relaxed),
            }),
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        let mut out = reply.to_string();
        out.push('\n');
        wr.write_all(out.as_bytes()).await?;
    }
}

/// Counts a data connection for `stats` while it lives.
struct ConnGuard(Arc<AtomicU64>);

impl ConnGuard {
    fn new(c: &Arc<AtomicU64>) -> ConnGuard {
        c.fetch_add(1, Ordering::Relaxed);
        ConnGuard(Arc::clone(c))
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts a data listener for `config` on `ip` (ephemeral port); returns the port.
async fn start_listener(
    config: &BenchConfig,
    ip: IpAddr,
    shards: usize,
    cancel: &CancellationToken,
    conns: &Arc<AtomicU64>,
) -> anyhow::Result<u16> {
    config.validate()?;
    let smux_cfg = if config.transport.is_smux() {
        Some(config.smux_config()?)
    } else {
        None
    };
    let cancel = cancel.clone();
    let conns = Arc::clone(conns);
    if config.transport.is_kcp() {
        let l =
            KcpListener::bind_sharded(SocketAddr::new(ip, 0), config.kcp_config()?, shards).await?;
        let port = l.local_addr()?.port();
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    r = l.accept() => match r {
                        Ok((s, _)) => s,
                        Err(_) => return,
                    },
                    _ = cancel.cancelled() => return,
                };
                spawn_conn(s, smux_cfg.clone(), &cancel, &conns);
            }
        });
        Ok(port)
    } else {
        let l = bind_tcp(SocketAddr::new(ip, 0), &config.tcpcc)?;
        let port = l.local_addr()?.port();
        let tcpcc = config.tcpcc.clone();
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    r = l.accept() => match r {
                        Ok((s, _)) => s,
                        Err(_) => return,
                    },
                    _ = cancel.cancelled() => return,
                };
                let _ = s.set_nodelay(true);
                if let Err(e) = accepted_tcp(&s, &tcpcc) {
                    eprintln!("kcpbench serve: {e:#}");
                    continue;
                }
                spawn_conn(s, smux_cfg.clone(), &cancel, &conns);
            }
        });
        Ok(port)
    }
}

/// A TCP data listener on `addr` whose accepted connections run the congestion control `tcpcc`
/// (`TCP_CONGESTION` set on the listening socket, which Linux passes on to the connections it accepts;
/// empty: the kernel's default).
///
/// # Errors
/// The bind failed, or the kernel refused the algorithm.
pub fn bind_tcp(addr: SocketAddr, tcpcc: &str) -> anyhow::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if !tcpcc.is_empty() {
        crate::tcpopt::set_congestion(std::os::fd::AsFd::as_fd(&sock), tcpcc)?;
    }
    sock.set_reuseaddr(true)?;
    sock.bind(addr)
        .with_context(|| format!("binding a TCP data listener on {addr}"))?;
    Ok(sock.listen(1024)?)
}

/// Makes sure an accepted TCP connection runs `tcpcc` (sets it if the listener's did not carry over).
///
/// # Errors
/// The kernel refused the algorithm.
pub fn accepted_tcp(s: &TcpStream, tcpcc: &str) -> anyhow::Result<()> {
    use std::os::fd::AsFd;
    if tcpcc.is_empty() || crate::tcpopt::congestion(s.as_fd()).is_ok_and(|c| c == tcpcc) {
        return Ok(());
    }
    crate::tcpopt::set_congestion(s.as_fd(), tcpcc)
}

/// Serves one data connection: a single stream, or an smux session whose streams are served each.
fn spawn_conn<T>(
    io: T,
    smux_cfg: Option<rkcp_smux::Config>,
    cancel: &CancellationToken,
    conns: &Arc<AtomicU64>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let guard = ConnGuard::new(conns);
    let cancel = cancel.clone();
    tokio::spawn(async move {
        let _guard = guard;
        match smux_cfg {
            None => {
                tokio::select! {
                    _ = serve_stream(io) => {}
                    _ = cancel.cancelled() => {}
                }
            }
            Some(cfg) => {
                let Ok(mux) = rkcp_smux::Session::server(io, cfg) else {
                    return;
                };
                loop {
                    let st = tokio::select! {
                        r = mux.accept_stream() => match r {
                            Ok(st) => st,
                            Err(_) => return,
                        },
                        _ = cancel.cancelled() => return,
                    };
                    let cancel = cancel.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = serve_stream(st) => {}
                            _ = cancel.cancelled() => {}
                        }
                    });
                }
            }
        }
    });
}

/// A read buffer that starts small and grows while reads fill it.
struct GrowBuf(Vec<u8>);

impl GrowBuf {
    fn new() -> GrowBuf {
        GrowBuf(vec![0; MIN_BUF])
    }

    /// Notes that a read returned `n` bytes; grows the buffer if it was full.
    fn filled(&mut self, n: usize) {
        if n == self.0.len() && n < MAX_BUF {
            self.0 = vec![0; (n * 4).min(MAX_BUF)];
        }
    }
}

/// One data stream: header, then sink or echo (the contract's data protocol).
async fn serve_stream<S>(mut s: S) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).await?;
    let (op, len) = proto::parse_header(&h).context("unknown op")?;
    let mut buf = GrowBuf::new();
    match op {
        Op::Sink => {
            let mut left = len;
            while left > 0 {
                let want = buf.0.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = s.read(&mut buf.0[..want]).await?;
                anyhow::ensure!(n > 0, "stream ended {left} bytes early");
                left -= n as u64;
                buf.filled(n);
            }
            s.write_all(&len.to_le_bytes()).await?;
            s.flush().await?;
            // Keep the stream until the client closes it (KCP has no FIN: until the control connection closes).
            while s.read(&mut buf.0).await? > 0 {}
        }
        Op::Echo => {
            loop {
                let n = s.read(&mut buf.0).await?;
                if n == 0 {
                    break;
                }
                s.write_all(&buf.0[..n]).await?;
                buf.filled(n);
            }
            s.shutdown().await?;
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[tokio::test]
    async fn accepted_connections_run_the_algorithm_asked_for() {
        let l = bind_tcp("127.0.0.1:0".parse().unwrap(), "reno").unwrap();
        assert_eq!(crate::tcpopt::congestion(l.as_fd()).unwrap(), "reno");
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (a, _) = l.accept().await.unwrap();
        accepted_tcp(&a, "reno").unwrap();
        assert_eq!(crate::tcpopt::congestion(a.as_fd()).unwrap(), "reno");
        drop(c);
        let e = bind_tcp("127.0.0.1:0".parse().unwrap(), "nosuchcc").unwrap_err();
        assert!(format!("{e:#}").contains("nosuchcc"), "{e:#}");
    }
}
