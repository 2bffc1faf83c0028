//! The ICMP error owed to a LAN host whose packet is larger than the tunnel MTU (full
//! bypass): IPv4 "fragmentation needed" (type 3, code 4, RFC 1191) for a packet with DF set,
//! ICMPv6 "packet too big" (type 2, RFC 4443 and 8201) for any IPv6 packet.
//!
//! Written in place: the error quotes the start of the offending packet, which is already
//! where the quote goes; the new Ethernet, IP and ICMP headers go into the headroom in front
//! of it. Nothing is copied, and the frame goes back out of the LAN socket it came in on, to
//! the MAC it came from.
//!
//! No error is sent about an ICMP error, to a source that cannot be answered (unspecified,
//! multicast, broadcast, loopback), or for an IPv4 packet that may be fragmented: that one is
//! the kernel's to fragment ([`TooBig::ToKernel`]).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::checksum;
use crate::wire::ethernet::{self, EtherType, MacAddr};
use crate::wire::{ipv4, ipv6};

/// IPv4 errors quote at most this much, so the error fits 576 bytes (RFC 1812, 4.3.2.3).
const IPV4_ERROR_MAX: usize = 576;
/// ICMPv6 errors fit the IPv6 minimum MTU (RFC 4443, 2.4 (c)).
const IPV6_ERROR_MAX: usize = 1280;
const ICMP_HEADER_LEN: usize = 8;
const PROTOCOL_ICMP: u8 = 1;
const PROTOCOL_ICMPV6: u8 = 58;
const ERROR_TTL: u8 = 64;

/// Our addresses on the LAN: the errors' sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LanAddresses {
    /// Source of IPv4 errors.
    pub v4: Option<Ipv4Addr>,
    /// Source of IPv6 errors.
    pub v6: Option<Ipv6Addr>,
}

/// What to do with a packet larger than the tunnel MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooBig {
    /// The ICMP error is written: send `buf[offset..offset + len]` (an Ethernet frame) back
    /// out of the LAN socket.
    Reply {
        /// Start of the error's Ethernet header.
        offset: usize,
        /// Length of the whole frame.
        len: usize,
    },
    /// An IPv4 packet without DF: the kernel may fragment it.
    ToKernel,
    /// Nothing may be sent about it (or we have no source address to send from): drop.
    Drop,
}

/// Answers the oversized IP packet at `buf[ip_offset..ip_offset + ip_len]`, which arrived in
/// an untagged Ethernet frame whose header lies right in front of it, for a tunnel MTU of
/// `mtu`.
pub fn too_big_reply(
    buf: &mut [u8],
    ip_offset: usize,
    ip_len: usize,
    mtu: u16,
    our_mac: MacAddr,
    ours: &LanAddresses,
) -> TooBig {
    let Some(packet) = ip_offset
        .checked_add(ip_len)
        .and_then(|end| buf.get(ip_offset..end))
    else {
        return TooBig::Drop;
    };
    match packet.first().map(|b| b >> 4) {
        Some(4) => reply_v4(buf, ip_offset, ip_len, mtu, our_mac, ours.v4),
        Some(6) => reply_v6(buf, ip_offset, ip_len, mtu, our_mac, ours.v6),
        _ => TooBig::Drop,
    }
}

fn reply_v4(
    buf: &mut [u8],
    ip_offset: usize,
    ip_len: usize,
    mtu: u16,
    our_mac: MacAddr,
    source: Option<Ipv4Addr>,
) -> TooBig {
    let Ok(packet) = ipv4::Packet::new_checked(&buf[ip_offset..ip_offset + ip_len]) else {
        return TooBig::Drop;
    };
    if !packet.dont_fragment() {
        return TooBig::ToKernel;
    }
    let sender = packet.src_addr();
    let is_icmp_error = packet.protocol().0 == PROTOCOL_ICMP
        && packet
            .payload()
            .first()
            .is_some_and(|&kind| !matches!(kind, 0 | 8 | 13 | 14));
    let unanswerable = sender.is_unspecified()
        || sender.is_multicast()
        || sender.is_broadcast()
        || sender.is_loopback();
    let (Some(source), false, false) = (source, is_icmp_error, unanswerable) else {
        return TooBig::Drop;
    };
    let Some(error) = ErrorFrame::in_front(
        buf,
        ip_offset,
        ip_len,
        ipv4::MIN_HEADER_LEN,
        IPV4_ERROR_MAX,
        (our_mac, EtherType::IPV4),
    ) else {
        return TooBig::Drop;
    };
    let (ip, icmp) = (error.ip, error.icmp);
    let icmp_len = icmp.len();
    ip[ipv4::VERSION_IHL] = 0x45;
    ip[ipv4::DSCP_ECN] = 0xc0; // internetwork control, as routers mark ICMP errors
    ip[ipv4::TOTAL_LEN].copy_from_slice(&((ipv4::MIN_HEADER_LEN + icmp_len) as u16).to_be_bytes());
    ip[ipv4::TTL] = ERROR_TTL;
    ip[ipv4::PROTOCOL] = PROTOCOL_ICMP;
    ip[ipv4::SRC_ADDR].copy_from_slice(&source.octets());
    ip[ipv4::DST_ADDR].copy_from_slice(&sender.octets());
    let ip_checksum = checksum::checksum(ip);
    ip[ipv4::CHECKSUM].copy_from_slice(&ip_checksum.to_be_bytes());
    icmp[..ICMP_HEADER_LEN].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    let icmp_checksum = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&icmp_checksum.to_be_bytes());
    error.reply
}

fn reply_v6(
    buf: &mut [u8],
    ip_offset: usize,
    ip_len: usize,
    mtu: u16,
    our_mac: MacAddr,
    source: Option<Ipv6Addr>,
) -> TooBig {
    let Ok(packet) = ipv6::Packet::new_checked(&buf[ip_offset..ip_offset + ip_len]) else {
        return TooBig::Drop;
    };
    let sender = packet.src_addr();
    // Extension headers in front of an ICMPv6 error are not looked through: such a packet
    // gets an error, which RFC 4443 allows for anything it cannot tell apart.
    let is_icmp_error = packet.next_header().0 == PROTOCOL_ICMPV6
        && buf
            .get(ip_offset + ipv6::HEADER_LEN)
            .is_some_and(|&kind| kind < 128);
    let unanswerable = sender.is_unspecified() || sender.is_multicast() || sender.is_loopback();
    let (Some(source), false, false) = (source, is_icmp_error, unanswerable) else {
        return TooBig::Drop;
    };
    let Some(error) = ErrorFrame::in_front(
        buf,
        ip_offset,
        ip_len,
        ipv6::HEADER_LEN,
        IPV6_ERROR_MAX,
        (our_mac, EtherType::IPV6),
    ) else {
        return TooBig::Drop;
    };
    let (ip, icmp) = (error.ip, error.icmp);
    let icmp_len = icmp.len();
    ip[0] = 0x60;
    ip[ipv6::PAYLOAD_LEN].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    ip[ipv6::NEXT_HEADER] = PROTOCOL_ICMPV6;
    ip[ipv6::HOP_LIMIT] = ERROR_TTL;
    ip[ipv6::SRC_ADDR].copy_from_slice(&source.octets());
    ip[ipv6::DST_ADDR].copy_from_slice(&sender.octets());
    icmp[..ICMP_HEADER_LEN].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    icmp[4..8].copy_from_slice(&u32::from(mtu).to_be_bytes());
    let pseudo = checksum::pseudo_header_ipv6(source, sender, PROTOCOL_ICMPV6, icmp_len as u32);
    let icmp_checksum = !checksum::fold(checksum::combine(pseudo, checksum::sum(icmp)));
    icmp[2..4].copy_from_slice(&icmp_checksum.to_be_bytes());
    error.reply
}

/// The error's frame laid out in front of the packet it quotes: the Ethernet header written
/// (back to the sender's MAC), the IP header zeroed, the ICMP message (header and quote) for
/// the caller to fill in.
struct ErrorFrame<'a> {
    ip: &'a mut [u8],
    icmp: &'a mut [u8],
    reply: TooBig,
}

impl<'a> ErrorFrame<'a> {
    /// `None` when the headroom in front of the packet cannot hold the error's headers.
    fn in_front(
        buf: &'a mut [u8],
        ip_offset: usize,
        ip_len: usize,
        ip_header_len: usize,
        error_max: usize,
        (our_mac, ethertype): (MacAddr, EtherType),
    ) -> Option<Self> {
        let headers = ethernet::HEADER_LEN + ip_header_len + ICMP_HEADER_LEN;
        let quote = ip_len.min(error_max - ip_header_len - ICMP_HEADER_LEN);
        let start = ip_offset.checked_sub(headers)?;
        let sender_mac = sender_mac(buf, ip_offset);
        let frame = &mut buf[start..ip_offset + quote];
        let (eth, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
        write_ethernet(eth, sender_mac, our_mac, ethertype);
        let (ip, icmp) = rest.split_at_mut(ip_header_len);
        ip.fill(0);
        Some(Self {
            ip,
            icmp,
            reply: TooBig::Reply {
                offset: start,
                len: headers + quote,
            },
        })
    }
}

/// The source MAC of the untagged Ethernet header in front of `ip_offset`.
fn sender_mac(buf: &[u8], ip_offset: usize) -> MacAddr {
    let eth = ip_offset - ethernet::HEADER_LEN;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&buf[eth + ethernet::SRC_ADDR.start..eth + ethernet::SRC_ADDR.end]);
    mac
}

fn write_ethernet(eth: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: EtherType) {
    eth[ethernet::DST_ADDR].copy_from_slice(&dst);
    eth[ethernet::SRC_ADDR].copy_from_slice(&src);
    eth[ethernet::OUTER_ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_MAC: MacAddr = [2, 0, 0, 0, 0, 2];
    const GW_MAC: MacAddr = [2, 0, 0, 0, 0, 1];
    const HEADROOM: usize = 256;
    const OURS: LanAddresses = LanAddresses {
        v4: Some(Ipv4Addr::new(10, 72, 0, 1)),
        v6: Some(Ipv6Addr::new(0xfd72, 0, 0, 0, 0, 0, 0, 1)),
    };

    /// A frame as AF_XDP delivers it: headroom, Ethernet header, then an IP packet of
    /// `ip_len` bytes with a UDP header.
    fn frame_v4(ip_len: usize, dont_fragment: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let eth = HEADROOM;
        write_ethernet(&mut buf[eth..eth + 14], GW_MAC, HOST_MAC, EtherType::IPV4);
        let ip = &mut buf[eth + 14..eth + 14 + ip_len];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[6] = if dont_fragment { 0x40 } else { 0 };
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 72, 0, 2]);
        ip[16..20].copy_from_slice(&[10, 71, 0, 2]);
        let sum = checksum::checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        for (i, byte) in ip[20..].iter_mut().enumerate() {
            *byte = i as u8;
        }
        buf
    }

    fn frame_v6(ip_len: usize, next_header: u8, first_payload_byte: u8) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let eth = HEADROOM;
        write_ethernet(&mut buf[eth..eth + 14], GW_MAC, HOST_MAC, EtherType::IPV6);
        let ip = &mut buf[eth + 14..eth + 14 + ip_len];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        ip[6] = next_header;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&"fd72::2".parse::<Ipv6Addr>().unwrap().octets());
        ip[24..40].copy_from_slice(&"fd71::2".parse::<Ipv6Addr>().unwrap().octets());
        ip[40] = first_payload_byte;
        buf
    }

    #[test]
    fn ipv4_with_df_gets_fragmentation_needed_quoting_576_bytes() {
        let mut buf = frame_v4(1500, true);
        let original = buf.clone();
        let ip_offset = HEADROOM + 14;
        let TooBig::Reply { offset, len } =
            too_big_reply(&mut buf, ip_offset, 1500, 1420, GW_MAC, &OURS)
        else {
            panic!("no reply");
        };
        let reply = &buf[offset..offset + len];
        assert_eq!(len, 14 + 576);
        assert_eq!(&reply[0..6], &HOST_MAC);
        assert_eq!(&reply[6..12], &GW_MAC);
        let ip = ipv4::Packet::new_checked(&reply[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len(), 576);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 72, 0, 1));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 72, 0, 2));
        let icmp = ip.payload();
        assert_eq!(&icmp[..2], &[3, 4]);
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1420);
        assert_eq!(checksum::checksum(icmp), 0, "the ICMP checksum must verify");
        assert_eq!(&icmp[8..], &original[ip_offset..ip_offset + 548]);
    }

    #[test]
    fn ipv4_without_df_goes_to_the_kernel_and_errors_get_no_error() {
        let mut buf = frame_v4(1500, false);
        assert_eq!(
            too_big_reply(&mut buf, HEADROOM + 14, 1500, 1420, GW_MAC, &OURS),
            TooBig::ToKernel
        );
        let mut buf = frame_v4(1500, true);
        let ip = HEADROOM + 14;
        buf[ip + 9] = PROTOCOL_ICMP;
        buf[ip + 20] = 3; // itself a "destination unreachable"
        assert_eq!(
            too_big_reply(&mut buf, ip, 1500, 1420, GW_MAC, &OURS),
            TooBig::Drop
        );
        buf[ip + 20] = 8; // an echo request gets its error
        assert!(matches!(
            too_big_reply(&mut buf, ip, 1500, 1420, GW_MAC, &OURS),
            TooBig::Reply { .. }
        ));
        let mut buf = frame_v4(1500, true);
        let no_v4 = LanAddresses { v4: None, ..OURS };
        assert_eq!(
            too_big_reply(&mut buf, ip, 1500, 1420, GW_MAC, &no_v4),
            TooBig::Drop
        );
    }

    #[test]
    fn ipv6_gets_packet_too_big_that_fits_the_minimum_mtu() {
        let mut buf = frame_v6(1500, 6, 0);
        let original = buf.clone();
        let ip_offset = HEADROOM + 14;
        let TooBig::Reply { offset, len } =
            too_big_reply(&mut buf, ip_offset, 1500, 1420, GW_MAC, &OURS)
        else {
            panic!("no reply");
        };
        assert_eq!(len, 14 + 1280);
        let reply = &buf[offset..offset + len];
        assert_eq!(&reply[0..6], &HOST_MAC);
        let ip = ipv6::Packet::new_checked(&reply[14..]).unwrap();
        assert_eq!(ip.total_len(), 1280);
        assert_eq!(ip.dst_addr(), "fd72::2".parse::<Ipv6Addr>().unwrap());
        let icmp = &reply[14 + 40..];
        assert_eq!(icmp[0], 2);
        assert_eq!(u32::from_be_bytes(icmp[4..8].try_into().unwrap()), 1420);
        let pseudo = checksum::pseudo_header_ipv6(
            ip.src_addr(),
            ip.dst_addr(),
            PROTOCOL_ICMPV6,
            icmp.len() as u32,
        );
        assert_eq!(
            checksum::fold(checksum::combine(pseudo, checksum::sum(icmp))),
            0xffff,
            "the ICMPv6 checksum must verify"
        );
        assert_eq!(&icmp[8..], &original[ip_offset..ip_offset + 1232]);
        let mut error = frame_v6(1500, PROTOCOL_ICMPV6, 1);
        assert_eq!(
            too_big_reply(&mut error, ip_offset, 1500, 1420, GW_MAC, &OURS),
            TooBig::Drop
        );
    }

    #[test]
    fn garbage_and_missing_headroom_are_dropped() {
        let mut buf = vec![0x45u8; 64];
        assert_eq!(
            too_big_reply(&mut buf, 14, 40, 1420, GW_MAC, &OURS),
            TooBig::Drop
        );
        assert_eq!(
            too_big_reply(&mut buf, 60, 40, 1420, GW_MAC, &OURS),
            TooBig::Drop
        );
        let mut buf = frame_v4(1500, true);
        // Only 14 bytes in front of the IP header: no room for the error's headers.
        let tight = buf.split_off(HEADROOM);
        let mut tight = tight;
        assert_eq!(
            too_big_reply(&mut tight, 14, 1500, 1420, GW_MAC, &OURS),
            TooBig::Drop
        );
    }
}
