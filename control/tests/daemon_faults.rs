//! Faults in a running gateway (as root, in namespaces): a data-plane worker that panics
//! takes the whole gateway down, non-zero, with a clear log and XDP detached — never a
//! half-alive data plane that blackholes a queue.

mod gateway_support;

use std::net::UdpSocket;
use std::process::Stdio;
use std::time::Duration;

use gateway_support::{TempDir, warpline_up, warpline_up_with};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, Netlink, Veth, require_root, unique_name};

#[test]
fn a_panicking_worker_stops_the_gateway_and_detaches_xdp() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let (gateway, client) = (Host::new("g").unwrap(), Host::new("c").unwrap());
    let veth = Veth::new(&gateway, &client, 1).unwrap();
    gateway
        .add_address(&veth.a, "10.203.0.1".parse().unwrap(), 24)
        .unwrap();
    client
        .add_address(&veth.b, "10.203.0.2".parse().unwrap(), 24)
        .unwrap();
    let dir = TempDir::new();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let log_path = dir.0.join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut gateway_daemon = warpline_up_with(
        &gateway,
        &dir,
        &format!("{}g", unique_name()),
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.89.0.1/32\n\
             Attach = {}\nXdpMode = native\n\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.89.0.2/32\n",
            gateway_key.to_base64(),
            veth.a.name,
            client_key.public_key().to_base64()
        ),
        |command| {
            command
                .env("WARPLINE_TEST_WORKER_PANIC_AFTER", "20")
                .stderr(Stdio::from(log));
        },
    );
    let _client_daemon = warpline_up(
        &client,
        &dir,
        &format!("{}c", unique_name()),
        &format!(
            "[Interface]\nPrivateKey = {}\nAddress = 10.89.0.2/32\n\n[Peer]\nPublicKey = {}\n\
             AllowedIPs = 10.89.0.1/32\nEndpoint = 10.203.0.1:51820\n",
            client_key.to_base64(),
            gateway_key.public_key().to_base64()
        ),
    );

    // Traffic through the tunnel reaches the gateway's worker, which panics at frame 20.
    client.run(|| {
        let socket = UdpSocket::bind("10.89.0.2:0").unwrap();
        for _ in 0..300 {
            let _ = socket.send_to(b"fault test", "10.89.0.1:9");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let status = gateway_daemon
        .proc
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the gateway kept running with a dead worker:\n{text}")
        });
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !status.success(),
        "a worker panic must end in a non-zero exit, got {status}:\n{text}"
    );
    for expected in [
        "data-plane worker panicked",
        "XDP detached",
        "stopping the gateway",
    ] {
        assert!(text.contains(expected), "log lacks {expected:?}:\n{text}");
    }
    let program = gateway
        .netlink(|netlink: &mut Netlink| netlink.link_by_index(veth.a.index))
        .unwrap()
        .xdp_program_id;
    assert_eq!(
        program, None,
        "XDP is still attached after the gateway died"
    );
}

#[test]
fn sigterm_stops_cleanly_with_xdp_detached_and_the_tun_gone() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let (gateway, peer) = (Host::new("g").unwrap(), Host::new("p").unwrap());
    let veth = Veth::new(&gateway, &peer, 1).unwrap();
    gateway
        .add_address(&veth.a, "10.204.0.1".parse().unwrap(), 24)
        .unwrap();
    let dir = TempDir::new();
    let name = format!("{}g", unique_name());
    let mut daemon = warpline_up(
        &gateway,
        &dir,
        &name,
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.91.0.1/32\n\
             Attach = {}\n",
            PrivateKey::generate().to_base64(),
            veth.a.name
        ),
    );
    let attached = |gateway: &Host| {
        gateway
            .netlink(|netlink: &mut Netlink| netlink.link_by_index(veth.a.index))
            .unwrap()
            .xdp_program_id
    };
    assert!(attached(&gateway).is_some(), "XDP is not attached while up");
    // Idle, the workers back off to sleeping in poll: the gateway uses next to no CPU. A
    // worker that kept busy-polling would use a whole core.
    let pid = daemon.proc.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_time(pid) - before;
    assert!(
        used < Duration::from_secs(1),
        "an idle gateway used {used:?} of CPU in 2 s"
    );
    // SAFETY: kill only sends a signal to the child we started.
    let rc = unsafe { libc::kill(daemon.proc.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = daemon
        .proc
        .wait_exit(Duration::from_secs(5))
        .expect("no exit after SIGTERM");
    assert!(
        status.success(),
        "SIGTERM should end in a clean exit: {status}"
    );
    assert_eq!(attached(&gateway), None, "XDP still attached after SIGTERM");
    let tun = gateway.netlink(|netlink: &mut Netlink| netlink.link_by_name(&name));
    assert!(tun.is_err(), "the TUN device outlived the gateway");
}

/// User plus system CPU time of process `pid` so far, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at field 3; utime and
    // stime are fields 14 and 15, in clock ticks.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a configuration value and touches no memory.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}
