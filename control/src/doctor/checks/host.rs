//! Host checks: kernel version and features (BPF syscall, JIT, BTF, AF_XDP), the locked
//! memory limit and capabilities.

use std::path::PathBuf;

use super::{Context, bytes_text, drivers};
use crate::doctor::facts::HostReport;
use crate::doctor::sys::kernel::cap;
use crate::doctor::{Finding, FixAction, Status};

const HOST: &str = "host";

/// Kernel for AF_XDP with need_wakeup and shared UMEM across NICs.
const MIN_KERNEL: &str = "5.10";
/// Kernel with preferred busy polling (`SO_PREFER_BUSY_POLL`).
const BUSY_POLL_KERNEL: &str = "5.11";

pub(super) fn check(host: &HostReport, context: &Context<'_>) -> Vec<Finding> {
    vec![
        kernel(host, context),
        bpf_syscall(host),
        bpf_jit(host),
        btf(host),
        af_xdp(host),
        memlock(host, context),
        capabilities(host),
    ]
}

fn kernel(host: &HostReport, context: &Context<'_>) -> Finding {
    const WHY: &str = "AF_XDP needs 5.10+ for need_wakeup and a UMEM shared by the WAN and LAN \
                       NICs; BusyPoll needs 5.11+ (preferred busy polling)";
    let release = match &host.kernel_release {
        Ok(release) => release,
        Err(error) => {
            return Finding::new(
                HOST,
                "kernel",
                Status::Warn,
                format!("uname failed: {error}"),
                WHY,
            );
        }
    };
    let found = format!("Linux {release}");
    let upgrade = format!(
        "install a kernel >= {BUSY_POLL_KERNEL} (Debian: apt install linux-image-amd64 from bookworm-backports or newer)"
    );
    if !drivers::at_least(release, MIN_KERNEL) {
        Finding::new(HOST, "kernel", Status::Fail, found, WHY).manual_fix(upgrade)
    } else if context.busy_poll() && !drivers::at_least(release, BUSY_POLL_KERNEL) {
        Finding::new(
            HOST,
            "kernel",
            Status::Warn,
            found + " (BusyPoll = on needs 5.11)",
            WHY,
        )
        .manual_fix(upgrade)
    } else {
        Finding::new(HOST, "kernel", Status::Ok, found, WHY)
    }
}

fn bpf_syscall(host: &HostReport) -> Finding {
    const WHY: &str = "the XDP steering program and its maps are loaded with the bpf() syscall";
    match &host.bpf {
        Ok(_) => Finding::new(
            HOST,
            "bpf-syscall",
            Status::Ok,
            "loaded and unloaded a test program".to_owned(),
            WHY,
        ),
        Err(error) => {
            let (found, fix) = match error.raw_os_error() {
                Some(libc::ENOSYS) => (
                    "the kernel has no bpf() syscall".to_owned(),
                    "use a kernel built with CONFIG_BPF_SYSCALL=y",
                ),
                Some(libc::EPERM | libc::EACCES) => (
                    format!("bpf() refused: {error}"),
                    "run as root, or grant CAP_BPF and CAP_NET_ADMIN (see the capabilities row)",
                ),
                _ => (
                    format!("loading a test program failed: {error}"),
                    "check dmesg for BPF errors",
                ),
            };
            Finding::new(HOST, "bpf-syscall", Status::Fail, found, WHY).manual_fix(fix)
        }
    }
}

fn bpf_jit(host: &HostReport) -> Finding {
    const WHY: &str = "without the JIT the XDP program runs in the BPF interpreter, several \
                       times slower for every packet the NIC receives";
    const SYSCTL: &str = "/proc/sys/net/core/bpf_jit_enable";
    let sysctl = host
        .bpf_jit_sysctl
        .as_deref()
        .map_or(String::new(), |value| {
            format!(" (net.core.bpf_jit_enable = {value})")
        });
    let enable = |finding: Finding| {
        if host.bpf_jit_sysctl.is_some() {
            finding.auto_fix(
                "sysctl -w net.core.bpf_jit_enable=1",
                FixAction::WriteFiles {
                    writes: vec![(PathBuf::from(SYSCTL), "1".to_owned())],
                },
            )
        } else {
            finding
                .manual_fix("sysctl -w net.core.bpf_jit_enable=1 (in the host's network namespace)")
        }
    };
    match (&host.bpf, host.bpf_jit_sysctl.as_deref()) {
        (Ok(probe), _) if probe.jited => Finding::new(
            HOST,
            "bpf-jit",
            Status::Ok,
            format!("the test program was JIT-compiled{sysctl}"),
            WHY,
        ),
        (Ok(_), _) => enable(Finding::new(
            HOST,
            "bpf-jit",
            Status::Warn,
            format!("the test program was interpreted, not compiled{sysctl}"),
            WHY,
        )),
        (Err(_), Some("0")) => enable(Finding::new(
            HOST,
            "bpf-jit",
            Status::Warn,
            "net.core.bpf_jit_enable = 0".to_owned(),
            WHY,
        )),
        (Err(_), Some(value)) => Finding::new(
            HOST,
            "bpf-jit",
            Status::Ok,
            format!("net.core.bpf_jit_enable = {value}"),
            WHY,
        ),
        (Err(_), None) => Finding::new(
            HOST,
            "bpf-jit",
            Status::Warn,
            "cannot tell: no test program loaded and net.core.bpf_jit_enable is not visible \
             in this network namespace"
                .to_owned(),
            WHY,
        )
        .manual_fix("run warpline doctor as root in the host's network namespace"),
    }
}

fn btf(host: &HostReport) -> Finding {
    const WHY: &str = "warpline's XDP program runs without kernel BTF, but bpftool and bpftrace \
                       need it to inspect the data path when something goes wrong";
    if host.btf {
        Finding::new(
            HOST,
            "btf",
            Status::Ok,
            "/sys/kernel/btf/vmlinux present".to_owned(),
            WHY,
        )
    } else {
        Finding::new(
            HOST,
            "btf",
            Status::Warn,
            "no /sys/kernel/btf/vmlinux".to_owned(),
            WHY,
        )
        .manual_fix(
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels are)",
        )
    }
}

fn af_xdp(host: &HostReport) -> Finding {
    const WHY: &str = "every worker receives and sends through an AF_XDP socket";
    match &host.af_xdp {
        Ok(()) => Finding::new(
            HOST,
            "af-xdp",
            Status::Ok,
            "AF_XDP sockets open".to_owned(),
            WHY,
        ),
        Err(error) if error.raw_os_error() == Some(libc::EAFNOSUPPORT) => Finding::new(
            HOST,
            "af-xdp",
            Status::Fail,
            "the kernel has no AF_XDP sockets".to_owned(),
            WHY,
        )
        .manual_fix("use a kernel built with CONFIG_XDP_SOCKETS=y"),
        Err(error) => Finding::new(
            HOST,
            "af-xdp",
            Status::Fail,
            format!("socket(AF_XDP) failed: {error}"),
            WHY,
        )
        .manual_fix("run as root, or grant CAP_NET_RAW (see the capabilities row)"),
    }
}

fn has(capabilities: u64, cap: u32) -> bool {
    capabilities & (1 << cap) != 0
}

fn memlock(host: &HostReport, context: &Context<'_>) -> Finding {
    const WHY: &str = "each worker's UMEM is locked memory: without CAP_IPC_LOCK the kernel \
                       counts it against RLIMIT_MEMLOCK and refuses sockets past the limit \
                       (ENOBUFS). The limit belongs to the process, so --fix cannot raise it for \
                       the gateway";
    const FIX: &str = "start warpline with `ulimit -l unlimited` (shell) or LimitMEMLOCK=infinity \
                       (systemd unit), or grant it CAP_IPC_LOCK";
    let limit = match &host.memlock {
        Ok(limit) => *limit,
        Err(error) => {
            return Finding::new(
                HOST,
                "memlock",
                Status::Warn,
                format!("getrlimit failed: {error}"),
                WHY,
            );
        }
    };
    let caps = host.capabilities.as_ref().copied().unwrap_or(0);
    let shown = |value: Option<u64>| value.map_or("unlimited".to_owned(), bytes_text);
    let need = context.umem_bytes();
    let mut found = format!(
        "RLIMIT_MEMLOCK soft {}, hard {}",
        shown(limit.soft),
        shown(limit.hard)
    );
    if let Some(need) = need {
        found += &format!("; the workers' UMEM needs {}", bytes_text(need));
    }
    let fits = |value: Option<u64>| match (value, need) {
        (None, _) => true,
        (Some(value), Some(need)) => value >= need,
        (Some(_), None) => false,
    };
    let status = if context.portable_mode() {
        found += "; the portable mode locks no UMEM";
        Status::Ok
    } else if has(caps, cap::IPC_LOCK) {
        found += " (CAP_IPC_LOCK: not counted)";
        Status::Ok
    } else if fits(limit.soft) {
        Status::Ok
    } else if fits(limit.hard) || has(caps, cap::SYS_RESOURCE) {
        found += "; warpline up raises its soft limit at start, which works here";
        Status::Ok
    } else if need.is_none() {
        // No config: a low limit matters only for a gateway started from here.
        Status::Warn
    } else {
        Status::Fail
    };
    let finding = Finding::new(HOST, "memlock", status, found, WHY);
    if status == Status::Ok {
        finding
    } else {
        finding.manual_fix(FIX)
    }
}

fn capabilities(host: &HostReport) -> Finding {
    const WHY: &str = "attaching XDP and configuring NICs needs CAP_NET_ADMIN, AF_XDP sockets \
                       CAP_NET_RAW, loading the program CAP_BPF (or CAP_SYS_ADMIN)";
    let caps = match &host.capabilities {
        Ok(caps) => *caps,
        Err(error) => {
            return Finding::new(
                HOST,
                "capabilities",
                Status::Warn,
                format!("cannot read /proc/self/status: {error}"),
                WHY,
            );
        }
    };
    let mut missing: Vec<&str> = [cap::NET_ADMIN, cap::NET_RAW]
        .into_iter()
        .filter(|&c| !has(caps, c))
        .map(cap::name)
        .collect();
    if !has(caps, cap::BPF) && !has(caps, cap::SYS_ADMIN) {
        missing.push(cap::name(cap::BPF));
    }
    let present: Vec<&str> = [
        cap::NET_ADMIN,
        cap::NET_RAW,
        cap::BPF,
        cap::SYS_ADMIN,
        cap::IPC_LOCK,
        cap::SYS_RESOURCE,
    ]
    .into_iter()
    .filter(|&c| has(caps, c))
    .map(cap::name)
    .collect();
    let present = if present.is_empty() {
        "none of the relevant ones".to_owned()
    } else {
        present.join(" ")
    };
    if missing.is_empty() {
        Finding::new(
            HOST,
            "capabilities",
            Status::Ok,
            format!("effective: {present}"),
            WHY,
        )
    } else {
        Finding::new(
            HOST,
            "capabilities",
            Status::Fail,
            format!("missing {}; effective: {present}", missing.join(" ")),
            WHY,
        )
        .manual_fix(
            "run as root, or: setcap cap_net_admin,cap_net_raw,cap_bpf,cap_ipc_lock+ep \
             $(command -v warpline)",
        )
    }
}
