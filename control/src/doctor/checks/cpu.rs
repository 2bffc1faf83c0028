//! CPU checks for the worker cores: isolation, other load, SMT siblings shared between
//! workers, NUMA locality to the NICs.

use super::Context;
use crate::doctor::facts::{HostReport, NicReport};
use crate::doctor::{Finding, Status};
use crate::layout::{Cpu, Layout, cpu_list_text};

const CPU: &str = "cpu";

/// Busy share of a worker CPU, from other work, that starts to cost throughput.
const BUSY_THRESHOLD: f64 = 0.25;

pub(super) fn check(host: &HostReport, nics: &[NicReport], context: &Context<'_>) -> Vec<Finding> {
    let Some(layout) = context.layout() else {
        return Vec::new();
    };
    let cpus = host.cpus.as_deref().unwrap_or_default();
    vec![
        isolation(host, layout, context.busy_poll()),
        load(host, layout),
        smt(cpus, layout),
        numa(cpus, nics, layout),
    ]
}

/// Every CPU a worker runs on, over all `Attach` NICs, ascending and without repeats.
fn worker_cpus(layout: &Layout) -> Vec<u32> {
    let mut cpus: Vec<u32> = (0..layout.nics.len().max(1))
        .flat_map(|nic| (0..layout.queues_per_nic).map(move |queue| layout.cpu_for(nic, queue)))
        .collect();
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// "worker CPU 3 is" / "worker CPUs 2-5 are".
fn cpus_phrase(cpus: &[u32]) -> String {
    if cpus.len() == 1 {
        format!("worker CPU {} is", cpu_list_text(cpus))
    } else {
        format!("worker CPUs {} are", cpu_list_text(cpus))
    }
}

fn isolation(host: &HostReport, layout: &Layout, busy_poll: bool) -> Finding {
    const WHY: &str = "the scheduler puts other tasks on CPUs that are not isolated; a \
                       busy-polling worker then shares its CPU and its latency suffers";
    let workers = worker_cpus(layout);
    let shared: Vec<u32> = workers
        .iter()
        .copied()
        .filter(|cpu| !host.isolated.contains(cpu))
        .collect();
    if shared.is_empty() {
        return Finding::new(
            CPU,
            "isolation",
            Status::Ok,
            format!("{} isolated", cpus_phrase(&workers)),
            WHY,
        );
    }
    let found = format!("{} not isolated", cpus_phrase(&shared));
    if !busy_poll {
        return Finding::new(
            CPU,
            "isolation",
            Status::Ok,
            found + " (fine without BusyPoll: idle workers sleep)",
            WHY,
        );
    }
    Finding::new(CPU, "isolation", Status::Warn, found, WHY).manual_fix(format!(
        "add isolcpus={list} nohz_full={list} irqaffinity=0 to the kernel command line and reboot",
        list = cpu_list_text(&workers)
    ))
}

fn load(host: &HostReport, layout: &Layout) -> Finding {
    const WHY: &str = "a worker competes for its CPU with whatever else runs there";
    if host.cpu_busy.is_empty() {
        return Finding::new(CPU, "load", Status::Ok, "not sampled".to_owned(), WHY);
    }
    let busy: Vec<(u32, f64)> = worker_cpus(layout)
        .into_iter()
        .filter_map(|cpu| {
            let &(_, share) = host.cpu_busy.iter().find(|(id, _)| *id == cpu)?;
            (share >= BUSY_THRESHOLD).then_some((cpu, share))
        })
        .collect();
    if busy.is_empty() {
        return Finding::new(
            CPU,
            "load",
            Status::Ok,
            format!("worker CPUs were under {:.0}% busy", BUSY_THRESHOLD * 100.0),
            WHY,
        );
    }
    let found: Vec<String> = busy
        .iter()
        .map(|(cpu, share)| format!("CPU {cpu} {:.0}% busy", share * 100.0))
        .collect();
    Finding::new(
        CPU,
        "load",
        Status::Warn,
        found.join(", ") + " (a running gateway's own workers count too)",
        WHY,
    )
    .manual_fix("move that load elsewhere (taskset, systemd CPUAffinity=) or choose other Cores")
}

fn smt(cpus: &[Cpu], layout: &Layout) -> Finding {
    const WHY: &str = "hardware threads of one physical core share its execution units and \
                       caches: two workers there get far less than two cores' worth";
    let workers = worker_cpus(layout);
    let pairs: Vec<String> = workers
        .iter()
        .enumerate()
        .flat_map(|(index, &first)| {
            let cpu = cpus.iter().find(|cpu| cpu.id == first);
            workers[index + 1..]
                .iter()
                .filter(move |&&second| cpu.is_some_and(|cpu| cpu.is_sibling_of(second)))
                .map(move |second| format!("{first}+{second}"))
        })
        .collect();
    if pairs.is_empty() {
        return Finding::new(
            CPU,
            "smt",
            Status::Ok,
            "every worker has a physical core of its own".to_owned(),
            WHY,
        );
    }
    let mut seen_cores = Vec::new();
    let one_thread_per_core: Vec<u32> = cpus
        .iter()
        .filter(|cpu| {
            let core = cpu.thread_siblings.first().copied().unwrap_or(cpu.id);
            let new = !seen_cores.contains(&core);
            seen_cores.push(core);
            new
        })
        .map(|cpu| cpu.id)
        .collect();
    Finding::new(
        CPU,
        "smt",
        Status::Warn,
        format!("workers share physical cores: CPUs {}", pairs.join(", ")),
        WHY,
    )
    .manual_fix(format!(
        "set Cores to one thread per core, e.g. Cores = {} (and Workers to at most that many)",
        cpu_list_text(&one_thread_per_core)
    ))
}

fn numa(cpus: &[Cpu], nics: &[NicReport], layout: &Layout) -> Finding {
    const WHY: &str = "a worker on another NUMA node than its NIC reaches every packet across \
                       the interconnect: slower DMA, remote memory, shared bandwidth";
    let nic_nodes: Vec<(&str, u32)> = nics
        .iter()
        .filter_map(|report| Some((report.name.as_str(), report.sysfs.as_ref()?.numa_node?)))
        .collect();
    if nic_nodes.is_empty() {
        return Finding::new(
            CPU,
            "numa",
            Status::Ok,
            "the NICs report no NUMA node (single node, or software NICs)".to_owned(),
            WHY,
        );
    }
    let mut problems = Vec::new();
    let mut fix_nodes = Vec::new();
    for (nic, node) in &nic_nodes {
        let remote: Vec<u32> = layout
            .workers
            .iter()
            .filter(|w| w.numa_node.is_some_and(|n| n != *node))
            .map(|w| w.cpu)
            .collect();
        if !remote.is_empty() {
            problems.push(format!(
                "{nic} is on node {node}, workers on CPUs {} are not",
                cpu_list_text(&remote)
            ));
            fix_nodes.push(*node);
        }
    }
    if problems.is_empty() {
        let nodes: Vec<String> = nic_nodes
            .iter()
            .map(|(nic, node)| format!("{nic} node {node}"))
            .collect();
        return Finding::new(
            CPU,
            "numa",
            Status::Ok,
            format!("workers share their NICs' node ({})", nodes.join(", ")),
            WHY,
        );
    }
    let node = fix_nodes.first().copied().unwrap_or(0);
    let local: Vec<u32> = cpus
        .iter()
        .filter(|cpu| cpu.numa_node == Some(node))
        .map(|cpu| cpu.id)
        .collect();
    Finding::new(CPU, "numa", Status::Warn, problems.join("; "), WHY).manual_fix(format!(
        "set Cores to CPUs of node {node} ({}), or leave Cores and Workers on auto",
        cpu_list_text(&local)
    ))
}
