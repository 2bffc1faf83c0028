//! The TUN device end to end, in a namespace of its own: packets a socket sends to an
//! address routed into the TUN come out of its queue with valid checksums, packets
//! written to the queue reach a socket, queues spread flows, the device goes away with
//! its last queue, and mistakes give clear errors. In plain and offload mode. Needs
//! root; skips with a printed reason otherwise.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
    time::{Duration, Instant},
};

mod tun_support;

use tun_support::{can_run, tun_lab};
use warpline_dataplane::{
    lab::Host,
    tun::{Offloads, SCRATCH_LEN, Tun, TunError, TunQueue, gso},
    wire::{IpProtocol, ipv4, ipv6, udp},
};

const LOCAL_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const PEER_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const LOCAL_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
const PEER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);

/// A namespace with a TUN device, addressed 10.77.0.1/24 and fd00:77::1/64 (so the
/// prefix routes send 10.77.0.2 and fd00:77::2 into it), and up.
fn lab(queues: usize, offloads: Offloads) -> (Host, Tun) {
    tun_lab("tun", queues, offloads, LOCAL_V4, Some(LOCAL_V6))
}

/// Reads from `queues` until a packet satisfies `wanted`, ignoring others (IPv6 brings
/// its own router solicitations and MLD reports).
fn read_until(queues: &mut [TunQueue], mut wanted: impl FnMut(&[u8]) -> bool) -> (usize, Vec<u8>) {
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no matching packet on the TUN");
        for (index, queue) in queues.iter_mut().enumerate() {
            let mut found = None;
            match queue.read_packets(&mut scratch, |packet| {
                if found.is_none() && wanted(packet) {
                    found = Some(packet.to_vec());
                }
            }) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => panic!("TUN read: {error}"),
            }
            if let Some(packet) = found {
                return (index, packet);
            }
        }
        queues[0]
            .wait_readable(Duration::from_millis(20))
            .expect("poll");
    }
}

/// The UDP datagram inside an IP packet to `port`, with its source and destination.
fn udp_to(packet: &[u8], port: u16) -> Option<(IpAddr, IpAddr, Vec<u8>)> {
    let (src, dst, datagram) = match packet.first()? >> 4 {
        4 => {
            let ip = ipv4::Packet::new_checked(packet).ok()?;
            if ip.protocol() != IpProtocol::UDP {
                return None;
            }
            let range = ip.header_len()..usize::from(ip.total_len());
            (ip.src_addr().into(), ip.dst_addr().into(), &packet[range])
        }
        6 => {
            let ip = ipv6::Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::UDP {
                return None;
            }
            let range = ipv6::HEADER_LEN..ip.total_len();
            (ip.src_addr().into(), ip.dst_addr().into(), &packet[range])
        }
        _ => return None,
    };
    let udp = udp::Packet::new_checked(datagram).ok()?;
    (udp.dst_port() == port).then(|| (src, dst, udp.payload().to_vec()))
}

fn check_socket_to_tun(offloads: Offloads) {
    let (host, tun) = lab(1, offloads);
    let mut queues = tun.into_queues();
    for (local, peer) in [
        (IpAddr::V4(LOCAL_V4), IpAddr::V4(PEER_V4)),
        (IpAddr::V6(LOCAL_V6), IpAddr::V6(PEER_V6)),
    ] {
        let socket = host
            .run(|| UdpSocket::bind(SocketAddr::new(local, 0)))
            .expect("bind");
        let message = b"decrypted traffic for the protected network";
        socket
            .send_to(message, SocketAddr::new(peer, 7000))
            .expect("send into the TUN");
        let (_, packet) = read_until(&mut queues, |packet| udp_to(packet, 7000).is_some());
        let (src, dst, payload) = udp_to(&packet, 7000).expect("UDP");
        assert_eq!((src, dst), (local, peer), "{offloads:?}");
        assert_eq!(payload, message);
        assert_eq!(
            gso::verify_checksums(&packet),
            Ok(true),
            "{offloads:?} {peer}"
        );
        // The wire views agree.
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let ip = ipv4::Packet::new_checked(&packet[..]).unwrap();
                assert!(ip.verify_checksum());
                let udp = udp::Packet::new_checked(ip.payload()).unwrap();
                assert!(udp.verify_checksum_ipv4(src, dst));
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let ip = ipv6::Packet::new_checked(&packet[..]).unwrap();
                let udp = udp::Packet::new_checked(ip.payload()).unwrap();
                assert!(udp.verify_checksum_ipv6(src, dst));
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(queues[0].stats().dropped, 0);
}

#[test]
fn socket_traffic_comes_out_of_the_tun_plain() {
    if !can_run() {
        return;
    }
    check_socket_to_tun(Offloads::NONE);
}

#[test]
fn socket_traffic_comes_out_of_the_tun_with_offloads() {
    if !can_run() {
        return;
    }
    check_socket_to_tun(Offloads::ALL);
}

fn check_tun_to_socket(offloads: Offloads) {
    let (host, tun) = lab(1, offloads);
    assert_eq!(tun.vnet_hdr(), offloads != Offloads::NONE);
    let queues = tun.into_queues();
    let socket = host
        .run(|| UdpSocket::bind(SocketAddr::new(IpAddr::V4(LOCAL_V4), 7100)))
        .expect("bind v4");
    let socket6 = host
        .run(|| UdpSocket::bind(SocketAddr::new(IpAddr::V6(LOCAL_V6), 7100)))
        .expect("bind v6");
    for s in [&socket, &socket6] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }

    let message = b"from the tunnel";
    let mut packet = vec![0u8; udp::IPV4_UDP_HEADERS_LEN + message.len()];
    packet[udp::IPV4_UDP_HEADERS_LEN..].copy_from_slice(message);
    let header = udp::Ipv4UdpHeader {
        src: SocketAddrV4::new(PEER_V4, 5555),
        dst: SocketAddrV4::new(LOCAL_V4, 7100),
        ttl: 64,
        dscp_ecn: 0,
        ident: 1,
    };
    udp::write_ipv4_udp(&mut packet, &header, message.len()).unwrap();
    queues[0].write_packet(&packet).expect("write v4");
    let mut buf = [0u8; 100];
    let (len, from) = socket
        .recv_from(&mut buf)
        .expect("v4 datagram from the TUN");
    assert_eq!(&buf[..len], message);
    assert_eq!(from, SocketAddr::V4(header.src));

    let mut packet = vec![0u8; udp::IPV6_UDP_HEADERS_LEN + message.len()];
    packet[udp::IPV6_UDP_HEADERS_LEN..].copy_from_slice(message);
    let header = udp::Ipv6UdpHeader {
        src: SocketAddrV6::new(PEER_V6, 5556, 0, 0),
        dst: SocketAddrV6::new(LOCAL_V6, 7100, 0, 0),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    };
    udp::write_ipv6_udp(&mut packet, &header, message.len()).unwrap();
    queues[0].write_packet(&packet).expect("write v6");
    let (len, from) = socket6
        .recv_from(&mut buf)
        .expect("v6 datagram from the TUN");
    assert_eq!(&buf[..len], message);
    assert_eq!(from, SocketAddr::V6(header.src));
}

#[test]
fn packets_written_to_the_tun_reach_a_socket_plain() {
    if !can_run() {
        return;
    }
    check_tun_to_socket(Offloads::NONE);
}

#[test]
fn packets_written_to_the_tun_reach_a_socket_with_offloads() {
    if !can_run() {
        return;
    }
    check_tun_to_socket(Offloads::ALL);
}

#[test]
fn flows_spread_over_queues_and_the_device_dies_with_the_last_queue() {
    if !can_run() {
        return;
    }
    let (host, tun) = lab(4, Offloads::ALL);
    let name = tun.name().to_owned();
    let mut queues = tun.into_queues();
    assert_eq!(queues.len(), 4);
    let sockets: Vec<UdpSocket> = (0..16)
        .map(|_| host.run(|| UdpSocket::bind((LOCAL_V4, 0))).expect("bind"))
        .collect();
    let mut used = [0usize; 4];
    for (i, socket) in sockets.iter().enumerate() {
        let port = 8000 + i as u16;
        socket.send_to(b"flow", (PEER_V4, port)).expect("send");
        let (queue, _) = read_until(&mut queues, |packet| udp_to(packet, port).is_some());
        used[queue] += 1;
    }
    assert!(
        used.iter().filter(|&&n| n > 0).count() >= 2,
        "16 flows all on one queue: {used:?}"
    );

    let last = queues.pop().expect("a queue");
    drop(queues);
    assert!(
        host.netlink(|netlink| netlink.link_by_name(&name)).is_ok(),
        "device lives while a queue is open"
    );
    drop(last);
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.netlink(|netlink| netlink.link_by_name(&name)).is_ok() {
        assert!(Instant::now() < deadline, "TUN outlived its last queue");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn mistakes_give_clear_errors() {
    if !can_run() {
        return;
    }
    let (host, tun) = lab(1, Offloads::NONE);
    let taken = tun.name().to_owned();
    for name in [taken.as_str(), "lo"] {
        let error = host
            .run(|| Tun::create(name, 2, Offloads::ALL))
            .expect_err("name in use");
        assert!(
            matches!(&error, TunError::AlreadyExists { name: n } if n == name),
            "{error:?}"
        );
        assert!(error.to_string().contains("already exists"), "{error}");
    }
    let error = host
        .run(|| Tun::create("wl_name_too_long", 1, Offloads::NONE))
        .expect_err("long name");
    assert!(error.to_string().contains("1-15 bytes"), "{error}");

    // "%d" lets the kernel number the device.
    let numbered = host
        .run(|| Tun::create("wltun%d", 2, Offloads::NONE))
        .expect("numbered");
    assert!(
        numbered.name().starts_with("wltun") && !numbered.name().contains('%'),
        "{}",
        numbered.name()
    );

    drop(tun);
    // A device that is down: nothing arrives on it.
    let mut queues = numbered.into_queues();
    let mut small = [0u8; 1500];
    let error = queues[0]
        .read_packets(&mut small, |_| {})
        .expect_err("small scratch");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let error = queues[0]
        .read_packets(&mut scratch, |_| {})
        .expect_err("nothing to read on a down device");
    assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
}
