//! TAI64N timestamps, as the handshake initiation carries them (12 bytes, big-endian).
//!
//! The responder keeps the greatest timestamp seen per peer and rejects initiations that are
//! not newer: a replayed initiation cannot restart a session. Timestamps come from the wall
//! clock, which the caller reads and passes in.

use std::time::Duration;

/// A TAI64N label: seconds (offset by 2^62) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tai64N {
    seconds: u64,
    nanos: u32,
}

/// Length of the encoded label.
pub const TAI64N_LEN: usize = 12;
const TAI64_EPOCH_OFFSET: u64 = 1 << 62;
/// Nanoseconds are rounded down to a multiple of this (about 16.8 ms, as the Linux driver
/// does) so the label does not leak the sender's fine-grained clock.
const NANOS_GRANULARITY: u32 = 1 << 24;

impl Tai64N {
    /// The label for `since_unix_epoch` of wall-clock time.
    pub fn from_unix(since_unix_epoch: Duration) -> Self {
        let nanos = since_unix_epoch.subsec_nanos();
        Self {
            seconds: TAI64_EPOCH_OFFSET.saturating_add(since_unix_epoch.as_secs()),
            nanos: nanos - nanos % NANOS_GRANULARITY,
        }
    }

    /// The 12-byte wire encoding.
    pub fn to_bytes(self) -> [u8; TAI64N_LEN] {
        let mut out = [0u8; TAI64N_LEN];
        out[..8].copy_from_slice(&self.seconds.to_be_bytes());
        out[8..].copy_from_slice(&self.nanos.to_be_bytes());
        out
    }

    /// Decodes the wire encoding. Any 12 bytes are a label; ordering is what matters.
    pub fn from_bytes(bytes: &[u8; TAI64N_LEN]) -> Self {
        let (seconds, nanos) = bytes.split_at(8);
        Self {
            seconds: u64::from_be_bytes(seconds.try_into().expect("8 bytes")),
            nanos: u32::from_be_bytes(nanos.try_into().expect("4 bytes")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_big_endian_with_the_tai64_offset() {
        let label = Tai64N::from_unix(Duration::new(1, 0));
        assert_eq!(label.to_bytes(), [0x40, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(Tai64N::from_bytes(&label.to_bytes()), label);
    }

    #[test]
    fn order_follows_time_and_sub_granularity_steps_collapse() {
        let a = Tai64N::from_unix(Duration::new(100, 5));
        let b = Tai64N::from_unix(Duration::new(100, 1_000));
        let c = Tai64N::from_unix(Duration::new(100, 20_000_000));
        assert_eq!(a, b);
        assert!(c > b);
        assert!(Tai64N::from_unix(Duration::new(101, 0)) > c);
    }
}
