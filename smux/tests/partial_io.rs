//! smux v1 and v2 over a transport that takes and returns bytes in random pieces.
//!
//! `Chaotic` wraps one end of an in-memory pipe the way a `KcpStream` behaves: a write
//! accepts only a prefix of what it is offered (one byte, a few bytes — so a frame
//! header is split — most of it, or all), a poll may return `Pending` first (woken at
//! once, or later from another task), the transport may stay full for a number of
//! polls (a KCP send window), vectored writes are cut the same way (or the transport
//! does not do vectored writes at all), and reads return random short pieces.
//!
//! Many streams then run at once in both directions (each side opens streams; echo,
//! one-way to the acceptor, one-way from the acceptor) with writes of every size
//! (1 byte .. 200 KB, multiples of `max_frame_size` and ±1), and every byte is checked
//! against a per-stream pseudo-random pattern, so a frame interleaved with, cut into,
//! repeated in or dropped from the byte stream shows up as wrong data at a known
//! offset, a protocol error, or `Error::Consumed` (v2).
//!
//! Everything random is drawn from fixed seeds. Cases on a current-thread runtime are
//! reproducible as they are (every wake-up goes through tokio's own queue); the
//! multi-thread cases add real races between a stream's writer and the driver.
//!
//! Flow control is exercised (small windows, frames of odd sizes, a small session
//! receive buffer) while staying clear of the v2 deadlock in which the receive buffer
//! fills up with data for readers that do not read: a case that echoes with a
//! read-then-write loop (a reader that stops reading while its write waits) has a
//! receive buffer larger than twice all the data the case sends, so the token bucket
//! never runs dry; the small-buffer cases only have readers that never stop reading
//! (one-way transfers, and echoes whose read side queues what it read for a separate
//! writer).
//!
//! Written for the direct-write fast path reverted in 149765f (smux v2 over `KcpStream`
//! corrupted data). At 149765f^ every case with an end that has no vectored writes
//! fails, except v1 with one or two streams per side (v1 over KCP was fine there too),
//! mostly within milliseconds: protocol errors (frame bytes repeated on the wire),
//! wrong data, `Error::Consumed`, an overflow panic in the writer's byte count, or a
//! v2 stall caught by the timeout. A direct write that the transport refused
//! (`Pending`) left its frames in the writer's coalescing buffer, and the next
//! coalesced write sent them (frames nobody had counted as sent) followed by a second
//! copy of the bytes queued before them.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::task::JoinSet;

use rkcp_smux::{Config, Role, Session, Stream, Version};

/// A case that has not finished by then has hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the transport

/// How nasty the transport is.
#[derive(Debug, Clone, Copy)]
struct Chaos {
    /// `is_write_vectored`: with true, vectored writes are taken (and cut) across
    /// slices; with false, as tokio's default, only the first non-empty slice is.
    vectored: bool,
    /// Probability that a poll returns `Pending` before doing anything.
    pending: f64,
    /// Probability that a write takes only part of what it is offered.
    partial: f64,
    /// Probability that a read is limited to a random (short) size.
    short_read: f64,
    /// Probability that a write finds the transport full for a while (as a KCP send
    /// window): the next 1..=`stall_polls` write polls return `Pending`.
    stall: f64,
    stall_polls: u32,
}

/// One end of an in-memory pipe that writes and reads in random pieces.
struct Chaotic<T> {
    inner: T,
    chaos: Chaos,
    wrng: StdRng,
    rrng: StdRng,
    /// Gathered prefix of a vectored write.
    scratch: Vec<u8>,
    /// Write polls still to refuse (a stall in progress).
    stalled: u32,
}

impl<T> Chaotic<T> {
    fn new(inner: T, chaos: Chaos, seed: u64) -> Self {
        Self {
            inner,
            chaos,
            wrng: StdRng::seed_from_u64(seed),
            rrng: StdRng::seed_from_u64(seed ^ 0x5EED_0F4E_AD00),
            scratch: Vec::new(),
            stalled: 0,
        }
    }
}

/// How many of `len` offered bytes to take.
fn cut(rng: &mut StdRng, len: usize, partial: f64) -> usize {
    if len <= 1 || !rng.random_bool(partial) {
        return len;
    }
    match rng.random_range(0..5) {
        // One byte.
        0 => 1,
        // A few bytes: inside or just past a frame header.
        1 => rng.random_range(1..=len.min(20)),
        // All but a few bytes: the end of a frame (or its header) is left over.
        2 => len - rng.random_range(1..=(len - 1).min(20)),
        // Anything.
        _ => rng.random_range(1..=len),
    }
}

/// Returns `Pending` (sometimes) after arranging a wake-up: at once, or from another
/// task after the scheduler has run others.
fn maybe_pending(rng: &mut StdRng, p: f64, cx: &mut Context<'_>) -> bool {
    if !rng.random_bool(p) {
        return false;
    }
    if rng.random_bool(0.5) {
        cx.waker().wake_by_ref();
    } else {
        let w = cx.waker().clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            w.wake();
        });
    }
    true
}

impl<T> Chaotic<T> {
    /// Decides whether this write poll returns `Pending` (a wake-up is arranged).
    fn write_pending(&mut self, cx: &mut Context<'_>) -> bool {
        if self.stalled == 0 && self.chaos.stall > 0.0 && self.wrng.random_bool(self.chaos.stall) {
            self.stalled = self.wrng.random_range(1..=self.chaos.stall_polls);
        }
        if self.stalled > 0 {
            self.stalled -= 1;
            return maybe_pending(&mut self.wrng, 1.0, cx);
        }
        maybe_pending(&mut self.wrng, self.chaos.pending, cx)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Chaotic<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.write_pending(cx) {
            return Poll::Pending;
        }
        let n = cut(&mut this.wrng, buf.len(), this.chaos.partial);
        Pin::new(&mut this.inner).poll_write(cx, &buf[..n])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.chaos.vectored {
            // tokio's default: the first non-empty slice only.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.poll_write(cx, first);
        }
        let this = &mut *self;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if this.write_pending(cx) {
            return Poll::Pending;
        }
        let n = cut(&mut this.wrng, total, this.chaos.partial);
        this.scratch.clear();
        for b in bufs {
            let k = b.len().min(n - this.scratch.len());
            this.scratch.extend_from_slice(&b[..k]);
            if this.scratch.len() == n {
                break;
            }
        }
        // The pipe may take even less (it is full): the count is what it took.
        Pin::new(&mut this.inner).poll_write(cx, &this.scratch)
    }

    fn is_write_vectored(&self) -> bool {
        self.chaos.vectored
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if maybe_pending(&mut this.wrng, this.chaos.pending, cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Chaotic<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let room = buf.remaining();
        if room == 0 {
            return Poll::Ready(Ok(()));
        }
        if maybe_pending(&mut this.rrng, this.chaos.pending, cx) {
            return Poll::Pending;
        }
        let lim = if this.rrng.random_bool(this.chaos.short_read) {
            match this.rrng.random_range(0..3) {
                0 => 1,
                1 => this.rrng.random_range(1..=room.min(20)),
                _ => this.rrng.random_range(1..=room),
            }
        } else {
            room
        };
        let mut sub = ReadBuf::new(buf.initialize_unfilled_to(lim));
        match Pin::new(&mut this.inner).poll_read(cx, &mut sub) {
            Poll::Ready(Ok(())) => {
                let n = sub.filled().len();
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

// ---------------------------------------------------------------- data and checks

/// Bytes `8 * idx .. 8 * idx + 8` of the pattern of seed `seed` (splitmix64).
fn pattern_word(seed: u64, idx: u64) -> u64 {
    let mut z = seed.wrapping_add(idx.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with the pattern bytes at offsets `off..`.
fn fill_pattern(seed: u64, off: u64, out: &mut [u8]) {
    let mut word = pattern_word(seed, off / 8);
    for (i, b) in (off..).zip(out.iter_mut()) {
        if i % 8 == 0 {
            word = pattern_word(seed, i / 8);
        }
        *b = (word >> ((i % 8) * 8)) as u8;
    }
}

/// Checks bytes received at offset `off` of a stream; the error says where and how.
fn check_pattern(seed: u64, off: u64, got: &[u8], what: &str) -> Result<(), String> {
    let mut want = vec![0u8; got.len()];
    fill_pattern(seed, off, &mut want);
    match want.iter().zip(got).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(p) => {
            let show = |b: &[u8]| {
                b.iter()
                    .skip(p)
                    .take(16)
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            Err(format!(
                "{what}: CORRUPT data at byte {} (read of {} bytes at {off}): \
                 expected [{}] got [{}]",
                off + p as u64,
                got.len(),
                show(&want),
                show(got),
            ))
        }
    }
}

/// A write size: single bytes, a few bytes, multiples of the frame size and ±1, small,
/// medium and large writes up to 200 KB.
fn write_size(rng: &mut StdRng, frame: usize, left: usize) -> usize {
    let n = match rng.random_range(0..100) {
        0..10 => 1,
        10..20 => rng.random_range(2..=16),
        20..35 => {
            let k = rng.random_range(1..=4usize) * frame;
            match rng.random_range(0..3) {
                0 => k - 1,
                1 => k,
                _ => k + 1,
            }
        }
        35..60 => rng.random_range(17..=4096),
        60..85 => rng.random_range(4097..=65536),
        _ => rng.random_range(65537..=200_000),
    };
    n.clamp(1, left.max(1))
}

/// A read buffer size.
fn read_size(rng: &mut StdRng, frame: usize) -> usize {
    match rng.random_range(0..100) {
        0..8 => 1,
        8..20 => rng.random_range(2..=16),
        20..35 => frame + rng.random_range(0..=2) - 1,
        35..60 => rng.random_range(17..=8192),
        _ => rng.random_range(8193..=256 * 1024),
    }
}

// ---------------------------------------------------------------- streams

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The opener sends, the acceptor sends everything back.
    Echo = 1,
    /// The opener sends, the acceptor checks and answers one byte.
    ToAcceptor = 2,
    /// The acceptor sends, the opener checks.
    FromAcceptor = 3,
}

impl Mode {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Mode::Echo),
            2 => Some(Mode::ToAcceptor),
            3 => Some(Mode::FromAcceptor),
            _ => None,
        }
    }
}

/// First bytes of every stream, from the opener: what the stream does.
const PRELUDE: usize = 24;
const MAGIC: u8 = 0xA5;

#[derive(Debug, Clone, Copy)]
struct Job {
    mode: Mode,
    len: u64,
    /// Seed of the stream's pattern.
    data_seed: u64,
    /// Seed of the write/read sizes (the opener's; the acceptor derives its own from
    /// `data_seed`, which is all the prelude carries).
    io_seed: u64,
}

impl Job {
    fn encode(&self) -> [u8; PRELUDE] {
        let mut p = [0u8; PRELUDE];
        p[0] = MAGIC;
        p[1] = self.mode as u8;
        p[8..16].copy_from_slice(&self.len.to_le_bytes());
        p[16..24].copy_from_slice(&self.data_seed.to_le_bytes());
        p
    }
    fn decode(p: &[u8; PRELUDE]) -> Option<Self> {
        if p[0] != MAGIC {
            return None;
        }
        let len = u64::from_le_bytes(p[8..16].try_into().ok()?);
        let data_seed = u64::from_le_bytes(p[16..24].try_into().ok()?);
        Some(Self {
            mode: Mode::from_u8(p[1])?,
            len,
            data_seed,
            io_seed: data_seed ^ 0xACCE_97ED,
        })
    }
}

/// Progress of a case, for the message when it times out.
#[derive(Default)]
struct Progress {
    checked: AtomicU64,
    done: AtomicUsize,
}

/// Writes `len` pattern bytes in random sizes.
async fn send_pattern<W: AsyncWrite + Unpin>(
    w: &mut W,
    job: &Job,
    rng: &mut StdRng,
    frame: usize,
    what: &str,
) -> Result<(), String> {
    let mut buf = Vec::new();
    let mut off = 0u64;
    while off < job.len {
        let n = write_size(rng, frame, (job.len - off) as usize);
        buf.resize(n, 0);
        fill_pattern(job.data_seed, off, &mut buf);
        w.write_all(&buf)
            .await
            .map_err(|e| format!("{what}: write at byte {off} failed: {e}"))?;
        off += n as u64;
    }
    Ok(())
}

/// Reads exactly `len` pattern bytes in random sizes and checks them, then EOF.
async fn recv_pattern<R: AsyncRead + Unpin>(
    r: &mut R,
    job: &Job,
    rng: &mut StdRng,
    frame: usize,
    progress: &Progress,
    what: &str,
) -> Result<(), String> {
    let mut buf = Vec::new();
    let mut off = 0u64;
    loop {
        let want = read_size(rng, frame);
        buf.resize(want, 0);
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| format!("{what}: read at byte {off} of {} failed: {e}", job.len))?;
        if n == 0 {
            break;
        }
        check_pattern(job.data_seed, off, &buf[..n], what)?;
        off += n as u64;
        progress.checked.fetch_add(n as u64, Ordering::Relaxed);
        if off > job.len {
            return Err(format!("{what}: {off} bytes received, {} sent", job.len));
        }
    }
    if off != job.len {
        return Err(format!("{what}: EOF after {off} of {} bytes", job.len));
    }
    Ok(())
}

/// Reads until EOF, expecting exactly `expect`.
async fn expect_eof_after(s: &mut Stream, expect: &[u8], what: &str) -> Result<(), String> {
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .await
        .map_err(|e| format!("{what}: reading the end failed: {e}"))?;
    if got != expect {
        return Err(format!(
            "{what}: expected {expect:?} then EOF, got {} bytes",
            got.len()
        ));
    }
    Ok(())
}

/// The opening end of one stream.
async fn opener(
    sess: Session,
    job: Job,
    frame: usize,
    progress: Arc<Progress>,
    side: &'static str,
) -> Result<(), String> {
    let mut s = sess
        .open_stream()
        .await
        .map_err(|e| format!("{side}: open_stream failed: {e}"))?;
    let what = format!(
        "{side} opened stream {} ({:?}, {} bytes)",
        s.id(),
        job.mode,
        job.len
    );
    let mut rng = StdRng::seed_from_u64(job.io_seed);
    s.write_all(&job.encode())
        .await
        .map_err(|e| format!("{what}: prelude: {e}"))?;
    match job.mode {
        Mode::Echo => {
            let (mut rh, mut wh) = s.into_split();
            let mut rrng = StdRng::seed_from_u64(job.io_seed ^ 1);
            let send = async {
                send_pattern(&mut wh, &job, &mut rng, frame, &what).await?;
                wh.shutdown()
                    .await
                    .map_err(|e| format!("{what}: shutdown: {e}"))
            };
            let recv = recv_pattern(&mut rh, &job, &mut rrng, frame, &progress, &what);
            let (a, b) = tokio::join!(send, recv);
            a?;
            b?;
        }
        Mode::ToAcceptor => {
            send_pattern(&mut s, &job, &mut rng, frame, &what).await?;
            s.shutdown()
                .await
                .map_err(|e| format!("{what}: shutdown: {e}"))?;
            // The acceptor has checked everything.
            expect_eof_after(&mut s, b"K", &what).await?;
        }
        Mode::FromAcceptor => {
            recv_pattern(&mut s, &job, &mut rng, frame, &progress, &what).await?;
            s.shutdown()
                .await
                .map_err(|e| format!("{what}: shutdown: {e}"))?;
        }
    }
    progress.done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The accepting end of one stream.
async fn acceptor_stream(
    mut s: Stream,
    frame: usize,
    decoupled_echo: bool,
    progress: Arc<Progress>,
    side: &'static str,
) -> Result<(), String> {
    let id = s.id();
    let mut p = [0u8; PRELUDE];
    s.read_exact(&mut p)
        .await
        .map_err(|e| format!("{side} accepted stream {id}: prelude: {e}"))?;
    let job = Job::decode(&p)
        .ok_or_else(|| format!("{side} accepted stream {id}: CORRUPT prelude {p:02x?}"))?;
    let what = format!(
        "{side} accepted stream {id} ({:?}, {} bytes)",
        job.mode, job.len
    );
    let mut rng = StdRng::seed_from_u64(job.io_seed);
    match job.mode {
        Mode::Echo if decoupled_echo => {
            // Never stops reading: what is read waits in a queue for the writer.
            let (mut rh, mut wh) = s.into_split();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
            let mut rrng = StdRng::seed_from_u64(job.io_seed ^ 2);
            let read = async move {
                loop {
                    let mut buf = vec![0u8; read_size(&mut rrng, frame)];
                    let n = rh
                        .read(&mut buf)
                        .await
                        .map_err(|e| format!("{what}: echo read: {e}"))?;
                    if n == 0 {
                        return Ok::<(), String>(());
                    }
                    buf.truncate(n);
                    let _ = tx.send(buf);
                }
            };
            let write = async move {
                while let Some(b) = rx.recv().await {
                    wh.write_all(&b)
                        .await
                        .map_err(|e| format!("{side} accepted stream {id}: echo write: {e}"))?;
                }
                wh.shutdown()
                    .await
                    .map_err(|e| format!("{side} accepted stream {id}: shutdown: {e}"))
            };
            let (a, b) = tokio::join!(read, write);
            a?;
            b?;
        }
        Mode::Echo => {
            let mut buf = Vec::new();
            loop {
                buf.resize(read_size(&mut rng, frame), 0);
                let n = s
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("{what}: echo read: {e}"))?;
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n])
                    .await
                    .map_err(|e| format!("{what}: echo write: {e}"))?;
            }
            s.shutdown()
                .await
                .map_err(|e| format!("{what}: shutdown: {e}"))?;
        }
        Mode::ToAcceptor => {
            recv_pattern(&mut s, &job, &mut rng, frame, &progress, &what).await?;
            s.write_all(b"K")
                .await
                .map_err(|e| format!("{what}: ack: {e}"))?;
            s.shutdown()
                .await
                .map_err(|e| format!("{what}: shutdown: {e}"))?;
        }
        Mode::FromAcceptor => {
            send_pattern(&mut s, &job, &mut rng, frame, &what).await?;
            s.shutdown()
                .await
                .map_err(|e| format!("{what}: shutdown: {e}"))?;
            expect_eof_after(&mut s, b"", &what).await?;
        }
    }
    progress.done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Accepts `count` streams and serves them; the first failure ends it.
async fn acceptor(
    sess: Session,
    count: usize,
    frame: usize,
    decoupled_echo: bool,
    progress: Arc<Progress>,
    side: &'static str,
) -> Result<(), String> {
    let mut set = JoinSet::new();
    let mut accepted = 0;
    while accepted < count {
        tokio::select! {
            biased;
            s = sess.accept_stream() => {
                let s = s.map_err(|e| format!("{side}: accept_stream failed: {e}"))?;
                set.spawn(acceptor_stream(s, frame, decoupled_echo, progress.clone(), side));
                accepted += 1;
            }
            Some(r) = set.join_next() => r.map_err(|e| format!("{side}: task: {e}"))??,
        }
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| format!("{side}: task: {e}"))??;
    }
    Ok(())
}

// ---------------------------------------------------------------- cases

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    version: Version,
    seed: u64,
    /// Streams opened by each side.
    streams_per_side: usize,
    /// Total payload bytes of the case (all streams, all directions).
    total: u64,
    /// Which modes the streams get.
    modes: &'static [Mode],
    max_frame_size: usize,
    max_stream_buffer: usize,
    /// `None`: large enough that the token bucket never runs dry (see the top).
    max_receive_buffer: Option<usize>,
    autotune: bool,
    max_stream_send_buffer: usize,
    /// Transport ends of client and server.
    client: Chaos,
    server: Chaos,
    /// Capacity of the in-memory pipe in each direction.
    pipe: usize,
    /// Worker threads (0: current-thread runtime).
    threads: usize,
}

const ALL: &[Mode] = &[Mode::Echo, Mode::ToAcceptor, Mode::FromAcceptor];
const ONE_WAY: &[Mode] = &[Mode::ToAcceptor, Mode::FromAcceptor];
const ECHO: &[Mode] = &[Mode::Echo];

const NASTY_VEC: Chaos = Chaos {
    vectored: true,
    pending: 0.15,
    partial: 0.6,
    short_read: 0.5,
    stall: 0.02,
    stall_polls: 20,
};
const NASTY_FLAT: Chaos = Chaos {
    vectored: false,
    ..NASTY_VEC
};

/// Like a `KcpStream`: no vectored writes; a write takes everything (rarely only a
/// prefix: what fits in the send window) or, once the window is full, nothing for a
/// while; reads return pieces. Used with a pipe that never fills up, so that frames
/// are seldom cut and a mistake shows up as misplaced whole frames (wrong data,
/// `Error::Consumed`) rather than as a protocol error.
const KCP_LIKE: Chaos = Chaos {
    vectored: false,
    pending: 0.02,
    partial: 0.02,
    short_read: 0.9,
    stall: 0.1,
    stall_polls: 50,
};

fn base(name: &'static str, version: Version, seed: u64) -> Case {
    Case {
        name,
        version,
        seed,
        streams_per_side: 12,
        total: 8 << 20,
        modes: ALL,
        max_frame_size: 32768,
        max_stream_buffer: 65536,
        max_receive_buffer: None,
        autotune: true,
        max_stream_send_buffer: 256 * 1024,
        client: NASTY_VEC,
        server: NASTY_VEC,
        pipe: 64 * 1024,
        threads: 0,
    }
}

async fn run_case(case: Case) -> Result<String, String> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(case.seed);
    let n = case.streams_per_side;
    let mut jobs = Vec::new();
    let per_stream = case.total / (2 * n as u64);
    for i in 0..2 * n {
        let mode = case.modes[rng.random_range(0..case.modes.len())];
        // Echo sends its bytes twice: half as many.
        let share = if mode == Mode::Echo {
            per_stream / 2
        } else {
            per_stream
        };
        let len = match i % 8 {
            7 => rng.random_range(0..=16),
            _ => rng.random_range(share / 2..=share * 3 / 2),
        };
        jobs.push(Job {
            mode,
            len,
            data_seed: rng.random(),
            io_seed: rng.random(),
        });
    }
    let wire_bytes: u64 = jobs
        .iter()
        .map(|j| if j.mode == Mode::Echo { 2 * j.len } else { j.len } + PRELUDE as u64 + 1)
        .sum();
    let decoupled_echo = case.max_receive_buffer.is_some();
    let mut cfg = Config::default();
    cfg.version = case.version;
    cfg.keep_alive_disabled = true;
    cfg.max_frame_size = case.max_frame_size;
    cfg.max_stream_buffer = case.max_stream_buffer;
    cfg.stream_window_autotune = case.autotune;
    cfg.max_stream_send_buffer = case.max_stream_send_buffer;
    cfg.max_receive_buffer = case
        .max_receive_buffer
        .unwrap_or_else(|| (2 * wire_bytes as usize).max(4 << 20));

    let (a, b) = tokio::io::duplex(case.pipe);
    let (client, cdrv) = Session::new(
        Chaotic::new(a, case.client, case.seed ^ 0xC11E),
        cfg.clone(),
        Role::Client,
    )
    .map_err(|e| e.to_string())?;
    let (server, sdrv) = Session::new(
        Chaotic::new(b, case.server, case.seed ^ 0x5E7E),
        cfg.clone(),
        Role::Server,
    )
    .map_err(|e| e.to_string())?;
    // Drivers report how they ended (they must not end before the close).
    let (drv_tx, mut drv_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for (who, drv) in [("client", cdrv), ("server", sdrv)] {
        let tx = drv_tx.clone();
        let drv = tokio::spawn(drv);
        tokio::spawn(async move {
            // A panic in the driver is reported as such (JoinError).
            let r = drv.await;
            let _ = tx.send(format!("{who} driver ended: {r:?}"));
        });
    }

    let progress = Arc::new(Progress::default());
    let frame = case.max_frame_size;
    let mut set = JoinSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let (sess, side) = if i < n {
            (client.clone(), "client")
        } else {
            (server.clone(), "server")
        };
        set.spawn(opener(sess, *job, frame, progress.clone(), side));
    }
    set.spawn(acceptor(
        server.clone(),
        n,
        frame,
        decoupled_echo,
        progress.clone(),
        "server",
    ));
    set.spawn(acceptor(
        client.clone(),
        n,
        frame,
        decoupled_echo,
        progress.clone(),
        "client",
    ));

    let work = async {
        while let Some(r) = set.join_next().await {
            r.map_err(|e| format!("task: {e}"))??;
        }
        Ok::<(), String>(())
    };
    let res = tokio::time::timeout(CASE_TIMEOUT, async {
        tokio::select! {
            biased;
            r = work => r,
            Some(m) = drv_rx.recv() => Err(format!("too early: {m}")),
        }
    })
    .await;
    let checked = progress.checked.load(Ordering::Relaxed);
    let done = progress.done.load(Ordering::Relaxed);
    let prefix = format!(
        "[{} {:?} seed {:#x}] after {:.1?}: {done}/{} stream ends done, {:.1} of {:.1} MB checked",
        case.name,
        case.version,
        case.seed,
        started.elapsed(),
        4 * n,
        checked as f64 / 1e6,
        jobs.iter().map(|j| j.len).sum::<u64>() as f64 / 1e6,
    );
    let fail = match res {
        Err(_) => Some(format!("TIMED OUT (hang) after {CASE_TIMEOUT:?}")),
        Ok(Err(e)) => Some(e),
        Ok(Ok(())) => None,
    };
    if let Some(e) = fail {
        // A dead session explains the streams' errors: say why it died.
        let mut msg = format!("{prefix}: {e}");
        tokio::time::sleep(Duration::from_millis(10)).await;
        while let Ok(m) = drv_rx.try_recv() {
            msg += &format!("; {m}");
        }
        return Err(msg);
    }
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let (a, b) = tokio::join!(client.close(), server.close());
        (a, b)
    })
    .await;
    if closed.is_err() {
        return Err(format!("{prefix}: close TIMED OUT"));
    }
    Ok(format!(
        "{prefix}: ok ({wire_bytes} payload bytes on the wire)"
    ))
}

fn run(cases: &[Case]) {
    let mut failures = Vec::new();
    for &case in cases {
        let rt = if case.threads == 0 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(case.threads);
            b
        }
        .enable_all()
        .build()
        .unwrap();
        match rt.block_on(run_case(case)) {
            Ok(m) => eprintln!("{m}"),
            Err(m) => {
                eprintln!("{m}");
                failures.push(m);
            }
        }
        rt.shutdown_timeout(Duration::from_secs(1));
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const SEEDS: [u64; 3] = [0x0051_A7ED, 0xC0FF_EE42, 7];

fn each_seed(c: impl Fn(u64) -> Case) -> Vec<Case> {
    SEEDS.iter().map(|&s| c(s)).collect()
}

/// Vectored transport on both ends, default frames and windows.
#[test]
fn v1_vectored() {
    run(&each_seed(|s| base("vectored", Version::V1, s)));
}

#[test]
fn v2_vectored() {
    run(&each_seed(|s| base("vectored", Version::V2, s)));
}

/// A transport without vectored writes (as `KcpStream`) on both ends.
#[test]
fn v1_not_vectored() {
    run(&each_seed(|s| Case {
        client: NASTY_FLAT,
        server: NASTY_FLAT,
        ..base("not-vectored", Version::V1, s)
    }));
}

#[test]
fn v2_not_vectored() {
    run(&each_seed(|s| Case {
        client: NASTY_FLAT,
        server: NASTY_FLAT,
        ..base("not-vectored", Version::V2, s)
    }));
}

/// v2 with small fixed windows and small odd frames: UPD after every few frames.
#[test]
fn v2_small_windows() {
    run(&each_seed(|s| Case {
        max_frame_size: 1000,
        max_stream_buffer: 8192,
        autotune: false,
        max_stream_send_buffer: 16 * 1024,
        client: NASTY_FLAT,
        server: NASTY_VEC,
        total: 6 << 20,
        ..base("small-windows", Version::V2, s)
    }));
}

/// Largest frames, auto-tuned windows up to 1 MiB, a pipe of a few KB.
#[test]
fn v2_big_frames_small_pipe() {
    run(&each_seed(|s| Case {
        max_frame_size: 65535,
        max_stream_buffer: 1 << 20,
        client: NASTY_VEC,
        server: NASTY_FLAT,
        pipe: 4096,
        ..base("big-frames", Version::V2, s)
    }));
}

/// A small session receive buffer: reading the transport pauses over and over. Only
/// readers that never stop reading (see the top).
#[test]
fn small_receive_buffer() {
    let mut cases = Vec::new();
    for v in [Version::V1, Version::V2] {
        cases.extend(each_seed(|s| Case {
            streams_per_side: 8,
            max_frame_size: 4096,
            max_stream_buffer: 32 * 1024,
            max_receive_buffer: Some(128 * 1024),
            modes: ONE_WAY,
            client: NASTY_FLAT,
            server: NASTY_FLAT,
            total: 6 << 20,
            ..base("small-recv-buffer", v, s)
        }));
    }
    // Echo too, with echo servers that keep reading while they write.
    cases.extend(each_seed(|s| Case {
        max_receive_buffer: Some(256 * 1024),
        max_stream_buffer: 16 * 1024,
        ..base("small-recv-buffer-echo", Version::V2, s)
    }));
    run(&cases);
}

/// Two worker threads: a stream's own writes race with the driver's for real.
#[test]
fn multi_thread() {
    let mut cases = Vec::new();
    for v in [Version::V1, Version::V2] {
        cases.extend(each_seed(|s| Case {
            threads: 2,
            client: NASTY_FLAT,
            server: NASTY_VEC,
            total: 6 << 20,
            ..base("multi-thread", v, s)
        }));
    }
    run(&cases);
}

/// One or two busy streams per side (the driver's queue is often empty, so a stream's
/// writes go straight to the transport) over a KCP-like transport, echo and one-way.
#[test]
fn kcp_like_few_streams() {
    let mut cases = Vec::new();
    for v in [Version::V1, Version::V2] {
        cases.extend(each_seed(|s| Case {
            streams_per_side: 1,
            modes: ECHO,
            client: KCP_LIKE,
            server: KCP_LIKE,
            total: 4 << 20,
            pipe: 64 << 20,
            ..base("kcp-like-1-echo", v, s)
        }));
        cases.extend(each_seed(|s| Case {
            streams_per_side: 2,
            client: KCP_LIKE,
            server: KCP_LIKE,
            total: 4 << 20,
            pipe: 64 << 20,
            ..base("kcp-like-2", v, s)
        }));
    }
    run(&cases);
}
