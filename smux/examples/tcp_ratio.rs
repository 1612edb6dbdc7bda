//! One-way bulk throughput of one smux stream over TCP loopback against raw TCP, in the
//! same process run (rounds alternate raw TCP, smux v1, smux v2), so the ratio holds on
//! a shared, noisy machine.
//!
//! `cargo run --release -p smux --example tcp_ratio [-- TOTAL_MIB [WRITE_KIB [ROUNDS]]]`
//!
//! Defaults: 1024 MiB per run, 256 KiB writes (and reads), 3 rounds; the default smux
//! config (max frame 32768, 4 MiB receive buffer, 64 KiB v2 stream window). Prints the
//! best and median MB/s of each mode and the smux/TCP ratio of the medians and of the
//! bests. `SMUX_RATIO_MODES=v1` (a comma list of tcp, v1, v2) runs only some modes, for
//! profiling.

use std::time::Instant;

use smux::{Config, Session, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Tcp,
    V1,
    V2,
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
    let (a, b) = (a.unwrap(), b.unwrap().0);
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// Sends `total` bytes in `write`-byte writes from `w` and reads them all from `r`
/// (each on its own task); returns MB/s.
async fn pump<W, R>(mut w: W, mut r: R, total: usize, write: usize) -> f64
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
{
    let t = Instant::now();
    let writer = tokio::spawn(async move {
        let buf = vec![7u8; write];
        let mut left = total;
        while left > 0 {
            let n = left.min(write);
            w.write_all(&buf[..n]).await.unwrap();
            left -= n;
        }
        w.flush().await.unwrap();
        w
    });
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; write];
        let mut left = total;
        while left > 0 {
            let n = r.read(&mut buf[..left.min(write)]).await.unwrap();
            assert!(n > 0, "early EOF");
            left -= n;
        }
        r
    });
    let (w, r) = tokio::join!(writer, reader);
    let secs = t.elapsed().as_secs_f64();
    drop((w.unwrap(), r.unwrap()));
    total as f64 / secs / 1e6
}

async fn run(mode: Mode, total: usize, write: usize) -> f64 {
    let (a, b) = tcp_pair().await;
    match mode {
        Mode::Tcp => pump(a, b, total, write).await,
        Mode::V1 | Mode::V2 => {
            let mut cfg = Config::default();
            cfg.version = if mode == Mode::V1 {
                Version::V1
            } else {
                Version::V2
            };
            let client = Session::client(a, cfg.clone()).unwrap();
            let server = Session::server(b, cfg).unwrap();
            let c = client.open_stream().await.unwrap();
            let s = server.accept_stream().await.unwrap();
            let r = pump(c, s, total, write).await;
            let _ = client.close().await;
            let _ = server.close().await;
            r
        }
    }
}

fn stats(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() - 1], v[v.len() / 2])
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .expect("numeric arguments: TOTAL_MIB WRITE_KIB ROUNDS")
        })
        .collect();
    let total = args.first().copied().unwrap_or(1024) << 20;
    let write = args.get(1).copied().unwrap_or(256) << 10;
    let rounds = args.get(2).copied().unwrap_or(3).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let wanted = std::env::var("SMUX_RATIO_MODES").unwrap_or_else(|_| "tcp,v1,v2".into());
    let modes: Vec<Mode> = [Mode::Tcp, Mode::V1, Mode::V2]
        .into_iter()
        .filter(|m| {
            wanted
                .split(',')
                .any(|w| w.eq_ignore_ascii_case(&format!("{m:?}")))
        })
        .collect();
    let mut res: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    println!(
        "one stream, one-way, {} MiB per run, {} KiB writes, {} rounds, {} worker threads",
        total >> 20,
        write >> 10,
        rounds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for round in 0..rounds {
        for (i, &m) in modes.iter().enumerate() {
            let mbs = rt.block_on(run(m, total, write));
            println!("round {round} {m:?}: {mbs:.0} MB/s");
            res[i].push(mbs);
        }
    }
    let (tb, tm) = if modes.first() == Some(&Mode::Tcp) {
        stats(&mut res[0])
    } else {
        (f64::NAN, f64::NAN)
    };
    println!(
        "{:<10} {:>10} {:>10} {:>12} {:>12}",
        "mode", "best MB/s", "median", "best/TCP", "median/TCP"
    );
    for (i, m) in modes.iter().enumerate() {
        let (b, md) = stats(&mut res[i]);
        println!(
            "{:<10} {:>10.0} {:>10.0} {:>11.0}% {:>11.0}%",
            format!("{m:?}"),
            b,
            md,
            100.0 * b / tb,
            100.0 * md / tm
        );
    }
}
