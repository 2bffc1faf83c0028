//! The hash, MAC and KDF functions of WireGuard's Noise instance, all over BLAKE2s.

use blake2::digest::{Digest, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac};
use zeroize::Zeroize;

/// Length of a BLAKE2s-256 output (hashes, chaining keys, symmetric keys).
pub const HASH_LEN: usize = 32;
/// Length of a keyed BLAKE2s-128 MAC (MAC1, MAC2, cookies).
pub const MAC_LEN: usize = 16;
const BLOCK_LEN: usize = 64;

/// BLAKE2s-256 over the concatenation of `parts`.
pub fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut hasher = Blake2s256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Keyed BLAKE2s with a 16-byte output, WireGuard's `MAC(key, input)`.
pub fn mac(key: &[u8], input: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(key)
        .expect("BLAKE2s takes keys of up to 32 bytes; callers pass 16 or 32");
    mac.update(input);
    mac.finalize().into_bytes().into()
}

/// HMAC-BLAKE2s-256 (RFC 2104), the PRF under Noise's HKDF. `key` is at most 32 bytes.
pub fn hmac(key: &[u8; HASH_LEN], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut padded = [0u8; BLOCK_LEN];
    padded[..HASH_LEN].copy_from_slice(key);
    let mut inner = Blake2s256::new();
    let mut ipad = padded.map(|b| b ^ 0x36);
    inner.update(ipad);
    for part in parts {
        inner.update(part);
    }
    let mut inner_hash: [u8; HASH_LEN] = inner.finalize().into();
    let mut opad = padded.map(|b| b ^ 0x5c);
    let out = hash(&[&opad, &inner_hash]);
    padded.zeroize();
    ipad.zeroize();
    opad.zeroize();
    inner_hash.zeroize();
    out
}

/// Noise's HKDF with `N` outputs: `KDF_N(key, input)` in the WireGuard paper.
pub fn kdf<const N: usize>(chaining_key: &[u8; HASH_LEN], input: &[u8]) -> [[u8; HASH_LEN]; N] {
    let mut prk = hmac(chaining_key, &[input]);
    let mut outputs = [[0u8; HASH_LEN]; N];
    let mut previous = [0u8; HASH_LEN];
    for (i, output) in outputs.iter_mut().enumerate() {
        let previous_part: &[u8] = if i == 0 { &[] } else { &previous };
        *output = hmac(&prk, &[previous_part, &[i as u8 + 1]]);
        previous = *output;
    }
    previous.zeroize();
    prk.zeroize();
    outputs
}

/// Constant-time equality of two MACs.
pub fn macs_equal(a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn blake2s_known_answer() {
        // RFC 7693 appendix B: BLAKE2s-256("abc").
        assert_eq!(
            hash(&[b"a", b"bc"]).to_vec(),
            hex("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
        );
    }

    #[test]
    fn wireguard_initial_chaining_key_and_hash() {
        // Values every WireGuard implementation precomputes (boringtun's INITIAL_CHAIN_KEY
        // and INITIAL_CHAIN_HASH).
        let chaining_key = hash(&[b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"]);
        assert_eq!(
            chaining_key.to_vec(),
            hex("60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36")
        );
        let chain_hash = hash(&[&chaining_key, b"WireGuard v1 zx2c4 Jason@zx2c4.com"]);
        assert_eq!(
            chain_hash.to_vec(),
            hex("2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3")
        );
    }

    #[test]
    fn hmac_matches_the_generic_construction() {
        // HMAC over a key shorter than the block equals the textbook definition.
        let key = [7u8; 32];
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&key);
        let inner = hash(&[&block.map(|b| b ^ 0x36), b"message"]);
        let expected = hash(&[&block.map(|b| b ^ 0x5c), &inner]);
        assert_eq!(hmac(&key, &[b"mess", b"age"]), expected);
    }

    #[test]
    fn kdf_outputs_chain() {
        let ck = [1u8; 32];
        let [a, b] = kdf::<2>(&ck, b"input");
        let [a3, b3, c3] = kdf::<3>(&ck, b"input");
        assert_eq!((a, b), (a3, b3));
        let prk = hmac(&ck, &[b"input"]);
        assert_eq!(c3, hmac(&prk, &[&b3, &[3]]));
    }
}
