//! Timing helpers, the machine description, and result output (table on stdout, JSON file).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

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

/// Prints rows as a table and writes them as JSON to `target/bench/<suite>.json`.
pub fn publish(suite: &str, rows: &[Row]) -> Result<(), String> {
    let machine = machine();
    println!("\n{suite} — {machine}");
    for row in rows {
        let mut line = format!("  {:<44}", row.name);
        for (label, value) in &row.figures {
            let _ = write!(line, "  {label} {value:>12.2}");
        }
        println!("{line}");
    }
    let mut json = format!(
        "{{\"suite\":\"{suite}\",\"machine\":\"{}\",\"rows\":[",
        machine.replace('"', "'")
    );
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(json, "{{\"name\":\"{}\"", row.name);
        for (label, value) in &row.figures {
            let _ = write!(json, ",\"{label}\":{value}");
        }
        json.push('}');
    }
    json.push_str("]}\n");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{suite}.json"));
    std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("  (written to {})", path.display());
    Ok(())
}
