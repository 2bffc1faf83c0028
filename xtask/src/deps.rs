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
];

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

/// Installs whatever of `PACKAGES` is missing. Without root, only reports what is missing.
pub(crate) fn ensure_all() -> Result<(), String> {
    let has_dpkg = Command::new("dpkg-query").arg("--version").output().is_ok();
    if !has_dpkg {
        println!("xtask: no dpkg here: skipping package installation (not a Debian system)");
        return Ok(());
    }
    let missing: Vec<&(&str, &str)> = PACKAGES.iter().filter(|(p, _)| !installed(p)).collect();
    if missing.is_empty() {
        println!("xtask: system packages present: {}", names(PACKAGES));
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
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("could not run apt-get: {e}"))?;
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
