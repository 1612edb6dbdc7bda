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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rkcp_session::{KcpConfig, KcpControl, KcpStream};
use tokio::io::{AsyncRead, AsyncWrite};

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
    /// `TCP_CONGESTION` for TCP connections (empty: the kernel's default).
    tcpcc: String,
}

/// Streams of one run, with the smux session that carries them (if any) kept alive alongside.
#[derive(Debug)]
pub struct Streams {
    /// The streams, in opening order.
    pub streams: Vec<BoxIo>,
    /// The smux session carrying them (smux transports only).
    pub mux: Option<rkcp_smux::Session>,
    /// One RTT probe per connection (one for all smux streams), for the queue-delay figure.
    pub probes: Vec<RttProbe>,
}

/// A read-only look at one connection's round-trip time while the benchmark owns the stream: the KCP
/// session's control handle, or a duplicate of the TCP socket's descriptor (same socket).
#[derive(Debug)]
pub enum RttProbe {
    /// The KCP session's knobs and statistics (`KcpControl::srtt`).
    Kcp(KcpControl),
    /// The TCP socket (`TCP_INFO`, `TCP_CONGESTION`).
    Tcp(std::os::fd::OwnedFd),
}

impl RttProbe {
    /// The connection's smoothed RTT now, µs, and the smallest RTT the transport itself has seen (TCP's
    /// `tcpi_min_rtt`; `None` for KCP, whose engine keeps no minimum). `None` before the first sample.
    pub fn sample(&self) -> Option<(u64, Option<u64>)> {
        match self {
            RttProbe::Kcp(c) => {
                let srtt = c.srtt();
                (srtt > 0).then(|| (srtt as u64 * 1000, None))
            }
            RttProbe::Tcp(fd) => {
                use std::os::fd::AsFd;
                let r = crate::tcpopt::rtt(fd.as_fd()).ok()?;
                (r.srtt_us > 0).then(|| (u64::from(r.srtt_us), r.min_rtt_us.map(u64::from)))
            }
        }
    }

    /// The TCP socket's congestion control algorithm (`None` for KCP, or if the kernel does not say).
    pub fn tcp_congestion(&self) -> Option<String> {
        match self {
            RttProbe::Kcp(_) => None,
            RttProbe::Tcp(fd) => {
                use std::os::fd::AsFd;
                crate::tcpopt::congestion(fd.as_fd()).ok()
            }
        }
    }
}

/// RTT figures of a transfer, from [`RttSampler`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RttFigures {
    /// Mean of the sampled smoothed RTTs (averaged over the connections at each sample), µs.
    pub avg_us: f64,
    /// The path's minimum as seen by the sender: the smallest sampled smoothed RTT, or TCP's own
    /// `tcpi_min_rtt` when smaller, µs.
    pub min_us: f64,
    /// Samples taken.
    pub samples: usize,
}

impl RttFigures {
    /// Queue delay: average RTT above the path's minimum, ms.
    pub fn queue_delay_ms(&self) -> f64 {
        (self.avg_us - self.min_us).max(0.0) / 1000.0
    }
}

/// How often [`RttSampler`] reads the RTT.
pub const RTT_SAMPLE_PERIOD: Duration = Duration::from_millis(50);

/// Samples the probes' RTT every [`RTT_SAMPLE_PERIOD`] on a task of its own until [`RttSampler::finish`].
#[derive(Debug)]
pub struct RttSampler {
    task: tokio::task::JoinHandle<()>,
    probes: Arc<Vec<RttProbe>>,
    samples: Arc<Mutex<RttSamples>>,
}

/// What [`RttSampler`] has gathered: one mean over the connections per sample, and the smallest RTT.
#[derive(Debug)]
struct RttSamples {
    avgs: Vec<f64>,
    min: f64,
}

impl RttSamples {
    fn take(&mut self, probes: &[RttProbe]) {
        let now: Vec<(u64, Option<u64>)> = probes.iter().filter_map(RttProbe::sample).collect();
        if now.is_empty() {
            return;
        }
        self.avgs
            .push(now.iter().map(|s| s.0 as f64).sum::<f64>() / now.len() as f64);
        for &(srtt, min) in &now {
            self.min = self.min.min(min.map_or(srtt, |m| m.min(srtt)) as f64);
        }
    }
}

impl RttSampler {
    /// Starts sampling (one sample at once, then one per period, and a last one at the finish).
    pub fn start(probes: Vec<RttProbe>) -> RttSampler {
        let probes = Arc::new(probes);
        let samples = Arc::new(Mutex::new(RttSamples {
            avgs: Vec::new(),
            min: f64::INFINITY,
        }));
        let (p, out) = (Arc::clone(&probes), Arc::clone(&samples));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(RTT_SAMPLE_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                out.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(&p);
            }
        });
        RttSampler {
            task,
            probes,
            samples,
        }
    }

    /// Stops sampling; the figures, or `None` without a single sample.
    pub fn finish(self) -> Option<RttFigures> {
        self.task.abort();
        let mut g = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.take(&self.probes);
        (!g.avgs.is_empty() && g.min.is_finite()).then(|| RttFigures {
            avg_us: g.avgs.iter().sum::<f64>() / g.avgs.len() as f64,
            min_us: g.min,
            samples: g.avgs.len(),
        })
    }
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
            tcpcc: config.tcpcc.clone(),
        })
    }

    async fn connection(&self) -> anyhow::Result<(BoxIo, RttProbe)> {
        Ok(match &self.kcp {
            Some(k) => {
                let s = KcpStream::connect(self.addr, k.clone())
                    .await
                    .context("KCP connect")?;
                let probe = RttProbe::Kcp(s.control());
                (Box::new(s), probe)
            }
            None => {
                use std::os::fd::AsFd;
                // Set before connecting, so the handshake already runs the algorithm asked for.
                let sock = if self.addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                if !self.tcpcc.is_empty() {
                    crate::tcpopt::set_congestion(sock.as_fd(), &self.tcpcc)?;
                }
                let s = sock.connect(self.addr).await.context("TCP connect")?;
                s.set_nodelay(true)?;
                let probe = RttProbe::Tcp(
                    s.as_fd()
                        .try_clone_to_owned()
                        .context("duplicating the TCP socket")?,
                );
                (Box::new(s), probe)
            }
        })
    }

    /// Opens `n` streams: `n` connections, or `n` smux streams over one connection.
    ///
    /// # Errors
    /// A connection or stream could not be opened.
    pub async fn open(&self, n: usize) -> anyhow::Result<Streams> {
        if let Some(cfg) = &self.smux {
            let (conn, probe) = self.connection().await?;
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
                probes: vec![probe],
            })
        } else {
            let mut streams = Vec::with_capacity(n);
            let mut probes = Vec::with_capacity(n);
            for _ in 0..n {
                let (s, p) = self.connection().await?;
                streams.push(s);
                probes.push(p);
            }
            Ok(Streams {
                streams,
                mux: None,
                probes,
            })
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

/// The configurations of `configs` with every TCP transport's row repeated once per congestion control
/// algorithm of `tcp_ccs` (`BenchConfig::tcpcc`, labelled e.g. `tcp cubic`); KCP rows as they are. An
/// empty list keeps the kernel's default.
pub fn expand_tcp_cc(configs: Vec<BenchConfig>, tcp_ccs: &[String]) -> Vec<BenchConfig> {
    if tcp_ccs.is_empty() {
        return configs;
    }
    let mut out = Vec::new();
    for c in configs {
        if c.transport.is_kcp() {
            out.push(c);
            continue;
        }
        for cc in tcp_ccs {
            out.push(BenchConfig {
                tcpcc: cc.clone(),
                ..c.clone()
            });
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
            queue_delay_ms,
            ..
        } => format!(
            "{:.1} MB/s ({} MB in {secs:.2} s, {streams} streams{}{})",
            *bytes as f64 / secs.max(1e-9) / 1e6,
            bytes / 1_000_000,
            wire_bytes.map_or_else(String::new, |w| format!(
                ", wire/payload {:.3}",
                w as f64 / (*bytes).max(1) as f64
            )),
            queue_delay_ms.map_or_else(String::new, |q| format!(", queue delay avg {q:.1} ms"))
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
