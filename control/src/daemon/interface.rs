//! The inner interface: a TUN device named after the config, with its addresses, MTU and
//! routes to the peers' allowed IPs, as wg-quick sets them up.

use warpline_dataplane::lab::{Netlink, RoutingRule};
use warpline_dataplane::tun::{Offloads, Tun, TunQueue};

use super::DaemonError;
use super::setup::DEFAULT_MTU;
use crate::config::{Config, RoutingTable};
use crate::ha::PoolRoutes;

/// The TUN device: the event loop's queue, plus one queue per data-plane worker in XDP mode.
#[derive(Debug)]
pub struct Interface {
    /// The queue the event loop writes (and, in portable mode, reads). In XDP mode it is a
    /// second handle on the first worker's queue, used only for the few packets that reach
    /// the kernel socket.
    pub queue: TunQueue,
    /// One queue per data-plane worker (empty in portable mode).
    pub worker_queues: Vec<TunQueue>,
    /// The mark the tunnel's own UDP packets must carry (`FwMark`, or the table of a default
    /// route through the tunnel), so they bypass it.
    pub fwmark: Option<u32>,
    /// Policy rules installed for a default route, removed on drop.
    rules: Vec<RoutingRule>,
    /// The device's index.
    pub index: u32,
    /// The table its routes go to (`None` with `Table = off`).
    pub table: Option<u32>,
}

/// The table (and mark) of default routes through the tunnel, as wg-quick's default.
const DEFAULT_ROUTE_TABLE: u32 = 51820;

impl Drop for Interface {
    fn drop(&mut self) {
        // Routes go with the device; rules do not, so they are removed here.
        if self.rules.is_empty() {
            return;
        }
        match Netlink::open() {
            Ok(mut netlink) => {
                for rule in &self.rules {
                    if let Err(e) = netlink.delete_rule(rule) {
                        tracing::warn!("could not remove routing rule {rule:?}: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("could not remove routing rules: {e}"),
        }
    }
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
        let mut fwmark = config.interface.fwmark.map(|m| m.get());
        let mut rules = Vec::new();
        let table = match &config.interface.table {
            RoutingTable::Off => None,
            RoutingTable::Auto => Some(MAIN_TABLE),
            RoutingTable::Id(id) => Some(*id),
            RoutingTable::Name(table) => Some(table_id(table).map_err(step(
                name,
                "resolving Table",
                " (name it in /etc/iproute2/rt_tables or use a number)",
            ))?),
        };
        // Other nodes' clients (outside this node's HaPool) are routed only once taken over.
        let pools = PoolRoutes::new(
            (config.interface.ha.as_ref())
                .map(|ha| ha.pools.clone())
                .unwrap_or_default(),
        );
        if let Some(table) = table {
            for prefix in (config.peers.iter().flat_map(|p| &p.allowed_ips))
                .filter(|prefix| pools.is_home(**prefix))
            {
                let default_route = prefix.prefix_len() == 0;
                if default_route && config.interface.table == RoutingTable::Auto {
                    // wg-quick's way: the default route goes to a table of its own, consulted
                    // for every packet that lacks the tunnel's mark; the tunnel's own packets
                    // carry the mark and keep using the main table. Main-table routes more
                    // specific than a default still win (suppress_prefixlength 0).
                    let mark = *fwmark.get_or_insert(DEFAULT_ROUTE_TABLE);
                    netlink
                        .add_route_in_table(index, prefix.addr(), 0, mark)
                        .map_err(step(name, "adding the default route", ""))?;
                    let ipv6 = prefix.addr().is_ipv6();
                    for rule in [
                        RoutingRule {
                            ipv6,
                            table: mark,
                            not_fwmark: Some(mark),
                            suppress_prefixlen: None,
                        },
                        RoutingRule {
                            ipv6,
                            table: MAIN_TABLE,
                            not_fwmark: None,
                            suppress_prefixlen: Some(0),
                        },
                    ] {
                        netlink
                            .add_rule(&rule)
                            .map_err(step(name, "adding a routing rule", ""))?;
                        rules.push(rule);
                    }
                    if !ipv6 {
                        // Reverse-path filtering must see the mark, as wg-quick sets it.
                        let _ = std::fs::write("/proc/sys/net/ipv4/conf/all/src_valid_mark", "1");
                    }
                    tracing::info!(%prefix, table = mark, "default route through {name} (policy routing, fwmark {mark})");
                    continue;
                }
                netlink
                    .add_route_in_table(index, prefix.addr(), prefix.prefix_len(), table)
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
                fwmark,
                rules,
                index,
                table,
            });
        }
        let queue = queues[0]
            .try_clone()
            .map_err(step(name, "sharing a TUN queue", ""))?;
        Ok(Self {
            queue,
            worker_queues: queues,
            fwmark,
            rules,
            index,
            table,
        })
    }
}

const MAIN_TABLE: u32 = 254;

/// The number of a routing table named in iproute2's `rt_tables` files.
fn table_id(name: &str) -> std::io::Result<u32> {
    for file in ["/etc/iproute2/rt_tables", "/usr/share/iproute2/rt_tables"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            if let (Some(id), Some(table)) = (fields.next(), fields.next())
                && table == name
                && let Ok(id) = id.parse()
            {
                return Ok(id);
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no routing table named {name:?}"),
    ))
}
