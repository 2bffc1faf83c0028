//! Coalescing of TCP segments into GSO frames for writing to a TUN queue (GRO done by
//! warpline): the reverse of [`super::gso::segment`], so that decrypted bulk TCP reaches
//! the kernel in writes of up to 64 KB instead of one per packet.
//!
//! [`TcpCoalescer`] holds one frame under construction for one flow. A pushed packet
//! joins it when it is the next segment of the same flow: same addresses, ports, TTL,
//! TOS, ACK number, window and TCP options (as Linux's `tcp_gro_receive` requires), the
//! sequence number right after the frame's end, flags only ACK (plus PSH, which ends the
//! frame), a payload no longer than the first segment's (a shorter one ends the frame),
//! and the frame stays within 64 KB. Anything else flushes the frame and is written as it
//! is, so the order of packets is kept. A frame of one segment is written unchanged;
//! a frame of several carries a virtio-net header (`GSO_TCPV4`/`GSO_TCPV6`, `gso_size` =
//! the first segment's payload, `NEEDS_CSUM` with the pseudo-header sum in the TCP
//! checksum field), which the kernel accepts like a GRO'd packet.
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
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const MAX_FRAME_LEN: usize = ipv6::HEADER_LEN + 65_535;

/// The frame under construction.
#[derive(Debug, Clone, Copy)]
struct Frame {
    v6: bool,
    /// IP + TCP header length.
    hdr_len: usize,
    /// IP header length (where TCP starts).
    l4: usize,
    /// Payload bytes of the first segment: the frame's `gso_size`.
    gso_size: usize,
    /// Sequence number after the last byte in the frame.
    next_seq: u32,
    segments: usize,
    /// No more segments may join (PSH seen, or a short segment).
    closed: bool,
}

/// Counters of a [`TcpCoalescer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalescerStats {
    /// Packets pushed.
    pub packets: u64,
    /// Writes emitted.
    pub writes: u64,
    /// Writes that carried a GSO frame of several segments.
    pub gso_writes: u64,
}

/// Merges consecutive TCP segments of one flow into GSO frames. Owns one 64 KB buffer,
/// allocated once.
#[derive(Debug)]
pub struct TcpCoalescer {
    buffer: Box<[u8]>,
    len: usize,
    frame: Option<Frame>,
    stats: CoalescerStats,
}

impl Default for TcpCoalescer {
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
    seq: u32,
    flags: u8,
}

fn candidate(packet: &[u8]) -> Option<Candidate> {
    let (v6, l4, total_len) = match packet.first()? >> 4 {
        4 => {
            let ip = ipv4::Packet::new_checked(packet).ok()?;
            if ip.header_len() != ipv4::MIN_HEADER_LEN
                || ip.is_fragment()
                || ip.protocol() != IpProtocol::TCP
            {
                return None;
            }
            (false, ipv4::MIN_HEADER_LEN, usize::from(ip.total_len()))
        }
        6 => {
            let ip = ipv6::Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::TCP {
                return None;
            }
            (true, ipv6::HEADER_LEN, ip.total_len())
        }
        _ => return None,
    };
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
        seq: u32::from_be_bytes(packet[l4 + TCP_SEQ..l4 + TCP_SEQ + 4].try_into().ok()?),
        flags,
    })
}

/// Whether two headers agree on everything but lengths, IPv4 ID and checksum, TCP
/// sequence number, flags and checksum.
fn same_flow(a: &[u8], b: &[u8], v6: bool, l4: usize, hdr_len: usize) -> bool {
    let ip_same = if v6 {
        // Version, traffic class, flow label; next header, hop limit, addresses.
        a[0..4] == b[0..4] && a[6..40] == b[6..40]
    } else {
        // Version/IHL, TOS; flags (DF); TTL, protocol; addresses.
        a[0..2] == b[0..2] && a[6..10] == b[6..10] && a[12..20] == b[12..20]
    };
    ip_same
        // Ports; ACK number, data offset; window, urgent pointer, options.
        && a[l4..l4 + 4] == b[l4..l4 + 4]
        && a[l4 + 8..l4 + 13] == b[l4 + 8..l4 + 13]
        && a[l4 + 14..l4 + 16] == b[l4 + 14..l4 + 16]
        && a[l4 + 18..hdr_len] == b[l4 + 18..hdr_len]
}

impl TcpCoalescer {
    /// A coalescer with an empty frame.
    pub fn new() -> Self {
        Self {
            buffer: vec![0u8; MAX_FRAME_LEN].into_boxed_slice(),
            len: 0,
            frame: None,
            stats: CoalescerStats::default(),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> CoalescerStats {
        self.stats
    }

    /// Offers one complete IP packet (checksums filled in). `write` is called with each
    /// frame that is ready: a flushed frame, and this packet itself when it cannot be
    /// coalesced. Errors from `write` are returned; the frame it failed on is gone.
    pub fn push<E>(
        &mut self,
        packet: &[u8],
        mut write: impl FnMut(&VnetHeader, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.stats.packets += 1;
        let Some(new) = candidate(packet) else {
            self.flush(&mut write)?;
            self.stats.writes += 1;
            return write(&VnetHeader::NONE, packet);
        };
        if let Some(frame) = &mut self.frame {
            let joins = !frame.closed
                && frame.v6 == new.v6
                && frame.hdr_len == new.hdr_len
                && new.seq == frame.next_seq
                && new.payload_len <= frame.gso_size
                && self.len + new.payload_len <= MAX_FRAME_LEN
                && (new.v6 || self.len + new.payload_len <= usize::from(u16::MAX))
                && same_flow(
                    &self.buffer[..frame.hdr_len],
                    &packet[..new.hdr_len],
                    new.v6,
                    new.l4,
                    new.hdr_len,
                );
            if joins {
                let payload = &packet[new.hdr_len..new.hdr_len + new.payload_len];
                self.buffer[self.len..self.len + payload.len()].copy_from_slice(payload);
                self.len += payload.len();
                frame.next_seq = frame.next_seq.wrapping_add(new.payload_len as u32);
                frame.segments += 1;
                if new.flags & TCP_PSH != 0 {
                    self.buffer[new.l4 + TCP_FLAGS] |= TCP_PSH;
                }
                frame.closed = new.flags & TCP_PSH != 0 || new.payload_len < frame.gso_size;
                return Ok(());
            }
        }
        self.flush(&mut write)?;
        let len = new.hdr_len + new.payload_len;
        self.buffer[..len].copy_from_slice(&packet[..len]);
        self.len = len;
        self.frame = Some(Frame {
            v6: new.v6,
            hdr_len: new.hdr_len,
            l4: new.l4,
            gso_size: new.payload_len,
            next_seq: new.seq.wrapping_add(new.payload_len as u32),
            segments: 1,
            closed: new.flags & TCP_PSH != 0,
        });
        Ok(())
    }

    /// Writes the frame under construction, if any. Call at the end of every batch.
    pub fn flush<E>(
        &mut self,
        mut write: impl FnMut(&VnetHeader, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        let packet = &mut self.buffer[..self.len];
        self.len = 0;
        self.stats.writes += 1;
        if frame.segments == 1 {
            return write(&VnetHeader::NONE, packet);
        }
        self.stats.gso_writes += 1;
        let total = packet.len();
        let tcp_len = total - frame.l4;
        // Lengths fit: push kept the frame within the 16-bit length fields.
        let pseudo = if frame.v6 {
            let mut ip = ipv6::Packet::new_unchecked(&mut *packet);
            ip.set_payload_len((total - ipv6::HEADER_LEN) as u16);
            let src = Ipv6Addr::from(
                <[u8; 16]>::try_from(&packet[ipv6::SRC_ADDR]).expect("16-byte address"),
            );
            let dst = Ipv6Addr::from(
                <[u8; 16]>::try_from(&packet[ipv6::DST_ADDR]).expect("16-byte address"),
            );
            checksum::pseudo_header_ipv6(src, dst, IpProtocol::TCP.0, tcp_len as u32)
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
            checksum::pseudo_header_ipv4(src, dst, IpProtocol::TCP.0, tcp_len as u16)
        };
        // NEEDS_CSUM: the field holds the (uncomplemented) pseudo-header sum.
        let at = frame.l4 + TCP_CHECKSUM;
        packet[at..at + 2].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        let header = VnetHeader {
            flags: FLAG_NEEDS_CSUM,
            gso_type: if frame.v6 {
                GsoType::TcpV6
            } else {
                GsoType::TcpV4
            },
            gso_ecn: false,
            hdr_len: frame.hdr_len as u16,
            gso_size: frame.gso_size as u16,
            csum_start: frame.l4 as u16,
            csum_offset: TCP_CHECKSUM as u16,
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

    fn run(coalescer: &mut TcpCoalescer, packets: &[Vec<u8>]) -> Vec<(VnetHeader, Vec<u8>)> {
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

    #[test]
    fn consecutive_segments_become_one_gso_frame() {
        for v6 in [false, true] {
            let packets = flow(v6, u32::MAX - 100, &[1000; 40], TCP_ACK | TCP_PSH);
            let mut coalescer = TcpCoalescer::new();
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
                    gso_writes: 1
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
        let mut coalescer = TcpCoalescer::new();
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
    fn frames_stop_below_64_kb() {
        let packets = flow(false, 7, &[1400; 60], TCP_ACK);
        let frames = run(&mut TcpCoalescer::new(), &packets);
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
            let frames = run(&mut TcpCoalescer::new(), &packets);
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
        ) {
            let mut written = 0;
            let mut coalescer = TcpCoalescer::new();
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
