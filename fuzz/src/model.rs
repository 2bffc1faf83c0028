//! Plain models of the specifications the targets check implementations against.

use std::collections::HashSet;

use warpline_dataplane::replay::{REJECT_AFTER_MESSAGES, ReplayError, WINDOW_SIZE};

/// The anti-replay rule as plainly as it can be written: a counter is accepted once, never at
/// or past [`REJECT_AFTER_MESSAGES`], and never [`WINDOW_SIZE`] or more behind the highest
/// accepted counter.
#[derive(Debug, Clone)]
pub struct ReplayModel {
    seen: HashSet<u64>,
    /// The first counter refused as [`ReplayError::LimitReached`].
    limit: u64,
    highest: Option<u64>,
    /// Everything at or below this counts as seen (a window resumed from a checkpoint).
    seen_up_to: Option<u64>,
}

impl Default for ReplayModel {
    fn default() -> Self {
        Self {
            seen: HashSet::new(),
            limit: REJECT_AFTER_MESSAGES,
            highest: None,
            seen_up_to: None,
        }
    }
}

impl ReplayModel {
    /// The same rule with a lower limit: what a window with a counter span (the lock-free
    /// window's `MAX_COUNTER_SPAN`) answers.
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit.min(REJECT_AFTER_MESSAGES);
        self
    }

    /// A model that has seen every counter up to `highest`, as a standby resuming a session
    /// from a checkpoint must behave.
    pub fn resumed_after(highest: u64) -> Self {
        Self {
            highest: Some(highest),
            seen_up_to: Some(highest),
            ..Self::default()
        }
    }

    /// What accepting `counter` now would answer.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= self.limit {
            return Err(ReplayError::LimitReached);
        }
        if self
            .highest
            .is_some_and(|highest| counter + WINDOW_SIZE <= highest)
        {
            return Err(ReplayError::TooOld);
        }
        if self.seen.contains(&counter) || self.seen_up_to.is_some_and(|up_to| counter <= up_to) {
            return Err(ReplayError::Replayed);
        }
        Ok(())
    }

    /// Accepts `counter` if the rule allows it.
    pub fn accept(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        self.seen.insert(counter);
        self.highest = self.highest.max(Some(counter));
        Ok(())
    }

    /// The highest accepted counter.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}
