//! Writes the seed corpora: valid inputs for every target, made with the real APIs (a real
//! handshake between two nodes, frames the pipeline itself would send, configs and control
//! lines as people and the CLI write them), so fuzzing starts deep instead of at "is this a
//! WireGuard message at all".
//!
//! `cargo xtask fuzz --seeds` runs it as
//! `cargo run --manifest-path fuzz/Cargo.toml --no-default-features --example make_seeds -- fuzz/corpus`.
//! It replaces the files named `seed-*` in each `fuzz/corpus/<target>/` and leaves every other
//! file (regression inputs from fixed crashes) alone. Output is deterministic.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::time::Duration;

use warpline_control::config::Config;
use warpline_control::ctl::model::{InterfaceSnapshot, PeerSnapshot, WorkerSnapshot};
use warpline_control::ctl::protocol::{Request, Response, encode_line};
use warpline_control::ha::{SessionRecord, SessionSlot, SyncMessage};
use warpline_control::keys::{PresharedKey, PrivateKey};
use warpline_control::node::{Node, NodeConfig, PeerConfig};
use warpline_control::tai64n::Tai64N;
use warpline_dataplane::aead::Suite;
use warpline_dataplane::session::{SessionParams, SessionState};
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::ethernet::{self, EtherType};
use warpline_dataplane::wire::udp::{IPV4_UDP_HEADERS_LEN, Ipv4UdpHeader, write_ipv4_udp};
use warpline_dataplane::wire::{IpProtocol, ipv4, ipv6};
use warpline_fuzz::lab::{self, FrameSpec, SESSIONS};
use warpline_fuzz::rng::SeededRng;
use warpline_fuzz::targets::{
    decap_frames, encap_roundtrip, ha_sync, handshake_responder as responder, replay_window,
};
use zeroize::Zeroizing;

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("corpus"));
    let mut total = 0;
    for (target, seeds) in [
        ("wire_messages", wire_messages()),
        ("wire_headers", wire_headers()),
        ("decap_frames", decap_seeds()),
        ("encap_roundtrip", encap_seeds()),
        ("replay_window", replay_seeds()),
        ("handshake_responder", responder_seeds()),
        ("ha_sync", ha_sync_seeds()),
        ("config_parse", config_seeds()),
        ("ctl_request", ctl_request_seeds()),
        ("ctl_response", ctl_response_seeds()),
    ] {
        total += write_seeds(&root.join(target), &seeds);
    }
    println!("wrote {total} seed bytes under {}", root.display());
}

type Seeds = Vec<(&'static str, Vec<u8>)>;

/// Replaces `dir`'s `seed-*` files with `seeds`; returns the bytes written.
fn write_seeds(dir: &Path, seeds: &Seeds) -> usize {
    std::fs::create_dir_all(dir).expect("create corpus directory");
    for entry in std::fs::read_dir(dir).expect("read corpus directory") {
        let path = entry.expect("directory entry").path();
        let is_seed = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("seed-"));
        if is_seed {
            std::fs::remove_file(&path).expect("remove old seed");
        }
    }
    let mut bytes = 0;
    for (name, seed) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), seed).expect("write seed");
        bytes += seed.len();
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
    bytes
}

// ---------------------------------------------------------------------------------------
// Packets

/// An IPv4 UDP packet from `src` to `dst` with `payload`, checksums filled.
fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; IPV4_UDP_HEADERS_LEN + payload.len()];
    packet[IPV4_UDP_HEADERS_LEN..].copy_from_slice(payload);
    let header = Ipv4UdpHeader {
        src: SocketAddrV4::new(src, 5353),
        dst: SocketAddrV4::new(dst, 53),
        ttl: 64,
        dscp_ecn: 0b10,
        ident: 0x1234,
    };
    write_ipv4_udp(&mut packet, &header, payload.len()).expect("fits");
    packet
}

/// An IPv4 TCP SYN-sized packet with one option word (header length 24).
fn ipv4_tcp_with_options(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut packet = vec![0u8; 24 + 20];
    let mut ip = ipv4::Packet::new_unchecked(&mut packet[..]);
    ip.set_version_and_header_len(24);
    ip.set_total_len(44);
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol::TCP);
    ip.set_fragment(true, false, 0);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    packet
}

/// An IPv6 packet with `next_header` and `payload`.
fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next_header: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; ipv6::HEADER_LEN + payload.len()];
    packet[ipv6::HEADER_LEN..].copy_from_slice(payload);
    let mut ip = ipv6::Packet::new_unchecked(&mut packet[..]);
    ip.set_version_tc_flow(0, 0x12345);
    ip.set_payload_len(payload.len() as u16);
    ip.set_next_header(next_header);
    ip.set_hop_limit(64);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    packet
}

fn ethernet_frame(ethertype: EtherType, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; ethernet::TAGGED_HEADER_LEN + payload.len()];
    let header_len = ethernet::write_header(
        &mut frame,
        lab::LOCAL_MAC,
        [0x02, 0, 0, 0, 0, 0x07],
        vlan,
        ethertype,
    )
    .expect("fits");
    frame.truncate(header_len);
    frame.extend_from_slice(payload);
    frame
}

const PEER0_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER1_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const PEER0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

// ---------------------------------------------------------------------------------------
// WireGuard messages from a real handshake

/// The messages of a real handshake between two nodes, and a cookie reply.
struct Handshake {
    initiation: Vec<u8>,
    response: Vec<u8>,
    keepalive: Vec<u8>,
    data: Vec<u8>,
    cookie_reply: Vec<u8>,
}

fn real_handshake() -> Handshake {
    let responder_private = PrivateKey::from_bytes(responder::RESPONDER_KEY);
    let initiator_private = PrivateKey::from_bytes(responder::INITIATOR_KEY);
    let responder_address: SocketAddr = responder::RESPONDER_ADDRESS.parse().expect("valid");
    let initiator_address: SocketAddr = responder::SOURCES[0].parse().expect("valid");
    let wall_clock = Duration::from_secs(1_700_000_000);
    let mut responder = Node::new(
        NodeConfig::new(responder_private.clone(), wall_clock),
        SeededRng::new(1),
    );
    let mut initiator = Node::new(
        NodeConfig::new(initiator_private.clone(), wall_clock),
        SeededRng::new(2),
    );
    let mut on_responder = PeerConfig::new(initiator_private.public_key());
    on_responder.preshared_key = PresharedKey::from_bytes(responder::PRESHARED_KEY);
    responder.add_peer(on_responder).expect("distinct");
    let mut on_initiator = PeerConfig::new(responder_private.public_key());
    on_initiator.preshared_key = PresharedKey::from_bytes(responder::PRESHARED_KEY);
    on_initiator.endpoint = Some(responder_address);
    let peer = initiator.add_peer(on_initiator).expect("distinct");

    let now = Time::from_secs(1);
    initiator.initiate(now, peer);
    let initiation = initiator.poll_transmit().expect("initiation").payload;
    let mut buffer = initiation.clone();
    responder
        .handle_datagram(now, initiator_address, &mut buffer)
        .expect("valid initiation");
    let response = responder.poll_transmit().expect("response").payload;
    let mut buffer = response.clone();
    initiator
        .handle_datagram(now, responder_address, &mut buffer)
        .expect("valid response");
    let keepalive = initiator.poll_transmit().expect("keepalive").payload;
    let inner = ipv4_udp(PEER0_V4, GATEWAY_V4, b"hello through the tunnel");
    let mut out = vec![0u8; 2048];
    let (_, len) = initiator
        .send_packet(now, peer, &inner, &mut out)
        .expect("room")
        .expect("session");
    out.truncate(len);

    responder.force_under_load(true);
    let mut buffer = initiation.clone();
    let _ = responder.handle_datagram(now, initiator_address, &mut buffer);
    let cookie_reply = responder.poll_transmit().expect("cookie reply").payload;
    Handshake {
        initiation,
        response,
        keepalive,
        data: out,
        cookie_reply,
    }
}

fn wire_messages() -> Seeds {
    let handshake = real_handshake();
    vec![
        ("initiation", handshake.initiation),
        ("response", handshake.response),
        ("cookie-reply", handshake.cookie_reply),
        ("keepalive", handshake.keepalive),
        ("transport-data", handshake.data),
        ("type-only", vec![4, 0, 0, 0]),
    ]
}

// ---------------------------------------------------------------------------------------
// Headers

fn sealed_lab_frame(source: SocketAddr, vlan: Option<u16>, plaintext: &[u8]) -> Vec<u8> {
    let session = &SESSIONS[0];
    let spec = FrameSpec {
        vlan_tci: vlan,
        source,
        source_mac: lab::PEER0_ENDPOINT.mac,
        receiver_index: session.index,
        counter: 7,
        plaintext,
        pad: true,
    };
    lab::build_frame(&spec, &lab::sender_key(session)).0
}

fn wire_headers() -> Seeds {
    let inner_v4 = ipv4_udp(PEER0_V4, GATEWAY_V4, b"dns query");
    let inner_v6 = ipv6_packet(
        PEER0_V6,
        GATEWAY_V6,
        IpProtocol::ICMPV6,
        &[128, 0, 0, 0, 0, 1, 0, 1],
    );
    let v4_source = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 51820));
    let v6_source = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7),
        51820,
        0,
        0,
    ));
    let mut fragment = ipv4_udp(PEER0_V4, GATEWAY_V4, &[0u8; 24]);
    ipv4::Packet::new_unchecked(&mut fragment[..]).set_fragment(false, true, 0);
    vec![
        ("outer-ipv4", sealed_lab_frame(v4_source, None, &inner_v4)),
        (
            "outer-ipv6-vlan",
            sealed_lab_frame(v6_source, Some(42), &inner_v6),
        ),
        (
            "ethernet-ipv4-fragment",
            ethernet_frame(EtherType::IPV4, None, &fragment),
        ),
        (
            "ethernet-arp",
            ethernet_frame(EtherType::ARP, None, &[0, 1, 8, 0, 6, 4, 0, 1]),
        ),
        ("inner-ipv4-udp", inner_v4),
        (
            "inner-ipv4-options",
            ipv4_tcp_with_options(PEER0_V4, GATEWAY_V4),
        ),
        ("inner-ipv6-icmp", inner_v6),
    ]
}

// ---------------------------------------------------------------------------------------
// Pipelines

fn decap_seeds() -> Seeds {
    use decap_frames::{Op, flags};
    let inner_v4 = ipv4_udp(PEER0_V4, GATEWAY_V4, b"payload");
    let inner_peer1 = ipv4_udp(PEER1_V4, GATEWAY_V4, b"from the AES peer");
    let inner_v6 = ipv6_packet(PEER0_V6, GATEWAY_V6, IpProtocol::UDP, &[0; 8]);
    let sealed = |bits: u8, plaintext| Op::Sealed {
        flags: bits,
        counter: 0,
        source: 0xc633_6407,
        port: 51820,
        tci: 7,
        plaintext,
        flip: (0, 0),
    };
    let at_counter = |counter| Op::Sealed {
        flags: flags::EXPLICIT_COUNTER,
        counter,
        source: 0xc633_6407,
        port: 51820,
        tci: 0,
        plaintext: &inner_v4,
        flip: (0, 0),
    };
    let handshake = real_handshake();
    let initiation_frame = ethernet_frame(
        EtherType::IPV4,
        None,
        &ipv4_udp(
            Ipv4Addr::new(198, 51, 100, 7),
            lab::LOCAL_V4,
            &handshake.initiation,
        ),
    );
    vec![
        (
            "data-v4",
            decap_frames::encode(
                10,
                &[
                    sealed(flags::PAD | flags::KNOWN_MAC, &inner_v4),
                    sealed(flags::PAD | flags::KNOWN_MAC, &inner_v4),
                    Op::Replay(0),
                ],
            ),
        ),
        (
            "data-v6-vlan-aes",
            decap_frames::encode(
                100,
                &[
                    sealed(flags::IPV6 | flags::VLAN | flags::PAD, &inner_v6),
                    sealed(flags::SECOND_SESSION, &inner_peer1),
                    Op::Flush,
                    sealed(flags::SECOND_SESSION | flags::PAD, &[]),
                ],
            ),
        ),
        (
            "wrong-source-and-key",
            decap_frames::encode(
                10,
                &[
                    sealed(flags::SECOND_SESSION, &inner_v4),
                    sealed(flags::WRONG_KEY, &inner_v4),
                    sealed(flags::CORRUPT, &inner_v4),
                ],
            ),
        ),
        (
            "window-edges",
            decap_frames::encode(
                10,
                &[
                    at_counter(20_000),
                    at_counter(20_000 - 8191),
                    at_counter(20_000 - 8192),
                    at_counter(u64::MAX - 8192),
                ],
            ),
        ),
        (
            "expired-and-control",
            decap_frames::encode(
                200,
                &[
                    sealed(0, &inner_v4),
                    sealed(flags::SECOND_SESSION, &inner_peer1),
                    Op::Raw {
                        headroom: 3,
                        frame: &initiation_frame,
                    },
                    Op::Bend {
                        offset: 1,
                        len: 100,
                    },
                ],
            ),
        ),
    ]
}

fn encap_seeds() -> Seeds {
    use encap_roundtrip::{Setup, encode, setup};
    let inner_v4 = ipv4_udp(GATEWAY_V4, PEER0_V4, b"to the peer");
    let inner_v6 = ipv6_packet(GATEWAY_V6, PEER0_V6, IpProtocol::UDP, &[0; 12]);
    let no_session = ipv4_udp(GATEWAY_V4, Ipv4Addr::new(10, 9, 0, 1), b"nobody home");
    let plain = Setup {
        flags: 0,
        mtu: 1420,
        ttl: 64,
        tci: 0,
    };
    vec![
        ("v4", encode(plain, &[&inner_v4, &inner_v6, &no_session])),
        (
            "v6-vlan-aes",
            encode(
                Setup {
                    flags: setup::ENDPOINT_V6 | setup::VLAN | setup::AES,
                    tci: 100,
                    ..plain
                },
                &[&inner_v6, &inner_v4],
            ),
        ),
        (
            "small-mtu",
            encode(Setup { mtu: 40, ..plain }, &[&inner_v4, &inner_v6]),
        ),
        (
            "no-endpoint",
            encode(
                Setup {
                    flags: setup::NO_ENDPOINT | setup::EXPIRED,
                    ..plain
                },
                &[&inner_v4],
            ),
        ),
    ]
}

fn replay_seeds() -> Seeds {
    use replay_window::{Step, encode};
    let in_order: Vec<Step> = (0..40).map(|_| Step::Ahead(1)).collect();
    let mut from_parts = vec![1, 2];
    from_parts.extend_from_slice(&20_000u32.to_le_bytes());
    from_parts.extend_from_slice(&[2, 3]);
    from_parts.extend_from_slice(&u64::MAX.to_le_bytes());
    from_parts.extend_from_slice(&[5]);
    from_parts.extend_from_slice(&0x00ff_00ffu64.to_le_bytes());
    from_parts.extend_from_slice(&[2, 0, 1, 1, 1, 0, 2, 0x10, 0]);
    vec![
        ("in-order", encode(&in_order)),
        (
            "reorder-and-duplicates",
            encode(&[
                Step::Absolute(100),
                Step::Behind(3),
                Step::Behind(0),
                Step::Ahead(2),
                Step::Behind(2),
                Step::Behind(2),
                Step::Behind(64),
                Step::Behind(65),
            ]),
        ),
        (
            "window-edge",
            encode(&[
                Step::Absolute(50_000),
                Step::Behind(8191),
                Step::Behind(8192),
                Step::Jump(13),
                Step::Behind(8192),
                Step::Behind(8191),
            ]),
        ),
        (
            "far-jumps",
            encode(&[
                Step::Jump(40),
                Step::Behind(1),
                Step::Jump(63),
                Step::Absolute(u64::MAX - 8193),
                Step::Ahead(1),
            ]),
        ),
        ("from-parts", from_parts),
        (
            "resumed",
            replay_window::encode_resumed(
                20_000,
                &[
                    Step::Behind(0),
                    Step::Behind(1),
                    Step::Ahead(1),
                    Step::Behind(8192),
                    Step::Ahead(40),
                ],
            ),
        ),
    ]
}

fn responder_seeds() -> Seeds {
    use responder::{Op, encode};
    let inner = ipv4_udp(PEER0_V4, GATEWAY_V4, b"data");
    let handshake = real_handshake();
    let timestamp = |secs: u64| {
        warpline_control::tai64n::Tai64N::from_unix(Duration::from_secs(secs)).to_bytes()
    };
    vec![
        (
            "handshake-and-data",
            encode(
                5,
                &[
                    Op::Initiate,
                    Op::ToResponder {
                        flip: None,
                        stamp: false,
                    },
                    Op::ToInitiator,
                    Op::ToResponder {
                        flip: None,
                        stamp: false,
                    },
                    Op::Send(&inner),
                    Op::ToResponder {
                        flip: None,
                        stamp: false,
                    },
                    Op::Replay {
                        index: 0,
                        source: 1,
                    },
                    Op::Replay {
                        index: 2,
                        source: 0,
                    },
                ],
            ),
        ),
        (
            "cookie-dance",
            encode(
                6,
                &[
                    Op::UnderLoad(true),
                    Op::Initiate,
                    Op::ToResponder {
                        flip: None,
                        stamp: false,
                    },
                    Op::ToInitiator,
                    Op::Advance { millis: 400 },
                    Op::Timers,
                    Op::ToResponder {
                        flip: None,
                        stamp: false,
                    },
                    Op::ToInitiator,
                    Op::ToResponder {
                        flip: None,
                        stamp: false,
                    },
                ],
            ),
        ),
        (
            "crafted-initiations",
            encode(
                7,
                &[
                    Op::Craft {
                        identity: 0,
                        sender_index: 11,
                        timestamp: timestamp(1_700_000_100),
                        source: 0,
                    },
                    Op::Craft {
                        identity: 0,
                        sender_index: 12,
                        timestamp: timestamp(1_700_000_100),
                        source: 2,
                    },
                    Op::Advance { millis: 100 },
                    Op::Craft {
                        identity: 1,
                        sender_index: 13,
                        timestamp: timestamp(1_700_000_200),
                        source: 1,
                    },
                    Op::Craft {
                        identity: 2,
                        sender_index: 14,
                        timestamp: timestamp(1_700_000_300),
                        source: 1,
                    },
                    Op::Craft {
                        identity: 3,
                        sender_index: 15,
                        timestamp: timestamp(1_700_000_400),
                        source: 1,
                    },
                ],
            ),
        ),
        (
            "raw-and-corrupt",
            encode(
                8,
                &[
                    Op::Raw {
                        source: 1,
                        stamp: false,
                        bytes: &handshake.initiation,
                    },
                    Op::Raw {
                        source: 1,
                        stamp: true,
                        bytes: &handshake.response,
                    },
                    Op::Raw {
                        source: 2,
                        stamp: false,
                        bytes: &handshake.cookie_reply,
                    },
                    Op::Raw {
                        source: 0,
                        stamp: false,
                        bytes: &handshake.data,
                    },
                    Op::Initiate,
                    Op::ToResponder {
                        flip: Some((40, 1)),
                        stamp: true,
                    },
                ],
            ),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// HA sync

fn session_record(
    peer: usize,
    suite: Suite,
    next_send_counter: u64,
    recv_highest: Option<u64>,
    endpoint: Option<SocketAddr>,
) -> Vec<u8> {
    let record = SessionRecord {
        peer: ha_sync::peer_public_key(peer),
        slot: SessionSlot::Current,
        state: SessionState {
            params: SessionParams {
                local_index: 0x0500_0005 + peer as u32,
                remote_index: 0x0600_0006,
                suite,
                we_initiated: false,
                established: Time::ZERO,
            },
            send_key: Zeroizing::new([0x71; 32]),
            recv_key: Zeroizing::new([0x72; 32]),
            next_send_counter,
            recv_highest,
        },
        age: Duration::from_millis(2_500),
        endpoint,
        latest_timestamp: Some(Tai64N::from_unix(Duration::from_secs(1_700_000_000))),
    };
    record.encode().to_vec()
}

fn ha_sync_seeds() -> Seeds {
    let v4: SocketAddr = "198.51.100.7:51820".parse().expect("valid");
    let v6: SocketAddr = "[2001:db8::7]:51820".parse().expect("valid");
    let record = session_record(0, Suite::ChaCha20Poly1305, 1_000, Some(990), Some(v4));
    let aes_record = session_record(1, Suite::Aes256Gcm, 5, None, Some(v6));
    let bare_record = session_record(0, Suite::ChaCha20Poly1305, 0, Some(0), None);
    let messages = [
        SyncMessage::Hello {
            node_id: 1,
            version: 1,
        },
        SyncMessage::SnapshotBegin { count: 2 },
        SyncMessage::Record(Zeroizing::new(record.clone())),
        SyncMessage::SnapshotEnd,
        SyncMessage::Heartbeat { sequence: 42 },
        SyncMessage::Retire { local_index: 7 },
    ];
    let mut seeds: Seeds = vec![
        ("record", ha_sync::encode_record(&record)),
        ("record-aes-v6", ha_sync::encode_record(&aes_record)),
        ("record-bare", ha_sync::encode_record(&bare_record)),
        (
            "import",
            ha_sync::encode_import(17, 30, [980, 991], &record),
        ),
        (
            "import-aes",
            ha_sync::encode_import(1, 10, [0, 6], &aes_record),
        ),
        (
            "import-epoch-too-low",
            ha_sync::encode_import(0, 10, [1, 2], &record),
        ),
        ("channel-garbage", vec![3, 0, 32, 1, 2, 3]),
    ];
    for (name, message) in [
        "hello",
        "snapshot-begin",
        "message-record",
        "snapshot-end",
        "heartbeat",
        "retire",
    ]
    .into_iter()
    .zip(&messages)
    {
        seeds.push((name, ha_sync::encode_message(&message.encode())));
    }
    // The cluster: a partner's snapshot, its checkpoint, then a takeover; and the
    // active-active paths (a packet arrives for the partner's session, the partner dies).
    let (hello, begin, one, end, retire) = (
        messages[0].encode(),
        SyncMessage::SnapshotBegin { count: 1 }.encode(),
        messages[2].encode(),
        messages[3].encode(),
        messages[5].encode(),
    );
    let aes = SyncMessage::Record(Zeroizing::new(aes_record.clone())).encode();
    use ha_sync::ClusterStep::{Arrived, Demote, Lost, Message, Promote, Publish, Wait};
    seeds.push((
        "cluster-promote",
        ha_sync::encode_cluster(
            false,
            &[
                Message(0, &hello),
                Message(0, &begin),
                Message(0, &one),
                Message(0, &end),
                Message(1, &aes),
                Wait(150),
                Promote,
                Publish,
                Wait(3_000),
                Demote,
                Publish,
            ],
        ),
    ));
    seeds.push((
        "cluster-active-active",
        ha_sync::encode_cluster(
            true,
            &[
                Message(0, &one),
                Message(1, &aes),
                Arrived(0x0500_0005),
                Lost(1),
                Message(0, &retire),
                Publish,
                Wait(200),
                Publish,
            ],
        ),
    ));
    seeds
}

// ---------------------------------------------------------------------------------------
// Configuration and control socket

fn config_seeds() -> Seeds {
    let private = PrivateKey::from_bytes([0x61; 32]);
    let peer_a = PrivateKey::from_bytes([0x62; 32]).public_key();
    let peer_b = PrivateKey::from_bytes([0x63; 32]).public_key();
    let psk = PresharedKey::from_bytes([0x64; 32]);
    let minimal = format!("[Interface]\nPrivateKey = {}\n", private.to_base64());
    let real_world = format!(
        "# wl0: site-to-site gateway\n\
         [Interface]\n\
         PrivateKey = {private}\n\
         listenport=51820   # lower case, no spaces\n\
         Address = 10.10.0.1/24, fd10::1/64\n\
         Address = 192.168.77.1\n\
         MTU = 1420\n\
         DNS = 10.10.0.53, fd10::53, corp.example\n\
         Table = 1234\n\
         FwMark = 0xca6c\n\
         PreUp = true\n\
         PostUp = iptables -A FORWARD -i %i -j ACCEPT\n\
         PreDown = true\n\
         PostDown = iptables -D FORWARD -i %i -j ACCEPT\n\
         SaveConfig = false\n\
         \n\
         [Peer]\n\
         PublicKey = {peer_a}\n\
         PresharedKey = {psk}\n\
         AllowedIPs = 10.10.0.2/32, fd10::2/128\n\
         Endpoint = vpn.example.com:51820\n\
         PersistentKeepalive = 25\n\
         \n\
         [peer]\n\
         PublicKey={peer_b}\n\
         AllowedIPs = 10.20.0.7/16,\n\
         AllowedIPs = 2001:db8:20::/48\n\
         Endpoint = [2001:db8::1]:51820\n\
         Cipher = AES256GCM\n",
        private = private.to_base64(),
        psk = psk.to_base64(),
    );
    let xdp = format!(
        "[Interface]\n\
         PrivateKey = {}\n\
         ListenPort = 51820\n\
         Attach = eth1\n\
         Attach = eth2\n\
         XdpMode = native\n\
         MetricsAddress = 127.0.0.1:9586\n\
         TestTimerScale = 10\n\
         Table = off\n\
         \n\
         [Peer]\n\
         PublicKey = {peer_a}\n\
         AllowedIPs = 0.0.0.0/0, ::/0\n\
         Endpoint = 198.51.100.7:51820\n",
        private.to_base64()
    );
    let ha = format!(
        "[Interface]\n\
         PrivateKey = {}\n\
         HaMode = builtin\n\
         HaNodeId = 1\n\
         HaKey = {psk}\n\
         HaListen = 10.212.0.2:51900\n\
         HaPeer = 10.212.0.1:51900\n\
         HaVirtualIp = 10.210.0.100/24 dev eth0\n\
         HaVirtualIp = fd10::100/64 dev eth0\n\
         HaTrackInterface = eth1\n\
         \n\
         [Peer]\n\
         PublicKey = {peer_a}\n\
         AllowedIPs = 10.0.0.0/8\n\
         PersistentKeepalive = 25\n\
         EndpointPort = 51820\n\
         Endpoint = gw1.example.com keepalive=off, [2001:db8::7]:443 keepalive=10, 192.0.2.7\n\
         FailoverAfter = 3\n",
        private.to_base64(),
        psk = psk.to_base64(),
    );
    for text in [&minimal, &real_world, &xdp, &ha] {
        Config::parse(text, "seed.conf").expect("seed configs are valid");
    }
    let written = Config::parse(&real_world, "seed.conf")
        .expect("valid")
        .to_wg_quick_string();
    vec![
        ("minimal", minimal.into_bytes()),
        ("real-world", real_world.into_bytes()),
        ("xdp-and-extensions", xdp.into_bytes()),
        ("ha-and-endpoint-settings", ha.into_bytes()),
        ("as-written", written.into_bytes()),
        (
            "missing-key",
            b"[Interface]\nListenPort = 1\n[Peer]\n".to_vec(),
        ),
    ]
}

fn ctl_request_seeds() -> Seeds {
    let key = PrivateKey::from_bytes([0x62; 32]).public_key().to_base64();
    let psk = PresharedKey::from_bytes([0x64; 32]).to_base64();
    let set_peer = Request::SetPeer {
        public_key: key.clone(),
        preshared_key: Some(psk),
        allowed_ips: vec!["10.0.0.2/32".into(), "fd00::/64".into(), "10.1.0.1".into()],
        endpoint: Some("[2001:db8::1]:51820".into()),
        persistent_keepalive: Some(25),
        cipher: Some("aes256gcm".into()),
    };
    vec![
        ("show", encode_line(&Request::Show).into_bytes()),
        ("down", encode_line(&Request::Down).into_bytes()),
        ("set-peer", encode_line(&set_peer).into_bytes()),
        (
            "remove-peer",
            encode_line(&Request::RemovePeer { public_key: key }).into_bytes(),
        ),
        (
            "bad-keepalive",
            b"{\"type\":\"set_peer\",\"public_key\":\"x\",\"persistent_keepalive\":70000}\r\n"
                .to_vec(),
        ),
    ]
}

fn ctl_response_seeds() -> Seeds {
    let snapshot = InterfaceSnapshot {
        name: "wl0".into(),
        public_key: PrivateKey::from_bytes([0x61; 32]).public_key().to_base64(),
        listen_port: Some(51820),
        peers: vec![
            PeerSnapshot {
                public_key: PrivateKey::from_bytes([0x62; 32]).public_key().to_base64(),
                endpoint: Some("198.51.100.7:51820".into()),
                allowed_ips: vec!["10.0.0.2/32".into(), "fd00::2/128".into()],
                latest_handshake_unix_secs: Some(1_699_999_900),
                handshakes: 0,
                rx_bytes: 123_456_789,
                tx_bytes: 42,
                persistent_keepalive_secs: Some(25),
                cipher: "aes256gcm".into(),
                preshared_key: true,
                failover: None,
            },
            PeerSnapshot {
                public_key: PrivateKey::from_bytes([0x63; 32]).public_key().to_base64(),
                endpoint: None,
                allowed_ips: vec![],
                latest_handshake_unix_secs: None,
                handshakes: 0,
                rx_bytes: 0,
                tx_bytes: 0,
                persistent_keepalive_secs: None,
                cipher: "chacha20poly1305".into(),
                preshared_key: false,
                failover: None,
            },
        ],
        workers: vec![WorkerSnapshot {
            id: 0,
            core: Some(1),
            rx_packets: 1000,
            tx_packets: 990,
            drops: vec![("replayed".into(), 3), ("bad tag".into(), 0)],
            counters: vec![("lan_rx_frames".into(), 2)],
        }],
    };
    vec![
        ("show", encode_line(&Response::Show(snapshot)).into_bytes()),
        ("ok", encode_line(&Response::Ok).into_bytes()),
        (
            "error",
            encode_line(&Response::error("invalid public_key: not base64")).into_bytes(),
        ),
    ]
}
