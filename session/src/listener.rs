//! [`KcpListener`]: one UDP socket (or one per shard, `SO_REUSEPORT`) serving many sessions, demultiplexed by
//! remote address and conversation (docs/wire-format.md#session-listener).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::net::{ToSocketAddrs, UdpSocket};
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc};

use parking_lot::Mutex;

use crate::config::KcpConfig;
use crate::driver::{Demux, DriverLink, drive};
use crate::error::{CloseReason, SessionError};
use crate::proto::endpoint::{Action, ConnHandle, Endpoint, HandleMap};
use crate::proto::packet::DropReason;
use crate::proto::shard::{Owners, ShardLink};
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
    /// Sharded listeners ([`KcpListener::bind_sharded`]): datagrams a shard handed to the shard that owns
    /// their conversation (its peer moved to an address the kernel hashes to another shard).
    pub forwarded: u64,
    /// Sharded listeners: forwarded datagrams dropped because the owning shard's queue was full.
    pub forward_full: u64,
}

impl ListenerStats {
    /// Adds another shard's counters (and gauges) to these.
    fn add(&mut self, o: &ListenerStats) {
        let ListenerStats {
            short,
            checksum,
            unknown_peer,
            stale,
            not_a_start,
            unverified_limit,
            replayed,
            not_fresh,
            backlog_full,
            session_cap,
            not_accepting,
            address_checks,
            created,
            verified,
            unverified_expired,
            unverified,
            roamed,
            replay_record_overflow,
            forwarded,
            forward_full,
        } = *o;
        self.short += short;
        self.checksum += checksum;
        self.unknown_peer += unknown_peer;
        self.stale += stale;
        self.not_a_start += not_a_start;
        self.unverified_limit += unverified_limit;
        self.replayed += replayed;
        self.not_fresh += not_fresh;
        self.backlog_full += backlog_full;
        self.session_cap += session_cap;
        self.not_accepting += not_accepting;
        self.address_checks += address_checks;
        self.created += created;
        self.verified += verified;
        self.unverified_expired += unverified_expired;
        self.unverified += unverified;
        self.roamed += roamed;
        self.replay_record_overflow += replay_record_overflow;
        self.forwarded += forwarded;
        self.forward_full += forward_full;
    }
}

/// What the shards of one listener share.
struct Common {
    closed: AtomicBool,
    close_notify: Notify,
    /// Sessions live on all shards. After a close, every shard's read loop runs until this is 0: a moved
    /// peer's datagrams may reach any shard.
    live: AtomicUsize,
}

/// One socket of a listener, with its endpoint and read loop (a listener has one, or several when sharded).
struct Shared {
    io: Arc<UdpIo>,
    /// Routing, counters and limits; locked by the socket task once per received batch.
    endpoint: Mutex<Endpoint>,
    /// Sessions report closes to the read loop here; a listener close wakes it too.
    link: Arc<DriverLink>,
    common: Arc<Common>,
    /// Datagrams other shards received for this shard's conversations (bounded by [`FORWARD_QUEUE`]).
    inbox: Mutex<VecDeque<(Vec<u8>, SocketAddr)>>,
    forward_full: AtomicU64,
}

/// Forwarded datagrams a shard holds at most before it drops more (a roaming peer's burst fits; a flood of
/// forged datagrams of a live conversation cannot make a shard hold more than this).
const FORWARD_QUEUE: usize = 4096;

impl Shared {
    /// Queues a datagram another shard received for one of ours, and wakes our read loop.
    fn forward(&self, pkt: Vec<u8>, from: SocketAddr) {
        {
            let mut q = self.inbox.lock();
            if q.len() >= FORWARD_QUEUE {
                self.forward_full.fetch_add(1, Ordering::Relaxed);
                return;
            }
            q.push_back((pkt, from));
        }
        self.link.wake();
    }
}

/// A KCP server: accepts sessions from any peer on one UDP socket (or several, sharded).
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
///
/// # Sharding
/// [`KcpListener::bind_sharded`] binds N sockets to one address with `SO_REUSEPORT` (Unix), each with its
/// own read task and its own endpoint (routing table, counters, limits), so that N runtime workers can
/// serve one port; accepted sessions of every shard come out of the one [`KcpListener::accept`]. The kernel
/// picks a shard by a hash of each datagram's source and destination, so a peer's datagrams all reach one
/// shard, and a session replies from that shard's socket — the same local address and port whichever shard
/// it is: kcp-go clients see nothing different. When a peer moves (a NAT rebinding its port, a client on a
/// new socket), its datagrams may reach another shard: a shard that does not know a conversation asks a
/// shared map which shard owns it and hands the datagram to that shard, whose endpoint applies its usual
/// roaming and replay rules — so a moved session stays one session, and a replayed datagram, from whatever
/// port it arrives, neither creates nor moves one. A conversation is created on one shard only (claimed in
/// that map first). A moved session's datagrams keep arriving at the other shard and are forwarded one by
/// one (counted in [`ListenerStats::forwarded`]).
///
/// The limits of the config are *divided* among the shards, rounded up: `max_sessions`, `accept_backlog`,
/// and [`Admission`](crate::Admission)'s `unverified_budget`, `max_unverified_per_ip`,
/// `max_address_checks_per_sec` and `replay_record` each apply per shard as `ceil(limit / N)`. As the
/// kernel spreads peers by a hash, one shard may reach its share a little before the others (give caps some
/// headroom); a source IP whose ports hash to several shards may hold up to N × its per-shard share of
/// unverified sessions (the total stays within `max_unverified_per_ip` rounded up to a multiple of N).
/// [`KcpListener::stats`] sums every shard's counters.
#[derive(Debug)]
pub struct KcpListener {
    shards: Arc<[Arc<Shared>]>,
    common: Arc<Common>,
    accept_rx: AsyncMutex<mpsc::UnboundedReceiver<(Arc<Session>, usize)>>,
    local: SocketAddr,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Common {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Common")
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

    /// Binds `shards` UDP sockets to one address with `SO_REUSEPORT` and listens on all of them, one read
    /// task and one endpoint each (see [Sharding](#sharding) for how peers, moved peers and the config's
    /// limits are spread). `shards == 1` is [`KcpListener::bind`] exactly. With port 0 the first socket's
    /// port is used for the others. Unix only: Linux lets only sockets of the same user join the group.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), rkcp_session::SessionError> {
    /// use rkcp_session::{KcpConfig, KcpListener, KcpStream};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// // One shard per runtime worker.
    /// let listener = KcpListener::bind_sharded("127.0.0.1:0", KcpConfig::fast3(), 2).await?;
    /// let mut client = KcpStream::connect(listener.local_addr()?, KcpConfig::fast3()).await?;
    /// client.write_all(b"ping").await?;
    /// let (mut server, _peer) = listener.accept().await?;
    /// let mut buf = [0u8; 4];
    /// server.read_exact(&mut buf).await?;
    /// assert_eq!(&buf, b"ping");
    /// assert_eq!(listener.stats().created, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`SessionError::Config`] for an invalid config; [`SessionError::Io`] if binding fails, with
    /// [`std::io::ErrorKind::InvalidInput`] for `shards == 0` (or more than 65,535) and
    /// [`std::io::ErrorKind::Unsupported`] for `shards > 1` on a platform without `SO_REUSEPORT`.
    pub async fn bind_sharded(
        addr: impl ToSocketAddrs,
        config: KcpConfig,
        shards: usize,
    ) -> Result<KcpListener, SessionError> {
        if shards == 0 || shards > usize::from(u16::MAX) {
            return Err(SessionError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a listener needs 1 to 65535 shards",
            )));
        }
        if shards == 1 {
            return Self::bind(addr, config).await;
        }
        config.validate()?;
        let mut last = None;
        for a in tokio::net::lookup_host(addr).await? {
            match reuseport_sockets(a, shards) {
                Ok(socks) => return Self::from_sockets(socks, config),
                Err(e) => last = Some(e),
            }
        }
        Err(SessionError::Io(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no address to bind the listener to",
            )
        })))
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
        Self::from_sockets(vec![sock], config)
    }

    /// Listens on one socket per shard (all bound to one address; one socket: not sharded).
    fn from_sockets(socks: Vec<UdpSocket>, config: KcpConfig) -> Result<KcpListener, SessionError> {
        config.validate()?;
        let n = socks.len();
        let local = socks[0].local_addr()?;
        for s in &socks {
            crate::sockopt::apply(s, &config)?;
        }
        // The endpoints bound the backlog; the channel only carries what they admitted.
        let (accept_tx, accept_rx) = mpsc::unbounded_channel();
        let common = Arc::new(Common {
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
            live: AtomicUsize::new(0),
        });
        let owners = (n > 1).then(|| {
            let a = &config.listener.admission;
            Arc::new(Owners::new(
                a.replay_window.as_millis() as u64,
                a.replay_record.saturating_add(config.listener.max_sessions),
            ))
        });
        let shard_config = shard_config(&config, n);
        let shards: Arc<[Arc<Shared>]> = socks
            .into_iter()
            .enumerate()
            .map(|(index, sock)| {
                let mut ep = Endpoint::new(shard_config.clone());
                if let Some(owners) = &owners {
                    ep = ep.with_shard(ShardLink {
                        index,
                        owners: Arc::clone(owners),
                    });
                }
                Arc::new(Shared {
                    io: Arc::new(UdpIo::new(sock, true)),
                    endpoint: Mutex::new(ep),
                    link: Arc::new(DriverLink::default()),
                    common: Arc::clone(&common),
                    inbox: Mutex::new(VecDeque::new()),
                    forward_full: AtomicU64::new(0),
                })
            })
            .collect();
        // With a cipher, opening decrypts in place: keep the datagram as received in case it is forwarded.
        let copy_raw = n > 1 && config.crypt.is_some();
        for (index, shared) in shards.iter().enumerate() {
            let demux = ListenerDemux {
                shared: Arc::clone(shared),
                index,
                peers: Arc::clone(&shards),
                sessions: HandleMap::default(),
                accept_tx: Some(accept_tx.clone()),
                auth_warn: RateLimited::new(AUTH_WARN_EVERY_MS),
                touched: Vec::with_capacity(crate::udp::BATCH),
                expired: Vec::new(),
                copy_raw,
                raw: Vec::new(),
            };
            tokio::spawn(drive(
                Arc::clone(&shared.io),
                Arc::clone(&shared.link),
                demux,
            ));
        }
        Ok(KcpListener {
            shards,
            common,
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
        let closing = self.common.close_notify.notified();
        tokio::pin!(closing);
        closing.as_mut().enable();
        if self.common.closed.load(Ordering::Acquire) {
            return Err(SessionError::ListenerClosed);
        }
        let mut rx = tokio::select! {
            rx = self.accept_rx.lock() => rx,
            _ = closing.as_mut() => return Err(SessionError::ListenerClosed),
        };
        loop {
            tokio::select! {
                s = rx.recv() => match s {
                    Some((s, shard)) => {
                        self.shards[shard].endpoint.lock().accepted();
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

    /// The socket's local address (every shard's: they share it; as `TcpListener::local_addr`; kcp-go `Listener.Addr`).
    ///
    /// # Errors
    /// None today (the address is read once at bind); `io::Result` keeps the shape of tokio's
    /// `TcpListener::local_addr` and of [`KcpStream::local_addr`](crate::KcpStream::local_addr).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Datagrams dropped before reaching a session, and sessions created/replaced (summed over shards).
    pub fn stats(&self) -> ListenerStats {
        let mut total = ListenerStats::default();
        for sh in self.shards.iter() {
            total.add(&sh.endpoint.lock().stats());
            total.forward_full += sh.forward_full.load(Ordering::Relaxed);
        }
        total
    }

    /// Number of sockets (shards) the listener reads; 1 unless bound with [`KcpListener::bind_sharded`].
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Each shard's own counters, in shard order ([`KcpListener::stats`] is their sum): how the kernel
    /// spread peers over the shards, and which shard forwarded what.
    pub fn shard_stats(&self) -> Vec<ListenerStats> {
        self.shards
            .iter()
            .map(|sh| {
                let mut s = sh.endpoint.lock().stats();
                s.forward_full += sh.forward_full.load(Ordering::Relaxed);
                s
            })
            .collect()
    }

    /// DSCP of the shared socket(s) (kcp-go `Listener.SetDSCP`).
    ///
    /// # Errors
    /// The socket error.
    pub fn set_dscp(&self, dscp: u32) -> Result<(), SessionError> {
        for sh in self.shards.iter() {
            crate::sockopt::set_dscp(sh.io.socket(), dscp)?;
        }
        Ok(())
    }

    /// `SO_RCVBUF` of the shared socket(s).
    ///
    /// # Errors
    /// The socket error.
    pub fn set_recv_buffer(&self, bytes: usize) -> Result<(), SessionError> {
        for sh in self.shards.iter() {
            socket2::SockRef::from(sh.io.socket()).set_recv_buffer_size(bytes)?;
        }
        Ok(())
    }

    /// `SO_SNDBUF` of the shared socket(s).
    ///
    /// # Errors
    /// The socket error.
    pub fn set_send_buffer(&self, bytes: usize) -> Result<(), SessionError> {
        for sh in self.shards.iter() {
            socket2::SockRef::from(sh.io.socket()).set_send_buffer_size(bytes)?;
        }
        Ok(())
    }

    /// Stops accepting: pending and later [`KcpListener::accept`] calls fail with
    /// [`SessionError::ListenerClosed`], sessions still in the backlog are closed, new peers are ignored.
    /// Accepted sessions keep running; the socket is released when the last one closes.
    pub fn close(&self) {
        if self.common.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for sh in self.shards.iter() {
            sh.endpoint.lock().stop_accepting();
            sh.link.wake();
        }
        self.common.close_notify.notify_waiters();
        if let Ok(mut rx) = self.accept_rx.try_lock() {
            rx.close();
            while let Ok((s, _)) = rx.try_recv() {
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
        while let Ok((s, _)) = rx.try_recv() {
            s.close(CloseReason::Local);
        }
    }
}

/// The config of one of `n` shards: the listener-wide limits divided, rounded up (see [Sharding]).
///
/// [Sharding]: KcpListener#sharding
fn shard_config(config: &KcpConfig, n: usize) -> KcpConfig {
    let mut c = config.clone();
    if n > 1 {
        let share = |v: usize| v.div_ceil(n).max(1);
        let l = &mut c.listener;
        l.max_sessions = share(l.max_sessions);
        l.accept_backlog = share(l.accept_backlog);
        let a = &mut l.admission;
        a.unverified_budget = share(a.unverified_budget);
        a.max_unverified_per_ip = share(a.max_unverified_per_ip);
        a.max_address_checks_per_sec = a.max_address_checks_per_sec.div_ceil(n as u64).max(1);
        a.replay_record = share(a.replay_record);
    }
    c
}

/// `n` non-blocking UDP sockets bound to `addr` with `SO_REUSEPORT` (the first one's port if `addr` has
/// port 0), registered with tokio.
#[cfg(unix)]
fn reuseport_sockets(addr: SocketAddr, n: usize) -> std::io::Result<Vec<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut addr = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        if addr.port() == 0 {
            addr = s.local_addr()?.as_socket().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP socket")
            })?;
        }
        out.push(UdpSocket::from_std(s.into())?);
    }
    Ok(out)
}

#[cfg(not(unix))]
fn reuseport_sockets(_addr: SocketAddr, _n: usize) -> std::io::Result<Vec<UdpSocket>> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "a sharded KcpListener needs SO_REUSEPORT (Unix); bind with one shard",
    ))
}

/// The listener's side of one socket's read loop: lets the endpoint open and route each datagram, feeds
/// sessions, creates accepted ones, hands other shards' datagrams over, and ends once the listener is
/// closed and the last session of every shard is gone.
struct ListenerDemux {
    shared: Arc<Shared>,
    /// This shard's place in `peers`.
    index: usize,
    /// Every shard of the listener (this one too).
    peers: Arc<[Arc<Shared>]>,
    sessions: HandleMap<Arc<Session>>,
    accept_tx: Option<mpsc::UnboundedSender<(Arc<Session>, usize)>>,
    auth_warn: RateLimited,
    touched: Vec<(ConnHandle, Arc<Session>)>,
    expired: Vec<ConnHandle>,
    /// Sharded with a cipher: keep each datagram as received in `raw` before it is opened in place.
    copy_raw: bool,
    raw: Vec<u8>,
}

impl ListenerDemux {
    /// Closes one of this listener's sessions (the endpoint's evictions and expiries come through here); its
    /// route is forgotten when the close is reported back through the link.
    fn close_session(&mut self, h: ConnHandle, reason: CloseReason) {
        if let Some(s) = self.sessions.remove(&h) {
            self.shared.common.live.fetch_sub(1, Ordering::AcqRel);
            s.close(reason);
        }
    }

    /// Routes one datagram (received here, or forwarded by another shard when `!may_forward`).
    fn route_one(
        &mut self,
        ep: &mut Endpoint,
        now: Timestamp,
        from: SocketAddr,
        pkt: &mut [u8],
        may_forward: bool,
    ) {
        if self.copy_raw && may_forward {
            self.raw.clear();
            self.raw.extend_from_slice(pkt);
        }
        let routed = if may_forward {
            ep.handle(now, from, pkt)
        } else {
            ep.handle_forwarded(now, from, pkt)
        };
        if let Some(h) = routed.moved
            && let Some(s) = self.sessions.get(&h)
        {
            tracing::debug!(conv = s.conv, to = %from, "KCP session followed its peer to a new address");
            s.set_remote(from);
        }
        let shared = &self.shared;
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
                shared.common.live.fetch_add(1, Ordering::AcqRel);
                match self.accept_tx.as_ref() {
                    Some(tx) if tx.send((Arc::clone(&s), self.index)).is_ok() => {}
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
            Action::Forward(owner) => {
                // Without a cipher opening changed nothing: `pkt` is still the datagram as received.
                let d = if self.copy_raw {
                    self.raw.clone()
                } else {
                    pkt.to_vec()
                };
                if let Some(p) = self.peers.get(owner) {
                    p.forward(d, from);
                }
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

    /// After a batch: lets the touched sessions flush, and notes which proved their peer's address.
    fn after_batch(&mut self, now: Timestamp) {
        for (h, s) in self.touched.drain(..) {
            if s.after_input(now) {
                self.shared.endpoint.lock().verified(h);
            }
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
                if self.sessions.remove(&h).is_some() {
                    self.shared.common.live.fetch_sub(1, Ordering::AcqRel);
                }
                ep.forget(h, now);
            }
        }
        let forwarded = std::mem::take(&mut *self.shared.inbox.lock());
        if !forwarded.is_empty() {
            let shared = Arc::clone(&self.shared);
            let mut ep = shared.endpoint.lock();
            let now = crate::driver::now();
            for (mut d, from) in forwarded {
                self.route_one(&mut ep, now, from, &mut d, false);
            }
            drop(ep);
            self.after_batch(now);
        }
        if self.shared.common.closed.load(Ordering::Acquire) {
            self.accept_tx = None;
            if self.shared.common.live.load(Ordering::Acquire) == 0 {
                // The last session of the listener is gone: every shard's loop ends.
                for p in self.peers.iter() {
                    p.link.wake();
                }
                return false;
            }
        }
        true
    }

    fn input(&mut self, now: Timestamp, batch: &mut RecvBatch, n: usize) {
        let shared = Arc::clone(&self.shared);
        let mut ep = shared.endpoint.lock();
        for i in 0..n {
            let (pkt, from) = batch.get_mut(i);
            self.route_one(&mut ep, now, from, pkt, true);
        }
        drop(ep);
        self.after_batch(now);
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
        tracing::warn!(error = %e, "KCP listener socket failed; closing its sessions and the listener");
        let n = self.sessions.len();
        for (_, s) in self.sessions.drain() {
            s.close(CloseReason::Socket(e.kind()));
        }
        let common = &self.shared.common;
        common.live.fetch_sub(n, Ordering::AcqRel);
        common.closed.store(true, Ordering::Release);
        for p in self.peers.iter() {
            p.endpoint.lock().stop_accepting();
            p.link.wake();
        }
        common.close_notify.notify_waiters();
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
