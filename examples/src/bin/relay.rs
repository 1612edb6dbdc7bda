//! `relay`: the relay gateway. Backends (`relay-backend`) dial in, prove the shared key and register an id;
//! clients (`relay-client`) name an id and get spliced to that backend. See `relay --help` and the
//! `rkcp_examples::relay` module docs for the protocol.

use std::process::ExitCode;

use clap::Parser;
use rkcp_examples::cli::{SIGNALS_HELP, bind_udp, describe_bound, fail, init_stderr_logging};
use rkcp_examples::positive_secs;
use rkcp_examples::relay::{Relay, RelayConfig, kcp_config};
use rkcp_examples::tunnel::shutdown_signal;

/// Relay gateway: splices client streams with registered backends over KCP+smux.
#[derive(Parser, Debug)]
#[command(name = "relay", version, after_help = SIGNALS_HELP)]
struct Args {
    /// UDP address to listen on (`:PORT` is every interface, IPv4 and IPv6).
    #[arg(short, long, default_value = ":29950")]
    listen: String,
    /// Shared key that backends and clients must prove, and the relay proves to them (mutual HMAC-SHA256
    /// challenge-response; docs/relay.md).
    #[arg(short, long, env = "RELAY_KEY", hide_env_values = true)]
    key: String,
    /// Optional passphrase for AES encryption of the KCP packets (all peers must use the same).
    #[arg(long, env = "RELAY_KCP_KEY", hide_env_values = true)]
    kcp_key: Option<String>,
    /// Seconds without a ping after which a backend is dropped.
    #[arg(long, default_value_t = 30.0)]
    idle_timeout: f64,
    /// Seconds a new session may take to authenticate before it is closed.
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Sessions allowed to be in their handshake at once; further new sessions are closed at once.
    #[arg(long, default_value_t = 64)]
    max_unauthenticated: usize,
    /// Log warnings and errors only (no per-backend or per-stream lines).
    #[arg(short, long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_stderr_logging(args.quiet);
    let res = async {
        let idle = positive_secs("--idle-timeout", args.idle_timeout)?;
        let mut cfg = RelayConfig::new(args.key.into_bytes());
        cfg.idle_timeout = idle;
        cfg.handshake_timeout = positive_secs("--handshake-timeout", args.handshake_timeout)?;
        cfg.max_unauthenticated = args.max_unauthenticated;
        let sock = bind_udp(&args.listen)?;
        let relay = Relay::from_std(sock, kcp_config(args.kcp_key.as_deref()), cfg)?;
        println!("relay listening on {}", describe_bound(relay.local_addr()?));
        relay.run(shutdown_signal()).await?;
        anyhow::Ok(())
    }
    .await;
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("relay", &e, false),
    }
}
