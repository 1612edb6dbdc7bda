//! `tunnel-server`: kcptun's server, flag for flag (PROTOCOL.md F.1). See `tunnel-server --help`.

use rkcp_examples::tunnel::{Server, ServerConfig, init_logging, parse_args, shutdown_signal};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cfg = match parse_args::<ServerConfig>(std::env::args_os()) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            eprintln!("tunnel-server: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
        Err(e) => e.exit(),
    };
    if let Err(e) = init_logging(&cfg.log) {
        eprintln!("tunnel-server: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let res = async {
        let server = Server::bind(cfg).await?;
        server.run(shutdown_signal()).await
    }
    .await;
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tunnel-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
