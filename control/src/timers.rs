//! WireGuard's protocol constants (the paper, section 6), grouped so a test-only config knob
//! can shorten them all at once.

use std::time::Duration;

/// Start a new handshake after this many messages on one session.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;

/// The timer constants one node runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// The initiator of a session starts a new handshake once it is this old.
    pub rekey_after_time: Duration,
    /// No session is used (to send or receive) once it is this old.
    pub reject_after_time: Duration,
    /// Handshake attempts stop after this long without success.
    pub rekey_attempt_time: Duration,
    /// An unanswered initiation is retransmitted after this (plus jitter).
    pub rekey_timeout: Duration,
    /// A keepalive follows received data when we have sent nothing for this long.
    pub keepalive_timeout: Duration,
    /// Upper bound of the random jitter added to each retransmission.
    pub max_jitter: Duration,
}

impl Timers {
    /// The values of the WireGuard paper, which every stock implementation uses.
    pub const WIREGUARD: Timers = Timers {
        rekey_after_time: Duration::from_secs(120),
        reject_after_time: Duration::from_secs(180),
        rekey_attempt_time: Duration::from_secs(90),
        rekey_timeout: Duration::from_secs(5),
        keepalive_timeout: Duration::from_secs(10),
        max_jitter: Duration::from_millis(333),
    };

    /// Every timer divided by `factor` (test-only: rekeys in seconds instead of minutes).
    pub fn scaled_down(&self, factor: u32) -> Timers {
        let factor = factor.max(1);
        Timers {
            rekey_after_time: self.rekey_after_time / factor,
            reject_after_time: self.reject_after_time / factor,
            rekey_attempt_time: self.rekey_attempt_time / factor,
            rekey_timeout: self.rekey_timeout / factor,
            keepalive_timeout: self.keepalive_timeout / factor,
            max_jitter: self.max_jitter / factor,
        }
    }

    /// All key material of a peer is erased after this long without a new handshake.
    pub fn wipe_after(&self) -> Duration {
        self.reject_after_time * 3
    }

    /// The initiator of a session rekeys when it receives data on a session this old, so a
    /// quiet initiator still refreshes keys before the responder must stop using them.
    pub fn rekey_on_receive_after(&self) -> Duration {
        self.reject_after_time
            .saturating_sub(self.keepalive_timeout)
            .saturating_sub(self.rekey_timeout)
    }

    /// Data sent and nothing heard back for this long means the session is dead: rehandshake.
    pub fn new_handshake_after_silence(&self) -> Duration {
        self.keepalive_timeout + self.rekey_timeout
    }
}

impl Default for Timers {
    fn default() -> Self {
        Self::WIREGUARD
    }
}
