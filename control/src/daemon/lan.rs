//! The LAN side of a full-bypass gateway (`Inner = <nic>`), the control plane's half.
//!
//! It attaches the steering program in its LAN role, binds each worker's second AF_XDP
//! socket on the LAN NIC over the worker's UMEM, keeps the program's prefix maps equal to
//! the peers' allowed IPs, and resolves the next hops workers ask for through the kernel's
//! route and neighbour tables, publishing them for the workers ([`NextHopTable`]).
//!
//! Resolution never blocks a packet: until a destination is published, its packets take the
//! kernel's path (the TUN), which also makes the kernel resolve the neighbour. The TUN's
//! reverse-path filter is set to loose: oversized IPv4 packets from the LAN that may be
//! fragmented re-enter the kernel through the TUN (see the worker), and a strict filter would
//! drop them because their source is routed through the LAN NIC.

use std::collections::HashSet;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use warpline_dataplane::allowed_ips::IpPrefix;
use warpline_dataplane::lab::Netlink;
use warpline_dataplane::next_hops::{MAX_DESTINATIONS, NextHopTable, NextHops};
use warpline_dataplane::pipeline::LanAddresses;
use warpline_dataplane::wire::ethernet::MacAddr;
use warpline_dataplane::worker::LanSide;
use warpline_dataplane::xdp::{AttachMode, Role, Steering};
use warpline_dataplane::xsk::{SocketConfig, Umem, XskSocket};

use super::DaemonError;

/// How often resolved next hops are checked again (a neighbour's MAC can change).
const REFRESH: Duration = Duration::from_secs(2);
/// How soon destinations still unresolved are looked up again.
const RETRY: Duration = Duration::from_millis(100);
/// Destinations looked up per tick, so one tick stays short with a big map.
const LOOKUPS_PER_TICK: usize = 256;

fn failed(what: &'static str) -> impl FnOnce(String) -> DaemonError {
    move |reason| DaemonError::DataPlane { what, reason }
}

/// The attached LAN NIC and the next hops published for its workers.
pub(super) struct LanControl {
    name: String,
    if_index: u32,
    mac: MacAddr,
    addresses: LanAddresses,
    queues: u32,
    steering: Steering,
    steered: HashSet<IpPrefix>,
    table: NextHopTable,
    /// Every destination a worker asked for (bounded by [`MAX_DESTINATIONS`]), in the order
    /// asked; refreshes walk it round robin from `cursor`.
    wanted: Vec<IpAddr>,
    wanted_set: HashSet<IpAddr>,
    cursor: usize,
    next_pass: Instant,
    pass_unresolved: bool,
}

impl std::fmt::Debug for LanControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanControl")
            .field("name", &self.name)
            .field("queues", &self.queues)
            .field("destinations", &self.wanted.len())
            .finish_non_exhaustive()
    }
}

impl LanControl {
    /// Attaches the LAN program to `name` and loosens the TUN's reverse-path filter.
    pub(super) fn attach(
        netlink: &mut Netlink,
        name: &str,
        mode: AttachMode,
        tun_name: &str,
    ) -> Result<Self, DaemonError> {
        let link = netlink.link_by_name(name).map_err(|e| {
            failed("finding the Inner NIC")(format!(
                "{name}: {e} (is the name right, and in this network namespace?)"
            ))
        })?;
        let mac = MacAddr::try_from(&link.mac[..]).map_err(|_| {
            failed("reading the Inner NIC")(format!(
                "{name} has no Ethernet address; Inner takes an Ethernet NIC (or `tun`)"
            ))
        })?;
        let (_, v4, v6) = super::data_plane::local_addresses(netlink, name, link.index)?;
        if v4.is_none() || v6.is_none() {
            tracing::warn!(
                nic = %name,
                "the Inner NIC has no {} address: LAN hosts get no ICMP error for oversized \
                 packets of that family (they are dropped and counted as too_big)",
                if v4.is_none() { "IPv4" } else { "global IPv6" }
            );
        }
        let queues = link.rx_queues.max(1);
        let steering = Steering::attach(link.index, Role::Lan, mode, queues)
            .map_err(|e| failed("attaching XDP to the Inner NIC")(format!("{name}: {e}")))?;
        loosen_reverse_path_filter(tun_name);
        Ok(Self {
            name: name.to_owned(),
            if_index: link.index,
            mac,
            addresses: LanAddresses { v4, v6 },
            queues,
            steering,
            steered: HashSet::new(),
            table: NextHopTable::new(),
            wanted: Vec::new(),
            wanted_set: HashSet::new(),
            cursor: 0,
            next_pass: Instant::now(),
            pass_unresolved: false,
        })
    }

    /// The NIC's name, for logs.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Binds a worker's LAN socket on `queue` over the UMEM its WAN socket registered, and
    /// has the program send that queue's tunnel traffic to it.
    pub(super) fn bind_worker_socket(
        &mut self,
        umem: &Umem,
        queue: u32,
        ring_size: u32,
    ) -> Result<LanSide, DaemonError> {
        if queue >= self.queues {
            return Err(failed("binding the Inner NIC")(format!(
                "{} has {} queue(s) but a worker runs on queue {queue}: give it as many \
                 queues as the Attach NIC carries (ethtool -L {} combined {})",
                self.name,
                self.queues,
                self.name,
                queue + 1
            )));
        }
        let config = SocketConfig {
            rx_size: ring_size,
            tx_size: ring_size,
            fill_size: ring_size,
            completion_size: ring_size,
            ..SocketConfig::new(self.if_index, queue)
        };
        let socket = XskSocket::bind(umem, &config).map_err(|e| {
            failed("binding AF_XDP on the Inner NIC")(format!("{} queue {queue}: {e}", self.name))
        })?;
        self.steering
            .set_socket(queue, socket.as_fd())
            .map_err(|e| failed("registering the LAN socket")(format!("{}: {e}", self.name)))?;
        Ok(LanSide {
            socket,
            mac: self.mac,
            addresses: self.addresses,
            next_hops: self.table.reader(),
        })
    }

    /// Makes the program steer exactly `prefixes` (the peers' allowed IPs) to the workers.
    pub(super) fn steer(&mut self, prefixes: impl Iterator<Item = IpPrefix>) {
        let wanted: HashSet<IpPrefix> = prefixes.collect();
        let gone: Vec<IpPrefix> = self.steered.difference(&wanted).copied().collect();
        for prefix in gone {
            if let Err(e) = self
                .steering
                .remove_prefix(prefix.addr(), prefix.prefix_len())
            {
                tracing::warn!(nic = %self.name, %prefix, "could not stop steering: {e}");
            }
            self.steered.remove(&prefix);
        }
        for prefix in wanted {
            if self.steered.contains(&prefix) {
                continue;
            }
            match self.steering.add_prefix(prefix.addr(), prefix.prefix_len()) {
                Ok(()) => {
                    self.steered.insert(prefix);
                }
                Err(e) => tracing::warn!(
                    nic = %self.name,
                    %prefix,
                    "could not steer the prefix (its packets take the kernel's path): {e}"
                ),
            }
        }
    }

    /// A worker saw a destination without a next hop.
    pub(super) fn want(&mut self, destination: IpAddr, now: Instant) {
        if self.wanted.len() < MAX_DESTINATIONS && self.wanted_set.insert(destination) {
            self.wanted.push(destination);
            self.next_pass = now;
        }
    }

    /// Looks destinations up when due (every [`REFRESH`], or [`RETRY`] after a pass that
    /// left some on the LAN unresolved) and publishes the next hops when they changed.
    pub(super) fn refresh(&mut self, netlink: &mut Netlink, now: Instant) {
        if self.wanted.is_empty() || now < self.next_pass {
            return;
        }
        let current = self.table.current();
        // The map is copied only when a lookup changed something: most passes confirm it.
        let mut next: Option<NextHops> = None;
        for _ in 0..self.wanted.len().min(LOOKUPS_PER_TICK) {
            let destination = self.wanted[self.cursor];
            self.cursor += 1;
            let mac = match self.look_up(netlink, destination) {
                Lookup::OnLan(mac) => Some(mac),
                Lookup::Elsewhere => None,
                Lookup::Unresolved => {
                    self.pass_unresolved = true;
                    None
                }
            };
            if current.get(destination) != mac {
                let next = next.get_or_insert_with(|| (*current).clone());
                match mac {
                    Some(mac) => {
                        next.insert(destination, mac);
                    }
                    None => next.remove(destination),
                }
            }
            if self.cursor == self.wanted.len() {
                self.cursor = 0;
                let wait = if self.pass_unresolved { RETRY } else { REFRESH };
                self.next_pass = now + wait;
                self.pass_unresolved = false;
                break;
            }
        }
        if let Some(next) = next {
            self.table.publish(next);
        }
    }

    /// Where the kernel sends `destination`: out of the LAN NIC to a resolved neighbour,
    /// elsewhere (another NIC, a local address: the kernel's path is the right one), or out
    /// of the LAN NIC to a neighbour not resolved yet.
    fn look_up(&self, netlink: &mut Netlink, destination: IpAddr) -> Lookup {
        let Ok(route) = netlink.route_to(destination) else {
            return Lookup::Elsewhere;
        };
        if route.if_index != self.if_index {
            return Lookup::Elsewhere;
        }
        match netlink.neighbour(self.if_index, route.next_hop(destination)) {
            Ok(Some(mac)) => Lookup::OnLan(mac),
            _ => Lookup::Unresolved,
        }
    }
}

enum Lookup {
    OnLan(MacAddr),
    Elsewhere,
    Unresolved,
}

impl Drop for LanControl {
    fn drop(&mut self) {
        tracing::info!(nic = %self.name, "XDP detached (Inner)");
    }
}

/// Sets the TUN's IPv4 reverse-path filter to loose (the kernel uses the larger of the
/// interface's and `all`'s value, so loose wins over strict). Failure only costs the ICMP
/// errors for oversized LAN packets, so it is logged, not fatal.
fn loosen_reverse_path_filter(tun_name: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{tun_name}/rp_filter");
    if let Err(e) = std::fs::write(&path, "2") {
        tracing::warn!(
            "could not set {path} to 2 (loose): {e}; oversized packets from the LAN may get \
             no ICMP error back"
        );
    }
}
