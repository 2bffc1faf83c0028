//! The gateway as `warpline@.service` runs it: a non-root user holding only the unit's
//! `AmbientCapabilities` (read from `dist/systemd/warpline@.service` itself), no new
//! privileges, in XDP mode. It must come up, say READY=1 on `$NOTIFY_SOCKET` as
//! `Type=notify` expects, carry a client's traffic, and stop cleanly with XDP detached. A
//! second test has `systemd-analyze verify` check the unit file.
//!
//! Runs as root (namespaces, veth, switching to the test user); prints why it skips otherwise.

mod gateway_support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_support::{Proc, TempDir, UdpEcho, command_in, find_tool, udp_echoes, warpline_up};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, Netlink, Veth, require_root, unique_name};

/// The uid and gid the gateway runs as: no account needs to exist for them.
const GATEWAY_UID: u32 = 64_611;

fn unit_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd/warpline@.service")
}

/// Capability numbers (linux/capability.h) of the names the unit may grant.
fn capability_number(name: &str) -> u32 {
    match name {
        "CAP_NET_ADMIN" => 12,
        "CAP_NET_RAW" => 13,
        "CAP_IPC_LOCK" => 14,
        "CAP_SYS_ADMIN" => 21,
        "CAP_BPF" => 39,
        other => panic!("the unit grants {other}, which this test does not know"),
    }
}

/// The unit's `AmbientCapabilities` as a bit mask.
fn unit_capabilities() -> u64 {
    let unit = std::fs::read_to_string(unit_file()).expect("read the unit file");
    let line = unit
        .lines()
        .find_map(|line| line.strip_prefix("AmbientCapabilities="))
        .expect("the unit sets AmbientCapabilities");
    line.split_whitespace()
        .map(|name| 1u64 << capability_number(name))
        .fold(0, |mask, bit| mask | bit)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Makes `command` start as [`GATEWAY_UID`] with exactly `mask` as its capabilities (kept
/// through exec as ambient capabilities, as systemd does for `AmbientCapabilities=`) and
/// `no_new_privs` set, in a mount namespace of its own where `/dev/net/tun` is `tun_node`.
///
/// The private tun node stands in for the host's: stock hosts have `/dev/net/tun` mode 0666
/// (what `DeviceAllow=/dev/net/tun rw` relies on), but containers often make it 0600, and the
/// test must not change the host's device.
fn run_as_gateway_user(command: &mut std::process::Command, mask: u64, tun_node: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    let tun_node = std::ffi::CString::new(tun_node.as_os_str().as_bytes()).unwrap();
    let dev_tun = c"/dev/net/tun";
    let root = c"/";
    let data = [
        CapData {
            effective: mask as u32,
            permitted: mask as u32,
            inheritable: mask as u32,
        },
        CapData {
            effective: (mask >> 32) as u32,
            permitted: (mask >> 32) as u32,
            inheritable: (mask >> 32) as u32,
        },
    ];
    let drop_privileges = move || {
        let check = |rc: libc::c_long| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        // SAFETY: unshare takes a flag; it only gives this child a mount namespace of its own.
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) }.into())?;
        // SAFETY: the target is a NUL-terminated string owned by the closure; null source,
        // type and data are allowed for a propagation change.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        check(rc.into())?;
        // SAFETY: both paths are NUL-terminated strings owned by the closure; a bind mount
        // needs no type or data.
        let rc = unsafe {
            libc::mount(
                tun_node.as_ptr(),
                dev_tun.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        check(rc.into())?;
        // SAFETY: prctl with integer arguments touches no memory.
        check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) }.into())?;
        // SAFETY: an empty group list: the null pointer is never read.
        check(unsafe { libc::setgroups(0, std::ptr::null()) }.into())?;
        // SAFETY: setresgid takes integers.
        check(unsafe { libc::setresgid(GATEWAY_UID, GATEWAY_UID, GATEWAY_UID) }.into())?;
        // SAFETY: setresuid takes integers; KEEPCAPS keeps the permitted set across it.
        check(unsafe { libc::setresuid(GATEWAY_UID, GATEWAY_UID, GATEWAY_UID) }.into())?;
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        // SAFETY: capset reads a version-3 header and two data entries, both live and laid
        // out as linux/capability.h declares them.
        check(unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) })?;
        for cap in 0..64u32 {
            if mask & (1 << cap) != 0 {
                // SAFETY: prctl with integer arguments touches no memory.
                let rc = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE,
                        libc::c_ulong::from(cap),
                        0,
                        0,
                    )
                };
                check(rc.into())?;
            }
        }
        // SAFETY: prctl with integer arguments touches no memory.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())
    };
    // SAFETY: between fork and exec the hook makes only raw system calls (unshare, mount,
    // prctl, setgroups, setresgid, setresuid, capset) and reads errno: async-signal-safe, no
    // allocation, no locks.
    unsafe { command.pre_exec(drop_privileges) };
}

/// A field of `/proc/<pid>/status`.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .map(|value| value.trim().to_owned())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn chown(path: &Path) {
    std::os::unix::fs::chown(path, Some(GATEWAY_UID), Some(GATEWAY_UID))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

#[test]
fn the_gateway_runs_as_a_user_with_only_the_units_capabilities() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let mask = unit_capabilities();
    let (gateway_host, client_host) = (Host::new("g").unwrap(), Host::new("c").unwrap());
    let veth = Veth::new(&gateway_host, &client_host, 1).unwrap();
    gateway_host
        .add_address(&veth.a, "10.207.0.1".parse().unwrap(), 24)
        .unwrap();
    client_host
        .add_address(&veth.b, "10.207.0.2".parse().unwrap(), 24)
        .unwrap();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());

    // What systemd's LoadCredential= and RuntimeDirectory= give the service: a config only
    // the service user can read, and a directory of its own for the control socket.
    let dir = TempDir::new();
    let service_dir = dir.0.join("service");
    std::fs::create_dir(&service_dir).unwrap();
    std::fs::set_permissions(&service_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown(&service_dir);
    let name = format!("{}g", unique_name());
    let config = service_dir.join(format!("{name}.conf"));
    std::fs::write(
        &config,
        format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.94.0.1/32\n\
             Attach = {}\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.94.0.2/32\n",
            gateway_key.to_base64(),
            veth.a.name,
            client_key.public_key().to_base64()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown(&config);
    // systemd's notify socket: the service user must be able to send to it.
    let notify_path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();

    // The tun device as a stock host has it (see run_as_gateway_user).
    let tun_node = dir.0.join("tun");
    {
        use std::os::unix::ffi::OsStrExt as _;
        let path = std::ffi::CString::new(tun_node.as_os_str().as_bytes()).unwrap();
        // SAFETY: mknod reads the NUL-terminated path; 10:200 is the tun misc device.
        let rc =
            unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(10, 200)) };
        assert_eq!(
            rc,
            0,
            "mknod {}: {}",
            tun_node.display(),
            std::io::Error::last_os_error()
        );
        std::fs::set_permissions(&tun_node, std::fs::Permissions::from_mode(0o666)).unwrap();
    }

    let socket = service_dir.join(format!("{name}.sock"));
    let mut command = command_in(gateway_host.netns(), env!("CARGO_BIN_EXE_warpline"));
    command
        .arg("up")
        .arg(&config)
        .arg("--control-socket")
        .arg(&socket)
        .env("NOTIFY_SOCKET", &notify_path);
    run_as_gateway_user(&mut command, mask, &tun_node);
    let mut gateway = Proc::spawn(command, "warpline up as the service user");

    let mut buf = [0u8; 512];
    let len = match notify.recv(&mut buf) {
        Ok(len) => len,
        Err(e) => {
            gateway.assert_running();
            panic!("no READY=1 from the gateway within 15 s: {e}");
        }
    };
    let message = String::from_utf8_lossy(&buf[..len]);
    assert!(
        message.starts_with("READY=1\n") && message.contains("XDP mode"),
        "not a readiness message: {message:?}"
    );
    let pid = gateway.child.id();
    assert_eq!(
        status_field(pid, "Uid:").split_whitespace().next(),
        Some(GATEWAY_UID.to_string().as_str()),
        "the gateway does not run as the service user"
    );
    let effective = u64::from_str_radix(&status_field(pid, "CapEff:"), 16).unwrap();
    assert_eq!(
        effective, mask,
        "the gateway holds other capabilities than the unit grants"
    );
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    let attached = gateway_host
        .netlink(|netlink: &mut Netlink| netlink.link_by_index(veth.a.index))
        .unwrap()
        .xdp_program_id;
    assert!(attached.is_some(), "XDP is not attached");

    // A client through the unprivileged gateway.
    let client = warpline_up(
        &client_host,
        &dir,
        &format!("{}c", unique_name()),
        &format!(
            "[Interface]\nPrivateKey = {}\nAddress = 10.94.0.2/32\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.94.0.1/32\nEndpoint = 10.207.0.1:51820\n",
            client_key.to_base64(),
            gateway_key.public_key().to_base64()
        ),
    );
    let echo_address: SocketAddr = "10.94.0.1:9000".parse().unwrap();
    let echo = UdpEcho::start(&gateway_host, echo_address);
    let echoed = udp_echoes(
        &client_host,
        "10.94.0.2:0".parse().unwrap(),
        echo_address,
        20,
        20,
        Duration::from_millis(250),
    );
    assert_eq!(
        echoed, 20,
        "traffic through the unprivileged gateway was lost"
    );
    drop(echo);
    drop(client);

    // Root still drives it through the control socket, and it stops cleanly.
    let down = std::process::Command::new(env!("CARGO_BIN_EXE_warpline"))
        .args(["down", &name, "--control-socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "warpline down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    let status = gateway
        .wait_exit(Duration::from_secs(5))
        .expect("the gateway did not stop");
    assert!(status.success(), "the gateway exited with {status}");
    let len = notify.recv(&mut buf).expect("no STOPPING=1");
    assert_eq!(&buf[..len], b"STOPPING=1\n");
    let attached = gateway_host
        .netlink(|netlink: &mut Netlink| netlink.link_by_index(veth.a.index))
        .unwrap()
        .xdp_program_id;
    assert_eq!(
        attached, None,
        "XDP stayed attached after the gateway stopped"
    );
}

/// The unit file as systemd reads it: no unknown keys, no invalid values, the binary found.
#[test]
fn systemd_accepts_the_unit_file() {
    let Some(analyze) = find_tool("systemd-analyze") else {
        println!("skipping: systemd-analyze is not installed (apt-get install systemd)");
        return;
    };
    let dir = TempDir::new();
    let unit = std::fs::read_to_string(unit_file())
        .unwrap()
        .replace("/usr/local/bin/warpline", env!("CARGO_BIN_EXE_warpline"));
    let path = dir.write("warpline@wl0.service", &unit);
    let output = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "systemd-analyze verify failed: {said}"
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned: {said}"
    );
}

/// Started as root, the gateway gives up every capability but the unit's four once it is set
/// up: in every thread (the workers included) and in the bounding set, so nothing it runs later
/// can regain them. Its traffic and its PostDown hook still work.
#[test]
fn a_root_started_gateway_keeps_only_the_runtime_capabilities() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let mask = unit_capabilities();
    let (gateway_host, client_host) = (Host::new("g").unwrap(), Host::new("c").unwrap());
    let veth = Veth::new(&gateway_host, &client_host, 2).unwrap();
    gateway_host
        .add_address(&veth.a, "10.208.0.1".parse().unwrap(), 24)
        .unwrap();
    client_host
        .add_address(&veth.b, "10.208.0.2".parse().unwrap(), 24)
        .unwrap();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let dir = TempDir::new();
    let post_down = dir.0.join("post-down-ran");
    let gateway = warpline_up(
        &gateway_host,
        &dir,
        &format!("{}g", unique_name()),
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.95.0.1/32\n\
             Attach = {}\nPostDown = touch {}\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.95.0.2/32\n",
            gateway_key.to_base64(),
            veth.a.name,
            post_down.display(),
            client_key.public_key().to_base64()
        ),
    );
    let pid = gateway.proc.child.id();
    // The control socket exists once setup is over; the workers may still be starting.
    std::thread::sleep(Duration::from_millis(300));
    let tasks: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    let mut workers = 0;
    for task in &tasks {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
                .unwrap()
        };
        let comm = std::fs::read_to_string(task.join("comm")).unwrap();
        workers += usize::from(comm.starts_with("wl-worker"));
        assert_eq!(field("CapEff:"), mask, "thread {}: effective", comm.trim());
        assert_eq!(field("CapPrm:"), mask, "thread {}: permitted", comm.trim());
        assert_eq!(field("CapBnd:"), mask, "thread {}: bounding", comm.trim());
    }
    assert!(workers >= 1, "no worker thread among {tasks:?}");

    let client = warpline_up(
        &client_host,
        &dir,
        &format!("{}c", unique_name()),
        &format!(
            "[Interface]\nPrivateKey = {}\nAddress = 10.95.0.2/32\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.95.0.1/32\nEndpoint = 10.208.0.1:51820\n",
            client_key.to_base64(),
            gateway_key.public_key().to_base64()
        ),
    );
    let echo_address: SocketAddr = "10.95.0.1:9000".parse().unwrap();
    let echo = UdpEcho::start(&gateway_host, echo_address);
    let echoed = udp_echoes(
        &client_host,
        "10.95.0.2:0".parse().unwrap(),
        echo_address,
        20,
        20,
        Duration::from_millis(250),
    );
    assert_eq!(echoed, 20, "traffic through the reduced gateway was lost");
    drop(echo);
    drop(client);
    gateway.down();
    assert!(
        post_down.exists(),
        "the PostDown hook did not run after the drop"
    );
}
