//! A kcptun-compatible tunnel (`docs/wire-format.md#kcptun`): [`Client`] and [`Server`], the programs
//! `tunnel-client` and `tunnel-server`.
//!
//! The stack per KCP session is kcptun's: KCP (stream mode, cipher, FEC) → optional snappy framing
//! ([`CompStream`], `docs/wire-format.md#kcptun-snappy`) → smux. Each TCP connection the client accepts becomes one smux stream; the server
//! connects each stream to its target. Flags, defaults and the JSON file are kcptun 20210922's ([`ClientConfig`],
//! [`ServerConfig`]), so either end can be replaced by the Go binary.

mod client;
mod comp;
mod config;
mod gotime;
pub mod metrics;
mod server;

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use crate::cli::init_logging;
pub use client::Client;
pub use comp::CompStream;
pub use config::{
    ClientConfig, DEFAULT_KEY, HasConfigFile, MODES, Params, ServerConfig, Target, merge_json,
    mode_tuple, parse_args,
};
pub use server::Server;

/// kcptun's copy buffer for TCP → stream: every PSH frame carries at most this many bytes
/// (`docs/wire-format.md#kcptun-tunnel`).
pub const COPY_BUF: usize = 4096;
/// Read size for stream → TCP (Go's `WriteTo` hands over whole buffered chunks).
const DOWN_BUF: usize = 64 * 1024;

/// A local connection [`pipe`] can end abruptly: a TCP connection is reset (RST), so that the application sees
/// `ECONNRESET` instead of a clean end-of-file when the tunnel failed.
pub trait LocalConn: AsyncRead + AsyncWrite + Unpin {
    /// Ends the connection abruptly (the default just drops it).
    fn reset(self)
    where
        Self: Sized,
    {
    }
}

impl LocalConn for tokio::net::TcpStream {
    fn reset(self) {
        // SO_LINGER 0: close() sends RST and discards unsent data.
        let _ = socket2::SockRef::from(&self).set_linger(Some(Duration::ZERO));
    }
}

impl LocalConn for tokio::net::UnixStream {}

/// How a [`pipe`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeEnd {
    /// Bytes copied local → stream.
    pub up: u64,
    /// Bytes copied stream → local.
    pub down: u64,
    /// A direction failed (the session died, a write failed, the local side was reset); the local connection
    /// was reset rather than closed cleanly.
    pub failed: bool,
}

/// Runs kcptun's two copy loops between a local connection and a smux stream; when **either** direction ends
/// (EOF or error), both are closed (`docs/wire-format.md#kcptun-tunnel`: no half-close is carried through). Data read before the end
/// is delivered first: the stream's FIN follows the bytes already written.
///
/// A clean end (EOF from either side) closes the local connection cleanly (FIN); a failure (the smux session
/// died, or any read or write error) **resets** it ([`LocalConn::reset`]), so that an application can tell a
/// truncated transfer from a complete one. (The smux stream itself has no reset: kcptun's protocol only
/// carries FIN, so a target that fails on the far side still looks like a clean end here.)
pub async fn pipe<C: LocalConn>(conn: C, stream: rkcp_smux::Stream) -> PipeEnd {
    let (mut cr, mut cw) = tokio::io::split(conn);
    let (mut sr, mut sw) = stream.into_split();
    let mut up_n = 0u64;
    let mut down_n = 0u64;
    let res = {
        let up = async {
            let mut buf = vec![0u8; COPY_BUF];
            let res: io::Result<()> = async {
                loop {
                    let n = cr.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    sw.write_all(&buf[..n]).await?;
                    up_n += n as u64;
                }
            }
            .await;
            let _ = sw.shutdown().await;
            res
        };
        let down = async {
            let mut buf = vec![0u8; DOWN_BUF];
            loop {
                let n = sr.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                cw.write_all(&buf[..n]).await?;
                down_n += n as u64;
            }
        };
        tokio::select! {
            r = up => r,
            r = down => r,
        }
    };
    let mut conn = cr.unsplit(cw);
    let failed = match res {
        Ok(()) => {
            let _ = conn.shutdown().await;
            false
        }
        Err(e) => {
            if e.kind() == io::ErrorKind::InvalidData {
                tracing::warn!(error = %e, "smux protocol error");
            }
            conn.reset();
            true
        }
    };
    PipeEnd {
        up: up_n,
        down: down_n,
        failed,
    }
}

/// kcptun's `--snmplog`: every `period` seconds, append one CSV row of the process-wide KCP counters to the
/// file named by `path`, whose file-name part is a Go time layout (`./snmp-20060102.log`); the header goes
/// into an empty file. Stops (after logging why) if the file cannot be opened, as kcptun does. Does nothing
/// when `path` is empty or `period` is 0.
pub async fn snmp_logger(path: String, period: i64) {
    if path.is_empty() || period <= 0 {
        return;
    }
    let period = Duration::from_secs(period as u64);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        if let Err(e) = write_snmp_row(&path) {
            tracing::error!(error = %e, path, "snmplog");
            return;
        }
    }
}

/// Appends one row (and the header into an empty file) to the file `path` names now.
///
/// # Errors
/// The file cannot be opened or written.
pub fn write_snmp_row(path: &str) -> io::Result<()> {
    use std::io::Write;
    let (dir, file) = match path.rfind('/') {
        Some(i) => path.split_at(i + 1),
        None => ("", path),
    };
    let now = gotime::LocalTime::now();
    let name = format!("{dir}{}", gotime::format(file, &now));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&name)?;
    let mut out = String::new();
    if f.metadata()?.len() == 0 {
        out.push_str(&rkcp_session::SnmpSnapshot::csv_header());
        out.push('\n');
    }
    out.push_str(&rkcp_session::global_snmp().csv_row(now.unix));
    out.push('\n');
    f.write_all(out.as_bytes())
}

/// Resolves when the process gets Ctrl-C (SIGINT) or SIGTERM. SIGUSR1 logs the process-wide KCP counters (one
/// `KCP SNMP: …` line at info level), as kcptun does; every program here documents it in `--help`
/// ([`crate::cli::SIGNALS_HELP`]).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let usr1 = signal(SignalKind::user_defined1());
    let (mut term, mut usr1) = match (term, usr1) {
        (Ok(t), Ok(u)) => (t, u),
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = usr1.recv() => tracing::info!("KCP SNMP: {}", rkcp_session::global_snmp()),
        }
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #[test]
    fn snmplog_writes_header_once_then_rows() {
        let dir = std::env::temp_dir().join(format!("rkcp-snmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = format!("{}/snmp-20060102.log", dir.display());
        super::write_snmp_row(&path).unwrap();
        super::write_snmp_row(&path).unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        let name = files[0]
            .as_ref()
            .unwrap()
            .file_name()
            .into_string()
            .unwrap();
        assert!(
            name.starts_with("snmp-20") && name.len() == "snmp-20060102.log".len(),
            "{name}"
        );
        let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("Unix,BytesSent,"));
        assert!(lines[1..].iter().all(|l| l.split(',').count() == 25));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
