//! The `virtio_net_hdr` that precedes every packet on a TUN queue opened with
//! `IFF_VNET_HDR` (`include/uapi/linux/virtio_net.h`, the legacy 10-byte form).
//!
//! Layout, in the host's byte order (a TUN device speaks legacy virtio, whose
//! fields are native-endian unless `TUNSETVNETLE`/`TUNSETVNETBE` say otherwise):
//!
//! | offset | field         | meaning                                                   |
//! |--------|---------------|-----------------------------------------------------------|
//! | 0      | `flags`       | [`FLAG_NEEDS_CSUM`], [`FLAG_DATA_VALID`]                  |
//! | 1      | `gso_type`    | [`GsoType`], plus [`GSO_ECN`]                             |
//! | 2..4   | `hdr_len`     | length of the headers (a hint, not trusted here)          |
//! | 4..6   | `gso_size`    | payload bytes per segment                                 |
//! | 6..8   | `csum_start`  | offset where checksumming starts (the transport header)   |
//! | 8..10  | `csum_offset` | offset of the checksum field from `csum_start`            |
//!
//! [`VnetHeader::parse`] is checked and never panics on any input.

use std::fmt;

/// Length of the header on the queue (`TUNSETVNETHDRSZ` is set to this).
pub const HEADER_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the transport checksum is partial (the field holds
/// the pseudo-header sum); complete it over `csum_start..` and store it at
/// `csum_start + csum_offset`.
pub const FLAG_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
pub const FLAG_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_ECN`: the TCP segments carry ECN (CWR set on the first).
pub const GSO_ECN: u8 = 0x80;

const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_UDP: u8 = 3;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;

/// The segmentation offload a frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GsoType {
    /// One packet, no segmentation.
    #[default]
    None,
    /// TCP over IPv4, split by `gso_size` (TSO).
    TcpV4,
    /// TCP over IPv6, split by `gso_size` (TSO).
    TcpV6,
    /// UDP datagrams of `gso_size` payload bytes each, each with its own UDP header (USO).
    UdpL4,
}

impl GsoType {
    fn to_raw(self) -> u8 {
        match self {
            GsoType::None => GSO_NONE,
            GsoType::TcpV4 => GSO_TCPV4,
            GsoType::TcpV6 => GSO_TCPV6,
            GsoType::UdpL4 => GSO_UDP_L4,
        }
    }
}

/// Why bytes are not a usable virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VnetError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Truncated,
    /// A `gso_type` warpline does not handle (UFO, which the kernel no longer
    /// emits, or an unknown value); the raw value without [`GSO_ECN`].
    UnsupportedGsoType(u8),
}

impl fmt::Display for VnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VnetError::Truncated => write!(f, "virtio-net header shorter than {HEADER_LEN} bytes"),
            VnetError::UnsupportedGsoType(GSO_UDP) => {
                f.write_str("virtio-net gso_type UDP (UFO) is not supported")
            }
            VnetError::UnsupportedGsoType(raw) => {
                write!(f, "unknown virtio-net gso_type {raw}")
            }
        }
    }
}

impl std::error::Error for VnetError {}

/// A decoded `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VnetHeader {
    /// [`FLAG_NEEDS_CSUM`] and [`FLAG_DATA_VALID`] bits.
    pub flags: u8,
    /// The segmentation asked for.
    pub gso_type: GsoType,
    /// The [`GSO_ECN`] bit of `gso_type`.
    pub gso_ecn: bool,
    /// Header length hint (Ethernet-less here: IP + transport headers).
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS for TCP).
    pub gso_size: u16,
    /// Offset of the transport header, where checksumming starts.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start` (16 for TCP, 6 for UDP).
    pub csum_offset: u16,
}

impl VnetHeader {
    /// The all-zero header: one complete packet, checksums already filled in.
    pub const NONE: Self = Self {
        flags: 0,
        gso_type: GsoType::None,
        gso_ecn: false,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Decodes the first [`HEADER_LEN`] bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, VnetError> {
        let bytes: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(VnetError::Truncated)?;
        let u16_at = |at: usize| u16::from_ne_bytes([bytes[at], bytes[at + 1]]);
        let raw_type = bytes[1] & !GSO_ECN;
        let gso_type = match raw_type {
            GSO_NONE => GsoType::None,
            GSO_TCPV4 => GsoType::TcpV4,
            GSO_TCPV6 => GsoType::TcpV6,
            GSO_UDP_L4 => GsoType::UdpL4,
            other => return Err(VnetError::UnsupportedGsoType(other)),
        };
        Ok(Self {
            flags: bytes[0],
            gso_type,
            gso_ecn: bytes[1] & GSO_ECN != 0,
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = self.flags;
        out[1] = self.gso_type.to_raw() | if self.gso_ecn { GSO_ECN } else { 0 };
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        out
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8]) -> Result<(), VnetError> {
        out.get_mut(..HEADER_LEN)
            .ok_or(VnetError::Truncated)?
            .copy_from_slice(&self.to_bytes());
        Ok(())
    }

    /// Whether the transport checksum is partial and must be completed.
    pub fn needs_csum(&self) -> bool {
        self.flags & FLAG_NEEDS_CSUM != 0
    }

    /// Whether the checksum was already verified by the sender.
    pub fn data_valid(&self) -> bool {
        self.flags & FLAG_DATA_VALID != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_every_field() {
        let header = VnetHeader {
            flags: FLAG_NEEDS_CSUM,
            gso_type: GsoType::TcpV6,
            gso_ecn: true,
            hdr_len: 74,
            gso_size: 1428,
            csum_start: 40,
            csum_offset: 16,
        };
        let bytes = header.to_bytes();
        assert_eq!(bytes[1], GSO_TCPV6 | GSO_ECN);
        assert_eq!(VnetHeader::parse(&bytes), Ok(header));
        assert!(header.needs_csum());
        assert!(!header.data_valid());
        let mut longer = [0xaa; 12];
        header.write(&mut longer).unwrap();
        assert_eq!(&longer[..HEADER_LEN], &bytes);
        assert_eq!(header.write(&mut [0; 9]), Err(VnetError::Truncated));
    }

    #[test]
    fn zero_header_is_none() {
        assert_eq!(VnetHeader::parse(&[0; HEADER_LEN]), Ok(VnetHeader::NONE));
        assert_eq!(VnetHeader::NONE.to_bytes(), [0; HEADER_LEN]);
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(VnetHeader::parse(&[0; 9]), Err(VnetError::Truncated));
        let mut ufo = [0; HEADER_LEN];
        ufo[1] = GSO_UDP;
        assert_eq!(
            VnetHeader::parse(&ufo),
            Err(VnetError::UnsupportedGsoType(3))
        );
        assert!(VnetError::UnsupportedGsoType(3).to_string().contains("UFO"));
        ufo[1] = 0x7f;
        assert_eq!(
            VnetHeader::parse(&ufo),
            Err(VnetError::UnsupportedGsoType(0x7f))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(data in prop::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(header) = VnetHeader::parse(&data) {
                // What parses re-encodes to the same bytes.
                prop_assert_eq!(&header.to_bytes()[..], &data[..HEADER_LEN]);
            }
        }
    }
}
