//! A data-plane worker: one thread, one NIC queue, one TUN queue, pinned to one core.
//!
//! Each round it moves one batch each way through the pure [`pipeline`](crate::pipeline):
//!
//! - WAN → inner: frames from the queue's AF_XDP socket are decapsulated in place in their
//!   UMEM frames; inner packets go to the TUN queue (TCP segments or UDP datagrams of one flow coalesced into
//!   one GSO write, see [`Coalescer`]); the frames go straight back to the fill ring.
//! - inner → WAN: packets read from the TUN queue (a GSO read split into segments) are each
//!   put in a free UMEM frame behind [`HEADROOM`] bytes, encapsulated in place (outer headers
//!   written in front, tag behind), and put on the TX ring.
//!
//! The session table is loaded once per batch ([`SnapshotReader`]); counters are per worker
//! and published once per batch ([`WorkerStats`]); events for the control plane ("handshake
//! needed", "endpoint moved") go over a bounded queue, never blocking: a full queue counts a
//! lost event, and the next packet reports it again. Nothing here allocates, locks or logs
//! per packet; the syscalls are ring kicks, TUN reads and writes, and `poll` when idle.
//!
//! Idle behaviour: a worker keeps polling after the last frame it moved, then sleeps in
//! `poll` on its descriptors (AF_XDP with need_wakeup, so the kernel wakes it), so an idle
//! gateway costs no CPU. The spin is a time, at most `spin_before_sleep` and at most as long
//! as the worker has been busy since it last woke: a steady flow keeps the worker polling
//! between its packets, while a wake-up for a few stray packets spins a few microseconds.
//! A fixed count of empty rounds (each costs a TUN read syscall) meant about half a
//! millisecond of spin per wake-up: sparse traffic, like a paced junk flood with a burst
//! every 500 us, kept a worker spinning all the time (`cargo xtask bench hostile`).
//! The worker sleeps only once its transmitted frames are back (see
//! `transmissions_settled`).
//!
//! The TUN side copies each inner packet once between the kernel's TUN buffer and a UMEM
//! frame. With a [`LanSide`] (full bypass, `Inner = <nic>`) that copy goes too:
//!
//! - LAN → WAN: frames from the LAN NIC's AF_XDP socket (which shares the UMEM) lose their
//!   Ethernet header by moving the frame's offset, are encapsulated in place in the headroom
//!   the kernel left in front of them, and go on the WAN socket's TX ring.
//! - WAN → LAN: decapsulated packets get an Ethernet header written in front of them, its
//!   destination from the [`NextHops`](crate::next_hops) the control plane resolves, and go
//!   on the LAN socket's TX ring.
//! - A LAN packet larger than the tunnel MTU gets its ICMP error ("fragmentation needed",
//!   "packet too big") written in place in its own frame and sent straight back
//!   ([`pipeline::too_big_reply`]), at most [`ICMP_ERRORS_PER_SECOND`] a second per worker.
//! - What needs the kernel goes to the TUN queue, never silently lost: a packet whose next
//!   hop is unresolved (the kernel forwards it, resolving the neighbour on the way, and the
//!   worker asks the control plane to publish the next hop), and an oversized IPv4 packet
//!   without DF (the kernel routes it back to the TUN, whose MTU is the tunnel's, and so
//!   fragments it).

mod stats;

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

pub use stats::{WorkerCounter, WorkerStats, WorkerTotals};

use crate::next_hops::{self, NextHopReader, NextHops};
use crate::pipeline::{
    self, DropReason, EndpointSeen, Events, FrameRef, HEADROOM, HandshakeReason, L2Info,
    LanAddresses, TAILROOM, TooBig, Verdict,
};
use crate::sessions::{PeerId, SnapshotReader};
use crate::spread::{CHUNK, Job, Spread};
use crate::time::Time;
use crate::tun::gro::Coalescer;
use crate::tun::{SCRATCH_LEN, TunQueue};
use crate::wire::ethernet::{self, EtherType, MacAddr};
use crate::xsk::{Frame, Packet, Umem, XskSocket};

/// Frames per batch, each way.
pub const BATCH: usize = 64;

/// Something a worker tells the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEvent {
    /// An authenticated packet of the peer came from a new address or next hop.
    EndpointSeen(EndpointSeen),
    /// Traffic for the peer needs a (new) handshake.
    HandshakeNeeded(PeerId, HandshakeReason),
    /// A transport packet named a receiver index no session here has (with
    /// [`WorkerConfig::report_unknown_indices`]): an HA partner's session may be arriving.
    UnknownIndex(u32),
    /// A decapsulated packet's destination has no next hop on the LAN NIC yet (full
    /// bypass): the packet took the kernel's path; the control plane should resolve it.
    NextHopNeeded(std::net::IpAddr),
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's number, for names and logs.
    pub index: usize,
    /// Pin the thread to this CPU, if set.
    pub core: Option<usize>,
    /// This side of the wire: MAC, addresses, port, MTU.
    pub l2: L2Info,
    /// How long to keep polling after the last frame moved before sleeping in `poll`
    /// (`Duration::MAX`: never sleep, for `BusyPoll = on`).
    pub spin_before_sleep: Duration,
    /// The control plane's time origin: sessions are timed against it.
    pub origin: Instant,
    /// Fault tests only: panic once this many frames were received.
    pub panic_after_frames: Option<u64>,
    /// Report [`WorkerEvent::UnknownIndex`] (HA nodes take a partner's peer over when its
    /// traffic arrives); off otherwise, so garbage indices cost the control plane nothing.
    pub report_unknown_indices: bool,
}

/// A worker's socket on the LAN NIC (full bypass, `Inner = <nic>`).
#[derive(Debug)]
pub struct LanSide {
    /// Bound to the same queue number on the LAN NIC, sharing the WAN socket's UMEM, so a
    /// frame moves between the two without a copy.
    pub socket: XskSocket,
    /// The LAN NIC's MAC: the source of the frames sent on it.
    pub mac: MacAddr,
    /// The LAN NIC's addresses: the source of the ICMP errors sent to LAN hosts.
    pub addresses: LanAddresses,
    /// Where decapsulated packets go on the LAN.
    pub next_hops: NextHopReader,
}

/// Everything a worker owns.
#[derive(Debug)]
pub struct Worker {
    /// The AF_XDP socket of the worker's queue.
    pub socket: XskSocket,
    /// Free UMEM frames.
    pub pool: Vec<Frame>,
    /// The worker's TUN queue: the inner side, or with a LAN side the kernel's path.
    pub tun: TunQueue,
    /// The AF_XDP LAN side, if the gateway bypasses the kernel on both sides.
    pub lan: Option<LanSide>,
    /// Links to the other workers, to spread one tunnel's decryption (`Spread = on`).
    pub spread: Option<Spread>,
    /// The session table.
    pub sessions: SnapshotReader,
    /// Where events for the control plane go.
    pub events: SyncSender<WorkerEvent>,
    /// Where the worker publishes its counters.
    pub stats: Arc<WorkerStats>,
    /// How it runs.
    pub config: WorkerConfig,
}

/// How long one `poll` sleep lasts at most, so a stop request is seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// How often a worker reads its sockets' kernel drop counters.
const KERNEL_DROPS_INTERVAL: Duration = Duration::from_millis(100);
/// The shortest spin after a wake-up (see `Worker::run`): a few empty rounds.
const MIN_SPIN: Duration = Duration::from_micros(5);
/// With transmitted frames not back yet: how long to keep spinning for them, then how long
/// one `poll` sleep lasts (a link that cannot send must not keep a worker spinning).
const UNSETTLED_SPIN_LIMIT: Duration = Duration::from_millis(2);
const UNSETTLED_SLEEP: Duration = Duration::from_millis(1);
/// Frames kept back from the fill ring for inner packets on their way out.
const TX_RESERVE: usize = 4 * BATCH;
/// ICMP errors a worker sends to LAN hosts at most per second (as Linux's default
/// `icmp_msgs_per_sec`): a flood of oversized packets is not reflected at line rate.
pub const ICMP_ERRORS_PER_SECOND: u32 = 1000;
/// A peer's event is sent at most this often per worker (its packets keep asking until the
/// control plane acts).
const EVENT_REPEAT: Duration = Duration::from_millis(100);

/// Where an idle worker stands: when it last woke and last moved a frame.
#[derive(Debug, Clone, Copy)]
struct Idle {
    now: Time,
    woke: Time,
    last_moved: Time,
}

impl Idle {
    /// How long to sleep now, at most, or `None` to keep spinning. `spin_cap` is the
    /// longest spin (`Duration::MAX`: never sleep, `BusyPoll = on`); `settled` says whether
    /// every transmitted frame is back (asked only when the spin is over: it may kick).
    fn sleep_for(self, spin_cap: Duration, settled: impl FnOnce() -> bool) -> Option<Duration> {
        if spin_cap == Duration::MAX {
            return None;
        }
        // Spin at most as long as the worker has been busy since it woke: a steady flow
        // gets the whole spin, a wake-up for a few stray packets almost none.
        let busy_for = self.last_moved.saturating_since(self.woke);
        let spin = spin_cap.min(busy_for.max(MIN_SPIN));
        let idle_for = self.now.saturating_since(self.last_moved);
        if idle_for < spin {
            return None;
        }
        // Frames still out on a TX ring come back on the completion ring, which wakes
        // nobody: asleep, the worker would leave the fill ring short of them and the NIC
        // would drop what arrives. So it sleeps only once they are back, or briefly.
        if settled() {
            Some(MAX_SLEEP)
        } else if idle_for >= UNSETTLED_SPIN_LIMIT {
            Some(UNSETTLED_SLEEP)
        } else {
            None
        }
    }
}

impl Worker {
    /// Runs until `stop` is set. Pins itself first if configured.
    pub fn run(mut self, stop: &AtomicBool) {
        if let Some(core) = self.config.core
            && let Err(error) = pin_to_core(core)
        {
            tracing::warn!(
                worker = self.config.index,
                core,
                "could not pin the worker to its core: {error}"
            );
        }
        let mut state = LoopState::new();
        state.coalescer.set_udp(self.tun.accepts_udp_gso());
        let mut woke = Time::ZERO;
        let mut last_moved = Time::ZERO;
        let mut kernel_drops_due = Time::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let now = Time::from_duration(self.config.origin.elapsed());
            let moved = self.round(now, &mut state);
            if now >= kernel_drops_due {
                self.read_kernel_drops(&mut state);
                kernel_drops_due = now + KERNEL_DROPS_INTERVAL;
            }
            self.stats.publish(&state.totals);
            if moved > 0 {
                last_moved = now;
                continue;
            }
            let idle = Idle {
                now,
                woke,
                last_moved,
            };
            if let Some(at_most) = idle.sleep_for(self.config.spin_before_sleep, || {
                self.transmissions_settled()
            }) {
                state.count(WorkerCounter::Sleeps, 1);
                self.sleep(at_most);
                // `last_moved` stays: a wake-up with work moves frames in the next round and
                // spins from there; one without (a timeout, frames still out on a link that
                // cannot send) goes back to sleep at once, not after another 2 ms.
                woke = Time::from_duration(self.config.origin.elapsed());
            }
        }
        self.read_kernel_drops(&mut state);
        self.stats.publish(&state.totals);
    }

    /// Copies the kernel's drop counters of this worker's sockets (`XDP_STATISTICS`: frames
    /// lost to a full RX ring or an empty fill ring) into its totals, so drops before the
    /// worker saw a frame are counted too. A syscall per socket: see `KERNEL_DROPS_INTERVAL`.
    fn read_kernel_drops(&self, state: &mut LoopState) {
        let wan = self.socket.statistics().ok();
        let lan = self
            .lan
            .as_ref()
            .and_then(|lan| lan.socket.statistics().ok());
        state.totals.set_kernel_drops(wan.iter().chain(lan.iter()));
    }

    /// One batch each way; returns how many frames moved.
    fn round(&mut self, now: Time, state: &mut LoopState) -> usize {
        self.recycle();
        let helped = self.help_others(now, state);
        let received = self.wan_to_inner(now, state);
        let from_lan = self.lan_to_wan(now, state);
        let sent = self.inner_to_wan(now, state);
        self.report_events(now, state);
        let in_flight = self.spread.as_ref().is_some_and(|spread| !spread.is_idle());
        // Dealt chunks still out keep the worker awake: it must take them back.
        received + from_lan + sent + helped + usize::from(in_flight)
    }

    /// Takes back sent frames and keeps the fill rings stocked (minus a reserve for TX); with
    /// a LAN side, the two fill rings share the spare frames.
    fn recycle(&mut self) {
        reclaim(&mut self.socket, &mut self.pool);
        if let Some(lan) = &mut self.lan {
            reclaim(&mut lan.socket, &mut self.pool);
        }
        let mut spare = self.pool.len().saturating_sub(TX_RESERVE);
        if let Some(lan) = &mut self.lan {
            lan.socket.fill.fill(&mut self.pool, spare / 2);
            let _ = lan.socket.wake_rx();
            spare = self.pool.len().saturating_sub(TX_RESERVE);
        }
        self.socket.fill.fill(&mut self.pool, spare);
        let _ = self.socket.wake_rx();
    }

    fn wan_to_inner(&mut self, now: Time, state: &mut LoopState) -> usize {
        let room = self.spread.as_ref().map_or(BATCH, Spread::capacity);
        let count = self.socket.rx.receive(&mut state.rx, room.min(BATCH));
        if count > 0 {
            state.count(WorkerCounter::RxFrames, count as u64);
            if let Some(limit) = self.config.panic_after_frames {
                let received = state.totals.get(WorkerCounter::RxFrames);
                assert!(
                    received < limit,
                    "fault test: worker panics after {limit} frames"
                );
            }
        }
        let umem = self.socket.umem().clone();
        let snapshot = self.sessions.load_shared();
        // A batch worth dealing out, or any batch while dealt chunks are still out (order).
        if let Some(spread) = &mut self.spread
            && (count > CHUNK || !spread.is_idle())
        {
            let dealt = spread.dispatch(&mut state.rx, &umem, now, snapshot, Job::Decap);
            state.count(WorkerCounter::ChunksDealt, dealt as u64);
            self.take_back_chunks(now, state, &umem);
            return count;
        }
        if count == 0 {
            return 0;
        }
        {
            let mut frames: [FrameRef<'_>; BATCH] =
                std::array::from_fn(|_| FrameRef::new(&mut [], 0, 0));
            for (slot, packet) in frames.iter_mut().zip(state.rx.iter_mut()) {
                let (offset, len) = (packet.offset() as usize, packet.len() as usize);
                *slot = FrameRef::new(umem.packet_frame_mut(packet), offset, len);
            }
            pipeline::decap_batch(
                now,
                snapshot,
                &mut frames[..count],
                &mut state.verdicts[..count],
                &mut state.totals.pipeline,
                &mut state.events,
            );
        }
        let mut received = std::mem::take(&mut state.rx);
        let verdicts = state.verdicts;
        self.deliver(state, &umem, received.drain(..).zip(verdicts));
        state.rx = received;
        count
    }

    /// Delivers the dealt chunks that are back, in dealing order (see [`crate::spread`]).
    fn take_back_chunks(&mut self, now: Time, state: &mut LoopState, umem: &Umem) {
        loop {
            let Some(spread) = &mut self.spread else {
                return;
            };
            let Some(mut chunk) = spread.next_done() else {
                return;
            };
            state.totals.pipeline.absorb(&mut chunk.counters);
            state.events.absorb(&mut chunk.events);
            let verdicts = chunk.verdicts;
            let frames = chunk.packets.drain(..).zip(verdicts);
            match chunk.job {
                Job::Decap => self.deliver(state, umem, frames),
                Job::Encap(_) => self.send_sealed(now, state, umem, frames, Origin::Lan),
            }
            if let Some(spread) = &mut self.spread {
                spread.recycle(chunk);
            }
        }
    }

    /// Decapsulates chunks other workers dealt to this one (see [`crate::spread`]).
    fn help_others(&mut self, now: Time, state: &mut LoopState) -> usize {
        let Some(spread) = &mut self.spread else {
            return 0;
        };
        let helped = spread.help(now);
        state.count(WorkerCounter::ChunksHelped, helped as u64);
        helped
    }

    /// Sends decapsulated frames on: inner packets to the LAN socket or the TUN queue, the
    /// frames of everything else back to the pool.
    fn deliver(
        &mut self,
        state: &mut LoopState,
        umem: &Umem,
        frames: impl Iterator<Item = (Packet, Verdict)>,
    ) {
        let tun = &self.tun;
        let mut write_errors = 0u64;
        // Failed writes are counted by packet: a lost GSO frame loses all of its packets.
        let lost_before = state.coalescer.stats().lost;
        let mut write = |header: &_, packet: &[u8]| tun.write_with_header(header, packet);
        let mut lan = self.lan.as_mut().map(|lan| (lan.mac, lan.next_hops.load()));
        let frame_size = umem.frame_size();
        for (mut packet, verdict) in frames {
            if let Verdict::ToInner { offset, len, .. } = verdict {
                if let Some((mac, next_hops)) = &mut lan {
                    match to_lan(umem, &mut packet, offset, len, *mac, next_hops, frame_size) {
                        LanForward::Queued => {
                            state.lan_tx.push(packet);
                            continue;
                        }
                        LanForward::ViaKernel(destination) => {
                            state.totals.extra[WorkerCounter::ToKernel as usize] += 1;
                            if let Some(destination) = destination {
                                state.next_hops_wanted.note(destination);
                            }
                        }
                    }
                }
                let frame = umem.packet_frame_mut(&mut packet);
                if tun.vnet_hdr() {
                    let _ = state
                        .coalescer
                        .push(&frame[offset..offset + len], &mut write);
                } else if tun.write_packet(&frame[offset..offset + len]).is_err() {
                    write_errors += 1;
                }
            }
            self.pool.push(packet.into_frame());
        }
        let _ = state.coalescer.flush(&mut write);
        write_errors += state.coalescer.stats().lost - lost_before;
        state.count(WorkerCounter::TunWriteErrors, write_errors);
    }

    fn inner_to_wan(&mut self, now: Time, state: &mut LoopState) -> usize {
        let umem = self.socket.umem().clone();
        let frame_size = umem.frame_size();
        let room = frame_size as usize - HEADROOM - TAILROOM;
        let mut no_frame = 0u64;
        let mut reads = 0u64;
        while state.outgoing.len() < BATCH {
            let pool = &mut self.pool;
            let outgoing = &mut state.outgoing;
            let result = self.tun.read_packets(&mut state.scratch, |segment| {
                reads += 1;
                if segment.len() > room || outgoing.len() == outgoing.capacity() {
                    no_frame += 1;
                    return;
                }
                let Some(mut frame) = pool.pop() else {
                    no_frame += 1;
                    return;
                };
                umem.frame_bytes_mut(&mut frame)[HEADROOM..HEADROOM + segment.len()]
                    .copy_from_slice(segment);
                match Packet::new(frame, HEADROOM as u32, segment.len() as u32, frame_size) {
                    Ok(packet) => outgoing.push(packet),
                    Err(frame) => pool.push(frame),
                }
            });
            if result.is_err() {
                break; // WouldBlock: nothing more to read now.
            }
        }
        state.count(WorkerCounter::TunReads, reads);
        state.count(WorkerCounter::NoFreeFrame, no_frame);
        let mut moved = 0;
        while !state.outgoing.is_empty() {
            let count = state.outgoing.len().min(BATCH);
            moved += count;
            self.encap_chunk(now, state, count, Origin::Tun);
        }
        self.transmit(state);
        moved
    }

    /// LAN → WAN (full bypass): one batch from the LAN socket, Ethernet header dropped by
    /// moving the offset, encapsulated in place, onto the WAN TX ring.
    fn lan_to_wan(&mut self, now: Time, state: &mut LoopState) -> usize {
        let Some(lan) = &mut self.lan else {
            return 0;
        };
        // With spreading, no more than the free chunks can take: the rest waits in the ring.
        let room = self.spread.as_ref().map_or(BATCH, Spread::capacity);
        let count = lan.socket.rx.receive(&mut state.lan_rx, room.min(BATCH));
        if count == 0 {
            return 0;
        }
        state.count(WorkerCounter::LanRxFrames, count as u64);
        let umem = self.socket.umem().clone();
        let frame_size = umem.frame_size();
        let mut malformed = 0u64;
        for mut packet in state.lan_rx.drain(..) {
            let (offset, len) = (packet.offset(), packet.len());
            let l2 = ethernet::Frame::new_checked(umem.packet(&packet))
                .ok()
                // The LAN side carries untagged frames: a tag would be lost on the way back.
                .filter(|frame| {
                    !frame.is_tagged()
                        && matches!(frame.ethertype(), EtherType::IPV4 | EtherType::IPV6)
                })
                .map(|frame| frame.header_len() as u32);
            match l2 {
                Some(l2) if packet.set_window(offset + l2, len - l2, frame_size) => {
                    state.outgoing.push(packet);
                }
                _ => {
                    malformed += 1;
                    self.pool.push(packet.into_frame());
                }
            }
        }
        state.totals.pipeline.drops[DropReason::Malformed as usize] += malformed;
        let moved = state.outgoing.len();
        if let Some(spread) = &mut self.spread
            && (moved > CHUNK || !spread.is_idle())
        {
            let snapshot = self.sessions.load_shared();
            let job = Job::Encap(self.config.l2);
            let dealt = spread.dispatch(&mut state.outgoing, &umem, now, snapshot, job);
            state.count(WorkerCounter::ChunksDealt, dealt as u64);
            self.take_back_chunks(now, state, &umem);
        }
        let left = state.outgoing.len();
        if left > 0 {
            self.encap_chunk(now, state, left, Origin::Lan);
        }
        self.transmit(state);
        count
    }

    /// Encapsulates the first `count` outgoing packets: sealed ones move to the TX list,
    /// dropped ones back to the pool.
    fn encap_chunk(&mut self, now: Time, state: &mut LoopState, count: usize, origin: Origin) {
        let umem = self.socket.umem().clone();
        let snapshot = self.sessions.load();
        {
            let mut frames: [FrameRef<'_>; BATCH] =
                std::array::from_fn(|_| FrameRef::new(&mut [], 0, 0));
            for (slot, packet) in frames.iter_mut().zip(state.outgoing.iter_mut()) {
                let (offset, len) = (packet.offset() as usize, packet.len() as usize);
                *slot = FrameRef::new(umem.packet_frame_mut(packet), offset, len);
            }
            pipeline::encap_batch(
                now,
                snapshot,
                &mut frames[..count],
                &mut state.verdicts[..count],
                &mut state.totals.pipeline,
                &mut state.events,
                &self.config.l2,
            );
        }
        let mut outgoing = std::mem::take(&mut state.outgoing);
        let verdicts = state.verdicts;
        self.send_sealed(
            now,
            state,
            &umem,
            outgoing.drain(..count).zip(verdicts),
            origin,
        );
        state.outgoing = outgoing;
    }

    /// Acts on encapsulation verdicts: sealed frames to the WAN TX list, oversized LAN
    /// packets answered ([`Self::answer_too_big`]), the rest back to the pool.
    fn send_sealed(
        &mut self,
        now: Time,
        state: &mut LoopState,
        umem: &Umem,
        frames: impl Iterator<Item = (Packet, Verdict)>,
        origin: Origin,
    ) {
        let frame_size = umem.frame_size();
        for (mut packet, verdict) in frames {
            match verdict {
                Verdict::ToOuter { offset, len }
                    if packet.set_window(offset as u32, len as u32, frame_size) =>
                {
                    state.tx.push(packet);
                }
                Verdict::Drop(DropReason::TooBig) if origin == Origin::Lan => {
                    let counter = self.answer_too_big(now, umem, &mut packet, &mut state.icmp);
                    if let Some(counter) = counter {
                        state.totals.extra[counter as usize] += 1;
                    }
                    if counter == Some(WorkerCounter::IcmpTooBig) {
                        state.lan_tx.push(packet);
                    } else {
                        self.pool.push(packet.into_frame());
                    }
                }
                _ => self.pool.push(packet.into_frame()),
            }
        }
    }

    /// A LAN packet above the tunnel MTU: the ICMP error written in its frame (the counter is
    /// then [`WorkerCounter::IcmpTooBig`] and the packet is the error, for the LAN TX list),
    /// or handed to the kernel to fragment, or dropped; returns what to count beside the
    /// pipeline's `too_big` drop, if anything.
    fn answer_too_big(
        &mut self,
        now: Time,
        umem: &Umem,
        packet: &mut Packet,
        budget: &mut IcmpBudget,
    ) -> Option<WorkerCounter> {
        let lan = self.lan.as_ref()?;
        let (offset, len) = (packet.offset() as usize, packet.len() as usize);
        let mtu = u16::try_from(self.config.l2.mtu).unwrap_or(u16::MAX);
        let frame_size = umem.frame_size();
        let frame = umem.packet_frame_mut(packet);
        match pipeline::too_big_reply(frame, offset, len, mtu, lan.mac, &lan.addresses) {
            TooBig::Reply { offset, len } => {
                if !budget.take(now) {
                    Some(WorkerCounter::IcmpRateLimited)
                } else {
                    packet
                        .set_window(offset as u32, len as u32, frame_size)
                        .then_some(WorkerCounter::IcmpTooBig)
                }
            }
            TooBig::ToKernel => Some(if self.tun.write_packet(umem.packet(packet)).is_ok() {
                WorkerCounter::TooBigToKernel
            } else {
                WorkerCounter::TunWriteErrors
            }),
            TooBig::Drop => None,
        }
    }

    /// Puts the TX list on the ring and kicks the kernel; a ring that stays full drops the
    /// rest (counted) rather than stall the worker.
    fn transmit(&mut self, state: &mut LoopState) {
        let (sent, dropped) = transmit_on(&mut self.socket, &mut state.tx, &mut self.pool);
        state.count(WorkerCounter::TxFrames, sent);
        state.count(WorkerCounter::TxRingFull, dropped);
        if let Some(lan) = &mut self.lan
            && !state.lan_tx.is_empty()
        {
            let (sent, dropped) = transmit_on(&mut lan.socket, &mut state.lan_tx, &mut self.pool);
            state.count(WorkerCounter::LanTxFrames, sent);
            state.count(WorkerCounter::TxRingFull, dropped);
        }
    }

    fn report_events(&mut self, now: Time, state: &mut LoopState) {
        let LoopState {
            events,
            recent,
            totals,
            next_hops_wanted,
            ..
        } = state;
        let mut lost = 0u64;
        let mut send = |peer: PeerId, kind: u8, event: WorkerEvent| {
            if recent.seen_lately(now, peer, kind) {
                return;
            }
            match self.events.try_send(event) {
                Ok(()) => recent.note(now, peer, kind),
                Err(TrySendError::Full(_)) => lost += 1,
                Err(TrySendError::Disconnected(_)) => {}
            }
        };
        for seen in events.endpoints() {
            send(seen.peer, 0, WorkerEvent::EndpointSeen(seen));
        }
        for (peer, reason) in events.handshakes() {
            send(peer, 1, WorkerEvent::HandshakeNeeded(peer, reason));
        }
        if self.config.report_unknown_indices {
            for &index in events.unknown_indices() {
                if self
                    .events
                    .try_send(WorkerEvent::UnknownIndex(index))
                    .is_err()
                {
                    lost += 1;
                }
            }
        }
        events.clear();
        for destination in next_hops_wanted.take_due(now) {
            if self
                .events
                .try_send(WorkerEvent::NextHopNeeded(destination))
                .is_err()
            {
                lost += 1;
            }
        }
        totals.extra[WorkerCounter::EventsLost as usize] +=
            lost + std::mem::take(&mut events.overflowed);
    }

    /// Whether every frame this worker transmitted has come back: nothing left on a TX ring
    /// (kicking the kernel if something is) and nothing awaiting completion.
    fn transmissions_settled(&mut self) -> bool {
        let mut settled = true;
        for socket in
            std::iter::once(&mut self.socket).chain(self.lan.as_mut().map(|l| &mut l.socket))
        {
            if socket.tx.pending() > 0 {
                let _ = socket.kick_tx();
            }
            settled &= socket.tx_in_flight() == 0;
        }
        settled
    }

    fn sleep(&self, at_most: Duration) {
        let readable = |fd: std::os::fd::BorrowedFd<'_>| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [
            readable(self.socket.as_fd()),
            readable(self.tun.as_fd()),
            // Without a LAN side or spreading, a negative descriptor: poll ignores it.
            self.lan
                .as_ref()
                .map_or(IGNORED, |lan| readable(lan.socket.as_fd())),
            self.spread
                .as_ref()
                .map_or(IGNORED, |spread| readable(spread.waker().as_fd())),
        ];
        if let Some(spread) = &self.spread {
            spread.waker().about_to_sleep();
            // A chunk dealt before the flag was up would not have woken us: look once more.
            if spread.has_help_to_give() {
                spread.waker().awake();
                return;
            }
        }
        let millis = at_most.as_millis().max(1) as libc::c_int;
        // SAFETY: `fds` is a live array of four initialised pollfd structs for the call's
        // duration; poll only writes their `revents`. Errors (EINTR) just end the sleep.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if let Some(spread) = &self.spread {
            spread.waker().awake();
        }
    }
}

/// A `pollfd` entry `poll` skips.
const IGNORED: libc::pollfd = libc::pollfd {
    fd: -1,
    events: 0,
    revents: 0,
};

/// Where a packet being encapsulated came from: what to do when it is too big differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Read from the TUN queue: the kernel already honoured the tunnel MTU.
    Tun,
    /// Received on the LAN socket: nobody has checked its size yet.
    Lan,
}

/// What [`to_lan`] did with a decapsulated packet.
enum LanForward {
    /// Framed for the LAN: the packet now covers the Ethernet frame, for the LAN TX ring.
    Queued,
    /// No next hop on the LAN for this destination (if readable): the kernel's path.
    ViaKernel(Option<std::net::IpAddr>),
}

/// Writes the Ethernet header in front of a decapsulated packet (in the outer headers'
/// place), towards the destination's next hop.
#[inline]
fn to_lan(
    umem: &Umem,
    packet: &mut Packet,
    offset: usize,
    len: usize,
    src_mac: MacAddr,
    next_hops: &NextHops,
    frame_size: u32,
) -> LanForward {
    let frame = umem.packet_frame_mut(packet);
    let Some(inner) = frame.get(offset..offset + len) else {
        return LanForward::ViaKernel(None);
    };
    let Some(destination) = next_hops::packet_destination(inner) else {
        return LanForward::ViaKernel(None);
    };
    let Some(dst_mac) = next_hops.get(destination) else {
        return LanForward::ViaKernel(Some(destination));
    };
    // The outer headers in front of the inner packet are far longer than an Ethernet header.
    let Some(start) = offset.checked_sub(ethernet::HEADER_LEN) else {
        return LanForward::ViaKernel(None);
    };
    let ethertype = if destination.is_ipv4() {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    let header = &mut frame[start..offset];
    header[ethernet::DST_ADDR].copy_from_slice(&dst_mac);
    header[ethernet::SRC_ADDR].copy_from_slice(&src_mac);
    header[ethernet::OUTER_ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
    let window = (start as u32, (len + ethernet::HEADER_LEN) as u32);
    if packet.set_window(window.0, window.1, frame_size) {
        LanForward::Queued
    } else {
        LanForward::ViaKernel(Some(destination))
    }
}

/// Takes back the frames a socket's kernel side has sent.
fn reclaim(socket: &mut XskSocket, pool: &mut Vec<Frame>) {
    socket
        .completion
        .reclaim(pool, socket.completion.size() as usize);
}

/// Puts `list` on the socket's TX ring and kicks the kernel; a ring that stays full drops the
/// rest rather than stall the worker. Returns (sent, dropped); the list ends empty.
fn transmit_on(
    socket: &mut XskSocket,
    list: &mut Vec<Packet>,
    pool: &mut Vec<Frame>,
) -> (u64, u64) {
    let queued = list.len() as u64;
    for _attempt in 0..8 {
        if list.is_empty() {
            break;
        }
        socket.tx.transmit(list);
        let _ = socket.kick_tx();
        if !list.is_empty() {
            reclaim(socket, pool);
        }
    }
    let dropped = list.len() as u64;
    for packet in list.drain(..) {
        pool.push(packet.into_frame());
    }
    if socket.tx.pending() > 0 {
        let _ = socket.kick_tx();
    }
    (queued - dropped, dropped)
}

/// Per-worker buffers, allocated once before the loop.
struct LoopState {
    rx: Vec<Packet>,
    outgoing: Vec<Packet>,
    tx: Vec<Packet>,
    lan_rx: Vec<Packet>,
    lan_tx: Vec<Packet>,
    next_hops_wanted: WantedNextHops,
    icmp: IcmpBudget,
    verdicts: [Verdict; BATCH],
    events: Events,
    totals: WorkerTotals,
    scratch: Box<[u8]>,
    coalescer: Coalescer,
    recent: RecentEvents,
}

impl LoopState {
    fn new() -> Self {
        Self {
            rx: Vec::with_capacity(BATCH),
            // A GSO read can add up to 64 KB / 576 B segments past the batch limit.
            outgoing: Vec::with_capacity(BATCH + 128),
            tx: Vec::with_capacity(BATCH + 128),
            lan_rx: Vec::with_capacity(BATCH),
            lan_tx: Vec::with_capacity(BATCH),
            next_hops_wanted: WantedNextHops::default(),
            icmp: IcmpBudget::default(),
            verdicts: [Verdict::Consumed; BATCH],
            events: Events::new(),
            totals: WorkerTotals::default(),
            scratch: vec![0u8; SCRATCH_LEN].into_boxed_slice(),
            coalescer: Coalescer::new(),
            recent: RecentEvents::default(),
        }
    }

    fn count(&mut self, counter: WorkerCounter, by: u64) {
        self.totals.extra[counter as usize] += by;
    }
}

/// The last few events a worker sent, so a burst of packets for one peer asks once.
#[derive(Default)]
struct RecentEvents {
    entries: [Option<(PeerId, u8, Time)>; 8],
    next: usize,
}

impl RecentEvents {
    fn seen_lately(&self, now: Time, peer: PeerId, kind: u8) -> bool {
        self.entries
            .iter()
            .flatten()
            .any(|&(p, k, at)| p == peer && k == kind && now.saturating_since(at) < EVENT_REPEAT)
    }

    fn note(&mut self, now: Time, peer: PeerId, kind: u8) {
        self.entries[self.next] = Some((peer, kind, now));
        self.next = (self.next + 1) % self.entries.len();
    }
}

/// The worker's ICMP error budget: [`ICMP_ERRORS_PER_SECOND`] per one-second window.
#[derive(Default)]
struct IcmpBudget {
    window_start: Option<Time>,
    sent: u32,
}

impl IcmpBudget {
    fn take(&mut self, now: Time) -> bool {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_since(start) >= Duration::from_secs(1));
        if fresh {
            self.window_start = Some(now);
            self.sent = 0;
        }
        if self.sent < ICMP_ERRORS_PER_SECOND {
            self.sent += 1;
            true
        } else {
            false
        }
    }
}

/// Destinations whose next hop the worker asks the control plane for: a few distinct ones
/// per round, each asked again at most every [`EVENT_REPEAT`] while its packets keep taking
/// the kernel's path. Fixed size: nothing allocates per packet.
#[derive(Default)]
struct WantedNextHops {
    pending: [Option<std::net::IpAddr>; 8],
    asked: [Option<(std::net::IpAddr, Time)>; 8],
    next_asked: usize,
}

impl WantedNextHops {
    fn note(&mut self, destination: std::net::IpAddr) {
        if self.pending.contains(&Some(destination)) {
            return;
        }
        if let Some(slot) = self.pending.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(destination);
        }
    }

    /// The pending destinations not asked for lately, marked as asked now.
    fn take_due(&mut self, now: Time) -> impl Iterator<Item = std::net::IpAddr> + use<> {
        let mut due = [None; 8];
        for (slot, out) in self.pending.iter_mut().zip(due.iter_mut()) {
            let Some(destination) = slot.take() else {
                continue;
            };
            let recently = self.asked.iter().flatten().any(|&(asked, at)| {
                asked == destination && now.saturating_since(at) < EVENT_REPEAT
            });
            if !recently {
                self.asked[self.next_asked] = Some((destination, now));
                self.next_asked = (self.next_asked + 1) % self.asked.len();
                *out = Some(destination);
            }
        }
        due.into_iter().flatten()
    }
}

/// Pins the calling thread to `core`.
pub fn pin_to_core(core: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if core >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::other(format!("CPU {core} is out of range")));
    }
    // SAFETY: `core` is below CPU_SETSIZE (checked above), so the bit lies inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPIN: Duration = Duration::from_micros(50);

    fn at(micros: u64) -> Time {
        Time::from_duration(Duration::from_micros(micros))
    }

    fn idle(woke: u64, last_moved: u64, now: u64) -> Idle {
        Idle {
            now: at(now),
            woke: at(woke),
            last_moved: at(last_moved),
        }
    }

    #[test]
    fn a_steady_flow_gets_the_whole_spin() {
        // Busy for 10 ms since waking: spins the full 50 us after its last frame.
        assert_eq!(idle(0, 10_000, 10_049).sleep_for(SPIN, || true), None);
        assert_eq!(
            idle(0, 10_000, 10_050).sleep_for(SPIN, || true),
            Some(MAX_SLEEP)
        );
    }

    #[test]
    fn a_wake_up_for_a_few_packets_spins_only_briefly() {
        // Woke at 100 us, done 3 us later: spins MIN_SPIN (5 us), not 50.
        assert_eq!(idle(100, 103, 107).sleep_for(SPIN, || true), None);
        assert_eq!(
            idle(100, 103, 108).sleep_for(SPIN, || true),
            Some(MAX_SLEEP)
        );
        // Busy for 20 us: spins 20 us.
        assert_eq!(idle(100, 120, 139).sleep_for(SPIN, || true), None);
        assert!(idle(100, 120, 140).sleep_for(SPIN, || true).is_some());
    }

    #[test]
    fn frames_still_out_keep_the_worker_up_then_bound_its_sleep() {
        assert_eq!(idle(0, 10_000, 10_060).sleep_for(SPIN, || false), None);
        assert_eq!(idle(0, 10_000, 11_999).sleep_for(SPIN, || false), None);
        assert_eq!(
            idle(0, 10_000, 12_000).sleep_for(SPIN, || false),
            Some(UNSETTLED_SLEEP)
        );
        // Woken by the short sleep with nothing to do: back to sleep at once.
        assert_eq!(
            idle(13_000, 10_000, 13_001).sleep_for(SPIN, || false),
            Some(UNSETTLED_SLEEP)
        );
    }

    #[test]
    fn settled_is_asked_only_once_the_spin_is_over() {
        let mut asked = false;
        let _ = idle(0, 10_000, 10_010).sleep_for(SPIN, || {
            asked = true;
            true
        });
        assert!(!asked, "a worker mid-spin must not kick its TX ring");
    }

    #[test]
    fn busy_poll_never_sleeps() {
        for (woke, last_moved, now) in [(0, 0, 1_000_000), (100, 103, 5_000_000)] {
            assert_eq!(
                idle(woke, last_moved, now).sleep_for(Duration::MAX, || true),
                None
            );
        }
    }
}
