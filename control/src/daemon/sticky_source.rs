//! Replies leave from the address the peer sent to ("sticky sockets", as kernel WireGuard
//! does). A gateway behind a virtual IP (keepalived) receives on the VIP; answering from the
//! interface's primary address instead would make the client roam to that node-specific
//! address and lose the next failover. The socket reports each datagram's local address
//! (`IP_PKTINFO` / `IPV6_RECVPKTINFO`), and sends name it again (`IP_PKTINFO` /
//! `IPV6_PKTINFO`; on a dual-stack socket, IPv4 sources travel as mapped addresses, which
//! Linux accepts for IPv4 destinations).

use std::collections::HashMap;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Peers whose local address is remembered; the map is cleared when it is full (it is
/// filled only after authenticated packets, so this bounds it against nothing but growth).
const MAX_REMEMBERED: usize = 65_536;

/// Room for the control messages a datagram brings (one pktinfo of either family).
const CONTROL_LEN: usize = 64;
/// `sizeof(struct cmsghdr)` and the alignment of what follows it, as glibc lays them out:
/// `size_t cmsg_len; int cmsg_level; int cmsg_type;`.
const WORD: usize = size_of::<usize>();
const CMSG_HEADER: usize = (WORD + 8).next_multiple_of(WORD);
/// `struct in_pktinfo` (ifindex, spec_dst, addr) and `struct in6_pktinfo` (addr, ifindex).
const IN_PKTINFO_LEN: usize = 12;
const IN6_PKTINFO_LEN: usize = 20;

/// Turns on the local-address reports for `socket`.
pub fn enable(socket: &UdpSocket, v6: bool) -> io::Result<()> {
    let one: libc::c_int = 1;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    // SAFETY: the option value is a live c_int of the length passed; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&one).cast(),
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

/// The local address in the pktinfo control message among `control`, if there is one.
fn local_address_in(control: &[u8]) -> Option<IpAddr> {
    let mut rest = control;
    let mut local = None;
    while rest.len() >= CMSG_HEADER {
        let len = usize::from_ne_bytes(rest[..WORD].try_into().ok()?);
        let level = i32::from_ne_bytes(rest[WORD..WORD + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(rest[WORD + 4..WORD + 8].try_into().ok()?);
        if len < CMSG_HEADER || len > rest.len() {
            break;
        }
        let data = &rest[CMSG_HEADER..len];
        if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO && data.len() >= IN_PKTINFO_LEN {
            let octets: [u8; 4] = data[8..12].try_into().ok()?;
            local = Some(IpAddr::V4(Ipv4Addr::from(octets)));
        } else if level == libc::IPPROTO_IPV6
            && kind == libc::IPV6_PKTINFO
            && data.len() >= IN6_PKTINFO_LEN
        {
            let address = Ipv6Addr::from(<[u8; 16]>::try_from(&data[..16]).ok()?);
            local = Some(match address.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(address),
            });
        }
        let step = len.next_multiple_of(WORD);
        if step >= rest.len() {
            break;
        }
        rest = &rest[step..];
    }
    local
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
    let len = CMSG_HEADER + data.len();
    control[..WORD].copy_from_slice(&len.to_ne_bytes());
    control[WORD..WORD + 4].copy_from_slice(&level.to_ne_bytes());
    control[WORD + 4..WORD + 8].copy_from_slice(&kind.to_ne_bytes());
    control[CMSG_HEADER..len].copy_from_slice(&data);
    Some(len.next_multiple_of(WORD))
}

/// Receives one datagram: its length, sender, and the local address it was sent to.
pub fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
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
    Ok((
        len as usize,
        from,
        local_address_in(&control[..control_len]),
    ))
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
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = control_len;
    // SAFETY: every pointer in `header` refers to a live buffer of the stated length; the
    // kernel only reads them.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &header, 0) };
    if sent < 0 {
        // The address went away (ENETUNREACH, EINVAL, EADDRNOTAVAIL).
        let error = io::Error::last_os_error();
        return match when_gone {
            WhenGone::KernelChoice => socket.send_to(payload, to),
            WhenGone::Drop => Err(error),
        };
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
            let (len, from, local) = loop {
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
