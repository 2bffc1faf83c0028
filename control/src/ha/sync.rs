//! The sync channel between the nodes of a gateway pair: session records from the active node
//! to the standby, over TCP, encrypted and authenticated with keys of its own.
//!
//! Security: `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` (the `snow` crate, a maintained Noise
//! implementation — the sync channel needs nothing WireGuard-specific, so the hand-written
//! IKpsk2 of [`crate::noise`] is not reused). Both nodes hold the same 32-byte pre-shared key
//! (`HaKey`); an ephemeral-ephemeral DH gives each connection fresh keys, so a recording of
//! the channel stays sealed even if `HaKey` leaks later. Without the key the handshake fails.
//!
//! Framing: each Noise message goes as a 2-byte big-endian length and the ciphertext.
//! Inside, a [`SyncMessage`]: a type byte and a fixed body. Everything received is checked;
//! anything malformed is a [`SyncError`] that ends the connection, never a panic.

use std::io::{Read, Write};

use zeroize::Zeroizing;

use super::record::{RecordError, SessionRecord};

/// The Noise protocol of the channel.
pub const NOISE_PROTOCOL: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// The channel's own version, sent in [`SyncMessage::Hello`].
pub const SYNC_VERSION: u8 = 1;
/// The largest Noise message.
const MAX_FRAME: usize = 65_535;
/// Noise's tag.
const TAG_LEN: usize = 16;

/// What the nodes tell each other.
#[derive(Debug)]
pub enum SyncMessage {
    /// First message each way: who is talking.
    Hello {
        /// The sender's node id (0..16, also its counter-epoch tag).
        node_id: u8,
        /// [`SYNC_VERSION`].
        version: u8,
    },
    /// A full snapshot follows: `count` records, then [`SyncMessage::SnapshotEnd`].
    SnapshotBegin {
        /// Records in the snapshot.
        count: u32,
    },
    /// One session record (encoded; holds keys, wiped on drop).
    Record(Zeroizing<Vec<u8>>),
    /// The snapshot is complete: it replaces the previous one.
    SnapshotEnd,
    /// The sender is alive.
    Heartbeat {
        /// Increases by one per heartbeat.
        sequence: u64,
    },
    /// The sender no longer holds the session with this local index (expired, rotated out,
    /// wiped, or handed to another node).
    Retire {
        /// The session's local index.
        local_index: u32,
    },
    /// The sender's role, with every heartbeat interval.
    Status {
        /// Its node id.
        node_id: u8,
        /// Its `HaPriority` (builtin mode; 0 otherwise).
        priority: u8,
        /// Whether it is active (owns sessions; holds the virtual IPs in builtin mode).
        active: bool,
        /// The highest counter epoch it has seen or sent in.
        epoch: u32,
    },
}

/// Why the channel failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The TCP connection failed or closed.
    #[error("sync connection: {0}")]
    Io(#[from] std::io::Error),
    /// The Noise handshake or a message failed to authenticate (wrong `HaKey`, or tampering).
    #[error("sync channel authentication failed (is HaKey the same on both nodes?)")]
    Authentication,
    /// A message that is not a valid [`SyncMessage`].
    #[error("malformed sync message: {0}")]
    Malformed(&'static str),
    /// A record inside a message is invalid.
    #[error("bad session record: {0}")]
    Record(#[from] RecordError),
    /// The other node speaks another version.
    #[error("the other node speaks sync version {0} (this one {SYNC_VERSION})")]
    Version(u8),
}

impl SyncMessage {
    /// The plaintext form.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        match self {
            SyncMessage::Hello { node_id, version } => {
                out.extend_from_slice(&[1, *node_id, *version])
            }
            SyncMessage::SnapshotBegin { count } => {
                out.push(2);
                out.extend_from_slice(&count.to_be_bytes());
            }
            SyncMessage::Record(bytes) => {
                out.push(3);
                out.extend_from_slice(bytes);
            }
            SyncMessage::SnapshotEnd => out.push(4),
            SyncMessage::Heartbeat { sequence } => {
                out.push(5);
                out.extend_from_slice(&sequence.to_be_bytes());
            }
            SyncMessage::Retire { local_index } => {
                out.push(6);
                out.extend_from_slice(&local_index.to_be_bytes());
            }
            SyncMessage::Status {
                node_id,
                priority,
                active,
                epoch,
            } => {
                out.extend_from_slice(&[7, *node_id, *priority, u8::from(*active)]);
                out.extend_from_slice(&epoch.to_be_bytes());
            }
        }
        out
    }

    /// Parses the plaintext form.
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        let (&kind, body) = bytes
            .split_first()
            .ok_or(SyncError::Malformed("empty message"))?;
        let exact = |len: usize| {
            if body.len() == len {
                Ok(())
            } else {
                Err(SyncError::Malformed("wrong length for its type"))
            }
        };
        Ok(match kind {
            1 => {
                exact(2)?;
                SyncMessage::Hello {
                    node_id: body[0],
                    version: body[1],
                }
            }
            2 => {
                exact(4)?;
                SyncMessage::SnapshotBegin {
                    count: u32::from_be_bytes(body.try_into().expect("4 bytes")),
                }
            }
            3 => {
                // Checked now, so a bad record is refused where it arrives.
                SessionRecord::decode(body)?;
                SyncMessage::Record(Zeroizing::new(body.to_vec()))
            }
            4 => {
                exact(0)?;
                SyncMessage::SnapshotEnd
            }
            5 => {
                exact(8)?;
                SyncMessage::Heartbeat {
                    sequence: u64::from_be_bytes(body.try_into().expect("8 bytes")),
                }
            }
            6 => {
                exact(4)?;
                SyncMessage::Retire {
                    local_index: u32::from_be_bytes(body.try_into().expect("4 bytes")),
                }
            }
            7 => {
                exact(7)?;
                if body[2] > 1 {
                    return Err(SyncError::Malformed("status flag is neither 0 nor 1"));
                }
                SyncMessage::Status {
                    node_id: body[0],
                    priority: body[1],
                    active: body[2] == 1,
                    epoch: u32::from_be_bytes(body[3..7].try_into().expect("4 bytes")),
                }
            }
            _ => return Err(SyncError::Malformed("unknown message type")),
        })
    }
}

/// An established, encrypted sync connection.
pub struct SyncChannel<S> {
    stream: S,
    noise: snow::TransportState,
    frame: Zeroizing<Vec<u8>>,
}

impl<S> std::fmt::Debug for SyncChannel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncChannel").finish_non_exhaustive()
    }
}

fn builder(key: &[u8; 32]) -> snow::Builder<'_> {
    snow::Builder::new(NOISE_PROTOCOL.parse().expect("a valid Noise protocol name"))
        .psk(0, key)
        .expect("psk slot 0 exists in NNpsk0")
}

fn write_frame(stream: &mut impl Write, bytes: &[u8]) -> Result<(), SyncError> {
    let len = u16::try_from(bytes.len()).map_err(|_| SyncError::Malformed("frame too long"))?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(bytes)?;
    stream.flush()?;
    Ok(())
}

fn read_frame(stream: &mut impl Read, into: &mut Vec<u8>) -> Result<(), SyncError> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    into.resize(usize::from(u16::from_be_bytes(len)), 0);
    stream.read_exact(into)?;
    Ok(())
}

impl<S: Read + Write> SyncChannel<S> {
    /// Opens the channel as the connecting node (the standby) over `stream`.
    pub fn connect(mut stream: S, key: &[u8; 32]) -> Result<Self, SyncError> {
        let mut handshake = builder(key)
            .build_initiator()
            .map_err(|_| SyncError::Authentication)?;
        let mut buf = Zeroizing::new(vec![0u8; MAX_FRAME]);
        let len = handshake
            .write_message(&[], &mut buf)
            .map_err(|_| SyncError::Authentication)?;
        write_frame(&mut stream, &buf[..len])?;
        let mut frame = Zeroizing::new(Vec::new());
        read_frame(&mut stream, &mut frame)?;
        handshake
            .read_message(&frame, &mut buf)
            .map_err(|_| SyncError::Authentication)?;
        let noise = handshake
            .into_transport_mode()
            .map_err(|_| SyncError::Authentication)?;
        Ok(Self {
            stream,
            noise,
            frame,
        })
    }

    /// Opens the channel as the accepting node (the active one) over `stream`.
    pub fn accept(mut stream: S, key: &[u8; 32]) -> Result<Self, SyncError> {
        let mut handshake = builder(key)
            .build_responder()
            .map_err(|_| SyncError::Authentication)?;
        let mut buf = Zeroizing::new(vec![0u8; MAX_FRAME]);
        let mut frame = Zeroizing::new(Vec::new());
        read_frame(&mut stream, &mut frame)?;
        handshake
            .read_message(&frame, &mut buf)
            .map_err(|_| SyncError::Authentication)?;
        let len = handshake
            .write_message(&[], &mut buf)
            .map_err(|_| SyncError::Authentication)?;
        write_frame(&mut stream, &buf[..len])?;
        let noise = handshake
            .into_transport_mode()
            .map_err(|_| SyncError::Authentication)?;
        Ok(Self {
            stream,
            noise,
            frame,
        })
    }

    /// Seals and sends one message.
    pub fn send(&mut self, message: &SyncMessage) -> Result<(), SyncError> {
        let plain = message.encode();
        let mut sealed = Zeroizing::new(vec![0u8; plain.len() + TAG_LEN]);
        let len = self
            .noise
            .write_message(&plain, &mut sealed)
            .map_err(|_| SyncError::Malformed("message too long"))?;
        write_frame(&mut self.stream, &sealed[..len])
    }

    /// Receives, authenticates and parses one message.
    pub fn receive(&mut self) -> Result<SyncMessage, SyncError> {
        read_frame(&mut self.stream, &mut self.frame)?;
        let mut plain = Zeroizing::new(vec![0u8; self.frame.len()]);
        let len = self
            .noise
            .read_message(&self.frame, &mut plain)
            .map_err(|_| SyncError::Authentication)?;
        SyncMessage::decode(&plain[..len])
    }

    /// The underlying stream (for timeouts).
    pub fn stream(&self) -> &S {
        &self.stream
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn messages_cross_an_authenticated_channel_and_a_wrong_key_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let active = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut channel = SyncChannel::accept(stream, &[7; 32]).unwrap();
            channel
                .send(&SyncMessage::Hello {
                    node_id: 0,
                    version: SYNC_VERSION,
                })
                .unwrap();
            channel
                .send(&SyncMessage::Heartbeat { sequence: 42 })
                .unwrap();
            // A second connection with the wrong key must fail to authenticate.
            let (stream, _) = listener.accept().unwrap();
            SyncChannel::accept(stream, &[7; 32]).err()
        });
        let mut standby =
            SyncChannel::connect(TcpStream::connect(address).unwrap(), &[7; 32]).unwrap();
        assert!(matches!(
            standby.receive().unwrap(),
            SyncMessage::Hello {
                node_id: 0,
                version: SYNC_VERSION
            }
        ));
        assert!(matches!(
            standby.receive().unwrap(),
            SyncMessage::Heartbeat { sequence: 42 }
        ));
        let wrong = SyncChannel::connect(TcpStream::connect(address).unwrap(), &[8; 32]);
        assert!(wrong.is_err(), "a wrong HaKey gave a working channel");
        assert!(matches!(
            active.join().unwrap(),
            Some(SyncError::Authentication)
        ));
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bytes in [
            &[][..],
            &[9],
            &[1, 0],
            &[2, 0, 0],
            &[4, 0],
            &[5, 1, 2],
            &[6, 1, 2, 3],
            &[7, 1, 2],
            &[7, 1, 2, 2, 0, 0, 0, 1],
            &[7, 1, 2, 1, 0, 0, 0],
            &[3, 1, 2],
        ] {
            assert!(SyncMessage::decode(bytes).is_err(), "{bytes:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_plaintext_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SyncMessage::decode(&bytes);
        }
    }
}
