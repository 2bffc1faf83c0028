//! Coalescing of decrypted packets into GSO frames for writing to a TUN queue (GRO done by
//! warpline): the reverse of [`super::gso::segment`], so that bulk TCP and UDP reach the
//! kernel in writes of up to 64 KB instead of one per packet.
//!
//! [`Coalescer`] holds one frame under construction for one flow. A pushed TCP packet
//! joins it when it is the next segment of the same flow: same addresses, ports, TTL,
//! TOS, ACK number, window and TCP options (as Linux's `tcp_gro_receive` requires), the
//! sequence number right after the frame's end, flags only ACK (plus PSH, which ends the
//! frame), a payload no longer than the first segment's (a shorter one ends the frame),
//! and the frame stays within 64 KB. A UDP datagram joins a UDP frame of the same flow
//! (addresses, ports, TTL, TOS) when its payload is no longer than the first's (a shorter
//! one ends the frame), up to 64 datagrams (the kernel's `UDP_MAX_SEGMENTS`), and only when
//! the TUN accepts UDP GSO frames (USO, Linux 6.2+: [`Coalescer::set_udp`]); the kernel
//! splits such a frame back into datagrams before any socket sees it, as it does for
//! wireguard-go's writes. Anything else flushes the frame and is written as it is, so the
//! order of packets is kept. A frame of one packet is written unchanged; a frame of
//! several carries a virtio-net header (`GSO_TCPV4`/`GSO_TCPV6`/`GSO_UDP_L4`, `gso_size` =
//! the first packet's payload, `NEEDS_CSUM` with the pseudo-header sum in the checksum
//! field), which the kernel accepts like a GRO'd packet.
//!
//! IPv4 packets with options or fragments, and IPv6 packets with extension headers, are
//! written as they are.

use super::vnet::{FLAG_NEEDS_CSUM, GsoType, VnetHeader};
use crate::wire::{IpProtocol, checksum, ipv4, ipv6};
use std::net::{Ipv4Addr, Ipv6Addr};

const TCP_SEQ: usize = 4;
const TCP_DATA_OFFSET: usize = 12;
const TCP_FLAGS: usize = 13;
const TCP_CHECKSUM: usize = 16;
const UDP_HEADER_LEN: usize = 8;
const UDP_LENGTH: usize = 4;
const UDP_CHECKSUM: usize = 6;
/// Datagrams one UDP GSO frame may carry (Linux's `UDP_MAX_SEGMENTS`).
const MAX_UDP_SEGMENTS: usize = 64;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const MAX_FRAME_LEN: usize = ipv6::HEADER_LEN + 65_535;

/// The frame under construction.
#[derive(Debug, Clone, Copy)]
struct Frame {
    v6: bool,
    /// UDP datagrams, or TCP segments.
    udp: bool,
    /// IP + TCP (or UDP) header length.
    hdr_len: usize,
    /// IP header length (where TCP starts).
    l4: usize,
    /// Payload bytes of the first segment: the frame's `gso_size`.
    gso_size: usize,
    /// TCP: sequence number after the last byte in the frame.
    next_seq: u32,
    segments: usize,
    /// No more segments may join (PSH seen, or a short segment).
    closed: bool,
}

/// Counters of a [`Coalescer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalescerStats {
    /// Packets pushed.
    pub packets: u64,
    /// Writes emitted.
    pub writes: u64,
    /// Writes that carried a GSO frame of several segments.
    pub gso_writes: u64,
    /// Packets in writes that failed (a failed GSO frame loses all of its packets).
    pub lost: u64,
}

/// Merges consecutive TCP segments, or UDP datagrams, of one flow into GSO frames. Owns one
/// 64 KB buffer, allocated once.
#[derive(Debug)]
pub struct Coalescer {
    buffer: Box<[u8]>,
    len: usize,
    frame: Option<Frame>,
    stats: CoalescerStats,
    /// Whether UDP datagrams are coalesced (the TUN accepts `GSO_UDP_L4`).
    udp: bool,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

/// Facts about a packet that may be coalesced.
struct Candidate {
    v6: bool,
    l4: usize,
    hdr_len: usize,
    payload_len: usize,
    /// TCP: sequence number and flags; `None` for UDP.
    tcp: Option<(u32, u8)>,
}

fn candidate(packet: &[u8], udp: bool) -> Option<Candidate> {
    let wanted =
        |protocol: IpProtocol| protocol == IpProtocol::TCP || (udp && protocol == IpProtocol::UDP);
    let (v6, l4, total_len, protocol) = match packet.first()? >> 4 {
        4 => {
            let ip = ipv4::Packet::new_checked(packet).ok()?;
            if ip.header_len() != ipv4::MIN_HEADER_LEN || ip.is_fragment() || !wanted(ip.protocol())
            {
                return None;
            }
            (
                false,
                ipv4::MIN_HEADER_LEN,
                usize::from(ip.total_len()),
                ip.protocol(),
            )
        }
        6 => {
            let ip = ipv6::Packet::new_checked(packet).ok()?;
            if !wanted(ip.next_header()) {
                return None;
            }
            (true, ipv6::HEADER_LEN, ip.total_len(), ip.next_header())
        }
        _ => return None,
    };
    if protocol == IpProtocol::UDP {
        let hdr_len = l4 + UDP_HEADER_LEN;
        let length = usize::from(u16::from_be_bytes(
            packet
                .get(l4 + UDP_LENGTH..l4 + UDP_LENGTH + 2)?
                .try_into()
                .ok()?,
        ));
        // No payload, or a UDP length that disagrees with the IP length: as it is.
        if hdr_len >= total_len || length != total_len - l4 {
            return None;
        }
        return Some(Candidate {
            v6,
            l4,
            hdr_len,
            payload_len: total_len - hdr_len,
            tcp: None,
        });
    }
    let tcp_len = usize::from(packet.get(l4 + TCP_DATA_OFFSET)? >> 4) * 4;
    let hdr_len = l4 + tcp_len;
    if tcp_len < 20 || hdr_len >= total_len {
        // Too short, or no payload: nothing to coalesce.
        return None;
    }
    let flags = packet[l4 + TCP_FLAGS];
    if flags & !(TCP_ACK | TCP_PSH) != 0 || flags & TCP_ACK == 0 {
        return None;
    }
    Some(Candidate {
        v6,
        l4,
        hdr_len,
        payload_len: total_len - hdr_len,
        tcp: Some((
            u32::from_be_bytes(packet[l4 + TCP_SEQ..l4 + TCP_SEQ + 4].try_into().ok()?),
            flags,
        )),
    })
}

/// Whether two headers agree on everything but lengths, IPv4 ID and checksum, and for TCP
/// the sequence number, flags and checksum (for UDP: the length and checksum).
fn same_flow(a: &[u8], b: &[u8], v6: bool, l4: usize, hdr_len: usize, udp: bool) -> bool {
    let ip_same = if v6 {
        // Version, traffic class, flow label; next header, hop limit, addresses.
        a[0..4] == b[0..4] && a[6..40] == b[6..40]
    } else {
        // Version/IHL, TOS; flags (DF); TTL, protocol; addresses.
        a[0..2] == b[0..2] && a[6..10] == b[6..10] && a[12..20] == b[12..20]
    };
    if udp {
        // Ports.
        return ip_same && a[l4..l4 + 4] == b[l4..l4 + 4];
    }
    ip_same
        // Ports; ACK number, data offset; window, urgent pointer, options.
        && a[l4..l4 + 4] == b[l4..l4 + 4]
        && a[l4 + 8..l4 + 13] == b[l4 + 8..l4 + 13]
        && a[l4 + 14..l4 + 16] == b[l4 + 14..l4 + 16]
        && a[l4 + 18..hdr_len] == b[l4 + 18..hdr_len]
}

impl Coalescer {
    /// A coalescer with an empty frame, for TCP only until [`Coalescer::set_udp`].
    pub fn new() -> Self {
        Self {
            buffer: vec![0u8; MAX_FRAME_LEN].into_boxed_slice(),
            len: 0,
            frame: None,
            stats: CoalescerStats::default(),
            udp: false,
        }
    }

    /// Coalesces UDP datagrams too: only for a TUN that accepts `GSO_UDP_L4` frames
    /// ([`super::TunQueue::accepts_udp_gso`]).
    pub fn set_udp(&mut self, on: bool) {
        self.udp = on;
    }

    /// Its counters.
    pub fn stats(&self) -> CoalescerStats {
        self.stats
    }

    /// Offers one complete IP packet (checksums filled in). `write` is called with each
    /// frame that is ready: a flushed frame, and this packet itself when it cannot be
    /// coalesced. Errors from `write` are returned; the frame it failed on is gone (its
    /// packets counted in [`CoalescerStats::lost`]), and this packet is still taken.
    pub fn push<E>(
        &mut self,
        packet: &[u8],
        mut write: impl FnMut(&VnetHeader, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.stats.packets += 1;
        let Some(new) = candidate(packet, self.udp) else {
            let flushed = self.flush(&mut write);
            self.stats.writes += 1;
            let written = write(&VnetHeader::NONE, packet);
            if written.is_err() {
                self.stats.lost += 1;
            }
            return flushed.and(written);
        };
        let new_udp = new.tcp.is_none();
        if let Some(frame) = &mut self.frame {
            let in_sequence = match new.tcp {
                Some((seq, _)) => !frame.udp && seq == frame.next_seq,
                None => frame.udp && frame.segments < MAX_UDP_SEGMENTS,
            };
            let joins = !frame.closed
                && in_sequence
                && frame.v6 == new.v6
                && frame.hdr_len == new.hdr_len
                && new.payload_len <= frame.gso_size
                && self.len + new.payload_len <= MAX_FRAME_LEN
                && (new.v6 || self.len + new.payload_len <= usize::from(u16::MAX))
                && same_flow(
                    &self.buffer[..frame.hdr_len],
                    &packet[..new.hdr_len],
                    new.v6,
                    new.l4,
                    new.hdr_len,
                    new_udp,
                );
            if joins {
                let payload = &packet[new.hdr_len..new.hdr_len + new.payload_len];
                self.buffer[self.len..self.len + payload.len()].copy_from_slice(payload);
                self.len += payload.len();
                frame.segments += 1;
                let mut push_flag = false;
                if let Some((_, flags)) = new.tcp {
                    frame.next_seq = frame.next_seq.wrapping_add(new.payload_len as u32);
                    push_flag = flags & TCP_PSH != 0;
                    if push_flag {
                        self.buffer[new.l4 + TCP_FLAGS] |= TCP_PSH;
                    }
                }
                frame.closed = push_flag || new.payload_len < frame.gso_size;
                return Ok(());
            }
        }
        // A failed flush loses that frame only: this packet still starts the next one.
        let flushed = self.flush(&mut write);
        let len = new.hdr_len + new.payload_len;
        self.buffer[..len].copy_from_slice(&packet[..len]);
        self.len = len;
        let (seq, flags) = new.tcp.unwrap_or_default();
        self.frame = Some(Frame {
            v6: new.v6,
            udp: new_udp,
            hdr_len: new.hdr_len,
            l4: new.l4,
            gso_size: new.payload_len,
            next_seq: seq.wrapping_add(new.payload_len as u32),
            segments: 1,
            closed: flags & TCP_PSH != 0,
        });
        flushed
    }

    /// Writes the frame under construction, if any. Call at the end of every batch.
    pub fn flush<E>(
        &mut self,
        write: impl FnMut(&VnetHeader, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        let written = self.write_frame(frame, write);
        if written.is_err() {
            self.stats.lost += frame.segments as u64;
        }
        written
    }

    fn write_frame<E>(
        &mut self,
        frame: Frame,
        mut write: impl FnMut(&VnetHeader, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let packet = &mut self.buffer[..self.len];
        self.len = 0;
        self.stats.writes += 1;
        if frame.segments == 1 {
            return write(&VnetHeader::NONE, packet);
        }
        self.stats.gso_writes += 1;
        let total = packet.len();
        let l4_len = total - frame.l4;
        let protocol = if frame.udp {
            // Lengths fit: push kept the frame within the 16-bit length fields.
            let at = frame.l4 + UDP_LENGTH;
            packet[at..at + 2].copy_from_slice(&(l4_len as u16).to_be_bytes());
            IpProtocol::UDP
        } else {
            IpProtocol::TCP
        };
        let pseudo = if frame.v6 {
            let mut ip = ipv6::Packet::new_unchecked(&mut *packet);
            ip.set_payload_len((total - ipv6::HEADER_LEN) as u16);
            let src = Ipv6Addr::from(
                <[u8; 16]>::try_from(&packet[ipv6::SRC_ADDR]).expect("16-byte address"),
            );
            let dst = Ipv6Addr::from(
                <[u8; 16]>::try_from(&packet[ipv6::DST_ADDR]).expect("16-byte address"),
            );
            checksum::pseudo_header_ipv6(src, dst, protocol.0, l4_len as u32)
        } else {
            let mut ip = ipv4::Packet::new_unchecked(&mut *packet);
            ip.set_total_len(total as u16);
            ip.fill_checksum();
            let src = Ipv4Addr::from(
                <[u8; 4]>::try_from(&packet[ipv4::SRC_ADDR]).expect("4-byte address"),
            );
            let dst = Ipv4Addr::from(
                <[u8; 4]>::try_from(&packet[ipv4::DST_ADDR]).expect("4-byte address"),
            );
            checksum::pseudo_header_ipv4(src, dst, protocol.0, l4_len as u16)
        };
        // NEEDS_CSUM: the field holds the (uncomplemented) pseudo-header sum.
        let checksum_at = if frame.udp {
            UDP_CHECKSUM
        } else {
            TCP_CHECKSUM
        };
        let at = frame.l4 + checksum_at;
        packet[at..at + 2].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        let header = VnetHeader {
            flags: FLAG_NEEDS_CSUM,
            gso_type: match (frame.udp, frame.v6) {
                (true, _) => GsoType::UdpL4,
                (false, true) => GsoType::TcpV6,
                (false, false) => GsoType::TcpV4,
            },
            gso_ecn: false,
            hdr_len: frame.hdr_len as u16,
            gso_size: frame.gso_size as u16,
            csum_start: frame.l4 as u16,
            csum_offset: checksum_at as u16,
        };
        write(&header, packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tun::gso;
    use proptest::prelude::*;
    use std::convert::Infallible;

    /// A TCP packet with full checksums: 12 bytes of timestamp options, `flags`.
    fn tcp_packet(v6: bool, seq: u32, payload: &[u8], flags: u8) -> Vec<u8> {
        let tcp_len = 32;
        let mut packet = if v6 {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&((tcp_len + payload.len()) as u16).to_be_bytes());
            h[6] = 6;
            h[7] = 64;
            h[8] = 0xfd;
            h[23] = 1;
            h[24] = 0xfd;
            h[39] = 2;
            h
        } else {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + tcp_len + payload.len()) as u16).to_be_bytes());
            h[6] = 0x40;
            h[8] = 64;
            h[9] = 6;
            h[12..16].copy_from_slice(&[10, 0, 0, 1]);
            h[16..20].copy_from_slice(&[10, 0, 0, 2]);
            h
        };
        let mut tcp = vec![0u8; tcp_len];
        tcp[0..2].copy_from_slice(&443u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&50000u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&99u32.to_be_bytes());
        tcp[12] = 8 << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&1000u16.to_be_bytes());
        tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
        packet.extend_from_slice(&tcp);
        packet.extend_from_slice(payload);
        gso::fill_checksums(&mut packet).unwrap();
        packet
    }

    fn run(coalescer: &mut Coalescer, packets: &[Vec<u8>]) -> Vec<(VnetHeader, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut write = |header: &VnetHeader, frame: &[u8]| -> Result<(), Infallible> {
            frames.push((*header, frame.to_vec()));
            Ok(())
        };
        for packet in packets {
            coalescer.push(packet, &mut write).unwrap();
        }
        coalescer.flush(&mut write).unwrap();
        frames
    }

    /// Splits frames back into packets, as the kernel would.
    fn resegment(frames: &[(VnetHeader, Vec<u8>)]) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        for (header, frame) in frames {
            let mut frame = frame.clone();
            gso::segment(&mut frame, header, |seg| packets.push(seg.to_vec())).unwrap();
        }
        packets
    }

    /// Segmentation numbers IPv4 IDs from the first one; the originals here are all zero.
    fn zero_ipv4_ids(packets: &mut [Vec<u8>]) {
        for packet in packets {
            if packet[0] >> 4 == 4 {
                packet[4..6].fill(0);
                ipv4::Packet::new_unchecked(&mut packet[..]).fill_checksum();
            }
        }
    }

    fn flow(v6: bool, seq: u32, sizes: &[usize], last_flags: u8) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut seq = seq;
        for (i, &size) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..size).map(|b| (b + i) as u8).collect();
            let flags = if i + 1 == sizes.len() {
                last_flags
            } else {
                TCP_ACK
            };
            packets.push(tcp_packet(v6, seq, &payload, flags));
            seq = seq.wrapping_add(size as u32);
        }
        packets
    }

    /// A UDP datagram with full checksums, from port `src_port`.
    fn udp_packet(v6: bool, src_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut packet = tcp_packet(v6, 0, &[], TCP_ACK);
        let l4 = if v6 { 40 } else { 20 };
        packet.truncate(l4);
        let udp_len = (UDP_HEADER_LEN + payload.len()) as u16;
        if v6 {
            packet[6] = 17;
            packet[4..6].copy_from_slice(&udp_len.to_be_bytes());
        } else {
            packet[9] = 17;
            packet[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        }
        packet.extend_from_slice(&src_port.to_be_bytes());
        packet.extend_from_slice(&5201u16.to_be_bytes());
        packet.extend_from_slice(&udp_len.to_be_bytes());
        packet.extend_from_slice(&[0, 0]);
        packet.extend_from_slice(payload);
        gso::fill_checksums(&mut packet).unwrap();
        packet
    }

    fn datagrams(v6: bool, src_port: u16, sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let payload: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8).collect();
                udp_packet(v6, src_port, &payload)
            })
            .collect()
    }

    #[test]
    fn udp_datagrams_of_one_flow_become_one_gso_frame_when_the_tun_takes_them() {
        for v6 in [false, true] {
            let mut sizes = vec![1372; 40];
            sizes.push(600);
            let packets = datagrams(v6, 40000, &sizes);
            // Without USO on the TUN: every datagram as it is.
            let frames = run(&mut Coalescer::new(), &packets);
            assert_eq!(frames.len(), 41);
            assert!(frames.iter().all(|(h, _)| h.gso_type == GsoType::None));
            let mut coalescer = Coalescer::new();
            coalescer.set_udp(true);
            let frames = run(&mut coalescer, &packets);
            assert_eq!(frames.len(), 1);
            let (header, frame) = &frames[0];
            assert_eq!(header.gso_type, GsoType::UdpL4);
            assert_eq!(header.gso_size, 1372);
            assert_eq!(header.csum_offset, 6);
            assert!(header.needs_csum());
            assert_eq!(frame.len(), header.hdr_len as usize + 40 * 1372 + 600);
            let l4 = header.csum_start as usize;
            assert_eq!(
                usize::from(u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]])),
                frame.len() - l4,
                "the UDP length covers the frame"
            );
            let mut again = resegment(&frames);
            zero_ipv4_ids(&mut again);
            assert!(again == packets, "round trip");
            assert!(again.iter().all(|p| gso::verify_checksums(p) == Ok(true)));
        }
    }

    #[test]
    fn udp_frames_end_at_a_new_flow_a_short_datagram_and_64_datagrams() {
        let mut coalescer = Coalescer::new();
        coalescer.set_udp(true);
        // Another source port starts a new frame; a shorter datagram ends one; a longer one
        // after it cannot join.
        let mut packets = datagrams(false, 40000, &[1000; 3]);
        packets.extend(datagrams(false, 40001, &[1000, 1000, 400, 1000]));
        let frames = run(&mut coalescer, &packets);
        let segments: Vec<usize> = frames
            .iter()
            .map(|(h, f)| match h.gso_type {
                GsoType::None => 1,
                _ => (f.len() - h.hdr_len as usize).div_ceil(h.gso_size as usize),
            })
            .collect();
        assert_eq!(segments, [3, 3, 1]);
        assert_eq!(resegment(&frames).len(), packets.len());
        // 65 datagrams: 64 in one frame, the last alone.
        let frames = run(&mut coalescer, &datagrams(false, 40000, &[100; 65]));
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].0.gso_type, GsoType::None);
        // A UDP length that disagrees with the IP length is written as it is.
        let mut odd = datagrams(false, 40000, &[100; 2]);
        odd[1][24..26].copy_from_slice(&50u16.to_be_bytes());
        let frames = run(&mut coalescer, &odd);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].1, odd[1]);
    }

    #[test]
    fn tcp_and_udp_of_the_same_hosts_never_share_a_frame() {
        let mut coalescer = Coalescer::new();
        coalescer.set_udp(true);
        let mut packets = flow(false, 1, &[1000; 2], TCP_ACK);
        packets.extend(datagrams(false, 40000, &[1000; 2]));
        packets.extend(flow(false, 2001, &[1000; 2], TCP_ACK));
        let frames = run(&mut coalescer, &packets);
        let kinds: Vec<GsoType> = frames.iter().map(|(h, _)| h.gso_type).collect();
        assert_eq!(kinds, [GsoType::TcpV4, GsoType::UdpL4, GsoType::TcpV4]);
        let mut again = resegment(&frames);
        zero_ipv4_ids(&mut again);
        assert!(again == packets, "order and content kept");
    }

    #[test]
    fn consecutive_segments_become_one_gso_frame() {
        for v6 in [false, true] {
            let packets = flow(v6, u32::MAX - 100, &[1000; 40], TCP_ACK | TCP_PSH);
            let mut coalescer = Coalescer::new();
            let frames = run(&mut coalescer, &packets);
            assert_eq!(frames.len(), 1);
            let (header, frame) = &frames[0];
            assert_eq!(
                header.gso_type,
                if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 }
            );
            assert_eq!(header.gso_size, 1000);
            assert!(header.needs_csum());
            assert_eq!(frame.len(), header.hdr_len as usize + 40_000);
            assert_eq!(
                coalescer.stats(),
                CoalescerStats {
                    packets: 40,
                    writes: 1,
                    gso_writes: 1,
                    lost: 0,
                }
            );
            // The kernel's view: the same packets again.
            let mut again = resegment(&frames);
            zero_ipv4_ids(&mut again);
            assert!(again == packets, "round trip");
        }
    }

    #[test]
    fn what_cannot_join_is_written_in_order() {
        let mut packets = flow(false, 1, &[500, 500, 200, 500], TCP_ACK);
        // 200 closes the frame; the 500 after it starts a new one.
        packets.push(tcp_packet(false, 5000, b"gap", TCP_ACK)); // not contiguous
        packets.push(tcp_packet(false, 5003, b"", TCP_ACK)); // pure ACK
        packets.push(tcp_packet(true, 1, b"v6", TCP_ACK)); // other flow
        packets.push(tcp_packet(false, 5003, b"syn", 0x02)); // SYN
        let mut coalescer = Coalescer::new();
        let frames = run(&mut coalescer, &packets);
        let gso: Vec<_> = frames
            .iter()
            .map(|(header, _)| header.gso_type != GsoType::None)
            .collect();
        assert_eq!(gso, [true, false, false, false, false, false]);
        assert_eq!(frames[0].1.len(), 52 + 1200);
        let mut again = resegment(&frames);
        zero_ipv4_ids(&mut again);
        assert!(again == packets, "round trip");
    }

    #[test]
    fn failed_writes_count_every_packet_they_carried_and_lose_nothing_else() {
        // Frames: 3 segments (closed by the short one), then the SYN alone, then 2 segments.
        let mut packets = flow(false, 1, &[500, 500, 200], TCP_ACK);
        packets.push(tcp_packet(false, 9000, b"syn", 0x02));
        packets.extend(flow(false, 20_000, &[300, 300], TCP_ACK));
        let mut coalescer = Coalescer::new();
        let mut calls = 0;
        let mut written = Vec::new();
        // The first write (the 3-segment frame) and the second (the SYN) fail.
        let mut write = |_: &VnetHeader, frame: &[u8]| {
            calls += 1;
            if calls <= 2 {
                return Err("queue full");
            }
            written.push(frame.len());
            Ok(())
        };
        let results: Vec<bool> = packets
            .iter()
            .map(|packet| coalescer.push(packet, &mut write).is_ok())
            .collect();
        assert!(coalescer.flush(&mut write).is_ok());
        // The SYN's push reports both failures; the packets after it are still taken.
        assert_eq!(results, [true, true, true, false, true, true]);
        assert_eq!(coalescer.stats().lost, 4);
        assert_eq!(written, [52 + 600]);
    }

    #[test]
    fn frames_stop_below_64_kb() {
        let packets = flow(false, 7, &[1400; 60], TCP_ACK);
        let frames = run(&mut Coalescer::new(), &packets);
        assert!(frames.len() >= 2);
        assert!(frames.iter().all(|(_, frame)| frame.len() <= 65_535));
        assert_eq!(resegment(&frames).len(), 60);
    }

    proptest! {
        #[test]
        fn coalesce_then_segment_round_trips(
            sizes in prop::collection::vec(1usize..1500, 1..60),
            v6 in any::<bool>(),
            seq in any::<u32>(),
            psh in any::<bool>(),
        ) {
            let last = if psh { TCP_ACK | TCP_PSH } else { TCP_ACK };
            let packets = flow(v6, seq, &sizes, last);
            let frames = run(&mut Coalescer::new(), &packets);
            let mut again = resegment(&frames);
            for packet in &again {
                prop_assert_eq!(gso::verify_checksums(packet), Ok(true));
            }
            zero_ipv4_ids(&mut again);
            prop_assert!(again == packets, "round trip");
        }

        #[test]
        fn arbitrary_packets_never_panic(
            packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..8),
            udp in any::<bool>(),
        ) {
            let mut written = 0;
            let mut coalescer = Coalescer::new();
            coalescer.set_udp(udp);
            for packet in &packets {
                coalescer
                    .push(packet, |_, _| -> Result<(), Infallible> {
                        written += 1;
                        Ok(())
                    })
                    .unwrap();
            }
            coalescer
                .flush(|_, _| -> Result<(), Infallible> {
                    written += 1;
                    Ok(())
                })
                .unwrap();
            prop_assert!(written <= packets.len());
        }
    }
}
