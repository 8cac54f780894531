//! The `shoal` binary: `shoal run` starts the operator, `shoal crd` prints the CRD.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = shoal::cli::Cli::parse();
    match shoal::app::execute(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shoal: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
