//! Wall-clock jumps do not break timers or expire sessions (the hostile-input issue's fault
//! case), as root, in a namespace lab.
//!
//! Two gateways rekey every 3 s (`TestTimerScale = 40`) while numbered datagrams cross the
//! tunnel. Both run under libfaketime with only the wall clock (`CLOCK_REALTIME`) faked, read
//! from a file the test rewrites: a day forward, then a day back, then home. Timers run on
//! the monotonic clock and TAI64N timestamps are the start's wall time plus monotonic time,
//! so nothing may notice. A gateway that read the wall clock for its initiation timestamps
//! would have its first handshake after the backward jump refused as a replay, and the
//! tunnel would die at Reject-After-Time: the test would see the loss and the missing
//! handshakes. Without root the test prints `skipping: <reason>` and passes.

mod gateway_support;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use gateway_support::{TempDir, Warpline, require_tool, serial, warpline_up_with};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, Veth, require_root};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
const DATAGRAMS: u32 = 1_000;
const INTERVAL: Duration = Duration::from_millis(10);

fn start(host: &Host, dir: &TempDir, name: &str, text: &str, clock_file: &Path) -> Warpline {
    warpline_up_with(host, dir, name, text, |command| {
        command
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", clock_file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    })
}

fn handshakes(gateway: &Warpline, peer: &PrivateKey) -> u64 {
    gateway.peer_json(&peer.public_key().to_base64())["handshakes"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn wall_clock_jumps_neither_stall_rekeys_nor_expire_sessions() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    // The faketime package; CI installs it (`cargo xtask deps`).
    require_tool("faketime", "apt faketime");
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} missing: apt-get install faketime"
    );
    let _serial = serial();
    let (a, b) = (Host::new("ca").unwrap(), Host::new("cb").unwrap());
    let wan = Veth::new(&a, &b, 1).unwrap();
    a.add_address(&wan.a, "10.204.0.1".parse().unwrap(), 24)
        .unwrap();
    b.add_address(&wan.b, "10.204.0.2".parse().unwrap(), 24)
        .unwrap();
    let dir = TempDir::new();
    let clock = dir.write("clock", "+0\n");
    let (key_a, key_b) = (PrivateKey::generate(), PrivateKey::generate());
    let gw_a = start(
        &a,
        &dir,
        "wlja",
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.88.0.1/32\n\
             TestTimerScale = 40\n\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.88.0.2/32\n\
             Endpoint = 10.204.0.2:51820\n",
            key_a.to_base64(),
            key_b.public_key().to_base64()
        ),
        &clock,
    );
    let gw_b = start(
        &b,
        &dir,
        "wljb",
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.88.0.2/32\n\
             TestTimerScale = 40\n\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.88.0.1/32\n",
            key_b.to_base64(),
            key_a.public_key().to_base64()
        ),
        &clock,
    );
    for gateway in [&gw_a, &gw_b] {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", gateway.proc.child.id()))
            .unwrap_or_default();
        assert!(
            maps.contains("libfaketime"),
            "{} runs without libfaketime: the test would prove nothing",
            gateway.name
        );
    }

    let echo = b.run(|| UdpSocket::bind("10.88.0.2:9000").expect("bind on B's tunnel"));
    echo.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let echoing = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match echo.recv_from(&mut buf) {
                Ok((len, from)) if &buf[..len] == b"done" => {
                    let _ = echo.send_to(b"done", from);
                    return;
                }
                Ok((len, from)) => {
                    let _ = echo.send_to(&buf[..len], from);
                }
                Err(_) => {}
            }
        }
    });
    let jumps = [
        (DATAGRAMS / 4, "+1d"),
        (DATAGRAMS / 2, "-1d"),
        (DATAGRAMS * 3 / 4, "+0"),
    ];
    let mut handshakes_at_jump = Vec::new();
    let received = a.run(|| {
        let socket = UdpSocket::bind("10.88.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let target = "10.88.0.2:9000";
        let ready = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 64];
        loop {
            socket.send_to(b"ready?", target).unwrap();
            if socket.recv_from(&mut buf).is_ok() {
                break;
            }
            assert!(Instant::now() < ready, "the tunnel never came up");
        }
        let mut seen = std::collections::HashSet::new();
        let start = Instant::now();
        let mut sent = 0u32;
        while sent < DATAGRAMS || start.elapsed() < INTERVAL * (DATAGRAMS + 100) {
            if sent < DATAGRAMS && start.elapsed() >= INTERVAL * sent {
                if let Some((_, offset)) = jumps.iter().find(|(at, _)| *at == sent) {
                    handshakes_at_jump.push(handshakes(&gw_a, &key_b));
                    std::fs::write(&clock, format!("{offset}\n")).unwrap();
                }
                socket.send_to(&sent.to_be_bytes(), target).unwrap();
                sent += 1;
            }
            if let Ok((4, _)) = socket.recv_from(&mut buf) {
                seen.insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
        }
        socket.send_to(b"done", target).unwrap();
        seen.len() as u32
    });
    echoing.join().unwrap();
    let total = handshakes(&gw_a, &key_b);
    println!(
        "clock jumps +1 day, -1 day, back: {received} of {DATAGRAMS} datagrams echoed; \
         handshakes at A before each jump {handshakes_at_jump:?}, {total} in all"
    );
    assert!(
        DATAGRAMS - received <= 10,
        "{} of {DATAGRAMS} datagrams lost across the clock jumps",
        DATAGRAMS - received
    );
    // Rekeys every 3 s over about 11 s: they go on after the jump back (the one a
    // wall-clock initiation timestamp would fail) and after the return home.
    assert!(
        total > handshakes_at_jump[2] && handshakes_at_jump[2] > handshakes_at_jump[1],
        "rekeying stopped around the clock jumps: {handshakes_at_jump:?}, {total} in all"
    );
    gw_a.down();
    gw_b.down();
}
