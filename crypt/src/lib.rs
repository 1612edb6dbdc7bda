//! The `crypt` crate (being written).
