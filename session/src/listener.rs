//! [`KcpListener`]: one UDP socket serving many sessions, demultiplexed by remote address (docs/wire-format.md#session-listener).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{ToSocketAddrs, UdpSocket};
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc};

use parking_lot::Mutex;

use crate::config::KcpConfig;
use crate::driver::{Demux, DriverLink, drive};
use crate::error::{CloseReason, SessionError};
use crate::proto::endpoint::{Action, ConnHandle, Endpoint};
use crate::proto::packet::DropReason;
use crate::proto::time::Timestamp;
use crate::session::{Role, Session};
use crate::snmp::GLOBAL;
use crate::stream::KcpStream;
use crate::udp::{RecvBatch, UdpIo};

/// Counters of a listener: datagrams dropped before they reached a session, by reason, and what happened to
/// sessions. kcp-go counts only the checksum failures (in `InCsumErrors`, which we also bump); the rest are
/// ours, so that every bad datagram is accounted for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ListenerStats {
    /// Shorter than the cipher header, or than a KCP header after it.
    pub short: u64,
    /// Failed the CRC (kcp-go ciphers) or authentication (AEAD kinds).
    pub checksum: u64,
    /// From an unknown address, and not a packet that can start a session (FEC parity or short FEC data).
    pub unknown_peer: u64,
    /// A conversation live at another address (or closed within the replay window) and nothing newer than
    /// what its session had seen: a replay, or a late datagram from a moved peer's old address.
    pub stale: u64,
    /// From an unknown address and conversation, but not a session start (the peer had data from us).
    pub not_a_start: u64,
    /// A new peer while the unverified limits were reached, too small to answer with an address check.
    pub unverified_limit: u64,
    /// AEAD kinds: a datagram whose counter its session had already seen (or too old for the replay window),
    /// or a session start whose id was seen before.
    pub replayed: u64,
    /// AEAD kinds: a session start whose id is outside the freshness window or from before the listener
    /// started (an old replay, a client clock off by minutes, or garbage).
    pub not_fresh: u64,
    /// A new peer while the accept backlog was full.
    pub backlog_full: u64,
    /// A new peer while `max_sessions` sessions were live.
    pub session_cap: u64,
    /// A new peer after the listener was closed.
    pub not_accepting: u64,
    /// Stateless address checks sent (new peers while the unverified limits were reached).
    pub address_checks: u64,
    /// Sessions created.
    pub created: u64,
    /// Sessions whose peer proved its address (answered the echo request or acknowledged data).
    pub verified: u64,
    /// Sessions closed because their peer did not prove its address in time.
    pub unverified_expired: u64,
    /// Sessions unverified now (a gauge; slots of unverified sessions that already closed are not counted,
    /// although they keep their slot until their deadline).
    pub unverified: u64,
    /// Sessions that followed their peer to a new address.
    pub roamed: u64,
    /// Conversation ids forgotten before the end of the replay window because the record was full.
    pub replay_record_overflow: u64,
}

struct Shared {
    io: Arc<UdpIo>,
    /// Routing, counters and limits; locked by the socket task once per received batch.
    endpoint: Mutex<Endpoint>,
    closed: AtomicBool,
    close_notify: Notify,
    /// Sessions report closes to the read loop here; a listener close wakes it too.
    link: Arc<DriverLink>,
}

/// A KCP server: accepts sessions from any peer on one UDP socket.
///
/// Wire-compatible with kcp-go clients, with the server-side rules of a listener on the open internet
/// (docs/wire-format.md#session-listener; the threat model is in the crate docs): sessions are keyed by the
/// peer's address and conversation id; a session start (a datagram whose peer has received nothing from us)
/// of a conversation neither live nor recently closed creates a session; a session follows its peer to a new
/// address on newer traffic (a rebinding NAT); peers that have not yet proved their address are budgeted
/// ([`ListenerConfig::admission`](crate::ListenerConfig::admission)). At most [`KcpConfig::listener`]'s `accept_backlog` sessions wait for [`KcpListener::accept`] and at most
/// `max_sessions` are live; every datagram that reaches no session is counted by reason
/// ([`KcpListener::stats`]). Every accepted session starts with the listener's [`KcpConfig`] (kcp-go starts
/// them with its defaults).
///
/// One task reads the socket in batches and dispatches to the sessions; each session's timer is its own
/// tokio task. [`KcpListener::close`] (or drop) stops
/// accepting; sessions already accepted keep working on the shared socket until they close, then the socket
/// is released.
#[derive(Debug)]
pub struct KcpListener {
    shared: Arc<Shared>,
    accept_rx: AsyncMutex<mpsc::UnboundedReceiver<Arc<Session>>>,
    local: SocketAddr,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl KcpListener {
    /// Binds a UDP socket and listens on it.
    ///
    /// # Errors
    /// [`SessionError::Config`] for an invalid config, [`SessionError::Io`] if binding fails.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: KcpConfig,
    ) -> Result<KcpListener, SessionError> {
        config.validate()?;
        let sock = UdpSocket::bind(addr).await?;
        Self::from_socket(sock, config)
    }

    /// Listens on an existing std socket (switched to non-blocking). Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// As [`KcpListener::from_socket`], or the error of registering the socket with tokio.
    pub fn from_std(
        sock: std::net::UdpSocket,
        config: KcpConfig,
    ) -> Result<KcpListener, SessionError> {
        sock.set_nonblocking(true)?;
        Self::from_socket(UdpSocket::from_std(sock)?, config)
    }

    /// Listens on an existing tokio socket. Must be called inside a tokio runtime (it spawns the reader task).
    ///
    /// # Errors
    /// [`SessionError::Config`] for an invalid config; [`SessionError::Io`] if a socket option fails.
    pub fn from_socket(sock: UdpSocket, config: KcpConfig) -> Result<KcpListener, SessionError> {
        config.validate()?;
        crate::sockopt::apply(&sock, &config)?;
        let local = sock.local_addr()?;
        // The endpoint bounds the backlog; the channel only carries what it admitted.
        let (accept_tx, accept_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            io: Arc::new(UdpIo::new(sock, true)),
            endpoint: Mutex::new(Endpoint::new(config)),
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
            link: Arc::new(DriverLink::default()),
        });
        let demux = ListenerDemux {
            shared: Arc::clone(&shared),
            sessions: HashMap::new(),
            accept_tx: Some(accept_tx),
            auth_warn: RateLimited::new(AUTH_WARN_EVERY_MS),
            touched: Vec::with_capacity(crate::udp::BATCH),
            expired: Vec::new(),
        };
        tokio::spawn(drive(
            Arc::clone(&shared.io),
            Arc::clone(&shared.link),
            demux,
        ));
        Ok(KcpListener {
            shared,
            accept_rx: AsyncMutex::new(accept_rx),
            local,
        })
    }

    /// Waits for the next session and returns it with the peer's address.
    ///
    /// Cancel safe: a session is taken from the backlog only when returned.
    ///
    /// # Errors
    /// [`SessionError::ListenerClosed`] after [`KcpListener::close`] or if the socket failed.
    pub async fn accept(&self) -> Result<(KcpStream, SocketAddr), SessionError> {
        // Registered before the check, so a close() racing with us cannot be missed.
        let closing = self.shared.close_notify.notified();
        tokio::pin!(closing);
        closing.as_mut().enable();
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SessionError::ListenerClosed);
        }
        let mut rx = tokio::select! {
            rx = self.accept_rx.lock() => rx,
            _ = closing.as_mut() => return Err(SessionError::ListenerClosed),
        };
        loop {
            tokio::select! {
                s = rx.recv() => match s {
                    Some(s) => {
                        self.shared.endpoint.lock().accepted();
                        if s.closed().is_some() {
                            continue; // replaced or dead before anyone accepted it
                        }
                        let peer = s.remote();
                        return Ok((KcpStream::from_session(&s), peer));
                    }
                    None => return Err(SessionError::ListenerClosed),
                },
                _ = closing.as_mut() => return Err(SessionError::ListenerClosed),
            }
        }
    }

    /// The socket's local address (as `TcpListener::local_addr`; kcp-go `Listener.Addr`).
    ///
    /// # Errors
    /// None today (the address is read once at bind); `io::Result` keeps the shape of tokio's
    /// `TcpListener::local_addr` and of [`KcpStream::local_addr`](crate::KcpStream::local_addr).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Datagrams dropped before reaching a session, and sessions created/replaced.
    pub fn stats(&self) -> ListenerStats {
        self.shared.endpoint.lock().stats()
    }

    /// DSCP of the shared socket (kcp-go `Listener.SetDSCP`).
    ///
    /// # Errors
    /// The socket error.
    pub fn set_dscp(&self, dscp: u32) -> Result<(), SessionError> {
        crate::sockopt::set_dscp(self.shared.io.socket(), dscp)
    }

    /// `SO_RCVBUF` of the shared socket.
    ///
    /// # Errors
    /// The socket error.
    pub fn set_recv_buffer(&self, bytes: usize) -> Result<(), SessionError> {
        Ok(socket2::SockRef::from(self.shared.io.socket()).set_recv_buffer_size(bytes)?)
    }

    /// `SO_SNDBUF` of the shared socket.
    ///
    /// # Errors
    /// The socket error.
    pub fn set_send_buffer(&self, bytes: usize) -> Result<(), SessionError> {
        Ok(socket2::SockRef::from(self.shared.io.socket()).set_send_buffer_size(bytes)?)
    }

    /// Stops accepting: pending and later [`KcpListener::accept`] calls fail with
    /// [`SessionError::ListenerClosed`], sessions still in the backlog are closed, new peers are ignored.
    /// Accepted sessions keep running; the socket is released when the last one closes.
    pub fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.endpoint.lock().stop_accepting();
        self.shared.close_notify.notify_waiters();
        self.shared.link.wake();
        if let Ok(mut rx) = self.accept_rx.try_lock() {
            rx.close();
            while let Ok(s) = rx.try_recv() {
                s.close(CloseReason::Local);
            }
        }
    }
}

impl Drop for KcpListener {
    fn drop(&mut self) {
        self.close();
        let rx = self.accept_rx.get_mut();
        rx.close();
        while let Ok(s) = rx.try_recv() {
            s.close(CloseReason::Local);
        }
    }
}

/// The listener's side of its socket's read loop: lets the endpoint open and route each datagram, feeds
/// sessions, creates accepted ones, and ends once the listener is closed and its last session is gone.
struct ListenerDemux {
    shared: Arc<Shared>,
    sessions: HashMap<ConnHandle, Arc<Session>>,
    accept_tx: Option<mpsc::UnboundedSender<Arc<Session>>>,
    auth_warn: RateLimited,
    touched: Vec<(ConnHandle, Arc<Session>)>,
    expired: Vec<ConnHandle>,
}

impl ListenerDemux {
    /// Closes one of this listener's sessions (the endpoint's evictions and expiries come through here); its
    /// route is forgotten when the close is reported back through the link.
    fn close_session(&mut self, h: ConnHandle, reason: CloseReason) {
        if let Some(s) = self.sessions.remove(&h) {
            s.close(reason);
        }
    }
}

impl Demux for ListenerDemux {
    fn maintain(&mut self) -> bool {
        let closed = self.shared.link.take_closed();
        if !closed.is_empty() {
            let mut ep = self.shared.endpoint.lock();
            let now = crate::driver::now();
            for (_, h) in closed {
                self.sessions.remove(&h);
                ep.forget(h, now);
            }
        }
        if self.shared.closed.load(Ordering::Acquire) {
            self.accept_tx = None;
            return !self.sessions.is_empty();
        }
        true
    }

    fn input(&mut self, now: Timestamp, batch: &mut RecvBatch, n: usize) {
        let shared = Arc::clone(&self.shared);
        let mut ep = shared.endpoint.lock();
        for i in 0..n {
            let (pkt, from) = batch.get_mut(i);
            let routed = ep.handle(now, from, pkt);
            if let Some(h) = routed.moved
                && let Some(s) = self.sessions.get(&h)
            {
                tracing::debug!(conv = s.conv, to = %from, "KCP session followed its peer to a new address");
                s.set_remote(from);
            }
            match routed.action {
                Action::Deliver(h, data) => {
                    if let Some(s) = self.sessions.get(&h) {
                        s.input(now, data);
                        if self.touched.last().is_none_or(|(t, _)| *t != h) {
                            self.touched.push((h, Arc::clone(s)));
                        }
                    }
                }
                Action::Accept(h, conn, data) => {
                    let s = Session::new(
                        *conn,
                        from,
                        Arc::clone(&shared.io),
                        Role::Accepted(h),
                        Arc::clone(&shared.link),
                    );
                    tracing::debug!(conv = s.conv, remote = %from, "KCP session created");
                    s.input(now, data);
                    self.touched.push((h, Arc::clone(&s)));
                    self.sessions.insert(h, Arc::clone(&s));
                    match self.accept_tx.as_ref() {
                        Some(tx) if tx.send(Arc::clone(&s)).is_ok() => {}
                        // The listener went away between the routing and here.
                        _ => {
                            ep.accepted();
                            self.touched.pop();
                            s.close(CloseReason::Local);
                        }
                    }
                }
                Action::Respond(reply) => {
                    // Best effort, like any UDP send: a lost check is asked again by the peer's next datagram.
                    let _ = shared.io.socket().try_send_to(reply, from);
                }
                Action::Drop(DropReason::Checksum) => {
                    GLOBAL.in_csum_errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(n) = self.auth_warn.hit(now) {
                        tracing::warn!(
                            from = %from,
                            failed = n,
                            "datagrams fail authentication (wrong key or cipher?)"
                        );
                    }
                }
                Action::Drop(_) => {}
            }
        }
        drop(ep);
        for (h, s) in self.touched.drain(..) {
            s.after_input(now);
            if s.take_verified() {
                shared.endpoint.lock().verified(h);
            }
        }
    }

    /// The endpoint's deadline: unverified sessions that did not prove their address in time.
    fn poll_timeout(&self) -> Option<Timestamp> {
        self.shared.endpoint.lock().poll_timeout()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        let mut expired = std::mem::take(&mut self.expired);
        self.shared
            .endpoint
            .lock()
            .handle_timeout(now, &mut expired);
        for h in expired.drain(..) {
            // Its route is forgotten when the close comes back through the link.
            self.close_session(h, CloseReason::Unverified);
        }
        self.expired = expired;
    }

    fn socket_failed(&mut self, e: std::io::Error) {
        tracing::warn!(error = %e, "KCP listener socket failed; closing its sessions");
        for (_, s) in self.sessions.drain() {
            s.close(CloseReason::Socket(e.kind()));
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shared.endpoint.lock().stop_accepting();
        self.shared.close_notify.notify_waiters();
    }
}

/// At most one warning about failed authentication per this many milliseconds.
const AUTH_WARN_EVERY_MS: u64 = 10_000;

/// A warning that fires at most once per period and says how many events it stands for.
#[derive(Debug)]
struct RateLimited {
    every_ms: u64,
    last: Option<Timestamp>,
    count: u64,
}

impl RateLimited {
    fn new(every_ms: u64) -> RateLimited {
        RateLimited {
            every_ms,
            last: None,
            count: 0,
        }
    }

    /// Counts an event; returns the events since the last warning when a warning is due.
    fn hit(&mut self, now: Timestamp) -> Option<u64> {
        self.count += 1;
        let due = self
            .last
            .is_none_or(|l| now.as_millis() >= l.as_millis() + self.every_ms);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited_and_count_what_they_stand_for() {
        let mut w = RateLimited::new(10_000);
        let t = Timestamp::from_millis;
        assert_eq!(w.hit(t(5)), Some(1));
        for i in 0..999 {
            assert_eq!(w.hit(t(6 + i)), None);
        }
        assert_eq!(w.hit(t(10_005)), Some(1000));
        assert_eq!(w.hit(t(10_006)), None);
    }
}
