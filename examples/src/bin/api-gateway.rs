//! `api-gateway`: serves `GET /rand` over HTTP from a pool of KCP+smux sessions to `rand-service`.
//! See `api-gateway --help`.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rkcp_examples::cli::{SIGNALS_HELP, bind_tcp, describe_bound, fail, init_logging, resolve};
use rkcp_examples::randsvc;
use rkcp_examples::tunnel::shutdown_signal;

/// HTTP gateway: `GET /rand` answers 16 hex digits fetched from `rand-service` over one of `--pool` shared
/// KCP+smux sessions (round-robin; a dead session is replaced). Stops cleanly on Ctrl-C or SIGTERM.
#[derive(Parser, Debug)]
#[command(name = "api-gateway", version, after_help = SIGNALS_HELP)]
struct Args {
    /// TCP address to serve HTTP on (`:PORT` is every interface, IPv4 and IPv6).
    #[arg(short, long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// UDP address of rand-service (host:port; a host name is resolved, IPv4 first).
    #[arg(short, long, default_value = "127.0.0.1:29910")]
    target: String,
    /// Number of KCP+smux sessions shared by all HTTP requests.
    #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pool: u16,
    /// Per-request timeout towards the service, in milliseconds (after it the session is replaced and the
    /// request retried once).
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
    /// smux protocol version (1 or 2); must match rand-service.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    smuxver: u8,
    /// Log file (stderr when empty). Verbosity via RUST_LOG (default info).
    #[arg(long, default_value = "")]
    log: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Err(e) = init_logging(&args.log) {
        return fail("api-gateway", &e, false);
    }
    let res = async {
        let target = resolve("--target", &args.target).await?;
        let mut smux = rkcp_smux::Config::default();
        smux.version = if args.smuxver == 2 {
            rkcp_smux::Version::V2
        } else {
            rkcp_smux::Version::V1
        };
        let pool = randsvc::Pool::new(
            target,
            usize::from(args.pool),
            randsvc::kcp_config(),
            smux,
            Duration::from_millis(args.timeout_ms.max(1)),
        )?;
        let http = bind_tcp(&args.listen)?;
        println!(
            "api-gateway listening on http://{}/rand",
            describe_bound(http.local_addr()?)
        );
        axum::serve(http, randsvc::router(Arc::new(pool)))
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        anyhow::Ok(())
    }
    .await;
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail("api-gateway", &e, !args.log.is_empty()),
    }
}
