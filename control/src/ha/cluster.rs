//! A node's view of its gateway cluster, sans-IO: what it has told its partners about its
//! own sessions, the sessions its partners told it about, and when it takes those over.
//!
//! Every node is symmetric. It streams the sessions it *owns* (holds live) to whoever
//! subscribed — a full snapshot when a partner connects, then creations, retirements and
//! endpoint changes at once and counter checkpoints every `HaCheckpointMs` — and keeps
//! what its partners stream as *records*, ready to install. Ownership moves by takeover:
//!
//! - `promote` (keepalived's notify script): take every record over;
//! - in `active-active` mode, a partner lost (no heartbeat for [`PARTNER_DEAD_AFTER`]): take
//!   its records over; and a packet arriving for a record's session: take that peer over;
//! - a node that sees a partner send for one of *its* live sessions from a higher counter
//!   epoch yields that session (the partner took it over), so ownership ends up single.
//!
//! A takeover installs each session sending from a fresh [`CounterEpoch`] above every epoch
//! this node has seen (see [`crate::ha`] for why no (key, counter) pair repeats, even when
//! two nodes take the same session over at once), and schedules a background rekey of the
//! peer: traffic continues on the resumed session at once and never waits for it.

use std::collections::HashMap;
use std::time::Duration;

use rand_core::CryptoRngCore;
use warpline_dataplane::time::Time;

use super::epoch::CounterEpoch;
use super::record::{SessionRecord, SessionSlot};
use super::sync::SyncMessage;
use crate::config::HaMode;
use crate::node::{Node, PeerId};

/// How long a partner may stay silent on its sync channel before it counts as lost (it
/// sends a heartbeat every [`HEARTBEAT_INTERVAL`]).
pub const PARTNER_DEAD_AFTER: Duration = Duration::from_millis(600);
/// How often an idle sync channel carries a heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// How long after a takeover the new owner starts its background rekey of a peer: long
/// enough that the resumed session carries the traffic first, soon enough that keys which
/// crossed the sync channel are replaced within seconds.
pub const REKEY_AFTER_TAKEOVER: Duration = Duration::from_secs(3);

/// What this node is doing for the cluster's peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Owns sessions and serves traffic.
    Active,
    /// Holds its partners' records; owns nothing and starts nothing.
    Standby,
}

impl Role {
    /// Lower-case name, for `warpline ha status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Standby => "standby",
        }
    }
}

/// How long a held record stays useful: WireGuard's REJECT_AFTER_TIME, after which no
/// session may carry traffic.
const RECORD_LIFETIME: Duration = Duration::from_secs(180);

/// Counters of the cluster side, for `warpline ha status` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Takeovers (of one or more sessions).
    pub takeovers: u64,
    /// Sessions installed by takeovers.
    pub sessions_taken_over: u64,
    /// Records that could not be installed (unknown peer, index clash).
    pub import_failures: u64,
    /// Own sessions given up because a partner took them over.
    pub sessions_yielded: u64,
    /// Session records received from partners.
    pub records_received: u64,
    /// Session records sent to partners.
    pub records_sent: u64,
    /// Sync messages refused (snapshot out of order, bad record): the connection is reset.
    pub protocol_errors: u64,
}

/// A partner's record, and when it arrived (its age grows while it waits here).
#[derive(Debug)]
struct Stored {
    record: SessionRecord,
    received: Time,
}

/// What one partner told us.
#[derive(Debug, Default)]
struct Partner {
    /// Its sessions, by local index.
    records: HashMap<u32, Stored>,
    /// A snapshot being received: it replaces `records` at its end.
    snapshot: Option<(u32, HashMap<u32, Stored>)>,
    /// The last message from it.
    last_heard: Option<Time>,
    /// Its node id, from its hello.
    node_id: Option<u8>,
}

/// What partners were last told about one of our sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Published {
    slot: SessionSlot,
    next_send_counter: u64,
    recv_highest: Option<u64>,
    endpoint: Option<std::net::SocketAddr>,
}

/// A sync protocol violation by a partner: the caller resets that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// A record or snapshot end outside the order the protocol allows.
    #[error("sync protocol violation: {0}")]
    Protocol(&'static str),
    /// A record that does not decode.
    #[error("bad session record: {0}")]
    Record(#[from] super::record::RecordError),
}

/// A partner connection, as the I/O side names it.
pub type PartnerKey = usize;

/// The cluster state of one node.
#[derive(Debug)]
pub struct Cluster {
    node_id: u8,
    mode: HaMode,
    role: Role,
    checkpoint: Duration,
    partners: HashMap<PartnerKey, Partner>,
    published: HashMap<u32, Published>,
    published_generation: Option<u64>,
    next_checkpoint: Time,
    highest_epoch: CounterEpoch,
    rekeys: Vec<(PeerId, Time)>,
    stats: ClusterStats,
}

impl Cluster {
    /// A node starts as standby under keepalived (it waits for `promote`) and active in
    /// `active-active`.
    pub fn new(node_id: u8, mode: HaMode, checkpoint: Duration) -> Self {
        Self {
            node_id,
            mode,
            role: match mode {
                HaMode::Keepalived | HaMode::Builtin => Role::Standby,
                HaMode::ActiveActive => Role::Active,
            },
            checkpoint,
            partners: HashMap::new(),
            published: HashMap::new(),
            published_generation: None,
            next_checkpoint: Time::ZERO,
            highest_epoch: CounterEpoch::INITIAL,
            rekeys: Vec::new(),
            stats: ClusterStats::default(),
        }
    }

    /// Sets the node's passivity to match the starting role.
    pub fn start<R: CryptoRngCore>(&self, node: &mut Node<R>) {
        node.set_passive(self.role == Role::Standby);
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The mode.
    pub fn mode(&self) -> HaMode {
        self.mode
    }

    /// This node's id.
    pub fn node_id(&self) -> u8 {
        self.node_id
    }

    /// The counters.
    pub fn stats(&self) -> ClusterStats {
        self.stats
    }

    /// The highest counter epoch seen or used here.
    pub fn highest_epoch(&self) -> CounterEpoch {
        self.highest_epoch
    }

    /// Records held for takeover, per partner: (node id if known, count, last heard).
    pub fn partner_summary(&self) -> Vec<(PartnerKey, Option<u8>, usize, Option<Time>)> {
        let mut summary: Vec<_> = self
            .partners
            .iter()
            .map(|(key, p)| (*key, p.node_id, p.records.len(), p.last_heard))
            .collect();
        summary.sort_by_key(|entry| entry.0);
        summary
    }

    /// Records held for takeover, all partners together.
    pub fn records_held(&self) -> usize {
        self.partners.values().map(|p| p.records.len()).sum()
    }

    // --- what we send -----------------------------------------------------------------

    /// Everything a newly connected partner needs: our hello and a full snapshot. Call
    /// [`Cluster::changes_to_publish`] (and send its result to the partners already
    /// connected) first, so that what they were told and the snapshot agree.
    pub fn snapshot_for_new_partner<R: CryptoRngCore>(
        &mut self,
        now: Time,
        node: &Node<R>,
    ) -> Vec<SyncMessage> {
        let records = node.export_session_records(now);
        let mut messages = Vec::with_capacity(records.len() + 3);
        messages.push(SyncMessage::Hello {
            node_id: self.node_id,
            version: super::SYNC_VERSION,
        });
        messages.push(SyncMessage::SnapshotBegin {
            count: u32::try_from(records.len()).unwrap_or(u32::MAX),
        });
        for record in records.iter().take(u32::MAX as usize) {
            messages.push(SyncMessage::Record(record.encode()));
        }
        self.stats.records_sent += records.len() as u64;
        messages.push(SyncMessage::SnapshotEnd);
        messages
    }

    /// The changes partners must hear now: at once when sessions or endpoints changed
    /// (the node's generation moved), else counter checkpoints when one is due. Empty when
    /// nothing is due.
    pub fn changes_to_publish<R: CryptoRngCore>(
        &mut self,
        now: Time,
        node: &Node<R>,
    ) -> Vec<SyncMessage> {
        let structural = self.published_generation != Some(node.generation());
        let checkpoint = now >= self.next_checkpoint;
        if !structural && !checkpoint {
            return Vec::new();
        }
        if checkpoint {
            self.next_checkpoint = now + self.checkpoint;
        }
        self.published_generation = Some(node.generation());
        let mut messages = Vec::new();
        let mut live = HashMap::with_capacity(self.published.len());
        for record in node.export_session_records(now) {
            let index = record.state.params.local_index;
            let current = Published {
                slot: record.slot,
                next_send_counter: record.state.next_send_counter,
                recv_highest: record.state.recv_highest,
                endpoint: record.endpoint,
            };
            let before = self.published.get(&index);
            let changed = match before {
                None => true,
                // A confirmed responder session moves from Next to Current: the standby
                // must send with it after a takeover, so that goes out at once too.
                Some(before)
                    if before.endpoint != current.endpoint || before.slot != current.slot =>
                {
                    true
                }
                Some(before) => checkpoint && *before != current,
            };
            if changed {
                messages.push(SyncMessage::Record(record.encode()));
                self.stats.records_sent += 1;
                live.insert(index, current);
            } else if let Some(before) = before {
                live.insert(index, *before);
            }
        }
        for index in self.published.keys() {
            if !live.contains_key(index) {
                messages.push(SyncMessage::Retire {
                    local_index: *index,
                });
            }
        }
        self.published = live;
        messages
    }

    // --- what we receive --------------------------------------------------------------

    /// A partner connection opened (its records start empty until its snapshot).
    pub fn partner_connected(&mut self, partner: PartnerKey, now: Time) {
        let entry = self.partners.entry(partner).or_default();
        entry.last_heard = Some(now);
        entry.snapshot = None;
    }

    /// One message from `partner`.
    pub fn receive<R: CryptoRngCore>(
        &mut self,
        now: Time,
        partner: PartnerKey,
        message: SyncMessage,
        node: &mut Node<R>,
    ) -> Result<(), ClusterError> {
        let result = self.apply(now, partner, message, node);
        if result.is_err() {
            self.stats.protocol_errors += 1;
            if let Some(p) = self.partners.get_mut(&partner) {
                p.snapshot = None;
            }
        }
        result
    }

    fn apply<R: CryptoRngCore>(
        &mut self,
        now: Time,
        partner: PartnerKey,
        message: SyncMessage,
        node: &mut Node<R>,
    ) -> Result<(), ClusterError> {
        let entry = self.partners.entry(partner).or_default();
        entry.last_heard = Some(now);
        match message {
            SyncMessage::Hello { node_id, .. } => entry.node_id = Some(node_id),
            SyncMessage::Heartbeat { .. } => {}
            SyncMessage::Status { active, epoch, .. } => {
                let theirs = CounterEpoch::of_counter(u64::from(epoch) << 32);
                self.highest_epoch = self.highest_epoch.max(theirs);
                // A split healed: the partner was active too and sent from an epoch above
                // all of ours, and the peers' replay windows followed it. Now that it is a
                // standby, the node left owning the sessions moves them above everything
                // seen, or the peers would refuse its packets until the next handshake.
                // (Normally a standby's highest epoch is the active node's own.)
                if !active
                    && self.role == Role::Active
                    && node.epochs_in_use().max().is_some_and(|ours| ours < theirs)
                {
                    self.re_epoch(now, node);
                }
            }
            SyncMessage::SnapshotBegin { count } => {
                if entry.snapshot.is_some() {
                    return Err(ClusterError::Protocol("snapshot inside a snapshot"));
                }
                entry.snapshot = Some((count, HashMap::new()));
            }
            SyncMessage::SnapshotEnd => {
                let (count, records) = entry
                    .snapshot
                    .take()
                    .ok_or(ClusterError::Protocol("snapshot end without a begin"))?;
                if records.len() != count as usize {
                    return Err(ClusterError::Protocol(
                        "snapshot size differs from its count",
                    ));
                }
                entry.records = records;
            }
            SyncMessage::Retire { local_index } => {
                entry.records.remove(&local_index);
                if let Some((_, snapshot)) = &mut entry.snapshot {
                    snapshot.remove(&local_index);
                }
            }
            SyncMessage::Record(bytes) => {
                let record = SessionRecord::decode(&bytes)?;
                self.stats.records_received += 1;
                let index = record.state.params.local_index;
                let epoch = CounterEpoch::of_counter(record.state.next_send_counter);
                self.highest_epoch = self.highest_epoch.max(epoch);
                // A partner sending for one of our sessions from a higher epoch took it over:
                // it is the owner now. A lower epoch is a stale copy: ours stands.
                if let Some(ours) = node.session_epoch(index) {
                    if epoch <= ours {
                        return Ok(());
                    }
                    if node.yield_session(index) {
                        self.stats.sessions_yielded += 1;
                    }
                }
                let entry = self.partners.get_mut(&partner).expect("inserted above");
                let stored = Stored {
                    record,
                    received: now,
                };
                match &mut entry.snapshot {
                    Some((_, snapshot)) => snapshot.insert(index, stored),
                    None => entry.records.insert(index, stored),
                };
            }
        }
        Ok(())
    }

    /// A partner connection closed or timed out. In `active-active` its peers are taken
    /// over (the network may be delivering them here already); under keepalived the VIP
    /// decides, so nothing happens here. Records stay for a later promotion either way.
    pub fn partner_lost<R: CryptoRngCore>(
        &mut self,
        now: Time,
        partner: PartnerKey,
        node: &mut Node<R>,
    ) -> usize {
        let Some(entry) = self.partners.get_mut(&partner) else {
            return 0;
        };
        entry.snapshot = None;
        if self.mode != HaMode::ActiveActive || self.role != Role::Active {
            return 0;
        }
        let indices: Vec<u32> = entry.records.keys().copied().collect();
        self.take_over(now, &[partner], |_, index| indices.contains(&index), node)
    }

    /// A transport packet for `receiver_index` arrived that no live session here has. If a
    /// partner's record has it and this node is active, the peer is taken over (all its
    /// sessions from that partner): true when the packet can now be processed.
    pub fn transport_arrived<R: CryptoRngCore>(
        &mut self,
        now: Time,
        receiver_index: u32,
        node: &mut Node<R>,
    ) -> bool {
        if self.role != Role::Active {
            return false;
        }
        let Some((partner, peer)) = self.partners.iter().find_map(|(key, p)| {
            p.records
                .get(&receiver_index)
                .map(|stored| (*key, stored.record.peer))
        }) else {
            return false;
        };
        self.take_over(now, &[partner], |record_peer, _| *record_peer == peer, node) > 0
            && node.has_session_index(receiver_index)
    }

    // --- role changes -----------------------------------------------------------------

    /// Becomes active and takes over every record held. The number of sessions installed.
    pub fn promote<R: CryptoRngCore>(&mut self, now: Time, node: &mut Node<R>) -> usize {
        self.role = Role::Active;
        node.set_passive(false);
        let partners: Vec<PartnerKey> = self.partners.keys().copied().collect();
        self.take_over(now, &partners, |_, _| true, node)
    }

    /// Becomes standby: every own session is erased (the partner that became active owns
    /// them now and streams them back here), and the node starts nothing.
    pub fn demote<R: CryptoRngCore>(&mut self, node: &mut Node<R>) {
        self.role = Role::Standby;
        node.set_passive(true);
        node.wipe_all_sessions();
        self.rekeys.clear();
        // Handed over, not ended: the partners keep their records (a Retire now would race
        // the partner's promotion and leave it with nothing to take over).
        self.published.clear();
        self.published_generation = Some(node.generation());
    }

    /// Installs the records of `partners` that `wanted(peer, local_index)` selects, in a
    /// fresh epoch; removes them from the store. The number installed.
    fn take_over<R: CryptoRngCore>(
        &mut self,
        now: Time,
        partners: &[PartnerKey],
        wanted: impl Fn(&crate::keys::PublicKey, u32) -> bool,
        node: &mut Node<R>,
    ) -> usize {
        let mut taken = Vec::new();
        for key in partners {
            if let Some(partner) = self.partners.get_mut(key) {
                let indices: Vec<u32> = partner
                    .records
                    .iter()
                    .filter(|(index, stored)| wanted(&stored.record.peer, **index))
                    .map(|(index, _)| *index)
                    .collect();
                for index in indices {
                    if let Some(stored) = partner.records.remove(&index) {
                        taken.push(stored);
                    }
                }
            }
        }
        if taken.is_empty() {
            return 0;
        }
        let seen = node
            .epochs_in_use()
            .chain(
                taken
                    .iter()
                    .map(|s| CounterEpoch::of_counter(s.record.state.next_send_counter)),
            )
            .chain([self.highest_epoch]);
        let epoch = match CounterEpoch::next_for(u32::from(self.node_id), seen) {
            Ok(epoch) => epoch,
            Err(error) => {
                tracing::error!(%error, "cannot take sessions over");
                self.stats.import_failures += taken.len() as u64;
                return 0;
            }
        };
        self.highest_epoch = epoch;
        self.stats.takeovers += 1;
        let mut installed = 0;
        for stored in taken {
            let mut record = stored.record;
            record.age += now.saturating_since(stored.received);
            match node.import_session_record(record, now, epoch) {
                Ok(id) => {
                    installed += 1;
                    if !self.rekeys.iter().any(|(queued, _)| *queued == id) {
                        self.rekeys.push((id, now + REKEY_AFTER_TAKEOVER));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "a synced session could not be installed");
                    self.stats.import_failures += 1;
                }
            }
        }
        self.stats.sessions_taken_over += installed as u64;
        installed
    }

    /// Moves every own session to a fresh epoch above all seen (after a split healed).
    fn re_epoch<R: CryptoRngCore>(&mut self, now: Time, node: &mut Node<R>) {
        let records = node.export_session_records(now);
        let seen = node.epochs_in_use().chain([self.highest_epoch]);
        let Ok(epoch) = CounterEpoch::next_for(u32::from(self.node_id), seen) else {
            return;
        };
        self.highest_epoch = epoch;
        let count = records.len();
        for record in records {
            if let Err(error) = node.import_session_record(record, now, epoch) {
                tracing::warn!(%error, "a session could not move to the new epoch");
            }
        }
        tracing::warn!(
            sessions = count,
            epoch = epoch.get(),
            "HA: the partner stepped down after a split; own sessions moved to a fresh epoch"
        );
    }

    // --- timers -----------------------------------------------------------------------

    /// Starts the background rekeys that are due.
    pub fn poll<R: CryptoRngCore>(&mut self, now: Time, node: &mut Node<R>) {
        // Records of sessions too old to be used are worth nothing (and were never retired
        // if their owner was demoted or died).
        for partner in self.partners.values_mut() {
            partner.records.retain(|_, stored| {
                stored.record.age + now.saturating_since(stored.received) < RECORD_LIFETIME
            });
        }
        if self.role != Role::Active {
            self.rekeys.clear();
            return;
        }
        self.rekeys.retain(|(id, at)| {
            if *at <= now {
                node.initiate(now, *id);
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;

    use super::*;
    use crate::keys::PrivateKey;
    use crate::node::{NodeConfig, PeerConfig, Received};

    const CLIENT: &str = "192.0.2.10:40000";
    const GATEWAY: &str = "198.51.100.1:51820";

    fn packet(tag: u8) -> Vec<u8> {
        let mut packet = vec![tag; 100];
        packet[0] = 0x45;
        packet[2..4].copy_from_slice(&100u16.to_be_bytes());
        packet
    }

    /// A stock-client stand-in and two gateway nodes sharing one identity.
    struct Pair {
        client: Node<OsRng>,
        to_gateway: PeerId,
        gateways: [Node<OsRng>; 2],
        clusters: [Cluster; 2],
        now: Time,
        in_flight: Vec<Vec<u8>>,
    }

    impl Pair {
        fn new(mode: HaMode) -> Self {
            let client_key = PrivateKey::generate();
            let gateway_key = PrivateKey::generate();
            let mut client = Node::new(NodeConfig::new(client_key.clone(), Duration::ZERO), OsRng);
            let mut to_gateway = PeerConfig::new(gateway_key.public_key());
            to_gateway.endpoint = Some(GATEWAY.parse().unwrap());
            let to_gateway = client.add_peer(to_gateway).unwrap();
            let gateway = || {
                let mut node =
                    Node::new(NodeConfig::new(gateway_key.clone(), Duration::ZERO), OsRng);
                node.add_peer(PeerConfig::new(client_key.public_key()))
                    .unwrap();
                node
            };
            let gateways = [gateway(), gateway()];
            let clusters = [
                Cluster::new(0, mode, Duration::from_millis(100)),
                Cluster::new(1, mode, Duration::from_millis(100)),
            ];
            Self {
                client,
                to_gateway,
                gateways,
                clusters,
                now: Time::ZERO,
                in_flight: Vec::new(),
            }
        }

        /// Client sends one packet; gateway `to` handles every datagram (handshakes too)
        /// and the client every reply. What `to` delivered.
        fn client_sends(&mut self, tag: u8, to: usize) -> Vec<Vec<u8>> {
            let mut out = vec![0u8; 200];
            if let Ok(Some((_, len))) =
                self.client
                    .send_packet(self.now, self.to_gateway, &packet(tag), &mut out)
            {
                self.client_transmit(out[..len].to_vec());
            }
            self.pump(to)
        }

        fn client_transmit(&mut self, datagram: Vec<u8>) {
            self.in_flight.push(datagram);
        }

        fn pump(&mut self, to: usize) -> Vec<Vec<u8>> {
            let mut delivered = Vec::new();
            for _ in 0..10 {
                let mut moved = false;
                let mut from_client: Vec<Vec<u8>> = std::mem::take(&mut self.in_flight);
                while let Some(t) = self.client.poll_transmit() {
                    from_client.push(t.payload);
                }
                for mut datagram in from_client {
                    moved = true;
                    if let Ok(Received::Packet { packet, .. }) = self.gateways[to].handle_datagram(
                        self.now,
                        CLIENT.parse().unwrap(),
                        &mut datagram,
                    ) {
                        delivered.push(packet.to_vec());
                    }
                }
                while let Some(t) = self.gateways[to].poll_transmit() {
                    moved = true;
                    let mut payload = t.payload;
                    let _ = self.client.handle_datagram(
                        self.now,
                        GATEWAY.parse().unwrap(),
                        &mut payload,
                    );
                }
                if !moved {
                    break;
                }
            }
            delivered
        }

        /// Gateway `from` sends one packet to the client: what it sent (counter) and
        /// whether the client accepted it.
        fn gateway_sends(&mut self, from: usize, tag: u8) -> Option<(u64, bool)> {
            let node = &mut self.gateways[from];
            let peer = node.peers().next().unwrap().0;
            let mut out = vec![0u8; 200];
            let (_, len) = node
                .send_packet(self.now, peer, &packet(tag), &mut out)
                .ok()??;
            let counter = u64::from_le_bytes(out[8..16].try_into().unwrap());
            let accepted = matches!(
                self.client
                    .handle_datagram(self.now, GATEWAY.parse().unwrap(), &mut out[..len]),
                Ok(Received::Packet { .. })
            );
            Some((counter, accepted))
        }

        /// Streams gateway `from`'s changes (or a full snapshot) to gateway `to`.
        fn sync(&mut self, from: usize, to: usize, snapshot: bool) {
            let messages = if snapshot {
                self.clusters[from].snapshot_for_new_partner(self.now, &self.gateways[from])
            } else {
                self.clusters[from].changes_to_publish(self.now, &self.gateways[from])
            };
            for message in messages {
                // Through the wire encoding, as the channel carries it.
                let message = SyncMessage::decode(&message.encode()).unwrap();
                self.clusters[to]
                    .receive(self.now, from, message, &mut self.gateways[to])
                    .unwrap();
            }
        }
    }

    #[test]
    fn standby_takes_over_without_a_handshake_in_a_fresh_epoch() {
        let mut pair = Pair::new(HaMode::Keepalived);
        pair.clusters[0].promote(pair.now, &mut pair.gateways[0]);
        pair.clusters[1].start(&mut pair.gateways[1]);
        assert_eq!(pair.client_sends(1, 0).len(), 1, "handshake, then delivery");
        pair.sync(0, 1, true);
        for tag in 2..20 {
            pair.now += Duration::from_millis(10);
            assert_eq!(pair.client_sends(tag, 0).len(), 1);
            assert!(pair.gateway_sends(0, tag).unwrap().1);
        }
        pair.now += Duration::from_millis(100);
        pair.sync(0, 1, false);
        assert_eq!(pair.clusters[1].records_held(), 1);

        // Gateway 0 dies; keepalived promotes gateway 1.
        let handshakes_before = pair.client.peer(pair.to_gateway).stats().handshakes;
        assert_eq!(pair.clusters[1].promote(pair.now, &mut pair.gateways[1]), 1);
        assert_eq!(
            pair.client_sends(50, 1),
            vec![packet(50)],
            "resumed at once"
        );
        let (counter, accepted) = pair.gateway_sends(1, 51).unwrap();
        assert!(accepted, "the stock client accepts the new epoch");
        assert!(counter >= 1 << 32, "sends from a fresh epoch: {counter:#x}");
        assert_eq!(
            CounterEpoch::of_counter(counter).get() % 16,
            1,
            "tagged node 1"
        );
        assert_eq!(
            pair.client.peer(pair.to_gateway).stats().handshakes,
            handshakes_before,
            "no handshake was needed"
        );
        // A packet the old node took before the checkpoint is a replay here.
        let stats = pair.clusters[1].stats();
        assert_eq!((stats.takeovers, stats.sessions_taken_over), (1, 1));

        // The background rekey starts after REKEY_AFTER_TAKEOVER, not before.
        pair.clusters[1].poll(pair.now, &mut pair.gateways[1]);
        assert!(pair.gateways[1].poll_transmit().is_none());
        pair.now += REKEY_AFTER_TAKEOVER;
        pair.clusters[1].poll(pair.now, &mut pair.gateways[1]);
        assert!(
            pair.gateways[1].poll_transmit().is_some(),
            "the new owner starts a handshake in the background"
        );
    }

    #[test]
    fn a_session_survives_takeovers_back_and_forth() {
        let mut pair = Pair::new(HaMode::Keepalived);
        pair.clusters[0].promote(pair.now, &mut pair.gateways[0]);
        pair.clusters[1].start(&mut pair.gateways[1]);
        assert_eq!(pair.client_sends(1, 0).len(), 1);
        let mut active = 0;
        for round in 0..6u8 {
            let standby = 1 - active;
            pair.sync(active, standby, false);
            pair.now += Duration::from_millis(150);
            pair.sync(active, standby, false);
            pair.clusters[active].demote(&mut pair.gateways[active]);
            let taken = pair.clusters[standby].promote(pair.now, &mut pair.gateways[standby]);
            assert!((1..=3).contains(&taken), "round {round}: took {taken}");
            active = standby;
            for tag in 0..3 {
                assert_eq!(
                    pair.client_sends(10 + round * 3 + tag, active),
                    vec![packet(10 + round * 3 + tag)],
                    "round {round}: the client's packet was refused"
                );
                let (_, accepted) = pair
                    .gateway_sends(active, tag)
                    .expect("a session to send with");
                assert!(accepted, "round {round}: the client refused the new epoch");
            }
            // The new owner's background rekey runs: the next takeover carries two sessions.
            pair.now += REKEY_AFTER_TAKEOVER;
            let handshakes = pair.gateways[active]
                .peers()
                .next()
                .unwrap()
                .1
                .stats()
                .handshakes;
            pair.clusters[active].poll(pair.now, &mut pair.gateways[active]);
            pair.pump(active);
            let peer = pair.gateways[active].peers().next().unwrap().1;
            assert_eq!(
                peer.stats().handshakes,
                handshakes + 1,
                "round {round}: no rekey"
            );
            assert_eq!(pair.client_sends(90, active), vec![packet(90)]);
        }
    }

    #[test]
    fn after_a_split_the_remaining_owner_moves_above_the_partners_epoch() {
        let mut pair = Pair::new(HaMode::Keepalived);
        pair.clusters[0].promote(pair.now, &mut pair.gateways[0]);
        pair.clusters[1].start(&mut pair.gateways[1]);
        pair.client_sends(1, 0);
        pair.sync(0, 1, true);
        // Split: node 1 takes over too, and the client follows its higher epoch.
        pair.clusters[1].promote(pair.now, &mut pair.gateways[1]);
        assert!(pair.gateway_sends(1, 2).unwrap().1);
        assert!(
            !pair.gateway_sends(0, 3).unwrap().1,
            "the client should refuse the lower epoch"
        );
        // Healed: node 1 steps down and says so; node 0 moves to a fresh epoch.
        let epoch = pair.clusters[1].highest_epoch().get();
        for active in [true, false] {
            let status = SyncMessage::Status {
                node_id: 1,
                priority: 0,
                active,
                epoch,
            };
            pair.clusters[0]
                .receive(pair.now, 1, status, &mut pair.gateways[0])
                .unwrap();
        }
        pair.clusters[1].demote(&mut pair.gateways[1]);
        let (counter, accepted) = pair.gateway_sends(0, 4).unwrap();
        assert!(accepted, "the client still refuses the remaining owner");
        assert!(CounterEpoch::of_counter(counter).get() > epoch);
        assert_eq!(pair.client_sends(5, 0), vec![packet(5)], "receiving broke");
    }

    #[test]
    fn a_responder_session_confirmed_after_the_last_sync_is_resent_at_once() {
        let mut pair = Pair::new(HaMode::Keepalived);
        pair.clusters[0].promote(pair.now, &mut pair.gateways[0]);
        pair.clusters[1].start(&mut pair.gateways[1]);
        // The initiation reaches gateway 0: it answers and holds an unconfirmed session.
        pair.client.initiate(pair.now, pair.to_gateway);
        let mut initiation = pair.client.poll_transmit().unwrap().payload;
        pair.gateways[0]
            .handle_datagram(pair.now, CLIENT.parse().unwrap(), &mut initiation)
            .unwrap();
        pair.sync(0, 1, false);
        // The client confirms it; no checkpoint is due, but the slot change must go out.
        pair.pump(0);
        pair.sync(0, 1, false);
        pair.clusters[1].promote(pair.now, &mut pair.gateways[1]);
        let (_, accepted) = pair
            .gateway_sends(1, 7)
            .expect("the new owner had no session to send with");
        assert!(accepted);
    }

    #[test]
    fn replays_of_checkpointed_packets_are_refused_by_the_new_owner() {
        let mut pair = Pair::new(HaMode::Keepalived);
        pair.clusters[0].promote(pair.now, &mut pair.gateways[0]);
        pair.client_sends(1, 0);
        // Record what the client sends next, deliver it to gateway 0, checkpoint, then
        // replay it to gateway 1 after the takeover.
        let mut out = vec![0u8; 200];
        let (_, len) = pair
            .client
            .send_packet(pair.now, pair.to_gateway, &packet(2), &mut out)
            .unwrap()
            .unwrap();
        let captured = out[..len].to_vec();
        let mut copy = captured.clone();
        assert!(matches!(
            pair.gateways[0].handle_datagram(pair.now, CLIENT.parse().unwrap(), &mut copy),
            Ok(Received::Packet { .. })
        ));
        pair.sync(0, 1, true);
        pair.clusters[1].promote(pair.now, &mut pair.gateways[1]);
        let mut replay = captured;
        assert!(
            pair.gateways[1]
                .handle_datagram(pair.now, CLIENT.parse().unwrap(), &mut replay)
                .is_err(),
            "a replayed packet was accepted after the takeover"
        );
    }

    #[test]
    fn active_active_takes_a_peer_over_when_its_traffic_arrives_and_the_old_owner_yields() {
        let mut pair = Pair::new(HaMode::ActiveActive);
        pair.clusters[0].start(&mut pair.gateways[0]);
        pair.clusters[1].start(&mut pair.gateways[1]);
        assert_eq!(pair.client_sends(1, 0).len(), 1);
        pair.sync(0, 1, true);

        // The network now delivers the client to gateway 1: unknown index, but a record.
        let mut out = vec![0u8; 200];
        let (_, len) = pair
            .client
            .send_packet(pair.now, pair.to_gateway, &packet(2), &mut out)
            .unwrap()
            .unwrap();
        let index = u32::from_le_bytes(out[4..8].try_into().unwrap());
        assert!(!pair.gateways[1].has_session_index(index));
        assert!(pair.clusters[1].transport_arrived(pair.now, index, &mut pair.gateways[1]));
        assert!(matches!(
            pair.gateways[1].handle_datagram(pair.now, CLIENT.parse().unwrap(), &mut out[..len]),
            Ok(Received::Packet { .. })
        ));
        // Gateway 1 publishes the session from its higher epoch; gateway 0 gives it up.
        pair.sync(1, 0, false);
        assert!(
            !pair.gateways[0].has_session_index(index),
            "old owner kept it"
        );
        assert_eq!(pair.clusters[0].stats().sessions_yielded, 1);
        assert_eq!(
            pair.clusters[0].records_held(),
            1,
            "and holds it as a record"
        );
        // A stale copy (gateway 0's lower epoch) does not make gateway 1 yield.
        assert!(pair.gateways[1].has_session_index(index));

        // A record for a session nobody here had was not taken over by a standby.
        let mut standby = Cluster::new(2, HaMode::Keepalived, Duration::from_millis(100));
        assert!(!standby.transport_arrived(pair.now, index, &mut pair.gateways[0]));
    }

    #[test]
    fn active_active_takes_a_lost_partners_peers_over_but_keepalived_waits() {
        for (mode, expected) in [(HaMode::ActiveActive, 1), (HaMode::Keepalived, 0)] {
            let mut pair = Pair::new(mode);
            pair.clusters[0].promote(pair.now, &mut pair.gateways[0]);
            pair.client_sends(1, 0);
            pair.sync(0, 1, true);
            if mode == HaMode::Keepalived {
                pair.clusters[1].start(&mut pair.gateways[1]);
            }
            assert_eq!(
                pair.clusters[1].partner_lost(pair.now, 0, &mut pair.gateways[1]),
                expected,
                "{mode}"
            );
        }
    }

    #[test]
    fn a_demoted_node_erases_its_sessions_hands_them_over_and_starts_nothing() {
        let mut pair = Pair::new(HaMode::Keepalived);
        pair.clusters[0].promote(pair.now, &mut pair.gateways[0]);
        pair.client_sends(1, 0);
        // A new session goes out at once, without waiting for a checkpoint.
        pair.sync(0, 1, false);
        assert_eq!(pair.clusters[1].records_held(), 1);
        pair.clusters[0].demote(&mut pair.gateways[0]);
        assert!(pair.gateways[0].is_passive());
        let peer = pair.gateways[0].peers().next().unwrap().0;
        assert!(!pair.gateways[0].peer(peer).has_session());
        pair.gateways[0].initiate(pair.now, peer);
        assert!(
            pair.gateways[0].poll_transmit().is_none(),
            "a standby initiated"
        );
        // Handed over, not ended: the partner keeps the record to take over...
        pair.sync(0, 1, false);
        assert_eq!(
            pair.clusters[1].records_held(),
            1,
            "a demotion retired the session"
        );
        assert_eq!(pair.clusters[1].promote(pair.now, &mut pair.gateways[1]), 1);
        // ...while records too old to carry traffic expire.
        let mut standby = Pair::new(HaMode::Keepalived);
        standby.clusters[0].promote(standby.now, &mut standby.gateways[0]);
        standby.client_sends(1, 0);
        standby.sync(0, 1, true);
        assert_eq!(standby.clusters[1].records_held(), 1);
        let later = standby.now + RECORD_LIFETIME;
        standby.clusters[1].poll(later, &mut standby.gateways[1]);
        assert_eq!(
            standby.clusters[1].records_held(),
            0,
            "an expired record was kept"
        );
    }

    #[test]
    fn out_of_order_snapshots_are_protocol_errors_and_change_nothing() {
        let mut pair = Pair::new(HaMode::Keepalived);
        let cluster = &mut pair.clusters[1];
        let node = &mut pair.gateways[1];
        assert!(
            cluster
                .receive(Time::ZERO, 0, SyncMessage::SnapshotEnd, node)
                .is_err()
        );
        cluster
            .receive(Time::ZERO, 0, SyncMessage::SnapshotBegin { count: 2 }, node)
            .unwrap();
        assert!(
            cluster
                .receive(Time::ZERO, 0, SyncMessage::SnapshotBegin { count: 1 }, node)
                .is_err()
        );
        cluster
            .receive(Time::ZERO, 0, SyncMessage::SnapshotBegin { count: 2 }, node)
            .unwrap();
        assert!(
            cluster
                .receive(Time::ZERO, 0, SyncMessage::SnapshotEnd, node)
                .is_err()
        );
        assert_eq!(cluster.stats().protocol_errors, 3);
        assert_eq!(cluster.records_held(), 0);
    }
}
