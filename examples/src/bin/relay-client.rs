//! `relay-client`: listens on a local TCP port and carries each accepted connection through the relay to a
//! named backend. See `relay-client --help`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use rkcp_examples::relay::{Client, kcp_config, validate_id};
use rkcp_examples::tunnel::{init_logging, shutdown_signal};

/// Relay client: forwards local TCP connections to a backend registered at the relay.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The relay's UDP address.
    #[arg(short, long)]
    relay: SocketAddr,
    /// Backend id to reach.
    #[arg(short, long)]
    id: String,
    /// Local TCP address to accept connections on.
    #[arg(short, long, default_value = "127.0.0.1:29951")]
    listen: SocketAddr,
    /// Optional passphrase for AES encryption of the KCP packets (must match the relay's).
    #[arg(long, env = "RELAY_KCP_KEY", hide_env_values = true)]
    kcp_key: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Logging to stderr (an empty path) cannot fail.
    let _ = init_logging("");
    let res = async {
        validate_id(&args.id)?;
        let tcp = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        let client = Client::connect(
            args.relay,
            kcp_config(args.kcp_key.as_deref()),
            rkcp_smux::Config::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the relay at {}: {e}", args.relay))?;
        tracing::info!(
            "forwarding {} -> relay {} -> {:?}",
            args.listen,
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
            if client.is_closed() {
                anyhow::bail!("the session to the relay is closed");
            }
            let (client, id) = (client.clone(), args.id.clone());
            tokio::spawn(async move {
                match client.open(&id).await {
                    Ok(mut s) => {
                        if let Err(e) = tokio::io::copy_bidirectional(&mut conn, &mut s).await {
                            tracing::info!("{peer}: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("{peer}: {e}"),
                }
            });
        }
        client.close().await;
        anyhow::Ok(())
    }
    .await;
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}
