//! Lab plumbing for the stock-client gateway tests: processes started inside a host's
//! network namespace (killed on drop), `warpline up` daemons, the stock `boringtun-cli`
//! client configured with `wg`, forwarding sysctls, the netlink calls the lab lacks
//! (a route via a next hop, deleting an address), and UDP/TCP traffic helpers.
//!
//! Everything a test starts is torn down by `Drop`, so a panicking test leaves no process,
//! socket file or namespace behind.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use warpline_dataplane::lab::{Host, NetNs, unique_name};

/// The lab tests share two cores; running them one at a time keeps each well inside its
/// time budget and the measured rates meaningful.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An address literal of the lab.
pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// How CI installs the tools these tests need.
pub const INSTALL_HINT: &str = "run `cargo xtask deps` as root (it installs wireguard-tools and \
     iperf3 with apt and boringtun-cli 0.7.1 with `cargo install boringtun-cli --version 0.7.1 \
     --locked`)";

/// Finds `program` on `PATH` or in cargo's install directory (`$CARGO_HOME/bin`,
/// `~/.cargo/bin`), where `cargo install` puts `boringtun-cli`.
pub fn find_tool(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.push(PathBuf::from("/root/.cargo/bin"));
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// `find_tool`, failing the test with the install step when the tool is missing.
pub fn require_tool(program: &str, package: &str) -> PathBuf {
    find_tool(program)
        .unwrap_or_else(|| panic!("`{program}` (from {package}) is not installed: {INSTALL_HINT}"))
}

/// A command whose process starts inside `netns`; see `NetNs::command`.
pub fn command_in(netns: &NetNs, program: impl AsRef<std::ffi::OsStr>) -> Command {
    netns.command(program)
}

/// Runs a command to completion inside `netns`; panics with its output when it fails.
pub fn run_in(netns: &NetNs, program: &Path, args: &[&str]) -> Output {
    let output = command_in(netns, program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{}{}",
        program.display(),
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A background process, killed (and reaped) on drop; files in `cleanup` are removed then.
pub struct Proc {
    pub child: Child,
    pub label: String,
    pub cleanup: Vec<PathBuf>,
}

impl Proc {
    /// Starts `command`, naming it `label` in failure messages.
    pub fn spawn(mut command: Command, label: &str) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        Self {
            child,
            label: label.to_owned(),
            cleanup: Vec::new(),
        }
    }

    /// Panics if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early: {status}", self.label);
        }
    }

    /// Waits for `path` to appear while the process runs.
    pub fn wait_for_file(&mut self, path: &Path, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !path.exists() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{}: no {} after {timeout:?}",
                self.label,
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().ok().flatten() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for path in &self.cleanup {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("{}gw", unique_name()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// Writes a root-only file (configs hold private keys).
    pub fn write(&self, file: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join(file);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `warpline up` process with its interface name and control socket.
pub struct Warpline {
    pub proc: Proc,
    pub name: String,
    pub socket: PathBuf,
}

/// Starts `warpline up` in `host` for a config `text`, interface named `name`, and waits
/// for its control socket.
pub fn warpline_up(host: &Host, dir: &TempDir, name: &str, text: &str) -> Warpline {
    warpline_up_with(host, dir, name, text, |_| {})
}

/// As [`warpline_up`], with `adjust` changing the command first (environment, output).
pub fn warpline_up_with(
    host: &Host,
    dir: &TempDir,
    name: &str,
    text: &str,
    adjust: impl FnOnce(&mut Command),
) -> Warpline {
    let config = dir.write(&format!("{name}.conf"), text);
    let socket = dir.0.join(format!("{name}.sock"));
    let mut command = command_in(host.netns(), env!("CARGO_BIN_EXE_warpline"));
    command
        .arg("up")
        .arg(&config)
        .arg("--control-socket")
        .arg(&socket);
    adjust(&mut command);
    let mut proc = Proc::spawn(command, &format!("warpline up {name}"));
    proc.wait_for_file(&socket, Duration::from_secs(10));
    Warpline {
        proc,
        name: name.to_owned(),
        socket,
    }
}

impl Warpline {
    /// Runs `warpline <command> <name> [extra] --control-socket <socket>` as the binary and
    /// returns its stdout; fails the test with stderr when it fails.
    fn cli(&self, command: &str, extra: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_warpline"))
            .args([command, &self.name])
            .args(extra)
            .arg("--control-socket")
            .arg(&self.socket)
            .output()
            .unwrap_or_else(|e| panic!("run warpline {command}: {e}"));
        assert!(
            output.status.success(),
            "warpline {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `warpline set <name> <args...>`, run as the binary; fails the test if it fails.
    pub fn cli_set(&self, args: &[&str]) {
        let output = Command::new(env!("CARGO_BIN_EXE_warpline"))
            .args(["set", &self.name, "--control-socket"])
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run warpline set: {e}"));
        assert!(
            output.status.success(),
            "warpline set {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `warpline show <name> --json`, run as the binary, parsed.
    pub fn show_json(&self) -> serde_json::Value {
        let text = self.cli("show", &["--json"]);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("warpline show --json printed no JSON ({e}):\n{text}"))
    }

    /// `warpline show <name>` (the `wg show`-style text), run as the binary.
    pub fn show_text(&self) -> String {
        self.cli("show", &[])
    }

    /// The peer with `public_key` in `warpline show --json`.
    pub fn peer_json(&self, public_key: &str) -> serde_json::Value {
        let show = self.show_json();
        show["peers"]
            .as_array()
            .and_then(|peers| {
                peers
                    .iter()
                    .find(|peer| peer["public_key"] == public_key)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("peer {public_key} not in warpline show: {show:#}"))
    }

    /// `warpline ha <action> <name>` (promote, demote), run as the binary.
    pub fn cli_ha(&self, action: &str) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_warpline"))
            .args(["ha", action, &self.name, "--control-socket"])
            .arg(&self.socket)
            .output()
            .unwrap_or_else(|e| panic!("run warpline ha {action}: {e}"));
        assert!(
            output.status.success(),
            "warpline ha {action} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `warpline down` and a clean exit.
    pub fn down(mut self) {
        self.cli("down", &[]);
        let status = self
            .proc
            .wait_exit(Duration::from_secs(5))
            .expect("warpline did not stop after down");
        assert!(status.success(), "warpline exited with {status}");
    }
}

/// A stock WireGuard client: its interface, key, gateway, and what its TUN gets.
pub struct StockClient<'a> {
    pub ifname: &'a str,
    pub key: &'a warpline_control::keys::PrivateKey,
    pub gateway: &'a warpline_control::keys::PublicKey,
    pub endpoint: SocketAddr,
    /// Addresses of the client's TUN.
    pub addresses: &'a [(IpAddr, u8)],
    /// Prefixes routed into the tunnel (also its AllowedIPs).
    pub routes: &'a [(IpAddr, u8)],
}

/// Starts the stock boringtun-cli in `host`, gives its TUN the client's addresses and routes
/// over netlink, and configures it with `wg setconf`.
pub fn start_boringtun(dir: &TempDir, host: &Host, client: &StockClient<'_>) -> Proc {
    let boringtun = require_tool("boringtun-cli", "crates.io boringtun-cli 0.7.1");
    let wg = require_tool("wg", "apt wireguard-tools");
    assert!(
        Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing: boringtun-cli needs the tun module (modprobe tun)"
    );
    let ifname = client.ifname;
    let log = std::fs::File::create(dir.0.join(format!("boringtun-{ifname}.log"))).unwrap();
    let mut command = command_in(host.netns(), &boringtun);
    command
        .args([
            "--foreground",
            "--threads",
            "2",
            "--disable-drop-privileges",
            "--verbosity",
            "info",
            ifname,
        ])
        .env("WG_SUDO", "1")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    let socket = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
    let mut proc = Proc::spawn(command, &format!("boringtun-cli {ifname}"));
    proc.cleanup.push(socket.clone());
    proc.wait_for_file(&socket, Duration::from_secs(10));

    let (addresses, routes) = (client.addresses.to_vec(), client.routes.to_vec());
    host.netlink(move |netlink| {
        let index = netlink.link_by_name(ifname)?.index;
        netlink.set_mtu(index, 1420)?;
        for (address, len) in addresses {
            netlink.add_address(index, address, len)?;
        }
        netlink.set_up(index)?;
        for (destination, len) in routes {
            netlink.add_route(index, destination, len)?;
        }
        Ok(())
    })
    .expect("address and routes on the boringtun TUN");

    let allowed: Vec<String> = client
        .routes
        .iter()
        .map(|(address, len)| format!("{address}/{len}"))
        .collect();
    let config = dir.write(
        &format!("boringtun-{ifname}.conf"),
        &format!(
            "[Interface]\nPrivateKey = {}\n\n[Peer]\nPublicKey = {}\nEndpoint = {}\n\
             AllowedIPs = {}\n",
            client.key.to_base64(),
            client.gateway.to_base64(),
            client.endpoint,
            allowed.join(", ")
        ),
    );
    run_in(
        host.netns(),
        &wg,
        &["setconf", ifname, config.to_str().unwrap()],
    );
    proc.assert_running();
    proc
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Turns on IPv4 and IPv6 forwarding in `host`'s namespace only (a thread inside it writes
/// its `/proc/sys/net`, which the kernel resolves per network namespace).
pub fn enable_forwarding(host: &Host) {
    host.run(|| {
        for path in [
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/net/ipv6/conf/all/forwarding",
        ] {
            std::fs::write(path, "1").unwrap_or_else(|e| panic!("write {path}: {e}"));
        }
    });
}

// --- HA -----------------------------------------------------------------------------------

/// `warpline ha status --json` of a gateway.
pub fn ha_status(gateway: &Warpline) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warpline"))
        .args(["ha", "status", &gateway.name, "--json", "--control-socket"])
        .arg(&gateway.socket)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "warpline ha status: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Polls `done` every 20 ms; fails the test naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A sequence-numbered UDP stream (500 datagrams/s) from `local` in a host to an echo at
/// `target`, recording when each echo came back: failover gaps are measured on it.
pub struct Probe {
    stop: Arc<AtomicBool>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Probe {
    pub fn start(client: &Host, local: IpAddr, target: SocketAddr) -> Self {
        let socket = client.run(|| UdpSocket::bind((local, 0)).unwrap());
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let sender = {
            let (socket, stop) = (socket.try_clone().unwrap(), stop.clone());
            std::thread::spawn(move || {
                let mut sequence = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let _ = socket.send_to(&sequence.to_be_bytes(), target);
                    sequence += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let receiver = {
            let (stop, arrivals) = (stop.clone(), arrivals.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((8, _)) = socket.recv_from(&mut buf) {
                        arrivals.lock().unwrap().push(Instant::now());
                    }
                }
            })
        };
        Self {
            stop,
            arrivals,
            threads: vec![sender, receiver],
        }
    }

    pub fn echoes_since(&self, since: Instant) -> usize {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t > since)
            .count()
    }

    /// Waits until echoes flow after `since`; panics after `timeout`.
    pub fn wait_resumed(&self, since: Instant, timeout: Duration) {
        wait_for("echoes to resume", timeout, || {
            self.echoes_since(since) >= 5
        });
    }

    /// The longest silence between echoes from `from` (minus a little) to now.
    pub fn largest_gap(&self, from: Instant) -> Duration {
        let arrivals = self.arrivals.lock().unwrap();
        let mut previous = None;
        let mut largest = Duration::ZERO;
        for &t in arrivals.iter().filter(|t| **t >= from) {
            if let Some(p) = previous {
                largest = largest.max(t - p);
            }
            previous = Some(t);
        }
        largest
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

// --- netlink helpers ----------------------------------------------------------------------

/// Adds `destination/prefix_len via next_hop` in `host` (see `Netlink::add_route_via`).
pub fn add_route_via(
    host: &Host,
    destination: IpAddr,
    prefix_len: u8,
    next_hop: IpAddr,
) -> io::Result<()> {
    host.netlink(|netlink| netlink.add_route_via(destination, prefix_len, next_hop))
}

/// Deletes `address/prefix_len` from interface `index` in `host`.
pub fn delete_address(host: &Host, index: u32, address: IpAddr, prefix_len: u8) -> io::Result<()> {
    host.netlink(|netlink| netlink.delete_address(index, address, prefix_len))
}

// --- traffic --------------------------------------------------------------------------------

/// A UDP echo server on a thread inside a host, stopped (and joined) on drop.
pub struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl UdpEcho {
    /// Binds `address` inside `host` and echoes every datagram back to its sender.
    pub fn start(host: &Host, address: SocketAddr) -> Self {
        let socket = host.run(|| {
            UdpSocket::bind(address).unwrap_or_else(|e| panic!("bind echo {address}: {e}"))
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut echoed = 0;
            let mut buf = [0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((len, from)) = socket.recv_from(&mut buf)
                    && socket.send_to(&buf[..len], from).is_ok()
                {
                    echoed += 1;
                }
            }
            echoed
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends `count` distinct datagrams from `local` to `target` inside `host`, each retried up
/// to `tries` times with `wait` for its echo; how many came back intact.
pub fn udp_echoes(
    host: &Host,
    local: SocketAddr,
    target: SocketAddr,
    count: u16,
    tries: u32,
    wait: Duration,
) -> u16 {
    host.run(|| {
        let socket = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
        socket.set_read_timeout(Some(wait)).unwrap();
        let mut ok = 0;
        let mut buf = [0u8; 4096];
        for i in 0..count {
            let mut message = i.to_be_bytes().to_vec();
            message.resize(64 + usize::from(i % 16) * 80, (i % 251) as u8);
            'tries: for _ in 0..tries {
                if socket.send_to(&message, target).is_err() {
                    std::thread::sleep(wait);
                    continue;
                }
                let deadline = Instant::now() + wait;
                while Instant::now() < deadline {
                    match socket.recv_from(&mut buf) {
                        Ok((len, _)) if buf[..len] == message[..] => {
                            ok += 1;
                            break 'tries;
                        }
                        Ok(_) => {} // a late echo of an earlier try
                        Err(_) => break,
                    }
                }
            }
        }
        ok
    })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// A TCP server in `host` on `address` that, per connection, reads to EOF and sends back
/// the bytes reversed in seed (XOR 0x5a), so each side checks what the other sent.
pub fn tcp_mirror(host: &Host, address: SocketAddr, connections: usize) -> JoinHandle<()> {
    let listener = host
        .run(|| TcpListener::bind(address).unwrap_or_else(|e| panic!("listen on {address}: {e}")));
    std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(15)))
                .unwrap();
            let mut data = Vec::new();
            if stream.read_to_end(&mut data).is_err() {
                return;
            }
            let reply: Vec<u8> = data.iter().map(|b| b ^ 0x5a).collect();
            let _ = stream.write_all(&reply);
        }
    })
}

/// Connects from `host` to a [`tcp_mirror`] at `target`, sends `len` bytes, reads the
/// mirrored reply and checks both ways; the elapsed time.
pub fn tcp_transfer(host: &Host, target: SocketAddr, len: usize) -> Duration {
    host.run(|| {
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("TCP connect to {target} through the tunnel: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let data = pattern(len, 7);
        stream
            .write_all(&data)
            .expect("TCP send through the tunnel");
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .expect("TCP receive through the tunnel");
        assert_eq!(reply.len(), len, "TCP reply length from {target}");
        assert!(
            reply.iter().zip(&data).all(|(r, d)| *r == d ^ 0x5a),
            "TCP reply from {target} corrupted"
        );
        started.elapsed()
    })
}

/// Runs an iperf3 client for 2 s from `client` to an iperf3 server in `server` bound to
/// `address` (one server per run, `-1`); `reverse` measures server-to-client. The
/// received rate in bit/s.
pub fn iperf3_rate(
    iperf3: &Path,
    client: &Host,
    server: &Host,
    address: IpAddr,
    port: u16,
    reverse: bool,
) -> f64 {
    let bind = address.to_string();
    let port_text = port.to_string();
    let mut command = command_in(server.netns(), iperf3);
    command
        .args(["-s", "-1", "-B", &bind, "-p", &port_text])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server_proc = Proc::spawn(command, "iperf3 -s");
    let mut args = vec!["-c", &bind, "-p", &port_text, "-t", "2", "-J"];
    if reverse {
        args.push("-R");
    }
    // The server needs a moment to listen: retry while the connection is refused (iperf3
    // 3.12 with -J reports that in its JSON "error", sometimes with exit status 0).
    let deadline = Instant::now() + Duration::from_secs(5);
    let report = loop {
        let output = command_in(client.netns(), iperf3)
            .args(&args)
            .output()
            .expect("run iperf3 -c");
        let report: Option<serde_json::Value> = serde_json::from_slice(&output.stdout).ok();
        let error = report
            .as_ref()
            .and_then(|report| report["error"].as_str().map(str::to_owned));
        if output.status.success()
            && error.is_none()
            && let Some(report) = report
        {
            break report;
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(
            text.contains("refused") && Instant::now() < deadline,
            "iperf3 {} failed ({}): {}",
            args.join(" "),
            output.status,
            error.unwrap_or(text)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(server_proc);
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no received rate in iperf3 report: {report:#}"))
}

/// One counter (from the `counters` or `drops` list) summed over a gateway's workers.
pub fn worker_sum(gateway: &Warpline, list: &str, name: &str) -> u64 {
    gateway.show_json()["workers"]
        .as_array()
        .expect("workers in show --json")
        .iter()
        .flat_map(|worker| worker[list].as_array().cloned().unwrap_or_default())
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_u64().unwrap_or(0))
        .sum()
}

// --- L2 segments ------------------------------------------------------------------------

/// A host acting as an Ethernet switch: Linux bridges whose ports are veths to other hosts,
/// so several hosts share one segment (VRRP, gratuitous ARP).
pub struct Switch {
    pub host: Host,
    ip: PathBuf,
}

impl Switch {
    /// A switch with the named bridges, up.
    pub fn new(bridges: &[&str]) -> Self {
        let ip = require_tool("ip", "apt iproute2");
        let host = Host::new("sw").unwrap();
        for bridge in bridges {
            run_in(
                host.netns(),
                &ip,
                &["link", "add", bridge, "type", "bridge"],
            );
            run_in(host.netns(), &ip, &["link", "set", bridge, "up"]);
        }
        Self { host, ip }
    }

    /// Plugs `host` into `bridge` with a new veth; the host's end (up).
    pub fn plug(&self, bridge: &str, host: &Host) -> warpline_dataplane::lab::Endpoint {
        let veth = warpline_dataplane::lab::Veth::new(host, &self.host, 1).unwrap();
        run_in(
            self.host.netns(),
            &self.ip,
            &["link", "set", &veth.b.name, "master", bridge],
        );
        veth.a
    }

    /// Sets the switch port of `host_side` (an interface `plug` returned) up or down: the
    /// host's interface stays administratively up but loses carrier, as with a pulled cable
    /// or a dead switch port.
    pub fn set_port(&self, host_side: &str, up: bool) {
        // `Veth::new` names the ends <base>a and <base>b; the switch holds the b end.
        let base = host_side
            .strip_suffix('a')
            .unwrap_or_else(|| panic!("{host_side} is not an interface `plug` made"));
        run_in(
            self.host.netns(),
            &self.ip,
            &[
                "link",
                "set",
                &format!("{base}b"),
                if up { "up" } else { "down" },
            ],
        );
    }

    /// Sets `host`'s interface `name` up or down (a link cut).
    pub fn set_link(&self, host: &Host, name: &str, up: bool) {
        run_in(
            host.netns(),
            &self.ip,
            &["link", "set", name, if up { "up" } else { "down" }],
        );
    }
}
