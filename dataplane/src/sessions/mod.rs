//! The session table the control plane publishes and every data-plane worker reads without a
//! lock (ARCHITECTURE principle 3).
//!
//! ## Shape
//!
//! - [`SharedSession`]: one keypair, shared by all workers behind an `Arc`. Its immutable part
//!   (keys, indices, peer, establishment time) needs no synchronisation; its two mutable parts
//!   are atomics: the send counter (`fetch_add`, so two cores never seal with the same nonce)
//!   and the receive [`AtomicReplayWindow`].
//! - [`Snapshot`]: an immutable picture of everything the hot path looks up: receiver index →
//!   session, peer → current sending session and endpoint, and the allowed-IPs table (used both
//!   to route outgoing packets to a peer and to check the source of decrypted ones).
//! - [`SessionTable`]: the published snapshot, an `ArcSwap<Snapshot>`. The control plane
//!   builds a new snapshot (usually by cloning the current one and editing it) and
//!   [`publish`](SessionTable::publish)es it with one atomic pointer swap. Each worker holds a
//!   [`SnapshotReader`] and calls [`load`](SnapshotReader::load) once per batch.
//!
//! ## Why no locks are needed
//!
//! Nothing a worker reads through a snapshot is ever mutated except through atomics, so a
//! snapshot can be read by any number of threads at once. Replacing it is RCU: the old
//! snapshot stays alive (reference counted) until the last worker that loaded it loads again,
//! which happens at its next batch — the grace period is one batch. Sessions that the new
//! snapshot still contains are the same `Arc`s, so their counters and replay windows carry over.
//!
//! `arc-swap` provides the swap: loads are wait-free and take no shared lock or contended
//! reference count (a worker's [`SnapshotReader`] is an `arc_swap::Cache`: one relaxed load and
//! compare per batch while nothing changed), stores never wait for readers, and reclamation is
//! plain `Arc` dropping, so this crate needs no `unsafe` for it. The alternatives were worse for
//! this job: a `RwLock<Arc<_>>` makes every batch write a shared cache line; `crossbeam-epoch`
//! asks for `unsafe` pointer handling here; `left-right` doubles memory and makes the writer wait
//! for readers; a hand-rolled `AtomicPtr` needs its own reclamation scheme.
//!
//! Per-packet lookups are by receiver index (a hash map with a multiplicative hash: indices are
//! chosen at random by our own control plane, so an attacker cannot pick colliding keys) and by
//! peer id (a `Vec` index).

mod replay;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, Cache};
use zeroize::Zeroize;

pub use replay::{AtomicReplayWindow, MAX_COUNTER_SPAN, RING_WORDS};

use crate::aead::PacketKey;
use crate::allowed_ips::AllowedIps;
use crate::replay::REJECT_AFTER_MESSAGES;
use crate::session::SessionParams;
use crate::time::Time;
use crate::wire::ethernet::MacAddr;

/// After this long a session neither sends nor receives (WireGuard's `Reject-After-Time`).
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// After this long the initiator of a session should start a new handshake
/// (`Rekey-After-Time`); the session still works until [`REJECT_AFTER_TIME`].
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// After this many messages sent the session should be replaced (`Rekey-After-Messages`).
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;

/// A peer as the data plane knows it: an index into the snapshot's peer list, assigned by the
/// control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// Where a peer's packets go: its UDP address and the MAC address of the next hop towards it
/// (the peer itself on a shared link, the gateway otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The peer's outer address and port.
    pub addr: SocketAddr,
    /// Destination MAC of frames sent to `addr`.
    pub mac: MacAddr,
    /// Our address the peer sends to, when it is not the NIC's first one (a virtual IP that
    /// moves between gateways): replies leave from it, or the peer would roam to a
    /// node-specific address and lose the next failover. `None`: the NIC's address.
    pub local: Option<std::net::IpAddr>,
}

/// One established keypair, shared by every worker. See the [module docs](self).
pub struct SharedSession {
    local_index: u32,
    remote_index: u32,
    peer: PeerId,
    we_initiated: bool,
    established: Time,
    send_key: PacketKey,
    recv_key: PacketKey,
    send_counter: AtomicU64,
    replay: AtomicReplayWindow,
    traffic: SessionTraffic,
}

/// What the data plane moved on one session, counted by the workers (relaxed atomics: exact
/// totals, no ordering with anything else) and read by the control plane for `show`, metrics
/// and the protocol timers that depend on traffic (keepalives, rekey after silence).
#[derive(Debug, Default)]
struct SessionTraffic {
    rx_packets: AtomicU64,
    rx_keepalives: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
}

/// A reading of a session's traffic counters, or the difference of two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficTotals {
    /// Authenticated transport messages received (keepalives included).
    pub rx_packets: u64,
    /// Of those, keepalives.
    pub rx_keepalives: u64,
    /// Bytes of received transport messages (WireGuard header, ciphertext and tag).
    pub rx_bytes: u64,
    /// Transport messages sent.
    pub tx_packets: u64,
    /// Bytes of sent transport messages.
    pub tx_bytes: u64,
}

impl TrafficTotals {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &TrafficTotals) -> TrafficTotals {
        TrafficTotals {
            rx_packets: self.rx_packets.wrapping_sub(earlier.rx_packets),
            rx_keepalives: self.rx_keepalives.wrapping_sub(earlier.rx_keepalives),
            rx_bytes: self.rx_bytes.wrapping_sub(earlier.rx_bytes),
            tx_packets: self.tx_packets.wrapping_sub(earlier.tx_packets),
            tx_bytes: self.tx_bytes.wrapping_sub(earlier.tx_bytes),
        }
    }

    /// Whether anything that was not a keepalive arrived.
    pub fn received_data(&self) -> bool {
        self.rx_packets > self.rx_keepalives
    }
}

impl std::fmt::Debug for SharedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSession")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("peer", &self.peer)
            .field("established", &self.established)
            .field("send_counter", &self.send_counter.load(Ordering::Relaxed))
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl SharedSession {
    /// Builds a session from a handshake's result; zeroizes the caller's raw key copies.
    /// `first_send_counter` is 0 for a fresh session, or the start of a counter epoch when a
    /// standby resumes a session (ARCHITECTURE, High availability).
    pub fn new(
        params: &SessionParams,
        peer: PeerId,
        send: &mut [u8; 32],
        recv: &mut [u8; 32],
        first_send_counter: u64,
    ) -> Self {
        Self::resumed(params, peer, send, recv, first_send_counter, None)
    }

    /// As [`new`](Self::new), with the receive window resumed after `recv_highest`: every
    /// counter up to it counts as received (a standby resuming from a checkpoint).
    pub fn resumed(
        params: &SessionParams,
        peer: PeerId,
        send: &mut [u8; 32],
        recv: &mut [u8; 32],
        first_send_counter: u64,
        recv_highest: Option<u64>,
    ) -> Self {
        let session = Self {
            local_index: params.local_index,
            remote_index: params.remote_index,
            peer,
            we_initiated: params.we_initiated,
            established: params.established,
            send_key: PacketKey::new(params.suite, send),
            recv_key: PacketKey::new(params.suite, recv),
            send_counter: AtomicU64::new(first_send_counter),
            replay: AtomicReplayWindow::resumed_after(recv_highest),
            traffic: SessionTraffic::default(),
        };
        send.zeroize();
        recv.zeroize();
        session
    }

    /// The index peers put in messages to us (our key in the snapshot).
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// The index we put in messages to the peer.
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }

    /// The peer this session belongs to.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// When the handshake completed.
    pub fn established(&self) -> Time {
        self.established
    }

    /// The key that seals what we send.
    pub fn send_key(&self) -> &PacketKey {
        &self.send_key
    }

    /// The key that opens what we receive.
    pub fn recv_key(&self) -> &PacketKey {
        &self.recv_key
    }

    /// The receive replay window.
    pub fn replay(&self) -> &AtomicReplayWindow {
        &self.replay
    }

    /// Counts one authenticated received message of `bytes` bytes (data-plane workers).
    #[inline]
    pub fn count_received(&self, bytes: usize, keepalive: bool) {
        self.traffic.rx_packets.fetch_add(1, Ordering::Relaxed);
        self.traffic
            .rx_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if keepalive {
            self.traffic.rx_keepalives.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one sent message of `bytes` bytes (data-plane workers).
    #[inline]
    pub fn count_sent(&self, bytes: usize) {
        self.traffic.tx_packets.fetch_add(1, Ordering::Relaxed);
        self.traffic
            .tx_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The traffic counters now.
    pub fn traffic(&self) -> TrafficTotals {
        let t = &self.traffic;
        TrafficTotals {
            rx_packets: t.rx_packets.load(Ordering::Relaxed),
            rx_keepalives: t.rx_keepalives.load(Ordering::Relaxed),
            rx_bytes: t.rx_bytes.load(Ordering::Relaxed),
            tx_packets: t.tx_packets.load(Ordering::Relaxed),
            tx_bytes: t.tx_bytes.load(Ordering::Relaxed),
        }
    }

    /// Moves the send counter (tests, and a standby resuming in a new counter epoch).
    pub fn set_next_send_counter(&self, counter: u64) {
        self.send_counter.store(counter, Ordering::Relaxed);
    }

    /// The counter the next sealed message will get (messages sent, from the epoch start).
    pub fn next_send_counter(&self) -> u64 {
        self.send_counter.load(Ordering::Relaxed)
    }

    /// Takes the next send counter; `None` once the per-key limit is reached. Uncontended it
    /// is one atomic add; across cores it still hands every counter out once.
    pub fn take_send_counter(&self) -> Option<u64> {
        // Relaxed is enough: uniqueness comes from the RMW itself; nothing else is published.
        let counter = self.send_counter.fetch_add(1, Ordering::Relaxed);
        (counter < REJECT_AFTER_MESSAGES).then_some(counter)
    }

    /// Reserves `count` consecutive send counters with one atomic add (a worker's block for
    /// one batch, see the pipeline's encapsulation); `None` once the per-key limit is
    /// reached. The block ends at the limit.
    pub fn take_send_counters(&self, count: u64) -> Option<std::ops::Range<u64>> {
        let start = self.send_counter.fetch_add(count, Ordering::Relaxed);
        (start < REJECT_AFTER_MESSAGES)
            .then(|| start..start.saturating_add(count).min(REJECT_AFTER_MESSAGES))
    }

    /// True once the session is [`REJECT_AFTER_TIME`] old at `now`.
    pub fn is_expired(&self, now: Time) -> bool {
        now.saturating_since(self.established) >= REJECT_AFTER_TIME
    }

    /// True when sending at `now` should prompt a new handshake: we initiated and the session
    /// is [`REKEY_AFTER_TIME`] old, or it sent [`REKEY_AFTER_MESSAGES`].
    pub fn wants_rekey(&self, now: Time, counter: u64) -> bool {
        counter >= REKEY_AFTER_MESSAGES
            || (self.we_initiated && now.saturating_since(self.established) >= REKEY_AFTER_TIME)
    }
}

/// What a snapshot knows about one peer.
#[derive(Debug, Clone, Default)]
pub struct PeerEntry {
    /// The session outgoing packets are sealed with; `None` until a handshake completed.
    pub current: Option<Arc<SharedSession>>,
    /// Where outgoing packets go; `None` until configured or learned.
    pub endpoint: Option<Endpoint>,
}

/// Multiplicative (Fibonacci) hashing of a `u32` receiver index. Our indices are random, so
/// this spreads them as well as SipHash at a fraction of the cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, index: u32) {
        self.0 = u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Everything the hot path looks up, frozen. Built and edited by the control plane, read by
/// workers through a [`SessionTable`]; cloning is `O(sessions + peers + prefixes)` and shares
/// the sessions themselves.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    by_index: HashMap<u32, Arc<SharedSession>, BuildHasherDefault<IndexHasher>>,
    peers: Vec<PeerEntry>,
    routes: AllowedIps<PeerId>,
}

impl Snapshot {
    /// An empty snapshot: no sessions, peers or routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session peers address with `receiver_index`.
    #[inline]
    pub fn session(&self, receiver_index: u32) -> Option<&Arc<SharedSession>> {
        self.by_index.get(&receiver_index)
    }

    /// What is known about `peer`.
    #[inline]
    pub fn peer(&self, peer: PeerId) -> Option<&PeerEntry> {
        self.peers.get(peer.0 as usize)
    }

    /// The allowed-IPs table: destination routing for encapsulation, source check for
    /// decapsulation.
    pub fn routes(&self) -> &AllowedIps<PeerId> {
        &self.routes
    }

    /// The allowed-IPs table, to edit before publishing.
    pub fn routes_mut(&mut self) -> &mut AllowedIps<PeerId> {
        &mut self.routes
    }

    /// Number of sessions that can receive.
    pub fn session_count(&self) -> usize {
        self.by_index.len()
    }

    /// Makes `session` receivable (by its local index); replaces one with the same index.
    pub fn insert_session(&mut self, session: Arc<SharedSession>) {
        self.by_index.insert(session.local_index(), session);
    }

    /// Stops receiving on `local_index`; returns the session that had it.
    pub fn remove_session(&mut self, local_index: u32) -> Option<Arc<SharedSession>> {
        self.by_index.remove(&local_index)
    }

    /// The entry of `peer`, created (empty) if needed, to edit before publishing.
    pub fn peer_mut(&mut self, peer: PeerId) -> &mut PeerEntry {
        let at = peer.0 as usize;
        if self.peers.len() <= at {
            self.peers.resize_with(at + 1, PeerEntry::default);
        }
        &mut self.peers[at]
    }

    /// Installs `session` as receivable and as its peer's current sending session.
    pub fn install(&mut self, session: Arc<SharedSession>) {
        self.peer_mut(session.peer()).current = Some(Arc::clone(&session));
        self.insert_session(session);
    }
}

/// The published snapshot: one writer (the control plane), any number of lock-free readers.
#[derive(Debug, Clone)]
pub struct SessionTable {
    current: Arc<ArcSwap<Snapshot>>,
}

impl SessionTable {
    /// A table publishing `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
        }
    }

    /// Replaces the snapshot for every reader's next [`load`](SnapshotReader::load).
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// The current snapshot (for the control plane, to clone and edit).
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A per-worker reader.
    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader {
            cache: Cache::new(Arc::clone(&self.current)),
        }
    }
}

/// One worker's view of a [`SessionTable`]: call [`load`](Self::load) once per batch.
pub struct SnapshotReader {
    cache: Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader").finish_non_exhaustive()
    }
}

impl SnapshotReader {
    /// The latest published snapshot. Cheap when nothing changed (one atomic load and compare);
    /// the previous snapshot is released here, which ends its grace period for this worker.
    #[inline]
    pub fn load(&mut self) -> &Snapshot {
        self.cache.load()
    }

    /// As [`load`](Self::load), as the shared pointer: to hand the same snapshot to another
    /// thread with work ([`crate::spread`]).
    #[inline]
    pub fn load_shared(&mut self) -> &Arc<Snapshot> {
        self.cache.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::Suite;

    fn session(local_index: u32, peer: u32) -> Arc<SharedSession> {
        let params = SessionParams {
            local_index,
            remote_index: local_index + 1000,
            suite: Suite::ChaCha20Poly1305,
            we_initiated: true,
            established: Time::from_secs(10),
        };
        Arc::new(SharedSession::new(
            &params,
            PeerId(peer),
            &mut [1; 32],
            &mut [2; 32],
            0,
        ))
    }

    #[test]
    fn publish_swaps_what_readers_see_and_keeps_shared_state() {
        let mut first = Snapshot::new();
        first.install(session(7, 0));
        let table = SessionTable::new(first);
        let mut reader = table.reader();
        let s = Arc::clone(reader.load().session(7).unwrap());
        assert_eq!(s.take_send_counter(), Some(0));
        let mut next = (*table.current()).clone();
        next.install(session(8, 1));
        table.publish(next);
        let snap = reader.load();
        assert_eq!(snap.session_count(), 2);
        assert_eq!(snap.session(7).unwrap().next_send_counter(), 1);
        assert_eq!(
            snap.peer(PeerId(1))
                .unwrap()
                .current
                .as_ref()
                .unwrap()
                .local_index(),
            8
        );
    }

    #[test]
    fn expiry_rekey_and_counter_limit() {
        let s = session(1, 0);
        assert!(!s.is_expired(Time::from_secs(189)));
        assert!(s.is_expired(Time::from_secs(190)));
        assert!(!s.wants_rekey(Time::from_secs(129), 5));
        assert!(s.wants_rekey(Time::from_secs(130), 5));
        assert!(s.wants_rekey(Time::from_secs(11), REKEY_AFTER_MESSAGES));
        s.send_counter
            .store(REJECT_AFTER_MESSAGES - 1, Ordering::Relaxed);
        assert_eq!(s.take_send_counter(), Some(REJECT_AFTER_MESSAGES - 1));
        assert_eq!(s.take_send_counter(), None);
    }
}
