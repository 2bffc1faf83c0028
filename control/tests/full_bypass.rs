//! Full kernel bypass on both sides of two gateways (`Inner = <lan nic>`), as root, in a
//! namespace lab, site to site:
//!
//! ```text
//!  server ── LAN A ── gw A ══ WAN (tunnel) ══ gw B ── LAN B ── client
//!  10.71.0.2          .1   10.201.0.1   .2         .1       10.72.0.2
//!  fd71::2            ::1                          ::1      fd72::2
//! ```
//!
//! Both gateways run AF_XDP workers on their WAN and LAN veths (native XDP, the sockets of a
//! queue share one UMEM). Checked: ping with small and large packets and iperf3 TCP both
//! ways, over IPv4 and IPv6; a ping larger than the tunnel MTU with DF set gets
//! "fragmentation needed" / "packet too big" naming the tunnel MTU; and the workers' counters
//! show the traffic crossed the LAN sockets, not the TUN (so the test fails if the LAN side
//! quietly fell back to the kernel).
//!
//! Without root the test prints `skipping: <reason>` and passes.

mod gateway_support;

use std::process::Output;
use std::time::{Duration, Instant};

use gateway_support::{
    TempDir, add_route_via, command_in, enable_forwarding, ip, iperf3_rate, require_tool, serial,
    warpline_up, worker_sum,
};
use warpline_control::doctor::sys::ethtool::EthtoolSocket;
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, Veth, require_root};

/// The gateways' tunnel MTU (the default): the ICMP errors must name it.
const TUNNEL_MTU: usize = 1420;
const IPERF_PORT: u16 = 5201;

struct Site {
    gateway: Host,
    host: Host,
    _lan: Veth,
    lan_name: String,
}

/// A gateway and one host on a LAN `10.7<n>.0.0/24`, `fd7<n>::/64` (a veth of `queues`
/// queues), the host routing the other site's prefixes through the gateway.
fn site(n: u8, other: u8, queues: u32) -> Site {
    let gateway = Host::new(&format!("g{n}")).unwrap();
    let host = Host::new(&format!("h{n}")).unwrap();
    let lan = Veth::new(&gateway, &host, queues).unwrap();
    for (who, end, last) in [(&gateway, &lan.a, 1), (&host, &lan.b, 2)] {
        who.add_address(end, ip(&format!("10.7{n}.0.{last}")), 24)
            .unwrap();
        who.add_address(end, ip(&format!("fd7{n}::{last}")), 64)
            .unwrap();
    }
    // A second address no test traffic has learnt a path MTU for (the fragmentation check).
    host.add_address(&lan.b, ip(&format!("10.7{n}.0.3")), 24)
        .unwrap();
    add_route_via(
        &host,
        ip(&format!("10.7{other}.0.0")),
        24,
        ip(&format!("10.7{n}.0.1")),
    )
    .unwrap();
    add_route_via(
        &host,
        ip(&format!("fd7{other}::")),
        64,
        ip(&format!("fd7{n}::1")),
    )
    .unwrap();
    // A veth hands its peer TCP/UDP packets with the checksum left for "hardware" to finish;
    // AF_XDP gets the bytes as they are, so the host must finish its checksums itself, as a
    // host behind a real NIC's wire always has.
    let host_end = lan.b.name.clone();
    host.run(|| {
        EthtoolSocket::open()
            .and_then(|ethtool| ethtool.disable_features(&host_end, &["tx-checksum-ip-generic"]))
    })
    .expect("turn off TX checksum offload on the host's veth");
    enable_forwarding(&gateway);
    let lan_name = lan.a.name.clone();
    Site {
        gateway,
        host,
        _lan: lan,
        lan_name,
    }
}

fn gateway_config(
    key: &PrivateKey,
    peer: &PrivateKey,
    (n, other): (u8, u8),
    (wan, lan): (&str, &str),
    peer_wan: &str,
    extra: &str,
) -> String {
    format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.8{n}.0.1/32, fd8{n}::1/128\n\
         Attach = {wan}\nInner = {lan}\nXdpMode = native\n{extra}\n\
         [Peer]\nPublicKey = {}\nAllowedIPs = 10.7{other}.0.0/24, fd7{other}::/64\n\
         Endpoint = {peer_wan}:51820\n",
        key.to_base64(),
        peer.public_key().to_base64(),
    )
}

fn ping(from: &Host, args: &[&str]) -> Output {
    let ping = require_tool("ping", "apt iputils-ping");
    command_in(from.netns(), &ping)
        .args(args)
        .output()
        .expect("run ping")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// Pings until one reply comes (the first packets start the handshake).
fn wait_for_tunnel(from: &Host, target: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let output = ping(from, &["-c", "1", "-W", "1", target]);
        if output.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no ping reply from {target} through the tunnel: {}",
            text(&output)
        );
    }
}

#[test]
fn full_bypass_gateways_carry_ping_and_tcp_both_ways_and_answer_oversized_packets() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let iperf3 = require_tool("iperf3", "apt iperf3");
    let _serial = serial();
    // Two workers on each gateway; A's share its tunnel (Spread = on), B's do not.
    let a = site(1, 2, 2);
    let b = site(2, 1, 2);
    let wan = Veth::new(&a.gateway, &b.gateway, 2).unwrap();
    a.gateway.add_address(&wan.a, ip("10.201.0.1"), 24).unwrap();
    b.gateway.add_address(&wan.b, ip("10.201.0.2"), 24).unwrap();
    let (key_a, key_b) = (PrivateKey::generate(), PrivateKey::generate());
    let dir = TempDir::new();
    let config_a = gateway_config(
        &key_a,
        &key_b,
        (1, 2),
        (&wan.a.name, &a.lan_name),
        "10.201.0.2",
        "Workers = 2\nSpread = on\n",
    );
    let config_b = gateway_config(
        &key_b,
        &key_a,
        (2, 1),
        (&wan.b.name, &b.lan_name),
        "10.201.0.1",
        "Workers = 2\n",
    );
    let gw_a = warpline_up(&a.gateway, &dir, "wlfa", &config_a);
    let gw_b = warpline_up(&b.gateway, &dir, "wlfb", &config_b);
    let (server, client) = (&a.host, &b.host);

    // Small and large pings, both families, both directions.
    for (from, target) in [
        (client, "10.71.0.2"),
        (server, "10.72.0.2"),
        (client, "fd71::2"),
        (server, "fd72::2"),
    ] {
        wait_for_tunnel(from, target);
        let header = if target.contains(':') { 48 } else { 28 };
        for size in [56, TUNNEL_MTU - header] {
            let size = size.to_string();
            let output = ping(
                from,
                &[
                    "-c", "5", "-i", "0.05", "-W", "2", "-M", "do", "-s", &size, target,
                ],
            );
            assert!(
                output.status.success() && text(&output).contains(" 0% packet loss"),
                "ping -s {size} {target}: {}",
                text(&output)
            );
        }
    }

    // iperf3 TCP both ways over both families.
    for address in [ip("fd71::2"), ip("10.71.0.2")] {
        for reverse in [false, true] {
            let rate = iperf3_rate(&iperf3, client, server, address, IPERF_PORT, reverse);
            println!(
                "iperf3 {} {address}: {:.0} Mbit/s",
                if reverse {
                    "server->client"
                } else {
                    "client->server"
                },
                rate / 1e6
            );
            assert!(rate > 1e6, "iperf3 to {address} carried {rate} bit/s");
        }
    }

    // One byte over the tunnel MTU with DF: the client's own gateway's worker answers with
    // the ICMP error naming the MTU. (The iperf3 runs above came first on purpose: their
    // first full-size segments found the tunnel MTU the same way.)
    for (target, header) in [("10.71.0.2", 28), ("fd71::2", 48)] {
        let size = (TUNNEL_MTU + 1 - header).to_string();
        let output = ping(
            client,
            &[
                "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s", &size, target,
            ],
        );
        println!("oversized ping to {target}: {}", text(&output));
        // "From <gateway> ... mtu = 1420" for the error itself, or "local error: message too
        // long, mtu=1420" ("mtu: 1420" for IPv6) once the host has learnt it from an error.
        let said = text(&output).replace([' ', ':'], "").replace("mtu=", "mtu");
        assert!(
            !output.status.success() && said.contains(&format!("mtu{TUNNEL_MTU}")),
            "an oversized ping to {target} should get an ICMP error naming MTU {TUNNEL_MTU}: {}",
            text(&output)
        );
    }

    for (name, gateway) in [("A", &gw_a), ("B", &gw_b)] {
        let lan_rx = worker_sum(gateway, "counters", "lan_rx_frames");
        let lan_tx = worker_sum(gateway, "counters", "lan_tx_frames");
        let to_kernel = worker_sum(gateway, "counters", "to_kernel");
        let tun_reads = worker_sum(gateway, "counters", "tun_reads");
        let dealt = worker_sum(gateway, "counters", "chunks_dealt");
        println!(
            "gateway {name}: lan_rx_frames {lan_rx}, lan_tx_frames {lan_tx}, to_kernel \
             {to_kernel}, tun_reads {tun_reads}, chunks_dealt {dealt}"
        );
        // The iperf3 runs alone move tens of thousands of frames each way.
        assert!(
            lan_rx > 10_000 && lan_tx > 10_000,
            "gateway {name}: the LAN socket carried too little (rx {lan_rx}, tx {lan_tx})"
        );
        assert!(
            to_kernel < lan_tx / 10 && tun_reads < lan_rx / 10,
            "gateway {name}: too much took the kernel's path (to_kernel {to_kernel}, tun reads \
             {tun_reads}, LAN rx {lan_rx} tx {lan_tx})"
        );
    }
    // Without DF a packet may be fragmented: the client's 1500-byte first fragment is too
    // big for the tunnel, so gateway B hands it to the kernel, which fragments it further.
    let output = ping(
        client,
        &[
            "-c",
            "3",
            "-i",
            "0.3",
            "-W",
            "2",
            "-M",
            "dont",
            "-s",
            "1600",
            "10.71.0.3",
        ],
    );
    assert!(
        output.status.success(),
        "a 1628-byte ping without DF should be fragmented and answered: {}",
        text(&output)
    );
    let errors = worker_sum(&gw_b, "counters", "icmp_too_big");
    let fragmented = worker_sum(&gw_b, "counters", "too_big_to_kernel");
    println!("gateway B: icmp_too_big {errors}, too_big_to_kernel {fragmented}");
    assert!(errors >= 2, "gateway B sent {errors} ICMP errors");
    assert!(
        fragmented >= 1,
        "gateway B handed {fragmented} packets to the kernel"
    );
    for gateway in [gw_a, gw_b] {
        gateway.down();
    }
}
