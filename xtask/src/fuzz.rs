//! `cargo xtask fuzz`: builds the libFuzzer targets in `fuzz/` and runs them.
//!
//! - `cargo xtask fuzz --short` — every target for [`SHORT_SECONDS`] (CI, and `cargo xtask test`).
//! - `cargo xtask fuzz [--minutes N] [TARGET...]` — a long run, [`LONG_MINUTES`] per target
//!   unless `--minutes` says otherwise; all targets unless some are named.
//! - `cargo xtask fuzz --seeds` — regenerates the seed corpora in `fuzz/corpus/`.
//!
//! Built with stable rustc, in release: warpline's own crates (dataplane, control, the fuzz
//! crate) get libFuzzer's instrumentation through `-Cpasses=sancov-module` and
//! `-Cllvm-args=-sanitizer-coverage-*` (stable flags; only the sanitizers that cargo-fuzz adds
//! by default need nightly, see `fuzz/README.md`), plus debug assertions and overflow checks.
//! Third-party crates are built plainly: instrumenting curve25519 arithmetic and the like only
//! slows every execution and the build, and their coverage is not ours to explore. The xtask
//! binary itself applies that split as cargo's `RUSTC_WRAPPER` ([`run_as_rustc_wrapper`]).
//! Everything goes to `<target dir>/fuzz/`: the build, a working corpus per target (new
//! inputs land there, never in the checked-in seeds, which are only read), crash inputs and
//! the full libFuzzer logs.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Seconds per target in a short run: the whole `--short` run (ten targets, after the build)
/// stays under two minutes.
const SHORT_SECONDS: u64 = 10;
/// libFuzzer's random seed in short runs, so CI explores the same way each time (its
/// mutations still depend on how many executions fit into the time). Long runs draw a fresh
/// seed: exploring is their job.
const SHORT_RUN_SEED: u32 = 1;
/// Minutes per target in a long run unless `--minutes` says otherwise.
const LONG_MINUTES: u64 = 5;
/// libFuzzer gives up on a single input after this long: a hang is a bug too.
const INPUT_TIMEOUT_SECONDS: u64 = 10;
/// Memory limit per target process.
const RSS_LIMIT_MB: u64 = 2048;
/// Extra wall-clock time a run may take past its budget (start-up, the initial corpus,
/// final stats) before it is killed as stuck.
const GRACE: Duration = Duration::from_secs(120);

/// The instrumentation libFuzzer needs, all stable flags: coverage counters with a PC table
/// (new coverage), compare tracing (lets it solve magic values and lengths), and the `fuzzing`
/// cfg. Debug assertions (and with them overflow checks) make more bugs loud.
const INSTRUMENTATION: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg=fuzzing",
    "-Cdebug-assertions",
];

/// Set (to the repository root) for the cargo that builds the fuzz targets: tells the xtask
/// binary, which that cargo starts as `RUSTC_WRAPPER`, to wrap rustc.
const WRAPPER_ENV: &str = "WARPLINE_FUZZ_RUSTC_WRAPPER";

const USAGE: &str = "\
usage: cargo xtask fuzz [--short | --minutes N | --seconds N] [TARGET...]
       cargo xtask fuzz --seeds

  --short       run every target for 10 s (what `cargo xtask test` and CI run)
  --minutes N   run each target for N minutes (default for a long run: 5)
  --seconds N   run each target for N seconds
  --seeds       regenerate the seed corpora in fuzz/corpus/ and stop
  TARGET...     only these targets (default: all, from fuzz/fuzz_targets/)
";

/// What one target's run produced.
#[derive(Debug, Default)]
struct Outcome {
    target: String,
    executions: Option<u64>,
    execs_per_second: Option<u64>,
    coverage: Option<u64>,
    features: Option<u64>,
    corpus: Option<u64>,
    new_units: Option<u64>,
    /// `None`: clean. `Some(message)`: crashed, hung or failed to run.
    failure: Option<String>,
}

/// Entry point: `args` are what follows `fuzz` on the command line.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds_per_target = LONG_MINUTES * 60;
    // `None`: libFuzzer draws a seed; `--short` fixes it.
    let mut seed = None;
    let mut seeds_only = false;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--short" => {
                seconds_per_target = SHORT_SECONDS;
                seed = Some(SHORT_RUN_SEED);
            }
            "--minutes" | "--seconds" => {
                let value: u64 = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("{arg} needs a positive whole number\n\n{USAGE}"))?;
                seconds_per_target = if arg == "--minutes" {
                    value * 60
                } else {
                    value
                };
            }
            "--seeds" => seeds_only = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            flag if flag.starts_with('-') => {
                return Err(format!("unknown fuzz option '{flag}'\n\n{USAGE}"));
            }
            target => targets.push(target.to_owned()),
        }
    }

    let layout = Layout::new()?;
    sync_lock_file(&layout)?;
    if seeds_only {
        return make_seeds(&layout);
    }
    let available = layout.targets()?;
    if targets.is_empty() {
        targets = available;
    } else if let Some(unknown) = targets.iter().find(|t| !available.contains(t)) {
        return Err(format!(
            "no fuzz target '{unknown}'; there are: {}",
            available.join(", ")
        ));
    }

    let started = Instant::now();
    build(&layout)?;
    let build_time = started.elapsed();
    println!(
        "xtask: fuzz: built {} targets in {:.0} s; running each for {seconds_per_target} s",
        targets.len(),
        build_time.as_secs_f64()
    );
    let mut outcomes = Vec::new();
    for target in &targets {
        let outcome = run_target(&layout, target, seconds_per_target, seed);
        println!("xtask: fuzz: {}", one_line(&outcome));
        outcomes.push(outcome);
    }
    print!("{}", summary(&outcomes, started.elapsed()));

    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    if failures.is_empty() {
        Ok(())
    } else {
        let mut message = format!("{} fuzz target(s) failed:", failures.len());
        for outcome in failures {
            let _ = write!(
                message,
                "\n  {}: {}",
                outcome.target,
                outcome.failure.as_deref().unwrap_or_default()
            );
        }
        Err(message)
    }
}

/// Where things are.
struct Layout {
    /// The fuzz crate.
    crate_dir: PathBuf,
    /// Everything the fuzzing writes: `<target dir>/fuzz`.
    work_dir: PathBuf,
    /// The host triple, passed as `--target`.
    host: String,
}

impl Layout {
    fn new() -> Result<Self, String> {
        let root = crate::workspace_root();
        // Follow CARGO_TARGET_DIR when set, as cargo does, so a shared machine's separate
        // target directories stay separate.
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(|dir| root.join(dir))
            .unwrap_or_else(|| root.join("target"));
        Ok(Self {
            crate_dir: root.join("fuzz"),
            work_dir: target_dir.join("fuzz"),
            host: host_triple()?,
        })
    }

    fn manifest(&self) -> PathBuf {
        self.crate_dir.join("Cargo.toml")
    }

    fn binary(&self, target: &str) -> PathBuf {
        self.work_dir.join(&self.host).join("release").join(target)
    }

    /// Targets are the files in `fuzz/fuzz_targets/`: one list, kept by the fuzz crate.
    fn targets(&self) -> Result<Vec<String>, String> {
        let dir = self.crate_dir.join("fuzz_targets");
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let mut targets: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                name.strip_suffix(".rs").map(str::to_owned)
            })
            .collect();
        targets.sort();
        Ok(targets)
    }
}

fn host_triple() -> Result<String, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("could not run {rustc} -vV: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| format!("{rustc} -vV did not name the host triple"))
}

/// A cargo command for the fuzz crate, building into the fuzz work directory.
fn cargo(layout: &Layout) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(&layout.crate_dir)
        .env("CARGO_TARGET_DIR", &layout.work_dir)
        // An encoded value would win over RUSTFLAGS and drop the instrumentation.
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    command
}

fn run_cargo(mut command: Command, what: &str) -> Result<(), String> {
    let shown: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!("xtask: $ cargo {} (in fuzz/)", shown.join(" "));
    let status = command
        .status()
        .map_err(|e| format!("could not start cargo to {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("could not {what} ({status})"))
    }
}

/// Keeps `fuzz/Cargo.lock` resolvable: when the workspace gained or changed a dependency the
/// fuzz lock does not have yet, it is rebuilt from the workspace's `Cargo.lock`, so the fuzz
/// build uses exactly the versions the main build pins (which build on our rustc).
fn sync_lock_file(layout: &Layout) -> Result<(), String> {
    let mut check = cargo(layout);
    check
        .args([
            "metadata",
            "--locked",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(layout.manifest())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if check.status().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    let lock = layout.crate_dir.join("Cargo.lock");
    println!(
        "xtask: fuzz/Cargo.lock is out of date with the workspace: rebuilding it from \
         Cargo.lock (commit the result)"
    );
    std::fs::copy(crate::workspace_root().join("Cargo.lock"), &lock)
        .map_err(|e| format!("could not copy Cargo.lock to {}: {e}", lock.display()))?;
    let mut resolve = cargo(layout);
    resolve
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(layout.manifest())
        .stdout(Stdio::null());
    run_cargo(resolve, "resolve fuzz/Cargo.lock")
}

fn build(layout: &Layout) -> Result<(), String> {
    let wrapper = std::env::current_exe()
        .map_err(|e| format!("cannot find the xtask binary to wrap rustc with: {e}"))?;
    // Cargo does not see what the wrapper adds, so a change of the instrumentation would not
    // rebuild anything; a flag that names its version makes cargo notice.
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(' ');
    }
    let _ = write!(
        rustflags,
        "--check-cfg=cfg(fuzzing) --check-cfg=cfg(warpline_fuzz_build,values(\"{:016x}\"))",
        instrumentation_version()
    );
    println!("xtask: fuzz: building the targets (the first build takes a few minutes)");
    let mut command = cargo(layout);
    command
        // Quiet: a hundred "Compiling" lines would bury the results; errors still show.
        .args([
            "build",
            "--quiet",
            "--release",
            "--bins",
            "--target",
            &layout.host,
        ])
        .arg("--manifest-path")
        .arg(layout.manifest())
        .env("RUSTFLAGS", rustflags)
        .env("RUSTC_WRAPPER", wrapper)
        .env(WRAPPER_ENV, crate::workspace_root());
    run_cargo(command, "build the fuzz targets")
}

/// A hash of [`INSTRUMENTATION`] (FNV-1a), to version the build.
fn instrumentation_version() -> u64 {
    INSTRUMENTATION
        .iter()
        .flat_map(|flag| flag.bytes().chain([0]))
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// When cargo runs this binary as `RUSTC_WRAPPER` for [`build`]: runs rustc, adding the
/// instrumentation for warpline's own crates compiled for the target. Returns `None` when not
/// started as a wrapper.
pub(crate) fn run_as_rustc_wrapper() -> Option<ExitCode> {
    let root = PathBuf::from(std::env::var_os(WRAPPER_ENV)?);
    let mut args = std::env::args_os().skip(1);
    let Some(rustc) = args.next() else {
        eprintln!("xtask: started as a rustc wrapper without a rustc to run");
        return Some(ExitCode::FAILURE);
    };
    let args: Vec<OsString> = args.collect();
    let mut command = Command::new(rustc);
    command.args(&args);
    if instrument(&root, &args) {
        command.args(INSTRUMENTATION);
    }
    Some(match command.status() {
        Ok(status) => status
            .code()
            .and_then(|code| u8::try_from(code).ok())
            .map_or(ExitCode::FAILURE, ExitCode::from),
        Err(e) => {
            eprintln!("xtask: could not run rustc: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Whether a rustc invocation compiles one of warpline's crates for the fuzz target: a
/// package inside the repository, built for `--target` (build scripts are built for the host
/// and must link without libFuzzer).
fn instrument(root: &std::path::Path, args: &[OsString]) -> bool {
    let local = std::env::var_os("CARGO_MANIFEST_DIR")
        .is_some_and(|dir| std::path::Path::new(&dir).starts_with(root));
    let for_target = args.iter().any(|arg| arg == "--target");
    let crate_name = args
        .iter()
        .skip_while(|arg| *arg != "--crate-name")
        .nth(1)
        .map(|name| name.to_string_lossy());
    let build_script = crate_name.is_some_and(|name| name.starts_with("build_script"));
    local && for_target && !build_script
}

fn make_seeds(layout: &Layout) -> Result<(), String> {
    let mut command = cargo(layout);
    command
        .args([
            "run",
            "--quiet",
            "--no-default-features",
            "--example",
            "make_seeds",
            "--manifest-path",
        ])
        .arg(layout.manifest())
        .arg("--")
        .arg(layout.crate_dir.join("corpus"));
    run_cargo(command, "generate the seed corpora")
}

fn run_target(layout: &Layout, target: &str, seconds: u64, seed: Option<u32>) -> Outcome {
    let mut outcome = Outcome {
        target: target.to_owned(),
        ..Outcome::default()
    };
    match fuzz_one(layout, target, seconds, seed, &mut outcome) {
        Ok(()) => {}
        Err(message) => outcome.failure = Some(message),
    }
    outcome
}

fn fuzz_one(
    layout: &Layout,
    target: &str,
    seconds: u64,
    seed: Option<u32>,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let working_corpus = layout.work_dir.join("corpus").join(target);
    let artifacts = layout.work_dir.join("artifacts").join(target);
    let logs = layout.work_dir.join("logs");
    for dir in [&working_corpus, &artifacts, &logs] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let seeds = layout.crate_dir.join("corpus").join(target);
    let log_path = logs.join(format!("{target}.log"));
    let log = File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_for_stderr = log
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", log_path.display()))?;

    let binary = layout.binary(target);
    let mut command = Command::new(&binary);
    command
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // New inputs go to the first directory; the checked-in seeds are only read.
        .arg(&working_corpus)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_for_stderr));
    if seeds.is_dir() {
        command.arg(&seeds);
    }
    if let Some(seed) = seed {
        command.arg(format!("-seed={seed}"));
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(seconds) + GRACE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "still running {} s past its budget: killed (log: {})",
                    GRACE.as_secs(),
                    log_path.display()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("lost the fuzzer process: {e}")),
        }
    };

    // Lossy: a crash log may quote the input's raw bytes.
    let text = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
    read_stats(&text, outcome);
    if status.success() {
        return Ok(());
    }
    let input = text
        .lines()
        .find_map(|line| line.split("Test unit written to ").nth(1))
        .map(str::trim)
        .unwrap_or("(no input saved)");
    print_failure_excerpt(target, &text);
    Err(format!(
        "crashed ({status}); input: {input}; log: {}; reproduce: {} {input}",
        log_path.display(),
        binary.display()
    ))
}

/// Shows the part of the log that explains a failure: from the panic (or libFuzzer's error)
/// on, at most 40 lines.
fn print_failure_excerpt(target: &str, log: &str) {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.contains("panicked at") || line.contains("ERROR: libFuzzer"))
        .unwrap_or(lines.len().saturating_sub(20));
    println!("xtask: fuzz: {target} failed; from its log:");
    for line in lines.iter().skip(start).take(40) {
        println!("    {line}");
    }
}

/// libFuzzer's numbers: the final stats block and the last status line
/// (`#123 DONE cov: 456 ft: 789 corp: 12/3456b ...`).
fn read_stats(log: &str, outcome: &mut Outcome) {
    let stat = |name: &str| {
        log.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().parse::<u64>().ok())
    };
    outcome.executions = stat("stat::number_of_executed_units:");
    outcome.execs_per_second = stat("stat::average_exec_per_sec:");
    outcome.new_units = stat("stat::new_units_added:");
    if let Some(status_line) = log.lines().rev().find(|line| line.contains(" cov: ")) {
        let field = |name: &str| {
            status_line
                .split_whitespace()
                .skip_while(|word| *word != name)
                .nth(1)
                .and_then(|value| value.split('/').next())
                .and_then(|value| value.parse::<u64>().ok())
        };
        outcome.coverage = field("cov:");
        outcome.features = field("ft:");
        outcome.corpus = field("corp:");
    }
}

fn number(value: Option<u64>) -> String {
    let Some(value) = value else {
        return "?".into();
    };
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn one_line(outcome: &Outcome) -> String {
    let result = match &outcome.failure {
        None => "ok".to_owned(),
        Some(_) => "FAILED".to_owned(),
    };
    format!(
        "{:<20} {result:<6} {} runs ({}/s), cov {}, ft {}, corpus {} (+{} new)",
        outcome.target,
        number(outcome.executions),
        number(outcome.execs_per_second),
        number(outcome.coverage),
        number(outcome.features),
        number(outcome.corpus),
        number(outcome.new_units),
    )
}

fn summary(outcomes: &[Outcome], elapsed: Duration) -> String {
    let total: u64 = outcomes.iter().filter_map(|o| o.executions).sum();
    let coverage: u64 = outcomes.iter().filter_map(|o| o.coverage).sum();
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    format!(
        "xtask: fuzz: {} targets, {} executions, {} covered edges in all, {failed} failed, {:.0} s\n",
        outcomes.len(),
        number(Some(total)),
        number(Some(coverage)),
        elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_numbers() {
        let log = "\
INFO: Seed: 1
#2\tINITED cov: 120 ft: 130 corp: 5/900b exec/s: 0 rss: 30Mb
#5000\tNEW    cov: 140 ft: 170 corp: 9/1200b lim: 4 exec/s: 2500 rss: 31Mb
#9999\tDONE   cov: 150 ft: 181 corp: 12/1500b lim: 4 exec/s: 3333 rss: 31Mb
Done 9999 runs in 3 second(s)
stat::number_of_executed_units: 9999
stat::average_exec_per_sec:     3333
stat::new_units_added:          7
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              31
";
        let mut outcome = Outcome::default();
        read_stats(log, &mut outcome);
        assert_eq!(outcome.executions, Some(9999));
        assert_eq!(outcome.execs_per_second, Some(3333));
        assert_eq!(outcome.new_units, Some(7));
        assert_eq!(outcome.coverage, Some(150));
        assert_eq!(outcome.features, Some(181));
        assert_eq!(outcome.corpus, Some(12));
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(number(Some(0)), "0");
        assert_eq!(number(Some(999)), "999");
        assert_eq!(number(Some(1000)), "1,000");
        assert_eq!(number(Some(1_234_567)), "1,234,567");
        assert_eq!(number(None), "?");
    }
}
