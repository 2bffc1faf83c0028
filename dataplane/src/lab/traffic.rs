//! Traffic tools for labs and benchmarks: a closed-loop UDP load generator,
//! a kernel UDP reflector on `recvmmsg`/`sendmmsg` (the baseline), and an
//! AF_XDP reflector that turns frames around in place.

use std::{
    io, mem,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::{
    wire::checksum,
    xsk::{Frame, Packet, XskSocket},
};

/// Datagrams per `recvmmsg`/`sendmmsg` call and frames per ring batch.
pub const BATCH: usize = 64;
const MAX_DATAGRAM: usize = 2048;

/// What a load run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReport {
    /// Datagrams sent.
    pub sent: u64,
    /// Echoes received back.
    pub received: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Echoes per second.
    pub fn echo_rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64()
    }
}

/// Batches of datagrams for `sendmmsg`/`recvmmsg`: buffers, iovecs and
/// headers allocated once.
struct MessageBatch {
    buffers: Vec<[u8; MAX_DATAGRAM]>,
    iovecs: Vec<libc::iovec>,
    addresses: Vec<libc::sockaddr_in>,
    headers: Vec<libc::mmsghdr>,
}

impl MessageBatch {
    fn new() -> Box<Self> {
        let mut batch = Box::new(Self {
            buffers: vec![[0u8; MAX_DATAGRAM]; BATCH],
            iovecs: Vec::with_capacity(BATCH),
            // SAFETY: sockaddr_in is plain integers; all-zero is valid.
            addresses: vec![unsafe { mem::zeroed() }; BATCH],
            headers: Vec::with_capacity(BATCH),
        });
        let batch_ref = &mut *batch;
        for buffer in &mut batch_ref.buffers {
            batch_ref.iovecs.push(libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            });
        }
        for i in 0..BATCH {
            // SAFETY: mmsghdr is plain integers and pointers; all-zero is valid.
            let mut header: libc::mmsghdr = unsafe { mem::zeroed() };
            header.msg_hdr.msg_iov = &mut batch_ref.iovecs[i];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_name =
                (&mut batch_ref.addresses[i] as *mut libc::sockaddr_in).cast();
            header.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as u32;
            batch_ref.headers.push(header);
        }
        batch
    }

    fn reset_for_receive(&mut self) {
        for (header, iovec) in self.headers.iter_mut().zip(&mut self.iovecs) {
            iovec.iov_len = MAX_DATAGRAM;
            header.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as u32;
            header.msg_len = 0;
        }
    }

    /// Receives up to [`BATCH`] datagrams; 0 when none are waiting.
    fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.reset_for_receive();
        // SAFETY: every header points at this batch's own iovecs, buffers and
        // address slots, which stay alive and unaliased for the call.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        nonblocking_count(count)
    }

    /// Sends the first `count` datagrams, each to the address in its slot and
    /// `msg_len` bytes long (as received, for a reflector).
    fn send_back(&mut self, socket: &UdpSocket, count: usize) -> io::Result<usize> {
        for (header, iovec) in self.headers.iter_mut().zip(&mut self.iovecs).take(count) {
            iovec.iov_len = header.msg_len as usize;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: as in `receive`; the kernel only reads the buffers here.
            let done = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.headers[sent..].as_mut_ptr(),
                    (count - sent) as u32,
                    0,
                )
            };
            if done < 0 {
                return Err(io::Error::last_os_error());
            }
            sent += done as usize;
        }
        Ok(sent)
    }
}

fn nonblocking_count(count: libc::c_int) -> io::Result<usize> {
    if count >= 0 {
        return Ok(count as usize);
    }
    let error = io::Error::last_os_error();
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
        _ => Err(error),
    }
}

/// Kernel-socket reflector: echoes every datagram to its sender with
/// `recvmmsg`/`sendmmsg`, busy-polling until `stop`. Returns datagrams echoed.
pub fn mmsg_reflector(socket: &UdpSocket, stop: &AtomicBool) -> io::Result<u64> {
    let mut batch = MessageBatch::new();
    let mut echoed = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let count = batch.receive(socket)?;
        if count > 0 {
            echoed += batch.send_back(socket, count)? as u64;
        }
    }
    Ok(echoed)
}

/// Closed-loop UDP load: keeps up to `window` datagrams of `payload` in
/// flight to `target` from `socket` for `duration`, counting echoes. A
/// window that makes no progress for 20 ms is written off as lost, so drops
/// cannot stall the run. One thread, so it competes for one core only.
pub fn closed_loop_load(
    socket: &UdpSocket,
    target: SocketAddr,
    payload: &[u8],
    window: usize,
    duration: Duration,
) -> io::Result<LoadReport> {
    let SocketAddr::V4(target) = target else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "IPv4 target only",
        ));
    };
    let mut send = MessageBatch::new();
    let mut receive = MessageBatch::new();
    for (i, header) in send.headers.iter_mut().enumerate() {
        send.buffers[i][..payload.len()].copy_from_slice(payload);
        header.msg_len = payload.len() as u32;
        send.addresses[i] = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: target.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*target.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
    }
    let started = Instant::now();
    let (mut sent, mut received, mut in_flight) = (0u64, 0u64, 0usize);
    let mut last_progress = Instant::now();
    while started.elapsed() < duration {
        let room = window.saturating_sub(in_flight).min(BATCH);
        if room > 0 {
            sent += send.send_back(socket, room)? as u64;
            in_flight += room;
        }
        let got = receive.receive(socket)?;
        if got > 0 {
            received += got as u64;
            in_flight = in_flight.saturating_sub(got);
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_millis(20) {
            in_flight = 0;
            last_progress = Instant::now();
        }
    }
    let elapsed = started.elapsed();
    // Drain stragglers so the next run starts clean.
    let drain_until = Instant::now() + Duration::from_millis(50);
    while Instant::now() < drain_until {
        if receive.receive(socket)? == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(LoadReport {
        sent,
        received,
        elapsed,
    })
}

/// Closed-loop load from an AF_XDP socket: keeps up to `window` copies of the Ethernet
/// frame `template` in flight on `socket`'s TX ring for `duration`, counting frames that
/// come back on its RX ring (the steering program on the generator's interface must send
/// the echoes there). The kernel's UDP path is not on the generator's side at all, so the
/// generator is not the bottleneck of what it measures. `pool` holds the free frames; half
/// go to the fill ring for receiving.
pub fn xsk_closed_loop_load(
    socket: &mut XskSocket,
    pool: &mut Vec<Frame>,
    template: &[u8],
    window: usize,
    duration: Duration,
) -> LoadReport {
    let umem = socket.umem().clone();
    let frame_size = umem.frame_size();
    let mut receive_pool = pool.split_off(pool.len() / 2);
    let mut transmit: Vec<Packet> = Vec::with_capacity(BATCH);
    let mut received: Vec<Packet> = Vec::with_capacity(BATCH);
    let (mut sent, mut echoed, mut in_flight) = (0u64, 0u64, 0usize);
    let started = Instant::now();
    let mut last_progress = Instant::now();
    while started.elapsed() < duration {
        socket
            .completion
            .reclaim(pool, socket.completion.size() as usize);
        socket
            .fill
            .fill(&mut receive_pool, socket.fill.size() as usize);
        let room = window.saturating_sub(in_flight).min(BATCH);
        for _ in 0..room {
            let Some(mut frame) = pool.pop() else { break };
            umem.frame_bytes_mut(&mut frame)[..template.len()].copy_from_slice(template);
            match Packet::new(frame, 0, template.len() as u32, frame_size) {
                Ok(packet) => transmit.push(packet),
                Err(frame) => pool.push(frame),
            }
        }
        let queued = transmit.len();
        socket.tx.transmit(&mut transmit);
        let accepted = queued - transmit.len();
        pool.extend(transmit.drain(..).map(Packet::into_frame));
        if accepted > 0 {
            sent += accepted as u64;
            in_flight += accepted;
            let _ = socket.kick_tx();
        }
        let _ = socket.wake_rx();
        let got = socket.rx.receive(&mut received, BATCH);
        receive_pool.extend(received.drain(..).map(Packet::into_frame));
        if got > 0 {
            echoed += got as u64;
            in_flight = in_flight.saturating_sub(got);
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_millis(20) {
            in_flight = 0;
            last_progress = Instant::now();
        }
    }
    let elapsed = started.elapsed();
    // Drain stragglers so the next run starts clean, and hand every frame back.
    let drain_until = Instant::now() + Duration::from_millis(50);
    while Instant::now() < drain_until {
        socket
            .completion
            .reclaim(pool, socket.completion.size() as usize);
        socket.rx.receive(&mut received, BATCH);
        receive_pool.extend(received.drain(..).map(Packet::into_frame));
    }
    pool.append(&mut receive_pool);
    LoadReport {
        sent,
        received: echoed,
        elapsed,
    }
}

/// Turns an IPv4/UDP Ethernet frame around in place: swaps MACs, addresses
/// and ports and writes full IPv4 and UDP checksums (veth hands over partial
/// UDP checksums from local senders). Returns false, changing nothing, for
/// anything else.
pub fn reflect_udp_v4(frame: &mut [u8]) -> bool {
    const ETH: usize = 14;
    if frame.len() < ETH + 28 || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let ihl = usize::from(frame[ETH] & 0x0f) * 4;
    if ihl < 20 || frame[ETH + 9] != 17 || frame.len() < ETH + ihl + 8 {
        return false;
    }
    let udp_len = usize::from(u16::from_be_bytes([
        frame[ETH + ihl + 4],
        frame[ETH + ihl + 5],
    ]));
    if udp_len < 8 || frame.len() < ETH + ihl + udp_len {
        return false;
    }
    let (dst_mac, rest) = frame.split_at_mut(6);
    dst_mac.swap_with_slice(&mut rest[..6]);
    let ip = &mut frame[ETH..];
    let (src, dst) = ip[12..20].split_at_mut(4);
    src.swap_with_slice(dst);
    ip[10..12].fill(0);
    let ip_checksum = checksum::checksum(&ip[..ihl]);
    ip[10..12].copy_from_slice(&ip_checksum.to_be_bytes());
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = &mut ip[ihl..ihl + udp_len];
    let (sport, dport) = udp[0..4].split_at_mut(2);
    sport.swap_with_slice(dport);
    udp[6..8].fill(0);
    let pseudo = checksum::pseudo_header_ipv4(src_ip, dst_ip, 17, udp_len as u16);
    let sum = !checksum::fold(checksum::combine(pseudo, checksum::sum(udp)));
    udp[6..8].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
    true
}

/// AF_XDP reflector on one socket: receives a batch, reflects each frame in
/// place ([`reflect_udp_v4`]), queues it on TX, kicks, recycles completed
/// frames to the fill ring; busy-polls until `stop`. `pool` holds the free
/// frames. Returns frames reflected.
pub fn xsk_reflector(socket: &mut XskSocket, pool: &mut Vec<Frame>, stop: &AtomicBool) -> u64 {
    let umem = socket.umem().clone();
    let mut received: Vec<Packet> = Vec::with_capacity(BATCH);
    let mut transmit: Vec<Packet> = Vec::with_capacity(BATCH);
    let mut reflected = 0u64;
    pool.reserve(socket.fill.size() as usize + socket.completion.size() as usize);
    while !stop.load(Ordering::Relaxed) {
        socket
            .completion
            .reclaim(pool, socket.completion.size() as usize);
        socket.fill.fill(pool, socket.fill.size() as usize);
        let _ = socket.wake_rx();
        socket.rx.receive(&mut received, BATCH);
        for mut packet in received.drain(..) {
            if reflect_udp_v4(umem.packet_mut(&mut packet)) {
                transmit.push(packet);
            } else {
                pool.push(packet.into_frame());
            }
        }
        reflected += transmit.len() as u64;
        while !transmit.is_empty() {
            socket.tx.transmit(&mut transmit);
            let _ = socket.kick_tx();
            if !transmit.is_empty() {
                socket
                    .completion
                    .reclaim(pool, socket.completion.size() as usize);
            }
        }
        if socket.tx.pending() > 0 {
            let _ = socket.kick_tx();
        }
    }
    reflected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_swaps_endpoints_and_keeps_checksums_valid() {
        let mut frame = vec![0u8; 14 + 20 + 8 + 4];
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&32u16.to_be_bytes());
        frame[23] = 17;
        frame[26..30].copy_from_slice(&[10, 0, 0, 2]);
        frame[30..34].copy_from_slice(&[10, 0, 0, 1]);
        frame[34..36].copy_from_slice(&4000u16.to_be_bytes());
        frame[36..38].copy_from_slice(&51820u16.to_be_bytes());
        frame[38..40].copy_from_slice(&12u16.to_be_bytes());
        frame[42..46].copy_from_slice(&[4, 0, 0, 0]);
        assert!(reflect_udp_v4(&mut frame));
        assert_eq!(frame[..6], [2, 0, 0, 0, 0, 2]);
        assert_eq!(frame[26..30], [10, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([frame[34], frame[35]]), 51820);
        assert_eq!(checksum::fold(checksum::sum(&frame[14..34])), 0xffff);
        let pseudo = checksum::pseudo_header_ipv4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            12,
        );
        assert_eq!(
            checksum::fold(checksum::combine(pseudo, checksum::sum(&frame[34..46]))),
            0xffff
        );
        assert!(!reflect_udp_v4(&mut frame[..20]));
    }
}
