//! warpline as a client with several gateways, as root, in a namespace lab:
//!
//! ```text
//!  client 1 .51 ─┐                         ┌── gw A 10.210.0.1 ─┐
//!  client 2 .52 ─┼── WAN bridge 10.210.0/24 ┤                    ├── sync link 10.212.0.0/24
//!  (dnsmasq on client 2's host in the DNS test)└── gw B 10.210.0.2 ─┘
//! ```
//!
//! Each gateway echoes UDP on its tunnel address 10.99.0.1:9000, so the probe's echoes come
//! from whichever gateway the client uses. Clients send 500 datagrams/s with
//! `FailoverAfter = 2`.
//!
//! 1. Two gateways that are not a pair (same identity, no sync): the active one dies; the
//!    client moves to the second within the detection time, handshakes, traffic resumes.
//! 2. Active-active pair: peers spread over both (client 1 lists A first, client 2 B
//!    first); A dies; client 1 moves to B and resumes *without a handshake* (B takes the
//!    synced session over), client 2 never notices.
//! 3. DNS round-robin: the client's only endpoint is a name with both gateways' addresses
//!    (dnsmasq in a lab host); the gateway it uses dies; it uses the other address.
//! 4. Active-active with a client address pool per node (`HaPool`): the survivor routes
//!    a taken-over client of the dead node's pool while it owns it, and removes the route
//!    when the client fails back.
//!
//! Test 1 also checks per-endpoint settings: the clients' second endpoint has its own
//! `keepalive=`, which becomes the peer's keepalive when the client moves there.
//!
//! Without root each test prints `skipping: <reason>` and passes.

mod gateway_support;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gateway_support::{
    Probe, Proc, Switch, TempDir, UdpEcho, Warpline, command_in, ha_status, ip, require_tool,
    serial, wait_for, warpline_up,
};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Endpoint, Host, require_root};

const HA_KEY: &str = "d2FycGxpbmUtaGEtbGFiLWtleS0zMi1ieXRlcyEhISE=";
const ECHO_PORT: u16 = 9000;
const GATEWAY_TUNNEL: &str = "10.99.0.1";
const FAILOVER_AFTER: Duration = Duration::from_secs(2);

struct Lab {
    switch: Switch,
    gateways: [Host; 2],
    gateway_links: [(Endpoint, Endpoint); 2],
    clients: Vec<Host>,
}

impl Lab {
    fn new(clients: usize) -> Self {
        let switch = Switch::new(&["bw", "bs"]);
        let gateway = |n: u8| {
            let host = Host::new(if n == 1 { "ga" } else { "gb" }).unwrap();
            let wan = switch.plug("bw", &host);
            let sync = switch.plug("bs", &host);
            host.add_address(&wan, ip(&format!("10.210.0.{n}")), 24)
                .unwrap();
            host.add_address(&sync, ip(&format!("10.212.0.{n}")), 24)
                .unwrap();
            (host, (wan, sync))
        };
        let (a, a_links) = gateway(1);
        let (b, b_links) = gateway(2);
        let clients = (0..clients)
            .map(|i| {
                let host = Host::new("c").unwrap();
                let wan = switch.plug("bw", &host);
                host.add_address(&wan, ip(&format!("10.210.0.{}", 51 + i)), 24)
                    .unwrap();
                host
            })
            .collect();
        Self {
            switch,
            gateways: [a, b],
            gateway_links: [a_links, b_links],
            clients,
        }
    }

    /// Kills gateway `node`: its links go, then the daemon.
    fn kill_gateway(&self, node: usize, gateway: &mut Warpline) {
        let (wan, sync) = &self.gateway_links[node];
        self.switch.set_link(&self.gateways[node], &wan.name, false);
        self.switch
            .set_link(&self.gateways[node], &sync.name, false);
        let _ = gateway.proc.child.kill();
        let _ = gateway.proc.child.wait();
    }
}

fn client_tunnel(i: usize) -> IpAddr {
    ip(&format!("10.99.1.{}", 2 + i))
}

/// A gateway for `clients`, synced (`active-active`) or alone.
fn gateway_config(node: usize, key: &PrivateKey, clients: &[PrivateKey], synced: bool) -> String {
    let mut text = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = {GATEWAY_TUNNEL}/24\n",
        key.to_base64()
    );
    if synced {
        text.push_str(&format!(
            "HaMode = active-active\nHaNodeId = {node}\nHaKey = {HA_KEY}\n\
             HaListen = 10.212.0.{}:51900\nHaPeer = 10.212.0.{}:51900\n",
            node + 1,
            2 - node
        ));
    }
    for (i, client) in clients.iter().enumerate() {
        text.push_str(&format!(
            "\n[Peer]\nPublicKey = {}\nAllowedIPs = {}/32\n",
            client.public_key().to_base64(),
            client_tunnel(i)
        ));
    }
    text
}

fn client_config(i: usize, key: &PrivateKey, gateway: &PrivateKey, endpoints: &str) -> String {
    format!(
        "[Interface]\nPrivateKey = {}\nAddress = {}/32\n\n[Peer]\nPublicKey = {}\n\
         Endpoint = {endpoints}\nFailoverAfter = {}\nAllowedIPs = {GATEWAY_TUNNEL}/32\n",
        key.to_base64(),
        client_tunnel(i),
        gateway.public_key().to_base64(),
        FAILOVER_AFTER.as_secs()
    )
}

fn echo(host: &Host) -> UdpEcho {
    UdpEcho::start(host, SocketAddr::new(ip(GATEWAY_TUNNEL), ECHO_PORT))
}

fn probe(host: &Host, i: usize) -> Probe {
    Probe::start(
        host,
        client_tunnel(i),
        SocketAddr::new(ip(GATEWAY_TUNNEL), ECHO_PORT),
    )
}

fn peer(client: &Warpline) -> serde_json::Value {
    client.show_json()["peers"][0].clone()
}

fn client_handshakes(client: &Warpline) -> u64 {
    peer(client)["handshakes"].as_u64().unwrap()
}

/// Runs the client's failover from a dead gateway and returns (gap, handshakes during it).
fn fail_over(
    lab: &Lab,
    dead: usize,
    gateway: &mut Warpline,
    client: &Warpline,
    probe: &Probe,
) -> (Duration, u64) {
    let before = client_handshakes(client);
    let killed = Instant::now();
    lab.kill_gateway(dead, gateway);
    probe.wait_resumed(killed + Duration::from_millis(50), Duration::from_secs(15));
    let handshakes = client_handshakes(client) - before;
    (
        probe.largest_gap(killed - Duration::from_millis(100)),
        handshakes,
    )
}

#[test]
fn a_client_fails_over_to_an_unsynced_gateway_with_a_new_handshake() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new(1);
    let dir = TempDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let config =
        |node| gateway_config(node, &gateway_key, std::slice::from_ref(&client_key), false);
    let mut a = warpline_up(&lab.gateways[0], &dir, "wla", &config(0));
    let _b = warpline_up(&lab.gateways[1], &dir, "wlb", &config(1));
    let _echoes = [echo(&lab.gateways[0]), echo(&lab.gateways[1])];
    let client = warpline_up(
        &lab.clients[0],
        &dir,
        "wlc",
        // The second gateway has a keepalive of its own; both take EndpointPort's port.
        &client_config(
            0,
            &client_key,
            &gateway_key,
            "10.210.0.1, 10.210.0.2 keepalive=3\nEndpointPort = 51820",
        ),
    );
    let probe = probe(&lab.clients[0], 0);
    probe.wait_resumed(Instant::now(), Duration::from_secs(10));
    let shown = peer(&client);
    assert_eq!(shown["failover"]["active"], 0);
    assert_eq!(shown["persistent_keepalive_secs"], serde_json::Value::Null);
    assert_eq!(
        shown["failover"]["keepalive_secs"],
        serde_json::json!([null, 3])
    );

    let (gap, handshakes) = fail_over(&lab, 0, &mut a, &client, &probe);
    let shown = peer(&client);
    println!(
        "unsynced failover: gap {gap:?}, {handshakes} handshake(s); show: {}",
        shown["failover"]
    );
    assert_eq!(shown["failover"]["active"], 1, "{shown:#}");
    assert_eq!(shown["endpoint"], "10.210.0.2:51820");
    assert_eq!(
        shown["persistent_keepalive_secs"], 3,
        "the endpoint's own keepalive did not become the peer's: {shown:#}"
    );
    assert!(handshakes >= 1, "an unsynced gateway needs a handshake");
    // Detection (FailoverAfter) + the silent-endpoint probe (1 s) + a handshake.
    assert!(
        gap <= FAILOVER_AFTER + Duration::from_secs(2),
        "failover took {gap:?}"
    );
    assert!(
        client.show_text().contains(
            "endpoints: 10.210.0.1:51820 keepalive=off, 10.210.0.2:51820 keepalive=3 (active)"
        ),
        "{}",
        client.show_text()
    );
}

#[test]
fn active_active_peers_move_to_the_survivor_without_handshakes() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new(2);
    let dir = TempDir::new();
    let gateway_key = PrivateKey::generate();
    let clients = [PrivateKey::generate(), PrivateKey::generate()];
    let config = |node| gateway_config(node, &gateway_key, &clients, true);
    let mut a = warpline_up(&lab.gateways[0], &dir, "wla", &config(0));
    let b = warpline_up(&lab.gateways[1], &dir, "wlb", &config(1));
    let _echoes = [echo(&lab.gateways[0]), echo(&lab.gateways[1])];
    // The network spreads the peers: client 0 prefers A, client 1 prefers B.
    let c0 = warpline_up(
        &lab.clients[0],
        &dir,
        "wlc0",
        &client_config(
            0,
            &clients[0],
            &gateway_key,
            "10.210.0.1:51820, 10.210.0.2:51820",
        ),
    );
    let c1 = warpline_up(
        &lab.clients[1],
        &dir,
        "wlc1",
        &client_config(
            1,
            &clients[1],
            &gateway_key,
            "10.210.0.2:51820, 10.210.0.1:51820",
        ),
    );
    let (p0, p1) = (probe(&lab.clients[0], 0), probe(&lab.clients[1], 1));
    p0.wait_resumed(Instant::now(), Duration::from_secs(10));
    p1.wait_resumed(Instant::now(), Duration::from_secs(10));
    wait_for(
        "each node to hold the other's session",
        Duration::from_secs(5),
        || {
            ha_status(&a)["records_held"].as_u64() >= Some(1)
                && ha_status(&b)["records_held"].as_u64() >= Some(1)
        },
    );
    assert_eq!(ha_status(&a)["sessions_owned"], 1);
    assert_eq!(ha_status(&b)["sessions_owned"], 1);

    let c1_handshakes = client_handshakes(&c1);
    let watch_c1 = Instant::now();
    let (gap, handshakes) = fail_over(&lab, 0, &mut a, &c0, &p0);
    let status = ha_status(&b);
    println!(
        "active-active failover: gap {gap:?}, {handshakes} handshake(s); survivor: {} sessions \
         owned, {} taken over",
        status["sessions_owned"], status["sessions_taken_over"]
    );
    assert_eq!(handshakes, 0, "the synced session should have resumed");
    assert!(
        gap <= FAILOVER_AFTER + Duration::from_secs(1),
        "failover took {gap:?}"
    );
    assert_eq!(peer(&c0)["failover"]["active"], 1);
    assert!(
        status["sessions_taken_over"].as_u64() >= Some(1),
        "{status:#}"
    );
    assert!(status["sessions_owned"].as_u64() >= Some(2), "{status:#}");
    // Client 1 was on the survivor all along.
    assert_eq!(client_handshakes(&c1), c1_handshakes);
    assert!(
        p1.largest_gap(watch_c1) < Duration::from_millis(500),
        "client 1 was disturbed: {:?}",
        p1.largest_gap(watch_c1)
    );
}

/// dnsmasq answering `gw.lab.test` with both gateways' addresses.
fn start_dnsmasq(host: &Host, dir: &TempDir) -> Proc {
    let dnsmasq = require_tool("dnsmasq", "apt dnsmasq-base");
    let mut command = command_in(host.netns(), &dnsmasq);
    command
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=10.210.0.52",
            "--host-record=gw.lab.test,10.210.0.1",
            "--host-record=gw.lab.test,10.210.0.2",
            "--user=root",
        ])
        .arg(format!(
            "--pid-file={}",
            dir.0.join("dnsmasq.pid").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let dns = Proc::spawn(command, "dnsmasq");
    // Ready once its socket is bound (the namespace's /proc view of this thread).
    wait_for("dnsmasq to listen", Duration::from_secs(5), || {
        host.run(|| {
            std::fs::read_to_string("/proc/thread-self/net/udp")
                .is_ok_and(|table| table.contains(":0035 "))
        })
    });
    dns
}

#[test]
fn a_name_with_two_addresses_fails_over_to_the_second() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new(2);
    let dir = TempDir::new();
    // The second "client" host serves DNS.
    let dns_host = &lab.clients[1];
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let config =
        |node| gateway_config(node, &gateway_key, std::slice::from_ref(&client_key), false);
    let mut gateways = [
        warpline_up(&lab.gateways[0], &dir, "wla", &config(0)),
        warpline_up(&lab.gateways[1], &dir, "wlb", &config(1)),
    ];
    let _echoes = [echo(&lab.gateways[0]), echo(&lab.gateways[1])];
    let _dns = start_dnsmasq(dns_host, &dir);
    // The client resolves through the lab's DNS: its own /etc/resolv.conf in a private mount
    // namespace, as `ip netns exec` gives one.
    let resolv = dir.write(
        "resolv.conf",
        "nameserver 10.210.0.52\noptions timeout:1 attempts:2\n",
    );
    let client = warpline_up_with_resolv(
        &lab.clients[0],
        &dir,
        "wlc",
        &client_config(0, &client_key, &gateway_key, "gw.lab.test:51820"),
        &resolv,
    );
    let probe = probe(&lab.clients[0], 0);
    probe.wait_resumed(Instant::now(), Duration::from_secs(10));
    let first = peer(&client)["failover"]["active_address"]
        .as_str()
        .unwrap()
        .to_owned();
    let dead = usize::from(first != "10.210.0.1:51820");
    let (gap, _) = fail_over(&lab, dead, &mut gateways[dead], &client, &probe);
    let now_using = peer(&client)["failover"]["active_address"]
        .as_str()
        .unwrap()
        .to_owned();
    println!("DNS round-robin: {first} died, moved to {now_using} after {gap:?}");
    assert_ne!(now_using, first);
    assert_eq!(
        peer(&client)["failover"]["endpoints"][0],
        "gw.lab.test:51820"
    );
    assert!(
        gap <= FAILOVER_AFTER + Duration::from_secs(2),
        "failover took {gap:?}"
    );
}

/// `warpline up` in `host` inside a private mount namespace whose /etc/resolv.conf is
/// `resolv` (what `ip netns exec` gives a namespace with its own resolv.conf).
fn warpline_up_with_resolv(
    host: &Host,
    dir: &TempDir,
    name: &str,
    text: &str,
    resolv: &Path,
) -> Warpline {
    let unshare = require_tool("unshare", "apt util-linux");
    let config = dir.write(&format!("{name}.conf"), text);
    let socket = dir.0.join(format!("{name}.sock"));
    let mut command = command_in(host.netns(), &unshare);
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#)
        .arg(resolv)
        .arg(env!("CARGO_BIN_EXE_warpline"))
        .arg("up")
        .arg(&config)
        .arg("--control-socket")
        .arg(&socket);
    let mut proc = Proc::spawn(command, &format!("warpline up {name}"));
    proc.wait_for_file(&socket, Duration::from_secs(10));
    Warpline {
        proc,
        name: name.to_owned(),
        socket,
    }
}

/// The routes of tunnel device `ifname` in gateway `node`'s namespace, as `ip route` prints
/// them.
fn tunnel_routes(lab: &Lab, node: usize, ifname: &str) -> String {
    let ip_tool = require_tool("ip", "apt iproute2");
    let output = command_in(lab.gateways[node].netns(), &ip_tool)
        .args(["-4", "route", "show", "dev", ifname])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn routes_client(routes: &str, client: IpAddr) -> bool {
    routes
        .lines()
        .any(|line| line.split_whitespace().next() == Some(&client.to_string()))
}

/// Active-active with a client address pool per node (`HaPool`): A serves 10.99.1.0/24,
/// B 10.99.2.0/24, and client 0 (10.99.1.2, homed on A) is configured on both. B routes
/// the client only while it owns its session: A dies, the client moves to B and B's echo
/// replies reach it only through the route B adds on the takeover; A comes back, the client
/// fails back to A (A takes the synced session over, B yields it) and B removes the route.
#[test]
fn active_active_nodes_with_their_own_pools_route_taken_over_clients() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new(1);
    let dir = TempDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let config = |node: usize| {
        gateway_config(node, &gateway_key, std::slice::from_ref(&client_key), true).replacen(
            "\n\n[Peer]",
            &format!("\nHaPool = 10.99.{}.0/24\n\n[Peer]", node + 1),
            1,
        )
    };
    let mut a = warpline_up(&lab.gateways[0], &dir, "wla", &config(0));
    let b = warpline_up(&lab.gateways[1], &dir, "wlb", &config(1));
    let _echoes = [echo(&lab.gateways[0]), echo(&lab.gateways[1])];
    let client = warpline_up(
        &lab.clients[0],
        &dir,
        "wlc",
        &client_config(
            0,
            &client_key,
            &gateway_key,
            "10.210.0.1:51820, 10.210.0.2:51820\nFailBack = 4",
        ),
    );
    let home = client_tunnel(0);
    let probe = probe(&lab.clients[0], 0);
    probe.wait_resumed(Instant::now(), Duration::from_secs(10));
    assert!(routes_client(&tunnel_routes(&lab, 0, "wla"), home));
    assert!(
        !routes_client(&tunnel_routes(&lab, 1, "wlb"), home),
        "B routes A's client before taking it over:\n{}",
        tunnel_routes(&lab, 1, "wlb")
    );
    wait_for("B to hold A's session", Duration::from_secs(5), || {
        ha_status(&b)["records_held"].as_u64() >= Some(1)
    });

    let (gap, handshakes) = fail_over(&lab, 0, &mut a, &client, &probe);
    println!("own pools, A died: gap {gap:?}, {handshakes} handshake(s)");
    assert_eq!(handshakes, 0, "the synced session should have resumed");
    assert!(
        routes_client(&tunnel_routes(&lab, 1, "wlb"), home),
        "B took the client over but does not route it:\n{}",
        tunnel_routes(&lab, 1, "wlb")
    );

    // A comes back and resyncs; the client fails back to it (FailBack = 4).
    let (wan, sync) = &lab.gateway_links[0];
    lab.switch.set_link(&lab.gateways[0], &wan.name, true);
    lab.switch.set_link(&lab.gateways[0], &sync.name, true);
    let _ = std::fs::remove_file(&a.socket);
    drop(a);
    let a = warpline_up(&lab.gateways[0], &dir, "wla", &config(0));
    wait_for(
        "A to hold the session again",
        Duration::from_secs(5),
        || ha_status(&a)["records_held"].as_u64() >= Some(1),
    );
    wait_for(
        "the client to fail back to A",
        Duration::from_secs(10),
        || {
            peer(&client)["failover"]["active"] == 0
                && ha_status(&a)["sessions_owned"].as_u64() >= Some(1)
        },
    );
    wait_for(
        "B to remove the client's route",
        Duration::from_secs(5),
        || !routes_client(&tunnel_routes(&lab, 1, "wlb"), home),
    );
    let back = Instant::now();
    probe.wait_resumed(back, Duration::from_secs(10));
    let b_status = ha_status(&b);
    assert_eq!(b_status["sessions_owned"], 0, "{b_status:#}");
    assert!(
        b_status["sessions_yielded"].as_u64() >= Some(1),
        "{b_status:#}"
    );
}
