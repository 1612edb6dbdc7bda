//! Programs built on the rkcp stack (`session` for KCP over UDP, `smux` for multiplexing, `crypt` for kcptun's
//! ciphers).
//!
//! - [`tunnel`]: a drop-in for kcptun 20210922 (binaries `tunnel-client` and `tunnel-server`), wire-compatible
//!   with the Go binaries in both directions (`docs/wire-format.md#kcptun`).
//! - [`randsvc`]: a random-number service over KCP+smux (`rand-service`) behind an HTTP gateway that shares a
//!   pool of sessions (`api-gateway`).
//! - [`rpc`]: two-way RPC over one KCP+smux session dialled out from behind NAT (`rpc-demo`).
//! - [`relay`]: a relay gateway (`relay`) that lets clients (`relay-client`) reach named backends
//!   (`relay-backend`) which authenticate with a shared key and dial out to it.

pub mod cli;
pub mod kcpwatch;
pub mod randsvc;
pub mod relay;
pub mod rpc;
pub mod tunnel;

/// Parses a command-line duration given in seconds, refusing zero, negative and non-finite values with an error
/// that names the flag (`--idle-timeout must be a positive number of seconds`).
pub fn positive_secs(flag: &str, secs: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("{flag} must be a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn positive_secs_accepts_positive_and_names_the_flag_otherwise() {
        assert_eq!(
            super::positive_secs("--x", 1.5).unwrap(),
            std::time::Duration::from_millis(1500)
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = super::positive_secs("--ping-interval", bad).unwrap_err();
            assert!(
                e.to_string().contains("--ping-interval must be a positive"),
                "{e}"
            );
        }
    }
}

/// The repository README's Rust blocks, compiled and run as doctests (`cargo test --doc -p rkcp-examples`), so
/// the sample a new user copies first is known to build and to finish.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
