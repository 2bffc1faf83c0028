//! Zero-copy, checked views of the headers warpline reads and writes.
//!
//! Each view wraps a buffer (`T: AsRef<[u8]>` to read, `T: AsMut<[u8]>` to write) in the
//! smoltcp style: `new_checked` validates lengths and versions once, after which every getter
//! is panic-free on any input; `new_unchecked` skips validation for buffers the caller is
//! building, where an out-of-range access is a caller bug and panics. Setters that change the
//! layout (header or total lengths) can break what `new_checked` established: re-check after.

pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod udp;
pub mod wireguard;

use std::fmt;

/// Why bytes are not a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer ends before the header, or before the length the header declares.
    Truncated,
    /// The IP version field does not match the parser.
    BadVersion,
    /// A header-length field is below the minimum.
    BadHeaderLength,
    /// A length field is inconsistent: shorter than its own header, or too large to encode.
    BadLength,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "buffer shorter than the header or its declared length",
            WireError::BadVersion => "wrong IP version",
            WireError::BadHeaderLength => "header length field below the minimum",
            WireError::BadLength => "length field inconsistent with the header",
        })
    }
}

impl std::error::Error for WireError {}

/// An IP protocol number (IPv4 protocol, IPv6 next header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// ICMP for IPv4.
    pub const ICMP: Self = Self(1);
    /// TCP.
    pub const TCP: Self = Self(6);
    /// UDP.
    pub const UDP: Self = Self(17);
    /// ICMPv6.
    pub const ICMPV6: Self = Self(58);
}

/// Reads a big-endian u16 at `at`. Panics if out of range: callers index within checked
/// lengths or unchecked buffers the caller vouches for.
fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

fn write_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
