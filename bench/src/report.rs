//! Timing helpers, the machine description, and result output (table on stdout, JSON file).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where results go, when `--out` chose a folder.
static OUTPUT_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sends every suite's results to `dir` instead of the default (see [`output_dir`]).
pub fn set_output_dir(dir: PathBuf) {
    // Called once, from argument parsing, before any suite runs.
    let _ = OUTPUT_DIR.set(dir);
}

/// The folder results are written to: `--out` if given; else the workspace's `target/bench`
/// when the binary runs where it was built (`cargo xtask bench`); else `target/bench` under the
/// current directory, for a binary copied to another machine.
pub fn output_dir() -> PathBuf {
    if let Some(dir) = OUTPUT_DIR.get() {
        return dir.clone();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if workspace.join("Cargo.toml").is_file() {
        workspace.join("target/bench")
    } else {
        PathBuf::from("target/bench")
    }
}

/// `<output dir>/<suite>.<extension>`, creating the folder.
pub fn output_path(suite: &str, extension: &str) -> Result<PathBuf, String> {
    let dir = output_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir.join(format!("{suite}.{extension}")))
}

/// Runs `op` in batches until `budget` has passed; returns operations per second.
/// `op(i)` must do one operation; its index lets callers walk pre-built inputs.
pub fn rate(budget: Duration, mut op: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed() < budget {
        for _ in 0..16 {
            op(done);
            done += 1;
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// The median of `runs` measurements.
pub fn median_of(runs: usize, mut measure: impl FnMut() -> f64) -> f64 {
    median((0..runs).map(|_| measure()).collect())
}

/// The median of `values` (NaN for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// CPU model, core count and kernel, for printing next to absolute figures.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, kernel {}", kernel.trim())
}

/// One row of results: a name and named figures.
pub struct Row {
    pub name: String,
    pub figures: Vec<(&'static str, f64)>,
}

/// Prints rows as a table and writes them as JSON to `<output dir>/<suite>.json`.
pub fn publish(suite: &str, rows: &[Row]) -> Result<(), String> {
    println!("\n{suite} — {}", machine());
    for row in rows {
        let mut line = format!("  {:<44}", row.name);
        for (label, value) in &row.figures {
            let _ = write!(line, "  {label} {value:>12.2}");
        }
        println!("{line}");
    }
    write_json(suite, rows)
}

/// Writes rows as JSON to `<output dir>/<suite>.json`, with the machine they came from.
pub fn write_json(suite: &str, rows: &[Row]) -> Result<(), String> {
    write_json_with(suite, &[], rows)
}

/// [`write_json`] with the run's conditions (name, value), each a top-level string field.
pub fn write_json_with(
    suite: &str,
    conditions: &[(&str, &str)],
    rows: &[Row],
) -> Result<(), String> {
    let mut json = format!(
        "{{\"suite\":\"{suite}\",\"machine\":\"{}\",",
        machine().replace('"', "'")
    );
    for (name, value) in conditions {
        let _ = write!(json, "\"{name}\":\"{}\",", value.replace('"', "'"));
    }
    json.push_str("\"rows\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(json, "{{\"name\":\"{}\"", row.name);
        for (label, value) in &row.figures {
            // JSON has no NaN or infinity: a figure that does not apply is null.
            if value.is_finite() {
                let _ = write!(json, ",\"{label}\":{value}");
            } else {
                let _ = write!(json, ",\"{label}\":null");
            }
        }
        json.push('}');
    }
    json.push_str("]}\n");
    let path = output_path(suite, "json")?;
    std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("  (written to {})", path.display());
    Ok(())
}
