//! A lock-free anti-replay window that many workers can feed at once.
//!
//! Same contract as [`crate::replay::ReplayWindow`] (same [`WINDOW_SIZE`], same
//! [`REJECT_AFTER_MESSAGES`] limit, same errors), but `&self` everywhere, so one session can be
//! received on several cores (RSS may spread a peer's flows; after roaming its packets may land
//! on another queue) without a lock.
//!
//! ## Why tagged words, not the plain RFC 6479 ring
//!
//! The textbook lock-free version of RFC 6479 (check; after authentication advance `highest`
//! with a CAS loop that clears the words it passes, then `fetch_or` the bit) has two races:
//! a thread that advances the window may clear a word *after* a racing thread set a bit for a
//! counter of the new lap in it (that bit is lost: the counter is accepted again later, a
//! replay), and a thread holding a stale `highest` may set a bit of an old lap into a word that
//! now stands for the new lap (a phantom bit: a fresh counter is refused). Ordering the clear
//! before or after the publication of `highest` moves the race, it does not remove it.
//!
//! Here each ring word carries the block it describes: the high 32 bits are the block number
//! (`counter / 32`, truncated to 32 bits) and the low 32 bits the bitmap of that block. A word
//! whose tag is not the counter's block is stale and is *replaced*, with one CAS, by the
//! counter's block with its bit set; nobody ever clears words. Accepting is:
//!
//! 1. `next.fetch_max(counter + 1)` (the window moves before any bit of the new lap exists);
//! 2. a CAS loop on the counter's word: same tag → set the bit (already set → [`Replayed`]);
//!    other tag → re-read `next` *after* the word (Acquire): if the counter fell behind the
//!    window it is [`TooOld`], otherwise the word holds an older lap and is replaced.
//!
//! A word only ever moves to a newer block: whoever wrote a newer block raised `next` before
//! its CAS, so a thread that sees that word also sees the raised `next` and gives up. So every
//! counter is accepted at most once and no counter inside the window is lost.
//!
//! ## The counter span
//!
//! The tag is the block number truncated to 32 bits, so the words of blocks `257 * 2^32`
//! apart (same slot, same tag) would be mistaken for each other: a fresh counter that far
//! above an old word would find "its" bit set, be refused as replayed after it had already
//! moved `next`, and the session would be stuck. Rather than widen the word (fewer counters
//! per word, more memory per session), a window takes counters only within
//! [`MAX_COUNTER_SPAN`] (2^44) of where it started (0, or the checkpoint it resumed from);
//! beyond that it answers [`LimitReached`], as for the protocol's own limit: the key must be
//! replaced. Within that span every word's block is less than 2^39 + 257 blocks from every
//! other, so tags are exact. No real sender gets near it: a key lives at most 180 s, and 2^44
//! counters in that time would be 10^11 packets per second; an HA pair's counter epochs move a
//! sender up by at most 2^37 per promotion, so 128 promotions fit into one key's life.
//!
//! The price is memory: 32 counters per 64-bit word, so 257 words (2 KiB) per session for the
//! 8192-counter window, against 1 KiB for the single-threaded window.
//!
//! [`Replayed`]: ReplayError::Replayed
//! [`TooOld`]: ReplayError::TooOld
//! [`LimitReached`]: ReplayError::LimitReached

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::replay::{REJECT_AFTER_MESSAGES, ReplayError, WINDOW_SIZE};

/// Counters per ring word (the low half of the word).
const BLOCK_BITS: u64 = 32;

/// Words in the ring: the window's blocks plus one spare, so the block at the trailing edge is
/// never the one the leading edge writes into.
pub const RING_WORDS: usize = (WINDOW_SIZE / BLOCK_BITS) as usize + 1;

const _: () = assert!(WINDOW_SIZE.is_multiple_of(BLOCK_BITS));

/// How far above its starting point a window accepts counters (see the module docs): small
/// enough that no two words' blocks can share a 32-bit tag, far beyond any real sender.
pub const MAX_COUNTER_SPAN: u64 = 1 << 44;

// Two words alias only when their blocks are `RING_WORDS * 2^32` apart; the span, the window
// and the spare block must stay well inside that.
const _: () =
    assert!(MAX_COUNTER_SPAN / BLOCK_BITS + RING_WORDS as u64 <= (RING_WORDS as u64) << 31);

/// The anti-replay window of one receiving key, shared by every worker. Fixed size, no
/// allocation after creation, no lock.
pub struct AtomicReplayWindow {
    /// The highest accepted counter plus one; 0 while nothing was accepted.
    next: AtomicU64,
    /// Counters at or above this are refused with [`ReplayError::LimitReached`]: the
    /// protocol's limit or the end of [`MAX_COUNTER_SPAN`], whichever comes first.
    limit: u64,
    /// `tag << 32 | bits`: bit `c % 32` set once counter `c` of block `tag` was accepted.
    ring: Box<[AtomicU64; RING_WORDS]>,
}

impl AtomicReplayWindow {
    /// A window that has accepted nothing yet.
    pub fn new() -> Self {
        Self::starting_at(0)
    }

    fn starting_at(origin: u64) -> Self {
        Self {
            next: AtomicU64::new(0),
            limit: origin
                .saturating_add(MAX_COUNTER_SPAN)
                .min(REJECT_AFTER_MESSAGES),
            ring: Box::new(std::array::from_fn(|_| AtomicU64::new(EMPTY))),
        }
    }

    /// Whether `counter` would be accepted now. Read-only: call it before decrypting and
    /// [`accept`](Self::accept) after the tag authenticated, so forgeries never move the window.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= self.limit {
            return Err(ReplayError::LimitReached);
        }
        let next = self.next.load(Ordering::Acquire);
        if counter + WINDOW_SIZE < next {
            return Err(ReplayError::TooOld);
        }
        if counter >= next {
            return Ok(());
        }
        let word = self.ring[slot(counter)].load(Ordering::Acquire);
        if word >> 32 == tag(counter) && word & bit(counter) != 0 {
            return Err(ReplayError::Replayed);
        }
        Ok(())
    }

    /// Marks an authenticated `counter` as received. Fails with [`ReplayError::Replayed`] when
    /// a racing thread accepted the same counter first: only one of them may deliver it.
    pub fn accept(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= self.limit {
            return Err(ReplayError::LimitReached);
        }
        // Only a new highest needs the read-modify-write; a stale read just takes that path.
        let seen = self.next.load(Ordering::Acquire);
        let before = if counter >= seen {
            self.next.fetch_max(counter + 1, Ordering::AcqRel)
        } else {
            seen
        };
        if counter + WINDOW_SIZE < before {
            return Err(ReplayError::TooOld);
        }
        let word = &self.ring[slot(counter)];
        let (tag, bit) = (tag(counter), bit(counter));
        let mut current = word.load(Ordering::Acquire);
        loop {
            let new = if current >> 32 == tag {
                if current & bit != 0 {
                    return Err(ReplayError::Replayed);
                }
                current | bit
            } else {
                // Another block lives here. Newer blocks raise `next` before they are written,
                // so reading `next` after the word tells whether ours is now behind the window.
                if counter + WINDOW_SIZE < self.next.load(Ordering::Acquire) {
                    return Err(ReplayError::TooOld);
                }
                tag << 32 | bit
            };
            match word.compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// A window resumed from a checkpoint (a standby taking over a session): every counter up
    /// to `highest` counts as received, so nothing at or below the checkpoint is accepted
    /// again; counters above it are accepted once, as usual.
    pub fn resumed_after(highest: Option<u64>) -> Self {
        let Some(highest) = highest.filter(|h| *h < REJECT_AFTER_MESSAGES) else {
            return Self::new();
        };
        let window = Self::starting_at(highest);
        window.next.store(highest + 1, Ordering::Relaxed);
        // Real block numbers pick the slot; only the stored tag is truncated.
        let last_block = highest / BLOCK_BITS;
        let first_block = last_block.saturating_sub(RING_WORDS as u64 - 1);
        for block in first_block..=last_block {
            let bits = if block == last_block {
                u64::MAX >> (63 - highest % BLOCK_BITS) & 0xffff_ffff
            } else {
                0xffff_ffff
            };
            let counter = block * BLOCK_BITS;
            window.ring[slot(counter)].store(tag(counter) << 32 | bits, Ordering::Relaxed);
        }
        window
    }

    /// The first counter this window refuses with [`ReplayError::LimitReached`].
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The highest accepted counter, if any.
    pub fn highest(&self) -> Option<u64> {
        self.next.load(Ordering::Acquire).checked_sub(1)
    }
}

impl Default for AtomicReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AtomicReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicReplayWindow")
            .field("highest", &self.highest())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// A word no counter's block can match before it is first written: block `u32::MAX` would need
/// counter 2^37 - 32, and its slot would then be replaced through the normal path anyway. The
/// bitmap half is empty, so even a tag match reads as "not seen".
const EMPTY: u64 = u64::MAX << 32;

fn slot(counter: u64) -> usize {
    ((counter / BLOCK_BITS) % RING_WORDS as u64) as usize
}

fn tag(counter: u64) -> u64 {
    (counter / BLOCK_BITS) & u64::from(u32::MAX)
}

fn bit(counter: u64) -> u64 {
    1 << (counter % BLOCK_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_window_refuses_everything_up_to_the_checkpoint() {
        for highest in [0u64, 31, 32, 100, 8191, 8192, 50_000] {
            let window = AtomicReplayWindow::resumed_after(Some(highest));
            assert_eq!(window.highest(), Some(highest));
            for counter in highest.saturating_sub(WINDOW_SIZE + 40)..=highest {
                assert!(
                    window.check(counter).is_err(),
                    "{counter} <= {highest} accepted"
                );
            }
            for counter in highest + 1..highest + 70 {
                assert_eq!(
                    window.check(counter),
                    Ok(()),
                    "{counter} > {highest} refused"
                );
                assert_eq!(window.accept(counter), Ok(()));
                assert_eq!(window.accept(counter), Err(ReplayError::Replayed));
            }
        }
        assert_eq!(AtomicReplayWindow::resumed_after(None).highest(), None);
    }
    use crate::replay::ReplayWindow;
    use proptest::prelude::*;

    fn counters() -> impl Strategy<Value = Vec<u64>> {
        // Mostly local moves (reorders, duplicates, window-edge cases), some far jumps.
        let step = prop_oneof![
            4 => -40i64..40,
            2 => -9000i64..9000,
            1 => 0i64..100_000,
            1 => Just(8192i64),
            1 => Just(-8192i64),
        ];
        prop::collection::vec(step, 1..400).prop_map(|steps| {
            let mut at = 20_000i64;
            steps
                .into_iter()
                .map(|s| {
                    at = (at + s).max(0);
                    at as u64
                })
                .collect()
        })
    }

    proptest! {
        /// Single-threaded, the lock-free window makes exactly the decisions of the
        /// single-threaded window (itself tested against a set-based model).
        #[test]
        fn agrees_with_the_sequential_window(counters in counters()) {
            let atomic = AtomicReplayWindow::new();
            let mut plain = ReplayWindow::new();
            for c in counters {
                prop_assert_eq!(atomic.check(c), plain.check(c), "check({})", c);
                prop_assert_eq!(atomic.accept(c), plain.accept(c), "accept({})", c);
                prop_assert_eq!(atomic.highest(), plain.highest());
            }
        }
    }

    /// The reproducer `decap_frames` found: two low counters, then one that lands on the
    /// same slot and 32-bit tag. It used to be refused as replayed after moving the window.
    #[test]
    fn a_counter_beyond_the_span_is_refused_before_it_moves_the_window() {
        let w = AtomicReplayWindow::new();
        assert_eq!(w.accept(0), Ok(()));
        assert_eq!(w.accept(1), Ok(()));
        let far = 0x4848_0000_0000_0000;
        assert_eq!(w.check(far), Err(ReplayError::LimitReached));
        assert_eq!(w.accept(far), Err(ReplayError::LimitReached));
        assert_eq!(w.highest(), Some(1), "a refused counter moved the window");
        assert_eq!(w.accept(2), Ok(()));
        let last = MAX_COUNTER_SPAN - 1;
        assert_eq!(w.accept(last), Ok(()));
        assert_eq!(w.accept(last), Err(ReplayError::Replayed));
        assert_eq!(w.accept(MAX_COUNTER_SPAN), Err(ReplayError::LimitReached));
    }

    /// Within the span, counters on the same slot with the same truncated tag never meet, so
    /// every decision matches the sequential window even after jumps of 2^32 blocks.
    #[test]
    fn far_jumps_inside_the_span_match_the_sequential_window() {
        let atomic = AtomicReplayWindow::new();
        let mut plain = ReplayWindow::new();
        let stride = (RING_WORDS as u64) << 32; // same slot, tag wraps once per 257 laps
        let mut counter = 3;
        while counter < MAX_COUNTER_SPAN {
            for c in [counter, counter, counter - 1, counter + 31] {
                assert_eq!(atomic.accept(c), plain.accept(c), "accept({c})");
            }
            counter += stride / 7 + 1;
        }
    }

    /// A checkpoint above 2^37 (an HA peer after a few promotions) must mark the ring words of
    /// the real blocks: this used to leave every counter up to the checkpoint acceptable.
    #[test]
    fn a_window_resumed_high_refuses_everything_up_to_the_checkpoint() {
        for highest in [
            1u64 << 37,
            (1 << 40) + 12_345,
            (33 << 32) + 7,
            REJECT_AFTER_MESSAGES - 1,
        ] {
            let window = AtomicReplayWindow::resumed_after(Some(highest));
            for counter in highest - WINDOW_SIZE - 40..=highest {
                assert!(
                    window.accept(counter).is_err(),
                    "{counter} <= {highest} accepted"
                );
            }
            if highest + 1 < window.limit() {
                assert_eq!(window.accept(highest + 1), Ok(()));
            }
        }
        let window = AtomicReplayWindow::resumed_after(Some(1 << 40));
        assert_eq!(window.limit(), (1 << 40) + MAX_COUNTER_SPAN);
    }

    #[test]
    fn limit_and_edges() {
        let w = AtomicReplayWindow::new();
        assert_eq!(
            w.accept(REJECT_AFTER_MESSAGES),
            Err(ReplayError::LimitReached)
        );
        assert_eq!(w.accept(0), Ok(()));
        assert_eq!(w.accept(0), Err(ReplayError::Replayed));
        assert_eq!(w.accept(WINDOW_SIZE), Ok(()));
        // The window holds WINDOW_SIZE counters below the highest: 0 just left it.
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        assert_eq!(w.check(1), Ok(()));
        assert_eq!(w.accept(1), Ok(()));
        assert_eq!(w.check(1), Err(ReplayError::Replayed));
        // Tags near the truncation boundary still work.
        let far = (u64::from(u32::MAX) + 3) * BLOCK_BITS;
        assert!(far < w.limit());
        assert_eq!(w.accept(far), Ok(()));
        assert_eq!(w.accept(far), Err(ReplayError::Replayed));
        assert_eq!(w.accept(far - 1), Ok(()));
    }
}
