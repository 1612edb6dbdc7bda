//! One KCP session over a UDP socket: the engine behind a mutex, driven by the reader task that feeds it
//! datagrams, by the application's reads and writes, and by the shared [`Scheduler`].
//!
//! Locking: one `parking_lot::Mutex` per session guards the engine and the pipeline; nothing global is locked
//! per packet. Wakers are collected under the lock and woken after it is released.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use rkcp_crypt::{CryptError, PacketCrypt};
use tokio::io::ReadBuf;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::config::KcpConfig;
use crate::conn::Conn;
use crate::error::{CloseReason, SessionError};
use crate::sched::{Scheduler, Timed, deadline_from_engine, now_ms};
use crate::snmp::{Snmp, SnmpSnapshot};
use crate::udp::UdpIo;

/// Datagrams kept queued while the socket's send buffer is full; beyond this the queue is dropped, as a full
/// link would (KCP retransmits).
const MAX_PENDING_TX: usize = 8192;

/// Send-queue bytes an idle session keeps for reuse; a larger allocation left by a burst is released.
const IDLE_TX_KEEP: usize = 16 << 10;

/// How the session is tied to its socket.
pub(crate) enum Role {
    /// Owns its socket and its reader task (aborted on close).
    Client { reader: Mutex<Option<AbortHandle>> },
    /// Shares the listener's socket; on close it tells the listener to forget it.
    Accepted {
        closer: mpsc::UnboundedSender<(SocketAddr, u64)>,
    },
}

/// Mutable state of a session, behind its one mutex.
pub(crate) struct State {
    pub(crate) conn: Conn,
    closed: Option<CloseReason>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    sched_gen: u64,
    scheduled: Option<u64>,
    stream: bool,
    write_delay: bool,
    /// With write delay: the flush after a write waits until this time (ms, scheduler clock).
    delay_until: Option<u64>,
    dead_link: u32,
    /// Rest of a message that did not fit the caller's buffer (message mode through `AsyncRead`).
    leftover: Vec<u8>,
    leftover_pos: usize,
}

impl State {
    pub(crate) fn set_stream(&mut self, on: bool) {
        self.stream = on;
    }
    pub(crate) fn set_write_delay(&mut self, on: bool) {
        self.write_delay = on;
        if !on {
            self.delay_until = None;
        }
    }
    pub(crate) fn set_dead_link(&mut self, xmit: u32) {
        self.dead_link = xmit;
    }
}

/// Wakers to wake once the lock is released.
#[derive(Default)]
struct Wakes(Option<Waker>, Option<Waker>);

impl Wakes {
    fn wake(self) {
        if let Some(w) = self.0 {
            w.wake();
        }
        if let Some(w) = self.1 {
            w.wake();
        }
    }
}

/// A KCP session (shared by the stream handles, the reader that feeds it and the scheduler).
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) conv: u32,
    pub(crate) remote: SocketAddr,
    pub(crate) io: Arc<UdpIo>,
    pub(crate) snmp: Snmp,
    pub(crate) role: Role,
    /// Live `KcpStream`/half handles; the session closes when the last one goes.
    pub(crate) handles: AtomicUsize,
    weak: Weak<Session>,
    /// `State::sched_gen`, readable without the lock: the scheduler drops entries of older generations unseen.
    live_gen: AtomicU64,
    /// The runtime the session was created on; timer work runs there.
    rt: tokio::runtime::Handle,
    pub(crate) state: Mutex<State>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("conv", &self.conv)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Creates and registers a session, and runs its first engine update. Must run inside a tokio runtime.
    pub(crate) fn new(
        conv: u32,
        remote: SocketAddr,
        io: Arc<UdpIo>,
        cfg: &KcpConfig,
        role: Role,
    ) -> Result<Arc<Session>, SessionError> {
        let conn = Conn::new(conv, cfg)?;
        let passive = matches!(role, Role::Accepted { .. });
        let s = Arc::new_cyclic(|weak| Session {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            conv,
            remote,
            io,
            snmp: Snmp::default(),
            role,
            handles: AtomicUsize::new(0),
            weak: weak.clone(),
            live_gen: AtomicU64::new(0),
            rt: tokio::runtime::Handle::current(),
            state: Mutex::new(State {
                conn,
                closed: None,
                read_waker: None,
                write_waker: None,
                sched_gen: 0,
                scheduled: None,
                stream: cfg.stream,
                write_delay: cfg.write_delay,
                delay_until: None,
                dead_link: cfg.dead_link,
                leftover: Vec::new(),
                leftover_pos: 0,
            }),
        });
        registry().register(&s, passive);
        {
            let mut st = s.state.lock();
            let now = now_ms();
            st.conn.update(now as u32);
            s.pump(&mut st, now);
        }
        Ok(s)
    }

    /// A counted handle for a new `KcpStream` or half.
    pub(crate) fn acquire(self: &Arc<Self>) -> Arc<Session> {
        self.handles.fetch_add(1, Ordering::AcqRel);
        Arc::clone(self)
    }

    /// Drops a handle; the last one closes the session.
    pub(crate) fn release_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close(CloseReason::Local);
        }
    }

    /// Feeds one opened datagram to the engine (call [`Session::after_input`] once the batch is done).
    pub(crate) fn input(&self, now: u32, data: &[u8]) {
        let mut st = self.state.lock();
        if st.closed.is_none() {
            st.conn.input(now, data, &self.snmp);
        }
    }

    /// After a batch of input: the flush the engine wants (window slide, ACK-no-delay), the sends, and waking
    /// readers and writers (PROTOCOL.md B.3 step 3, last bullet).
    pub(crate) fn after_input(&self, now64: u64) {
        let wakes = {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return;
            }
            st.conn.update(now64 as u32);
            self.pump(&mut st, now64)
        };
        wakes.wake();
    }

    /// Sends what is queued, re-arms the timer and collects the wakers whose conditions now hold.
    fn pump(&self, st: &mut State, now64: u64) -> Wakes {
        let retry = self.uncork(st);
        self.reschedule(st, now64, retry.then_some(now64 + 1));
        let mut w = Wakes::default();
        let kcp = &st.conn.kcp;
        if kcp.peek_size().is_some() {
            w.0 = st.read_waker.take();
        }
        let ws = kcp.wait_snd();
        if ws < kcp.snd_wnd() as usize && ws < kcp.rmt_wnd() as usize {
            w.1 = st.write_waker.take();
        }
        w
    }

    /// Hands the queued datagrams to the socket. Returns true if some had to stay queued (full socket buffer).
    fn uncork(&self, st: &mut State) -> bool {
        let tx = &mut st.conn.tx;
        if tx.is_empty() {
            return false;
        }
        match self.io.send_batch(self.remote, tx) {
            Ok(n) => {
                let bytes: usize = (0..n).map(|i| tx.get(i).len()).sum();
                self.snmp.out_pkts.fetch_add(n as u64, Ordering::Relaxed);
                self.snmp
                    .out_bytes
                    .fetch_add(bytes as u64, Ordering::Relaxed);
                tx.consume(n);
                if tx.len() > MAX_PENDING_TX {
                    tx.clear();
                }
                !tx.is_empty()
            }
            Err(e) => {
                // UDP send errors are transient (no route, ICMP feedback); the datagrams are lost like on a bad link.
                tracing::debug!(remote = %self.remote, error = %e, "UDP send failed; dropping queued datagrams");
                tx.clear();
                false
            }
        }
    }

    /// When the engine next needs `update` (scheduler clock), write delay included.
    fn wanted_deadline(&self, st: &State, now64: u64) -> Option<u64> {
        let d = st
            .conn
            .kcp
            .next_deadline()
            .map(|d| deadline_from_engine(d, now64));
        match (d, st.delay_until) {
            (Some(d), Some(hold)) => Some(d.max(hold)),
            (d, _) => d,
        }
    }

    /// Makes sure the scheduler wakes this session by the engine's next deadline (or `extra`).
    fn reschedule(&self, st: &mut State, now64: u64, extra: Option<u64>) {
        let mut d = self.wanted_deadline(st, now64);
        if d.is_none() && extra.is_none() {
            // The engine is idle: nothing in flight, so no burst is under way.
            st.conn.tx.trim(IDLE_TX_KEEP);
        }
        if let Some(x) = extra {
            d = Some(d.map_or(x, |d| d.min(x)));
        }
        self.set_timer(st, d);
    }

    /// Points the session's one live scheduler entry at `d` (`None`: no entry). An entry whose deadline moved
    /// (later, or away when an ACK idled the engine) is superseded by generation, so the scheduler drops it
    /// without waking for it.
    fn set_timer(&self, st: &mut State, d: Option<u64>) {
        if st.scheduled == d {
            return;
        }
        st.sched_gen += 1;
        st.scheduled = d;
        self.live_gen.store(st.sched_gen, Ordering::Release);
        if let Some(d) = d {
            let weak: Weak<dyn Timed> = self.weak.clone();
            Scheduler::global().schedule(d, st.sched_gen, weak);
        }
    }

    /// Closes the session (only the first call does anything; PROTOCOL.md B.12). A local close first flushes
    /// what the window allows. Then the queues are released, everyone waiting is woken and the listener (or
    /// the client's reader task) lets go.
    pub(crate) fn close(&self, reason: CloseReason) {
        let wakes = {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason);
            if reason == CloseReason::Local {
                st.conn.flush(now_ms() as u32);
                self.uncork(&mut st);
            }
            // Keep the engine's counters, then drop its queues with it.
            let stats = *st.conn.kcp.stats();
            fold_engine_stats(&self.snmp, &stats);
            st.conn.kcp = rkcp_engine::Kcp::new(self.conv);
            st.conn.release();
            st.leftover = Vec::new();
            self.set_timer(&mut st, None);
            Wakes(st.read_waker.take(), st.write_waker.take())
        };
        wakes.wake();
        match &self.role {
            Role::Client { reader } => {
                if let Some(h) = reader.lock().take() {
                    h.abort();
                }
            }
            Role::Accepted { closer } => {
                let _ = closer.send((self.remote, self.id));
            }
        }
        registry().retire(self);
    }

    /// Why the session ended, if it did.
    pub(crate) fn closed(&self) -> Option<CloseReason> {
        self.state.lock().closed
    }

    /// This session's counters (engine counters included). Process-wide fields are 0.
    pub(crate) fn snapshot(&self) -> SnmpSnapshot {
        let mut s = self.snmp.snapshot();
        let st = self.state.lock();
        let e = st.conn.kcp.stats();
        s.in_segs += e.in_segs;
        s.out_segs += e.out_segs;
        // The engine counts kcp-go's RetransSegs (fast + early + lost, B.10) itself.
        s.retrans_segs += e.retrans_segs;
        s.fast_retrans_segs += e.fast_retrans_segs;
        s.early_retrans_segs += e.early_retrans_segs;
        s.lost_segs += e.lost_segs;
        s.repeat_segs += e.repeat_segs;
        s
    }

    /// Runs `f` on the engine state under the lock, then flushes/reschedules (for runtime knobs).
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (r, wakes) = {
            let mut st = self.state.lock();
            let r = f(&mut st);
            let w = if st.closed.is_none() {
                self.pump(&mut st, now_ms())
            } else {
                Wakes::default()
            };
            (r, w)
        };
        wakes.wake();
        r
    }

    // ------------------------------------------------------------------ application side

    /// `AsyncRead` (PROTOCOL.md B.7): leftover bytes first, then the next segment(s) or message; waits otherwise.
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut st = self.state.lock();
        if st.closed == Some(CloseReason::Local) {
            return Poll::Ready(Err(SessionError::Closed.into()));
        }
        if st.leftover_pos < st.leftover.len() {
            let n = (st.leftover.len() - st.leftover_pos).min(buf.remaining());
            let from = st.leftover_pos;
            buf.put_slice(&st.leftover[from..from + n]);
            st.leftover_pos += n;
            self.snmp
                .bytes_received
                .fetch_add(n as u64, Ordering::Relaxed);
            return Poll::Ready(Ok(()));
        }
        let st = &mut *st;
        while let Some(size) = st.conn.kcp.peek_size() {
            let n = if st.stream || size <= buf.remaining() {
                let dst = buf.initialize_unfilled();
                match st.conn.kcp.recv(dst) {
                    Ok(n) => {
                        buf.advance(n);
                        n
                    }
                    Err(e) => return Poll::Ready(Err(SessionError::Kcp(e).into())),
                }
            } else {
                st.leftover.resize(size, 0);
                match st.conn.kcp.recv(&mut st.leftover) {
                    Ok(n) => {
                        st.leftover.truncate(n);
                        let k = n.min(buf.remaining());
                        buf.put_slice(&st.leftover[..k]);
                        st.leftover_pos = k;
                        k
                    }
                    Err(e) => return Poll::Ready(Err(SessionError::Kcp(e).into())),
                }
            };
            if n == 0 {
                // An empty message: nothing for a byte stream; a 0-byte read would look like EOF.
                continue;
            }
            self.snmp
                .bytes_received
                .fetch_add(n as u64, Ordering::Relaxed);
            let now = now_ms();
            st.conn.update(now as u32);
            let wakes = self.pump(st, now);
            // wakes.0 is our own (stale) read waker: we are returning Ready anyway.
            if let Some(w) = wakes.1 {
                w.wake();
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(r) = st.closed {
            return Poll::Ready(Err(r.to_error().into()));
        }
        st.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// `AsyncWrite` (PROTOCOL.md B.7): while the window has room, queue up to one window of `data` and flush
    /// right away (unless write delay); otherwise wait for the window to open.
    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let (res, wakes) = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            if let Some(r) = st.closed {
                return Poll::Ready(Err(r.to_error().into()));
            }
            let kcp = &mut st.conn.kcp;
            let ws = kcp.wait_snd();
            if ws >= kcp.snd_wnd() as usize || ws >= kcp.rmt_wnd() as usize {
                st.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let mss = kcp.mss();
            let n = data.len().min(kcp.snd_wnd() as usize * mss);
            let chunk = &data[..n];
            let sent = if st.stream {
                kcp.send(chunk)
            } else {
                chunk
                    .chunks(mss)
                    .try_for_each(|c| kcp.send(c).map(|_| ()))
                    .map(|_| n)
            };
            if let Err(e) = sent {
                return Poll::Ready(Err(SessionError::Kcp(e).into()));
            }
            self.snmp.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
            let now = now_ms();
            self.flush_after_write(st, now);
            (n, self.pump(st, now))
        };
        wakes.wake();
        Poll::Ready(Ok(res))
    }

    /// kcp-go's post-write flush rule (B.7): flush now unless write delay is on and the window is not full.
    fn flush_after_write(&self, st: &mut State, now: u64) {
        let kcp = &st.conn.kcp;
        let ws = kcp.wait_snd();
        if !st.write_delay || ws >= kcp.snd_wnd() as usize || ws >= kcp.rmt_wnd() as usize {
            st.delay_until = None;
            st.conn.flush(now as u32);
        } else if st.delay_until.is_none() {
            st.delay_until = Some(now + u64::from(kcp.interval()));
        }
    }

    /// Message mode: queue `msg` as one message once the window has room.
    pub(crate) fn poll_send_msg(
        &self,
        cx: &mut Context<'_>,
        msg: &[u8],
    ) -> Poll<Result<(), SessionError>> {
        let wakes = {
            let mut st = self.state.lock();
            if let Some(r) = st.closed {
                return Poll::Ready(Err(r.to_error()));
            }
            if st.stream {
                return Poll::Ready(Err(SessionError::NotMessageMode));
            }
            let kcp = &mut st.conn.kcp;
            let ws = kcp.wait_snd();
            if ws >= kcp.snd_wnd() as usize || ws >= kcp.rmt_wnd() as usize {
                st.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if let Err(e) = kcp.send(msg) {
                return Poll::Ready(Err(match e {
                    rkcp_engine::KcpError::MessageTooLarge { len, .. } => {
                        SessionError::MessageTooLarge { len }
                    }
                    e => SessionError::Kcp(e),
                }));
            }
            self.snmp
                .bytes_sent
                .fetch_add(msg.len() as u64, Ordering::Relaxed);
            let now = now_ms();
            self.flush_after_write(&mut st, now);
            self.pump(&mut st, now)
        };
        wakes.wake();
        Poll::Ready(Ok(()))
    }

    /// Message mode: take the next whole message into `buf`.
    pub(crate) fn poll_recv_msg(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, SessionError>> {
        let mut st = self.state.lock();
        if st.closed == Some(CloseReason::Local) {
            return Poll::Ready(Err(SessionError::Closed));
        }
        if st.stream {
            return Poll::Ready(Err(SessionError::NotMessageMode));
        }
        if st.leftover_pos < st.leftover.len() {
            let rest = st.leftover.len() - st.leftover_pos;
            if rest > buf.len() {
                return Poll::Ready(Err(SessionError::BufferTooSmall { needed: rest }));
            }
            let from = st.leftover_pos;
            buf[..rest].copy_from_slice(&st.leftover[from..]);
            st.leftover.clear();
            st.leftover_pos = 0;
            self.snmp
                .bytes_received
                .fetch_add(rest as u64, Ordering::Relaxed);
            return Poll::Ready(Ok(rest));
        }
        if let Some(size) = st.conn.kcp.peek_size() {
            if size > buf.len() {
                return Poll::Ready(Err(SessionError::BufferTooSmall { needed: size }));
            }
            return match st.conn.kcp.recv(buf) {
                Ok(n) => {
                    self.snmp
                        .bytes_received
                        .fetch_add(n as u64, Ordering::Relaxed);
                    let now = now_ms();
                    st.conn.update(now as u32);
                    let w = self.pump(&mut st, now);
                    drop(st);
                    w.wake();
                    Poll::Ready(Ok(n))
                }
                Err(rkcp_engine::KcpError::BufferTooSmall { needed }) => {
                    Poll::Ready(Err(SessionError::BufferTooSmall { needed }))
                }
                Err(e) => Poll::Ready(Err(SessionError::Kcp(e))),
            };
        }
        if let Some(r) = st.closed {
            return Poll::Ready(Err(r.to_error()));
        }
        st.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// `poll_flush`: a full flush of whatever is queued (only matters with write delay).
    pub(crate) fn poll_flush(&self) -> Poll<io::Result<()>> {
        let wakes = {
            let mut st = self.state.lock();
            if let Some(r) = st.closed {
                return if r == CloseReason::Local {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(r.to_error().into()))
                };
            }
            let now = now_ms();
            st.delay_until = None;
            st.conn.flush(now as u32);
            self.pump(&mut st, now)
        };
        wakes.wake();
        Poll::Ready(Ok(()))
    }

    /// `poll_shutdown`: wait until everything written was acknowledged, then close. KCP has no FIN, so this
    /// is the only way to know the peer has the data.
    pub(crate) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut st = self.state.lock();
            match st.closed {
                Some(CloseReason::Local) => return Poll::Ready(Ok(())),
                Some(r) => return Poll::Ready(Err(r.to_error().into())),
                None => {}
            }
            if st.conn.kcp.wait_snd() > 0 {
                st.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        self.close(CloseReason::Local);
        Poll::Ready(Ok(()))
    }
}

impl Timed for Session {
    fn live(&self, generation: u64) -> bool {
        self.live_gen.load(Ordering::Acquire) == generation
    }

    /// Runs on the scheduler thread. Only the checks happen here: a stale entry, or one whose work went away
    /// (an ACK idled the engine) or moved later, is dropped or re-pushed without waking the runtime. Due work
    /// goes to the session's own runtime, so that it queues behind the reader task that may hold fresh ACKs:
    /// flushing straight from the timer thread while a busy runtime has not read those ACKs yet causes
    /// spurious RTO retransmissions.
    fn due(&self, generation: u64, now: u64) -> Option<tokio::runtime::Handle> {
        let mut st = self.state.lock();
        if st.sched_gen != generation || st.closed.is_some() {
            return None;
        }
        let want = if st.conn.tx.is_empty() {
            self.wanted_deadline(&st, now)
        } else {
            Some(now) // datagrams left over from a full socket buffer
        };
        match want {
            Some(d) if d <= now => Some(self.rt.clone()),
            d => {
                st.scheduled = None; // this entry is gone
                self.set_timer(&mut st, d);
                None
            }
        }
    }

    /// The timer's work: whatever the engine has due (periodic flush, retransmissions, probes), then the
    /// dead-link check.
    fn run(&self, generation: u64) {
        let (wakes, dead) = {
            let mut st = self.state.lock();
            if st.closed.is_some() || generation != st.sched_gen {
                return;
            }
            st.scheduled = None;
            st.delay_until = None;
            let now = now_ms();
            st.conn.update(now as u32);
            let dead = st.conn.kcp.is_dead_link().then_some(st.dead_link);
            (self.pump(&mut st, now), dead)
        };
        wakes.wake();
        if let Some(n) = dead {
            self.close(CloseReason::DeadLink(n));
        }
    }
}

fn fold_engine_stats(snmp: &Snmp, e: &rkcp_engine::KcpStats) {
    let add = |c: &AtomicU64, v: u64| {
        if v != 0 {
            c.fetch_add(v, Ordering::Relaxed);
        }
    };
    add(&snmp.in_segs, e.in_segs);
    add(&snmp.out_segs, e.out_segs);
    add(&snmp.retrans_segs, e.retrans_segs);
    add(&snmp.fast_retrans_segs, e.fast_retrans_segs);
    add(&snmp.early_retrans_segs, e.early_retrans_segs);
    add(&snmp.lost_segs, e.lost_segs);
    add(&snmp.repeat_segs, e.repeat_segs);
}

/// Removes the crypt layer of a received datagram and applies the length checks of PROTOCOL.md B.3 steps 1–2.
/// Returns the bytes for `Conn::input`, or why it was dropped.
pub(crate) fn open_datagram<'a>(
    crypt: Option<&PacketCrypt>,
    pkt: &'a mut [u8],
) -> Result<&'a [u8], DropReason> {
    let data: &'a [u8] = match crypt {
        Some(c) => {
            if pkt.len() < c.overhead() {
                return Err(DropReason::Short);
            }
            match c.open(pkt) {
                Ok(r) => pkt.get(r).ok_or(DropReason::Short)?,
                Err(CryptError::TooShort { .. }) => return Err(DropReason::Short),
                Err(_) => return Err(DropReason::Checksum),
            }
        }
        None => pkt,
    };
    if data.len() < rkcp_engine::OVERHEAD {
        return Err(DropReason::Short);
    }
    Ok(data)
}

/// Why a datagram was dropped before reaching a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// Shorter than the crypt header or than one KCP segment header after it.
    Short,
    /// CRC mismatch (kcp-go ciphers) or failed authentication (AEAD): wrong key, corruption or foreign traffic.
    Checksum,
}

// ---------------------------------------------------------------------- process-wide counters

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Live sessions and the totals of ended ones, for [`global_snmp`].
pub(crate) struct Registry {
    inner: Mutex<RegistryInner>,
    /// Events that belong to no session: opens, closes, and drops before a session was found.
    pub(crate) global: Snmp,
}

struct RegistryInner {
    live: HashMap<u64, Weak<Session>>,
    retired: SnmpSnapshot,
}

pub(crate) fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry {
        inner: Mutex::new(RegistryInner {
            live: HashMap::new(),
            retired: SnmpSnapshot::default(),
        }),
        global: Snmp::default(),
    })
}

impl Registry {
    fn register(&self, s: &Arc<Session>, passive: bool) {
        self.inner.lock().live.insert(s.id, Arc::downgrade(s));
        let g = &self.global;
        if passive {
            g.passive_opens.fetch_add(1, Ordering::Relaxed);
        } else {
            g.active_opens.fetch_add(1, Ordering::Relaxed);
        }
        let cur = g.curr_estab.fetch_add(1, Ordering::Relaxed) + 1;
        g.max_conn.fetch_max(cur, Ordering::Relaxed);
    }

    fn retire(&self, s: &Session) {
        let snap = s.snapshot();
        {
            let mut r = self.inner.lock();
            r.live.remove(&s.id);
            r.retired.add(&snap);
        }
        self.global.curr_estab.fetch_sub(1, Ordering::Relaxed);
    }

    fn total(&self) -> SnmpSnapshot {
        let (mut total, live): (SnmpSnapshot, Vec<Arc<Session>>) = {
            let r = self.inner.lock();
            (
                r.retired,
                r.live.values().filter_map(Weak::upgrade).collect(),
            )
        };
        for s in live {
            total.add(&s.snapshot());
        }
        total.add(&self.global.snapshot());
        total
    }
}

/// The process-wide counters (kcp-go's `DefaultSnmp`, PROTOCOL.md B.10): every session that ever existed in
/// this process plus the events that belong to no session. Costs one short lock per live session.
pub fn global_snmp() -> SnmpSnapshot {
    registry().total()
}

#[cfg(test)]
mod tests {
    /// What every session costs before any traffic, with FEC and cipher off: 10,000 sessions must fit in a few
    /// MB (the FEC coder state used to sit inline, ~6 KB per session even with FEC off).
    #[test]
    fn an_idle_session_struct_stays_small() {
        assert!(std::mem::size_of::<super::Session>() <= 1280);
        assert!(std::mem::size_of::<crate::conn::Conn>() <= 768);
    }
}
