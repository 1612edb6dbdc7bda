//! The `fec` crate (being written).
