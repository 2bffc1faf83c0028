//! Just enough rtnetlink, over a raw `NETLINK_ROUTE` socket, to build test
//! topologies and inspect links: create veth pairs (with queue counts, the
//! peer placed in another namespace), set links up, add addresses, read link
//! facts (index, MAC, queue counts, attached XDP program).
//!
//! Written by hand instead of pulling `rtnetlink`/`netlink-packet-route`:
//! those are async (tokio) and large, while this is a few message types, and
//! it lets a benchmark binary build its lab on a machine without iproute2.
//!
//! A netlink socket acts in the network namespace of the thread that opened
//! it; open it from inside the namespace you mean (see [`super::NetNs::run`]).

mod lookup;
mod rules;

pub use lookup::RouteTo;
pub use rules::RoutingRule;

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_XDP: u16 = 43;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;

const NLMSG_HEADER_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;

/// Facts about one link, as `RTM_GETLINK` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address (empty for links without one).
    pub mac: Vec<u8>,
    /// Number of RX queues.
    pub rx_queues: u32,
    /// Number of TX queues.
    pub tx_queues: u32,
    /// ID of the attached XDP program, if any.
    pub xdp_program_id: Option<u32>,
    /// The `IFF_*` flags (`ifi_flags`).
    pub flags: u32,
}

impl LinkInfo {
    /// Whether the link is administratively up and has carrier (`IFF_UP` and
    /// `IFF_LOWER_UP`): what a node tracking the link needs to use it.
    pub fn is_up_with_carrier(&self) -> bool {
        let wanted = (libc::IFF_UP | libc::IFF_LOWER_UP) as u32;
        self.flags & wanted == wanted
    }
}

/// An rtnetlink socket in the namespace of the thread that opened it.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    sequence: u32,
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Builds one netlink message: header, fixed body, attributes.
struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16, body: &[u8]) -> Self {
        let mut buf = vec![0u8; NLMSG_HEADER_LEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(body);
        buf.resize(align4(buf.len()), 0);
        Self { buf }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    fn attr_str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.attr(kind, &bytes)
    }

    fn attr_u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_ne_bytes())
    }

    /// Opens a nested attribute; close it with [`Message::end_nested`].
    fn begin_nested(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.attr(kind | NLA_F_NESTED, &[]);
        start
    }

    fn end_nested(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    fn finish(mut self, sequence: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&sequence.to_ne_bytes());
        self.buf
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut body = [0u8; IFINFOMSG_LEN];
    body[0] = libc::AF_UNSPEC as u8;
    body[4..8].copy_from_slice(&index.to_ne_bytes());
    body[8..12].copy_from_slice(&flags.to_ne_bytes());
    body[12..16].copy_from_slice(&change.to_ne_bytes());
    body
}

/// Iterates `(kind, value)` over netlink attributes.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & !NLA_F_NESTED;
        if len < 4 || len > bytes.len() {
            return None;
        }
        let value = &bytes[4..len];
        bytes = &bytes[align4(len).min(bytes.len())..];
        Some((kind, value))
    })
}

fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.get(..4)?.try_into().ok()?))
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd, sequence: 1 })
    }

    /// Sends one request with `NLM_F_ACK` and returns the payloads (the bytes
    /// after the netlink header) of the replies before the acknowledgement.
    fn request(&mut self, message: Message) -> io::Result<Vec<Vec<u8>>> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let bytes = message.finish(sequence);
        // SAFETY: `bytes` is a readable buffer of the given length; a null
        // destination sends to the kernel.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is writable for its length.
            let received =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if received < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            let mut rest = &buf[..received as usize];
            while rest.len() >= NLMSG_HEADER_LEN {
                let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let reply_sequence = u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes"));
                if len < NLMSG_HEADER_LEN || len > rest.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink reply",
                    ));
                }
                let payload = &rest[NLMSG_HEADER_LEN..len];
                rest = &rest[align4(len).min(rest.len())..];
                if reply_sequence != sequence {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let errno = i32::from_ne_bytes(
                            payload
                                .get(..4)
                                .and_then(|b| b.try_into().ok())
                                .ok_or_else(|| {
                                    io::Error::new(
                                        io::ErrorKind::InvalidData,
                                        "short netlink error",
                                    )
                                })?,
                        );
                        return if errno == 0 {
                            Ok(replies)
                        } else {
                            Err(io::Error::from_raw_os_error(-errno))
                        };
                    }
                    NLMSG_DONE => return Ok(replies),
                    _ => replies.push(payload.to_vec()),
                }
            }
        }
    }

    /// Creates a veth pair `name`/`peer_name`, each end with `queues` RX and
    /// TX queues. The peer goes into the namespace `peer_netns` when given
    /// (else it stays here with `name`).
    pub fn create_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        queues: u32,
        peer_netns: Option<BorrowedFd<'_>>,
    ) -> io::Result<()> {
        check_ifname(name)?;
        check_ifname(peer_name)?;
        let mut message = Message::new(
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &ifinfomsg(0, 0, 0),
        );
        message
            .attr_str(IFLA_IFNAME, name)
            .attr_u32(IFLA_NUM_TX_QUEUES, queues)
            .attr_u32(IFLA_NUM_RX_QUEUES, queues);
        let link_info = message.begin_nested(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_KIND, "veth");
        let data = message.begin_nested(IFLA_INFO_DATA);
        let peer = message.begin_nested(VETH_INFO_PEER);
        message.raw(&ifinfomsg(0, 0, 0));
        message
            .attr_str(IFLA_IFNAME, peer_name)
            .attr_u32(IFLA_NUM_TX_QUEUES, queues)
            .attr_u32(IFLA_NUM_RX_QUEUES, queues);
        if let Some(netns) = peer_netns {
            message.attr_u32(IFLA_NET_NS_FD, netns.as_raw_fd() as u32);
        }
        message.end_nested(peer);
        message.end_nested(data);
        message.end_nested(link_info);
        self.request(message).map(drop)
    }

    /// Deletes a link (and, for a veth, its peer).
    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let message = Message::new(
            RTM_DELLINK,
            NLM_F_REQUEST | NLM_F_ACK,
            &ifinfomsg(index, 0, 0),
        );
        self.request(message).map(drop)
    }

    /// Sets a link administratively up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let up = libc::IFF_UP as u32;
        let message = Message::new(
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK,
            &ifinfomsg(index, up, up),
        );
        self.request(message).map(drop)
    }

    /// Adds `address/prefix_len` to a link. IPv6 addresses skip duplicate
    /// address detection so they are usable at once.
    pub fn add_address(&mut self, index: u32, address: IpAddr, prefix_len: u8) -> io::Result<()> {
        let (family, bytes, flags) = match address {
            IpAddr::V4(v4) => (libc::AF_INET as u8, v4.octets().to_vec(), 0),
            IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets().to_vec(), IFA_F_NODAD),
        };
        let mut body = [0u8; IFADDRMSG_LEN];
        body[0] = family;
        body[1] = prefix_len;
        body[2] = flags;
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut message = Message::new(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &body,
        );
        message.attr(IFA_LOCAL, &bytes).attr(IFA_ADDRESS, &bytes);
        self.request(message).map(drop)
    }

    /// Facts about the link named `name`.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<LinkInfo> {
        check_ifname(name)?;
        let mut message = Message::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, &ifinfomsg(0, 0, 0));
        message.attr_str(IFLA_IFNAME, name);
        self.single_link(message)
    }

    /// Facts about the link with index `index`.
    pub fn link_by_index(&mut self, index: u32) -> io::Result<LinkInfo> {
        let message = Message::new(
            RTM_GETLINK,
            NLM_F_REQUEST | NLM_F_ACK,
            &ifinfomsg(index, 0, 0),
        );
        self.single_link(message)
    }

    fn single_link(&mut self, message: Message) -> io::Result<LinkInfo> {
        let replies = self.request(message)?;
        let reply = replies
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no RTM_NEWLINK reply"))?;
        parse_link(reply)
    }
}

fn parse_link(payload: &[u8]) -> io::Result<LinkInfo> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "malformed RTM_NEWLINK");
    let header = payload.get(..IFINFOMSG_LEN).ok_or_else(invalid)?;
    let mut info = LinkInfo {
        index: u32_of(&header[4..8]).ok_or_else(invalid)?,
        name: String::new(),
        mac: Vec::new(),
        rx_queues: 1,
        tx_queues: 1,
        xdp_program_id: None,
        flags: u32_of(&header[8..12]).ok_or_else(invalid)?,
    };
    for (kind, value) in attributes(&payload[IFINFOMSG_LEN..]) {
        match kind {
            IFLA_IFNAME => {
                info.name = String::from_utf8_lossy(value.split(|&b| b == 0).next().unwrap_or(&[]))
                    .into_owned();
            }
            IFLA_ADDRESS => info.mac = value.to_vec(),
            IFLA_NUM_RX_QUEUES => info.rx_queues = u32_of(value).ok_or_else(invalid)?,
            IFLA_NUM_TX_QUEUES => info.tx_queues = u32_of(value).ok_or_else(invalid)?,
            IFLA_XDP => {
                let mut attached = false;
                let mut id = None;
                for (xdp_kind, xdp_value) in attributes(value) {
                    match xdp_kind {
                        IFLA_XDP_ATTACHED => attached = xdp_value.first().is_some_and(|&m| m != 0),
                        IFLA_XDP_PROG_ID => id = u32_of(xdp_value),
                        _ => {}
                    }
                }
                if attached {
                    info.xdp_program_id = Some(id.unwrap_or(0));
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

fn check_ifname(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}: 1-15 bytes, no '/', space or NUL"),
        ));
    }
    Ok(())
}

/// Link MTU and routes, for the TUN tests and labs that route prefixes into a device.
impl Netlink {
    /// Sets a link's MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        const IFLA_MTU: u16 = 4;
        let mut message = Message::new(
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK,
            &ifinfomsg(index, 0, 0),
        );
        message.attr_u32(IFLA_MTU, mtu);
        self.request(message).map(drop)
    }

    /// Adds a route for `destination/prefix_len` out of link `index` (scope link, main
    /// table), as `ip route add <destination>/<prefix_len> dev <link>` does. The
    /// destination must be the network address (host bits zero), else `EINVAL`.
    pub fn add_route(&mut self, index: u32, destination: IpAddr, prefix_len: u8) -> io::Result<()> {
        const RT_TABLE_MAIN: u32 = 254;
        self.add_route_in_table(index, destination, prefix_len, RT_TABLE_MAIN)
    }

    /// As [`Netlink::add_route`], into routing table `table`
    /// (`ip route add <destination>/<prefix_len> dev <link> table <table>`).
    pub fn add_route_in_table(
        &mut self,
        index: u32,
        destination: IpAddr,
        prefix_len: u8,
        table: u32,
    ) -> io::Result<()> {
        const RTM_NEWROUTE: u16 = 24;
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        self.link_route(RTM_NEWROUTE, flags, index, destination, prefix_len, table)
    }

    /// Removes what [`Netlink::add_route_in_table`] added
    /// (`ip route del <destination>/<prefix_len> dev <link> table <table>`).
    pub fn delete_route_in_table(
        &mut self,
        index: u32,
        destination: IpAddr,
        prefix_len: u8,
        table: u32,
    ) -> io::Result<()> {
        const RTM_DELROUTE: u16 = 25;
        let flags = NLM_F_REQUEST | NLM_F_ACK;
        self.link_route(RTM_DELROUTE, flags, index, destination, prefix_len, table)
    }

    fn link_route(
        &mut self,
        message_type: u16,
        flags: u16,
        index: u32,
        destination: IpAddr,
        prefix_len: u8,
        table: u32,
    ) -> io::Result<()> {
        const RT_TABLE_COMPAT: u8 = 252;
        const RTPROT_STATIC: u8 = 4;
        const RT_SCOPE_LINK: u8 = 253;
        const RTN_UNICAST: u8 = 1;
        const RTA_DST: u16 = 1;
        const RTA_OIF: u16 = 4;
        const RTA_TABLE: u16 = 15;
        let (family, bytes) = match destination {
            IpAddr::V4(v4) => (libc::AF_INET as u8, v4.octets().to_vec()),
            IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets().to_vec()),
        };
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        // Tables above 255 only fit RTA_TABLE; the header then says RT_TABLE_COMPAT.
        let mut body = [0u8; 12];
        body[0] = family;
        body[1] = prefix_len;
        body[4] = u8::try_from(table).unwrap_or(RT_TABLE_COMPAT);
        body[5] = RTPROT_STATIC;
        body[6] = RT_SCOPE_LINK;
        body[7] = RTN_UNICAST;
        let mut message = Message::new(message_type, flags, &body);
        if prefix_len > 0 {
            message.attr(RTA_DST, &bytes);
        }
        message.attr_u32(RTA_OIF, index).attr_u32(RTA_TABLE, table);
        self.request(message).map(drop)
    }

    /// Adds `destination/prefix_len via next_hop` to the main table (`ip route add ... via`).
    pub fn add_route_via(
        &mut self,
        destination: IpAddr,
        prefix_len: u8,
        next_hop: IpAddr,
    ) -> io::Result<()> {
        const RTM_NEWROUTE: u16 = 24;
        const RT_TABLE_MAIN: u8 = 254;
        const RTPROT_STATIC: u8 = 4;
        const RT_SCOPE_UNIVERSE: u8 = 0;
        const RTN_UNICAST: u8 = 1;
        const RTA_DST: u16 = 1;
        const RTA_GATEWAY: u16 = 5;
        let octets = |address: IpAddr| match address {
            IpAddr::V4(v4) => (libc::AF_INET as u8, v4.octets().to_vec()),
            IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets().to_vec()),
        };
        let ((family, destination), (hop_family, next_hop)) =
            (octets(destination), octets(next_hop));
        if family != hop_family {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "destination and next hop differ in address family",
            ));
        }
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let mut body = [0u8; 12];
        body[0] = family;
        body[1] = prefix_len;
        body[4] = RT_TABLE_MAIN;
        body[5] = RTPROT_STATIC;
        body[6] = RT_SCOPE_UNIVERSE;
        body[7] = RTN_UNICAST;
        let mut message = Message::new(
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &body,
        );
        message
            .attr(RTA_DST, &destination)
            .attr(RTA_GATEWAY, &next_hop);
        self.request(message).map(drop)
    }

    /// Removes `address/prefix_len` from interface `index` (`ip address del`).
    pub fn delete_address(
        &mut self,
        index: u32,
        address: IpAddr,
        prefix_len: u8,
    ) -> io::Result<()> {
        const RTM_DELADDR: u16 = 21;
        let (family, bytes) = match address {
            IpAddr::V4(v4) => (libc::AF_INET as u8, v4.octets().to_vec()),
            IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets().to_vec()),
        };
        let mut body = [0u8; IFADDRMSG_LEN];
        body[0] = family;
        body[1] = prefix_len;
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut message = Message::new(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, &body);
        message.attr(IFA_LOCAL, &bytes).attr(IFA_ADDRESS, &bytes);
        self.request(message).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_usable_only_up_and_with_carrier() {
        let flags = |flags: i32| LinkInfo {
            index: 1,
            name: "eth0".into(),
            mac: Vec::new(),
            rx_queues: 1,
            tx_queues: 1,
            xdp_program_id: None,
            flags: flags as u32,
        };
        let running = libc::IFF_UP | libc::IFF_RUNNING | libc::IFF_LOWER_UP;
        assert!(flags(running).is_up_with_carrier());
        assert!(
            !flags(running & !libc::IFF_LOWER_UP).is_up_with_carrier(),
            "no carrier"
        );
        assert!(!flags(running & !libc::IFF_UP).is_up_with_carrier(), "down");
        assert!(!flags(0).is_up_with_carrier());
    }

    #[test]
    fn nested_attributes_carry_their_total_length() {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_REQUEST, &ifinfomsg(0, 0, 0));
        let outer = message.begin_nested(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_KIND, "veth");
        message.end_nested(outer);
        let bytes = message.finish(9);
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        let attrs: Vec<_> = attributes(&bytes[NLMSG_HEADER_LEN + IFINFOMSG_LEN..]).collect();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].0, IFLA_LINKINFO);
        let inner: Vec<_> = attributes(attrs[0].1).collect();
        assert_eq!(inner, vec![(IFLA_INFO_KIND, &b"veth\0"[..])]);
    }

    #[test]
    fn link_reply_is_parsed() {
        let mut message = Message::new(RTM_NEWLINK, 0, &ifinfomsg(42, 0, 0));
        message
            .attr_str(IFLA_IFNAME, "wl1a")
            .attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1])
            .attr_u32(IFLA_NUM_RX_QUEUES, 4);
        let xdp = message.begin_nested(IFLA_XDP);
        message
            .attr(IFLA_XDP_ATTACHED, &[1])
            .attr_u32(IFLA_XDP_PROG_ID, 77);
        message.end_nested(xdp);
        let bytes = message.finish(1);
        let info = parse_link(&bytes[NLMSG_HEADER_LEN..]).unwrap();
        assert_eq!(info.index, 42);
        assert_eq!(info.name, "wl1a");
        assert_eq!(info.mac, vec![2, 0, 0, 0, 0, 1]);
        assert_eq!(info.rx_queues, 4);
        assert_eq!(info.xdp_program_id, Some(77));
    }

    #[test]
    fn long_interface_names_are_refused() {
        assert!(check_ifname("wl1234567890abcd").is_err());
        assert!(check_ifname("wl123456789abcd").is_ok());
    }
}
