//! `relay-client`: listens on a local TCP port and carries each accepted connection through the relay to a
//! named backend; dials the relay again (with backoff) when it or the link comes back. See
//! `relay-client --help`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use rkcp_examples::cli::{
    Chain, SIGNALS_HELP, bind_tcp, describe_bound, fail, init_stderr_logging, resolve,
};
use rkcp_examples::positive_secs;
use rkcp_examples::relay::{Backoff, ClientConfig, ReconnectingClient, kcp_config, validate_id};
use rkcp_examples::tunnel::shutdown_signal;

/// Relay client: forwards local TCP connections to a backend registered at the relay. Clients prove the
/// relay's shared key too.
#[derive(Parser, Debug)]
#[command(name = "relay-client", version, after_help = SIGNALS_HELP)]
struct Args {
    /// The relay's UDP address (host:port; a host name is resolved, IPv4 first).
    #[arg(short, long)]
    relay: String,
    /// Backend id to reach.
    #[arg(short, long)]
    id: String,
    /// Shared key of the relay.
    #[arg(short, long, env = "RELAY_KEY", hide_env_values = true)]
    key: String,
    /// This client's name, shown in the relay's log (same rules as an id).
    #[arg(long, default_value = "client")]
    name: String,
    /// Local TCP address to accept connections on (`:PORT` is every interface, IPv4 and IPv6).
    #[arg(short, long, default_value = "127.0.0.1:29951")]
    listen: String,
    /// Optional passphrase for AES encryption of the KCP packets (must match the relay's).
    #[arg(long, env = "RELAY_KCP_KEY", hide_env_values = true)]
    kcp_key: Option<String>,
    /// Longest delay, in seconds, between attempts to reach the relay again after losing it (the delay starts
    /// at 1 s and doubles; connections accepted meanwhile are closed).
    #[arg(long, default_value_t = 30.0)]
    max_backoff: f64,
    /// Log warnings and errors only (no per-connection lines).
    #[arg(short, long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_stderr_logging(args.quiet);
    let res = async {
        validate_id(&args.id)?;
        validate_id(&args.name)?;
        let max = positive_secs("--max-backoff", args.max_backoff)?;
        let relay = resolve("--relay", &args.relay).await?;
        let tcp = bind_tcp(&args.listen)?;
        let mut cfg = ClientConfig::new(args.key.into_bytes());
        cfg.name = args.name.clone();
        let backoff = Backoff {
            initial: Backoff::default().initial.min(max),
            max,
        };
        let client = Arc::new(ReconnectingClient::new(
            relay,
            kcp_config(args.kcp_key.as_deref()),
            cfg,
            backoff,
        ));
        // The first session is dialled now, so a wrong key or an unreachable relay shows at start; a
        // refusal (wrong key) is final.
        if let Err(e) = client.client().await
            && e.is_permanent()
        {
            return Err(
                anyhow::Error::new(e).context(format!("cannot reach the relay at {}", args.relay))
            );
        }
        println!(
            "forwarding {} -> relay {} ({relay}) -> {:?}",
            describe_bound(tcp.local_addr()?),
            args.relay,
            args.id
        );
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let (mut conn, peer) = tokio::select! {
                () = &mut shutdown => break,
                c = tcp.accept() => c?,
            };
            let (client, id) = (client.clone(), args.id.clone());
            tokio::spawn(async move {
                match client.open(&id).await {
                    Ok(mut s) => {
                        if let Err(e) = tokio::io::copy_bidirectional(&mut conn, &mut s).await {
                            tracing::info!("{peer}: {}", Chain(&e));
                        }
                    }
                    Err(e) => tracing::warn!("{peer}: {}", Chain(&e)),
                }
            });
        }
        client.close().await;
        anyhow::Ok(())
    }
    .await;
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("relay-client", &e, false),
    }
}
