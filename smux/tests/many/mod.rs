//! Many-stream echo + sink runs, shared by smux/tests/many_streams.rs (Rust ↔ Rust over TCP),
//! smux/tests/interop_many.rs (Rust ↔ Go smux over TCP) and session/tests/interop_smux_many.rs
//! (Rust ↔ Go smux over kcp-go), which includes this file with `#[path]`.
//!
//! A run opens `streams` streams at once on one session; each echoes (`E` + data, the echo checked
//! byte for byte) or sinks (the data's SHA-256 checked): half and half (even-numbered streams
//! echo, odd-numbered sink), or all echo, or all sink ([`Mix`]). Stream `i` carries
//! `pattern(i, size)`, the same bytes as the Go peer's `pattern`.
//!
//! Services (the Go peer interop/go/smuxpeer serves the same, see its header):
//! - `E`: echo until EOF, then FIN;
//! - `S`: sink until EOF (the client's FIN), answer the SHA-256, FIN. Our client's sinks use it:
//!   a Rust smux stream can still read after `shutdown`;
//! - `N`: an 8-byte big-endian length L, then L bytes; answer their SHA-256, FIN. The Go client's
//!   sinks use it, since Go smux's `Close` also ends reading (no half-close).
//!
//! Every run is bounded by [`within`], so a deadlock fails with the case, the shape and how many
//! streams had finished instead of hanging the suite.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rkcp_smux::{Config, Session, Version};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Which service each stream of a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Even-numbered streams echo, odd-numbered streams sink.
    Half,
    /// Every stream echoes.
    Echo,
    /// Every stream sinks.
    Sink,
}

impl Mix {
    /// Whether stream `i` sinks (else it echoes).
    pub fn sinks(self, i: usize) -> bool {
        match self {
            Mix::Half => i % 2 == 1,
            Mix::Echo => false,
            Mix::Sink => true,
        }
    }

    /// The Go peer's `-mix` value.
    pub fn go_flag(self) -> &'static str {
        match self {
            Mix::Half => "half",
            Mix::Echo => "echo",
            Mix::Sink => "sink",
        }
    }
}

/// One many-stream run: `streams` concurrent streams of `size` bytes each.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub streams: usize,
    pub size: usize,
    pub mix: Mix,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mix = match self.mix {
            Mix::Half => "even streams echo, odd streams sink",
            Mix::Echo => "every stream echoes",
            Mix::Sink => "every stream sinks",
        };
        write!(f, "{} streams x {} bytes ({mix})", self.streams, self.size)
    }
}

pub fn cfg(v: Version) -> Config {
    let mut c = Config::default();
    c.version = v;
    c
}

/// The Go peer's `pattern` (xorshift64 seeded by the stream index).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Counts finished streams, for the timeout message.
#[derive(Clone, Default)]
pub struct Progress(Arc<AtomicUsize>);

impl Progress {
    pub fn done(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `fut` for at most `limit`; on timeout panics naming the case, the shape and how many
/// streams finished. Returns the elapsed time.
pub async fn within<F: Future<Output = ()>>(
    case: &str,
    shape: Shape,
    limit: Duration,
    progress: &Progress,
    fut: F,
) -> Duration {
    let start = Instant::now();
    if tokio::time::timeout(limit, fut).await.is_err() {
        panic!(
            "{case}: {shape}: timed out after {limit:?} with {} of {} streams finished (deadlock?)",
            progress.count(),
            shape.streams
        );
    }
    let took = start.elapsed();
    eprintln!("{case}: {shape}: passed in {took:.2?}");
    took
}

/// Echo on a new stream: write `E` + data while reading the echo back; close only after the
/// whole echo arrived.
pub async fn echo(sess: &Session, seed: u64, len: usize) -> Result<(), String> {
    let st = sess
        .open_stream()
        .await
        .map_err(|e| format!("stream {seed} (echo): open: {e}"))?;
    let (mut r, mut w) = st.into_split();
    let data = Arc::new(pattern(seed, len));
    let d2 = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(b"E").await?;
        w.write_all(&d2).await?;
        w.flush().await?;
        Ok::<_, std::io::Error>(w)
    });
    let mut got = vec![0u8; len];
    r.read_exact(&mut got)
        .await
        .map_err(|e| format!("stream {seed} (echo): read echo: {e}"))?;
    let _w = writer
        .await
        .unwrap()
        .map_err(|e| format!("stream {seed} (echo): write: {e}"))?;
    if got != *data {
        let at = got.iter().zip(data.iter()).position(|(a, b)| a != b);
        return Err(format!("stream {seed} (echo): echo differs at byte {at:?}"));
    }
    Ok(())
}

/// Sink on a new stream: write `S` + data, FIN, then read the SHA-256 the server computed.
pub async fn sink(sess: &Session, seed: u64, len: usize) -> Result<(), String> {
    let mut st = sess
        .open_stream()
        .await
        .map_err(|e| format!("stream {seed} (sink): open: {e}"))?;
    let data = pattern(seed, len);
    let w = async {
        st.write_all(b"S").await?;
        st.write_all(&data).await?;
        st.shutdown().await?;
        let mut digest = Vec::new();
        st.read_to_end(&mut digest).await?;
        Ok::<_, std::io::Error>(digest)
    };
    let digest = w.await.map_err(|e| format!("stream {seed} (sink): {e}"))?;
    if digest != Sha256::digest(&data).to_vec() {
        return Err(format!(
            "stream {seed} (sink): digest {digest:02x?} differs from the data's"
        ));
    }
    Ok(())
}

/// Opens `shape.streams` streams at once on `sess` (echo or sink as `shape.mix` says) and waits for all;
/// the first failure is returned. Each success bumps `progress`.
pub async fn run_client(
    sess: Arc<Session>,
    shape: Shape,
    progress: Progress,
) -> Result<(), String> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..shape.streams {
        let s = sess.clone();
        let p = progress.clone();
        tasks.spawn(async move {
            let r = if shape.mix.sinks(i) {
                sink(&s, i as u64, shape.size).await
            } else {
                echo(&s, i as u64, shape.size).await
            };
            if r.is_ok() {
                p.done();
            }
            r
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| format!("stream task: {e}"))??;
    }
    Ok(())
}

/// Serves one accepted stream: `E`, `S` or `N` (see the module header).
pub async fn serve_stream(mut st: rkcp_smux::Stream) {
    let mut kind = [0u8; 1];
    if st.read_exact(&mut kind).await.is_err() {
        return;
    }
    match kind[0] {
        b'E' => {
            let (mut r, mut w) = st.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        }
        b'S' => {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 65536];
            loop {
                match st.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => h.update(&buf[..n]),
                }
            }
            let _ = st.write_all(&h.finalize()).await;
            let _ = st.shutdown().await;
        }
        b'N' => {
            let mut len = [0u8; 8];
            if st.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut left = u64::from_be_bytes(len) as usize;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 65536];
            while left > 0 {
                let want = left.min(buf.len());
                match st.read(&mut buf[..want]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        h.update(&buf[..n]);
                        left -= n;
                    }
                }
            }
            let _ = st.write_all(&h.finalize()).await;
            let _ = st.shutdown().await;
        }
        _ => {}
    }
}

/// Accepts and serves streams until the session ends; yields the session.
pub fn spawn_server(sess: Session) -> tokio::task::JoinHandle<Session> {
    tokio::spawn(async move {
        while let Ok(st) = sess.accept_stream().await {
            tokio::spawn(serve_stream(st));
        }
        sess
    })
}

/// Builds the Go peer (interop/go/smuxpeer, smux + kcp-go in GOPATH mode) once per test binary.
pub fn peer_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smuxpeer-many");
            let src =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/go/smuxpeer/main.go");
            let gopath = std::env::var("SMUX_GOPATH").unwrap_or("/usr/share/gocode".into());
            let status = std::process::Command::new("go")
                .args(["build", "-o"])
                .arg(&out)
                .arg(&src)
                .env("GOPATH", gopath)
                .env("GO111MODULE", "off")
                .status()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run `go` ({e}): install golang-go, golang-github-xtaci-smux-dev \
                         and golang-github-xtaci-kcp-dev"
                    )
                });
            assert!(
                status.success(),
                "building {} failed: are golang-github-xtaci-smux-dev and \
                 golang-github-xtaci-kcp-dev installed?",
                src.display()
            );
            out
        })
        .clone()
}

/// Starts the Go peer as a server (`-mode server` plus `args`); returns it (killed on drop)
/// and the address it printed.
pub async fn go_server(args: &[String]) -> (Child, String) {
    let mut child = Command::new(peer_binary())
        .args(["-mode", "server"])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start smuxpeer");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    let addr = line
        .trim()
        .strip_prefix("LISTEN ")
        .unwrap_or_else(|| panic!("unexpected peer output {line:?}"))
        .to_string();
    (child, addr)
}

/// Runs the Go peer as a client (`-mode client -mix M -progress` plus `args`) to completion,
/// counting its `DONE` lines into `progress`. The process is killed if this future is dropped.
pub async fn go_client(args: &[String], shape: Shape, progress: Progress) -> Result<(), String> {
    let mut child = Command::new(peer_binary())
        .args(["-mode", "client", "-mix", shape.mix.go_flag(), "-progress"])
        .args(["-streams", &shape.streams.to_string()])
        .args(["-size", &shape.size.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start smuxpeer");
    let mut stderr = child.stderr.take().unwrap();
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ok = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with("DONE ") {
            progress.done();
        } else if line.starts_with("OK ") {
            ok = Some(line);
        }
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    let stderr = err_task.await.unwrap();
    match ok {
        Some(_) if status.success() => Ok(()),
        _ => Err(format!("Go client failed ({status}): {}", stderr.trim())),
    }
}
