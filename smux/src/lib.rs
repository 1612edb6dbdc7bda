//! xtaci/smux v1 and v2 over any tokio `AsyncRead + AsyncWrite`, wire-compatible with
//! smux 1.5.16 (PROTOCOL.md section E).
//!
//! ```no_run
//! # async fn demo(tcp: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::AsyncWriteExt;
//! let mut config = smux::Config::default();
//! config.version = smux::Version::V2;
//! let session = smux::Session::client(tcp, config)?;
//! let mut stream = session.open_stream().await?;
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?; // FIN
//! # Ok(()) }
//! ```
//!
//! Design: a driver task reads the transport and writes what is queued; the
//! `Session` and every [`Stream`] are handles to shared state. The driver reads large
//! chunks (many frames per read), parses them into per-stream buffers (bounded by the
//! session token bucket, E.4) and hands large payloads over as slices of the chunk,
//! without a copy; chunks are recycled per session. Writes take the fast path when
//! nothing else waits to be sent: the stream writes header + payload frames straight
//! from the caller's buffer with one vectored write from its own task (no copy, no
//! hand-off). Otherwise frames are queued whole and the driver writes them, control
//! frames first, then the stream that has sent least (E.6). Either way a write's byte
//! count is exact even if the caller gives up (cancellation or timeout) right after.
//!
//! Flow-control limits (both as in Go, documented on [`Stream`]): in v1 one stream
//! nobody reads fills the session buffer and stalls every stream; in v2 it cannot, as
//! long as `max_receive_buffer` covers 256 KiB (Go's initial window guess) per unread
//! stream. An application that echoes many streams through the same session needs the
//! data in flight to fit the peer's receive buffer (Go has the same limit); we cap the
//! windows we advertise to a fair share of half the receive buffer to make that
//! deadlock less likely.
//!
//! Differences from Go, none visible on the wire: ids are never reused after
//! exhaustion ([`Error::GoAway`]), the v2 window can be auto-tuned
//! ([`Config::stream_window_autotune`]), the server can detect the version
//! ([`Version::Auto`]), the accept backlog back-pressures the transport instead of
//! blocking a goroutine, and a protocol error tears the session down (waking every
//! stream with it) instead of leaving it half-alive.

mod config;
mod error;
pub mod frame;
mod read;
mod session;
mod shared;
mod stream;
mod write;

pub use config::{Config, ConfigError, Version};
pub use error::Error;
pub use frame::FrameError;
pub use session::{Driver, Role, Session};
pub use stream::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, Stream, WriteHalf};

#[cfg(test)]
mod tests;
