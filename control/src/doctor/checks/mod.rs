//! The checks: pure functions from gathered facts (and the config) to [`Finding`]s, so each
//! rule is tested against made-up hosts and NICs.

mod cpu;
mod host;
mod nic;

#[cfg(test)]
mod tests;

use super::facts::{HostReport, NicReport};
use super::sys::netdev::xdp_act;
use super::{Finding, Status, drivers};
use crate::config::Config;
use crate::layout::{self, HostFacts, Layout, LayoutError, NicFacts};

/// What the checks know about the intended setup.
#[derive(Debug)]
pub struct Context<'a> {
    /// The config, when one was given.
    pub config: Option<&'a Config>,
    /// The worker layout, when the config attaches NICs.
    pub layout: Option<Result<Layout, LayoutError>>,
    /// The kernel release, when known.
    pub kernel_release: Option<&'a str>,
}

impl Context<'_> {
    /// The tunnel MTU the daemon uses.
    fn inner_mtu(&self) -> u32 {
        self.config
            .and_then(|config| config.interface.mtu)
            .map_or(crate::daemon::DEFAULT_MTU as u32, u32::from)
    }

    /// Queues each `Attach` NIC should have: the layout's, or what the config asks for when
    /// no layout fits.
    fn wanted_queues(&self) -> Option<u32> {
        match self.layout.as_ref()? {
            Ok(layout) => Some(layout.queues_per_nic),
            Err(LayoutError::TooFewQueues { wanted, .. }) => Some(*wanted),
            Err(_) => {
                let keys = &self.config?.interface.layout;
                keys.workers.fixed().or(keys.queues.fixed())
            }
        }
    }

    fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()?.as_ref().ok()
    }

    /// Bytes of UMEM the workers pin, as far as the config tells; `None` without a config
    /// that attaches NICs.
    fn umem_bytes(&self) -> Option<u64> {
        if let Ok(layout) = self.layout.as_ref()? {
            return Some(layout.umem_bytes_total());
        }
        let keys = &self.config?.interface.layout;
        let workers = u64::from(self.wanted_queues().unwrap_or(1));
        let frames = u64::from((2 * keys.ring_size.descriptors()).max(4096));
        Some(workers * frames * u64::from(keys.frame_size.bytes()))
    }

    /// A config without `Attach`: the portable mode, no AF_XDP at all.
    fn portable_mode(&self) -> bool {
        self.config
            .is_some_and(|config| config.interface.attach.is_empty())
    }

    fn busy_poll(&self) -> bool {
        self.config
            .is_some_and(|config| config.interface.layout.busy_poll)
    }
}

/// Judges everything: host rows, the layout row, NIC rows, CPU rows.
pub fn evaluate(host: &HostReport, nics: &[NicReport], config: Option<&Config>) -> Vec<Finding> {
    evaluate_with_inner(host, nics, None, config)
}

/// As [`evaluate`], with the rows of a full-bypass gateway's LAN NIC (`Inner = <nic>`) after
/// the `Attach` NICs'.
pub fn evaluate_with_inner(
    host: &HostReport,
    nics: &[NicReport],
    inner: Option<&NicReport>,
    config: Option<&Config>,
) -> Vec<Finding> {
    let context = Context {
        config,
        layout: config
            .filter(|config| !config.interface.attach.is_empty())
            .map(|config| layout::plan(&config.interface, &host_facts(host, nics))),
        kernel_release: host.kernel_release.as_ref().ok().map(String::as_str),
    };
    let mut findings = host::check(host, &context);
    findings.push(layout_finding(&context));
    for report in nics {
        findings.extend(nic::check(report, &context));
    }
    if let Some(report) = inner {
        findings.extend(nic::check_inner(report, &context));
    }
    findings.extend(cpu::check(host, nics, &context));
    findings
}

/// The facts [`layout::plan`] needs, from what the doctor gathered: queue counts from the
/// driver (sysfs may show another network namespace), NUMA nodes from sysfs.
pub fn host_facts(host: &HostReport, nics: &[NicReport]) -> HostFacts {
    HostFacts {
        cpus: host.cpus.clone().unwrap_or_default(),
        nics: nics
            .iter()
            .filter(|report| report.link.is_ok())
            .map(|report| NicFacts {
                name: report.name.clone(),
                queues: report.rx_queues().unwrap_or(1),
                numa_node: report.sysfs.as_ref().and_then(|sysfs| sysfs.numa_node),
                zero_copy: zero_copy_support(
                    report,
                    host.kernel_release.as_ref().ok().map(String::as_str),
                ),
            })
            .collect(),
    }
}

/// Whether the NIC's driver does AF_XDP zero-copy: its own declaration when the kernel
/// has one, else the driver table (for the running kernel, when known).
fn zero_copy_support(report: &NicReport, kernel_release: Option<&str>) -> Option<bool> {
    if let Ok(features) = &report.xdp_features {
        return Some(features & xdp_act::XSK_ZEROCOPY != 0);
    }
    let known = drivers::lookup(&report.driver.as_ref().ok()?.driver)?;
    Some(match (known.zero_copy_since, kernel_release) {
        (None, _) => false,
        (Some(since), Some(release)) => drivers::at_least(release, since),
        (Some(_), None) => true,
    })
}

fn layout_finding(context: &Context<'_>) -> Finding {
    const WHY: &str = "the data plane runs one AF_XDP worker per NIC queue, each pinned to a CPU; \
                       warpline up refuses a layout that does not fit the host";
    match &context.layout {
        None => {
            let found = match context.config {
                None => "no config given: NIC and CPU checks skipped".to_owned(),
                Some(_) => "no Attach NIC: portable mode (kernel UDP socket), nothing to lay out"
                    .to_owned(),
            };
            Finding::new("config", "layout", Status::Ok, found, WHY)
        }
        Some(Ok(layout)) => {
            Finding::new("config", "layout", Status::Ok, describe_layout(layout), WHY)
        }
        Some(Err(error)) => {
            let hint = match error {
                LayoutError::TooFewQueues { nic, key, .. } => format!(
                    "raise the queues of {nic} (its `queues` row; --fix does it) or lower {key}"
                ),
                _ => format!("change {} in the config", error.key()),
            };
            Finding::new("config", "layout", Status::Fail, error.to_string(), WHY).manual_fix(hint)
        }
    }
}

fn describe_layout(layout: &Layout) -> String {
    let placements: Vec<String> = layout
        .workers
        .iter()
        .map(|w| format!("q{}->cpu{}", w.queue, w.cpu))
        .collect();
    format!(
        "{} worker{} ({}); zero-copy {}; {}-byte frames, {}-entry rings; busy poll {}",
        layout.workers.len(),
        if layout.workers.len() == 1 { "" } else { "s" },
        placements.join(" "),
        match layout.bind_mode {
            warpline_dataplane::xsk::BindMode::Auto => "auto",
            warpline_dataplane::xsk::BindMode::ZeroCopy => "on",
            warpline_dataplane::xsk::BindMode::Copy => "off",
        },
        layout.frame_size,
        layout.ring_size,
        if layout.busy_poll { "on" } else { "off" }
    )
}

/// `64 KiB`, `16 MiB`, ...
fn bytes_text(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    UNITS
        .iter()
        .find(|(_, size)| bytes >= *size && bytes.is_multiple_of(*size))
        .map_or_else(
            || format!("{bytes} bytes"),
            |(unit, size)| format!("{} {unit}", bytes / size),
        )
}
