//! AEAD suites for transport data, sealed and opened in place with `ring`.
//!
//! `ring` was chosen over RustCrypto and aws-lc-rs by measurement on the target machine
//! (ARCHITECTURE.md: ChaCha20-Poly1305 3x faster than RustCrypto at 1420 B and 10x at 64 B;
//! AES-256-GCM 1.7x faster than aws-lc-rs); `cargo xtask bench crypto` keeps comparing them.
//!
//! The nonce is WireGuard's: four zero bytes, then the 64-bit message counter little-endian.
//! The AES-256-GCM suite (a warpline extension) uses the same layout; since its handshake runs
//! under a different Noise protocol name, its keys can never meet a ChaCha20-Poly1305 peer.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

/// Length of the authentication tag both suites append.
pub const TAG_LEN: usize = 16;
/// Length of a symmetric key.
pub const KEY_LEN: usize = 32;

/// Which AEAD protects a session's transport data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Suite {
    /// WireGuard's standard suite; what stock WireGuard peers speak.
    #[default]
    ChaCha20Poly1305,
    /// warpline extension for warpline-to-warpline peers configured for it on both sides.
    Aes256Gcm,
}

impl Suite {
    /// The Noise protocol name whose handshake derives keys for this suite.
    pub const fn noise_protocol_name(self) -> &'static [u8] {
        match self {
            Suite::ChaCha20Poly1305 => b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s",
            Suite::Aes256Gcm => b"Noise_IKpsk2_25519_AESGCM_BLAKE2s",
        }
    }

    /// The name used in configuration files and `warpline show`.
    pub const fn config_name(self) -> &'static str {
        match self {
            Suite::ChaCha20Poly1305 => "chacha20poly1305",
            Suite::Aes256Gcm => "aes256gcm",
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Suite::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            Suite::Aes256Gcm => &aead::AES_256_GCM,
        }
    }
}

/// The message failed authentication: wrong key, wrong counter, or tampered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticationFailed;

impl std::fmt::Display for AuthenticationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AEAD authentication failed")
    }
}

impl std::error::Error for AuthenticationFailed {}

/// The buffer cannot hold the plaintext plus its tag, or the ciphertext is shorter than a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall;

/// One direction's key of a session, expanded once and reused for every packet.
pub struct PacketKey {
    suite: Suite,
    key: LessSafeKey,
}

impl std::fmt::Debug for PacketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketKey")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

fn nonce_for(counter: u64) -> Nonce {
    let mut nonce = [0u8; aead::NONCE_LEN];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(nonce)
}

impl PacketKey {
    /// Expands `key` for `suite`. The caller zeroizes its copy of the raw bytes.
    pub fn new(suite: Suite, key: &[u8; KEY_LEN]) -> Self {
        let unbound = UnboundKey::new(suite.algorithm(), key)
            .expect("both suites take 32-byte keys, the type guarantees the length");
        Self {
            suite,
            key: LessSafeKey::new(unbound),
        }
    }

    /// The suite this key belongs to.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Encrypts `buf[..plaintext_len]` in place and writes the tag right after it.
    /// Returns the ciphertext length (`plaintext_len + TAG_LEN`).
    pub fn seal_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, BufferTooSmall> {
        let total = plaintext_len.checked_add(TAG_LEN).ok_or(BufferTooSmall)?;
        if buf.len() < total {
            return Err(BufferTooSmall);
        }
        let (plaintext, rest) = buf.split_at_mut(plaintext_len);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce_for(counter), Aad::from(aad), plaintext)
            .map_err(|_| BufferTooSmall)?;
        rest[..TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(total)
    }

    /// Decrypts `ciphertext` (payload followed by its tag) in place; returns the plaintext
    /// length. On failure the buffer's contents are unspecified and must be discarded.
    pub fn open_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        ciphertext: &mut [u8],
    ) -> Result<usize, AuthenticationFailed> {
        if ciphertext.len() < TAG_LEN {
            return Err(AuthenticationFailed);
        }
        self.key
            .open_in_place(nonce_for(counter), Aad::from(aad), ciphertext)
            .map(|plaintext| plaintext.len())
            .map_err(|_| AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_four_zero_bytes_then_little_endian_counter() {
        // WireGuard's layout; checked against ring's primitive with the nonce built by hand.
        let key = [0x42u8; 32];
        let packet_key = PacketKey::new(Suite::ChaCha20Poly1305, &key);
        let mut buf = *b"sixteen byte msg\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        let sealed = packet_key.seal_in_place(7, b"", &mut buf, 16).unwrap();
        assert_eq!(sealed, 32);
        let reference = LessSafeKey::new(UnboundKey::new(&aead::CHACHA20_POLY1305, &key).unwrap());
        let mut nonce = [0u8; 12];
        nonce[4] = 7;
        let mut expect = b"sixteen byte msg".to_vec();
        reference
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut expect,
            )
            .unwrap();
        assert_eq!(&buf[..], &expect[..]);
    }

    #[test]
    fn round_trip_and_tamper_detection_for_both_suites() {
        for suite in [Suite::ChaCha20Poly1305, Suite::Aes256Gcm] {
            let key = PacketKey::new(suite, &[9u8; 32]);
            let mut buf = vec![0u8; 100 + TAG_LEN];
            buf[..100]
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = i as u8);
            let len = key.seal_in_place(1, b"hdr", &mut buf, 100).unwrap();
            assert_eq!(len, 116);
            let mut tampered = buf.clone();
            tampered[3] ^= 1;
            assert_eq!(
                key.open_in_place(1, b"hdr", &mut tampered),
                Err(AuthenticationFailed)
            );
            let mut wrong_counter = buf.clone();
            assert!(key.open_in_place(2, b"hdr", &mut wrong_counter).is_err());
            assert_eq!(key.open_in_place(1, b"hdr", &mut buf), Ok(100));
            assert!(buf[..100].iter().enumerate().all(|(i, b)| *b == i as u8));
        }
    }

    #[test]
    fn suites_do_not_open_each_others_packets() {
        let chacha = PacketKey::new(Suite::ChaCha20Poly1305, &[1u8; 32]);
        let gcm = PacketKey::new(Suite::Aes256Gcm, &[1u8; 32]);
        let mut buf = [0u8; 32];
        chacha.seal_in_place(0, b"", &mut buf, 16).unwrap();
        assert!(gcm.open_in_place(0, b"", &mut buf).is_err());
    }

    #[test]
    fn short_buffers_are_errors_not_panics() {
        let key = PacketKey::new(Suite::Aes256Gcm, &[1u8; 32]);
        assert_eq!(
            key.seal_in_place(0, b"", &mut [0u8; 20], 10),
            Err(BufferTooSmall)
        );
        assert_eq!(
            key.open_in_place(0, b"", &mut [0u8; 15]),
            Err(AuthenticationFailed)
        );
        assert_eq!(
            key.seal_in_place(0, b"", &mut [0u8; 8], usize::MAX),
            Err(BufferTooSmall)
        );
    }
}
