//! warpline as a gateway for stock WireGuard clients, as root, in a namespace lab:
//!
//! ```text
//!  client host(s) ── veth 10.200.<i>.0/24 ── gateway (warpline up, forwarding) ── veth ── server
//!   tunnel 10.99.1.<i+1>, fd99::1:<i+1>        tunnel 10.99.0.1, fd99::1      10.202.0.0/24, fd02::/64
//! ```
//!
//! 1. the stock `boringtun-cli` client (configured with `wg setconf`) reaches a server behind
//!    the gateway: UDP echo and a TCP transfer over IPv4 and IPv6 inner addresses, iperf3 both
//!    ways, and `warpline show --json` reports the peer's handshake and transfer;
//! 2. fifty `warpline up` clients talk to the server at once through one gateway;
//! 3. a client's outer address moves mid-stream: traffic continues and the gateway's `show`
//!    reports the new endpoint.
//!
//! Without root each test prints `skipping: <reason>` and passes; a missing tool fails the
//! test with the install step (`cargo xtask deps`), since CI installs them.

mod gateway_support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gateway_support::{
    Proc, TempDir, UdpEcho, Warpline, add_route_via, delete_address, enable_forwarding, ip,
    iperf3_rate, now_unix, require_tool, run_in, serial, tcp_mirror, tcp_transfer, udp_echoes,
    warpline_up,
};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, Netlink, Veth, require_root, unique_name};

const ECHO_PORT: u16 = 9000;
const TCP_PORT: u16 = 9001;
const IPERF_PORT: u16 = 5201;
const SERVER_V4: &str = "10.202.0.2";
const SERVER_V6: &str = "fd02::2";

/// Client `i`'s outer (veth) address and the gateway's address on that link.
fn client_outer(i: usize) -> (IpAddr, IpAddr) {
    (ip(&format!("10.200.{i}.2")), ip(&format!("10.200.{i}.1")))
}

/// Client `i`'s tunnel addresses.
fn client_inner(i: usize) -> (IpAddr, IpAddr) {
    (
        ip(&format!("10.99.1.{}", i + 1)),
        ip(&format!("fd99::1:{:x}", i + 1)),
    )
}

/// The hosts and links; dropped (namespaces and every link in them gone) after the
/// processes, which the tests declare later.
struct Lab {
    clients: Vec<(Host, Veth)>,
    gateway: Host,
    server: Host,
}

impl Lab {
    fn new(clients: usize) -> Self {
        let gateway = Host::new("g").unwrap();
        let server = Host::new("s").unwrap();
        let lan = Veth::new(&gateway, &server, 1).unwrap();
        gateway.add_address(&lan.a, ip("10.202.0.1"), 24).unwrap();
        gateway.add_address(&lan.a, ip("fd02::1"), 64).unwrap();
        server.add_address(&lan.b, ip(SERVER_V4), 24).unwrap();
        server.add_address(&lan.b, ip(SERVER_V6), 64).unwrap();
        add_route_via(&server, ip("10.99.0.0"), 16, ip("10.202.0.1"))
            .expect("server route to the tunnel subnet via the gateway");
        add_route_via(&server, ip("fd99::"), 64, ip("fd02::1"))
            .expect("server IPv6 route to the tunnel subnet via the gateway");
        enable_forwarding(&gateway);
        let clients = (0..clients)
            .map(|i| {
                let client = Host::new("c").unwrap();
                let veth = Veth::new(&client, &gateway, 1).unwrap();
                let (outer, gateway_outer) = client_outer(i);
                client.add_address(&veth.a, outer, 24).unwrap();
                gateway.add_address(&veth.b, gateway_outer, 24).unwrap();
                (client, veth)
            })
            .collect();
        Self {
            clients,
            gateway,
            server,
        }
    }

    fn client(&self, i: usize) -> &Host {
        &self.clients[i].0
    }
}

/// The gateway's config: one peer per client key, each owning its tunnel addresses.
fn gateway_config(key: &PrivateKey, clients: &[String]) -> String {
    let mut text = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.99.0.1/32, fd99::1/128\n",
        key.to_base64()
    );
    for (i, public) in clients.iter().enumerate() {
        let (v4, v6) = client_inner(i);
        text.push_str(&format!(
            "\n[Peer]\nPublicKey = {public}\nAllowedIPs = {v4}/32, {v6}/128\n"
        ));
    }
    text
}

/// A `warpline up` client config for client `i`: the gateway is its endpoint and routes the
/// server's LAN.
fn warpline_client_config(i: usize, key: &PrivateKey, gateway: &PrivateKey) -> String {
    let (v4, v6) = client_inner(i);
    let (_, endpoint) = client_outer(i);
    format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = {v4}/32, {v6}/128\n\n\
         [Peer]\nPublicKey = {}\nEndpoint = {endpoint}:51820\n\
         AllowedIPs = 10.99.0.1/32, 10.202.0.0/24, fd99::1/128, fd02::/64\n",
        key.to_base64(),
        gateway.public_key().to_base64()
    )
}

/// Starts the stock boringtun-cli in `host` as client `i`, routed to the gateway's server.
fn start_boringtun(
    dir: &TempDir,
    host: &Host,
    i: usize,
    ifname: &str,
    key: &PrivateKey,
    gateway: &PrivateKey,
) -> Proc {
    let (v4, v6) = client_inner(i);
    let (_, endpoint) = client_outer(i);
    let routes = [
        ("10.99.0.1", 32),
        ("10.202.0.0", 24),
        ("fd99::1", 128),
        ("fd02::", 64),
    ]
    .map(|(destination, len)| (ip(destination), len));
    gateway_support::start_boringtun(
        dir,
        host,
        &gateway_support::StockClient {
            ifname,
            key,
            gateway: &gateway.public_key(),
            endpoint: SocketAddr::new(endpoint, 51820),
            addresses: &[(v4, 32), (v6, 128)],
            routes: &routes,
        },
    )
}

/// Checks the gateway's `warpline show --json` entry for a peer that has talked recently.
fn assert_peer_active(gateway: &Warpline, public_key: &str) -> serde_json::Value {
    let peer = gateway.peer_json(public_key);
    let handshake = peer["latest_handshake_unix_secs"]
        .as_u64()
        .unwrap_or_else(|| panic!("no handshake reported: {peer:#}"));
    let now = now_unix();
    assert!(
        handshake + 60 >= now && handshake <= now + 5,
        "handshake at {handshake} is not recent (now {now}): {peer:#}"
    );
    assert!(
        peer["rx_bytes"].as_u64().unwrap_or(0) > 0 && peer["tx_bytes"].as_u64().unwrap_or(0) > 0,
        "no transfer reported: {peer:#}"
    );
    peer
}

#[test]
fn boringtun_client_reaches_a_server_through_the_gateway() {
    boringtun_client_through_gateway(GatewayMode::Portable);
}

#[test]
fn boringtun_client_reaches_a_server_through_an_xdp_gateway() {
    boringtun_client_through_gateway(GatewayMode::Xdp);
}

/// How the gateway carries its tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GatewayMode {
    /// Kernel UDP socket (no `Attach`).
    Portable,
    /// XDP on the client-facing veth, AF_XDP workers.
    Xdp,
}

fn boringtun_client_through_gateway(mode: GatewayMode) {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let started = Instant::now();
    let iperf3 = require_tool("iperf3", "apt iperf3");
    let lab = Lab::new(1);
    let dir = TempDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let client_public = client_key.public_key().to_base64();

    let config = gateway_config_for(
        &lab,
        mode,
        &gateway_key,
        std::slice::from_ref(&client_public),
    );
    let gateway = warpline_up(&lab.gateway, &dir, &format!("{}g", unique_name()), &config);
    let ifname = format!("{}b", unique_name());
    let mut boringtun = start_boringtun(&dir, lab.client(0), 0, &ifname, &client_key, &gateway_key);
    let _echo_v4 = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER_V4), ECHO_PORT));
    let _echo_v6 = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER_V6), ECHO_PORT));
    let (inner_v4, inner_v6) = client_inner(0);

    // UDP, IPv4 then IPv6: the first datagram waits for the handshake, so allow retries.
    for (local, server) in [(inner_v4, SERVER_V4), (inner_v6, SERVER_V6)] {
        let target = SocketAddr::new(ip(server), ECHO_PORT);
        let ok = udp_echoes(
            lab.client(0),
            SocketAddr::new(local, 0),
            target,
            20,
            5,
            Duration::from_millis(700),
        );
        assert_eq!(
            ok, 20,
            "UDP {local} -> {target}: only {ok} of 20 echoes through boringtun -> warpline"
        );
    }

    // ping: ICMP through the tunnel to the server behind the gateway, answered by its kernel.
    let server_v4: std::net::Ipv4Addr = SERVER_V4.parse().unwrap();
    let rtt = lab
        .client(0)
        .run(|| warpline_dataplane::lab::ping(server_v4))
        .unwrap_or_else(|e| panic!("ping {SERVER_V4} through boringtun -> warpline: {e}"));
    println!("ping {SERVER_V4} through the tunnel ({mode:?} gateway): {rtt:?}");

    // TCP both ways (the server mirrors what it got), 4 MiB each way, IPv4 and IPv6.
    let tcp_v4 = tcp_mirror(&lab.server, SocketAddr::new(ip(SERVER_V4), TCP_PORT), 1);
    let tcp_v6 = tcp_mirror(&lab.server, SocketAddr::new(ip(SERVER_V6), TCP_PORT), 1);
    for server in [SERVER_V4, SERVER_V6] {
        let took = tcp_transfer(
            lab.client(0),
            SocketAddr::new(ip(server), TCP_PORT),
            4 << 20,
        );
        println!("TCP 4 MiB each way with {server}: {took:?}");
    }
    tcp_v4.join().unwrap();
    tcp_v6.join().unwrap();

    // iperf3, 2 s each direction over the IPv4 inner addresses.
    for reverse in [false, true] {
        let rate = iperf3_rate(
            &iperf3,
            lab.client(0),
            &lab.server,
            ip(SERVER_V4),
            IPERF_PORT + u16::from(reverse), // a fresh server and port per run
            reverse,
        );
        let direction = if reverse {
            "server -> client"
        } else {
            "client -> server"
        };
        println!("iperf3 {direction}: {:.1} Mbit/s", rate / 1e6);
        assert!(
            rate > 10e6,
            "iperf3 {direction} through boringtun -> warpline: only {:.2} Mbit/s",
            rate / 1e6
        );
    }

    // The gateway reports the stock client: recent handshake, transfer, its outer endpoint.
    let peer = assert_peer_active(&gateway, &client_public);
    let (client_outer_v4, _) = client_outer(0);
    let endpoint = peer["endpoint"].as_str().unwrap_or_default();
    assert!(
        endpoint.starts_with(&format!("{client_outer_v4}:")),
        "endpoint {endpoint:?} is not the client's veth address: {peer:#}"
    );
    assert!(
        peer["rx_bytes"].as_u64().unwrap() > 8 << 20,
        "less than the TCP and iperf3 traffic received: {peer:#}"
    );
    // And the stock side agrees: wg reads boringtun's UAPI.
    let wg = require_tool("wg", "apt wireguard-tools");
    let dump = run_in(lab.client(0).netns(), &wg, &["show", &ifname, "dump"]);
    let dump = String::from_utf8_lossy(&dump.stdout);
    let line = dump
        .lines()
        .find(|line| line.starts_with(&gateway_key.public_key().to_base64()))
        .unwrap_or_else(|| panic!("gateway peer missing from wg show dump:\n{dump}"));
    let fields: Vec<&str> = line.split('\t').collect();
    assert!(
        fields.len() >= 7 && fields[4] != "0" && fields[5] != "0" && fields[6] != "0",
        "wg show dump: no handshake or transfer for the gateway peer: {line}"
    );

    // In XDP mode the tunnel's data went through the AF_XDP worker, not the kernel socket.
    let show = gateway.show_json();
    let workers = show["workers"].as_array().cloned().unwrap_or_default();
    println!("gateway workers ({mode:?}): {workers:?}");
    if mode == GatewayMode::Xdp {
        assert_eq!(
            workers.len(),
            2,
            "one AF_XDP worker plus the kernel loop: {show:#}"
        );
        let xdp_rx = workers[0]["rx_packets"].as_u64().unwrap_or(0);
        let xdp_tx = workers[0]["tx_packets"].as_u64().unwrap_or(0);
        assert!(
            xdp_rx > 1000 && xdp_tx > 1000,
            "the AF_XDP worker moved too little (rx {xdp_rx}, tx {xdp_tx}): {show:#}"
        );
        assert!(
            workers[1]["rx_packets"].as_u64().unwrap_or(0) < xdp_rx / 10,
            "most data should bypass the kernel socket: {show:#}"
        );
    }

    boringtun.assert_running();
    drop(boringtun);
    gateway.down();
    println!(
        "boringtun-cli interop ({mode:?}) took {:?}",
        started.elapsed()
    );
}

/// How many `warpline up` clients share the gateway in the many-clients test.
const MANY_CLIENTS: usize = 50;

/// Fifty clients, each on its own link to the gateway, which runs XDP on all fifty links.
#[test]
fn fifty_warpline_clients_use_an_xdp_gateway_at_once() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let started = Instant::now();
    let lab = Lab::new(MANY_CLIENTS);
    let dir = TempDir::new();
    let gateway_key = PrivateKey::generate();
    let keys: Vec<PrivateKey> = (0..MANY_CLIENTS).map(|_| PrivateKey::generate()).collect();
    let publics: Vec<String> = keys.iter().map(|k| k.public_key().to_base64()).collect();
    let gateway = warpline_up(
        &lab.gateway,
        &dir,
        &format!("{}g", unique_name()),
        &gateway_config_for(&lab, GatewayMode::Xdp, &gateway_key, &publics),
    );
    let clients: Vec<Warpline> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            warpline_up(
                lab.client(i),
                &dir,
                &format!("{}c", unique_name()),
                &warpline_client_config(i, key, &gateway_key),
            )
        })
        .collect();
    println!(
        "{MANY_CLIENTS} clients and the gateway up after {:?}",
        started.elapsed()
    );
    let _echo_v4 = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER_V4), ECHO_PORT));
    let _echo_v6 = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER_V6), ECHO_PORT));

    // Every client at once: 20 datagrams over IPv4 then 10 over IPv6 each, each retried
    // while its handshake completes.
    let results: Vec<(u16, u16)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..MANY_CLIENTS)
            .map(|i| {
                let host = lab.client(i);
                scope.spawn(move || {
                    let (local_v4, local_v6) = client_inner(i);
                    let wait = Duration::from_millis(1000);
                    let v4 = udp_echoes(
                        host,
                        SocketAddr::new(local_v4, 0),
                        SocketAddr::new(ip(SERVER_V4), ECHO_PORT),
                        20,
                        5,
                        wait,
                    );
                    let v6 = udp_echoes(
                        host,
                        SocketAddr::new(local_v6, 0),
                        SocketAddr::new(ip(SERVER_V6), ECHO_PORT),
                        10,
                        5,
                        wait,
                    );
                    (v4, v6)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed: Vec<(usize, (u16, u16))> = results
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, ok)| ok != (20, 10))
        .collect();
    assert!(
        failed.is_empty(),
        "clients with missing echoes (client, (IPv4 echoes of 20, IPv6 echoes of 10)): {failed:?}"
    );
    println!(
        "{MANY_CLIENTS} x (20 IPv4 + 10 IPv6) echoes done after {:?}",
        started.elapsed()
    );

    let show = gateway.show_json();
    let peers = show["peers"].as_array().expect("peers in show --json");
    assert_eq!(peers.len(), MANY_CLIENTS, "{show:#}");
    for public in &publics {
        assert_peer_active(&gateway, public);
    }
    // Every client's link has its own AF_XDP worker, and each carried its client's data.
    let workers = show["workers"].as_array().expect("workers in show --json");
    assert_eq!(
        workers.len(),
        MANY_CLIENTS + 1,
        "50 AF_XDP workers + the kernel loop"
    );
    let idle: Vec<usize> = (0..MANY_CLIENTS)
        .filter(|&i| workers[i]["rx_packets"].as_u64().unwrap_or(0) < 30)
        .collect();
    assert!(
        idle.is_empty(),
        "workers that carried no client traffic: {idle:?}"
    );
    for client in clients {
        client.down();
    }
    gateway.down();
    println!("{MANY_CLIENTS} clients took {:?}", started.elapsed());
}

#[test]
fn a_roaming_client_keeps_its_tunnel() {
    roaming_client(GatewayMode::Portable);
}

/// Roaming seen by an AF_XDP worker: the new source address (and MAC) reaches the control
/// plane as an event, and replies follow it.
#[test]
fn a_roaming_client_keeps_its_tunnel_through_an_xdp_gateway() {
    roaming_client(GatewayMode::Xdp);
}

/// The gateway's config for `lab`; in XDP mode attached to every client link (one AF_XDP
/// worker per link).
fn gateway_config_for(
    lab: &Lab,
    mode: GatewayMode,
    key: &PrivateKey,
    clients: &[String],
) -> String {
    let config = gateway_config(key, clients);
    match mode {
        GatewayMode::Portable => config,
        GatewayMode::Xdp => {
            let links: Vec<&str> = lab.clients.iter().map(|(_, veth)| &*veth.b.name).collect();
            config.replacen(
                "[Interface]\n",
                &format!(
                    "[Interface]\nAttach = {}\nXdpMode = native\n",
                    links.join(", ")
                ),
                1,
            )
        }
    }
}

fn roaming_client(mode: GatewayMode) {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let started = Instant::now();
    let lab = Lab::new(1);
    let dir = TempDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let client_public = client_key.public_key().to_base64();
    let gateway = warpline_up(
        &lab.gateway,
        &dir,
        &format!("{}g", unique_name()),
        &gateway_config_for(
            &lab,
            mode,
            &gateway_key,
            std::slice::from_ref(&client_public),
        ),
    );
    let client = warpline_up(
        lab.client(0),
        &dir,
        &format!("{}c", unique_name()),
        &warpline_client_config(0, &client_key, &gateway_key),
    );
    let _echo = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER_V4), ECHO_PORT));
    let target = SocketAddr::new(ip(SERVER_V4), ECHO_PORT);
    let (inner, _) = client_inner(0);

    // Establish the tunnel first.
    let ok = udp_echoes(
        lab.client(0),
        SocketAddr::new(inner, 0),
        target,
        5,
        5,
        Duration::from_millis(700),
    );
    assert_eq!(ok, 5, "no traffic before roaming");
    let (old_outer, _) = client_outer(0);
    let before = gateway.peer_json(&client_public);
    assert_eq!(
        before["endpoint"],
        format!("{old_outer}:51820"),
        "{before:#}"
    );

    // A stream of numbered datagrams every 10 ms; a receiver records which came back.
    let socket = lab
        .client(0)
        .run(|| UdpSocket::bind(SocketAddr::new(inner, 0)).unwrap());
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU32::new(0));
    let receiver = {
        let socket = socket.try_clone().unwrap();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((4, _)) = socket.recv_from(&mut buf) {
                    seen.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
                }
            }
            seen
        })
    };
    let sender = {
        let stop = Arc::clone(&stop);
        let sent = Arc::clone(&sent);
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Sends fail while the client has no address: that is the point.
                let _ = socket.send_to(&n.to_be_bytes(), target);
                n += 1;
                sent.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1000));

    // Move the client's outer address: 10.200.0.2 -> 10.200.0.3 on the same veth.
    let new_outer = ip("10.200.0.3");
    let veth_index = lab.clients[0].1.a.index;
    let moved_at = sent.load(Ordering::Relaxed);
    delete_address(lab.client(0), veth_index, old_outer, 24).expect("delete the old address");
    lab.client(0)
        .add_address(&lab.clients[0].1.a, new_outer, 24)
        .expect("add the new address");
    let moved_done = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let seen = receiver.join().unwrap();
    let total = sent.load(Ordering::Relaxed);

    // Traffic continued: allow a short gap around the move (address gone, ARP for the new
    // address), then nearly every datagram must come back.
    let settle = moved_done + 50; // 0.5 s after the move
    let after: Vec<u32> = seen.iter().copied().filter(|&n| n >= settle).collect();
    let expected = total.saturating_sub(settle + 10); // the last few may still be in flight
    println!(
        "roaming: moved at datagram {moved_at}..{moved_done}, {total} sent, {} echoed, \
         {} of {expected} after settling",
        seen.len(),
        after.len()
    );
    assert!(
        expected > 100 && after.len() as u32 >= expected * 9 / 10,
        "traffic did not continue after roaming: {} of {expected} echoes after the move",
        after.len()
    );
    let before_move = seen.iter().filter(|&&n| n < moved_at).count() as u32;
    assert!(
        before_move >= moved_at * 9 / 10,
        "traffic before the move was lossy: {before_move} of {moved_at}"
    );

    let peer = assert_peer_active(&gateway, &client_public);
    assert_eq!(
        peer["endpoint"],
        format!("{new_outer}:51820"),
        "the gateway did not follow the client's new address: {peer:#}"
    );
    let text = gateway.show_text();
    assert!(
        text.contains(&format!("endpoint: {new_outer}:51820")),
        "warpline show does not report the new endpoint:\n{text}"
    );
    if mode == GatewayMode::Xdp {
        let show = gateway.show_json();
        let worker_rx = show["workers"][0]["rx_packets"].as_u64().unwrap_or(0);
        assert!(
            worker_rx >= u64::from(total) / 2,
            "the AF_XDP worker did not carry the stream ({worker_rx} of {total}): {show:#}"
        );
    }
    client.down();
    gateway.down();
    println!("roaming ({mode:?}) took {:?}", started.elapsed());
}

/// A client that routes everything through the tunnel (`AllowedIPs = 0.0.0.0/0, ::/0`), as
/// wg-quick does it: policy rules send unmarked traffic to the tunnel's table, the tunnel's
/// own (marked) packets keep the main table, and the rules go away with the interface. The
/// client also has a plain default route via the gateway, so traffic that escaped the tunnel
/// would still be echoed: the tunnel's byte counters tell the two apart.
#[test]
fn a_client_routes_everything_through_the_tunnel() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let lab = Lab::new(1);
    let dir = TempDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let client_public = client_key.public_key().to_base64();
    let gateway = warpline_up(
        &lab.gateway,
        &dir,
        &format!("{}g", unique_name()),
        &gateway_config_for(
            &lab,
            GatewayMode::Xdp,
            &gateway_key,
            std::slice::from_ref(&client_public),
        ),
    );
    add_route_via(lab.client(0), ip("0.0.0.0"), 0, ip("10.200.0.1"))
        .expect("a plain default route in the client");
    let config = warpline_client_config(0, &client_key, &gateway_key).replace(
        "AllowedIPs = 10.99.0.1/32, 10.202.0.0/24, fd99::1/128, fd02::/64",
        "AllowedIPs = 0.0.0.0/0, ::/0",
    );
    let client = warpline_up(lab.client(0), &dir, &format!("{}c", unique_name()), &config);
    let _echo = UdpEcho::start(&lab.server, SocketAddr::new(ip(SERVER_V4), ECHO_PORT));
    let (inner, _) = client_inner(0);
    let ok = udp_echoes(
        lab.client(0),
        SocketAddr::new(inner, 0),
        SocketAddr::new(ip(SERVER_V4), ECHO_PORT),
        20,
        5,
        Duration::from_millis(700),
    );
    assert_eq!(ok, 20, "echoes through the default route: {ok} of 20");
    // The kernel's own answer: unmarked traffic to the server leaves through the tunnel.
    let (route, tunnel) = lab
        .client(0)
        .netlink(|netlink: &mut Netlink| {
            let route = netlink.route_to(ip(SERVER_V4))?;
            Ok((route.if_index, netlink.link_by_name(&client.name)?.index))
        })
        .unwrap();
    assert_eq!(route, tunnel, "the server is not routed through the tunnel");
    let peer = assert_peer_active(&gateway, &client_public);
    assert!(
        peer["rx_bytes"].as_u64().unwrap_or(0) >= 20 * 32,
        "the echoes did not cross the tunnel: {peer:#}"
    );
    client.down();
    // The rules are gone with the interface: deleting them again finds nothing.
    let leftover = lab.client(0).netlink(|netlink: &mut Netlink| {
        let rule = warpline_dataplane::lab::RoutingRule {
            ipv6: false,
            table: 51820,
            not_fwmark: Some(51820),
            suppress_prefixlen: None,
        };
        Ok(netlink.delete_rule(&rule).is_ok())
    });
    assert_eq!(
        leftover.ok(),
        Some(false),
        "a policy rule outlived the interface"
    );
    gateway.down();
}
