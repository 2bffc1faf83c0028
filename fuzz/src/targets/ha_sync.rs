//! The HA sync protocol (`control::ha`): what a standby reads from the sync channel and
//! installs, and the channel's handshake on hostile bytes.
//!
//! Modes (first input byte):
//!
//! - **message**: [`SyncMessage::decode`]. An accepted message re-encodes to exactly the
//!   input (the codec is strict and fixed-layout, so there is one encoding per message), and a
//!   `Record` message carries a record that decodes.
//! - **record**: [`SessionRecord::decode`]. An accepted record re-encodes to exactly the input.
//! - **import**: a record is decoded and imported into a standby node
//!   ([`Node::import_session_record`]) with an epoch the input picks. The import is refused
//!   exactly when it must be (unknown peer, epoch not above the record's send counter); an
//!   imported session sends only counters inside the chosen epoch; and no transport message
//!   at or below the record's highest received counter is accepted again (the failover replay
//!   guarantee in `control/src/ha/mod.rs`), and one that was accepted is a replay the second
//!   time.
//! - **channel**: [`SyncChannel::accept`] and [`SyncChannel::connect`] over a stream of
//!   hostile bytes. Nobody without the key can complete the handshake, so both must fail
//!   cleanly (never panic, never hang on a finite stream).
//! - **cluster**: a sequence of steps drives a [`Cluster`] and its node: messages from two
//!   partners (whatever decodes), time passing, promote, demote, a partner lost, a packet
//!   for an index arriving, publishing. Nothing panics; a promotion leaves no record held
//!   and sends every session from an epoch above all it had seen; what the node publishes
//!   decodes again; a demoted node owns nothing.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use warpline_control::config::HaMode;
use warpline_control::ha::{
    Cluster, CounterEpoch, SessionRecord, SessionSlot, SyncChannel, SyncMessage,
};
use warpline_control::keys::{PrivateKey, PublicKey};
use warpline_control::node::{DropReason, ImportError, Node, NodeConfig, PeerConfig, Received};
use warpline_dataplane::aead::PacketKey;
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::wireguard::{
    TAG_LEN, TRANSPORT_HEADER_LEN, Transport, write_transport_header,
};

use crate::input::{Reader, Writer};
use crate::rng::SeededRng;

/// The standby's static key (shared with the active node, as an HA pair does).
pub const GATEWAY_KEY: [u8; 32] = [0x47; 32];
/// The two peers the standby has configured.
pub const PEER_KEYS: [[u8; 32]; 2] = [[0x49; 32], [0x50; 32]];
/// Where the peers' packets come from.
const PEER_ADDRESS: &str = "198.51.100.7:51820";

/// Encodes a seed for the message mode.
pub fn encode_message(message: &[u8]) -> Vec<u8> {
    Writer::new().u8(0).bytes(message).finish()
}

/// Encodes a seed for the record mode.
pub fn encode_record(record: &[u8]) -> Vec<u8> {
    Writer::new().u8(1).bytes(record).finish()
}

/// Encodes a seed for the import mode: the epoch, the time in seconds, the counters to
/// receive, then the record.
pub fn encode_import(epoch: u32, now_secs: u16, counters: [u64; 2], record: &[u8]) -> Vec<u8> {
    Writer::new()
        .u8(2)
        .u32(epoch)
        .u16(now_secs)
        .u64(counters[0])
        .u64(counters[1])
        .bytes(record)
        .finish()
}

/// One step of the cluster mode.
#[derive(Debug)]
pub enum ClusterStep<'a> {
    /// A message (its plaintext encoding) from partner 0 or 1.
    Message(u8, &'a [u8]),
    /// Time passes by this many milliseconds.
    Wait(u16),
    /// `warpline ha promote`.
    Promote,
    /// `warpline ha demote`.
    Demote,
    /// The partner's connection is lost.
    Lost(u8),
    /// A transport packet for this receiver index arrives.
    Arrived(u32),
    /// The node publishes its changes.
    Publish,
}

/// Encodes a seed for the cluster mode: active-active when `active_active`, then the steps.
pub fn encode_cluster(active_active: bool, steps: &[ClusterStep<'_>]) -> Vec<u8> {
    let mut writer = Writer::new();
    writer.u8(4).u8(u8::from(active_active));
    for step in steps {
        match step {
            ClusterStep::Message(partner, bytes) => writer.u8(0).u8(*partner).chunk(bytes),
            ClusterStep::Wait(ms) => writer.u8(1).u16(*ms),
            ClusterStep::Promote => writer.u8(2),
            ClusterStep::Demote => writer.u8(3),
            ClusterStep::Lost(partner) => writer.u8(4).u8(*partner),
            ClusterStep::Arrived(index) => writer.u8(5).u32(*index),
            ClusterStep::Publish => writer.u8(6),
        };
    }
    writer.finish()
}

/// The public key of one of the standby's peers.
pub fn peer_public_key(index: usize) -> PublicKey {
    PrivateKey::from_bytes(PEER_KEYS[index]).public_key()
}

/// One input: see the module docs.
pub fn run(data: &[u8]) {
    let mut input = Reader::new(data);
    match input.u8() % 5 {
        0 => check_message(input.rest()),
        1 => check_record(input.rest()),
        2 => check_import(&mut input),
        3 => check_channel(input.rest()),
        _ => check_cluster(&mut input),
    }
}

fn standby_node() -> Node<SeededRng> {
    let mut node = Node::new(
        NodeConfig::new(
            PrivateKey::from_bytes(GATEWAY_KEY),
            Duration::from_secs(1_700_000_000),
        ),
        SeededRng::new(7),
    );
    for index in 0..PEER_KEYS.len() {
        let mut peer = PeerConfig::new(peer_public_key(index));
        peer.endpoint = Some(PEER_ADDRESS.parse().expect("valid"));
        node.add_peer(peer).expect("distinct keys");
    }
    node
}

fn check_cluster(input: &mut Reader<'_>) {
    let mode = if input.u8() & 1 == 1 {
        HaMode::ActiveActive
    } else {
        HaMode::Keepalived
    };
    let mut node = standby_node();
    let mut cluster = Cluster::new(3, mode, Duration::from_millis(100));
    cluster.start(&mut node);
    let mut now = Time::ZERO;
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 7 {
            0 => {
                let partner = usize::from(input.u8() % 2);
                if let Ok(message) = SyncMessage::decode(input.chunk()) {
                    let _ = cluster.receive(now, partner, message, &mut node);
                }
            }
            1 => now += Duration::from_millis(u64::from(input.u16())),
            2 => {
                let seen_before: Vec<CounterEpoch> = node
                    .epochs_in_use()
                    .chain([cluster.highest_epoch()])
                    .collect();
                let taken = cluster.promote(now, &mut node);
                assert_eq!(cluster.records_held(), 0, "a promotion left records behind");
                if taken > 0 {
                    let epoch = cluster.highest_epoch();
                    assert!(
                        seen_before.iter().all(|seen| *seen < epoch),
                        "takeover epoch {epoch:?} not above {seen_before:?}"
                    );
                    assert_eq!(epoch.get() % 16, 3, "epoch not tagged with the node id");
                }
            }
            3 => {
                cluster.demote(&mut node);
                assert!(
                    node.export_session_records(now).is_empty(),
                    "a demoted node owns sessions"
                );
            }
            4 => {
                let partner = usize::from(input.u8() % 2);
                cluster.partner_lost(now, partner, &mut node);
            }
            5 => {
                let index = input.u32();
                if !node.has_session_index(index) {
                    cluster.transport_arrived(now, index, &mut node);
                }
            }
            _ => {
                for message in cluster.changes_to_publish(now, &node) {
                    let bytes = message.encode();
                    SyncMessage::decode(&bytes).expect("a published message decodes");
                }
            }
        }
        cluster.poll(now, &mut node);
    }
}

fn check_message(bytes: &[u8]) {
    let Ok(message) = SyncMessage::decode(bytes) else {
        return;
    };
    assert_eq!(
        &message.encode()[..],
        bytes,
        "sync message does not re-encode: {message:?}"
    );
    if let SyncMessage::Record(record) = &message {
        SessionRecord::decode(record).expect("a decoded Record message holds a valid record");
    }
}

fn check_record(bytes: &[u8]) {
    let Ok(record) = SessionRecord::decode(bytes) else {
        return;
    };
    assert_eq!(
        &record.encode()[..],
        bytes,
        "session record does not re-encode: {record:?}"
    );
}

fn check_import(input: &mut Reader<'_>) {
    let epoch = CounterEpoch::of_counter(u64::from(input.u32()) << 32);
    let now = Time::from_secs(u64::from(input.u16()));
    let probes = [input.u64(), input.u64()];
    let Ok(record) = SessionRecord::decode(input.rest()) else {
        return;
    };
    let mut standby = standby_node();

    let known_peer = standby.peer_by_key(&record.peer);
    let first_counter = epoch.first_counter();
    let next_send_counter = record.state.next_send_counter;
    let recv_highest = record.state.recv_highest;
    let local_index = record.state.params.local_index;
    let remote_index = record.state.params.remote_index;
    let slot = record.slot;
    let recv_key = PacketKey::new(record.state.params.suite, &record.state.recv_key);
    let generation = standby.generation();

    let result = standby.import_session_record(record, now, epoch);
    let id = match (result, known_peer) {
        (Err(ImportError::UnknownPeer), None) => return,
        (Err(ImportError::EpochTooLow(_)), Some(_)) => {
            assert!(first_counter <= next_send_counter);
            assert_eq!(
                standby.generation(),
                generation,
                "a refused import changed state"
            );
            return;
        }
        (Ok(id), Some(known)) => {
            assert_eq!(id, known);
            assert!(
                first_counter > next_send_counter,
                "imported with an epoch too low"
            );
            id
        }
        (result, known) => panic!("import gave {result:?} for a record of peer {known:?}"),
    };

    // Sending: only counters of the chosen epoch, to the record's remote index.
    if slot == SessionSlot::Current {
        let packet = inner_packet();
        let mut out = vec![0u8; packet.len() + TRANSPORT_HEADER_LEN + 64];
        if let Ok(Some((_, len))) = standby.send_packet(now, id, &packet, &mut out) {
            let message = Transport::new_checked(&out[..len]).expect("sent transport data");
            assert_eq!(message.receiver_index(), remote_index);
            let counter = message.counter();
            assert!(
                counter >= first_counter && counter - first_counter < 1 << 32,
                "sent counter {counter} outside epoch {epoch:?}"
            );
        }
    }

    // Receiving: nothing at or below the checkpoint again.
    let from: SocketAddr = PEER_ADDRESS.parse().expect("valid");
    let mut candidates: Vec<u64> = probes.to_vec();
    if let Some(highest) = recv_highest {
        candidates.extend([
            highest,
            highest.saturating_sub(1),
            highest.saturating_add(1),
        ]);
    }
    for counter in candidates {
        let mut datagram = sealed_transport(&recv_key, local_index, counter);
        let result = standby
            .handle_datagram(now, from, &mut datagram)
            .map(|received| matches!(received, Received::Packet { .. }));
        let at_or_below_checkpoint = recv_highest.is_some_and(|highest| counter <= highest);
        if at_or_below_checkpoint {
            assert!(
                result.is_err(),
                "counter {counter} at or below the checkpoint {recv_highest:?} was accepted again"
            );
        }
        if result.is_ok() {
            // It authenticated: the same message again must be a replay.
            let mut again = sealed_transport(&recv_key, local_index, counter);
            assert_eq!(
                standby.handle_datagram(now, from, &mut again).err(),
                Some(DropReason::Replayed),
                "counter {counter} accepted twice"
            );
        }
    }
}

/// A small, valid IPv4 packet (20-byte header, 8 bytes of payload).
fn inner_packet() -> Vec<u8> {
    let mut packet = vec![0u8; 28];
    packet[0] = 0x45;
    packet[3] = 28;
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&[10, 0, 0, 2]);
    packet[16..20].copy_from_slice(&[10, 0, 0, 1]);
    packet
}

/// A transport message to the standby's session `index`, sealed with the peer's key.
fn sealed_transport(key: &PacketKey, index: u32, counter: u64) -> Vec<u8> {
    let packet = inner_packet();
    let padded = packet.len().next_multiple_of(16);
    let mut message = vec![0u8; TRANSPORT_HEADER_LEN + padded + TAG_LEN];
    message[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + packet.len()].copy_from_slice(&packet);
    key.seal_in_place(counter, &[], &mut message[TRANSPORT_HEADER_LEN..], padded)
        .expect("sized for the tag");
    write_transport_header(&mut message, index, counter).expect("room for the header");
    message
}

/// A stream that yields the input and then end-of-file, and swallows what is written.
struct HostileStream<'a> {
    incoming: &'a [u8],
}

impl Read for HostileStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.incoming.read(buf)
    }
}

impl Write for HostileStream<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn check_channel(bytes: &[u8]) {
    let key = [0x48; 32];
    let accepted = SyncChannel::accept(HostileStream { incoming: bytes }, &key);
    assert!(
        accepted.is_err(),
        "a stranger completed the sync handshake as initiator"
    );
    let connected = SyncChannel::connect(HostileStream { incoming: bytes }, &key);
    assert!(
        connected.is_err(),
        "a stranger completed the sync handshake as responder"
    );
}
