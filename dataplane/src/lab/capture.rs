//! An eavesdropper on a lab link: WireGuard transport messages (type 4) sent to a port,
//! recorded from an `AF_PACKET` socket. Tests and benchmarks replay them, or forge bad tags on
//! a live session's receiver index, without knowing any key.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use super::Host;

/// Transport messages recorded until [`TransportCapture::finish`] (or drop).
#[derive(Debug)]
pub struct TransportCapture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl TransportCapture {
    /// Starts recording the UDP payloads to `port` that start with type 4, seen in either
    /// direction on interface `if_index` of `host`'s namespace (IPv4 only).
    pub fn start(host: &Host, if_index: u32, port: u16) -> io::Result<Self> {
        let fd = host.run(packet_socket)?;
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid start.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        address.sll_ifindex = if_index as i32;
        // SAFETY: `address` is a valid sockaddr_ll of the size passed; `fd` is open.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&address).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // A receive timeout, so the thread sees `stop` on a quiet link.
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: the option value is a live timeval of the size passed; `fd` is open.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let messages = Arc::clone(&messages);
            std::thread::spawn(move || record(&fd, port, &stop, &messages))
        };
        Ok(Self {
            stop,
            thread: Some(thread),
            messages,
        })
    }

    /// The messages recorded so far, in the order seen.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops recording; everything recorded, in the order seen.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.stop_thread();
        self.messages()
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TransportCapture {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            // Cooked: the payload starts at the IP header whatever the link type.
            libc::SOCK_DGRAM,
            // ETH_P_ALL: protocol-specific packet sockets do not see outgoing packets.
            i32::from((libc::ETH_P_ALL as u16).to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn record(fd: &OwnedFd, port: u16, stop: &AtomicBool, into: &Mutex<Vec<Vec<u8>>>) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `buf` is writable for its length and `fd` is open.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else {
            continue; // the timeout, or EINTR
        };
        if let Some(message) = transport_message(&buf[..n], port) {
            into.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(message.to_vec());
        }
    }
}

/// The WireGuard transport message in an IPv4/UDP packet to `port`, if that is what it is.
fn transport_message(packet: &[u8], port: u16) -> Option<&[u8]> {
    if packet.len() < 28 || packet[0] >> 4 != 4 || packet[9] != 17 {
        return None;
    }
    let udp = packet.get(usize::from(packet[0] & 0x0f) * 4..)?;
    let message = udp.get(8..)?;
    let to_port = u16::from_be_bytes([udp[2], udp[3]]);
    (to_port == port && message.len() >= 32 && message[0] == 4).then_some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(port: u16, message: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17];
        packet.resize(20, 0);
        packet.extend_from_slice(&40000u16.to_be_bytes());
        packet.extend_from_slice(&port.to_be_bytes());
        packet.extend_from_slice(&[0; 4]);
        packet.extend_from_slice(message);
        packet
    }

    #[test]
    fn only_transport_messages_to_the_port_are_kept() {
        let mut transport = vec![4u8, 0, 0, 0];
        transport.resize(32, 7);
        assert_eq!(
            transport_message(&packet(51820, &transport), 51820),
            Some(&transport[..])
        );
        assert_eq!(transport_message(&packet(51821, &transport), 51820), None);
        let mut initiation = transport.clone();
        initiation[0] = 1;
        assert_eq!(transport_message(&packet(51820, &initiation), 51820), None);
        assert_eq!(
            transport_message(&packet(51820, &transport[..31]), 51820),
            None
        );
        let mut tcp = packet(51820, &transport);
        tcp[9] = 6;
        assert_eq!(transport_message(&tcp, 51820), None);
    }
}
