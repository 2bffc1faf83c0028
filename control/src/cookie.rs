//! MAC1, MAC2 and cookie replies: WireGuard's defence against handshake floods.
//!
//! MAC1 (keyed by the receiver's public key) is checked on every handshake message before any
//! Diffie-Hellman work, so a sender who does not know the receiver's public key costs it only
//! a BLAKE2s. Under load the responder also demands MAC2, keyed by a cookie bound to the
//! sender's address; a sender without one gets a cookie reply instead of a handshake response,
//! and no state is kept for it.

use std::net::SocketAddr;
use std::time::Duration;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand_core::CryptoRngCore;
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::wireguard::{
    COOKIE_REPLY_LEN, CookieReply, mac1_offset, mac2_offset,
};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::noise::primitives::{MAC_LEN, mac, macs_equal};

/// How long a responder's cookie secret lives (and so how long a cookie is good for).
pub const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);
/// An initiator stops using a cookie this long before the responder would reject it.
const COOKIE_SECRET_LATENCY: Duration = Duration::from_secs(5);

/// Why a cookie reply was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// We have no outstanding handshake message that this reply could answer.
    #[error("cookie reply answers no message we sent")]
    Unsolicited,
    /// The reply did not decrypt: forged, or for another message.
    #[error("cookie reply failed to decrypt")]
    DecryptFailed,
}

fn source_bytes(source: SocketAddr, out: &mut [u8; 18]) -> &[u8] {
    match source {
        SocketAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.ip().octets());
            out[4..6].copy_from_slice(&v4.port().to_be_bytes());
            &out[..6]
        }
        SocketAddr::V6(v6) => {
            out[..16].copy_from_slice(&v6.ip().octets());
            out[16..].copy_from_slice(&v6.port().to_be_bytes());
            &out[..]
        }
    }
}

/// The responder side: verifies MACs and makes cookie replies.
#[derive(ZeroizeOnDrop)]
pub struct CookieChecker {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    secret: [u8; 32],
    #[zeroize(skip)]
    secret_born: Option<Time>,
}

impl std::fmt::Debug for CookieChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieChecker").finish_non_exhaustive()
    }
}

impl CookieChecker {
    /// A checker for messages sent to the node whose MAC1 and cookie keys are given
    /// (`LocalStatic::mac1_key`, `LocalStatic::cookie_key`).
    pub fn new(mac1_key: [u8; 32], cookie_key: [u8; 32]) -> Self {
        Self {
            mac1_key,
            cookie_key,
            secret: [0; 32],
            secret_born: None,
        }
    }

    /// True when the handshake message's MAC1 is valid. Constant-time.
    pub fn mac1_is_valid(&self, message: &[u8]) -> bool {
        let offset = mac1_offset(message.len());
        let expected = mac(&self.mac1_key, &message[..offset]);
        let found: &[u8; MAC_LEN] = message[offset..offset + MAC_LEN]
            .try_into()
            .expect("16 bytes");
        macs_equal(&expected, found)
    }

    fn cookie_for(
        &mut self,
        source: SocketAddr,
        now: Time,
        rng: &mut impl CryptoRngCore,
    ) -> [u8; MAC_LEN] {
        let stale = self
            .secret_born
            .is_none_or(|born| now.saturating_since(born) >= COOKIE_SECRET_MAX_AGE);
        if stale {
            rng.fill_bytes(&mut self.secret);
            self.secret_born = Some(now);
        }
        let mut scratch = [0u8; 18];
        mac(&self.secret, source_bytes(source, &mut scratch))
    }

    /// True when MAC2 proves the sender holds a current cookie for `source`. Constant-time.
    pub fn mac2_is_valid(
        &mut self,
        message: &[u8],
        source: SocketAddr,
        now: Time,
        rng: &mut impl CryptoRngCore,
    ) -> bool {
        let mut cookie = self.cookie_for(source, now, rng);
        let offset = mac2_offset(message.len());
        let expected = mac(&cookie, &message[..offset]);
        cookie.zeroize();
        let found: &[u8; MAC_LEN] = message[offset..offset + MAC_LEN]
            .try_into()
            .expect("16 bytes");
        macs_equal(&expected, found)
    }

    /// A cookie reply to `message` (a handshake message with a valid MAC1) from `source`;
    /// `receiver_index` is the sender index the message carried.
    pub fn create_reply(
        &mut self,
        message: &[u8],
        receiver_index: u32,
        source: SocketAddr,
        now: Time,
        rng: &mut impl CryptoRngCore,
    ) -> [u8; COOKIE_REPLY_LEN] {
        let mut cookie = self.cookie_for(source, now, rng);
        let mac1_at = mac1_offset(message.len());
        let mac1 = &message[mac1_at..mac1_at + MAC_LEN];
        let mut bytes = [0u8; COOKIE_REPLY_LEN];
        let mut reply = CookieReply::new_zeroed(&mut bytes[..]).expect("exact size");
        reply.set_receiver_index(receiver_index);
        rng.fill_bytes(reply.nonce_mut());
        let nonce = *reply.nonce();
        let sealed = reply.encrypted_cookie_mut();
        let (text, tag) = sealed.split_at_mut(MAC_LEN);
        text.copy_from_slice(&cookie);
        cookie.zeroize();
        let computed = XChaCha20Poly1305::new((&self.cookie_key).into())
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), mac1, text)
            .expect("16-byte plaintext is within XChaCha20-Poly1305 limits");
        tag.copy_from_slice(&computed);
        bytes
    }
}

/// The initiator side, one per remote peer: stamps MACs on what we send and keeps the
/// cookie the peer gave us.
#[derive(ZeroizeOnDrop)]
pub struct CookieJar {
    remote_mac1_key: [u8; 32],
    remote_cookie_key: [u8; 32],
    cookie: [u8; MAC_LEN],
    #[zeroize(skip)]
    cookie_received: Option<Time>,
    #[zeroize(skip)]
    last_mac1: Option<[u8; MAC_LEN]>,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar")
            .field("has_cookie", &self.cookie_received.is_some())
            .finish_non_exhaustive()
    }
}

impl CookieJar {
    /// A jar for messages to the peer with these keys (`RemoteStatic::mac1_key`,
    /// `RemoteStatic::cookie_key`).
    pub fn new(remote_mac1_key: [u8; 32], remote_cookie_key: [u8; 32]) -> Self {
        Self {
            remote_mac1_key,
            remote_cookie_key,
            cookie: [0; MAC_LEN],
            cookie_received: None,
            last_mac1: None,
        }
    }

    /// Writes MAC1 and, with a fresh cookie, MAC2 into the last 32 bytes of `message`.
    pub fn stamp(&mut self, message: &mut [u8], now: Time) {
        let mac1_at = mac1_offset(message.len());
        let mac2_at = mac2_offset(message.len());
        let mac1 = mac(&self.remote_mac1_key, &message[..mac1_at]);
        message[mac1_at..mac2_at].copy_from_slice(&mac1);
        self.last_mac1 = Some(mac1);
        let fresh = self.cookie_received.is_some_and(|received| {
            now.saturating_since(received) < COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY
        });
        let mac2 = if fresh {
            mac(&self.cookie, &message[..mac2_at])
        } else {
            [0; MAC_LEN]
        };
        message[mac2_at..].copy_from_slice(&mac2);
    }

    /// Takes the cookie from a reply to the last message we stamped. A reply is accepted
    /// once; it is bound to that message's MAC1, so a forged or replayed one fails.
    pub fn consume_reply(
        &mut self,
        reply: &CookieReply<&[u8]>,
        now: Time,
    ) -> Result<(), CookieError> {
        let mac1 = self.last_mac1.ok_or(CookieError::Unsolicited)?;
        let (text, tag) = reply.encrypted_cookie().split_at(MAC_LEN);
        let mut cookie = [0u8; MAC_LEN];
        cookie.copy_from_slice(text);
        XChaCha20Poly1305::new((&self.remote_cookie_key).into())
            .decrypt_in_place_detached(
                XNonce::from_slice(reply.nonce()),
                &mac1,
                &mut cookie,
                tag.into(),
            )
            .map_err(|_| CookieError::DecryptFailed)?;
        self.cookie = cookie;
        cookie.zeroize();
        self.cookie_received = Some(now);
        self.last_mac1 = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;
    use warpline_dataplane::wire::wireguard::INITIATION_LEN;

    fn checker_and_jar() -> (CookieChecker, CookieJar) {
        let mac1_key = [3u8; 32];
        let cookie_key = [4u8; 32];
        (
            CookieChecker::new(mac1_key, cookie_key),
            CookieJar::new(mac1_key, cookie_key),
        )
    }

    fn source() -> SocketAddr {
        "192.0.2.7:51820".parse().unwrap()
    }

    #[test]
    fn mac1_is_checked_and_any_flip_breaks_it() {
        let (checker, mut jar) = checker_and_jar();
        let mut message = [0x11u8; INITIATION_LEN];
        jar.stamp(&mut message, Time::ZERO);
        assert!(checker.mac1_is_valid(&message));
        message[20] ^= 1;
        assert!(!checker.mac1_is_valid(&message));
    }

    #[test]
    fn cookie_round_trip_makes_mac2_valid_for_that_source_only() {
        let (mut checker, mut jar) = checker_and_jar();
        let now = Time::from_secs(10);
        let mut message = [0x22u8; INITIATION_LEN];
        jar.stamp(&mut message, now);
        assert!(!checker.mac2_is_valid(&message, source(), now, &mut OsRng));
        let reply = checker.create_reply(&message, 42, source(), now, &mut OsRng);
        let view = CookieReply::new_checked(&reply[..]).unwrap();
        assert_eq!(view.receiver_index(), 42);
        jar.consume_reply(&view, now).unwrap();
        assert_eq!(jar.consume_reply(&view, now), Err(CookieError::Unsolicited));
        jar.stamp(&mut message, now);
        assert!(checker.mac2_is_valid(&message, source(), now, &mut OsRng));
        let elsewhere: SocketAddr = "192.0.2.8:51820".parse().unwrap();
        assert!(!checker.mac2_is_valid(&message, elsewhere, now, &mut OsRng));
    }

    #[test]
    fn cookies_expire_with_the_secret() {
        let (mut checker, mut jar) = checker_and_jar();
        let mut message = [0x33u8; INITIATION_LEN];
        jar.stamp(&mut message, Time::ZERO);
        let reply = checker.create_reply(&message, 1, source(), Time::ZERO, &mut OsRng);
        jar.consume_reply(&CookieReply::new_checked(&reply[..]).unwrap(), Time::ZERO)
            .unwrap();
        let later = Time::from_secs(130);
        jar.stamp(&mut message, later);
        assert_eq!(
            &message[132..],
            &[0u8; 16],
            "a stale cookie must not be used"
        );
        assert!(!checker.mac2_is_valid(&message, source(), later, &mut OsRng));
    }

    #[test]
    fn forged_replies_are_refused() {
        let (mut checker, mut jar) = checker_and_jar();
        let mut message = [0x44u8; INITIATION_LEN];
        jar.stamp(&mut message, Time::ZERO);
        let mut reply = checker.create_reply(&message, 1, source(), Time::ZERO, &mut OsRng);
        reply[40] ^= 1;
        let view = CookieReply::new_checked(&reply[..]).unwrap();
        assert_eq!(
            jar.consume_reply(&view, Time::ZERO),
            Err(CookieError::DecryptFailed)
        );
    }
}
