//! Shared by the TUN tests: the root check, a namespace with an addressed TUN, and TCP and
//! UDP packets built as a peer behind the TUN would send them.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

use warpline_dataplane::{
    lab::{Host, unique_name},
    tun::{Offloads, Tun, gso},
    wire::{IpProtocol, ipv4},
};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Prints the reason and returns false when the test cannot run here.
pub fn can_run() -> bool {
    warpline_dataplane::lab::root_or_skip()
}

/// A namespace with a TUN device of `queues` queues, addressed `local_v4/24` (and
/// `local_v6/64` when given, so the prefix routes lead into it), and up.
pub fn tun_lab(
    label: &str,
    queues: usize,
    offloads: Offloads,
    local_v4: Ipv4Addr,
    local_v6: Option<Ipv6Addr>,
) -> (Host, Tun) {
    let host = Host::new(label).expect("namespace");
    let name = format!("{}t", unique_name());
    let tun = host
        .run(|| Tun::create(&name, queues, offloads))
        .expect("create TUN");
    assert_eq!(tun.name(), name);
    host.netlink(|netlink| {
        let link = netlink.link_by_name(&name)?;
        netlink.add_address(link.index, IpAddr::V4(local_v4), 24)?;
        if let Some(v6) = local_v6 {
            netlink.add_address(link.index, IpAddr::V6(v6), 64)?;
        }
        netlink.set_up(link.index)
    })
    .expect("address and set up the TUN");
    (host, tun)
}

/// An IPv4 TCP packet from a peer behind the TUN, checksums filled in; a SYN carries an
/// MSS option of 1460.
pub fn tcp_packet(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let options: &[u8] = if flags & TCP_SYN != 0 {
        &[2, 4, 0x05, 0xb4]
    } else {
        &[]
    };
    let tcp_len = 20 + options.len();
    let total = ipv4::MIN_HEADER_LEN + tcp_len + payload.len();
    let mut packet = vec![0u8; total];
    let mut ip = ipv4::Packet::new_unchecked(&mut packet[..]);
    ip.set_version_and_header_len(ipv4::MIN_HEADER_LEN);
    ip.set_total_len(total as u16);
    ip.set_fragment(true, false, 0);
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol::TCP);
    ip.set_src_addr(*src.ip());
    ip.set_dst_addr(*dst.ip());
    let tcp = &mut packet[ipv4::MIN_HEADER_LEN..];
    tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = ((tcp_len / 4) as u8) << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&65_535u16.to_be_bytes());
    tcp[20..tcp_len].copy_from_slice(options);
    tcp[tcp_len..].copy_from_slice(payload);
    gso::fill_checksums(&mut packet).expect("a TCP packet");
    packet
}

/// An IPv4/UDP datagram from `from` to `to` with full checksums.
pub fn udp_packet(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut packet = vec![0u8; 20];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    packet[6] = 0x40;
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&from.ip().octets());
    packet[16..20].copy_from_slice(&to.ip().octets());
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    gso::fill_checksums(&mut packet).expect("checksums");
    packet
}
