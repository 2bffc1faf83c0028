//! Client address pools in active-active (`HaPool`), sans-IO: which allowed IPs this node
//! routes into its tunnel device.
//!
//! WireGuard has no address assignment: a client's tunnel address is fixed in its own
//! config, so a client homed on node A keeps its address from A's pool when it moves to B.
//! With one pool shared by all nodes (no `HaPool`) every node routes every peer's allowed
//! IPs all the time and the inside network picks any node. With a pool per node, a node
//! routes its own pool always and another node's client only while it owns that client's
//! session (it took the peer over); when the peer goes back (it yields the session, or the
//! session ends) the route goes. A host route is more specific than the partner's pool, so
//! a routing daemon redistributing the device's routes (FRR, BIRD) moves exactly the
//! taken-over clients.

use std::collections::BTreeSet;

use warpline_dataplane::allowed_ips::IpPrefix;

/// The routes to add and remove to reach the wanted set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// Prefixes to route into the device now.
    pub add: Vec<IpPrefix>,
    /// Prefixes to stop routing.
    pub remove: Vec<IpPrefix>,
}

/// This node's pools and the foreign routes it has installed.
#[derive(Debug, Clone, Default)]
pub struct PoolRoutes {
    pools: Vec<IpPrefix>,
    installed: BTreeSet<IpPrefix>,
}

impl PoolRoutes {
    /// A node whose own clients are in `pools` (empty: one shared pool).
    pub fn new(pools: Vec<IpPrefix>) -> Self {
        Self {
            pools,
            installed: BTreeSet::new(),
        }
    }

    /// Whether `prefix` is routed here from the start, whoever owns its peer: inside one of
    /// this node's pools, or every prefix when the pool is shared. A default route is always
    /// static (it is the tunnel's, not a client's).
    pub fn is_home(&self, prefix: IpPrefix) -> bool {
        self.pools.is_empty()
            || prefix.prefix_len() == 0
            || self.pools.iter().any(|pool| {
                pool.prefix_len() <= prefix.prefix_len() && pool.contains(prefix.addr())
            })
    }

    /// Given the allowed IPs of every peer this node owns now, the foreign routes to add
    /// and to remove; they count as installed from here on.
    pub fn update(&mut self, owned: impl IntoIterator<Item = IpPrefix>) -> RouteChanges {
        let wanted: BTreeSet<IpPrefix> = owned
            .into_iter()
            .filter(|prefix| !self.is_home(*prefix))
            .collect();
        let changes = RouteChanges {
            add: wanted.difference(&self.installed).copied().collect(),
            remove: self.installed.difference(&wanted).copied().collect(),
        };
        self.installed = wanted;
        changes
    }

    /// The foreign routes installed now.
    pub fn installed(&self) -> impl Iterator<Item = IpPrefix> + '_ {
        self.installed.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> IpPrefix {
        let (addr, len) = text.split_once('/').unwrap();
        IpPrefix::new(addr.parse().unwrap(), len.parse().unwrap()).unwrap()
    }

    fn prefixes(texts: &[&str]) -> Vec<IpPrefix> {
        texts.iter().map(|text| prefix(text)).collect()
    }

    #[test]
    fn a_shared_pool_routes_everything_statically() {
        let mut shared = PoolRoutes::new(Vec::new());
        assert!(shared.is_home(prefix("10.99.2.5/32")));
        assert_eq!(
            shared.update(prefixes(&["10.99.1.2/32", "10.99.2.5/32"])),
            RouteChanges::default()
        );
    }

    #[test]
    fn a_foreign_client_is_routed_while_owned_and_only_then() {
        let mut node_b = PoolRoutes::new(prefixes(&["10.99.2.0/24", "fd99:2::/64"]));
        // Home: inside a pool (same family, at least as long). Foreign: anything else.
        for (text, home) in [
            ("10.99.2.7/32", true),
            ("10.99.2.0/24", true),
            ("10.99.0.0/16", false),
            ("10.99.1.2/32", false),
            ("fd99:2::9/128", true),
            ("fd99:1::9/128", false),
            ("0.0.0.0/0", true),
        ] {
            assert_eq!(node_b.is_home(prefix(text)), home, "{text}");
        }
        // B owns only its own client: nothing to do.
        let own = prefixes(&["10.99.2.7/32"]);
        assert_eq!(node_b.update(own.clone()), RouteChanges::default());
        // A died: B took A's client over (10.99.1.2 and its IPv6 address).
        let taken = prefixes(&["10.99.1.2/32", "fd99:1::2/128"]);
        let changes = node_b.update(own.iter().chain(&taken).copied());
        assert_eq!(changes.add, prefixes(&["10.99.1.2/32", "fd99:1::2/128"]));
        assert!(changes.remove.is_empty());
        // Nothing changes while it keeps owning it.
        assert_eq!(
            node_b.update(own.iter().chain(&taken).copied()),
            RouteChanges::default()
        );
        // The client went back to A (B yielded the session): the routes go.
        let changes = node_b.update(own.clone());
        assert!(changes.add.is_empty());
        assert_eq!(changes.remove, taken);
        assert_eq!(node_b.installed().count(), 0);
    }
}
