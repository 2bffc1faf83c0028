//! The inner interface: a TUN device named after the config, with its addresses, MTU and
//! routes to the peers' allowed IPs, as wg-quick sets them up.

use warpline_dataplane::lab::Netlink;
use warpline_dataplane::tun::{Offloads, Tun, TunQueue};

use super::DaemonError;
use super::setup::DEFAULT_MTU;
use crate::config::{Config, RoutingTable};

/// The TUN device: the event loop's queue, plus one queue per data-plane worker in XDP mode.
#[derive(Debug)]
pub struct Interface {
    /// The queue the event loop writes (and, in portable mode, reads). In XDP mode it is a
    /// second handle on the first worker's queue, used only for the few packets that reach
    /// the kernel socket.
    pub queue: TunQueue,
    /// One queue per data-plane worker (empty in portable mode).
    pub worker_queues: Vec<TunQueue>,
}

fn step(
    name: &str,
    what: &'static str,
    hint: &'static str,
) -> impl FnOnce(std::io::Error) -> DaemonError {
    let name = name.to_owned();
    move |source| DaemonError::Interface {
        name,
        what,
        source,
        hint,
    }
}

impl Interface {
    /// Creates the TUN device, sets MTU and addresses, brings it up and adds a route for each
    /// peer's allowed IPs (unless `Table = off`). The device disappears with the process.
    /// `worker_queues` is 0 in portable mode, else the number of data-plane workers.
    pub fn create(name: &str, config: &Config, worker_queues: usize) -> Result<Self, DaemonError> {
        const ROOT_HINT: &str = " (warpline up needs root or CAP_NET_ADMIN)";
        let tun = Tun::create(name, worker_queues.max(1), Offloads::ALL).map_err(|e| {
            DaemonError::Interface {
                name: name.to_owned(),
                what: "creating the TUN device",
                source: std::io::Error::other(e.to_string()),
                hint: ROOT_HINT,
            }
        })?;
        let mut netlink = Netlink::open().map_err(step(name, "opening netlink", ROOT_HINT))?;
        let index = netlink
            .link_by_name(name)
            .map_err(step(name, "finding the new device", ""))?
            .index;
        let mtu = config.interface.mtu.map_or(DEFAULT_MTU, usize::from);
        netlink
            .set_mtu(index, mtu as u32)
            .map_err(step(name, "setting the MTU", ""))?;
        for address in &config.interface.addresses {
            netlink
                .add_address(index, address.addr, address.prefix_len)
                .map_err(step(name, "adding an address", " (is it already in use?)"))?;
        }
        netlink
            .set_up(index)
            .map_err(step(name, "bringing the device up", ""))?;
        if config.interface.table != RoutingTable::Off {
            for prefix in config.peers.iter().flat_map(|p| &p.allowed_ips) {
                if prefix.prefix_len() == 0 {
                    // wg-quick moves default routes into a table of their own with policy
                    // rules so the tunnel's own packets still reach the endpoint; until that
                    // exists here, say so instead of installing a route that loops.
                    tracing::warn!(
                        %prefix,
                        "not installing a default route through {name}: policy routing for \
                         default routes is not implemented yet; route specific prefixes instead"
                    );
                    continue;
                }
                netlink
                    .add_route(index, prefix.addr(), prefix.prefix_len())
                    .map_err(step(
                        name,
                        "adding a route",
                        " (does another interface route it?)",
                    ))?;
            }
        }
        let mut queues = tun.into_queues();
        if worker_queues == 0 {
            let queue = queues.pop().expect("one queue was asked for");
            return Ok(Self {
                queue,
                worker_queues: Vec::new(),
            });
        }
        let queue = queues[0]
            .try_clone()
            .map_err(step(name, "sharing a TUN queue", ""))?;
        Ok(Self {
            queue,
            worker_queues: queues,
        })
    }
}
