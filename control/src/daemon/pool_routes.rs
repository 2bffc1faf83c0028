//! `HaPool` in the running gateway: routes the allowed IPs of other nodes' clients into the
//! tunnel device while this node owns their sessions (see [`crate::ha::PoolRoutes`]).

use rand_core::CryptoRngCore;
use warpline_dataplane::allowed_ips::IpPrefix;
use warpline_dataplane::lab::Netlink;

use super::DaemonError;
use super::interface::Interface;
use crate::config::Config;
use crate::ha::PoolRoutes;
use crate::tunnel::Tunnel;

/// The foreign routes of one interface and the netlink socket that sets them.
#[derive(Debug)]
pub struct ForeignClientRoutes {
    routes: PoolRoutes,
    netlink: Netlink,
    if_index: u32,
    table: u32,
    seen_generation: Option<u64>,
}

impl ForeignClientRoutes {
    /// `None` unless the config gives this node pools of its own and routes (`Table`).
    pub fn new(config: &Config, interface: &Interface) -> Result<Option<Self>, DaemonError> {
        let pools = (config.interface.ha.as_ref()).map_or(&[][..], |ha| &ha.pools[..]);
        let Some(table) = interface.table.filter(|_| !pools.is_empty()) else {
            return Ok(None);
        };
        let netlink = Netlink::open().map_err(|e| DaemonError::DataPlane {
            what: "HaPool",
            reason: format!("netlink: {e}"),
        })?;
        Ok(Some(Self {
            routes: PoolRoutes::new(pools.to_vec()),
            netlink,
            if_index: interface.index,
            table,
            seen_generation: None,
        }))
    }

    /// Follows the node's sessions: a route for each owned peer's foreign allowed IPs.
    pub fn tick<R: CryptoRngCore>(&mut self, tunnel: &Tunnel<R>) {
        let generation = tunnel.generation();
        if self.seen_generation == Some(generation) {
            return;
        }
        self.seen_generation = Some(generation);
        let node = tunnel.node();
        let owned: Vec<IpPrefix> = (node.peers())
            .filter(|(_, peer)| peer.has_session())
            .flat_map(|(id, _)| tunnel.allowed_ips_of(id))
            .collect();
        let changes = self.routes.update(owned);
        for prefix in changes.add {
            match self.netlink.add_route_in_table(
                self.if_index,
                prefix.addr(),
                prefix.prefix_len(),
                self.table,
            ) {
                Ok(()) => {
                    tracing::info!(%prefix, "HA: routing a taken-over client of another node's pool")
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => tracing::error!(%prefix, "HA: cannot route a taken-over client: {e}"),
            }
        }
        for prefix in changes.remove {
            match self.netlink.delete_route_in_table(
                self.if_index,
                prefix.addr(),
                prefix.prefix_len(),
                self.table,
            ) {
                Ok(()) => tracing::info!(%prefix, "HA: another node's client left; route removed"),
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => tracing::error!(%prefix, "HA: cannot remove a client's route: {e}"),
            }
        }
    }
}
