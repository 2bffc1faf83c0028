//! Ethernet II frames with at most one 802.1Q VLAN tag.

use super::{WireError, read_u16, write_u16};
use std::ops::Range;

/// Destination MAC address.
pub const DST_ADDR: Range<usize> = 0..6;
/// Source MAC address.
pub const SRC_ADDR: Range<usize> = 6..12;
/// EtherType, or the tag protocol identifier of a VLAN tag.
pub const OUTER_ETHERTYPE: Range<usize> = 12..14;
/// VLAN tag control information (priority, drop eligible, VLAN id), when tagged.
pub const VLAN_TCI: Range<usize> = 14..16;
/// EtherType after a VLAN tag.
pub const TAGGED_ETHERTYPE: Range<usize> = 16..18;
/// Header length without a VLAN tag.
pub const HEADER_LEN: usize = 14;
/// Header length with one VLAN tag.
pub const TAGGED_HEADER_LEN: usize = 18;

/// A MAC address.
pub type MacAddr = [u8; 6];

/// An EtherType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: Self = Self(0x0800);
    /// ARP.
    pub const ARP: Self = Self(0x0806);
    /// An 802.1Q VLAN tag follows.
    pub const VLAN: Self = Self(0x8100);
    /// IPv6.
    pub const IPV6: Self = Self(0x86dd);
}

/// A view of an Ethernet II frame. A second tag (QinQ) is not parsed: it shows as
/// [`EtherType::VLAN`] from [`ethertype`](Self::ethertype).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer that holds a whole header, tag included.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the header, tag included.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.header_len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Whether a VLAN tag follows the source address.
    pub fn is_tagged(&self) -> bool {
        read_u16(self.buffer.as_ref(), OUTER_ETHERTYPE.start) == EtherType::VLAN.0
    }

    /// Header length: 14, or 18 with a VLAN tag.
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Destination MAC address.
    pub fn dst_addr(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), DST_ADDR)
    }

    /// Source MAC address.
    pub fn src_addr(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), SRC_ADDR)
    }

    /// The tag control information of the VLAN tag, if tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_tagged()
            .then(|| read_u16(self.buffer.as_ref(), VLAN_TCI.start))
    }

    /// The VLAN id (low 12 bits of the tag control information), if tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    /// The EtherType of the payload (after the VLAN tag, if any).
    pub fn ethertype(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), self.ethertype_offset()))
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    fn ethertype_offset(&self) -> usize {
        self.header_len() - 2
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[DST_ADDR].copy_from_slice(&addr);
    }

    /// Sets the source MAC address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[SRC_ADDR].copy_from_slice(&addr);
    }

    /// Sets the EtherType of the payload (after the VLAN tag, if any). Setting
    /// [`EtherType::VLAN`] on an untagged frame makes it read as tagged.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        let at = self.ethertype_offset();
        write_u16(self.buffer.as_mut(), at, ethertype.0);
    }

    /// Everything after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// Writes an Ethernet header (tagged when `vlan_tci` is set) at the start of `buffer` and
/// returns its length, where the payload starts.
pub fn write_header(
    buffer: &mut [u8],
    dst: MacAddr,
    src: MacAddr,
    vlan_tci: Option<u16>,
    ethertype: EtherType,
) -> Result<usize, WireError> {
    let header_len = if vlan_tci.is_some() {
        TAGGED_HEADER_LEN
    } else {
        HEADER_LEN
    };
    let header = buffer.get_mut(..header_len).ok_or(WireError::Truncated)?;
    header[DST_ADDR].copy_from_slice(&dst);
    header[SRC_ADDR].copy_from_slice(&src);
    if let Some(tci) = vlan_tci {
        write_u16(header, OUTER_ETHERTYPE.start, EtherType::VLAN.0);
        write_u16(header, VLAN_TCI.start, tci);
    }
    write_u16(header, header_len - 2, ethertype.0);
    Ok(header_len)
}

fn mac_at(data: &[u8], range: Range<usize>) -> MacAddr {
    let mut addr = [0; 6];
    addr.copy_from_slice(&data[range]);
    addr
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DST: MacAddr = [0x02, 0, 0, 0, 0, 1];
    const SRC: MacAddr = [0x02, 0, 0, 0, 0, 2];

    #[test]
    fn untagged_round_trip() {
        let mut buf = [0u8; 20];
        let len = write_header(&mut buf, DST, SRC, None, EtherType::IPV4).unwrap();
        assert_eq!(len, HEADER_LEN);
        buf[14..].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        let frame = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.dst_addr(), DST);
        assert_eq!(frame.src_addr(), SRC);
        assert_eq!(frame.vlan_tci(), None);
        assert_eq!(frame.ethertype(), EtherType::IPV4);
        assert_eq!(frame.header_len(), 14);
        assert_eq!(frame.payload(), &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn tagged_round_trip() {
        let mut buf = [0u8; 18];
        let tci = 0xa000 | 42;
        let len = write_header(&mut buf, DST, SRC, Some(tci), EtherType::IPV6).unwrap();
        assert_eq!(len, TAGGED_HEADER_LEN);
        assert_eq!(&buf[12..14], &[0x81, 0x00]);
        let mut frame = Frame::new_checked(&mut buf[..]).unwrap();
        assert_eq!(frame.vlan_tci(), Some(tci));
        assert_eq!(frame.vlan_id(), Some(42));
        assert_eq!(frame.ethertype(), EtherType::IPV6);
        assert!(frame.payload().is_empty());
        frame.set_ethertype(EtherType::ARP);
        frame.set_dst_addr(SRC);
        frame.set_src_addr(DST);
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.dst_addr(), SRC);
        assert_eq!(frame.vlan_id(), Some(42));
    }

    #[test]
    fn truncated_frames() {
        assert_eq!(
            Frame::new_checked(&[0u8; 13][..]),
            Err(WireError::Truncated)
        );
        let mut tagged = [0u8; 17];
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(Frame::new_checked(&tagged[..]), Err(WireError::Truncated));
        assert_eq!(
            write_header(&mut [0u8; 17], DST, SRC, Some(1), EtherType::IPV4),
            Err(WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(
            mut data in prop::collection::vec(any::<u8>(), 0..40),
            force_tag in any::<bool>(),
        ) {
            if force_tag && data.len() >= 14 {
                data[12..14].copy_from_slice(&[0x81, 0x00]);
            }
            if let Ok(frame) = Frame::new_checked(&data[..]) {
                let _ = (frame.dst_addr(), frame.src_addr(), frame.vlan_id(), frame.ethertype());
                prop_assert_eq!(frame.payload().len(), data.len() - frame.header_len());
            } else {
                prop_assert!(data.len() < TAGGED_HEADER_LEN);
            }
        }
    }
}
