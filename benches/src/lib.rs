//! kcpbench: end-to-end benchmarks of the rkcp stack against kernel TCP and kcp-go.
//!
//! The binary (`src/main.rs`) runs a control server (`kcpbench serve`) and clients
//! (`kcpbench throughput | latency | sessions`) and the hostile-traffic tools (`kcpbench flood | relay | listen`, [`flood`]); this library holds what both sides and the
//! report share. The wire protocol between client and server is described in [`proto`].

pub mod client;
pub mod config;
pub mod flood;
pub mod gopeer;
pub mod plot;
pub mod procstat;
pub mod proto;
pub mod report;
pub mod results;
pub mod serve;
pub mod tcpopt;
