//! Gathers what the checks look at, through the kernel directly: syscalls and ioctls for the
//! running kernel and the NICs, `/proc` and `/sys` for the rest. Every probe's failure is
//! kept as a fact too: "cannot tell" is something a check reports.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use warpline_dataplane::lab::Netlink;
use warpline_dataplane::xsk::{BindMode, SocketConfig, Umem, UmemConfig, XskError, XskSocket};

use super::sys::ethtool::{Channels, DriverInfo, EthtoolSocket, Features, UdpFlow};
use super::sys::kernel::{self, BpfProbe, Limit};
use super::sys::netdev;
use crate::layout::{Cpu, HostFactsError};

/// Facts about the host.
#[derive(Debug)]
pub struct HostReport {
    /// `uname -r`.
    pub kernel_release: io::Result<String>,
    /// Loading a tiny BPF program.
    pub bpf: io::Result<BpfProbe>,
    /// `net.core.bpf_jit_enable`, when this network namespace shows it.
    pub bpf_jit_sysctl: Option<String>,
    /// Whether `/sys/kernel/btf/vmlinux` exists.
    pub btf: bool,
    /// Opening an `AF_XDP` socket.
    pub af_xdp: io::Result<()>,
    /// This process's `RLIMIT_MEMLOCK`.
    pub memlock: io::Result<Limit>,
    /// This process's effective capabilities.
    pub capabilities: io::Result<u64>,
    /// The online CPUs.
    pub cpus: Result<Vec<Cpu>, String>,
    /// CPUs isolated from the scheduler (`isolcpus=`).
    pub isolated: Vec<u32>,
    /// `(cpu, busy fraction)` over a short sample; empty when not sampled.
    pub cpu_busy: Vec<(u32, f64)>,
}

/// How binding a copy-mode AF_XDP socket to queue 0 went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindProbe {
    /// Bound and closed again.
    Bound,
    /// Another AF_XDP socket holds the queue (a running gateway, typically).
    QueueBusy,
    /// Refused, with the reason.
    Failed(String),
}

/// Facts about one `Attach` NIC.
#[derive(Debug)]
pub struct NicReport {
    /// Interface name.
    pub name: String,
    /// Its index in this network namespace and its MAC, from rtnetlink.
    pub link: io::Result<(u32, Vec<u8>)>,
    /// `ETHTOOL_GDRVINFO`.
    pub driver: io::Result<DriverInfo>,
    /// `ETHTOOL_GCHANNELS`.
    pub channels: io::Result<Channels>,
    /// The driver's `NETDEV_XDP_ACT_*` declaration.
    pub xdp_features: io::Result<u64>,
    /// The live AF_XDP bind probe.
    pub bind_probe: BindProbe,
    /// `ETHTOOL_GRXFH` for UDP over IPv4 and IPv6.
    pub udp_hash: Vec<(UdpFlow, io::Result<u64>)>,
    /// `ETHTOOL_GFEATURES`.
    pub features: io::Result<Features>,
    /// The link MTU.
    pub mtu: io::Result<u32>,
    /// Whether it has a global IPv6 address (outer packets may then be IPv6).
    pub has_global_ipv6: bool,
    /// What sysfs shows, when it shows this network namespace's NIC.
    pub sysfs: Option<NicSysfs>,
}

/// Per-NIC facts only sysfs and procfs have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSysfs {
    /// RX queues (`queues/rx-*`).
    pub rx_queues: u32,
    /// NUMA node of the device.
    pub numa_node: Option<u32>,
    /// Whether there is a device behind it (`device/`): false for software NICs.
    pub has_device: bool,
    /// The device's interrupts that serve a queue.
    pub queue_irqs: Vec<QueueIrq>,
    /// `napi_defer_hard_irqs`, for busy polling.
    pub napi_defer_hard_irqs: Option<u64>,
    /// `gro_flush_timeout` in nanoseconds, for busy polling.
    pub gro_flush_timeout: Option<u64>,
}

/// One interrupt of a NIC queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueIrq {
    /// The IRQ number.
    pub irq: u32,
    /// Its name in `/proc/interrupts`.
    pub name: String,
    /// The queue it serves, read from its name.
    pub queue: u32,
    /// CPUs it may run on (`/proc/irq/N/smp_affinity_list`).
    pub affinity: Vec<u32>,
}

/// How long CPU load is sampled.
const LOAD_SAMPLE: Duration = Duration::from_millis(300);

impl HostReport {
    /// Probes the host; samples CPU load when `sample_load` (it takes [`LOAD_SAMPLE`]).
    pub fn gather(sample_load: bool) -> Self {
        let cpus = crate::layout::HostFacts::read_from(Path::new("/sys"), &[])
            .map(|facts| facts.cpus)
            .map_err(|e: HostFactsError| e.to_string());
        let isolated = crate::layout::read_cpu_list(Path::new("/sys/devices/system/cpu/isolated"))
            .unwrap_or_default();
        Self {
            kernel_release: kernel::kernel_release(),
            bpf: kernel::probe_bpf(),
            bpf_jit_sysctl: std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
                .ok()
                .map(|text| text.trim().to_owned()),
            btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
            af_xdp: kernel::probe_af_xdp(),
            memlock: kernel::memlock_limit(),
            capabilities: kernel::effective_capabilities(),
            cpus,
            isolated,
            cpu_busy: if sample_load {
                sample_cpu_busy(LOAD_SAMPLE)
            } else {
                Vec::new()
            },
        }
    }
}

impl NicReport {
    /// Probes `nic` in the calling thread's network namespace.
    pub fn gather(nic: &str, ethtool: &EthtoolSocket) -> Self {
        let link = Netlink::open()
            .and_then(|mut netlink| netlink.link_by_name(nic))
            .map(|info| (info.index, info.mac));
        let if_index = link.as_ref().ok().map(|(index, _)| *index);
        let xdp_features = match if_index {
            Some(index) => netdev::xdp_features(index),
            None => Err(io::Error::from_raw_os_error(libc::ENODEV)),
        };
        let bind_probe = match if_index {
            Some(index) => probe_bind(index),
            None => BindProbe::Failed("no such interface".to_owned()),
        };
        let sysfs = link
            .as_ref()
            .ok()
            .and_then(|(index, mac)| read_sysfs(nic, *index, mac));
        Self {
            name: nic.to_owned(),
            driver: ethtool.driver_info(nic),
            channels: ethtool.channels(nic),
            xdp_features,
            bind_probe,
            udp_hash: [UdpFlow::V4, UdpFlow::V6]
                .into_iter()
                .map(|flow| (flow, ethtool.rx_flow_hash(nic, flow)))
                .collect(),
            features: ethtool.features(nic),
            mtu: ethtool.mtu(nic),
            has_global_ipv6: if_index.is_some_and(has_global_ipv6),
            sysfs,
            link,
        }
    }

    /// RX queues now: from the driver, else from sysfs.
    pub fn rx_queues(&self) -> Option<u32> {
        match &self.channels {
            Ok(channels) if channels.rx_queues() > 0 => Some(channels.rx_queues()),
            _ => self.sysfs.as_ref().map(|sysfs| sysfs.rx_queues),
        }
    }
}

/// Binds a copy-mode AF_XDP socket to queue 0 and closes it. Copy mode never reconfigures
/// the driver's queues (zero-copy would), so this is safe on a NIC carrying traffic.
fn probe_bind(if_index: u32) -> BindProbe {
    const RING: u32 = 64;
    let umem = Umem::new(UmemConfig {
        frame_size: 4096,
        frame_count: 8,
        headroom: 0,
    });
    let (umem, _frames) = match umem {
        Ok(umem) => umem,
        Err(error) => return BindProbe::Failed(error.to_string()),
    };
    let config = SocketConfig {
        if_index,
        queue: 0,
        rx_size: RING,
        tx_size: RING,
        fill_size: RING,
        completion_size: RING,
        bind_mode: BindMode::Copy,
        need_wakeup: true,
    };
    match XskSocket::bind(&umem, &config) {
        Ok(_) => BindProbe::Bound,
        Err(XskError::BindRefused { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
            BindProbe::QueueBusy
        }
        Err(error) => BindProbe::Failed(error.to_string()),
    }
}

/// Whether interface `if_index` has a global-scope IPv6 address (`/proc/net/if_inet6`,
/// which shows the caller's network namespace).
fn has_global_ipv6(if_index: u32) -> bool {
    std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|text| {
        text.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let index = fields
                .get(1)
                .and_then(|hex| u32::from_str_radix(hex, 16).ok());
            let scope = fields
                .get(3)
                .and_then(|hex| u32::from_str_radix(hex, 16).ok());
            index == Some(if_index) && scope == Some(0)
        })
    })
}

/// Sysfs facts for `nic`, or `None` when `/sys/class/net` does not show this network
/// namespace's `nic` (sysfs was mounted in another one: compare index and MAC).
fn read_sysfs(nic: &str, if_index: u32, mac: &[u8]) -> Option<NicSysfs> {
    let dir = Path::new("/sys/class/net").join(nic);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let shown_index = read("ifindex")?.trim().parse::<u32>().ok()?;
    let shown_mac = read("address").unwrap_or_default();
    let mac_text = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    if shown_index != if_index || shown_mac.trim() != mac_text {
        return None;
    }
    let rx_queues = std::fs::read_dir(dir.join("queues"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(0);
    let number = |name: &str| read(name).and_then(|text| text.trim().parse::<u64>().ok());
    Some(NicSysfs {
        rx_queues: u32::try_from(rx_queues).unwrap_or(u32::MAX),
        numa_node: crate::layout::read_numa_node(&dir.join("device/numa_node"))
            .ok()
            .flatten(),
        has_device: dir.join("device").exists(),
        queue_irqs: queue_irqs(&dir.join("device")),
        napi_defer_hard_irqs: number("napi_defer_hard_irqs"),
        gro_flush_timeout: number("gro_flush_timeout"),
    })
}

/// The device's MSI interrupts whose names say which queue they serve. They hang off the
/// PCI function: the NIC's `device` itself, or its parent for virtio (`virtioN` sits on a
/// PCI device).
fn queue_irqs(device: &Path) -> Vec<QueueIrq> {
    let entries = std::fs::read_dir(device.join("msi_irqs")).or_else(|_| {
        let device = std::fs::canonicalize(device)?;
        let parent = device.parent().unwrap_or(&device);
        std::fs::read_dir(parent.join("msi_irqs"))
    });
    let Ok(entries) = entries else {
        return Vec::new();
    };
    let names = irq_names(&std::fs::read_to_string("/proc/interrupts").unwrap_or_default());
    let mut irqs: Vec<QueueIrq> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|irq| {
            let name = names.iter().find(|(number, _)| *number == irq)?.1.clone();
            let queue = queue_of_irq_name(&name)?;
            let affinity_path = PathBuf::from(format!("/proc/irq/{irq}/smp_affinity_list"));
            let affinity = crate::layout::read_cpu_list(&affinity_path).unwrap_or_default();
            Some(QueueIrq {
                irq,
                name,
                queue,
                affinity,
            })
        })
        .collect();
    irqs.sort_by_key(|irq| (irq.queue, irq.irq));
    irqs
}

/// `(irq, name)` for each numbered line of `/proc/interrupts`; the name is the last field.
fn irq_names(interrupts: &str) -> Vec<(u32, String)> {
    interrupts
        .lines()
        .filter_map(|line| {
            let (number, rest) = line.trim_start().split_once(':')?;
            let irq = number.parse().ok()?;
            let name = rest.split_whitespace().last()?.to_owned();
            Some((irq, name))
        })
        .collect()
}

/// The queue an IRQ serves, from the naming conventions of the common drivers:
/// `ice-eth0-TxRx-3`, `i40e-eth0-TxRx-3`, `eth0-TxRx-3` (ixgbe, bnxt_en), `mlx5_comp3@pci:…`,
/// `virtio0-input.3`, `eth0-rx-3`. Link and admin interrupts have none.
pub fn queue_of_irq_name(name: &str) -> Option<u32> {
    const MARKERS: [&str; 5] = ["TxRx-", "comp", "input.", "rx-", "fp-"];
    MARKERS.iter().find_map(|marker| {
        let (_, after) = name.rsplit_once(marker)?;
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// Busy fraction of each CPU over `interval`, from two reads of `/proc/stat`.
fn sample_cpu_busy(interval: Duration) -> Vec<(u32, f64)> {
    let Ok(before) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    std::thread::sleep(interval);
    let Ok(after) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    busy_fractions(&before, &after)
}

/// Per-CPU busy fractions between two `/proc/stat` snapshots.
pub fn busy_fractions(before: &str, after: &str) -> Vec<(u32, f64)> {
    let before = cpu_times(before);
    cpu_times(after)
        .into_iter()
        .filter_map(|(cpu, (busy, total))| {
            let &(_, (busy_before, total_before)) = before.iter().find(|(id, _)| *id == cpu)?;
            let elapsed = total.checked_sub(total_before)?;
            let worked = busy.checked_sub(busy_before)?;
            (elapsed > 0).then(|| (cpu, worked as f64 / elapsed as f64))
        })
        .collect()
}

/// `(cpu, (busy ticks, total ticks))` from the `cpuN` lines of `/proc/stat`; idle and
/// iowait count as not busy.
fn cpu_times(stat: &str) -> Vec<(u32, (u64, u64))> {
    stat.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let cpu = fields.next()?.strip_prefix("cpu")?.parse().ok()?;
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            let ticks: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
            let total: u64 = ticks.iter().sum();
            let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
            Some((cpu, (total - idle, total)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irq_names_give_queue_numbers() {
        assert_eq!(queue_of_irq_name("ice-eth0-TxRx-3"), Some(3));
        assert_eq!(queue_of_irq_name("eth0-TxRx-12"), Some(12));
        assert_eq!(queue_of_irq_name("mlx5_comp7@pci:0000:3b:00.0"), Some(7));
        assert_eq!(queue_of_irq_name("virtio0-input.2"), Some(2));
        assert_eq!(queue_of_irq_name("mlx5_async0@pci:0000:3b:00.0"), None);
        assert_eq!(queue_of_irq_name("i40e-0000:3b:00.0:misc"), None);
        let interrupts = "           CPU0       CPU1\n  \
            45:          0         10  IR-PCI-MSI 1572865-edge      ice-eth0-TxRx-0\n \
            NMI:          0          0   Non-maskable interrupts\n";
        assert_eq!(irq_names(interrupts), [(45, "ice-eth0-TxRx-0".to_owned())]);
    }

    #[test]
    fn busy_fractions_count_everything_but_idle() {
        let before =
            "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 0 0 0 100 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0\n";
        let after =
            "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 75 0 0 125 0 0 0 0\ncpu1 0 0 10 180 10 0 0 0\n";
        let busy = busy_fractions(before, after);
        assert_eq!(busy.len(), 2);
        assert!((busy[0].1 - 0.75).abs() < 1e-9, "{busy:?}");
        assert!((busy[1].1 - 0.1).abs() < 1e-9, "{busy:?}");
    }

    #[test]
    fn loopback_is_gathered_without_panicking() {
        let ethtool = EthtoolSocket::open().unwrap();
        let report = NicReport::gather("lo", &ethtool);
        assert!(report.link.is_ok());
        assert!(report.mtu.is_ok());
        let missing = NicReport::gather("wlnosuchnic0", &ethtool);
        assert!(missing.link.is_err() && missing.driver.is_err());
        assert_eq!(missing.rx_queues(), None);
    }
}
