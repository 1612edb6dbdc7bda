//! Many mostly idle sessions, measured on the server process (issue 7, "10,000 sessions × 16 B/s").
//!
//! The server is a separate process (this example started again with `--serve`): a [`KcpListener`] whose
//! accepted streams echo what they read. The client opens `--sessions` KCP sessions (each its own UDP socket,
//! as kcptun with `--conn`), each sending `--size` bytes `--rate` times a second at its own phase and checking the
//! echo. The server's CPU time and resident set are read from `/proc/<pid>` (Linux): CPU over a steady window
//! after a warm-up, memory as RSS growth over the idle server divided by the sessions.
//!
//! ```text
//! cargo run --release -p rkcp-session --example sessions -- --sessions 10000 --secs 30 --mode fast
//! # or two shells (same host, the client reads the server's /proc entry):
//! cargo run --release -p rkcp-session --example sessions -- --serve 127.0.0.1:7000 --mode fast
//! cargo run --release -p rkcp-session --example sessions -- --connect 127.0.0.1:7000 --server-pid PID --sessions 10000
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rkcp_session::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Echo buffer per server stream: small, so the figure is the transport's, not the application's.
const ECHO_BUF: usize = 512;

struct Args {
    serve: Option<String>,
    stdin_lifetime: bool,
    connect: Option<SocketAddr>,
    server_pid: Option<u32>,
    sessions: usize,
    secs: f64,
    warmup: f64,
    size: usize,
    rate: f64,
    mode: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        serve: None,
        stdin_lifetime: false,
        connect: None,
        server_pid: None,
        sessions: 1000,
        secs: 20.0,
        warmup: 5.0,
        size: 16,
        rate: 1.0,
        mode: "fast".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--serve" => a.serve = Some(val()?),
            "--stdin-lifetime" => a.stdin_lifetime = true,
            "--connect" => a.connect = Some(val()?.parse()?),
            "--server-pid" => a.server_pid = Some(val()?.parse()?),
            "--sessions" => a.sessions = val()?.parse()?,
            "--secs" => a.secs = val()?.parse()?,
            "--warmup" => a.warmup = val()?.parse()?,
            "--size" => a.size = val()?.parse()?,
            "--rate" => a.rate = val()?.parse()?,
            "--mode" => a.mode = val()?,
            "-h" | "--help" => {
                println!(
                    "sessions [--serve ADDR [--stdin-lifetime] | --connect ADDR --server-pid PID] [--sessions N] [--secs S] \
                     [--warmup S] [--size BYTES] [--rate HZ] [--mode normal|fast|fast2|fast3]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other} (see --help)"),
        }
    }
    if a.size == 0 || a.rate <= 0.0 || a.sessions == 0 {
        bail!("--size, --rate and --sessions must be positive");
    }
    Ok(a)
}

fn config(mode: &str, sessions: usize) -> anyhow::Result<KcpConfig> {
    let base = match mode {
        "normal" => KcpConfig::normal(),
        "fast" => KcpConfig::fast(),
        "fast2" => KcpConfig::fast2(),
        "fast3" => KcpConfig::fast3(),
        m => bail!("unknown mode {m}"),
    };
    let mut cfg = base;
    cfg.listener.accept_backlog = sessions.clamp(128, 4096);
    Ok(cfg)
}

/// Voluntary context switches (a thread went to sleep, so it had to be woken) summed over a process's threads.
fn wakeups(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .filter_map(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// CPU time (user + system) and resident set of a process, from /proc.
fn proc_stats(pid: u32) -> anyhow::Result<(Duration, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = statm.split_whitespace().nth(1).context("statm")?.parse()?;
    let hz = clock_ticks();
    Ok((
        Duration::from_nanos(ticks * 1_000_000_000 / hz),
        pages * page_size(),
    ))
}

#[cfg(target_os = "linux")]
fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as u64 } else { 4096 }
}

#[cfg(not(target_os = "linux"))]
fn clock_ticks() -> u64 {
    100
}

#[cfg(not(target_os = "linux"))]
fn page_size() -> u64 {
    4096
}

async fn serve(addr: &str, cfg: KcpConfig, stdin_lifetime: bool) -> anyhow::Result<()> {
    let listener = KcpListener::bind(addr, cfg).await?;
    println!("READY {}", listener.local_addr().unwrap());
    let live = Arc::new(AtomicU64::new(0));
    {
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let mut prev = rkcp_session::global_snmp();
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let n = live.load(Ordering::Relaxed);
                let now = rkcp_session::global_snmp();
                let rate = |a: u64, b: u64| (a - b) as f64 / 5.0;
                eprintln!(
                    "server: {n} live sessions; per second: {:.0} datagrams in, {:.0} out, {:.0} segments out, \
                     {:.0} retransmitted",
                    rate(now.in_pkts, prev.in_pkts),
                    rate(now.out_pkts, prev.out_pkts),
                    rate(now.out_segs, prev.out_segs),
                    rate(now.retrans_segs, prev.retrans_segs),
                );
                prev = now;
            }
        });
    }
    // Started by the client half: exit when it closes our stdin.
    if stdin_lifetime {
        tokio::spawn(async {
            let mut line = String::new();
            let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
            while stdin.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                line.clear();
            }
            std::process::exit(0);
        });
    }
    loop {
        let (mut s, _) = listener.accept().await?;
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            live.fetch_add(1, Ordering::Relaxed);
            let mut buf = [0u8; ECHO_BUF];
            while let Ok(n) = s.read(&mut buf).await {
                if s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// One client session: sends `size` bytes at `start + phase + k / rate` until `end`, checking each echo.
async fn client_session(
    mut s: KcpStream,
    size: usize,
    rate: f64,
    start: Instant,
    phase: f64,
    end: Instant,
    echoed: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut msg = vec![0u8; size];
    let mut back = vec![0u8; size];
    let mut k = 0u64;
    loop {
        let at = start + Duration::from_secs_f64(phase + k as f64 / rate);
        if at >= end {
            return Ok(());
        }
        tokio::time::sleep_until(at.into()).await;
        msg.fill(k as u8);
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        if back != msg {
            bail!("echo mismatch");
        }
        echoed.fetch_add(1, Ordering::Relaxed);
        k += 1;
    }
}

async fn client(a: Args, addr: SocketAddr, pid: u32) -> anyhow::Result<()> {
    let cfg = config(&a.mode, a.sessions)?;
    let (_, rss0) = proc_stats(pid)?;
    let opened = Instant::now();
    let mut streams = Vec::with_capacity(a.sessions);
    // Open in waves (each session proves itself with one echo) so the accept backlog never overflows.
    for chunk_start in (0..a.sessions).step_by(256) {
        let n = 256.min(a.sessions - chunk_start);
        let mut wave = Vec::with_capacity(n);
        for _ in 0..n {
            let cfg = cfg.clone();
            wave.push(tokio::spawn(async move {
                let mut s = KcpStream::connect(addr, cfg).await?;
                s.write_all(&[0xA5]).await?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await?;
                anyhow::Ok(s)
            }));
        }
        for w in wave {
            streams.push(w.await??);
        }
    }
    let open_secs = opened.elapsed().as_secs_f64();
    let (_, rss_open) = proc_stats(pid)?;
    eprintln!(
        "opened {} sessions in {open_secs:.1}s; server RSS {:.1} MB -> {:.1} MB",
        a.sessions,
        rss0 as f64 / 1e6,
        rss_open as f64 / 1e6
    );
    let echoed = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(100);
    let total = a.warmup + a.secs;
    let end = start + Duration::from_secs_f64(total);
    let mut tasks = Vec::with_capacity(a.sessions);
    for (i, s) in streams.into_iter().enumerate() {
        let phase = i as f64 / a.sessions as f64 / a.rate;
        tasks.push(tokio::spawn(client_session(
            s,
            a.size,
            a.rate,
            start,
            phase,
            end,
            Arc::clone(&echoed),
        )));
    }
    tokio::time::sleep_until((start + Duration::from_secs_f64(a.warmup)).into()).await;
    let (cpu1, _) = proc_stats(pid)?;
    let w1 = wakeups(pid);
    let e1 = echoed.load(Ordering::Relaxed);
    let t1 = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let (cpu2, rss2) = proc_stats(pid)?;
    let w2 = wakeups(pid);
    let e2 = echoed.load(Ordering::Relaxed);
    let wall = t1.elapsed().as_secs_f64();
    let mut failed = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let cpu = (cpu2 - cpu1).as_secs_f64();
    let per = (rss2.saturating_sub(rss0)) as f64 / a.sessions as f64;
    println!(
        "mode {} sessions {} size {} rate {}/s: server CPU {:.1}% of a core ({cpu:.2}s over {wall:.1}s), \
         {:.0} thread wake-ups/s; RSS {:.1} MB -> {:.1} MB = {:.2} KB/session; echoes {} in window ({:.0}/s), \
         failed sessions {failed}",
        a.mode,
        a.sessions,
        a.size,
        a.rate,
        100.0 * cpu / wall,
        (w2 - w1) as f64 / wall,
        rss0 as f64 / 1e6,
        rss2 as f64 / 1e6,
        per / 1e3,
        e2 - e1,
        (e2 - e1) as f64 / wall,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    if let Some(addr) = a.serve.clone() {
        let cfg = config(&a.mode, a.sessions.max(4096))?;
        let rt = tokio::runtime::Runtime::new()?;
        return rt.block_on(serve(&addr, cfg, a.stdin_lifetime));
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        if let Some(addr) = a.connect {
            let pid = a.server_pid.context(
                "--connect needs --server-pid (the client reads the server's /proc entry)",
            )?;
            return client(a, addr, pid).await;
        }
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args([
                "--serve",
                "127.0.0.1:0",
                "--stdin-lifetime",
                "--mode",
                &a.mode,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("server pid")?;
        let mut out = tokio::io::BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        out.read_line(&mut line).await?;
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("READY ")
            .context("server did not print READY")?
            .parse()?;
        // Let the idle server settle before its baseline RSS is read.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = client(a, addr, pid).await;
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
        r
    })
}
