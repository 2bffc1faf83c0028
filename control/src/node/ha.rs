//! The node's side of session hand-over between gateways (see [`crate::ha`]).

use rand_core::CryptoRngCore;
use warpline_dataplane::session::Session;
use warpline_dataplane::time::Time;

use super::{Node, PeerId};
use crate::ha::{CounterEpoch, SessionRecord, SessionSlot};

/// Why a record was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// This node has no (live) peer with the record's public key.
    #[error("no peer with that public key")]
    UnknownPeer,
    /// The epoch would not move the send counter forward: counters could repeat.
    #[error("counter epoch {0} is not above the session's counters; choose a higher epoch")]
    EpochTooLow(u32),
    /// The local index is in use by another peer's session here.
    #[error("session index already in use")]
    IndexInUse,
}

impl<R: CryptoRngCore> Node<R> {
    /// Every live session, as records for a standby (at `now`).
    pub fn export_session_records(&self, now: Time) -> Vec<SessionRecord> {
        let mut records = Vec::new();
        for (_, peer) in self.peers() {
            for (slot, session) in [
                (SessionSlot::Previous, &peer.previous),
                (SessionSlot::Current, &peer.current),
                (SessionSlot::Next, &peer.next),
            ] {
                let Some(session) = session else { continue };
                records.push(SessionRecord {
                    peer: *peer.public_key(),
                    slot,
                    age: now.saturating_since(session.params().established),
                    state: session.state(),
                    endpoint: peer.endpoint,
                    latest_timestamp: peer.latest_timestamp,
                });
            }
        }
        records
    }

    /// The counter epochs the exported sessions' send counters are in (to choose a higher
    /// one when promoting).
    pub fn epochs_in_use(&self) -> impl Iterator<Item = CounterEpoch> + '_ {
        self.peers().flat_map(|(_, peer)| {
            [&peer.previous, &peer.current, &peer.next]
                .into_iter()
                .flatten()
                .map(|s| CounterEpoch::of_counter(s.next_send_counter()))
        })
    }

    /// Installs a session another node exported, sending from the start of `epoch` (which
    /// must lie above the record's counters). The peer's endpoint and handshake timestamp
    /// come along; no handshake is needed for traffic to continue.
    pub fn import_session_record(
        &mut self,
        record: SessionRecord,
        now: Time,
        epoch: CounterEpoch,
    ) -> Result<PeerId, ImportError> {
        let id = self
            .peer_by_key(&record.peer)
            .ok_or(ImportError::UnknownPeer)?;
        let first_counter = epoch.first_counter();
        if first_counter <= record.state.next_send_counter {
            return Err(ImportError::EpochTooLow(epoch.get()));
        }
        let index = record.state.params.local_index;
        if self.by_index.get(&index).is_some_and(|owner| *owner != id) {
            return Err(ImportError::IndexInUse);
        }
        // The slot's old session (if any) goes: its index must no longer find the peer.
        if let Some(replaced) = self.peers[id.0].session_in(record.slot)
            && replaced != index
        {
            self.by_index.remove(&replaced);
        }
        let mut state = record.state;
        state.params.established =
            Time::from_duration(now.since_origin().saturating_sub(record.age));
        let session = Session::resume(state, id.data_plane(), first_counter);
        let peer = &mut self.peers[id.0];
        match record.slot {
            SessionSlot::Previous => peer.previous = Some(session),
            SessionSlot::Current => peer.current = Some(session),
            SessionSlot::Next => peer.next = Some(session),
        }
        if peer.stats.last_handshake.is_none() {
            peer.stats.last_handshake = Some(Time::from_duration(
                now.since_origin().saturating_sub(record.age),
            ));
        }
        if let Some(endpoint) = record.endpoint {
            peer.endpoint = Some(endpoint);
        }
        if record.latest_timestamp > peer.latest_timestamp {
            peer.latest_timestamp = record.latest_timestamp;
        }
        self.by_index.insert(index, id);
        self.generation += 1;
        Ok(id)
    }

    /// True when `local_index` names a live session here (not just a pending handshake).
    pub fn has_session_index(&self, local_index: u32) -> bool {
        self.by_index
            .get(&local_index)
            .is_some_and(|id| self.peers[id.0].slot_of(local_index).is_some())
    }

    /// The counter epoch of the live session `local_index`, if there is one.
    pub fn session_epoch(&self, local_index: u32) -> Option<CounterEpoch> {
        let id = self.by_index.get(&local_index)?;
        let peer = &self.peers[id.0];
        [&peer.previous, &peer.current, &peer.next]
            .into_iter()
            .flatten()
            .find(|s| s.params().local_index == local_index)
            .map(|s| CounterEpoch::of_counter(s.next_send_counter()))
    }

    /// Drops the live session `local_index` (another node owns it now); true if it was here.
    pub fn yield_session(&mut self, local_index: u32) -> bool {
        let Some(&id) = self.by_index.get(&local_index) else {
            return false;
        };
        let peer = &mut self.peers[id.0];
        let slot = match peer.slot_of(local_index) {
            Some(crate::peer::Slot::Previous) => &mut peer.previous,
            Some(crate::peer::Slot::Current) => &mut peer.current,
            Some(crate::peer::Slot::Next) => &mut peer.next,
            None => return false,
        };
        *slot = None;
        self.by_index.remove(&local_index);
        self.generation += 1;
        true
    }

    /// Erases every session and handshake in flight (a demoted node: its partner owns them).
    pub fn wipe_all_sessions(&mut self) {
        for peer in &mut self.peers {
            peer.wipe();
            peer.unanswered_data_since = None;
            peer.keepalive_owed_since = None;
        }
        self.by_index.clear();
        self.generation += 1;
    }

    /// Makes the node a standby (`true`: starts no handshakes and sends no keepalives) or
    /// an active node again.
    pub fn set_passive(&mut self, passive: bool) {
        self.passive = passive;
    }

    /// Whether the node is a standby.
    pub fn is_passive(&self) -> bool {
        self.passive
    }
}
