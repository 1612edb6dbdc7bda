//! `rpc-demo`: two-way RPC behind NAT. Run `rpc-demo public` on the reachable host and `rpc-demo nat` behind
//! NAT; the NAT'd side dials out once, then the public side calls into it every second (and it calls back).
//! See `rpc-demo --help`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use rkcp_examples::cli::{
    SIGNALS_HELP, bind_udp, describe_bound, fail, init_stderr_logging, resolve,
};
use rkcp_examples::randsvc::kcp_config;
use rkcp_examples::rpc::{Peer, Routes};
use rkcp_examples::tunnel::shutdown_signal;

/// Two-way RPC over one KCP+smux session dialled out from behind NAT. Stops cleanly on Ctrl-C or SIGTERM.
#[derive(Parser, Debug)]
#[command(name = "rpc-demo", version, after_help = SIGNALS_HELP)]
struct Args {
    #[command(subcommand)]
    side: Side,
    /// Log warnings and errors only (no per-session lines).
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Side {
    /// The reachable side: waits for the NAT'd side, then calls its `nat.time` route every second and
    /// serves `public.echo`.
    Public {
        /// UDP address to listen on (`:PORT` is every interface, IPv4 and IPv6).
        #[arg(short, long, default_value = "127.0.0.1:29920")]
        listen: String,
    },
    /// The side behind NAT: dials the public side once, serves `nat.time` and `nat.log` (one-way), and
    /// calls `public.echo` once.
    Nat {
        /// UDP address of the public side (host:port; a host name is resolved, IPv4 first).
        #[arg(short, long, default_value = "127.0.0.1:29920")]
        server: String,
    },
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn run(side: Side) -> anyhow::Result<()> {
    const TIMEOUT: Duration = Duration::from_secs(5);
    match side {
        Side::Public { listen } => {
            let listener = rkcp_session::KcpListener::from_std(bind_udp(&listen)?, kcp_config())
                .map_err(|e| anyhow::Error::new(e).context(format!("listening on {listen}")))?;
            println!(
                "rpc-demo public listening on {}",
                describe_bound(listener.local_addr()?)
            );
            let routes = Routes::new().route("public.echo", |req: Vec<u8>| async move { req });
            let peer = Peer::accept(&listener, rkcp_smux::Config::default(), routes).await?;
            println!("NAT'd peer connected");
            loop {
                let reply = peer.call("nat.time", b"", TIMEOUT).await?;
                println!("nat.time -> {}", String::from_utf8_lossy(&reply));
                peer.send("nat.log", b"hello from the public side").await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Side::Nat { server } => {
            let addr = resolve("--server", &server).await?;
            let routes = Routes::new()
                .route("nat.time", |_| async {
                    unix_now().to_string().into_bytes()
                })
                .route("nat.log", |msg: Vec<u8>| async move {
                    println!("nat.log: {}", String::from_utf8_lossy(&msg));
                    Vec::new()
                });
            let peer =
                Peer::connect(addr, kcp_config(), rkcp_smux::Config::default(), routes).await?;
            let echo = peer
                .call("public.echo", b"hi from behind NAT", TIMEOUT)
                .await?;
            println!("public.echo -> {}", String::from_utf8_lossy(&echo));
            while !peer.is_closed() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            anyhow::bail!("the session to {addr} ended")
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_stderr_logging(args.quiet);
    let res = tokio::select! {
        r = run(args.side) => r,
        () = shutdown_signal() => Ok(()),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail("rpc-demo", &e, false),
    }
}
