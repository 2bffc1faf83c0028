use std::path::{Path, PathBuf};

use warpline_dataplane::xsk::BindMode;

use super::*;
use crate::config::Config;

const PRIVATE_KEY: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";

fn interface(keys: &str) -> InterfaceConfig {
    let text = format!("[Interface]\nPrivateKey = {PRIVATE_KEY}\nAttach = eth0\n{keys}");
    Config::parse(&text, "wl0.conf").unwrap().interface
}

fn nic(queues: u32, numa_node: Option<u32>) -> NicFacts {
    NicFacts {
        name: "eth0".to_owned(),
        queues,
        numa_node,
        zero_copy: None,
    }
}

/// `count` CPUs without SMT on one unknown node.
fn flat_host(count: u32, queues: u32) -> HostFacts {
    HostFacts {
        cpus: (0..count).map(Cpu::plain).collect(),
        nics: vec![nic(queues, None)],
    }
}

/// Two nodes of 4 cores with 2 threads each: node 0 has CPUs 0-3 and 8-11, node 1 has 4-7
/// and 12-15; CPU n and n+8 are siblings.
fn two_node_smt_host(queues: u32, nic_node: u32) -> HostFacts {
    let cpus = (0..16)
        .map(|id| {
            let core = id % 8;
            Cpu {
                id,
                numa_node: Some(core / 4),
                thread_siblings: vec![core, core + 8],
            }
        })
        .collect();
    HostFacts {
        cpus,
        nics: vec![nic(queues, Some(nic_node))],
    }
}

fn placements(layout: &Layout) -> Vec<(u32, u32)> {
    layout.workers.iter().map(|w| (w.queue, w.cpu)).collect()
}

#[test]
fn auto_takes_one_thread_per_core_on_the_nic_node_and_spares_cpu0() {
    let layout = plan(&interface(""), &two_node_smt_host(16, 0)).unwrap();
    // Node 0: cores 1-3 first (CPU 0 spared), then their siblings 9-11 and 8.
    assert_eq!(
        placements(&layout),
        [(0, 1), (1, 2), (2, 3), (3, 8), (4, 9), (5, 10), (6, 11)]
    );
    assert_eq!(layout.queues_per_nic, 7);
    assert!(layout.warnings.contains(&LayoutWarning::UnservedQueues {
        nic: "eth0".into(),
        queues: 16,
        served: 7
    }));
    assert!(
        layout
            .warnings
            .iter()
            .any(|w| matches!(w, LayoutWarning::SharedPhysicalCore { cpus: [1, 9] })),
        "{:?}",
        layout.warnings
    );

    let layout = plan(&interface(""), &two_node_smt_host(2, 1)).unwrap();
    assert_eq!(placements(&layout), [(0, 4), (1, 5)]);
    assert!(layout.warnings.is_empty(), "{:?}", layout.warnings);
}

#[test]
fn auto_on_small_hosts_uses_every_cpu_and_follows_the_nic_queues() {
    let layout = plan(&interface(""), &flat_host(2, 1)).unwrap();
    assert_eq!(placements(&layout), [(0, 0)]);
    let layout = plan(&interface(""), &flat_host(2, 4)).unwrap();
    assert_eq!(placements(&layout), [(0, 0), (1, 1)]);
    let layout = plan(&interface(""), &flat_host(8, 4)).unwrap();
    assert_eq!(placements(&layout), [(0, 1), (1, 2), (2, 3), (3, 4)]);
    assert!(layout.warnings.is_empty());
}

#[test]
fn fixed_workers_spill_to_other_nodes_with_a_warning() {
    let layout = plan(&interface("Workers = 10\n"), &two_node_smt_host(16, 0)).unwrap();
    assert_eq!(layout.workers.len(), 10);
    let cpus: Vec<u32> = layout.workers.iter().map(|w| w.cpu).collect();
    assert_eq!(cpus[..3], [1, 2, 3], "NIC node first");
    assert!(layout.warnings.iter().any(|w| matches!(
        w,
        LayoutWarning::CpusOffNicNode { node: 0, cpus, .. } if !cpus.is_empty()
    )));
}

#[test]
fn queues_key_sets_the_worker_count() {
    let layout = plan(&interface("Queues = 3\n"), &flat_host(8, 8)).unwrap();
    assert_eq!(layout.workers.len(), 3);
    assert_eq!(layout.queues_per_nic, 3);
}

#[test]
fn cores_pin_workers_in_the_order_listed() {
    let layout = plan(&interface("Cores = 6,2-3\n"), &flat_host(8, 8)).unwrap();
    assert_eq!(placements(&layout), [(0, 6), (1, 2), (2, 3)]);
    let layout = plan(&interface("Workers = 2\nCores = 5-7\n"), &flat_host(8, 8)).unwrap();
    assert_eq!(placements(&layout), [(0, 5), (1, 6)]);
}

#[test]
fn socket_shape_follows_the_keys() {
    let layout = plan(
        &interface("ZeroCopy = off\nFrameSize = 2048\nRingSize = 8192\nBusyPoll = on\n"),
        &flat_host(2, 1),
    )
    .unwrap();
    assert_eq!(layout.bind_mode, BindMode::Copy);
    assert_eq!(layout.frame_size, 2048);
    assert_eq!(layout.ring_size, 8192);
    assert_eq!(layout.frames_per_worker, 16384);
    assert!(layout.busy_poll);
    assert_eq!(layout.umem_bytes_total(), 16384 * 2048);
    let layout = plan(&interface(""), &flat_host(2, 2)).unwrap();
    assert_eq!(layout.bind_mode, BindMode::Auto);
    assert_eq!(layout.frames_per_worker, 4096);
    assert_eq!(layout.umem_bytes_total(), 2 * 4096 * 4096);
}

#[test]
fn impossible_layouts_name_the_key() {
    let cases: [(&str, HostFacts, &str, &str); 7] = [
        (
            "Workers = 8\n",
            flat_host(16, 4),
            "Workers",
            "[Interface] Workers: Workers = 8 but eth0 has 4 queues; raise its queues \
             (`ethtool -L eth0 combined 8`) or lower Workers",
        ),
        (
            "Queues = 2\n",
            flat_host(16, 1),
            "Queues",
            "[Interface] Queues: Queues = 2 but eth0 has 1 queue;",
        ),
        (
            "Workers = 4\n",
            flat_host(2, 8),
            "Workers",
            "[Interface] Workers: Workers = 4 but only 2 CPUs are online (0-1); lower Workers",
        ),
        (
            "Cores = 1,9\n",
            flat_host(4, 4),
            "Cores",
            "[Interface] Cores: CPU 9 is not online (online: 0-3)",
        ),
        (
            "ZeroCopy = on\n",
            HostFacts {
                nics: vec![NicFacts {
                    zero_copy: Some(false),
                    ..nic(1, None)
                }],
                ..flat_host(2, 1)
            },
            "ZeroCopy",
            "[Interface] ZeroCopy: ZeroCopy = on but eth0's driver has no AF_XDP zero-copy",
        ),
        (
            "",
            HostFacts {
                nics: Vec::new(),
                ..flat_host(2, 1)
            },
            "Attach",
            "[Interface] Attach: eth0 is not a network interface on this host",
        ),
        (
            "MTU = 3000\nFrameSize = 2048\n",
            flat_host(2, 1),
            "FrameSize",
            "[Interface] FrameSize: FrameSize = 2048 holds tunnel packets up to MTU 1679",
        ),
    ];
    for (keys, host, key, expected) in cases {
        // Built by hand: the parser would already refuse the last case.
        let mut config = interface("");
        let parsed = Config::parse(
            &format!("[Interface]\nPrivateKey = {PRIVATE_KEY}\n{keys}"),
            "x",
        );
        if let Ok(parsed) = parsed {
            config.layout = parsed.interface.layout;
            config.mtu = parsed.interface.mtu;
        } else {
            config.mtu = Some(3000);
            config.layout.frame_size = crate::config::FrameSize::new(2048).unwrap();
        }
        let error = plan(&config, &host).unwrap_err();
        assert_eq!(error.key(), key, "{keys:?}: {error}");
        assert!(error.to_string().starts_with(expected), "{keys:?}: {error}");
    }
    let mut portable = interface("");
    portable.attach.clear();
    assert_eq!(
        plan(&portable, &flat_host(2, 1)).unwrap_err(),
        LayoutError::NoAttach
    );
}

/// A fake sysfs tree in a temp dir, removed on drop.
struct FakeSys(PathBuf);

impl FakeSys {
    fn new(label: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("warpline-layout-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn dir(&self, relative: &str) {
        std::fs::create_dir_all(self.0.join(relative)).unwrap();
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for FakeSys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn host_facts_are_read_from_sysfs() {
    let sys = FakeSys::new("numa");
    sys.write("devices/system/cpu/online", "0-3\n");
    sys.write("devices/system/node/node0/cpulist", "0,2\n");
    sys.write("devices/system/node/node1/cpulist", "1,3\n");
    sys.write("devices/system/node/possible", "0-1\n");
    for (cpu, siblings) in [(0, "0,2"), (1, "1,3"), (2, "0,2"), (3, "1,3")] {
        sys.write(
            &format!("devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"),
            siblings,
        );
    }
    for queue in ["rx-0", "rx-1", "rx-2", "tx-0", "tx-1", "tx-2"] {
        sys.dir(&format!("class/net/eth0/queues/{queue}"));
    }
    sys.write("class/net/eth0/device/numa_node", "1\n");
    sys.dir("class/net/veth0/queues/rx-0");

    let facts = HostFacts::read_from(sys.path(), &["eth0".into(), "veth0".into()]).unwrap();
    assert_eq!(facts.cpus.len(), 4);
    assert_eq!(
        facts.cpus[1],
        Cpu {
            id: 1,
            numa_node: Some(1),
            thread_siblings: vec![1, 3]
        }
    );
    assert_eq!(
        facts.nics[0],
        NicFacts {
            name: "eth0".into(),
            queues: 3,
            numa_node: Some(1),
            zero_copy: None
        }
    );
    assert_eq!((facts.nics[1].queues, facts.nics[1].numa_node), (1, None));

    let layout = plan(&interface(""), &facts).unwrap();
    // Node 1 holds CPUs 1 and 3, siblings of one core: the first thread goes first.
    assert_eq!(placements(&layout), [(0, 1), (1, 3)]);

    let error = HostFacts::read_from(sys.path(), &["eth9".into()]).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("[Interface] Attach: eth9 is not a network interface"),
        "{error}"
    );
}

#[test]
fn sysfs_without_numa_or_topology_still_reads() {
    let sys = FakeSys::new("flat");
    sys.write("devices/system/cpu/online", "0\n");
    sys.dir("class/net/eth0/queues/rx-0");
    sys.write("class/net/eth0/device/numa_node", "-1\n");
    let facts = HostFacts::read_from(sys.path(), &["eth0".into()]).unwrap();
    assert_eq!(facts.cpus, [Cpu::plain(0)]);
    assert_eq!(facts.nics[0].numa_node, None);

    sys.write("devices/system/cpu/online", "zero\n");
    let error = HostFacts::read_from(sys.path(), &[]).unwrap_err();
    assert!(error.to_string().contains("unexpected contents"), "{error}");
}

#[test]
fn this_host_reads_and_lays_out_when_it_has_a_nic() {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return;
    };
    let Some(name) = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name != "lo")
    else {
        return;
    };
    let facts = HostFacts::read(std::slice::from_ref(&name)).unwrap();
    assert!(!facts.cpus.is_empty());
    assert!(facts.nics[0].queues >= 1);
    let mut config = interface("");
    config.attach = vec![name];
    let layout = plan(&config, &facts).unwrap();
    assert!(!layout.workers.is_empty());
}

/// Several `Attach` NICs: their workers take the next CPUs instead of stacking on the first
/// NIC's, and wrap around (sharing) only when the CPUs run out.
#[test]
fn several_nics_spread_their_workers_over_the_cpus() {
    let text = format!(
        "[Interface]\nPrivateKey = {PRIVATE_KEY}\nAttach = eth0\nAttach = eth1\nAttach = eth2\n"
    );
    let interface = Config::parse(&text, "wl0.conf").unwrap().interface;
    let mut host = flat_host(4, 1);
    host.nics = ["eth0", "eth1", "eth2"]
        .iter()
        .map(|name| NicFacts {
            name: (*name).to_owned(),
            ..nic(1, None)
        })
        .collect();
    let layout = plan(&interface, &host).unwrap();
    assert_eq!(layout.worker_count(), 3);
    // Four CPUs, CPU 0 spared: 1, 2, 3 for the three single-queue NICs.
    let cpus: Vec<u32> = (0..3).map(|nic| layout.cpu_for(nic, 0)).collect();
    assert_eq!(cpus, [1, 2, 3]);
    assert_eq!(layout.cpu_for_nic("eth2", 0), Some(3));
    assert_eq!(
        layout.cpu_for_nic("eth2", 1),
        None,
        "eth2 has one served queue"
    );
    assert_eq!(layout.cpu_for_nic("eth9", 0), None);
    assert_eq!(
        layout.umem_bytes_total(),
        3 * layout.umem_bytes_per_worker()
    );

    // Two CPUs for three NICs: the third NIC's worker shares the first CPU.
    let mut small = host.clone();
    small.cpus = (0..2).map(Cpu::plain).collect();
    let layout = plan(&interface, &small).unwrap();
    let cpus: Vec<u32> = (0..3).map(|nic| layout.cpu_for(nic, 0)).collect();
    assert_eq!(cpus, [0, 1, 0]);
}
