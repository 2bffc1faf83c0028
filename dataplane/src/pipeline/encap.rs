//! Inner IP packets → WireGuard frames for the wire.

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::{
    DropCounters, DropReason, Events, FrameRef, HandshakeReason, L2Info, PeerId, Snapshot, Verdict,
};
use crate::aead::TAG_LEN;
use crate::sessions::SharedSession;
use crate::time::Time;
use crate::wire::ethernet::{self, EtherType};
use crate::wire::udp::{
    IPV4_UDP_HEADERS_LEN, IPV6_UDP_HEADERS_LEN, Ipv4UdpHeader, Ipv6UdpHeader, write_ipv4_udp,
    write_ipv6_udp,
};
use crate::wire::wireguard::{TRANSPORT_HEADER_LEN, padded_len, write_transport_header};
use crate::wire::{ipv4, ipv6};

/// Encapsulates a batch of inner IP packets in place.
///
/// Each frame's packet (`buf[offset..offset + len]`) is an IPv4 or IPv6 packet with at least
/// [`HEADROOM`](super::HEADROOM) bytes free before it (what the outer headers need is enough)
/// and [`TAILROOM`](super::TAILROOM) after it. The destination picks the peer by longest-prefix
/// match; the packet is zero-padded to a multiple of 16 (never past `l2.mtu`), sealed with the
/// peer's current session, and given WireGuard, UDP, IP (the endpoint's family, full
/// checksums) and Ethernet headers. Peers without a usable session are reported in `events`
/// so the control plane starts a handshake.
///
/// `verdicts` must be at least as long as `frames`; frames beyond it are not processed.
pub fn encap_batch(
    now: Time,
    snapshot: &Snapshot,
    frames: &mut [FrameRef<'_>],
    verdicts: &mut [Verdict],
    counters: &mut DropCounters,
    events: &mut Events,
    l2: &L2Info,
) {
    // Bulk traffic sends runs of packets to one destination: remember the last route, and
    // take that session's counters a block at a time.
    let mut last_route = None;
    let mut block = None;
    let count = frames.len().min(verdicts.len());
    for (i, (frame, verdict)) in frames.iter_mut().zip(verdicts.iter_mut()).enumerate() {
        let mut batch = BatchState {
            last_route: &mut last_route,
            block: &mut block,
            remaining: count - i,
        };
        let v =
            encap_one(now, snapshot, frame, events, l2, &mut batch).unwrap_or_else(Verdict::Drop);
        counters.count(v);
        *verdict = v;
    }
}

/// Send counters reserved for one session within the current batch.
///
/// Workers sealing for the same peer (a site-to-site tunnel whose inner flows RSS spread
/// over the LAN queues) would each take every counter from the session's one atomic, bouncing
/// its cache line between cores per packet. A worker reserves up to [`COUNTER_BLOCK`] at once
/// instead and hands them out locally. The block lives for one batch only, so the counters
/// of all workers in flight stay within (workers x block) of each other, far inside the
/// receiver's 8192-counter replay window; counters of a block left unused are never sent,
/// which a receiver does not mind.
struct CounterBlock {
    /// The session's receiver index: unique among the sessions of one snapshot.
    session: u32,
    next: u64,
    end: u64,
}

/// Counters a worker reserves at most at once.
pub const COUNTER_BLOCK: u64 = 16;

/// What one frame's encapsulation shares with the rest of its batch.
struct BatchState<'a> {
    last_route: &'a mut Option<(IpAddr, PeerId)>,
    block: &'a mut Option<CounterBlock>,
    /// Frames left in the batch, this one included: no block is larger.
    remaining: usize,
}

/// The next send counter of `session` from the batch's block, reserving a new block when the
/// block is another session's or used up.
#[inline]
fn take_counter(session: &SharedSession, batch: &mut BatchState<'_>) -> Option<u64> {
    if let Some(block) = batch.block
        && block.session == session.local_index()
        && block.next < block.end
    {
        let counter = block.next;
        block.next += 1;
        return Some(counter);
    }
    let want = (batch.remaining as u64).clamp(1, COUNTER_BLOCK);
    let range = session.take_send_counters(want)?;
    *batch.block = Some(CounterBlock {
        session: session.local_index(),
        next: range.start + 1,
        end: range.end,
    });
    Some(range.start)
}

/// The inner packet's destination, length (trailing bytes after it ignored) and ECN bits.
fn inner_destination(packet: &[u8]) -> Result<(IpAddr, usize, u8), DropReason> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = ipv4::Packet::new_checked(packet).map_err(|_| DropReason::InnerMalformed)?;
            Ok((ip.dst_addr().into(), usize::from(ip.total_len()), ip.ecn()))
        }
        Some(6) => {
            let ip = ipv6::Packet::new_checked(packet).map_err(|_| DropReason::InnerMalformed)?;
            Ok((
                ip.dst_addr().into(),
                ip.total_len(),
                ip.traffic_class() & 0b11,
            ))
        }
        _ => Err(DropReason::NotIp),
    }
}

#[inline]
fn encap_one(
    now: Time,
    snapshot: &Snapshot,
    frame: &mut FrameRef<'_>,
    events: &mut Events,
    l2: &L2Info,
    batch: &mut BatchState<'_>,
) -> Result<Verdict, DropReason> {
    let start = frame.offset;
    let end = start.checked_add(frame.len).ok_or(DropReason::Malformed)?;
    let packet = frame.buf.get(start..end).ok_or(DropReason::Malformed)?;
    let (destination, inner_len, ecn) = inner_destination(packet)?;

    let peer_id = match *batch.last_route {
        Some((cached, peer)) if cached == destination => peer,
        _ => {
            let peer = snapshot
                .routes()
                .lookup(destination)
                .ok_or(DropReason::NoRoute)?;
            *batch.last_route = Some((destination, peer));
            peer
        }
    };
    let peer = snapshot.peer(peer_id).ok_or(DropReason::NoRoute)?;
    let Some(session) = peer.current.as_deref() else {
        events.handshake_needed(peer_id, HandshakeReason::NoSession);
        return Err(DropReason::NoSession);
    };
    if session.is_expired(now) {
        events.handshake_needed(peer_id, HandshakeReason::Expired);
        return Err(DropReason::Expired);
    }
    let endpoint = peer.endpoint.ok_or(DropReason::NoEndpoint)?;
    if inner_len > l2.mtu {
        return Err(DropReason::TooBig);
    }

    let eth_len = if l2.vlan_tci.is_some() {
        ethernet::TAGGED_HEADER_LEN
    } else {
        ethernet::HEADER_LEN
    };
    // Resolve the outer family before taking a counter: a packet we cannot send must not
    // use one up.
    // From the address the peer sends to (a VIP) when known, else the NIC's.
    let (ip_udp_len, local_v4, local_v6) = match (endpoint.addr, endpoint.local) {
        (SocketAddr::V4(_), Some(std::net::IpAddr::V4(local))) => {
            (IPV4_UDP_HEADERS_LEN, local, std::net::Ipv6Addr::UNSPECIFIED)
        }
        (SocketAddr::V4(_), _) => (
            IPV4_UDP_HEADERS_LEN,
            l2.local_v4.ok_or(DropReason::NoLocalAddress)?,
            std::net::Ipv6Addr::UNSPECIFIED,
        ),
        (SocketAddr::V6(_), Some(std::net::IpAddr::V6(local))) => {
            (IPV6_UDP_HEADERS_LEN, std::net::Ipv4Addr::UNSPECIFIED, local)
        }
        (SocketAddr::V6(_), _) => (
            IPV6_UDP_HEADERS_LEN,
            std::net::Ipv4Addr::UNSPECIFIED,
            l2.local_v6.ok_or(DropReason::NoLocalAddress)?,
        ),
    };
    let headers = eth_len + ip_udp_len + TRANSPORT_HEADER_LEN;
    let padded = padded_len(inner_len, l2.mtu);
    let frame_start = start.checked_sub(headers).ok_or(DropReason::NoRoom)?;
    let sealed_end = start + padded + TAG_LEN;
    if sealed_end > frame.buf.len() {
        return Err(DropReason::NoRoom);
    }
    let buf = &mut frame.buf[frame_start..sealed_end];
    let message_start = eth_len + ip_udp_len;

    let Some(counter) = take_counter(session, batch) else {
        events.handshake_needed(peer_id, HandshakeReason::Expired);
        return Err(DropReason::CounterExhausted);
    };
    if session.wants_rekey(now, counter) {
        events.handshake_needed(peer_id, HandshakeReason::Rekey);
    }

    let body = &mut buf[headers..];
    body[inner_len..padded].fill(0);
    session
        .send_key()
        .seal_in_place(counter, &[], body, padded)
        .map_err(|_| DropReason::NoRoom)?;
    write_transport_header(&mut buf[message_start..], session.remote_index(), counter)
        .map_err(|_| DropReason::NoRoom)?;
    let message_len = TRANSPORT_HEADER_LEN + padded + TAG_LEN;
    session.count_sent(message_len);

    let ip_buf = &mut buf[eth_len..];
    let ethertype = match endpoint.addr {
        SocketAddr::V4(dst) => {
            let header = Ipv4UdpHeader {
                src: SocketAddrV4::new(local_v4, l2.port),
                dst,
                ttl: l2.ttl,
                dscp_ecn: ecn,
                // Unique per packet of this session; fragments of different packets from
                // one session never share an identification within its wrap.
                ident: counter as u16,
            };
            write_ipv4_udp(ip_buf, &header, message_len).map_err(|_| DropReason::TooBig)?;
            EtherType::IPV4
        }
        SocketAddr::V6(dst) => {
            let header = Ipv6UdpHeader {
                src: SocketAddrV6::new(local_v6, l2.port, 0, 0),
                dst,
                hop_limit: l2.ttl,
                traffic_class: ecn,
                flow_label: 0,
            };
            write_ipv6_udp(ip_buf, &header, message_len).map_err(|_| DropReason::TooBig)?;
            EtherType::IPV6
        }
    };
    ethernet::write_header(buf, endpoint.mac, l2.src_mac, l2.vlan_tci, ethertype)
        .map_err(|_| DropReason::NoRoom)?;
    Ok(Verdict::ToOuter {
        offset: frame_start,
        len: headers + padded + TAG_LEN,
    })
}
