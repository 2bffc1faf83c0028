//! The data plane's send path, [`encap_batch`], on hostile inner packets (what arrives from
//! TUN is whatever local software wrote), and the round trip through [`decap_batch`] on the
//! receiving side.
//!
//! The input picks the sender's setup (outer family, VLAN tag, MTU, TTL, which of the
//! endpoint, local address and session exist, how old the session is) and then inner packets
//! with the headroom and tailroom around each.
//!
//! Asserts: a packet is sent if and only if no drop reason applies to it (inner packet not
//! IP, route to a peer without session, expired session, no endpoint, larger than the MTU,
//! no local address, no room), and a dropped packet names a reason that applies; a sent
//! frame lies inside its buffer, carries correct Ethernet/IP/UDP headers with valid
//! checksums, our next counter, and a message padded exactly as [`padded_len`] says; the
//! receiver decapsulates it to exactly the inner packet the sender took (same length, same
//! bytes); the drop counters add up; handshake events name exactly the peers that lacked a
//! usable session.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use warpline_dataplane::aead::Suite;
use warpline_dataplane::allowed_ips::IpPrefix;
use warpline_dataplane::pipeline::{
    DropCounters, DropReason, Events, FrameRef, HEADROOM, HandshakeReason, L2Info, PeerId,
    TAILROOM, Verdict, decap_batch, encap_batch,
};
use warpline_dataplane::session::SessionParams;
use warpline_dataplane::sessions::{Endpoint, REJECT_AFTER_TIME, SharedSession, Snapshot};
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::ethernet::{self, EtherType};
use warpline_dataplane::wire::udp::{IPV4_UDP_HEADERS_LEN, IPV6_UDP_HEADERS_LEN};
use warpline_dataplane::wire::wireguard::{TAG_LEN, TRANSPORT_HEADER_LEN, Transport, padded_len};
use warpline_dataplane::wire::{IpProtocol, ipv4, ipv6, udp};

use crate::input::{Reader, Writer};

/// Packets per input at most.
const MAX_PACKETS: usize = 64;

/// The peer with a session; every address not routed elsewhere goes to it.
const PEER: PeerId = PeerId(0);
/// A peer without a session: 10.9.0.0/16 and fd09::/16 route to it.
const PEER_WITHOUT_SESSION: PeerId = PeerId(1);
const SEND_KEY: [u8; 32] = [0x33; 32];
/// Our index at the receiver (the receiver index of everything we send).
const RECEIVER_INDEX: u32 = 0x0300_0003;
const OUR_INDEX: u32 = 0x0400_0004;
const SESSION_ESTABLISHED: Time = Time::from_secs(10);

/// Setup flag bits (the first input byte).
pub mod setup {
    /// The peer's endpoint is IPv6 (else IPv4).
    pub const ENDPOINT_V6: u8 = 1;
    /// Tag outgoing frames with a VLAN.
    pub const VLAN: u8 = 1 << 1;
    /// We have no local address of the endpoint's family.
    pub const NO_LOCAL_ADDRESS: u8 = 1 << 2;
    /// The peer has no endpoint.
    pub const NO_ENDPOINT: u8 = 1 << 3;
    /// AES-256-GCM (else ChaCha20-Poly1305).
    pub const AES: u8 = 1 << 4;
    /// Send at a time when the session has expired.
    pub const EXPIRED: u8 = 1 << 5;
}

/// A seed's sender setup.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// [`setup`] bits.
    pub flags: u8,
    /// The tunnel MTU.
    pub mtu: u16,
    /// Outer TTL / hop limit.
    pub ttl: u8,
    /// VLAN tag control information, with [`setup::VLAN`].
    pub tci: u16,
}

/// Encodes a seed: the setup, then each packet with full headroom and tailroom.
pub fn encode(setup: Setup, packets: &[&[u8]]) -> Vec<u8> {
    let mut writer = Writer::new();
    writer
        .u8(setup.flags)
        .u16(setup.mtu)
        .u8(setup.ttl)
        .u16(setup.tci);
    for packet in packets {
        writer.u8(0).u8(0).chunk(packet);
    }
    writer.finish()
}

fn session(suite: Suite, local_index: u32, remote_index: u32, key: [u8; 32]) -> SharedSession {
    let params = SessionParams {
        local_index,
        remote_index,
        suite,
        we_initiated: true,
        established: SESSION_ESTABLISHED,
    };
    // The receiver's copy needs the same key as our send key; the other direction is unused.
    let (mut send, mut recv) = (key, key);
    SharedSession::new(&params, PEER, &mut send, &mut recv, 0)
}

fn routes(snapshot: &mut Snapshot, with_second_peer: bool) {
    let all_v4 = IpPrefix::new(Ipv4Addr::UNSPECIFIED.into(), 0).expect("valid");
    let all_v6 = IpPrefix::new(Ipv6Addr::UNSPECIFIED.into(), 0).expect("valid");
    snapshot.routes_mut().insert(all_v4, PEER);
    snapshot.routes_mut().insert(all_v6, PEER);
    if with_second_peer {
        let v4 = IpPrefix::new(Ipv4Addr::new(10, 9, 0, 0).into(), 16).expect("valid");
        let v6 =
            IpPrefix::new(Ipv6Addr::new(0xfd09, 0, 0, 0, 0, 0, 0, 0).into(), 16).expect("valid");
        snapshot.routes_mut().insert(v4, PEER_WITHOUT_SESSION);
        snapshot.routes_mut().insert(v6, PEER_WITHOUT_SESSION);
        snapshot.peer_mut(PEER_WITHOUT_SESSION);
    }
}

/// What the sender knows about one inner packet before sending it.
struct Inner {
    destination: IpAddr,
    len: usize,
}

fn parse_inner(packet: &[u8]) -> Result<Inner, DropReason> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => ipv4::Packet::new_checked(packet)
            .map(|p| Inner {
                destination: p.dst_addr().into(),
                len: usize::from(p.total_len()),
            })
            .map_err(|_| DropReason::InnerMalformed),
        Some(6) => ipv6::Packet::new_checked(packet)
            .map(|p| Inner {
                destination: p.dst_addr().into(),
                len: p.total_len(),
            })
            .map_err(|_| DropReason::InnerMalformed),
        _ => Err(DropReason::NotIp),
    }
}

/// One input: see the module docs.
pub fn run(data: &[u8]) {
    let mut input = Reader::new(data);
    let flags = input.u8();
    let mtu = usize::from(input.u16());
    let ttl = input.u8();
    let tci = input.u16();
    let suite = if flags & setup::AES != 0 {
        Suite::Aes256Gcm
    } else {
        Suite::ChaCha20Poly1305
    };
    let endpoint_v6 = flags & setup::ENDPOINT_V6 != 0;
    let endpoint = Endpoint {
        addr: if endpoint_v6 {
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x77),
                40000,
                0,
                0,
            ))
        } else {
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 77), 40000))
        },
        mac: [0x02, 0, 0, 0, 0, 0x77],
        local: None,
    };
    let has_local_address = flags & setup::NO_LOCAL_ADDRESS == 0;
    let l2 = L2Info {
        src_mac: [0x02, 0, 0, 0, 0, 0x01],
        vlan_tci: (flags & setup::VLAN != 0).then_some(tci),
        local_v4: (has_local_address || endpoint_v6).then_some(Ipv4Addr::new(192, 0, 2, 1)),
        local_v6: (has_local_address || !endpoint_v6)
            .then_some(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        port: 51820,
        ttl,
        mtu,
    };
    let now = if flags & setup::EXPIRED != 0 {
        SESSION_ESTABLISHED + REJECT_AFTER_TIME
    } else {
        SESSION_ESTABLISHED
    };

    let mut sender = Snapshot::new();
    sender.install(Arc::new(session(
        suite,
        OUR_INDEX,
        RECEIVER_INDEX,
        SEND_KEY,
    )));
    let has_endpoint = flags & setup::NO_ENDPOINT == 0;
    sender.peer_mut(PEER).endpoint = has_endpoint.then_some(endpoint);
    routes(&mut sender, true);
    let mut receiver = Snapshot::new();
    receiver.install(Arc::new(session(
        suite,
        RECEIVER_INDEX,
        OUR_INDEX,
        SEND_KEY,
    )));
    routes(&mut receiver, false);

    let mut counters = DropCounters::default();
    let mut events = Events::new();
    let mut packets = 0;
    while !input.is_empty() && packets < MAX_PACKETS {
        packets += 1;
        // 0 means the full headroom/tailroom the pipeline asks for; anything else is less.
        let headroom = HEADROOM - usize::from(input.u8()) % (HEADROOM + 1);
        let tailroom = TAILROOM - usize::from(input.u8()) % (TAILROOM + 1);
        let packet = input.chunk();
        let mut buffer = vec![0xa5; headroom + packet.len() + tailroom];
        buffer[headroom..headroom + packet.len()].copy_from_slice(packet);

        let mut verdicts = [Verdict::ToControl];
        let counters_before = counters.clone();
        // A packet may use up a counter and still be dropped (an outer header that does not
        // fit), so ask the session rather than counting sends.
        let counter = sender
            .session(OUR_INDEX)
            .expect("installed")
            .next_send_counter();
        events.clear();
        encap_batch(
            now,
            &sender,
            &mut [FrameRef::new(&mut buffer, headroom, packet.len())],
            &mut verdicts,
            &mut counters,
            &mut events,
            &l2,
        );
        let verdict = verdicts[0];
        let mut expected_counters = counters_before;
        match verdict {
            Verdict::ToOuter { .. } => expected_counters.to_outer += 1,
            Verdict::Drop(reason) => expected_counters.drops[reason as usize] += 1,
            other => panic!("encap produced {other:?}"),
        }
        assert_eq!(
            counters, expected_counters,
            "drop counters do not match the verdict"
        );

        // Every reason that applies to this packet, in no particular order.
        let mut reasons = Vec::new();
        let mut handshake_expected = None;
        let inner = parse_inner(packet);
        match &inner {
            Err(reason) => reasons.push(*reason),
            Ok(inner) => {
                let peer = sender.routes().lookup(inner.destination);
                if peer == Some(PEER_WITHOUT_SESSION) {
                    reasons.push(DropReason::NoSession);
                    handshake_expected = Some((PEER_WITHOUT_SESSION, HandshakeReason::NoSession));
                } else {
                    assert_eq!(peer, Some(PEER), "the default routes cover every address");
                    if flags & setup::EXPIRED != 0 {
                        reasons.push(DropReason::Expired);
                        handshake_expected = Some((PEER, HandshakeReason::Expired));
                    }
                    if !has_endpoint {
                        reasons.push(DropReason::NoEndpoint);
                    }
                    let message_len = TRANSPORT_HEADER_LEN + padded_len(inner.len, mtu) + TAG_LEN;
                    let outer_too_long = if endpoint_v6 {
                        udp::HEADER_LEN + message_len > usize::from(u16::MAX)
                    } else {
                        IPV4_UDP_HEADERS_LEN + message_len > usize::from(u16::MAX)
                    };
                    if inner.len > mtu || outer_too_long {
                        reasons.push(DropReason::TooBig);
                    }
                    if !has_local_address {
                        reasons.push(DropReason::NoLocalAddress);
                    }
                    let headers =
                        ethernet_len(&l2) + outer_ip_udp_len(endpoint_v6) + TRANSPORT_HEADER_LEN;
                    let padded = padded_len(inner.len, mtu);
                    if headroom < headers || headroom + padded + TAG_LEN > buffer.len() {
                        reasons.push(DropReason::NoRoom);
                    }
                }
            }
        }
        let handshakes: Vec<_> = events.handshakes().collect();
        match verdict {
            Verdict::Drop(reason) => {
                assert!(
                    reasons.contains(&reason),
                    "dropped for {reason:?}, but the reasons that apply are {reasons:?}"
                );
                // Handshake events come with the reason that caused them, when it was the one
                // reported (an earlier check may have stopped the packet first).
                if matches!(reason, DropReason::NoSession | DropReason::Expired) {
                    assert_eq!(
                        handshakes,
                        handshake_expected.into_iter().collect::<Vec<_>>()
                    );
                }
            }
            Verdict::ToOuter { offset, len } => {
                assert!(reasons.is_empty(), "sent although {reasons:?} apply");
                assert!(handshakes.is_empty(), "sent, yet asked for {handshakes:?}");
                let inner = inner.as_ref().expect("sent packets parsed");
                let frame = buffer
                    .get(offset..offset + len)
                    .expect("ToOuter points outside the buffer")
                    .to_vec();
                check_outer_frame(&frame, &l2, &endpoint, counter, inner.len);
                check_received(&receiver, now, frame, &packet[..inner.len]);
            }
            _ => unreachable!("checked above"),
        }
    }
}

fn ethernet_len(l2: &L2Info) -> usize {
    if l2.vlan_tci.is_some() {
        ethernet::TAGGED_HEADER_LEN
    } else {
        ethernet::HEADER_LEN
    }
}

fn outer_ip_udp_len(v6: bool) -> usize {
    if v6 {
        IPV6_UDP_HEADERS_LEN
    } else {
        IPV4_UDP_HEADERS_LEN
    }
}

/// The frame's headers say what the sender was configured to say, with valid checksums.
fn check_outer_frame(
    frame: &[u8],
    l2: &L2Info,
    endpoint: &Endpoint,
    counter: u64,
    inner_len: usize,
) {
    let eth = ethernet::Frame::new_checked(frame).expect("sent frame parses as Ethernet");
    assert_eq!(eth.dst_addr(), endpoint.mac);
    assert_eq!(eth.src_addr(), l2.src_mac);
    assert_eq!(eth.vlan_tci(), l2.vlan_tci);
    let (message, src_port, dst_port) = match endpoint.addr {
        SocketAddr::V4(dst) => {
            assert_eq!(eth.ethertype(), EtherType::IPV4);
            let ip = ipv4::Packet::new_checked(eth.payload()).expect("sent IPv4 parses");
            assert_eq!(usize::from(ip.total_len()), eth.payload().len());
            assert!(ip.verify_checksum(), "sent IPv4 header checksum is wrong");
            assert_eq!(ip.protocol(), IpProtocol::UDP);
            assert_eq!(ip.ttl(), l2.ttl);
            assert_eq!(Some(ip.src_addr()), l2.local_v4);
            assert_eq!(ip.dst_addr(), *dst.ip());
            let datagram = udp::Packet::new_checked(ip.payload()).expect("sent UDP parses");
            assert!(datagram.verify_checksum_ipv4(ip.src_addr(), ip.dst_addr()));
            assert_ne!(datagram.checksum(), 0);
            (
                datagram.payload().to_vec(),
                datagram.src_port(),
                datagram.dst_port(),
            )
        }
        SocketAddr::V6(dst) => {
            assert_eq!(eth.ethertype(), EtherType::IPV6);
            let ip = ipv6::Packet::new_checked(eth.payload()).expect("sent IPv6 parses");
            assert_eq!(ip.total_len(), eth.payload().len());
            assert_eq!(ip.next_header(), IpProtocol::UDP);
            assert_eq!(ip.hop_limit(), l2.ttl);
            assert_eq!(Some(ip.src_addr()), l2.local_v6);
            assert_eq!(ip.dst_addr(), *dst.ip());
            let datagram = udp::Packet::new_checked(ip.payload()).expect("sent UDP parses");
            assert!(datagram.verify_checksum_ipv6(ip.src_addr(), ip.dst_addr()));
            (
                datagram.payload().to_vec(),
                datagram.src_port(),
                datagram.dst_port(),
            )
        }
    };
    assert_eq!((src_port, dst_port), (l2.port, endpoint.addr.port()));
    let transport = Transport::new_checked(&message[..]).expect("sent message is transport data");
    assert_eq!(transport.receiver_index(), RECEIVER_INDEX);
    assert_eq!(
        transport.counter(),
        counter,
        "counters must be handed out in order"
    );
    assert_eq!(
        transport.ciphertext().len(),
        padded_len(inner_len, l2.mtu) + TAG_LEN,
        "padding differs from padded_len"
    );
}

/// The receiver gets back exactly what was sent.
fn check_received(receiver: &Snapshot, now: Time, mut frame: Vec<u8>, sent: &[u8]) {
    let len = frame.len();
    let mut verdicts = [Verdict::ToControl];
    decap_batch(
        now,
        receiver,
        &mut [FrameRef::new(&mut frame, 0, len)],
        &mut verdicts,
        &mut DropCounters::default(),
        &mut Events::new(),
    );
    match verdicts[0] {
        Verdict::ToInner { offset, len, peer } => {
            assert_eq!(peer, PEER);
            assert_eq!(
                &frame[offset..offset + len],
                sent,
                "inner packet changed in transit"
            );
        }
        other => panic!("the receiver refused what we sent: {other:?}"),
    }
}
