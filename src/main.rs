//! The `himaya` binary: a thin entry over the library (see `src/lib.rs`).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Before anything builds an HTTP client: reqwest is built without a rustls provider of
    // its own (no aws-lc-rs beside ring; see Cargo.toml) and panics where none is set.
    himaya_connect::install_crypto_provider();
    let cli = himaya::cli::Cli::parse();
    match himaya::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain explains the failure; it never holds personal data (errors are
            // built from ids, keys and rule names only).
            eprintln!("himaya: {e:#}");
            ExitCode::FAILURE
        }
    }
}
