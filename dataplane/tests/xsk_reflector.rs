//! AF_XDP reflector round trip on a real veth: type-4 packets from a peer's
//! UDP socket are steered to AF_XDP, turned around in place in their UMEM
//! frame (MACs, addresses, ports swapped, checksums recomputed), sent back
//! on the TX ring, and must arrive at the peer's UDP socket intact — which
//! the peer's kernel accepts only with correct IPv4 and UDP checksums.
//! Generic and native XDP. Needs root; skips with a printed reason otherwise.

mod xdp_support;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use warpline_dataplane::{
    wire::checksum,
    xdp::{AttachMode, PassProgram, Role},
};
use xdp_support::*;

const PACKETS: usize = 64;
const CLIENT_PORT: u16 = 40000;

fn frame_checksums_are_complete(frame: &[u8]) -> bool {
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let ip_ok = checksum::fold(checksum::sum(&ip[..ihl])) == 0xffff;
    let udp_len = usize::from(u16::from_be_bytes([ip[ihl + 4], ip[ihl + 5]]));
    let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let pseudo = checksum::pseudo_header_ipv4(src, dst, 17, udp_len as u16);
    let udp_ok = checksum::fold(checksum::combine(
        pseudo,
        checksum::sum(&ip[ihl..ihl + udp_len]),
    )) == 0xffff;
    ip_ok && udp_ok
}

/// UDP `InCsumErrors` of the calling thread's network namespace.
fn udp_checksum_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
    let mut udp_lines = snmp.lines().filter(|line| line.starts_with("Udp:"));
    let names: Vec<&str> = udp_lines
        .next()
        .expect("Udp header")
        .split_whitespace()
        .collect();
    let values: Vec<&str> = udp_lines
        .next()
        .expect("Udp values")
        .split_whitespace()
        .collect();
    let column = names
        .iter()
        .position(|&n| n == "InCsumErrors")
        .expect("InCsumErrors column");
    values[column].parse().expect("a number")
}

fn reflector_round_trip(mode: AttachMode, xdp_on_peer: bool) {
    let mut lab = XskLab::new(Role::Wan, mode);
    // With a native program on the peer's end, the veth delivers our TX
    // through the peer's XDP path instead of the plain receive path.
    let peer_index = lab.veth.b.index;
    let _peer_program = xdp_on_peer.then(|| {
        lab.peer
            .run(|| PassProgram::attach(peer_index, AttachMode::Native))
            .expect("XDP pass program on the peer end")
    });
    lab.steering
        .add_listen_port(LISTEN_PORT)
        .expect("listen port");
    let client = XskLab::udp_socket(&lab.peer, SocketAddr::new(PEER_IP.into(), CLIENT_PORT));
    let server = SocketAddr::new(GW_IP.into(), LISTEN_PORT);
    let mut sent = BTreeSet::new();
    for seq in 0..PACKETS as u32 {
        let message = wireguard_message(4, seq, 96 + seq as usize);
        client.send_to(&message, server).expect("send");
        sent.insert(message);
    }

    let mut bad_checksums = 0;
    let reflected = lab.receive(
        PACKETS,
        Duration::from_secs(5),
        |_, socket, umem, mut packet| {
            let bytes = umem.packet_mut(&mut packet);
            reflect_in_place(bytes);
            if !frame_checksums_are_complete(bytes) {
                bad_checksums += 1;
            }
            let mut batch = vec![packet];
            assert_eq!(socket.tx.transmit(&mut batch), 1, "TX ring has room");
            socket.kick_tx().expect("kick TX");
            None
        },
    );
    assert_eq!(reflected.len(), PACKETS, "packets reflected");
    assert_eq!(bad_checksums, 0);

    // Copy-mode TX sends a bounded batch per kick: kick until drained, and
    // take the frames back from the completion rings.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut completed = 0;
    while completed < PACKETS && Instant::now() < deadline {
        for socket in &mut lab.sockets {
            if socket.tx.pending() > 0 {
                socket.kick_tx().expect("kick TX");
            }
            completed += socket.completion.reclaim(&mut lab.pool, 256);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(completed, PACKETS, "every transmitted frame completes");

    let mut echoed = BTreeSet::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(3);
    while echoed.len() < PACKETS && Instant::now() < deadline {
        if let Ok((len, from)) = client.recv_from(&mut buf) {
            assert_eq!(from, server);
            echoed.insert(buf[..len].to_vec());
        }
    }
    assert_eq!(
        echoed.len(),
        PACKETS,
        "replies received by the peer's UDP socket"
    );
    assert_eq!(echoed, sent, "payloads come back unchanged");
    assert_eq!(
        lab.peer.run(udp_checksum_errors),
        0,
        "peer saw no UDP checksum errors"
    );
    let stats: Vec<_> = lab
        .sockets
        .iter()
        .map(|s| s.statistics().expect("stats"))
        .collect();
    assert!(
        stats
            .iter()
            .all(|s| s.tx_invalid_descs == 0 && s.rx_dropped == 0),
        "{stats:?}"
    );
    println!(
        "{mode:?}: {PACKETS} packets reflected ({:?} XDP, {:?} AF_XDP)",
        lab.steering.attached_mode(),
        lab.sockets[0].bound_mode()
    );
}

#[test]
fn xsk_reflector_round_trip_generic() {
    if can_run() {
        reflector_round_trip(AttachMode::Generic, false);
    }
}

#[test]
fn xsk_reflector_round_trip_native() {
    if can_run() {
        reflector_round_trip(AttachMode::Native, false);
    }
}

#[test]
fn xsk_reflector_round_trip_native_with_xdp_on_peer() {
    if can_run() {
        reflector_round_trip(AttachMode::Native, true);
    }
}
