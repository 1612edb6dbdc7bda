//! Throughput of one stream over an in-memory pipe (smux v1/v2 against the bare pipe)
//! and over TCP loopback (smux v1/v2 against raw TCP, in the same group so the ratio
//! shows), 64 concurrent streams, and stream open/close rate, as Go's
//! `BenchmarkConnSmux`, `BenchmarkConnTCP` and `BenchmarkAcceptClose`. Writes and reads
//! are 256 KiB, the smux config is the default (32 KiB frames).
//!
//! `cargo bench -p rkcp-smux --bench smux -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rkcp_smux::{Config, Session, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// Bytes per write and per read.
const WRITE: usize = 256 * 1024;

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// Persistent writer/reader tasks for each pair; one "round" makes every writer send
/// `per_round` bytes and waits until every reader has them.
struct Pump {
    go: Vec<mpsc::UnboundedSender<()>>,
    done: mpsc::UnboundedReceiver<()>,
}

impl Pump {
    fn new(rt: &Runtime, pairs: Vec<(Writer, Reader)>, per_round: usize) -> Self {
        let (done_tx, done) = mpsc::unbounded_channel();
        let mut go = Vec::new();
        for (mut w, mut r) in pairs {
            let (tx, mut rx) = mpsc::unbounded_channel::<()>();
            go.push(tx);
            rt.spawn(async move {
                let buf = vec![7u8; WRITE];
                while rx.recv().await.is_some() {
                    let mut left = per_round;
                    while left > 0 {
                        let n = left.min(WRITE);
                        if w.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                }
            });
            let done_tx = done_tx.clone();
            rt.spawn(async move {
                let mut buf = vec![0u8; WRITE];
                loop {
                    let mut left = per_round;
                    while left > 0 {
                        match r.read(&mut buf[..left.min(WRITE)]).await {
                            Ok(n) if n > 0 => left -= n,
                            // The benchmark is over and its connection torn down.
                            _ => return,
                        }
                    }
                    if done_tx.send(()).is_err() {
                        return;
                    }
                }
            });
        }
        Self { go, done }
    }

    async fn round(&mut self) {
        for g in &self.go {
            g.send(()).unwrap();
        }
        for _ in 0..self.go.len() {
            self.done.recv().await.unwrap();
        }
    }
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

fn cfg(v: Version) -> Config {
    let mut c = Config::default();
    c.version = v;
    c
}

async fn smux_pairs(v: Version, n: usize) -> (Session, Session, Vec<(Writer, Reader)>) {
    let (a, b) = tcp_pair().await;
    let client = Session::client(a, cfg(v)).unwrap();
    let server = Session::server(b, cfg(v)).unwrap();
    let mut pairs = Vec::new();
    for _ in 0..n {
        let c = client.open_stream().await.unwrap();
        let s = server.accept_stream().await.unwrap();
        let (_cr, cw) = c.into_split();
        let (sr, _sw) = s.into_split();
        // Keep the unused halves alive inside the tasks' boxes by leaking into the pair.
        pairs.push((
            Box::new(KeepAlive(cw, _cr)) as Writer,
            Box::new(KeepAlive(sr, _sw)) as Reader,
        ));
    }
    (client, server, pairs)
}

/// Holds a second value alive while delegating IO to the first.
struct KeepAlive<A, B>(A, #[allow(dead_code)] B);

impl<A: AsyncRead + Unpin, B: Unpin> AsyncRead for KeepAlive<A, B> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<A: AsyncWrite + Unpin, B: Unpin> AsyncWrite for KeepAlive<A, B> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn rt() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn run_rounds(rt: &Runtime, pump: &mut Pump, iters: u64) -> Duration {
    rt.block_on(async {
        let t = Instant::now();
        for _ in 0..iters {
            pump.round().await;
        }
        t.elapsed()
    })
}

/// One stream over an in-memory pipe (tokio's duplex, 1 MiB buffer): what smux itself
/// costs, without a kernel.
fn pipe_throughput(c: &mut Criterion) {
    let rt = rt();
    let per = 4 << 20;
    let mut g = c.benchmark_group("one_stream_pipe");
    g.throughput(Throughput::Bytes(per as u64));
    {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (_ar, aw) = tokio::io::split(a);
        let (br, _bw) = tokio::io::split(b);
        let mut pump = Pump::new(
            &rt,
            vec![(
                Box::new(KeepAlive(aw, _ar)) as Writer,
                Box::new(KeepAlive(br, _bw)) as Reader,
            )],
            per,
        );
        g.bench_function("raw_pipe", |bch| {
            bch.iter_custom(|iters| run_rounds(&rt, &mut pump, iters))
        });
    }
    for v in [Version::V1, Version::V2] {
        let (_c, _s, pairs) = rt.block_on(async {
            let (a, b) = tokio::io::duplex(1 << 20);
            let client = Session::client(a, cfg(v)).unwrap();
            let server = Session::server(b, cfg(v)).unwrap();
            let c = client.open_stream().await.unwrap();
            let s = server.accept_stream().await.unwrap();
            let (cr, cw) = c.into_split();
            let (sr, sw) = s.into_split();
            let pairs = vec![(
                Box::new(KeepAlive(cw, cr)) as Writer,
                Box::new(KeepAlive(sr, sw)) as Reader,
            )];
            (client, server, pairs)
        });
        let mut pump = Pump::new(&rt, pairs, per);
        g.bench_function(format!("smux_{v:?}"), |bch| {
            bch.iter_custom(|iters| run_rounds(&rt, &mut pump, iters))
        });
    }
    g.finish();
}

fn throughput(c: &mut Criterion) {
    let rt = rt();
    // One stream: 4 MiB per iteration in 256 KiB writes.
    let per = 4 << 20;
    let mut g = c.benchmark_group("one_stream_tcp");
    g.throughput(Throughput::Bytes(per as u64));
    {
        let (a, b) = rt.block_on(tcp_pair());
        let (_ar, aw) = a.into_split();
        let (br, _bw) = b.into_split();
        let mut pump = Pump::new(
            &rt,
            vec![(
                Box::new(KeepAlive(aw, _ar)) as Writer,
                Box::new(KeepAlive(br, _bw)) as Reader,
            )],
            per,
        );
        g.bench_function("raw_tcp", |bch| {
            bch.iter_custom(|iters| run_rounds(&rt, &mut pump, iters))
        });
    }
    for v in [Version::V1, Version::V2] {
        let (_c, _s, pairs) = rt.block_on(smux_pairs(v, 1));
        let mut pump = Pump::new(&rt, pairs, per);
        g.bench_function(format!("smux_{v:?}"), |bch| {
            bch.iter_custom(|iters| run_rounds(&rt, &mut pump, iters))
        });
    }
    g.finish();

    // 64 concurrent streams: 64 KiB each per iteration (4 MiB total).
    let streams = 64;
    let per = 64 * 1024;
    let mut g = c.benchmark_group("64_streams");
    g.throughput(Throughput::Bytes((per * streams) as u64));
    {
        let mut pairs = Vec::new();
        for _ in 0..streams {
            let (a, b) = rt.block_on(tcp_pair());
            let (_ar, aw) = a.into_split();
            let (br, _bw) = b.into_split();
            pairs.push((
                Box::new(KeepAlive(aw, _ar)) as Writer,
                Box::new(KeepAlive(br, _bw)) as Reader,
            ));
        }
        let mut pump = Pump::new(&rt, pairs, per);
        g.bench_function("raw_tcp_64_conns", |bch| {
            bch.iter_custom(|iters| run_rounds(&rt, &mut pump, iters))
        });
    }
    for v in [Version::V1, Version::V2] {
        let (_c, _s, pairs) = rt.block_on(smux_pairs(v, streams));
        let mut pump = Pump::new(&rt, pairs, per);
        g.bench_function(format!("smux_{v:?}"), |bch| {
            bch.iter_custom(|iters| run_rounds(&rt, &mut pump, iters))
        });
    }
    g.finish();
}

/// Go's BenchmarkAcceptClose: open a stream and close it, the server accepts and
/// closes. One element = one open + close.
fn open_close(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("open_close");
    g.throughput(Throughput::Elements(1));
    let (client, server) = rt.block_on(async {
        let (a, b) = tcp_pair().await;
        (
            Session::client(a, Config::default()).unwrap(),
            Session::server(b, Config::default()).unwrap(),
        )
    });
    rt.spawn(async move {
        while let Ok(st) = server.accept_stream().await {
            drop(st);
        }
    });
    g.bench_function("open_close", |bch| {
        bch.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let mut st = client.open_stream().await.unwrap();
                    st.shutdown().await.unwrap();
                }
                t.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, pipe_throughput, throughput, open_close);
criterion_main!(benches);
