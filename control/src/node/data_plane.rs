//! The node's side of the data-plane hand-off (ARCHITECTURE principle 4).
//!
//! Once a handshake completes, its session is shared: the node keeps it in its peer's slots
//! and the data-plane workers find the same [`SharedSession`] in their session table, so both
//! take send counters from one atomic and check one replay window — a keepalive the node
//! sends can never reuse a counter a worker used. What the workers move is invisible to the
//! node's per-packet bookkeeping, so the daemon calls [`Node::absorb_data_plane_traffic`]
//! regularly: it reads each session's traffic counters and runs the same timer and rotation
//! rules [`Node::handle_datagram`] and [`Node::send_packet`] run for packets the node sees
//! itself (confirm a responder's next session, owe a keepalive, rekey after time or silence).

use std::net::SocketAddr;
use std::sync::Arc;

use rand_core::CryptoRngCore;
use warpline_dataplane::sessions::{SharedSession, TrafficTotals};
use warpline_dataplane::time::Time;

use super::{Event, Node, PeerId};
use crate::peer::Slot;

/// One peer's sessions as the data plane needs them.
#[derive(Debug, Clone)]
pub struct DataPlanePeer {
    /// The peer.
    pub id: PeerId,
    /// Sessions to receive on (previous, current, next).
    pub receiving: Vec<Arc<SharedSession>>,
    /// The session to send with: the current one, never an unconfirmed next one.
    pub sending: Option<Arc<SharedSession>>,
    /// Where its packets go.
    pub endpoint: Option<SocketAddr>,
}

impl<R: CryptoRngCore> Node<R> {
    /// Changes whenever sessions, endpoints or peers changed: the daemon republishes its
    /// session table when this differs from what it last published.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every live peer with its sessions, for building the data plane's table.
    pub fn data_plane_peers(&self) -> impl Iterator<Item = DataPlanePeer> + '_ {
        self.peers().map(|(id, peer)| {
            let receiving = [&peer.previous, &peer.current, &peer.next]
                .into_iter()
                .flatten()
                .map(|s| Arc::clone(s.shared()))
                .collect();
            DataPlanePeer {
                id,
                receiving,
                sending: peer.current.as_ref().map(|s| Arc::clone(s.shared())),
                endpoint: peer.endpoint,
            }
        })
    }

    /// The node's id for a peer the data plane names, if it is a live peer.
    pub fn peer_from_data_plane(&self, id: warpline_dataplane::sessions::PeerId) -> Option<PeerId> {
        let index = id.0 as usize;
        self.peers
            .get(index)
            .filter(|peer| !peer.removed)
            .map(|_| PeerId(index))
    }

    /// A worker saw an authenticated packet of `id` come from `from` (roaming).
    pub fn data_plane_endpoint_seen(&mut self, id: PeerId, from: SocketAddr) {
        let peer = &mut self.peers[id.0];
        if !peer.removed && peer.endpoint != Some(from) {
            peer.endpoint = Some(from);
            self.events.push_back(Event::EndpointChanged(id, from));
            self.generation += 1;
        }
    }

    /// Takes in what the data plane moved on every session since the previous call and
    /// applies the protocol's traffic-driven rules at `now`.
    pub fn absorb_data_plane_traffic(&mut self, now: Time) {
        for index in 0..self.peers.len() {
            self.absorb_peer_traffic(now, PeerId(index));
        }
    }

    fn absorb_peer_traffic(&mut self, now: Time, id: PeerId) {
        let timers = self.config.timers;
        let peer = &mut self.peers[id.0];
        if peer.removed {
            return;
        }
        let mut total = TrafficTotals::default();
        let mut next_confirmed = false;
        for slot in [Slot::Previous, Slot::Current, Slot::Next] {
            if let Some(session) = peer.session_mut(slot) {
                let delta = session.take_data_plane_traffic();
                next_confirmed |= slot == Slot::Next && delta.rx_packets > 0;
                total = add(total, delta);
            }
        }
        peer.stats.rx_bytes += total.rx_bytes;
        peer.stats.tx_bytes += total.tx_bytes;
        if next_confirmed {
            peer.confirm_next();
            self.events.push_back(Event::HandshakeCompleted(id));
            self.generation += 1;
        }
        let peer = &mut self.peers[id.0];
        if total.rx_packets > 0 {
            peer.last_received = Some(now);
            peer.unanswered_data_since = None;
        }
        if total.received_data() {
            peer.keepalive_owed_since.get_or_insert(now);
        }
        if total.tx_packets > 0 {
            peer.note_sent(now);
            if total.rx_packets == 0 {
                peer.unanswered_data_since.get_or_insert(now);
            }
        }
        let rekey = (total.received_data() && peer.wants_rekey_on_receive(now, &timers))
            || (total.tx_packets > 0 && peer.wants_rekey_on_send(now, &timers));
        if rekey && peer.pending.is_none() {
            self.start_handshake(now, id);
        }
    }
}

fn add(a: TrafficTotals, b: TrafficTotals) -> TrafficTotals {
    TrafficTotals {
        rx_packets: a.rx_packets + b.rx_packets,
        rx_keepalives: a.rx_keepalives + b.rx_keepalives,
        rx_bytes: a.rx_bytes + b.rx_bytes,
        tx_packets: a.tx_packets + b.tx_packets,
        tx_bytes: a.tx_bytes + b.tx_bytes,
    }
}
