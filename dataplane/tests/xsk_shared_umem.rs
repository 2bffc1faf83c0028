//! `XDP_SHARED_UMEM` across two interfaces, as the gateway uses it: a
//! frame received on the WAN socket is rewritten in place and transmitted
//! on the LAN socket without a copy, and comes back on the LAN socket's
//! completion ring. Needs root; skips with a printed reason otherwise.

mod xdp_support;

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    os::fd::AsFd,
    time::{Duration, Instant},
};

use warpline_dataplane::{
    lab::{Host, Veth},
    xdp::{AttachMode, Role, Steering},
    xsk::{Packet, SocketConfig, Umem, UmemConfig, XskSocket, raise_memlock_limit},
};
use xdp_support::*;

const LAN_GW_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
const SERVER_PORT: u16 = 9000;
const PACKETS: usize = 32;

#[test]
fn xsk_shared_umem_forwards_wan_frames_to_lan_without_copy() {
    if !can_run() {
        return;
    }
    raise_memlock_limit().expect("memlock");
    let client = Host::new("cl").expect("namespace");
    let gw = Host::new("gw").expect("namespace");
    let server = Host::new("sv").expect("namespace");
    let wan = Veth::new(&gw, &client, 1).expect("WAN veth");
    let lan = Veth::new(&gw, &server, 1).expect("LAN veth");
    gw.add_address(&wan.a, GW_IP.into(), 24).expect("address");
    client
        .add_address(&wan.b, PEER_IP.into(), 24)
        .expect("address");
    gw.add_address(&lan.a, LAN_GW_IP.into(), 24)
        .expect("address");
    server
        .add_address(&lan.b, SERVER_IP.into(), 24)
        .expect("address");

    let (mut steering, mut wan_socket, mut lan_socket, umem, mut pool) = gw.run(|| {
        let mut steering =
            Steering::attach(wan.a.index, Role::Wan, AttachMode::Auto, 1).expect("attach");
        steering.add_listen_port(LISTEN_PORT).expect("port");
        let (umem, mut pool) = Umem::new(UmemConfig {
            frame_size: 4096,
            frame_count: 256,
            headroom: 64,
        })
        .expect("UMEM");
        pool.reserve(256);
        let wan_socket = XskSocket::bind(&umem, &SocketConfig::new(wan.a.index, 0)).expect("WAN");
        let lan_socket =
            XskSocket::bind(&umem, &SocketConfig::new(lan.a.index, 0)).expect("LAN (shared)");
        steering.set_socket(0, wan_socket.as_fd()).expect("XSKMAP");
        (steering, wan_socket, lan_socket, umem, pool)
    });
    assert_eq!(wan_socket.bound_mode(), lan_socket.bound_mode());
    wan_socket.fill.fill(&mut pool, 128);

    let server_socket = XskLab::udp_socket(&server, SocketAddr::new(SERVER_IP.into(), SERVER_PORT));
    let client_socket = XskLab::udp_socket(&client, SocketAddr::new(PEER_IP.into(), 0));
    let mut sent = BTreeSet::new();
    for seq in 0..PACKETS as u32 {
        let message = wireguard_message(4, seq, 80);
        client_socket
            .send_to(&message, SocketAddr::new(GW_IP.into(), LISTEN_PORT))
            .expect("send");
        sent.insert(message);
    }

    // Server's MAC is known from the lab, so no ARP is needed from AF_XDP.
    let (lan_mac, server_mac) = (lan.a.mac, lan.b.mac);
    let mut forwarded_frames = BTreeSet::new();
    let mut completed_frames = BTreeSet::new();
    let mut received: Vec<Packet> = Vec::with_capacity(64);
    let mut completions = Vec::with_capacity(256);
    let deadline = Instant::now() + Duration::from_secs(5);
    while completed_frames.len() < PACKETS && Instant::now() < deadline {
        wan_socket.wake_rx().expect("wake");
        wan_socket.rx.receive(&mut received, 64);
        for mut packet in received.drain(..) {
            let udp = parse_udp_v4(umem.packet(&packet)).expect("UDP frame");
            let rewritten = build_udp_v4(
                server_mac,
                lan_mac,
                SocketAddr::new(LAN_GW_IP.into(), udp.src_port),
                SocketAddr::new(SERVER_IP.into(), SERVER_PORT),
                &udp.payload,
            );
            let offset = packet.offset();
            assert!(packet.set_window(offset, rewritten.len() as u32, umem.frame_size()));
            umem.packet_mut(&mut packet).copy_from_slice(&rewritten);
            forwarded_frames.insert(packet.frame().base());
            let mut batch = vec![packet];
            assert_eq!(lan_socket.tx.transmit(&mut batch), 1);
        }
        if lan_socket.tx.pending() > 0 {
            lan_socket.kick_tx().expect("kick");
        }
        lan_socket.completion.reclaim(&mut completions, 256);
        for frame in completions.drain(..) {
            completed_frames.insert(frame.base());
            pool.push(frame);
        }
        wan_socket.fill.fill(&mut pool, 128);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(forwarded_frames.len(), PACKETS);
    assert_eq!(
        completed_frames, forwarded_frames,
        "frames received on WAN complete on LAN"
    );

    let mut delivered = BTreeSet::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(3);
    while delivered.len() < PACKETS && Instant::now() < deadline {
        if let Ok((len, from)) = server_socket.recv_from(&mut buf) {
            assert_eq!(from.ip(), LAN_GW_IP);
            delivered.insert(buf[..len].to_vec());
        }
    }
    assert_eq!(delivered, sent);
    let verdicts = steering.verdicts().expect("verdicts");
    assert_eq!(
        verdicts.get(warpline_ebpf::Verdict::Redirected),
        PACKETS as u64
    );
    steering.clear_socket(0).expect("clear");
}
