//! Coalesced writes end to end: this test plays a TCP client behind a TUN with offloads,
//! connects to a listener in the namespace, and sends 200 KB whose segments
//! [`Coalescer`] merges into GSO frames written with one `write` each; the listener
//! must read exactly the bytes sent. Needs root; skips with a printed reason otherwise.

use std::{
    io::{self, Read},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener},
    time::{Duration, Instant},
};

mod tun_support;

use tun_support::{TCP_ACK, TCP_RST, TCP_SYN, can_run, tcp_packet, tun_lab, udp_packet};
use warpline_dataplane::{
    tun::{Offloads, SCRATCH_LEN, TunQueue, gro::Coalescer, gso},
    wire::{IpProtocol, ipv4},
};

const LOCAL_V4: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);
const PEER_V4: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);
const SEND_LEN: usize = 200_000;
const SEGMENT: usize = 1000;

/// A TCP segment from the server: (seq, ack, flags, window).
fn from_server(packet: &[u8], server_port: u16) -> Option<(u32, u32, u8, u16)> {
    let ip = ipv4::Packet::new_checked(packet).ok()?;
    if ip.protocol() != IpProtocol::TCP {
        return None;
    }
    let tcp = &packet[ip.header_len()..];
    if tcp.len() < 20 || u16::from_be_bytes([tcp[0], tcp[1]]) != server_port {
        return None;
    }
    assert_eq!(gso::verify_checksums(packet), Ok(true), "server checksums");
    Some((
        u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
        u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
        tcp[13],
        u16::from_be_bytes([tcp[14], tcp[15]]),
    ))
}

/// Reads what is waiting (waiting up to `wait` for the first frame) and returns the
/// server's segments.
fn drain(
    queue: &mut TunQueue,
    scratch: &mut [u8],
    server_port: u16,
    wait: Duration,
) -> Vec<(u32, u32, u8, u16)> {
    let mut segments = Vec::new();
    queue.wait_readable(wait).expect("poll");
    loop {
        match queue.read_packets(scratch, |packet| {
            segments.extend(from_server(packet, server_port));
        }) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return segments,
            Err(error) => panic!("TUN read: {error}"),
        }
    }
}

#[test]
fn coalesced_tcp_writes_reach_a_listener() {
    if !can_run() {
        return;
    }
    let (host, tun) = tun_lab("tgro", 1, Offloads::ALL, LOCAL_V4, None);
    if !tun.offloads().tcp {
        println!("skipping: the kernel refused TSO on TUN");
        return;
    }
    let mut queue = tun.into_queues().pop().expect("a queue");
    let server = SocketAddrV4::new(LOCAL_V4, 5301);
    let client = SocketAddrV4::new(PEER_V4, 40_000);
    let listener = host
        .run(|| TcpListener::bind(SocketAddr::V4(server)))
        .expect("listen");
    let reader = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut data = vec![0u8; SEND_LEN];
        stream.read_exact(&mut data)?;
        Ok(data)
    });

    let mut scratch = vec![0u8; SCRATCH_LEN];
    let isn: u32 = 0xfff0_0000;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Handshake.
    let (server_isn, mut window) = loop {
        assert!(Instant::now() < deadline, "no SYN-ACK");
        let syn = tcp_packet(client, server, isn, 0, TCP_SYN, &[]);
        queue.write_packet(&syn).expect("write SYN");
        let reply = drain(
            &mut queue,
            &mut scratch,
            server.port(),
            Duration::from_millis(200),
        )
        .into_iter()
        .find(|&(_, ack, flags, _)| {
            flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK && ack == isn.wrapping_add(1)
        });
        if let Some((seq, _, _, window)) = reply {
            break (seq, usize::from(window));
        }
    };
    let ack = server_isn.wrapping_add(1);
    queue
        .write_packet(&tcp_packet(
            client,
            server,
            isn.wrapping_add(1),
            ack,
            TCP_ACK,
            &[],
        ))
        .expect("write ACK");

    // Data, within the server's window, coalesced; go back to the last ACK on a stall.
    let sent: Vec<u8> = (0..SEND_LEN).map(|i| (i * 31 + i / 1009) as u8).collect();
    let mut coalescer = Coalescer::new();
    let (mut una, mut next) = (0usize, 0usize);
    let mut last_progress = Instant::now();
    while una < SEND_LEN {
        assert!(
            Instant::now() < deadline,
            "{una} of {SEND_LEN} bytes acknowledged"
        );
        while next < SEND_LEN && next + SEGMENT.min(SEND_LEN - next) <= una + window {
            let end = (next + SEGMENT).min(SEND_LEN);
            let seq = isn.wrapping_add(1).wrapping_add(next as u32);
            let packet = tcp_packet(client, server, seq, ack, TCP_ACK, &sent[next..end]);
            coalescer
                .push(&packet, |header, frame| {
                    queue.write_with_header(header, frame)
                })
                .expect("write to the TUN");
            next = end;
        }
        coalescer
            .flush(|header, frame| queue.write_with_header(header, frame))
            .expect("write to the TUN");
        for (_, acked, flags, new_window) in drain(
            &mut queue,
            &mut scratch,
            server.port(),
            Duration::from_millis(50),
        ) {
            assert_eq!(flags & TCP_RST, 0, "server reset the connection");
            let acked = acked.wrapping_sub(isn.wrapping_add(1)) as usize;
            if acked <= SEND_LEN && acked >= una {
                if acked > una {
                    last_progress = Instant::now();
                }
                una = acked;
                window = usize::from(new_window);
            }
        }
        if last_progress.elapsed() > Duration::from_millis(300) {
            next = una;
            last_progress = Instant::now();
        }
    }
    let received = reader
        .join()
        .expect("reader thread")
        .expect("accept and read");
    assert!(received == sent, "listener read other bytes than were sent");
    let stats = coalescer.stats();
    println!("coalescer: {stats:?}");
    assert!(stats.gso_writes > 0, "no GSO frame was written");
    assert!(stats.writes < stats.packets, "{stats:?}");
}

#[test]
fn coalesced_udp_writes_reach_a_socket_as_the_datagrams_sent() {
    if !can_run() {
        return;
    }
    let (host, tun) = tun_lab("tugro", 1, Offloads::ALL, LOCAL_V4, None);
    if !tun.offloads().udp {
        println!("skipping: the kernel refused USO on TUN (Linux 6.2+)");
        return;
    }
    let queue = tun.into_queues().pop().expect("a queue");
    assert!(
        queue.accepts_udp_gso(),
        "USO granted but not passed to the queue"
    );
    let server = SocketAddrV4::new(LOCAL_V4, 5302);
    let client = SocketAddrV4::new(PEER_V4, 40_001);
    let socket = host
        .run(|| std::net::UdpSocket::bind(SocketAddr::V4(server)))
        .expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");

    // 30 full datagrams and a short last one: one GSO frame of 31 datagrams.
    let payloads: Vec<Vec<u8>> = (0..31)
        .map(|i| {
            let len = if i == 30 { 300 } else { 1372 };
            (0..len).map(|b| (b * 13 + i * 7) as u8).collect()
        })
        .collect();
    let mut coalescer = Coalescer::new();
    coalescer.set_udp(queue.accepts_udp_gso());
    for payload in &payloads {
        coalescer
            .push(&udp_packet(client, server, payload), |header, frame| {
                queue.write_with_header(header, frame)
            })
            .expect("write to the TUN");
    }
    coalescer
        .flush(|header, frame| queue.write_with_header(header, frame))
        .expect("write to the TUN");
    let stats = coalescer.stats();
    assert_eq!(stats.writes, 1, "{stats:?}");
    assert_eq!(stats.gso_writes, 1, "{stats:?}");

    let mut buf = [0u8; 2048];
    for (i, payload) in payloads.iter().enumerate() {
        let (len, from) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i} of {}: {e}", payloads.len()));
        assert_eq!(from, SocketAddr::V4(client));
        assert!(&buf[..len] == payload.as_slice(), "datagram {i} differs");
    }
}
