//! Shared helpers for the privileged XDP/AF_XDP tests: root check, a WAN lab
//! (gateway + peer over a 2-queue veth, steering and one AF_XDP socket per
//! queue on a shared UMEM), packet building/parsing and the receive loop.
#![allow(dead_code)] // each test binary uses a different subset

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsFd,
    time::{Duration, Instant},
};

use warpline_dataplane::{
    lab::{Host, Veth, traffic},
    wire::checksum,
    xdp::{AttachMode, Role, Steering},
    xsk::{
        BindMode, Frame, Packet, SocketConfig, Umem, UmemConfig, XskSocket, raise_memlock_limit,
    },
};

pub const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const GW_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
pub const PEER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const LISTEN_PORT: u16 = 51820;
pub const SECOND_LISTEN_PORT: u16 = 51821;
pub const QUEUES: u32 = 2;

/// Prints the reason and returns false when the test cannot run here.
pub fn can_run() -> bool {
    warpline_dataplane::lab::root_or_skip()
}

/// The UDP payload of a WireGuard message of `kind` with a 32-byte body
/// after the 4-byte header, stamped with `seq`.
pub fn wireguard_message(kind: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut message = vec![0u8; len.max(16)];
    message[0] = kind;
    message[4..8].copy_from_slice(&seq.to_le_bytes());
    for (i, byte) in message.iter_mut().enumerate().skip(16) {
        *byte = (i as u8).wrapping_mul(31).wrapping_add(seq as u8);
    }
    message
}

/// A parsed IPv4/UDP Ethernet frame (no VLAN, no IP options in what we build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrame {
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

const ETH_LEN: usize = 14;

pub fn parse_udp_v4(frame: &[u8]) -> Option<UdpFrame> {
    if frame.len() < ETH_LEN + 28 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[9] != 17 || ip.len() < ihl + 8 {
        return None;
    }
    let udp = &ip[ihl..];
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    Some(UdpFrame {
        src_ip: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst_ip: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        src_port: u16::from_be_bytes([udp[0], udp[1]]),
        dst_port: u16::from_be_bytes([udp[2], udp[3]]),
        payload: udp.get(8..udp_len)?.to_vec(),
    })
}

/// Builds an Ethernet + IPv4 + UDP frame with full, correct checksums.
pub fn build_udp_v4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let (IpAddr::V4(src_ip), IpAddr::V4(dst_ip)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only");
    };
    let mut frame = Vec::with_capacity(ETH_LEN + 28 + payload.len());
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    let total = 28 + payload.len();
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src_ip.octets());
    ip[16..20].copy_from_slice(&dst_ip.octets());
    let ip_checksum = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&ip_checksum.to_be_bytes());
    frame.extend_from_slice(&ip);
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let udp_checksum = udp_v4_checksum(src_ip, dst_ip, &udp);
    udp[6..8].copy_from_slice(&udp_checksum.to_be_bytes());
    frame.extend_from_slice(&udp);
    frame
}

fn udp_v4_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let pseudo = checksum::pseudo_header_ipv4(src, dst, 17, udp.len() as u16);
    let folded = !checksum::fold(checksum::combine(pseudo, checksum::sum(udp)));
    if folded == 0 { 0xffff } else { folded }
}

/// Turns a received IPv4/UDP frame around in place with full checksums
/// (the library's reflector step).
pub fn reflect_in_place(frame: &mut [u8]) {
    assert!(traffic::reflect_udp_v4(frame), "an IPv4/UDP frame");
}

/// Gateway and peer joined by a 2-queue veth, the gateway side steered in
/// `role` with one AF_XDP socket per queue over one shared UMEM.
pub struct XskLab {
    pub gw: Host,
    pub peer: Host,
    pub veth: Veth,
    pub steering: Steering,
    pub sockets: Vec<XskSocket>,
    pub umem: Umem,
    pub pool: Vec<Frame>,
}

impl XskLab {
    pub fn new(role: Role, mode: AttachMode) -> Self {
        raise_memlock_limit().expect("raise RLIMIT_MEMLOCK");
        let gw = Host::new("gw").expect("gateway namespace");
        let peer = Host::new("pe").expect("peer namespace");
        let veth = Veth::new(&gw, &peer, QUEUES).expect("veth pair");
        gw.add_address(&veth.a, GW_IP.into(), 24)
            .expect("gateway address");
        peer.add_address(&veth.b, PEER_IP.into(), 24)
            .expect("peer address");
        gw.add_address(&veth.a, GW_IP6.into(), 64)
            .expect("gateway IPv6 address");
        peer.add_address(&veth.b, PEER_IP6.into(), 64)
            .expect("peer IPv6 address");
        let if_index = veth.a.index;
        let (steering, sockets, umem, pool) = gw.run(|| {
            let mut steering = Steering::attach(if_index, role, mode, QUEUES).expect("attach XDP");
            let (umem, mut pool) = Umem::new(UmemConfig {
                frame_size: 2048,
                frame_count: 1024,
                headroom: 0,
            })
            .expect("UMEM");
            pool.reserve(1024);
            let mut sockets = Vec::new();
            for queue in 0..QUEUES {
                let mut config = SocketConfig::new(if_index, queue);
                config.rx_size = 256;
                config.tx_size = 256;
                config.fill_size = 256;
                config.completion_size = 256;
                config.bind_mode = BindMode::Auto;
                let mut socket = XskSocket::bind(&umem, &config).expect("bind AF_XDP socket");
                socket.fill.fill(&mut pool, 256);
                steering
                    .set_socket(queue, socket.as_fd())
                    .expect("XSKMAP entry");
                sockets.push(socket);
            }
            (steering, sockets, umem, pool)
        });
        Self {
            gw,
            peer,
            veth,
            steering,
            sockets,
            umem,
            pool,
        }
    }

    /// A kernel UDP socket bound in `host` at `address`.
    pub fn udp_socket(host: &Host, address: SocketAddr) -> UdpSocket {
        host.run(|| {
            let socket = UdpSocket::bind(address).expect("bind UDP socket");
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("read timeout");
            socket
        })
    }

    /// Collects up to `want` packets from all sockets within `timeout`,
    /// calling `handle(queue, socket, umem, packet)` for each; returns the
    /// packets' queues in arrival order. `handle` returns the packet to
    /// recycle to the pool, or `None` if it kept it (e.g. queued on TX).
    pub fn receive(
        &mut self,
        want: usize,
        timeout: Duration,
        mut handle: impl FnMut(u32, &mut XskSocket, &Umem, Packet) -> Option<Packet>,
    ) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        let mut queues = Vec::new();
        let mut batch: Vec<Packet> = Vec::with_capacity(64);
        while queues.len() < want && Instant::now() < deadline {
            let mut idle = true;
            for socket in &mut self.sockets {
                let queue = socket.queue();
                socket.completion.reclaim(&mut self.pool, 256);
                socket.fill.fill(&mut self.pool, 256);
                socket.wake_rx().expect("wake RX");
                if socket.rx.receive(&mut batch, 64) > 0 {
                    idle = false;
                }
                for packet in batch.drain(..) {
                    queues.push(queue);
                    if let Some(done) = handle(queue, socket, &self.umem, packet) {
                        self.pool.push(done.into_frame());
                    }
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        queues
    }
}

/// Sends one raw Ethernet frame out of interface `if_index` (AF_PACKET), in
/// the calling thread's namespace.
pub fn send_raw_frame(if_index: u32, dst_mac: [u8; 6], frame: &[u8]) -> io::Result<()> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut address = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: 0,
        sll_ifindex: if_index as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0; 8],
    };
    address.sll_addr[..6].copy_from_slice(&dst_mac);
    // SAFETY: `frame` is readable for its length and `address` is a valid
    // sockaddr_ll for the length given.
    let sent = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `frame` with an 802.1Q tag for `vlan` inserted after the MAC addresses.
pub fn with_vlan_tag(frame: &[u8], vlan: u16) -> Vec<u8> {
    let mut tagged = frame[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00]);
    tagged.extend_from_slice(&vlan.to_be_bytes());
    tagged.extend_from_slice(&frame[12..]);
    tagged
}
