//! The worker layout of XDP mode: which queue each AF_XDP worker serves, which CPU it is
//! pinned to, and how its sockets are shaped, derived from the config's layout keys
//! (`Workers`, `Cores`, `Queues`, `ZeroCopy`, `FrameSize`, `RingSize`, `BusyPoll`) and facts
//! about the host.
//!
//! [`plan`] is pure: the host comes in as [`HostFacts`] (read from `/sys` by
//! [`HostFacts::read`], or built by hand in tests), so every rule is unit-tested without a
//! NIC. Worker `i` serves queue `i` of every `Attach` NIC (ARCHITECTURE: one worker per
//! queue, the WAN and LAN sockets of a queue sharing its UMEM).
//!
//! What `auto` means:
//! - CPUs: those on the first `Attach` NIC's NUMA node (all online CPUs when the node is
//!   unknown or has none), one hardware thread per physical core before any second thread,
//!   and CPU 0 last when more than two CPUs are online (it carries the kernel's
//!   housekeeping and, usually, the control plane).
//! - Workers and Queues: as many as the NICs have queues, but no more than the CPUs above;
//!   when one of them is set, the other follows it.

mod host;

#[cfg(test)]
mod tests;

use std::fmt;

use warpline_dataplane::xsk::BindMode;

pub use self::host::{HostFactsError, cpu_list_text};
pub(crate) use self::host::{read_cpu_list, read_cpus, read_numa_node};
use crate::config::{InterfaceConfig, KeyConflict, ZeroCopy};

/// Facts about the host that the layout depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The online CPUs, by id.
    pub cpus: Vec<Cpu>,
    /// The `Attach` NICs, in config order.
    pub nics: Vec<NicFacts>,
}

/// One online CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// The kernel's CPU number.
    pub id: u32,
    /// Its NUMA node, when the kernel reports nodes.
    pub numa_node: Option<u32>,
    /// The hardware threads of its physical core, itself included, ascending.
    pub thread_siblings: Vec<u32>,
}

impl Cpu {
    /// A CPU with no NUMA node and no SMT sibling.
    pub fn plain(id: u32) -> Self {
        Self {
            id,
            numa_node: None,
            thread_siblings: vec![id],
        }
    }

    /// 0 for the first hardware thread of its core, 1 for the second, ...
    fn thread_rank(&self) -> usize {
        self.thread_siblings
            .iter()
            .position(|&sibling| sibling == self.id)
            .unwrap_or(0)
    }

    /// Whether `other` is another hardware thread of the same physical core.
    pub fn is_sibling_of(&self, other: u32) -> bool {
        other != self.id && self.thread_siblings.contains(&other)
    }
}

/// Facts about one `Attach` NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicFacts {
    /// Interface name.
    pub name: String,
    /// RX queues it has now (combined channels count as RX queues).
    pub queues: u32,
    /// The NUMA node of its PCI device, when known.
    pub numa_node: Option<u32>,
    /// Whether its driver supports AF_XDP zero-copy, when known.
    pub zero_copy: Option<bool>,
}

/// Where one worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerPlacement {
    /// Worker number, from 0.
    pub worker: usize,
    /// The queue it serves on every `Attach` NIC.
    pub queue: u32,
    /// The CPU it is pinned to.
    pub cpu: u32,
    /// That CPU's NUMA node, when known.
    pub numa_node: Option<u32>,
}

/// The worker layout for the `Attach` NICs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// One entry per served queue of the first `Attach` NIC: queue `i` on CPU
    /// `cpu_order[i]`. The other NICs' workers follow on the next CPUs ([`Layout::cpu_for`]).
    pub workers: Vec<WorkerPlacement>,
    /// The `Attach` NICs, in config order.
    pub nics: Vec<String>,
    /// The CPUs workers run on, in the order they are handed out: the `Cores` list, or the
    /// `auto` choice (the NIC's node, one thread per physical core first).
    pub cpu_order: Vec<u32>,
    /// Queues each `Attach` NIC should have: one per worker. A NIC with more spreads some
    /// tunnels onto queues no worker serves (see [`LayoutWarning::UnservedQueues`]).
    pub queues_per_nic: u32,
    /// How the AF_XDP sockets bind (`ZeroCopy`).
    pub bind_mode: BindMode,
    /// Bytes per UMEM frame (`FrameSize`).
    pub frame_size: u32,
    /// Descriptors per AF_XDP ring (`RingSize`).
    pub ring_size: u32,
    /// UMEM frames per worker: enough to keep the fill and TX rings full at once.
    pub frames_per_worker: u32,
    /// Whether workers busy-poll their queues (`BusyPoll`).
    pub busy_poll: bool,
    /// Things that work but cost performance.
    pub warnings: Vec<LayoutWarning>,
}

/// The fewest UMEM frames a worker gets, whatever the ring size.
const MIN_FRAMES_PER_WORKER: u32 = 4096;

impl Layout {
    /// Bytes of UMEM one worker pins.
    pub fn umem_bytes_per_worker(&self) -> u64 {
        u64::from(self.frames_per_worker) * u64::from(self.frame_size)
    }

    /// Bytes of UMEM all workers pin together: what `RLIMIT_MEMLOCK` must allow when the
    /// process lacks `CAP_IPC_LOCK`.
    pub fn umem_bytes_total(&self) -> u64 {
        self.umem_bytes_per_worker() * self.worker_count() as u64
    }

    /// Workers on all `Attach` NICs together: one per served queue of each.
    pub fn worker_count(&self) -> usize {
        self.workers.len() * self.nics.len().max(1)
    }

    /// The CPU of the worker serving `queue` of the `nic_index`-th `Attach` NIC: the layout's
    /// CPUs in order, NIC after NIC, so several NICs do not stack their workers on the same
    /// CPUs; past the last CPU the order starts again and workers share.
    pub fn cpu_for(&self, nic_index: usize, queue: u32) -> u32 {
        let slot = nic_index * self.queues_per_nic as usize + queue as usize;
        self.cpu_order
            .get(slot % self.cpu_order.len().max(1))
            .copied()
            .unwrap_or(0)
    }

    /// [`Layout::cpu_for`] by NIC name; `None` for a NIC the layout does not attach.
    pub fn cpu_for_nic(&self, nic: &str, queue: u32) -> Option<u32> {
        let index = self.nics.iter().position(|name| name == nic)?;
        (queue < self.queues_per_nic).then(|| self.cpu_for(index, queue))
    }

    /// The placement of the worker serving `queue`.
    pub fn worker_for_queue(&self, queue: u32) -> Option<&WorkerPlacement> {
        self.workers.iter().find(|w| w.queue == queue)
    }
}

/// A layout that works but leaves performance behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutWarning {
    /// The NIC has queues no worker serves: tunnels that RSS hashes there are not served
    /// by the data plane.
    UnservedQueues {
        /// The NIC.
        nic: String,
        /// Its queue count.
        queues: u32,
        /// Queues served (0 to `served - 1`).
        served: u32,
    },
    /// Workers pinned to CPUs of another NUMA node than the NIC: every packet crosses the
    /// interconnect.
    CpusOffNicNode {
        /// The NIC.
        nic: String,
        /// Its node.
        node: u32,
        /// The worker CPUs elsewhere.
        cpus: Vec<u32>,
    },
    /// Two workers on hardware threads of one physical core share its execution units.
    SharedPhysicalCore {
        /// The two CPUs.
        cpus: [u32; 2],
    },
}

impl fmt::Display for LayoutWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnservedQueues {
                nic,
                queues,
                served,
            } => write!(
                f,
                "{nic} has {queues} queues but workers serve {served}: tunnels hashed to queues \
                 {served}-{} are not served; run `ethtool -L {nic} combined {served}`",
                queues - 1
            ),
            Self::CpusOffNicNode { nic, node, cpus } => write!(
                f,
                "{nic} is on NUMA node {node} but workers run on CPUs {} of other nodes",
                cpu_list_text(cpus)
            ),
            Self::SharedPhysicalCore { cpus: [a, b] } => write!(
                f,
                "CPUs {a} and {b} are hardware threads of one core, and both run a worker"
            ),
        }
    }
}

/// Why no layout fits. Every variant names the config key to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The keys contradict each other.
    #[error("[Interface] {}: {}", .0.key, .0.problem)]
    Conflict(KeyConflict),
    /// No `Attach` NIC, so there is nothing to lay out.
    #[error("[Interface] Attach: no NIC attached; the layout keys apply to XDP mode only")]
    NoAttach,
    /// An `Attach` NIC the host facts do not know.
    #[error("[Interface] Attach: {nic} is not a network interface on this host")]
    UnknownNic {
        /// The NIC.
        nic: String,
    },
    /// More workers or queues than a NIC has queues.
    #[error(
        "[Interface] {key}: {key} = {wanted} but {nic} has {queues} queue{}; raise its queues \
         (`ethtool -L {nic} combined {wanted}`) or lower {key}",
        if *.queues == 1 { "" } else { "s" }
    )]
    TooFewQueues {
        /// `Workers` or `Queues`.
        key: &'static str,
        /// What the key asks for.
        wanted: u32,
        /// The NIC.
        nic: String,
        /// Its queue count.
        queues: u32,
    },
    /// More workers than usable CPUs.
    #[error(
        "[Interface] {key}: {key} = {wanted} but only {usable} CPUs are online ({online}); \
         lower {key}"
    )]
    TooFewCpus {
        /// `Workers` or `Queues`.
        key: &'static str,
        /// What the key asks for.
        wanted: u32,
        /// Online CPUs.
        usable: usize,
        /// Them, as a cpulist.
        online: String,
    },
    /// `Cores` names a CPU that is not online.
    #[error("[Interface] Cores: CPU {cpu} is not online (online: {online})")]
    CpuOffline {
        /// The CPU.
        cpu: u32,
        /// The online CPUs, as a cpulist.
        online: String,
    },
    /// `ZeroCopy = on` on a NIC whose driver lacks zero-copy.
    #[error(
        "[Interface] ZeroCopy: ZeroCopy = on but {nic}'s driver has no AF_XDP zero-copy; set \
         ZeroCopy = auto (copy mode there) or off"
    )]
    ZeroCopyUnsupported {
        /// The NIC.
        nic: String,
    },
    /// The host facts list no online CPU.
    #[error("no online CPU found in the host facts")]
    NoCpus,
}

impl LayoutError {
    /// The config key to change.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Conflict(conflict) => conflict.key,
            Self::NoAttach | Self::UnknownNic { .. } => "Attach",
            Self::TooFewQueues { key, .. } | Self::TooFewCpus { key, .. } => key,
            Self::CpuOffline { .. } => "Cores",
            Self::ZeroCopyUnsupported { .. } => "ZeroCopy",
            Self::NoCpus => "Cores",
        }
    }
}

/// Lays out the workers of `interface` on `host`.
pub fn plan(interface: &InterfaceConfig, host: &HostFacts) -> Result<Layout, LayoutError> {
    let keys = &interface.layout;
    let sockets_per_worker = match interface.inner {
        crate::config::InnerSide::Tun => 1,
        crate::config::InnerSide::Nic(_) => 2,
    };
    let mtu = interface
        .mtu
        .map_or(crate::daemon::DEFAULT_MTU as u32, u32::from);
    keys.check_combination(Some(mtu))
        .map_err(LayoutError::Conflict)?;
    let nics = attached_nics(interface, host)?;
    if host.cpus.is_empty() {
        return Err(LayoutError::NoCpus);
    }
    let online = cpu_list_text(&host.cpus.iter().map(|cpu| cpu.id).collect::<Vec<_>>());
    let nic_node = nics.first().and_then(|nic| nic.numa_node);
    let (cpus, preferred) = match &keys.cores {
        Some(cores) => {
            let listed = cores
                .cpus()
                .iter()
                .map(|&id| {
                    host.cpus.iter().find(|cpu| cpu.id == id).ok_or_else(|| {
                        LayoutError::CpuOffline {
                            cpu: id,
                            online: online.clone(),
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let count = listed.len();
            (listed, count)
        }
        None => auto_cpu_order(&host.cpus, nic_node),
    };
    let fewest_queues = nics.iter().map(|nic| nic.queues).min().unwrap_or(0);
    let (key, wanted) = match (keys.workers.fixed(), keys.queues.fixed()) {
        (Some(workers), _) => ("Workers", workers),
        (None, Some(queues)) => ("Queues", queues),
        (None, None) => ("Workers", fewest_queues.min(preferred as u32).max(1)),
    };
    if let Some(nic) = nics.iter().find(|nic| nic.queues < wanted) {
        return Err(LayoutError::TooFewQueues {
            key,
            wanted,
            nic: nic.name.clone(),
            queues: nic.queues,
        });
    }
    if cpus.len() < wanted as usize {
        return Err(LayoutError::TooFewCpus {
            key,
            wanted,
            usable: host.cpus.len(),
            online,
        });
    }
    if keys.zero_copy == ZeroCopy::On
        && let Some(nic) = nics.iter().find(|nic| nic.zero_copy == Some(false))
    {
        return Err(LayoutError::ZeroCopyUnsupported {
            nic: nic.name.clone(),
        });
    }
    let workers: Vec<WorkerPlacement> = cpus
        .iter()
        .take(wanted as usize)
        .enumerate()
        .map(|(worker, cpu)| WorkerPlacement {
            worker,
            queue: worker as u32,
            cpu: cpu.id,
            numa_node: cpu.numa_node,
        })
        .collect();
    let ring_size = keys.ring_size.descriptors();
    let cpu_order = cpus
        .iter()
        .take(preferred.max(wanted as usize))
        .map(|cpu| cpu.id)
        .collect();
    let layout = Layout {
        warnings: warnings(&nics, &workers, &host.cpus, wanted),
        workers,
        nics: nics.iter().map(|nic| nic.name.clone()).collect(),
        cpu_order,
        queues_per_nic: wanted,
        bind_mode: match keys.zero_copy {
            ZeroCopy::Auto => BindMode::Auto,
            ZeroCopy::On => BindMode::ZeroCopy,
            ZeroCopy::Off => BindMode::Copy,
        },
        frame_size: keys.frame_size.bytes(),
        ring_size,
        // A LAN socket (`Inner = <nic>`) shares the UMEM and keeps its own rings full too.
        frames_per_worker: (sockets_per_worker * 2 * ring_size).max(MIN_FRAMES_PER_WORKER),
        busy_poll: keys.busy_poll,
    };
    Ok(layout)
}

/// The facts of each `Attach` NIC, in config order.
fn attached_nics<'a>(
    interface: &InterfaceConfig,
    host: &'a HostFacts,
) -> Result<Vec<&'a NicFacts>, LayoutError> {
    if interface.attach.is_empty() {
        return Err(LayoutError::NoAttach);
    }
    interface
        .attach
        .iter()
        .map(|name| {
            host.nics
                .iter()
                .find(|nic| &nic.name == name)
                .ok_or_else(|| LayoutError::UnknownNic { nic: name.clone() })
        })
        .collect()
}

/// All online CPUs in the order `auto` hands them to workers, and how many of the first
/// ones `auto` uses (those on the NIC's node, less CPU 0 on machines with more than two).
fn auto_cpu_order(cpus: &[Cpu], nic_node: Option<u32>) -> (Vec<&Cpu>, usize) {
    let spare_cpu0 = cpus.len() > 2;
    let on_nic_node = |cpu: &Cpu| nic_node.is_none() || cpu.numa_node == nic_node;
    let nic_node_has_cpus = cpus
        .iter()
        .any(|cpu| on_nic_node(cpu) && cpu.numa_node.is_some());
    let preferred =
        |cpu: &Cpu| !(spare_cpu0 && cpu.id == 0) && (!nic_node_has_cpus || on_nic_node(cpu));
    let mut order: Vec<&Cpu> = cpus.iter().collect();
    order.sort_by_key(|cpu| (!preferred(cpu), cpu.thread_rank(), cpu.id));
    let count = order.iter().filter(|cpu| preferred(cpu)).count().max(1);
    (order, count)
}

fn warnings(
    nics: &[&NicFacts],
    workers: &[WorkerPlacement],
    cpus: &[Cpu],
    served: u32,
) -> Vec<LayoutWarning> {
    let mut warnings = Vec::new();
    for nic in nics {
        if nic.queues > served {
            warnings.push(LayoutWarning::UnservedQueues {
                nic: nic.name.clone(),
                queues: nic.queues,
                served,
            });
        }
        if let Some(node) = nic.numa_node {
            let elsewhere: Vec<u32> = workers
                .iter()
                .filter(|w| w.numa_node.is_some_and(|n| n != node))
                .map(|w| w.cpu)
                .collect();
            if !elsewhere.is_empty() {
                warnings.push(LayoutWarning::CpusOffNicNode {
                    nic: nic.name.clone(),
                    node,
                    cpus: elsewhere,
                });
            }
        }
    }
    for (index, first) in workers.iter().enumerate() {
        let Some(cpu) = cpus.iter().find(|cpu| cpu.id == first.cpu) else {
            continue;
        };
        for second in &workers[index + 1..] {
            if cpu.is_sibling_of(second.cpu) {
                warnings.push(LayoutWarning::SharedPhysicalCore {
                    cpus: [first.cpu, second.cpu],
                });
            }
        }
    }
    warnings
}
