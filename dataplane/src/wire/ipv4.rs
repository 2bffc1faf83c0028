//! IPv4 headers (RFC 791).

use super::{IpProtocol, WireError, checksum, read_u16, write_u16};
use std::net::Ipv4Addr;
use std::ops::Range;

/// Version (high nibble) and header length in 32-bit words (low nibble).
pub const VERSION_IHL: usize = 0;
/// DSCP (high six bits) and ECN (low two bits).
pub const DSCP_ECN: usize = 1;
/// Total length: header and payload.
pub const TOTAL_LEN: Range<usize> = 2..4;
/// Identification.
pub const IDENT: Range<usize> = 4..6;
/// Flags (high three bits) and fragment offset in 8-byte units.
pub const FLAGS_FRAG_OFFSET: Range<usize> = 6..8;
/// Time to live.
pub const TTL: usize = 8;
/// Protocol of the payload.
pub const PROTOCOL: usize = 9;
/// Header checksum.
pub const CHECKSUM: Range<usize> = 10..12;
/// Source address.
pub const SRC_ADDR: Range<usize> = 12..16;
/// Destination address.
pub const DST_ADDR: Range<usize> = 16..20;
/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;

const FLAG_DONT_FRAGMENT: u16 = 0x4000;
const FLAG_MORE_FRAGMENTS: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet. Bytes after the total length (Ethernet padding) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer holding an IPv4 packet whose header and declared total length fit.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version, the header length and the total length against the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(WireError::BadHeaderLength);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(WireError::BadLength);
        }
        if len < total_len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (4 for a checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[VERSION_IHL] >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[VERSION_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point.
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[DSCP_ECN] >> 2
    }

    /// Explicit congestion notification bits.
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[DSCP_ECN] & 0x03
    }

    /// Total length: header and payload.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), TOTAL_LEN.start)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), IDENT.start)
    }

    /// The don't-fragment flag.
    pub fn dont_fragment(&self) -> bool {
        self.flags_frag_offset() & FLAG_DONT_FRAGMENT != 0
    }

    /// The more-fragments flag.
    pub fn more_fragments(&self) -> bool {
        self.flags_frag_offset() & FLAG_MORE_FRAGMENTS != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag_offset() & FRAG_OFFSET_MASK) * 8
    }

    /// Whether this is a fragment of a larger datagram (first, middle or last).
    pub fn is_fragment(&self) -> bool {
        self.flags_frag_offset() & (FLAG_MORE_FRAGMENTS | FRAG_OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[PROTOCOL])
    }

    /// Header checksum as stored.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), CHECKSUM.start)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        addr_at(self.buffer.as_ref(), SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr_at(self.buffer.as_ref(), DST_ADDR)
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.header())) == 0xffff
    }

    /// Options: the header after its first 20 bytes.
    pub fn options(&self) -> &[u8] {
        &self.header()[MIN_HEADER_LEN..]
    }

    /// The payload, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    fn flags_frag_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), FLAGS_FRAG_OFFSET.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version to 4 and the header length, in bytes (a multiple of 4, 20 to 60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        debug_assert!(header_len.is_multiple_of(4) && (MIN_HEADER_LEN..=60).contains(&header_len));
        self.buffer.as_mut()[VERSION_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets DSCP and ECN.
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[DSCP_ECN] = (dscp << 2) | (ecn & 0x03);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, total_len: u16) {
        write_u16(self.buffer.as_mut(), TOTAL_LEN.start, total_len);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), IDENT.start, ident);
    }

    /// Sets the flags and fragment offset (in bytes, a multiple of 8).
    pub fn set_fragment(&mut self, dont_fragment: bool, more_fragments: bool, offset: u16) {
        let mut field = (offset / 8) & FRAG_OFFSET_MASK;
        if dont_fragment {
            field |= FLAG_DONT_FRAGMENT;
        }
        if more_fragments {
            field |= FLAG_MORE_FRAGMENTS;
        }
        write_u16(self.buffer.as_mut(), FLAGS_FRAG_OFFSET.start, field);
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[TTL] = ttl;
    }

    /// Sets the protocol of the payload.
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[PROTOCOL] = protocol.0;
    }

    /// Stores a header checksum as given.
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), CHECKSUM.start, checksum);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = checksum::checksum(self.header());
        self.set_checksum(value);
    }

    /// The payload, up to the total length, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

fn addr_at(data: &[u8], range: Range<usize>) -> Ipv4Addr {
    let mut octets = [0; 4];
    octets.copy_from_slice(&data[range]);
    Ipv4Addr::from(octets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The header from Wikipedia's "IPv4 header checksum" example: 115 bytes of UDP from
    /// 192.168.0.1 to 192.168.0.199, don't-fragment, TTL 64, checksum 0xb861.
    const WIKIPEDIA_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn wikipedia_packet() -> Vec<u8> {
        let mut bytes = WIKIPEDIA_HEADER.to_vec();
        bytes.resize(0x73, 0);
        bytes
    }

    #[test]
    fn known_header_parses_and_verifies() {
        let bytes = wikipedia_packet();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.total_len(), 115);
        assert!(packet.dont_fragment());
        assert!(!packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.protocol(), IpProtocol::UDP);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(packet.checksum(), 0xb861);
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload().len(), 95);
    }

    #[test]
    fn fill_checksum_reproduces_known_value() {
        let mut bytes = wikipedia_packet();
        let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
        packet.set_checksum(0x1234);
        assert!(!packet.verify_checksum());
        packet.fill_checksum();
        assert_eq!(packet.checksum(), 0xb861);
    }

    #[test]
    fn incremental_address_rewrite_keeps_checksum_valid() {
        let mut bytes = wikipedia_packet();
        let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
        let new_dst = Ipv4Addr::new(10, 9, 8, 7);
        let updated = checksum::update_ipv4_addr(packet.checksum(), packet.dst_addr(), new_dst);
        packet.set_dst_addr(new_dst);
        packet.set_checksum(updated);
        assert!(packet.verify_checksum());
    }

    #[test]
    fn setters_round_trip() {
        let mut bytes = [0u8; 32];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_version_and_header_len(24);
        packet.set_dscp_ecn(46, 2);
        packet.set_total_len(30);
        packet.set_ident(0xbeef);
        packet.set_fragment(false, true, 1480);
        packet.set_ttl(3);
        packet.set_protocol(IpProtocol::TCP);
        packet.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        packet.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        packet.fill_checksum();
        packet.payload_mut().copy_from_slice(&[9; 6]);

        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!((packet.dscp(), packet.ecn()), (46, 2));
        assert_eq!(packet.ident(), 0xbeef);
        assert!(packet.more_fragments() && !packet.dont_fragment());
        assert_eq!(packet.frag_offset(), 1480);
        assert!(packet.is_fragment());
        assert_eq!(packet.ttl(), 3);
        assert_eq!(packet.protocol(), IpProtocol::TCP);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(5, 6, 7, 8));
        assert_eq!(packet.options(), &[0; 4]);
        assert_eq!(packet.payload(), &[9; 6]);
        assert!(packet.verify_checksum());
    }

    #[test]
    fn last_fragment_is_a_fragment() {
        let mut bytes = wikipedia_packet();
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_fragment(false, false, 8);
        assert!(packet.is_fragment());
        packet.set_fragment(true, false, 0);
        assert!(!packet.is_fragment());
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = wikipedia_packet();
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = good.clone();
            edit(&mut bytes);
            Packet::new_checked(bytes).err()
        };
        assert_eq!(with(&|b| b.truncate(19)), Some(WireError::Truncated));
        assert_eq!(with(&|b| b[0] = 0x65), Some(WireError::BadVersion));
        assert_eq!(with(&|b| b[0] = 0x44), Some(WireError::BadHeaderLength));
        assert_eq!(with(&|b| b[3] = 19), Some(WireError::BadLength));
        assert_eq!(with(&|b| b.truncate(114)), Some(WireError::Truncated));
        // IHL of 15 words (60 bytes) against a total length of 40.
        assert_eq!(
            with(&|b| {
                b[0] = 0x4f;
                b[3] = 40;
            }),
            Some(WireError::BadLength)
        );
        // Trailing padding past the total length is fine.
        assert_eq!(with(&|b| b.extend_from_slice(&[0; 6])), None);
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(
            mut data in prop::collection::vec(any::<u8>(), 0..100),
            force_version in any::<bool>(),
            fit_total_len in any::<Option<prop::sample::Index>>(),
        ) {
            // Random bytes rarely pass the version check; steer some of them past it.
            if force_version && !data.is_empty() {
                data[0] = 0x40 | (data[0] & 0x0f);
            }
            if let Some(index) = fit_total_len && data.len() >= 4 {
                let total = index.index(data.len() + 1) as u16;
                data[2..4].copy_from_slice(&total.to_be_bytes());
            }
            if let Ok(packet) = Packet::new_checked(&data[..]) {
                let _ = (packet.version(), packet.dscp(), packet.ecn(), packet.ident());
                let _ = (packet.dont_fragment(), packet.more_fragments(), packet.frag_offset());
                let _ = (packet.is_fragment(), packet.ttl(), packet.protocol(), packet.checksum());
                let _ = (packet.src_addr(), packet.dst_addr(), packet.verify_checksum());
                let _ = packet.options();
                prop_assert_eq!(
                    packet.payload().len(),
                    usize::from(packet.total_len()) - packet.header_len()
                );
            }
        }
    }
}
