//! The tokio driver's socket side: one read loop per UDP socket, shared by the listener (many sessions,
//! routed by the sans-IO [`Endpoint`](crate::proto::endpoint::Endpoint)) and the client stream (one
//! session, datagrams from other addresses dropped and counted). What differs is a [`Demux`].
//!
//! The loop reads batches (`recvmmsg`/GRO, [`UdpIo::recv_batch`]), hands each batch to the demux, and between
//! batches lets the demux apply what sessions reported (closes, through a [`DriverLink`]), runs the timer
//! work of the sessions on this socket that is due ([`Timers`]: one heap per socket, no task per session)
//! and the demux's own timer ([`Demux::poll_timeout`]/[`Demux::handle_timeout`]). Timer work runs after the
//! batch that was read, so fresh ACKs are in before a retransmission timer is looked at. Sends happen where
//! the data is produced, never in this loop's lock.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rkcp_crypt::SessionOpener;
use tokio::sync::Notify;

use crate::error::CloseReason;
use crate::proto::endpoint::ConnHandle;
use crate::proto::packet::{DropReason, open_with};
use crate::proto::time::Timestamp;
use crate::session::{Role, Session};
use crate::timers::Timers;
use crate::udp::{RecvBatch, UdpIo};

/// The packet path's clock: milliseconds since the first time anyone in the process asked.
pub(crate) fn now() -> Timestamp {
    Timestamp::from_millis(epoch().elapsed().as_millis() as u64)
}

/// A [`now`] timestamp as a tokio instant (for `sleep_until`).
pub(crate) fn instant(t: Timestamp) -> tokio::time::Instant {
    (epoch() + Duration::from_millis(t.as_millis())).into()
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// What sessions tell their socket's read loop: that they closed (so a listener forgets their route), and a
/// wake-up for the loop to look.
#[derive(Debug, Default)]
pub(crate) struct DriverLink {
    closed: Mutex<Vec<(SocketAddr, ConnHandle)>>,
    /// A client session moved to this socket: the loop reads it from now on.
    rebind: Mutex<Option<Arc<UdpIo>>>,
    notify: Notify,
    /// The timers of the sessions on this socket, run by the loop.
    pub(crate) timers: Timers,
}

impl DriverLink {
    /// A session closed: an accepted one is queued for [`DriverLink::take_closed`]; the loop is woken.
    pub(crate) fn session_closed(&self, role: Role, remote: SocketAddr) {
        if let Role::Accepted(h) = role {
            self.closed.lock().push((remote, h));
        }
        self.notify.notify_one();
    }

    /// A client session moved to `io`: the loop switches to it (and lets the old socket go).
    pub(crate) fn rebind(&self, io: Arc<UdpIo>) {
        *self.rebind.lock() = Some(io);
        self.notify.notify_one();
    }

    /// Wakes the read loop (to notice a listener close, say).
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    /// The loop checks `session` at `at` (waking the loop if it sleeps past that).
    pub(crate) fn schedule(&self, at: Timestamp, session: &Arc<Session>) {
        if self.timers.schedule(at, Arc::downgrade(session)) {
            self.notify.notify_one();
        }
    }

    /// The accepted sessions that closed since the last call, with their last remote address.
    pub(crate) fn take_closed(&self) -> Vec<(SocketAddr, ConnHandle)> {
        std::mem::take(&mut *self.closed.lock())
    }
}

/// What a read loop does with its socket's datagrams.
pub(crate) trait Demux: Send + 'static {
    /// Between batches: applies what sessions reported. `false` ends the loop (nothing left to serve).
    fn maintain(&mut self) -> bool;
    /// One received batch of `n` datagrams, read at `now`.
    fn input(&mut self, now: Timestamp, batch: &mut RecvBatch, n: usize);
    /// The socket failed for good: close everything. The loop ends.
    fn socket_failed(&mut self, e: io::Error);
    /// When [`Demux::handle_timeout`] is next due (the listener's endpoint timer plugs in here).
    fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }
    /// The demux's own timer work.
    fn handle_timeout(&mut self, _now: Timestamp) {}
}

/// The one read loop of a socket.
pub(crate) async fn drive<D: Demux>(mut io: Arc<UdpIo>, link: Arc<DriverLink>, mut demux: D) {
    let mut batch = RecvBatch::for_io(&io);
    let mut due = Vec::new();
    // One timer for the loop's life, moved only when the earliest deadline changes: registering a new one on
    // every pass (every datagram) would, whenever it is earlier than what a parked worker sleeps towards,
    // unpark that worker for nothing.
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    // What `sleep` is set to; `None` once it fired (or before the first deadline).
    let mut sleep_at: Option<Timestamp> = None;
    loop {
        run_timers(&link, &mut due);
        if !demux.maintain() {
            return;
        }
        if let Some(new) = link.rebind.lock().take() {
            io = new;
            batch = RecvBatch::for_io(&io);
        }
        prune_stale(&link);
        let demux_timeout = demux.poll_timeout();
        let timeout = match (demux_timeout, link.timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = timeout
            && sleep_at != Some(t)
        {
            sleep.as_mut().reset(instant(t));
            sleep_at = Some(t);
        }
        let n = tokio::select! {
            r = io.recv_batch(&mut batch) => match r {
                Ok(n) => n,
                Err(e) if transient(&e) => continue,
                Err(e) => {
                    demux.socket_failed(e);
                    return;
                }
            },
            _ = link.notify.notified() => continue,
            () = &mut sleep, if timeout.is_some() => {
                sleep_at = None;
                // Session timers run at the top of the loop; the demux's only when its own deadline came.
                let now = now();
                if demux_timeout.is_some_and(|t| t <= now) {
                    demux.handle_timeout(now);
                }
                continue;
            }
        };
        // Awake: sessions the batch re-arms need not wake the loop (it looks at the timers before sleeping).
        link.timers.awake();
        demux.input(now(), &mut batch, n);
    }
}

/// Front entries of the timers checked for staleness before the loop sleeps (bounds the work per pass).
const PRUNE_MAX: usize = 32;

/// Drops the stale entries at the front of the timers (see [`Timers`]), so the loop sleeps towards a live
/// deadline.
fn prune_stale(link: &DriverLink) {
    for _ in 0..PRUNE_MAX {
        let Some((at, seq, session)) = link.timers.head() else {
            return;
        };
        let stale = session.upgrade().is_none_or(|s| s.drop_if_stale(at));
        if !stale {
            return;
        }
        link.timers.pop_head(seq);
    }
}

/// Runs the timer work of the sessions whose entries are due (see [`Timers`]). `due` is scratch space.
fn run_timers(link: &DriverLink, due: &mut Vec<(Timestamp, Weak<Session>)>) {
    let now = now();
    link.timers.take_due(now, due);
    for (at, s) in due.drain(..) {
        if let Some(s) = s.upgrade() {
            s.on_timer(at);
        }
    }
}

/// A client's socket: one session; datagrams from any other address are dropped and counted in `InErrs`
/// (docs/wire-format.md#session-dial), as are those that fail to open.
pub(crate) struct ClientDemux {
    pub(crate) s: Arc<Session>,
    /// The session's opening half of the cipher (`None`: no cipher).
    pub(crate) opener: Option<SessionOpener>,
}

impl Demux for ClientDemux {
    fn maintain(&mut self) -> bool {
        self.s.closed().is_none()
    }

    fn input(&mut self, now: Timestamp, batch: &mut RecvBatch, n: usize) {
        let remote = self.s.remote();
        for i in 0..n {
            let (pkt, from) = batch.get_mut(i);
            if from != remote {
                self.s.count_drop(DropReason::UnknownPeer);
                continue;
            }
            match open_with(self.opener.as_mut(), pkt) {
                Ok((r, _)) => self.s.input(now, &pkt[r]),
                // kcp-go drops short ones without a counter; we count them as input errors.
                Err(r) => self.s.count_drop(r),
            }
        }
        // A client dialled its peer: there is no address to prove.
        let _ = self.s.after_input(now);
    }

    fn socket_failed(&mut self, e: io::Error) {
        tracing::debug!(error = %e, "KCP client socket failed");
        self.s.close(CloseReason::Socket(e.kind()));
    }
}

/// Errors a UDP socket reports for earlier traffic (ICMP feedback) rather than for itself.
pub(crate) fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error().is_some_and(
        |c| c == 113 /* EHOSTUNREACH */ || c == 101, /* ENETUNREACH */
    )
}
