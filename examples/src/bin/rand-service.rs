//! `rand-service`: answers every smux stream (over KCP) that sends `RAND` with 8 big-endian random bytes.
//! See `rand-service --help`; the gateway in front of it is `api-gateway`.

use clap::Parser;
use rkcp_examples::cli::{SIGNALS_HELP, bind_udp, describe_bound, fail, init_logging};
use rkcp_examples::randsvc;
use rkcp_examples::tunnel::shutdown_signal;

/// A random-number service speaking smux over KCP: each stream carries the 4 bytes `RAND` and gets 8
/// big-endian random bytes back. Stops cleanly on Ctrl-C or SIGTERM.
#[derive(Parser, Debug)]
#[command(name = "rand-service", version, after_help = SIGNALS_HELP)]
struct Args {
    /// UDP address to listen on for KCP sessions (`:PORT` is every interface, IPv4 and IPv6).
    #[arg(short, long, default_value = "127.0.0.1:29910")]
    listen: String,
    /// smux protocol version (1 or 2); the gateway must use the same.
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
        return fail("rand-service", &e, false);
    }
    let res = async {
        let listener =
            rkcp_session::KcpListener::from_std(bind_udp(&args.listen)?, randsvc::kcp_config())
                .map_err(|e| {
                    anyhow::Error::new(e).context(format!("listening on {}", args.listen))
                })?;
        // The line tests and scripts wait for: the bound address (useful with port 0).
        println!(
            "rand-service listening on {}",
            describe_bound(listener.local_addr()?)
        );
        let mut smux = rkcp_smux::Config::default();
        smux.version = if args.smuxver == 2 {
            rkcp_smux::Version::V2
        } else {
            rkcp_smux::Version::V1
        };
        randsvc::serve(listener, smux, shutdown_signal()).await?;
        anyhow::Ok(())
    }
    .await;
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail("rand-service", &e, !args.log.is_empty()),
    }
}
