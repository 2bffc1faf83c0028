//! The worker layout keys take effect in a running XDP gateway (as root, in namespaces):
//! `Workers` decides how many queues get a worker, `Cores` where each worker thread is pinned
//! (read back from the kernel, not from warpline's own report), and a layout the NIC cannot
//! carry is refused before anything is set up, naming the key.

mod gateway_support;

use std::time::Duration;

use gateway_support::{TempDir, command_in, warpline_up};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, Veth, require_root, unique_name};

/// The CPUs the kernel lets thread `comm` of process `pid` run on (`Cpus_allowed_list`).
fn thread_cpus(pid: u32, comm: &str) -> Option<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.trim() != comm {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).ok()?;
        return status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .map(|cpus| cpus.trim().to_owned());
    }
    None
}

fn last_online_cpu() -> u32 {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    *warpline_control::config::parse_cpu_list(online.trim())
        .unwrap()
        .last()
        .unwrap()
}

#[test]
fn workers_and_cores_decide_the_running_workers() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let (gateway, peer) = (Host::new("g").unwrap(), Host::new("p").unwrap());
    let veth = Veth::new(&gateway, &peer, 2).unwrap();
    gateway
        .add_address(&veth.a, "10.205.0.1".parse().unwrap(), 24)
        .unwrap();
    let cpu = last_online_cpu();
    let dir = TempDir::new();
    let name = format!("{}g", unique_name());
    let daemon = warpline_up(
        &gateway,
        &dir,
        &name,
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.92.0.1/32\n\
             Attach = {}\nWorkers = 1\nCores = {cpu}\nRingSize = 512\nFrameSize = 2048\n\
             BusyPoll = on\n",
            PrivateKey::generate().to_base64(),
            veth.a.name
        ),
    );
    let show = daemon.show_json();
    // `show` lists the AF_XDP workers, then the kernel socket (handshakes) as the last row.
    let rows = show["workers"].as_array().expect("workers in show --json");
    let (kernel_socket, workers) = rows.split_last().expect("at least the kernel socket");
    assert_eq!(kernel_socket["core"], serde_json::Value::Null);
    assert_eq!(workers.len(), 1, "Workers = 1 on a 2-queue NIC: {show:#}");
    assert_eq!(workers[0]["core"], cpu, "Cores = {cpu}: {show:#}");
    let pid = daemon.proc.child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let pinned = loop {
        // The thread pins itself when it starts; give it a moment.
        let pinned = thread_cpus(pid, "wl-worker-0");
        if pinned.as_deref() == Some(cpu.to_string().as_str())
            || std::time::Instant::now() > deadline
        {
            break pinned;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        pinned.as_deref(),
        Some(cpu.to_string().as_str()),
        "the worker thread is not pinned to CPU {cpu}"
    );
    assert_eq!(
        thread_cpus(pid, "wl-worker-1"),
        None,
        "a second worker runs although Workers = 1"
    );
    daemon.down();
}

#[test]
fn a_layout_the_nic_cannot_carry_is_refused_naming_the_key() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let (gateway, peer) = (Host::new("g").unwrap(), Host::new("p").unwrap());
    let veth = Veth::new(&gateway, &peer, 2).unwrap();
    let dir = TempDir::new();
    let name = format!("{}g", unique_name());
    let config = dir.write(
        &format!("{name}.conf"),
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAttach = {}\nWorkers = 3\n",
            PrivateKey::generate().to_base64(),
            veth.a.name
        ),
    );
    let output = command_in(gateway.netns(), env!("CARGO_BIN_EXE_warpline"))
        .arg("up")
        .arg(&config)
        .arg("--control-socket")
        .arg(dir.0.join(format!("{name}.sock")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "Workers = 3 on 2 queues started");
    assert!(
        stderr.contains("Workers = 3")
            && stderr.contains(&veth.a.name)
            && stderr.contains("ethtool -L"),
        "the refusal does not name the key, the NIC and the fix: {stderr}"
    );
    let link = gateway.netlink(|netlink| netlink.link_by_name(&name));
    assert!(link.is_err(), "a TUN was created for a refused layout");
}
