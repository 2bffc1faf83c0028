//! Received WireGuard frames → inner IP packets.

use std::net::{IpAddr, SocketAddr};

use super::{DropCounters, DropReason, EndpointSeen, Events, FrameRef, PeerId, Snapshot, Verdict};
use crate::replay::ReplayError;
use crate::sessions::SharedSession;
use crate::time::Time;
use crate::wire::ethernet::{self, EtherType, MacAddr};
use crate::wire::wireguard::{self, MessageKind, TRANSPORT_HEADER_LEN};
use crate::wire::{IpProtocol, ipv4, ipv6, udp};

/// Decapsulates a batch of received frames in place.
///
/// Each frame holds Ethernet (with at most one VLAN tag), IPv4 or IPv6, UDP and a WireGuard
/// message. Transport data is authenticated and decrypted where it lies: the verdict points
/// at the inner packet with its padding removed, after the replay window and the peer's
/// allowed IPs accepted it. Anything that is not transport data goes [`Verdict::ToControl`];
/// everything else is dropped with a reason. Authenticated packets from a new outer address
/// are reported in `events` for the control plane.
///
/// `verdicts` must be at least as long as `frames` (extra entries are left alone); frames
/// beyond `verdicts.len()` are not processed.
pub fn decap_batch(
    now: Time,
    snapshot: &Snapshot,
    frames: &mut [FrameRef<'_>],
    verdicts: &mut [Verdict],
    counters: &mut DropCounters,
    events: &mut Events,
) {
    // Runs of packets share a session and an inner source: remember the last of each (the
    // snapshot is immutable, so a cached answer stays right for the whole batch).
    let mut cache = BatchCache::default();
    for (frame, verdict) in frames.iter_mut().zip(verdicts.iter_mut()) {
        let v = decap_one(now, snapshot, frame, events, &mut cache).unwrap_or_else(Verdict::Drop);
        counters.count(v);
        *verdict = v;
    }
}

#[derive(Default)]
struct BatchCache<'s> {
    session: Option<(u32, &'s SharedSession)>,
    source: Option<(IpAddr, Option<PeerId>)>,
}

/// Where the WireGuard message sits in the frame buffer, and who sent it.
struct Outer {
    message_start: usize,
    message_len: usize,
    source: SocketAddr,
    source_mac: MacAddr,
    destination: IpAddr,
}

enum Parsed {
    Transport(Outer),
    Control,
}

fn parse_outer(packet: &[u8]) -> Result<Parsed, DropReason> {
    let eth = ethernet::Frame::new_checked(packet).map_err(|_| DropReason::Malformed)?;
    let l3_start = eth.header_len();
    let source_mac = eth.src_addr();
    let (ip, destination, udp_start, ip_end): (IpAddr, IpAddr, usize, usize) = match eth.ethertype()
    {
        EtherType::IPV4 => {
            let ip = ipv4::Packet::new_checked(eth.payload()).map_err(|_| DropReason::Malformed)?;
            if ip.protocol() != IpProtocol::UDP || ip.is_fragment() {
                return Ok(Parsed::Control);
            }
            if !ip.verify_checksum() {
                return Err(DropReason::Malformed);
            }
            (
                ip.src_addr().into(),
                ip.dst_addr().into(),
                l3_start + ip.header_len(),
                l3_start + usize::from(ip.total_len()),
            )
        }
        EtherType::IPV6 => {
            let ip = ipv6::Packet::new_checked(eth.payload()).map_err(|_| DropReason::Malformed)?;
            if ip.next_header() != IpProtocol::UDP {
                // Extension headers (fragments included) are the kernel's business.
                return Ok(Parsed::Control);
            }
            (
                ip.src_addr().into(),
                ip.dst_addr().into(),
                l3_start + ipv6::HEADER_LEN,
                l3_start + ip.total_len(),
            )
        }
        _ => return Ok(Parsed::Control),
    };
    // The UDP checksum is not verified: the AEAD tag authenticates the payload, and the XDP
    // program / NIC have seen the datagram already. Ports are only used to learn endpoints,
    // and only from authenticated packets.
    let datagram =
        udp::Packet::new_checked(&packet[udp_start..ip_end]).map_err(|_| DropReason::Malformed)?;
    let message = datagram.payload();
    match wireguard::classify(message) {
        Ok(MessageKind::Transport) => Ok(Parsed::Transport(Outer {
            message_start: udp_start + udp::HEADER_LEN,
            message_len: message.len(),
            source: SocketAddr::new(ip, datagram.src_port()),
            source_mac,
            destination,
        })),
        Ok(_) => Ok(Parsed::Control),
        Err(_) => Err(DropReason::Malformed),
    }
}

fn replay_reason(error: ReplayError) -> DropReason {
    match error {
        ReplayError::Replayed => DropReason::Replayed,
        ReplayError::TooOld => DropReason::TooOld,
        ReplayError::LimitReached => DropReason::CounterExhausted,
    }
}

#[inline]
fn decap_one<'s>(
    now: Time,
    snapshot: &'s Snapshot,
    frame: &mut FrameRef<'_>,
    events: &mut Events,
    cache: &mut BatchCache<'s>,
) -> Result<Verdict, DropReason> {
    let start = frame.offset;
    let end = start.checked_add(frame.len).ok_or(DropReason::Malformed)?;
    let packet = frame.buf.get_mut(start..end).ok_or(DropReason::Malformed)?;
    let outer = match parse_outer(packet)? {
        Parsed::Transport(outer) => outer,
        Parsed::Control => return Ok(Verdict::ToControl),
    };
    let message = &mut packet[outer.message_start..outer.message_start + outer.message_len];
    let transport =
        wireguard::Transport::new_checked(&*message).map_err(|_| DropReason::Malformed)?;
    let (index, counter) = (transport.receiver_index(), transport.counter());

    let session: &SharedSession = match cache.session {
        Some((cached, session)) if cached == index => session,
        _ => {
            let Some(session) = snapshot.session(index) else {
                events.unknown_index(index);
                return Err(DropReason::UnknownIndex);
            };
            cache.session = Some((index, session));
            session
        }
    };
    if session.is_expired(now) {
        return Err(DropReason::Expired);
    }
    session.replay().check(counter).map_err(replay_reason)?;
    let plain_len = session
        .recv_key()
        .open_in_place(counter, &[], &mut message[TRANSPORT_HEADER_LEN..])
        .map_err(|_| DropReason::BadTag)?;
    session.replay().accept(counter).map_err(replay_reason)?;
    session.count_received(outer.message_len, plain_len == 0);

    let peer = session.peer();
    note_endpoint(snapshot, peer, &outer, events);
    if plain_len == 0 {
        return Ok(Verdict::Consumed);
    }

    let plain = &message[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + plain_len];
    let (source, inner_len) = inner_source(plain)?;
    let allowed = match cache.source {
        Some((cached, allowed)) if cached == source => allowed,
        _ => {
            let allowed = snapshot.routes().lookup(source);
            cache.source = Some((source, allowed));
            allowed
        }
    };
    if allowed != Some(peer) {
        return Err(DropReason::SourceNotAllowed);
    }
    Ok(Verdict::ToInner {
        offset: start + outer.message_start + TRANSPORT_HEADER_LEN,
        len: inner_len,
        peer,
    })
}

/// The inner packet's source address and its real length (padding excluded).
fn inner_source(plain: &[u8]) -> Result<(IpAddr, usize), DropReason> {
    match plain[0] >> 4 {
        4 => {
            let ip = ipv4::Packet::new_checked(plain).map_err(|_| DropReason::InnerMalformed)?;
            Ok((ip.src_addr().into(), usize::from(ip.total_len())))
        }
        6 => {
            let ip = ipv6::Packet::new_checked(plain).map_err(|_| DropReason::InnerMalformed)?;
            Ok((ip.src_addr().into(), ip.total_len()))
        }
        _ => Err(DropReason::NotIp),
    }
}

#[inline]
fn note_endpoint(snapshot: &Snapshot, peer: PeerId, outer: &Outer, events: &mut Events) {
    let known = snapshot.peer(peer).and_then(|p| p.endpoint);
    let moved = known.is_none_or(|e| {
        e.addr != outer.source || e.mac != outer.source_mac || e.local != Some(outer.destination)
    });
    if moved {
        events.endpoint_seen(EndpointSeen {
            peer,
            addr: outer.source,
            mac: outer.source_mac,
            local: outer.destination,
        });
    }
}
