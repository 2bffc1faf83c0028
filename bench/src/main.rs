//! `warpline-bench`: the numbers behind warpline's claims. Every suite measures warpline and a
//! baseline in the same run and reports ratios, because the machines this runs on are shared
//! and noisy; absolute figures are printed with the machine they came from.
//!
//! Run through `cargo xtask bench <suite>` (bench profile: LTO, one codegen unit).

mod report;
mod suites;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let suite = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str);
    let result = match suite {
        Some("crypto") => suites::crypto::run(quick),
        Some("handshake") => suites::handshake::run(quick),
        Some("pipeline") => suites::pipeline::run(quick),
        Some("list") | None => {
            println!("suites:");
            println!(
                "  handshake   responder handshakes/s per core and cookie replies/s under a flood,"
            );
            println!("              against boringtun and snow in the same run");
            println!("  pipeline    encap/decap batches vs raw AEAD and boringtun, session lookup");
            println!("options: --quick (shorter runs, for smoke tests)");
            Ok(())
        }
        Some(other) => Err(format!("unknown suite '{other}' (try `list`)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("warpline-bench: {message}");
            ExitCode::FAILURE
        }
    }
}
