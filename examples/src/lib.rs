//! Programs built on the rkcp stack (`session` for KCP over UDP, `smux` for multiplexing, `crypt` for kcptun's
//! ciphers).
//!
//! - [`tunnel`]: a drop-in for kcptun 20210922 (binaries `tunnel-client` and `tunnel-server`), wire-compatible
//!   with the Go binaries in both directions (PROTOCOL.md section F).
//! - [`randsvc`]: a random-number service over KCP+smux (`rand-service`) behind an HTTP gateway that shares a
//!   pool of sessions (`api-gateway`).
//! - [`rpc`]: two-way RPC over one KCP+smux session dialled out from behind NAT (`rpc-demo`).
//! - [`relay`]: a relay gateway (`relay`) that lets clients (`relay-client`) reach named backends
//!   (`relay-backend`) which authenticate with a shared key and dial out to it.

pub mod randsvc;
pub mod relay;
pub mod rpc;
pub mod tunnel;
