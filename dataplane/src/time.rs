//! Time as a value. The protocol, session and replay logic never read a clock: callers pass
//! `Time` in, so tests run on simulated time and a wall-clock jump cannot expire a session.

use std::time::Duration;

/// A point on a monotonic timeline, measured from an origin the caller chooses (process start
/// in the daemon, zero in tests). Only differences between two `Time`s carry meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(Duration);

impl Time {
    /// The origin of the timeline.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The point `since_origin` after the origin.
    pub const fn from_duration(since_origin: Duration) -> Self {
        Self(since_origin)
    }

    /// The point `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The time elapsed since the origin.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this is; zero if `earlier` is in the future.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, rhs: Duration) -> Time {
        Time(self.0.saturating_add(rhs))
    }
}

impl std::ops::AddAssign<Duration> for Time {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let t = Time::from_secs(5);
        assert_eq!(t.saturating_since(Time::from_secs(7)), Duration::ZERO);
        assert_eq!(
            Time::from_secs(7).saturating_since(t),
            Duration::from_secs(2)
        );
        let far = Time::from_duration(Duration::MAX) + Duration::from_secs(1);
        assert_eq!(far.since_origin(), Duration::MAX);
    }
}
