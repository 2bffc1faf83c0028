//! warpline's packet path: everything a data-plane worker touches per packet, and the
//! kernel interfaces that feed it.
//!
//! - [`wire`]: checked, zero-copy views of Ethernet, IPv4/IPv6, UDP and WireGuard messages.
//! - [`aead`]: the transport AEAD suites, sealed and opened in place.
//! - [`replay`], [`session`]: the anti-replay window and one keypair's send/receive state.
//! - [`sessions`], [`pipeline`]: the lock-free session table workers read, and the hot path
//!   as a pure function over a batch of frames (decap and encap in place, verdicts, counted
//!   drops).
//! - [`spread`]: one tunnel's decryption spread over several workers, order kept.
//! - [`allowed_ips`]: cryptokey routing, longest-prefix match.
//! - [`next_hops`]: the LAN side's destination → Ethernet next hop map (full bypass).
//! - [`time`]: time as a value; nothing here reads a clock.
//! - [`xdp`], [`xsk`]: the XDP steering program's loader and our AF_XDP wrapper.
//! - [`tun`]: the TUN device with virtio-net offloads (GSO split, GRO coalesce).
//! - [`lab`]: network namespaces and veth over netlink, for tests, the demo and benchmarks.
//!
//! Dependencies, chosen deliberately: `ring` for AEAD (fastest measured here, see [`aead`]);
//! `aya` 0.14 (pinned: 0.15+ needs a newer rustc) to load XDP programs without C libraries;
//! `libc` for the AF_XDP and netlink syscalls, wrapped by our own code because no AF_XDP
//! crate fits (see [`xsk`]); `arc-swap` to publish session-table snapshots to workers without
//! locks (see [`sessions`]); `rtrb` for the wait-free rings between workers (see [`spread`]);
//! `zeroize` for key hygiene.

pub mod aead;
pub mod allowed_ips;
pub mod lab;
pub mod next_hops;
pub mod pipeline;
pub mod replay;
pub mod session;
pub mod sessions;
pub mod spread;
pub mod time;
pub mod tun;
pub mod wire;
pub mod worker;
pub mod xdp;
pub mod xsk;
