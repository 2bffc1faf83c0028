//! The LAN side's next hops (full bypass, `Inner = <nic>`): which Ethernet address a
//! decapsulated packet is sent to, by its destination.
//!
//! The control plane resolves destinations through the kernel's route and neighbour tables
//! (netlink) and publishes the answers as an immutable [`NextHops`] map; workers read it
//! without locks, like the session table ([`crate::sessions`]): one atomic load per batch.
//! A destination missing from the map is not dropped and does not stall the worker: the
//! packet goes to the kernel (the TUN queue), which forwards it and resolves the neighbour
//! on the way, and the worker asks the control plane to look the destination up. Later
//! packets then leave on the LAN socket.
//!
//! Entries are per destination host rather than per route, so a lookup is one hash probe;
//! [`MAX_DESTINATIONS`] bounds the map, beyond which packets keep taking the kernel's path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use arc_swap::cache::Cache;

use crate::wire::ethernet::MacAddr;

/// Destinations the control plane resolves at most; further ones stay on the kernel path.
pub const MAX_DESTINATIONS: usize = 16_384;

/// Destination → Ethernet address of the next hop on the LAN NIC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NextHops {
    by_destination: HashMap<IpAddr, MacAddr>,
}

impl NextHops {
    /// An empty map: every destination takes the kernel's path.
    pub fn new() -> Self {
        Self::default()
    }

    /// The MAC to send a packet for `destination` to, if resolved.
    #[inline]
    pub fn get(&self, destination: IpAddr) -> Option<MacAddr> {
        self.by_destination.get(&destination).copied()
    }

    /// Sets (or replaces) a destination's next hop; refused (false) once the map holds
    /// [`MAX_DESTINATIONS`] other destinations.
    pub fn insert(&mut self, destination: IpAddr, mac: MacAddr) -> bool {
        if self.by_destination.len() >= MAX_DESTINATIONS
            && !self.by_destination.contains_key(&destination)
        {
            return false;
        }
        self.by_destination.insert(destination, mac);
        true
    }

    /// Forgets a destination (its next hop went away or left the LAN NIC).
    pub fn remove(&mut self, destination: IpAddr) {
        self.by_destination.remove(&destination);
    }

    /// How many destinations are resolved.
    pub fn len(&self) -> usize {
        self.by_destination.len()
    }

    /// Whether no destination is resolved.
    pub fn is_empty(&self) -> bool {
        self.by_destination.is_empty()
    }
}

/// The published map, written by the control plane.
#[derive(Debug, Clone)]
pub struct NextHopTable {
    current: Arc<ArcSwap<NextHops>>,
}

impl Default for NextHopTable {
    fn default() -> Self {
        Self::new()
    }
}

impl NextHopTable {
    /// A table with no destinations.
    pub fn new() -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(NextHops::new())),
        }
    }

    /// Replaces the map for every reader's next [`load`](NextHopReader::load).
    pub fn publish(&self, next_hops: NextHops) {
        self.current.store(Arc::new(next_hops));
    }

    /// The current map (for the control plane, to compare against).
    pub fn current(&self) -> Arc<NextHops> {
        self.current.load_full()
    }

    /// A per-worker reader.
    pub fn reader(&self) -> NextHopReader {
        NextHopReader {
            cache: Cache::new(Arc::clone(&self.current)),
        }
    }
}

/// One worker's view of a [`NextHopTable`]: call [`load`](Self::load) once per batch.
pub struct NextHopReader {
    cache: Cache<Arc<ArcSwap<NextHops>>, Arc<NextHops>>,
}

impl std::fmt::Debug for NextHopReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NextHopReader").finish_non_exhaustive()
    }
}

impl NextHopReader {
    /// The latest published map; one atomic load and compare when nothing changed.
    #[inline]
    pub fn load(&mut self) -> &NextHops {
        self.cache.load()
    }
}

/// The destination address of an IPv4 or IPv6 packet, if its fixed header is there.
#[inline]
pub fn packet_destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let octets: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(octets))
        }
        6 => {
            let octets: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(octets))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = [2, 0, 0, 0, 0, 1];

    #[test]
    fn readers_see_what_was_published_last() {
        let table = NextHopTable::new();
        let mut reader = table.reader();
        let server: IpAddr = "10.77.0.2".parse().unwrap();
        assert_eq!(reader.load().get(server), None);
        let mut next = (*table.current()).clone();
        assert!(next.insert(server, MAC));
        table.publish(next);
        assert_eq!(reader.load().get(server), Some(MAC));
        let mut next = (*table.current()).clone();
        next.remove(server);
        table.publish(next);
        assert_eq!(reader.load().get(server), None);
    }

    #[test]
    fn the_map_is_bounded() {
        let mut hops = NextHops::new();
        for n in 0..MAX_DESTINATIONS as u32 {
            assert!(hops.insert(IpAddr::from(n.to_be_bytes()), MAC));
        }
        let one_more = IpAddr::from((MAX_DESTINATIONS as u32).to_be_bytes());
        assert!(!hops.insert(one_more, MAC));
        assert!(hops.insert(IpAddr::from(7u32.to_be_bytes()), [9; 6]));
        assert_eq!(hops.len(), MAX_DESTINATIONS);
    }

    #[test]
    fn destinations_of_both_families_and_of_garbage() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[10, 77, 0, 2]);
        assert_eq!(packet_destination(&v4), Some("10.77.0.2".parse().unwrap()));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 2;
        assert_eq!(packet_destination(&v6), Some("::2".parse().unwrap()));
        assert_eq!(packet_destination(&v4[..19]), None);
        assert_eq!(packet_destination(&v6[..39]), None);
        assert_eq!(packet_destination(&[0x10; 40]), None);
        assert_eq!(packet_destination(&[]), None);
    }
}
