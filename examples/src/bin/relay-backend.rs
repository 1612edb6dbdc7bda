//! `relay-backend`: registers an id at a relay and serves every client stream, either as an echo server or
//! by forwarding it to a local TCP port; registers again (with backoff) when the relay or the link comes back.
//! See `relay-backend --help`.

use std::process::ExitCode;

use clap::Parser;
use rkcp_examples::cli::{Chain, SIGNALS_HELP, fail, init_stderr_logging, resolve};
use rkcp_examples::positive_secs;
use rkcp_examples::relay::{BackendConfig, Backoff, kcp_config, run_backend, validate_id};
use rkcp_examples::tunnel::shutdown_signal;

/// Relay backend: dials the relay, checks that it holds the shared key, proves the key, registers an id and
/// serves client streams.
#[derive(Parser, Debug)]
#[command(name = "relay-backend", version, after_help = SIGNALS_HELP)]
struct Args {
    /// The relay's UDP address (host:port; a host name is resolved, IPv4 first).
    #[arg(short, long)]
    relay: String,
    /// Id to register (1 to 64 characters of A-Z a-z 0-9 . _ -). Registering replaces an earlier
    /// registration of the same id.
    #[arg(short, long)]
    id: String,
    /// Shared key of the relay.
    #[arg(short, long, env = "RELAY_KEY", hide_env_values = true)]
    key: String,
    /// Optional passphrase for AES encryption of the KCP packets (must match the relay's).
    #[arg(long, env = "RELAY_KCP_KEY", hide_env_values = true)]
    kcp_key: Option<String>,
    /// Forward each client stream to this TCP address (host:port, resolved per connection); without it, echo
    /// the bytes back.
    #[arg(short, long)]
    forward: Option<String>,
    /// Seconds between pings to the relay (keep below the relay's --idle-timeout).
    #[arg(long, default_value_t = 10.0)]
    ping_interval: f64,
    /// Longest delay, in seconds, between attempts to register again after losing the relay (the delay
    /// starts at 1 s and doubles).
    #[arg(long, default_value_t = 30.0)]
    max_backoff: f64,
    /// Log warnings and errors only (no per-stream lines).
    #[arg(short, long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_stderr_logging(args.quiet);
    let res = async {
        let ping = positive_secs("--ping-interval", args.ping_interval)?;
        let max = positive_secs("--max-backoff", args.max_backoff)?;
        validate_id(&args.id)?;
        let relay = resolve("--relay", &args.relay).await?;
        let mut cfg = BackendConfig::new(args.id.clone(), args.key.into_bytes());
        cfg.ping_interval = Some(ping);
        let backoff = Backoff {
            initial: Backoff::default().initial.min(max),
            max,
        };
        let forward = args.forward.clone();
        let (id, at) = (args.id.clone(), args.relay.clone());
        run_backend(
            relay,
            kcp_config(args.kcp_key.as_deref()),
            cfg,
            backoff,
            shutdown_signal(),
            move || println!("registered as {id:?} at {at} ({relay})"),
            move |stream| serve(stream, forward.clone()),
        )
        .await
        .map_err(|e| {
            anyhow::Error::new(e)
                .context(format!("cannot register {:?} at {}", args.id, args.relay))
        })?;
        anyhow::Ok(())
    }
    .await;
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("relay-backend", &e, false),
    }
}

async fn serve(mut stream: rkcp_smux::Stream, forward: Option<String>) {
    let res = match &forward {
        Some(addr) => match tokio::net::TcpStream::connect(addr.as_str()).await {
            Ok(mut tcp) => tokio::io::copy_bidirectional(&mut stream, &mut tcp)
                .await
                .map(drop),
            Err(e) => Err(std::io::Error::new(
                e.kind(),
                format!("connect {addr}: {e}"),
            )),
        },
        None => {
            let (mut r, mut w) = stream.split();
            tokio::io::copy(&mut r, &mut w).await.map(drop)
        }
    };
    if let Err(e) = res {
        tracing::info!("stream ended: {}", Chain(&e));
    }
}
