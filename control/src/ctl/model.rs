//! What `warpline show` reports: plain data, filled in by the daemon and rendered by the CLI.
//!
//! These types are the wire format of [`Response::Show`](super::protocol::Response::Show) and
//! the output of `warpline show --json`, so they hold only owned, serializable values (keys as
//! base64 text, endpoints and prefixes as text) and no behaviour. They must never carry secret
//! material: a peer's preshared key is reported only as "there is one"
//! ([`PeerSnapshot::preshared_key`]) and the interface's private key not at all, so a snapshot
//! can be logged, printed or piped into another tool without care.

use serde::{Deserialize, Serialize};

/// One interface as the daemon sees it at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceSnapshot {
    /// The interface name (`wg0`), also the control socket's name.
    pub name: String,
    /// The interface's public key, base64 (what `wg pubkey` prints).
    pub public_key: String,
    /// The UDP port handshakes and data arrive on; `None` while not listening.
    pub listen_port: Option<u16>,
    /// Every configured peer, in the daemon's order (rendering sorts them as `wg show` does).
    pub peers: Vec<PeerSnapshot>,
    /// Per-worker (per-queue) data plane counters.
    pub workers: Vec<WorkerSnapshot>,
}

/// One peer's configuration and statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSnapshot {
    /// The peer's public key, base64.
    pub public_key: String,
    /// The peer's current endpoint (`203.0.113.7:51820`, `[2001:db8::1]:51820`), if known.
    pub endpoint: Option<String>,
    /// Allowed IPs as `ADDRESS/LENGTH` prefixes, in the order they are configured.
    pub allowed_ips: Vec<String>,
    /// When the latest handshake completed, seconds since the Unix epoch; `None`: never.
    pub latest_handshake_unix_secs: Option<u64>,
    /// Handshakes completed with this peer since the gateway started.
    #[serde(default)]
    pub handshakes: u64,
    /// Bytes received from this peer (transport data, as `wg` counts).
    pub rx_bytes: u64,
    /// Bytes sent to this peer.
    pub tx_bytes: u64,
    /// The persistent keepalive interval in seconds; `None`: off.
    pub persistent_keepalive_secs: Option<u16>,
    /// The AEAD suite's config name (`chacha20poly1305`, `aes256gcm`).
    pub cipher: String,
    /// Whether a preshared key is set. The key itself never leaves the daemon.
    pub preshared_key: bool,
    /// With several endpoints (or a name with several addresses): the list and which is in
    /// use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<EndpointsSnapshot>,
}

/// A peer's endpoint list (`Endpoint = a, b, ...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointsSnapshot {
    /// The configured endpoints, in config order.
    pub endpoints: Vec<String>,
    /// Each endpoint's persistent keepalive in seconds (its own `keepalive=`, else the
    /// peer's), `None` for off; the peer takes it on when it moves there.
    #[serde(default)]
    pub keepalive_secs: Vec<Option<u64>>,
    /// The index of the one in use (`None` while a name is being resolved).
    pub active: Option<usize>,
    /// The address in use.
    pub active_address: Option<String>,
    /// Failovers so far.
    pub switches: u64,
}

/// One data plane worker's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    /// The worker's index (its queue number).
    pub id: usize,
    /// The CPU core it is pinned to, if pinned.
    pub core: Option<usize>,
    /// Packets it received (both NICs).
    pub rx_packets: u64,
    /// Packets it transmitted (both NICs).
    pub tx_packets: u64,
    /// Dropped packets by reason (`replay`, `bad tag`, ...), in the worker's order.
    pub drops: Vec<(String, u64)>,
    /// Every worker counter by name (frames per socket, packets handed to the kernel, ...);
    /// for the kernel socket's pseudo-worker, its offloads (UDP GSO/GRO, TUN GSO writes).
    #[serde(default)]
    pub counters: Vec<(String, u64)>,
}

/// A node's place in its HA cluster (`warpline ha status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaSnapshot {
    /// `keepalived` or `active-active`.
    pub mode: String,
    /// `HaNodeId`.
    pub node_id: u8,
    /// `active` or `standby`.
    pub role: String,
    /// The highest counter epoch this node has seen or sent in.
    pub highest_epoch: u32,
    /// Live sessions this node owns.
    pub sessions_owned: usize,
    /// Partners' sessions held, ready to take over.
    pub records_held: usize,
    /// The configured partners (`HaPeer`).
    pub partners: Vec<HaPartnerSnapshot>,
    /// Node ids that receive this node's sessions now.
    pub subscribers: Vec<u8>,
    /// Takeovers so far.
    pub takeovers: u64,
    /// Sessions installed by takeovers.
    pub sessions_taken_over: u64,
    /// Own sessions given up to a partner that took them over.
    pub sessions_yielded: u64,
    /// Records that could not be installed.
    pub import_failures: u64,
    /// Session records received from partners.
    pub records_received: u64,
    /// Session records sent to partners.
    pub records_sent: u64,
    /// Sync messages refused.
    pub protocol_errors: u64,
    /// `HaTrackInterface` links that are down now: while any is, the node is not eligible
    /// to be active (builtin mode).
    #[serde(default)]
    pub tracked_down: Vec<String>,
}

/// One `HaPeer` as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaPartnerSnapshot {
    /// Its sync address.
    pub address: String,
    /// Its node id, once it said hello.
    pub node_id: Option<u8>,
    /// Whether this node is connected to it (receiving its sessions).
    pub connected: bool,
    /// Its sessions held here.
    pub records: usize,
    /// Milliseconds since it was last heard from.
    pub last_heard_ms_ago: Option<u64>,
}
