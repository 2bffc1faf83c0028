//! IPv6 fixed headers (RFC 8200). Extension headers are part of the payload; jumbograms are
//! not supported (a payload length of zero means an empty payload).

use super::{IpProtocol, WireError, read_u16, write_u16};
use std::net::Ipv6Addr;
use std::ops::Range;

/// Version (4 bits), traffic class (8 bits) and flow label (20 bits).
pub const VERSION_TC_FLOW: Range<usize> = 0..4;
/// Payload length: everything after the fixed header.
pub const PAYLOAD_LEN: Range<usize> = 4..6;
/// Next header: the first extension header or the upper-layer protocol.
pub const NEXT_HEADER: usize = 6;
/// Hop limit.
pub const HOP_LIMIT: usize = 7;
/// Source address.
pub const SRC_ADDR: Range<usize> = 8..24;
/// Destination address.
pub const DST_ADDR: Range<usize> = 24..40;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// A view of an IPv6 packet. Bytes after the payload length (Ethernet padding) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer holding an IPv6 packet whose declared payload fits.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version and the payload length against the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 6 {
            return Err(WireError::BadVersion);
        }
        if len < self.total_len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (6 for a checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[VERSION_TC_FLOW.start] >> 4
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    /// Flow label.
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Payload length: everything after the fixed header.
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), PAYLOAD_LEN.start)
    }

    /// Fixed header plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[NEXT_HEADER])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), DST_ADDR)
    }

    /// The payload, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }

    fn first_word(&self) -> u32 {
        let data = self.buffer.as_ref();
        u32::from_be_bytes([data[0], data[1], data[2], data[3]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version to 6, the traffic class and the flow label (low 20 bits used).
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let word = 6 << 28 | u32::from(traffic_class) << 20 | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[VERSION_TC_FLOW].copy_from_slice(&word.to_be_bytes());
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, payload_len: u16) {
        write_u16(self.buffer.as_mut(), PAYLOAD_LEN.start, payload_len);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, next_header: IpProtocol) {
        self.buffer.as_mut()[NEXT_HEADER] = next_header.0;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[HOP_LIMIT] = hop_limit;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload, up to the payload length, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

fn addr_at(data: &[u8], range: Range<usize>) -> Ipv6Addr {
    let mut octets = [0; 16];
    octets.copy_from_slice(&data[range]);
    Ipv6Addr::from(octets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn src() -> Ipv6Addr {
        "2001:db8::1".parse().unwrap()
    }

    fn dst() -> Ipv6Addr {
        "2001:db8:ffff::abcd".parse().unwrap()
    }

    #[test]
    fn setters_round_trip() {
        let mut bytes = [0u8; 48];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_version_tc_flow(0xb8, 0xf_1234);
        packet.set_payload_len(5);
        packet.set_next_header(IpProtocol::UDP);
        packet.set_hop_limit(64);
        packet.set_src_addr(src());
        packet.set_dst_addr(dst());
        packet.payload_mut().copy_from_slice(&[7; 5]);

        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0xb8);
        assert_eq!(packet.flow_label(), 0xf_1234);
        assert_eq!(packet.payload_len(), 5);
        assert_eq!(packet.next_header(), IpProtocol::UDP);
        assert_eq!(packet.hop_limit(), 64);
        assert_eq!(packet.src_addr(), src());
        assert_eq!(packet.dst_addr(), dst());
        // The three padding bytes after the payload are not part of it.
        assert_eq!(packet.payload(), &[7; 5]);
    }

    #[test]
    fn malformed_headers_are_refused() {
        let mut bytes = [0u8; 44];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_version_tc_flow(0, 0);
        packet.set_payload_len(4);
        assert!(Packet::new_checked(&bytes[..]).is_ok());
        assert_eq!(Packet::new_checked(&bytes[..43]), Err(WireError::Truncated));
        assert_eq!(Packet::new_checked(&bytes[..39]), Err(WireError::Truncated));
        bytes[0] = 0x45;
        assert_eq!(Packet::new_checked(&bytes[..]), Err(WireError::BadVersion));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(
            mut data in prop::collection::vec(any::<u8>(), 0..80),
            force_version in any::<bool>(),
            fit_payload_len in any::<Option<prop::sample::Index>>(),
        ) {
            if force_version && !data.is_empty() {
                data[0] = 0x60 | (data[0] & 0x0f);
            }
            if let Some(index) = fit_payload_len && data.len() >= HEADER_LEN {
                let payload_len = index.index(data.len() - HEADER_LEN + 1) as u16;
                data[4..6].copy_from_slice(&payload_len.to_be_bytes());
            }
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = (packet.traffic_class(), packet.flow_label(), packet.next_header());
                let _ = (packet.hop_limit(), packet.src_addr(), packet.dst_addr());
                prop_assert_eq!(packet.payload().len(), usize::from(packet.payload_len()));
            }
        }
    }
}
