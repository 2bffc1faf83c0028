//! A WireGuard node as a sans-IO state machine, in the style of quinn-proto's `Connection`:
//! `handle_datagram`, `send_packet` and `handle_timeout` take input and the current time;
//! `poll_transmit`, `poll_event` and `poll_timeout` yield what the caller must do. The node
//! never reads a clock, never touches a socket, and draws randomness from the RNG it was
//! given, so tests drive pairs of nodes on simulated time.
//!
//! The wall-clock time that TAI64N timestamps need is derived from the monotonic `now`
//! plus the wall-clock reading the caller supplied for the timeline's origin, so a jump of
//! the system clock after start changes nothing.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand_core::CryptoRngCore;
use warpline_dataplane::aead::Suite;
use warpline_dataplane::session::{OpenError, SealError, Session, SessionParams};
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::wireguard::{
    CookieReply, Initiation, MessageKind, Response, TRANSPORT_HEADER_LEN, Transport, classify,
};

use crate::cookie::CookieChecker;
use crate::keys::{PresharedKey, PrivateKey, PublicKey};
use crate::noise::{self, HandshakeError, LocalStatic, RemoteStatic, SessionKeys};
use crate::peer::{Peer, PendingHandshake, Slot};
use crate::tai64n::Tai64N;
use crate::timers::Timers;

mod data_plane;
mod ha;
mod inner;

pub use ha::ImportError;

/// A peer's handle within its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(usize);

impl PeerId {
    /// The data plane's name for this peer (the same index).
    pub fn data_plane(self) -> warpline_dataplane::sessions::PeerId {
        warpline_dataplane::sessions::PeerId(u32::try_from(self.0).unwrap_or(u32::MAX))
    }

    /// The id of the `index`-th peer added (for tests that build ids without a node).
    #[cfg(test)]
    pub(crate) fn for_tests(index: usize) -> Self {
        Self(index)
    }
}

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's static private key.
    pub private_key: PrivateKey,
    /// Protocol timers (the WireGuard values unless a test shortens them).
    pub timers: Timers,
    /// MTU of the inner interface: payloads are padded up to it, never past.
    pub mtu: usize,
    /// Initiations per second above which the node demands cookies (MAC2).
    pub under_load_initiations_per_second: u32,
    /// Wall-clock time (since the Unix epoch) at the origin of the `Time` line.
    pub wall_clock_at_origin: Duration,
}

impl NodeConfig {
    /// Defaults for a node with `private_key`, whose timeline starts at `wall_clock_at_origin`.
    pub fn new(private_key: PrivateKey, wall_clock_at_origin: Duration) -> Self {
        Self {
            private_key,
            timers: Timers::WIREGUARD,
            mtu: 1420,
            under_load_initiations_per_second: 1000,
            wall_clock_at_origin,
        }
    }
}

/// A peer to add.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// Preshared key, or all zeros for none.
    pub preshared_key: PresharedKey,
    /// The suite configured for this peer (both sides must agree).
    pub suite: Suite,
    /// Where to send initiations; `None` for a peer that only ever initiates to us.
    pub endpoint: Option<SocketAddr>,
    /// Send a keepalive after this long without sending anything.
    pub persistent_keepalive: Option<Duration>,
}

impl PeerConfig {
    /// A ChaCha20-Poly1305 peer with no preshared key, endpoint or keepalive.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            preshared_key: PresharedKey::none(),
            suite: Suite::ChaCha20Poly1305,
            endpoint: None,
            persistent_keepalive: None,
        }
    }
}

/// Why a peer could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddPeerError {
    /// The key is already a peer.
    #[error("peer is already configured")]
    Duplicate,
    /// The key is this node's own.
    #[error("peer has this node's own public key")]
    OwnKey,
    /// The key is a low-order point.
    #[error("peer public key is a low-order point")]
    WeakKey,
}

/// A datagram the caller must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// Something the caller may want to know or log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A session with the peer is established (initiator) or confirmed (responder).
    HandshakeCompleted(PeerId),
    /// Handshake attempts ran out of time; queued packets were dropped.
    HandshakeAbandoned(PeerId),
    /// No handshake for the wipe interval: every key of the peer was erased.
    KeysWiped(PeerId),
    /// An authenticated packet came from a new address: the peer roamed.
    EndpointChanged(PeerId, SocketAddr),
}

/// What an accepted datagram was.
#[derive(Debug)]
pub enum Received<'a> {
    /// Decrypted transport data: the inner IP packet, padding removed.
    Packet {
        /// Who sent it.
        peer: PeerId,
        /// The inner packet, inside the caller's datagram buffer.
        packet: &'a mut [u8],
    },
    /// An authenticated keepalive.
    Keepalive(PeerId),
    /// A handshake message that was processed (a response may be waiting in `poll_transmit`).
    Handshake(PeerId),
    /// A handshake message that met a node under load without a valid MAC2: a cookie reply
    /// was queued and nothing else was done.
    CookieReplySent,
    /// A cookie reply was stored for the next initiation.
    CookieStored(PeerId),
}

/// Why a datagram was dropped. Every variant is a counter in `warpline show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// Not a WireGuard message.
    #[error("malformed message")]
    Malformed,
    /// MAC1 did not verify: not addressed to our public key.
    #[error("bad MAC1")]
    BadMac1,
    /// Under load, the source sent more handshake messages than its rate allows.
    #[error("handshake rate limited")]
    RateLimited,
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The initiation's timestamp is not newer than the last one: a replay.
    #[error("replayed or stale initiation timestamp")]
    StaleTimestamp,
    /// Initiations from this peer arrive faster than 50 a second.
    #[error("initiation flood from peer")]
    InitiationFlood,
    /// A response or cookie reply that answers no initiation of ours.
    #[error("unexpected handshake response")]
    Unexpected,
    /// A cookie reply that did not decrypt.
    #[error("bad cookie reply")]
    BadCookie,
    /// Transport data for a receiver index we do not have.
    #[error("unknown receiver index")]
    UnknownIndex,
    /// Transport data on a session past its reject-after time.
    #[error("expired session")]
    ExpiredSession,
    /// Counter already seen or too old.
    #[error("replayed counter")]
    Replayed,
    /// Authentication tag did not verify.
    #[error("bad authentication tag")]
    BadTag,
    /// The decrypted payload is not a well-formed IPv4 or IPv6 packet.
    #[error("bad inner packet")]
    BadInnerPacket,
}

/// Why a packet could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer has no known endpoint.
    #[error("peer has no endpoint")]
    NoEndpoint,
    /// The output buffer is too small for header, padded payload and tag.
    #[error("output buffer too small")]
    BufferTooSmall,
}

const INITIATIONS_PER_SECOND_PER_PEER: u32 = 50;

/// A WireGuard node: its identity, its peers, and the sessions between them.
pub struct Node<R> {
    local: LocalStatic,
    checker: CookieChecker,
    peers: Vec<Peer>,
    by_key: HashMap<PublicKey, PeerId>,
    by_index: HashMap<u32, PeerId>,
    rng: R,
    config: NodeConfig,
    load: LoadMeter,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Bumped whenever what the data plane must know changes: sessions, endpoints, peers.
    generation: u64,
    /// Cookie replies sent instead of answering handshakes (under load).
    cookie_replies_sent: u64,
    rate_limiter: crate::ratelimit::RateLimiter,
    /// A standby gateway: it answers what reaches it but starts nothing itself (no
    /// handshakes, no keepalives), since its partner speaks for the shared identity.
    passive: bool,
}

impl<R> std::fmt::Debug for Node<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("public", self.local.public())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

/// Counts initiations per second to decide when to demand cookies.
#[derive(Debug, Default)]
struct LoadMeter {
    window_start: Time,
    initiations_in_window: u32,
    under_load_until: Option<Time>,
    forced: bool,
}

impl LoadMeter {
    fn record_and_check(&mut self, now: Time, threshold: u32) -> bool {
        if now.saturating_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.initiations_in_window = 0;
        }
        self.initiations_in_window = self.initiations_in_window.saturating_add(1);
        if self.initiations_in_window > threshold {
            self.under_load_until = Some(now + Duration::from_secs(1));
        }
        self.forced || self.under_load_until.is_some_and(|until| now < until)
    }
}

impl<R: CryptoRngCore> Node<R> {
    /// A node with no peers.
    pub fn new(config: NodeConfig, rng: R) -> Self {
        let local = LocalStatic::new(&config.private_key);
        Self {
            checker: CookieChecker::new(*local.mac1_key(), *local.cookie_key()),
            local,
            peers: Vec::new(),
            by_key: HashMap::new(),
            by_index: HashMap::new(),
            rng,
            config,
            load: LoadMeter::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            generation: 0,
            cookie_replies_sent: 0,
            rate_limiter: crate::ratelimit::RateLimiter::new(),
            passive: false,
        }
    }

    /// This node's public key.
    pub fn public_key(&self) -> &PublicKey {
        self.local.public()
    }

    /// Adds a peer.
    pub fn add_peer(&mut self, peer: PeerConfig) -> Result<PeerId, AddPeerError> {
        if peer.public_key == *self.local.public() {
            return Err(AddPeerError::OwnKey);
        }
        if self.by_key.contains_key(&peer.public_key) {
            return Err(AddPeerError::Duplicate);
        }
        let remote =
            RemoteStatic::new(&self.local, peer.public_key, peer.preshared_key, peer.suite)
                .map_err(|_| AddPeerError::WeakKey)?;
        let id = PeerId(self.peers.len());
        self.peers
            .push(Peer::new(remote, peer.endpoint, peer.persistent_keepalive));
        self.by_key.insert(peer.public_key, id);
        self.generation += 1;
        Ok(id)
    }

    /// Removes a peer at run time: its keys are wiped at once and nothing reaches it by key
    /// or index any more. Its id is not reused, so ids held elsewhere stay unambiguous.
    pub fn remove_peer(&mut self, id: PeerId) {
        let peer = &mut self.peers[id.0];
        peer.wipe();
        peer.removed = true;
        peer.endpoint = None;
        peer.persistent_keepalive = None;
        peer.unanswered_data_since = None;
        peer.keepalive_owed_since = None;
        let key = *peer.public_key();
        self.by_key.remove(&key);
        self.by_index.retain(|_, owner| *owner != id);
        self.generation += 1;
    }

    /// Changes where a peer's packets go (`warpline set ... endpoint`).
    pub fn set_endpoint(&mut self, id: PeerId, endpoint: Option<SocketAddr>) {
        self.peers[id.0].endpoint = endpoint;
        self.generation += 1;
    }

    /// Changes a peer's preshared key for its next handshakes (`warpline set ... preshared-key`,
    /// `syncconf`); the current sessions go on until they are rekeyed, as in WireGuard.
    pub fn set_preshared_key(&mut self, id: PeerId, psk: PresharedKey) {
        self.peers[id.0].remote.set_preshared_key(psk);
    }

    /// Changes a peer's persistent keepalive interval; `None` turns it off.
    pub fn set_persistent_keepalive(&mut self, id: PeerId, interval: Option<Duration>) {
        self.peers[id.0].persistent_keepalive = interval;
        self.generation += 1;
    }

    /// Cookie replies sent so far (handshakes answered with a cookie because of load).
    pub fn cookie_replies_sent(&self) -> u64 {
        self.cookie_replies_sent
    }

    /// A peer's state.
    pub fn peer(&self, id: PeerId) -> &Peer {
        &self.peers[id.0]
    }

    /// The peer with `public_key`.
    pub fn peer_by_key(&self, public_key: &PublicKey) -> Option<PeerId> {
        self.by_key.get(public_key).copied()
    }

    /// All peers, except removed ones.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, &Peer)> {
        self.peers
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.removed)
            .map(|(i, p)| (PeerId(i), p))
    }

    /// Demands cookies from every initiator regardless of load (tests, benchmarks, and an
    /// operator who knows an attack is under way).
    pub fn force_under_load(&mut self, forced: bool) {
        self.load.forced = forced;
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn timestamp(&self, now: Time) -> Tai64N {
        Tai64N::from_unix(self.config.wall_clock_at_origin + now.since_origin())
    }

    fn fresh_index(&mut self, peer: PeerId) -> u32 {
        loop {
            let index = self.rng.next_u32();
            if let std::collections::hash_map::Entry::Vacant(slot) = self.by_index.entry(index) {
                slot.insert(peer);
                return index;
            }
        }
    }

    /// Processes one received UDP payload from `from`. Transport data is decrypted in place.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Result<Received<'a>, DropReason> {
        match classify(datagram).map_err(|_| DropReason::Malformed)? {
            MessageKind::Transport => self.handle_transport(now, from, datagram),
            MessageKind::Initiation => self.handle_initiation(now, from, datagram),
            MessageKind::Response => self.handle_response(now, from, datagram),
            MessageKind::CookieReply => self.handle_cookie_reply(now, datagram),
        }
    }

    /// Checks MAC1, and under load MAC2; queues a cookie reply when MAC2 is missing.
    /// Returns `Ok(true)` when the message may be processed.
    fn admit_handshake(
        &mut self,
        now: Time,
        from: SocketAddr,
        message: &[u8],
        sender_index: u32,
    ) -> Result<bool, DropReason> {
        if !self.checker.mac1_is_valid(message) {
            return Err(DropReason::BadMac1);
        }
        let threshold = self.config.under_load_initiations_per_second;
        if !self.load.record_and_check(now, threshold) {
            return Ok(true);
        }
        // Under load every source is limited, so a flood from one costs a table lookup per
        // message instead of a cookie reply or a Diffie-Hellman.
        if !self.rate_limiter.allow(now, from.ip()) {
            return Err(DropReason::RateLimited);
        }
        if self
            .checker
            .mac2_is_valid(message, from, now, &mut self.rng)
        {
            return Ok(true);
        }
        let reply = self
            .checker
            .create_reply(message, sender_index, from, now, &mut self.rng);
        self.transmits.push_back(Transmit {
            destination: from,
            payload: reply.to_vec(),
        });
        Ok(false)
    }

    fn note_authenticated(&mut self, id: PeerId, now: Time, from: SocketAddr) {
        let peer = &mut self.peers[id.0];
        peer.last_received = Some(now);
        peer.unanswered_data_since = None;
        if peer.endpoint != Some(from) {
            peer.endpoint = Some(from);
            self.events.push_back(Event::EndpointChanged(id, from));
            self.generation += 1;
        }
    }

    fn handle_initiation<'a>(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Result<Received<'a>, DropReason> {
        let message = Initiation::new_checked(&datagram[..]).map_err(|_| DropReason::Malformed)?;
        if !self.admit_handshake(now, from, datagram, message.sender_index())? {
            self.cookie_replies_sent += 1;
            return Ok(Received::CookieReplySent);
        }
        let peers = &self.peers;
        let by_key = &self.by_key;
        let received = noise::consume_initiation(&self.local, &message, |key| {
            by_key.get(key).map(|id| &peers[id.0].remote)
        })?;
        let id = self.by_key[&received.peer];
        let peer = &self.peers[id.0];
        if peer
            .latest_timestamp
            .is_some_and(|latest| received.timestamp <= latest)
        {
            return Err(DropReason::StaleTimestamp);
        }
        let min_gap = Duration::from_secs(1) / INITIATIONS_PER_SECOND_PER_PEER;
        if peer
            .last_initiation_consumed
            .is_some_and(|last| now.saturating_since(last) < min_gap)
        {
            return Err(DropReason::InitiationFlood);
        }
        let local_index = self.fresh_index(id);
        let peer = &mut self.peers[id.0];
        peer.latest_timestamp = Some(received.timestamp);
        peer.last_initiation_consumed = Some(now);
        let (mut response, keys) =
            noise::create_response(&peer.remote, received, local_index, &mut self.rng)?;
        peer.cookies.stamp(&mut response, now);
        peer.install(session_from(keys, now, id), now);
        self.generation += 1;
        peer.note_sent(now);
        self.note_authenticated(id, now, from);
        self.transmits.push_back(Transmit {
            destination: from,
            payload: response.to_vec(),
        });
        Ok(Received::Handshake(id))
    }

    fn handle_response<'a>(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Result<Received<'a>, DropReason> {
        let message = Response::new_checked(&datagram[..]).map_err(|_| DropReason::Malformed)?;
        if !self.admit_handshake(now, from, datagram, message.sender_index())? {
            self.cookie_replies_sent += 1;
            return Ok(Received::CookieReplySent);
        }
        let id = *self
            .by_index
            .get(&message.receiver_index())
            .ok_or(DropReason::Unexpected)?;
        let peer = &mut self.peers[id.0];
        let pending = peer
            .pending
            .as_ref()
            .filter(|p| p.state.local_index() == message.receiver_index())
            .ok_or(DropReason::Unexpected)?;
        let keys = noise::consume_response(&self.local, &peer.remote, &pending.state, &message)?;
        peer.install(session_from(keys, now, id), now);
        self.generation += 1;
        self.note_authenticated(id, now, from);
        self.events.push_back(Event::HandshakeCompleted(id));
        self.flush_queue(now, id);
        Ok(Received::Handshake(id))
    }

    fn handle_cookie_reply<'a>(
        &mut self,
        now: Time,
        datagram: &'a mut [u8],
    ) -> Result<Received<'a>, DropReason> {
        let reply = CookieReply::new_checked(&datagram[..]).map_err(|_| DropReason::Malformed)?;
        let id = *self
            .by_index
            .get(&reply.receiver_index())
            .ok_or(DropReason::Unexpected)?;
        let peer = &mut self.peers[id.0];
        if !peer.owns_index(reply.receiver_index()) {
            return Err(DropReason::Unexpected);
        }
        peer.cookies
            .consume_reply(&reply, now)
            .map_err(|_| DropReason::BadCookie)?;
        Ok(Received::CookieStored(id))
    }

    fn handle_transport<'a>(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Result<Received<'a>, DropReason> {
        let index = Transport::new_checked(&datagram[..])
            .map_err(|_| DropReason::Malformed)?
            .receiver_index();
        let id = *self.by_index.get(&index).ok_or(DropReason::UnknownIndex)?;
        let timers = self.config.timers;
        let peer = &mut self.peers[id.0];
        let slot = peer.slot_of(index).ok_or(DropReason::UnknownIndex)?;
        let session = peer.session_mut(slot).ok_or(DropReason::UnknownIndex)?;
        if now.saturating_since(session.params().established) >= timers.reject_after_time {
            return Err(DropReason::ExpiredSession);
        }
        let (_, padded_len) = session.open(datagram).map_err(|e| match e {
            OpenError::Malformed => DropReason::Malformed,
            OpenError::Replayed | OpenError::CounterExhausted => DropReason::Replayed,
            OpenError::BadTag => DropReason::BadTag,
        })?;
        peer.stats.rx_bytes += datagram.len() as u64;
        if slot == Slot::Next {
            peer.confirm_next();
            self.generation += 1;
            self.events.push_back(Event::HandshakeCompleted(id));
        }
        self.note_authenticated(id, now, from);
        let peer = &mut self.peers[id.0];
        if padded_len == 0 {
            return Ok(Received::Keepalive(id));
        }
        peer.keepalive_owed_since.get_or_insert(now);
        if peer.wants_rekey_on_receive(now, &timers) && peer.pending.is_none() {
            self.start_handshake(now, id);
        }
        let plaintext = &mut datagram[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + padded_len];
        let len = inner::packet_len(plaintext).ok_or(DropReason::BadInnerPacket)?;
        Ok(Received::Packet {
            peer: id,
            packet: &mut plaintext[..len],
        })
    }

    /// Encrypts `packet` for `peer` into `out`. Returns where to send `out[..len]`, or `None`
    /// when no session exists yet: then the packet is queued and a handshake started.
    pub fn send_packet(
        &mut self,
        now: Time,
        id: PeerId,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<Option<(SocketAddr, usize)>, SendError> {
        let timers = self.config.timers;
        let mtu = self.config.mtu;
        let peer = &mut self.peers[id.0];
        if peer.removed {
            return Err(SendError::NoEndpoint);
        }
        if peer.wants_rekey_on_send(now, &timers) && peer.pending.is_none() {
            self.start_handshake(now, id);
        }
        let peer = &mut self.peers[id.0];
        let endpoint = peer.endpoint;
        let Some(session) = peer.sending_session(now, &timers) else {
            peer.queue(packet);
            return Ok(None);
        };
        let endpoint = endpoint.ok_or(SendError::NoEndpoint)?;
        let payload = out
            .get_mut(TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + packet.len())
            .ok_or(SendError::BufferTooSmall)?;
        payload.copy_from_slice(packet);
        let len = session.seal(out, packet.len(), mtu).map_err(|e| match e {
            SealError::BufferTooSmall => SendError::BufferTooSmall,
            SealError::CounterExhausted => SendError::BufferTooSmall,
        })?;
        peer.stats.tx_bytes += len as u64;
        peer.note_sent(now);
        if !packet.is_empty() {
            peer.unanswered_data_since.get_or_insert(now);
        }
        Ok(Some((endpoint, len)))
    }

    /// Starts a handshake with `peer` now, unless one is already in flight.
    pub fn initiate(&mut self, now: Time, id: PeerId) {
        if self.peers[id.0].pending.is_none() {
            self.start_handshake(now, id);
        }
    }

    fn start_handshake(&mut self, now: Time, id: PeerId) {
        if self.passive {
            return;
        }
        self.peers[id.0].attempts_started.get_or_insert(now);
        self.send_initiation(now, id);
    }

    fn send_initiation(&mut self, now: Time, id: PeerId) {
        let Some(endpoint) = self.peers[id.0].endpoint else {
            return;
        };
        let local_index = self.fresh_index(id);
        let timestamp = self.timestamp(now);
        let peer = &mut self.peers[id.0];
        let Ok((mut message, state)) = noise::create_initiation(
            &self.local,
            &peer.remote,
            local_index,
            timestamp,
            &mut self.rng,
        ) else {
            return;
        };
        peer.cookies.stamp(&mut message, now);
        let jitter_ms = self.config.timers.max_jitter.as_millis() as u64;
        let jitter = Duration::from_millis(self.rng.next_u64() % (jitter_ms + 1));
        peer.pending = Some(PendingHandshake {
            state,
            retransmit_at: now + self.config.timers.rekey_timeout + jitter,
        });
        peer.note_sent(now);
        self.transmits.push_back(Transmit {
            destination: endpoint,
            payload: message.to_vec(),
        });
    }

    fn send_keepalive(&mut self, now: Time, id: PeerId) {
        if self.passive {
            return;
        }
        let mut buf = [0u8; TRANSPORT_HEADER_LEN + 16];
        if let Ok(Some((destination, len))) = self.send_packet(now, id, &[], &mut buf) {
            self.transmits.push_back(Transmit {
                destination,
                payload: buf[..len].to_vec(),
            });
        }
    }

    fn flush_queue(&mut self, now: Time, id: PeerId) {
        let queued = std::mem::take(&mut self.peers[id.0].queued);
        if queued.is_empty() {
            // The responder may only use the new session once it hears on it.
            self.send_keepalive(now, id);
            return;
        }
        for packet in queued {
            let mut buf = vec![0u8; packet.len() + TRANSPORT_HEADER_LEN + 32];
            if let Ok(Some((destination, len))) = self.send_packet(now, id, &packet, &mut buf) {
                buf.truncate(len);
                self.transmits.push_back(Transmit {
                    destination,
                    payload: buf,
                });
            }
        }
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        let timers = self.config.timers;
        for i in 0..self.peers.len() {
            let id = PeerId(i);
            let peer = &mut self.peers[i];
            let has_keys = peer.current.is_some() || peer.previous.is_some() || peer.next.is_some();
            if has_keys
                && peer
                    .stats
                    .last_handshake
                    .is_some_and(|t| now >= t + timers.wipe_after())
            {
                peer.wipe();
                self.generation += 1;
                self.events.push_back(Event::KeysWiped(id));
                continue;
            }
            if let Some(pending) = &peer.pending
                && now >= pending.retransmit_at
            {
                let started = peer.attempts_started.unwrap_or(now);
                if now >= started + timers.rekey_attempt_time {
                    peer.pending = None;
                    peer.attempts_started = None;
                    peer.queued.clear();
                    self.events.push_back(Event::HandshakeAbandoned(id));
                } else {
                    self.send_initiation(now, id);
                }
                continue;
            }
            if let Some(since) = peer.unanswered_data_since
                && now >= since + timers.new_handshake_after_silence()
            {
                peer.unanswered_data_since = None;
                if peer.pending.is_none() {
                    self.start_handshake(now, id);
                }
                continue;
            }
            if let Some(deadline) = keepalive_deadline(peer, &timers)
                && now >= deadline
            {
                self.send_keepalive(now, id);
                continue;
            }
            if let Some(deadline) = persistent_keepalive_deadline(peer)
                && now >= deadline
            {
                if peer.has_session() {
                    self.send_keepalive(now, id);
                } else if peer.pending.is_none() {
                    self.start_handshake(now, id);
                }
            }
        }
        let peers = &self.peers;
        self.by_index
            .retain(|index, id| peers[id.0].owns_index(*index));
    }

    /// When `handle_timeout` must next be called, if any timer is armed.
    pub fn poll_timeout(&self) -> Option<Time> {
        let timers = &self.config.timers;
        self.peers
            .iter()
            .flat_map(|peer| {
                let has_keys =
                    peer.current.is_some() || peer.previous.is_some() || peer.next.is_some();
                [
                    peer.pending.as_ref().map(|p| p.retransmit_at),
                    peer.unanswered_data_since
                        .map(|t| t + timers.new_handshake_after_silence()),
                    keepalive_deadline(peer, timers),
                    persistent_keepalive_deadline(peer),
                    peer.stats
                        .last_handshake
                        .filter(|_| has_keys)
                        .map(|t| t + timers.wipe_after()),
                ]
            })
            .flatten()
            .min()
    }
}

/// After data arrives, a keepalive is due if we have sent nothing for `keepalive_timeout`.
fn keepalive_deadline(peer: &Peer, timers: &Timers) -> Option<Time> {
    let owed_since = peer.keepalive_owed_since?;
    peer.has_session()
        .then(|| owed_since + timers.keepalive_timeout)
}

fn persistent_keepalive_deadline(peer: &Peer) -> Option<Time> {
    let interval = peer.persistent_keepalive?;
    peer.endpoint?;
    Some(peer.last_sent.map_or(Time::ZERO, |sent| sent + interval))
}

fn session_from(mut keys: SessionKeys, now: Time, id: PeerId) -> Session {
    let params = SessionParams {
        local_index: keys.local_index,
        remote_index: keys.remote_index,
        suite: keys.suite,
        we_initiated: keys.we_initiated,
        established: now,
    };
    let (mut send, mut recv) = (keys.send, keys.recv);
    let session = Session::new(params, id.data_plane(), &mut send, &mut recv);
    zeroize::Zeroize::zeroize(&mut keys);
    session
}

#[cfg(test)]
mod tests;
