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
//! Design: a single driver task owns the transport. It parses frames into per-stream
//! buffers (bounded by the session token bucket, E.4) and writes frames chosen by the
//! shaper (control frames first, then the stream that has sent least, E.6), batching
//! several frames into one (vectored) write. Streams are handles to shared state; a
//! write copies the data into whole encoded frames, so its byte count is exact even if
//! the caller gives up (cancellation or timeout) right after. Large PSH payloads are
//! read from the transport into a buffer of their own and handed to the reader without
//! another copy; small ones are copied out of a shared read chunk.
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
mod session;
mod shared;
mod stream;

pub use config::{Config, ConfigError, Version};
pub use error::Error;
pub use frame::FrameError;
pub use session::{Driver, Role, Session};
pub use stream::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, Stream, WriteHalf};

#[cfg(test)]
mod tests;
