//! The event loop's side of endpoint failover: one [`EndpointFailover`] per peer with an
//! endpoint list (or a name with several addresses), its actions carried out on the node,
//! and host names resolved on short-lived threads so the loop never blocks on DNS.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use rand_core::{CryptoRngCore, OsRng};
use warpline_dataplane::time::Time;

use crate::config::{Config, Endpoint};
use crate::ctl::model::EndpointsSnapshot;
use crate::failover::{Action, Candidate, EndpointFailover};
use crate::node::{Node, PeerId};

/// Every address `endpoint` stands for, in the resolver's order.
pub fn resolve_all(endpoint: &Endpoint) -> Vec<SocketAddr> {
    match endpoint {
        Endpoint::Addr(address) => vec![*address],
        Endpoint::Host { host, port } => (host.as_str(), *port)
            .to_socket_addrs()
            .map(|addresses| {
                let mut unique: Vec<SocketAddr> = Vec::new();
                for address in addresses {
                    if !unique.contains(&address) {
                        unique.push(address);
                    }
                }
                unique
            })
            .unwrap_or_default(),
    }
}

type Resolution = (PeerId, usize, Vec<SocketAddr>);

/// The failover state of every peer that has one.
#[derive(Debug)]
pub struct Failovers {
    lists: HashMap<PeerId, EndpointFailover>,
    resolved_tx: Sender<Resolution>,
    resolved: Receiver<Resolution>,
}

impl Failovers {
    /// Lists for the config's peers with several endpoints or a host name, starting on the
    /// address the node already has (start-up resolved the first endpoint).
    pub fn from_config<R: CryptoRngCore>(config: &Config, node: &Node<R>, now: Time) -> Self {
        let (resolved_tx, resolved) = mpsc::channel();
        let mut lists = HashMap::new();
        for peer in &config.peers {
            let Some(first) = &peer.endpoint else {
                continue;
            };
            if peer.more_endpoints.is_empty() && matches!(first, Endpoint::Addr(_)) {
                continue;
            }
            let Some(id) = node.peer_by_key(&peer.public_key) else {
                continue;
            };
            let candidates: Vec<Candidate> = (peer.endpoints().enumerate())
                .map(|(index, endpoint)| Candidate {
                    endpoint: endpoint.clone(),
                    keepalive: peer
                        .keepalive_at(index)
                        .map(|seconds| Duration::from_secs(u64::from(seconds.get()))),
                })
                .collect();
            // Start-up connected to the first candidate that resolved: start the walk there.
            let current = node.peer(id).endpoint();
            let start = candidates
                .iter()
                .enumerate()
                .find_map(|(index, candidate)| {
                    let mut addresses = resolve_all(&candidate.endpoint);
                    let current = current?;
                    let position = addresses.iter().position(|a| *a == current)?;
                    addresses.swap(0, position);
                    Some((index, addresses))
                });
            lists.insert(
                id,
                EndpointFailover::new(candidates, peer.failover, start, now, &mut OsRng),
            );
        }
        Self {
            lists,
            resolved_tx,
            resolved,
        }
    }

    /// Runs every list at `now`.
    pub fn tick<R: CryptoRngCore>(&mut self, now: Time, node: &mut Node<R>) {
        if self.lists.is_empty() {
            return;
        }
        let mut actions = Vec::new();
        while let Ok((id, index, addresses)) = self.resolved.try_recv() {
            if let Some(list) = self.lists.get_mut(&id)
                && let Some(action) = list.resolved(now, index, addresses)
            {
                actions.push((id, action));
            }
        }
        for (id, list) in &mut self.lists {
            if let Some(address) = list.pinned_address(node.peer(*id).endpoint()) {
                tracing::debug!(endpoint = %address, "endpoint list: roamed away; back to the list's endpoint");
                node.set_endpoint(*id, Some(address));
            }
            if let Some(action) = list.poll(now, node.peer(*id).liveness(), &mut OsRng) {
                actions.push((*id, action));
            }
        }
        for (id, action) in actions {
            self.apply(now, id, action, node);
        }
    }

    fn apply<R: CryptoRngCore>(
        &mut self,
        now: Time,
        id: PeerId,
        action: Action,
        node: &mut Node<R>,
    ) {
        let peer = node.peer(id).public_key().to_base64();
        match action {
            Action::UseEndpoint { address, keepalive } => {
                tracing::warn!(%peer, endpoint = %address, "endpoint failover: trying the next endpoint");
                node.set_endpoint(id, Some(address));
                node.set_persistent_keepalive(id, keepalive);
            }
            Action::Handshake => {
                tracing::info!(%peer, "new endpoint silent on the old session: handshaking");
                node.initiate(now, id);
            }
            Action::Resolve { index, endpoint } => {
                let tx = self.resolved_tx.clone();
                let spawned = std::thread::Builder::new()
                    .name("resolve".into())
                    .spawn(move || {
                        let _ = tx.send((id, index, resolve_all(&endpoint)));
                    });
                if spawned.is_err() {
                    let _ = self.resolved_tx.send((id, index, Vec::new()));
                }
            }
        }
    }

    /// What `warpline show` reports of a peer's list.
    pub fn snapshot(&self, id: PeerId) -> Option<EndpointsSnapshot> {
        let list = self.lists.get(&id)?;
        let active = list.active();
        Some(EndpointsSnapshot {
            endpoints: (list.candidates().iter())
                .map(|candidate| candidate.endpoint.to_string())
                .collect(),
            keepalive_secs: (list.candidates().iter())
                .map(|candidate| candidate.keepalive.map(|interval| interval.as_secs()))
                .collect(),
            active: active.map(|(index, _)| index),
            active_address: active.map(|(_, address)| address.to_string()),
            switches: list.switches(),
        })
    }
}
