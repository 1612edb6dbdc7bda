//! Typed errors of the session layer. IO-facing methods (`AsyncRead`, `AsyncWrite`) carry these inside an
//! [`std::io::Error`] (get them back with `io::Error::get_ref` + `downcast_ref::<SessionError>()`).

use std::io;
use std::time::Duration;

/// A [`KcpConfig`](crate::KcpConfig) field out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The MTU is above 1500 (kcp-go's limit and every peer's read buffer) or leaves no room for one payload
    /// byte after the 24-byte segment header and the crypt/FEC headers. Pick 50..=1500 (1350–1400 is usual).
    #[error("mtu {mtu} out of range: at most 1500, and more than 24 + {overhead} header bytes")]
    Mtu {
        /// The rejected MTU.
        mtu: usize,
        /// Crypt + FEC header bytes it had to hold.
        overhead: usize,
    },
    /// FEC shard counts must both be at least 1 and sum to at most 256 (Reed–Solomon over GF(2^8)). Use
    /// `None` to turn FEC off.
    #[error("invalid FEC shards {data}/{parity}")]
    FecShards {
        /// Data shards requested.
        data: usize,
        /// Parity shards requested.
        parity: usize,
    },
    /// An [`AdaptiveFec`](crate::AdaptiveFec) policy field is out of range; `reason` names it (the defaults
    /// are valid).
    #[error("invalid adaptive FEC policy: {reason}")]
    AdaptiveFec {
        /// Which field is wrong and its valid range.
        reason: &'static str,
    },
    /// DSCP is a 6-bit field: 0..=63.
    #[error("DSCP {0} out of range 0..=63")]
    Dscp(u32),
    /// The accept backlog must hold at least one session.
    #[error("accept backlog must be at least 1")]
    AcceptBacklog,
    /// The live-session cap must be at least 1.
    #[error("max_sessions must be at least 1")]
    MaxSessions,
    /// `idle_timeout` and `close_timeout` must be at least 1 ms (use `None` to turn the idle timeout off).
    #[error("idle_timeout and close_timeout must be at least 1 ms")]
    ZeroTimeout,
    /// The engine refused a knob (interval outside 10..=5000, zero or oversized window, dead_link 0 …).
    #[error("engine configuration")]
    Engine(#[source] rkcp_engine::KcpError),
}

/// What can go wrong on a session or listener.
///
/// Each error's message says what failed at this layer; a wrapped cause (socket error, rejected
/// field, engine error) is its [`source`](std::error::Error::source), not repeated in the message,
/// so printing the chain (anyhow's `{:#}`, or walking `source()`) shows every cause once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The configuration was rejected; fix the field named in the inner error.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// This session was closed locally (`close`, `shutdown` or drop). KCP has no FIN, so there is no
    /// end-of-stream: open a new session.
    #[error("KCP session closed")]
    Closed,
    /// The peer stopped acknowledging: a segment reached `dead_link` transmissions. The session is closed.
    #[error("KCP peer unreachable: dead link after {0} transmissions of a segment")]
    DeadLink(u32),
    /// The peer did not prove it receives at its address within the listener's
    /// [`Admission::unverified_timeout`](crate::Admission::unverified_timeout) (it never acknowledged
    /// anything the server sent). The session is closed.
    #[error("KCP peer did not prove its address in time")]
    Unverified,
    /// Nothing was received from the peer for `idle_timeout` ([`KcpConfig::idle_timeout`](crate::KcpConfig::idle_timeout)):
    /// it is presumed gone. The session is closed.
    #[error("KCP peer silent for {0:?}: idle timeout")]
    IdleTimeout(std::time::Duration),
    /// `shutdown()` did not see every byte acknowledged within
    /// [`KcpConfig::close_timeout`](crate::KcpConfig::close_timeout). The session is closed; the peer may
    /// not have everything.
    #[error("KCP shutdown timed out after {0:?} with data unacknowledged")]
    CloseTimeout(std::time::Duration),
    /// The listener was closed: no more sessions can be accepted.
    #[error("KCP listener closed")]
    ListenerClosed,
    /// The UDP socket failed; the session cannot send or receive any more.
    #[error("UDP socket error")]
    Io(#[from] io::Error),
    /// The message does not fit in 255 fragments of the current MSS (message mode). Send smaller messages.
    #[error("message of {len} bytes is too large for one KCP message")]
    MessageTooLarge {
        /// Length of the rejected message.
        len: usize,
    },
    /// `recv_msg` got a buffer smaller than the next message; nothing was consumed. Retry with `needed` bytes.
    #[error("buffer too small: the next message has {needed} bytes")]
    BufferTooSmall {
        /// Size of the next message.
        needed: usize,
    },
    /// `send_msg`/`recv_msg` need message mode; the session is in stream mode (see `set_stream_mode`).
    #[error("message operations need message mode")]
    NotMessageMode,
    /// DSCP and socket buffers of a listener's session belong to the shared socket: set them on the
    /// [`KcpListener`](crate::KcpListener) instead (kcp-go returns "invalid operation" too, docs/wire-format.md#session-listener).
    #[error("invalid operation on an accepted session: configure the listener's socket instead")]
    InvalidOperation,
    /// The engine refused a runtime knob (e.g. an MTU that leaves no payload room).
    #[error("KCP engine error")]
    Kcp(#[source] rkcp_engine::KcpError),
}

impl SessionError {
    fn kind(&self) -> io::ErrorKind {
        match self {
            SessionError::Config(_)
            | SessionError::Kcp(_)
            | SessionError::MessageTooLarge { .. } => io::ErrorKind::InvalidInput,
            SessionError::Closed | SessionError::ListenerClosed => io::ErrorKind::NotConnected,
            SessionError::DeadLink(_)
            | SessionError::IdleTimeout(_)
            | SessionError::CloseTimeout(_) => io::ErrorKind::TimedOut,
            SessionError::Unverified => io::ErrorKind::ConnectionRefused,
            SessionError::Io(e) => e.kind(),
            SessionError::BufferTooSmall { .. }
            | SessionError::NotMessageMode
            | SessionError::InvalidOperation => io::ErrorKind::Unsupported,
        }
    }
}

impl From<SessionError> for io::Error {
    fn from(e: SessionError) -> io::Error {
        match e {
            SessionError::Io(e) => e,
            e => io::Error::new(e.kind(), e),
        }
    }
}

/// Why a session ended, kept so every later read or write reports the same cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Local,
    DeadLink(u32),
    /// The peer did not prove its address in time (listener admission).
    Unverified,
    /// Nothing heard from the peer for this many ms.
    IdleTimeout(u64),
    /// A graceful shutdown did not complete within this many ms.
    CloseTimeout(u64),
    Socket(io::ErrorKind),
}

impl CloseReason {
    pub(crate) fn to_error(self) -> SessionError {
        match self {
            CloseReason::Local => SessionError::Closed,
            CloseReason::DeadLink(n) => SessionError::DeadLink(n),
            CloseReason::Unverified => SessionError::Unverified,
            CloseReason::IdleTimeout(ms) => SessionError::IdleTimeout(Duration::from_millis(ms)),
            CloseReason::CloseTimeout(ms) => SessionError::CloseTimeout(Duration::from_millis(ms)),
            CloseReason::Socket(k) => SessionError::Io(io::Error::new(k, "UDP socket failed")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// The whole chain, as `anyhow`'s `{:#}` prints it.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut cur = e.source();
        while let Some(c) = cur {
            s += ": ";
            s += &c.to_string();
            cur = c.source();
        }
        s
    }

    #[test]
    fn each_cause_prints_once_in_the_chain() {
        let e = SessionError::Io(io::Error::other("no route to host"));
        assert_eq!(chain(&e), "UDP socket error: no route to host");
        let e = SessionError::Config(ConfigError::Dscp(99));
        assert_eq!(
            chain(&e),
            "invalid configuration: DSCP 99 out of range 0..=63"
        );
        assert!(e.source().is_some());
    }
}
