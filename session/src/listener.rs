//! [`KcpListener`]: one UDP socket serving many sessions, demultiplexed by remote address (PROTOCOL.md B.4).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{ToSocketAddrs, UdpSocket};
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc};

use crate::config::KcpConfig;
use crate::error::{CloseReason, SessionError};
use crate::session::{DropReason, Role, Session, open_datagram, registry};
use crate::stream::{KcpStream, transient};
use crate::udp::{RecvBatch, UdpIo};

/// Counters of datagrams a listener dropped before they reached a session (PROTOCOL.md B.11). kcp-go counts
/// only the checksum failures (in `InCsumErrors`, which we also bump); the rest are ours, so that every bad
/// datagram is accounted for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ListenerStats {
    /// Shorter than the cipher header, or than a KCP header after it.
    pub short: u64,
    /// Failed the CRC (kcp-go ciphers) or authentication (AEAD kinds).
    pub checksum: u64,
    /// From an unknown address, and not a packet that can start a session (FEC parity or short FEC data).
    pub unknown_peer: u64,
    /// From a known address with another conversation id and `sn != 0`.
    pub conv_mismatch: u64,
    /// A new peer while the accept backlog was full.
    pub backlog_full: u64,
    /// A new peer while `max_sessions` sessions were live.
    pub session_cap: u64,
    /// Sessions replaced by a new conversation from the same address.
    pub replaced: u64,
    /// Sessions created.
    pub created: u64,
}

#[derive(Debug, Default)]
struct Counters {
    short: AtomicU64,
    checksum: AtomicU64,
    unknown_peer: AtomicU64,
    conv_mismatch: AtomicU64,
    backlog_full: AtomicU64,
    session_cap: AtomicU64,
    replaced: AtomicU64,
    created: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ListenerStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ListenerStats {
            short: l(&self.short),
            checksum: l(&self.checksum),
            unknown_peer: l(&self.unknown_peer),
            conv_mismatch: l(&self.conv_mismatch),
            backlog_full: l(&self.backlog_full),
            session_cap: l(&self.session_cap),
            replaced: l(&self.replaced),
            created: l(&self.created),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// What the listener does with an opened datagram (PROTOCOL.md B.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Feed the existing session.
    Deliver,
    /// Close the existing session and start `conv` (a new conversation, sn 0, from the same address).
    Replace(u32),
    /// Start a session for `conv` (if the backlog and the cap allow).
    Create(u32),
    /// Known address, other conversation, sn != 0: drop.
    ConvMismatch,
    /// Unknown address and no conversation id to start from: drop.
    UnknownPeer,
}

/// conv and sn of an opened datagram, when they can be read (PROTOCOL.md B.4 "conv recovered").
pub(crate) fn recover_conv(data: &[u8]) -> Option<(u32, u32)> {
    let le32 = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let kcp = if rkcp_fec::is_fec_packet(data) {
        let is_data = data
            .get(4..6)
            .is_some_and(|t| u16::from_le_bytes([t[0], t[1]]) == rkcp_fec::TYPE_DATA);
        if !is_data || data.len() < rkcp_fec::HEADER_SIZE_PLUS2 + rkcp_engine::OVERHEAD {
            return None;
        }
        &data[rkcp_fec::HEADER_SIZE_PLUS2..]
    } else {
        data
    };
    Some((le32(kcp, 0)?, le32(kcp, 12)?))
}

/// The demultiplexing decision for a datagram from an address whose session (if any) has `existing` conv.
pub(crate) fn route(existing: Option<u32>, data: &[u8]) -> Route {
    let rec = recover_conv(data);
    match (existing, rec) {
        (Some(_), None) => Route::Deliver,
        (Some(cur), Some((conv, _))) if conv == cur => Route::Deliver,
        (Some(_), Some((conv, 0))) => Route::Replace(conv),
        (Some(_), Some(_)) => Route::ConvMismatch,
        (None, Some((conv, _))) => Route::Create(conv),
        (None, None) => Route::UnknownPeer,
    }
}

struct Shared {
    io: Arc<UdpIo>,
    config: KcpConfig,
    closed: AtomicBool,
    close_notify: Notify,
    serve_notify: Notify,
    counters: Counters,
}

/// A KCP server: accepts sessions from any peer on one UDP socket.
///
/// Sessions are keyed by the peer's address, as in kcp-go (PROTOCOL.md B.4): a datagram with a conversation id
/// from a new address creates a session (any packet type, an ACK included); a new conversation (sn 0) from a
/// known address replaces the old session; at most `accept_backlog` sessions wait for [`KcpListener::accept`]
/// and at most `max_sessions` are live, further new peers are dropped and counted ([`KcpListener::stats`]).
/// Every accepted session starts with the listener's [`KcpConfig`] (kcp-go starts them with its defaults).
///
/// One task reads the socket in batches and dispatches to the sessions. [`KcpListener::close`] (or drop) stops
/// accepting; sessions already accepted keep working on the shared socket until they close, then the socket
/// is released.
#[derive(Debug)]
pub struct KcpListener {
    shared: Arc<Shared>,
    accept_rx: AsyncMutex<mpsc::Receiver<Arc<Session>>>,
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
        let (accept_tx, accept_rx) = mpsc::channel(config.accept_backlog);
        let shared = Arc::new(Shared {
            io: Arc::new(UdpIo::new(sock, true)),
            config,
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
            serve_notify: Notify::new(),
            counters: Counters::default(),
        });
        tokio::spawn(serve(Arc::clone(&shared), accept_tx));
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
                        if s.closed().is_some() {
                            continue; // replaced or dead before anyone accepted it
                        }
                        return Ok((KcpStream::from_session(&s), s.remote));
                    }
                    None => return Err(SessionError::ListenerClosed),
                },
                _ = closing.as_mut() => return Err(SessionError::ListenerClosed),
            }
        }
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams dropped before reaching a session, and sessions created/replaced.
    pub fn stats(&self) -> ListenerStats {
        self.shared.counters.snapshot()
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
        self.shared.close_notify.notify_waiters();
        self.shared.serve_notify.notify_one();
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

/// The listener's socket task: reads batches, opens and routes each datagram, feeds sessions, and finishes
/// once the listener is closed and its last session is gone.
async fn serve(shared: Arc<Shared>, accept_tx: mpsc::Sender<Arc<Session>>) {
    let (closer_tx, mut closer_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut sessions: HashMap<SocketAddr, Arc<Session>> = HashMap::new();
    let mut batch = RecvBatch::for_io(&shared.io);
    let mut touched: Vec<Arc<Session>> = Vec::with_capacity(crate::udp::BATCH);
    let crypt = shared.config.crypt.clone();
    let mut accept_tx = Some(accept_tx);
    loop {
        while let Ok((addr, id)) = closer_rx.try_recv() {
            if sessions.get(&addr).is_some_and(|s| s.id == id) {
                sessions.remove(&addr);
            }
        }
        if shared.closed.load(Ordering::Acquire) {
            accept_tx = None;
            if sessions.is_empty() {
                return;
            }
        }
        let n = tokio::select! {
            r = shared.io.recv_batch(&mut batch) => match r {
                Ok(n) => n,
                Err(e) if transient(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "KCP listener socket failed; closing its sessions");
                    for (_, s) in sessions.drain() {
                        s.close(CloseReason::Socket(e.kind()));
                    }
                    shared.closed.store(true, Ordering::Release);
                    shared.close_notify.notify_waiters();
                    return;
                }
            },
            Some((addr, id)) = closer_rx.recv() => {
                if sessions.get(&addr).is_some_and(|s| s.id == id) {
                    sessions.remove(&addr);
                }
                continue;
            }
            _ = shared.serve_notify.notified() => continue,
        };
        let now = crate::sched::now_ms();
        let c = &shared.counters;
        for i in 0..n {
            let (pkt, from) = batch.get_mut(i);
            let data = match open_datagram(crypt.as_ref(), pkt) {
                Ok(d) => d,
                Err(DropReason::Short) => {
                    bump(&c.short);
                    continue;
                }
                Err(DropReason::Checksum) => {
                    bump(&c.checksum);
                    bump(&registry().global.in_csum_errors);
                    continue;
                }
            };
            let existing = sessions.get(&from);
            match route(existing.map(|s| s.conv), data) {
                Route::Deliver => {
                    if let Some(s) = existing {
                        s.input(now as u32, data);
                        if !touched.last().is_some_and(|t| Arc::ptr_eq(t, s)) {
                            touched.push(Arc::clone(s));
                        }
                    }
                }
                Route::ConvMismatch => bump(&c.conv_mismatch),
                Route::UnknownPeer => bump(&c.unknown_peer),
                Route::Replace(conv) | Route::Create(conv) => {
                    if let Some(old) = sessions.remove(&from) {
                        bump(&c.replaced);
                        old.close(CloseReason::Replaced);
                    }
                    let Some(tx) = accept_tx.as_ref() else {
                        continue;
                    };
                    if sessions.len() >= shared.config.max_sessions {
                        bump(&c.session_cap);
                        continue;
                    }
                    if tx.capacity() == 0 {
                        bump(&c.backlog_full);
                        continue;
                    }
                    let role = Role::Accepted {
                        closer: closer_tx.clone(),
                    };
                    let s = match Session::new(
                        conv,
                        from,
                        Arc::clone(&shared.io),
                        &shared.config,
                        role,
                    ) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot create KCP session");
                            continue;
                        }
                    };
                    bump(&c.created);
                    s.input(now as u32, data);
                    touched.push(Arc::clone(&s));
                    sessions.insert(from, Arc::clone(&s));
                    if tx.try_send(s).is_err() {
                        bump(&c.backlog_full);
                    }
                }
            }
        }
        for s in touched.drain(..) {
            s.after_input(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kcp_pkt(conv: u32, sn: u32) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        p[0..4].copy_from_slice(&conv.to_le_bytes());
        p[4] = 81;
        p[12..16].copy_from_slice(&sn.to_le_bytes());
        p
    }

    fn fec_pkt(kind: u16, inner: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 8];
        p[4..6].copy_from_slice(&kind.to_le_bytes());
        p.extend_from_slice(inner);
        p
    }

    #[test]
    fn routes_like_kcp_go() {
        let p = kcp_pkt(7, 5);
        assert_eq!(route(None, &p), Route::Create(7));
        assert_eq!(route(Some(7), &p), Route::Deliver);
        assert_eq!(route(Some(8), &p), Route::ConvMismatch);
        assert_eq!(route(Some(8), &kcp_pkt(7, 0)), Route::Replace(7));
        let d = fec_pkt(rkcp_fec::TYPE_DATA, &kcp_pkt(9, 0));
        assert_eq!(route(None, &d), Route::Create(9));
        let parity = fec_pkt(rkcp_fec::TYPE_PARITY, &[0u8; 30]);
        assert_eq!(route(None, &parity), Route::UnknownPeer);
        assert_eq!(route(Some(1), &parity), Route::Deliver);
        let short = fec_pkt(rkcp_fec::TYPE_DATA, &[0u8; 20]);
        assert_eq!(route(None, &short), Route::UnknownPeer);
        assert_eq!(route(Some(3), &short), Route::Deliver);
    }

    #[test]
    fn recover_conv_never_panics_on_short_input() {
        for len in 0..40 {
            let _ = recover_conv(&vec![0xF1; len]);
        }
    }
}
