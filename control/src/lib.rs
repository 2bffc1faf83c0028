//! warpline control plane: keys, Noise IKpsk2 handshakes and cookies, peer state and timers,
//! configuration. Everything protocol-related here is sans-IO: time is passed in, nothing here
//! opens a socket or reads the clock.

pub mod cli;
pub mod config;
pub mod cookie;
pub mod keys;
pub mod node;
pub mod noise;
pub mod peer;
pub mod tai64n;
pub mod timers;
pub mod tunnel;
