//! The tokio driver's socket side: one read loop per UDP socket, shared by the listener (many sessions,
//! routed by the sans-IO [`Endpoint`](crate::proto::endpoint::Endpoint)) and the client stream (one
//! session, datagrams from other addresses dropped and counted). What differs is a [`Demux`].
//!
//! The loop reads batches (`recvmmsg`/GRO, [`UdpIo::recv_batch`]), hands each batch to the demux, and between
//! batches lets the demux apply what sessions reported (closes, through a [`DriverLink`]) and run its own
//! timer ([`Demux::poll_timeout`]/[`Demux::handle_timeout`]). Sessions' timers are their own tasks
//! (see [`crate::session`]); sends happen where the data is produced, never in this loop's lock.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rkcp_crypt::SessionOpener;
use tokio::sync::Notify;

use crate::error::CloseReason;
use crate::proto::endpoint::ConnHandle;
use crate::proto::packet::{DropReason, open_with};
use crate::proto::time::Timestamp;
use crate::session::{Role, Session};
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
    loop {
        if !demux.maintain() {
            return;
        }
        if let Some(new) = link.rebind.lock().take() {
            io = new;
            batch = RecvBatch::for_io(&io);
        }
        let timeout = demux.poll_timeout();
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
            _ = async {
                match timeout {
                    Some(t) => tokio::time::sleep_until(instant(t)).await,
                    None => std::future::pending().await,
                }
            } => {
                demux.handle_timeout(now());
                continue;
            }
        };
        demux.input(now(), &mut batch, n);
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
