//! Reads [`HostFacts`] from sysfs: CPUs from `devices/system/cpu/online`, their NUMA nodes
//! from `devices/system/node/node*/cpulist`, SMT siblings from
//! `devices/system/cpu/cpu*/topology/thread_siblings_list`, and per NIC the queue count
//! (`class/net/<nic>/queues/rx-*`) and NUMA node (`class/net/<nic>/device/numa_node`).
//!
//! `/sys/class/net` shows the network namespace that mounted sysfs, not necessarily the
//! caller's: inside `ip netns exec` it is remounted, elsewhere a caller in another namespace
//! should take queue counts from the NIC itself (the doctor uses `ETHTOOL_GCHANNELS`).

use std::io;
use std::path::{Path, PathBuf};

use super::{Cpu, HostFacts, NicFacts};
use crate::config::parse_cpu_list;

/// A sysfs file that could not be read or made no sense.
#[derive(Debug, thiserror::Error)]
pub enum HostFactsError {
    /// Reading failed.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The contents are not what the kernel writes there.
    #[error("{}: unexpected contents {text:?}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it held.
        text: String,
    },
    /// An `Attach` NIC that sysfs does not show.
    #[error(
        "[Interface] Attach: {nic} is not a network interface here (no {}); check the name and \
         the network namespace",
        .path.display()
    )]
    NoSuchNic {
        /// The NIC.
        nic: String,
        /// Where it was looked for.
        path: PathBuf,
    },
}

impl HostFacts {
    /// Reads the CPUs and the `attach` NICs from `/sys`.
    pub fn read(attach: &[String]) -> Result<Self, HostFactsError> {
        Self::read_from(Path::new("/sys"), attach)
    }

    /// As [`HostFacts::read`], with sysfs mounted at `sys` (tests pass a fake tree).
    pub fn read_from(sys: &Path, attach: &[String]) -> Result<Self, HostFactsError> {
        let cpus = read_cpus(sys)?;
        let nics = attach
            .iter()
            .map(|nic| read_nic(sys, nic))
            .collect::<Result<_, _>>()?;
        Ok(Self { cpus, nics })
    }
}

/// The online CPUs with their nodes and siblings.
pub(crate) fn read_cpus(sys: &Path) -> Result<Vec<Cpu>, HostFactsError> {
    let online = read_cpu_list(&sys.join("devices/system/cpu/online"))?;
    let nodes = read_nodes(&sys.join("devices/system/node"))?;
    let mut cpus = Vec::with_capacity(online.len());
    for id in online {
        let siblings_path = sys.join(format!(
            "devices/system/cpu/cpu{id}/topology/thread_siblings_list"
        ));
        let mut thread_siblings = match read_cpu_list(&siblings_path) {
            Ok(siblings) if siblings.contains(&id) => siblings,
            // Kernels without topology information: a core of its own.
            _ => vec![id],
        };
        thread_siblings.sort_unstable();
        let numa_node = nodes
            .iter()
            .find_map(|(node, members)| members.contains(&id).then_some(*node));
        cpus.push(Cpu {
            id,
            numa_node,
            thread_siblings,
        });
    }
    Ok(cpus)
}

/// `(node, its CPUs)` for every `nodeN` directory; none on kernels without NUMA.
fn read_nodes(dir: &Path) -> Result<Vec<(u32, Vec<u32>)>, HostFactsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(HostFactsError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut nodes = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(node) = name
            .to_str()
            .and_then(|name| name.strip_prefix("node"))
            .and_then(|digits| digits.parse::<u32>().ok())
        else {
            continue;
        };
        nodes.push((node, read_cpu_list(&entry.path().join("cpulist"))?));
    }
    nodes.sort_unstable();
    Ok(nodes)
}

fn read_nic(sys: &Path, nic: &str) -> Result<NicFacts, HostFactsError> {
    let dir = sys.join("class/net").join(nic);
    let queues_dir = dir.join("queues");
    let entries = std::fs::read_dir(&queues_dir).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            HostFactsError::NoSuchNic {
                nic: nic.to_owned(),
                path: dir.clone(),
            }
        } else {
            HostFactsError::Read {
                path: queues_dir.clone(),
                source,
            }
        }
    })?;
    let queues = entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(NicFacts {
        name: nic.to_owned(),
        queues: u32::try_from(queues).unwrap_or(u32::MAX),
        numa_node: read_numa_node(&dir.join("device/numa_node"))?,
        zero_copy: None,
    })
}

/// A device's NUMA node: `None` when the file is absent (virtual NICs) or says -1 (no
/// affinity, as on single-node machines).
pub(crate) fn read_numa_node(path: &Path) -> Result<Option<u32>, HostFactsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(HostFactsError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    match text.trim().parse::<i64>() {
        Ok(node) if node < 0 => Ok(None),
        Ok(node) => Ok(u32::try_from(node).ok()),
        Err(_) => Err(HostFactsError::Malformed {
            path: path.to_owned(),
            text,
        }),
    }
}

/// Reads a file in the kernel's cpulist format (`0-3,8`).
pub(crate) fn read_cpu_list(path: &Path) -> Result<Vec<u32>, HostFactsError> {
    let text = std::fs::read_to_string(path).map_err(|source| HostFactsError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_cpu_list(text.trim()).map_err(|_| HostFactsError::Malformed {
        path: path.to_owned(),
        text,
    })
}

/// CPUs as the kernel's cpulist text (`0-3,8`), as `Cores =` takes it.
pub fn cpu_list_text(cpus: &[u32]) -> String {
    match crate::config::CoreList::new(cpus.to_vec()) {
        Some(list) => list.to_string(),
        None => cpus
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}
