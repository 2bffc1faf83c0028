//! From a parsed config to a running tunnel's parts: the node, its peers and their routes.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use rand_core::OsRng;

use crate::config::{Config, Endpoint};
use crate::keys::PresharedKey;
use crate::node::{Node, NodeConfig, PeerConfig};
use crate::tunnel::Tunnel;

use super::DaemonError;

/// The inner MTU when the config names none (wg-quick's default for a 1500-byte path).
pub const DEFAULT_MTU: usize = 1420;

/// Resolves an endpoint to one socket address: an IP literal as is, a host name through the
/// system resolver (its first address; the failover issue will try them all).
pub fn resolve(endpoint: &Endpoint) -> Result<SocketAddr, String> {
    match endpoint {
        Endpoint::Addr(addr) => Ok(*addr),
        Endpoint::Host { host, port } => (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no addresses")),
    }
}

/// Builds the tunnel a config describes. `wall_clock_now` is the wall-clock time at the
/// origin of the daemon's monotonic timeline.
pub fn tunnel_from_config(
    config: &Config,
    wall_clock_now: Duration,
    mut resolve: impl FnMut(&Endpoint) -> Result<SocketAddr, String>,
) -> Result<Tunnel<OsRng>, DaemonError> {
    let mut node_config = NodeConfig::new(config.interface.private_key.clone(), wall_clock_now);
    node_config.mtu = config.interface.mtu.map_or(DEFAULT_MTU, usize::from);
    if let Some(scale) = config.interface.test_timer_scale {
        tracing::warn!(
            scale = scale.get(),
            "TestTimerScale is set: protocol timers run {scale}x fast; this is for tests only"
        );
        node_config.timers = node_config.timers.scaled_down(scale.get());
    }
    let mut tunnel = Tunnel::new(Node::new(node_config, OsRng));
    for peer in &config.peers {
        // With an endpoint list, the first that resolves (the failover walks on from it).
        let (endpoint, keepalive) = match &peer.endpoint {
            None => (None, peer.persistent_keepalive),
            Some(_) => {
                let mut failure = None;
                let mut found = None;
                for (index, candidate) in peer.endpoints().enumerate() {
                    match resolve(candidate) {
                        Ok(address) => {
                            found = Some((Some(address), peer.keepalive_at(index)));
                            break;
                        }
                        Err(reason) => {
                            failure.get_or_insert(reason);
                        }
                    }
                }
                match found {
                    Some(found) => found,
                    None => {
                        return Err(DaemonError::Endpoint {
                            peer: peer.public_key.to_base64(),
                            reason: failure.unwrap_or_default(),
                        });
                    }
                }
            }
        };
        let node_peer = PeerConfig {
            public_key: peer.public_key,
            preshared_key: peer
                .preshared_key
                .clone()
                .unwrap_or_else(PresharedKey::none),
            suite: peer.cipher,
            endpoint,
            persistent_keepalive: keepalive.map(|secs| Duration::from_secs(u64::from(secs.get()))),
        };
        tunnel
            .add_peer(node_peer, &peer.allowed_ips)
            .map_err(|e| DaemonError::Peer {
                peer: peer.public_key.to_base64(),
                reason: e.to_string(),
            })?;
    }
    Ok(tunnel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    #[test]
    fn a_config_becomes_a_node_with_routed_peers() {
        let peer = PrivateKey::generate().public_key();
        let text = format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nMTU = 1380\n\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.1.0.0/16, fd01::/64\n\
             Endpoint = 192.0.2.9:51820\nPersistentKeepalive = 25\nCipher = aes256gcm\n",
            PrivateKey::generate().to_base64(),
            peer.to_base64()
        );
        let config = Config::parse(&text, "wl0.conf").unwrap();
        let tunnel = tunnel_from_config(&config, Duration::ZERO, resolve).unwrap();
        let (id, state) = tunnel.node().peers().next().unwrap();
        assert_eq!(state.public_key(), &peer);
        assert_eq!(state.endpoint(), Some("192.0.2.9:51820".parse().unwrap()));
        let routes: Vec<String> = tunnel.allowed_ips_of(id).map(|p| p.to_string()).collect();
        assert_eq!(routes, vec!["10.1.0.0/16", "fd01::/64"]);
    }

    #[test]
    fn unresolvable_endpoints_name_the_peer() {
        let peer = PrivateKey::generate().public_key();
        let text = format!(
            "[Interface]\nPrivateKey = {}\n[Peer]\nPublicKey = {}\nEndpoint = nowhere.invalid:1\n",
            PrivateKey::generate().to_base64(),
            peer.to_base64()
        );
        let config = Config::parse(&text, "wl0.conf").unwrap();
        let error = tunnel_from_config(&config, Duration::ZERO, |_| Err("no such host".into()))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&peer.to_base64()) && error.contains("no such host"),
            "{error}"
        );
    }

    #[test]
    fn the_endpoint_start_up_connects_to_sets_the_keepalive() {
        let text = format!(
            "[Interface]\nPrivateKey = {}\n[Peer]\nPublicKey = {}\nPersistentKeepalive = 25\n\
             Endpoint = down.example:1 keepalive=off, 192.0.2.9:51820 keepalive=7, 192.0.2.10:1\n",
            PrivateKey::generate().to_base64(),
            PrivateKey::generate().public_key().to_base64()
        );
        let config = Config::parse(&text, "wl0.conf").unwrap();
        let keepalive_when = |resolvable: &'static [&'static str]| {
            let tunnel = tunnel_from_config(&config, Duration::ZERO, |endpoint| {
                let endpoint = endpoint.to_string();
                if resolvable.contains(&endpoint.as_str()) {
                    Ok(endpoint
                        .replace("down.example", "192.0.2.8")
                        .parse()
                        .unwrap())
                } else {
                    Err("no such host".into())
                }
            })
            .unwrap();
            let (_, peer) = tunnel.node().peers().next().unwrap();
            (
                peer.endpoint().unwrap().to_string(),
                peer.persistent_keepalive(),
            )
        };
        assert_eq!(
            keepalive_when(&["192.0.2.9:51820", "192.0.2.10:1"]),
            ("192.0.2.9:51820".to_owned(), Some(Duration::from_secs(7)))
        );
        assert_eq!(
            keepalive_when(&["down.example:1", "192.0.2.9:51820"]),
            ("192.0.2.8:1".to_owned(), None)
        );
    }
}
