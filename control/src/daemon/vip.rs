//! The virtual IPs of `HaMode = builtin`: added to their interfaces when the node becomes
//! active (announced with gratuitous ARP, so neighbours move at once), removed when it
//! steps down or stops. IPv6 VIPs rely on the kernel's own announcement of a new address
//! (unsolicited neighbour advertisements are not sent here).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use warpline_dataplane::lab::Netlink;

use super::DaemonError;
use crate::config::VirtualIp;

/// Gratuitous ARPs sent per address on takeover.
const GRATUITOUS_ARPS: usize = 3;

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

    /// Adds every VIP (one already there is fine) and announces the IPv4 ones.
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
            if let IpAddr::V4(address) = vip.address
                && let Err(e) = gratuitous_arp(resolved.if_index, resolved.mac, address.octets())
            {
                tracing::warn!(%vip, "gratuitous ARP failed: {e}");
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

fn gratuitous_arp(if_index: u32, mac: [u8; 6], ip: [u8; 4]) -> io::Result<()> {
    let protocol = (libc::ETH_P_ARP as u16).to_be();
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
        sll_addr: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
    };
    let payload = gratuitous_arp_payload(mac, ip);
    for _ in 0..GRATUITOUS_ARPS {
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
}
