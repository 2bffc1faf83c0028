//! Hostile traffic against an XDP gateway (as root, in namespaces): while a real client's
//! traffic flows, a generator sends truncated and oversized packets, wrong message types,
//! unknown receiver indices, bad tags on the real session, replayed and very old counters,
//! initiations with bad MAC1, a flood of valid-MAC1 initiations, packets from a spoofed
//! source, and a legitimate peer sends inner packets from outside its allowed IPs.
//! Checks: the gateway survives and counts each kind under its own reason, the client's TCP
//! traffic keeps flowing (the ratio to its unloaded rate is printed; the 0.8x goal is
//! measured by `cargo xtask bench hostile`, see the assertion), a handshake under the initiation flood still
//! completes (through the cookie path), and the gateway's memory stays bounded.

mod gateway_support;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gateway_support::{TempDir, UdpEcho, Warpline, tcp_mirror, tcp_transfer, warpline_up};
use warpline_control::hostile::{Flood, stranger_initiations};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::capture::TransportCapture;
use warpline_dataplane::lab::{Host, Veth, require_root, unique_name};

const GATEWAY_WAN: &str = "10.205.0.1";
const CLIENT_WAN: &str = "10.205.0.2";
const SPOOFED: &str = "10.205.0.9";
const ATTACKER_WAN_GW: &str = "10.206.0.1";
const ATTACKER_WAN: &str = "10.206.0.2";
const ECHO: &str = "10.98.0.1:9000";
const MIRROR: &str = "10.98.0.1:9001";
/// Bytes each way of one TCP transfer through the real client's tunnel.
const TRANSFER: usize = 16 << 20;
/// One round of the flood sends 15 packets: 2,000 rounds a second is 30,000 packets a second,
/// about 17x the real client's echo traffic here.
const ROUND_INTERVAL: Duration = Duration::from_micros(500);

/// Echo round trips per second through the real client's tunnel, over `duration`.
fn echo_rate(client: &Host, duration: Duration) -> f64 {
    client.run(|| {
        let socket = UdpSocket::bind("10.98.0.2:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let start = Instant::now();
        let mut done = 0u64;
        let mut buf = [0u8; 128];
        while start.elapsed() < duration {
            socket.send_to(&done.to_be_bytes(), ECHO).unwrap();
            if socket.recv_from(&mut buf).is_ok() {
                done += 1;
            }
        }
        done as f64 / start.elapsed().as_secs_f64()
    })
}

/// Bytes per second of a TCP transfer each way through the real client's tunnel.
fn tcp_rate(client: &Host) -> f64 {
    let took = tcp_transfer(client, MIRROR.parse().unwrap(), TRANSFER);
    2.0 * TRANSFER as f64 / took.as_secs_f64()
}

fn worker_drops(gateway: &Warpline) -> HashMap<String, u64> {
    let show = gateway.show_json();
    let mut drops = HashMap::new();
    for worker in show["workers"].as_array().into_iter().flatten() {
        for pair in worker["drops"].as_array().into_iter().flatten() {
            let name = pair[0].as_str().unwrap_or_default().to_owned();
            *drops.entry(name).or_default() += pair[1].as_u64().unwrap_or(0);
        }
    }
    drops
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_gateway_survives_hostile_traffic_and_counts_every_kind() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let gateway_host = Host::new("g").unwrap();
    let client_host = Host::new("c").unwrap();
    let attacker_host = Host::new("a").unwrap();
    let client_link = Veth::new(&client_host, &gateway_host, 1).unwrap();
    let attacker_link = Veth::new(&attacker_host, &gateway_host, 1).unwrap();
    let ip = |text: &str| text.parse().unwrap();
    gateway_host
        .add_address(&client_link.b, ip(GATEWAY_WAN), 24)
        .unwrap();
    client_host
        .add_address(&client_link.a, ip(CLIENT_WAN), 24)
        .unwrap();
    client_host
        .add_address(&client_link.a, ip(SPOOFED), 24)
        .unwrap();
    gateway_host
        .add_address(&attacker_link.b, ip(ATTACKER_WAN_GW), 24)
        .unwrap();
    attacker_host
        .add_address(&attacker_link.a, ip(ATTACKER_WAN), 24)
        .unwrap();

    let dir = TempDir::new();
    let (gateway_key, client_key, insider_key) = (
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    );
    let mut gateway = warpline_up(
        &gateway_host,
        &dir,
        &format!("{}g", unique_name()),
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.98.0.1/32\n\
             Attach = {}, {}\nXdpMode = native\n\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.98.0.2/32\n\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.98.0.8/32\n",
            gateway_key.to_base64(),
            client_link.b.name,
            attacker_link.b.name,
            client_key.public_key().to_base64(),
            insider_key.public_key().to_base64()
        ),
    );
    let _echo = UdpEcho::start(&gateway_host, ECHO.parse().unwrap());
    let client_config = |key: &PrivateKey, address: &str, endpoint: &str| {
        format!(
            "[Interface]\nPrivateKey = {}\nAddress = {address}/32\n\n[Peer]\nPublicKey = {}\n\
             AllowedIPs = 10.98.0.1/32\nEndpoint = {endpoint}:51820\n",
            key.to_base64(),
            gateway_key.public_key().to_base64()
        )
    };
    let capture = TransportCapture::start(&client_host, client_link.a.index, 51820)
        .expect("a capture on the client's link");
    let client_name = format!("{}c", unique_name());
    let client = warpline_up(
        &client_host,
        &dir,
        &client_name,
        &client_config(&client_key, "10.98.0.2", GATEWAY_WAN),
    );
    // The insider is a configured peer that sends from an inner address it does not own.
    let _insider = warpline_up(
        &attacker_host,
        &dir,
        &format!("{}i", unique_name()),
        &client_config(&insider_key, "10.98.0.7", ATTACKER_WAN_GW),
    );

    // Unloaded: the tunnel comes up, then the echo rate is measured.
    let ready = Instant::now();
    while echo_rate(&client_host, Duration::from_millis(200)) < 1.0 {
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "tunnel never came up"
        );
    }
    // The insider's session comes up before the flood too: under the flood its first
    // handshake would need a cookie and a retry after the 5 s rekey timeout, and the drops
    // this test counts must not depend on that race.
    let insider = attacker_host.run(|| UdpSocket::bind("10.98.0.7:0").unwrap());
    let insider_public = insider_key.public_key().to_base64();
    while gateway.peer_json(&insider_public)["latest_handshake_unix_secs"].is_null() {
        assert!(
            ready.elapsed() < Duration::from_secs(20),
            "the insider's tunnel never came up"
        );
        let _ = insider.send_to(b"hello", ECHO);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _mirror = tcp_mirror(&gateway_host, MIRROR.parse().unwrap(), 2);
    let unloaded = tcp_rate(&client_host);
    let rss_before = rss_kib(gateway.proc.child.id());
    let real = capture.messages();
    assert!(
        real.len() > 100,
        "captured only {} client messages",
        real.len()
    );

    // The flood: every kind in turn, paced (the generator shares this machine's cores with
    // the client and the gateway, so an unpaced one measures CPU starvation, not the gateway).
    let target: SocketAddr = format!("{GATEWAY_WAN}:51820").parse().unwrap();
    let flood = Flood {
        transport: real,
        initiations: stranger_initiations(&gateway_key.public_key(), target, 8),
        round_interval: ROUND_INTERVAL,
    };
    let stop_flood = Arc::new(AtomicBool::new(false));
    let flooding = {
        let stop = Arc::clone(&stop_flood);
        // The flood comes from another address on the client's link (an attacker next to
        // it); "spoofed" packets claim the real client's address.
        let (socket, spoofed) = client_host.run(|| {
            (
                UdpSocket::bind(format!("{SPOOFED}:40000")).unwrap(),
                UdpSocket::bind(format!("{CLIENT_WAN}:40001")).unwrap(),
            )
        });
        std::thread::spawn(move || flood.run(&socket, &spoofed, target, &stop))
    };
    let loaded = {
        let spoof_stop = Arc::new(AtomicBool::new(false));
        let spoofing = {
            let stop = Arc::clone(&spoof_stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = insider.send_to(b"not my address", ECHO);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let rate = tcp_rate(&client_host);
        // A new handshake under the flood: drop the client's session and let traffic
        // start another one; the gateway is under load, so it goes through a cookie.
        client.cli_set(&["peer", &gateway_key.public_key().to_base64(), "remove"]);
        client.cli_set(&[
            "peer",
            &gateway_key.public_key().to_base64(),
            "allowed-ips",
            "10.98.0.1/32",
            "endpoint",
            &format!("{GATEWAY_WAN}:51820"),
        ]);
        let again = Instant::now();
        while echo_rate(&client_host, Duration::from_millis(200)) < 1.0 {
            if again.elapsed() > Duration::from_secs(15) {
                let snmp = gateway_host.run(|| std::fs::read_to_string("/proc/net/snmp").unwrap());
                panic!(
                    "no handshake completed under the initiation flood; gateway drops {:?}\n{snmp}",
                    worker_drops(&gateway),
                );
            }
        }
        let handshake_under_flood = again.elapsed();
        spoof_stop.store(true, Ordering::Relaxed);
        spoofing.join().unwrap();
        println!("handshake under the initiation flood took {handshake_under_flood:?}");
        rate
    };
    stop_flood.store(true, Ordering::Relaxed);
    let flood_report = flooding.join().unwrap();
    drop(capture);
    let rss_after = rss_kib(gateway.proc.child.id());
    let drops = worker_drops(&gateway);
    println!(
        "sent: {} hostile packets ({:.0}/s): {:?}",
        flood_report.total(),
        flood_report.rate(),
        flood_report.sent
    );
    println!("gateway drops: {drops:?}");
    println!(
        "client TCP unloaded {:.0} Mbit/s, under attack {:.0} Mbit/s ({:.2}x); \
         gateway RSS {rss_before} -> {rss_after} KiB",
        unloaded * 8.0 / 1e6,
        loaded * 8.0 / 1e6,
        loaded / unloaded.max(1.0)
    );

    gateway.proc.assert_running();
    for reason in [
        "unknown_index",
        "bad_tag",
        "source_not_allowed",
        "malformed message",
        "bad MAC1",
        "answered with a cookie reply",
    ] {
        assert!(
            drops.get(reason).copied().unwrap_or(0) > 0,
            "no drops counted as {reason:?}: {drops:?}"
        );
    }
    let replays =
        drops.get("replayed").copied().unwrap_or(0) + drops.get("too_old").copied().unwrap_or(0);
    assert!(replays > 0, "replayed packets were not counted: {drops:?}");
    // The >= 0.8x target is a speed goal: `cargo xtask bench hostile` measures it, with the
    // same flood, over iperf3 runs long enough to mean something, and reports the gateway's
    // CPU per hostile packet. This short transfer only checks the traffic kept flowing.
    assert!(
        loaded >= 0.2 * unloaded,
        "the client's TCP rate collapsed to {loaded:.0} B/s from {unloaded:.0} B/s under attack"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "gateway memory grew from {rss_before} to {rss_after} KiB"
    );
    client.down();
    gateway.down();
}
