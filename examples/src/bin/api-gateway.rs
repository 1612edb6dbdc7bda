//! `api-gateway`: serves `GET /rand` over HTTP from a pool of KCP+smux sessions to `rand-service`.
//! See `api-gateway --help`.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rkcp_examples::randsvc;
use rkcp_examples::tunnel::{init_logging, shutdown_signal};

/// HTTP gateway: `GET /rand` answers 16 hex digits fetched from `rand-service` over one of `--pool` shared
/// KCP+smux sessions (round-robin; a dead session is replaced). Stops cleanly on Ctrl-C or SIGTERM.
#[derive(Parser, Debug)]
#[command(name = "api-gateway", version)]
struct Args {
    /// TCP address to serve HTTP on.
    #[arg(short, long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// UDP address of rand-service.
    #[arg(short, long, default_value = "127.0.0.1:29900")]
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
        eprintln!("api-gateway: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let res = async {
        let target = tokio::net::lookup_host(args.target.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("resolving --target {}: {e}", args.target))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("--target {} resolved to nothing", args.target))?;
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
        let http = tokio::net::TcpListener::bind(args.listen.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("listening on {}: {e}", args.listen))?;
        println!(
            "api-gateway listening on http://{}/rand",
            http.local_addr()?
        );
        axum::serve(http, randsvc::router(Arc::new(pool)))
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        anyhow::Ok(())
    }
    .await;
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
