//! Replies leave from the address the peer sent to ("sticky sockets", as kernel WireGuard
//! does). A gateway behind a virtual IP (keepalived) receives on the VIP; answering from the
//! interface's primary address instead would make the client roam to that node-specific
//! address and lose the next failover. The socket reports each datagram's local address
//! (`IP_PKTINFO` / `IPV6_RECVPKTINFO`), and sends name it again (`IP_PKTINFO` /
//! `IPV6_PKTINFO`; on a dual-stack socket, IPv4 sources travel as mapped addresses, which
//! Linux accepts for IPv4 destinations).
//!
//! The same control messages carry UDP segmentation offload both ways (see
//! [`super::gso_batch`]): a send may name a segment size (`UDP_SEGMENT`) so one call carries
//! many equal datagrams, and with `UDP_GRO` on, a receive may return several datagrams of
//! one sender back to back with their size in a `UDP_GRO` message.

use std::collections::HashMap;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Peers whose local address is remembered; the map is cleared when it is full (it is
/// filled only after authenticated packets, so this bounds it against nothing but growth).
const MAX_REMEMBERED: usize = 65_536;

/// Room for the control messages a datagram brings or a send names: one pktinfo of either
/// family (40 bytes with its header) and one 16-bit or 32-bit segment size (24).
const CONTROL_LEN: usize = 128;
/// `sizeof(struct cmsghdr)` and the alignment of what follows it, as glibc lays them out:
/// `size_t cmsg_len; int cmsg_level; int cmsg_type;`.
const WORD: usize = size_of::<usize>();
const CMSG_HEADER: usize = (WORD + 8).next_multiple_of(WORD);
/// `struct in_pktinfo` (ifindex, spec_dst, addr) and `struct in6_pktinfo` (addr, ifindex).
const IN_PKTINFO_LEN: usize = 12;
const IN6_PKTINFO_LEN: usize = 20;

/// Turns on the local-address reports for `socket`.
pub fn enable(socket: &UdpSocket, v6: bool) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    set_int_option(socket, level, name, 1)
}

/// Sets an integer socket option.
pub fn set_int_option(
    socket: &UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int of the length passed; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A socket address in the kernel's form, built and read without unsafe casts.
#[repr(C)]
union RawAddress {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
    storage: libc::sockaddr_storage,
}

impl RawAddress {
    fn empty() -> Self {
        // SAFETY: all-zero bytes are a valid sockaddr_storage (and so a valid union).
        unsafe { zeroed() }
    }

    fn from_socket_address(address: SocketAddr) -> (Self, libc::socklen_t) {
        let mut raw = Self::empty();
        match address {
            SocketAddr::V4(v4) => {
                raw.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*v4.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                (raw, size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            SocketAddr::V6(v6) => {
                raw.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.ip().octets(),
                    },
                    sin6_scope_id: v6.scope_id(),
                };
                (raw, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }

    fn to_socket_address(&self) -> Option<SocketAddr> {
        // SAFETY: every variant starts with the family field, and the storage variant is
        // fully initialised (zeroed, then written by the kernel or by us).
        let family = libc::c_int::from(unsafe { self.storage.ss_family });
        match family {
            libc::AF_INET => {
                // SAFETY: the family says the kernel wrote a sockaddr_in.
                let sin = unsafe { self.v4 };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the kernel wrote a sockaddr_in6.
                let sin6 = unsafe { self.v6 };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

fn empty_header() -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    unsafe { zeroed() }
}

/// What a received datagram's control messages say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ControlFacts {
    /// The local address it was sent to (pktinfo).
    local: Option<IpAddr>,
    /// With `UDP_GRO`: the size of each datagram in a receive that holds several.
    segment: Option<usize>,
}

/// Reads the pktinfo and `UDP_GRO` control messages among `control`.
fn control_facts(control: &[u8]) -> ControlFacts {
    let mut facts = ControlFacts::default();
    let mut rest = control;
    while rest.len() >= CMSG_HEADER {
        let word = |at: usize| rest[at..at + 4].try_into().map(i32::from_ne_bytes);
        let (Ok(len), Ok(level), Ok(kind)) = (
            rest[..WORD].try_into().map(usize::from_ne_bytes),
            word(WORD),
            word(WORD + 4),
        ) else {
            break;
        };
        if len < CMSG_HEADER || len > rest.len() {
            break;
        }
        let data = &rest[CMSG_HEADER..len];
        if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO && data.len() >= IN_PKTINFO_LEN {
            let octets = [data[8], data[9], data[10], data[11]];
            facts.local = Some(IpAddr::V4(Ipv4Addr::from(octets)));
        } else if level == libc::IPPROTO_IPV6
            && kind == libc::IPV6_PKTINFO
            && let Some(octets) = data.get(..16).and_then(|o| <[u8; 16]>::try_from(o).ok())
            && data.len() >= IN6_PKTINFO_LEN
        {
            let address = Ipv6Addr::from(octets);
            facts.local = Some(match address.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(address),
            });
        } else if level == libc::SOL_UDP
            && kind == libc::UDP_GRO
            && let Some(size) = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok())
        {
            // The kernel writes an int; a size of 0 would not split anything.
            facts.segment = usize::try_from(i32::from_ne_bytes(size))
                .ok()
                .filter(|&size| size > 0);
        }
        let step = len.next_multiple_of(WORD);
        if step >= rest.len() {
            break;
        }
        rest = &rest[step..];
    }
    facts
}

/// Appends one control message to `control` at `at`; the aligned end of what is written,
/// or `None` when it does not fit.
fn put_control(
    control: &mut [u8; CONTROL_LEN],
    at: usize,
    level: i32,
    kind: i32,
    data: &[u8],
) -> Option<usize> {
    let len = CMSG_HEADER + data.len();
    let end = at + len;
    if end.next_multiple_of(WORD) > CONTROL_LEN {
        return None;
    }
    control[at..at + WORD].copy_from_slice(&len.to_ne_bytes());
    control[at + WORD..at + WORD + 4].copy_from_slice(&level.to_ne_bytes());
    control[at + WORD + 4..at + WORD + 8].copy_from_slice(&kind.to_ne_bytes());
    control[at + CMSG_HEADER..end].copy_from_slice(data);
    Some(end.next_multiple_of(WORD))
}

/// Writes one pktinfo control message naming `source` for a datagram to `to`; its length,
/// or `None` when the families do not fit (the kernel then chooses).
fn source_control(
    control: &mut [u8; CONTROL_LEN],
    to: SocketAddr,
    source: IpAddr,
) -> Option<usize> {
    let (level, kind, data): (i32, i32, Vec<u8>) = match (to, source) {
        (SocketAddr::V4(_), IpAddr::V4(v4)) => {
            let mut data = vec![0u8; IN_PKTINFO_LEN];
            data[4..8].copy_from_slice(&v4.octets()); // ipi_spec_dst
            (libc::IPPROTO_IP, libc::IP_PKTINFO, data)
        }
        (SocketAddr::V6(_), source) => {
            let mut data = vec![0u8; IN6_PKTINFO_LEN];
            let octets = match source {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            data[..16].copy_from_slice(&octets);
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, data)
        }
        (SocketAddr::V4(_), IpAddr::V6(_)) => return None,
    };
    put_control(control, 0, level, kind, &data)
}

/// One receive from the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes received.
    pub len: usize,
    /// The sender.
    pub from: SocketAddr,
    /// The local address the datagram was sent to, when the kernel said.
    pub local: Option<IpAddr>,
    /// With `UDP_GRO` on: the size of each datagram when the receive holds several back to
    /// back (the last may be shorter); `None` for a single datagram.
    pub segment: Option<usize>,
}

impl Received {
    /// The datagrams in `buf[..len]`: one, or the GRO segments.
    /// An empty datagram is one (empty) range, so it is judged and counted like any other.
    pub fn datagrams(&self) -> impl ExactSizeIterator<Item = std::ops::Range<usize>> + use<> {
        let len = self.len;
        let step = self.segment.unwrap_or(len).max(1);
        let count = len.div_ceil(step).max(1);
        (0..count).map(move |i| i * step..((i + 1) * step).min(len))
    }
}

/// Receives one datagram, or with `UDP_GRO` on several of one sender (see [`Received`]).
pub fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let mut name = RawAddress::empty();
    let mut control = [0u8; CONTROL_LEN];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut header = empty_header();
    header.msg_name = std::ptr::from_mut(&mut name).cast();
    header.msg_namelen = size_of::<RawAddress>() as libc::socklen_t;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = CONTROL_LEN;
    // SAFETY: every pointer in `header` refers to a live buffer of the stated length for the
    // duration of the call; the kernel writes only within them.
    let len = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut header, libc::MSG_DONTWAIT) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    let from = name
        .to_socket_address()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a sender"))?;
    let control_len = header.msg_controllen.min(CONTROL_LEN);
    let facts = control_facts(&control[..control_len]);
    let len = (len as usize).min(buf.len());
    Ok(Received {
        len,
        from,
        local: facts.local,
        segment: facts.segment.filter(|&segment| segment < len),
    })
}

/// What to do when the remembered source address is no longer ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenGone {
    /// Send from the kernel's choice: our own address changed (a roaming client), and the
    /// peer learns the new one from this packet.
    KernelChoice,
    /// Do not send: on an HA node a vanished address is a VIP that moved to the partner,
    /// and a packet from this node's own address would pull the peer away from the VIP.
    Drop,
}

/// Sends `payload` to `to` (already in the socket's family) from `local` when known; if that
/// address is not usable, as `when_gone` says.
pub fn send(
    socket: &UdpSocket,
    payload: &[u8],
    to: SocketAddr,
    local: Option<IpAddr>,
    when_gone: WhenGone,
) -> io::Result<usize> {
    let mut control = [0u8; CONTROL_LEN];
    let Some(control_len) = local.and_then(|local| source_control(&mut control, to, local)) else {
        return socket.send_to(payload, to);
    };
    send_with_control(socket, payload, to, &control[..control_len]).or_else(|error| {
        // The address went away (ENETUNREACH, EINVAL, EADDRNOTAVAIL).
        match when_gone {
            WhenGone::KernelChoice => socket.send_to(payload, to),
            WhenGone::Drop => Err(error),
        }
    })
}

/// Sends `payload` as datagrams of `segment` bytes each (the last may be shorter) in one
/// call (`UDP_SEGMENT`), from `local` when known. No fallback here: on any error the caller
/// sends the datagrams one by one with [`send`], which also knows what to do when `local`
/// is gone.
pub fn send_segments(
    socket: &UdpSocket,
    payload: &[u8],
    segment: u16,
    to: SocketAddr,
    local: Option<IpAddr>,
) -> io::Result<usize> {
    let mut control = [0u8; CONTROL_LEN];
    let at = local
        .and_then(|local| source_control(&mut control, to, local))
        .unwrap_or(0);
    let end = put_control(
        &mut control,
        at,
        libc::SOL_UDP,
        libc::UDP_SEGMENT,
        &segment.to_ne_bytes(),
    )
    .ok_or_else(|| io::Error::other("control messages do not fit"))?;
    send_with_control(socket, payload, to, &control[..end])
}

/// Asks the kernel to hand several datagrams of one sender over in one receive (`UDP_GRO`).
pub fn enable_gro(socket: &UdpSocket) -> io::Result<()> {
    set_int_option(socket, libc::SOL_UDP, libc::UDP_GRO, 1)
}

fn send_with_control(
    socket: &UdpSocket,
    payload: &[u8],
    to: SocketAddr,
    control: &[u8],
) -> io::Result<usize> {
    let (mut name, name_len) = RawAddress::from_socket_address(to);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    let mut header = empty_header();
    header.msg_name = std::ptr::from_mut(&mut name).cast();
    header.msg_namelen = name_len;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_ptr().cast_mut().cast();
    header.msg_controllen = control.len();
    // SAFETY: every pointer in `header` refers to a live buffer of the stated length; the
    // kernel only reads them.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &header, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// The local address each remote endpoint last reached us on.
#[derive(Debug, Default)]
pub struct LocalAddresses(HashMap<SocketAddr, IpAddr>);

impl LocalAddresses {
    /// Remembers that `remote`'s authenticated packet arrived at `local`.
    pub fn learn(&mut self, remote: SocketAddr, local: Option<IpAddr>) {
        let Some(local) = local else { return };
        if self.0.get(&remote) == Some(&local) {
            return;
        }
        if self.0.len() >= MAX_REMEMBERED {
            self.0.clear();
        }
        self.0.insert(remote, local);
    }

    /// Where to send `remote`'s packets from.
    pub fn for_remote(&self, remote: SocketAddr) -> Option<IpAddr> {
        self.0.get(&remote).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_leave_from_the_address_the_peer_sent_to() {
        // Loopback has 127.0.0.1 and, with /8, every 127.x address: send to 127.0.0.7 and the
        // reply must come from 127.0.0.7, not 127.0.0.1.
        for (bind, v6) in [("0.0.0.0:0", false), ("[::]:0", true)] {
            let Ok(server) = UdpSocket::bind(bind) else {
                continue;
            };
            enable(&server, v6).unwrap();
            let port = server.local_addr().unwrap().port();
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client.send_to(b"hello", ("127.0.0.7", port)).unwrap();
            let mut buf = [0u8; 16];
            let Received {
                len, from, local, ..
            } = loop {
                match recv(&server, &mut buf) {
                    Ok(got) => break got,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(e) => panic!("recv: {e}"),
                }
            };
            assert_eq!(&buf[..len], b"hello");
            assert_eq!(local, Some("127.0.0.7".parse().unwrap()), "{bind}");
            send(&server, b"reply", from, local, WhenGone::KernelChoice).unwrap();
            // A source that is not ours: an HA node does not send at all...
            let gone = Some("10.9.9.9".parse().unwrap());
            assert!(send(&server, b"dropped", from, gone, WhenGone::Drop).is_err());
            // ...anyone else falls back to the kernel's choice instead of failing.
            send(&server, b"fallback", from, gone, WhenGone::KernelChoice).unwrap();
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let (_, replied_from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(
                replied_from.ip(),
                "127.0.0.7".parse::<IpAddr>().unwrap(),
                "{bind}"
            );
            let (len, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], b"fallback", "{bind}");
        }
    }
}
