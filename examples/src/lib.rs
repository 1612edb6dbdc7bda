//! Programs built on the rkcp stack (`session` for KCP over UDP, `smux` for multiplexing, `crypt` for kcptun's
//! ciphers).
//!
//! - [`tunnel`]: a drop-in for kcptun 20210922 (binaries `tunnel-client` and `tunnel-server`), wire-compatible
//!   with the Go binaries in both directions (PROTOCOL.md section F).
//! - [`relay`]: a relay gateway (`relay`) that lets clients (`relay-client`) reach named backends
//!   (`relay-backend`) which authenticate with a shared key and dial out to it.

pub mod relay;
pub mod tunnel;
