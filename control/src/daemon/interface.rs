//! The inner interface: a TUN device named after the config, with its addresses, MTU and
//! routes to the peers' allowed IPs, as wg-quick sets them up.

use warpline_dataplane::lab::Netlink;
use warpline_dataplane::tun::{Offloads, Tun, TunQueue};

use super::DaemonError;
use super::setup::DEFAULT_MTU;
use crate::config::{Config, RoutingTable};

/// The TUN device and its one queue (the portable loop is single-threaded).
#[derive(Debug)]
pub struct Interface {
    /// The queue the event loop reads and writes.
    pub queue: TunQueue,
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
    pub fn create(name: &str, config: &Config) -> Result<Self, DaemonError> {
        const ROOT_HINT: &str = " (warpline up needs root or CAP_NET_ADMIN)";
        let tun = Tun::create(name, 1, Offloads::ALL).map_err(|e| DaemonError::Interface {
            name: name.to_owned(),
            what: "creating the TUN device",
            source: std::io::Error::other(e.to_string()),
            hint: ROOT_HINT,
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
        let queue = tun
            .into_queues()
            .into_iter()
            .next()
            .expect("one queue was asked for");
        Ok(Self { queue })
    }
}
