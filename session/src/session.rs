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
use tokio::io::ReadBuf;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::error::{CloseReason, SessionError};
use crate::proto::connection::Connection;
use crate::proto::endpoint::ConnHandle;
use crate::proto::time::Timestamp;
use crate::sched::{Scheduler, Timed, now};
use crate::snmp::{Snmp, SnmpSnapshot};
use crate::udp::UdpIo;

/// Send-queue bytes an idle session keeps for reuse; a larger allocation left by a burst is released.
const IDLE_TX_KEEP: usize = 16 << 10;

/// How the session is tied to its socket.
pub(crate) enum Role {
    /// Owns its socket and its reader task (aborted on close).
    Client { reader: Mutex<Option<AbortHandle>> },
    /// Shares the listener's socket; on close it tells the listener to forget it.
    Accepted {
        handle: ConnHandle,
        closer: mpsc::UnboundedSender<(SocketAddr, ConnHandle)>,
    },
}

/// Mutable state of a session, behind its one mutex: the sans-IO connection plus the driver's wakers and
/// timer bookkeeping.
pub(crate) struct State {
    pub(crate) conn: Connection,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    sched_gen: u64,
    scheduled: Option<u64>,
    /// The close side effects (wake-ups, listener, registry) have run.
    finished: bool,
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
    /// Wraps a connection, registers it and runs its first engine update. Must run inside a tokio runtime.
    pub(crate) fn new(
        conn: Connection,
        remote: SocketAddr,
        io: Arc<UdpIo>,
        role: Role,
    ) -> Arc<Session> {
        let passive = matches!(role, Role::Accepted { .. });
        let s = Arc::new_cyclic(|weak| Session {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            conv: conn.conv(),
            remote,
            io,
            role,
            handles: AtomicUsize::new(0),
            weak: weak.clone(),
            live_gen: AtomicU64::new(0),
            rt: tokio::runtime::Handle::current(),
            state: Mutex::new(State {
                conn,
                read_waker: None,
                write_waker: None,
                sched_gen: 0,
                scheduled: None,
                finished: false,
            }),
        });
        registry().register(&s, passive);
        {
            let mut st = s.state.lock();
            let now = now();
            st.conn.handle_timeout(now);
            s.pump(&mut st, now);
        }
        s
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

    /// Feeds one opened datagram to the connection (call [`Session::after_input`] once the batch is done).
    pub(crate) fn input(&self, now: Timestamp, data: &[u8]) {
        self.state.lock().conn.handle_datagram(now, data);
    }

    /// Counts a datagram dropped before it reached the connection (client socket: another sender, or one
    /// that failed to open).
    pub(crate) fn count_drop(&self, reason: crate::proto::packet::DropReason) {
        self.state.lock().conn.count_drop(reason);
    }

    /// After a batch of input: the flush the engine wants, the sends, and waking readers and writers.
    pub(crate) fn after_input(&self, now: Timestamp) {
        let wakes = {
            let mut st = self.state.lock();
            if st.conn.closed().is_some() {
                return;
            }
            st.conn.finish_input(now);
            self.pump(&mut st, now)
        };
        wakes.wake();
    }

    /// Sends what is queued, re-arms the timer and collects the wakers whose conditions now hold.
    fn pump(&self, st: &mut State, now: Timestamp) -> Wakes {
        let retry = self.uncork(st);
        self.reschedule(st, now, retry.then_some(now.add_millis(1)));
        let mut w = Wakes::default();
        if st.conn.readable() {
            w.0 = st.read_waker.take();
        }
        if st.conn.writable() {
            w.1 = st.write_waker.take();
        }
        w
    }

    /// Hands the queued datagrams to the socket. Returns true if some had to stay queued (full socket buffer).
    fn uncork(&self, st: &mut State) -> bool {
        if st.conn.transmits().is_empty() {
            return false;
        }
        match self.io.send_batch(self.remote, st.conn.transmits()) {
            Ok(n) => {
                st.conn.transmitted(n);
                !st.conn.transmits().is_empty()
            }
            Err(e) => {
                // UDP send errors are transient (no route, ICMP feedback); the datagrams are lost like on a bad link.
                tracing::debug!(remote = %self.remote, error = %e, "UDP send failed; dropping queued datagrams");
                st.conn.release_tx();
                false
            }
        }
    }

    /// Makes sure the scheduler wakes this session by the connection's next timeout (or `extra`).
    fn reschedule(&self, st: &mut State, now: Timestamp, extra: Option<Timestamp>) {
        let mut d = st.conn.poll_timeout(now);
        if d.is_none() && extra.is_none() {
            // The engine is idle: nothing in flight, so no burst is under way.
            st.conn.trim_tx(IDLE_TX_KEEP);
        }
        if let Some(x) = extra {
            d = Some(d.map_or(x, |d| d.min(x)));
        }
        self.set_timer(st, d.map(Timestamp::as_millis));
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

    /// Closes the session (only the first call does anything). A local close first sends one last flush of
    /// what the window allows. Then the queues are released, everyone waiting is woken and the listener (or
    /// the client's reader task) lets go.
    pub(crate) fn close(&self, reason: CloseReason) {
        let wakes = {
            let mut st = self.state.lock();
            if st.finished {
                return;
            }
            st.finished = true;
            st.conn.close(now(), reason);
            if st.conn.closed() == Some(CloseReason::Local) {
                self.uncork(&mut st);
            }
            st.conn.release_tx();
            self.set_timer(&mut st, None);
            let why = st.conn.closed().unwrap_or(reason);
            (Wakes(st.read_waker.take(), st.write_waker.take()), why)
        };
        let (wakes, why) = wakes;
        wakes.wake();
        tracing::debug!(conv = self.conv, remote = %self.remote, reason = ?why, "KCP session closed");
        match &self.role {
            Role::Client { reader } => {
                if let Some(h) = reader.lock().take() {
                    h.abort();
                }
            }
            Role::Accepted { handle, closer } => {
                let _ = closer.send((self.remote, *handle));
            }
        }
        registry().retire(self);
    }

    /// Why the session ended, if it did.
    pub(crate) fn closed(&self) -> Option<CloseReason> {
        self.state.lock().conn.closed()
    }

    /// This session's counters (engine counters included). Process-wide fields are 0.
    pub(crate) fn snapshot(&self) -> SnmpSnapshot {
        self.state.lock().conn.counters()
    }

    /// Runs `f` on the connection under the lock, then flushes/reschedules (for runtime knobs).
    pub(crate) fn with_conn<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        let (r, wakes) = {
            let mut st = self.state.lock();
            let r = f(&mut st.conn);
            let w = if st.conn.closed().is_none() {
                self.pump(&mut st, now())
            } else {
                Wakes::default()
            };
            (r, w)
        };
        wakes.wake();
        r
    }

    // ------------------------------------------------------------------ application side

    /// `AsyncRead`: the next bytes (or message) from the connection; waits otherwise.
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let wakes = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let now = now();
            match st.conn.read(now, buf.initialize_unfilled()) {
                Ok(Some(n)) => {
                    buf.advance(n);
                    let mut w = self.pump(st, now);
                    // w.0 is our own (stale) read waker: we are returning Ready anyway.
                    w.0 = None;
                    w
                }
                Ok(None) => {
                    st.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        };
        wakes.wake();
        Poll::Ready(Ok(()))
    }

    /// `AsyncWrite`: while the window has room, queue up to one window of `data` and flush right away (unless
    /// write delay); otherwise wait for the window to open.
    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let (n, wakes) = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let now = now();
            match st.conn.write(now, data) {
                Ok(Some(n)) => (n, self.pump(st, now)),
                Ok(None) => {
                    st.write_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        };
        wakes.wake();
        Poll::Ready(Ok(n))
    }

    /// Message mode: queue `msg` as one message once the window has room.
    pub(crate) fn poll_send_msg(
        &self,
        cx: &mut Context<'_>,
        msg: &[u8],
    ) -> Poll<Result<(), SessionError>> {
        let wakes = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let now = now();
            match st.conn.send_msg(now, msg) {
                Ok(true) => self.pump(st, now),
                Ok(false) => {
                    st.write_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
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
        let (n, wakes) = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let now = now();
            match st.conn.recv_msg(now, buf) {
                Ok(Some(n)) => (n, self.pump(st, now)),
                Ok(None) => {
                    st.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        };
        wakes.wake();
        Poll::Ready(Ok(n))
    }

    /// `poll_flush`: a full flush of whatever is queued (only matters with write delay).
    pub(crate) fn poll_flush(&self) -> Poll<io::Result<()>> {
        let wakes = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let now = now();
            if let Err(e) = st.conn.flush(now) {
                return Poll::Ready(Err(e.into()));
            }
            if st.conn.closed().is_some() {
                return Poll::Ready(Ok(()));
            }
            self.pump(st, now)
        };
        wakes.wake();
        Poll::Ready(Ok(()))
    }

    /// `poll_shutdown`: wait until everything written was acknowledged, then close. KCP has no FIN, so this
    /// is the only way to know the peer has the data.
    pub(crate) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut st = self.state.lock();
            match st.conn.closed() {
                Some(CloseReason::Local) => return Poll::Ready(Ok(())),
                Some(r) => return Poll::Ready(Err(r.to_error().into())),
                None => {}
            }
            if !st.conn.all_acked() {
                // Bounded by close_timeout: the timer closes the session if the peer never acknowledges.
                let now = now();
                st.conn.begin_shutdown(now);
                self.reschedule(&mut st, now, None);
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
    fn due(&self, generation: u64, now_ms: u64) -> Option<tokio::runtime::Handle> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if st.sched_gen != generation || st.conn.closed().is_some() {
            return None;
        }
        let now = Timestamp::from_millis(now_ms);
        let want = if st.conn.transmits().is_empty() {
            st.conn.poll_timeout(now)
        } else {
            Some(now) // datagrams left over from a full socket buffer
        };
        match want {
            Some(d) if d <= now => Some(self.rt.clone()),
            d => {
                st.scheduled = None; // this entry is gone
                self.set_timer(st, d.map(Timestamp::as_millis));
                None
            }
        }
    }

    /// The timer's work: whatever the connection has due (periodic flush, retransmissions, probes, the
    /// dead-link check).
    fn run(&self, generation: u64) {
        let (wakes, dead) = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            if st.conn.closed().is_some() || generation != st.sched_gen {
                return;
            }
            st.scheduled = None;
            let now = now();
            st.conn.handle_timeout(now);
            (self.pump(st, now), st.conn.closed())
        };
        wakes.wake();
        if let Some(reason) = dead {
            self.close(reason);
        }
    }
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

/// The process-wide counters (kcp-go's `DefaultSnmp`, docs/wire-format.md#session-snmp): every session that ever existed in
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
    }
}
