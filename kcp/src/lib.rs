//! The `kcp` crate (being written).
