//! A sans-IO KCP ARQ engine, wire-compatible with kcp-go 5.6.1.
//!
//! KCP turns an unreliable datagram channel into a reliable, ordered one, trading bandwidth for
//! latency: aggressive retransmission, selective and cumulative ACKs, optional congestion
//! control. This crate is only the state machine. It reads no clock and owns no socket: the
//! caller passes the time (`now`, milliseconds in a wrapping `u32`, like the protocol) and the
//! datagrams in, and receives the datagrams to send through a callback. The algorithm follows
//! kcp-go 5.6.1 step by step as docs/wire-format.md#kcp describes it, so Go and Rust peers behave
//! the same on the wire.
//!
//! * [`segment`]: the 24-byte header codec ([`SegmentHeader`], [`Command`]).
//! * [`KcpConfig`]: defaults of kcp-go's `NewKCP` and the kcptun presets; [`Congestion`] picks
//!   the congestion controller: kcp-go's window (default), none (`nc`), a loss-tolerant variant
//!   of kcp-go's window, or a delivery-rate (BBR-style) controller with pacing, the last two
//!   beyond kcp-go and invisible on the wire.
//! * [`Kcp`]: the engine. [`Kcp::next_deadline`] says when it needs [`Kcp::update`] next, and is
//!   `None` while the conversation is idle.
//! * [`KcpError`], [`KcpStats`].
//!
//! # Driving the engine
//!
//! 1. Create it, configure it, and call [`Kcp::update`] once (kcp-go's session flushes when it
//!    is created; that first flush also raises the congestion window from 0 to 1).
//! 2. Feed every datagram from the peer to [`Kcp::input`], application data to [`Kcp::send`],
//!    and read with [`Kcp::recv`]. None of them emits anything.
//! 3. Whenever `now` reaches [`Kcp::next_deadline`] (compare wrap-aware:
//!    `(now - t) as i32 >= 0`), call [`Kcp::update`]; it hands each datagram to send to its
//!    callback. Right after an `input` that slid the send window, or a `send`, the deadline is
//!    "now", so calling `update` after every `input` reproduces kcp-go's packet pattern exactly.
//!    `None` means idle: no timer is needed until the next `input`, `send` or `recv`. Ask again
//!    after each of those (a `recv` or a write-delayed `send` may make an update due at once).
//!
//! Output datagrams start with [`Kcp::reserved`] bytes of unspecified content (room for the
//! session's FEC and crypto headers, written in place) and never exceed [`Kcp::mtu`].
//!
//! # Where this differs from kcp-go 5.6.1
//!
//! None of these changes the bytes a peer sees in normal operation:
//!
//! * Scheduling is the caller's via [`Kcp::update`]/[`Kcp::next_deadline`]; the periodic flush
//!   stops while idle and resumes in the same phase, and a retransmission timer that expires
//!   before the next periodic flush is honoured exactly instead of up to one interval late.
//! * Periodic flushes that cannot send anything (nothing pending but data in flight whose
//!   retransmission timers have not expired) are skipped: [`Kcp::next_deadline`] jumps to the
//!   earliest retransmission, which kcp-go's chain of ticks reaches at exactly that time. Any
//!   change (input, send, recv, a knob) puts the timer back on the tick kcp-go would run next,
//!   so a mostly idle conversation waiting for an ACK costs no wake-ups.
//! * [`Kcp::input`] records that a flush is due instead of flushing itself.
//! * Stream-mode [`Kcp::recv`] fills the whole buffer from several segments (kcp-go returns one
//!   segment per call); stream-mode [`Kcp::send`] has no 255-segment limit; an empty `send` is
//!   `Ok(0)` instead of an error.
//! * The ACK list is bounded (eight receive windows, at least 256 entries) so a flooding peer
//!   cannot grow it; the receive window is capped at 65535, what the `wnd` field can carry.
//! * When every segment in flight is acknowledged but `una` has not passed them, the window
//!   probe (WASK) runs as for a zero window; kcp-go stalls for ever in that state.
//! * Dead links are reported by [`Kcp::is_dead_link`] (kcp-go sets a field nobody reads).
//! * [`Kcp::set_min_rto`] / [`KcpConfig::min_rto`] override the minimum RTO, as the original
//!   KCP latency test does.
//! * [`Congestion::DeliveryRate`] (not the default) replaces kcp-go's congestion window by a
//!   delivery-rate model, caps the segments in flight, paces new segments, and raises the RTO to
//!   at least twice the minimum RTT plus the interval. Only the timing of segments changes.
//! * [`Congestion::LossTolerant`] (not the default) is kcp-go's window counted per segment
//!   acknowledged, cut only when the RTT shows a queue: kcp-go's own window settles near ten
//!   segments on a path with 1 % random loss.
//! * [`KcpConfig::rack`] and [`KcpConfig::tlp`] (off by default) add time-based loss detection
//!   and a tail loss probe; [`KcpConfig::ack_delay`] (off by default) bounds how long an ACK
//!   waits for the next flush. Only the timing of segments changes.
//! * [`KcpConfig::ack_repeat`] (on with the two controllers above) acknowledges out-of-order
//!   segments again in the next ACK flushes, so a lost ACK behind a hole no longer costs a
//!   spurious retransmission; [`KcpConfig::bundle`] (off by default) lets a thin stream carry
//!   copies of its unacknowledged segments in the room of later datagrams. Both only add
//!   ordinary segments a kcp-go peer takes as duplicates.
//!
//! # Example: two engines connected in memory
//!
//! ```
//! use rkcp_engine::{Kcp, KcpConfig};
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
//!         b.input(now, d, rkcp_engine::Freshness::Fresh).unwrap();
//!     }
//!     b.update(now, &mut |d: &mut [u8]| b_to_a.push(d.to_vec()));
//!     for d in &b_to_a {
//!         a.input(now, d, rkcp_engine::Freshness::Fresh).unwrap();
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

pub use config::{Congestion, KcpConfig};
pub use engine::echo::{ECHO_SN, encode_echo_request, find_echo_reply};
pub use engine::{Freshness, Kcp};
pub use error::KcpError;
pub use segment::{Command, OVERHEAD, SegmentHeader};
pub use stats::KcpStats;
