//! One peer's protocol state: its keypairs (previous, current, next), the handshake in
//! flight, and the timestamps its timers are computed from. Sans-IO: the node calls in with
//! the time; the peer never reads a clock.
//!
//! Keypair rotation follows the Linux driver (noise.c, `add_new_keypair`): a session we
//! initiated is usable at once; one we answered waits in `next` until the initiator's first
//! data packet confirms it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use warpline_dataplane::session::Session;
use warpline_dataplane::time::Time;

use crate::cookie::CookieJar;
use crate::noise::{InitiationState, RemoteStatic};
use crate::tai64n::Tai64N;
use crate::timers::{REKEY_AFTER_MESSAGES, Timers};

/// Packets held while a handshake completes; beyond this the oldest are dropped.
pub const MAX_QUEUED_PACKETS: usize = 64;

/// An initiation we sent and await the response to.
#[derive(Debug)]
pub(crate) struct PendingHandshake {
    pub(crate) state: InitiationState,
    pub(crate) retransmit_at: Time,
}

/// Which of a peer's three keypair slots a local index belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Previous,
    Current,
    Next,
}

/// Transfer and handshake figures for `warpline show`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Bytes of transport messages received and authenticated.
    pub rx_bytes: u64,
    /// Bytes of transport messages sent.
    pub tx_bytes: u64,
    /// When the last handshake completed.
    pub last_handshake: Option<Time>,
    /// Handshakes completed.
    pub handshakes: u64,
}

/// Whether a peer answers: the facts its endpoint failover decides on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    /// The last authenticated packet from the peer.
    pub last_received: Option<Time>,
    /// We have sent data since this time and heard nothing back.
    pub unanswered_data_since: Option<Time>,
    /// A handshake is in flight, attempted since this time.
    pub handshaking_since: Option<Time>,
}

/// A peer's state.
#[derive(Debug)]
pub struct Peer {
    pub(crate) remote: RemoteStatic,
    pub(crate) cookies: CookieJar,
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) persistent_keepalive: Option<Duration>,
    pub(crate) previous: Option<Session>,
    pub(crate) current: Option<Session>,
    pub(crate) next: Option<Session>,
    pub(crate) pending: Option<PendingHandshake>,
    /// When the current series of handshake attempts began (for `rekey_attempt_time`).
    pub(crate) attempts_started: Option<Time>,
    pub(crate) latest_timestamp: Option<Tai64N>,
    pub(crate) last_initiation_consumed: Option<Time>,
    pub(crate) last_sent: Option<Time>,
    pub(crate) last_received: Option<Time>,
    /// Data arrived at this time and we have sent nothing since: a keepalive is owed.
    pub(crate) keepalive_owed_since: Option<Time>,
    /// First data sent since we last heard from the peer; cleared by any authenticated packet.
    pub(crate) unanswered_data_since: Option<Time>,
    pub(crate) queued: VecDeque<Vec<u8>>,
    pub(crate) stats: PeerStats,
    /// Removed at run time: keys wiped, unreachable by key or index, timers off.
    pub(crate) removed: bool,
}

impl Peer {
    pub(crate) fn new(
        remote: RemoteStatic,
        endpoint: Option<SocketAddr>,
        persistent_keepalive: Option<Duration>,
    ) -> Self {
        Self {
            cookies: CookieJar::new(*remote.mac1_key(), *remote.cookie_key()),
            remote,
            endpoint,
            persistent_keepalive,
            previous: None,
            current: None,
            next: None,
            pending: None,
            attempts_started: None,
            latest_timestamp: None,
            last_initiation_consumed: None,
            last_sent: None,
            last_received: None,
            keepalive_owed_since: None,
            unanswered_data_since: None,
            queued: VecDeque::new(),
            stats: PeerStats::default(),
            removed: false,
        }
    }

    /// The slot holding the session with `local_index`, if any.
    pub(crate) fn slot_of(&self, local_index: u32) -> Option<Slot> {
        let has = |s: &Option<Session>| {
            s.as_ref()
                .is_some_and(|s| s.params().local_index == local_index)
        };
        if has(&self.current) {
            Some(Slot::Current)
        } else if has(&self.previous) {
            Some(Slot::Previous)
        } else if has(&self.next) {
            Some(Slot::Next)
        } else {
            None
        }
    }

    /// True when `local_index` names one of this peer's sessions or its pending handshake.
    pub(crate) fn owns_index(&self, local_index: u32) -> bool {
        self.slot_of(local_index).is_some()
            || self
                .pending
                .as_ref()
                .is_some_and(|p| p.state.local_index() == local_index)
    }

    /// The local index of the session in `slot`, if one is there.
    pub(crate) fn session_in(&self, slot: crate::ha::SessionSlot) -> Option<u32> {
        let session = match slot {
            crate::ha::SessionSlot::Previous => &self.previous,
            crate::ha::SessionSlot::Current => &self.current,
            crate::ha::SessionSlot::Next => &self.next,
        };
        session.as_ref().map(|s| s.params().local_index)
    }

    pub(crate) fn session_mut(&mut self, slot: Slot) -> Option<&mut Session> {
        match slot {
            Slot::Previous => self.previous.as_mut(),
            Slot::Current => self.current.as_mut(),
            Slot::Next => self.next.as_mut(),
        }
    }

    /// Installs a session from a completed handshake, rotating the slots.
    pub(crate) fn install(&mut self, session: Session, now: Time) {
        if session.params().we_initiated {
            if let Some(next) = self.next.take() {
                self.previous = Some(next);
            } else {
                self.previous = self.current.take();
            }
            self.current = Some(session);
            self.pending = None;
            self.attempts_started = None;
        } else {
            self.next = Some(session);
            self.previous = None;
        }
        self.stats.last_handshake = Some(now);
        self.stats.handshakes += 1;
    }

    /// Anything sent (handshake, data or keepalive) settles a keepalive we owed.
    pub(crate) fn note_sent(&mut self, now: Time) {
        self.last_sent = Some(now);
        self.keepalive_owed_since = None;
    }

    /// The responder's `next` session is confirmed by the first packet received on it.
    pub(crate) fn confirm_next(&mut self) {
        if let Some(next) = self.next.take() {
            self.previous = self.current.take();
            self.current = Some(next);
        }
    }

    /// The session to send with now, if one is fresh enough.
    pub(crate) fn sending_session(&mut self, now: Time, timers: &Timers) -> Option<&mut Session> {
        self.current
            .as_mut()
            .filter(|s| now.saturating_since(s.params().established) < timers.reject_after_time)
    }

    /// True when the session we send with calls for a new handshake (age or message count).
    pub(crate) fn wants_rekey_on_send(&self, now: Time, timers: &Timers) -> bool {
        match &self.current {
            None => true,
            Some(s) => {
                let age = now.saturating_since(s.params().established);
                s.next_send_counter() >= REKEY_AFTER_MESSAGES
                    || (s.params().we_initiated && age >= timers.rekey_after_time)
                    || age >= timers.reject_after_time
            }
        }
    }

    /// True when data arriving on the current session means we (its initiator) should rekey
    /// before the responder stops accepting it.
    pub(crate) fn wants_rekey_on_receive(&self, now: Time, timers: &Timers) -> bool {
        self.current.as_ref().is_some_and(|s| {
            s.params().we_initiated
                && now.saturating_since(s.params().established) >= timers.rekey_on_receive_after()
        })
    }

    /// Queues a packet for when a session exists; drops the oldest past the bound.
    pub(crate) fn queue(&mut self, packet: &[u8]) -> bool {
        let dropped_one = self.queued.len() >= MAX_QUEUED_PACKETS;
        if dropped_one {
            self.queued.pop_front();
        }
        self.queued.push_back(packet.to_vec());
        dropped_one
    }

    /// Erases every key and handshake state (the 540 s wipe, or peer removal).
    pub(crate) fn wipe(&mut self) {
        self.previous = None;
        self.current = None;
        self.next = None;
        self.pending = None;
        self.attempts_started = None;
        self.queued.clear();
    }

    /// What the peer's endpoint failover watches (see `crate::failover`).
    pub fn liveness(&self) -> Liveness {
        Liveness {
            last_received: self.last_received,
            unanswered_data_since: self.unanswered_data_since,
            handshaking_since: self.pending.as_ref().and(self.attempts_started),
        }
    }

    /// The peer's public key.
    pub fn public_key(&self) -> &crate::keys::PublicKey {
        self.remote.public()
    }

    /// Where packets to this peer go: the configured endpoint, then wherever the last
    /// authenticated packet came from.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    /// Transfer and handshake figures.
    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    /// The cipher suite configured for this peer.
    pub fn suite(&self) -> warpline_dataplane::aead::Suite {
        self.remote.suite()
    }

    /// Whether `psk` is this peer's preshared key (constant time).
    pub fn has_preshared_key(&self, psk: &crate::keys::PresharedKey) -> bool {
        self.remote.has_preshared_key(psk)
    }

    /// The persistent keepalive interval, if configured.
    pub fn persistent_keepalive(&self) -> Option<Duration> {
        self.persistent_keepalive
    }

    /// True when a session is established and usable.
    pub fn has_session(&self) -> bool {
        self.current.is_some()
    }
}
