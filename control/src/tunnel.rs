//! Cryptokey routing around the protocol node: what turns a WireGuard `Node` into a tunnel.
//!
//! Outbound, an inner packet's destination picks the peer by longest-prefix match over all
//! peers' allowed IPs. Inbound, a decrypted packet is delivered only if its source address
//! falls in the allowed IPs of the peer that sent it (WireGuard's rule: a peer may only speak
//! for the addresses it is configured for). Every refusal is a named, counted drop.
//!
//! Sans-IO like the node: the caller passes time, datagrams and buffers in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rand_core::CryptoRngCore;
use warpline_dataplane::allowed_ips::{AllowedIps, IpPrefix};
use warpline_dataplane::time::Time;

use crate::node::{AddPeerError, DropReason, Node, PeerConfig, PeerId, Received, SendError};

/// Why an inner or outer packet went no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TunnelDrop {
    /// The protocol refused the datagram.
    #[error("{0}")]
    Protocol(#[from] DropReason),
    /// A decrypted packet's source is outside the sending peer's allowed IPs.
    #[error("inner source address not allowed for this peer")]
    SourceNotAllowed,
    /// No peer's allowed IPs contain the inner destination.
    #[error("no peer for the destination address")]
    NoRoute,
    /// The inner packet is not IPv4 or IPv6.
    #[error("not an IP packet")]
    NotIp,
    /// The peer has no endpoint to send to.
    #[error("peer has no endpoint")]
    NoEndpoint,
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
}

impl From<SendError> for TunnelDrop {
    fn from(error: SendError) -> Self {
        match error {
            SendError::NoEndpoint => TunnelDrop::NoEndpoint,
            SendError::BufferTooSmall => TunnelDrop::BufferTooSmall,
        }
    }
}

/// The source and destination of an inner IP packet, if it is one.
fn inner_addresses(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let src: [u8; 4] = packet[12..16].try_into().ok()?;
            let dst: [u8; 4] = packet[16..20].try_into().ok()?;
            Some((Ipv4Addr::from(src).into(), Ipv4Addr::from(dst).into()))
        }
        6 if packet.len() >= 40 => {
            let src: [u8; 16] = packet[8..24].try_into().ok()?;
            let dst: [u8; 16] = packet[24..40].try_into().ok()?;
            Some((Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into()))
        }
        _ => None,
    }
}

/// A node plus the allowed-IPs table that routes through it.
#[derive(Debug)]
pub struct Tunnel<R> {
    node: Node<R>,
    routes: AllowedIps<PeerId>,
    route_changes: u64,
}

impl<R: CryptoRngCore> Tunnel<R> {
    /// A tunnel over `node` with no routes yet.
    pub fn new(node: Node<R>) -> Self {
        Self {
            node,
            routes: AllowedIps::new(),
            route_changes: 0,
        }
    }

    /// Adds a peer and routes `allowed_ips` to it. A prefix already routed to another peer
    /// moves to this one, as `wg set` does.
    pub fn add_peer(
        &mut self,
        peer: PeerConfig,
        allowed_ips: &[IpPrefix],
    ) -> Result<PeerId, AddPeerError> {
        let id = self.node.add_peer(peer)?;
        for prefix in allowed_ips {
            self.routes.insert(*prefix, id);
        }
        self.route_changes += 1;
        Ok(id)
    }

    /// Removes a peer and every route to it.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.routes.remove_value(peer);
        self.route_changes += 1;
        self.node.remove_peer(peer);
    }

    /// Replaces the prefixes routed to `peer`.
    pub fn set_allowed_ips(&mut self, peer: PeerId, allowed_ips: &[IpPrefix]) {
        self.routes.remove_value(peer);
        for prefix in allowed_ips {
            self.routes.insert(*prefix, peer);
        }
        self.route_changes += 1;
    }

    /// Changes whenever routes, peers, sessions or endpoints changed (what the data plane's
    /// table is built from).
    pub fn generation(&self) -> u64 {
        self.node.generation() + self.route_changes
    }

    /// Every routed prefix and its peer.
    pub fn routes(&self) -> impl Iterator<Item = (IpPrefix, PeerId)> + '_ {
        self.routes.iter()
    }

    /// The protocol node.
    pub fn node(&self) -> &Node<R> {
        &self.node
    }

    /// The protocol node, for timers and transmits.
    pub fn node_mut(&mut self) -> &mut Node<R> {
        &mut self.node
    }

    /// The prefixes routed to `peer`.
    pub fn allowed_ips_of(&self, peer: PeerId) -> impl Iterator<Item = IpPrefix> + '_ {
        self.routes
            .iter()
            .filter(move |(_, id)| *id == peer)
            .map(|(prefix, _)| prefix)
    }

    /// Processes a datagram from the network. Returns the inner packet to hand to the
    /// inner interface, `None` for handshakes and keepalives.
    pub fn inbound<'a>(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Result<Option<&'a mut [u8]>, TunnelDrop> {
        match self.node.handle_datagram(now, from, datagram)? {
            Received::Packet { peer, packet } => {
                let (source, _) = inner_addresses(packet).ok_or(TunnelDrop::NotIp)?;
                if self.routes.lookup(source) != Some(peer) {
                    return Err(TunnelDrop::SourceNotAllowed);
                }
                Ok(Some(packet))
            }
            _ => Ok(None),
        }
    }

    /// Encrypts an inner packet for the peer its destination routes to. Returns where to
    /// send `out[..len]`, or `None` when the packet waits for a handshake.
    pub fn outbound(
        &mut self,
        now: Time,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<Option<(SocketAddr, usize)>, TunnelDrop> {
        let (_, destination) = inner_addresses(packet).ok_or(TunnelDrop::NotIp)?;
        let peer = self.routes.lookup(destination).ok_or(TunnelDrop::NoRoute)?;
        Ok(self.node.send_packet(now, peer, packet, out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::node::NodeConfig;
    use rand_core::OsRng;
    use std::time::Duration;

    fn packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[3] = 28;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    /// A gateway with two peers, and a client tunnel for the first of them.
    struct Pair {
        gateway: Tunnel<OsRng>,
        client: Tunnel<OsRng>,
        now: Time,
    }

    fn prefix(text: &str) -> IpPrefix {
        text.parse().unwrap()
    }

    fn pair() -> Pair {
        let gateway_key = PrivateKey::generate();
        let client_key = PrivateKey::generate();
        let mut gateway = Tunnel::new(Node::new(
            NodeConfig::new(gateway_key.clone(), Duration::from_secs(1_700_000_000)),
            OsRng,
        ));
        gateway
            .add_peer(
                PeerConfig::new(client_key.public_key()),
                &[prefix("10.0.0.2/32")],
            )
            .unwrap();
        gateway
            .add_peer(
                PeerConfig::new(PrivateKey::generate().public_key()),
                &[prefix("10.0.0.3/32")],
            )
            .unwrap();
        let mut client = Tunnel::new(Node::new(
            NodeConfig::new(client_key, Duration::from_secs(1_700_000_000)),
            OsRng,
        ));
        let mut to_gateway = PeerConfig::new(gateway_key.public_key());
        to_gateway.endpoint = Some("192.0.2.1:51820".parse().unwrap());
        client.add_peer(to_gateway, &[prefix("0.0.0.0/0")]).unwrap();
        Pair {
            gateway,
            client,
            now: Time::ZERO,
        }
    }

    impl Pair {
        /// Sends `inner` from the client and returns what the gateway made of it.
        fn client_sends(&mut self, inner: &[u8]) -> Result<Option<Vec<u8>>, TunnelDrop> {
            let mut out = vec![0u8; 256];
            let from: SocketAddr = "198.51.100.7:40000".parse().unwrap();
            let first = self.client.outbound(self.now, inner, &mut out)?;
            assert!(first.is_none(), "first packet waits for the handshake");
            // Handshake: initiation to the gateway, response back, queued packet out.
            let mut delivered = None;
            for _ in 0..4 {
                while let Some(t) = self.client.node_mut().poll_transmit() {
                    let mut datagram = t.payload;
                    if let Some(packet) = self.gateway.inbound(self.now, from, &mut datagram)? {
                        delivered = Some(packet.to_vec());
                    }
                }
                while let Some(t) = self.gateway.node_mut().poll_transmit() {
                    let mut datagram = t.payload;
                    let gw: SocketAddr = "192.0.2.1:51820".parse().unwrap();
                    self.client.inbound(self.now, gw, &mut datagram)?;
                }
            }
            Ok(delivered)
        }
    }

    #[test]
    fn packets_from_allowed_sources_are_delivered() {
        let mut p = pair();
        let inner = packet([10, 0, 0, 2], [10, 9, 9, 9]);
        assert_eq!(p.client_sends(&inner).unwrap(), Some(inner));
    }

    #[test]
    fn a_peer_cannot_speak_for_another_peers_addresses() {
        let mut p = pair();
        let spoofed = packet([10, 0, 0, 3], [10, 9, 9, 9]);
        assert_eq!(p.client_sends(&spoofed), Err(TunnelDrop::SourceNotAllowed));
    }

    #[test]
    fn outbound_routes_by_longest_prefix_and_counts_misses() {
        let mut p = pair();
        let mut out = [0u8; 256];
        let to_nowhere = packet([10, 9, 9, 9], [172, 16, 0, 1]);
        assert_eq!(
            p.gateway.outbound(p.now, &to_nowhere, &mut out),
            Err(TunnelDrop::NoRoute)
        );
        assert_eq!(
            p.gateway.outbound(p.now, &[0x50; 30], &mut out),
            Err(TunnelDrop::NotIp)
        );
        // A routed peer without endpoint or session: queued for a handshake it cannot start.
        let to_second = packet([10, 9, 9, 9], [10, 0, 0, 3]);
        assert_eq!(p.gateway.outbound(p.now, &to_second, &mut out), Ok(None));
        let ips: Vec<String> = p
            .gateway
            .allowed_ips_of(PeerId::for_tests(1))
            .map(|prefix| prefix.to_string())
            .collect();
        assert_eq!(ips, vec!["10.0.0.3/32"]);
    }
}
