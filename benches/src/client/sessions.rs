//! `kcpbench sessions`: many mostly idle sessions, each sending a small message every `1/rate` s and
//! checking its echo; what they cost the server (CPU % of a core over the window, resident memory per
//! session) comes from the control connection's `stats`.
//!
//! The sends of the sessions are spread evenly over the period (session `i` starts at `i/N` of it), so the
//! server sees a steady trickle rather than N messages at once. Each session is one tokio task that sleeps
//! until its next send or reads its echo; tokio's timer wheel makes ten thousand of them cheap (the client
//! reports its own CPU use so this can be checked).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use indicatif::ProgressBar;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{BoxIo, ClientOpts, Dialer, guarded, push_row, rust_impl};
use crate::config::BenchConfig;
use crate::proto::{self, Control, Op, Pattern};
use crate::results::{Measurement, Report};

/// Sessions being opened at the same time.
const OPEN_PARALLEL: usize = 256;
/// How long after the window the echoes of its last messages may take.
const GRACE: Duration = Duration::from_secs(5);
/// Pause between "all open" and the window (lets the opening burst settle).
const SETTLE: Duration = Duration::from_millis(500);

/// What to measure.
#[derive(Clone, Debug)]
pub struct SessionsPlan {
    /// The configurations (transport `kcp` or `smux-kcp`, or TCP for comparison).
    pub configs: Vec<BenchConfig>,
    /// Sessions of the Rust rows.
    pub sessions: u32,
    /// Sessions of the kcp-go rows.
    pub go_sessions: u32,
    /// Measurement window, seconds.
    pub secs: f64,
    /// Message size, bytes.
    pub size: u32,
    /// Messages per second per session.
    pub rate: f64,
}

/// The scenario name: `16 B × 1/s per session, 30 s`.
pub fn group_name(size: u32, rate: f64, secs: f64) -> String {
    format!("{size} B × {rate}/s per session, {secs} s")
}

/// Runs the plan, appending one row per (config, implementation).
///
/// # Errors
/// An invalid plan, or too few file descriptors for the sessions.
pub async fn run(
    opts: &ClientOpts,
    plan: &SessionsPlan,
    report: &mut Report,
) -> anyhow::Result<()> {
    ensure!(plan.size > 0, "--size must be positive");
    ensure!(
        plan.rate > 0.0 && plan.rate.is_finite(),
        "--rate must be positive"
    );
    ensure!(
        plan.secs > 0.0 && plan.secs.is_finite(),
        "--secs must be positive"
    );
    ensure!(plan.sessions > 0, "--sessions must be positive");
    crate::procstat::raise_nofile(u64::from(plan.sessions) + 512)?;
    let group = group_name(plan.size, plan.rate, plan.secs);
    eprintln!("{group}");
    let timeout = opts.timeout + Duration::from_secs_f64(plan.secs) + GRACE;
    for cfg in &plan.configs {
        let label = cfg.label();
        let m = guarded(timeout, rust_row(opts, cfg, plan)).await;
        push_row(report, &group, &label, rust_impl(cfg), m);
        super::push_go_row(
            opts,
            report,
            &group,
            &label,
            cfg,
            &format!("kcp-go {label}: {} sessions", plan.go_sessions),
            timeout,
            opts.go
                .sessions_row(cfg, plan.go_sessions, plan.secs, plan.size, plan.rate),
        )
        .await;
    }
    Ok(())
}

/// One open session: the halves of its stream, its smux session if any, and its stream offsets.
struct Sess {
    rd: ReadHalf<BoxIo>,
    wr: WriteHalf<BoxIo>,
    _mux: Option<rkcp_smux::Session>,
    sent: u64,
    recvd: u64,
}

/// Figures the session tasks add to.
#[derive(Default)]
struct Counters {
    /// Messages sent inside the window.
    sent: AtomicU64,
    /// Messages sent inside the window whose echo came back whole and correct.
    echoed: AtomicU64,
}

/// Opens a session and completes one echo on it, so the server really holds it.
async fn open_one(dialer: &Dialer, pattern: &Pattern, size: usize) -> anyhow::Result<Sess> {
    let mut s = dialer.open(1).await?;
    let io = s.streams.pop().context("no stream")?;
    let (mut rd, mut wr) = tokio::io::split(io);
    wr.write_all(&proto::header(Op::Echo, 0)).await?;
    wr.write_all(pattern.slice(0, size)).await?;
    wr.flush().await?;
    let mut buf = vec![0u8; size];
    rd.read_exact(&mut buf).await.context("first echo")?;
    ensure!(pattern.check(0, &buf), "first echo differs");
    Ok(Sess {
        rd,
        wr,
        _mux: s.mux,
        sent: size as u64,
        recvd: size as u64,
    })
}

/// One session's life in the window: send on schedule, read and check echoes, then wait for the last ones.
#[allow(clippy::too_many_arguments)]
async fn drive(
    mut s: Sess,
    pattern: Arc<Pattern>,
    size: usize,
    first: Instant,
    period: Duration,
    end: Instant,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let mut next = first;
    let base = s.sent;
    let mut buf = vec![0u8; size.clamp(64, 4096)];
    let grace_end = end + GRACE;
    loop {
        let sending = next < end;
        if !sending && s.recvd == s.sent {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next), if sending => {
                s.wr.write_all(pattern.slice(s.sent, size)).await?;
                s.sent += size as u64;
                counters.sent.fetch_add(1, Ordering::Relaxed);
                next += period;
            }
            r = s.rd.read(&mut buf) => {
                let n = r?;
                ensure!(n > 0, "the server closed the session");
                ensure!(s.recvd + n as u64 <= s.sent, "more echoed than sent");
                ensure!(pattern.check(s.recvd, &buf[..n]), "echo differs from what was sent");
                let before = (s.recvd - base) / size as u64;
                s.recvd += n as u64;
                let after = (s.recvd - base) / size as u64;
                counters.echoed.fetch_add(after - before, Ordering::Relaxed);
            }
            _ = tokio::time::sleep_until(grace_end), if !sending => return Ok(()),
        }
    }
}

/// One Rust row.
async fn rust_row(
    opts: &ClientOpts,
    cfg: &BenchConfig,
    plan: &SessionsPlan,
) -> anyhow::Result<Measurement> {
    let n = plan.sessions as usize;
    let size = plan.size as usize;
    let mut ctl = Control::connect(&opts.connect).await?;
    let addr = ctl.listen(cfg).await?;
    let before = ctl.stats().await?;
    let dialer = Arc::new(Dialer::new(addr, cfg)?);
    let pattern = Arc::new(Pattern::new(size.max(4096)));

    let client_cpu0 = crate::procstat::cpu_ns();
    let pb = super::bar(opts, n as u64, &format!("opening {n} sessions"), false);
    let sem = Arc::new(Semaphore::new(OPEN_PARALLEL));
    let mut opening = JoinSet::new();
    for i in 0..n {
        let (dialer, pattern, sem) = (Arc::clone(&dialer), Arc::clone(&pattern), Arc::clone(&sem));
        opening.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let s = open_one(&dialer, &pattern, size)
                .await
                .with_context(|| format!("opening session {i}"))?;
            anyhow::Ok((i, s))
        });
    }
    let mut slots: Vec<Option<Sess>> = (0..n).map(|_| None).collect();
    while let Some(r) = opening.join_next().await {
        let (i, s) = r.context("open task panicked")??;
        slots[i] = Some(s);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let opened = ctl.stats().await?;
    ensure!(
        opened.conns >= n as u64,
        "the server holds {} connections, {n} were opened",
        opened.conns
    );

    let period = Duration::from_secs_f64(1.0 / plan.rate);
    let window = Duration::from_secs_f64(plan.secs);
    let t0 = Instant::now() + SETTLE;
    let end = t0 + window;
    let counters = Arc::new(Counters::default());
    let mut tasks = JoinSet::new();
    for (i, s) in slots.into_iter().enumerate() {
        let s = s.context("a session did not open")?;
        let first = t0 + period.mul_f64(i as f64 / n as f64);
        tasks.spawn(drive(
            s,
            Arc::clone(&pattern),
            size,
            first,
            period,
            end,
            Arc::clone(&counters),
        ));
    }
    tokio::time::sleep_until(t0).await;
    let w0 = Instant::now();
    let s0 = ctl.stats().await?;
    let client_w0 = crate::procstat::cpu_ns();
    let pb = window_bar(opts, plan.secs);
    while Instant::now() < end {
        tokio::time::sleep_until(end.min(Instant::now() + Duration::from_secs(1))).await;
        pb.set_position(w0.elapsed().as_secs().min(plan.secs as u64));
    }
    let s1 = ctl.stats().await?;
    let wall = w0.elapsed().as_secs_f64();
    let client_w1 = crate::procstat::cpu_ns();
    pb.finish_and_clear();
    while let Some(r) = tasks.join_next().await {
        r.context("session task panicked")??;
    }
    eprintln!(
        "    client: {:.1} % of a core during the window ({:.1} s CPU for opening and driving)",
        (client_w1 - client_w0) as f64 / 1e9 / wall * 100.0,
        (crate::procstat::cpu_ns() - client_cpu0) as f64 / 1e9
    );
    drop(ctl);
    Ok(Measurement::Sessions {
        sessions: n as u64,
        secs: wall,
        server_cpu_secs: s1.cpu_ns.saturating_sub(s0.cpu_ns) as f64 / 1e9,
        server_rss_before: before.rss_bytes,
        server_rss_after: opened.rss_bytes,
        echoed: counters.echoed.load(Ordering::Relaxed),
        expected: counters.sent.load(Ordering::Relaxed),
    })
}

fn window_bar(opts: &ClientOpts, secs: f64) -> ProgressBar {
    super::bar(opts, secs.ceil() as u64, "measuring (seconds)", false)
}
