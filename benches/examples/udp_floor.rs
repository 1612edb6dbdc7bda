//! The floor under `kcpbench sessions`: what the same datagram pattern costs a tokio UDP server that does no
//! KCP, FEC or crypto at all.
//!
//! Each of `--sessions` clients (own socket) sends a 60-byte "data" datagram once a second (random phase);
//! the server answers it with one 60-byte datagram, and the client answers that with a 24-byte "ACK" the
//! server reads and drops: per message 2 datagrams in and 1 out at the server, as an echo over KCP with its
//! ACKs. With `--app-task` the server's read loop hands each data datagram to a task of that client (a
//! channel per client), which sends the answer: the wake-up an application task per session costs (the
//! shape of a KCP session server). The server is a child process; its CPU time (getrusage) over the window
//! is printed in % of one core.
//!
//! ```text
//! cargo run --release -p kcpbench --example udp_floor -- --sessions 10000 --secs 20 [--app-task] [--current-thread]
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::UdpSocket;

fn runtime(current_thread: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    b.enable_all().build().context("tokio runtime")
}

/// What the sessions benchmark's datagrams cost a tokio UDP server with no protocol.
#[derive(clap::Parser, Debug)]
struct Args {
    /// Clients, one socket each, one message a second.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Measurement window, seconds (after a 5-second start).
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// The server answers through a task per client (the shape of a KCP session server).
    #[arg(long)]
    app_task: bool,
    /// The server runs on a current-thread runtime (default: tokio's multi-thread runtime).
    #[arg(long)]
    current_thread: bool,
    /// Internal: run as the server child.
    #[arg(long, hide = true)]
    serve: bool,
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    if args.serve {
        return runtime(args.current_thread)?.block_on(serve(args.app_task));
    }
    let (sessions, secs) = (args.sessions, args.secs);
    let _ = kcpbench::procstat::raise_nofile(sessions as u64 + 1024);
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .args(args.app_task.then_some("--app-task"))
        .args(args.current_thread.then_some("--current-thread"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the server")?;
    let mut to_server = child.stdin.take().context("server stdin")?;
    let mut from_server = BufReader::new(child.stdout.take().context("server stdout")?);
    let mut line = String::new();
    from_server.read_line(&mut line)?;
    let addr: SocketAddr = line.trim().parse().context("server address")?;
    let mut mark = || -> anyhow::Result<u64> {
        writeln!(to_server, "mark")?;
        to_server.flush()?;
        let mut l = String::new();
        from_server.read_line(&mut l)?;
        l.trim().parse().context("server CPU figure")
    };
    let answered = Arc::new(AtomicU64::new(0));
    let rt = runtime(false)?;
    rt.block_on(async {
        for i in 0..sessions {
            let answered = Arc::clone(&answered);
            tokio::spawn(async move {
                let _ = client(addr, i, sessions, answered).await;
            });
        }
        // Everyone has sent a few messages before the window opens.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let cpu0 = mark()?;
    let n0 = answered.load(Ordering::Relaxed);
    rt.block_on(async { tokio::time::sleep(Duration::from_secs(secs)).await });
    let cpu1 = mark()?;
    let n1 = answered.load(Ordering::Relaxed);
    let pct = (cpu1 - cpu0) as f64 / (secs as f64 * 1e9) * 100.0;
    println!(
        "sessions {sessions}  server CPU {pct:.1} % of a core  answers {} in {secs} s",
        n1 - n0
    );
    drop(to_server);
    let _ = child.kill();
    let _ = child.wait();
    rt.shutdown_timeout(Duration::from_millis(100));
    anyhow::ensure!(n1 > n0, "the server answered nothing in the window");
    Ok(())
}

/// One client: a datagram a second, then an "ACK" of the answer.
async fn client(
    server: SocketAddr,
    i: usize,
    n: usize,
    answered: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let s = UdpSocket::bind("127.0.0.1:0").await?;
    s.connect(server).await?;
    let phase = Duration::from_micros((i as u64 * 1_000_000) / n as u64);
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + phase, Duration::from_secs(1));
    let data = [b'D'; 60];
    let ack = [b'A'; 24];
    let mut buf = [0u8; 1500];
    loop {
        tick.tick().await;
        s.send(&data).await?;
        if tokio::time::timeout(Duration::from_millis(900), s.recv(&mut buf))
            .await
            .is_ok()
        {
            answered.fetch_add(1, Ordering::Relaxed);
            s.send(&ack).await?;
        }
    }
}

/// The server: one socket, one read loop; answers data datagrams (itself, or through the client's task).
async fn serve(app_task: bool) -> anyhow::Result<()> {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    println!("{}", sock.local_addr()?);
    std::io::stdout().flush()?;
    std::thread::spawn(|| {
        let stdin = std::io::stdin();
        for l in stdin.lock().lines() {
            if l.is_err() {
                break;
            }
            println!("{}", kcpbench::procstat::cpu_ns());
            let _ = std::io::stdout().flush();
        }
        std::process::exit(0);
    });
    let mut tasks: HashMap<SocketAddr, tokio::sync::mpsc::Sender<()>> = HashMap::new();
    let mut buf = [0u8; 1500];
    let answer = [b'R'; 60];
    loop {
        let (len, from) = sock.recv_from(&mut buf).await?;
        if len == 0 || buf[0] != b'D' {
            continue;
        }
        if !app_task {
            sock.send_to(&answer, from).await?;
            continue;
        }
        let tx = tasks.entry(from).or_insert_with(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(4);
            let sock = Arc::clone(&sock);
            tokio::spawn(async move {
                while rx.recv().await.is_some() {
                    let _ = sock.send_to(&answer, from).await;
                }
            });
            tx
        });
        let _ = tx.try_send(());
    }
}
