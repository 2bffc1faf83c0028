//! The benchmark suites.

pub mod crypto;
pub mod handshake;
pub mod hostile;
pub mod pipeline;
pub mod scale;
pub mod soak;
pub mod spread;
pub mod tunnel;
