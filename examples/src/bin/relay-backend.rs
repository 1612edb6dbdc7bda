//! `relay-backend`: registers an id at a relay and serves every client stream, either as an echo server or
//! by forwarding it to a local TCP port. See `relay-backend --help`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use rkcp_examples::positive_secs;
use rkcp_examples::relay::{Backend, BackendConfig, kcp_config};
use rkcp_examples::tunnel::{init_logging, shutdown_signal};

/// Relay backend: dials the relay, proves the shared key, registers an id and serves client streams.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The relay's UDP address.
    #[arg(short, long)]
    relay: SocketAddr,
    /// Id to register (1 to 64 characters of A-Z a-z 0-9 . _ -).
    #[arg(short, long)]
    id: String,
    /// Shared key of the relay.
    #[arg(short, long, env = "RELAY_KEY", hide_env_values = true)]
    key: String,
    /// Optional passphrase for AES encryption of the KCP packets (must match the relay's).
    #[arg(long, env = "RELAY_KCP_KEY", hide_env_values = true)]
    kcp_key: Option<String>,
    /// Forward each client stream to this local TCP address; without it, echo the bytes back.
    #[arg(short, long)]
    forward: Option<SocketAddr>,
    /// Seconds between pings to the relay (keep below the relay's --idle-timeout).
    #[arg(long, default_value_t = 10.0)]
    ping_interval: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Logging to stderr (an empty path) cannot fail.
    let _ = init_logging("");
    let res = async {
        let ping = positive_secs("--ping-interval", args.ping_interval)?;
        let mut cfg = BackendConfig::new(args.id.clone(), args.key.into_bytes());
        cfg.ping_interval = Some(ping);
        let backend = Backend::register(args.relay, kcp_config(args.kcp_key.as_deref()), cfg)
            .await
            .map_err(|e| anyhow::anyhow!("cannot register {:?} at {}: {e}", args.id, args.relay))?;
        tracing::info!("registered as {:?} at {}", args.id, args.relay);
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let mut stream = tokio::select! {
                () = &mut shutdown => break,
                s = backend.accept() => s.map_err(|e| anyhow::anyhow!("lost the relay: {e}"))?,
            };
            let forward = args.forward;
            tokio::spawn(async move {
                let res = match forward {
                    Some(addr) => match tokio::net::TcpStream::connect(addr).await {
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
                    tracing::info!("stream ended: {e}");
                }
            });
        }
        backend.close().await;
        anyhow::Ok(())
    }
    .await;
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-backend: {e:#}");
            ExitCode::FAILURE
        }
    }
}
