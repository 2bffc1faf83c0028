//! Two nodes on simulated time, with a network that delivers, drops or rewrites datagrams.

use super::*;
use rand_core::OsRng;

const ADDR_A: &str = "192.0.2.1:51820";
const ADDR_B: &str = "198.51.100.2:51820";

fn ip_packet(len: usize, tag: u8) -> Vec<u8> {
    let mut packet = vec![tag; len];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    packet
}

struct Lab {
    a: Node<OsRng>,
    b: Node<OsRng>,
    a_peer: PeerId,
    b_peer: PeerId,
    now: Time,
    /// Inner packets each side received, in order.
    a_got: Vec<Vec<u8>>,
    b_got: Vec<Vec<u8>>,
    drops: Vec<DropReason>,
    /// Datagrams from B appear to come from here (roaming tests).
    b_source: SocketAddr,
}

impl Lab {
    fn new(suite: Suite, psk: [u8; 32]) -> Self {
        let key_a = PrivateKey::generate();
        let key_b = PrivateKey::generate();
        let mut a = Node::new(
            NodeConfig::new(key_a.clone(), Duration::from_secs(1_700_000_000)),
            OsRng,
        );
        let mut b = Node::new(
            NodeConfig::new(key_b.clone(), Duration::from_secs(1_700_000_000)),
            OsRng,
        );
        let mut to_b = PeerConfig::new(key_b.public_key());
        to_b.endpoint = Some(ADDR_B.parse().unwrap());
        to_b.suite = suite;
        to_b.preshared_key = PresharedKey::from_bytes(psk);
        let mut to_a = PeerConfig::new(key_a.public_key());
        to_a.suite = suite;
        to_a.preshared_key = PresharedKey::from_bytes(psk);
        let a_peer = a.add_peer(to_b).unwrap();
        let b_peer = b.add_peer(to_a).unwrap();
        Self {
            a,
            b,
            a_peer,
            b_peer,
            now: Time::ZERO,
            a_got: Vec::new(),
            b_got: Vec::new(),
            drops: Vec::new(),
            b_source: ADDR_B.parse().unwrap(),
        }
    }

    /// Delivers every queued datagram in both directions until both sides are quiet.
    fn deliver(&mut self) {
        self.deliver_filtered(|_, _| true);
    }

    /// As `deliver`, but `keep(from_a, payload)` decides which datagrams survive.
    fn deliver_filtered(&mut self, mut keep: impl FnMut(bool, &[u8]) -> bool) {
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                if keep(true, &t.payload) {
                    self.arrive_at_b(t.payload);
                }
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                if keep(false, &t.payload) {
                    self.arrive_at_a(t.payload);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn arrive_at_b(&mut self, mut payload: Vec<u8>) {
        match self
            .b
            .handle_datagram(self.now, ADDR_A.parse().unwrap(), &mut payload)
        {
            Ok(Received::Packet { packet, .. }) => self.b_got.push(packet.to_vec()),
            Ok(_) => {}
            Err(reason) => self.drops.push(reason),
        }
    }

    fn arrive_at_a(&mut self, mut payload: Vec<u8>) {
        match self
            .a
            .handle_datagram(self.now, self.b_source, &mut payload)
        {
            Ok(Received::Packet { packet, .. }) => self.a_got.push(packet.to_vec()),
            Ok(_) => {}
            Err(reason) => self.drops.push(reason),
        }
    }

    fn a_sends(&mut self, packet: &[u8]) {
        let mut out = vec![0u8; packet.len() + 64];
        if let Some((_, len)) = self
            .a
            .send_packet(self.now, self.a_peer, packet, &mut out)
            .unwrap()
        {
            out.truncate(len);
            self.arrive_at_b(out);
        }
        self.deliver();
    }

    fn b_sends(&mut self, packet: &[u8]) {
        let mut out = vec![0u8; packet.len() + 64];
        if let Some((_, len)) = self
            .b
            .send_packet(self.now, self.b_peer, packet, &mut out)
            .unwrap()
        {
            out.truncate(len);
            self.arrive_at_a(out);
        }
        self.deliver();
    }

    /// Advances simulated time to `until`, firing each node's timers as they fall due.
    fn run_until(&mut self, until: Time) {
        loop {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= until)
                .min();
            match next {
                Some(t) => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.deliver();
                }
                None => break,
            }
        }
        self.now = until;
    }

    fn events_a(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.a.poll_event()).collect()
    }

    fn events_b(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.b.poll_event()).collect()
    }
}

#[test]
fn first_packet_triggers_a_handshake_and_is_delivered_after_it() {
    for suite in [Suite::ChaCha20Poly1305, Suite::Aes256Gcm] {
        let mut lab = Lab::new(suite, [7; 32]);
        lab.a_sends(&ip_packet(100, 1));
        assert_eq!(
            lab.b_got,
            vec![ip_packet(100, 1)],
            "queued packet flushed after handshake"
        );
        lab.b_sends(&ip_packet(60, 2));
        assert_eq!(lab.a_got, vec![ip_packet(60, 2)]);
        assert!(lab.drops.is_empty(), "{:?}", lab.drops);
        assert_eq!(lab.events_a(), vec![Event::HandshakeCompleted(lab.a_peer)]);
        let b_events = lab.events_b();
        assert!(
            b_events.contains(&Event::HandshakeCompleted(lab.b_peer)),
            "{b_events:?}"
        );
        assert_eq!(
            lab.b.peer(lab.b_peer).endpoint(),
            Some(ADDR_A.parse().unwrap())
        );
    }
}

#[test]
fn responder_waits_for_confirmation_before_sending_on_the_new_session() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a.initiate(lab.now, lab.a_peer);
    let init = lab.a.poll_transmit().unwrap();
    lab.arrive_at_b(init.payload);
    let mut out = [0u8; 200];
    // B holds the session in `next`: nothing to send with yet, so the packet is queued.
    let sent = lab
        .b
        .send_packet(lab.now, lab.b_peer, &ip_packet(40, 3), &mut out)
        .unwrap();
    assert_eq!(sent, None);
    assert!(!lab.b.peer(lab.b_peer).has_session());
    lab.deliver();
    assert!(
        lab.b.peer(lab.b_peer).has_session(),
        "A's keepalive confirmed the session"
    );
}

#[test]
fn initiator_rekeys_after_120_seconds_and_old_session_drains() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a_sends(&ip_packet(80, 1));
    let first_handshake = lab.a.peer(lab.a_peer).stats().last_handshake.unwrap();
    lab.run_until(Time::from_secs(119));
    lab.a_sends(&ip_packet(80, 2));
    assert_eq!(
        lab.a.peer(lab.a_peer).stats().handshakes,
        1,
        "no rekey before 120 s"
    );
    lab.run_until(Time::from_secs(121));
    lab.a_sends(&ip_packet(80, 3));
    let stats = lab.a.peer(lab.a_peer).stats();
    assert_eq!(
        stats.handshakes, 2,
        "sending after 120 s starts a new handshake"
    );
    assert!(stats.last_handshake.unwrap() > first_handshake);
    lab.a_sends(&ip_packet(80, 4));
    assert_eq!(lab.b_got.len(), 4, "{:?}", lab.drops);
    assert!(lab.drops.is_empty(), "{:?}", lab.drops);
}

#[test]
fn sessions_are_not_used_past_reject_after_time() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a_sends(&ip_packet(80, 1));
    // Capture a message sealed now, deliver it after 180 s: refused as expired.
    let mut out = vec![0u8; 200];
    let (_, len) = lab
        .a
        .send_packet(lab.now, lab.a_peer, &ip_packet(80, 9), &mut out)
        .unwrap()
        .unwrap();
    out.truncate(len);
    lab.now = Time::from_secs(181);
    lab.arrive_at_b(out);
    assert_eq!(lab.drops, vec![DropReason::ExpiredSession]);
}

#[test]
fn lost_initiations_are_retransmitted_then_abandoned_after_90_seconds() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a.initiate(lab.now, lab.a_peer);
    let mut initiations = 0;
    let mut count = |from_a: bool, payload: &[u8]| {
        if from_a && payload[0] == 1 {
            initiations += 1;
        }
        false
    };
    lab.deliver_filtered(&mut count);
    for _ in 0..30 {
        let Some(next) = lab.a.poll_timeout() else {
            break;
        };
        lab.now = next;
        lab.a.handle_timeout(lab.now);
        lab.deliver_filtered(&mut count);
    }
    // 90 s of attempts, one every 5 s plus up to 333 ms of jitter.
    assert!(
        (16..=19).contains(&initiations),
        "{initiations} initiations"
    );
    assert!(
        lab.now >= Time::from_secs(90) && lab.now <= Time::from_secs(97),
        "{:?}",
        lab.now
    );
    assert!(
        lab.events_a()
            .contains(&Event::HandshakeAbandoned(lab.a_peer))
    );
    assert_eq!(lab.a.poll_timeout(), None, "nothing armed after giving up");
}

#[test]
fn unanswered_data_triggers_a_new_handshake_after_15_seconds() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a_sends(&ip_packet(80, 1));
    lab.run_until(Time::from_secs(20));
    // B has gone silent: A's data is lost.
    let mut out = vec![0u8; 200];
    lab.a
        .send_packet(lab.now, lab.a_peer, &ip_packet(80, 2), &mut out)
        .unwrap();
    assert_eq!(lab.a.poll_timeout(), Some(Time::from_secs(35)));
    lab.now = Time::from_secs(35);
    lab.a.handle_timeout(lab.now);
    let t = lab.a.poll_transmit().expect("a new initiation");
    assert_eq!(t.payload[0], 1);
}

#[test]
fn keepalive_follows_received_data_when_we_have_nothing_to_send() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a_sends(&ip_packet(80, 1));
    lab.now = Time::from_secs(1);
    lab.a_sends(&ip_packet(80, 2));
    // As in the Linux driver, the timer runs from the first unanswered data packet.
    assert_eq!(lab.b.poll_timeout(), Some(Time::from_secs(10)));
    lab.now = Time::from_secs(10);
    lab.b.handle_timeout(lab.now);
    let keepalive = lab.b.poll_transmit().expect("keepalive due");
    assert_eq!(keepalive.payload.len(), 32);
    lab.arrive_at_a(keepalive.payload);
    assert!(lab.drops.is_empty());
}

#[test]
fn persistent_keepalive_fires_on_its_interval() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a.peers[lab.a_peer.0].persistent_keepalive = Some(Duration::from_secs(25));
    lab.run_until(Time::from_secs(1));
    assert!(
        lab.a.peer(lab.a_peer).has_session(),
        "keepalive with no session handshakes"
    );
    let sent_before = lab.a.peer(lab.a_peer).stats().tx_bytes;
    lab.run_until(Time::from_secs(60));
    let keepalives = (lab.a.peer(lab.a_peer).stats().tx_bytes - sent_before) / 32;
    assert_eq!(keepalives, 2, "at about 25 s and 50 s");
}

#[test]
fn keys_are_wiped_after_540_seconds_without_a_handshake() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a_sends(&ip_packet(80, 1));
    lab.run_until(Time::from_secs(539));
    assert!(lab.a.peer(lab.a_peer).current.is_some());
    lab.run_until(Time::from_secs(541));
    let peer = lab.a.peer(lab.a_peer);
    assert!(peer.current.is_none() && peer.previous.is_none() && peer.next.is_none());
    assert!(lab.events_a().contains(&Event::KeysWiped(lab.a_peer)));
}

#[test]
fn replayed_initiations_and_transport_are_refused() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a.initiate(lab.now, lab.a_peer);
    let init = lab.a.poll_transmit().unwrap().payload;
    lab.arrive_at_b(init.clone());
    lab.deliver();
    lab.now = Time::from_secs(1);
    lab.arrive_at_b(init);
    assert_eq!(lab.drops, vec![DropReason::StaleTimestamp]);
    let mut out = vec![0u8; 200];
    let (_, len) = lab
        .a
        .send_packet(lab.now, lab.a_peer, &ip_packet(60, 1), &mut out)
        .unwrap()
        .unwrap();
    out.truncate(len);
    lab.arrive_at_b(out.clone());
    lab.arrive_at_b(out);
    assert_eq!(lab.drops[1], DropReason::Replayed);
}

#[test]
fn roaming_follows_the_last_authenticated_packet_only() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a_sends(&ip_packet(80, 1));
    lab.b_source = "203.0.113.9:4000".parse().unwrap();
    lab.b_sends(&ip_packet(80, 2));
    assert_eq!(lab.a.peer(lab.a_peer).endpoint(), Some(lab.b_source));
    // A forged packet from elsewhere does not move the endpoint.
    let mut forged = vec![0u8; 64];
    forged[0] = 4;
    forged[8..16].copy_from_slice(&1000u64.to_le_bytes());
    forged[4..8].copy_from_slice(
        &lab.a
            .peer(lab.a_peer)
            .current
            .as_ref()
            .unwrap()
            .params()
            .local_index
            .to_le_bytes(),
    );
    let spoofed: SocketAddr = "203.0.113.66:1".parse().unwrap();
    assert_eq!(
        lab.a
            .handle_datagram(lab.now, spoofed, &mut forged)
            .unwrap_err(),
        DropReason::BadTag
    );
    assert_eq!(lab.a.peer(lab.a_peer).endpoint(), Some(lab.b_source));
}

#[test]
fn under_load_initiators_must_present_a_cookie() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.b.force_under_load(true);
    lab.a.initiate(lab.now, lab.a_peer);
    lab.deliver();
    assert!(
        !lab.a.peer(lab.a_peer).has_session(),
        "first attempt only earns a cookie"
    );
    lab.run_until(Time::from_secs(6));
    assert!(
        lab.a.peer(lab.a_peer).has_session(),
        "retransmission with MAC2 succeeds"
    );
    assert!(lab.drops.is_empty(), "{:?}", lab.drops);
}

#[test]
fn garbage_and_unknown_indices_are_counted_drops() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    let from: SocketAddr = ADDR_A.parse().unwrap();
    assert_eq!(
        lab.b
            .handle_datagram(lab.now, from, &mut [9u8; 50])
            .unwrap_err(),
        DropReason::Malformed
    );
    let mut data = [0u8; 48];
    data[0] = 4;
    assert_eq!(
        lab.b.handle_datagram(lab.now, from, &mut data).unwrap_err(),
        DropReason::UnknownIndex
    );
    let mut init = [0u8; 148];
    init[0] = 1;
    assert_eq!(
        lab.b.handle_datagram(lab.now, from, &mut init).unwrap_err(),
        DropReason::BadMac1
    );
    let mut reply = [0u8; 64];
    reply[0] = 3;
    assert_eq!(
        lab.b
            .handle_datagram(lab.now, from, &mut reply)
            .unwrap_err(),
        DropReason::Unexpected
    );
}

#[test]
fn a_peer_cannot_be_added_twice_or_be_ourselves() {
    let key = PrivateKey::generate();
    let mut node = Node::new(NodeConfig::new(key.clone(), Duration::ZERO), OsRng);
    let other = PrivateKey::generate().public_key();
    node.add_peer(PeerConfig::new(other)).unwrap();
    assert_eq!(
        node.add_peer(PeerConfig::new(other)),
        Err(AddPeerError::Duplicate)
    );
    assert_eq!(
        node.add_peer(PeerConfig::new(key.public_key())),
        Err(AddPeerError::OwnKey)
    );
    assert_eq!(
        node.add_peer(PeerConfig::new(PublicKey([0; 32]))),
        Err(AddPeerError::WeakKey)
    );
}

/// What a worker does to a shared session when it seals one data packet.
fn worker_seals(session: &warpline_dataplane::sessions::SharedSession) -> u64 {
    let counter = session.take_send_counter().unwrap();
    session.count_sent(148);
    counter
}

fn transport_counter(message: &[u8]) -> u64 {
    assert_eq!(message[0], 4, "a transport message");
    u64::from_le_bytes(message[8..16].try_into().unwrap())
}

#[test]
fn data_plane_traffic_drives_rotation_keepalives_and_shares_send_counters() {
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a.initiate(lab.now, lab.a_peer);
    // The node's own confirming keepalive is lost: only data-plane traffic can confirm.
    lab.deliver_filtered(|_, payload| payload[0] != 4);
    let b_generation = lab.b.generation();
    let b_view = lab.b.data_plane_peers().next().unwrap();
    assert!(
        b_view.sending.is_none(),
        "unconfirmed: the responder must not send"
    );
    assert_eq!(b_view.receiving.len(), 1);
    let a_view = lab.a.data_plane_peers().next().unwrap();
    let a_session = a_view.sending.expect("the initiator sends at once");
    assert_eq!(a_session.local_index(), b_view.receiving[0].remote_index());

    // Worker on A seals 5 packets (after the node's lost keepalive, counter 0); worker on B
    // opens them.
    for expected in 1..6 {
        assert_eq!(worker_seals(&a_session), expected);
        b_view.receiving[0].count_received(148, false);
    }
    lab.now += Duration::from_millis(10);
    lab.a.absorb_data_plane_traffic(lab.now);
    lab.b.absorb_data_plane_traffic(lab.now);
    assert!(
        lab.events_b()
            .contains(&Event::HandshakeCompleted(lab.b_peer))
    );
    assert_ne!(
        lab.b.generation(),
        b_generation,
        "the table must be republished"
    );
    let b_sending = lab.b.data_plane_peers().next().unwrap().sending;
    assert!(b_sending.is_some(), "confirmed by the data plane's traffic");
    assert_eq!(
        lab.a.peer(lab.a_peer).stats().tx_bytes,
        32 + 5 * 148,
        "keepalive + data"
    );
    assert_eq!(lab.b.peer(lab.b_peer).stats().rx_bytes, 5 * 148);

    // B received data and sent nothing: it owes a keepalive, which the node sends through
    // the shared counter. A sent data and heard nothing: after the silence timeout it
    // starts a new handshake. Both timers must fire from data-plane traffic alone.
    let keepalive_due = lab.now + Timers::WIREGUARD.keepalive_timeout;
    lab.b.handle_timeout(keepalive_due);
    let keepalive = lab.b.poll_transmit().expect("a passive keepalive");
    assert_eq!(transport_counter(&keepalive.payload), 0);
    let silence = lab.now + Timers::WIREGUARD.new_handshake_after_silence();
    lab.a.handle_timeout(silence);
    let initiation = lab.a.poll_transmit().expect("a handshake after silence");
    assert_eq!(initiation.payload[0], 1, "an initiation");

    // The node's own sends continue A's shared counter after the worker's.
    let mut out = vec![0u8; 64];
    let (_, len) = lab
        .a
        .send_packet(silence, lab.a_peer, &[], &mut out)
        .unwrap()
        .unwrap();
    assert_eq!(transport_counter(&out[..len]), 6);
}

/// A rekey starts the new session's counters again under a new index, and once the session
/// after it exists the first one's keys are gone: a message sealed under them is refused as
/// an unknown index, not merely as expired.
#[test]
fn a_rekey_starts_counters_again_and_retires_the_old_keys() {
    use warpline_dataplane::wire::wireguard::Transport;
    fn seal(lab: &mut Lab, n: u8) -> Vec<u8> {
        let mut out = vec![0u8; 200];
        let (_, len) = lab
            .a
            .send_packet(lab.now, lab.a_peer, &ip_packet(80, n), &mut out)
            .unwrap()
            .unwrap();
        out.truncate(len);
        out
    }
    let header = |message: &[u8]| {
        let transport = Transport::new_checked(message).unwrap();
        (transport.receiver_index(), transport.counter())
    };
    let mut lab = Lab::new(Suite::ChaCha20Poly1305, [0; 32]);
    lab.a_sends(&ip_packet(80, 1));
    let first = seal(&mut lab, 2);
    let (first_index, first_counter) = header(&first);
    assert!(first_counter >= 1);

    lab.run_until(Time::from_secs(121));
    lab.a_sends(&ip_packet(80, 3));
    lab.a_sends(&ip_packet(80, 4));
    let (index, counter) = header(&seal(&mut lab, 5));
    assert_ne!(index, first_index, "still sending under the first session");
    assert!(
        counter < 4,
        "the new session's counters did not start again: {counter}"
    );

    lab.run_until(Time::from_secs(242));
    lab.a_sends(&ip_packet(80, 6));
    lab.a_sends(&ip_packet(80, 7));
    assert_eq!(lab.a.peer(lab.a_peer).stats().handshakes, 3);
    lab.drops.clear();
    lab.arrive_at_b(first);
    assert_eq!(
        lab.drops,
        vec![DropReason::UnknownIndex],
        "the first session's keys outlived two rekeys"
    );
}
