//! One session's state as it travels to a standby, and its binary encoding.
//!
//! The encoding is fixed-layout and strict: a version byte, fixed-size fields, presence flags
//! for the optional ones, and nothing after the end. Anything else — wrong version, unknown
//! flag bits or suite, a wrong length, counters past the protocol's limit — is a
//! [`RecordError`], never a panic (the decoder faces whatever the sync channel delivers).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use warpline_dataplane::aead::Suite;
use warpline_dataplane::replay::REJECT_AFTER_MESSAGES;
use warpline_dataplane::session::{SessionParams, SessionState};
use warpline_dataplane::time::Time;
use zeroize::Zeroizing;

use crate::keys::PublicKey;
use crate::tai64n::{TAI64N_LEN, Tai64N};

/// The encoding's version; bumped on any layout change.
pub const RECORD_VERSION: u8 = 1;

const FLAG_WE_INITIATED: u8 = 1;
const FLAG_RECV_HIGHEST: u8 = 1 << 1;
const FLAG_ENDPOINT: u8 = 1 << 2;
const FLAG_TIMESTAMP: u8 = 1 << 3;
const KNOWN_FLAGS: u8 = FLAG_WE_INITIATED | FLAG_RECV_HIGHEST | FLAG_ENDPOINT | FLAG_TIMESTAMP;

/// Which of a peer's keypairs the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSlot {
    /// The one before the current one (still receiving stragglers).
    Previous,
    /// The one in use.
    Current,
    /// A responder's session the initiator has not confirmed yet.
    Next,
}

/// A session and what its peer's state needs with it.
#[derive(Debug)]
pub struct SessionRecord {
    /// The peer (the standby finds it by public key).
    pub peer: PublicKey,
    /// Which keypair of the peer this is.
    pub slot: SessionSlot,
    /// Keys, indices, counters. `params.established` is meaningless across nodes: see `age`.
    pub state: SessionState,
    /// How old the session was when exported (the nodes' clocks are not comparable).
    pub age: Duration,
    /// The peer's endpoint.
    pub endpoint: Option<SocketAddr>,
    /// The newest handshake timestamp accepted from the peer, so the standby refuses replayed
    /// initiations too.
    pub latest_timestamp: Option<Tai64N>,
}

/// Why bytes are not a session record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Too short, too long, or a length that does not match the flags.
    #[error("session record has the wrong length")]
    Length,
    /// Another encoding version.
    #[error("session record version {0} is not supported (expected {RECORD_VERSION})")]
    Version(u8),
    /// Flag bits this version does not define.
    #[error("session record has unknown flags {0:#04x}")]
    Flags(u8),
    /// An unknown slot, suite or address family.
    #[error("session record has an invalid {0}")]
    Field(&'static str),
    /// A counter past the protocol's limit.
    #[error("session record counter is out of range")]
    Counter,
}

fn suite_code(suite: Suite) -> u8 {
    match suite {
        Suite::ChaCha20Poly1305 => 0,
        Suite::Aes256Gcm => 1,
    }
}

fn slot_code(slot: SessionSlot) -> u8 {
    match slot {
        SessionSlot::Previous => 0,
        SessionSlot::Current => 1,
        SessionSlot::Next => 2,
    }
}

impl SessionRecord {
    /// The binary form. Holds keys: the caller must encrypt it on the wire and should wipe it
    /// after sending (it is returned in a zeroizing buffer).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let state = &self.state;
        let mut flags = 0;
        if state.params.we_initiated {
            flags |= FLAG_WE_INITIATED;
        }
        if state.recv_highest.is_some() {
            flags |= FLAG_RECV_HIGHEST;
        }
        if self.endpoint.is_some() {
            flags |= FLAG_ENDPOINT;
        }
        if self.latest_timestamp.is_some() {
            flags |= FLAG_TIMESTAMP;
        }
        let mut out = Zeroizing::new(Vec::with_capacity(160));
        out.push(RECORD_VERSION);
        out.push(flags);
        out.push(slot_code(self.slot));
        out.push(suite_code(state.params.suite));
        out.extend_from_slice(self.peer.as_bytes());
        out.extend_from_slice(&state.params.local_index.to_le_bytes());
        out.extend_from_slice(&state.params.remote_index.to_le_bytes());
        let age_micros = u64::try_from(self.age.as_micros()).unwrap_or(u64::MAX);
        out.extend_from_slice(&age_micros.to_le_bytes());
        out.extend_from_slice(&state.send_key[..]);
        out.extend_from_slice(&state.recv_key[..]);
        out.extend_from_slice(&state.next_send_counter.to_le_bytes());
        if let Some(highest) = state.recv_highest {
            out.extend_from_slice(&highest.to_le_bytes());
        }
        if let Some(endpoint) = self.endpoint {
            match endpoint.ip() {
                IpAddr::V4(v4) => {
                    out.push(4);
                    out.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    out.push(6);
                    out.extend_from_slice(&v6.octets());
                }
            }
            out.extend_from_slice(&endpoint.port().to_le_bytes());
        }
        if let Some(timestamp) = self.latest_timestamp {
            out.extend_from_slice(&timestamp.to_bytes());
        }
        out
    }

    /// Parses the binary form.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut input = Reader(bytes);
        let version = input.byte()?;
        if version != RECORD_VERSION {
            return Err(RecordError::Version(version));
        }
        let flags = input.byte()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(RecordError::Flags(flags));
        }
        let slot = match input.byte()? {
            0 => SessionSlot::Previous,
            1 => SessionSlot::Current,
            2 => SessionSlot::Next,
            _ => return Err(RecordError::Field("slot")),
        };
        let suite = match input.byte()? {
            0 => Suite::ChaCha20Poly1305,
            1 => Suite::Aes256Gcm,
            _ => return Err(RecordError::Field("suite")),
        };
        let peer = PublicKey(input.array()?);
        let local_index = u32::from_le_bytes(input.array()?);
        let remote_index = u32::from_le_bytes(input.array()?);
        let age = Duration::from_micros(u64::from_le_bytes(input.array()?));
        let send_key = Zeroizing::new(input.array()?);
        let recv_key = Zeroizing::new(input.array()?);
        let next_send_counter = u64::from_le_bytes(input.array()?);
        let recv_highest = if flags & FLAG_RECV_HIGHEST != 0 {
            Some(u64::from_le_bytes(input.array()?))
        } else {
            None
        };
        if next_send_counter > REJECT_AFTER_MESSAGES
            || recv_highest.is_some_and(|h| h >= REJECT_AFTER_MESSAGES)
        {
            return Err(RecordError::Counter);
        }
        let endpoint = if flags & FLAG_ENDPOINT != 0 {
            let ip = match input.byte()? {
                4 => IpAddr::from(input.array::<4>()?),
                6 => IpAddr::from(input.array::<16>()?),
                _ => return Err(RecordError::Field("address family")),
            };
            Some(SocketAddr::new(ip, u16::from_le_bytes(input.array()?)))
        } else {
            None
        };
        let latest_timestamp = if flags & FLAG_TIMESTAMP != 0 {
            Some(Tai64N::from_bytes(&input.array::<TAI64N_LEN>()?))
        } else {
            None
        };
        if !input.0.is_empty() {
            return Err(RecordError::Length);
        }
        Ok(SessionRecord {
            peer,
            slot,
            state: SessionState {
                params: SessionParams {
                    local_index,
                    remote_index,
                    suite,
                    we_initiated: flags & FLAG_WE_INITIATED != 0,
                    established: Time::ZERO,
                },
                send_key,
                recv_key,
                next_send_counter,
                recv_highest,
            },
            age,
            endpoint,
            latest_timestamp,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, RecordError> {
        let (&first, rest) = self.0.split_first().ok_or(RecordError::Length)?;
        self.0 = rest;
        Ok(first)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(RecordError::Length)?;
        self.0 = rest;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record(recv_highest: Option<u64>, endpoint: Option<SocketAddr>) -> SessionRecord {
        SessionRecord {
            peer: PublicKey([9; 32]),
            slot: SessionSlot::Current,
            state: SessionState {
                params: SessionParams {
                    local_index: 7,
                    remote_index: 0xdead_beef,
                    suite: Suite::Aes256Gcm,
                    we_initiated: true,
                    established: Time::ZERO,
                },
                send_key: Zeroizing::new([1; 32]),
                recv_key: Zeroizing::new([2; 32]),
                next_send_counter: 12_345,
                recv_highest,
            },
            age: Duration::from_millis(4_321),
            endpoint,
            latest_timestamp: Some(Tai64N::from_unix(Duration::from_secs(1_700_000_000))),
        }
    }

    #[test]
    fn records_round_trip() {
        for (highest, endpoint) in [
            (None, None),
            (Some(99), Some("192.0.2.1:51820".parse().unwrap())),
            (Some(0), Some("[2001:db8::1]:443".parse().unwrap())),
        ] {
            let original = record(highest, endpoint);
            let decoded = SessionRecord::decode(&original.encode()).unwrap();
            assert_eq!(decoded.peer, original.peer);
            assert_eq!(decoded.slot, original.slot);
            assert_eq!(decoded.state.params.remote_index, 0xdead_beef);
            assert_eq!(decoded.state.params.suite, Suite::Aes256Gcm);
            assert!(decoded.state.params.we_initiated);
            assert_eq!(*decoded.state.send_key, [1; 32]);
            assert_eq!(*decoded.state.recv_key, [2; 32]);
            assert_eq!(decoded.state.next_send_counter, 12_345);
            assert_eq!(decoded.state.recv_highest, highest);
            assert_eq!(decoded.age, original.age);
            assert_eq!(decoded.endpoint, endpoint);
            assert_eq!(decoded.latest_timestamp, original.latest_timestamp);
        }
    }

    #[test]
    fn bad_records_are_errors() {
        let good = record(Some(5), Some("192.0.2.1:1".parse().unwrap())).encode();
        let mut wrong_version = good.to_vec();
        wrong_version[0] = 2;
        assert_eq!(
            SessionRecord::decode(&wrong_version).err(),
            Some(RecordError::Version(2))
        );
        let mut unknown_flag = good.to_vec();
        unknown_flag[1] |= 0x80;
        assert!(matches!(
            SessionRecord::decode(&unknown_flag),
            Err(RecordError::Flags(_))
        ));
        let mut bad_suite = good.to_vec();
        bad_suite[3] = 9;
        assert_eq!(
            SessionRecord::decode(&bad_suite).err(),
            Some(RecordError::Field("suite"))
        );
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert_eq!(
            SessionRecord::decode(&trailing).err(),
            Some(RecordError::Length)
        );
        assert_eq!(
            SessionRecord::decode(&good[..good.len() - 1]).err(),
            Some(RecordError::Length)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SessionRecord::decode(&bytes);
        }

        #[test]
        fn every_truncation_of_a_record_is_an_error(cut in 0usize..145) {
            let good = record(Some(5), Some("192.0.2.1:1".parse().unwrap())).encode();
            prop_assume!(cut < good.len());
            prop_assert!(SessionRecord::decode(&good[..cut]).is_err());
        }
    }
}
