//! Installs the system packages warpline's build, tests and demo use, idempotently:
//! a package already installed is not touched, and every action is announced first.

use std::process::Command;

/// Debian packages and why each is needed.
const PACKAGES: &[(&str, &str)] = &[
    ("clang", "compiles the XDP program (ebpf/steer.c) to BPF"),
    ("llvm", "llvm-objdump/strip for the BPF object"),
    ("libbpf-dev", "BPF helper headers for the XDP program"),
    (
        "iproute2",
        "inspecting namespaces and links when debugging tests",
    ),
    (
        "wireguard-tools",
        "`wg`, to cross-check key formats and configure stock clients",
    ),
    (
        "iperf3",
        "throughput through the tunnel in the stock-client gateway tests",
    ),
    (
        "keepalived",
        "VRRP: moves the virtual IP between the gateways of the HA tests (control/tests/ha_*.rs)",
    ),
    (
        "dnsmasq-base",
        "a DNS server inside a lab host for the DNS round-robin failover test (binary only, \
         no system service)",
    ),
    (
        "faketime",
        "libfaketime: moves the gateways' wall clock a day forward and back in \
         control/tests/daemon_clock_jumps.rs",
    ),
    (
        "iputils-ping",
        "ping with large packets and the DF bit through the full-bypass gateways \
         (control/tests/full_bypass.rs)",
    ),
    (
        "g++",
        "compiles libFuzzer (C++, via libfuzzer-sys) for the fuzz targets in fuzz/",
    ),
];

/// Debian packages only benchmark suites need, by suite: (suite, package, why). Installed by
/// `cargo xtask bench <suite>` only, so `deps`, `test` and `demo` stay as they were.
const BENCH_PACKAGES: &[(&str, &str, &str)] = &[(
    "tunnel",
    "openvpn",
    "OpenVPN 2.6 (userspace, no DCO), a baseline of the tunnel benchmark beside boringtun-cli",
)];

/// Cargo-installed tools: (binary, crate, pinned version, why). `--locked` and a pinned
/// version keep the build reproducible; 0.7.1 is the newest boringtun-cli and builds on
/// rustc 1.95.
const CARGO_TOOLS: &[(&str, &str, &str, &str)] = &[(
    "boringtun-cli",
    "boringtun-cli",
    "0.7.1",
    "the stock WireGuard client (with `wg`) in control/tests/gateway_stock_clients.rs",
)];

/// True when running as root (uid 0).
pub(crate) fn is_root() -> bool {
    // /proc/self/status avoids a libc dependency for one number.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs whatever of `PACKAGES` and `CARGO_TOOLS` is missing. Without root, only reports
/// what is missing.
pub(crate) fn ensure_all() -> Result<(), String> {
    ensure_packages()?;
    ensure_cargo_tools()
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
fn cargo_bin_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(|home| std::path::PathBuf::from(home).join("bin"))
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".cargo/bin"))
        })
}

/// True when `binary --version` runs, from `PATH` or cargo's bin directory.
fn runs(binary: &str) -> bool {
    let from_path = Command::new(binary).arg("--version").output();
    if from_path.is_ok_and(|out| out.status.success()) {
        return true;
    }
    cargo_bin_dir().is_some_and(|dir| {
        Command::new(dir.join(binary))
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

/// `cargo install`s whatever of `CARGO_TOOLS` does not run yet (no root needed).
fn ensure_cargo_tools() -> Result<(), String> {
    for (binary, krate, version, why) in CARGO_TOOLS {
        if runs(binary) {
            println!("xtask: {binary} present");
            continue;
        }
        println!("xtask: will install {krate} {version} with cargo: {why}");
        crate::run(
            "cargo",
            &["install", krate, "--version", version, "--locked"],
        )?;
    }
    Ok(())
}

/// Installs what `cargo xtask bench <suite>` needs on top of [`ensure_all`]: the suite's own
/// Debian packages (`BENCH_PACKAGES`), when missing.
pub(crate) fn ensure_bench(suite: &str) -> Result<(), String> {
    ensure_all()?;
    let extra: Vec<(&str, &str)> = BENCH_PACKAGES
        .iter()
        .filter(|(for_suite, _, _)| *for_suite == suite)
        .map(|&(_, package, why)| (package, why))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    install_missing(&extra)
}

/// Installs whatever of `PACKAGES` is missing. Without root, only reports what is missing.
fn ensure_packages() -> Result<(), String> {
    install_missing(PACKAGES)
}

/// Installs whatever of `packages` is missing, announcing each with why it is needed; runs
/// `apt-get update` once first. Without root, only reports what is missing.
fn install_missing(packages: &[(&str, &str)]) -> Result<(), String> {
    let has_dpkg = Command::new("dpkg-query").arg("--version").output().is_ok();
    if !has_dpkg {
        println!("xtask: no dpkg here: skipping package installation (not a Debian system)");
        return Ok(());
    }
    let missing: Vec<&(&str, &str)> = packages.iter().filter(|(p, _)| !installed(p)).collect();
    if missing.is_empty() {
        println!("xtask: system packages present: {}", names(packages));
        return Ok(());
    }
    for (package, why) in &missing {
        println!("xtask: will install {package}: {why}");
    }
    if !is_root() {
        println!(
            "xtask: not root, cannot install; run as root or: apt-get install {}",
            names_of(&missing)
        );
        return Ok(());
    }
    crate::run("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().map(|(p, _)| *p));
    // Non-interactive: CI has no terminal and no standard input.
    println!("xtask: $ apt-get {}", args.join(" "));
    // keepalived's package would start a system-wide keepalived (openvpn's a system-wide
    // openvpn); the tests and benchmarks run their own inside namespaces. Debian's policy-rc.d hook (exit 101: "action forbidden") keeps
    // packages from starting services during this install only.
    let policy = std::path::Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists();
    if own_policy {
        println!(
            "xtask: holding service starts for this install ({})",
            policy.display()
        );
        std::fs::write(policy, "#!/bin/sh\nexit 101\n")
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| format!("cannot write {}: {e}", policy.display()))?;
    }
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("could not run apt-get: {e}"));
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    let status = status?;
    if !status.success() {
        return Err(format!("apt-get install failed ({status})"));
    }
    Ok(())
}

fn names(list: &[(&str, &str)]) -> String {
    list.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(" ")
}

fn names_of(list: &[&(&str, &str)]) -> String {
    list.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(" ")
}
