//! Interoperability with boringtun, a WireGuard implementation nobody here wrote: handshakes
//! initiated by each side, transport both ways, preshared keys, cookies under load, rekeying,
//! tampering, and a cleanly failing suite mismatch.
//!
//! warpline's node runs on simulated time; boringtun on its own clock, which only matters for
//! its timers (not exercised here: every boringtun action is driven explicitly).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use rand_core::OsRng;
use warpline_control::keys::{PresharedKey, PrivateKey};
use warpline_control::node::{DropReason, Node, NodeConfig, PeerConfig, PeerId, Received};
use warpline_dataplane::aead::Suite;
use warpline_dataplane::time::Time;

const WARPLINE_ADDR: &str = "192.0.2.10:51820";
const BORINGTUN_ADDR: &str = "192.0.2.20:51821";

struct Interop {
    node: Node<OsRng>,
    /// The node's identity (a standby gateway shares it).
    warpline_key: PrivateKey,
    boringtun_public: warpline_control::keys::PublicKey,
    peer: PeerId,
    tunn: Tunn,
    now: Time,
    /// Inner packets warpline delivered.
    warpline_got: Vec<Vec<u8>>,
    /// Inner packets boringtun delivered.
    boringtun_got: Vec<Vec<u8>>,
    drops: Vec<DropReason>,
    boringtun_errors: Vec<String>,
}

struct Options {
    psk_warpline: Option<[u8; 32]>,
    psk_boringtun: Option<[u8; 32]>,
    suite: Suite,
    boringtun_under_load: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            psk_warpline: None,
            psk_boringtun: None,
            suite: Suite::ChaCha20Poly1305,
            boringtun_under_load: false,
        }
    }
}

fn ipv4_packet(len: usize, fill: u8) -> Vec<u8> {
    let mut p = vec![fill; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[12..16].copy_from_slice(&[10, 0, 0, 2]);
    p[16..20].copy_from_slice(&[10, 0, 0, 1]);
    p
}

fn ipv6_packet(payload: usize, fill: u8) -> Vec<u8> {
    let mut p = vec![fill; 40 + payload];
    p[0] = 0x60;
    p[1..4].fill(0);
    p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    p[8..24].copy_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    p[24..40].copy_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    p
}

impl Interop {
    fn new(options: Options) -> Self {
        let warpline_key = PrivateKey::generate();
        let boringtun_key = PrivateKey::generate();
        let config = NodeConfig::new(warpline_key.clone(), Duration::from_secs(1_750_000_000));
        let mut node = Node::new(config, OsRng);
        let mut peer = PeerConfig::new(boringtun_key.public_key());
        peer.endpoint = Some(BORINGTUN_ADDR.parse().unwrap());
        peer.suite = options.suite;
        if let Some(psk) = options.psk_warpline {
            peer.preshared_key = PresharedKey::from_bytes(psk);
        }
        let peer = node.add_peer(peer).unwrap();
        let boringtun_secret = x25519_dalek::StaticSecret::from(*boringtun_key.as_bytes());
        let limiter = options.boringtun_under_load.then(|| {
            let public = x25519_dalek::PublicKey::from(&boringtun_secret);
            Arc::new(RateLimiter::new(&public, 0))
        });
        let tunn = Tunn::new(
            boringtun_secret,
            x25519_dalek::PublicKey::from(warpline_key.public_key().0),
            options.psk_boringtun,
            None,
            7,
            limiter,
        );
        Self {
            node,
            warpline_key,
            boringtun_public: boringtun_key.public_key(),
            peer,
            tunn,
            now: Time::ZERO,
            warpline_got: Vec::new(),
            boringtun_got: Vec::new(),
            drops: Vec::new(),
            boringtun_errors: Vec::new(),
        }
    }

    /// Hands a datagram to boringtun and returns what it wants sent back to warpline.
    fn deliver_to_boringtun(&mut self, datagram: &[u8]) -> Vec<Vec<u8>> {
        let source: SocketAddr = WARPLINE_ADDR.parse().unwrap();
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 2048];
        let mut input: Vec<u8> = datagram.to_vec();
        loop {
            match self.tunn.decapsulate(Some(source.ip()), &input, &mut buf) {
                TunnResult::WriteToNetwork(out) => replies.push(out.to_vec()),
                TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
                    self.boringtun_got.push(p.to_vec());
                    break;
                }
                TunnResult::Done => break,
                TunnResult::Err(e) => {
                    self.boringtun_errors.push(format!("{e:?}"));
                    break;
                }
            }
            // boringtun asks to be called again with an empty datagram to flush its queue.
            input.clear();
        }
        replies
    }

    fn deliver_to_warpline(&mut self, mut datagram: Vec<u8>) {
        let source: SocketAddr = BORINGTUN_ADDR.parse().unwrap();
        match self.node.handle_datagram(self.now, source, &mut datagram) {
            Ok(Received::Packet { packet, .. }) => self.warpline_got.push(packet.to_vec()),
            Ok(_) => {}
            Err(reason) => self.drops.push(reason),
        }
    }

    /// Moves datagrams both ways until neither side has anything to send.
    fn pump(&mut self) {
        while let Some(transmit) = self.node.poll_transmit() {
            assert_eq!(transmit.destination, BORINGTUN_ADDR.parse().unwrap());
            for reply in self.deliver_to_boringtun(&transmit.payload) {
                self.deliver_to_warpline(reply);
            }
        }
    }

    fn warpline_sends(&mut self, packet: &[u8]) {
        let mut out = vec![0u8; packet.len() + 64];
        let sent = self
            .node
            .send_packet(self.now, self.peer, packet, &mut out)
            .unwrap();
        if let Some((_, len)) = sent {
            for reply in self.deliver_to_boringtun(&out[..len]) {
                self.deliver_to_warpline(reply);
            }
        }
        self.pump();
    }

    fn boringtun_sends(&mut self, packet: &[u8]) {
        let mut out = vec![0u8; packet.len() + 200];
        let datagram = match self.tunn.encapsulate(packet, &mut out) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("boringtun did not encapsulate: {other:?}"),
        };
        self.deliver_to_warpline(datagram);
        self.pump();
    }

    fn boringtun_initiates(&mut self) {
        let mut out = vec![0u8; 256];
        let datagram = match self.tunn.format_handshake_initiation(&mut out, true) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("boringtun made no initiation: {other:?}"),
        };
        self.deliver_to_warpline(datagram);
        // warpline's response goes back to boringtun, which answers with queued data or
        // nothing; its first data packet confirms the session on our side.
        self.pump();
    }

    fn run_timers_until(&mut self, until: Time) {
        while let Some(next) = self.node.poll_timeout().filter(|t| *t <= until) {
            self.now = self.now.max(next);
            self.node.handle_timeout(self.now);
            self.pump();
        }
        self.now = until;
    }
}

#[test]
fn warpline_initiates_and_transport_flows_both_ways() {
    let mut lab = Interop::new(Options::default());
    lab.warpline_sends(&ipv4_packet(100, 1));
    assert!(
        lab.node.peer(lab.peer).has_session(),
        "errors: {:?}",
        lab.boringtun_errors
    );
    assert_eq!(lab.boringtun_got, vec![ipv4_packet(100, 1)]);
    lab.boringtun_sends(&ipv4_packet(1400, 2));
    lab.boringtun_sends(&ipv6_packet(500, 3));
    lab.warpline_sends(&ipv6_packet(33, 4));
    assert_eq!(
        lab.warpline_got,
        vec![ipv4_packet(1400, 2), ipv6_packet(500, 3)]
    );
    assert_eq!(lab.boringtun_got[1], ipv6_packet(33, 4));
    assert!(lab.drops.is_empty() && lab.boringtun_errors.is_empty());
}

#[test]
fn boringtun_initiates_and_warpline_answers() {
    let mut lab = Interop::new(Options::default());
    lab.boringtun_initiates();
    assert!(lab.drops.is_empty(), "{:?}", lab.drops);
    lab.boringtun_sends(&ipv4_packet(80, 5));
    assert_eq!(lab.warpline_got, vec![ipv4_packet(80, 5)]);
    assert!(
        lab.node.peer(lab.peer).has_session(),
        "first data confirmed the session"
    );
    lab.warpline_sends(&ipv4_packet(90, 6));
    assert_eq!(lab.boringtun_got, vec![ipv4_packet(90, 6)]);
}

#[test]
fn preshared_keys_interoperate_and_a_mismatch_fails() {
    let psk = [0x5a; 32];
    let mut lab = Interop::new(Options {
        psk_warpline: Some(psk),
        psk_boringtun: Some(psk),
        ..Options::default()
    });
    lab.warpline_sends(&ipv4_packet(64, 1));
    assert_eq!(lab.boringtun_got.len(), 1);
    lab.boringtun_initiates();
    lab.boringtun_sends(&ipv4_packet(64, 2));
    assert_eq!(lab.warpline_got.len(), 1);

    let mut mismatch = Interop::new(Options {
        psk_warpline: Some(psk),
        psk_boringtun: Some([0x5b; 32]),
        ..Options::default()
    });
    mismatch.warpline_sends(&ipv4_packet(64, 1));
    assert!(!mismatch.node.peer(mismatch.peer).has_session());
    assert!(mismatch.drops.contains(&DropReason::Handshake(
        warpline_control::noise::HandshakeError::DecryptFailed
    )));
    assert!(mismatch.boringtun_got.is_empty());
}

#[test]
fn warpline_obeys_a_cookie_reply_from_boringtun_under_load() {
    let mut lab = Interop::new(Options {
        boringtun_under_load: true,
        ..Options::default()
    });
    lab.warpline_sends(&ipv4_packet(64, 1));
    assert!(
        !lab.node.peer(lab.peer).has_session(),
        "first initiation only earns a cookie"
    );
    assert!(
        lab.drops.is_empty(),
        "the cookie reply was accepted: {:?}",
        lab.drops
    );
    // The retransmission after REKEY_TIMEOUT carries MAC2 and gets through.
    lab.run_timers_until(Time::from_secs(6));
    assert!(
        lab.node.peer(lab.peer).has_session(),
        "errors: {:?}",
        lab.boringtun_errors
    );
    assert_eq!(
        lab.boringtun_got,
        vec![ipv4_packet(64, 1)],
        "queued packet delivered"
    );
}

#[test]
fn boringtun_obeys_a_cookie_reply_from_warpline_under_load() {
    let mut lab = Interop::new(Options::default());
    lab.node.force_under_load(true);
    let mut out = vec![0u8; 256];
    let first = match lab.tunn.format_handshake_initiation(&mut out, true) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("{other:?}"),
    };
    let mut datagram = first;
    let source: SocketAddr = BORINGTUN_ADDR.parse().unwrap();
    let outcome = lab.node.handle_datagram(lab.now, source, &mut datagram);
    assert!(
        matches!(outcome, Ok(Received::CookieReplySent)),
        "{outcome:?}"
    );
    let cookie = lab.node.poll_transmit().expect("a cookie reply");
    assert_eq!(cookie.payload.len(), 64);
    assert!(lab.deliver_to_boringtun(&cookie.payload).is_empty());
    assert!(
        lab.boringtun_errors.is_empty(),
        "{:?}",
        lab.boringtun_errors
    );
    // boringtun's next initiation carries MAC2 from our cookie and is answered.
    lab.now = Time::from_secs(1);
    lab.boringtun_initiates();
    assert!(lab.drops.is_empty(), "{:?}", lab.drops);
    lab.boringtun_sends(&ipv4_packet(64, 9));
    assert_eq!(lab.warpline_got.len(), 1);
}

#[test]
fn rekeying_from_either_side_keeps_traffic_flowing() {
    let mut lab = Interop::new(Options::default());
    lab.warpline_sends(&ipv4_packet(64, 1));
    // warpline initiated: after REKEY_AFTER_TIME its next send starts a new handshake.
    lab.now = Time::from_secs(121);
    lab.warpline_sends(&ipv4_packet(64, 2));
    assert_eq!(lab.node.peer(lab.peer).stats().handshakes, 2);
    lab.warpline_sends(&ipv4_packet(64, 3));
    lab.boringtun_sends(&ipv4_packet(64, 4));
    // boringtun initiates a rekey; its next data moves warpline onto the new session.
    lab.now = Time::from_secs(130);
    lab.boringtun_initiates();
    lab.boringtun_sends(&ipv4_packet(64, 5));
    lab.warpline_sends(&ipv4_packet(64, 6));
    assert_eq!(lab.node.peer(lab.peer).stats().handshakes, 3);
    let got: Vec<u8> = lab.boringtun_got.iter().map(|p| p[40]).collect();
    assert_eq!(got, vec![1, 2, 3, 6]);
    let got: Vec<u8> = lab.warpline_got.iter().map(|p| p[40]).collect();
    assert_eq!(got, vec![4, 5]);
    assert!(lab.drops.is_empty() && lab.boringtun_errors.is_empty());
}

#[test]
fn tampered_packets_are_rejected_by_both() {
    let mut lab = Interop::new(Options::default());
    lab.warpline_sends(&ipv4_packet(64, 1));
    let mut out = vec![0u8; 200];
    let (_, len) = lab
        .node
        .send_packet(lab.now, lab.peer, &ipv4_packet(64, 2), &mut out)
        .unwrap()
        .unwrap();
    out[len - 3] ^= 0x80;
    lab.deliver_to_boringtun(&out[..len]);
    assert_eq!(
        lab.boringtun_got.len(),
        1,
        "tampered packet not delivered by boringtun"
    );
    assert!(!lab.boringtun_errors.is_empty());

    let mut buf = vec![0u8; 200];
    let mut datagram = match lab.tunn.encapsulate(&ipv4_packet(64, 3), &mut buf) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("{other:?}"),
    };
    datagram[20] ^= 0x01;
    lab.deliver_to_warpline(datagram);
    assert_eq!(lab.drops, vec![DropReason::BadTag]);
    assert!(lab.warpline_got.is_empty());
}

#[test]
fn an_aes_gcm_peer_fails_cleanly_against_a_stock_peer() {
    let mut lab = Interop::new(Options {
        suite: Suite::Aes256Gcm,
        ..Options::default()
    });
    lab.warpline_sends(&ipv4_packet(64, 1));
    assert!(!lab.node.peer(lab.peer).has_session());
    assert!(
        !lab.boringtun_errors.is_empty(),
        "boringtun refused the AES-GCM initiation"
    );
    lab.boringtun_initiates();
    assert_eq!(
        lab.drops,
        vec![DropReason::Handshake(
            warpline_control::noise::HandshakeError::SuiteMismatch
        )]
    );
}

/// The counter of a transport message.
fn transport_counter(datagram: &[u8]) -> u64 {
    assert_eq!(datagram[0], 4, "a transport message");
    u64::from_le_bytes(datagram[8..16].try_into().unwrap())
}

/// Gateway failover without renegotiation, against a stock implementation: the active node's
/// sessions go (encoded) to a standby with the same identity, which takes over in a fresh
/// counter epoch. boringtun accepts its packets and its own reach the standby, with no
/// handshake; a packet captured before the hand-over cannot be replayed to the standby; and
/// in split brain the two nodes' counters never meet.
#[test]
fn a_standby_takes_over_sessions_without_a_handshake() {
    use warpline_control::ha::{CounterEpoch, SessionRecord};

    /// Sends `records` as a snapshot from an "active" thread to this "standby" over TCP
    /// loopback and the Noise sync channel; returns the record bytes the standby received.
    fn send_over_sync_channel(records: &[SessionRecord]) -> Vec<Vec<u8>> {
        use warpline_control::ha::{SyncChannel, SyncMessage};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let frames: Vec<_> = records.iter().map(SessionRecord::encode).collect();
        let active = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut channel = SyncChannel::accept(stream, &[3; 32]).unwrap();
            let count = frames.len() as u32;
            channel.send(&SyncMessage::SnapshotBegin { count }).unwrap();
            for frame in frames {
                channel.send(&SyncMessage::Record(frame)).unwrap();
            }
            channel.send(&SyncMessage::SnapshotEnd).unwrap();
        });
        let stream = std::net::TcpStream::connect(address).unwrap();
        let mut channel = SyncChannel::connect(stream, &[3; 32]).unwrap();
        let mut received = Vec::new();
        loop {
            match channel.receive().unwrap() {
                SyncMessage::SnapshotBegin { .. } => {}
                SyncMessage::Record(bytes) => received.push(bytes.to_vec()),
                SyncMessage::SnapshotEnd => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        active.join().unwrap();
        received
    }

    // boringtun speaks the standard suite only.
    {
        let suite = Suite::ChaCha20Poly1305;
        let mut lab = Interop::new(Options {
            suite,
            ..Options::default()
        });
        lab.boringtun_initiates();
        lab.boringtun_sends(&ipv4_packet(100, 1));
        for i in 0..3 {
            lab.warpline_sends(&ipv4_packet(90, 10 + i));
        }
        // A client packet an attacker records before the hand-over.
        let mut out = vec![0u8; 400];
        let captured = match lab.tunn.encapsulate(&ipv4_packet(120, 2), &mut out) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("no datagram: {other:?}"),
        };
        lab.deliver_to_warpline(captured.clone());
        assert_eq!(lab.warpline_got.len(), 2);

        // Checkpoint: every session, over the encrypted sync channel, to the standby.
        lab.now += Duration::from_millis(300);
        let records = lab.node.export_session_records(lab.now);
        assert!(!records.is_empty());
        let encoded = send_over_sync_channel(&records);
        let mut standby = Node::new(
            NodeConfig::new(lab.warpline_key.clone(), Duration::from_secs(1_750_000_000)),
            OsRng,
        );
        let mut peer = PeerConfig::new(lab.boringtun_public);
        peer.suite = suite;
        let standby_peer = standby.add_peer(peer).unwrap();
        let epoch = CounterEpoch::next_for(1, lab.node.epochs_in_use()).unwrap();
        for bytes in &encoded {
            let record = SessionRecord::decode(bytes).unwrap();
            standby
                .import_session_record(record, lab.now, epoch)
                .unwrap();
        }
        assert!(standby.peer(standby_peer).has_session());

        // Failover: the standby is now the node the client talks to.
        let mut old_active = std::mem::replace(&mut lab.node, standby);
        lab.peer = standby_peer;
        let mut sealed = vec![0u8; 200];
        let (_, len) = lab
            .node
            .send_packet(lab.now, lab.peer, &ipv4_packet(70, 3), &mut sealed)
            .unwrap()
            .expect("the standby sends at once");
        let standby_counter = transport_counter(&sealed[..len]);
        assert_eq!(standby_counter, epoch.first_counter());
        for reply in lab.deliver_to_boringtun(&sealed[..len]) {
            lab.deliver_to_warpline(reply);
        }
        assert_eq!(
            lab.boringtun_got.last(),
            Some(&ipv4_packet(70, 3)),
            "boringtun refused the standby's packet: {:?}",
            lab.boringtun_errors
        );
        lab.boringtun_sends(&ipv4_packet(110, 4));
        assert_eq!(lab.warpline_got.last(), Some(&ipv4_packet(110, 4)));
        assert_eq!(
            lab.warpline_got.len(),
            3,
            "the standby delivered the client's packet"
        );
        assert_eq!(
            lab.node.peer(lab.peer).stats().handshakes,
            0,
            "the standby needed a handshake"
        );
        assert!(lab.drops.is_empty(), "{:?}", lab.drops);

        // The recorded packet is refused by the standby.
        lab.deliver_to_warpline(captured);
        assert_eq!(lab.drops, vec![DropReason::Replayed]);

        // Split brain: the old node still sends, from its own counters, far below.
        let (_, len) = old_active
            .send_packet(lab.now, lab.peer, &ipv4_packet(70, 5), &mut sealed)
            .unwrap()
            .expect("the old node still has its session");
        let old_counter = transport_counter(&sealed[..len]);
        assert!(
            old_counter < epoch.first_counter() && old_counter < standby_counter,
            "counters overlap: old {old_counter}, standby {standby_counter}"
        );
    }
}
