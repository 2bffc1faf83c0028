//! Curve25519 keys and preshared keys in WireGuard's base64 text form.
//!
//! Private and preshared keys are zeroized on drop and never printed: their `Debug` shows
//! only a redacted marker. Comparisons of secret material are constant-time (`subtle`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of every WireGuard key (private, public, preshared) in bytes.
pub const KEY_LEN: usize = 32;

/// Why a key's text form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// Not valid base64.
    #[error("not valid base64 (expected 44 characters ending in '=')")]
    NotBase64,
    /// Valid base64 but not 32 bytes long.
    #[error("decodes to {0} bytes, a key is 32")]
    WrongLength(usize),
}

fn decode_key(text: &str) -> Result<[u8; KEY_LEN], KeyParseError> {
    let mut buf = [0u8; 48];
    let n = BASE64
        .decode_slice(text.trim().as_bytes(), &mut buf)
        .map_err(|e| match e {
            base64::DecodeSliceError::OutputSliceTooSmall => KeyParseError::WrongLength(48),
            base64::DecodeSliceError::DecodeError(_) => KeyParseError::NotBase64,
        })?;
    let result = if n == KEY_LEN {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&buf[..KEY_LEN]);
        Ok(key)
    } else {
        Err(KeyParseError::WrongLength(n))
    };
    buf.zeroize();
    result
}

/// A Curve25519 private key, clamped as `wg genkey` clamps it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey([u8; KEY_LEN]);

impl PrivateKey {
    /// A fresh random key from the OS generator, clamped like `wg genkey` output.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Wraps raw bytes, applying Curve25519 clamping (as `wg genkey` and `wg pubkey` do).
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> Self {
        bytes[0] &= 248;
        bytes[31] = (bytes[31] & 127) | 64;
        Self(bytes)
    }

    /// Parses the base64 text form.
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode_key(text).map(Self::from_bytes)
    }

    /// The base64 text form (what `wg genkey` prints).
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// The raw (clamped) scalar.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for PrivateKey {}

/// A Curve25519 public key: a peer's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; KEY_LEN]);

impl PublicKey {
    /// Parses the base64 text form.
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode_key(text).map(Self)
    }

    /// The base64 text form (what `wg pubkey` prints).
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// A 32-byte preshared key mixed into the handshake (post-quantum hedge).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; KEY_LEN]);

impl PresharedKey {
    /// The all-zero key WireGuard uses when a peer has no preshared key.
    pub const fn none() -> Self {
        Self([0u8; KEY_LEN])
    }

    /// A fresh random key (what `wg genpsk` prints).
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses the base64 text form.
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode_key(text).map(Self)
    }

    /// The base64 text form.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresharedKey(<redacted>)")
    }
}

impl PartialEq for PresharedKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for PresharedKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7748_public_key_vector() {
        // RFC 7748 section 6.1: Alice's private and public keys.
        let private = PrivateKey::from_bytes(hex32(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            private.public_key().0,
            hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
    }

    #[test]
    fn base64_round_trip_and_clamping() {
        let key = PrivateKey::generate();
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        assert!(text.ends_with('='));
        assert_eq!(PrivateKey::from_base64(&text).unwrap(), key);
        assert_eq!(key.as_bytes()[0] & 7, 0);
        assert_eq!(key.as_bytes()[31] & 0xc0, 0x40);
    }

    #[test]
    fn bad_text_is_a_typed_error() {
        assert_eq!(
            PublicKey::from_base64("not base64!"),
            Err(KeyParseError::NotBase64)
        );
        assert_eq!(
            PublicKey::from_base64("AAAA"),
            Err(KeyParseError::WrongLength(3))
        );
        assert!(matches!(
            PresharedKey::from_base64(&"A".repeat(64)),
            Err(KeyParseError::WrongLength(_))
        ));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let key = PrivateKey::generate();
        let shown = format!("{key:?} {:?}", PresharedKey::generate());
        assert!(!shown.contains(&key.to_base64()));
        assert!(shown.contains("redacted"));
    }

    pub(crate) fn hex32(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
