//! warpline's fuzz targets: every surface that takes bytes from someone we do not trust.
//!
//! | target | what it feeds | from where, in production |
//! |---|---|---|
//! | `wire_messages` | WireGuard message views | the UDP socket / AF_XDP |
//! | `wire_headers` | Ethernet, IPv4, IPv6, UDP views, checksums, outer header writers | the NIC; inner packets from TUN |
//! | `decap_frames` | the data plane's receive pipeline, through replay window and inner IP | the NIC |
//! | `encap_roundtrip` | the send pipeline, then the receive pipeline on its output | TUN |
//! | `replay_window` | both anti-replay windows against a model | peers' counters |
//! | `handshake_responder` | the sans-IO node as responder, next to a real initiator | the UDP socket |
//! | `ha_sync` | HA sync messages, session records, record import, the channel handshake | the other gateway |
//! | `config_parse` | the wg-quick config parser and writer | config files |
//! | `ctl_request` | the control socket's request decoder | local clients |
//! | `ctl_response` | the control client's response decoder and `show` renderers | the daemon |
//!
//! Each target's module says what it asserts beyond "does not panic". The logic lives here,
//! in a library, so the seed generator (`examples/make_seeds.rs`) can encode inputs in the
//! layouts the targets decode, and so the targets compile and run without libFuzzer too.
//!
//! ## How it is built and run
//!
//! `cargo xtask fuzz` builds the targets with stable rustc and the flags libFuzzer needs
//! (`-Cpasses=sancov-module` with inline 8-bit counters, PC tables and compare tracing, plus
//! `--cfg fuzzing`) on warpline's own crates only, in release with debug assertions and
//! overflow checks on, and links libFuzzer from `libfuzzer-sys` (which compiles it from C++
//! source with the `cc` crate). No nightly and no `cargo-fuzz` install: cargo-fuzz's default
//! sanitizer (ASan) needs nightly, and with `--sanitizer none` it would only pass these same
//! flags. Memory errors are what ASan would add, and the code under test has no `unsafe` on
//! these paths. The crate keeps cargo-fuzz's layout, so `cargo +nightly fuzz run <target>`
//! works for whoever wants ASan. `fuzz/README.md` has the details.

#![forbid(unsafe_code)]

pub mod input;
pub mod lab;
pub mod model;
pub mod rng;
pub mod secrets;
pub mod targets;
