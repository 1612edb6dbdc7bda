//! `tunnel-client`: kcptun's client, flag for flag (PROTOCOL.md F.1). See `tunnel-client --help`.

use rkcp_examples::tunnel::{Client, ClientConfig, init_logging, parse_args, shutdown_signal};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cfg = match parse_args::<ClientConfig>(std::env::args_os()) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            eprintln!("tunnel-client: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
        Err(e) => e.exit(),
    };
    if let Err(e) = init_logging(&cfg.log) {
        eprintln!("tunnel-client: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let res = async {
        let client = Client::bind(cfg).await?;
        client.run(shutdown_signal()).await
    }
    .await;
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tunnel-client: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
