//! The `smux` crate (being written).
