//! A [`KcpStream`] that can still be inspected and closed after it was handed to smux.
//!
//! smux takes its transport by value, so the KCP session's counters and its immediate [`KcpStream::close`] are out
//! of reach once a [`rkcp_smux::Session`] owns it. [`watch`] wraps the stream and returns a [`KcpHandle`] that
//! keeps both: the relay uses it to drop a session at once (smux's own `close` waits for the peer to acknowledge
//! what is in flight, which a frozen peer never does), the tunnel client to see whether the server's datagrams
//! authenticate.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use rkcp_session::{KcpStream, SnmpSnapshot};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The wrapped stream: use it as the transport (it reads and writes the inner [`KcpStream`]).
#[derive(Debug)]
pub struct Watched(Arc<Mutex<KcpStream>>);

/// A handle on a [`Watched`] stream's session: counters and an immediate close.
#[derive(Debug, Clone)]
pub struct KcpHandle {
    inner: Arc<Mutex<KcpStream>>,
    peer: SocketAddr,
}

/// Wraps `kcp`; the handle stays valid (and can close the session) whoever owns the stream.
pub fn watch(kcp: KcpStream) -> (Watched, KcpHandle) {
    let peer = kcp
        .peer_addr()
        .expect("a KCP session always has its peer's address");
    let inner = Arc::new(Mutex::new(kcp));
    (Watched(inner.clone()), KcpHandle { inner, peer })
}

fn lock(m: &Mutex<KcpStream>) -> MutexGuard<'_, KcpStream> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl KcpHandle {
    /// This session's counters ([`KcpControl::snmp`](rkcp_session::KcpControl::snmp)).
    pub fn snmp(&self) -> SnmpSnapshot {
        lock(&self.inner).snmp()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Closes the KCP session at once ([`KcpStream::close`]): reads and writes on it fail from now on, so smux
    /// ends too. Does not wait for the peer.
    pub fn close(&self) {
        lock(&self.inner).close();
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock(&self.0)).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_shutdown(cx)
    }
}
