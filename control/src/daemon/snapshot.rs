//! What `warpline show` sees: the tunnel's state as a control-socket snapshot.

use std::collections::HashMap;
use std::time::Duration;

use rand_core::CryptoRngCore;

use crate::config::Config;
use crate::ctl::model::{InterfaceSnapshot, PeerSnapshot, WorkerSnapshot};
use crate::tunnel::{Tunnel, TunnelDrop};

/// Counters of the event loop (the kernel UDP socket), shown as the last worker.
#[derive(Debug, Default)]
pub struct LoopCounters {
    /// Datagrams received on the UDP socket.
    pub rx_packets: u64,
    /// Datagrams sent.
    pub tx_packets: u64,
    /// Drops by reason.
    pub drops: HashMap<TunnelDrop, u64>,
    /// What the socket and TUN offloads did.
    pub offloads: super::portable_io::OffloadCounters,
}

/// What the event loop knows of each peer beyond the node's state.
pub struct PeerFacts<'a> {
    /// Whether the peer has a preshared key.
    pub preshared: &'a dyn Fn(&crate::keys::PublicKey) -> bool,
    /// The peer's endpoint list, if it has one.
    pub failover: &'a dyn Fn(crate::node::PeerId) -> Option<crate::ctl::model::EndpointsSnapshot>,
}

/// Builds the snapshot. `wall_clock_at_start` maps the loop's monotonic times to Unix time.
pub fn build<R: CryptoRngCore>(
    name: &str,
    config: &Config,
    tunnel: &Tunnel<R>,
    workers: Vec<WorkerSnapshot>,
    listen_port: Option<u16>,
    wall_clock_at_start: Duration,
    facts: &PeerFacts<'_>,
) -> InterfaceSnapshot {
    let PeerFacts {
        preshared,
        failover,
    } = facts;
    let peers = tunnel
        .node()
        .peers()
        .map(|(id, peer)| {
            let stats = peer.stats();
            PeerSnapshot {
                public_key: peer.public_key().to_base64(),
                endpoint: peer.endpoint().map(|e| e.to_string()),
                allowed_ips: tunnel.allowed_ips_of(id).map(|p| p.to_string()).collect(),
                latest_handshake_unix_secs: stats
                    .last_handshake
                    .map(|t| (wall_clock_at_start + t.since_origin()).as_secs()),
                handshakes: stats.handshakes,
                rx_bytes: stats.rx_bytes,
                tx_bytes: stats.tx_bytes,
                persistent_keepalive_secs: peer
                    .persistent_keepalive()
                    .map(|d| u16::try_from(d.as_secs()).unwrap_or(u16::MAX)),
                cipher: peer.suite().config_name().to_owned(),
                preshared_key: preshared(peer.public_key()),
                failover: failover(id),
            }
        })
        .collect();
    InterfaceSnapshot {
        name: name.to_owned(),
        public_key: config.interface.private_key.public_key().to_base64(),
        listen_port,
        peers,
        workers,
    }
}

/// The per-worker counters `show` lists: XDP workers first, then the event loop's kernel
/// socket (alone in portable mode).
pub fn workers(
    counters: &LoopCounters,
    cookie_replies_sent: u64,
    data_plane_workers: Option<Vec<WorkerSnapshot>>,
) -> Vec<WorkerSnapshot> {
    let mut drops: Vec<(String, u64)> = counters
        .drops
        .iter()
        .map(|(reason, count)| (reason.to_string(), *count))
        .chain(counters.offloads.drops())
        .collect();
    drops.sort();
    // Not a drop, but where handshakes went under load: answered with a cookie, no DH.
    if cookie_replies_sent > 0 {
        drops.push((
            "answered with a cookie reply".to_owned(),
            cookie_replies_sent,
        ));
    }
    let mut workers = data_plane_workers.unwrap_or_default();
    workers.push(WorkerSnapshot {
        id: workers.len(),
        core: None,
        rx_packets: counters.rx_packets,
        tx_packets: counters.tx_packets,
        drops,
        counters: counters.offloads.named(),
    });
    workers
}
