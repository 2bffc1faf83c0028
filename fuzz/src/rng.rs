//! A seeded random number generator, so a fuzzer input replays exactly.
//!
//! The handshake code draws ephemeral keys, sender indices and cookie secrets from the RNG the
//! node was given. Fuzzing needs those draws to be a function of the input alone, or a crash
//! found once would not reproduce. Cryptographic quality does not matter here: the fuzzer
//! plays an attacker who cannot read the node's memory anyway.

use rand_core::{CryptoRng, RngCore};

/// SplitMix64: tiny, fast, and every seed gives a full-period stream.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Marker only: see the module docs for why a non-cryptographic generator is acceptable here.
impl CryptoRng for SeededRng {}
