//! A data-plane worker: one thread, one NIC queue, one TUN queue, pinned to one core.
//!
//! Each round it moves one batch each way through the pure [`pipeline`](crate::pipeline):
//!
//! - WAN → inner: frames from the queue's AF_XDP socket are decapsulated in place in their
//!   UMEM frames; inner packets go to the TUN queue (TCP segments of one flow coalesced into
//!   one GSO write, see [`TcpCoalescer`]); the frames go straight back to the fill ring.
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
//! Idle behaviour: a worker busy-polls for `busy_poll_rounds` empty rounds, then sleeps in
//! `poll` on both descriptors (AF_XDP with need_wakeup, so the kernel wakes it), so an idle
//! gateway costs no CPU.
//!
//! The TUN side copies each inner packet once between the kernel's TUN buffer and a UMEM
//! frame; removing that copy is the job of the AF_XDP LAN side.

mod stats;

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

pub use stats::{WorkerCounter, WorkerStats, WorkerTotals};

use crate::pipeline::{
    self, EndpointSeen, Events, FrameRef, HEADROOM, HandshakeReason, L2Info, TAILROOM, Verdict,
};
use crate::sessions::{PeerId, SnapshotReader};
use crate::time::Time;
use crate::tun::gro::TcpCoalescer;
use crate::tun::{SCRATCH_LEN, TunQueue};
use crate::xsk::{Frame, Packet, XskSocket};

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
    /// Empty rounds to spin before sleeping in `poll`.
    pub busy_poll_rounds: u32,
    /// The control plane's time origin: sessions are timed against it.
    pub origin: Instant,
    /// Fault tests only: panic once this many frames were received.
    pub panic_after_frames: Option<u64>,
    /// Report [`WorkerEvent::UnknownIndex`] (HA nodes take a partner's peer over when its
    /// traffic arrives); off otherwise, so garbage indices cost the control plane nothing.
    pub report_unknown_indices: bool,
}

/// Everything a worker owns.
#[derive(Debug)]
pub struct Worker {
    /// The AF_XDP socket of the worker's queue.
    pub socket: XskSocket,
    /// Free UMEM frames.
    pub pool: Vec<Frame>,
    /// The worker's TUN queue.
    pub tun: TunQueue,
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
/// Frames kept back from the fill ring for inner packets on their way out.
const TX_RESERVE: usize = 4 * BATCH;
/// A peer's event is sent at most this often per worker (its packets keep asking until the
/// control plane acts).
const EVENT_REPEAT: Duration = Duration::from_millis(100);

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
        let mut idle_rounds = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let now = Time::from_duration(self.config.origin.elapsed());
            let moved = self.round(now, &mut state);
            self.stats.publish(&state.totals);
            if moved > 0 {
                idle_rounds = 0;
                continue;
            }
            idle_rounds = idle_rounds.saturating_add(1);
            if idle_rounds > self.config.busy_poll_rounds {
                state.count(WorkerCounter::Sleeps, 1);
                self.sleep();
            }
        }
        self.stats.publish(&state.totals);
    }

    /// One batch each way; returns how many frames moved.
    fn round(&mut self, now: Time, state: &mut LoopState) -> usize {
        self.recycle();
        let received = self.wan_to_inner(now, state);
        let sent = self.inner_to_wan(now, state);
        self.report_events(now, state);
        received + sent
    }

    /// Takes back sent frames and keeps the fill ring stocked (minus a reserve for TX).
    fn recycle(&mut self) {
        let socket = &mut self.socket;
        socket
            .completion
            .reclaim(&mut self.pool, socket.completion.size() as usize);
        if self.pool.len() > TX_RESERVE {
            let spare = self.pool.len() - TX_RESERVE;
            socket.fill.fill(&mut self.pool, spare);
        }
        let _ = socket.wake_rx();
    }

    fn wan_to_inner(&mut self, now: Time, state: &mut LoopState) -> usize {
        let count = self.socket.rx.receive(&mut state.rx, BATCH);
        if count == 0 {
            return 0;
        }
        state.count(WorkerCounter::RxFrames, count as u64);
        if let Some(limit) = self.config.panic_after_frames {
            let received = state.totals.get(WorkerCounter::RxFrames);
            assert!(
                received < limit,
                "fault test: worker panics after {limit} frames"
            );
        }
        let umem = self.socket.umem().clone();
        let snapshot = self.sessions.load();
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
        let tun = &self.tun;
        let write_errors = std::cell::Cell::new(0u64);
        let mut write = |header: &_, packet: &[u8]| {
            if tun.write_with_header(header, packet).is_err() {
                write_errors.set(write_errors.get() + 1);
            }
            Ok::<(), ()>(())
        };
        for (mut packet, verdict) in state.rx.drain(..).zip(state.verdicts) {
            if let Verdict::ToInner { offset, len, .. } = verdict {
                let frame = umem.packet_frame_mut(&mut packet);
                if tun.vnet_hdr() {
                    let _ = state
                        .coalescer
                        .push(&frame[offset..offset + len], &mut write);
                } else if tun.write_packet(&frame[offset..offset + len]).is_err() {
                    write_errors.set(write_errors.get() + 1);
                }
            }
            self.pool.push(packet.into_frame());
        }
        let _ = state.coalescer.flush(&mut write);
        state.count(WorkerCounter::TunWriteErrors, write_errors.get());
        count
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
            self.encap_chunk(now, state, count);
        }
        self.transmit(state);
        moved
    }

    /// Encapsulates the first `count` outgoing packets: sealed ones move to the TX list,
    /// dropped ones back to the pool.
    fn encap_chunk(&mut self, now: Time, state: &mut LoopState, count: usize) {
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
        let frame_size = umem.frame_size();
        for (mut packet, verdict) in state.outgoing.drain(..count).zip(state.verdicts) {
            match verdict {
                Verdict::ToOuter { offset, len }
                    if packet.set_window(offset as u32, len as u32, frame_size) =>
                {
                    state.tx.push(packet);
                }
                _ => self.pool.push(packet.into_frame()),
            }
        }
    }

    /// Puts the TX list on the ring and kicks the kernel; a ring that stays full drops the
    /// rest (counted) rather than stall the worker.
    fn transmit(&mut self, state: &mut LoopState) {
        let queued = state.tx.len() as u64;
        for _attempt in 0..8 {
            if state.tx.is_empty() {
                break;
            }
            self.socket.tx.transmit(&mut state.tx);
            let _ = self.socket.kick_tx();
            if !state.tx.is_empty() {
                let socket = &mut self.socket;
                socket
                    .completion
                    .reclaim(&mut self.pool, socket.completion.size() as usize);
            }
        }
        let dropped = state.tx.len() as u64;
        state.count(WorkerCounter::TxFrames, queued - dropped);
        state.count(WorkerCounter::TxRingFull, dropped);
        for packet in state.tx.drain(..) {
            self.pool.push(packet.into_frame());
        }
        if self.socket.tx.pending() > 0 {
            let _ = self.socket.kick_tx();
        }
    }

    fn report_events(&mut self, now: Time, state: &mut LoopState) {
        let LoopState {
            events,
            recent,
            totals,
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
        totals.extra[WorkerCounter::EventsLost as usize] +=
            lost + std::mem::take(&mut events.overflowed);
    }

    fn sleep(&self) {
        let mut fds = [
            libc::pollfd {
                fd: self.socket.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.tun.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let millis = MAX_SLEEP.as_millis() as libc::c_int;
        // SAFETY: `fds` is a live array of two initialised pollfd structs for the call's
        // duration; poll only writes their `revents`. Errors (EINTR) just end the sleep.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    }
}

/// Per-worker buffers, allocated once before the loop.
struct LoopState {
    rx: Vec<Packet>,
    outgoing: Vec<Packet>,
    tx: Vec<Packet>,
    verdicts: [Verdict; BATCH],
    events: Events,
    totals: WorkerTotals,
    scratch: Box<[u8]>,
    coalescer: TcpCoalescer,
    recent: RecentEvents,
}

impl LoopState {
    fn new() -> Self {
        Self {
            rx: Vec::with_capacity(BATCH),
            // A GSO read can add up to 64 KB / 576 B segments past the batch limit.
            outgoing: Vec::with_capacity(BATCH + 128),
            tx: Vec::with_capacity(BATCH + 128),
            verdicts: [Verdict::Consumed; BATCH],
            events: Events::new(),
            totals: WorkerTotals::default(),
            scratch: vec![0u8; SCRATCH_LEN].into_boxed_slice(),
            coalescer: TcpCoalescer::new(),
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
