//! WireGuard's handshake: Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s with the WireGuard prologue,
//! and the same pattern under `Noise_IKpsk2_25519_AESGCM_BLAKE2s` for the AES-256-GCM suite.
//!
//! Written here over `x25519-dalek`, `blake2` and `ring` rather than taken from `snow`:
//! snow builds the Noise pattern correctly, but its API cannot (a) precompute the static-static
//! DH per peer, which WireGuard caches and which saves one of the responder's four scalar
//! multiplications, (b) try one initiation against two protocol names without redoing the
//! ephemeral-static DH, which the responder needs to tell the suites apart before it knows the
//! peer, or (c) avoid a heap-allocated, dyn-dispatched state per handshake. The whole
//! construction is under 300 lines, is checked against public vectors and the boringtun
//! implementation (control/tests/interop_boringtun.rs), and `cargo xtask bench handshake`
//! measures it.
//!
//! Sans-IO: no clock, no socket. Time arrives as a TAI64N label; randomness from the caller.

mod handshake;
pub mod primitives;

pub use handshake::{
    HandshakeError, InitiationState, LocalStatic, ReceivedInitiation, RemoteStatic, SessionKeys,
    consume_initiation, consume_response, create_initiation, create_response,
};
