//! One established WireGuard session (a keypair): what a worker needs to seal and open
//! transport data. Sans-IO: the caller passes the time and owns the buffers.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::aead::{Suite, TAG_LEN};
use crate::replay::ReplayError;
use crate::sessions::{PeerId, SharedSession, TrafficTotals};
use crate::time::Time;
use crate::wire::wireguard::{TRANSPORT_HEADER_LEN, Transport, padded_len, write_transport_header};

/// Raw material for a session, as the handshake produced it. The caller's copy of the keys
/// is zeroized by [`Session::new`].
#[derive(Debug)]
pub struct SessionParams {
    /// Index we chose; the peer puts it in every message it sends us.
    pub local_index: u32,
    /// Index the peer chose; we put it in every message we send.
    pub remote_index: u32,
    /// AEAD suite negotiated for the session.
    pub suite: Suite,
    /// True when this node sent the initiation.
    pub we_initiated: bool,
    /// When the handshake completed.
    pub established: Time,
}

/// Why a packet could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// The send counter reached the reject limit: the session must not send again.
    CounterExhausted,
    /// The buffer lacks room for the header, padding and tag.
    BufferTooSmall,
}

/// Why a transport message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Bad type or too short.
    Malformed,
    /// The counter was seen before or is too old for the window.
    Replayed,
    /// The counter reached the reject limit.
    CounterExhausted,
    /// Authentication failed: tampered, or not for this key.
    BadTag,
}

impl From<ReplayError> for OpenError {
    fn from(error: ReplayError) -> Self {
        match error {
            ReplayError::LimitReached => OpenError::CounterExhausted,
            _ => OpenError::Replayed,
        }
    }
}

/// A keypair in use by the control plane: the same [`SharedSession`] the data-plane workers
/// seal and open with, so every sender takes its counter from one atomic and every receiver
/// checks one replay window. No (key, counter) pair can be used twice, whoever sends.
pub struct Session {
    params: SessionParams,
    shared: Arc<SharedSession>,
    traffic_seen: TrafficTotals,
    /// The raw keys, kept (zeroized on drop) only so a standby can be handed the session.
    raw_keys: Zeroizing<[[u8; 32]; 2]>,
}

/// Everything needed to resume a session elsewhere (a standby gateway): the handshake facts,
/// both keys, how far the send counter got and the highest counter received. Keys are
/// zeroized on drop and never printed.
pub struct SessionState {
    /// Handshake facts; `established` is the time at the exporting node.
    pub params: SessionParams,
    /// The sending key.
    pub send_key: Zeroizing<[u8; 32]>,
    /// The receiving key.
    pub recv_key: Zeroizing<[u8; 32]>,
    /// The next counter the exporting node would have sent.
    pub next_send_counter: u64,
    /// The highest counter the exporting node accepted.
    pub recv_highest: Option<u64>,
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("params", &self.params)
            .field("next_send_counter", &self.next_send_counter)
            .field("recv_highest", &self.recv_highest)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("params", &self.params)
            .field("next_send_counter", &self.next_send_counter())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Expands the keys and zeroizes the caller's raw copies. `peer` is the data plane's name
    /// for the session's peer.
    pub fn new(
        params: SessionParams,
        peer: PeerId,
        send: &mut [u8; 32],
        recv: &mut [u8; 32],
    ) -> Self {
        let raw_keys = Zeroizing::new([*send, *recv]);
        let shared = Arc::new(SharedSession::new(&params, peer, send, recv, 0));
        Self {
            params,
            shared,
            traffic_seen: TrafficTotals::default(),
            raw_keys,
        }
    }

    /// Resumes a session another node exported: sending starts at `first_send_counter` (the
    /// start of this node's counter epoch, far above anything the exporter could have used)
    /// and receiving refuses everything up to the exporter's highest counter.
    pub fn resume(state: SessionState, peer: PeerId, first_send_counter: u64) -> Self {
        let SessionState {
            params,
            send_key,
            recv_key,
            recv_highest,
            ..
        } = state;
        let raw_keys = Zeroizing::new([*send_key, *recv_key]);
        let (mut send, mut recv) = (*send_key, *recv_key);
        let shared = Arc::new(SharedSession::resumed(
            &params,
            peer,
            &mut send,
            &mut recv,
            first_send_counter,
            recv_highest,
        ));
        Self {
            params,
            shared,
            traffic_seen: TrafficTotals::default(),
            raw_keys,
        }
    }

    /// The state a standby needs to resume this session.
    pub fn state(&self) -> SessionState {
        SessionState {
            params: SessionParams {
                local_index: self.params.local_index,
                remote_index: self.params.remote_index,
                suite: self.params.suite,
                we_initiated: self.params.we_initiated,
                established: self.params.established,
            },
            send_key: Zeroizing::new(self.raw_keys[0]),
            recv_key: Zeroizing::new(self.raw_keys[1]),
            next_send_counter: self.shared.next_send_counter(),
            recv_highest: self.shared.replay().highest(),
        }
    }

    /// The handshake facts this session was made from.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// The state shared with the data plane, to publish in its session table.
    pub fn shared(&self) -> &Arc<SharedSession> {
        &self.shared
    }

    /// What the data plane moved on this session since the previous call.
    pub fn take_data_plane_traffic(&mut self) -> TrafficTotals {
        let now = self.shared.traffic();
        let delta = now.since(&self.traffic_seen);
        self.traffic_seen = now;
        delta
    }

    /// The counter the next sealed message will carry (also: messages sent so far).
    pub fn next_send_counter(&self) -> u64 {
        self.shared.next_send_counter()
    }

    /// Seals the payload at `buf[16..16 + payload_len]` in place: zero-pads it (never past
    /// `mtu`), writes the header in front and the tag behind. Returns the message length.
    pub fn seal(
        &mut self,
        buf: &mut [u8],
        payload_len: usize,
        mtu: usize,
    ) -> Result<usize, SealError> {
        let padded = padded_len(payload_len, mtu);
        if buf.len() < TRANSPORT_HEADER_LEN + padded + TAG_LEN {
            return Err(SealError::BufferTooSmall);
        }
        let counter = self
            .shared
            .take_send_counter()
            .ok_or(SealError::CounterExhausted)?;
        write_transport_header(buf, self.params.remote_index, counter)
            .map_err(|_| SealError::BufferTooSmall)?;
        let body = &mut buf[TRANSPORT_HEADER_LEN..];
        body[payload_len..padded].fill(0);
        let sealed = self
            .shared
            .send_key()
            .seal_in_place(counter, &[], body, padded)
            .map_err(|_| SealError::BufferTooSmall)?;
        Ok(TRANSPORT_HEADER_LEN + sealed)
    }

    /// Opens a transport message in place. On success the (still padded) plaintext is at
    /// `message[16..16 + len]`; returns `(counter, len)`. The replay window is updated only
    /// after the tag authenticated, so forged packets cannot move it.
    pub fn open(&mut self, message: &mut [u8]) -> Result<(u64, usize), OpenError> {
        let mut transport = Transport::new_checked(message).map_err(|_| OpenError::Malformed)?;
        let counter = transport.counter();
        let replay = self.shared.replay();
        replay.check(counter)?;
        let len = self
            .shared
            .recv_key()
            .open_in_place(counter, &[], transport.ciphertext_mut())
            .map_err(|_| OpenError::BadTag)?;
        replay.accept(counter)?;
        Ok((counter, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(suite: Suite) -> (Session, Session) {
        let params = |local_index, remote_index, we_initiated| SessionParams {
            local_index,
            remote_index,
            suite,
            we_initiated,
            established: Time::ZERO,
        };
        let a = Session::new(params(1, 2, true), PeerId(0), &mut [1; 32], &mut [2; 32]);
        let b = Session::new(params(2, 1, false), PeerId(0), &mut [2; 32], &mut [1; 32]);
        (a, b)
    }

    #[test]
    fn seal_then_open_pads_and_counts() {
        let (mut a, mut b) = pair(Suite::ChaCha20Poly1305);
        let mut buf = [0u8; 128];
        buf[16..21].copy_from_slice(b"hello");
        let len = a.seal(&mut buf, 5, 1420).unwrap();
        assert_eq!(len, 16 + 16 + 16);
        assert_eq!(u32::from_le_bytes(buf[4..8].try_into().unwrap()), 2);
        let (counter, plain) = b.open(&mut buf[..len]).unwrap();
        assert_eq!((counter, plain), (0, 16));
        assert_eq!(&buf[16..21], b"hello");
        assert_eq!(&buf[21..32], &[0u8; 11]);
        assert_eq!(a.next_send_counter(), 1);
    }

    #[test]
    fn replays_and_forgeries_are_refused_without_moving_the_window() {
        let (mut a, mut b) = pair(Suite::Aes256Gcm);
        let mut first = [0u8; 64];
        let len = a.seal(&mut first, 0, 1420).unwrap();
        let mut copy = first;
        b.open(&mut first[..len]).unwrap();
        assert_eq!(b.open(&mut copy[..len]), Err(OpenError::Replayed));
        let mut forged = [0u8; 64];
        let len = a.seal(&mut forged, 0, 1420).unwrap();
        forged[8..16].copy_from_slice(&100_000u64.to_le_bytes());
        assert_eq!(b.open(&mut forged[..len]), Err(OpenError::BadTag));
        let mut next = [0u8; 64];
        let len = a.seal(&mut next, 0, 1420).unwrap();
        assert_eq!(b.open(&mut next[..len]).map(|r| r.0), Ok(2));
    }

    #[test]
    fn exhausted_counters_stop_sending_and_small_buffers_are_errors() {
        let (mut a, _) = pair(Suite::ChaCha20Poly1305);
        assert_eq!(
            a.seal(&mut [0u8; 20], 0, 1420),
            Err(SealError::BufferTooSmall)
        );
        a.shared()
            .set_next_send_counter(crate::replay::REJECT_AFTER_MESSAGES);
        assert_eq!(
            a.seal(&mut [0u8; 64], 0, 1420),
            Err(SealError::CounterExhausted)
        );
        let (_, mut b) = pair(Suite::ChaCha20Poly1305);
        assert_eq!(b.open(&mut [4u8; 10]), Err(OpenError::Malformed));
    }
}
