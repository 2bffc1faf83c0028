use std::io;
use std::path::PathBuf;

use super::*;
use crate::doctor::facts::{BindProbe, NicSysfs, QueueIrq};
use crate::doctor::sys::ethtool::{Channels, DriverInfo, Features, UdpFlow, rxh};
use crate::doctor::sys::kernel::{BpfProbe, Limit, cap};
use crate::doctor::{FixAction, Status};
use crate::layout::Cpu;

const PRIVATE_KEY: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
const PEER_KEY: &str = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=";
const ROOT_CAPS: u64 = (1 << 41) - 1;

fn config(extra: &str) -> Config {
    let text = format!("[Interface]\nPrivateKey = {PRIVATE_KEY}\nAttach = eth0\n{extra}");
    Config::parse(&text, "wl0.conf").unwrap()
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A healthy 8-CPU, single-node host, as root.
fn host() -> HostReport {
    HostReport {
        kernel_release: Ok("6.8.0-45-generic".into()),
        bpf: Ok(BpfProbe { jited: true }),
        bpf_jit_sysctl: Some("1".into()),
        btf: true,
        af_xdp: Ok(()),
        memlock: Ok(Limit {
            soft: Some(8 << 20),
            hard: Some(8 << 20),
        }),
        capabilities: Ok(ROOT_CAPS),
        cpus: Ok((0..8).map(Cpu::plain).collect()),
        isolated: Vec::new(),
        cpu_busy: Vec::new(),
    }
}

fn ice_channels(combined: u32) -> Channels {
    Channels {
        max_combined: 64,
        max_other: 1,
        combined,
        other: 1,
        ..Channels::default()
    }
}

/// A healthy ice NIC with `queues` combined channels, one IRQ per queue on CPU 0.
fn ice(queues: u32) -> NicReport {
    NicReport {
        name: "eth0".into(),
        link: Ok((2, vec![2, 0, 0, 0, 0, 1])),
        driver: Ok(DriverInfo {
            driver: "ice".into(),
            version: "1.13.7".into(),
            firmware: "4.40".into(),
            bus: "0000:3b:00.0".into(),
        }),
        channels: Ok(ice_channels(queues)),
        xdp_features: Ok(0b1011),
        bind_probe: BindProbe::Bound,
        udp_hash: vec![
            (UdpFlow::V4, Ok(rxh::ADDRESSES_AND_PORTS)),
            (UdpFlow::V6, Ok(rxh::ADDRESSES_AND_PORTS)),
        ],
        features: Ok(Features::default()),
        mtu: Ok(1500),
        has_global_ipv6: false,
        sysfs: Some(NicSysfs {
            rx_queues: queues,
            numa_node: None,
            has_device: true,
            queue_irqs: Vec::new(),
            napi_defer_hard_irqs: Some(0),
            gro_flush_timeout: Some(0),
        }),
    }
}

/// A veth end with `queues` of at most 8 queues, seen from another network namespace's
/// sysfs (as in the lab test).
fn veth(queues: u32) -> NicReport {
    NicReport {
        driver: Ok(DriverInfo {
            driver: "veth".into(),
            version: "1.0".into(),
            firmware: String::new(),
            bus: String::new(),
        }),
        channels: Ok(Channels {
            max_rx: 8,
            max_tx: 8,
            rx: queues,
            tx: queues,
            ..Channels::default()
        }),
        xdp_features: Ok(0b0011),
        udp_hash: vec![
            (UdpFlow::V4, Err(errno(libc::EOPNOTSUPP))),
            (UdpFlow::V6, Err(errno(libc::EOPNOTSUPP))),
        ],
        sysfs: None,
        ..ice(queues)
    }
}

fn find<'a>(findings: &'a [Finding], scope: &str, check: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.scope == scope && f.check == check)
        .unwrap_or_else(|| panic!("no {scope} {check} row in {findings:#?}"))
}

fn not_ok(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.status != Status::Ok)
        .map(|f| format!("{} {} {:?}: {}", f.scope, f.check, f.status, f.found))
        .collect()
}

#[test]
fn a_healthy_host_and_nic_pass_every_check() {
    let config = config("Workers = 4\n");
    let mut nic = ice(4);
    if let Some(sysfs) = &mut nic.sysfs {
        sysfs.queue_irqs = (0..4)
            .map(|queue| QueueIrq {
                irq: 40 + queue,
                name: format!("ice-eth0-TxRx-{queue}"),
                queue,
                affinity: vec![queue + 1],
            })
            .collect();
    }
    let findings = evaluate(&host(), &[nic], Some(&config));
    assert_eq!(not_ok(&findings), Vec::<String>::new());
    let layout = find(&findings, "config", "layout");
    assert!(
        layout
            .found
            .starts_with("4 workers (q0->cpu1 q1->cpu2 q2->cpu3 q3->cpu4)"),
        "{}",
        layout.found
    );
    for check in [
        "queues",
        "mtu",
        "rss-udp4",
        "xdp-native",
        "zero-copy",
        "af-xdp-bind",
    ] {
        assert_eq!(find(&findings, "eth0", check).status, Status::Ok, "{check}");
    }
    assert_eq!(find(&findings, "cpu", "smt").status, Status::Ok);
}

#[test]
fn the_lab_setup_fails_queues_mtu_and_memlock_with_fixes() {
    let config = config("Workers = 4\nMTU = 1480\n");
    let mut host = host();
    host.capabilities = Ok(ROOT_CAPS & !(1 << cap::IPC_LOCK) & !(1 << cap::SYS_RESOURCE));
    host.memlock = Ok(Limit {
        soft: Some(64 << 10),
        hard: Some(64 << 10),
    });
    let findings = evaluate(&host, &[veth(1)], Some(&config));

    let layout = find(&findings, "config", "layout");
    assert_eq!(layout.status, Status::Fail);
    assert!(
        layout.found.contains("Workers = 4 but eth0 has 1 queue"),
        "{}",
        layout.found
    );

    let queues = find(&findings, "eth0", "queues");
    assert_eq!(queues.status, Status::Fail);
    let fix = queues.fix.as_ref().unwrap();
    assert_eq!(fix.command, "ethtool -L eth0 rx 4 tx 4");
    assert!(matches!(
        queues.pending_action(),
        Some(FixAction::SetChannels { channels, .. }) if channels.rx == 4 && channels.tx == 4
    ));

    let mtu = find(&findings, "eth0", "mtu");
    assert_eq!(mtu.status, Status::Fail);
    assert!(
        mtu.found
            .contains("MTU 1500; tunnel MTU 1480 + 60 (IPv4 outer) = 1540"),
        "{}",
        mtu.found
    );
    assert_eq!(
        mtu.pending_action(),
        Some(&FixAction::SetMtu {
            nic: "eth0".into(),
            mtu: 1540
        })
    );

    let memlock = find(&findings, "host", "memlock");
    assert_eq!(memlock.status, Status::Fail);
    assert!(
        memlock
            .found
            .contains("soft 64 KiB, hard 64 KiB; the workers' UMEM needs 64 MiB"),
        "{}",
        memlock.found
    );
    assert!(
        memlock.pending_action().is_none(),
        "a process limit is explained, not fixed"
    );
    assert!(
        memlock
            .fix
            .as_ref()
            .unwrap()
            .command
            .contains("ulimit -l unlimited")
    );

    // A software NIC: no IRQs to pin, no RSS to configure, no zero-copy.
    assert_eq!(find(&findings, "eth0", "irq-affinity").status, Status::Ok);
    assert_eq!(find(&findings, "eth0", "rss-udp4").status, Status::Ok);
    assert_eq!(find(&findings, "eth0", "zero-copy").status, Status::Warn);
    assert!(
        findings.iter().all(|f| f.scope != "cpu"),
        "no CPU rows without a layout"
    );
}

#[test]
fn the_same_lab_setup_passes_once_fixed() {
    let config = config("Workers = 4\nMTU = 1480\n");
    let mut nic = veth(4);
    nic.mtu = Ok(1540);
    let findings = evaluate(&host(), &[nic], Some(&config));
    for (scope, check) in [
        ("config", "layout"),
        ("eth0", "queues"),
        ("eth0", "mtu"),
        ("host", "memlock"),
    ] {
        assert_eq!(
            find(&findings, scope, check).status,
            Status::Ok,
            "{scope} {check}"
        );
    }
}

#[test]
fn more_queues_than_workers_warns_and_shrinks_the_nic() {
    let findings = evaluate(&host(), &[ice(16)], Some(&config("Workers = 4\n")));
    let queues = find(&findings, "eth0", "queues");
    assert_eq!(queues.status, Status::Warn);
    assert!(
        queues.found.contains("queues 4-15 have none"),
        "{}",
        queues.found
    );
    assert_eq!(
        queues.fix.as_ref().unwrap().command,
        "ethtool -L eth0 combined 4"
    );
}

#[test]
fn a_nic_that_cannot_have_enough_queues_says_what_to_lower() {
    let mut nic = veth(1);
    nic.channels = Ok(Channels {
        max_rx: 2,
        max_tx: 2,
        rx: 1,
        tx: 1,
        ..Channels::default()
    });
    let findings = evaluate(&host(), &[nic], Some(&config("Workers = 4\n")));
    let queues = find(&findings, "eth0", "queues");
    assert_eq!(queues.status, Status::Fail);
    assert!(queues.pending_action().is_none());
    assert!(
        queues
            .fix
            .as_ref()
            .unwrap()
            .command
            .contains("set Workers = 2")
    );
}

#[test]
fn ipv6_endpoints_need_80_bytes_of_headroom() {
    let config = config(&format!(
        "MTU = 1440\n[Peer]\nPublicKey = {PEER_KEY}\nEndpoint = [2001:db8::1]:51820\n"
    ));
    let findings = evaluate(&host(), &[ice(2)], Some(&config));
    let mtu = find(&findings, "eth0", "mtu");
    assert_eq!(mtu.status, Status::Fail, "{}", mtu.found);
    assert!(
        mtu.found.contains("+ 80 (IPv6 outer) = 1520"),
        "{}",
        mtu.found
    );
    let mut nic = ice(2);
    nic.has_global_ipv6 = true;
    let findings = evaluate(
        &host(),
        &[nic],
        Some(&crate::doctor::checks::tests::config("")),
    );
    assert_eq!(find(&findings, "eth0", "mtu").status, Status::Ok);
}

#[test]
fn udp_hashing_without_ports_is_fixed_per_flow() {
    let mut nic = ice(4);
    nic.udp_hash[1].1 = Ok(rxh::IP_SRC | rxh::IP_DST);
    let findings = evaluate(&host(), &[nic], Some(&config("")));
    assert_eq!(find(&findings, "eth0", "rss-udp4").status, Status::Ok);
    let v6 = find(&findings, "eth0", "rss-udp6");
    assert_eq!(v6.status, Status::Warn);
    assert_eq!(v6.found, "hashes src IP + dst IP only");
    assert_eq!(
        v6.fix.as_ref().unwrap().command,
        "ethtool -N eth0 rx-flow-hash udp6 sdfn"
    );
    let mut physical = ice(4);
    physical.udp_hash[0].1 = Err(errno(libc::EOPNOTSUPP));
    let findings = evaluate(&host(), &[physical], Some(&config("")));
    assert_eq!(find(&findings, "eth0", "rss-udp4").status, Status::Warn);
}

#[test]
fn lro_and_hardware_gro_are_turned_off() {
    let mut nic = ice(2);
    nic.features = Ok(features(&[
        ("rx-lro", true),
        ("rx-gro-hw", true),
        ("rx-checksum", true),
    ]));
    let findings = evaluate(&host(), &[nic], Some(&config("")));
    let offloads = find(&findings, "eth0", "offloads");
    assert_eq!(offloads.status, Status::Warn);
    assert_eq!(
        offloads.fix.as_ref().unwrap().command,
        "ethtool -K eth0 rx-lro off rx-gro-hw off"
    );
    assert_eq!(
        offloads.pending_action(),
        Some(&FixAction::DisableFeatures {
            nic: "eth0".into(),
            features: vec!["rx-lro", "rx-gro-hw"]
        })
    );
}

fn features(named: &[(&str, bool)]) -> Features {
    let mut features = Features::default();
    features.features = named
        .iter()
        .map(|&(name, on)| (name.to_owned(), on, true))
        .collect();
    features
}

#[test]
fn queue_interrupts_follow_their_workers() {
    let mut nic = ice(2);
    if let Some(sysfs) = &mut nic.sysfs {
        sysfs.queue_irqs = vec![
            QueueIrq {
                irq: 45,
                name: "ice-eth0-TxRx-0".into(),
                queue: 0,
                affinity: vec![1],
            },
            QueueIrq {
                irq: 46,
                name: "ice-eth0-TxRx-1".into(),
                queue: 1,
                affinity: (0..8).collect(),
            },
        ];
    }
    let findings = evaluate(&host(), &[nic], Some(&config("Cores = 1,2\n")));
    let irq = find(&findings, "eth0", "irq-affinity");
    assert_eq!(irq.status, Status::Warn);
    assert_eq!(irq.found, "queue 1 (IRQ 46) on CPUs 0-7, worker on 2");
    assert_eq!(
        irq.pending_action(),
        Some(&FixAction::WriteFiles {
            writes: vec![(PathBuf::from("/proc/irq/46/smp_affinity_list"), "2".into())]
        })
    );
}

#[test]
fn memlock_is_fine_when_the_gateway_can_raise_or_bypass_it() {
    let low = Limit {
        soft: Some(64 << 10),
        hard: Some(64 << 10),
    };
    let without = |caps: &[u32]| caps.iter().fold(ROOT_CAPS, |all, cap| all & !(1 << cap));
    let cases = [
        (without(&[]), low, Status::Ok),
        (without(&[cap::IPC_LOCK]), low, Status::Ok),
        (
            without(&[cap::IPC_LOCK, cap::SYS_RESOURCE]),
            low,
            Status::Fail,
        ),
        (
            without(&[cap::IPC_LOCK, cap::SYS_RESOURCE]),
            Limit {
                soft: Some(64 << 10),
                hard: None,
            },
            Status::Ok,
        ),
    ];
    for (caps, limit, expected) in cases {
        let mut host = host();
        host.capabilities = Ok(caps);
        host.memlock = Ok(limit);
        let findings = evaluate(&host, &[ice(2)], Some(&config("")));
        assert_eq!(
            find(&findings, "host", "memlock").status,
            expected,
            "{caps:x} {limit:?}"
        );
    }
    let mut host = host();
    host.capabilities = Ok(without(&[cap::IPC_LOCK, cap::SYS_RESOURCE]));
    host.memlock = Ok(low);
    let findings = evaluate(&host, &[], None);
    assert_eq!(
        find(&findings, "host", "memlock").status,
        Status::Warn,
        "no config: unknown need"
    );
    let portable = Config::parse(&format!("[Interface]\nPrivateKey = {PRIVATE_KEY}\n"), "x");
    let findings = evaluate(&host, &[], Some(&portable.unwrap()));
    let memlock = find(&findings, "host", "memlock");
    assert_eq!(
        memlock.status,
        Status::Ok,
        "portable mode: {}",
        memlock.found
    );
}

#[test]
fn kernel_features_and_capabilities_fail_with_the_reason() {
    let mut host = host();
    host.kernel_release = Ok("5.4.0-150-generic".into());
    host.bpf = Err(errno(libc::EPERM));
    host.af_xdp = Err(errno(libc::EAFNOSUPPORT));
    host.capabilities = Ok(1 << cap::NET_RAW);
    host.btf = false;
    let findings = evaluate(&host, &[], None);
    assert_eq!(find(&findings, "host", "kernel").status, Status::Fail);
    assert_eq!(find(&findings, "host", "bpf-syscall").status, Status::Fail);
    assert_eq!(find(&findings, "host", "af-xdp").status, Status::Fail);
    assert_eq!(find(&findings, "host", "btf").status, Status::Warn);
    let caps = find(&findings, "host", "capabilities");
    assert_eq!(caps.status, Status::Fail);
    assert!(
        caps.found
            .starts_with("missing cap_net_admin cap_bpf; effective: cap_net_raw"),
        "{}",
        caps.found
    );
    assert_eq!(find(&findings, "config", "layout").status, Status::Ok);
}

#[test]
fn an_interpreted_bpf_program_gets_the_jit_sysctl() {
    let mut host = host();
    host.bpf = Ok(BpfProbe { jited: false });
    host.bpf_jit_sysctl = Some("0".into());
    let findings = evaluate(&host, &[], None);
    let jit = find(&findings, "host", "bpf-jit");
    assert_eq!(jit.status, Status::Warn);
    assert_eq!(
        jit.pending_action(),
        Some(&FixAction::WriteFiles {
            writes: vec![(
                PathBuf::from("/proc/sys/net/core/bpf_jit_enable"),
                "1".into()
            )]
        })
    );
    host.bpf_jit_sysctl = None;
    let findings = evaluate(&host, &[], None);
    assert!(
        find(&findings, "host", "bpf-jit")
            .pending_action()
            .is_none()
    );
}

#[test]
fn shared_cores_and_remote_nodes_warn() {
    let mut host = host();
    host.cpus = Ok((0..8)
        .map(|id| Cpu {
            id,
            numa_node: Some(id % 4 / 2),
            thread_siblings: vec![id % 4, id % 4 + 4],
        })
        .collect());
    let mut nic = ice(2);
    if let Some(sysfs) = &mut nic.sysfs {
        sysfs.numa_node = Some(0);
    }
    let findings = evaluate(&host, &[nic], Some(&config("Cores = 2,6\n")));
    let smt = find(&findings, "cpu", "smt");
    assert_eq!(smt.status, Status::Warn);
    assert_eq!(smt.found, "workers share physical cores: CPUs 2+6");
    assert!(
        smt.fix.as_ref().unwrap().command.contains("Cores = 0-3"),
        "{:?}",
        smt.fix
    );
    let numa = find(&findings, "cpu", "numa");
    assert_eq!(numa.status, Status::Warn);
    assert!(
        numa.found
            .contains("eth0 is on node 0, workers on CPUs 2,6 are not"),
        "{}",
        numa.found
    );
    assert!(
        numa.fix
            .as_ref()
            .unwrap()
            .command
            .contains("CPUs of node 0 (0-1,4-5)")
    );
}

#[test]
fn busy_poll_wants_isolated_cpus_and_napi_settings() {
    let mut host = host();
    host.cpu_busy = vec![(1, 0.9), (2, 0.05)];
    let findings = evaluate(&host, &[ice(2)], Some(&config("BusyPoll = on\n")));
    assert_eq!(find(&findings, "cpu", "isolation").status, Status::Warn);
    let load = find(&findings, "cpu", "load");
    assert_eq!(load.status, Status::Warn);
    assert!(load.found.starts_with("CPU 1 90% busy"), "{}", load.found);
    let napi = find(&findings, "eth0", "busy-poll");
    assert_eq!(napi.status, Status::Warn);
    assert!(matches!(
        napi.pending_action(),
        Some(FixAction::WriteFiles { writes }) if writes.len() == 2
    ));
    let findings = evaluate(&host, &[ice(2)], Some(&config("")));
    assert!(findings.iter().all(|f| f.check != "busy-poll"));
    assert_eq!(find(&findings, "cpu", "isolation").status, Status::Ok);
}

#[test]
fn zero_copy_on_a_copy_only_driver_fails() {
    let findings = evaluate(&host(), &[veth(1)], Some(&config("ZeroCopy = on\n")));
    assert_eq!(find(&findings, "eth0", "zero-copy").status, Status::Fail);
    let layout = find(&findings, "config", "layout");
    assert_eq!(layout.status, Status::Fail);
    assert!(
        layout.found.contains("ZeroCopy = on but eth0's driver"),
        "{}",
        layout.found
    );
}

#[test]
fn generic_only_drivers_fail_when_native_is_required() {
    let mut nic = ice(1);
    nic.xdp_features = Err(errno(libc::ENOENT));
    nic.driver = Ok(DriverInfo {
        driver: "e1000e".into(),
        version: "3.2".into(),
        firmware: String::new(),
        bus: String::new(),
    });
    let findings = evaluate(&host(), &[nic], Some(&config("XdpMode = native\n")));
    let xdp = find(&findings, "eth0", "xdp-native");
    assert_eq!(xdp.status, Status::Fail);
    assert!(
        xdp.found.contains("driver table says no native XDP"),
        "{}",
        xdp.found
    );
}

#[test]
fn a_missing_nic_gets_one_row() {
    let mut nic = ice(1);
    nic.link = Err(errno(libc::ENODEV));
    let findings = evaluate(&host(), &[nic], Some(&config("")));
    let rows: Vec<&str> = findings
        .iter()
        .filter(|f| f.scope == "eth0")
        .map(|f| f.check)
        .collect();
    assert_eq!(rows, ["exists"]);
    assert!(
        find(&findings, "config", "layout")
            .found
            .contains("Attach: eth0 is not a network interface")
    );
}

#[test]
fn the_inner_nic_needs_a_queue_per_worker_and_native_xdp() {
    let config = config("Inner = eth1\nWorkers = 4\n");
    let mut lan = ice(2);
    lan.name = "eth1".into();
    let findings = evaluate_with_inner(&host(), &[ice(4)], Some(&lan), Some(&config));
    assert_eq!(find(&findings, "eth0", "queues").status, Status::Ok);
    let queues = find(&findings, "eth1 (Inner)", "queues");
    assert_eq!(queues.status, Status::Fail, "{}", queues.found);
    assert_eq!(
        queues.fix.as_ref().unwrap().command,
        "ethtool -L eth1 combined 4"
    );
    assert_eq!(
        find(&findings, "eth1 (Inner)", "xdp-native").status,
        Status::Ok
    );
    let mut missing = ice(4);
    missing.name = "eth9".into();
    missing.link = Err(errno(libc::ENODEV));
    let findings = evaluate_with_inner(&host(), &[ice(4)], Some(&missing), Some(&config));
    assert_eq!(
        find(&findings, "eth9 (Inner)", "exists").status,
        Status::Fail
    );
}
