//! One module per fuzz target; `fuzz_targets/<name>.rs` only forwards the input to `run`.

pub mod config_parse;
pub mod ctl_request;
pub mod ctl_response;
pub mod decap_frames;
pub mod encap_roundtrip;
pub mod ha_sync;
pub mod handshake_responder;
pub mod replay_window;
pub mod wire_headers;
pub mod wire_messages;
