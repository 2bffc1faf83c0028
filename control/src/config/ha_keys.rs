//! The high-availability keys of `[Interface]` (warpline extensions) and the endpoint
//! failover keys of `[Peer]`.
//!
//! ```text
//! [Interface]
//! HaMode = keepalived          # or active-active, builtin; off (the default) without the rest
//! HaNodeId = 0                 # 0..15, different on every node of the cluster
//! HaKey = <base64 32 bytes>    # the sync channel's key, the same on every node (wg genpsk)
//! HaListen = 10.0.0.1:51900    # where this node serves its sessions to the others
//! HaPeer = 10.0.0.2:51900      # the other nodes' HaListen (repeatable)
//! HaCheckpointMs = 100         # how often changed counters are streamed
//! HaVirtualIp = 10.0.0.100/24 dev eth0   # builtin only (repeatable), with:
//! HaPriority = 150             # the higher of two live nodes is active (default 100)
//! HaPreempt = on               # a returning higher node takes over (default on)
//!
//! [Peer]
//! Endpoint = gw1.example.com:51820, 192.0.2.7:51820   # tried in order (or at random)
//! EndpointPolicy = ordered     # or random
//! FailoverAfter = 5            # seconds without an authenticated packet while sending
//! FailBack = never             # or seconds on a later endpoint before trying the first again
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use super::values::{IpPrefix, ValueError, parse_decimal, value_error};
use crate::keys::PresharedKey;

/// How a node takes part in a gateway cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaMode {
    /// Active-passive with keepalived owning the virtual IP: the node starts as standby and
    /// `warpline ha promote|demote` (keepalived's notify scripts) switch it.
    Keepalived,
    /// Every node is active for the peers the network delivers to it and standby for the
    /// others' peers: it takes a peer over when the peer's traffic arrives or its owner dies.
    ActiveActive,
    /// Active-passive between two nodes without keepalived: heartbeats over the sync
    /// channel elect the active node, which holds the `HaVirtualIp` addresses.
    Builtin,
}

impl HaMode {
    /// The config spelling.
    pub fn config_name(self) -> &'static str {
        match self {
            Self::Keepalived => "keepalived",
            Self::ActiveActive => "active-active",
            Self::Builtin => "builtin",
        }
    }
}

impl fmt::Display for HaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_name())
    }
}

/// The `HaMode` value: `off` or a mode.
pub(crate) fn parse_ha_mode(text: &str) -> Result<Option<HaMode>, ValueError> {
    [
        ("off", None),
        ("keepalived", Some(HaMode::Keepalived)),
        ("active-active", Some(HaMode::ActiveActive)),
        ("builtin", Some(HaMode::Builtin)),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(text))
    .map(|(_, mode)| mode)
    .ok_or_else(|| {
        value_error!("{text:?} is not an HA mode; valid: off, keepalived, active-active, builtin")
    })
}

/// The cluster settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// `HaMode`.
    pub mode: HaMode,
    /// `HaNodeId`: 0..16; also the low bits of the node's counter epochs.
    pub node_id: u8,
    /// `HaKey`: the sync channel's pre-shared key. Redacted in `Debug`.
    pub key: PresharedKey,
    /// `HaListen`: where this node serves its sessions.
    pub listen: SocketAddr,
    /// `HaPeer`: the other nodes' `HaListen` addresses.
    pub partners: Vec<SocketAddr>,
    /// `HaCheckpointMs`: the counter checkpoint interval.
    pub checkpoint: Duration,
    /// `HaVirtualIp` (builtin mode): the addresses the active node holds.
    pub virtual_ips: Vec<VirtualIp>,
    /// `HaPriority` (builtin mode): the higher of two nodes is active when both are up.
    pub priority: u8,
    /// `HaPreempt` (builtin mode): a higher-priority node takes over from an active lower
    /// one when it comes back.
    pub preempt: bool,
    /// `HaTrackInterface` (builtin mode): interfaces that must be up with carrier for this
    /// node to be active.
    pub track_interfaces: Vec<String>,
    /// `HaPool` (active-active mode): this node's own client address pools. Empty: one
    /// pool shared by all nodes (every peer's allowed IPs routed here always). Otherwise the
    /// allowed IPs outside these pools (other nodes' clients) are routed here only while
    /// this node owns the peer (after a takeover).
    pub pools: Vec<IpPrefix>,
}

/// The default `HaPriority`.
pub const DEFAULT_PRIORITY: u8 = 100;

/// One `HaVirtualIp`: `ADDRESS/LEN dev IFNAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualIp {
    /// The address.
    pub address: std::net::IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The interface it goes on.
    pub interface: String,
}

impl fmt::Display for VirtualIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} dev {}",
            self.address, self.prefix_len, self.interface
        )
    }
}

/// The `HaVirtualIp` value.
pub(crate) fn parse_virtual_ip(text: &str) -> Result<VirtualIp, ValueError> {
    let expected = "expected ADDRESS/LEN dev IFNAME, e.g. 10.0.0.100/24 dev eth0";
    let words: Vec<&str> = text.split_whitespace().collect();
    let [address, "dev", interface] = words[..] else {
        return Err(value_error!("{text:?}: {expected}"));
    };
    let (address, prefix_len) = address
        .split_once('/')
        .ok_or_else(|| value_error!("{text:?} has no /LEN ({expected})"))?;
    let address: std::net::IpAddr = address
        .parse()
        .map_err(|_| value_error!("{text:?}: {address:?} is not an IP address"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = parse_decimal(prefix_len)
        .filter(|len| (1..=max).contains(len))
        .ok_or_else(|| value_error!("{text:?}: the prefix length must be 1 to {max}"))?
        as u8;
    let interface = super::values::parse_interface_name(interface)?;
    Ok(VirtualIp {
        address,
        prefix_len,
        interface,
    })
}

/// The `HaPriority` value: 1 to 255.
pub(crate) fn parse_priority(text: &str) -> Result<u8, ValueError> {
    parse_decimal(text)
        .filter(|p| (1..=255).contains(p))
        .map(|p| p as u8)
        .ok_or_else(|| value_error!("{text:?} is not a priority (1 to 255)"))
}

/// The default counter checkpoint interval: replays of at most this much traffic are
/// possible against a node that took over (see `crate::ha`).
pub const DEFAULT_CHECKPOINT: Duration = Duration::from_millis(100);

/// The `HaNodeId` value.
pub(crate) fn parse_node_id(text: &str) -> Result<u8, ValueError> {
    parse_decimal(text)
        .filter(|id| *id < u64::from(crate::ha::MAX_NODES))
        .map(|id| id as u8)
        .ok_or_else(|| value_error!("{text:?} is not a node id (0 to 15)"))
}

/// An `IP:PORT` value of `HaListen` or `HaPeer`.
pub(crate) fn parse_sync_address(text: &str) -> Result<SocketAddr, ValueError> {
    text.parse::<SocketAddr>()
        .ok()
        .filter(|address| address.port() != 0)
        .ok_or_else(|| value_error!("{text:?} is not a numeric IP:PORT (e.g. 10.0.0.1:51900)"))
}

/// The `HaCheckpointMs` value: 10 ms to 10 s.
pub(crate) fn parse_checkpoint(text: &str) -> Result<Duration, ValueError> {
    parse_decimal(text)
        .filter(|ms| (10..=10_000).contains(ms))
        .map(Duration::from_millis)
        .ok_or_else(|| value_error!("{text:?} is not a checkpoint interval (10 to 10000 ms)"))
}

/// How a peer with several endpoints picks the next one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndpointPolicy {
    /// In the order written (OpenVPN's `remote` lines).
    #[default]
    Ordered,
    /// In a random order, drawn again each round (OpenVPN's `remote-random`).
    Random,
}

impl FromStr for EndpointPolicy {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        if text.eq_ignore_ascii_case("ordered") {
            Ok(Self::Ordered)
        } else if text.eq_ignore_ascii_case("random") {
            Ok(Self::Random)
        } else {
            Err(value_error!(
                "{text:?} is not an endpoint policy; valid: ordered, random"
            ))
        }
    }
}

impl fmt::Display for EndpointPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ordered => "ordered",
            Self::Random => "random",
        })
    }
}

/// How a peer with several endpoints moves between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverKeys {
    /// `EndpointPolicy`.
    pub policy: EndpointPolicy,
    /// `FailoverAfter`: how long the peer may stay silent while we send (or handshakes
    /// fail) before the next endpoint is tried.
    pub after: Duration,
    /// `FailBack`: how long to stay on a later endpoint before trying the first again;
    /// `None` stays until that one fails too.
    pub fail_back: Option<Duration>,
}

/// The default `FailoverAfter`: a few keepalive-driven seconds, well under WireGuard's 15 s
/// "no reply to data" handshake trigger.
pub const DEFAULT_FAILOVER_AFTER: Duration = Duration::from_secs(5);

impl Default for FailoverKeys {
    fn default() -> Self {
        Self {
            policy: EndpointPolicy::Ordered,
            after: DEFAULT_FAILOVER_AFTER,
            fail_back: None,
        }
    }
}

/// The `FailoverAfter` value: whole seconds, 1 to 3600.
pub(crate) fn parse_failover_after(text: &str) -> Result<Duration, ValueError> {
    parse_decimal(text)
        .filter(|s| (1..=3600).contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| value_error!("{text:?} is not a failover time (1 to 3600 seconds)"))
}

/// The `FailBack` value: `never` or whole seconds, 1 to 86400.
pub(crate) fn parse_fail_back(text: &str) -> Result<Option<Duration>, ValueError> {
    if text.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    parse_decimal(text)
        .filter(|s| (1..=86_400).contains(s))
        .map(|s| Some(Duration::from_secs(s)))
        .ok_or_else(|| {
            value_error!("{text:?} is not a fail-back time (never, or 1 to 86400 seconds)")
        })
}
