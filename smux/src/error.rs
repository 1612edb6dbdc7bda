//! Session and stream errors (docs/wire-format.md#smux-errors).

use std::io;
use std::sync::Arc;

use crate::frame::FrameError;

/// What went wrong with a session or stream.
///
/// Stream IO (`AsyncRead`/`AsyncWrite`) reports these wrapped in an [`io::Error`] whose
/// `get_ref()` downcasts to `Error`; [`Error::into_io`] documents the mapping of kinds.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent a frame with an unknown command or the wrong version (Go's
    /// `ErrInvalidProtocol`). The session has been torn down; open a new one.
    #[error("invalid protocol")]
    Protocol(#[from] FrameError),
    /// Version auto-detection saw a first frame that is not an smux header: the peer
    /// does not speak smux (or uses a different framing, e.g. compression on one side
    /// only). The session has been torn down.
    #[error("not an smux peer (first bytes {0:02x?})")]
    NotSmuxPeer([u8; 8]),
    /// All stream ids of this side are used up (Go's `ErrGoAway`). Ids are never reused
    /// because the old stream may still be alive at the peer; start a new session.
    #[error("stream id overflows, should start a new connection")]
    GoAway,
    /// v2: the peer claims to have consumed more bytes than we sent (Go's `ErrConsumed`).
    /// The stream is unusable for writing.
    #[error("peer consumed more than sent")]
    Consumed,
    /// The session was closed locally ([`Session::close`](crate::Session::close) or every
    /// handle dropped).
    #[error("session closed")]
    SessionClosed,
    /// No frame arrived for `keep_alive_timeout`; the session was closed.
    #[error("keepalive timeout: no frames from the peer")]
    KeepAliveTimeout,
    /// The transport reached EOF: the peer closed the connection.
    #[error("connection closed by peer")]
    ConnectionClosed,
    /// The transport failed; the session is closed.
    #[error("transport error")]
    Io(#[source] Arc<io::Error>),
    /// This stream was already shut down for writing (Go's `io.ErrClosedPipe` after
    /// `Close`).
    #[error("stream closed for writing")]
    StreamClosed,
}

impl Error {
    /// The `io::ErrorKind` used when this error surfaces through stream IO.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Protocol(_) | Error::NotSmuxPeer(_) => io::ErrorKind::InvalidData,
            Error::GoAway => io::ErrorKind::Other,
            Error::Consumed => io::ErrorKind::InvalidData,
            Error::SessionClosed | Error::StreamClosed => io::ErrorKind::BrokenPipe,
            Error::KeepAliveTimeout => io::ErrorKind::TimedOut,
            Error::ConnectionClosed => io::ErrorKind::ConnectionReset,
            Error::Io(e) => e.kind(),
        }
    }

    /// Converts into an `io::Error` that carries this error as its inner error.
    pub fn into_io(self) -> io::Error {
        io::Error::new(self.io_kind(), self)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        e.into_io()
    }
}
