//! The control client's response decoder ([`decode_response`]) and the `warpline show`
//! renderers on arbitrary lines: what the CLI reads back from whatever answers on the socket.
//!
//! Asserts: decoding never panics; an accepted response encodes to one line that decodes
//! back to itself; a `show` snapshot renders as text (at any clock reading, including one
//! before its handshakes) and as JSON without panicking, and the JSON parses back to the
//! same snapshot.

use warpline_control::ctl::protocol::{decode_response, encode_line};
use warpline_control::ctl::render::{render_json, render_show};
use warpline_control::ctl::{InterfaceSnapshot, Response};

/// Clock readings to render at: the epoch (every handshake is in the future), a plausible
/// now, and the end of time.
const NOW_UNIX_SECS: [u64; 3] = [0, 1_700_000_000, u64::MAX];

/// One input: the response line as read from the socket.
pub fn run(data: &[u8]) {
    let Ok(response) = decode_response(data) else {
        return;
    };
    let line = encode_line(&response);
    assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
    assert_eq!(
        decode_response(line.as_bytes()).as_ref(),
        Ok(&response),
        "response does not round-trip: {line}"
    );
    if let Response::Show(snapshot) = &response {
        for now in NOW_UNIX_SECS {
            let text = render_show(snapshot, now);
            assert!(text.starts_with("interface: "));
        }
        let json = render_json(snapshot);
        let parsed: InterfaceSnapshot =
            serde_json::from_str(&json).expect("render_json output is JSON of a snapshot");
        assert_eq!(&parsed, snapshot, "render_json lost information");
    }
}
