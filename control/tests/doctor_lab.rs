//! `warpline doctor` against a deliberately wrong setup in a network namespace: a veth with
//! one queue while the config asks for several workers, a tunnel MTU that leaves the NIC no
//! headroom, and a process that may not lock the UMEM. The doctor must report those rows as
//! FAIL, `--fix --yes` must repair what is safe to repair (queues, MTU) and explain the
//! rest (the memlock limit belongs to the process), and the repaired setup must pass.
//!
//! Runs as root (namespaces and veth are created over netlink and removed when the hosts
//! drop, even on panic); prints why it skips otherwise.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use warpline_control::doctor::sys::ethtool::EthtoolSocket;
use warpline_dataplane::lab::{Host, Veth, root_or_skip, unique_name};
use warpline_dataplane::xsk::{BindMode, SocketConfig, Umem, UmemConfig, XskSocket};

const PRIVATE_KEY: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
/// Queues each veth end is created with: the most `ETHTOOL_SCHANNELS` may set later.
const MAX_QUEUES: u32 = 8;
const TUNNEL_MTU: u32 = 1480;
/// veth's default MTU.
const VETH_MTU: u32 = 1500;
/// The memlock limit the restricted doctor runs under: far below the workers' UMEM.
const LOW_MEMLOCK: u64 = 64 << 10;

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("warpline-doctor-lab-{}", unique_name()));
        std::fs::create_dir_all(&path).expect("create the temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Workers the config asks for: more than the veth's one queue, no more than the online
/// CPUs (a worker needs a CPU of its own), at most 4. `None` on a one-CPU host.
fn workers() -> Option<u32> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    let cpus = warpline_control::config::parse_cpu_list(online.trim())
        .ok()?
        .len() as u32;
    (cpus >= 2).then(|| cpus.min(4))
}

/// How the doctor process is started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Privileges {
    /// Root as is.
    Full,
    /// Root without CAP_IPC_LOCK and CAP_SYS_RESOURCE, with RLIMIT_MEMLOCK at
    /// [`LOW_MEMLOCK`]: UMEM counts against a limit it cannot raise.
    NoLockedMemory,
}

/// Runs `warpline doctor <args>` inside `host` and returns its output.
fn doctor(host: &Host, args: &[&str], privileges: Privileges) -> Output {
    let mut command = host.netns().command(env!("CARGO_BIN_EXE_warpline"));
    command.arg("doctor").args(args);
    if privileges == Privileges::NoLockedMemory {
        let restrict = || {
            let limit = libc::rlimit {
                rlim_cur: LOW_MEMLOCK,
                rlim_max: LOW_MEMLOCK,
            };
            // SAFETY: setrlimit reads a valid rlimit; it only changes this child.
            if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // CAP_IPC_LOCK (14) exempts UMEM from the limit, CAP_SYS_RESOURCE (24) lets the
            // process raise it: drop both from the bounding set so exec does not grant them.
            for capability in [14, 24] {
                // SAFETY: prctl(PR_CAPBSET_DROP) takes a capability number and touches no
                // memory; it only changes this child.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: between fork and exec the hook only calls setrlimit and prctl and reads
        // errno, all async-signal-safe; it allocates nothing and takes no locks.
        unsafe { command.pre_exec(restrict) };
    }
    command.output().expect("run warpline doctor")
}

/// The JSON report of a `--json` run, with its exit status checked against `expect_success`.
fn report(output: &Output, expect_success: bool) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.success(),
        expect_success,
        "exit status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

fn row<'a>(report: &'a Value, scope: &str, check: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| {
            checks
                .iter()
                .find(|c| c["scope"] == scope && c["check"] == check)
        })
        .unwrap_or_else(|| panic!("no {scope} {check} row in {report:#}"))
}

fn assert_row(report: &Value, scope: &str, check: &str, status: &str, found: &str) {
    let row = row(report, scope, check);
    assert_eq!(row["status"], status, "{scope} {check}: {row:#}");
    let shown = row["found"].as_str().unwrap_or_default();
    assert!(
        shown.contains(found),
        "{scope} {check}: {shown:?} lacks {found:?}"
    );
}

/// Whether an AF_XDP socket binds to `queue` of the interface: the kernel refuses queues
/// beyond the ones the NIC has now, so this checks the queue count without the doctor.
fn can_bind_queue(host: &Host, if_index: u32, queue: u32) -> bool {
    host.run(|| {
        let (umem, _frames) = Umem::new(UmemConfig {
            frame_size: 4096,
            frame_count: 8,
            headroom: 0,
        })
        .expect("a small UMEM");
        let config = SocketConfig {
            rx_size: 64,
            tx_size: 64,
            fill_size: 64,
            completion_size: 64,
            bind_mode: BindMode::Copy,
            ..SocketConfig::new(if_index, queue)
        };
        XskSocket::bind(&umem, &config).is_ok()
    })
}

/// The link MTU, read with `SIOCGIFMTU` inside `host`.
fn link_mtu(host: &Host, name: &str) -> u32 {
    host.run(|| EthtoolSocket::open().and_then(|socket| socket.mtu(name)))
        .expect("read the MTU")
}

#[test]
fn doctor_reports_a_wrong_setup_and_fix_repairs_it() {
    if !root_or_skip() {
        return;
    }
    let Some(workers) = workers() else {
        println!("skipping: needs 2 or more online CPUs (one per worker)");
        return;
    };
    let gateway = Host::new("dg").expect("gateway namespace");
    let peer = Host::new("dp").expect("peer namespace");
    let veth = Veth::new(&gateway, &peer, MAX_QUEUES).expect("veth pair");
    let nic = veth.a.name.clone();
    // Created with 8 queues (the most it can have), now down to 1: too few for the workers,
    // and fixable.
    gateway
        .run(|| {
            let socket = EthtoolSocket::open()?;
            let one = socket
                .channels(&nic)?
                .with_rx_queues(1)
                .expect("a veth can have one queue");
            socket.set_channels(&nic, &one)
        })
        .expect("shrink the veth to one queue");
    assert!(can_bind_queue(&gateway, veth.a.index, 0));
    assert!(!can_bind_queue(&gateway, veth.a.index, workers - 1));

    let dir = TempDir::new();
    let config_path = dir.0.join("wl0.conf");
    std::fs::write(
        &config_path,
        format!(
            "[Interface]\nPrivateKey = {PRIVATE_KEY}\nListenPort = 51820\nAttach = {nic}\n\
             Workers = {workers}\nMTU = {TUNNEL_MTU}\n"
        ),
    )
    .expect("write the config");
    std::fs::set_permissions(
        &config_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod the config");
    let config = config_path.to_str().expect("UTF-8 temp path");

    // 1. The wrong setup: FAIL rows with the fixes named, exit status 1.
    let before = report(
        &doctor(&gateway, &[config, "--json"], Privileges::NoLockedMemory),
        false,
    );
    assert_row(
        &before,
        "config",
        "layout",
        "FAIL",
        &format!("Workers = {workers} but {nic} has 1 queue"),
    );
    assert_row(
        &before,
        &nic,
        "queues",
        "FAIL",
        &format!("1 RX queue, but the layout has {workers} workers"),
    );
    assert_eq!(
        row(&before, &nic, "queues")["fix"],
        format!("ethtool -L {nic} rx {workers} tx {workers}")
    );
    assert_eq!(row(&before, &nic, "queues")["auto_fix"], true);
    let needed = TUNNEL_MTU + 60;
    assert_row(
        &before,
        &nic,
        "mtu",
        "FAIL",
        &format!("MTU {VETH_MTU}; tunnel MTU {TUNNEL_MTU} + 60 (IPv4 outer) = {needed}"),
    );
    assert_eq!(row(&before, &nic, "mtu")["auto_fix"], true);
    assert_row(
        &before,
        "host",
        "memlock",
        "FAIL",
        "soft 64 KiB, hard 64 KiB",
    );
    assert_eq!(row(&before, "host", "memlock")["auto_fix"], false);
    assert_row(&before, "host", "capabilities", "OK", "cap_net_admin");
    // A software NIC: nothing to pin or hash, and the live probe binds queue 0.
    assert_row(&before, &nic, "irq-affinity", "OK", "software NIC");
    assert_row(
        &before,
        &nic,
        "af-xdp-bind",
        "OK",
        "bound an AF_XDP socket to queue 0",
    );
    assert_row(&before, &nic, "driver", "OK", "veth");

    // 2. --fix --yes, still without locked memory: queues and MTU repaired, memlock
    // explained (a process limit is not the doctor's to change).
    let fixed = report(
        &doctor(
            &gateway,
            &[config, "--json", "--fix", "--yes"],
            Privileges::NoLockedMemory,
        ),
        false,
    );
    let fixes = fixed["fixes"].as_array().expect("a fixes list");
    for check in ["queues", "mtu"] {
        let fix = fixes
            .iter()
            .find(|fix| fix["check"] == check)
            .unwrap_or_else(|| panic!("no {check} fix in {fixes:#?}"));
        assert_eq!(fix["applied"], true, "{fix:#}");
    }
    assert!(fixes.iter().all(|fix| fix["check"] != "memlock"));
    assert_row(
        &fixed,
        "config",
        "layout",
        "OK",
        &format!("{workers} workers"),
    );
    assert_row(
        &fixed,
        &nic,
        "queues",
        "OK",
        &format!("{workers} RX queues, one per worker"),
    );
    assert_row(&fixed, &nic, "mtu", "OK", &format!("MTU {needed}"));
    assert_row(&fixed, "host", "memlock", "FAIL", "soft 64 KiB");
    // The kernel agrees, asked without the doctor.
    assert!(can_bind_queue(&gateway, veth.a.index, workers - 1));
    assert!(!can_bind_queue(&gateway, veth.a.index, workers));
    assert_eq!(link_mtu(&gateway, &nic), needed);

    // 3. Started as the memlock row says (here: with CAP_IPC_LOCK), nothing fails.
    let after = report(
        &doctor(&gateway, &[config, "--json"], Privileges::Full),
        true,
    );
    assert_row(&after, "host", "memlock", "OK", "CAP_IPC_LOCK");
    assert_row(
        &after,
        &nic,
        "queues",
        "OK",
        &format!("{workers} RX queues"),
    );
    assert_row(&after, &nic, "mtu", "OK", "");
    assert_eq!(after["summary"]["fail"], 0, "{after:#}");
    drop(peer);
}

#[test]
fn doctor_names_a_missing_attach_nic() {
    if !root_or_skip() {
        return;
    }
    let host = Host::new("dm").expect("namespace");
    let dir = TempDir::new();
    let config_path = dir.0.join("wl1.conf");
    std::fs::write(
        &config_path,
        format!("[Interface]\nPrivateKey = {PRIVATE_KEY}\nAttach = wlnosuch0\n"),
    )
    .expect("write the config");
    let output = doctor(
        &host,
        &[config_path.to_str().expect("UTF-8 temp path")],
        Privileges::Full,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL    wlnosuch0  exists"),
        "table row for the missing NIC:\n{stdout}"
    );
    assert!(
        stdout.contains("no interface wlnosuch0 in this network namespace"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("check(s) failed"),
        "{output:?}"
    );
}
