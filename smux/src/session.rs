//! The session: user handle ([`Session`]) and the driver that owns the transport.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use crate::config::{Config, ConfigError, Version};
use crate::error::Error;
use crate::frame::{self, Cmd, HEADER_SIZE};
use crate::read::{Chunks, ZERO_COPY_MIN};
use crate::shared::{AUTOTUNE_INITIAL_WINDOW, Inner, Shared, set_waker};
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
            for sid in std::mem::take(&mut g.accept_queue) {
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
        let inner = Inner::new(
            config.version.byte(),
            role == Role::Client,
            config.max_receive_buffer,
        );
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
        g.announce_window(sid, self.shared.config.max_receive_buffer);
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
        if let Some(sid) = g.accept_queue.pop_front() {
            let was_full = g.accept_queue.len() + 1 >= self.shared.config.accept_backlog;
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
        set_waker(&mut g.accept_waker, cx.waker());
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

/// Bytes of frames gathered for one (vectored) write.
const WRITE_BATCH: usize = 256 * 1024;
/// Driver loop iterations before yielding to the scheduler.
const BUDGET: usize = 64;

/// The driver's private half: the transport's read half and the read buffer.
struct Conn<T> {
    io: ReadHalf<T>,
    shared: Arc<Shared>,
    rb: Chunks,
    read_eof: bool,
    ping: Option<Interval>,
    timeout: Option<Interval>,
    close_deadline: Option<Pin<Box<Sleep>>>,
    wakers: Vec<Waker>,
    /// Inside a PSH payload whose header was consumed: stream id and payload bytes
    /// still to come.
    psh_rest: Option<(u32, usize)>,
}

impl<T: AsyncRead + AsyncWrite + Send + 'static> Conn<T> {
    fn new(io: ReadHalf<T>, shared: Arc<Shared>) -> Self {
        Self {
            io,
            rb: Chunks::new(shared.config.max_receive_buffer),
            shared,
            read_eof: false,
            ping: None,
            timeout: None,
            close_deadline: None,
            wakers: Vec::new(),
            psh_rest: None,
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
        self.shared.lock_writer().close();
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
            if closing {
                let w = self.shared.lock_writer();
                let drained = w.out.is_empty() && !w.need_flush;
                let g = self.shared.lock();
                let idle = drained && g.control.is_empty() && g.heap.is_empty();
                drop(g);
                drop(w);
                if idle {
                    return Poll::Ready(Ok(()));
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
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
        if let Some(p) = &mut self.ping {
            while p.poll_tick(cx).is_ready() {
                self.rb.idle_tick();
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
                // Reading may be paused by back-pressure (bucket empty or backlog
                // full); then silence is ours, not the peer's (Go checks the bucket).
                let paused =
                    g.bucket <= 0 || g.accept_queue.len() >= self.shared.config.accept_backlog;
                if !ready && !paused {
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
            let space = self.rb.unfilled();
            let offered = space.len();
            let mut buf = tokio::io::ReadBuf::new(space);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => return Ok(progress),
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    if n == 0 {
                        self.read_eof = true;
                    } else {
                        self.rb.advance(n, offered);
                        progress = true;
                    }
                }
                Poll::Ready(Err(e)) => return Err(e.into()),
            }
        }
        Ok(progress)
    }

    /// Hands the first `len` bytes of input (payload of the PSH in progress) to stream
    /// `sid`, or drops them if the stream is gone.
    fn deliver(&mut self, g: &mut Inner, sid: u32, len: usize) {
        let Some(st) = g.streams.get_mut(&sid).filter(|st| !st.dropped) else {
            self.rb.consume(len);
            return;
        };
        if len == 0 {
            return;
        }
        // Large pieces stay in the read chunk (no copy); small ones are copied out so
        // that they cannot pin a whole chunk (see read.rs).
        let data = self.rb.take_piece(len, len >= ZERO_COPY_MIN);
        st.recv.push_back(data);
        st.recv_len += len;
        st.recv_total = st.recv_total.wrapping_add(len as u32);
        self.wakers.extend(st.read_waker.take());
        g.bucket -= len as i64;
    }

    /// Dispatches every complete frame of input; a PSH payload cut by the end of the
    /// input is delivered in pieces when it would not fit in the chunk. Returns true if
    /// reading must pause (bucket empty or accept backlog full), as Go's recvLoop does.
    fn parse_frames(&mut self) -> Result<bool, Error> {
        if self.rb.len() < HEADER_SIZE && self.psh_rest.is_none() {
            let g = self.shared.lock();
            return Ok(self.paused(&g));
        }
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let mut g = shared.lock();
        if g.version.is_none() {
            let Some(first) = self.rb.data().get(..HEADER_SIZE) else {
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
        loop {
            if self.paused(&g) {
                return Ok(true);
            }
            if let Some((sid, rest)) = self.psh_rest {
                let have = self.rb.len();
                if have >= rest {
                    self.psh_rest = None;
                    self.deliver(&mut g, sid, rest);
                    continue;
                }
                if have > 0 && self.rb.must_deliver_partial(rest - have) {
                    self.psh_rest = Some((sid, rest - have));
                    self.deliver(&mut g, sid, have);
                }
                return Ok(false);
            }
            let hdr = match frame::peek_header(self.rb.data()) {
                None => return Ok(false),
                Some(h) => h?,
            };
            if hdr.version != ver {
                return Err(frame::FrameError::VersionMismatch {
                    got: hdr.version,
                    expected: ver,
                }
                .into());
            }
            let total = HEADER_SIZE + hdr.payload_len();
            if hdr.cmd != Cmd::Psh && self.rb.len() < total {
                return Ok(false);
            }
            g.data_ready = true;
            let sid = hdr.stream_id;
            match hdr.cmd {
                Cmd::Psh => {
                    self.rb.consume(HEADER_SIZE);
                    if hdr.length > 0 {
                        self.psh_rest = Some((sid, usize::from(hdr.length)));
                    }
                }
                Cmd::Nop => self.rb.consume(total),
                Cmd::Syn => {
                    self.rb.consume(total);
                    if g.streams.contains_key(&sid) || g.closing {
                        continue;
                    }
                    if g.session_handles == 0 {
                        // Nobody will ever accept it: refuse it at once.
                        g.queue_control(Cmd::Fin, sid);
                        continue;
                    }
                    g.insert_stream(sid, initial_window(cfg));
                    g.announce_window(sid, cfg.max_receive_buffer);
                    g.accept_queue.push_back(sid);
                    self.wakers.extend(g.accept_waker.take());
                }
                Cmd::Fin => {
                    self.rb.consume(total);
                    if let Some(st) = g.streams.get_mut(&sid)
                        && !st.dropped
                    {
                        st.fin_received = true;
                        self.wakers.extend(st.read_waker.take());
                        self.wakers.extend(st.write_waker.take());
                    }
                }
                Cmd::Upd => {
                    let (consumed, window) = match self.rb.data().get(HEADER_SIZE..total) {
                        Some(&[a, b, c, d, e, f, g2, h]) => (
                            u32::from_le_bytes([a, b, c, d]),
                            u32::from_le_bytes([e, f, g2, h]),
                        ),
                        _ => return Ok(false),
                    };
                    self.rb.consume(total);
                    if let Some(st) = g.streams.get_mut(&sid) {
                        if (st.sent.wrapping_sub(consumed) as i32) < 0 {
                            st.error = Some(Error::Consumed);
                        } else {
                            st.peer_consumed = consumed;
                            st.peer_window = window;
                        }
                        self.wakers.extend(st.write_waker.take());
                    }
                }
            }
        }
    }

    fn paused(&self, g: &Inner) -> bool {
        g.bucket <= 0 || g.accept_queue.len() >= self.shared.config.accept_backlog
    }

    /// Moves frames from the shaper into `out` and writes them.
    fn poll_write_side(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let shared = self.shared.clone();
        let mut w = shared.lock_writer();
        let mut progress = false;
        loop {
            if w.out_bytes < WRITE_BATCH {
                self.gather(&mut w);
            }
            if w.out.is_empty() {
                break;
            }
            match w.poll_write_out(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Ready(Ok(p)) => {
                    progress |= p;
                    if !w.out.is_empty() {
                        // The transport took only part: it is full for now.
                        break;
                    }
                }
            }
        }
        if let Poll::Ready(Err(e)) = w.poll_flush_io(cx) {
            return Err(e.into());
        }
        Ok(progress)
    }

    /// Takes control frames first, then data frames from the stream that has sent
    /// least (E.6), until a batch is ready.
    fn gather(&mut self, w: &mut WriteSide) {
        let shared = self.shared.clone();
        let mut g = shared.lock();
        if !g.control.is_empty() {
            let c = g.control.split().freeze();
            w.push_out(c);
        }
        let v2 = g.is_v2();
        while w.out_bytes < WRITE_BATCH && w.out.len() < MAX_IOVECS {
            let Some(entry) = g.heap.pop() else {
                break;
            };
            let sid = entry.sid;
            let Some(st) = g.streams.get_mut(&sid) else {
                continue;
            };
            st.in_heap = false;
            let Some(frame) = st.pending.pop_frame() else {
                continue;
            };
            let flen = frame.len();
            let payload = flen.saturating_sub(HEADER_SIZE);
            st.pending_bytes -= payload.min(st.pending_bytes);
            st.sent = st.sent.wrapping_add(payload as u32);
            st.prio = if v2 {
                st.prio.wrapping_add(payload as u32)
            } else {
                st.prio.wrapping_add(1)
            };
            // Wake a blocked writer only once half the send buffer is free (or a
            // flush is done), not for every frame: fewer task switches per byte.
            let more = !st.pending.is_empty();
            if !more || st.pending_bytes <= shared.config.max_stream_send_buffer / 2 {
                self.wakers.extend(st.write_waker.take());
            }
            w.push_out(frame);
            if more {
                g.schedule(sid);
            } else {
                g.reap(sid);
            }
        }
    }
}
