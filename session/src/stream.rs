//! [`KcpStream`]: one KCP conversation as a tokio byte stream.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{ToSocketAddrs, UdpSocket, lookup_host};

use crate::config::{KcpConfig, MAX_MTU};
use crate::driver::{ClientDemux, DriverLink, drive};
use crate::error::{CloseReason, SessionError};
use crate::proto::connection::Connection;
use crate::session::{Role, Session};
use crate::snmp::SnmpSnapshot;
use crate::udp::UdpIo;

/// A KCP session over UDP, used like a `TcpStream`.
///
/// Reads and writes follow kcp-go (docs/wire-format.md#session-read-write). A write queues up to one send
/// window of bytes in MSS-sized segments while the window has room and flushes at once (unless write delay is
/// on), otherwise it waits. A read returns what has arrived in order, or waits.
///
/// # End of stream, half-close and closing
///
/// **KCP has no FIN and no half-close.** Nothing on the wire says "no more data" or "closed", so:
///
/// - A read **never returns end-of-stream** (`Ok(0)` only for an empty buffer). It waits for data until the
///   session ends, then fails with why (an [`SessionError`] inside the `io::Error`): [`SessionError::Closed`]
///   after a local close (kind `NotConnected`), [`SessionError::IdleTimeout`] when nothing came from the
///   peer for [`KcpConfig::idle_timeout`] (60 s by default; kind `TimedOut`), [`SessionError::DeadLink`]
///   when the peer stopped acknowledging what we sent (`TimedOut`), [`SessionError::Unverified`] on a listener
///   when the peer never proved its address, or the socket's error. Protocols on top (smux, or
///   your own framing) say where data ends.
/// - [`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown) is **not** a half-close: it waits until
///   the peer has acknowledged every byte written (the only way to know it has them), then closes the whole
///   session locally; later reads fail with [`SessionError::Closed`]. It is bounded by
///   [`KcpConfig::close_timeout`] (30 s by default): past it the session closes and `shutdown` fails with
///   [`SessionError::CloseTimeout`].
/// - Dropping every handle, or [`KcpStream::close`], closes at once, sending only what the window allows
///   (kcp-go's `Close`, docs/wire-format.md#session-close).
/// - **The peer is not told** about any of these. A peer that only reads learns it from its idle timeout; a
///   peer that writes, from its dead-link check (or, towards a listener, its datagrams start a new
///   session there, as with kcp-go).
///
/// [`KcpStream::closed`] resolves once the session ended, with the reason, from any handle.
///
/// `split` comes from [`tokio::io::split`]; [`KcpStream::into_split`] gives owned halves without a lock.
///
/// The engine's knobs (kcp-go's `SetNoDelay` is [`KcpControl::set_mode`], windows, MTU, …) and statistics are
/// methods of [`KcpControl`], which the stream dereferences to; [`KcpStream::control`] (or a half's
/// `control`) gives a cloneable handle that stays usable once the stream was moved, e.g. into an smux
/// session. Addresses follow tokio's `TcpStream`: [`KcpStream::local_addr`] and [`KcpStream::peer_addr`]
/// return `io::Result<SocketAddr>`, on the halves too.
#[derive(Debug)]
pub struct KcpStream {
    s: Arc<Session>,
    /// The same session, for the knobs (no handle count: it does not keep the session open).
    ctl: KcpControl,
}

impl std::ops::Deref for KcpStream {
    type Target = KcpControl;

    /// The stream's [`KcpControl`]: the engine knobs and statistics are methods of the stream too.
    fn deref(&self) -> &KcpControl {
        &self.ctl
    }
}

impl Drop for KcpStream {
    fn drop(&mut self) {
        self.s.release_handle();
    }
}

impl KcpStream {
    /// The session behind this stream (tests look at its driver).
    #[cfg(test)]
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.s
    }

    pub(crate) fn from_session(s: &Arc<Session>) -> KcpStream {
        KcpStream {
            s: s.acquire(),
            ctl: KcpControl { s: Arc::clone(s) },
        }
    }

    /// A cloneable handle on this session's knobs and statistics that stays usable after the stream was
    /// moved (e.g. into an smux session); see [`KcpControl`].
    pub fn control(&self) -> KcpControl {
        self.ctl.clone()
    }

    /// Dials `addr` from a fresh UDP socket bound to an ephemeral port of the same address family
    /// (kcp-go `DialWithOptions`, docs/wire-format.md#session-dial). There is no handshake: this returns at once, and the first
    /// write sends the first packet. The conversation id is random.
    ///
    /// # Errors
    /// [`SessionError::Config`] for an invalid config, [`SessionError::Io`] if the name does not resolve or the
    /// socket cannot be bound.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        config: KcpConfig,
    ) -> Result<KcpStream, SessionError> {
        config.validate()?;
        let remote = lookup_host(addr).await?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
        })?;
        let bind: SocketAddr = if remote.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let sock = UdpSocket::bind(bind).await?;
        Self::connect_with_socket(sock, remote, config)
    }

    /// Runs a client session on an existing socket (kcp-go `NewConn`), which this stream then owns. Only
    /// datagrams from `remote` are accepted; others are counted in `InErrs` and dropped (docs/wire-format.md#session-dial).
    /// The socket must have `remote`'s address family, and no other reader: two sessions on clones of one
    /// socket race for every datagram, and a datagram the other one reads is lost to this one. Must be called
    /// inside a tokio runtime (it spawns the socket's reader task).
    ///
    /// # Errors
    /// [`SessionError::Config`] for an invalid config; [`SessionError::Io`] if a socket option fails.
    pub fn connect_with_socket(
        sock: UdpSocket,
        remote: SocketAddr,
        config: KcpConfig,
    ) -> Result<KcpStream, SessionError> {
        Self::connect_with_conv(sock, remote, rand::random::<u32>(), config)
    }

    /// [`KcpStream::connect_with_socket`] with a chosen conversation id (kcp-go `NewConn3`).
    ///
    /// # Errors
    /// As [`KcpStream::connect_with_socket`].
    pub fn connect_with_conv(
        sock: UdpSocket,
        remote: SocketAddr,
        conv: u32,
        config: KcpConfig,
    ) -> Result<KcpStream, SessionError> {
        config.validate()?;
        crate::sockopt::apply(&sock, &config)?;
        let io = Arc::new(UdpIo::new(sock, false));
        // This session's halves of the cipher: for the AEAD kinds, keys of its own from a fresh session id.
        let (sealer, opener) = match config.crypt.as_ref() {
            Some(pc) => {
                let (s, o) = pc.client_session(rkcp_crypt::SessionId::now()).split();
                (Some(s), Some(o))
            }
            None => (None, None),
        };
        let conn = Connection::new(conv, &config, sealer)?;
        let link = Arc::new(DriverLink::default());
        let s = Session::new(
            conn,
            remote,
            Arc::clone(&io),
            Role::Client,
            Arc::clone(&link),
        );
        let stream = KcpStream::from_session(&s);
        let demux = ClientDemux { s, opener };
        tokio::spawn(drive(io, link, demux));
        Ok(stream)
    }

    /// The local socket address.
    ///
    /// # Errors
    /// The socket's error, if it has none.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.s.io().socket().local_addr()
    }

    /// Moves this (dialled) session to another local socket, for a network change: datagrams go out of
    /// `sock` from now on and are read from it; the old socket is let go. The session itself (conversation,
    /// cipher keys, everything in flight) goes on; an rkcp listener follows it to the new address on its first
    /// datagram from there (its roaming rule), and a flush goes out at once so that this does not wait for
    /// traffic. A kcp-go server does not follow (it keys sessions by address). The session also does this by
    /// itself, to a fresh socket on an ephemeral port, when sends fail because its local address went away.
    /// Socket options (DSCP, buffer sizes) are the new socket's own: set them on it first, or with
    /// [`KcpControl::set_dscp`] and friends afterwards.
    ///
    /// # Errors
    /// [`SessionError::InvalidOperation`] on an accepted session (it shares the listener's socket).
    pub fn move_to_socket(&self, sock: UdpSocket) -> Result<(), SessionError> {
        if !matches!(self.s.role, Role::Client) {
            return Err(SessionError::InvalidOperation);
        }
        self.s.move_to(Arc::new(UdpIo::new(sock, false)));
        Ok(())
    }

    /// The peer's address (as `TcpStream::peer_addr`; kcp-go `RemoteAddr`). For a client it is the dialled
    /// address; for an accepted session it follows the peer when it roams.
    ///
    /// Every address accessor of this crate has this shape: `local_addr()` and `peer_addr()` returning
    /// `io::Result<SocketAddr>`, on [`KcpStream`], its halves, and (`local_addr`) [`KcpListener`](crate::KcpListener).
    ///
    /// # Errors
    /// None today; `io::Result` keeps the shape of tokio's `TcpStream::peer_addr`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.s.remote())
    }

    /// Message mode: sends `msg` as one message (at most 255 segments), waiting for window room.
    ///
    /// Cancel safe: the message is queued entirely or not at all.
    ///
    /// # Errors
    /// [`SessionError::NotMessageMode`], [`SessionError::MessageTooLarge`], or why the session ended.
    pub async fn send_msg(&self, msg: &[u8]) -> Result<(), SessionError> {
        poll_fn(|cx| self.s.poll_send_msg(cx, msg)).await
    }

    /// Message mode: receives the next whole message into `buf`.
    ///
    /// Cancel safe: a message is consumed only when returned.
    ///
    /// # Errors
    /// [`SessionError::BufferTooSmall`] (nothing consumed), [`SessionError::NotMessageMode`], or why the
    /// session ended.
    pub async fn recv_msg(&self, buf: &mut [u8]) -> Result<usize, SessionError> {
        poll_fn(|cx| self.s.poll_recv_msg(cx, buf)).await
    }

    /// Message mode, poll form of [`KcpStream::send_msg`]: `Ready(Ok(()))` once `msg` is queued as one
    /// message; `Pending` (the waker is kept) while the send window is full.
    ///
    /// # Errors
    /// As [`KcpStream::send_msg`].
    pub fn poll_send_msg(
        &self,
        cx: &mut Context<'_>,
        msg: &[u8],
    ) -> Poll<Result<(), SessionError>> {
        self.s.poll_send_msg(cx, msg)
    }

    /// Message mode, poll form of [`KcpStream::recv_msg`]: `Ready(Ok(n))` with the next whole message in
    /// `buf[..n]`; `Pending` (the waker is kept) while none has arrived.
    ///
    /// # Errors
    /// As [`KcpStream::recv_msg`].
    pub fn poll_recv_msg(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, SessionError>> {
        self.s.poll_recv_msg(cx, buf)
    }

    /// Message mode: the size of the next whole message if one has arrived (`Ok(None)`: none yet), so a
    /// buffer can be sized before [`KcpStream::recv_msg`]. Does not wait or consume anything.
    ///
    /// # Errors
    /// [`SessionError::NotMessageMode`], or why the session ended once nothing is left to read.
    pub fn peek_msg_size(&self) -> Result<Option<usize>, SessionError> {
        self.s.peek_msg_size()
    }

    /// Closes at once (kcp-go `Close`): one last flush of what the window allows, then everything is released.
    /// Later reads and writes fail with [`SessionError::Closed`].
    pub fn close(&self) {
        self.s.close(CloseReason::Local);
    }

    /// Waits until the session is closed, for whatever reason, and returns why: [`SessionError::Closed`]
    /// after a local close (`close`, `shutdown`, dropping every handle), [`SessionError::IdleTimeout`],
    /// [`SessionError::DeadLink`], [`SessionError::CloseTimeout`], [`SessionError::Unverified`] or the socket's
    /// error. Any number of tasks may wait; the halves of [`KcpStream::into_split`] have it too.
    pub async fn closed(&self) -> SessionError {
        self.s.wait_closed().await
    }

    /// Splits into owned halves that can move to different tasks. The session closes when both are dropped.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let r = OwnedReadHalf {
            s: self.s.acquire(),
        };
        let w = OwnedWriteHalf {
            s: self.s.acquire(),
        };
        (r, w)
    }
}

/// A cloneable handle on a live session's engine knobs and statistics, from [`KcpStream::control`] (or
/// either half's `control`).
///
/// It stays usable after the stream was moved elsewhere, typically into an smux session (which owns its
/// transport): keep a `KcpControl` to retune the mode, windows or MTU, or to read RTT and counters, while
/// smux streams run on top. It does not keep the session open: once every [`KcpStream`] handle is gone the
/// session closes as usual, and the knobs then have no effect. `KcpStream` dereferences to its control, so
/// every method here is also a method of the stream.
///
/// ```
/// use rkcp_session::{KcpConfig, KcpListener, KcpStream};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = KcpListener::bind("127.0.0.1:0", KcpConfig::fast3()).await?;
/// let stream = KcpStream::connect(listener.local_addr()?, KcpConfig::fast3()).await?;
/// let control = stream.control();
/// // ... move `stream` into an smux session (or any task) here ...
/// control.set_mode(true, 20, 2, true); // kcp-go SetNoDelay(1, 20, 2, 1)
/// assert_eq!(control.interval(), 20);
/// control.set_window(512, 512);
/// assert_eq!(control.windows(), (512, 512));
/// # drop(stream);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KcpControl {
    s: Arc<Session>,
}

impl std::fmt::Debug for KcpControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpControl")
            .field("conv", &self.s.conv)
            .finish()
    }
}

impl KcpControl {
    /// The KCP mode tuple, kcp-go's `SetNoDelay` (and ikcp's `ikcp_nodelay`; docs/wire-format.md#kcp-knobs):
    /// `nodelay` (30 ms RTO floor and gentler backoff), flush `interval` (clamped to 10..=5000 ms), fast-resend
    /// threshold `resend` (0: off) and `nc` (congestion window off). Takes effect at once.
    ///
    /// Named `set_mode`, not `set_nodelay`, because it has nothing to do with `TcpStream::set_nodelay`
    /// (Nagle's algorithm): KCP never holds small writes back (see [`KcpControl::set_write_delay`] for the
    /// nearest thing).
    pub fn set_mode(&self, nodelay: bool, interval: u32, resend: u32, nc: bool) {
        self.s
            .with_conn(|c| c.kcp.set_nodelay(nodelay, interval, resend, nc));
    }

    /// Send and receive windows in segments; 0 leaves one unchanged, the receive window is capped at 65535.
    pub fn set_window(&self, snd: u32, rcv: u32) {
        self.s.with_conn(|c| c.kcp.set_window(snd, rcv));
    }

    /// Changes the MTU (at most 1500, and room for the headers). Later segments use the new MSS.
    ///
    /// # Errors
    /// [`SessionError::Kcp`] if the engine refuses the MTU.
    pub fn set_mtu(&self, mtu: usize) -> Result<(), SessionError> {
        if mtu > MAX_MTU {
            return Err(SessionError::Kcp(rkcp_engine::KcpError::InvalidMtu { mtu }));
        }
        self.s.with_conn(|c| {
            let overhead = c.overhead();
            if mtu <= rkcp_engine::OVERHEAD + overhead {
                return Err(SessionError::Kcp(rkcp_engine::KcpError::InvalidMtu { mtu }));
            }
            c.kcp.set_mtu(mtu).map_err(SessionError::Kcp)
        })
    }

    /// Stream mode (no message boundaries) or message mode (each write/`send_msg` is one message).
    pub fn set_stream_mode(&self, on: bool) {
        self.s.with_conn(|c| {
            c.set_stream_mode(on);
        });
    }

    /// Send ACKs right after each input instead of at the next flush.
    pub fn set_ack_nodelay(&self, on: bool) {
        self.s.with_conn(|c| c.kcp.set_ack_nodelay(on));
    }

    /// Caps the segments sent but not yet acknowledged (`None`: no cap, as kcp-go); see
    /// [`EngineConfig::max_inflight`](crate::EngineConfig::max_inflight).
    pub fn set_max_inflight(&self, max: Option<u32>) {
        self.s.with_conn(|c| c.kcp.set_max_inflight(max));
    }

    /// Switches the congestion controller at run time; see
    /// [`EngineConfig::congestion`](crate::EngineConfig::congestion).
    pub fn set_congestion(&self, cc: rkcp_engine::Congestion) {
        self.s.with_conn(|c| c.kcp.set_congestion(cc));
    }

    /// Write delay: do not flush after each write, but when the window fills or at the next tick.
    pub fn set_write_delay(&self, on: bool) {
        self.s.with_conn(|c| c.set_write_delay(on));
    }

    /// Transmissions of one segment after which the link counts as dead.
    pub fn set_dead_link(&self, xmit: u32) {
        self.s.with_conn(|c| {
            c.set_dead_link(xmit);
        });
    }

    /// Changes this session's idle timeout (see [`KcpConfig::idle_timeout`]), counted from the last datagram
    /// heard from the peer; `None` turns it off. Takes effect at once.
    ///
    /// # Errors
    /// [`SessionError::Config`] for a zero timeout.
    pub fn set_idle_timeout(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), SessionError> {
        let ms = timeout.map(|d| d.as_millis() as u64);
        if ms == Some(0) {
            return Err(crate::ConfigError::ZeroTimeout.into());
        }
        self.s.with_conn(|c| c.set_idle_timeout(ms));
        Ok(())
    }

    /// Changes the bound on a later graceful `shutdown` (see [`KcpConfig::close_timeout`]).
    ///
    /// # Errors
    /// [`SessionError::Config`] for a zero timeout.
    pub fn set_close_timeout(&self, timeout: std::time::Duration) -> Result<(), SessionError> {
        let ms = timeout.as_millis() as u64;
        if ms == 0 {
            return Err(crate::ConfigError::ZeroTimeout.into());
        }
        self.s.with_conn(|c| c.set_close_timeout(ms));
        Ok(())
    }

    /// DSCP for this client's socket (kcp-go `SetDSCP`).
    ///
    /// # Errors
    /// [`SessionError::InvalidOperation`] on a listener's session (set it on the listener), or the socket error.
    pub fn set_dscp(&self, dscp: u32) -> Result<(), SessionError> {
        self.own_socket()?;
        crate::sockopt::set_dscp(self.s.io().socket(), dscp)
    }

    /// `SO_RCVBUF` of this client's socket.
    ///
    /// # Errors
    /// As [`KcpControl::set_dscp`].
    pub fn set_recv_buffer(&self, bytes: usize) -> Result<(), SessionError> {
        self.own_socket()?;
        Ok(socket2::SockRef::from(self.s.io().socket()).set_recv_buffer_size(bytes)?)
    }

    /// `SO_SNDBUF` of this client's socket.
    ///
    /// # Errors
    /// As [`KcpControl::set_dscp`].
    pub fn set_send_buffer(&self, bytes: usize) -> Result<(), SessionError> {
        self.own_socket()?;
        Ok(socket2::SockRef::from(self.s.io().socket()).set_send_buffer_size(bytes)?)
    }

    fn own_socket(&self) -> Result<(), SessionError> {
        match self.s.role {
            Role::Client => Ok(()),
            Role::Accepted(_) => Err(SessionError::InvalidOperation),
        }
    }

    /// Current retransmission timeout in ms.
    pub fn rto(&self) -> u32 {
        self.s.state.lock().conn.kcp.rto()
    }

    /// Smoothed RTT in ms.
    pub fn srtt(&self) -> i32 {
        self.s.state.lock().conn.kcp.srtt()
    }

    /// RTT variance in ms.
    pub fn srttvar(&self) -> i32 {
        self.s.state.lock().conn.kcp.srttvar()
    }

    /// Segments queued or in flight (kcp-go `WaitSnd`).
    pub fn wait_snd(&self) -> usize {
        self.s.state.lock().conn.kcp.wait_snd()
    }

    /// Current MSS: payload bytes per segment.
    pub fn mss(&self) -> usize {
        self.s.state.lock().conn.kcp.mss()
    }

    /// This session's counters (docs/wire-format.md#session-snmp). The process-wide fields (`MaxConn`, opens, `CurrEstab`) are
    /// 0 here; see [`global_snmp`](crate::global_snmp).
    pub fn snmp(&self) -> SnmpSnapshot {
        self.s.snapshot()
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.s.conv
    }

    /// The engine's current flush interval in ms (as set by the config or [`KcpControl::set_mode`]).
    pub fn interval(&self) -> u32 {
        self.s.state.lock().conn.kcp.interval()
    }

    /// The engine's current send and receive windows in segments (as set by the config or
    /// [`KcpControl::set_window`]).
    pub fn windows(&self) -> (u32, u32) {
        let st = self.s.state.lock();
        (st.conn.kcp.snd_wnd(), st.conn.kcp.rcv_wnd())
    }

    /// The engine's counters (segments, retransmissions, …) of this session.
    pub fn stats(&self) -> rkcp_engine::KcpStats {
        *self.s.state.lock().conn.kcp.stats()
    }

    /// Whether the session has ended (for whatever reason); [`KcpStream::closed`] says why.
    pub fn is_closed(&self) -> bool {
        self.s.state.lock().conn.closed().is_some()
    }
}

impl AsyncRead for KcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.s.poll_read(cx, buf)
    }
}

impl AsyncWrite for KcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.s.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.s.poll_flush()
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.s.poll_shutdown(cx)
    }
}

/// The reading half of [`KcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf {
    s: Arc<Session>,
}

/// The writing half of [`KcpStream::into_split`]. `shutdown` waits for every byte to be acknowledged, then
/// closes the whole session (KCP cannot half-close).
#[derive(Debug)]
pub struct OwnedWriteHalf {
    s: Arc<Session>,
}

impl Drop for OwnedReadHalf {
    fn drop(&mut self) {
        self.s.release_handle();
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        self.s.release_handle();
    }
}

/// The accessors both halves share with [`KcpStream`]: each half holds a counted handle `s` of the session.
macro_rules! half_accessors {
    () => {
        /// As [`KcpStream::closed`].
        pub async fn closed(&self) -> SessionError {
            self.s.wait_closed().await
        }

        /// The local socket address, as [`KcpStream::local_addr`].
        ///
        /// # Errors
        /// As [`KcpStream::local_addr`].
        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.s.io().socket().local_addr()
        }

        /// The peer's address, as [`KcpStream::peer_addr`].
        ///
        /// # Errors
        /// As [`KcpStream::peer_addr`].
        pub fn peer_addr(&self) -> io::Result<SocketAddr> {
            Ok(self.s.remote())
        }

        /// This session's [`KcpControl`], as [`KcpStream::control`].
        pub fn control(&self) -> KcpControl {
            KcpControl {
                s: Arc::clone(&self.s),
            }
        }
    };
}

impl OwnedReadHalf {
    half_accessors!();

    /// Puts the halves back together (as tokio's `OwnedReadHalf::reunite`).
    ///
    /// # Errors
    /// [`ReuniteError`], giving both halves back, if they come from different streams.
    pub fn reunite(self, other: OwnedWriteHalf) -> Result<KcpStream, ReuniteError> {
        if !Arc::ptr_eq(&self.s, &other.s) {
            return Err(ReuniteError(self, other));
        }
        // The new handle is counted before the halves' go, so the session never sees zero handles.
        Ok(KcpStream::from_session(&self.s))
    }

    /// Message mode: receives the next whole message, as [`KcpStream::recv_msg`].
    ///
    /// # Errors
    /// As [`KcpStream::recv_msg`].
    pub async fn recv_msg(&self, buf: &mut [u8]) -> Result<usize, SessionError> {
        poll_fn(|cx| self.s.poll_recv_msg(cx, buf)).await
    }

    /// As [`KcpStream::poll_recv_msg`].
    ///
    /// # Errors
    /// As [`KcpStream::recv_msg`].
    pub fn poll_recv_msg(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, SessionError>> {
        self.s.poll_recv_msg(cx, buf)
    }

    /// As [`KcpStream::peek_msg_size`].
    ///
    /// # Errors
    /// As [`KcpStream::peek_msg_size`].
    pub fn peek_msg_size(&self) -> Result<Option<usize>, SessionError> {
        self.s.peek_msg_size()
    }
}

impl OwnedWriteHalf {
    half_accessors!();

    /// Puts the halves back together; see [`OwnedReadHalf::reunite`].
    ///
    /// # Errors
    /// [`ReuniteError`] if they come from different streams.
    pub fn reunite(self, other: OwnedReadHalf) -> Result<KcpStream, ReuniteError> {
        other.reunite(self)
    }

    /// Message mode: sends `msg` as one message, as [`KcpStream::send_msg`].
    ///
    /// # Errors
    /// As [`KcpStream::send_msg`].
    pub async fn send_msg(&self, msg: &[u8]) -> Result<(), SessionError> {
        poll_fn(|cx| self.s.poll_send_msg(cx, msg)).await
    }

    /// As [`KcpStream::poll_send_msg`].
    ///
    /// # Errors
    /// As [`KcpStream::send_msg`].
    pub fn poll_send_msg(
        &self,
        cx: &mut Context<'_>,
        msg: &[u8],
    ) -> Poll<Result<(), SessionError>> {
        self.s.poll_send_msg(cx, msg)
    }
}

/// The halves given to [`OwnedReadHalf::reunite`] came from different streams; both are given back.
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl std::fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tried to reunite halves of different KCP streams")
    }
}

impl std::error::Error for ReuniteError {}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.s.poll_read(cx, buf)
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.s.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.s.poll_flush()
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.s.poll_shutdown(cx)
    }
}
