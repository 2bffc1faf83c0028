//! Segmentation of the GSO frames a TUN queue with offloads hands us, and checksum
//! completion for partial-checksum packets — pure functions over byte slices, tested
//! without a kernel.
//!
//! [`segment`] splits in place: segment `i`'s payload already sits at
//! `hdr_len + i * gso_size` in the frame, so its headers are written just in front of it,
//! over the tail of segment `i - 1`, which has already been handed out. No payload byte
//! is copied and nothing is allocated; a copy of the original headers lives on the stack.
//!
//! Per segment, as Linux's `tcp_gso_segment`/`__udp_gso_segment` do it:
//! - IPv4: total length, identification (`id + i`), header checksum;
//!   IPv6: payload length (extension headers between the fixed header and the transport
//!   header are kept as they are).
//! - TCP: sequence number `seq + i * gso_size`; FIN and PSH only on the last segment, CWR
//!   only on the first; the full checksum.
//! - UDP (`UDP_L4`): the UDP length and the full checksum (a computed zero is sent as
//!   `0xffff`).

use super::vnet::{GsoType, VnetHeader};
use crate::wire::{IpProtocol, WireError, checksum, ipv4, ipv6};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest IP + transport header [`segment`] accepts: a 60-byte IPv4 header with a
/// 60-byte TCP header fits, as does IPv6 with some extension headers.
pub const MAX_HEADER_LEN: usize = 256;

const TCP_SEQ: usize = 4;
const TCP_DATA_OFFSET: usize = 12;
const TCP_FLAGS: usize = 13;
const TCP_CHECKSUM: usize = 16;
const TCP_MIN_HEADER_LEN: usize = 20;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
const UDP_LENGTH: usize = 4;
const UDP_CHECKSUM: usize = 6;
const UDP_HEADER_LEN: usize = 8;

/// Why a frame could not be segmented or its checksum completed. Small and `Copy`, for
/// per-reason drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoError {
    /// The frame is not a valid IPv4 or IPv6 packet.
    Ip(WireError),
    /// `gso_type` names the other IP version (TCPV4 on an IPv6 packet, or the reverse).
    VersionMismatch,
    /// The IP protocol is not the one `gso_type` names.
    ProtocolMismatch,
    /// `csum_start`/`csum_offset` point outside the packet, into the IP header, or at a
    /// field that is not the transport checksum.
    BadChecksumOffsets,
    /// The TCP header is shorter than 20 bytes or runs past the packet.
    BadTransportHeader,
    /// IP and transport headers together exceed [`MAX_HEADER_LEN`].
    HeadersTooLong,
    /// A GSO frame with `gso_size` zero.
    ZeroGsoSize,
}

impl fmt::Display for GsoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GsoError::Ip(error) => write!(f, "GSO frame is not a valid IP packet: {error}"),
            GsoError::VersionMismatch => f.write_str("GSO type names the other IP version"),
            GsoError::ProtocolMismatch => f.write_str("IP protocol does not match the GSO type"),
            GsoError::BadChecksumOffsets => {
                f.write_str("checksum start/offset outside the transport header")
            }
            GsoError::BadTransportHeader => f.write_str("TCP header too short or truncated"),
            GsoError::HeadersTooLong => {
                write!(f, "headers longer than {MAX_HEADER_LEN} bytes")
            }
            GsoError::ZeroGsoSize => f.write_str("GSO frame with gso_size 0"),
        }
    }
}

impl std::error::Error for GsoError {}

/// What the IP header says.
#[derive(Debug, Clone, Copy)]
struct IpInfo {
    v6: bool,
    header_len: usize,
    total_len: usize,
    protocol: u8,
}

fn parse_ip(packet: &[u8]) -> Result<IpInfo, GsoError> {
    match packet.first().map(|byte| byte >> 4) {
        Some(4) => {
            let ip = ipv4::Packet::new_checked(packet).map_err(GsoError::Ip)?;
            Ok(IpInfo {
                v6: false,
                header_len: ip.header_len(),
                total_len: usize::from(ip.total_len()),
                protocol: ip.protocol().0,
            })
        }
        Some(6) => {
            let ip = ipv6::Packet::new_checked(packet).map_err(GsoError::Ip)?;
            Ok(IpInfo {
                v6: true,
                header_len: ipv6::HEADER_LEN,
                total_len: ip.total_len(),
                protocol: ip.next_header().0,
            })
        }
        Some(_) => Err(GsoError::Ip(WireError::BadVersion)),
        None => Err(GsoError::Ip(WireError::Truncated)),
    }
}

/// Hands each IP packet of one frame read from a TUN queue to `out`, and returns how
/// many it handed out.
///
/// `packet` is the frame after its virtio-net header. Without GSO it is handed out as
/// one packet, its checksum completed first if `header` says [`needs_csum`]; with GSO it
/// is split in place as the module documentation describes. On error nothing has been
/// handed out; the caller drops the frame.
///
/// [`needs_csum`]: VnetHeader::needs_csum
pub fn segment(
    packet: &mut [u8],
    header: &VnetHeader,
    mut out: impl FnMut(&mut [u8]),
) -> Result<usize, GsoError> {
    if header.gso_type == GsoType::None {
        if header.needs_csum() {
            let ip = parse_ip(packet)?;
            let packet = &mut packet[..ip.total_len];
            let start = usize::from(header.csum_start);
            if start < ip.header_len {
                return Err(GsoError::BadChecksumOffsets);
            }
            complete_checksum(packet, start, usize::from(header.csum_offset))?;
            out(packet);
        } else {
            out(packet);
        }
        return Ok(1);
    }

    let ip = parse_ip(packet)?;
    let packet = &mut packet[..ip.total_len];
    let tcp = match (header.gso_type, ip.v6) {
        (GsoType::TcpV4, false) | (GsoType::TcpV6, true) => true,
        (GsoType::UdpL4, _) => false,
        _ => return Err(GsoError::VersionMismatch),
    };
    let (protocol, checksum_field) = if tcp {
        (IpProtocol::TCP.0, TCP_CHECKSUM)
    } else {
        (IpProtocol::UDP.0, UDP_CHECKSUM)
    };
    let l4 = if header.needs_csum() {
        usize::from(header.csum_start)
    } else {
        ip.header_len
    };
    // IPv4 options are part of the IP header; IPv6 extension headers may sit between the
    // fixed header and the transport header (then the next-header chain is trusted to end
    // in the protocol gso_type names).
    if l4 < ip.header_len || (!ip.v6 && l4 != ip.header_len) {
        return Err(GsoError::BadChecksumOffsets);
    }
    if header.needs_csum() && usize::from(header.csum_offset) != checksum_field {
        return Err(GsoError::BadChecksumOffsets);
    }
    if l4 == ip.header_len && ip.protocol != protocol {
        return Err(GsoError::ProtocolMismatch);
    }
    let l4_len = if tcp {
        let offset_byte = *packet
            .get(l4 + TCP_DATA_OFFSET)
            .ok_or(GsoError::BadTransportHeader)?;
        let len = usize::from(offset_byte >> 4) * 4;
        if len < TCP_MIN_HEADER_LEN {
            return Err(GsoError::BadTransportHeader);
        }
        len
    } else {
        UDP_HEADER_LEN
    };
    let hdr_len = l4 + l4_len;
    if hdr_len > packet.len() {
        return Err(GsoError::BadTransportHeader);
    }
    if hdr_len > MAX_HEADER_LEN {
        return Err(GsoError::HeadersTooLong);
    }
    let gso_size = usize::from(header.gso_size);
    if gso_size == 0 {
        return Err(GsoError::ZeroGsoSize);
    }

    let mut template = [0u8; MAX_HEADER_LEN];
    let template = &mut template[..hdr_len];
    template.copy_from_slice(&packet[..hdr_len]);
    let payload_len = packet.len() - hdr_len;
    let count = payload_len.div_ceil(gso_size).max(1);
    let ident = u16::from_be_bytes([template[ipv4::IDENT.start], template[ipv4::IDENT.start + 1]]);
    let seq = if tcp {
        u32::from_be_bytes(
            template[l4 + TCP_SEQ..l4 + TCP_SEQ + 4]
                .try_into()
                .expect("4 bytes inside the checked TCP header"),
        )
    } else {
        0
    };

    for i in 0..count {
        let offset = i * gso_size;
        let seg_payload = gso_size.min(payload_len - offset);
        let seg = &mut packet[offset..offset + hdr_len + seg_payload];
        seg[..hdr_len].copy_from_slice(template);
        let seg_len = seg.len();
        // Fits: never longer than the frame, whose length came from a 16-bit field.
        if ip.v6 {
            ipv6::Packet::new_unchecked(&mut *seg)
                .set_payload_len((seg_len - ipv6::HEADER_LEN) as u16);
        } else {
            let mut view = ipv4::Packet::new_unchecked(&mut *seg);
            view.set_total_len(seg_len as u16);
            view.set_ident(ident.wrapping_add(i as u16));
            view.fill_checksum();
        }
        if tcp {
            let seg_seq = seq.wrapping_add(offset as u32);
            seg[l4 + TCP_SEQ..l4 + TCP_SEQ + 4].copy_from_slice(&seg_seq.to_be_bytes());
            let mut flags = seg[l4 + TCP_FLAGS];
            if i + 1 != count {
                flags &= !(TCP_FIN | TCP_PSH);
            }
            if i != 0 {
                flags &= !TCP_CWR;
            }
            seg[l4 + TCP_FLAGS] = flags;
        } else {
            let udp_len = (seg_len - l4) as u16;
            seg[l4 + UDP_LENGTH..l4 + UDP_LENGTH + 2].copy_from_slice(&udp_len.to_be_bytes());
        }
        fill_transport_checksum(seg, ip.v6, l4, protocol, checksum_field);
        out(seg);
    }
    Ok(count)
}

/// Completes a partial checksum the virtio way: the field at `start + offset` holds the
/// pseudo-header sum; the checksum over `start..` is stored there (zero as `0xffff`,
/// which TCP accepts as well and UDP requires).
pub fn complete_checksum(packet: &mut [u8], start: usize, offset: usize) -> Result<(), GsoError> {
    let at = start
        .checked_add(offset)
        .filter(|at| at.checked_add(2).is_some_and(|end| end <= packet.len()))
        .ok_or(GsoError::BadChecksumOffsets)?;
    let value = !checksum::fold(checksum::sum(&packet[start..]));
    let value = if value == 0 { 0xffff } else { value };
    packet[at..at + 2].copy_from_slice(&value.to_be_bytes());
    Ok(())
}

/// The pseudo-header sum for the transport part `packet[l4..]` of an IP packet.
fn pseudo_header(packet: &[u8], v6: bool, l4: usize, protocol: u8) -> u64 {
    let len = packet.len() - l4;
    if v6 {
        let src =
            Ipv6Addr::from(<[u8; 16]>::try_from(&packet[ipv6::SRC_ADDR]).expect("16-byte address"));
        let dst =
            Ipv6Addr::from(<[u8; 16]>::try_from(&packet[ipv6::DST_ADDR]).expect("16-byte address"));
        checksum::pseudo_header_ipv6(src, dst, protocol, len as u32)
    } else {
        let src =
            Ipv4Addr::from(<[u8; 4]>::try_from(&packet[ipv4::SRC_ADDR]).expect("4-byte address"));
        let dst =
            Ipv4Addr::from(<[u8; 4]>::try_from(&packet[ipv4::DST_ADDR]).expect("4-byte address"));
        checksum::pseudo_header_ipv4(src, dst, protocol, len as u16)
    }
}

fn fill_transport_checksum(
    packet: &mut [u8],
    v6: bool,
    l4: usize,
    protocol: u8,
    checksum_field: usize,
) {
    let at = l4 + checksum_field;
    packet[at..at + 2].fill(0);
    let pseudo = pseudo_header(packet, v6, l4, protocol);
    let value = !checksum::fold(checksum::combine(pseudo, checksum::sum(&packet[l4..])));
    let value = if value == 0 && protocol == IpProtocol::UDP.0 {
        0xffff
    } else {
        value
    };
    packet[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Where the transport header of a TCP or UDP packet without IPv6 extension headers
/// starts, and the offset of its checksum field.
fn transport_of(packet: &[u8]) -> Result<(IpInfo, usize), GsoError> {
    let ip = parse_ip(packet)?;
    let field = match IpProtocol(ip.protocol) {
        IpProtocol::TCP => TCP_CHECKSUM,
        IpProtocol::UDP => UDP_CHECKSUM,
        _ => return Err(GsoError::ProtocolMismatch),
    };
    if ip.header_len + field + 2 > ip.total_len {
        return Err(GsoError::BadTransportHeader);
    }
    Ok((ip, field))
}

/// Fills in the IPv4 header checksum (if IPv4) and the full TCP or UDP checksum of an
/// IP packet without extension headers, for packets warpline builds to write to the TUN.
pub fn fill_checksums(packet: &mut [u8]) -> Result<(), GsoError> {
    let (ip, field) = transport_of(packet)?;
    let packet = &mut packet[..ip.total_len];
    if !ip.v6 {
        ipv4::Packet::new_unchecked(&mut *packet).fill_checksum();
    }
    fill_transport_checksum(packet, ip.v6, ip.header_len, ip.protocol, field);
    Ok(())
}

/// Whether an IP packet's IPv4 header checksum (if IPv4) and its TCP or UDP checksum are
/// valid (no extension headers). A UDP checksum of zero over IPv4 means "none" and passes.
pub fn verify_checksums(packet: &[u8]) -> Result<bool, GsoError> {
    let (ip, field) = transport_of(packet)?;
    let packet = &packet[..ip.total_len];
    if !ip.v6 && !ipv4::Packet::new_unchecked(packet).verify_checksum() {
        return Ok(false);
    }
    let l4 = ip.header_len;
    if !ip.v6 && ip.protocol == IpProtocol::UDP.0 && packet[l4 + field..l4 + field + 2] == [0, 0] {
        return Ok(true);
    }
    let pseudo = pseudo_header(packet, ip.v6, l4, ip.protocol);
    let total = checksum::combine(pseudo, checksum::sum(&packet[l4..]));
    Ok(checksum::fold(total) == 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tun::vnet::FLAG_NEEDS_CSUM;
    use proptest::prelude::*;

    const V4_SRC: [u8; 4] = [10, 1, 0, 1];
    const V4_DST: [u8; 4] = [10, 1, 0, 2];
    const V6_SRC: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const V6_DST: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// An IP header (20 bytes for IPv4, 40 for IPv6) for `l4_len` transport bytes.
    fn ip_header(v6: bool, protocol: u8, l4_len: usize) -> Vec<u8> {
        if v6 {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            h[6] = protocol;
            h[7] = 64;
            h[8..24].copy_from_slice(&V6_SRC);
            h[24..40].copy_from_slice(&V6_DST);
            h
        } else {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            h[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
            h[6] = 0x40;
            h[8] = 64;
            h[9] = protocol;
            h[12..16].copy_from_slice(&V4_SRC);
            h[16..20].copy_from_slice(&V4_DST);
            h
        }
    }

    /// A TCP superframe as the kernel hands it over with TSO: 12 bytes of options, the
    /// checksum field holding only the pseudo-header sum.
    fn tcp_frame(v6: bool, payload: &[u8], flags: u8, seq: u32) -> (Vec<u8>, usize) {
        let tcp_len = 32;
        let mut frame = ip_header(v6, 6, tcp_len + payload.len());
        let l4 = frame.len();
        let mut tcp = vec![0u8; tcp_len];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&77u32.to_be_bytes());
        tcp[12] = (tcp_len as u8 / 4) << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
        tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        frame.extend_from_slice(&tcp);
        frame.extend_from_slice(payload);
        let pseudo = pseudo_header(&frame, v6, l4, 6);
        frame[l4 + 16..l4 + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        (frame, l4)
    }

    fn udp_frame(v6: bool, payload: &[u8]) -> (Vec<u8>, usize) {
        let mut frame = ip_header(v6, 17, 8 + payload.len());
        let l4 = frame.len();
        frame.extend_from_slice(&5000u16.to_be_bytes());
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        (frame, l4)
    }

    fn gso_header(gso_type: GsoType, l4: usize, gso_size: u16) -> VnetHeader {
        let tcp = matches!(gso_type, GsoType::TcpV4 | GsoType::TcpV6);
        VnetHeader {
            flags: FLAG_NEEDS_CSUM,
            gso_type,
            gso_ecn: false,
            hdr_len: (l4 + if tcp { 32 } else { 8 }) as u16,
            gso_size,
            csum_start: l4 as u16,
            csum_offset: if tcp { 16 } else { 6 },
        }
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn collect(frame: &mut [u8], header: &VnetHeader) -> Result<Vec<Vec<u8>>, GsoError> {
        let mut segments = Vec::new();
        let count = segment(frame, header, |seg| segments.push(seg.to_vec()))?;
        assert_eq!(count, segments.len());
        Ok(segments)
    }

    fn check_tcp_split(v6: bool, len: usize, mss: u16, flags: u8) {
        let data = payload(len);
        let seq = 0xffff_f000; // wraps during the frame
        let (mut frame, l4) = tcp_frame(v6, &data, flags, seq);
        let gso_type = if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 };
        let segments = collect(&mut frame, &gso_header(gso_type, l4, mss)).unwrap();
        let mss = usize::from(mss);
        assert_eq!(segments.len(), len.div_ceil(mss).max(1));
        let mut joined = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let seg_payload = &seg[l4 + 32..];
            assert_eq!(seg_payload.len(), if last { len - i * mss } else { mss });
            if v6 {
                let ip = ipv6::Packet::new_checked(&seg[..]).unwrap();
                assert_eq!(ip.total_len(), seg.len());
            } else {
                let ip = ipv4::Packet::new_checked(&seg[..]).unwrap();
                assert_eq!(usize::from(ip.total_len()), seg.len());
                assert_eq!(ip.ident(), 0xfffeu16.wrapping_add(i as u16));
                assert!(ip.verify_checksum());
            }
            let seg_seq = u32::from_be_bytes(seg[l4 + 4..l4 + 8].try_into().unwrap());
            assert_eq!(seg_seq, seq.wrapping_add((i * mss) as u32));
            let seg_flags = seg[l4 + 13];
            let mut want = flags;
            if !last {
                want &= !(TCP_FIN | TCP_PSH);
            }
            if i != 0 {
                want &= !TCP_CWR;
            }
            assert_eq!(seg_flags, want, "segment {i}");
            assert_eq!(verify_checksums(seg), Ok(true), "segment {i}");
            joined.extend_from_slice(seg_payload);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn tcpv4_frames_split_into_valid_segments() {
        let flags = TCP_FIN | TCP_PSH | TCP_CWR | 0x10;
        check_tcp_split(false, 4000, 1448, flags);
        check_tcp_split(false, 1448 * 3, 1448, 0x18);
        check_tcp_split(false, 65_535 - 52, 1448, flags);
        check_tcp_split(false, 10, 1448, flags);
        check_tcp_split(false, 0, 1448, flags);
        check_tcp_split(false, 100, 1, 0x18);
    }

    #[test]
    fn tcpv6_frames_split_into_valid_segments() {
        let flags = TCP_FIN | TCP_PSH | TCP_CWR | 0x10;
        check_tcp_split(true, 4000, 1428, flags);
        check_tcp_split(true, 65_535 - 32, 1428, flags);
        check_tcp_split(true, 1, 1428, 0x18);
    }

    fn check_udp_split(v6: bool, len: usize, size: u16) {
        let data = payload(len);
        let (mut frame, l4) = udp_frame(v6, &data);
        let segments = collect(&mut frame, &gso_header(GsoType::UdpL4, l4, size)).unwrap();
        let size = usize::from(size);
        assert_eq!(segments.len(), len.div_ceil(size).max(1));
        let mut joined = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let datagram = &seg[l4..];
            let udp = crate::wire::udp::Packet::new_checked(datagram).unwrap();
            assert_eq!(usize::from(udp.len()), datagram.len());
            assert_eq!(udp.src_port(), 5000);
            assert_eq!(udp.dst_port(), 6000);
            assert_ne!(udp.checksum(), 0);
            let last = i + 1 == segments.len();
            assert_eq!(
                udp.payload().len(),
                if last { len - i * size } else { size }
            );
            if v6 {
                let ip = ipv6::Packet::new_checked(&seg[..]).unwrap();
                assert!(udp.verify_checksum_ipv6(ip.src_addr(), ip.dst_addr()));
            } else {
                let ip = ipv4::Packet::new_checked(&seg[..]).unwrap();
                assert!(ip.verify_checksum());
                assert!(udp.verify_checksum_ipv4(ip.src_addr(), ip.dst_addr()));
            }
            joined.extend_from_slice(udp.payload());
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn udp_l4_frames_split_into_datagrams() {
        check_udp_split(false, 60_000, 1200);
        check_udp_split(false, 1201, 1200);
        check_udp_split(true, 60_000, 1232);
        check_udp_split(true, 5, 1232);
    }

    #[test]
    fn partial_checksums_are_completed() {
        let (mut frame, l4) = udp_frame(false, b"hello, tun");
        let pseudo = pseudo_header(&frame, false, l4, 17);
        frame[l4 + 6..l4 + 8].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        ipv4::Packet::new_unchecked(&mut frame[..]).fill_checksum();
        let header = VnetHeader {
            flags: FLAG_NEEDS_CSUM,
            csum_start: l4 as u16,
            csum_offset: 6,
            ..VnetHeader::NONE
        };
        assert_eq!(verify_checksums(&frame), Ok(false));
        let segments = collect(&mut frame, &header).unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(verify_checksums(&segments[0]), Ok(true));

        let (mut frame, l4) = tcp_frame(true, &payload(999), 0x18, 5);
        let header = VnetHeader {
            flags: FLAG_NEEDS_CSUM,
            csum_start: l4 as u16,
            csum_offset: 16,
            ..VnetHeader::NONE
        };
        let segments = collect(&mut frame, &header).unwrap();
        assert_eq!(verify_checksums(&segments[0]), Ok(true));
    }

    #[test]
    fn fill_checksums_makes_packets_verify() {
        let (mut frame, _) = tcp_frame(false, &payload(33), 0x12, 1);
        assert_eq!(fill_checksums(&mut frame), Ok(()));
        assert_eq!(verify_checksums(&frame), Ok(true));
        frame[60] ^= 1;
        assert_eq!(verify_checksums(&frame), Ok(false));
        let (mut frame, _) = udp_frame(true, &payload(33));
        assert_eq!(fill_checksums(&mut frame), Ok(()));
        assert_eq!(verify_checksums(&frame), Ok(true));
    }

    #[test]
    fn malformed_frames_are_refused() {
        let (frame, l4) = tcp_frame(false, &payload(3000), 0x10, 1);
        let good = gso_header(GsoType::TcpV4, l4, 1000);
        let try_split = |frame: &[u8], header: &VnetHeader| {
            let mut frame = frame.to_vec();
            segment(&mut frame, header, |_| {
                panic!("nothing handed out on error")
            })
        };
        let v6 = VnetHeader {
            gso_type: GsoType::TcpV6,
            ..good
        };
        assert_eq!(try_split(&frame, &v6), Err(GsoError::VersionMismatch));
        let zero = VnetHeader {
            gso_size: 0,
            ..good
        };
        assert_eq!(try_split(&frame, &zero), Err(GsoError::ZeroGsoSize));
        let udp = VnetHeader {
            gso_type: GsoType::UdpL4,
            csum_offset: 6,
            ..good
        };
        assert_eq!(try_split(&frame, &udp), Err(GsoError::ProtocolMismatch));
        let inside_ip = VnetHeader {
            csum_start: 10,
            ..good
        };
        assert_eq!(
            try_split(&frame, &inside_ip),
            Err(GsoError::BadChecksumOffsets)
        );
        let mut short_tcp = frame.clone();
        short_tcp[l4 + 12] = 0x40;
        assert_eq!(
            try_split(&short_tcp, &good),
            Err(GsoError::BadTransportHeader)
        );
        assert_eq!(
            try_split(&frame[..100], &good),
            Err(GsoError::Ip(WireError::Truncated))
        );
        assert_eq!(
            try_split(&[], &good),
            Err(GsoError::Ip(WireError::Truncated))
        );
    }

    fn any_header() -> impl Strategy<Value = VnetHeader> {
        (
            any::<u8>(),
            prop_oneof![
                Just(GsoType::None),
                Just(GsoType::TcpV4),
                Just(GsoType::TcpV6),
                Just(GsoType::UdpL4)
            ],
            any::<u16>(),
            0u16..128,
            0u16..24,
        )
            .prop_map(
                |(flags, gso_type, gso_size, csum_start, csum_offset)| VnetHeader {
                    flags,
                    gso_type,
                    gso_ecn: false,
                    hdr_len: 0,
                    gso_size,
                    csum_start,
                    csum_offset,
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(
            mut data in prop::collection::vec(any::<u8>(), 0..400),
            header in any_header(),
            version in prop_oneof![Just(0x45u8), Just(0x60u8), any::<u8>()],
            fix_len in any::<bool>(),
        ) {
            // Nudge some inputs past the IP checks so the splitter itself is exercised.
            if let Some(first) = data.first_mut() {
                *first = version;
            }
            if fix_len && data.len() >= 40 {
                let len = data.len() as u16;
                if version == 0x60 {
                    data[4..6].copy_from_slice(&(len - 40).to_be_bytes());
                } else {
                    data[2..4].copy_from_slice(&len.to_be_bytes());
                }
            }
            let input_len = data.len();
            let mut handed = 0;
            let result = segment(&mut data, &header, |seg| {
                assert!(seg.len() <= input_len);
                handed += 1;
            });
            if let Ok(count) = result {
                prop_assert_eq!(count, handed);
            } else {
                prop_assert_eq!(handed, 0);
            }
            let _ = verify_checksums(&data);
            let _ = fill_checksums(&mut data);
        }

        #[test]
        fn tcp_split_reassembles(
            len in 0usize..6000,
            mss in 1u16..2000,
            v6 in any::<bool>(),
            flags in any::<u8>(),
        ) {
            check_tcp_split(v6, len, mss, flags);
        }

        #[test]
        fn udp_split_reassembles(len in 0usize..6000, size in 1u16..2000, v6 in any::<bool>()) {
            check_udp_split(v6, len, size);
        }
    }
}
