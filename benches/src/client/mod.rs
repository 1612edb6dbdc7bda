//! The measuring side: `kcpbench throughput | latency | sessions`.
//!
//! Each row opens its own control connection to the server (so the server tears down the row's listener
//! and connections when the row ends), asks for a data listener with the row's [`BenchConfig`], measures,
//! and appends a [`Row`] to the [`Report`]. A row that errors or exceeds [`ClientOpts::timeout`] becomes
//! [`Measurement::Failed`]; the run goes on with the next row.

pub mod go;
pub mod latency;
pub mod sessions;
pub mod throughput;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rkcp_session::{KcpConfig, KcpStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{BenchConfig, FecSpec, Mode, Transport};
use crate::results::{Implementation, Measurement, Report, Row};

pub use go::GoColumn;

/// Read/write size of the bulk clients (and the servers' largest buffer).
pub const CHUNK: usize = 256 * 1024;

/// What every client subcommand needs besides its own plan.
#[derive(Clone, Debug)]
pub struct ClientOpts {
    /// Control address of the Rust server (`kcpbench serve`).
    pub connect: String,
    /// Where kcp-go rows come from.
    pub go: GoColumn,
    /// Longest a single row may take before it is recorded as failed.
    pub timeout: Duration,
    /// Draw progress bars (on stderr, only when it is a terminal).
    pub progress: bool,
}

/// Anything a benchmark stream can be.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A boxed benchmark stream.
pub type BoxIo = Box<dyn Io>;

/// Opens streams of one configuration to one data address, with the KCP/smux configs built once (the
/// PBKDF2 key derivation costs milliseconds, too much to repeat for ten thousand sessions).
#[derive(Clone, Debug)]
pub struct Dialer {
    addr: SocketAddr,
    transport: Transport,
    kcp: Option<KcpConfig>,
    smux: Option<rkcp_smux::Config>,
}

/// Streams of one run, with the smux session that carries them (if any) kept alive alongside.
#[derive(Debug)]
pub struct Streams {
    /// The streams, in opening order.
    pub streams: Vec<BoxIo>,
    /// The smux session carrying them (smux transports only).
    pub mux: Option<rkcp_smux::Session>,
}

impl std::fmt::Debug for dyn Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Io")
    }
}

impl Dialer {
    /// Prepares to dial `addr` with `config`.
    ///
    /// # Errors
    /// The configuration does not build.
    pub fn new(addr: SocketAddr, config: &BenchConfig) -> anyhow::Result<Dialer> {
        let t = config.transport;
        Ok(Dialer {
            addr,
            transport: t,
            kcp: t.is_kcp().then(|| config.kcp_config()).transpose()?,
            smux: t.is_smux().then(|| config.smux_config()).transpose()?,
        })
    }

    async fn connection(&self) -> anyhow::Result<BoxIo> {
        Ok(match &self.kcp {
            Some(k) => Box::new(
                KcpStream::connect(self.addr, k.clone())
                    .await
                    .context("KCP connect")?,
            ),
            None => {
                let s = TcpStream::connect(self.addr).await.context("TCP connect")?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        })
    }

    /// Opens `n` streams: `n` connections, or `n` smux streams over one connection.
    ///
    /// # Errors
    /// A connection or stream could not be opened.
    pub async fn open(&self, n: usize) -> anyhow::Result<Streams> {
        if let Some(cfg) = &self.smux {
            let conn = self.connection().await?;
            let mux = rkcp_smux::Session::client(conn, cfg.clone()).context("smux session")?;
            let mut streams: Vec<BoxIo> = Vec::with_capacity(n);
            for _ in 0..n {
                streams.push(Box::new(
                    mux.open_stream().await.context("opening an smux stream")?,
                ));
            }
            Ok(Streams {
                streams,
                mux: Some(mux),
            })
        } else {
            let mut streams = Vec::with_capacity(n);
            for _ in 0..n {
                streams.push(self.connection().await?);
            }
            Ok(Streams { streams, mux: None })
        }
    }

    /// The transport dialled.
    pub fn transport(&self) -> Transport {
        self.transport
    }
}

/// Closes an smux session without waiting long for a peer that does not read.
pub async fn close_mux(mux: Option<rkcp_smux::Session>) {
    if let Some(m) = mux {
        let _ = tokio::time::timeout(Duration::from_secs(2), m.close()).await;
    }
}

/// The implementation that runs a config's Rust rows.
pub fn rust_impl(config: &BenchConfig) -> Implementation {
    if config.transport.is_kcp() {
        Implementation::Rkcp
    } else {
        Implementation::Tcp
    }
}

/// The configurations of a run: the cross product of the lists, on top of `base` (which carries the
/// single-valued knobs). TCP transports ignore the KCP lists, so they appear once each.
pub fn expand_configs(
    base: &BenchConfig,
    transports: &[Transport],
    modes: &[Mode],
    crypts: &[String],
    fecs: &[FecSpec],
) -> Vec<BenchConfig> {
    let mut out = Vec::new();
    for &t in transports {
        if !t.is_kcp() {
            out.push(BenchConfig {
                transport: t,
                ..base.clone()
            });
            continue;
        }
        for &mode in modes {
            for crypt in crypts {
                for f in fecs {
                    out.push(BenchConfig {
                        transport: t,
                        mode,
                        crypt: crypt.clone(),
                        datashard: f.data,
                        parityshard: f.parity,
                        adaptivefec: f.adaptive,
                        ..base.clone()
                    });
                }
            }
        }
    }
    out
}

/// Runs one measurement under the row timeout, turning errors into [`Measurement::Failed`].
pub async fn guarded<F>(timeout: Duration, f: F) -> Measurement
where
    F: Future<Output = anyhow::Result<Measurement>>,
{
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => Measurement::Failed {
            error: format!("{e:#}"),
        },
        Err(_) => Measurement::Failed {
            error: format!("timed out after {:.0} s", timeout.as_secs_f64()),
        },
    }
}

/// The kcp-go row beside the rkcp row of `cfg`, when the Go column is wanted and `cfg` is something
/// kcp-go can run (a KCP transport without rkcp-only options): `Skipped` when the Go peer is not
/// available, otherwise `run` under `timeout` with a spinner showing `what`.
#[allow(clippy::too_many_arguments)]
pub async fn push_go_row<F>(
    opts: &ClientOpts,
    report: &mut Report,
    group: &str,
    label: &str,
    cfg: &BenchConfig,
    what: &str,
    timeout: Duration,
    run: F,
) where
    F: Future<Output = anyhow::Result<Measurement>>,
{
    if !(cfg.transport.is_kcp() && opts.go.wanted() && cfg.inflight == 0 && cfg.cc == "kcpgo") {
        return;
    }
    let m = match opts.go.skipped() {
        Some(m) => m,
        None => {
            let pb = spinner(opts, what);
            let m = guarded(timeout, run).await;
            pb.finish_and_clear();
            m
        }
    };
    push_row(report, group, label, Implementation::KcpGo, m);
}

/// Appends a row and says so on stderr (one line, after the progress bar is gone).
pub fn push_row(
    report: &mut Report,
    group: &str,
    label: &str,
    implementation: Implementation,
    result: Measurement,
) {
    eprintln!(
        "  {:<8} {label:<40} {}",
        impl_name(implementation),
        summary(&result)
    );
    report.rows.push(Row {
        group: group.to_string(),
        label: label.to_string(),
        implementation,
        result,
    });
}

/// Short name of an implementation for tables.
pub fn impl_name(i: Implementation) -> &'static str {
    match i {
        Implementation::Rkcp => "rkcp",
        Implementation::KcpGo => "kcp-go",
        Implementation::Tcp => "tcp",
    }
}

/// One-line summary of a measurement.
pub fn summary(m: &Measurement) -> String {
    match m {
        Measurement::Throughput {
            bytes,
            secs,
            streams,
            wire_bytes,
        } => format!(
            "{:.1} MB/s ({} MB in {secs:.2} s, {streams} streams{})",
            *bytes as f64 / secs.max(1e-9) / 1e6,
            bytes / 1_000_000,
            wire_bytes.map_or_else(String::new, |w| format!(
                ", wire/payload {:.3}",
                w as f64 / (*bytes).max(1) as f64
            ))
        ),
        Measurement::Latency {
            rtt_us,
            lost,
            wire_bytes,
        } => {
            // The report's definition (nearest rank), so the live line and the table agree.
            let (avg, p50, p99, max, count) = match crate::report::summary(rtt_us) {
                Some(s) => (
                    s.avg_us,
                    s.p50_us as f64,
                    s.p99_us as f64,
                    s.max_us as f64,
                    s.count,
                ),
                None => (0.0, 0.0, 0.0, 0.0, 0),
            };
            let sent = count as u64 + lost;
            format!(
                "avg {:.2} ms, p50 {:.2}, p99 {:.2}, max {:.2} ms, {count} msgs, {lost} lost{}",
                avg / 1e3,
                p50 / 1e3,
                p99 / 1e3,
                max / 1e3,
                wire_bytes.map_or_else(String::new, |w| format!(
                    ", wire {w} B ({:.0} B/msg)",
                    w as f64 / sent.max(1) as f64
                ))
            )
        }
        Measurement::Sessions {
            sessions,
            secs,
            server_cpu_secs,
            server_rss_before,
            server_rss_after,
            echoed,
            expected,
        } => format!(
            "{sessions} sessions: server {:.1} % of a core, {:.2} KB/session, echoed {echoed}/{expected}",
            server_cpu_secs / secs.max(1e-9) * 100.0,
            server_rss_after.saturating_sub(*server_rss_before) as f64
                / (*sessions).max(1) as f64
                / 1e3
        ),
        Measurement::Skipped { why } => format!("skipped: {why}"),
        Measurement::Failed { error } => format!("FAILED: {error}"),
    }
}

/// A progress bar with `len` steps, or a hidden one.
pub fn bar(opts: &ClientOpts, len: u64, msg: &str, bytes: bool) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let tmpl = if bytes {
        "{msg:48} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}"
    } else {
        "{msg:48} [{bar:30}] {pos}/{len} {elapsed}"
    };
    if let Ok(style) = ProgressStyle::with_template(tmpl) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg.to_string());
    pb
}

/// A spinner with elapsed time (for rows run by a subprocess), or a hidden one.
pub fn spinner(opts: &ClientOpts, msg: &str) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg:48} {elapsed}") {
        pb.set_style(style);
    }
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A `kcpbench serve` child process, killed when dropped (and, with `--stdin-lifetime`, gone by itself if
/// this process dies, because its stdin closes).
#[derive(Debug)]
pub struct ServerProc {
    child: Child,
    /// The control address it announced.
    pub addr: String,
}

impl ServerProc {
    /// Starts `exe serve --listen 127.0.0.1:0 --stdin-lifetime` (plus `extra` args) and reads its
    /// `READY <addr>` line.
    ///
    /// # Errors
    /// The process did not start or did not announce itself.
    pub fn spawn(exe: &std::path::Path, extra: &[&str]) -> anyhow::Result<ServerProc> {
        let mut child = Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--stdin-lifetime"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let out = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .context("reading READY")?;
        let Some(addr) = line.trim().strip_prefix("READY ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the server said {line:?} instead of READY <addr>");
        };
        Ok(ServerProc {
            addr: addr.to_string(),
            child,
        })
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The report header: command line (program name without its directory, so a report carries no path of the
/// machine it ran on), machine, start time.
pub fn new_report() -> Report {
    let line = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    Report {
        command: portable_command(&line),
        machine: machine(),
        started: rfc3339_now(),
        rows: Vec::new(),
    }
}

/// `command` with the directory of its first word (the program) removed: `/x/target/release/kcpbench latency …`
/// becomes `kcpbench latency …`. Also applied when rendering reports saved before this was done.
pub fn portable_command(command: &str) -> String {
    let (program, rest) = command.split_once(' ').unwrap_or((command, ""));
    let name = program.rsplit('/').next().unwrap_or(program);
    if rest.is_empty() {
        name.to_string()
    } else {
        format!("{name} {rest}")
    }
}

/// CPU model, core count and kernel, from /proc.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}

/// Now, UTC, RFC 3339 (seconds).
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_product_keeps_tcp_once() {
        let base = BenchConfig::default();
        let c = expand_configs(
            &base,
            &[Transport::SmuxKcp, Transport::Tcp],
            &[Mode::Fast3, Mode::Fast],
            &["none".into(), "aes".into()],
            &[FecSpec::fixed(0, 0), FecSpec::fixed(10, 3)],
        );
        assert_eq!(c.len(), 8 + 1);
        assert_eq!(c[8].transport, Transport::Tcp);
        assert_eq!(c[1].label(), "smux/kcp fast3 fec 10/3");
    }

    #[test]
    fn rfc3339_has_the_shape() {
        let s = rfc3339_now();
        assert_eq!(s.len(), 20);
        assert!(s.starts_with("20") && s.ends_with('Z'));
    }
}

#[cfg(test)]
mod portable_tests {
    #[test]
    fn commands_carry_no_directory() {
        assert_eq!(
            super::portable_command("/work/x/target/release/kcpbench latency --json /tmp/a.json"),
            "kcpbench latency --json /tmp/a.json"
        );
        assert_eq!(super::portable_command("kcpbench"), "kcpbench");
        assert_eq!(super::portable_command(""), "");
    }
}
