//! Anti-replay window for the 64-bit counters of WireGuard transport messages.
//!
//! The bitmap is a ring of words indexed by `counter / 64` (RFC 6479): moving the window
//! forward only clears the words it passes, and never shifts the whole bitmap. The ring holds
//! one word more than the window needs, so the word at the trailing edge of the window is never
//! the word the leading edge is writing into.
//!
//! Use it in two steps around the AEAD: [`ReplayWindow::check`] before decrypting (cheap, no
//! mutation, so a forged packet cannot move the window), then [`ReplayWindow::accept`] once the
//! tag has authenticated the packet.

use std::fmt;

/// Counters at or above this are never accepted: the key must be renewed before the counter
/// gets there (WireGuard paper, section 6.1: 2^64 - 2^13 - 1).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// How many counters below the highest accepted one can still be accepted: a counter `c` is
/// within the window when `c + WINDOW_SIZE > highest`.
pub const WINDOW_SIZE: u64 = 8192;

const WORD_BITS: u64 = u64::BITS as u64;

// `check` adds WINDOW_SIZE to counters below the limit; that must not overflow.
const _: () = assert!(WINDOW_SIZE <= u64::MAX - REJECT_AFTER_MESSAGES);

/// Words in the ring: the window plus one spare word (RFC 6479, section 2).
pub const BITMAP_WORDS: usize = (WINDOW_SIZE / WORD_BITS) as usize + 1;

// The architecture asks for at least 8192 counters; the spare word needs a whole-word window.
const _: () = assert!(WINDOW_SIZE >= 8192 && WINDOW_SIZE.is_multiple_of(WORD_BITS));

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayError {
    /// This counter was already accepted.
    Replayed,
    /// The counter is further behind the highest accepted one than the window reaches.
    TooOld,
    /// The counter is at or above [`REJECT_AFTER_MESSAGES`]: the session must be rekeyed.
    LimitReached,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplayError::Replayed => "counter already received",
            ReplayError::TooOld => "counter is behind the replay window",
            ReplayError::LimitReached => "counter reached the per-key message limit",
        })
    }
}

impl std::error::Error for ReplayError {}

/// Which counters of one receiving key have been seen. Sans-IO, fixed size, no allocation.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest accepted counter plus one; 0 while nothing was accepted. Storing it shifted
    /// by one keeps "nothing yet" out of the hot path's comparisons and cannot overflow, since
    /// accepted counters stay below [`REJECT_AFTER_MESSAGES`].
    next: u64,
    /// Bit `c % 64` of word `(c / 64) % BITMAP_WORDS` is set once counter `c` is accepted.
    /// Invariant: no bit is set for a counter above the highest one.
    bitmap: [u64; BITMAP_WORDS],
}

impl ReplayWindow {
    /// A window that has accepted nothing yet.
    pub const fn new() -> Self {
        Self {
            next: 0,
            bitmap: [0; BITMAP_WORDS],
        }
    }

    /// Whether `counter` would be accepted now. Does not change the window: call it before
    /// decrypting, and [`accept`](Self::accept) after the packet authenticated.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(ReplayError::LimitReached);
        }
        if counter + WINDOW_SIZE < self.next {
            return Err(ReplayError::TooOld);
        }
        if counter >= self.next {
            return Ok(());
        }
        if self.bitmap[word_slot(counter)] & bit_mask(counter) != 0 {
            return Err(ReplayError::Replayed);
        }
        Ok(())
    }

    /// Marks `counter` as received, moving the window forward if it is the new highest.
    /// Re-checks first (another packet with the same counter may have been accepted since the
    /// [`check`](Self::check)), so on error the window is unchanged.
    pub fn accept(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        if counter >= self.next {
            self.clear_words_up_to(counter);
            self.next = counter + 1;
        }
        self.bitmap[word_slot(counter)] |= bit_mask(counter);
        Ok(())
    }

    /// The highest accepted counter, if any.
    pub fn highest(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    /// The window's state, for syncing a session to a standby: the highest accepted counter
    /// and the raw ring. [`from_parts`](Self::from_parts) restores it.
    pub fn to_parts(&self) -> (Option<u64>, [u64; BITMAP_WORDS]) {
        (self.highest(), self.bitmap)
    }

    /// Rebuilds a window from [`to_parts`](Self::to_parts). Bits that cannot be set in a real
    /// window (above `highest`, or any bit when `highest` is `None`) are cleared, so corrupt
    /// state can refuse counters a real window would too, but never breaks the window.
    ///
    /// Fails with [`ReplayError::LimitReached`] when `highest` is at or above
    /// [`REJECT_AFTER_MESSAGES`]: such a session can receive nothing more.
    pub fn from_parts(
        highest: Option<u64>,
        mut bitmap: [u64; BITMAP_WORDS],
    ) -> Result<Self, ReplayError> {
        let Some(highest) = highest else {
            return Ok(Self::new());
        };
        if highest >= REJECT_AFTER_MESSAGES {
            return Err(ReplayError::LimitReached);
        }
        // Bits above `highest` in its own word; all later words hold counters of the previous
        // lap of the ring, which are behind the window and get cleared as the window moves.
        let top_bit = highest % WORD_BITS;
        let keep_mask = if top_bit == WORD_BITS - 1 {
            u64::MAX
        } else {
            (1 << (top_bit + 1)) - 1
        };
        bitmap[word_slot(highest)] &= keep_mask;
        Ok(Self {
            next: highest + 1,
            bitmap,
        })
    }

    /// Clears the ring words after the current highest word, up to and including the word of
    /// `new_highest`: they hold counters that fell out of the window.
    fn clear_words_up_to(&mut self, new_highest: u64) {
        let Some(highest) = self.highest() else {
            // Nothing accepted yet: the invariant says the ring is already clear.
            return;
        };
        let current_word = highest / WORD_BITS;
        let new_word = new_highest / WORD_BITS;
        // A jump of a whole ring or more clears every word once.
        let words_to_clear = (new_word - current_word).min(BITMAP_WORDS as u64) as usize;
        let mut slot = word_slot((current_word + 1) * WORD_BITS);
        for _ in 0..words_to_clear {
            self.bitmap[slot] = 0;
            slot += 1;
            if slot == BITMAP_WORDS {
                slot = 0;
            }
        }
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("highest", &self.highest())
            .finish_non_exhaustive()
    }
}

fn word_slot(counter: u64) -> usize {
    ((counter / WORD_BITS) % BITMAP_WORDS as u64) as usize
}

fn bit_mask(counter: u64) -> u64 {
    1 << (counter % WORD_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// The specification, written as plainly as possible.
    #[derive(Default)]
    struct Model {
        seen: HashSet<u64>,
        highest: Option<u64>,
    }

    impl Model {
        fn check(&self, counter: u64) -> Result<(), ReplayError> {
            if counter >= REJECT_AFTER_MESSAGES {
                return Err(ReplayError::LimitReached);
            }
            if let Some(highest) = self.highest
                && counter + WINDOW_SIZE <= highest
            {
                return Err(ReplayError::TooOld);
            }
            if self.seen.contains(&counter) {
                return Err(ReplayError::Replayed);
            }
            Ok(())
        }

        fn accept(&mut self, counter: u64) -> Result<(), ReplayError> {
            self.check(counter)?;
            self.seen.insert(counter);
            self.highest = self.highest.max(Some(counter));
            Ok(())
        }
    }

    /// Feeds `counter` to both, asserting they agree on check and accept, that check does not
    /// mutate, and that an accepted counter is refused right after.
    fn step(window: &mut ReplayWindow, model: &mut Model, counter: u64) {
        let before = window.clone();
        let checked = window.check(counter);
        assert_eq!(*window, before, "check mutated the window");
        assert_eq!(checked, model.check(counter), "check({counter})");
        let accepted = window.accept(counter);
        assert_eq!(accepted, model.accept(counter), "accept({counter})");
        assert_eq!(
            accepted, checked,
            "accept disagreed with check on {counter}"
        );
        if accepted.is_err() {
            assert_eq!(*window, before, "a refused counter changed the window");
        } else {
            assert_eq!(window.check(counter), Err(ReplayError::Replayed));
        }
        assert_eq!(window.highest(), model.highest);
    }

    fn run(counters: impl IntoIterator<Item = u64>) -> ReplayWindow {
        let mut window = ReplayWindow::new();
        let mut model = Model::default();
        for counter in counters {
            step(&mut window, &mut model, counter);
        }
        window
    }

    #[test]
    fn counter_zero_is_accepted_once() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.highest(), None);
        assert_eq!(window.check(0), Ok(()));
        assert_eq!(window.accept(0), Ok(()));
        assert_eq!(window.highest(), Some(0));
        assert_eq!(window.accept(0), Err(ReplayError::Replayed));
    }

    #[test]
    fn check_alone_does_not_mark() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.check(5), Ok(()));
        assert_eq!(window.check(5), Ok(()));
        assert_eq!(window.accept(5), Ok(()));
        assert_eq!(window.check(5), Err(ReplayError::Replayed));
    }

    #[test]
    fn exact_window_edge() {
        let highest = 100_000;
        let mut window = ReplayWindow::new();
        window.accept(highest).unwrap();
        let oldest_in_window = highest - WINDOW_SIZE + 1;
        assert_eq!(window.check(oldest_in_window - 1), Err(ReplayError::TooOld));
        assert_eq!(window.accept(oldest_in_window), Ok(()));
        assert_eq!(window.accept(oldest_in_window), Err(ReplayError::Replayed));
        // Moving forward by one pushes that counter out.
        window.accept(highest + 1).unwrap();
        assert_eq!(window.check(oldest_in_window), Err(ReplayError::TooOld));
    }

    #[test]
    fn whole_window_behind_highest_is_usable() {
        let highest = WINDOW_SIZE * 3 + 17;
        let window =
            run(std::iter::once(highest).chain((highest - WINDOW_SIZE + 1..highest).rev()));
        for counter in highest - WINDOW_SIZE + 1..=highest {
            assert_eq!(window.check(counter), Err(ReplayError::Replayed));
        }
    }

    #[test]
    fn jump_beyond_whole_ring_forgets_everything_behind() {
        let mut window = ReplayWindow::new();
        for counter in 0..200 {
            window.accept(counter).unwrap();
        }
        let far = 200 + 5 * BITMAP_WORDS as u64 * WORD_BITS + 3;
        window.accept(far).unwrap();
        // Counters that share a ring slot with old, now cleared, words are fresh.
        for counter in far - WINDOW_SIZE + 1..far {
            assert_eq!(window.check(counter), Ok(()), "counter {counter}");
        }
        assert_eq!(window.check(199), Err(ReplayError::TooOld));
    }

    #[test]
    fn jump_of_exactly_one_ring_reuses_the_slot() {
        let ring_bits = BITMAP_WORDS as u64 * WORD_BITS;
        let mut window = ReplayWindow::new();
        window.accept(10).unwrap();
        window.accept(10 + ring_bits).unwrap();
        assert_eq!(window.check(10 + ring_bits), Err(ReplayError::Replayed));
        assert_eq!(window.check(10), Err(ReplayError::TooOld));
        assert_eq!(window.check(11 + ring_bits - WINDOW_SIZE), Ok(()));
    }

    #[test]
    fn counters_near_the_limit() {
        let mut window = ReplayWindow::new();
        assert_eq!(
            window.accept(REJECT_AFTER_MESSAGES),
            Err(ReplayError::LimitReached)
        );
        assert_eq!(window.accept(u64::MAX), Err(ReplayError::LimitReached));
        assert_eq!(window.highest(), None);
        let last = REJECT_AFTER_MESSAGES - 1;
        assert_eq!(window.accept(last), Ok(()));
        assert_eq!(window.accept(last), Err(ReplayError::Replayed));
        assert_eq!(window.accept(last - 1), Ok(()));
        assert_eq!(window.check(last - WINDOW_SIZE), Err(ReplayError::TooOld));
        assert_eq!(window.check(0), Err(ReplayError::TooOld));
        assert_eq!(window.highest(), Some(last));
    }

    #[test]
    fn parts_round_trip() {
        let window = run([3, 1, 64, 9000, 8999, 1000]);
        let (highest, bitmap) = window.to_parts();
        let restored = ReplayWindow::from_parts(highest, bitmap).unwrap();
        assert_eq!(restored, window);
        assert_eq!(restored.check(9000), Err(ReplayError::Replayed));
        assert_eq!(restored.check(8998), Ok(()));
    }

    #[test]
    fn from_parts_drops_impossible_bits() {
        let empty = ReplayWindow::from_parts(None, [u64::MAX; BITMAP_WORDS]).unwrap();
        assert_eq!(empty, ReplayWindow::new());

        let restored = ReplayWindow::from_parts(Some(130), [u64::MAX; BITMAP_WORDS]).unwrap();
        // Above the highest, in the same word: must be accepted, as a real window would.
        assert_eq!(restored.check(131), Ok(()));
        assert_eq!(restored.check(130), Err(ReplayError::Replayed));

        let top_of_word = ReplayWindow::from_parts(Some(127), [u64::MAX; BITMAP_WORDS]).unwrap();
        assert_eq!(top_of_word.check(127), Err(ReplayError::Replayed));
        assert_eq!(top_of_word.check(128), Ok(()));
    }

    #[test]
    fn from_parts_refuses_exhausted_state() {
        assert_eq!(
            ReplayWindow::from_parts(Some(REJECT_AFTER_MESSAGES), [0; BITMAP_WORDS]),
            Err(ReplayError::LimitReached)
        );
        assert_eq!(
            ReplayWindow::from_parts(Some(u64::MAX), [0; BITMAP_WORDS]),
            Err(ReplayError::LimitReached)
        );
    }

    /// Next counter chosen relative to the state so far, to hit the edges on purpose.
    #[derive(Debug, Clone)]
    enum Move {
        /// Forward from the highest, by up to a few rings.
        Forward(u64),
        /// Forward by an arbitrary amount, maybe past the limit.
        Leap(u64),
        /// Around the trailing edge of the window: `highest - WINDOW_SIZE + offset`.
        WindowEdge(i8),
        /// Around a word boundary at or below the highest.
        WordBoundary { words_back: u8, offset: i8 },
        /// A counter fed before (by index into the history).
        Repeat(usize),
        /// A run going down from the highest.
        Descending { start_back: u16, len: u8 },
        /// Absolute, near the limit.
        NearLimit(u16),
    }

    fn moves() -> impl Strategy<Value = Move> {
        let ring_bits = BITMAP_WORDS as u64 * WORD_BITS;
        prop_oneof![
            3 => (0..3 * ring_bits).prop_map(Move::Forward),
            1 => any::<u64>().prop_map(Move::Leap),
            3 => (-3i8..=3).prop_map(Move::WindowEdge),
            3 => (any::<u8>(), -2i8..=2)
                .prop_map(|(words_back, offset)| Move::WordBoundary { words_back, offset }),
            3 => any::<usize>().prop_map(Move::Repeat),
            2 => (any::<u16>(), any::<u8>())
                .prop_map(|(start_back, len)| Move::Descending { start_back, len }),
            1 => any::<u16>().prop_map(Move::NearLimit),
        ]
    }

    fn counters_for(mv: &Move, highest: u64, history: &[u64]) -> Vec<u64> {
        let behind = |n: u64| highest.saturating_sub(n);
        match *mv {
            Move::Forward(n) => vec![highest.saturating_add(n)],
            Move::Leap(n) => vec![n],
            Move::WindowEdge(offset) => {
                vec![behind(WINDOW_SIZE).saturating_add_signed(i64::from(offset))]
            }
            Move::WordBoundary { words_back, offset } => {
                let boundary = behind(u64::from(words_back) * WORD_BITS) / WORD_BITS * WORD_BITS;
                vec![boundary.saturating_add_signed(i64::from(offset))]
            }
            Move::Repeat(i) if !history.is_empty() => vec![history[i % history.len()]],
            Move::Repeat(_) => vec![0],
            Move::Descending { start_back, len } => {
                let start = behind(u64::from(start_back));
                (0..u64::from(len))
                    .map(|i| start.saturating_sub(i))
                    .collect()
            }
            Move::NearLimit(n) => vec![(REJECT_AFTER_MESSAGES + 2).saturating_sub(u64::from(n))],
        }
    }

    proptest! {
        #[test]
        fn agrees_with_model_on_random_counters(
            counters in prop::collection::vec(0u64..4 * WINDOW_SIZE, 0..2000),
        ) {
            run(counters);
        }

        #[test]
        fn agrees_with_model_on_adversarial_moves(
            start in prop_oneof![Just(0u64), any::<u64>(), REJECT_AFTER_MESSAGES - 20_000..u64::MAX],
            moves in prop::collection::vec(moves(), 0..300),
        ) {
            let mut window = ReplayWindow::new();
            let mut model = Model::default();
            let mut history = Vec::new();
            step(&mut window, &mut model, start);
            history.push(start);
            for mv in &moves {
                let highest = model.highest.unwrap_or(0);
                for counter in counters_for(mv, highest, &history) {
                    step(&mut window, &mut model, counter);
                    history.push(counter);
                }
            }
        }

        #[test]
        fn restored_window_behaves_like_the_original(
            counters in prop::collection::vec(0u64..3 * WINDOW_SIZE, 0..500),
            probes in prop::collection::vec(0u64..4 * WINDOW_SIZE, 0..200),
        ) {
            let window = run(counters);
            let (highest, bitmap) = window.to_parts();
            let restored = ReplayWindow::from_parts(highest, bitmap).unwrap();
            for probe in probes {
                prop_assert_eq!(restored.check(probe), window.check(probe));
            }
        }
    }
}
