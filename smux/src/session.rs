//! The session: user handle ([`Session`]) and the driver that owns the transport.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use crate::config::{Config, ConfigError, Version};
use crate::error::Error;
use crate::flow::{AUTOTUNE_INITIAL_WINDOW, QUIET};
use crate::frame::{self, Cmd, Frame, HEADER_SIZE};
use crate::read::{DirectRead, POOL_IDLE, RecvPool};
use crate::shared::{Inner, Shared, set_waker};
use crate::stream::Stream;
use crate::write::{MAX_IOVECS, WriteSide};

/// Which end of the connection this session is; decides stream id parity (E.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens odd ids 3, 5, 7, …
    Client,
    /// Opens even ids 2, 4, 6, …
    Server,
}

/// A multiplexed session over one reliable, ordered byte stream (TCP, TLS, KCP, …).
///
/// The transport is owned by a driver future ([`Driver`]) that reads and writes it; the
/// `Session` and every [`Stream`] are handles to shared state. [`Session::client`] and
/// [`Session::server`] spawn the driver on the current tokio runtime;
/// [`Session::new`] hands it to you instead.
///
/// Dropping every `Session` handle does not kill streams still in use: the session
/// closes (flushing what was written) once the last `Session` handle *and* the last
/// stream are gone. [`Session::close`] closes it at once.
#[derive(Debug)]
pub struct Session {
    shared: Arc<Shared>,
}

impl Clone for Session {
    fn clone(&self) -> Self {
        self.shared.lock().session_handles += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut g = self.shared.lock();
        g.session_handles = g.session_handles.saturating_sub(1);
        if g.session_handles == 0 {
            // Nobody can accept any more: refuse the backlog (FIN each).
            for sid in std::mem::take(&mut g.accept.queue) {
                g.release_stream(sid);
            }
            if g.live_streams() == 0 {
                g.closing = true;
            }
            drop(g);
            self.shared.driver.wake();
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The future that runs a session: it reads frames, dispatches them to streams, writes
/// queued frames and runs keepalive. It resolves when the session ends, with `Ok(())`
/// after a local close and the fatal error otherwise. Spawn it (or poll it) for the
/// session to make progress.
#[must_use = "the session does nothing unless its driver is polled"]
pub struct Driver {
    fut: Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Future for Driver {
    type Output = Result<(), Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

impl Session {
    /// Starts a client session over `io` and spawns its driver with `tokio::spawn`.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does); use [`Session::new`] there.
    pub fn client<T>(io: T, config: Config) -> Result<Session, ConfigError>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (s, d) = Self::new(io, config, Role::Client)?;
        tokio::spawn(d);
        Ok(s)
    }

    /// Starts a server session over `io` and spawns its driver with `tokio::spawn`.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does); use [`Session::new`] there.
    pub fn server<T>(io: T, config: Config) -> Result<Session, ConfigError>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (s, d) = Self::new(io, config, Role::Server)?;
        tokio::spawn(d);
        Ok(s)
    }

    /// Creates a session and returns its [`Driver`] for you to spawn or poll.
    ///
    /// Fails if the config is invalid (Go's `VerifyConfig`), or asks a client to
    /// auto-detect the version.
    pub fn new<T>(io: T, config: Config, role: Role) -> Result<(Session, Driver), ConfigError>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        config.validate()?;
        if role == Role::Client && config.version == Version::Auto {
            return Err(ConfigError::AutoVersionOnClient);
        }
        let inner = Inner::new(config.version.byte(), role == Role::Client, &config);
        let (rd, wr) = tokio::io::split(io);
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            writer: Mutex::new(WriteSide::new(Box::pin(wr))),
            driver: AtomicWaker::new(),
            config,
        });
        let conn = Conn::new(rd, shared.clone());
        let fut = Box::pin(conn.run());
        Ok((Session { shared }, Driver { fut }))
    }

    /// Records the transport's addresses so [`local_addr`](Self::local_addr) and
    /// [`peer_addr`](Self::peer_addr) (and those of streams) can report them; the
    /// session cannot ask a generic transport for them itself.
    pub fn with_addrs(self, local: Option<SocketAddr>, peer: Option<SocketAddr>) -> Self {
        {
            let mut g = self.shared.lock();
            g.local_addr = local;
            g.peer_addr = peer;
        }
        self
    }

    /// Local address of the transport, if given with [`with_addrs`](Self::with_addrs).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.lock().local_addr
    }

    /// Peer address of the transport, if given with [`with_addrs`](Self::with_addrs).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.lock().peer_addr
    }

    /// Opens a stream: allocates the next id (odd on a client, even on a server) and
    /// queues its SYN ahead of any data. No reply is expected (E.3), so data may follow
    /// at once.
    ///
    /// Fails with [`Error::GoAway`] once the ids are exhausted (they are never reused).
    /// On an auto-detecting server it waits until the peer's first frame fixed the
    /// version.
    ///
    /// # Cancel safety
    /// Cancel safe: a stream is allocated only in the poll that returns it.
    pub async fn open_stream(&self) -> Result<Stream, Error> {
        poll_fn(|cx| self.poll_open_stream(cx)).await
    }

    /// Poll form of [`open_stream`](Self::open_stream).
    pub fn poll_open_stream(&self, cx: &mut Context<'_>) -> Poll<Result<Stream, Error>> {
        let mut g = self.shared.lock();
        if let Some(e) = &g.error {
            return Poll::Ready(Err(e.clone()));
        }
        if g.closing {
            return Poll::Ready(Err(Error::SessionClosed));
        }
        if g.version.is_none() {
            g.open_wakers.push(cx.waker().clone());
            return Poll::Pending;
        }
        let sid = loop {
            if g.go_away {
                return Poll::Ready(Err(Error::GoAway));
            }
            g.next_id = g.next_id.wrapping_add(2);
            let sid = g.next_id;
            if sid < 2 {
                g.go_away = true;
                continue;
            }
            // An id the peer already used (a misbehaving peer); skip it rather than
            // clobber that stream.
            if !g.streams.contains_key(&sid) {
                break sid;
            }
        };
        let window = initial_window(&self.shared.config);
        g.insert_stream(sid, window);
        g.queue_control(Cmd::Syn, sid);
        g.announce_window(sid, &self.shared.config);
        drop(g);
        self.shared.driver.wake();
        Poll::Ready(Ok(Stream::new(self.shared.clone(), sid)))
    }

    /// Waits for the next stream opened by the peer.
    ///
    /// Fails with the session's error once it is dead.
    ///
    /// # Cancel safety
    /// Cancel safe: a stream is taken from the backlog only in the poll that returns it.
    pub async fn accept_stream(&self) -> Result<Stream, Error> {
        poll_fn(|cx| self.poll_accept_stream(cx)).await
    }

    /// Poll form of [`accept_stream`](Self::accept_stream).
    pub fn poll_accept_stream(&self, cx: &mut Context<'_>) -> Poll<Result<Stream, Error>> {
        let mut g = self.shared.lock();
        if let Some(sid) = g.accept.queue.pop_front() {
            let was_full = g.accept.queue.len() + 1 >= self.shared.config.accept_backlog;
            drop(g);
            if was_full {
                self.shared.driver.wake();
            }
            return Poll::Ready(Ok(Stream::new(self.shared.clone(), sid)));
        }
        if let Some(e) = &g.error {
            return Poll::Ready(Err(e.clone()));
        }
        if g.closing {
            return Poll::Ready(Err(Error::SessionClosed));
        }
        set_waker(&mut g.accept.waker, cx.waker());
        Poll::Pending
    }

    /// Number of open streams (opened or accepted or waiting to be accepted, and not
    /// yet dropped).
    pub fn num_streams(&self) -> usize {
        let g = self.shared.lock();
        if g.error.is_some() {
            return 0;
        }
        g.live_streams()
    }

    /// True once the session is closing or dead.
    pub fn is_closed(&self) -> bool {
        let g = self.shared.lock();
        g.closing || g.error.is_some()
    }

    /// The version the session speaks: the configured one, or on an auto-detecting
    /// server the detected one (`None` until the first frame arrived).
    pub fn version(&self) -> Option<Version> {
        match self.shared.lock().version {
            Some(1) => Some(Version::V1),
            Some(2) => Some(Version::V2),
            _ => None,
        }
    }

    /// Closes the session: frames already committed by stream writes (and FINs of
    /// dropped streams) are flushed, then the transport is shut down and every stream
    /// fails with [`Error::SessionClosed`] (buffered received data can still be read).
    /// Unlike Go, no write already accepted is silently dropped; the flush gives up after
    /// `keep_alive_timeout` (10 s with keepalive disabled) if the peer does not read.
    ///
    /// Returns `Ok(())` when the session ended by this close, or the error that killed
    /// it before.
    ///
    /// # Cancel safety
    /// The close starts at the first poll and continues in the driver if the future is
    /// dropped; calling `close` again waits for the same end.
    pub async fn close(&self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_close(cx)).await
    }

    /// Poll form of [`close`](Self::close).
    pub fn poll_close(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut g = self.shared.lock();
        if g.closed {
            return Poll::Ready(match &g.error {
                Some(Error::SessionClosed) | None => Ok(()),
                Some(e) => Err(e.clone()),
            });
        }
        let start = !g.closing;
        g.closing = true;
        g.close_wakers.push(cx.waker().clone());
        drop(g);
        if start {
            self.shared.driver.wake();
        }
        Poll::Pending
    }

    #[cfg(test)]
    pub(crate) fn set_next_id(&self, id: u32) {
        self.shared.lock().next_id = id;
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

pub(crate) fn initial_window(config: &Config) -> u32 {
    let max = config.max_stream_buffer as u32;
    if config.stream_window_autotune {
        AUTOTUNE_INITIAL_WINDOW.min(max)
    } else {
        max
    }
}

/// Bytes asked from the transport per read, at most: the read size doubles (from
/// [`READ_MIN`]) while reads fill it and halves when the transport runs dry.
const READ_CHUNK: usize = 64 * 1024;
/// Smallest read size. An idle session keeps no read buffer at all (it is released
/// whenever the transport has nothing and no partial frame is buffered), so idle
/// sessions cost little; a busy one is back at [`READ_CHUNK`] after a few reads.
const READ_MIN: usize = 1024;
/// PSH payloads at least this large are read into a buffer of their own.
const DIRECT_MIN: usize = 8 * 1024;
/// PSH payloads at least this large are kept in the read chunk without copying.
const ZERO_COPY_MIN: usize = READ_CHUNK / 2;
/// Bytes of frames gathered for one (vectored) write.
const WRITE_BATCH: usize = 256 * 1024;
/// Driver loop iterations before yielding to the scheduler.
const BUDGET: usize = 64;

/// The driver's private half: the transport's read half and the read buffer (the write
/// half is shared with the streams, see `write.rs`).
struct Conn<T> {
    io: ReadHalf<T>,
    shared: Arc<Shared>,
    read_buf: BytesMut,
    /// Current read size, in `READ_MIN..=READ_CHUNK`.
    read_size: usize,
    read_eof: bool,
    ping: Option<Interval>,
    timeout: Option<Interval>,
    close_deadline: Option<Pin<Box<Sleep>>>,
    wakers: Vec<Waker>,
    /// The frame at the front of `read_buf` was read into a buffer of its own.
    direct_own: bool,
    /// A large PSH being read into a pooled buffer.
    direct: Option<DirectRead>,
    pool: Arc<RecvPool>,
    /// Empties the pool once it has not been used for [`POOL_IDLE`].
    pool_timer: Option<Pin<Box<Sleep>>>,
    /// Reading is paused by back-pressure (see [`Conn::must_pause`]).
    read_paused: bool,
    /// v2: data frames wait for send credit; re-checked when this fires (streams that
    /// turn quiet release their unreported bytes, see `flow`).
    credit_retry: Option<Pin<Box<Sleep>>>,
    /// The last gather left streams waiting for credit.
    credit_blocked: bool,
}

impl<T: AsyncRead + AsyncWrite + Send + 'static> Conn<T> {
    fn new(io: ReadHalf<T>, shared: Arc<Shared>) -> Self {
        let pool = RecvPool::new(shared.config.max_frame_size);
        Self {
            io,
            shared,
            read_buf: BytesMut::new(),
            read_size: READ_MIN,
            read_eof: false,
            ping: None,
            timeout: None,
            close_deadline: None,
            wakers: Vec::new(),
            direct_own: false,
            direct: None,
            pool,
            pool_timer: None,
            read_paused: false,
            credit_retry: None,
            credit_blocked: false,
        }
    }

    async fn run(mut self) -> Result<(), Error> {
        let cfg = &self.shared.config;
        if !cfg.keep_alive_disabled {
            let now = Instant::now();
            let mut p =
                tokio::time::interval_at(now + cfg.keep_alive_interval, cfg.keep_alive_interval);
            p.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut t =
                tokio::time::interval_at(now + cfg.keep_alive_timeout, cfg.keep_alive_timeout);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            self.ping = Some(p);
            self.timeout = Some(t);
        }
        let res = poll_fn(|cx| self.poll_drive(cx)).await;
        let res = match res {
            Ok(()) => {
                // Graceful: every committed frame is out; shut the transport down.
                let shared = self.shared.clone();
                let _ = poll_fn(|cx| shared.lock_writer().poll_shutdown_io(cx)).await;
                Ok(())
            }
            Err(e) => Err(e),
        };
        // The transport goes with the driver (the read half when `self` is dropped).
        self.shared.lock_writer().close();
        self.pool.close();
        let mut wakers = std::mem::take(&mut self.wakers);
        {
            let mut g = self.shared.lock();
            match &res {
                Ok(()) => g.fail(Error::SessionClosed, &mut wakers),
                Err(e) => g.fail(e.clone(), &mut wakers),
            }
            g.finish(&mut wakers);
        }
        wakers.into_iter().for_each(Waker::wake);
        res
    }

    fn wake_all(&mut self) {
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }

    /// One turn of the driver. `Ready(Ok)` after a completed graceful close,
    /// `Ready(Err)` on a fatal error.
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.shared.driver.register(cx.waker());
        for _ in 0..BUDGET {
            let mut progress = false;
            let closing = {
                let g = self.shared.lock();
                if let Some(e) = &g.error {
                    return Poll::Ready(Err(e.clone()));
                }
                g.closing
            };
            if let Err(e) = self.poll_timers(cx, closing) {
                return Poll::Ready(Err(e));
            }
            match self.poll_read_side(cx) {
                Ok(p) => progress |= p,
                Err(e) => return Poll::Ready(Err(e)),
            }
            self.wake_all();
            match self.poll_write_side(cx) {
                Ok(p) => progress |= p,
                Err(e) => return Poll::Ready(Err(e)),
            }
            self.wake_all();
            let written = {
                let w = self.shared.lock_writer();
                w.out_is_empty() && !w.need_flush()
            };
            if closing && written {
                let g = self.shared.lock();
                let idle = g.shaper.is_idle();
                drop(g);
                if idle {
                    return Poll::Ready(Ok(()));
                }
            }
            if !progress {
                self.release_idle();
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Gives back write-side memory a burst left behind (an idle session should cost
    /// little; the read buffer is released by the read side itself).
    fn release_idle(&mut self) {
        self.shared.lock_writer().release_idle();
        if self.wakers.capacity() > 8 {
            self.wakers = Vec::new();
        }
    }

    fn poll_timers(&mut self, cx: &mut Context<'_>, closing: bool) -> Result<(), Error> {
        if closing && self.close_deadline.is_none() {
            let cfg = &self.shared.config;
            let d = if cfg.keep_alive_disabled {
                Duration::from_secs(10)
            } else {
                cfg.keep_alive_timeout
            };
            self.close_deadline = Some(Box::pin(tokio::time::sleep(d)));
        }
        if let Some(d) = &mut self.close_deadline
            && d.as_mut().poll(cx).is_ready()
        {
            return Err(Error::SessionClosed);
        }
        if let Some(d) = &mut self.credit_retry
            && d.as_mut().poll(cx).is_ready()
        {
            // Gathering below re-checks the credit and re-arms if still blocked.
            self.credit_retry = None;
        }
        if let Some(t) = &mut self.pool_timer
            && t.as_mut().poll(cx).is_ready()
        {
            self.pool_timer = None;
            self.pool.idle_tick();
        }
        if self.pool_timer.is_none() && self.pool.has_free() {
            let mut t = Box::pin(tokio::time::sleep(POOL_IDLE));
            // Registers the wake-up; it cannot be ready yet.
            let _ = t.as_mut().poll(cx);
            self.pool_timer = Some(t);
        }
        if let Some(p) = &mut self.ping {
            while p.poll_tick(cx).is_ready() {
                let mut g = self.shared.lock();
                if g.version.is_some() && !g.closing {
                    g.queue_control(Cmd::Nop, 0);
                }
            }
        }
        if let Some(t) = &mut self.timeout {
            while t.poll_tick(cx).is_ready() {
                let mut g = self.shared.lock();
                let ready = std::mem::replace(&mut g.data_ready, false);
                // Reading may be paused by back-pressure (receive buffer or backlog
                // full); then silence is ours, not the peer's (Go checks the bucket).
                if !ready && !self.read_paused {
                    return Err(Error::KeepAliveTimeout);
                }
            }
        }
        Ok(())
    }

    /// Parses buffered frames and reads more while the bucket and backlog allow.
    fn poll_read_side(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let mut progress = false;
        for _ in 0..16 {
            let blocked = self.parse_frames()?;
            if blocked {
                return Ok(progress);
            }
            if self.read_eof {
                return Err(Error::ConnectionClosed);
            }
            if self.direct.is_none() {
                // A large PSH whose payload is not all here: read exactly the rest of it
                // plus the next header into a pooled buffer of its own. The payload is
                // then handed to the stream without any copy, and the next read starts
                // aligned.
                if let Some(Ok(h)) = frame::peek_header(&self.read_buf)
                    && h.cmd == Cmd::Psh
                    && h.payload_len() >= DIRECT_MIN
                    && self.pool.fits(2 * HEADER_SIZE + h.payload_len())
                {
                    self.direct = Some(DirectRead::new(
                        &self.pool,
                        &self.read_buf,
                        h.stream_id,
                        h.payload_len(),
                    ));
                    self.read_buf.clear();
                }
            }
            let len = self.read_buf.len();
            let (res, offered) = if let Some(d) = &mut self.direct {
                let dst = d.unfilled();
                let offered = dst.len();
                debug_assert!(offered > 0);
                let mut rb = ReadBuf::new(dst);
                let res = match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                };
                if let Poll::Ready(Ok(n)) = res {
                    d.filled += n;
                }
                (res, offered)
            } else {
                let header = match frame::peek_header(&self.read_buf) {
                    Some(Ok(h)) => Some(h),
                    _ => None,
                };
                let res = match header {
                    // A large PSH that does not fit a pooled buffer: a buffer of its
                    // own, as above.
                    Some(h) if h.cmd == Cmd::Psh && h.payload_len() >= DIRECT_MIN => {
                        let want = 2 * HEADER_SIZE + h.payload_len();
                        if self.read_buf.capacity() < want {
                            let mut nb = BytesMut::with_capacity(want);
                            nb.extend_from_slice(&self.read_buf);
                            self.read_buf = nb;
                        }
                        self.direct_own = true;
                        let limit = want.saturating_sub(len);
                        let mut limited = (&mut self.read_buf).limit(limit);
                        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut limited)
                    }
                    need => {
                        // Size chunks so a chunk is never much larger than READ_CHUNK
                        // (plus one maximal frame): that bounds what zero-copy payloads
                        // can pin.
                        let need = need.map_or(0, |h| HEADER_SIZE + h.payload_len());
                        let size = self.read_size;
                        if self.read_buf.capacity() - len < size / 4
                            || self.read_buf.capacity() < need
                        {
                            let target = size.max(need).max(len + size / 4);
                            self.read_buf.reserve(target - len);
                        }
                        tokio_util::io::poll_read_buf(
                            Pin::new(&mut self.io),
                            cx,
                            &mut self.read_buf,
                        )
                    }
                };
                (res, self.read_buf.capacity() - len)
            };
            match res {
                Poll::Pending => {
                    self.read_size = (self.read_size / 2).max(READ_MIN);
                    if self.read_buf.is_empty() {
                        // Nothing buffered: hold no memory while waiting.
                        self.read_buf = BytesMut::new();
                    }
                    return Ok(progress);
                }
                Poll::Ready(Ok(0)) => self.read_eof = true,
                Poll::Ready(Ok(n)) => {
                    progress = true;
                    if n >= offered {
                        self.read_size = (self.read_size * 2).min(READ_CHUNK);
                    }
                }
                Poll::Ready(Err(e)) => return Err(e.into()),
            }
        }
        Ok(progress)
    }

    /// Dispatches every complete frame in `read_buf`. Returns true if reading must
    /// pause (see [`must_pause`](Self::must_pause)).
    fn parse_frames(&mut self) -> Result<bool, Error> {
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let mut g = shared.lock();
        let pooled_ready = self.direct.as_ref().is_some_and(DirectRead::complete);
        if self.read_buf.len() < HEADER_SIZE && !pooled_ready {
            self.read_paused = self.must_pause(&g);
            return Ok(self.read_paused);
        }
        if g.version.is_none() {
            let Some(first) = self.read_buf.get(..HEADER_SIZE) else {
                return Ok(false);
            };
            let mut raw = [0u8; HEADER_SIZE];
            raw.copy_from_slice(first);
            if !(raw[0] == 1 || raw[0] == 2) || raw[1] > Cmd::Upd as u8 {
                return Err(Error::NotSmuxPeer(raw));
            }
            g.version = Some(raw[0]);
            self.wakers.append(&mut g.open_wakers);
        }
        let ver = g.ver();
        let now = Instant::now();
        loop {
            // A large payload read into a pooled buffer (see `poll_read_side`; reading
            // was not paused before its header, so it is not now).
            let pooled = match self.direct.take_if(|d| d.complete()) {
                Some(d) => {
                    let sid = d.sid;
                    let (payload, extra) = d.finish(&self.pool);
                    debug_assert!(self.read_buf.is_empty());
                    self.read_buf.extend_from_slice(&extra);
                    Some(Frame::Psh(sid, payload))
                }
                None if self.direct.is_some() => return Ok(false),
                None => None,
            };
            let (frame, direct) = match pooled {
                Some(f) => (f, true),
                None => {
                    self.read_paused = self.must_pause(&g);
                    if self.read_paused {
                        return Ok(true);
                    }
                    match frame::decode_frame(&mut self.read_buf, ver)? {
                        // Only the first frame after a direct read sits in a buffer of
                        // its own.
                        Some(f) => (f, std::mem::take(&mut self.direct_own)),
                        None => return Ok(false),
                    }
                }
            };
            g.data_ready = true;
            match frame {
                Frame::Nop(_) => {}
                Frame::Syn(sid) => {
                    if g.streams.contains_key(&sid) || g.closing {
                        continue;
                    }
                    if g.session_handles == 0 {
                        // Nobody will ever accept it: refuse it at once.
                        g.queue_control(Cmd::Fin, sid);
                        continue;
                    }
                    g.insert_stream(sid, initial_window(cfg));
                    g.announce_window(sid, cfg);
                    g.accept.queue.push_back(sid);
                    self.wakers.extend(g.accept.waker.take());
                }
                Frame::Fin(sid) => g.on_fin(sid, now, &mut self.wakers),
                Frame::Psh(sid, data) => {
                    let len = data.len();
                    if len == 0 {
                        continue;
                    }
                    let Some(st) = g.streams.get_mut(&sid) else {
                        continue;
                    };
                    if st.dropped {
                        continue;
                    }
                    // Large payloads stay in the read chunk they arrived in (no copy);
                    // small ones are copied out so that they cannot pin a whole chunk:
                    // a chunk (at most ~80 KiB) pinned by a payload holds at least 32 KiB
                    // of counted tokens, so memory stays below 3x the token bucket.
                    let data = if direct || len >= ZERO_COPY_MIN {
                        data
                    } else {
                        Bytes::copy_from_slice(&data)
                    };
                    st.rx.queue.push_back(data);
                    st.rx.len += len;
                    st.rx.flow.on_data(len);
                    self.wakers.extend(st.rx.waker.take());
                    g.bucket -= len as i64;
                }
                Frame::Upd {
                    stream_id,
                    consumed,
                    window,
                } => {
                    if let Some(w) = g.on_update(stream_id, consumed, window, now) {
                        self.wakers.push(w);
                    }
                }
            }
        }
    }

    /// Must reading pause before the next frame? As in Go when the accept backlog is
    /// full or (v1) the receive buffer is used up. In v2 a full receive buffer pauses
    /// reading only before data the peer was not entitled to send: anything within a
    /// window we gave is read, so the peer's window updates behind it always get
    /// through (see `flow`).
    fn must_pause(&self, g: &Inner) -> bool {
        if g.accept.queue.len() >= self.shared.config.accept_backlog {
            return true;
        }
        if g.bucket > 0 {
            return false;
        }
        if !g.is_v2() {
            return true;
        }
        match frame::peek_header(&self.read_buf) {
            Some(Ok(h)) if h.cmd == Cmd::Psh && h.length > 0 => match g.streams.get(&h.stream_id) {
                Some(st) if !st.dropped => !st.rx.flow.within_entitlement(h.payload_len()),
                // Discarded on arrival: costs nothing.
                _ => false,
            },
            // Need the header to decide; pausing before it is complete would stall.
            _ => false,
        }
    }

    /// Moves frames from the shaper into `out` and writes them.
    fn poll_write_side(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let shared = self.shared.clone();
        let mut w = shared.lock_writer();
        let mut progress = false;
        loop {
            if w.out_bytes() < WRITE_BATCH {
                self.gather(&mut w);
            }
            if w.out_is_empty() {
                break;
            }
            match w.poll_write_out(cx, &mut progress) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Ready(Ok(())) => {}
            }
        }
        if self.credit_blocked && self.credit_retry.is_none() {
            let mut retry = Box::pin(tokio::time::sleep(QUIET));
            // Registers the wake-up; it cannot be ready yet.
            let _ = retry.as_mut().poll(cx);
            self.credit_retry = Some(retry);
        }
        if let Poll::Ready(Err(e)) = w.poll_flush_io(cx) {
            return Err(e.into());
        }
        Ok(progress)
    }

    /// Takes control frames first, then data frames from the stream that has sent
    /// least (E.6), until a batch is ready. In v2 a data frame also needs send credit
    /// (see `flow`): a stream whose next frame has none waits in `waiting` (the others
    /// go on) and comes back when credit is released.
    fn gather(&mut self, w: &mut WriteSide) {
        let shared = self.shared.clone();
        let mut g = shared.lock();
        if !g.shaper.control.is_empty() {
            w.push_out(g.shaper.control.split().freeze());
        }
        let v2 = g.is_v2();
        let now = Instant::now();
        // Computed only when the credit runs out (it walks every stream).
        let mut unreported: Option<u64> = None;
        let mut allows = |g: &Inner, len: u32| {
            g.credit.allows(len, 0)
                || g.credit
                    .allows(len, *unreported.get_or_insert_with(|| g.unreported(now)))
        };
        // Streams waiting for credit come back, first come first served, while it lasts.
        while let Some(&sid) = g.shaper.waiting.front() {
            let next = g.streams.get(&sid).and_then(|st| {
                let (_, payload) = st.tx.pending.peek()?;
                Some((payload as u32, st.tx.prio))
            });
            match next {
                Some((extra, _)) if !allows(&g, extra) => break,
                Some((_, prio)) => {
                    g.shaper.waiting.pop_front();
                    g.shaper.push(prio, sid);
                }
                None => {
                    g.shaper.waiting.pop_front();
                    if let Some(st) = g.streams.get_mut(&sid) {
                        st.tx.in_heap = false;
                    }
                    g.reap(sid);
                }
            }
        }
        while w.out_bytes() < WRITE_BATCH && w.out_len() < MAX_IOVECS {
            let Some(entry) = g.shaper.heap.pop() else {
                break;
            };
            let sid = entry.sid;
            let inner = &mut *g;
            let Some(st) = inner.streams.get_mut(&sid) else {
                continue;
            };
            let Some((_, payload)) = st.tx.pending.peek() else {
                st.tx.in_heap = false;
                continue;
            };
            if v2 && !st.tx.flow.is_peer_closed() && !allows(inner, payload as u32) {
                inner.shaper.waiting.push_back(sid);
                continue;
            }
            let inner = &mut *g;
            let Some(st) = inner.streams.get_mut(&sid) else {
                continue;
            };
            st.tx.in_heap = false;
            let Some((frame, payload)) = st.tx.pending.pop_frame() else {
                continue;
            };
            if v2 {
                let before = st.tx.flow.inflight();
                st.tx.flow.on_sent(payload as u32);
                inner.credit.adjust(before, st.tx.flow.inflight());
                st.tx.prio = st.tx.prio.wrapping_add(payload as u32);
            } else {
                st.tx.prio = st.tx.prio.wrapping_add(1);
            }
            // Wake a blocked writer only once half the send buffer is free (or a
            // flush is done), not for every frame: fewer task switches per byte.
            let more = !st.tx.pending.is_empty();
            if !more || st.tx.pending.payload() <= shared.config.max_stream_send_buffer / 2 {
                self.wakers.extend(st.tx.waker.take());
            }
            w.push_out(frame);
            if more {
                g.schedule(sid);
            } else {
                g.reap(sid);
            }
        }
        // Waiting streams are re-checked when a UPD or FIN releases credit (the read
        // side runs first in every driver turn), or when streams may have turned quiet.
        self.credit_blocked = !g.shaper.waiting.is_empty();
        g.check_credit();
    }
}
