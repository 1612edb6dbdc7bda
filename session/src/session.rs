//! One KCP session on tokio: the sans-IO [`Connection`] behind a mutex, fed by its socket's read loop
//! ([`crate::driver`]), by the application's reads and writes, and by that read loop's timers.
//!
//! Locking: one `parking_lot::Mutex` per session guards the connection; nothing global is locked per packet.
//! Wakers are collected under the lock and woken after it is released, and datagrams are sent after it is
//! released too: whoever finds datagrams queued while no one else is sending swaps the queue out, sends it
//! without the lock, and loops while more were queued meanwhile, so one session's datagrams leave in order
//! and a `sendmmsg` never holds the connection. A full socket buffer hands the rest to a task that waits
//! for the socket to become writable (no retry timer).
//!
//! Timers: a session reports its connection's next deadline ([`Connection::poll_timeout`]) to the timers of
//! its socket's read loop ([`crate::timers`]) whenever it comes earlier than the entries it already has
//! there; the loop runs [`Session::on_timer`] when an entry comes up. A deadline that moved later (an ACK
//! idled the engine) costs one stale entry, found stale when it comes up — no task, no wake-up. Timer work
//! runs after the batch the loop has read, so fresh ACKs are in before a retransmission timer is looked
//! at, instead of flushing (and retransmitting spuriously) ahead of them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use tokio::io::ReadBuf;
use tokio::sync::Notify;

use crate::driver::{DriverLink, now};
use crate::error::{CloseReason, SessionError};
use crate::proto::connection::{Connection, MAX_PENDING_TX};
use crate::proto::endpoint::ConnHandle;
use crate::proto::time::Timestamp;
use crate::snmp::{GLOBAL, SnmpSnapshot};
use crate::timers::Queued;
use crate::udp::{TxQueue, UdpIo};

/// Send-queue bytes an idle session keeps for reuse; a larger allocation left by a burst is released.
const IDLE_TX_KEEP: usize = 16 << 10;

/// How the session is tied to its socket.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// Owns its socket; its read loop ends when the session closes.
    Client,
    /// Shares the listener's socket; on close the listener's read loop forgets it.
    Accepted(ConnHandle),
}

/// Mutable state of a session, behind its one mutex: the sans-IO connection plus the driver's wakers, timer
/// and send bookkeeping.
pub(crate) struct State {
    pub(crate) conn: Connection,
    /// Where datagrams go (mutable: a peer may move).
    remote: SocketAddr,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// This session's entries in its read loop's timers (see [`crate::timers`]).
    queued: Queued,
    /// Someone holds the swapped-out send queue (sending, or waiting for the socket to become writable);
    /// others leave datagrams queued for it.
    sending: bool,
    /// The close side effects (wake-ups, listener, counters) have run.
    finished: bool,
    /// This session's counters already added to the process totals.
    published: SnmpSnapshot,
}

/// Send errors after which a client's socket is replaced: its local address is no longer usable (the
/// interface went down or changed address), which a new socket bound to the unspecified address may fix.
fn socket_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            99 /* EADDRNOTAVAIL */ | 100 /* ENETDOWN */ | 101 /* ENETUNREACH */ | 22 /* EINVAL */
        )
    ) || e.kind() == io::ErrorKind::AddrNotAvailable
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

/// A send queue taken out of the connection, and where it goes.
struct Outgoing(TxQueue, SocketAddr);

/// A KCP session (shared by the stream handles and the read loop that feeds it and runs its timers).
pub(crate) struct Session {
    pub(crate) conv: u32,
    /// The socket; a client's can be replaced while it runs ([`Session::move_to`]).
    io: Mutex<Arc<UdpIo>>,
    pub(crate) role: Role,
    /// The socket's read loop: runs this session's timers, told when it closes.
    link: Arc<DriverLink>,
    /// Live `KcpStream`/half handles; the session closes when the last one goes.
    pub(crate) handles: AtomicUsize,
    /// Woken (all waiters) when the session closes.
    closed_notify: Notify,
    /// When a client last replaced a failed socket (ms on the driver's clock; 0: never).
    last_rebind: AtomicU64,
    pub(crate) state: Mutex<State>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("conv", &self.conv)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Wraps a connection, counts it open, runs its first engine update and queues its first timer entry.
    pub(crate) fn new(
        conn: Connection,
        remote: SocketAddr,
        io: Arc<UdpIo>,
        role: Role,
        link: Arc<DriverLink>,
    ) -> Arc<Session> {
        let s = Arc::new(Session {
            conv: conn.conv(),
            io: Mutex::new(io),
            role,
            link,
            handles: AtomicUsize::new(0),
            closed_notify: Notify::new(),
            last_rebind: AtomicU64::new(0),
            state: Mutex::new(State {
                conn,
                remote,
                read_waker: None,
                write_waker: None,
                queued: Queued::default(),
                sending: false,
                finished: false,
                published: SnmpSnapshot::default(),
            }),
        });
        let g = &GLOBAL;
        match role {
            Role::Accepted(_) => g.passive_opens.fetch_add(1, Ordering::Relaxed),
            Role::Client => g.active_opens.fetch_add(1, Ordering::Relaxed),
        };
        let cur = g.curr_estab.fetch_add(1, Ordering::Relaxed) + 1;
        g.max_conn.fetch_max(cur, Ordering::Relaxed);
        let out = {
            let mut st = s.state.lock();
            let now = now();
            st.conn.handle_timeout(now);
            s.pump(&mut st, now).1
        };
        s.send(out);
        s
    }

    /// A counted handle for a new `KcpStream` or half.
    pub(crate) fn acquire(self: &Arc<Self>) -> Arc<Session> {
        self.handles.fetch_add(1, Ordering::AcqRel);
        Arc::clone(self)
    }

    /// Drops a handle; the last one closes the session.
    pub(crate) fn release_handle(self: &Arc<Self>) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close(CloseReason::Local);
        }
    }

    /// The peer's address.
    pub(crate) fn remote(&self) -> SocketAddr {
        self.state.lock().remote
    }

    /// The socket the session sends on now.
    pub(crate) fn io(&self) -> Arc<UdpIo> {
        Arc::clone(&self.io.lock())
    }

    /// A client session moves to another local socket (a network change): it sends from `io` from now on,
    /// and its read loop reads `io` instead of the old socket. The server follows (its roaming rule) on the
    /// first datagram from the new address; a flush goes out now so that it need not wait for traffic.
    pub(crate) fn move_to(self: &Arc<Self>, io: Arc<UdpIo>) {
        *self.io.lock() = Arc::clone(&io);
        self.link.rebind(io);
        self.with_conn(|c| {
            let _ = c.flush(crate::driver::now());
        });
    }

    /// The client's socket failed in a way a new one may not (the address it was bound to went away): bind a
    /// fresh one of the same family on an ephemeral port and move to it, at most once a second.
    fn replace_failed_socket(self: &Arc<Self>, failed: &Arc<UdpIo>) {
        let now = crate::driver::now();
        // 0: never (the clock starts at the first reading, so a real reading of 0 only delays the first move).
        let last = self.last_rebind.load(Ordering::Relaxed);
        if last != 0 && now.as_millis() < last + 1000 {
            return;
        }
        self.last_rebind
            .store(now.as_millis().max(1), Ordering::Relaxed);
        let Ok(local) = failed.socket().local_addr() else {
            return;
        };
        let any: SocketAddr = if local.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let s = Arc::clone(self);
        rt.spawn(async move {
            match tokio::net::UdpSocket::bind(any).await {
                Ok(sock) => {
                    tracing::info!(
                        conv = s.conv,
                        "KCP client socket failed; moving the session to a new socket"
                    );
                    s.move_to(Arc::new(UdpIo::new(sock, false)));
                }
                Err(e) => tracing::debug!(error = %e, "KCP client: no new socket"),
            }
        });
    }

    /// The peer moved (roaming, decided by the listener's endpoint): send to `to` from now on.
    pub(crate) fn set_remote(&self, to: SocketAddr) {
        self.state.lock().remote = to;
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
    /// Returns whether the peer proved its address since the last call (listener admission), so the read
    /// loop learns it under the same lock.
    pub(crate) fn after_input(self: &Arc<Self>, now: Timestamp) -> bool {
        let (wakes, out, verified) = {
            let mut st = self.state.lock();
            let verified = st.conn.take_verified();
            if st.conn.closed().is_some() {
                return verified;
            }
            st.conn.finish_input(now);
            let (w, out) = self.pump(&mut st, now);
            (w, out, verified)
        };
        self.send(out);
        wakes.wake();
        verified
    }

    /// Takes the queued datagrams out for sending, re-arms the timer, publishes the counters and collects
    /// the wakers whose conditions now hold. The caller sends the datagrams once the lock is released.
    fn pump(self: &Arc<Self>, st: &mut State, now: Timestamp) -> (Wakes, Option<Outgoing>) {
        let out = take_tx(st);
        self.rearm(st, now);
        publish(st);
        let mut w = Wakes::default();
        if st.conn.readable() {
            w.0 = st.read_waker.take();
        }
        if st.conn.writable() {
            w.1 = st.write_waker.take();
        }
        (w, out)
    }

    /// Queues a timer entry for the connection's next deadline unless one of this session's entries comes at
    /// or before it.
    fn rearm(self: &Arc<Self>, st: &mut State, now: Timestamp) {
        if !st.sending && st.conn.kcp.next_deadline().is_none() {
            // The engine is idle: nothing in flight, so no burst is under way.
            st.conn.trim_tx(IDLE_TX_KEEP);
        }
        if let Some(d) = st.conn.poll_timeout(now)
            && st.queued.earliest().is_none_or(|q| d < q)
        {
            st.queued.insert(d);
            self.link.schedule(d, self);
        }
    }

    /// Sends a queue taken by [`Session::pump`], without the lock, then whatever was queued meanwhile, until
    /// nothing is left or the socket buffer is full (then a task waits for writability and carries on).
    fn send(self: &Arc<Self>, out: Option<Outgoing>) {
        let Some(Outgoing(mut q, mut to)) = out else {
            return;
        };
        loop {
            let io = self.io();
            let (pkts, bytes) = match io.send_batch(to, &q) {
                Ok(n) => {
                    let bytes: usize = (0..n).map(|i| q.get(i).len()).sum();
                    q.consume(n);
                    (n, bytes)
                }
                Err(e) => {
                    // UDP send errors are transient (no route, ICMP feedback); the datagrams are lost like
                    // on a bad link.
                    tracing::debug!(remote = %to, error = %e, "UDP send failed; dropping queued datagrams");
                    q.clear();
                    if matches!(self.role, Role::Client) && socket_gone(&e) {
                        self.replace_failed_socket(&io);
                    }
                    (0, 0)
                }
            };
            let mut st = self.state.lock();
            st.conn.note_sent(pkts, bytes);
            publish(&mut st);
            if !q.is_empty() {
                // Full socket buffer: keep the order, wait for room in a task.
                let Ok(rt) = tokio::runtime::Handle::try_current() else {
                    // Outside a runtime (a handle dropped after it shut down): nothing can wait.
                    st.sending = false;
                    return;
                };
                drop(st);
                #[cfg(test)]
                tests::WRITABLE_WAITS.fetch_add(1, Ordering::Relaxed);
                let s = Arc::clone(self);
                rt.spawn(async move {
                    // An error here shows up again on the next send.
                    let _ = s.io().socket().writable().await;
                    s.send(Some(Outgoing(q, to)));
                });
                return;
            }
            // Give the (now empty) buffer back for reuse, taking whatever was queued meanwhile.
            st.conn.swap_transmits(&mut q);
            if q.is_empty() {
                st.sending = false;
                return;
            }
            to = st.remote;
        }
    }

    /// The timer entry queued for `at` came up (run by the read loop): whatever the connection has due
    /// (periodic flush, retransmissions, probes, the dead-link check, idle timeout, shutdown bound).
    pub(crate) fn on_timer(self: &Arc<Self>, at: Timestamp) {
        let (wakes, out, dead) = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            if st.finished {
                return;
            }
            st.queued.remove(at);
            let now = now();
            if st.conn.poll_timeout(now).is_none_or(|d| d > now) {
                // A deadline that has since moved later (an ACK idled the engine, a write's flush took the
                // pending ACKs along): nothing changed since the last pump, so there is nothing to send,
                // count or wake; only the later deadline needs an entry. Most entries of a session with
                // light traffic end here.
                self.rearm(st, now);
                return;
            }
            st.conn.handle_timeout(now);
            let (w, out) = self.pump(st, now);
            (w, out, st.conn.closed())
        };
        self.send(out);
        wakes.wake();
        if let Some(reason) = dead {
            self.close(reason);
        }
    }

    /// Whether this session's timer entry at `at` (not due yet) is stale: the session closed, or its next
    /// deadline is now later (or gone). A stale entry is forgotten and the later deadline gets its own.
    pub(crate) fn drop_if_stale(self: &Arc<Self>, at: Timestamp) -> bool {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if st.finished {
            return true;
        }
        let now = now();
        if st.conn.poll_timeout(now).is_some_and(|d| d <= at) {
            return false;
        }
        st.queued.remove(at);
        self.rearm(st, now);
        true
    }

    /// Closes the session (only the first call does anything). A local close first sends one last flush of
    /// what the window allows. Then everyone waiting is woken, its timer entries lapse and the read loop lets
    /// go.
    pub(crate) fn close(self: &Arc<Self>, reason: CloseReason) {
        let (wakes, out, why, remote) = {
            let mut st = self.state.lock();
            if st.finished {
                return;
            }
            st.finished = true;
            st.conn.close(now(), reason);
            let out = take_tx(&mut st);
            publish(&mut st);
            let why = st.conn.closed().unwrap_or(reason);
            (
                Wakes(st.read_waker.take(), st.write_waker.take()),
                out,
                why,
                st.remote,
            )
        };
        self.send(out);
        wakes.wake();
        self.closed_notify.notify_waiters();
        GLOBAL.curr_estab.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(conv = self.conv, remote = %remote, reason = ?why, "KCP session closed");
        self.link.session_closed(self.role, remote);
    }

    /// Why the session ended, if it did.
    pub(crate) fn closed(&self) -> Option<CloseReason> {
        self.state.lock().conn.closed()
    }

    /// Waits until the session is closed and returns why.
    pub(crate) async fn wait_closed(&self) -> SessionError {
        loop {
            let notified = self.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.closed() {
                return r.to_error();
            }
            notified.await;
        }
    }

    /// This session's counters (engine counters included). Process-wide fields are 0.
    pub(crate) fn snapshot(&self) -> SnmpSnapshot {
        self.state.lock().conn.counters()
    }

    /// Runs `f` on the connection under the lock, then flushes/re-arms (for runtime knobs).
    pub(crate) fn with_conn<R>(self: &Arc<Self>, f: impl FnOnce(&mut Connection) -> R) -> R {
        let (r, wakes, out) = {
            let mut st = self.state.lock();
            let r = f(&mut st.conn);
            let (w, out) = if st.conn.closed().is_none() {
                self.pump(&mut st, now())
            } else {
                (Wakes::default(), None)
            };
            (r, w, out)
        };
        self.send(out);
        wakes.wake();
        r
    }

    // ------------------------------------------------------------------ application side

    /// `AsyncRead`: the next bytes (or message) from the connection; waits otherwise.
    pub(crate) fn poll_read(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let (wakes, out) = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let now = now();
            match st.conn.read(now, buf.initialize_unfilled()) {
                Ok(Some(n)) => {
                    buf.advance(n);
                    let (mut w, out) = self.pump(st, now);
                    // w.0 is our own (stale) read waker: we are returning Ready anyway.
                    w.0 = None;
                    (w, out)
                }
                Ok(None) => {
                    st.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        };
        self.send(out);
        wakes.wake();
        Poll::Ready(Ok(()))
    }

    /// `AsyncWrite`: while the window has room, queue up to one window of `data` and flush right away (unless
    /// write delay); otherwise wait for the window to open.
    pub(crate) fn poll_write(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let (n, wakes, out) = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let now = now();
            match st.conn.write(now, data) {
                Ok(Some(n)) => {
                    let (w, out) = self.pump(st, now);
                    (n, w, out)
                }
                Ok(None) => {
                    st.write_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        };
        self.send(out);
        wakes.wake();
        Poll::Ready(Ok(n))
    }

    /// Message mode: queue `msg` as one message once the window has room.
    pub(crate) fn poll_send_msg(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        msg: &[u8],
    ) -> Poll<Result<(), SessionError>> {
        let (wakes, out) = {
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
        self.send(out);
        wakes.wake();
        Poll::Ready(Ok(()))
    }

    /// Message mode: take the next whole message into `buf`.
    pub(crate) fn poll_recv_msg(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, SessionError>> {
        let (n, wakes, out) = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let now = now();
            match st.conn.recv_msg(now, buf) {
                Ok(Some(n)) => {
                    let (w, out) = self.pump(st, now);
                    (n, w, out)
                }
                Ok(None) => {
                    st.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        };
        self.send(out);
        wakes.wake();
        Poll::Ready(Ok(n))
    }

    /// Message mode: the size of the next whole message, if one is ready.
    pub(crate) fn peek_msg_size(&self) -> Result<Option<usize>, SessionError> {
        self.state.lock().conn.peek_msg_size()
    }

    /// `poll_flush`: a full flush of whatever is queued (only matters with write delay).
    pub(crate) fn poll_flush(self: &Arc<Self>) -> Poll<io::Result<()>> {
        let (wakes, out) = {
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
        self.send(out);
        wakes.wake();
        Poll::Ready(Ok(()))
    }

    /// `poll_shutdown`: wait until everything written was acknowledged, then close. KCP has no FIN, so this
    /// is the only way to know the peer has the data. Bounded by `close_timeout`: after it the timer closes
    /// the session and this fails with [`SessionError::CloseTimeout`].
    pub(crate) fn poll_shutdown(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            match st.conn.closed() {
                Some(CloseReason::Local) => return Poll::Ready(Ok(())),
                Some(r) => return Poll::Ready(Err(r.to_error().into())),
                None => {}
            }
            if !st.conn.all_acked() {
                let now = now();
                st.conn.begin_shutdown(now);
                self.rearm(st, now);
                st.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        self.close(CloseReason::Local);
        Poll::Ready(Ok(()))
    }
}

/// Takes the connection's queued datagrams out for sending, unless someone is already sending (they pick
/// these up next, in order). Beyond [`MAX_PENDING_TX`] waiting behind a full socket buffer the queue is
/// dropped, as a full link would (KCP retransmits).
fn take_tx(st: &mut State) -> Option<Outgoing> {
    if st.conn.transmits().is_empty() {
        return None;
    }
    if st.sending {
        if st.conn.transmits().len() > MAX_PENDING_TX {
            st.conn.release_tx();
        }
        return None;
    }
    st.sending = true;
    let mut q = TxQueue::default();
    st.conn.swap_transmits(&mut q);
    Some(Outgoing(q, st.remote))
}

/// Adds what this session's counters gained since the last call to the process totals.
fn publish(st: &mut State) {
    let cur = st.conn.counters();
    GLOBAL.add_delta(&st.published, &cur);
    st.published = cur;
}

/// The process-wide counters (kcp-go's `DefaultSnmp`, docs/wire-format.md#session-snmp): every session that
/// ever existed in this process plus the events that belong to no session. Plain atomics: each session adds
/// what its counters gained whenever it does work, so this reads no session and takes no lock.
pub fn global_snmp() -> SnmpSnapshot {
    GLOBAL.snapshot()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::AsyncWriteExt;

    use crate::{KcpConfig, KcpStream};

    /// Times a send found the socket buffer full and handed the rest to a task waiting for writability.
    pub(super) static WRITABLE_WAITS: AtomicU64 = AtomicU64::new(0);

    /// A send that finds the socket buffer full hands the rest of its batch to a task waiting for
    /// writability (no retry timer), and the session's datagrams still leave in order: a silent peer
    /// records the first flight of 20 segments while every send call takes one datagram only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_socket_buffer_waits_for_writability_and_keeps_order() {
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = peer.local_addr().unwrap();
        crate::udp::tests::SHORT_SEND_TO.store(to.port(), Ordering::Relaxed);
        let before = WRITABLE_WAITS.load(Ordering::Relaxed);
        let mut cfg = KcpConfig::fast3();
        cfg.kcp.snd_wnd = 64;
        let mss = cfg.mss();
        let mut c = KcpStream::connect(to, cfg).await.unwrap();
        c.write_all(&vec![1u8; 20 * mss]).await.unwrap();
        let mut sns = Vec::new();
        let mut buf = [0u8; 2048];
        while sns.len() < 20 {
            let (n, _) =
                tokio::time::timeout(std::time::Duration::from_secs(5), peer.recv_from(&mut buf))
                    .await
                    .expect("the whole flight arrives")
                    .unwrap();
            // Plain KCP: one segment per datagram here; cmd at 4, sn at 12..16.
            if n >= 24 && buf[4] == 81 {
                sns.push(u32::from_le_bytes(buf[12..16].try_into().unwrap()));
            }
        }
        assert_eq!(sns, (0..20).collect::<Vec<u32>>(), "in order, each once");
        assert!(WRITABLE_WAITS.load(Ordering::Relaxed) >= before + 10);
        crate::udp::tests::SHORT_SEND_TO.store(0, Ordering::Relaxed);
    }

    /// A client whose socket's local address goes away (sends fail with EADDRNOTAVAIL) moves the session to a
    /// fresh socket by itself; the listener follows it there (roaming) and the transfer completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_whose_socket_fails_moves_to_a_new_one() {
        use tokio::io::AsyncReadExt;
        let listener = crate::KcpListener::bind("127.0.0.1:0", KcpConfig::fast3())
            .await
            .unwrap();
        let mut c = KcpStream::connect(listener.local_addr().unwrap(), KcpConfig::fast3())
            .await
            .unwrap();
        c.write_all(b"one").await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).await.unwrap();
        // The client has heard from the server (`una` > 0): its datagrams are no session start any more,
        // which a start from a new address would be taken for (a second peer that picked the same id).
        s.write_all(b"hi!").await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        let old = c.local_addr().unwrap();
        crate::udp::tests::FAIL_SENDS_FROM.store(old.port(), Ordering::Relaxed);
        c.write_all(b"two").await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut b))
            .await
            .expect("the data arrives from the new socket")
            .unwrap();
        assert_eq!(&b, b"two");
        crate::udp::tests::FAIL_SENDS_FROM.store(0, Ordering::Relaxed);
        assert_ne!(c.local_addr().unwrap().port(), old.port());
        assert_eq!(listener.stats().created, 1);
        assert!(listener.stats().roamed >= 1);
        // And back: the server's answers reach the new socket.
        s.write_all(b"ack").await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ack");
    }

    /// The read loop drops a stale timer entry before it sleeps: an entry before the session's next
    /// deadline (what a retransmission timer whose ACK came leaves behind) goes at once, not when it
    /// comes up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_read_loop_drops_stale_timer_entries_before_it_sleeps() {
        use tokio::io::AsyncReadExt;
        let listener = crate::KcpListener::bind("127.0.0.1:0", KcpConfig::fast3())
            .await
            .unwrap();
        let mut c = KcpStream::connect(listener.local_addr().unwrap(), KcpConfig::fast3())
            .await
            .unwrap();
        c.write_all(b"one").await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(b"two").await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        let session = std::sync::Arc::clone(c.session());
        // Idle now but for the idle timeout (60 s): its entry is the session's only live one.
        let idle = || session.state.lock().conn.kcp.next_deadline().is_none();
        while !idle() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let timers = &session.link.timers;
        // An entry 5 s out, long before the session's next deadline: stale from the start.
        let at = super::now().add_millis(5_000);
        session.link.schedule(at, &session);
        let start = std::time::Instant::now();
        while timers.has_entry_at(at) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(2),
                "the stale entry is still queued"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(s);
    }

    /// What every session costs before any traffic, with FEC and cipher off: 10,000 sessions must fit in a few
    /// MB (the FEC coder state used to sit inline, ~6 KB per session even with FEC off).
    #[test]
    fn an_idle_session_struct_stays_small() {
        // 1,416 bytes today: the engine (with loss recovery, address-validation state and the window last
        // advertised), the pipeline, the lifecycle bounds, wakers and the timer's notify. Grows only on purpose.
        assert!(std::mem::size_of::<super::Session>() <= 1416);
    }
}
