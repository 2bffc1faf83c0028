//! Per-source rate limiting of handshake messages under load, as the Linux driver does it
//! (ratelimiter.c): each source address (IPv6 by /64) gets a token bucket of 20 messages a
//! second with a burst of 5; a flood from one source then costs a table lookup per message,
//! not a cookie reply or a Diffie-Hellman. Sans-IO: the caller passes the time.
//!
//! The table is bounded: entries idle for a second are dropped when it fills, and if it is
//! still full, new sources are refused until it drains (under a spoofed-source flood that
//! errs on the side of the gateway's memory).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use warpline_dataplane::time::Time;

/// Messages per second per source.
pub const PER_SECOND: u64 = 20;
/// Messages a quiet source may send at once.
pub const BURST: u64 = 5;
/// Sources tracked at most.
pub const MAX_SOURCES: usize = 16_384;

const COST: Duration = Duration::from_nanos(1_000_000_000 / PER_SECOND);
const IDLE: Duration = Duration::from_secs(1);

/// The sources a node is limiting.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<[u8; 8], Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Credit, as time: each message costs [`COST`].
    credit: Duration,
    last: Time,
}

/// The part of an address a bucket is keyed by: IPv4 whole, IPv6 by its /64 (one host can
/// hold a whole /64).
fn key(source: IpAddr) -> [u8; 8] {
    match source {
        IpAddr::V4(v4) => {
            let mut key = [0u8; 8];
            key[..4].copy_from_slice(&v4.octets());
            key[7] = 4;
            key
        }
        IpAddr::V6(v6) => v6.octets()[..8].try_into().expect("8 bytes"),
    }
}

impl RateLimiter {
    /// A limiter with no sources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether one more message from `source` may be processed at `now`.
    pub fn allow(&mut self, now: Time, source: IpAddr) -> bool {
        let max_credit = COST * BURST as u32;
        let key = key(source);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_SOURCES {
            self.buckets
                .retain(|_, bucket| now.saturating_since(bucket.last) < IDLE);
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            credit: max_credit,
            last: now,
        });
        bucket.credit = (bucket.credit + now.saturating_since(bucket.last)).min(max_credit);
        bucket.last = now;
        if bucket.credit >= COST {
            bucket.credit -= COST;
            true
        } else {
            false
        }
    }

    /// Sources currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut limiter = RateLimiter::new();
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Time::from_secs(10);
        let allowed = (0..100).filter(|_| limiter.allow(t0, source)).count();
        assert_eq!(allowed as u64, BURST);
        // One second later: 20 more, not 100.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| limiter.allow(t1, source)).count();
        assert_eq!(allowed as u64, BURST, "credit is capped at the burst");
        // Another source is unaffected; an IPv6 /64 is one source.
        assert!(limiter.allow(t1, "192.0.2.2".parse().unwrap()));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert_eq!(
            (0..10).filter(|_| limiter.allow(t1, a)).count() as u64,
            BURST
        );
        assert!(!limiter.allow(t1, b));
        // Steady state: one message per 50 ms passes.
        let mut now = t1;
        for _ in 0..40 {
            now += COST;
            assert!(limiter.allow(now, source));
        }
    }

    #[test]
    fn the_table_stays_bounded_under_a_spoofed_flood() {
        let mut limiter = RateLimiter::new();
        let now = Time::from_secs(5);
        for i in 0..(MAX_SOURCES as u32 + 1000) {
            let _ = limiter.allow(now, IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(limiter.len(), MAX_SOURCES);
        // A second later the idle entries make room again.
        assert!(limiter.allow(now + IDLE, "203.0.113.9".parse().unwrap()));
        assert_eq!(limiter.len(), 1);
    }
}
