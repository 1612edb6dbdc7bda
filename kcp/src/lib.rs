//! A sans-IO KCP ARQ engine, wire-compatible with kcp-go 5.6.1.
//!
//! KCP turns an unreliable datagram channel into a reliable, ordered one, trading bandwidth for
//! latency: aggressive retransmission, selective and cumulative ACKs, optional congestion
//! control. This crate is only the state machine. It reads no clock and owns no socket: the
//! caller passes the time (`now`, milliseconds in a wrapping `u32`, like the protocol) and the
//! datagrams in, and receives the datagrams to send through a callback. The algorithm follows
//! kcp-go 5.6.1 step by step as `PROTOCOL.md` section A describes it, so Go and Rust peers behave
//! the same on the wire.
//!
//! * [`segment`]: the 24-byte header codec ([`SegmentHeader`], [`Command`]).
//! * [`KcpConfig`]: defaults of kcp-go's `NewKCP` and the kcptun presets.
//! * [`Kcp`]: the engine. [`Kcp::next_deadline`] says when it needs [`Kcp::update`] next, and is
//!   `None` while the conversation is idle.
//! * [`KcpError`], [`KcpStats`].
//!
//! # Example: two engines connected in memory
//!
//! ```
//! use kcp::{Kcp, KcpConfig};
//!
//! let cfg = KcpConfig { nc: true, ..KcpConfig::fast3() };
//! let mut a = Kcp::with_config(7, &cfg).unwrap();
//! let mut b = Kcp::with_config(7, &cfg).unwrap();
//! a.send(b"hello over kcp").unwrap();
//!
//! let mut now = 0u32;
//! let mut buf = [0u8; 64];
//! loop {
//!     // Datagrams from a to b and back; a real driver would put them on a UDP socket.
//!     let mut a_to_b = Vec::new();
//!     let mut b_to_a = Vec::new();
//!     a.update(now, &mut |d: &mut [u8]| a_to_b.push(d.to_vec()));
//!     for d in &a_to_b {
//!         b.input(now, d, true).unwrap();
//!     }
//!     b.update(now, &mut |d: &mut [u8]| b_to_a.push(d.to_vec()));
//!     for d in &b_to_a {
//!         a.input(now, d, true).unwrap();
//!     }
//!     let n = b.recv(&mut buf).unwrap();
//!     if n > 0 {
//!         assert_eq!(&buf[..n], b"hello over kcp");
//!         break;
//!     }
//!     // Sleep until the earliest deadline (here: jump the virtual clock).
//!     let next = [a.next_deadline(), b.next_deadline()].into_iter().flatten().min();
//!     now = next.map_or(now + 10, |t| t.max(now + 1));
//! }
//! ```

pub mod config;
mod engine;
mod error;
pub mod segment;
pub mod sim;
mod stats;

pub use config::KcpConfig;
pub use engine::Kcp;
pub use error::KcpError;
pub use segment::{Command, OVERHEAD, SegmentHeader};
pub use stats::KcpStats;
