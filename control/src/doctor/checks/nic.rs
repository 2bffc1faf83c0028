//! Per-NIC checks: driver, native XDP, zero-copy, a live AF_XDP bind, queue count, UDP
//! hashing, IRQ affinity, offloads that conflict with XDP, MTU headroom, busy-poll settings.

use std::path::PathBuf;

use super::{Context, drivers, zero_copy_support};
use crate::config::{Endpoint, XdpMode, ZeroCopy};
use crate::doctor::facts::{BindProbe, NicReport};
use crate::doctor::sys::ethtool::{UdpFlow, rxh};
use crate::doctor::sys::netdev::xdp_act;
use crate::doctor::{Finding, FixAction, Status};
use crate::layout::cpu_list_text;

/// Outer headers of an encrypted packet: IP + UDP (8) + WireGuard header (16) + tag (16).
const OVERHEAD_IPV4: u32 = 20 + 8 + 16 + 16;
const OVERHEAD_IPV6: u32 = 40 + 8 + 16 + 16;

/// NAPI settings that keep interrupts off while workers busy-poll (the kernel's AF_XDP
/// busy-poll documentation uses the same values).
const NAPI_DEFER_HARD_IRQS: u64 = 2;
const GRO_FLUSH_TIMEOUT_NS: u64 = 200_000;

pub(super) fn check(report: &NicReport, context: &Context<'_>) -> Vec<Finding> {
    let nic = report.name.as_str();
    if let Err(error) = &report.link {
        return vec![
            Finding::new(
                nic,
                "exists",
                Status::Fail,
                format!("no interface {nic} in this network namespace ({error})"),
                "an Attach NIC must exist where warpline runs",
            )
            .manual_fix("fix Attach in the config (`ip -br link` lists the interfaces)"),
        ];
    }
    let mut findings = vec![
        driver(report),
        native_xdp(report, context),
        zero_copy(report, context),
        bind_probe(report),
        queues(report, context),
    ];
    for flow in [UdpFlow::V4, UdpFlow::V6] {
        findings.push(udp_hashing(report, flow));
    }
    findings.push(irq_affinity(report, context));
    findings.push(offloads(report));
    findings.push(mtu(report, context));
    if context.busy_poll() {
        findings.push(busy_poll(report));
    }
    findings
}

/// The rows for the LAN NIC of a full-bypass gateway (`Inner = <nic>`): it must exist, take
/// the LAN program natively where the WAN side does, and have a queue for every worker (each
/// worker binds the same queue number on both NICs); offloads that merge frames break AF_XDP
/// there too. Its rows are scoped `<nic> (Inner)`.
pub(super) fn check_inner(report: &NicReport, context: &Context<'_>) -> Vec<Finding> {
    let scope = format!("{} (Inner)", report.name);
    if let Err(error) = &report.link {
        return vec![
            Finding::new(
                &scope,
                "exists",
                Status::Fail,
                format!(
                    "no interface {} in this network namespace ({error})",
                    report.name
                ),
                "the Inner NIC carries the LAN side of a full-bypass gateway",
            )
            .manual_fix("fix Inner in the config (`ip -br link` lists the interfaces)"),
        ];
    }
    let mut findings = vec![
        native_xdp(report, context),
        queues(report, context),
        offloads(report),
    ];
    for finding in &mut findings {
        finding.scope = scope.clone();
    }
    findings
}

fn is_virtual(report: &NicReport) -> bool {
    report
        .driver
        .as_ref()
        .ok()
        .and_then(|info| drivers::lookup(&info.driver))
        .is_some_and(|known| known.is_virtual)
}

fn driver(report: &NicReport) -> Finding {
    const WHY: &str = "native XDP and zero-copy AF_XDP depend on the driver (and its version)";
    let nic = report.name.as_str();
    let info = match &report.driver {
        Ok(info) => info,
        Err(error) => {
            return Finding::new(
                nic,
                "driver",
                Status::Warn,
                format!("ETHTOOL_GDRVINFO failed: {error}"),
                WHY,
            );
        }
    };
    let mut found = format!("{} {}", info.driver, info.version);
    if !info.firmware.is_empty() && info.firmware != "N/A" {
        found += &format!(", firmware {}", info.firmware);
    }
    if !info.bus.is_empty() && info.bus != "N/A" {
        found += &format!(", bus {}", info.bus);
    }
    if drivers::lookup(&info.driver).is_some() || report.xdp_features.is_ok() {
        Finding::new(nic, "driver", Status::Ok, found, WHY)
    } else {
        Finding::new(
            nic,
            "driver",
            Status::Warn,
            found
                + " (not in warpline's driver table, and this kernel does not declare XDP \
                     features)",
            WHY,
        )
        .manual_fix("nothing to change; the xdp rows below say what could not be verified")
    }
}

fn native_xdp(report: &NicReport, context: &Context<'_>) -> Finding {
    const WHY: &str = "native XDP runs in the driver before any socket buffer exists; generic \
                       XDP allocates one per packet first and forwards several times slower";
    let nic = report.name.as_str();
    let mode = context
        .config
        .map_or(XdpMode::Auto, |config| config.interface.xdp_mode);
    let (supported, source) = match &report.xdp_features {
        Ok(bits) => (
            Some(bits & xdp_act::BASIC != 0 && bits & xdp_act::REDIRECT != 0),
            "the driver declares",
        ),
        Err(_) => {
            let known = report
                .driver
                .as_ref()
                .ok()
                .and_then(|info| drivers::lookup(&info.driver));
            let supported =
                known.map(
                    |known| match (known.native_xdp_since, context.kernel_release) {
                        (None, _) => false,
                        (Some(since), Some(release)) => drivers::at_least(release, since),
                        (Some(_), None) => true,
                    },
                );
            (supported, "warpline's driver table says")
        }
    };
    match (supported, mode) {
        (Some(true), XdpMode::Generic) => Finding::new(
            nic,
            "xdp-native",
            Status::Warn,
            format!("{source} native XDP, but XdpMode = generic"),
            WHY,
        )
        .manual_fix("set XdpMode = auto in the config"),
        (Some(true), _) => Finding::new(
            nic,
            "xdp-native",
            Status::Ok,
            format!("{source} native XDP with redirect"),
            WHY,
        ),
        (_, XdpMode::Generic) => Finding::new(
            nic,
            "xdp-native",
            Status::Ok,
            "XdpMode = generic".to_owned(),
            WHY,
        ),
        (Some(false), mode) => Finding::new(
            nic,
            "xdp-native",
            if mode == XdpMode::Native {
                Status::Fail
            } else {
                Status::Warn
            },
            format!("{source} no native XDP: generic mode only"),
            WHY,
        )
        .manual_fix(if mode == XdpMode::Native {
            "set XdpMode = auto, or attach a NIC with native XDP (ice, i40e, ixgbe, mlx5_core, ...)"
        } else {
            "attach a NIC with native XDP (ice, i40e, ixgbe, igc, mlx5_core, bnxt_en, ...)"
        }),
        (None, _) => Finding::new(
            nic,
            "xdp-native",
            Status::Warn,
            "cannot tell: unknown driver and no xdp-features from the kernel (6.3+)".to_owned(),
            WHY,
        )
        .manual_fix("run warpline up and read its `XDP attached` log line (mode=native|generic)"),
    }
}

fn zero_copy(report: &NicReport, context: &Context<'_>) -> Finding {
    const WHY: &str = "in zero-copy mode the NIC writes packets straight into the UMEM; in copy \
                       mode the kernel copies each one, which caps a queue well below line rate";
    const NICS: &str = "attach a NIC whose driver has AF_XDP zero-copy (ice, i40e, ixgbe, igc, \
                        mlx5_core, ...)";
    let nic = report.name.as_str();
    let wanted = context
        .config
        .map_or(ZeroCopy::Auto, |config| config.interface.layout.zero_copy);
    match (zero_copy_support(report, context.kernel_release), wanted) {
        (_, ZeroCopy::Off) => Finding::new(
            nic,
            "zero-copy",
            Status::Ok,
            "ZeroCopy = off: copy mode".to_owned(),
            WHY,
        ),
        (Some(true), _) => Finding::new(
            nic,
            "zero-copy",
            Status::Ok,
            "the driver has AF_XDP zero-copy".to_owned(),
            WHY,
        ),
        (Some(false), ZeroCopy::On) => Finding::new(
            nic,
            "zero-copy",
            Status::Fail,
            "ZeroCopy = on, but the driver has no AF_XDP zero-copy".to_owned(),
            WHY,
        )
        .manual_fix(format!("set ZeroCopy = auto in the config, or {NICS}")),
        (Some(false), _) => Finding::new(
            nic,
            "zero-copy",
            Status::Warn,
            "no AF_XDP zero-copy in this driver: copy mode".to_owned(),
            WHY,
        )
        .manual_fix(NICS),
        (None, _) => Finding::new(
            nic,
            "zero-copy",
            Status::Warn,
            "cannot tell whether the driver has zero-copy".to_owned(),
            WHY,
        )
        .manual_fix("set ZeroCopy = on to find out: warpline up then fails if it has none"),
    }
}

fn bind_probe(report: &NicReport) -> Finding {
    const WHY: &str = "each worker binds an AF_XDP socket to its queue; this binds one in copy \
                       mode (which never reconfigures the driver) to queue 0 and closes it";
    let nic = report.name.as_str();
    match &report.bind_probe {
        BindProbe::Bound => Finding::new(
            nic,
            "af-xdp-bind",
            Status::Ok,
            "bound an AF_XDP socket to queue 0 and closed it".to_owned(),
            WHY,
        ),
        BindProbe::QueueBusy => Finding::new(
            nic,
            "af-xdp-bind",
            Status::Ok,
            "queue 0 is held by another AF_XDP socket (a running gateway?)".to_owned(),
            WHY,
        ),
        BindProbe::Failed(reason) => Finding::new(
            nic,
            "af-xdp-bind",
            Status::Fail,
            format!("binding queue 0 failed: {reason}"),
            WHY,
        )
        .manual_fix("see the af-xdp, capabilities and memlock rows"),
    }
}

fn queues(report: &NicReport, context: &Context<'_>) -> Finding {
    const WHY: &str = "one worker serves each RX queue: a worker without a queue cannot start, \
                       and packets RSS puts on a queue without a worker bypass the data plane \
                       (XDP passes them to the kernel's slow path)";
    let nic = report.name.as_str();
    let Some(current) = report.rx_queues() else {
        let error = report
            .channels
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        return Finding::new(
            nic,
            "queues",
            Status::Warn,
            format!("cannot read the queue count (ETHTOOL_GCHANNELS: {error})"),
            WHY,
        );
    };
    let plural = |n: u32| if n == 1 { "" } else { "s" };
    let found = format!("{current} RX queue{}", plural(current));
    let Some(wanted) = context.wanted_queues() else {
        return Finding::new(nic, "queues", Status::Ok, found, WHY);
    };
    if current == wanted {
        return Finding::new(
            nic,
            "queues",
            Status::Ok,
            format!("{found}, one per worker"),
            WHY,
        );
    }
    let (status, found) = if current < wanted {
        (
            Status::Fail,
            format!("{found}, but the layout has {wanted} workers (one per queue)"),
        )
    } else {
        (
            Status::Warn,
            format!(
                "{found}, but {wanted} worker{}: queues {wanted}-{} have none",
                plural(wanted),
                current - 1
            ),
        )
    };
    let finding = Finding::new(nic, "queues", status, found, WHY);
    match &report.channels {
        Ok(channels) => match channels.with_rx_queues(wanted) {
            Some(target) => finding.auto_fix(
                target.ethtool_command(nic),
                FixAction::SetChannels {
                    nic: nic.to_owned(),
                    channels: target,
                },
            ),
            None => finding.manual_fix(format!(
                "{nic} has at most {} RX queues: set Workers = {} in the config",
                channels.max_rx_queues(),
                channels.max_rx_queues()
            )),
        },
        Err(_) => finding.manual_fix(format!("ethtool -L {nic} combined {wanted}")),
    }
}

fn hash_fields_text(bits: u64) -> String {
    let names: Vec<&str> = [
        (rxh::IP_SRC, "src IP"),
        (rxh::IP_DST, "dst IP"),
        (rxh::L4_B_0_1, "src port"),
        (rxh::L4_B_2_3, "dst port"),
    ]
    .into_iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| name)
    .collect();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(" + ")
    }
}

fn udp_hashing(report: &NicReport, flow: UdpFlow) -> Finding {
    const WHY: &str = "RSS picks a tunnel's queue (and so its worker) by hashing its packets; \
                       without the UDP ports in the hash, all tunnels from one address or NAT \
                       land on one queue and one core";
    let nic = report.name.as_str();
    let check = match flow {
        UdpFlow::V4 => "rss-udp4",
        UdpFlow::V6 => "rss-udp6",
    };
    if report.rx_queues().is_some_and(|queues| queues <= 1) {
        return Finding::new(
            nic,
            check,
            Status::Ok,
            "one RX queue: nothing to spread".to_owned(),
            WHY,
        );
    }
    let hash = report
        .udp_hash
        .iter()
        .find(|(hashed, _)| *hashed == flow)
        .map(|(_, hash)| hash);
    match hash {
        Some(Ok(bits)) if bits & rxh::ADDRESSES_AND_PORTS == rxh::ADDRESSES_AND_PORTS => {
            Finding::new(
                nic,
                check,
                Status::Ok,
                format!("hashes {}", hash_fields_text(*bits)),
                WHY,
            )
        }
        Some(Ok(bits)) => Finding::new(
            nic,
            check,
            Status::Warn,
            format!("hashes {} only", hash_fields_text(*bits)),
            WHY,
        )
        .auto_fix(
            format!("ethtool -N {nic} rx-flow-hash {} sdfn", flow.ethtool_name()),
            FixAction::HashUdpPorts {
                nic: nic.to_owned(),
                flow,
            },
        ),
        _ if is_virtual(report) => Finding::new(
            nic,
            check,
            Status::Ok,
            "software NIC without RSS: the sender's queue picks the receive queue".to_owned(),
            WHY,
        ),
        other => {
            let error = match other {
                Some(Err(error)) => error.to_string(),
                _ => "not probed".to_owned(),
            };
            Finding::new(
                nic,
                check,
                Status::Warn,
                format!("the driver does not report its UDP hashing (ETHTOOL_GRXFH: {error})"),
                WHY,
            )
            .manual_fix(format!(
                "ethtool -N {nic} rx-flow-hash {} sdfn",
                flow.ethtool_name()
            ))
        }
    }
}

fn irq_affinity(report: &NicReport, context: &Context<'_>) -> Finding {
    const WHY: &str = "a queue's interrupt starts its receive processing; on the worker's CPU \
                       the packet, XDP and the worker share one cache, elsewhere every batch \
                       crosses cores. irqbalance may move them back: exclude the worker CPUs \
                       (IRQBALANCE_BANNED_CPULIST) or stop it";
    let nic = report.name.as_str();
    if is_virtual(report) || report.sysfs.as_ref().is_some_and(|sysfs| !sysfs.has_device) {
        return Finding::new(
            nic,
            "irq-affinity",
            Status::Ok,
            "software NIC: no interrupts".to_owned(),
            WHY,
        );
    }
    let Some(sysfs) = &report.sysfs else {
        return Finding::new(
            nic,
            "irq-affinity",
            Status::Warn,
            "cannot map interrupts: /sys/class/net shows another network namespace".to_owned(),
            WHY,
        )
        .manual_fix(
            "run the doctor where sysfs matches, e.g. `ip netns exec NS warpline doctor ...`",
        );
    };
    if sysfs.queue_irqs.is_empty() {
        return Finding::new(
            nic,
            "irq-affinity",
            Status::Warn,
            "found no per-queue MSI interrupts to compare".to_owned(),
            WHY,
        );
    }
    let Some(layout) = context.layout() else {
        return Finding::new(
            nic,
            "irq-affinity",
            Status::Ok,
            format!(
                "{} queue interrupts; no layout to compare them with",
                sysfs.queue_irqs.len()
            ),
            WHY,
        );
    };
    let misplaced: Vec<(u32, u32, &[u32], u32)> = sysfs
        .queue_irqs
        .iter()
        .filter_map(|irq| {
            let cpu = layout.cpu_for_nic(nic, irq.queue)?;
            (irq.affinity != [cpu]).then_some((irq.queue, irq.irq, irq.affinity.as_slice(), cpu))
        })
        .collect();
    if misplaced.is_empty() {
        return Finding::new(
            nic,
            "irq-affinity",
            Status::Ok,
            "each served queue's interrupt runs on its worker's CPU".to_owned(),
            WHY,
        );
    }
    let found: Vec<String> = misplaced
        .iter()
        .map(|(queue, irq, affinity, cpu)| {
            format!(
                "queue {queue} (IRQ {irq}) on CPUs {}, worker on {cpu}",
                cpu_list_text(affinity)
            )
        })
        .collect();
    let command: Vec<String> = misplaced
        .iter()
        .map(|(_, irq, _, cpu)| format!("echo {cpu} > /proc/irq/{irq}/smp_affinity_list"))
        .collect();
    let writes = misplaced
        .iter()
        .map(|(_, irq, _, cpu)| {
            (
                PathBuf::from(format!("/proc/irq/{irq}/smp_affinity_list")),
                cpu.to_string(),
            )
        })
        .collect();
    Finding::new(nic, "irq-affinity", Status::Warn, found.join("; "), WHY)
        .auto_fix(command.join("; "), FixAction::WriteFiles { writes })
}

fn offloads(report: &NicReport) -> Finding {
    const WHY: &str = "LRO and hardware GRO merge packets into frames larger than one XDP \
                       buffer: drivers refuse native XDP while they are on (or the kernel turns \
                       LRO off), and merged UDP would not be WireGuard packets anyway";
    let nic = report.name.as_str();
    let features = match &report.features {
        Ok(features) => features,
        Err(error) => {
            return Finding::new(
                nic,
                "offloads",
                Status::Warn,
                format!("cannot read the offloads (ETHTOOL_GFEATURES: {error})"),
                WHY,
            );
        }
    };
    let on: Vec<&'static str> = ["rx-lro", "rx-gro-hw"]
        .into_iter()
        .filter(|&name| features.is_active(name) == Some(true))
        .collect();
    if on.is_empty() {
        return Finding::new(
            nic,
            "offloads",
            Status::Ok,
            "rx-lro and rx-gro-hw off".to_owned(),
            WHY,
        );
    }
    let command = format!(
        "ethtool -K {nic} {}",
        on.iter()
            .map(|name| format!("{name} off"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Finding::new(
        nic,
        "offloads",
        Status::Warn,
        format!("{} on", on.join(", ")),
        WHY,
    )
    .auto_fix(
        command,
        FixAction::DisableFeatures {
            nic: nic.to_owned(),
            features: on,
        },
    )
}

fn mtu(report: &NicReport, context: &Context<'_>) -> Finding {
    const WHY: &str = "an encrypted packet is the tunnel packet plus 60 bytes over IPv4 (80 over \
                       IPv6); if that exceeds the NIC's MTU, full-size tunnel packets are dropped \
                       or fragmented";
    let nic = report.name.as_str();
    let outer = match &report.mtu {
        Ok(mtu) => *mtu,
        Err(error) => {
            return Finding::new(
                nic,
                "mtu",
                Status::Warn,
                format!("cannot read the MTU: {error}"),
                WHY,
            );
        }
    };
    let inner = context.inner_mtu();
    let ipv6_endpoint = context.config.is_some_and(|config| {
        config
            .peers
            .iter()
            .any(|peer| matches!(peer.endpoint, Some(Endpoint::Addr(addr)) if addr.is_ipv6()))
    });
    let (overhead, family) = if report.has_global_ipv6 || ipv6_endpoint {
        (OVERHEAD_IPV6, "IPv6")
    } else {
        (OVERHEAD_IPV4, "IPv4")
    };
    let needed = inner + overhead;
    let found = format!("MTU {outer}; tunnel MTU {inner} + {overhead} ({family} outer) = {needed}");
    if outer >= needed {
        let note = if overhead == OVERHEAD_IPV4 && outer < inner + OVERHEAD_IPV6 {
            format!(" (IPv6 outer packets would need {})", inner + OVERHEAD_IPV6)
        } else {
            String::new()
        };
        return Finding::new(nic, "mtu", Status::Ok, found + &note, WHY);
    }
    let lower = outer.saturating_sub(overhead);
    Finding::new(nic, "mtu", Status::Fail, found, WHY).auto_fix(
        format!(
            "ip link set dev {nic} mtu {needed}  (or set MTU = {lower} in the config; the path \
             beyond {nic} must carry {needed} too)"
        ),
        FixAction::SetMtu {
            nic: nic.to_owned(),
            mtu: needed,
        },
    )
}

fn busy_poll(report: &NicReport) -> Finding {
    const WHY: &str = "with BusyPoll = on workers poll their queues; napi_defer_hard_irqs and \
                       gro_flush_timeout keep the NIC's interrupts off meanwhile, or they fire \
                       anyway and steal the workers' CPU time";
    let nic = report.name.as_str();
    let command = format!(
        "echo {NAPI_DEFER_HARD_IRQS} > /sys/class/net/{nic}/napi_defer_hard_irqs; echo \
         {GRO_FLUSH_TIMEOUT_NS} > /sys/class/net/{nic}/gro_flush_timeout"
    );
    let Some(sysfs) = &report.sysfs else {
        return Finding::new(
            nic,
            "busy-poll",
            Status::Warn,
            "cannot read the NAPI settings: /sys/class/net shows another network namespace"
                .to_owned(),
            WHY,
        )
        .manual_fix(command);
    };
    let defer = sysfs.napi_defer_hard_irqs.unwrap_or(0);
    let flush = sysfs.gro_flush_timeout.unwrap_or(0);
    let found = format!("napi_defer_hard_irqs = {defer}, gro_flush_timeout = {flush} ns");
    if defer > 0 && flush > 0 {
        return Finding::new(nic, "busy-poll", Status::Ok, found, WHY);
    }
    let dir = PathBuf::from("/sys/class/net").join(nic);
    Finding::new(nic, "busy-poll", Status::Warn, found, WHY).auto_fix(
        command,
        FixAction::WriteFiles {
            writes: vec![
                (
                    dir.join("napi_defer_hard_irqs"),
                    NAPI_DEFER_HARD_IRQS.to_string(),
                ),
                (
                    dir.join("gro_flush_timeout"),
                    GRO_FLUSH_TIMEOUT_NS.to_string(),
                ),
            ],
        },
    )
}
