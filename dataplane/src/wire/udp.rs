//! UDP headers (RFC 768), their checksums over IPv4 and IPv6, and the outer IP + UDP headers
//! of encapsulated packets.

use super::{IpProtocol, WireError, checksum, ipv4, ipv6, read_u16, write_u16};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;

/// Source port.
pub const SRC_PORT: Range<usize> = 0..2;
/// Destination port.
pub const DST_PORT: Range<usize> = 2..4;
/// Length: header and payload.
pub const LENGTH: Range<usize> = 4..6;
/// Checksum.
pub const CHECKSUM: Range<usize> = 6..8;
/// Length of the header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram. Bytes after the length field's end are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer holding a UDP datagram whose declared length fits.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the length field against the header size and the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let declared = usize::from(self.len());
        if declared < HEADER_LEN {
            return Err(WireError::BadLength);
        }
        if len < declared {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), DST_PORT.start)
    }

    /// The length field: header and payload.
    #[expect(clippy::len_without_is_empty, reason = "a datagram is never empty")]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), LENGTH.start)
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), CHECKSUM.start)
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.datagram()[HEADER_LEN..]
    }

    /// Whether the checksum is correct for an IPv4 datagram; a zero checksum means the sender
    /// sent none, which IPv4 allows.
    pub fn verify_checksum_ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || {
            let pseudo = checksum::pseudo_header_ipv4(src, dst, IpProtocol::UDP.0, self.len());
            self.verifies_with(pseudo)
        }
    }

    /// Whether the checksum is correct for an IPv6 datagram, where it is mandatory: a zero
    /// checksum fails.
    pub fn verify_checksum_ipv6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        self.checksum() != 0 && {
            let pseudo =
                checksum::pseudo_header_ipv6(src, dst, IpProtocol::UDP.0, u32::from(self.len()));
            self.verifies_with(pseudo)
        }
    }

    fn verifies_with(&self, pseudo_header: u64) -> bool {
        let total = checksum::combine(pseudo_header, checksum::sum(self.datagram()));
        checksum::fold(total) == 0xffff
    }

    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), SRC_PORT.start, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), DST_PORT.start, port);
    }

    /// Sets the length field: header and payload.
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), LENGTH.start, len);
    }

    /// Stores a checksum as given.
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), CHECKSUM.start, checksum);
    }

    /// Computes and stores the checksum for an IPv4 datagram.
    pub fn fill_checksum_ipv4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let pseudo = checksum::pseudo_header_ipv4(src, dst, IpProtocol::UDP.0, self.len());
        self.fill_checksum_with(pseudo);
    }

    /// Computes and stores the checksum for an IPv6 datagram.
    pub fn fill_checksum_ipv6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let pseudo =
            checksum::pseudo_header_ipv6(src, dst, IpProtocol::UDP.0, u32::from(self.len()));
        self.fill_checksum_with(pseudo);
    }

    /// The payload, up to the length field, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    fn fill_checksum_with(&mut self, pseudo_header: u64) {
        self.set_checksum(0);
        let total = checksum::combine(pseudo_header, checksum::sum(self.datagram()));
        let value = !checksum::fold(total);
        // A computed zero is sent as all ones: zero on the wire means "no checksum".
        self.set_checksum(if value == 0 { 0xffff } else { value });
    }
}

/// Length of the outer headers [`write_ipv4_udp`] writes.
pub const IPV4_UDP_HEADERS_LEN: usize = ipv4::MIN_HEADER_LEN + HEADER_LEN;
/// Length of the outer headers [`write_ipv6_udp`] writes.
pub const IPV6_UDP_HEADERS_LEN: usize = ipv6::HEADER_LEN + HEADER_LEN;

/// The fields of an outer IPv4 + UDP header that vary per packet or per peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4UdpHeader {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// Time to live.
    pub ttl: u8,
    /// DSCP and ECN byte (the inner packet's, to keep ECN working through the tunnel).
    pub dscp_ecn: u8,
    /// Identification. Don't-fragment stays clear, as in Linux WireGuard, so a smaller path
    /// MTU fragments the packet rather than dropping it: give each packet its own value.
    pub ident: u16,
}

/// Writes IPv4 and UDP headers, with both checksums, in front of a payload of `payload_len`
/// bytes already at `buffer[IPV4_UDP_HEADERS_LEN..]`. Returns the packet's total length.
pub fn write_ipv4_udp(
    buffer: &mut [u8],
    header: &Ipv4UdpHeader,
    payload_len: usize,
) -> Result<usize, WireError> {
    let total_len = IPV4_UDP_HEADERS_LEN + payload_len;
    let total_len_field = u16::try_from(total_len).map_err(|_| WireError::BadLength)?;
    let packet = buffer.get_mut(..total_len).ok_or(WireError::Truncated)?;

    let (ip_header, datagram) = packet.split_at_mut(ipv4::MIN_HEADER_LEN);
    let mut ip = ipv4::Packet::new_unchecked(ip_header);
    ip.set_version_and_header_len(ipv4::MIN_HEADER_LEN);
    let dscp_ecn = header.dscp_ecn;
    ip.set_dscp_ecn(dscp_ecn >> 2, dscp_ecn & 0x03);
    ip.set_total_len(total_len_field);
    ip.set_ident(header.ident);
    ip.set_fragment(false, false, 0);
    ip.set_ttl(header.ttl);
    ip.set_protocol(IpProtocol::UDP);
    ip.set_src_addr(*header.src.ip());
    ip.set_dst_addr(*header.dst.ip());
    ip.fill_checksum();

    let mut udp = Packet::new_unchecked(datagram);
    udp.set_src_port(header.src.port());
    udp.set_dst_port(header.dst.port());
    udp.set_len(total_len_field - ipv4::MIN_HEADER_LEN as u16);
    udp.fill_checksum_ipv4(*header.src.ip(), *header.dst.ip());
    Ok(total_len)
}

/// The fields of an outer IPv6 + UDP header that vary per packet or per peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6UdpHeader {
    /// Source address and port (flow info and scope are ignored).
    pub src: SocketAddrV6,
    /// Destination address and port (flow info and scope are ignored).
    pub dst: SocketAddrV6,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class (the inner packet's DSCP and ECN).
    pub traffic_class: u8,
    /// Flow label (low 20 bits).
    pub flow_label: u32,
}

/// Writes IPv6 and UDP headers, with the UDP checksum, in front of a payload of `payload_len`
/// bytes already at `buffer[IPV6_UDP_HEADERS_LEN..]`. Returns the packet's total length.
pub fn write_ipv6_udp(
    buffer: &mut [u8],
    header: &Ipv6UdpHeader,
    payload_len: usize,
) -> Result<usize, WireError> {
    let udp_len = HEADER_LEN + payload_len;
    let udp_len_field = u16::try_from(udp_len).map_err(|_| WireError::BadLength)?;
    let total_len = ipv6::HEADER_LEN + udp_len;
    let packet = buffer.get_mut(..total_len).ok_or(WireError::Truncated)?;

    let (ip_header, datagram) = packet.split_at_mut(ipv6::HEADER_LEN);
    let mut ip = ipv6::Packet::new_unchecked(ip_header);
    ip.set_version_tc_flow(header.traffic_class, header.flow_label);
    ip.set_payload_len(udp_len_field);
    ip.set_next_header(IpProtocol::UDP);
    ip.set_hop_limit(header.hop_limit);
    ip.set_src_addr(*header.src.ip());
    ip.set_dst_addr(*header.dst.ip());

    let mut udp = Packet::new_unchecked(datagram);
    udp.set_src_port(header.src.port());
    udp.set_dst_port(header.dst.port());
    udp.set_len(udp_len_field);
    udp.fill_checksum_ipv6(*header.src.ip(), *header.dst.ip());
    Ok(total_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// smoltcp's UDP test vector (src/wire/udp.rs): port 48896 to 53, from 192.168.1.1 to
    /// 192.168.1.2, four payload bytes, checksum 0x124d (also checked by hand with RFC 1071).
    const KNOWN_SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const KNOWN_DST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
    const KNOWN_DATAGRAM: [u8; 12] = [
        0xbf, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x12, 0x4d, 0xaa, 0x00, 0x00, 0xff,
    ];

    #[test]
    fn known_datagram_parses_and_verifies() {
        let packet = Packet::new_checked(&KNOWN_DATAGRAM[..]).unwrap();
        assert_eq!(packet.src_port(), 48896);
        assert_eq!(packet.dst_port(), 53);
        assert_eq!(packet.len(), 12);
        assert_eq!(packet.payload(), &[0xaa, 0x00, 0x00, 0xff]);
        assert!(packet.verify_checksum_ipv4(KNOWN_SRC, KNOWN_DST));
        assert!(!packet.verify_checksum_ipv4(KNOWN_DST, Ipv4Addr::new(192, 168, 1, 3)));
    }

    #[test]
    fn fill_checksum_reproduces_known_value() {
        let mut bytes = KNOWN_DATAGRAM;
        let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
        packet.set_checksum(0xffff);
        packet.fill_checksum_ipv4(KNOWN_SRC, KNOWN_DST);
        assert_eq!(packet.checksum(), 0x124d);
    }

    #[test]
    fn zero_checksum_means_none_on_ipv4_only() {
        let mut bytes = KNOWN_DATAGRAM;
        let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
        packet.set_checksum(0);
        assert!(packet.verify_checksum_ipv4(KNOWN_SRC, KNOWN_DST));
        let v6 = Ipv6Addr::LOCALHOST;
        assert!(!packet.verify_checksum_ipv6(v6, v6));
    }

    #[test]
    fn computed_zero_is_stored_as_all_ones() {
        // Pick the payload word so the whole sum is 0xffff, which complements to zero.
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut bytes = [0u8; 10];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_len(10);
        let pseudo = checksum::pseudo_header_ipv4(src, dst, 17, 10);
        let partial = checksum::fold(checksum::combine(
            pseudo,
            checksum::sum(&[0, 0, 0, 0, 0, 10]),
        ));
        packet
            .payload_mut()
            .copy_from_slice(&(!partial).to_be_bytes());
        packet.fill_checksum_ipv4(src, dst);
        assert_eq!(packet.checksum(), 0xffff);
        assert!(packet.verify_checksum_ipv4(src, dst));
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        assert_eq!(
            Packet::new_checked(&KNOWN_DATAGRAM[..7]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&KNOWN_DATAGRAM[..11]),
            Err(WireError::Truncated)
        );
        let mut short_len = KNOWN_DATAGRAM;
        short_len[5] = 7;
        assert_eq!(
            Packet::new_checked(&short_len[..]),
            Err(WireError::BadLength)
        );
        let mut padded = KNOWN_DATAGRAM.to_vec();
        padded.extend_from_slice(&[1, 2, 3]);
        let packet = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.payload().len(), 4);
        assert!(packet.verify_checksum_ipv4(KNOWN_SRC, KNOWN_DST));
    }

    fn v4_header() -> Ipv4UdpHeader {
        Ipv4UdpHeader {
            src: "198.51.100.7:51820".parse().unwrap(),
            dst: "203.0.113.9:40000".parse().unwrap(),
            ttl: 64,
            dscp_ecn: 0xb9,
            ident: 0x4242,
        }
    }

    fn v6_header() -> Ipv6UdpHeader {
        Ipv6UdpHeader {
            src: "[2001:db8::7]:51820".parse().unwrap(),
            dst: "[2001:db8:1::9]:40000".parse().unwrap(),
            hop_limit: 33,
            traffic_class: 0x2e,
            flow_label: 0xabcde,
        }
    }

    #[test]
    fn outer_header_writers_refuse_what_does_not_fit() {
        assert_eq!(
            write_ipv4_udp(&mut [0u8; 30], &v4_header(), 3),
            Err(WireError::Truncated)
        );
        assert_eq!(
            write_ipv4_udp(&mut [0u8; 30], &v4_header(), 65_536 - 28),
            Err(WireError::BadLength)
        );
        assert_eq!(
            write_ipv6_udp(&mut [0u8; 50], &v6_header(), 65_536 - 8),
            Err(WireError::BadLength)
        );
        // IPv6 payload length excludes the fixed header, so this still fits.
        let mut big = vec![0u8; 40 + 65_535];
        assert_eq!(
            write_ipv6_udp(&mut big, &v6_header(), 65_535 - 8),
            Ok(40 + 65_535)
        );
    }

    proptest! {
        #[test]
        fn ipv4_udp_round_trip(
            payload in prop::collection::vec(any::<u8>(), 0..200),
            ttl in any::<u8>(),
            ident in any::<u16>(),
            src in any::<(u32, u16)>(),
            dst in any::<(u32, u16)>(),
        ) {
            let header = Ipv4UdpHeader {
                src: SocketAddrV4::new(Ipv4Addr::from_bits(src.0), src.1),
                dst: SocketAddrV4::new(Ipv4Addr::from_bits(dst.0), dst.1),
                ttl,
                dscp_ecn: 0,
                ident,
            };
            let mut buf = vec![0u8; IPV4_UDP_HEADERS_LEN + payload.len() + 5];
            buf[IPV4_UDP_HEADERS_LEN..][..payload.len()].copy_from_slice(&payload);
            let len = write_ipv4_udp(&mut buf, &header, payload.len()).unwrap();
            prop_assert_eq!(len, IPV4_UDP_HEADERS_LEN + payload.len());

            let ip = ipv4::Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(ip.verify_checksum());
            prop_assert!(!ip.is_fragment());
            prop_assert_eq!(ip.protocol(), IpProtocol::UDP);
            prop_assert_eq!(ip.ttl(), ttl);
            prop_assert_eq!(ip.ident(), ident);
            prop_assert_eq!(ip.src_addr(), *header.src.ip());
            prop_assert_eq!(ip.dst_addr(), *header.dst.ip());
            let udp = Packet::new_checked(ip.payload()).unwrap();
            prop_assert_ne!(udp.checksum(), 0);
            prop_assert!(udp.verify_checksum_ipv4(ip.src_addr(), ip.dst_addr()));
            prop_assert_eq!(udp.src_port(), header.src.port());
            prop_assert_eq!(udp.dst_port(), header.dst.port());
            prop_assert_eq!(udp.payload(), &payload[..]);
        }

        #[test]
        fn ipv6_udp_round_trip(
            payload in prop::collection::vec(any::<u8>(), 0..200),
            flip in any::<prop::sample::Index>(),
        ) {
            let header = v6_header();
            let mut buf = vec![0u8; IPV6_UDP_HEADERS_LEN + payload.len()];
            buf[IPV6_UDP_HEADERS_LEN..].copy_from_slice(&payload);
            write_ipv6_udp(&mut buf, &header, payload.len()).unwrap();

            let ip = ipv6::Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(ip.next_header(), IpProtocol::UDP);
            prop_assert_eq!(ip.hop_limit(), 33);
            prop_assert_eq!(ip.traffic_class(), 0x2e);
            prop_assert_eq!(ip.flow_label(), 0xabcde);
            let udp = Packet::new_checked(ip.payload()).unwrap();
            prop_assert!(udp.verify_checksum_ipv6(ip.src_addr(), ip.dst_addr()));
            prop_assert_eq!(udp.payload(), &payload[..]);

            // A flipped bit anywhere but the length field (which also moves the end of what
            // is summed) must be caught.
            let datagram_len = HEADER_LEN + payload.len();
            let mut at = flip.index(datagram_len - LENGTH.len());
            if at >= LENGTH.start {
                at += LENGTH.len();
            }
            buf[ipv6::HEADER_LEN + at] ^= 0x10;
            let ip = ipv6::Packet::new_checked(&buf[..]).unwrap();
            let udp = Packet::new_checked(ip.payload()).unwrap();
            prop_assert!(!udp.verify_checksum_ipv6(ip.src_addr(), ip.dst_addr()));
        }

        #[test]
        fn any_bytes_parse_without_panic(
            mut data in prop::collection::vec(any::<u8>(), 0..40),
            fit_len in any::<Option<prop::sample::Index>>(),
            addrs in any::<(u32, u32, u128, u128)>(),
        ) {
            if let Some(index) = fit_len && data.len() >= HEADER_LEN {
                let len = index.index(data.len() + 1) as u16;
                data[4..6].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = (packet.src_port(), packet.dst_port(), packet.checksum());
                let (s4, d4) = (Ipv4Addr::from_bits(addrs.0), Ipv4Addr::from_bits(addrs.1));
                let (s6, d6) = (Ipv6Addr::from_bits(addrs.2), Ipv6Addr::from_bits(addrs.3));
                let _ = packet.verify_checksum_ipv4(s4, d4);
                let _ = packet.verify_checksum_ipv6(s6, d6);
                prop_assert_eq!(packet.payload().len(), usize::from(packet.len()) - HEADER_LEN);
            }
        }
    }
}
