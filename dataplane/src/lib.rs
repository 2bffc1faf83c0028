//! warpline data plane.
pub mod aead;
pub mod replay;
pub mod time;
pub mod wire;
pub mod session;
pub mod allowed_ips;
