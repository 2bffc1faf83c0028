//! The benchmark suites.

pub mod handshake;
