//! The lock-free replay window under real concurrency: every counter accepted at most once,
//! and none lost while it is inside the window.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use warpline_dataplane::replay::{ReplayError, WINDOW_SIZE};
use warpline_dataplane::sessions::AtomicReplayWindow;

const THREADS: usize = 4;

/// A cheap deterministic shuffle with bounded displacement: swaps within blocks of `spread`.
fn jitter(counters: &mut [u64], seed: u64, spread: usize) {
    let mut x = seed | 1;
    for chunk in counters.chunks_mut(spread) {
        for i in (1..chunk.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.swap(i, (x % (i as u64 + 1)) as usize);
        }
    }
}

/// Runs `THREADS` threads, thread `t` offering `plan(t)`; returns how often each counter was
/// accepted and the window.
fn race(total: u64, plan: impl Fn(usize) -> Vec<u64>) -> (Vec<u8>, Arc<AtomicReplayWindow>) {
    let window = Arc::new(AtomicReplayWindow::new());
    let accepted: Arc<Vec<AtomicU8>> = Arc::new((0..total).map(|_| AtomicU8::new(0)).collect());
    let too_old: Arc<Vec<AtomicU8>> = Arc::new((0..total).map(|_| AtomicU8::new(0)).collect());
    let start = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let counters = plan(t);
            let (window, accepted, too_old, start) = (&window, &accepted, &too_old, &start);
            s.spawn(move || {
                start.wait();
                for c in counters {
                    // As the pipeline does: check, (decrypt), accept.
                    let result = window.check(c).and_then(|()| window.accept(c));
                    match result {
                        Ok(()) => {
                            accepted[c as usize].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(ReplayError::TooOld) => {
                            too_old[c as usize].store(1, Ordering::Relaxed);
                        }
                        Err(ReplayError::Replayed) => {}
                        Err(ReplayError::LimitReached) => panic!("limit"),
                    }
                }
            });
        }
    });
    let highest = window.highest().expect("something was accepted");
    for (c, flag) in too_old.iter().enumerate() {
        if flag.load(Ordering::Relaxed) == 1 {
            assert!(
                c as u64 + WINDOW_SIZE <= highest,
                "counter {c} refused as too old, but the window only reached {highest}"
            );
        }
    }
    let counts = accepted.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    (counts, window)
}

#[test]
fn overlapping_feeds_inside_the_window_accept_each_counter_exactly_once() {
    // Every thread offers every counter of a range that fits the window, in its own order:
    // nothing can fall out of the window, so each must be accepted exactly once.
    for round in 0..20u64 {
        let total = WINDOW_SIZE;
        let (counts, window) = race(total, |t| {
            let mut c: Vec<u64> = (0..total).collect();
            jitter(&mut c, round * 31 + t as u64 + 1, 512);
            c
        });
        assert!(counts.iter().all(|&n| n == 1), "round {round}");
        assert_eq!(window.highest(), Some(total - 1));
    }
}

#[test]
fn disjoint_and_overlapping_long_runs_never_accept_twice() {
    let total = 400_000u64;
    // Disjoint: thread t offers counters t, t + N, ... (a peer's flows spread by RSS); each
    // counter is offered once, so each must be accepted unless it fell out of the window.
    let (counts, _) = race(total, |t| {
        let mut c: Vec<u64> = (t as u64..total).step_by(THREADS).collect();
        jitter(&mut c, t as u64 + 7, 64);
        c
    });
    assert!(counts.iter().all(|&n| n <= 1));
    let lost = counts.iter().filter(|&&n| n == 0).count();
    // Threads run at different speeds, so some counters can legitimately fall behind the
    // window; `race` already checked each such refusal against the final window.
    eprintln!("disjoint: {lost} of {total} fell behind the window");

    // Overlapping: every counter offered by two threads (a duplicated stream).
    let (counts, _) = race(total, |t| {
        let mut c: Vec<u64> = (0..total).filter(|c| (c % 2) as usize == t % 2).collect();
        jitter(&mut c, t as u64 + 99, 128);
        c
    });
    assert!(
        counts.iter().all(|&n| n <= 1),
        "a counter was accepted twice"
    );
}
