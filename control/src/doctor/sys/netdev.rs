//! A NIC's XDP capabilities as its driver declares them: the `netdev` generic-netlink
//! family's `dev-get` (kernel 6.3+), the same answer `ynl --family netdev --do dev-get`
//! gives. No side effects, so it is safe on a NIC carrying traffic.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_GENERIC: libc::c_int = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// `NETDEV_XDP_ACT_*` bits.
pub mod xdp_act {
    /// XDP in the driver (native mode): pass, drop, abort.
    pub const BASIC: u64 = 1 << 0;
    /// `XDP_REDIRECT` from the driver, which steering into AF_XDP sockets needs.
    pub const REDIRECT: u64 = 1 << 1;
    /// AF_XDP zero-copy.
    pub const XSK_ZEROCOPY: u64 = 1 << 3;
}

/// The `NETDEV_XDP_ACT_*` bits of the interface with index `if_index`, in the calling
/// thread's network namespace. Fails with `ENOENT` on kernels before 6.3 (no `netdev`
/// family).
pub fn xdp_features(if_index: u32) -> io::Result<u64> {
    let socket = GenlSocket::open()?;
    let family = socket.family_id("netdev")?;
    let mut attrs = Vec::new();
    put_attr(&mut attrs, NETDEV_A_DEV_IFINDEX, &if_index.to_ne_bytes());
    let reply = socket.request(family, NETDEV_CMD_DEV_GET, &attrs)?;
    attributes(&reply)
        .find(|&(kind, _)| kind == NETDEV_A_DEV_XDP_FEATURES)
        .and_then(|(_, value)| value.get(..8)?.try_into().ok())
        .map(u64::from_ne_bytes)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "dev-get without xdp-features"))
}

/// The interface index of `nic` in the calling thread's network namespace.
pub fn if_index(nic: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(nic)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

struct GenlSocket {
    fd: OwnedFd,
}

fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// `(kind, value)` of each attribute in `bytes`, stopping at the first malformed one.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?));
        let kind = u16::from_ne_bytes(bytes.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
        let value = bytes.get(4..len)?;
        bytes = bytes.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, value))
    })
}

impl GenlSocket {
    fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_GENERIC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    fn family_id(&self, name: &str) -> io::Result<u16> {
        let mut attrs = Vec::new();
        let mut name_bytes = name.as_bytes().to_vec();
        name_bytes.push(0);
        put_attr(&mut attrs, CTRL_ATTR_FAMILY_NAME, &name_bytes);
        let reply = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, &attrs)?;
        attributes(&reply)
            .find(|&(kind, _)| kind == CTRL_ATTR_FAMILY_ID)
            .and_then(|(_, value)| value.get(..2)?.try_into().ok())
            .map(u16::from_ne_bytes)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "family without an id"))
    }

    /// Sends one request and returns the attributes of its first reply (after the genl
    /// header).
    fn request(&self, family: u16, command: u8, attrs: &[u8]) -> io::Result<Vec<u8>> {
        const SEQUENCE: u32 = 1;
        let len = 16 + 4 + attrs.len();
        let mut message = Vec::with_capacity(len);
        message.extend_from_slice(&(len as u32).to_ne_bytes());
        message.extend_from_slice(&family.to_ne_bytes());
        message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        message.extend_from_slice(&SEQUENCE.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&[command, 1, 0, 0]);
        message.extend_from_slice(attrs);
        // SAFETY: `message` is readable for its length; a netlink socket without an
        // address sends to the kernel.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply_attrs = None;
        let mut buf = vec![0u8; 32 * 1024];
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
            let mut rest = buf.get(..received as usize).unwrap_or_default();
            while rest.len() >= 16 {
                let message_len =
                    u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let Some(payload) = rest.get(16..message_len) else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink reply",
                    ));
                };
                rest = rest
                    .get(message_len.next_multiple_of(4)..)
                    .unwrap_or_default();
                match kind {
                    NLMSG_ERROR => {
                        let errno = payload
                            .get(..4)
                            .and_then(|b| b.try_into().ok())
                            .map_or(-libc::EIO, i32::from_ne_bytes);
                        if errno != 0 {
                            return Err(io::Error::from_raw_os_error(-errno));
                        }
                        return reply_attrs.ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidData, "no reply before the ack")
                        });
                    }
                    NLMSG_DONE => {
                        return reply_attrs.ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidData, "empty reply")
                        });
                    }
                    _ => {
                        if reply_attrs.is_none() {
                            reply_attrs = Some(payload.get(4..).unwrap_or_default().to_vec());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_stop_at_garbage() {
        let mut buf = Vec::new();
        put_attr(&mut buf, 1, &7u32.to_ne_bytes());
        put_attr(&mut buf, 3, b"abc");
        buf.extend_from_slice(&[0xff, 0xff]);
        let parsed: Vec<_> = attributes(&buf).collect();
        assert_eq!(parsed, [(1, &7u32.to_ne_bytes()[..]), (3, &b"abc"[..])]);
    }

    #[test]
    fn loopback_declares_no_native_xdp() {
        let index = if_index("lo").unwrap();
        match xdp_features(index) {
            Ok(features) => assert_eq!(features & xdp_act::XSK_ZEROCOPY, 0),
            // Kernels before 6.3 have no netdev family.
            Err(error) => assert_eq!(error.raw_os_error(), Some(libc::ENOENT), "{error}"),
        }
    }
}
