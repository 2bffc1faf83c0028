//! `warpline syncconf <name> <file>`: makes a running interface's peers match a config file
//! without a restart, as `wg syncconf` does, and what `systemctl reload warpline@NAME` runs.
//!
//! The file is parsed and checked whole, and every endpoint resolved, before anything is sent:
//! an invalid file, an unresolvable endpoint or a file for another interface changes nothing.
//! Peers the file lacks are removed first, then every peer of the file is set (allowed IPs
//! replaced, preshared key and keepalive as the file says; the endpoint only where the file
//! names one, so a roaming client's current address is kept otherwise). Sessions of kept peers
//! survive, so traffic does not stop; a changed preshared key applies from the next handshake,
//! as in WireGuard. A peer whose cipher changed is removed and added again: its handshakes run
//! under another protocol name, so its sessions restart. `[Interface]` settings cannot change at run time;
//! a changed `ListenPort` is reported as needing a restart.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::{Config, PeerConfig};
use crate::ctl::Request;
use crate::ctl::model::InterfaceSnapshot;
use crate::keys::PresharedKey;

/// What syncing a file to a running interface takes.
#[derive(Debug, PartialEq, Eq)]
pub struct SyncPlan {
    /// Control requests, in order: removals, then one `SetPeer` per peer of the file.
    pub requests: Vec<Request>,
    /// Peers of the file that the interface does not have yet.
    pub added: usize,
    /// Peers set that the interface already had.
    pub kept: usize,
    /// Peers removed because the file no longer lists them.
    pub removed: usize,
    /// Peers removed and added again because their cipher changed (sessions restart).
    pub recreated: usize,
    /// Differences only a restart can apply, one sentence each.
    pub restart_needed: Vec<String>,
}

/// Plans the requests that bring `running` to `config`. `resolve` turns a config endpoint
/// (`host:port`) into an address; it is only called before anything is sent.
pub fn plan(
    config: &Config,
    running: &InterfaceSnapshot,
    resolve: impl Fn(&str) -> Result<SocketAddr, String>,
) -> Result<SyncPlan, String> {
    let file_key = config.interface.private_key.public_key().to_base64();
    if file_key != running.public_key {
        return Err(format!(
            "the file's PrivateKey belongs to public key {file_key}, but {} runs with {}: \
             refusing to sync another interface's config (a new key needs `warpline down` \
             and `warpline up`)",
            running.name, running.public_key
        ));
    }
    let mut restart_needed = Vec::new();
    if let (Some(wanted), Some(now)) = (config.interface.listen_port, running.listen_port)
        && wanted != now
    {
        restart_needed.push(format!(
            "ListenPort {wanted} differs from the running port {now}"
        ));
    }
    // The file's peers by key, each with the cipher it wants.
    let wanted: HashMap<String, &str> = config
        .peers
        .iter()
        .map(|peer| (peer.public_key.to_base64(), peer.cipher.config_name()))
        .collect();
    let mut requests = Vec::new();
    let mut present: HashSet<&str> = HashSet::new();
    let (mut removed, mut recreated) = (0, 0);
    for peer in &running.peers {
        match wanted.get(&peer.public_key).copied() {
            None => removed += 1,
            Some(cipher) if cipher != peer.cipher => recreated += 1,
            Some(_) => {
                present.insert(&peer.public_key);
                continue;
            }
        }
        requests.push(Request::RemovePeer {
            public_key: peer.public_key.clone(),
        });
    }
    let mut added = 0;
    for peer in &config.peers {
        let public_key = peer.public_key.to_base64();
        if !present.contains(public_key.as_str()) {
            added += 1;
        }
        requests.push(set_peer(peer, public_key, &resolve)?);
    }
    Ok(SyncPlan {
        requests,
        added: added - recreated,
        kept: config.peers.len() - added,
        removed,
        recreated,
        restart_needed,
    })
}

fn set_peer(
    peer: &PeerConfig,
    public_key: String,
    resolve: &impl Fn(&str) -> Result<SocketAddr, String>,
) -> Result<Request, String> {
    let endpoint = match &peer.endpoint {
        Some(endpoint) => Some(
            resolve(&endpoint.to_string())
                .map_err(|e| format!("peer {public_key}: {e}"))?
                .to_string(),
        ),
        None => None,
    };
    let preshared_key = peer
        .preshared_key
        .as_ref()
        .unwrap_or(&PresharedKey::none())
        .to_base64();
    Ok(Request::SetPeer {
        public_key,
        preshared_key: Some(preshared_key),
        allowed_ips: peer.allowed_ips.iter().map(ToString::to_string).collect(),
        endpoint,
        persistent_keepalive: Some(peer.persistent_keepalive.map_or(0, |k| k.get())),
        cipher: Some(peer.cipher.config_name().to_owned()),
    })
}

/// Resolves `host:port` with the system resolver: the first address.
pub fn resolve_system(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("endpoint {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("endpoint {text:?} has no addresses"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::model::PeerSnapshot;
    use crate::keys::PrivateKey;

    const PEER_A: &str = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=";
    const PEER_B: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const PEER_C: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    fn running(private_key: &PrivateKey, peers: &[&str]) -> InterfaceSnapshot {
        InterfaceSnapshot {
            name: "wl0".into(),
            public_key: private_key.public_key().to_base64(),
            listen_port: Some(51820),
            peers: peers
                .iter()
                .map(|key| PeerSnapshot {
                    public_key: (*key).into(),
                    endpoint: Some("198.51.100.9:40000".into()),
                    allowed_ips: vec!["10.0.0.9/32".into()],
                    latest_handshake_unix_secs: None,
                    handshakes: 0,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    persistent_keepalive_secs: None,
                    cipher: "chacha20poly1305".into(),
                    preshared_key: false,
                    failover: None,
                })
                .collect(),
            workers: Vec::new(),
        }
    }

    fn config(private_key: &PrivateKey, port: u16, peers: &str) -> Config {
        let text = format!(
            "[Interface]\nPrivateKey = {}\nListenPort = {port}\n{peers}",
            private_key.to_base64()
        );
        Config::parse(&text, "wl0.conf").unwrap()
    }

    fn no_dns(text: &str) -> Result<SocketAddr, String> {
        text.parse()
            .map_err(|_| format!("endpoint {text:?}: no resolver in tests"))
    }

    #[test]
    fn removes_missing_peers_first_then_sets_every_peer_of_the_file() {
        let key = PrivateKey::generate();
        let file = config(
            &key,
            51820,
            &format!(
                "[Peer]\nPublicKey = {PEER_A}\nAllowedIPs = 10.0.0.2/32, fd00::2/128\n\
                 PersistentKeepalive = 25\n\
                 [Peer]\nPublicKey = {PEER_C}\nAllowedIPs = 10.0.0.3/32\n\
                 Endpoint = 192.0.2.7:51820\nCipher = aes256gcm\n"
            ),
        );
        let plan = plan(&file, &running(&key, &[PEER_A, PEER_B]), no_dns).unwrap();
        assert_eq!((plan.added, plan.kept, plan.removed), (1, 1, 1));
        assert!(plan.restart_needed.is_empty());
        assert_eq!(
            plan.requests[0],
            Request::RemovePeer {
                public_key: PEER_B.into()
            }
        );
        assert_eq!(
            plan.requests[1],
            Request::SetPeer {
                public_key: PEER_A.into(),
                preshared_key: Some(PresharedKey::none().to_base64()),
                allowed_ips: vec!["10.0.0.2/32".into(), "fd00::2/128".into()],
                endpoint: None,
                persistent_keepalive: Some(25),
                cipher: Some("chacha20poly1305".into()),
            }
        );
        assert_eq!(
            plan.requests[2],
            Request::SetPeer {
                public_key: PEER_C.into(),
                preshared_key: Some(PresharedKey::none().to_base64()),
                allowed_ips: vec!["10.0.0.3/32".into()],
                endpoint: Some("192.0.2.7:51820".into()),
                persistent_keepalive: Some(0),
                cipher: Some("aes256gcm".into()),
            }
        );
    }

    #[test]
    fn another_interfaces_file_is_refused() {
        let (running_key, other_key) = (PrivateKey::generate(), PrivateKey::generate());
        let file = config(&other_key, 51820, "");
        let error = plan(&file, &running(&running_key, &[PEER_A]), no_dns).unwrap_err();
        assert!(error.contains("refusing"), "{error}");
    }

    #[test]
    fn an_unresolvable_endpoint_fails_the_whole_plan() {
        let key = PrivateKey::generate();
        let file = config(
            &key,
            51820,
            &format!(
                "[Peer]\nPublicKey = {PEER_A}\nAllowedIPs = 10.0.0.2/32\n\
                 [Peer]\nPublicKey = {PEER_C}\nEndpoint = vpn.invalid:51820\n"
            ),
        );
        let error = plan(&file, &running(&key, &[]), no_dns).unwrap_err();
        assert!(
            error.contains(PEER_C) && error.contains("vpn.invalid"),
            "{error}"
        );
    }

    #[test]
    fn a_changed_cipher_recreates_the_peer() {
        let key = PrivateKey::generate();
        let file = config(
            &key,
            51820,
            &format!("[Peer]\nPublicKey = {PEER_A}\nCipher = aes256gcm\n"),
        );
        let plan = plan(&file, &running(&key, &[PEER_A]), no_dns).unwrap();
        assert_eq!(
            (plan.added, plan.kept, plan.removed, plan.recreated),
            (0, 0, 0, 1)
        );
        assert_eq!(
            plan.requests[0],
            Request::RemovePeer {
                public_key: PEER_A.into()
            }
        );
        assert!(
            matches!(&plan.requests[1], Request::SetPeer { cipher: Some(c), .. } if c == "aes256gcm")
        );
    }

    #[test]
    fn a_changed_listen_port_needs_a_restart() {
        let key = PrivateKey::generate();
        let plan = plan(&config(&key, 51999, ""), &running(&key, &[]), no_dns).unwrap();
        assert_eq!(plan.restart_needed.len(), 1);
        assert!(plan.restart_needed[0].contains("51999"));
        assert_eq!(plan.removed, 0);
    }
}
