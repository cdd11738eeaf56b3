//! `kubectl-netsnap`: thin CLI over the `kubectl_netsnap` library. Parses the
//! flags, sets up logging, turns the first Ctrl-C into cancellation (the pods
//! are deleted before exit) and a second one into an immediate exit.

use std::process::ExitCode;

use clap::Parser;
use kubectl_netsnap::cli::{self, Cli};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubectl netsnap: error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    let code = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("kubectl netsnap: interrupted, deleting the pods (Ctrl-C again to quit now)");
                on_signal.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("kubectl netsnap: quitting; pods may be left: kubectl delete pod -A -l app.kubernetes.io/managed-by=kubectl-netsnap");
                    std::process::exit(cli::EXIT_INTERRUPTED.into());
                }
            }
        });
        let mut stdout = std::io::stdout();
        cli::run(cli, cancel, &mut stdout).await
    });
    ExitCode::from(code)
}
