//! The `warpline` binary: parses arguments and hands over to [`warpline_control::cli`].

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Logs go to stderr; RUST_LOG overrides the level (info by default).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    warpline_control::cli::Cli::parse().run()
}
