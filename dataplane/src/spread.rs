//! One tunnel over many cores (`Spread = on`): a worker hands chunks of a received batch to
//! the other workers for decryption (or, for a batch from the LAN socket, encryption) and
//! takes them back in the order it handed them out.
//!
//! A site-to-site tunnel is one peer with one outer 5-tuple, so the NIC's RSS puts all of its
//! packets on one queue, and one worker would do all of its decryption. Here the receiving
//! worker (the *dispatcher*) splits each batch into chunks of [`CHUNK`] frames and deals them
//! round robin to itself and its *helpers*, over one pair of wait-free single-producer rings
//! per (dispatcher, helper) ([`rtrb`]). Only frame descriptors move; the frames stay where
//! the dispatcher's socket received them, in its UMEM, and a helper decrypts them in place
//! there (the frames of a chunk belong to whoever holds the chunk, as [`Packet`] ownership
//! already guarantees).
//!
//! ## Why order is kept
//!
//! The dispatcher records where each chunk went, in a FIFO, in the order the frames arrived.
//! It takes results back only from the front of that FIFO: a chunk dealt to itself is done at
//! once; a chunk dealt to helper *h* is the next one out of *h*'s return ring, because *h*
//! works through its inbound ring in order and the ring is FIFO. When the front chunk is not
//! back yet the dispatcher stops and tries again next round, so frames leave the worker
//! exactly in the order they came in: TCP inside the tunnel sees no reordering that the
//! wire did not cause. The cost is head-of-line waiting on the slowest chunk, bounded by the
//! ring depths.
//!
//! ## Why the replay window stays correct
//!
//! Helpers check and update the session's receive window concurrently; that window is the
//! lock-free one ([`crate::sessions::AtomicReplayWindow`]), built for exactly this: a
//! counter is accepted once, whichever thread sees it, and only after its tag verified.
//!
//! Backpressure, never blocking: the dispatcher receives only as many frames as it has free
//! chunks for (the rest wait in the NIC's ring), and a chunk whose helper's ring is full is
//! decrypted by the dispatcher itself.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rtrb::{Consumer, Producer, RingBuffer};

use crate::pipeline::{self, DropCounters, Events, FrameRef, L2Info, Verdict};
use crate::sessions::Snapshot;
use crate::time::Time;
use crate::xsk::{Packet, Umem};

/// Frames per chunk: small enough to spread a 64-frame batch over four workers, large enough
/// that a ring operation per chunk costs little beside 16 AEAD operations.
pub const CHUNK: usize = 16;
/// Chunks a dispatcher may have out at one helper.
const LINK_DEPTH: usize = 8;
/// Chunks a helper takes from one dispatcher per round, so it gets back to its own queue.
const HELP_PER_ROUND: usize = 4;

/// What a chunk's frames need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Received transport frames, to open.
    Decap,
    /// Inner packets (from the LAN socket), to seal for this side of the wire.
    Encap(L2Info),
}

/// A chunk of a dispatcher's frames and, once processed, their verdicts, counters and
/// events.
#[derive(Debug)]
pub struct Chunk {
    /// What to do with the frames.
    pub job: Job,
    /// The frames, in arrival order.
    pub packets: Vec<Packet>,
    /// One verdict per frame.
    pub verdicts: [Verdict; CHUNK],
    /// The pipeline's counters for these frames.
    pub counters: DropCounters,
    /// The pipeline's events for these frames.
    pub events: Events,
    /// The session table as the dispatcher saw it when dealing the chunk: the helper opens
    /// the frames with it, so a session the dispatcher already knows (a fresh rekey) is never
    /// missing at the helper, and every chunk of a batch sees the same table.
    snapshot: Option<Arc<Snapshot>>,
}

impl Chunk {
    fn new() -> Box<Self> {
        Box::new(Self {
            job: Job::Decap,
            packets: Vec::with_capacity(CHUNK),
            verdicts: [Verdict::Consumed; CHUNK],
            counters: DropCounters::default(),
            events: Events::new(),
            snapshot: None,
        })
    }

    /// Opens or seals the chunk's frames in place in `umem`.
    fn run(&mut self, umem: &Umem, now: Time, snapshot: &Snapshot) {
        let count = self.packets.len();
        let mut frames: [FrameRef<'_>; CHUNK] =
            std::array::from_fn(|_| FrameRef::new(&mut [], 0, 0));
        for (slot, packet) in frames.iter_mut().zip(self.packets.iter_mut()) {
            let (offset, len) = (packet.offset() as usize, packet.len() as usize);
            *slot = FrameRef::new(umem.packet_frame_mut(packet), offset, len);
        }
        match self.job {
            Job::Decap => pipeline::decap_batch(
                now,
                snapshot,
                &mut frames[..count],
                &mut self.verdicts[..count],
                &mut self.counters,
                &mut self.events,
            ),
            Job::Encap(l2) => pipeline::encap_batch(
                now,
                snapshot,
                &mut frames[..count],
                &mut self.verdicts[..count],
                &mut self.counters,
                &mut self.events,
                &l2,
            ),
        }
    }
}

/// Wakes a worker sleeping in `poll` when another worker gives it chunks (an eventfd).
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    fn new() -> io::Result<Arc<Self>> {
        // SAFETY: plain eventfd(2) call; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Arc::new(Self {
            fd,
            sleeping: AtomicBool::new(false),
        }))
    }

    /// Wakes the worker if it sleeps (or is about to).
    pub fn wake(&self) {
        // Pairs with the fence in `about_to_sleep`: either this load sees the flag, or the
        // sleeper's look at its rings after raising it sees the chunk pushed before.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 readable bytes to our own eventfd; a full counter (EAGAIN)
            // means a wake-up is pending anyway.
            unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }

    /// Marks the worker as going to sleep: chunks given from now on wake it.
    pub fn about_to_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Marks the worker awake and clears any pending wake-up.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `buf`; EAGAIN (nothing pending) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A dispatcher's end of its link to one helper.
struct ToHelper {
    chunks: Producer<Box<Chunk>>,
    done: Consumer<Box<Chunk>>,
    helper: Arc<Waker>,
}

/// A helper's end of its link from one dispatcher, with the dispatcher's UMEM.
struct FromDispatcher {
    chunks: Consumer<Box<Chunk>>,
    done: Producer<Box<Chunk>>,
    umem: Umem,
}

/// Where a dealt chunk is.
enum InFlight {
    /// Decapsulated by the dispatcher itself.
    Local(Box<Chunk>),
    /// Out at this helper.
    Helper(usize),
}

/// One worker's part in spreading: links to its helpers and from its dispatchers, and the
/// chunks it dealt, in order.
pub struct Spread {
    helpers: Vec<ToHelper>,
    dispatchers: Vec<FromDispatcher>,
    waker: Arc<Waker>,
    spare: Vec<Box<Chunk>>,
    in_flight: VecDeque<InFlight>,
    /// Round robin over the helpers, then the worker itself (`== helpers.len()`).
    next: usize,
}

impl std::fmt::Debug for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spread")
            .field("helpers", &self.helpers.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Spread {
    /// Links every worker with every other, both ways: worker `i` dispatches into `umems[i]`.
    /// Returns one `Spread` per worker, in the same order.
    pub fn mesh(umems: &[Umem]) -> io::Result<Vec<Spread>> {
        let wakers = umems
            .iter()
            .map(|_| Waker::new())
            .collect::<io::Result<Vec<_>>>()?;
        let mut spreads: Vec<Spread> = wakers
            .iter()
            .map(|waker| Spread {
                helpers: Vec::new(),
                dispatchers: Vec::new(),
                waker: Arc::clone(waker),
                spare: Vec::new(),
                in_flight: VecDeque::new(),
                next: 0,
            })
            .collect();
        for (dispatcher, umem) in umems.iter().enumerate() {
            for helper in (0..umems.len()).filter(|&h| h != dispatcher) {
                let (to_helper, from_dispatcher) = RingBuffer::new(LINK_DEPTH);
                let (to_dispatcher, from_helper) = RingBuffer::new(LINK_DEPTH);
                spreads[dispatcher].helpers.push(ToHelper {
                    chunks: to_helper,
                    done: from_helper,
                    helper: Arc::clone(&wakers[helper]),
                });
                spreads[helper].dispatchers.push(FromDispatcher {
                    chunks: from_dispatcher,
                    done: to_dispatcher,
                    umem: umem.clone(),
                });
            }
        }
        for spread in &mut spreads {
            let chunks = (spread.helpers.len() + 1) * LINK_DEPTH;
            spread.spare = (0..chunks).map(|_| Chunk::new()).collect();
            spread.in_flight.reserve(chunks);
        }
        Ok(spreads)
    }

    /// This worker's waker, to sleep on.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Whether nothing this worker dealt is still out or waiting to be taken back.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Frames this worker can take into chunks now.
    pub fn capacity(&self) -> usize {
        self.spare.len() * CHUNK
    }

    /// Whether another worker gave this one chunks to decapsulate.
    pub fn has_help_to_give(&self) -> bool {
        self.dispatchers.iter().any(|link| !link.chunks.is_empty())
    }

    /// Deals `packets` out in chunks for `job`, round robin over the helpers and this worker;
    /// this worker's own chunks are processed at once. Helpers use the same `snapshot`. Takes
    /// at most [`capacity`](Self::capacity) frames from the front; what does not fit stays in
    /// `packets`. Returns how many chunks went to helpers.
    pub fn dispatch(
        &mut self,
        packets: &mut Vec<Packet>,
        umem: &Umem,
        now: Time,
        snapshot: &Arc<Snapshot>,
        job: Job,
    ) -> usize {
        let mut sent = 0;
        let take = packets.len().min(self.capacity());
        let mut rest = packets.drain(..take);
        while let Some(mut chunk) = self.spare.pop() {
            chunk.packets.extend(rest.by_ref().take(CHUNK));
            if chunk.packets.is_empty() {
                self.spare.push(chunk);
                break;
            }
            chunk.job = job;
            let target = self.next;
            self.next = (self.next + 1) % (self.helpers.len() + 1);
            if let Some(link) = self.helpers.get_mut(target) {
                // One reference count per chunk, not per frame.
                if !chunk
                    .snapshot
                    .as_ref()
                    .is_some_and(|held| Arc::ptr_eq(held, snapshot))
                {
                    chunk.snapshot = Some(Arc::clone(snapshot));
                }
                match link.chunks.push(chunk) {
                    Ok(()) => {
                        link.helper.wake();
                        self.in_flight.push_back(InFlight::Helper(target));
                        sent += 1;
                        continue;
                    }
                    Err(rtrb::PushError::Full(back)) => chunk = back,
                }
            }
            chunk.run(umem, now, snapshot);
            self.in_flight.push_back(InFlight::Local(chunk));
        }
        sent
    }

    /// The next dealt chunk in dealing order, if it is back; `None` while it is still out.
    /// Give it back with [`recycle`](Self::recycle) once its packets are taken.
    pub fn next_done(&mut self) -> Option<Box<Chunk>> {
        let chunk = match self.in_flight.front()? {
            InFlight::Local(_) => match self.in_flight.pop_front() {
                Some(InFlight::Local(chunk)) => chunk,
                _ => return None,
            },
            &InFlight::Helper(helper) => {
                let chunk = self.helpers[helper].done.pop().ok()?;
                self.in_flight.pop_front();
                chunk
            }
        };
        Some(chunk)
    }

    /// Takes back a chunk whose packets the caller moved out.
    pub fn recycle(&mut self, mut chunk: Box<Chunk>) {
        chunk.packets.clear();
        self.spare.push(chunk);
    }

    /// Decapsulates chunks other workers dealt to this one and sends them back; returns how
    /// many.
    pub fn help(&mut self, now: Time) -> usize {
        let mut helped = 0;
        for link in &mut self.dispatchers {
            for _ in 0..HELP_PER_ROUND {
                // The return ring has room for every chunk the dispatcher can have out here.
                if link.done.is_full() {
                    break;
                }
                let Ok(mut chunk) = link.chunks.pop() else {
                    break;
                };
                if let Some(snapshot) = chunk.snapshot.take() {
                    chunk.run(&link.umem, now, &snapshot);
                    chunk.snapshot = Some(snapshot);
                }
                if link.done.push(chunk).is_err() {
                    unreachable!("checked for room above");
                }
                helped += 1;
            }
        }
        helped
    }
}
