//! xtaci/smux v1 and v2 over any tokio `AsyncRead + AsyncWrite`, wire-compatible with
//! smux 1.5.16 (docs/wire-format.md#smux).
//!
//! ```no_run
//! # async fn demo(tcp: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::AsyncWriteExt;
//! let mut config = rkcp_smux::Config::default();
//! config.version = rkcp_smux::Version::V2;
//! let session = rkcp_smux::Session::client(tcp, config)?;
//! let mut stream = session.open_stream().await?;
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?; // FIN
//! # Ok(()) }
//! ```
//!
//! Design: a driver task reads the transport, parses frames into per-stream buffers
//! (bounded by the session token bucket, E.4) and writes frames chosen by the shaper
//! (control frames first, then the stream that has sent least, E.6), batching several
//! frames into one (vectored) write. Streams are handles to shared state. A write that
//! nothing must precede goes straight from the caller's buffer to the transport from
//! the caller's task (header and payload slices, no copy, see `write.rs`); otherwise it
//! copies the data into whole encoded frames for the driver. Either way its byte count
//! is exact even if the caller gives up (cancellation or timeout) right after. Large
//! PSH payloads are read from the transport into a buffer of their own (recycled
//! through a small per-session pool that an idle session empties, see `read.rs`) and
//! handed to the reader without another copy; small ones are copied out of a shared
//! read chunk.
//!
//! Flow control (v2; the full argument is in the `flow` module's source docs): no
//! many-stream deadlock, whatever the peer, because of two rules. As a sender, the
//! bytes sent on all streams and not yet reported consumed stay below the peer's
//! receive buffer ([`Config::peer_receive_buffer`]), so a Go peer never stops reading
//! its transport because of our data and our window updates always reach it. As a
//! receiver, we never stop reading for data the peer was entitled to send (within a
//! window we gave, or Go's initial 256 KiB guess), so its window updates never get
//! stuck behind data on our side. Windows start at 64 KiB and auto-tune up to a fair
//! share of `max_receive_buffer`, so one stream can fill a long fat link. In v1 there
//! are no windows: a stream nobody reads fills the session buffer and stalls every
//! stream (as in Go); prefer v2 where readers can be slow.
//!
//! Differences from Go, none visible on the wire: ids are never reused after
//! exhaustion ([`Error::GoAway`]), the v2 window can be auto-tuned
//! ([`Config::stream_window_autotune`]), the server can detect the version
//! ([`Version::Auto`]), the accept backlog back-pressures the transport instead of
//! blocking a goroutine, and a protocol error tears the session down (waking every
//! stream with it) instead of leaving it half-alive.

mod config;
mod error;
mod flow;
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
#[cfg(test)]
mod tests_flow;
