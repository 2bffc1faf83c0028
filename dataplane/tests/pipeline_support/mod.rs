//! Shared fixtures for the pipeline tests: two sides of one tunnel built from raw keys.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use warpline_dataplane::aead::{PacketKey, Suite};
use warpline_dataplane::allowed_ips::IpPrefix;
use warpline_dataplane::pipeline::{
    DropCounters, Events, FrameRef, HEADROOM, L2Info, TAILROOM, Verdict, decap_batch, encap_batch,
};
use warpline_dataplane::session::SessionParams;
use warpline_dataplane::sessions::{Endpoint, PeerId, SharedSession, Snapshot};
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::udp::{Ipv4UdpHeader, Ipv6UdpHeader, write_ipv4_udp, write_ipv6_udp};
use warpline_dataplane::wire::{IpProtocol, ethernet, ipv4, ipv6, udp, wireguard};

pub const KEY_A_TO_B: [u8; 32] = [0x11; 32];
pub const KEY_B_TO_A: [u8; 32] = [0x22; 32];
pub const INDEX_A: u32 = 0xa1a1_0001;
pub const INDEX_B: u32 = 0xb2b2_0002;
pub const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
pub const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
pub const ESTABLISHED: Time = Time::from_secs(100);
pub const MTU: usize = 1420;

pub fn addr_a(v6: bool) -> SocketAddr {
    if v6 {
        "[2001:db8::a]:51820".parse().unwrap()
    } else {
        "192.0.2.10:51820".parse().unwrap()
    }
}

pub fn addr_b(v6: bool) -> SocketAddr {
    if v6 {
        "[2001:db8::b]:51821".parse().unwrap()
    } else {
        "192.0.2.11:51821".parse().unwrap()
    }
}

/// Inner addresses: side A's network 10.1.0.0/16 and fd00:a::/64, B's 10.2.0.0/16, fd00:b::/64.
pub fn inner_a(v6: bool) -> IpAddr {
    if v6 {
        "fd00:a::5".parse().unwrap()
    } else {
        "10.1.0.5".parse().unwrap()
    }
}

pub fn inner_b(v6: bool) -> IpAddr {
    if v6 {
        "fd00:b::7".parse().unwrap()
    } else {
        "10.2.0.7".parse().unwrap()
    }
}

pub fn session(
    local: u32,
    remote: u32,
    send: [u8; 32],
    recv: [u8; 32],
    first_counter: u64,
) -> Arc<SharedSession> {
    session_for(PeerId(0), local, remote, send, recv, first_counter)
}

pub fn session_for(
    peer: PeerId,
    local: u32,
    remote: u32,
    send: [u8; 32],
    recv: [u8; 32],
    first_counter: u64,
) -> Arc<SharedSession> {
    let params = SessionParams {
        local_index: local,
        remote_index: remote,
        suite: Suite::ChaCha20Poly1305,
        we_initiated: local == INDEX_A,
        established: ESTABLISHED,
    };
    let (mut send, mut recv) = (send, recv);
    Arc::new(SharedSession::new(
        &params,
        peer,
        &mut send,
        &mut recv,
        first_counter,
    ))
}

/// One side's snapshot: peer 0 is the other side.
pub fn side_a(outer_v6: bool, first_counter: u64) -> Snapshot {
    let mut snap = Snapshot::new();
    snap.install(session(
        INDEX_A,
        INDEX_B,
        KEY_A_TO_B,
        KEY_B_TO_A,
        first_counter,
    ));
    snap.peer_mut(PeerId(0)).endpoint = Some(Endpoint {
        addr: addr_b(outer_v6),
        mac: MAC_B,
        local: None,
    });
    snap.routes_mut()
        .insert("10.2.0.0/16".parse().unwrap(), PeerId(0));
    snap.routes_mut()
        .insert("fd00:b::/64".parse().unwrap(), PeerId(0));
    snap
}

pub fn side_b(outer_v6: bool) -> Snapshot {
    let mut snap = Snapshot::new();
    snap.install(session(INDEX_B, INDEX_A, KEY_B_TO_A, KEY_A_TO_B, 0));
    snap.peer_mut(PeerId(0)).endpoint = Some(Endpoint {
        addr: addr_a(outer_v6),
        mac: MAC_A,
        local: Some(addr_b(outer_v6).ip()),
    });
    snap.routes_mut()
        .insert("10.1.0.0/16".parse().unwrap(), PeerId(0));
    snap.routes_mut()
        .insert("fd00:a::/64".parse().unwrap(), PeerId(0));
    snap
}

pub fn l2_a(vlan: Option<u16>) -> L2Info {
    let (SocketAddr::V4(v4), SocketAddr::V6(v6)) = (addr_a(false), addr_a(true)) else {
        unreachable!()
    };
    L2Info {
        src_mac: MAC_A,
        vlan_tci: vlan,
        local_v4: Some(*v4.ip()),
        local_v6: Some(*v6.ip()),
        port: 51820,
        ttl: 64,
        mtu: MTU,
    }
}

/// An inner IP packet of `len` bytes (header included) from `src` to `dst`.
pub fn inner_packet(src: IpAddr, dst: IpAddr, len: usize, fill: u8) -> Vec<u8> {
    let mut p = vec![fill; len];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = ipv4::Packet::new_unchecked(&mut p[..]);
            ip.set_version_and_header_len(20);
            ip.set_dscp_ecn(0, 0b10);
            ip.set_total_len(len as u16);
            ip.set_ident(1);
            ip.set_fragment(true, false, 0);
            ip.set_ttl(64);
            ip.set_protocol(IpProtocol::UDP);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
            ip.fill_checksum();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = ipv6::Packet::new_unchecked(&mut p[..]);
            ip.set_version_tc_flow(0b10, 0);
            ip.set_payload_len((len - 40) as u16);
            ip.set_next_header(IpProtocol::UDP);
            ip.set_hop_limit(64);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
        }
        _ => panic!("mixed families"),
    }
    p
}

/// A frame buffer holding `inner` at `HEADROOM`, with tailroom.
pub fn encap_buffer(inner: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + inner.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + inner.len()].copy_from_slice(inner);
    buf
}

/// Encapsulates `inners` on a side; returns the buffers and verdicts.
pub fn encap(
    now: Time,
    snap: &Snapshot,
    l2: &L2Info,
    inners: &[Vec<u8>],
    counters: &mut DropCounters,
    events: &mut Events,
) -> (Vec<Vec<u8>>, Vec<Verdict>) {
    let mut bufs: Vec<Vec<u8>> = inners.iter().map(|i| encap_buffer(i)).collect();
    let mut verdicts = vec![Verdict::ToControl; bufs.len()];
    let mut frames: Vec<FrameRef<'_>> = bufs
        .iter_mut()
        .zip(inners)
        .map(|(b, i)| FrameRef::new(b, HEADROOM, i.len()))
        .collect();
    encap_batch(now, snap, &mut frames, &mut verdicts, counters, events, l2);
    drop(frames);
    (bufs, verdicts)
}

/// The on-wire frame an `encap` verdict points at, copied out.
pub fn outer_frame(buf: &[u8], verdict: Verdict) -> Vec<u8> {
    match verdict {
        Verdict::ToOuter { offset, len } => buf[offset..offset + len].to_vec(),
        other => panic!("expected ToOuter, got {other:?}"),
    }
}

/// Decapsulates whole frames (each its own buffer); returns buffers and verdicts.
pub fn decap(
    now: Time,
    snap: &Snapshot,
    frames_in: &[Vec<u8>],
    counters: &mut DropCounters,
    events: &mut Events,
) -> (Vec<Vec<u8>>, Vec<Verdict>) {
    let mut bufs = frames_in.to_vec();
    let mut verdicts = vec![Verdict::ToControl; bufs.len()];
    let mut frames: Vec<FrameRef<'_>> = bufs
        .iter_mut()
        .map(|b| {
            let len = b.len();
            FrameRef::new(b, 0, len)
        })
        .collect();
    decap_batch(now, snap, &mut frames, &mut verdicts, counters, events);
    drop(frames);
    (bufs, verdicts)
}

/// Builds a transport frame by hand (for payloads `encap_batch` refuses to make): `payload`
/// sealed with `key` under `counter`, sent from `from` to `to`.
pub fn craft_transport(
    key: &[u8; 32],
    receiver_index: u32,
    counter: u64,
    payload: &[u8],
    from: SocketAddr,
    to: SocketAddr,
) -> Vec<u8> {
    let message_len = 16 + payload.len() + 16;
    let ip_udp = if from.is_ipv6() { 48 } else { 28 };
    let mut buf = vec![0u8; 14 + ip_udp + message_len];
    let message = &mut buf[14 + ip_udp..];
    wireguard::write_transport_header(message, receiver_index, counter).unwrap();
    message[16..16 + payload.len()].copy_from_slice(payload);
    PacketKey::new(Suite::ChaCha20Poly1305, key)
        .seal_in_place(counter, &[], &mut message[16..], payload.len())
        .unwrap();
    let ethertype = match (from, to) {
        (SocketAddr::V4(src), SocketAddr::V4(dst)) => {
            let header = Ipv4UdpHeader {
                src,
                dst,
                ttl: 64,
                dscp_ecn: 0,
                ident: 0,
            };
            write_ipv4_udp(&mut buf[14..], &header, message_len).unwrap();
            ethernet::EtherType::IPV4
        }
        (SocketAddr::V6(src), SocketAddr::V6(dst)) => {
            let header = Ipv6UdpHeader {
                src,
                dst,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            };
            write_ipv6_udp(&mut buf[14..], &header, message_len).unwrap();
            ethernet::EtherType::IPV6
        }
        _ => panic!("mixed families"),
    };
    ethernet::write_header(&mut buf, MAC_B, MAC_A, None, ethertype).unwrap();
    buf
}

/// Checks an outer frame's headers and checksums with the wire views; returns the UDP
/// payload range inside the frame.
pub fn verify_outer(frame: &[u8], vlan: Option<u16>, v6: bool) -> std::ops::Range<usize> {
    let eth = ethernet::Frame::new_checked(frame).unwrap();
    assert_eq!(eth.dst_addr(), MAC_B);
    assert_eq!(eth.src_addr(), MAC_A);
    assert_eq!(eth.vlan_tci(), vlan);
    let l3 = eth.header_len();
    if v6 {
        assert_eq!(eth.ethertype(), ethernet::EtherType::IPV6);
        let ip = ipv6::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.total_len(), frame.len() - l3);
        assert_eq!(IpAddr::V6(ip.src_addr()), addr_a(true).ip());
        assert_eq!(IpAddr::V6(ip.dst_addr()), addr_b(true).ip());
        let datagram = udp::Packet::new_checked(ip.payload()).unwrap();
        assert!(datagram.verify_checksum_ipv6(ip.src_addr(), ip.dst_addr()));
        assert_eq!(datagram.dst_port(), addr_b(true).port());
        l3 + 48..frame.len()
    } else {
        assert_eq!(eth.ethertype(), ethernet::EtherType::IPV4);
        let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), frame.len() - l3);
        assert_eq!(IpAddr::V4(ip.src_addr()), addr_a(false).ip());
        assert_eq!(IpAddr::V4(ip.dst_addr()), addr_b(false).ip());
        let datagram = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_ne!(datagram.checksum(), 0, "full checksum, not 'none'");
        assert!(datagram.verify_checksum_ipv4(ip.src_addr(), ip.dst_addr()));
        assert_eq!(datagram.dst_port(), addr_b(false).port());
        l3 + 28..frame.len()
    }
}

pub fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

pub fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

pub fn prefix(s: &str) -> IpPrefix {
    s.parse().unwrap()
}
