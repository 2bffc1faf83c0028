//! Offload mode end to end: large sends from sockets in the TUN's namespace arrive as
//! GSO frames of up to 64 KB (one read each), which the queue splits into MTU-sized
//! packets with valid checksums whose payloads add up to exactly what was sent. UDP via
//! `UDP_SEGMENT` (USO), TCP via a real connection whose peer this test plays over the
//! TUN (SYN-ACK and ACKs written into it). Needs root; skips with a printed reason
//! otherwise.

use std::{
    io::{self, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

mod tun_support;

use tun_support::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, can_run, tun_lab};
use warpline_dataplane::{
    lab::Host,
    tun::{Offloads, SCRATCH_LEN, Tun, TunQueue, gso},
    wire::{IpProtocol, ipv4, ipv6, udp},
};

const LOCAL_V4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const PEER_V4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const LOCAL_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x78, 0, 0, 0, 0, 0, 1);
const PEER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x78, 0, 0, 0, 0, 0, 2);
const ROUTED_PEER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const MTU: usize = 1500;
const SEND_LEN: usize = 60_000;

fn lab(offloads: Offloads) -> (Host, Tun) {
    tun_lab("tgso", 1, offloads, LOCAL_V4, Some(LOCAL_V6))
}

fn payload() -> Vec<u8> {
    (0..SEND_LEN).map(|i| (i * 13 + i / 997) as u8).collect()
}

/// One read: the packets it produced.
fn read_frame(queue: &mut TunQueue, scratch: &mut [u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    match queue.read_packets(scratch, |packet| packets.push(packet.to_vec())) {
        Ok(count) => assert_eq!(count, packets.len()),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
            queue
                .wait_readable(Duration::from_millis(50))
                .expect("poll");
        }
        Err(error) => panic!("TUN read: {error}"),
    }
    packets
}

/// IP header length, protocol, and the transport part.
fn transport(packet: &[u8]) -> Option<(usize, IpProtocol)> {
    match packet.first()? >> 4 {
        4 => {
            let ip = ipv4::Packet::new_checked(packet).ok()?;
            Some((ip.header_len(), ip.protocol()))
        }
        6 => {
            let ip = ipv6::Packet::new_checked(packet).ok()?;
            Some((ipv6::HEADER_LEN, ip.next_header()))
        }
        _ => None,
    }
}

fn check_udp_gso(peer: IpAddr, local: IpAddr) {
    let (host, tun) = lab(Offloads::ALL);
    let uso = tun.offloads().udp;
    let mut queue = tun.into_queues().pop().expect("a queue");
    let socket = host
        .run(|| UdpSocket::bind(SocketAddr::new(local, 0)))
        .expect("bind");
    let segment_size: libc::c_int = 1200;
    // SAFETY: setsockopt reads one c_int from the pointer, which points at
    // `segment_size`, for the given length; the descriptor is the open socket.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&raw const segment_size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "UDP_SEGMENT: {}", io::Error::last_os_error());
    let sent = payload();
    socket
        .send_to(&sent, SocketAddr::new(peer, 7200))
        .expect("one 60 KB GSO send");

    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut received = Vec::new();
    let mut largest_frame = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.len() < sent.len() {
        assert!(
            Instant::now() < deadline,
            "got {} of {} bytes",
            received.len(),
            sent.len()
        );
        let packets = read_frame(&mut queue, &mut scratch);
        let ours: Vec<_> = packets
            .iter()
            .filter(|packet| {
                transport(packet).is_some_and(|(l4, protocol)| {
                    protocol == IpProtocol::UDP
                        && udp::Packet::new_checked(&packet[l4..])
                            .is_ok_and(|udp| udp.dst_port() == 7200)
                })
            })
            .collect();
        largest_frame = largest_frame.max(ours.len());
        for packet in ours {
            assert!(packet.len() <= MTU, "{} bytes", packet.len());
            assert_eq!(gso::verify_checksums(packet), Ok(true));
            let (l4, _) = transport(packet).unwrap();
            let datagram = udp::Packet::new_checked(&packet[l4..]).unwrap();
            assert!(datagram.payload().len() <= segment_size as usize);
            received.extend_from_slice(datagram.payload());
        }
    }
    assert_eq!(received, sent);
    assert_eq!(queue.stats().dropped, 0);
    if uso {
        assert!(
            largest_frame > 1,
            "USO granted but no read carried more than one datagram"
        );
    }
    println!("UDP {peer}: USO {uso}, largest frame {largest_frame} datagrams");
}

#[test]
fn udp_gso_sends_split_into_datagrams_v4() {
    if !can_run() {
        return;
    }
    check_udp_gso(IpAddr::V4(PEER_V4), IpAddr::V4(LOCAL_V4));
}

#[test]
fn udp_gso_sends_split_into_datagrams_v6() {
    if !can_run() {
        return;
    }
    check_udp_gso(IpAddr::V6(PEER_V6), IpAddr::V6(LOCAL_V6));
}

/// An IPv4 TCP packet without payload from the peer behind the TUN.
fn tcp_packet(src: SocketAddrV4, dst: SocketAddrV4, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    tun_support::tcp_packet(src, dst, seq, ack, flags, &[])
}

fn check_tcp_bulk(offloads: Offloads, routed: bool) -> usize {
    let (host, tun) = lab(offloads);
    let (peer_ip, mtu) = if routed {
        let name = tun.name().to_owned();
        host.netlink(|netlink| {
            let link = netlink.link_by_name(&name)?;
            netlink.set_mtu(link.index, 1280)?;
            netlink.add_route(link.index, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0)), 24)
        })
        .expect("MTU and route");
        (ROUTED_PEER_V4, 1280)
    } else {
        (PEER_V4, MTU)
    };
    let mut queue = tun.into_queues().pop().expect("a queue");
    let peer = SocketAddrV4::new(peer_ip, 5201);
    let sent = payload();
    let to_send = sent.clone();
    let client = host.run(move || {
        // Threads inherit the namespace of the thread that spawns them.
        std::thread::spawn(move || -> io::Result<()> {
            let mut stream =
                TcpStream::connect_timeout(&SocketAddr::V4(peer), Duration::from_secs(5))?;
            stream.set_write_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(&to_send)?;
            stream.shutdown(Shutdown::Write)
        })
    });

    let our_isn: u32 = 0x1234_5678;
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut client_addr: Option<SocketAddrV4> = None;
    let mut rcv_nxt = 0u32;
    let mut received = Vec::new();
    let mut gso_reads = 0;
    let mut fin = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(received.len() == sent.len() && fin) {
        assert!(
            Instant::now() < deadline,
            "got {} of {} bytes (fin {fin})",
            received.len(),
            sent.len()
        );
        let packets = read_frame(&mut queue, &mut scratch);
        let mut segments_this_read = 0;
        let mut progressed = false;
        for packet in &packets {
            let Some((l4, IpProtocol::TCP)) = transport(packet) else {
                continue;
            };
            let ip = ipv4::Packet::new_checked(&packet[..]).expect("IPv4");
            let tcp = &packet[l4..];
            if u16::from_be_bytes([tcp[2], tcp[3]]) != peer.port() {
                continue;
            }
            segments_this_read += 1;
            assert!(packet.len() <= mtu, "{} bytes", packet.len());
            assert_eq!(ip.dst_addr(), peer_ip);
            assert_eq!(ip.src_addr(), LOCAL_V4);
            assert_eq!(gso::verify_checksums(packet), Ok(true), "checksums");
            let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
            let flags = tcp[13];
            assert_eq!(flags & TCP_RST, 0, "client reset the connection");
            let data = &tcp[usize::from(tcp[12] >> 4) * 4..];
            if flags & TCP_SYN != 0 {
                client_addr = Some(SocketAddrV4::new(
                    ip.src_addr(),
                    u16::from_be_bytes([tcp[0], tcp[1]]),
                ));
                rcv_nxt = seq.wrapping_add(1);
                progressed = true;
                continue;
            }
            if seq == rcv_nxt {
                received.extend_from_slice(data);
                rcv_nxt = rcv_nxt.wrapping_add(data.len() as u32);
                if flags & TCP_FIN != 0 {
                    fin = true;
                    rcv_nxt = rcv_nxt.wrapping_add(1);
                }
                progressed |= !data.is_empty() || fin;
            }
        }
        if segments_this_read > 1 {
            gso_reads += 1;
        }
        let Some(client_addr) = client_addr else {
            continue;
        };
        if progressed {
            let reply = if received.is_empty() && !fin {
                tcp_packet(peer, client_addr, our_isn, rcv_nxt, TCP_SYN | TCP_ACK)
            } else {
                tcp_packet(peer, client_addr, our_isn.wrapping_add(1), rcv_nxt, TCP_ACK)
            };
            queue.write_packet(&reply).expect("write to the TUN");
        }
    }
    assert_eq!(received, sent);
    client
        .join()
        .expect("client thread")
        .expect("connect, send, shut down");
    assert_eq!(queue.stats().dropped, 0);
    gso_reads
}

#[test]
fn tcp_bulk_send_arrives_as_tso_frames_and_splits() {
    if !can_run() {
        return;
    }
    let gso_reads = check_tcp_bulk(Offloads::ALL, false);
    println!("TCP with TSO: {gso_reads} reads carried several segments");
    assert!(gso_reads > 0, "TSO granted but every read held one segment");
}

#[test]
fn tso_frames_respect_a_lowered_mtu_on_a_routed_prefix() {
    if !can_run() {
        return;
    }
    let gso_reads = check_tcp_bulk(Offloads::ALL, true);
    assert!(gso_reads > 0, "TSO granted but every read held one segment");
}

#[test]
fn tcp_bulk_send_works_per_packet_without_offloads() {
    if !can_run() {
        return;
    }
    assert_eq!(check_tcp_bulk(Offloads::NONE, false), 0);
}
