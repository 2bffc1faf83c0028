//! Send counters taken in per-batch blocks: workers sealing for one peer at once never send
//! two messages under the same counter, a block is never larger than the batch needs, and
//! the counters of all workers stay close together (inside the receiver's replay window).

mod pipeline_support;

use std::collections::HashSet;
use std::sync::Arc;

use pipeline_support::*;
use warpline_dataplane::pipeline::{COUNTER_BLOCK, DropCounters, Events, Verdict};
use warpline_dataplane::replay::WINDOW_SIZE;

const THREADS: usize = 4;
const BATCHES: usize = 300;
const BATCH: usize = 64;

/// The counter of the transport message in an IPv4 outer frame.
fn counter_of(frame: &[u8]) -> u64 {
    let message = &frame[verify_outer(frame, None, false)];
    u64::from_le_bytes(message[8..16].try_into().unwrap())
}

#[test]
fn concurrent_batches_for_one_peer_never_reuse_a_counter() {
    let sender = Arc::new(side_a(false, 0));
    let inners: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| inner_packet(v4([10, 1, 0, 1]), v4([10, 2, 0, 1]), 100 + i, 1))
        .collect();
    let per_thread: Vec<Vec<Vec<u64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (sender, inners) = (Arc::clone(&sender), &inners);
                s.spawn(move || {
                    (0..BATCHES)
                        .map(|_| {
                            let (buffers, verdicts) = encap(
                                ESTABLISHED,
                                &sender,
                                &l2_a(None),
                                inners,
                                &mut DropCounters::default(),
                                &mut Events::new(),
                            );
                            buffers
                                .iter()
                                .zip(verdicts)
                                .map(|(buf, verdict)| {
                                    assert!(matches!(verdict, Verdict::ToOuter { .. }));
                                    counter_of(&outer_frame(buf, verdict))
                                })
                                .collect()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<u64> = per_thread.iter().flatten().flatten().copied().collect();
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a counter was used twice");
    // One batch of 64 frames to one peer takes 64 / COUNTER_BLOCK blocks and wastes none.
    let max = *all.iter().max().unwrap();
    assert_eq!(
        max + 1,
        all.len() as u64,
        "whole blocks of one peer's batches leave no gap"
    );
    // Within a batch a worker's counters rise one by one, block after block.
    for batch in per_thread.iter().flatten() {
        for pair in batch.chunks(COUNTER_BLOCK as usize) {
            assert!(pair.windows(2).all(|w| w[1] == w[0] + 1), "{pair:?}");
        }
    }
    assert!(THREADS as u64 * BATCH as u64 * 2 < WINDOW_SIZE);
}

#[test]
fn a_batch_alternating_between_peers_stays_unique() {
    // Two routes to the same session's peer would not alternate blocks, so alternate
    // destinations inside and outside the tunnel: dropped frames take no counter.
    let sender = side_a(false, 0);
    let inners: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| {
            let dst = if i % 2 == 0 {
                [10, 2, 0, 1]
            } else {
                [10, 9, 0, 1]
            };
            inner_packet(v4([10, 1, 0, 1]), v4(dst), 120, 1)
        })
        .collect();
    let (buffers, verdicts) = encap(
        ESTABLISHED,
        &sender,
        &l2_a(None),
        &inners,
        &mut DropCounters::default(),
        &mut Events::new(),
    );
    let counters: Vec<u64> = buffers
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| matches!(v, Verdict::ToOuter { .. }))
        .map(|(buf, v)| counter_of(&outer_frame(buf, v)))
        .collect();
    assert_eq!(counters.len(), BATCH / 2);
    assert_eq!(counters, (0..BATCH as u64 / 2).collect::<Vec<_>>());
}
