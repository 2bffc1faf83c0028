//! ICMP echo over a raw socket, so lab tests can ping without the `ping` binary.

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Sends one ICMP echo request to `target` from the calling thread's network namespace and
/// waits up to 3 s for the reply; the round-trip time. Needs CAP_NET_RAW (root in the lab).
pub fn ping(target: Ipv4Addr) -> io::Result<Duration> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let mut echo = [0u8; 16];
    echo[0] = 8; // echo request
    echo[4..6].copy_from_slice(&0x5757u16.to_be_bytes());
    echo[6..8].copy_from_slice(&1u16.to_be_bytes());
    echo[8..16].copy_from_slice(b"warpline");
    let sum = crate::wire::checksum::checksum(&echo);
    echo[2..4].copy_from_slice(&sum.to_be_bytes());
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(target).to_be(),
        },
        sin_zero: [0; 8],
    };
    let started = Instant::now();
    // SAFETY: `echo` is readable for its length and `address` is a valid
    // sockaddr_in for the length given.
    let sent = unsafe {
        libc::sendto(
            raw,
            echo.as_ptr().cast(),
            echo.len(),
            0,
            (&address as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 1500];
    while started.elapsed() < Duration::from_secs(3) {
        let mut poll_fd = libc::pollfd {
            fd: raw,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call.
        if unsafe { libc::poll(&mut poll_fd, 1, 100) } <= 0 {
            continue;
        }
        // SAFETY: `reply` is writable for its length.
        let len = unsafe { libc::recv(raw, reply.as_mut_ptr().cast(), reply.len(), 0) };
        let Ok(len) = usize::try_from(len) else {
            continue;
        };
        let ihl = usize::from(reply[0] & 0x0f) * 4;
        if ihl < 20 || len < ihl + 8 {
            continue;
        }
        let icmp = &reply[ihl..len];
        if icmp[0] == 0 && icmp[4..6] == 0x5757u16.to_be_bytes() && reply[12..16] == target.octets()
        {
            return Ok(started.elapsed());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "no echo reply within 3 s",
    ))
}
