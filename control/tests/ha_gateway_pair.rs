//! An active-passive gateway pair with the real keepalived (from apt), as root, in a
//! namespace lab:
//!
//! ```text
//!  client ── WAN bridge 10.210.0.0/24 ──┬── gw A .1 ──┬── LAN bridge 10.211.0.0/24 ── server .10
//!  (boringtun-cli,    VIP .100          └── gw B .2 ──┘    VIP .100
//!   tunnel 10.99.1.2)                   sync link 10.212.0.0/24 between A and B (port 51900)
//! ```
//!
//! keepalived runs `dist/keepalived/keepalived.conf.in` (the template the docs give), with
//! 50 ms VRRPv3 adverts; its notify FIFO feeds `warpline ha follow-keepalived`, which calls
//! `warpline ha promote|demote` in keepalived's order.
//!
//! 1. A sequence-numbered UDP probe (500/s) and an iperf3 TCP flow run through the VIP
//!    while the active node dies (SIGKILL of warpline and keepalived, links gone): the
//!    largest gap in the echoes is printed (and must stay far below a handshake's 15 s),
//!    the standby must have needed no handshake
//!    when traffic resumed, and the TCP flow must survive. Then the dead node restarts: it
//!    resyncs as standby, keepalived fails back to it (preemption) without a handshake, and
//!    exactly one node owns the session afterwards. Then the active node's WAN link is cut:
//!    keepalived's interface tracking moves the VIPs. Then only the active node's warpline
//!    dies: keepalived's check script (`warpline ha status`) moves the VIPs.
//! 2. Split brain: the sync link fails and both nodes are active at once, both sending to
//!    the client on the same session keys: a capture on the client's link shows no
//!    (receiver index, counter) pair twice, and the client follows the newer epoch.
//! 3. Builtin mode (`HaMode = builtin`, no keepalived): election, failover and fail-back;
//!    then interface tracking (`HaTrackInterface`): the active node's LAN link goes down,
//!    the partner takes over and announces the IPv6 VIP with unsolicited neighbour
//!    advertisements (the client's neighbour entry moves without the client sending), and
//!    the node takes the role back when the link returns.
//!
//! Without root each test prints `skipping: <reason>` and passes.

mod gateway_support;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gateway_support::{
    Probe, Proc, StockClient, Switch, TempDir, UdpEcho, Warpline, add_route_via, command_in,
    enable_forwarding, ha_status, ip, require_tool, serial, start_boringtun, wait_for, warpline_up,
    warpline_up_with,
};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Endpoint, Host, require_root, unique_name};

const WAN_VIP: &str = "10.210.0.100";
const LAN_VIP: &str = "10.211.0.100";
const SERVER: &str = "10.211.0.10";
const CLIENT_TUNNEL: &str = "10.99.1.2";
const ECHO_PORT: u16 = 9000;
const IPERF_PORT: u16 = 5201;
const HA_KEY: &str = "d2FycGxpbmUtaGEtbGFiLWtleS0zMi1ieXRlcyEhISE=";
/// A gap that shows the standby resumed the session: well under the 15 s a stock client
/// waits before it handshakes again. The speed goal itself (<= 1 s) is measured by
/// `cargo xtask bench failover`, not asserted here on a shared machine.
const MAX_GAP: Duration = Duration::from_secs(5);

/// The hosts and their links (dropped after the processes the tests declare later).
struct Lab {
    switch: Switch,
    client: Host,
    client_wan: Endpoint,
    gateways: [Host; 2],
    wan: [Endpoint; 2],
    lan: [Endpoint; 2],
    sync: [Endpoint; 2],
    server: Host,
}

impl Lab {
    fn new() -> Self {
        let switch = Switch::new(&["bw", "bl", "bs"]);
        let client = Host::new("c").unwrap();
        let client_wan = switch.plug("bw", &client);
        client
            .add_address(&client_wan, ip("10.210.0.50"), 24)
            .unwrap();
        let server = Host::new("s").unwrap();
        let server_lan = switch.plug("bl", &server);
        server.add_address(&server_lan, ip(SERVER), 24).unwrap();
        add_route_via(&server, ip("10.99.0.0"), 16, ip(LAN_VIP)).unwrap();
        let gateway = |n: u8| {
            let host = Host::new(if n == 1 { "ga" } else { "gb" }).unwrap();
            let wan = switch.plug("bw", &host);
            let lan = switch.plug("bl", &host);
            let sync = switch.plug("bs", &host);
            host.add_address(&wan, ip(&format!("10.210.0.{n}")), 24)
                .unwrap();
            host.add_address(&lan, ip(&format!("10.211.0.{n}")), 24)
                .unwrap();
            host.add_address(&sync, ip(&format!("10.212.0.{n}")), 24)
                .unwrap();
            enable_forwarding(&host);
            (host, wan, lan, sync)
        };
        let (a, a_wan, a_lan, a_sync) = gateway(1);
        let (b, b_wan, b_lan, b_sync) = gateway(2);
        Self {
            switch,
            client,
            client_wan,
            gateways: [a, b],
            wan: [a_wan, b_wan],
            lan: [a_lan, b_lan],
            sync: [a_sync, b_sync],
            server,
        }
    }
}

/// Gateway `node`'s config: the shared identity, the client as its peer, the HA keys.
fn gateway_config(node: usize, key: &PrivateKey, client: &PrivateKey) -> String {
    let (own, other) = (node + 1, 2 - node);
    format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.99.0.1/24\n\
         HaMode = keepalived\nHaNodeId = {node}\nHaKey = {HA_KEY}\n\
         HaListen = 10.212.0.{own}:51900\nHaPeer = 10.212.0.{other}:51900\n\n\
         [Peer]\nPublicKey = {}\nAllowedIPs = {CLIENT_TUNNEL}/32\n",
        key.to_base64(),
        client.public_key().to_base64()
    )
}

/// A root-only directory under /run: keepalived runs notify scripts only from paths no
/// other user can write.
struct SecureDir(PathBuf);

impl SecureDir {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let path = PathBuf::from(format!("/run/{}ha", unique_name()));
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        Self(path)
    }
}

impl Drop for SecureDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// keepalived for gateway `node`, rendered from the template in `dist/`.
fn start_keepalived(lab: &Lab, node: usize, gateway: &Warpline, secure: &SecureDir) -> Keepalived {
    start_keepalived_tracking(lab, node, gateway, secure, true)
}

/// keepalived as above; `track_daemon = false` drops the `warpline ha status` check (the
/// no-sync baseline has no HA config for it to report).
fn start_keepalived_tracking(
    lab: &Lab,
    node: usize,
    gateway: &Warpline,
    secure: &SecureDir,
    track_daemon: bool,
) -> Keepalived {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let keepalived = require_tool("keepalived", "apt keepalived");
    let dir = secure.0.join(format!("node{node}"));
    std::fs::create_dir_all(&dir).unwrap();
    // The notify command: the test's warpline binary on this node's control socket.
    let wrapper = dir.join("warpline");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} \"$@\" --control-socket {}\n",
            env!("CARGO_BIN_EXE_warpline"),
            gateway.socket.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700)).unwrap();
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/keepalived/keepalived.conf.in"),
    )
    .unwrap();
    let template = if track_daemon {
        template
    } else {
        template.replace(
            "    track_script {\n        warpline_alive_@NAME@\n    }\n",
            "",
        )
    };
    let config = template
        .replace("@NAME@", &gateway.name)
        .replace("@WARPLINE@", wrapper.to_str().unwrap())
        .replace("@WAN@", &lab.wan[node].name)
        .replace("@LAN@", &lab.lan[node].name)
        .replace("@WAN_VIP@", &format!("{WAN_VIP}/24"))
        .replace("@LAN_VIP@", &format!("{LAN_VIP}/24"))
        .replace("@PRIORITY@", if node == 0 { "150" } else { "100" })
        .replace("@VRID@", "51")
        .replace("@FIFO@", dir.join("notify.fifo").to_str().unwrap());
    let config_path = dir.join("keepalived.conf");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.join("keepalived.log")).unwrap();
    let mut command = command_in(lab.gateways[node].netns(), &keepalived);
    command
        .arg("--dont-fork")
        .arg("--log-console")
        .arg("--vrrp")
        .arg("--use-file")
        .arg(&config_path)
        .arg("--pid")
        .arg(dir.join("keepalived.pid"))
        .arg("--vrrp_pid")
        .arg(dir.join("vrrp.pid"))
        .arg("--checkers_pid")
        .arg(dir.join("checkers.pid"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    // Its own process group, so that killing it takes its VRRP child along.
    command.process_group(0);
    Keepalived(Proc::spawn(command, &format!("keepalived on node {node}")))
}

/// keepalived and its VRRP child process, killed together (SIGKILL to the group) on drop.
struct Keepalived(Proc);

impl Keepalived {
    fn kill(&mut self) {
        let group = self.0.child.id() as i32;
        // SAFETY: kill(2) on our own child's process group; no memory is involved.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.0.child.wait();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.kill();
    }
}

fn role(gateway: &Warpline) -> String {
    ha_status(gateway)["role"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

fn handshakes(gateway: &Warpline, client: &PrivateKey) -> u64 {
    gateway.peer_json(&client.public_key().to_base64())["handshakes"]
        .as_u64()
        .unwrap()
}

/// The stock client in the client host, tunnelled to the gateways' `endpoint` (the VIP, or
/// a node's own address) for the LAN and the gateways' tunnel address, and a probe from it
/// to the server's echo.
fn stock_client_with_probe(
    lab: &Lab,
    dir: &TempDir,
    client_key: &PrivateKey,
    gateway_key: &PrivateKey,
    endpoint: &str,
) -> (Proc, Probe) {
    let client = start_boringtun(
        dir,
        &lab.client,
        &StockClient {
            ifname: "wgc",
            key: client_key,
            gateway: &gateway_key.public_key(),
            endpoint: SocketAddr::new(ip(endpoint), 51820),
            addresses: &[(ip(CLIENT_TUNNEL), 32)],
            routes: &[(ip("10.211.0.0"), 24), (ip("10.99.0.1"), 32)],
        },
    );
    let probe = Probe::start(
        &lab.client,
        ip(CLIENT_TUNNEL),
        SocketAddr::new(ip(SERVER), ECHO_PORT),
    );
    (client, probe)
}

/// Starts an iperf3 TCP flow of `seconds` through the tunnel; join for its result.
fn iperf3_flow(lab: &Lab, seconds: u32) -> (Proc, JoinHandle<std::process::Output>) {
    let iperf3 = require_tool("iperf3", "apt iperf3");
    let mut server = command_in(lab.server.netns(), &iperf3);
    server
        .args(["-s", "-1", "-B", SERVER, "-p", &IPERF_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = Proc::spawn(server, "iperf3 -s");
    std::thread::sleep(Duration::from_millis(300));
    let mut client = command_in(lab.client.netns(), &iperf3);
    client.args([
        "-c",
        SERVER,
        "-p",
        &IPERF_PORT.to_string(),
        "-t",
        &seconds.to_string(),
        "-J",
    ]);
    (server, std::thread::spawn(move || client.output().unwrap()))
}

fn kill(proc: &mut Proc) {
    let _ = proc.child.kill();
    let _ = proc.child.wait();
}

/// Removes the VIPs a SIGKILLed keepalived left behind (a rebooted box has none).
fn delete_vips(lab: &Lab, node: usize) {
    let ip_tool = require_tool("ip", "apt iproute2");
    for (vip, link) in [(WAN_VIP, &lab.wan[node]), (LAN_VIP, &lab.lan[node])] {
        let _ = command_in(lab.gateways[node].netns(), &ip_tool)
            .args(["addr", "del", &format!("{vip}/24"), "dev", &link.name])
            .output();
    }
}

#[test]
fn active_passive_pair_fails_over_and_back_without_handshakes() {
    active_passive_pair(false);
}

/// The same with the AF_XDP data plane on the WAN NICs: workers reply from the VIP the
/// client sent to, and the takeover republishes the workers' session table.
#[test]
fn active_passive_xdp_pair_fails_over_and_back_without_handshakes() {
    active_passive_pair(true);
}

/// Node `node`'s config for the keepalived pair, with the AF_XDP data plane on its WAN NIC
/// when `xdp`.
fn pair_config(
    lab: &Lab,
    node: usize,
    gateway_key: &PrivateKey,
    client_key: &PrivateKey,
    xdp: bool,
) -> String {
    let text = gateway_config(node, gateway_key, client_key);
    if xdp {
        text.replacen(
            "[Interface]\n",
            &format!("[Interface]\nAttach = {}\n", lab.wan[node].name),
            1,
        )
    } else {
        text
    }
}

/// A keepalived pair with A active and the stock client's probe flowing through the VIP,
/// its session synced to B.
struct SyncedPair {
    a: Warpline,
    b: Warpline,
    keepalived_a: Keepalived,
    keepalived_b: Keepalived,
    client: Proc,
    probe: Probe,
}

fn synced_pair(
    lab: &Lab,
    dir: &TempDir,
    secure: &SecureDir,
    (gateway_key, client_key): (&PrivateKey, &PrivateKey),
    xdp: bool,
    adjust_a: impl FnOnce(&mut std::process::Command),
) -> SyncedPair {
    let config = |node| pair_config(lab, node, gateway_key, client_key, xdp);
    let a = warpline_up_with(&lab.gateways[0], dir, "wla", &config(0), adjust_a);
    let b = warpline_up(&lab.gateways[1], dir, "wlb", &config(1));
    assert_eq!(role(&a), "standby", "keepalived mode starts as standby");
    let keepalived_a = start_keepalived(lab, 0, &a, secure);
    let keepalived_b = start_keepalived(lab, 1, &b, secure);
    wait_for("A to become active", Duration::from_secs(10), || {
        role(&a) == "active"
    });
    // Both keepalived instances can pass through MASTER for a moment at start (seen in CI:
    // both nodes promoted, one demoted half a millisecond later): B must settle as standby.
    wait_for("B to settle as standby", Duration::from_secs(5), || {
        role(&b) == "standby"
    });
    let (client, probe) = stock_client_with_probe(lab, dir, client_key, gateway_key, WAN_VIP);
    probe.wait_resumed(Instant::now(), Duration::from_secs(10));
    wait_for("B to hold A's session", Duration::from_secs(5), || {
        ha_status(&b)["records_held"].as_u64() >= Some(1)
    });
    SyncedPair {
        a,
        b,
        keepalived_a,
        keepalived_b,
        client,
        probe,
    }
}

fn active_passive_pair(xdp: bool) {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new();
    let dir = TempDir::new();
    let secure = SecureDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let _echo = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER), ECHO_PORT));
    let SyncedPair {
        mut a,
        b,
        mut keepalived_a,
        keepalived_b: _keepalived_b,
        client: _client,
        probe,
    } = synced_pair(
        &lab,
        &dir,
        &secure,
        (&gateway_key, &client_key),
        xdp,
        |_| {},
    );
    assert_eq!(handshakes(&b, &client_key), 0);

    // 1. The active node dies with an iperf3 flow and the probe running.
    let (_iperf_server, iperf) = iperf3_flow(&lab, 6);
    std::thread::sleep(Duration::from_secs(2));
    // Power loss: the links go first (a dying keepalived would otherwise send its
    // priority-0 "I quit" advert and make this a graceful handover), then the processes.
    let killed = Instant::now();
    for link in [&lab.wan[0], &lab.lan[0], &lab.sync[0]] {
        lab.switch.set_link(&lab.gateways[0], &link.name, false);
    }
    kill(&mut a.proc);
    keepalived_a.kill();
    probe.wait_resumed(killed + Duration::from_millis(50), Duration::from_secs(10));
    let handshakes_when_resumed = handshakes(&b, &client_key);
    let gap = probe.largest_gap(killed - Duration::from_millis(100));
    println!(
        "failover (node killed): gap {gap:?}, handshakes at B when traffic resumed: {handshakes_when_resumed}"
    );
    assert_eq!(role(&b), "active");
    assert_eq!(handshakes_when_resumed, 0, "traffic waited for a handshake");
    assert!(gap <= MAX_GAP, "failover gap {gap:?} > {MAX_GAP:?}");
    let iperf = iperf.join().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&iperf.stdout).unwrap_or_default();
    let bits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    println!("iperf3 across the failover: {:.1} Mbit/s", bits / 1e6);
    assert!(
        iperf.status.success() && report["error"].is_null() && bits > 0.0,
        "the TCP flow did not survive the failover: {}",
        String::from_utf8_lossy(&iperf.stdout)
    );
    let b_status = ha_status(&b);
    assert!(
        b_status["sessions_taken_over"].as_u64() >= Some(1),
        "{b_status:#}"
    );
    // The background rekey replaces the synced keys soon after.
    wait_for("B's background rekey", Duration::from_secs(10), || {
        handshakes(&b, &client_key) >= 1
    });

    // 2. The dead node comes back: full resync as standby, then keepalived fails back.
    delete_vips(&lab, 0);
    for link in [&lab.wan[0], &lab.lan[0], &lab.sync[0]] {
        lab.switch.set_link(&lab.gateways[0], &link.name, true);
    }
    // The killed daemon left its control socket file behind.
    let _ = std::fs::remove_file(&a.socket);
    drop(a);
    let a = warpline_up(
        &lab.gateways[0],
        &dir,
        "wla",
        &pair_config(&lab, 0, &gateway_key, &client_key, xdp),
    );
    wait_for("A to resync B's sessions", Duration::from_secs(10), || {
        ha_status(&a)["records_held"].as_u64() >= Some(1)
    });
    let a_handshakes = handshakes(&a, &client_key);
    let restarted = Instant::now();
    let _keepalived_a = start_keepalived(&lab, 0, &a, &secure);
    wait_for("A to take over again", Duration::from_secs(10), || {
        role(&a) == "active"
    });
    wait_for("B to step down", Duration::from_secs(5), || {
        role(&b) == "standby"
    });
    let failed_back = Instant::now();
    probe.wait_resumed(failed_back, Duration::from_secs(10));
    let handshakes_when_resumed = handshakes(&a, &client_key) - a_handshakes;
    let gap = probe.largest_gap(restarted);
    println!("failback (preemption): gap {gap:?}, new handshakes at A: {handshakes_when_resumed}");
    assert_eq!(
        handshakes_when_resumed, 0,
        "failback waited for a handshake"
    );
    assert!(gap <= MAX_GAP, "failback gap {gap:?} > {MAX_GAP:?}");
    let (a_status, b_status) = (ha_status(&a), ha_status(&b));
    assert!(
        a_status["sessions_owned"].as_u64() >= Some(1),
        "{a_status:#}"
    );
    assert_eq!(b_status["sessions_owned"], 0, "two owners: {b_status:#}");

    wait_for("B to resync A's sessions", Duration::from_secs(5), || {
        ha_status(&b)["records_held"].as_u64() >= Some(1)
    });

    // 3. The active node's WAN link is cut: interface tracking moves the VIPs.
    let cut = Instant::now();
    lab.switch
        .set_link(&lab.gateways[0], &lab.wan[0].name, false);
    wait_for(
        "B to take over on the link cut",
        Duration::from_secs(10),
        || role(&b) == "active",
    );
    probe.wait_resumed(cut + Duration::from_millis(50), Duration::from_secs(10));
    let gap = probe.largest_gap(cut - Duration::from_millis(100));
    println!("failover (WAN link cut): gap {gap:?}");
    assert!(gap <= MAX_GAP, "link-cut gap {gap:?} > {MAX_GAP:?}");
    wait_for("A to step down", Duration::from_secs(5), || {
        role(&a) == "standby"
    });

    // 4. The link comes back (A preempts again), then only A's warpline dies: keepalived's
    // check script notices within a second and hands the VIPs to B.
    wait_for("A to resync B's sessions", Duration::from_secs(5), || {
        ha_status(&a)["records_held"].as_u64() >= Some(1)
    });
    lab.switch
        .set_link(&lab.gateways[0], &lab.wan[0].name, true);
    wait_for("A to take over again", Duration::from_secs(10), || {
        role(&a) == "active"
    });
    wait_for("B to resync A's sessions", Duration::from_secs(5), || {
        ha_status(&b)["records_held"].as_u64() >= Some(1)
    });
    let mut a = a;
    let died = Instant::now();
    let _ = a.proc.child.kill();
    let _ = a.proc.child.wait();
    wait_for(
        "B to take over from a dead daemon",
        Duration::from_secs(10),
        || role(&b) == "active",
    );
    probe.wait_resumed(died + Duration::from_millis(50), Duration::from_secs(10));
    let gap = probe.largest_gap(died - Duration::from_millis(100));
    println!("failover (warpline killed, keepalived alive): gap {gap:?}");
    assert!(gap <= MAX_GAP, "daemon-death gap {gap:?} > {MAX_GAP:?}");
}

/// A worker of the active node panics (the hostile-input issue's fault case): the daemon
/// exits with a failure and its XDP program detached (`daemon_faults.rs`), keepalived's check
/// script sees the daemon gone and moves the VIPs, and the partner carries the client's synced
/// session on without a handshake.
#[test]
fn a_worker_panic_on_the_active_node_hands_over_to_the_partner() {
    /// Frames A's worker takes before it panics: a few seconds of the client's probe.
    const PANIC_AFTER: u64 = 2_000;
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new();
    let dir = TempDir::new();
    let secure = SecureDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let _echo = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER), ECHO_PORT));
    let SyncedPair {
        mut a,
        b,
        keepalived_a: _keepalived_a,
        keepalived_b: _keepalived_b,
        client: _client,
        probe,
    } = synced_pair(
        &lab,
        &dir,
        &secure,
        (&gateway_key, &client_key),
        true,
        |command| {
            command.env("WARPLINE_TEST_WORKER_PANIC_AFTER", PANIC_AFTER.to_string());
        },
    );
    let status = a
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("A's worker never panicked");
    let died = Instant::now();
    assert!(
        !status.success(),
        "a worker panic must end the gateway with a failure, not {status}"
    );
    wait_for("B to take over", Duration::from_secs(10), || {
        role(&b) == "active"
    });
    probe.wait_resumed(died + Duration::from_millis(50), Duration::from_secs(10));
    let handshakes_when_resumed = handshakes(&b, &client_key);
    let gap = probe.largest_gap(died - Duration::from_secs(1));
    println!(
        "failover (worker panic): gap {gap:?}, handshakes at B when traffic resumed: \
         {handshakes_when_resumed}"
    );
    assert_eq!(handshakes_when_resumed, 0, "traffic waited for a handshake");
    assert!(gap <= MAX_GAP, "worker-panic gap {gap:?} > {MAX_GAP:?}");
    // The killed daemon left its control socket file behind.
    let _ = std::fs::remove_file(&a.socket);
}

/// WireGuard transport packets sent to the client, as (receiver index, counter), captured
/// on the client's link with an AF_PACKET socket.
struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<(u32, u64)>>>,
}

impl Capture {
    fn start(host: &Host, link: &Endpoint) -> Self {
        let index = link.index;
        let fd = host.run(move || {
            // SAFETY: plain socket(2) call with constant arguments.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_DGRAM,
                    i32::from((libc::ETH_P_IP as u16).to_be()),
                )
            };
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let address = libc::sockaddr_ll {
                sll_family: libc::AF_PACKET as u16,
                sll_protocol: (libc::ETH_P_IP as u16).to_be(),
                sll_ifindex: index as i32,
                sll_hatype: 0,
                sll_pkttype: 0,
                sll_halen: 0,
                sll_addr: [0; 8],
            };
            // SAFETY: `address` is a live sockaddr_ll of the length passed; fd is ours.
            let rc = unsafe {
                libc::bind(
                    fd,
                    std::ptr::from_ref(&address).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
            fd
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            use std::os::fd::FromRawFd;
            // SAFETY: `fd` is an open socket this thread now owns alone.
            let socket = unsafe { UdpSocket::from_raw_fd(fd) };
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                let Ok(len) = socket.recv(&mut buf) else {
                    continue;
                };
                let packet = &buf[..len];
                let header = usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4;
                if len < header + 8 + 16 || packet[9] != 17 {
                    continue;
                }
                let udp = &packet[header..];
                let source_port = u16::from_be_bytes([udp[0], udp[1]]);
                let payload = &udp[8..];
                if source_port == 51820 && payload[0] == 4 {
                    let receiver = u32::from_le_bytes(payload[4..8].try_into().unwrap());
                    let counter = u64::from_le_bytes(payload[8..16].try_into().unwrap());
                    seen.push((receiver, counter));
                }
            }
            seen
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<(u32, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn split_brain_never_reuses_a_key_and_counter() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new();
    let dir = TempDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let _echo = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER), ECHO_PORT));
    let a = warpline_up(
        &lab.gateways[0],
        &dir,
        "wla",
        &gateway_config(0, &gateway_key, &client_key),
    );
    let b = warpline_up(
        &lab.gateways[1],
        &dir,
        "wlb",
        &gateway_config(1, &gateway_key, &client_key),
    );
    a.cli_ha("promote");
    // No keepalived: the client talks to A's own address, and A serves the LAN.
    lab.gateways[0]
        .add_address(&lab.lan[0], ip(LAN_VIP), 24)
        .unwrap();
    // The client also routes the gateways' tunnel address (for the split-brain sends).
    let (_client, probe) =
        stock_client_with_probe(&lab, &dir, &client_key, &gateway_key, "10.210.0.1");
    probe.wait_resumed(Instant::now(), Duration::from_secs(10));
    wait_for("B to hold A's session", Duration::from_secs(5), || {
        ha_status(&b)["records_held"].as_u64() >= Some(1)
    });

    // Split brain: the sync link fails, and B promotes itself while A keeps going. Both now send to the client on
    // the same session keys: from inside each gateway, datagrams to the client's tunnel
    // address go out through each node's own tunnel.
    let capture = Capture::start(&lab.client, &lab.client_wan);
    lab.switch
        .set_link(&lab.gateways[0], &lab.sync[0].name, false);
    b.cli_ha("promote");
    assert_eq!((role(&a), role(&b)), ("active".into(), "active".into()));
    let client_listener = lab
        .client
        .run(|| UdpSocket::bind((ip(CLIENT_TUNNEL), 9999)).unwrap());
    client_listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for round in 0..200u32 {
        for (node, host) in lab.gateways.iter().enumerate() {
            host.run(|| {
                let socket = UdpSocket::bind("10.99.0.1:0").unwrap();
                let _ = socket.send_to(&[node as u8, round as u8], (ip(CLIENT_TUNNEL), 9999));
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut from_node = [0u32; 2];
    let mut buf = [0u8; 16];
    while let Ok((2, _)) = client_listener.recv_from(&mut buf) {
        from_node[usize::from(buf[0] & 1)] += 1;
    }
    std::thread::sleep(Duration::from_millis(200));
    let seen = capture.finish();
    drop(probe);

    let mut distinct = HashSet::new();
    let duplicates: Vec<_> = seen
        .iter()
        .filter(|pair| !distinct.insert(**pair))
        .collect();
    let epochs: HashSet<u64> = seen.iter().map(|(_, counter)| counter >> 32).collect();
    println!(
        "split brain: {} transport packets to the client, {} distinct (index, counter), epochs \
         {epochs:?}; the client accepted {} from A and {} from B",
        seen.len(),
        distinct.len(),
        from_node[0],
        from_node[1]
    );
    assert!(
        seen.len() >= 300,
        "too few packets captured: {}",
        seen.len()
    );
    assert!(
        duplicates.is_empty(),
        "(key, counter) reused: {duplicates:?}"
    );
    assert!(
        epochs.len() >= 2,
        "both nodes sent on the session: {epochs:?}"
    );
    // The stock client's replay window follows the highest counter: once it accepted the
    // higher epoch, the other node's packets are refused as old: safe, and one node wins.
    assert!(
        from_node[1] >= 150,
        "the client refused the newer epoch: {from_node:?}"
    );
}

/// The `cargo xtask bench failover` suite (ignored by `cargo test`): `WARPLINE_FAILOVERS`
/// failovers (default 20) by cutting and restoring the active node's WAN link, for the
/// synced pair and for the same topology without sync (plain WireGuard behind keepalived:
/// the new node must wait for the client's next handshake), in one run. Prints the gap
/// distribution and writes `target/bench/failover.json` and `failover.svg`.
#[test]
#[ignore = "a benchmark: cargo xtask bench failover"]
fn failover_gap_distribution() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let failovers: usize = std::env::var("WARPLINE_FAILOVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let mut results = Vec::new();
    for mode in [
        BenchMode::Keepalived,
        BenchMode::Builtin,
        BenchMode::Unsynced,
    ] {
        let (gaps, handshakes) = measure_failovers(mode, failovers);
        results.push((mode, gaps, handshakes));
    }
    let percentile = |gaps: &[f64], p: f64| {
        let mut sorted = gaps.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    };
    println!("\nfailover gap over {failovers} failovers (the active node cut off, then restored):");
    println!(
        "{:<38} {:>9} {:>9} {:>9} {:>11}",
        "mode", "p50 ms", "p99 ms", "max ms", "handshakes"
    );
    let mut rows = Vec::new();
    for (bench_mode, gaps, handshakes) in &results {
        let mode = bench_mode.name();
        let (p50, p99, max) = (
            percentile(gaps, 0.5),
            percentile(gaps, 0.99),
            percentile(gaps, 1.0),
        );
        println!("{mode:<38} {p50:>9.0} {p99:>9.0} {max:>9.0} {handshakes:>11}");
        rows.push(serde_json::json!({
            "mode": mode, "cut": bench_mode.cut(), "failovers": gaps.len(), "gaps_ms": gaps,
            "p50_ms": p50, "p99_ms": p99, "max_ms": max, "handshakes": handshakes,
        }));
    }
    let plain_p50 = percentile(&results[2].1, 0.5);
    println!(
        "ratios of the medians to no sync: keepalived {:.3}x, builtin {:.3}x",
        percentile(&results[0].1, 0.5) / plain_p50,
        percentile(&results[1].1, 0.5) / plain_p50
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let report = serde_json::json!({
        "suite": "failover",
        "machine": std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
            info.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        }),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "conditions": "namespaces on Linux bridges, veth, portable mode, keepalived VRRPv3 advert_int 0.05, 500 UDP echoes/s through the tunnel",
        "results": rows,
    });
    std::fs::write(
        out.join("failover.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join("failover.svg"), gap_chart(&results)).unwrap();
    println!(
        "wrote {0}/failover.json and {0}/failover.svg",
        out.display()
    );
}

/// The pairs the benchmark compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BenchMode {
    /// warpline HA under keepalived; the WAN link is cut (interface tracking).
    Keepalived,
    /// `HaMode = builtin`; the node is cut off (WAN and sync link: heartbeats stop).
    Builtin,
    /// No sync, keepalived moves the VIP: the new node has no session.
    Unsynced,
}

impl BenchMode {
    fn name(self) -> &'static str {
        match self {
            Self::Keepalived => "warpline HA (keepalived, session sync)",
            Self::Builtin => "warpline HA (builtin, session sync)",
            Self::Unsynced => "no sync (WireGuard-style, keepalived)",
        }
    }

    fn cut(self) -> &'static str {
        match self {
            Self::Builtin => "WAN and sync link",
            Self::Keepalived | Self::Unsynced => "WAN link",
        }
    }
}

/// One mode's gaps in ms and the handshakes the gateways completed during the failovers.
fn measure_failovers(mode: BenchMode, failovers: usize) -> (Vec<f64>, u64) {
    let synced = mode != BenchMode::Unsynced;
    let lab = Lab::new();
    let dir = TempDir::new();
    let secure = SecureDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let _echo = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER), ECHO_PORT));
    let config = |node| match mode {
        BenchMode::Keepalived => gateway_config(node, &gateway_key, &client_key),
        BenchMode::Builtin => builtin_config(node, &gateway_key, &client_key, &lab),
        BenchMode::Unsynced => gateway_config(node, &gateway_key, &client_key)
            .lines()
            .filter(|line| !line.starts_with("Ha"))
            .map(|line| format!("{line}\n"))
            .collect(),
    };
    let gateways = [
        warpline_up(&lab.gateways[0], &dir, "wla", &config(0)),
        warpline_up(&lab.gateways[1], &dir, "wlb", &config(1)),
    ];
    let _keepalived = (mode != BenchMode::Builtin).then(|| {
        [
            start_keepalived_tracking(&lab, 0, &gateways[0], &secure, synced),
            start_keepalived_tracking(&lab, 1, &gateways[1], &secure, synced),
        ]
    });
    let (_client, probe) = stock_client_with_probe(&lab, &dir, &client_key, &gateway_key, WAN_VIP);
    probe.wait_resumed(Instant::now(), Duration::from_secs(20));
    let total_handshakes = || -> u64 { gateways.iter().map(|g| handshakes(g, &client_key)).sum() };
    let handshakes_before = total_handshakes();
    let mut gaps = Vec::new();
    while gaps.len() < failovers {
        // Cut A (failover to B), then restore it (keepalived preempts back to A).
        for up in [false, true] {
            if gaps.len() == failovers {
                break;
            }
            // Builtin: A resyncs after the links are back, before it is elected.
            if up && mode == BenchMode::Keepalived {
                wait_for("A to resync", Duration::from_secs(10), || {
                    ha_status(&gateways[0])["records_held"].as_u64() >= Some(1)
                });
            }
            // Measure only real failovers: the VIP must be on the node losing it.
            let owner = usize::from(up);
            wait_for(
                "the VIP on the node about to lose it",
                Duration::from_secs(10),
                || holds_vip(&lab, owner),
            );
            let at = Instant::now();
            lab.switch.set_link(&lab.gateways[0], &lab.wan[0].name, up);
            if mode == BenchMode::Builtin {
                lab.switch.set_link(&lab.gateways[0], &lab.sync[0].name, up);
            }
            probe.wait_resumed(at + Duration::from_millis(300), Duration::from_secs(40));
            std::thread::sleep(Duration::from_millis(700));
            let gap = probe.largest_gap(at - Duration::from_millis(50));
            gaps.push(gap.as_secs_f64() * 1000.0);
            println!(
                "{mode:?} failover {}: {:.0} ms",
                gaps.len(),
                gaps.last().unwrap()
            );
            if synced && !up {
                wait_for("B to be active", Duration::from_secs(10), || {
                    ha_status(&gateways[1])["role"] == "active"
                });
            }
        }
    }
    (gaps, total_handshakes() - handshakes_before)
}

/// Whether gateway `node` holds the WAN VIP now.
fn holds_vip(lab: &Lab, node: usize) -> bool {
    let index = lab.wan[node].index;
    lab.gateways[node]
        .netlink(|netlink| netlink.addresses(index))
        .is_ok_and(|addresses| addresses.iter().any(|(address, _)| *address == ip(WAN_VIP)))
}

/// A bar chart (SVG) of p50 and p99 per mode, on a log scale (the modes differ 100-fold).
fn gap_chart(results: &[(BenchMode, Vec<f64>, u64)]) -> String {
    let mut svg = String::from(
        "<svg xmlns='http://www.w3.org/2000/svg' width='640' height='360' font-family='sans-serif' font-size='13'>\n\
         <rect width='640' height='360' fill='white'/>\n\
         <text x='320' y='24' text-anchor='middle' font-size='16'>Failover gap (ms, log scale): warpline HA vs no sync</text>\n",
    );
    let y_of = |ms: f64| 320.0 - (ms.max(1.0).log10() / 5.0) * 270.0;
    for decade in 0..=5 {
        let y = y_of(10f64.powi(decade));
        svg.push_str(&format!(
            "<line x1='70' x2='620' y1='{y:.0}' y2='{y:.0}' stroke='#ddd'/><text x='64' y='{:.0}' text-anchor='end'>{}</text>\n",
            y + 4.0,
            10u64.pow(decade as u32)
        ));
    }
    for (slot, (mode, gaps, _)) in results.iter().enumerate() {
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let p = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        let x = 90.0 + slot as f64 * 180.0;
        for (bar, (label, value, color)) in [("p50", p(0.5), "#4a7"), ("p99", p(0.99), "#c64")]
            .into_iter()
            .enumerate()
        {
            let bx = x + bar as f64 * 60.0;
            let y = y_of(value);
            svg.push_str(&format!(
                "<rect x='{bx:.0}' y='{y:.0}' width='50' height='{:.0}' fill='{color}'/><text x='{:.0}' y='{:.0}' text-anchor='middle'>{label} {value:.0}</text>\n",
                320.0 - y,
                bx + 25.0,
                y - 6.0
            ));
        }
        svg.push_str(&format!(
            "<text x='{:.0}' y='345' text-anchor='middle'>{}</text>\n",
            x + 55.0,
            match mode {
                BenchMode::Keepalived => "keepalived + sync",
                BenchMode::Builtin => "builtin + sync",
                BenchMode::Unsynced => "no sync (handshake)",
            }
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// `HaMode = builtin`: the same pair without keepalived. The nodes elect the active one
/// over the sync channel (priorities 150 / 100, preemption on), the active one adds the
/// VIPs and announces them with gratuitous ARP.
fn builtin_config(node: usize, key: &PrivateKey, client: &PrivateKey, lab: &Lab) -> String {
    let priority = if node == 0 { 150 } else { 100 };
    gateway_config(node, key, client)
        .replace("HaMode = keepalived", "HaMode = builtin")
        .replacen(
            "\n\n[Peer]",
            &format!(
                "\nHaVirtualIp = {WAN_VIP}/24 dev {}\nHaVirtualIp = {LAN_VIP}/24 dev {}\n\
                 HaPriority = {priority}\n\n[Peer]",
                lab.wan[node].name, lab.lan[node].name
            ),
            1,
        )
}

#[test]
fn builtin_pair_elects_fails_over_and_back_without_keepalived() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new();
    let dir = TempDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let _echo = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER), ECHO_PORT));
    let config = |node| builtin_config(node, &gateway_key, &client_key, &lab);
    let mut a = warpline_up(&lab.gateways[0], &dir, "wla", &config(0));
    let b = warpline_up(&lab.gateways[1], &dir, "wlb", &config(1));
    wait_for("A to be elected", Duration::from_secs(10), || {
        role(&a) == "active" && holds_vip(&lab, 0)
    });
    assert_eq!(role(&b), "standby");
    assert!(!holds_vip(&lab, 1), "both nodes hold the VIP");
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_warpline"))
        .args(["ha", "promote", "wlb", "--control-socket"])
        .arg(&b.socket)
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "builtin mode let a manual promote through"
    );

    let (_client, probe) = stock_client_with_probe(&lab, &dir, &client_key, &gateway_key, WAN_VIP);
    probe.wait_resumed(Instant::now(), Duration::from_secs(10));
    wait_for("B to hold A's session", Duration::from_secs(5), || {
        ha_status(&b)["records_held"].as_u64() >= Some(1)
    });

    // A loses power: B hears no heartbeat for 600 ms, takes the VIPs and the session.
    let killed = Instant::now();
    for link in [&lab.wan[0], &lab.lan[0], &lab.sync[0]] {
        lab.switch.set_link(&lab.gateways[0], &link.name, false);
    }
    let _ = a.proc.child.kill();
    let _ = a.proc.child.wait();
    probe.wait_resumed(killed + Duration::from_millis(50), Duration::from_secs(10));
    let handshakes_when_resumed = handshakes(&b, &client_key);
    let gap = probe.largest_gap(killed - Duration::from_millis(100));
    println!(
        "builtin failover (node killed): gap {gap:?}, handshakes at B: {handshakes_when_resumed}"
    );
    assert_eq!(role(&b), "active");
    assert!(holds_vip(&lab, 1));
    assert_eq!(handshakes_when_resumed, 0, "traffic waited for a handshake");
    assert!(gap <= MAX_GAP, "failover gap {gap:?} > {MAX_GAP:?}");

    // A comes back: it resyncs, preempts (higher priority), and B gives the VIPs up.
    delete_vips(&lab, 0);
    for link in [&lab.wan[0], &lab.lan[0], &lab.sync[0]] {
        lab.switch.set_link(&lab.gateways[0], &link.name, true);
    }
    let _ = std::fs::remove_file(&a.socket);
    drop(a);
    let restarted = Instant::now();
    let a = warpline_up(&lab.gateways[0], &dir, "wla", &config(0));
    wait_for("A to take over again", Duration::from_secs(10), || {
        role(&a) == "active"
    });
    wait_for("B to step down", Duration::from_secs(5), || {
        role(&b) == "standby" && !holds_vip(&lab, 1)
    });
    probe.wait_resumed(Instant::now(), Duration::from_secs(10));
    let gap = probe.largest_gap(restarted);
    let a_status = ha_status(&a);
    println!(
        "builtin failback (preemption): gap {gap:?}, A took over {} session(s), handshakes {}",
        a_status["sessions_taken_over"],
        handshakes(&a, &client_key)
    );
    assert!(
        a_status["sessions_taken_over"].as_u64() >= Some(1),
        "{a_status:#}"
    );
    assert!(gap <= MAX_GAP, "failback gap {gap:?} > {MAX_GAP:?}");
    assert_eq!(ha_status(&b)["sessions_owned"], 0, "two owners");
}

const CLIENT_WAN_V6: &str = "fd10::50";
const WAN_VIP_V6: &str = "fd10::100";

/// The client's neighbour entry for `address` on its WAN link: the MAC it sends to.
fn client_neighbour_mac(lab: &Lab, address: &str) -> Option<String> {
    let ip_tool = require_tool("ip", "apt iproute2");
    let output = command_in(lab.client.netns(), &ip_tool)
        .args(["-6", "neigh", "show", address, "dev", &lab.client_wan.name])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|word| *word == "lladdr")?;
    words.next().map(str::to_owned)
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

/// Builtin mode with `HaTrackInterface` on a node's LAN link and an IPv6 VIP on its WAN
/// link. The active node's LAN link loses carrier: it steps down, the partner takes the VIPs
/// and the session (no handshake) and announces the IPv6 VIP with unsolicited neighbour
/// advertisements, so the client's neighbour entry moves to the partner's MAC without the
/// client sending anything to it. The link returns: the higher node takes the role back
/// (preemption) and the entry moves back.
#[test]
fn builtin_pair_tracks_an_interface_and_announces_ipv6_vips() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new();
    let dir = TempDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let _echo = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER), ECHO_PORT));
    lab.client
        .add_address(&lab.client_wan, ip(CLIENT_WAN_V6), 64)
        .unwrap();
    let config = |node: usize| {
        builtin_config(node, &gateway_key, &client_key, &lab).replacen(
            "\n\n[Peer]",
            &format!(
                "\nHaVirtualIp = {WAN_VIP_V6}/64 dev {}\nHaTrackInterface = {}\n\n[Peer]",
                lab.wan[node].name, lab.lan[node].name
            ),
            1,
        )
    };
    let a = warpline_up(&lab.gateways[0], &dir, "wla", &config(0));
    let b = warpline_up(&lab.gateways[1], &dir, "wlb", &config(1));
    wait_for("A to be elected", Duration::from_secs(10), || {
        role(&a) == "active" && holds_vip(&lab, 0)
    });
    let (_client, probe) = stock_client_with_probe(&lab, &dir, &client_key, &gateway_key, WAN_VIP);
    probe.wait_resumed(Instant::now(), Duration::from_secs(10));
    wait_for("B to hold A's session", Duration::from_secs(5), || {
        ha_status(&b)["records_held"].as_u64() >= Some(1)
    });
    // The client learns the IPv6 VIP's MAC with one datagram, and sends it nothing after.
    lab.client.run(|| {
        let socket = UdpSocket::bind(SocketAddr::new(ip(CLIENT_WAN_V6), 0)).unwrap();
        socket
            .send_to(b"hello", SocketAddr::new(ip(WAN_VIP_V6), 9))
            .unwrap();
    });
    let (a_mac, b_mac) = (mac_text(lab.wan[0].mac), mac_text(lab.wan[1].mac));
    wait_for(
        "the client to resolve the IPv6 VIP to A",
        Duration::from_secs(5),
        || client_neighbour_mac(&lab, WAN_VIP_V6).as_deref() == Some(a_mac.as_str()),
    );

    // A's tracked LAN link loses carrier (its switch port dies; A's interface stays
    // administratively up): A is no longer eligible, B takes over at once.
    let cut = Instant::now();
    lab.switch.set_port(&lab.lan[0].name, false);
    wait_for(
        "B to take over from the faulted A",
        Duration::from_secs(5),
        || role(&b) == "active" && holds_vip(&lab, 1),
    );
    let a_status = ha_status(&a);
    assert_eq!(a_status["role"], "standby", "{a_status:#}");
    assert_eq!(
        a_status["tracked_down"],
        serde_json::json!([lab.lan[0].name]),
        "{a_status:#}"
    );
    assert!(!holds_vip(&lab, 0), "the faulted node kept the VIP");
    wait_for(
        "the client's IPv6 neighbour entry to move to B",
        Duration::from_secs(3),
        || client_neighbour_mac(&lab, WAN_VIP_V6).as_deref() == Some(b_mac.as_str()),
    );
    probe.wait_resumed(cut + Duration::from_millis(50), Duration::from_secs(10));
    let gap = probe.largest_gap(cut - Duration::from_millis(100));
    println!(
        "builtin, tracked link down: gap {gap:?}, handshakes at B {}",
        handshakes(&b, &client_key)
    );
    assert_eq!(
        handshakes(&b, &client_key),
        0,
        "traffic waited for a handshake"
    );
    assert!(gap <= MAX_GAP, "failover gap {gap:?} > {MAX_GAP:?}");

    // The carrier returns: A ranks 150 again and, with preemption on, takes the role back.
    lab.switch.set_port(&lab.lan[0].name, true);
    wait_for("A to take the role back", Duration::from_secs(5), || {
        role(&a) == "active" && holds_vip(&lab, 0)
    });
    wait_for("B to step down", Duration::from_secs(5), || {
        role(&b) == "standby" && !holds_vip(&lab, 1)
    });
    assert_eq!(ha_status(&a)["tracked_down"], serde_json::json!([]));
    wait_for(
        "the client's IPv6 neighbour entry to move back to A",
        Duration::from_secs(3),
        || client_neighbour_mac(&lab, WAN_VIP_V6).as_deref() == Some(a_mac.as_str()),
    );
}

/// keepalived's transitions reach the gateway through `warpline ha follow-keepalived`, the
/// template's FIFO script, in the order keepalived wrote them. Checked without keepalived,
/// by writing its lines: a MASTER before the daemon is up is retried until it applies; a
/// burst's last transition wins; junk lines are reported and skipped; SIGTERM (keepalived
/// sends it before its STOP lines) does not stop the follower; closing the FIFO does.
#[test]
fn follow_keepalived_applies_fifo_transitions_in_order() {
    use std::io::Write;
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new();
    let dir = TempDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let fifo = dir.0.join("notify.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo failed");
    let log_path = dir.0.join("follower.log");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_warpline"));
    command
        .args(["ha", "follow-keepalived", "wla"])
        .arg(&fifo)
        .arg("--control-socket")
        .arg(dir.0.join("wla.sock"))
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()));
    let mut follower = Proc::spawn(command, "warpline ha follow-keepalived");
    // Opening for writing waits for the follower to open the FIFO for reading.
    let keepalived = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let send = |lines: &[&str]| {
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        (&keepalived).write_all(text.as_bytes()).unwrap();
    };
    let transition = |state: &str| format!("INSTANCE \"warpline_wla\" {state} 150");

    send(&[&transition("MASTER")]);
    std::thread::sleep(Duration::from_millis(300));
    let a = warpline_up(
        &lab.gateways[0],
        &dir,
        "wla",
        &gateway_config(0, &gateway_key, &client_key),
    );
    wait_for("the retried promote", Duration::from_secs(5), || {
        role(&a) == "active"
    });

    send(&[
        &transition("BACKUP"),
        &transition("MASTER"),
        &transition("BACKUP"),
    ]);
    wait_for(
        "the burst's last transition",
        Duration::from_secs(5),
        || role(&a) == "standby",
    );

    let long = "x".repeat(5000);
    send(&[
        "garbage",
        &long,
        "INSTANCE \"warpline_wla\" SLEEPING 150",
        "INSTANCE \"warpline_wlb\" MASTER 150",
    ]);
    (&keepalived).write_all(b"\xff\xfe\n").unwrap();
    send(&[&transition("MASTER")]);
    wait_for("a transition after junk", Duration::from_secs(5), || {
        role(&a) == "active"
    });

    let pid = follower.child.id() as i32;
    // SAFETY: kill(2) on our own child; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(200));
    send(&[&transition("STOP")]);
    wait_for("STOP after SIGTERM", Duration::from_secs(5), || {
        role(&a) == "standby"
    });

    drop(keepalived);
    let deadline = Instant::now() + Duration::from_secs(5);
    let exit = loop {
        if let Some(exit) = follower.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the follower outlived its FIFO");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(exit.success(), "follower exited with {exit}:\n{log}");
    assert_eq!(log.matches("ignored").count(), 4, "{log}");
    assert!(log.contains("retrying"), "{log}");
}
