//! `cargo xtask`: warpline's own automation (the aya/s2n-quic pattern: a plain Rust binary
//! instead of shell scripts, so it runs wherever cargo does).
//!
//! - `cargo xtask demo`  — the main job: installs what it needs, builds, runs the demo.
//! - `cargo xtask test`  — the whole suite: installs what it needs, fmt, clippy, all tests.
//! - `cargo xtask bench <suite>` — benchmarks (never part of `test`).
//! - `cargo xtask fuzz`  — the fuzz targets in `fuzz/`: `--short` in `test`, long by hand.
//! - `cargo xtask deps`  — only the installation step.

mod deps;
mod fuzz;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    if let Some(code) = fuzz::run_as_rustc_wrapper() {
        return code;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("demo") => demo(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("deps") => deps::ensure_all(),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task '{other}'\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "\
usage: cargo xtask <task>

  demo            install what is needed, build, and run the warpline demo
  test            install what is needed, then fmt check, clippy -D warnings, all tests,
                  and every fuzz target for 10 s
  bench <suite>   run a benchmark suite (crypto, handshake, hostile, pipeline, scale, soak, tunnel,
                  failover); `bench list`
                  lists them and their options
  fuzz [--short | --minutes N] [TARGET...]
                  build the fuzz targets (fuzz/) and run them: --short is 10 s each,
                  otherwise 5 minutes each; `fuzz --help` for more
  deps            only install the system packages the tests and demo need
";

/// Runs a command in the workspace root, echoing it first; fails on a non-zero exit.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<(), String> {
    println!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("could not start {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn test() -> Result<(), String> {
    deps::ensure_all()?;
    if !deps::is_root() {
        println!("xtask: not root: privileged tests (XDP, AF_XDP, namespaces) will skip");
    }
    run("cargo", &["fmt", "--all", "--check"])?;
    // The fuzz crate is outside the workspace, so `--all` does not reach it.
    run(
        "cargo",
        &["fmt", "--check", "--manifest-path", "fuzz/Cargo.toml"],
    )?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    run("cargo", &["test", "--workspace", "--no-fail-fast"])?;
    // The fuzz crate without libFuzzer: lints, and every checked-in input (seeds and the
    // regression inputs of bugs found) replayed through its target as a plain test.
    let fuzz_plain = [
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--no-default-features",
    ];
    run(
        "cargo",
        &[
            &["clippy", "--all-targets"][..],
            &fuzz_plain,
            &["--", "-D", "warnings"],
        ]
        .concat(),
    )?;
    run("cargo", &[&["test"][..], &fuzz_plain].concat())?;
    // Hostile-input fuzzing, bounded: every target for a few seconds from its seed corpus.
    fuzz::run(&["--short".to_owned()])?;
    println!("xtask: all checks passed");
    Ok(())
}

fn demo(args: &[String]) -> Result<(), String> {
    deps::ensure_all()?;
    let seconds: Vec<&str> = args.iter().map(String::as_str).collect();
    if deps::is_root() {
        // The lab demo: real `warpline up` processes in network namespaces.
        run(
            "cargo",
            &[
                "build",
                "--release",
                "--package",
                "warpline-control",
                "--bin",
                "warpline",
            ],
        )?;
        let binary = workspace_root().join("target/release/warpline");
        let binary = binary.to_str().ok_or("the workspace path is not UTF-8")?;
        let mut cargo_args = vec![
            "run",
            "--release",
            "--package",
            "warpline-control",
            "--example",
            "gateway_demo",
            "--",
            binary,
        ];
        cargo_args.extend(&seconds);
        run("cargo", &cargo_args)?;
    } else {
        println!(
            "xtask: not root: the lab demo needs namespaces; running the in-process protocol demo"
        );
    }
    // The protocol demo: a stock WireGuard implementation (boringtun) against warpline.
    let mut cargo_args = vec![
        "run",
        "--release",
        "--package",
        "warpline-control",
        "--example",
        "protocol_demo",
        "--",
    ];
    cargo_args.extend(&seconds);
    run("cargo", &cargo_args)
}

/// `bench failover [--failovers N]`: the HA lab's gap distribution. It needs the lab of
/// `control/tests/ha_gateway_pair.rs` (keepalived, boringtun-cli, bridges), so it runs as
/// that test file's ignored benchmark, optimised.
fn bench_failover(args: &[String]) -> Result<(), String> {
    let failovers = match args {
        [] => "20".to_owned(),
        [flag, n] if flag == "--failovers" && n.parse::<usize>().is_ok_and(|n| n > 0) => n.clone(),
        _ => return Err("usage: cargo xtask bench failover [--failovers N]".into()),
    };
    deps::ensure_all()?;
    println!("xtask: {failovers} failovers per mode (synced pair, then no sync)");
    let status = Command::new("cargo")
        .args([
            "test",
            "--profile",
            "bench",
            "--package",
            "warpline-control",
            "--test",
            "ha_gateway_pair",
            "--",
            "--ignored",
            "--exact",
            "failover_gap_distribution",
            "--nocapture",
        ])
        .env("WARPLINE_FAILOVERS", &failovers)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("bench failover failed ({status})"))
    }
}

fn bench(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("failover") {
        return bench_failover(&args[1..]);
    }
    let suite = args.first().map(String::as_str);
    if matches!(suite, Some("tunnel" | "hostile")) {
        // The tunnel suite (and the hostile one, in its lab) compares against boringtun-cli
        // and OpenVPN and drives iperf3.
        deps::ensure_bench("tunnel")?;
    }
    if matches!(suite, Some("soak" | "tunnel" | "hostile")) {
        // These suites run the real gateway: the binary beside warpline-bench.
        run(
            "cargo",
            &[
                "build",
                "--profile",
                "bench",
                "--package",
                "warpline-control",
                "--bin",
                "warpline",
            ],
        )?;
    }
    let mut cargo_args = vec![
        "run",
        "--profile",
        "bench",
        "--package",
        "warpline-bench",
        "--",
    ];
    cargo_args.extend(args.iter().map(String::as_str));
    run("cargo", &cargo_args)
}
