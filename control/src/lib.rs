//! warpline control plane: keys, Noise IKpsk2 handshakes and cookies, peer state and timers,
//! configuration, cryptokey routing, the control socket, metrics and the `warpline up`
//! daemon.
//!
//! The protocol modules (`noise`, `cookie`, `peer`, `node`, `tunnel`, `timers`) are sans-IO:
//! time is passed in and they never open a socket or read a clock. The IO lives in `daemon`
//! (UDP socket, TUN, event loop), `ctl` (the control socket) and `metrics` (HTTP).
//!
//! Dependencies: `x25519-dalek` and `blake2` for the handshake (see `noise` for why not
//! `snow`), `chacha20poly1305` only for XChaCha20 cookie replies (ring has no XChaCha),
//! `serde`/`serde_json` for the control protocol, `clap` for the CLI, `tracing` for logs,
//! `signal-hook` for SIGINT/SIGTERM, `zeroize`/`subtle` for key hygiene.

pub mod cli;
pub mod config;
pub mod cookie;
pub mod ctl;
pub mod daemon;
pub mod doctor;
pub mod failover;
pub mod ha;
pub mod hostile;
pub mod keys;
pub mod layout;
pub mod metrics;
pub mod node;
pub mod noise;
pub mod peer;
pub mod ratelimit;
pub mod tai64n;
pub mod timers;
pub mod tunnel;
