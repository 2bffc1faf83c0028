//! The hot path as a pure function over a batch (ARCHITECTURE principle 1).
//!
//! [`decap_batch`] turns received WireGuard frames into inner IP packets; [`encap_batch`] turns
//! inner IP packets into WireGuard frames ready for the wire. Both take `now` (a coarse time
//! read once per batch by the caller), a [`Snapshot`] of the session table (loaded once per
//! batch, see [`crate::sessions`]), the batch's frames, and caller-owned output arrays:
//! one [`Verdict`] per frame, [`DropCounters`] and [`Events`]. They never read a clock,
//! allocate, lock, log or make a syscall, so they run the same under AF_XDP, in tests and in
//! the in-process benchmark.
//!
//! ## How frames are owned
//!
//! A [`FrameRef`] lends the pipeline one whole frame buffer (for AF_XDP: the UMEM chunk the
//! worker owns between the RX and TX rings) and says where the packet in it starts and how
//! long it is. The pipeline works in place and answers, in the [`Verdict`], where the result
//! now lies inside the same buffer: decapsulation decrypts the payload where it is and points
//! at the inner packet (outer headers and tag are left behind); encapsulation needs
//! [`HEADROOM`] free bytes in front of the inner packet for the outer headers and
//! [`TAILROOM`] behind it for padding and the tag. Nothing is copied; the frame goes back to
//! its owner, who acts on the verdict (TX ring, TUN, fill ring).
//!
//! ## Why no locks are needed
//!
//! The snapshot is immutable; the only shared mutable state is per session and atomic: the
//! send counter (`fetch_add`, every counter handed out once) and the replay window (lock-free,
//! see [`crate::sessions::AtomicReplayWindow`]). Counters and events are per worker.

mod decap;
mod encap;
mod too_big;

use std::net::SocketAddr;

pub use decap::decap_batch;
pub use encap::{COUNTER_BLOCK, encap_batch};
pub use too_big::{LanAddresses, TooBig, too_big_reply};

pub use crate::sessions::{Endpoint, PeerId, Snapshot};
use crate::wire::ethernet::{self, MacAddr};
use crate::wire::{ipv6, udp, wireguard};

/// Bytes an encapsulation frame must leave free in front of the inner packet. The outer
/// headers need at most [`MAX_OUTER_HEADERS`] (78 without a VLAN tag, 82 with one); 128 keeps
/// the inner packet cache-line aligned when the frame is, and leaves room to spare.
pub const HEADROOM: usize = 128;

/// The largest outer header stack: Ethernet with a VLAN tag, IPv6, UDP, WireGuard header.
pub const MAX_OUTER_HEADERS: usize = ethernet::TAGGED_HEADER_LEN
    + ipv6::HEADER_LEN
    + udp::HEADER_LEN
    + wireguard::TRANSPORT_HEADER_LEN;

/// Bytes an encapsulation frame must leave free behind the inner packet: up to 15 bytes of
/// padding and the 16-byte tag.
pub const TAILROOM: usize = wireguard::PADDING_MULTIPLE - 1 + wireguard::TAG_LEN;

const _: () = assert!(HEADROOM >= MAX_OUTER_HEADERS);

/// One frame of a batch: a buffer lent to the pipeline and the packet's place in it.
#[derive(Debug)]
pub struct FrameRef<'a> {
    /// The whole frame buffer (headroom and tailroom included).
    pub buf: &'a mut [u8],
    /// Where the packet starts in `buf`.
    pub offset: usize,
    /// The packet's length.
    pub len: usize,
}

impl<'a> FrameRef<'a> {
    /// A frame whose packet is at `buf[offset..offset + len]`.
    pub fn new(buf: &'a mut [u8], offset: usize, len: usize) -> Self {
        Self { buf, offset, len }
    }

    /// The packet's bytes, or `None` if `offset`/`len` do not fit the buffer.
    pub fn packet(&self) -> Option<&[u8]> {
        self.buf
            .get(self.offset..self.offset.checked_add(self.len)?)
    }
}

/// What to do with one frame after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Decapsulated: the inner IP packet is at `buf[offset..offset + len]`, from `peer`.
    ToInner {
        /// Start of the inner packet in the frame buffer.
        offset: usize,
        /// Length of the inner packet (padding removed).
        len: usize,
        /// The peer it came from.
        peer: PeerId,
    },
    /// Encapsulated: the Ethernet frame to send is at `buf[offset..offset + len]`.
    ToOuter {
        /// Start of the Ethernet header in the frame buffer.
        offset: usize,
        /// Length of the whole frame.
        len: usize,
    },
    /// Not transport data (handshake messages, ARP, other protocols, fragments): hand the
    /// frame unchanged to the kernel / control plane.
    ToControl,
    /// Authenticated and fully handled here (a keepalive): recycle the frame.
    Consumed,
    /// Dropped, for this reason (also counted in [`DropCounters`]).
    Drop(DropReason),
}

/// Why a frame was dropped. Small and `Copy`: one counter per variant in [`DropCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Outer headers broken: truncated Ethernet/IP/UDP, bad IPv4 header checksum, a
    /// WireGuard transport message shorter than a header and tag, or a descriptor outside its
    /// buffer.
    Malformed,
    /// No session has the message's receiver index.
    UnknownIndex,
    /// The counter was already received.
    Replayed,
    /// The counter is behind the replay window.
    TooOld,
    /// Authentication failed.
    BadTag,
    /// The session is older than Reject-After-Time.
    Expired,
    /// The session reached its message limit (receive or send side).
    CounterExhausted,
    /// The inner packet is neither IPv4 nor IPv6.
    NotIp,
    /// The inner IP header is broken or longer than what was decrypted.
    InnerMalformed,
    /// The inner source address is not in the sending peer's allowed IPs.
    SourceNotAllowed,
    /// No peer's allowed IPs contain the inner destination.
    NoRoute,
    /// The peer has no current session: the control plane must handshake.
    NoSession,
    /// The peer has no known endpoint.
    NoEndpoint,
    /// The worker has no local address of the endpoint's family.
    NoLocalAddress,
    /// The inner packet is larger than the tunnel MTU.
    TooBig,
    /// The frame lacks the headroom or tailroom encapsulation needs.
    NoRoom,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; DROP_REASONS] = [
        DropReason::Malformed,
        DropReason::UnknownIndex,
        DropReason::Replayed,
        DropReason::TooOld,
        DropReason::BadTag,
        DropReason::Expired,
        DropReason::CounterExhausted,
        DropReason::NotIp,
        DropReason::InnerMalformed,
        DropReason::SourceNotAllowed,
        DropReason::NoRoute,
        DropReason::NoSession,
        DropReason::NoEndpoint,
        DropReason::NoLocalAddress,
        DropReason::TooBig,
        DropReason::NoRoom,
    ];

    /// A stable snake_case name, for metrics.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::Replayed => "replayed",
            DropReason::TooOld => "too_old",
            DropReason::BadTag => "bad_tag",
            DropReason::Expired => "expired",
            DropReason::CounterExhausted => "counter_exhausted",
            DropReason::NotIp => "not_ip",
            DropReason::InnerMalformed => "inner_malformed",
            DropReason::SourceNotAllowed => "source_not_allowed",
            DropReason::NoRoute => "no_route",
            DropReason::NoSession => "no_session",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::NoLocalAddress => "no_local_address",
            DropReason::TooBig => "too_big",
            DropReason::NoRoom => "no_room",
        }
    }
}

/// Number of [`DropReason`]s.
pub const DROP_REASONS: usize = 16;

const _: () = {
    let mut i = 0;
    while i < DROP_REASONS {
        assert!(DropReason::ALL[i] as usize == i);
        i += 1;
    }
};

/// Per-worker counters, one per drop reason plus the verdicts that are not drops. Plain
/// integers: each worker owns its own, the metrics reader sums them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Drops by [`DropReason`] (index: `reason as usize`).
    pub drops: [u64; DROP_REASONS],
    /// Frames decapsulated to an inner packet.
    pub to_inner: u64,
    /// Frames encapsulated for the wire.
    pub to_outer: u64,
    /// Frames passed to the control plane.
    pub to_control: u64,
    /// Keepalives received.
    pub keepalives: u64,
}

impl DropCounters {
    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Total drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another set of counters (a helper worker's, for this worker's frames) and zeroes
    /// it.
    pub fn absorb(&mut self, other: &mut DropCounters) {
        for (mine, theirs) in self.drops.iter_mut().zip(other.drops) {
            *mine += theirs;
        }
        self.to_inner += other.to_inner;
        self.to_outer += other.to_outer;
        self.to_control += other.to_control;
        self.keepalives += other.keepalives;
        *other = DropCounters::default();
    }

    #[inline]
    fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::ToInner { .. } => self.to_inner += 1,
            Verdict::ToOuter { .. } => self.to_outer += 1,
            Verdict::ToControl => self.to_control += 1,
            Verdict::Consumed => self.keepalives += 1,
            Verdict::Drop(reason) => self.drops[reason as usize] += 1,
        }
    }
}

/// A peer seen sending from somewhere other than its known endpoint (authenticated packets
/// only), for the control plane to learn roaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointSeen {
    /// The peer.
    pub peer: PeerId,
    /// Its outer source address and port.
    pub addr: SocketAddr,
    /// The source MAC of the frame (the next hop back towards it).
    pub mac: MacAddr,
    /// The address it sent to (ours: the NIC's, or a virtual IP).
    pub local: std::net::IpAddr,
}

impl EndpointSeen {
    /// As an [`Endpoint`] to install.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr,
            mac: self.mac,
            local: Some(self.local),
        }
    }
}

/// Why the control plane should handshake with a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeReason {
    /// Traffic for the peer but no session.
    NoSession,
    /// The current session expired or used up its counters.
    Expired,
    /// The session still works but is due for replacement (Rekey-After-Time/Messages).
    Rekey,
}

/// Capacity of each event list in [`Events`]: one batch's worth.
pub const EVENTS_CAPACITY: usize = 64;

/// Signals for the control plane, gathered over a batch in fixed-size lists the worker owns
/// and drains after each batch (into its bounded queue to the control plane). Each list keeps
/// one entry per peer; when full, further peers are counted in `overflowed` (they will be
/// reported again by their next packet).
#[derive(Debug, Clone)]
pub struct Events {
    endpoints: [Option<EndpointSeen>; EVENTS_CAPACITY],
    endpoints_len: usize,
    handshakes: [Option<(PeerId, HandshakeReason)>; EVENTS_CAPACITY],
    handshakes_len: usize,
    unknown: [u32; EVENTS_CAPACITY],
    unknown_len: usize,
    /// Events lost because a list was full.
    pub overflowed: u64,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            endpoints: [None; EVENTS_CAPACITY],
            endpoints_len: 0,
            handshakes: [None; EVENTS_CAPACITY],
            handshakes_len: 0,
            unknown: [0; EVENTS_CAPACITY],
            unknown_len: 0,
            overflowed: 0,
        }
    }
}

impl Events {
    /// Empty lists.
    pub fn new() -> Self {
        Self::default()
    }

    /// Peers whose endpoint changed, latest address per peer.
    pub fn endpoints(&self) -> impl Iterator<Item = EndpointSeen> + '_ {
        self.endpoints[..self.endpoints_len]
            .iter()
            .flatten()
            .copied()
    }

    /// Peers that need a handshake, first reason per peer.
    pub fn handshakes(&self) -> impl Iterator<Item = (PeerId, HandshakeReason)> + '_ {
        self.handshakes[..self.handshakes_len]
            .iter()
            .flatten()
            .copied()
    }

    /// Receiver indices of transport packets no session here has (an HA partner's
    /// sessions arriving here), each once per batch.
    pub fn unknown_indices(&self) -> &[u32] {
        &self.unknown[..self.unknown_len]
    }

    /// Empties the lists (keeps `overflowed`).
    pub fn clear(&mut self) {
        self.endpoints_len = 0;
        self.handshakes_len = 0;
        self.unknown_len = 0;
    }

    /// Adds another list's events (a batch a helper worker decapsulated for this one) and
    /// empties it.
    pub fn absorb(&mut self, other: &mut Events) {
        for seen in other.endpoints() {
            self.endpoint_seen(seen);
        }
        for (peer, reason) in other.handshakes() {
            self.handshake_needed(peer, reason);
        }
        for index in other.unknown_indices() {
            self.unknown_index(*index);
        }
        self.overflowed += std::mem::take(&mut other.overflowed);
        other.clear();
    }

    fn unknown_index(&mut self, index: u32) {
        if self.unknown[..self.unknown_len].contains(&index) {
            return;
        }
        if self.unknown_len < EVENTS_CAPACITY {
            self.unknown[self.unknown_len] = index;
            self.unknown_len += 1;
        } else {
            self.overflowed += 1;
        }
    }

    fn endpoint_seen(&mut self, seen: EndpointSeen) {
        let list = &mut self.endpoints[..self.endpoints_len];
        if let Some(entry) = list
            .iter_mut()
            .flatten()
            .find(|entry| entry.peer == seen.peer)
        {
            *entry = seen;
        } else if self.endpoints_len < EVENTS_CAPACITY {
            self.endpoints[self.endpoints_len] = Some(seen);
            self.endpoints_len += 1;
        } else {
            self.overflowed += 1;
        }
    }

    fn handshake_needed(&mut self, peer: PeerId, reason: HandshakeReason) {
        let list = &self.handshakes[..self.handshakes_len];
        if list.iter().flatten().any(|(p, _)| *p == peer) {
            return;
        }
        if self.handshakes_len < EVENTS_CAPACITY {
            self.handshakes[self.handshakes_len] = Some((peer, reason));
            self.handshakes_len += 1;
        } else {
            self.overflowed += 1;
        }
    }
}

/// What encapsulation needs to know about this side of the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Info {
    /// Source MAC of outgoing frames.
    pub src_mac: MacAddr,
    /// VLAN tag control information to tag outgoing frames with, if any.
    pub vlan_tci: Option<u16>,
    /// Our IPv4 source address, if we send over IPv4.
    pub local_v4: Option<std::net::Ipv4Addr>,
    /// Our IPv6 source address, if we send over IPv6.
    pub local_v6: Option<std::net::Ipv6Addr>,
    /// Our UDP port (the listen port).
    pub port: u16,
    /// TTL / hop limit of outer packets.
    pub ttl: u8,
    /// The tunnel MTU: inner packets above it are dropped ([`DropReason::TooBig`]); padding
    /// never goes past it.
    pub mtu: usize,
}
