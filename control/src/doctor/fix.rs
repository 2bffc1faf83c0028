//! The fixes `--fix` applies itself: each is a runtime setting the operator would otherwise
//! change with ethtool, ip or sysctl, applied here with the same ioctl or file write.
//! Nothing that needs a reboot, a config edit or another process's limits is applied.

use std::io;
use std::path::PathBuf;

use super::sys::ethtool::{Channels, EthtoolSocket, UdpFlow, rxh};
use super::{DoctorError, Finding};

/// A change `--fix` can make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixAction {
    /// `ETHTOOL_SCHANNELS` (`ethtool -L`).
    SetChannels {
        /// The NIC.
        nic: String,
        /// The settings to apply.
        channels: Channels,
    },
    /// `SIOCSIFMTU` (`ip link set dev NIC mtu N`).
    SetMtu {
        /// The NIC.
        nic: String,
        /// The new MTU.
        mtu: u32,
    },
    /// `ETHTOOL_SRXFH` hashing addresses and ports (`ethtool -N NIC rx-flow-hash udp4 sdfn`).
    HashUdpPorts {
        /// The NIC.
        nic: String,
        /// The flow type.
        flow: UdpFlow,
    },
    /// `ETHTOOL_SFEATURES` turning features off (`ethtool -K NIC lro off`).
    DisableFeatures {
        /// The NIC.
        nic: String,
        /// Kernel feature names, e.g. `rx-lro`.
        features: Vec<&'static str>,
    },
    /// Writes to `/proc/sys`, `/proc/irq` or `/sys` (sysctl, IRQ affinity, NAPI settings).
    WriteFiles {
        /// `(file, value)` pairs, written in order.
        writes: Vec<(PathBuf, String)>,
    },
}

impl FixAction {
    /// Applies the change.
    pub fn apply(&self, ethtool: &EthtoolSocket) -> io::Result<()> {
        match self {
            Self::SetChannels { nic, channels } => ethtool.set_channels(nic, channels),
            Self::SetMtu { nic, mtu } => ethtool.set_mtu(nic, *mtu),
            Self::HashUdpPorts { nic, flow } => {
                ethtool.set_rx_flow_hash(nic, *flow, rxh::ADDRESSES_AND_PORTS)
            }
            Self::DisableFeatures { nic, features } => ethtool.disable_features(nic, features),
            Self::WriteFiles { writes } => writes.iter().try_for_each(|(path, value)| {
                std::fs::write(path, value).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("writing {value} to {}: {e}", path.display()),
                    )
                })
            }),
        }
    }
}

/// How one fix went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The finding's scope.
    pub scope: String,
    /// The finding's check.
    pub check: &'static str,
    /// The equivalent command.
    pub command: String,
    /// `None` when it worked, else why not.
    pub error: Option<String>,
}

/// Applies the fixes of `findings` in order (queue counts first: other settings, IRQ
/// affinity above all, depend on them) and reports each.
pub fn apply_all(findings: &[&Finding]) -> Result<Vec<Applied>, DoctorError> {
    let ethtool = EthtoolSocket::open().map_err(DoctorError::Socket)?;
    let mut ordered: Vec<&Finding> = findings.to_vec();
    ordered.sort_by_key(|finding| {
        !matches!(
            finding.pending_action(),
            Some(FixAction::SetChannels { .. })
        )
    });
    Ok(ordered
        .into_iter()
        .filter_map(|finding| {
            let remedy = finding.fix.as_ref()?;
            let action = finding.pending_action()?;
            Some(Applied {
                scope: finding.scope.clone(),
                check: finding.check,
                command: remedy.command.clone(),
                error: action.apply(&ethtool).err().map(|e| e.to_string()),
            })
        })
        .collect())
}
