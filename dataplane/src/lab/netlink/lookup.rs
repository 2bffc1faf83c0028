//! Read-only lookups the data plane's control side needs: which way the kernel routes an
//! address, which MAC a next hop has, which addresses an interface has.

use std::io;
use std::net::IpAddr;

use super::{Message, NLM_F_ACK, NLM_F_REQUEST, Netlink, attributes, u32_of};

const RTM_NEWADDR_DUMP: u16 = 22; // RTM_GETADDR
const RTM_GETROUTE: u16 = 26;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_DUMP: u16 = 0x300;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;

const RTMSG_LEN: usize = 12;
const NDMSG_LEN: usize = 12;
const IFADDRMSG_LEN: usize = 8;

/// How the kernel would send to an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTo {
    /// The outgoing interface.
    pub if_index: u32,
    /// The next-hop router, if the destination is not on a local link.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would pick.
    pub source: Option<IpAddr>,
}

impl RouteTo {
    /// The address whose MAC frames to the destination carry: the gateway, or the
    /// destination itself on a local link.
    pub fn next_hop(&self, destination: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(destination)
    }
}

fn family_and_octets(address: IpAddr) -> (u8, Vec<u8>) {
    match address {
        IpAddr::V4(v4) => (libc::AF_INET as u8, v4.octets().to_vec()),
        IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets().to_vec()),
    }
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

impl Netlink {
    /// The kernel's route to `destination` (`ip route get`).
    pub fn route_to(&mut self, destination: IpAddr) -> io::Result<RouteTo> {
        let (family, octets) = family_and_octets(destination);
        let mut body = [0u8; RTMSG_LEN];
        body[0] = family;
        body[1] = if family == libc::AF_INET as u8 {
            32
        } else {
            128
        };
        let mut message = Message::new(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_ACK, &body);
        message.attr(RTA_DST, &octets);
        let replies = self.request(message)?;
        let reply = replies
            .first()
            .and_then(|r| r.get(RTMSG_LEN..))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no route reply"))?;
        let mut route = RouteTo {
            if_index: 0,
            gateway: None,
            source: None,
        };
        for (kind, value) in attributes(reply) {
            match kind {
                RTA_OIF => route.if_index = u32_of(value).unwrap_or(0),
                RTA_GATEWAY => route.gateway = ip_of(value),
                RTA_PREFSRC => route.source = ip_of(value),
                _ => {}
            }
        }
        if route.if_index == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no route to {destination}"),
            ));
        }
        Ok(route)
    }

    /// The MAC address the kernel's neighbour table holds for `address` on interface
    /// `if_index` (`ip neigh`), if it is resolved (any state but incomplete or failed).
    pub fn neighbour(&mut self, if_index: u32, address: IpAddr) -> io::Result<Option<[u8; 6]>> {
        let (family, octets) = family_and_octets(address);
        let mut body = [0u8; NDMSG_LEN];
        body[0] = family;
        body[4..8].copy_from_slice(&if_index.to_ne_bytes());
        let message = Message::new(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, &body);
        for reply in self.request(message)? {
            let Some(header) = reply.get(..NDMSG_LEN) else {
                continue;
            };
            let index = u32_of(&header[4..8]).unwrap_or(0);
            let state = u16::from_ne_bytes([header[8], header[9]]);
            if index != if_index || state == 0 || state & (NUD_INCOMPLETE | NUD_FAILED) != 0 {
                continue;
            }
            let mut dst = None;
            let mut mac = None;
            for (kind, value) in attributes(&reply[NDMSG_LEN..]) {
                match kind {
                    NDA_DST => dst = Some(value),
                    NDA_LLADDR => mac = <[u8; 6]>::try_from(value).ok(),
                    _ => {}
                }
            }
            if dst == Some(&octets[..])
                && let Some(mac) = mac
            {
                return Ok(Some(mac));
            }
        }
        Ok(None)
    }

    /// The addresses on interface `if_index` (`ip address show`), with prefix lengths.
    pub fn addresses(&mut self, if_index: u32) -> io::Result<Vec<(IpAddr, u8)>> {
        let body = [0u8; IFADDRMSG_LEN];
        let message = Message::new(RTM_NEWADDR_DUMP, NLM_F_REQUEST | NLM_F_DUMP, &body);
        let mut found = Vec::new();
        for reply in self.request(message)? {
            let Some(header) = reply.get(..IFADDRMSG_LEN) else {
                continue;
            };
            if u32_of(&header[4..8]) != Some(if_index) {
                continue;
            }
            let prefix_len = header[1];
            let (mut local, mut address) = (None, None);
            for (kind, value) in attributes(&reply[IFADDRMSG_LEN..]) {
                match kind {
                    IFA_LOCAL => local = ip_of(value),
                    IFA_ADDRESS => address = ip_of(value),
                    _ => {}
                }
            }
            if let Some(ip) = local.or(address) {
                found.push((ip, prefix_len));
            }
        }
        Ok(found)
    }
}
