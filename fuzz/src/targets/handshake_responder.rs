//! The sans-IO node ([`Node::handle_datagram`]) as a responder, fed hostile datagrams next
//! to a real initiator.
//!
//! The world: a responder node with two configured peers (an initiator on
//! ChaCha20-Poly1305 with a preshared key, a second peer on AES-256-GCM), a real initiator
//! node that knows the responder, simulated time, seeded randomness. The input is a program:
//! raw datagrams (MAC1 optionally re-stamped with the responder's key, so mutations get past
//! it), initiations the harness crafts with the public Noise API from fuzzer-chosen
//! timestamps, indices, identities and suites, replays of anything delivered before, honest
//! traffic between the two nodes in both directions (also corrupted), data packets,
//! timers, time jumps and the under-load switch.
//!
//! Asserts, for every datagram the responder handles: it queues at most one datagram in
//! reply; a handshake message with a bad MAC1 is refused as such; a refused datagram leaves
//! no trace (no reply, no event, no change in any peer's endpoint, counters or sessions, nor
//! in what the data plane is told); a cookie reply goes back to the sender, answers its index
//! and changes nothing else; an answered initiation gets exactly one well-formed response to
//! its sender, naming its index; a decrypted packet is what the initiator sent, and the
//! initiator's well-formed IP packets are never refused as bad inner packets.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use warpline_control::cookie::{CookieChecker, CookieJar};
use warpline_control::keys::{PresharedKey, PrivateKey};
use warpline_control::node::{
    DropReason, Node, NodeConfig, PeerConfig, PeerId, Received, Transmit,
};
use warpline_control::noise::{LocalStatic, RemoteStatic, create_initiation};
use warpline_control::peer::PeerStats;
use warpline_control::tai64n::Tai64N;
use warpline_dataplane::aead::Suite;
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::wireguard::{
    CookieReply, Initiation, MessageKind, Response, TRANSPORT_HEADER_LEN, classify,
};
use warpline_dataplane::wire::{ipv4, ipv6};

use crate::input::{Reader, Writer};
use crate::rng::SeededRng;

/// Operations per input at most: handshakes cost milliseconds of DH each.
const MAX_OPS: usize = 48;
/// Datagrams remembered for replays.
const MAX_HISTORY: usize = 64;

/// The responder's static key.
pub const RESPONDER_KEY: [u8; 32] = [0x52; 32];
/// The initiator's static key.
pub const INITIATOR_KEY: [u8; 32] = [0x49; 32];
/// The second configured peer's static key (AES-256-GCM).
pub const SECOND_PEER_KEY: [u8; 32] = [0x50; 32];
/// The initiator's preshared key with the responder.
pub const PRESHARED_KEY: [u8; 32] = [0x44; 32];

/// Where the responder listens.
pub const RESPONDER_ADDRESS: &str = "192.0.2.1:51820";
/// Addresses datagrams may come from: the initiator's, a stranger's, an IPv6 one.
pub const SOURCES: [&str; 3] = [
    "198.51.100.7:51820",
    "203.0.113.5:1234",
    "[2001:db8::5]:4444",
];

/// Responder wall clock at the start of simulated time: any fixed date works.
const WALL_CLOCK_AT_ORIGIN: Duration = Duration::from_secs(1_700_000_000);

/// The operations of an input, for building seeds.
#[derive(Debug, Clone)]
pub enum Op<'a> {
    /// Bytes from `SOURCES[source % 3]`; `stamp` re-computes MAC1 for the responder.
    Raw {
        /// Index into [`SOURCES`].
        source: u8,
        /// Re-stamp MAC1 (and zero MAC2) before delivery.
        stamp: bool,
        /// The datagram.
        bytes: &'a [u8],
    },
    /// The initiator starts a handshake (its initiation waits in the queue to the responder).
    Initiate,
    /// Deliver an earlier datagram to the responder again.
    Replay {
        /// Which one (modulo the history's length).
        index: u8,
        /// Index into [`SOURCES`].
        source: u8,
    },
    /// Let time pass.
    Advance {
        /// Milliseconds.
        millis: u16,
    },
    /// Force (or stop forcing) the responder to demand cookies.
    UnderLoad(bool),
    /// Deliver the responder's oldest queued datagram to the initiator.
    ToInitiator,
    /// Deliver the initiator's oldest queued datagram to the responder.
    ToResponder {
        /// Flip one byte first: (position, xor mask).
        flip: Option<(u8, u8)>,
        /// Re-stamp MAC1 after flipping.
        stamp: bool,
    },
    /// The initiator sends this inner packet (queued to the responder if a session exists).
    Send(&'a [u8]),
    /// Run both nodes' timers.
    Timers,
    /// An initiation crafted by the harness.
    Craft {
        /// Which identity and suite: 0 the initiator, 1 the AES peer, 2 the AES peer under
        /// the wrong suite, 3 an unknown key.
        identity: u8,
        /// The sender index.
        sender_index: u32,
        /// The raw TAI64N timestamp.
        timestamp: [u8; 12],
        /// Index into [`SOURCES`].
        source: u8,
    },
}

/// Encodes a seed: the RNG seed, then the operations.
pub fn encode(seed: u64, ops: &[Op<'_>]) -> Vec<u8> {
    let mut writer = Writer::new();
    writer.u64(seed);
    for op in ops {
        match op {
            Op::Raw {
                source,
                stamp,
                bytes,
            } => writer.u8(0).u8(*source).u8(u8::from(*stamp)).chunk(bytes),
            Op::Initiate => writer.u8(1),
            Op::Replay { index, source } => writer.u8(2).u8(*index).u8(*source),
            Op::Advance { millis } => writer.u8(3).u16(*millis),
            Op::UnderLoad(on) => writer.u8(4).u8(u8::from(*on)),
            Op::ToInitiator => writer.u8(5),
            Op::ToResponder { flip, stamp } => {
                let flags = u8::from(flip.is_some()) | u8::from(*stamp) << 1;
                let (at, mask) = flip.unwrap_or((0, 0));
                writer.u8(6).u8(flags).u8(at).u8(mask)
            }
            Op::Send(packet) => writer.u8(7).chunk(packet),
            Op::Timers => writer.u8(8),
            Op::Craft {
                identity,
                sender_index,
                timestamp,
                source,
            } => writer
                .u8(9)
                .u8(*identity)
                .u32(*sender_index)
                .bytes(timestamp)
                .u8(*source),
        };
    }
    writer.finish()
}

/// A datagram on its way to the responder, with the plaintext if it is the initiator's data.
#[derive(Debug, Clone)]
struct Datagram {
    bytes: Vec<u8>,
    sent_plaintext: Option<Vec<u8>>,
}

/// What of the responder's state a refused datagram must not change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    generation: u64,
    cookie_replies_sent: u64,
    peers: Vec<(Option<SocketAddr>, PeerStats, bool)>,
}

struct World {
    now: Time,
    responder: Node<SeededRng>,
    initiator: Node<SeededRng>,
    /// The responder as the initiator knows it.
    initiator_peer: PeerId,
    /// The initiator as the responder knows it.
    initiator_on_responder: PeerId,
    to_initiator: Vec<Transmit>,
    to_responder: Vec<Datagram>,
    history: Vec<Datagram>,
    sources: [SocketAddr; 3],
}

/// Key material that depends only on constants, derived once: scalar multiplications are
/// most of an input's cost, and these would otherwise be redone for every message.
struct Statics {
    /// The responder's MAC1 and cookie keys.
    responder_macs: ([u8; 32], [u8; 32]),
    /// The identities crafted initiations come from: the initiator, the AES peer, the AES
    /// peer under the wrong suite, a stranger.
    identities: [(LocalStatic, RemoteStatic); 4],
}

fn statics() -> &'static Statics {
    static STATICS: OnceLock<Statics> = OnceLock::new();
    STATICS.get_or_init(|| {
        let responder = LocalStatic::new(&PrivateKey::from_bytes(RESPONDER_KEY));
        let responder_public = *responder.public();
        let identity = |private: [u8; 32], suite: Suite, preshared: [u8; 32]| {
            let local = LocalStatic::new(&PrivateKey::from_bytes(private));
            let remote = RemoteStatic::new(
                &local,
                responder_public,
                PresharedKey::from_bytes(preshared),
                suite,
            )
            .expect("the responder's key is not low-order");
            (local, remote)
        };
        Statics {
            responder_macs: (*responder.mac1_key(), *responder.cookie_key()),
            identities: [
                identity(INITIATOR_KEY, Suite::ChaCha20Poly1305, PRESHARED_KEY),
                identity(SECOND_PEER_KEY, Suite::Aes256Gcm, [0; 32]),
                identity(SECOND_PEER_KEY, Suite::ChaCha20Poly1305, [0; 32]),
                identity([0x5e; 32], Suite::ChaCha20Poly1305, [0; 32]),
            ],
        }
    })
}

fn parse_address(text: &str) -> SocketAddr {
    text.parse().expect("valid constant address")
}

/// One input: see the module docs.
pub fn run(data: &[u8]) {
    let mut input = Reader::new(data);
    let mut world = World::new(input.u64());
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        world.step(&mut input);
    }
}

impl World {
    fn new(seed: u64) -> Self {
        let responder_private = PrivateKey::from_bytes(RESPONDER_KEY);
        let initiator_private = PrivateKey::from_bytes(INITIATOR_KEY);
        let responder_public = responder_private.public_key();
        let initiator_public = initiator_private.public_key();

        let mut responder = Node::new(
            NodeConfig::new(responder_private, WALL_CLOCK_AT_ORIGIN),
            SeededRng::new(seed),
        );
        let mut initiator_on_responder = PeerConfig::new(initiator_public);
        initiator_on_responder.preshared_key = PresharedKey::from_bytes(PRESHARED_KEY);
        let initiator_on_responder = responder
            .add_peer(initiator_on_responder)
            .expect("distinct keys");
        let mut second = PeerConfig::new(PrivateKey::from_bytes(SECOND_PEER_KEY).public_key());
        second.suite = Suite::Aes256Gcm;
        responder.add_peer(second).expect("distinct keys");

        let mut initiator = Node::new(
            NodeConfig::new(initiator_private, WALL_CLOCK_AT_ORIGIN),
            SeededRng::new(seed ^ 0x1234_5678_9abc_def0),
        );
        let mut responder_on_initiator = PeerConfig::new(responder_public);
        responder_on_initiator.preshared_key = PresharedKey::from_bytes(PRESHARED_KEY);
        responder_on_initiator.endpoint = Some(parse_address(RESPONDER_ADDRESS));
        let initiator_peer = initiator
            .add_peer(responder_on_initiator)
            .expect("distinct keys");

        Self {
            now: Time::from_secs(1),
            responder,
            initiator,
            initiator_peer,
            initiator_on_responder,
            to_initiator: Vec::new(),
            to_responder: Vec::new(),
            history: Vec::new(),
            sources: SOURCES.map(parse_address),
        }
    }

    fn source(&self, selector: u8) -> SocketAddr {
        self.sources[usize::from(selector) % self.sources.len()]
    }

    fn step(&mut self, input: &mut Reader<'_>) {
        match input.u8() % 10 {
            0 => {
                let from = self.source(input.u8());
                let stamp = input.u8() & 1 == 1;
                let mut bytes = input.chunk().to_vec();
                if stamp {
                    self.stamp_for_responder(&mut bytes);
                }
                self.deliver(
                    from,
                    Datagram {
                        bytes,
                        sent_plaintext: None,
                    },
                );
            }
            1 => {
                self.initiator.initiate(self.now, self.initiator_peer);
                self.collect_initiator_output();
            }
            2 => {
                let index = usize::from(input.u8());
                let from = self.source(input.u8());
                if !self.history.is_empty() {
                    let datagram = self.history[index % self.history.len()].clone();
                    self.deliver(from, datagram);
                }
            }
            3 => self.now += Duration::from_millis(u64::from(input.u16())) * 16,
            4 => self.responder.force_under_load(input.u8() & 1 == 1),
            5 => {
                if !self.to_initiator.is_empty() {
                    let transmit = self.to_initiator.remove(0);
                    let mut bytes = transmit.payload;
                    let from = parse_address(RESPONDER_ADDRESS);
                    // The initiator is not under test; it only has to keep the dialogue going.
                    let _ = self.initiator.handle_datagram(self.now, from, &mut bytes);
                    self.collect_initiator_output();
                }
            }
            6 => {
                let flags = input.u8();
                let (at, mask) = (usize::from(input.u8()), input.u8());
                if !self.to_responder.is_empty() {
                    let mut datagram = self.to_responder.remove(0);
                    if flags & 1 == 1 && !datagram.bytes.is_empty() {
                        let len = datagram.bytes.len();
                        datagram.bytes[at % len] ^= mask | 1;
                        datagram.sent_plaintext = None;
                    }
                    if flags & 2 == 2 {
                        self.stamp_for_responder(&mut datagram.bytes);
                    }
                    self.deliver(self.sources[0], datagram);
                }
            }
            7 => {
                let packet = input.chunk();
                let mut out = vec![0u8; packet.len() + TRANSPORT_HEADER_LEN + 64];
                let sent =
                    self.initiator
                        .send_packet(self.now, self.initiator_peer, packet, &mut out);
                if let Ok(Some((_, len))) = sent {
                    out.truncate(len);
                    self.to_responder.push(Datagram {
                        bytes: out,
                        sent_plaintext: Some(packet.to_vec()),
                    });
                }
                self.collect_initiator_output();
            }
            8 => {
                self.initiator.handle_timeout(self.now);
                self.collect_initiator_output();
                self.responder.handle_timeout(self.now);
                while let Some(transmit) = self.responder.poll_transmit() {
                    self.to_initiator.push(transmit);
                }
                while self.responder.poll_event().is_some() {}
            }
            _ => {
                let identity = input.u8() % 4;
                let sender_index = input.u32();
                let timestamp = Tai64N::from_bytes(&input.array());
                let from = self.source(input.u8());
                let bytes = self.craft_initiation(identity, sender_index, timestamp);
                self.deliver(
                    from,
                    Datagram {
                        bytes,
                        sent_plaintext: None,
                    },
                );
            }
        }
    }

    fn collect_initiator_output(&mut self) {
        while let Some(transmit) = self.initiator.poll_transmit() {
            self.to_responder.push(Datagram {
                bytes: transmit.payload,
                sent_plaintext: None,
            });
        }
        while self.initiator.poll_event().is_some() {}
    }

    /// Writes a valid MAC1 for the responder (and a zero MAC2) into a handshake message, as
    /// anyone who knows the responder's public key can.
    fn stamp_for_responder(&self, bytes: &mut [u8]) {
        if matches!(
            classify(bytes),
            Ok(MessageKind::Initiation | MessageKind::Response)
        ) {
            let keys = &statics().responder_macs;
            CookieJar::new(keys.0, keys.1).stamp(bytes, self.now);
        }
    }

    fn craft_initiation(&self, identity: u8, sender_index: u32, timestamp: Tai64N) -> Vec<u8> {
        let (local, remote) = &statics().identities[usize::from(identity) % 4];
        let mut rng = SeededRng::new(u64::from(sender_index));
        let (mut message, _state) =
            create_initiation(local, remote, sender_index, timestamp, &mut rng)
                .expect("the responder's key is not low-order");
        CookieJar::new(*remote.mac1_key(), *remote.cookie_key()).stamp(&mut message, self.now);
        message.to_vec()
    }

    fn observe(&self) -> Observed {
        Observed {
            generation: self.responder.generation(),
            cookie_replies_sent: self.responder.cookie_replies_sent(),
            peers: self
                .responder
                .peers()
                .map(|(_, peer)| (peer.endpoint(), peer.stats(), peer.has_session()))
                .collect(),
        }
    }

    /// Hands `datagram` to the responder and checks what it did.
    fn deliver(&mut self, from: SocketAddr, datagram: Datagram) {
        if self.history.len() < MAX_HISTORY {
            self.history.push(datagram.clone());
        }
        let before = self.observe();
        let kind = classify(&datagram.bytes);
        let mac1_valid = {
            let keys = &statics().responder_macs;
            matches!(kind, Ok(MessageKind::Initiation | MessageKind::Response))
                && CookieChecker::new(keys.0, keys.1).mac1_is_valid(&datagram.bytes)
        };
        let mut buffer = datagram.bytes.clone();
        let result = self
            .responder
            .handle_datagram(self.now, from, &mut buffer)
            .map(|received| match received {
                Received::Packet { peer, packet } => Outcome::Packet(peer, packet.to_vec()),
                Received::Handshake(peer) => Outcome::Handshake(peer),
                Received::CookieReplySent => Outcome::CookieReplySent,
                Received::Keepalive(_) | Received::CookieStored(_) => Outcome::Other,
            });
        let mut transmits = Vec::new();
        while let Some(transmit) = self.responder.poll_transmit() {
            transmits.push(transmit);
        }
        let mut events = Vec::new();
        while let Some(event) = self.responder.poll_event() {
            events.push(event);
        }
        assert!(
            transmits.len() <= 1,
            "one datagram ({kind:?}, {result:?}) made the responder queue {} datagrams",
            transmits.len()
        );
        if matches!(kind, Ok(MessageKind::Initiation | MessageKind::Response)) && !mac1_valid {
            assert_eq!(
                result.as_ref().err(),
                Some(&DropReason::BadMac1),
                "a handshake message with a bad MAC1 got past the MAC1 check"
            );
        }

        match &result {
            Err(DropReason::BadInnerPacket) => {
                if let Some(sent) = &datagram.sent_plaintext {
                    assert!(
                        !is_whole_ip_packet(sent),
                        "a well-formed IP packet from the initiator was refused as a bad inner packet"
                    );
                }
            }
            Err(reason) => {
                assert!(transmits.is_empty(), "refused ({reason}) but replied");
                assert!(
                    events.is_empty(),
                    "refused ({reason}) but raised {events:?}"
                );
                assert_eq!(
                    self.observe(),
                    before,
                    "refused ({reason}) but changed state"
                );
            }
            Ok(Outcome::CookieReplySent) => {
                assert!(events.is_empty());
                let mut expected = before.clone();
                expected.cookie_replies_sent += 1;
                assert_eq!(
                    self.observe(),
                    expected,
                    "a cookie reply changed peer state"
                );
                let [reply] = transmits.as_slice() else {
                    panic!("CookieReplySent without exactly one reply");
                };
                assert_eq!(reply.destination, from);
                let parsed = CookieReply::new_checked(&reply.payload[..])
                    .expect("the cookie reply is well-formed");
                let sender_index = u32::from_le_bytes(
                    datagram.bytes[4..8]
                        .try_into()
                        .expect("a handshake message"),
                );
                assert_eq!(parsed.receiver_index(), sender_index);
            }
            Ok(Outcome::Handshake(peer)) => {
                let stats = self.responder.peer(*peer).stats();
                assert_eq!(
                    stats.last_handshake,
                    Some(self.now),
                    "handshake not recorded"
                );
                if kind == Ok(MessageKind::Initiation) {
                    let [reply] = transmits.as_slice() else {
                        panic!("an answered initiation without exactly one response");
                    };
                    assert_eq!(reply.destination, from);
                    let response = Response::new_checked(&reply.payload[..])
                        .expect("the response is well-formed");
                    let initiation =
                        Initiation::new_checked(&datagram.bytes[..]).expect("classified");
                    assert_eq!(response.receiver_index(), initiation.sender_index());
                }
            }
            Ok(Outcome::Packet(peer, packet)) => {
                if let Some(sent) = &datagram.sent_plaintext {
                    assert_eq!(*peer, self.initiator_on_responder);
                    // The receiver trims the padded plaintext to the length the inner IP
                    // header claims, as the Linux driver does; for a sender's packet shorter
                    // than its own header claims, that takes in some of the zero padding.
                    let (sent_part, padding) = packet.split_at(packet.len().min(sent.len()));
                    assert!(
                        sent.starts_with(sent_part)
                            && padding.len() < 16
                            && padding.iter().all(|&b| b == 0),
                        "the responder decrypted something other than what was sent:\n sent {sent:02x?}\n got {packet:02x?}"
                    );
                }
            }
            Ok(Outcome::Other) => {}
        }
        self.to_initiator.extend(transmits);
    }
}

/// What the responder made of a datagram, owned (the packet borrows the datagram buffer).
#[derive(Debug)]
enum Outcome {
    Packet(PeerId, Vec<u8>),
    Handshake(PeerId),
    CookieReplySent,
    Other,
}

/// Whether `bytes` is exactly one IPv4 or IPv6 packet as the data plane's parsers see it.
fn is_whole_ip_packet(bytes: &[u8]) -> bool {
    match bytes.first().map(|b| b >> 4) {
        Some(4) => ipv4::Packet::new_checked(bytes)
            .is_ok_and(|p| usize::from(p.total_len()) == bytes.len()),
        Some(6) => ipv6::Packet::new_checked(bytes).is_ok_and(|p| p.total_len() == bytes.len()),
        _ => false,
    }
}
