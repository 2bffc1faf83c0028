//! `warpline up` for real, as root, in portable mode: two gateways in two network
//! namespaces joined by a veth, each with a TUN, carrying UDP between their protected
//! addresses through the tunnel; `warpline show` over the control socket; `warpline down`.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warpline_control::ctl::{self, Request, Response};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, NetNs, Veth, require_root, unique_name};

/// A daemon process, killed on drop if the test did not stop it.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_in(netns: &NetNs, config: &Path, socket: &Path) -> Daemon {
    let mut command = netns.command(env!("CARGO_BIN_EXE_warpline"));
    command
        .arg("up")
        .arg(config)
        .arg("--control-socket")
        .arg(socket)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(socket.with_extension("log")).expect("log file"));
    Daemon {
        child: command.spawn().expect("start warpline up"),
        socket: socket.to_path_buf(),
    }
}

fn wait_for_socket(daemon: &mut Daemon) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.socket.exists() {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("warpline up exited early: {status}");
        }
        assert!(Instant::now() < deadline, "no control socket after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Two gateways A and B in their own namespaces, joined by a veth, each running
/// `warpline up` with `extra` appended to its `[Interface]` section (`{wan}` there names
/// its end of the veth) and `peer_extra` to its `[Peer]` section.
struct Pair {
    a: Host,
    b: Host,
    key_a: PrivateKey,
    key_b: PrivateKey,
    name_a: String,
    /// A's end of the WAN veth.
    wan_a: String,
    dir: PathBuf,
    daemon_a: Daemon,
    daemon_b: Daemon,
}

fn two_gateways(extra_a: &str, extra_b: &str) -> Pair {
    two_gateways_with(extra_a, extra_b, "")
}

fn two_gateways_with(extra_a: &str, extra_b: &str, peer_extra: &str) -> Pair {
    let (a, b) = (Host::new("a").unwrap(), Host::new("b").unwrap());
    let veth = Veth::new(&a, &b, 1).unwrap();
    let extra_a = extra_a.replace("{wan}", &veth.a.name);
    let extra_b = extra_b.replace("{wan}", &veth.b.name);
    a.add_address(&veth.a, "10.201.0.1".parse().unwrap(), 24)
        .unwrap();
    b.add_address(&veth.b, "10.201.0.2".parse().unwrap(), 24)
        .unwrap();
    let (key_a, key_b) = (PrivateKey::generate(), PrivateKey::generate());
    let dir = std::env::temp_dir().join(unique_name());
    std::fs::create_dir_all(&dir).unwrap();
    let name_a = format!("{}g", unique_name());
    let name_b = format!("{}g", unique_name());
    let config_a = write_config(
        &dir,
        &name_a,
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.88.0.1/32\n{extra_a}\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.88.0.2/32\nEndpoint = 10.201.0.2:51820\n\
             {peer_extra}\n",
            key_a.to_base64(),
            key_b.public_key().to_base64()
        ),
    );
    let config_b = write_config(
        &dir,
        &name_b,
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.88.0.2/32\n{extra_b}\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.88.0.1/32\n{peer_extra}\n",
            key_b.to_base64(),
            key_a.public_key().to_base64()
        ),
    );
    let mut daemon_a = spawn_in(a.netns(), &config_a, &dir.join("a.sock"));
    let mut daemon_b = spawn_in(b.netns(), &config_b, &dir.join("b.sock"));
    wait_for_socket(&mut daemon_a);
    wait_for_socket(&mut daemon_b);
    Pair {
        a,
        b,
        key_a,
        key_b,
        name_a,
        wan_a: veth.a.name.clone(),
        dir,
        daemon_a,
        daemon_b,
    }
}

/// Stops a daemon with `warpline down` and checks it exits cleanly and tidies up.
fn stop(daemon: &mut Daemon) {
    assert_eq!(
        ctl::request(&daemon.socket, &Request::Down).unwrap(),
        Response::Ok
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            assert!(status.success(), "warpline exited with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "warpline did not stop after down"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!daemon.socket.exists(), "control socket left behind");
}

#[test]
fn two_gateways_carry_udp_through_the_tunnel() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let Pair {
        a,
        b,
        key_a,
        key_b,
        name_a,
        dir,
        mut daemon_a,
        mut daemon_b,
        ..
    } = two_gateways("MetricsAddress = 127.0.0.1:9586", "");

    // B echoes UDP on its tunnel address; A sends through the tunnel and checks the echo.
    let echo = b.run(|| UdpSocket::bind("10.88.0.2:9000").expect("bind on the TUN address"));
    let echo_thread = std::thread::spawn(move || {
        echo.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut buf = [0u8; 2048];
        for _ in 0..20 {
            let Ok((len, from)) = echo.recv_from(&mut buf) else {
                return;
            };
            echo.send_to(&buf[..len], from).unwrap();
        }
    });
    let replies = a.run(|| {
        let socket = UdpSocket::bind("10.88.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let target: SocketAddr = "10.88.0.2:9000".parse().unwrap();
        let mut replies = 0;
        let mut buf = [0u8; 2048];
        for i in 0..20u8 {
            let message = vec![i; 100 + usize::from(i) * 50];
            socket.send_to(&message, target).unwrap();
            // The first packet waits for the handshake; later ones come straight back.
            if let Ok((len, _)) = socket.recv_from(&mut buf)
                && buf[..len] == message[..]
            {
                replies += 1;
            }
        }
        replies
    });
    assert!(
        replies >= 18,
        "only {replies} of 20 echoes came back through the tunnel"
    );

    let Response::Show(snapshot) = ctl::request(&daemon_a.socket, &Request::Show).unwrap() else {
        panic!("no snapshot");
    };
    assert_eq!(snapshot.public_key, key_a.public_key().to_base64());
    assert_eq!(snapshot.listen_port, Some(51820));
    let peer = &snapshot.peers[0];
    assert_eq!(peer.public_key, key_b.public_key().to_base64());
    assert!(peer.latest_handshake_unix_secs.is_some());
    assert!(peer.rx_bytes > 0 && peer.tx_bytes > 0, "{peer:?}");
    assert_eq!(peer.allowed_ips, vec!["10.88.0.2/32"]);

    // The CLI against the running daemon: set a peer, see it in show, remove it.
    let warpline = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_warpline"))
            .args(args)
            .output()
            .expect("run warpline");
        assert!(output.status.success(), "warpline {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let socket_a = daemon_a.socket.to_str().unwrap().to_owned();
    let extra = PrivateKey::generate().public_key().to_base64();
    warpline(&[
        "set",
        &name_a,
        "--control-socket",
        &socket_a,
        "peer",
        &extra,
        "allowed-ips",
        "10.88.5.0/24",
        "endpoint",
        "10.201.0.9:51820",
    ]);
    let shown = warpline(&["show", &name_a, "--control-socket", &socket_a]);
    assert!(
        shown.contains(&extra) && shown.contains("10.88.5.0/24"),
        "{shown}"
    );
    assert!(shown.contains("latest handshake"), "{shown}");
    warpline(&[
        "set",
        &name_a,
        "--control-socket",
        &socket_a,
        "peer",
        &extra,
        "remove",
    ]);
    let json = warpline(&["show", &name_a, "--json", "--control-socket", &socket_a]);
    assert!(!json.contains(&extra), "{json}");
    assert!(json.contains(&key_b.public_key().to_base64()), "{json}");

    // Prometheus metrics, scraped inside A's namespace where the daemon listens.
    let metrics = a.run(|| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect("127.0.0.1:9586").unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    });
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("warpline_peer_receive_bytes_total"),
        "{metrics}"
    );
    // The tunnel carried traffic, so at least one handshake completed with B.
    let handshakes = metrics
        .lines()
        .find(|line| {
            line.starts_with("warpline_peer_handshakes_total")
                && line.contains(&key_b.public_key().to_base64())
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|count| count.parse::<u64>().ok());
    assert!(
        handshakes.is_some_and(|count| count >= 1),
        "no handshake counted for B: {metrics}"
    );

    stop(&mut daemon_a);
    stop(&mut daemon_b);
    echo_thread.join().unwrap();

    // Key hygiene: the daemons' debug logs never contain private key material.
    for log in [dir.join("a.log"), dir.join("b.log")] {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("handshake completed"),
            "{}: {text}",
            log.display()
        );
        for secret in [key_a.to_base64(), key_b.to_base64()] {
            assert!(
                !text.contains(&secret),
                "{} leaks a private key",
                log.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rekeying_under_traffic_loses_at_most_a_handful_of_packets() {
    if let Some(pair) = rekeying_under_traffic("TestTimerScale = 40", "") {
        let _ = std::fs::remove_dir_all(&pair.dir);
    }
}

/// Site to site with XDP and AF_XDP workers on both gateways, both suites: the workers seal
/// and open while the control planes rekey every 3 s.
#[test]
fn rekeying_under_traffic_between_xdp_gateways_with_aes_gcm() {
    xdp_site_to_site("Cipher = aes256gcm");
}

#[test]
fn rekeying_under_traffic_between_xdp_gateways_with_chacha20_poly1305() {
    xdp_site_to_site("Cipher = chacha20poly1305");
}

fn xdp_site_to_site(peer_extra: &str) {
    let Some(pair) = rekeying_under_traffic(
        "TestTimerScale = 40\nAttach = {wan}\nXdpMode = native",
        peer_extra,
    ) else {
        return;
    };
    for log in ["a.log", "b.log"] {
        let text = std::fs::read_to_string(pair.dir.join(log)).unwrap_or_default();
        assert!(
            text.contains("AF_XDP worker ready") && text.contains("XDP detached"),
            "{log}: the gateway did not run (and stop) its AF_XDP worker:\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&pair.dir);
}

/// Streams numbered datagrams A -> B -> A across several rekeys; returns the pair (stopped)
/// for further checks of its logs.
fn rekeying_under_traffic(interface_extra: &str, peer_extra: &str) -> Option<Pair> {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return None;
    }
    // Timers 40x fast: rekey after 3 s, reject after 4.5 s, keepalive after 0.25 s.
    let mut pair = two_gateways_with(interface_extra, interface_extra, peer_extra);
    let echo = pair
        .b
        .run(|| UdpSocket::bind("10.88.0.2:9000").expect("bind on the TUN address"));
    echo.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let stop_echo = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let echo_stop = stop_echo.clone();
    let echo_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !echo_stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((len, from)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..len], from);
            }
        }
    });
    // 800 datagrams, one every 10 ms, across at least two rekeys.
    let (sent, received) = pair.a.run(|| {
        let socket = UdpSocket::bind("10.88.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let target: SocketAddr = "10.88.0.2:9000".parse().unwrap();
        // The first datagram starts the handshake; wait for the tunnel before counting.
        let ready = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 64];
        loop {
            socket.send_to(b"ready?", target).unwrap();
            if socket.recv_from(&mut buf).is_ok() {
                break;
            }
            assert!(Instant::now() < ready, "tunnel never came up");
        }
        let mut seen = std::collections::HashSet::new();
        let start = Instant::now();
        let mut sent = 0u32;
        while start.elapsed() < Duration::from_secs(8) || sent < 800 {
            if sent < 800 && start.elapsed() >= Duration::from_millis(u64::from(sent) * 10) {
                socket.send_to(&sent.to_be_bytes(), target).unwrap();
                sent += 1;
            }
            if let Ok((4, _)) = socket.recv_from(&mut buf) {
                seen.insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
            if sent == 800 && start.elapsed() > Duration::from_secs(9) {
                break;
            }
        }
        (sent, seen.len() as u32)
    });
    stop_echo.store(true, std::sync::atomic::Ordering::Relaxed);
    echo_thread.join().unwrap();
    for daemon in [&pair.daemon_a, &pair.daemon_b] {
        let Response::Show(snapshot) = ctl::request(&daemon.socket, &Request::Show).unwrap() else {
            panic!("show failed");
        };
        let moved: Vec<u64> = snapshot.workers.iter().map(|w| w.rx_packets).collect();
        println!("packets received per worker (AF_XDP workers, then the kernel socket): {moved:?}");
        if interface_extra.contains("Attach") {
            assert!(
                moved.len() == 2 && moved[0] >= 700 && moved[1] < 100,
                "the AF_XDP worker should carry the data, the kernel socket only handshakes: \
                 {moved:?}"
            );
        }
    }
    stop(&mut pair.daemon_a);
    stop(&mut pair.daemon_b);
    let log = std::fs::read_to_string(pair.dir.join("a.log")).unwrap();
    let handshakes = log.matches("handshake completed").count();
    println!(
        "rekey under traffic: {handshakes} handshakes, {} of {sent} datagrams lost",
        sent - received
    );
    assert!(
        handshakes >= 3,
        "expected rekeys every 3 s, saw {handshakes} handshakes:\n{log}"
    );
    assert!(
        sent - received <= 5,
        "{} of {sent} datagrams lost across {handshakes} handshakes",
        sent - received
    );
    Some(pair)
}

/// The kernel socket's offload counters and drops of a daemon (its last worker in `show`).
fn offload_counters(daemon: &Daemon) -> std::collections::HashMap<String, u64> {
    let Response::Show(snapshot) = ctl::request(&daemon.socket, &Request::Show).unwrap() else {
        panic!("no snapshot");
    };
    let socket_worker = snapshot.workers.last().expect("the kernel socket's worker");
    let counters = socket_worker.counters.iter();
    counters.chain(&socket_worker.drops).cloned().collect()
}

/// Datagrams the kernel socket's worker sent.
fn socket_worker_tx(daemon: &Daemon) -> u64 {
    let Response::Show(snapshot) = ctl::request(&daemon.socket, &Request::Show).unwrap() else {
        panic!("no snapshot");
    };
    snapshot
        .workers
        .last()
        .expect("the kernel socket's worker")
        .tx_packets
}

/// Sends `bytes` of a numbered pattern over TCP from A's tunnel address to B's, through the
/// two portable gateways; B checks every byte. Returns what B received.
fn bulk_tcp(a: &Host, b: &Host, bytes: usize) -> usize {
    use std::io::{Read, Write};
    let listener = b.run(|| std::net::TcpListener::bind("10.88.0.2:9100").expect("listen on B"));
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut received = 0usize;
        loop {
            let len = stream.read(&mut buf).expect("read through the tunnel");
            if len == 0 {
                return received;
            }
            for (offset, byte) in buf[..len].iter().enumerate() {
                let at = received + offset;
                assert_eq!(*byte, (at % 251) as u8, "byte {at} changed in the tunnel");
            }
            received += len;
        }
    });
    a.run(|| {
        let mut stream = std::net::TcpStream::connect_timeout(
            &"10.88.0.2:9100".parse().unwrap(),
            Duration::from_secs(10),
        )
        .expect("connect through the tunnel");
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let pattern: Vec<u8> = (0..bytes).map(|at| (at % 251) as u8).collect();
        stream
            .write_all(&pattern)
            .expect("write through the tunnel");
    });
    receiver.join().expect("B's receiver")
}

/// Bulk TCP between portable gateways moves in UDP GSO runs out of A, UDP GRO receives into
/// B and coalesced TUN writes on B, byte for byte; and when the kernel refuses a run (here a
/// WAN MTU too small for its segments), A sends it one datagram at a time and the stream
/// goes on.
#[test]
fn bulk_tcp_between_portable_gateways_uses_udp_gso_and_gro() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let mut pair = two_gateways("", "");
    const BYTES: usize = 24 << 20;
    assert_eq!(bulk_tcp(&pair.a, &pair.b, BYTES), BYTES);
    let a = offload_counters(&pair.daemon_a);
    let b = offload_counters(&pair.daemon_b);
    assert!(a["udp_gso_sends"] > 0, "A sent no GSO run: {a:?}");
    assert!(
        a["udp_gso_datagrams"] >= 4 * a["udp_gso_sends"],
        "A's runs are short: {a:?}"
    );
    assert_eq!(a["udp_gso_fallbacks"], 0, "{a:?}");
    assert!(b["udp_gro_receives"] > 0, "B received no GRO batch: {b:?}");
    assert!(b["tun_gso_writes"] > 0, "B wrote no coalesced frame: {b:?}");

    // A WAN MTU below the tunnel's datagrams (1,400 against 1,480): the kernel refuses a GSO
    // run whose segments it would have to fragment, so each run goes again datagram by
    // datagram (fragmented, as before GSO) and the stream goes on.
    let wan_a = pair.wan_a.clone();
    pair.a
        .netlink(|netlink| {
            let index = netlink.link_by_name(&wan_a)?.index;
            netlink.set_mtu(index, 1400)
        })
        .expect("lower A's WAN MTU");
    const MORE: usize = 4 << 20;
    let sent_before = socket_worker_tx(&pair.daemon_a);
    assert_eq!(bulk_tcp(&pair.a, &pair.b, MORE), MORE);
    let after = offload_counters(&pair.daemon_a);
    // Every segment of the stream left as a datagram of its own, none in a GSO run.
    let sent = socket_worker_tx(&pair.daemon_a) - sent_before;
    assert!(
        sent as usize >= MORE / 1420,
        "only {sent} datagrams for {MORE} bytes"
    );
    assert_eq!(
        after["udp_gso_datagrams"], a["udp_gso_datagrams"],
        "{after:?}"
    );
    assert!(
        after["udp_gso_fallbacks"] > 0,
        "no run was refused: {after:?}"
    );
    assert!(!after.contains_key("UDP send failed"), "{after:?}");

    stop(&mut pair.daemon_a);
    stop(&mut pair.daemon_b);
    let _ = std::fs::remove_dir_all(&pair.dir);
}
