//! The sans-IO core of the session layer, in the shape of quinn-proto: no sockets, no clock, no tasks.
//!
//! - [`Endpoint`](endpoint::Endpoint): what a listening socket does with a datagram — open (crypt), recover
//!   the conversation, route it to its connection or create/replace one — with the routing table, the
//!   listener's counters (every drop by reason) and its limits.
//! - [`Connection`](connection::Connection): one conversation — the KCP engine, its crypt, FEC encoder and
//!   decoder, the datagrams waiting to be sent, the application-side rules and its counters — driven by
//!   `handle_datagram`/`finish_input`, `poll_timeout`/`handle_timeout`, `read`/`write` and `transmits`.
//! - [`Timestamp`](time::Timestamp): the one clock type of the packet path.
//! - `afec`: adaptive parity, the FEC policy fed with the engine's counters.
//! - `packet`: the datagram layers around KCP (open, classify, seal).
//! - `admission`, `replay`, `routes`: the endpoint's rules for strangers (unverified limits and the stateless
//!   address check; the record of conversation ids against replays; routing by path and following a peer
//!   that moved).
//! - `shard`: which shard of a sharded listener (`SO_REUSEPORT`) owns a conversation, so that a datagram
//!   that reaches another shard after its peer moved is handed to its connection's endpoint.
//!
//! The tokio driver (listener, stream, socket IO, timers) sits on top and only moves datagrams, time and
//! wake-ups; every rule lives here and is tested in virtual time.

pub(crate) mod admission;
pub(crate) mod afec;
pub(crate) mod connection;
pub(crate) mod endpoint;
pub(crate) mod keyed;
pub(crate) mod packet;
pub(crate) mod replay;
pub(crate) mod routes;
pub(crate) mod shard;
pub(crate) mod time;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_afec;
