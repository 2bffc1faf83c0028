//! A fixed data-plane world for the pipeline targets: two peers with known keys, their
//! sessions and allowed IPs, and a builder for the authenticated frames a peer would send.
//!
//! The fuzzer cannot forge an AEAD tag, so to reach what lies behind authentication (replay
//! window, inner IP parsing, allowed-IPs source check) the harness seals the fuzzer's bytes
//! with a key it knows, exactly as the peer would.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use warpline_dataplane::aead::{PacketKey, Suite};
use warpline_dataplane::allowed_ips::IpPrefix;
use warpline_dataplane::session::SessionParams;
use warpline_dataplane::sessions::{Endpoint, PeerId, SharedSession, Snapshot};
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::ethernet::{self, EtherType, MacAddr};
use warpline_dataplane::wire::udp::{
    IPV4_UDP_HEADERS_LEN, IPV6_UDP_HEADERS_LEN, Ipv4UdpHeader, Ipv6UdpHeader, write_ipv4_udp,
    write_ipv6_udp,
};
use warpline_dataplane::wire::wireguard::{TAG_LEN, TRANSPORT_HEADER_LEN, write_transport_header};

/// Our listen port.
pub const LISTEN_PORT: u16 = 51820;
/// Our MAC address.
pub const LOCAL_MAC: MacAddr = [0x02, 0, 0, 0, 0, 0x01];
/// Our outer IPv4 address.
pub const LOCAL_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Our outer IPv6 address.
pub const LOCAL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// One of the two sessions the lab's snapshot can receive on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LabSession {
    /// The receiver index peers put in transport headers.
    pub index: u32,
    /// Whose session it is.
    pub peer: PeerId,
    /// The AEAD suite.
    pub suite: Suite,
    /// The key the peer seals with (our receive key).
    pub key: [u8; 32],
    /// When the handshake completed: the two sessions expire at different times.
    pub established: Time,
    /// Inner source prefixes allowed from this peer.
    pub allowed: [(IpAddr, u8); 2],
}

/// The lab's sessions: peer 0 on ChaCha20-Poly1305, peer 1 on AES-256-GCM.
pub const SESSIONS: [LabSession; 2] = [
    LabSession {
        index: 0x0100_0001,
        peer: PeerId(0),
        suite: Suite::ChaCha20Poly1305,
        key: [0x11; 32],
        established: Time::from_secs(0),
        allowed: [
            (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 24),
            (IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0)), 64),
        ],
    },
    LabSession {
        index: 0x0200_0002,
        peer: PeerId(1),
        suite: Suite::Aes256Gcm,
        key: [0x22; 32],
        established: Time::from_secs(60),
        allowed: [
            (IpAddr::V4(Ipv4Addr::new(10, 0, 1, 0)), 24),
            (IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0)), 64),
        ],
    },
];

/// The endpoint the snapshot knows for peer 0 (peer 1 has none yet: its first packet is news).
pub const PEER0_ENDPOINT: Endpoint = Endpoint {
    addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 51820)),
    mac: [0x02, 0, 0, 0, 0, 0x07],
    local: None,
};

/// A receiving snapshot with both sessions, their allowed IPs, and peer 0's endpoint.
pub fn receiver_snapshot() -> Snapshot {
    let mut snapshot = Snapshot::new();
    for lab in &SESSIONS {
        let params = SessionParams {
            local_index: lab.index,
            remote_index: lab.index ^ 0xffff_0000,
            suite: lab.suite,
            we_initiated: false,
            established: lab.established,
        };
        // SharedSession::new zeroizes the key copies it is handed.
        let (mut send, mut recv) = ([0x5a; 32], lab.key);
        let session = SharedSession::new(&params, lab.peer, &mut send, &mut recv, 0);
        snapshot.install(Arc::new(session));
        for (addr, len) in lab.allowed {
            let prefix = IpPrefix::new(addr, len).expect("valid lab prefix");
            snapshot.routes_mut().insert(prefix, lab.peer);
        }
    }
    snapshot.peer_mut(PeerId(0)).endpoint = Some(PEER0_ENDPOINT);
    snapshot
}

/// The key a peer of `session` seals with.
pub fn sender_key(session: &LabSession) -> PacketKey {
    PacketKey::new(session.suite, &session.key)
}

/// What a sealed frame looks like on the wire.
#[derive(Debug, Clone)]
pub struct FrameSpec<'a> {
    /// An 802.1Q tag, if any.
    pub vlan_tci: Option<u16>,
    /// The sender's outer address; its family picks outer IPv4 or IPv6.
    pub source: SocketAddr,
    /// The sender's MAC address.
    pub source_mac: MacAddr,
    /// The transport header's receiver index.
    pub receiver_index: u32,
    /// The transport header's counter (the nonce).
    pub counter: u64,
    /// The inner packet (or anything else) to seal.
    pub plaintext: &'a [u8],
    /// Zero-pad the plaintext to a multiple of 16 first, as senders do.
    pub pad: bool,
}

/// Builds an Ethernet frame carrying `spec`'s transport message sealed with `key`. Returns the
/// frame and the offset of the plaintext (after the transport header) within it.
pub fn build_frame(spec: &FrameSpec<'_>, key: &PacketKey) -> (Vec<u8>, usize) {
    let eth_len = if spec.vlan_tci.is_some() {
        ethernet::TAGGED_HEADER_LEN
    } else {
        ethernet::HEADER_LEN
    };
    let ip_udp_len = if spec.source.is_ipv6() {
        IPV6_UDP_HEADERS_LEN
    } else {
        IPV4_UDP_HEADERS_LEN
    };
    let message_start = eth_len + ip_udp_len;
    let body_start = message_start + TRANSPORT_HEADER_LEN;
    let plain_len = if spec.pad {
        spec.plaintext.len().next_multiple_of(16)
    } else {
        spec.plaintext.len()
    };
    let mut frame = vec![0u8; body_start + plain_len + TAG_LEN];
    frame[body_start..body_start + spec.plaintext.len()].copy_from_slice(spec.plaintext);
    key.seal_in_place(spec.counter, &[], &mut frame[body_start..], plain_len)
        .expect("frame sized for the tag");
    write_transport_header(
        &mut frame[message_start..],
        spec.receiver_index,
        spec.counter,
    )
    .expect("room for the header");
    let message_len = TRANSPORT_HEADER_LEN + plain_len + TAG_LEN;
    let ethertype = match spec.source {
        SocketAddr::V6(source) => {
            let header = Ipv6UdpHeader {
                src: source,
                dst: SocketAddrV6::new(LOCAL_V6, LISTEN_PORT, 0, 0),
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            };
            write_ipv6_udp(&mut frame[eth_len..], &header, message_len)
                .expect("lab frames stay below 64 KiB");
            EtherType::IPV6
        }
        SocketAddr::V4(source) => {
            let header = Ipv4UdpHeader {
                src: source,
                dst: SocketAddrV4::new(LOCAL_V4, LISTEN_PORT),
                ttl: 64,
                dscp_ecn: 0,
                ident: spec.counter as u16,
            };
            write_ipv4_udp(&mut frame[eth_len..], &header, message_len)
                .expect("lab frames stay below 64 KiB");
            EtherType::IPV4
        }
    };
    ethernet::write_header(
        &mut frame,
        LOCAL_MAC,
        spec.source_mac,
        spec.vlan_tci,
        ethertype,
    )
    .expect("room for the header");
    (frame, body_start)
}
