//! The outer and inner header views (`dataplane::wire::{ethernet, ipv4, ipv6, udp, checksum}`)
//! on arbitrary bytes, and the writers that build outer headers.
//!
//! The input is parsed as an Ethernet frame, and independently as a bare IPv4 and IPv6
//! packet (inner packets have no Ethernet header); whatever parses has its UDP payload parsed
//! too. Asserts: every getter of an accepted view stays in bounds and the lengths add up;
//! the Ethernet header rebuilt with [`write_header`] is byte-identical; filling a checksum
//! makes it verify; an incremental address rewrite (RFC 1624) keeps a valid checksum valid;
//! the vectorised [`checksum::sum`] equals a plain RFC 1071 word-by-word sum; and outer
//! IPv4/IPv6 + UDP headers written from fields taken from the input parse back to exactly
//! those fields with valid checksums.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use warpline_dataplane::wire::ethernet::{self, EtherType, write_header};
use warpline_dataplane::wire::udp::{
    self, IPV4_UDP_HEADERS_LEN, IPV6_UDP_HEADERS_LEN, Ipv4UdpHeader, Ipv6UdpHeader, write_ipv4_udp,
    write_ipv6_udp,
};
use warpline_dataplane::wire::{IpProtocol, checksum, ipv4, ipv6};

use crate::input::Reader;

/// One input: a frame as a NIC would deliver it (or an inner packet as TUN would).
pub fn run(data: &[u8]) {
    check_checksum_sum(data);
    check_ethernet(data);
    check_ipv4(data);
    check_ipv6(data);
    check_outer_writers(data);
}

/// RFC 1071 as written: big-endian 16-bit words, an odd byte padded with zero, end-around
/// carry after every addition.
fn reference_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn check_checksum_sum(data: &[u8]) {
    assert_eq!(
        checksum::fold(checksum::sum(data)),
        reference_sum(data),
        "checksum::sum disagrees with RFC 1071 on {} bytes",
        data.len()
    );
}

fn check_ethernet(data: &[u8]) {
    let Ok(frame) = ethernet::Frame::new_checked(data) else {
        assert!(data.len() < ethernet::TAGGED_HEADER_LEN);
        return;
    };
    let header_len = frame.header_len();
    assert!(header_len == ethernet::HEADER_LEN || header_len == ethernet::TAGGED_HEADER_LEN);
    assert_eq!(frame.payload().len(), data.len() - header_len);
    assert_eq!(frame.vlan_tci().is_some(), frame.is_tagged());
    if let (Some(tci), Some(id)) = (frame.vlan_tci(), frame.vlan_id()) {
        assert_eq!(tci & 0x0fff, id);
    }
    let mut rebuilt = vec![0u8; header_len];
    let written = write_header(
        &mut rebuilt,
        frame.dst_addr(),
        frame.src_addr(),
        frame.vlan_tci(),
        frame.ethertype(),
    )
    .expect("room for the header");
    assert_eq!(written, header_len);
    assert_eq!(
        rebuilt,
        data[..header_len],
        "Ethernet header does not round-trip"
    );

    match frame.ethertype() {
        EtherType::IPV4 => check_ipv4(frame.payload()),
        EtherType::IPV6 => check_ipv6(frame.payload()),
        _ => {}
    }
}

fn check_ipv4(data: &[u8]) {
    let Ok(packet) = ipv4::Packet::new_checked(data) else {
        return;
    };
    let header_len = packet.header_len();
    let total_len = usize::from(packet.total_len());
    assert!((ipv4::MIN_HEADER_LEN..=60).contains(&header_len));
    assert!(header_len <= total_len && total_len <= data.len());
    assert_eq!(packet.version(), 4);
    assert_eq!(packet.payload().len(), total_len - header_len);
    assert_eq!(packet.options().len(), header_len - ipv4::MIN_HEADER_LEN);
    assert_eq!(packet.frag_offset() % 8, 0);
    assert_eq!(
        packet.is_fragment(),
        packet.more_fragments() || packet.frag_offset() != 0
    );
    let _ = (packet.dscp(), packet.ecn(), packet.ident(), packet.ttl());
    let _ = (packet.dont_fragment(), packet.protocol(), packet.checksum());
    let (src, dst) = (packet.src_addr(), packet.dst_addr());
    let was_valid = packet.verify_checksum();

    let mut copy = data.to_vec();
    let mut writable = ipv4::Packet::new_checked(&mut copy[..]).expect("same bytes");
    if was_valid {
        // Rewrite the destination the way NAT-style code does, without a full recompute.
        let new_dst = Ipv4Addr::from(src.to_bits().rotate_left(7) ^ dst.to_bits());
        let updated = checksum::update_ipv4_addr(writable.checksum(), dst, new_dst);
        writable.set_dst_addr(new_dst);
        writable.set_checksum(updated);
        assert!(
            writable.verify_checksum(),
            "incremental update broke a valid IPv4 checksum"
        );
    }
    writable.fill_checksum();
    assert!(writable.verify_checksum(), "fill_checksum did not verify");

    if packet.protocol() == IpProtocol::UDP && !packet.is_fragment() {
        check_udp(packet.payload(), |udp_packet| {
            let mut bytes = udp_packet.to_vec();
            let mut writable = udp::Packet::new_checked(&mut bytes[..]).expect("same bytes");
            writable.fill_checksum_ipv4(src, dst);
            assert_ne!(
                writable.checksum(),
                0,
                "a computed UDP checksum is never sent as 0"
            );
            assert!(writable.verify_checksum_ipv4(src, dst));
        });
    }
}

fn check_ipv6(data: &[u8]) {
    let Ok(packet) = ipv6::Packet::new_checked(data) else {
        return;
    };
    assert_eq!(packet.version(), 6);
    assert!(packet.total_len() <= data.len());
    assert_eq!(packet.payload().len(), usize::from(packet.payload_len()));
    assert!(packet.flow_label() <= 0x000f_ffff);
    let _ = (
        packet.traffic_class(),
        packet.hop_limit(),
        packet.next_header(),
    );
    let (src, dst) = (packet.src_addr(), packet.dst_addr());

    let mut copy = data.to_vec();
    let mut writable = ipv6::Packet::new_checked(&mut copy[..]).expect("same bytes");
    writable.set_version_tc_flow(packet.traffic_class(), packet.flow_label());
    assert_eq!(
        copy[..4],
        data[..4],
        "version, class and flow label do not round-trip"
    );

    if packet.next_header() == IpProtocol::UDP {
        check_udp(packet.payload(), |udp_packet| {
            let mut bytes = udp_packet.to_vec();
            let mut writable = udp::Packet::new_checked(&mut bytes[..]).expect("same bytes");
            let valid_before = writable.verify_checksum_ipv6(src, dst);
            if valid_before {
                let new_src = Ipv6Addr::from(dst.to_bits().rotate_left(13) ^ src.to_bits());
                let updated = checksum::update_ipv6_addr(writable.checksum(), src, new_src);
                writable.set_checksum(if updated == 0 { 0xffff } else { updated });
                assert!(
                    writable.verify_checksum_ipv6(new_src, dst),
                    "incremental update broke a valid UDP/IPv6 checksum"
                );
            }
            writable.fill_checksum_ipv6(src, dst);
            assert_ne!(writable.checksum(), 0);
            assert!(writable.verify_checksum_ipv6(src, dst));
        });
    }
}

/// Parses `data` as UDP and, if it is, checks its lengths and runs `checksums` on the datagram.
fn check_udp(data: &[u8], checksums: impl FnOnce(&[u8])) {
    let Ok(packet) = udp::Packet::new_checked(data) else {
        return;
    };
    let len = usize::from(packet.len());
    assert!(len >= udp::HEADER_LEN && len <= data.len());
    assert_eq!(packet.payload().len(), len - udp::HEADER_LEN);
    let _ = (packet.src_port(), packet.dst_port());
    checksums(&data[..len]);
}

/// Writes outer headers from fields the input chooses, in front of the input as payload, and
/// parses them back.
fn check_outer_writers(data: &[u8]) {
    let mut fields = Reader::new(data);
    let src_port = fields.u16();
    let dst_port = fields.u16();
    let ttl = fields.u8();
    let class = fields.u8();
    let ident = fields.u16();
    let flow_label = fields.u32();
    let v4 = (Ipv4Addr::from(fields.u32()), Ipv4Addr::from(fields.u32()));
    let v6 = (
        Ipv6Addr::from(u128::from_le_bytes(fields.array())),
        Ipv6Addr::from(u128::from_le_bytes(fields.array())),
    );
    let payload = data;

    let mut buffer = vec![0u8; IPV4_UDP_HEADERS_LEN + payload.len()];
    buffer[IPV4_UDP_HEADERS_LEN..].copy_from_slice(payload);
    let header = Ipv4UdpHeader {
        src: SocketAddrV4::new(v4.0, src_port),
        dst: SocketAddrV4::new(v4.1, dst_port),
        ttl,
        dscp_ecn: class,
        ident,
    };
    match write_ipv4_udp(&mut buffer, &header, payload.len()) {
        Ok(total) => {
            assert_eq!(total, buffer.len());
            let ip = ipv4::Packet::new_checked(&buffer[..]).expect("written IPv4 parses");
            assert!(ip.verify_checksum());
            assert!(!ip.is_fragment() && !ip.dont_fragment());
            assert_eq!((ip.src_addr(), ip.dst_addr()), v4);
            assert_eq!((ip.ttl(), ip.ident()), (ttl, ident));
            assert_eq!((ip.dscp(), ip.ecn()), (class >> 2, class & 3));
            assert_eq!(ip.protocol(), IpProtocol::UDP);
            let datagram = udp::Packet::new_checked(ip.payload()).expect("written UDP parses");
            assert_eq!(
                (datagram.src_port(), datagram.dst_port()),
                (src_port, dst_port)
            );
            assert_eq!(datagram.payload(), payload);
            assert!(datagram.verify_checksum_ipv4(v4.0, v4.1));
        }
        Err(_) => assert!(IPV4_UDP_HEADERS_LEN + payload.len() > usize::from(u16::MAX)),
    }

    let mut buffer = vec![0u8; IPV6_UDP_HEADERS_LEN + payload.len()];
    buffer[IPV6_UDP_HEADERS_LEN..].copy_from_slice(payload);
    let header = Ipv6UdpHeader {
        src: SocketAddrV6::new(v6.0, src_port, 0, 0),
        dst: SocketAddrV6::new(v6.1, dst_port, 0, 0),
        hop_limit: ttl,
        traffic_class: class,
        flow_label,
    };
    match write_ipv6_udp(&mut buffer, &header, payload.len()) {
        Ok(total) => {
            assert_eq!(total, buffer.len());
            let ip = ipv6::Packet::new_checked(&buffer[..]).expect("written IPv6 parses");
            assert_eq!((ip.src_addr(), ip.dst_addr()), v6);
            assert_eq!((ip.hop_limit(), ip.traffic_class()), (ttl, class));
            assert_eq!(ip.flow_label(), flow_label & 0x000f_ffff);
            assert_eq!(ip.next_header(), IpProtocol::UDP);
            let datagram = udp::Packet::new_checked(ip.payload()).expect("written UDP parses");
            assert_eq!(
                (datagram.src_port(), datagram.dst_port()),
                (src_port, dst_port)
            );
            assert_eq!(datagram.payload(), payload);
            assert!(datagram.verify_checksum_ipv6(v6.0, v6.1));
        }
        Err(_) => assert!(udp::HEADER_LEN + payload.len() > usize::from(u16::MAX)),
    }
}
