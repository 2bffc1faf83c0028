//! The virtual IPs of `HaMode = builtin`: added to their interfaces when the node becomes
//! active and announced so neighbours move at once (IPv4: gratuitous ARP; IPv6: unsolicited
//! neighbour advertisements with the override flag, which Linux does not send for a new
//! address by default), removed when it steps down or stops.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use warpline_dataplane::lab::Netlink;

use super::DaemonError;
use crate::config::VirtualIp;

/// Announcements (gratuitous ARPs, neighbour advertisements) sent per address on takeover.
const ANNOUNCEMENTS: usize = 3;

const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// The Ethernet address of ff02::1, all IPv6 nodes on the link.
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// One VIP with its interface's index and MAC.
#[derive(Debug)]
struct Resolved {
    vip: VirtualIp,
    if_index: u32,
    mac: [u8; 6],
}

/// The node's virtual IPs and whether it holds them.
#[derive(Debug)]
pub struct VirtualIps {
    vips: Vec<Resolved>,
    held: bool,
}

impl VirtualIps {
    /// Finds each VIP's interface; an unknown interface is an error naming it.
    pub fn resolve(vips: &[VirtualIp]) -> Result<Self, DaemonError> {
        let fail = |reason: String| DaemonError::DataPlane {
            what: "HaVirtualIp",
            reason,
        };
        let mut netlink = Netlink::open().map_err(|e| fail(format!("netlink: {e}")))?;
        let mut resolved = Vec::new();
        for vip in vips {
            let link = netlink
                .link_by_name(&vip.interface)
                .map_err(|e| fail(format!("{vip}: no interface {}: {e}", vip.interface)))?;
            let mac: [u8; 6] = link.mac.as_slice().try_into().unwrap_or([0; 6]);
            resolved.push(Resolved {
                vip: vip.clone(),
                if_index: link.index,
                mac,
            });
        }
        Ok(Self {
            vips: resolved,
            held: false,
        })
    }

    /// Adds every VIP (one already there is fine) and announces it.
    pub fn take(&mut self) {
        let Ok(mut netlink) = Netlink::open() else {
            tracing::error!("cannot open netlink to add the virtual IPs");
            return;
        };
        for resolved in &self.vips {
            let vip = &resolved.vip;
            match netlink.add_address(resolved.if_index, vip.address, vip.prefix_len) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => tracing::error!(%vip, "cannot add the virtual IP: {e}"),
            }
            let announced = match vip.address {
                IpAddr::V4(address) => send_link_frames(
                    resolved.if_index,
                    libc::ETH_P_ARP,
                    BROADCAST_MAC,
                    &gratuitous_arp_payload(resolved.mac, address.octets()),
                ),
                IpAddr::V6(address) => send_link_frames(
                    resolved.if_index,
                    libc::ETH_P_IPV6,
                    ALL_NODES_MAC,
                    &neighbour_advertisement_packet(resolved.mac, address),
                ),
            };
            if let Err(e) = announced {
                tracing::warn!(%vip, "announcing the virtual IP to its neighbours failed: {e}");
            }
        }
        self.held = true;
        tracing::info!(vips = self.vips.len(), "virtual IPs taken");
    }

    /// Removes every VIP (one already gone is fine).
    pub fn release(&mut self) {
        if !self.held {
            return;
        }
        let Ok(mut netlink) = Netlink::open() else {
            tracing::error!("cannot open netlink to remove the virtual IPs");
            return;
        };
        for resolved in &self.vips {
            let vip = &resolved.vip;
            if let Err(e) = netlink.delete_address(resolved.if_index, vip.address, vip.prefix_len)
                && !matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENOENT))
            {
                tracing::error!(%vip, "cannot remove the virtual IP: {e}");
            }
        }
        self.held = false;
        tracing::info!("virtual IPs released");
    }
}

impl Drop for VirtualIps {
    fn drop(&mut self) {
        self.release();
    }
}

/// The ARP request a node broadcasts for its own new address (sender = target = `ip`).
fn gratuitous_arp_payload(mac: [u8; 6], ip: [u8; 4]) -> [u8; 28] {
    let mut arp = [0u8; 28];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&ip);
    arp[24..28].copy_from_slice(&ip);
    arp
}

/// An unsolicited neighbour advertisement (RFC 4861 4.4) for `ip` at `mac`, from `ip` to all
/// nodes, with the override flag so neighbours replace the entry they have (the old node's
/// MAC): the IPv6 packet, from its header on.
fn neighbour_advertisement_packet(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 72] {
    const ICMPV6: u8 = 58;
    const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
    const OVERRIDE: u8 = 0x20;
    const TARGET_LINK_LAYER_ADDRESS: u8 = 2;
    let mut packet = [0u8; 72];
    packet[0] = 0x60; // version 6
    packet[4..6].copy_from_slice(&32u16.to_be_bytes()); // payload length
    packet[6] = ICMPV6;
    packet[7] = 255; // hop limit: receivers drop neighbour discovery with any other
    packet[8..24].copy_from_slice(&ip.octets());
    packet[24..40].copy_from_slice(&ALL_NODES.octets());
    let icmp = &mut packet[40..];
    icmp[0] = NEIGHBOUR_ADVERTISEMENT;
    icmp[4] = OVERRIDE; // not a router, not solicited
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = TARGET_LINK_LAYER_ADDRESS;
    icmp[25] = 1; // option length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let checksum = icmpv6_checksum(ip, ALL_NODES, &packet[40..]);
    packet[42..44].copy_from_slice(&checksum.to_be_bytes());
    packet
}

/// The ICMPv6 checksum of `message` (its checksum field zero) between `source` and
/// `destination`: the one's complement sum over the pseudo-header and the message.
fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + message.len());
    pseudo.extend_from_slice(&source.octets());
    pseudo.extend_from_slice(&destination.octets());
    pseudo.extend_from_slice(&(message.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(message);
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends `payload` [`ANNOUNCEMENTS`] times on link `if_index` as an Ethernet frame of
/// `ethertype` to `destination`; the kernel writes the Ethernet header.
fn send_link_frames(
    if_index: u32,
    ethertype: i32,
    destination: [u8; 6],
    payload: &[u8],
) -> io::Result<()> {
    let protocol = (ethertype as u16).to_be();
    // SAFETY: plain socket(2) call with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(protocol)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we just opened and own alone.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let address = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol,
        sll_ifindex: if_index as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [
            destination[0],
            destination[1],
            destination[2],
            destination[3],
            destination[4],
            destination[5],
            0,
            0,
        ],
    };
    for _ in 0..ANNOUNCEMENTS {
        // SAFETY: the payload and address are live buffers of the lengths passed; the fd is
        // open for the call.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
                std::ptr::from_ref(&address).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_arp_names_the_address_as_sender_and_target() {
        let arp = gratuitous_arp_payload([2, 0, 0, 0, 0, 1], [192, 0, 2, 100]);
        assert_eq!(&arp[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&arp[8..14], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&arp[14..18], &[192, 0, 2, 100]);
        assert_eq!(&arp[18..24], &[0; 6]);
        assert_eq!(&arp[24..28], &[192, 0, 2, 100]);
    }

    #[test]
    fn a_neighbour_advertisement_overrides_for_the_address_with_a_valid_checksum() {
        let vip: Ipv6Addr = "fd10::100".parse().unwrap();
        let mac = [2, 0, 0, 0, 0, 2];
        let packet = neighbour_advertisement_packet(mac, vip);
        assert_eq!(packet[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([packet[4], packet[5]]), 32);
        assert_eq!((packet[6], packet[7]), (58, 255));
        assert_eq!(&packet[8..24], &vip.octets());
        assert_eq!(&packet[24..40], &ALL_NODES.octets());
        let icmp = &packet[40..];
        assert_eq!((icmp[0], icmp[1]), (136, 0));
        assert_eq!(icmp[4], 0x20, "override only: not a router, not solicited");
        assert_eq!(&icmp[8..24], &vip.octets());
        assert_eq!(&icmp[24..32], &[2, 1, 2, 0, 0, 0, 0, 2]);
        // A receiver's check: the sum over pseudo-header and message, checksum included,
        // folds to all ones, so the checksum of the whole is zero.
        assert_eq!(icmpv6_checksum(vip, ALL_NODES, icmp), 0);
        // The value a separate implementation (Python's struct sum) gives for these inputs.
        assert_eq!(u16::from_be_bytes([icmp[2], icmp[3]]), 0x587c);
    }
}
