//! `tunnel-client`: kcptun's client, flag for flag (`docs/wire-format.md#kcptun-flags`). See
//! `tunnel-client --help`.

use rkcp_examples::cli::fail;
use rkcp_examples::tunnel::{Client, ClientConfig, init_logging, parse_args, shutdown_signal};

const PROG: &str = "tunnel-client";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cfg = match parse_args::<ClientConfig>(std::env::args_os()) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(PROG, &e, false),
        Err(e) => e.exit(),
    };
    if let Err(e) = init_logging(&cfg.log) {
        return fail(PROG, &e, false);
    }
    let logs_to_file = !cfg.log.is_empty();
    let res = async {
        let client = Client::bind(cfg).await?;
        client.run(shutdown_signal()).await
    }
    .await;
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(PROG, &e, logs_to_file),
    }
}
