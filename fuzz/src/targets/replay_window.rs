//! Both anti-replay windows against a set-based model of the specification.
//!
//! The input is a starting state and a sequence of counters. The single-threaded
//! [`ReplayWindow`] must make exactly the model's decisions: `check` never mutates, `accept`
//! agrees with `check`, a refused counter leaves the window unchanged, and
//! [`ReplayWindow::to_parts`]/[`ReplayWindow::from_parts`] round-trip. The lock-free
//! [`AtomicReplayWindow`] runs the same sequence single-threaded and must make exactly the
//! decisions of the model with its lower limit ([`MAX_COUNTER_SPAN`] above where it started:
//! see `dataplane/src/sessions/replay.rs`), far jumps included.
//!
//! A second mode starts the single-threaded window from arbitrary [`ReplayWindow::from_parts`]
//! state, as a standby would after a corrupt sync, and checks that it still never accepts a
//! counter twice or one behind its window. A third resumes the lock-free window from a
//! checkpoint ([`AtomicReplayWindow::resumed_after`], what a standby does on failover): it
//! must refuse every counter up to the checkpoint, and otherwise behave as the model does.

use std::collections::HashSet;

use warpline_dataplane::replay::{
    BITMAP_WORDS, REJECT_AFTER_MESSAGES, ReplayError, ReplayWindow, WINDOW_SIZE,
};
use warpline_dataplane::sessions::{AtomicReplayWindow, MAX_COUNTER_SPAN};

use crate::input::{Reader, Writer};
use crate::model::ReplayModel as Model;

/// How the next counter is derived: absolute, or relative to the highest accepted one.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Exactly this counter.
    Absolute(u64),
    /// The highest so far plus this much.
    Ahead(u16),
    /// The highest so far minus this much.
    Behind(u16),
    /// The highest so far plus `1 << shift` (far jumps).
    Jump(u8),
}

/// Encodes a seed for fresh windows: the mode byte, then the steps.
pub fn encode(steps: &[Step]) -> Vec<u8> {
    let mut writer = Writer::new();
    writer.u8(0);
    encode_steps(&mut writer, steps);
    writer.finish()
}

/// Encodes a seed for a window resumed after `highest`, then the steps.
pub fn encode_resumed(highest: u32, steps: &[Step]) -> Vec<u8> {
    let mut writer = Writer::new();
    writer.u8(2).u8(1).u32(highest);
    encode_steps(&mut writer, steps);
    writer.finish()
}

fn encode_steps(writer: &mut Writer, steps: &[Step]) {
    for step in steps {
        match *step {
            Step::Absolute(counter) => writer.u8(0).u64(counter),
            Step::Ahead(delta) => writer.u8(1).u16(delta),
            Step::Behind(delta) => writer.u8(2).u16(delta),
            Step::Jump(shift) => writer.u8(3).u8(shift),
        };
    }
}

fn next_counter(input: &mut Reader<'_>, highest: Option<u64>) -> u64 {
    let base = highest.unwrap_or(0);
    match input.u8() % 4 {
        0 => input.u64(),
        1 => base.saturating_add(u64::from(input.u16())),
        2 => base.saturating_sub(u64::from(input.u16())),
        _ => base.saturating_add(1u64 << (input.u8() % 64)),
    }
}

/// One input: mode byte, then steps until the input ends.
pub fn run(data: &[u8]) {
    let mut input = Reader::new(data);
    match input.u8() % 3 {
        0 => run_against_model(&mut input),
        1 => run_from_parts(&mut input),
        _ => run_resumed(&mut input),
    }
}

fn run_against_model(input: &mut Reader<'_>) {
    let mut window = ReplayWindow::new();
    let atomic = AtomicReplayWindow::new();
    let mut model = Model::default();
    let mut atomic_model = Model::default().with_limit(MAX_COUNTER_SPAN);
    let mut atomic_accepted = HashSet::new();
    let mut steps = 0;
    while !input.is_empty() && steps < 4096 {
        steps += 1;
        let counter = next_counter(input, model.highest());

        let before = window.clone();
        let checked = window.check(counter);
        assert_eq!(window, before, "check mutated the window");
        assert_eq!(checked, model.check(counter), "check({counter})");
        let atomic_checked = atomic.check(counter);

        let expected = model.accept(counter);
        let accepted = window.accept(counter);
        assert_eq!(accepted, expected, "accept({counter})");
        assert_eq!(
            accepted, checked,
            "accept disagreed with check on {counter}"
        );
        if accepted.is_err() {
            assert_eq!(window, before, "a refused counter changed the window");
        }
        assert_eq!(window.highest(), model.highest());
        let (highest, bitmap) = window.to_parts();
        assert_eq!(
            ReplayWindow::from_parts(highest, bitmap).as_ref(),
            Ok(&window),
            "to_parts/from_parts lost state"
        );

        let atomic_expected_check = atomic_model.check(counter);
        let atomic_expected = atomic_model.accept(counter);
        let atomic_result = atomic.accept(counter);
        if atomic_result.is_ok() {
            assert!(
                atomic_expected.is_ok(),
                "atomic window accepted {counter}, which the model refuses: {atomic_expected:?}"
            );
            assert!(
                atomic_accepted.insert(counter),
                "atomic window accepted {counter} twice"
            );
        }
        assert_eq!(
            atomic_checked, atomic_expected_check,
            "atomic check({counter})"
        );
        assert_eq!(atomic_result, atomic_expected, "atomic accept({counter})");
        assert_eq!(atomic.highest(), atomic_model.highest());
    }
}

/// A lock-free window resumed from a checkpoint, as a standby takes a session over: every
/// counter up to the checkpoint counts as received.
fn run_resumed(input: &mut Reader<'_>) {
    let highest = match input.u8() % 3 {
        0 => input.u64() % REJECT_AFTER_MESSAGES,
        1 => u64::from(input.u32()),
        _ => u64::from(input.u16()),
    };
    let atomic = AtomicReplayWindow::resumed_after(Some(highest));
    assert_eq!(atomic.highest(), Some(highest));
    assert_eq!(
        atomic.limit(),
        highest
            .saturating_add(MAX_COUNTER_SPAN)
            .min(REJECT_AFTER_MESSAGES),
        "resumed window's limit"
    );
    let mut model = Model::resumed_after(highest).with_limit(atomic.limit());
    let mut accepted = HashSet::new();
    let mut steps = 0;
    while !input.is_empty() && steps < 4096 {
        steps += 1;
        let counter = next_counter(input, model.highest());
        let expected_check = model.check(counter);
        let checked = atomic.check(counter);
        let expected = model.accept(counter);
        let result = atomic.accept(counter);
        if result.is_ok() {
            assert!(
                expected.is_ok(),
                "window resumed after {highest} accepted {counter}: the model refuses it ({expected:?})"
            );
            assert!(accepted.insert(counter), "accepted {counter} twice");
        }
        assert_eq!(
            checked, expected_check,
            "check({counter}) after resuming at {highest}"
        );
        assert_eq!(
            result, expected,
            "accept({counter}) after resuming at {highest}"
        );
        assert_eq!(atomic.highest(), model.highest());
    }
}

fn run_from_parts(input: &mut Reader<'_>) {
    let highest = match input.u8() % 4 {
        0 => None,
        1 => Some(input.u64()),
        _ => Some(u64::from(input.u32())),
    };
    let mut bitmap = [0u64; BITMAP_WORDS];
    let words = usize::from(input.u8());
    for _ in 0..words {
        let slot = usize::from(input.u8()) % BITMAP_WORDS;
        bitmap[slot] = input.u64();
    }
    let mut window = match ReplayWindow::from_parts(highest, bitmap) {
        Ok(window) => window,
        Err(error) => {
            assert_eq!(error, ReplayError::LimitReached);
            assert!(highest.is_some_and(|h| h >= REJECT_AFTER_MESSAGES));
            return;
        }
    };
    assert_eq!(window.highest(), highest);
    let mut accepted = HashSet::new();
    let mut steps = 0;
    while !input.is_empty() && steps < 4096 {
        steps += 1;
        let counter = next_counter(input, window.highest());
        let highest_before = window.highest();
        let checked = window.check(counter);
        let result = window.accept(counter);
        assert_eq!(result, checked, "accept disagreed with check on {counter}");
        if result.is_ok() {
            assert!(counter < REJECT_AFTER_MESSAGES);
            assert!(
                highest_before.is_none_or(|h| counter + WINDOW_SIZE > h),
                "accepted {counter}, behind the window of {highest_before:?}"
            );
            assert!(accepted.insert(counter), "accepted {counter} twice");
            assert_eq!(window.check(counter), Err(ReplayError::Replayed));
            assert_eq!(window.highest(), highest_before.max(Some(counter)));
        } else {
            assert_eq!(window.highest(), highest_before);
        }
    }
}
