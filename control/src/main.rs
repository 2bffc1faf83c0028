//! The `warpline` binary: parses arguments and hands over to [`warpline_control::cli`].

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    warpline_control::cli::Cli::parse().run()
}
