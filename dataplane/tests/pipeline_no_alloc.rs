//! The data path allocates nothing per packet: after warm-up, `encap_batch` and
//! `decap_batch` over full 64-frame batches make no heap allocation at all, counted by a
//! global allocator that counts only while the calling thread has armed it.

mod pipeline_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use pipeline_support::*;
use warpline_dataplane::pipeline::{
    DropCounters, Events, FrameRef, HEADROOM, Verdict, decap_batch, encap_batch,
};
use warpline_dataplane::time::Time;

/// Forwards to the system allocator and counts the calls made by armed threads.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if ARMED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches only an atomic and a const thread-local.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `work` with this thread's allocations counted; how many it made.
fn allocations_in(work: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    ARMED.with(|armed| armed.set(true));
    work();
    ARMED.with(|armed| armed.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

const BATCH: usize = 64;
const NOW: Time = Time::from_secs(110);

#[test]
fn encap_and_decap_batches_allocate_nothing() {
    // The counter itself counts: a Vec made while armed is seen.
    assert_eq!(allocations_in(|| drop(Vec::<u8>::with_capacity(8))), 1);

    for (outer_v6, size) in [(false, 64), (false, MTU), (true, 64), (true, MTU)] {
        let a = side_a(outer_v6, 0);
        let b = side_b(outer_v6);
        let l2 = l2_a(None);
        let inners: Vec<Vec<u8>> = (0..BATCH)
            .map(|i| inner_packet(inner_a(false), inner_b(false), size, i as u8))
            .collect();
        let mut send_bufs: Vec<Vec<u8>> = inners.iter().map(|i| encap_buffer(i)).collect();
        let mut receive_bufs: Vec<Vec<u8>> = vec![vec![0u8; send_bufs[0].len()]; BATCH];
        let mut verdicts = vec![Verdict::ToControl; BATCH];
        let (mut counters, mut events) = (DropCounters::default(), Events::new());
        let (mut counted, mut delivered) = (0, 0);
        for round in 0..52 {
            // Refill the frames (the last round sealed them in place): not the data path.
            for (buf, inner) in send_bufs.iter_mut().zip(&inners) {
                buf[HEADROOM..HEADROOM + inner.len()].copy_from_slice(inner);
            }
            let mut frames: Vec<FrameRef<'_>> = send_bufs
                .iter_mut()
                .zip(&inners)
                .map(|(buf, inner)| FrameRef::new(buf, HEADROOM, inner.len()))
                .collect();
            let sealing = allocations_in(|| {
                encap_batch(
                    NOW,
                    &a,
                    &mut frames,
                    &mut verdicts,
                    &mut counters,
                    &mut events,
                    &l2,
                )
            });
            drop(frames);
            let mut lens = [0usize; BATCH];
            for ((out, buf), (verdict, len)) in receive_bufs
                .iter_mut()
                .zip(&send_bufs)
                .zip(verdicts.iter().zip(&mut lens))
            {
                let Verdict::ToOuter { offset, len: n } = *verdict else {
                    panic!("round {round}: encap gave {verdict:?}");
                };
                out[..n].copy_from_slice(&buf[offset..offset + n]);
                *len = n;
            }
            let mut frames: Vec<FrameRef<'_>> = receive_bufs
                .iter_mut()
                .zip(lens)
                .map(|(buf, len)| FrameRef::new(buf, 0, len))
                .collect();
            let opening = allocations_in(|| {
                decap_batch(
                    NOW,
                    &b,
                    &mut frames,
                    &mut verdicts,
                    &mut counters,
                    &mut events,
                )
            });
            drop(frames);
            delivered += verdicts
                .iter()
                .filter(|v| matches!(v, Verdict::ToInner { .. }))
                .count();
            // Two warm-up rounds: whatever is set up lazily on first use may allocate once.
            if round >= 2 {
                counted += sealing + opening;
            }
        }
        assert_eq!(
            delivered,
            52 * BATCH,
            "outer v6 {outer_v6}, {size} B: not every frame came through"
        );
        assert_eq!(
            counted, 0,
            "outer v6 {outer_v6}, {size} B: {counted} allocations in 50 rounds of {BATCH}-frame batches"
        );
    }
}
