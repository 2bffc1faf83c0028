//! The control socket's request decoder ([`decode_request`]) on arbitrary lines: what any
//! local root process, or a confused script, may write to `/run/warpline/<name>.sock`.
//!
//! Asserts: decoding never panics; an accepted request validates, encodes to one line and
//! decodes back to itself; a refused one becomes an error response that encodes to one line
//! and decodes back to itself; lines over the limit are refused as too large; and the value
//! of a `preshared_key` field reaches neither an error message nor a request's Debug output.

use warpline_control::ctl::Response;

use crate::secrets::looks_like_key_material;
use warpline_control::ctl::protocol::{
    MAX_REQUEST_BYTES, ProtocolError, decode_request, decode_response, encode_line,
};

/// One input: the request line as read from the socket.
pub fn run(data: &[u8]) {
    let secret = preshared_key_value(data);
    match decode_request(data) {
        Ok(request) => {
            assert!(data.len() <= MAX_REQUEST_BYTES);
            assert_eq!(request.validate(), Ok(()), "decoded but invalid");
            let line = encode_line(&request);
            assert_one_line(&line);
            assert_eq!(
                decode_request(line.as_bytes()).as_ref(),
                Ok(&request),
                "request does not round-trip: {line}"
            );
            if let Some(secret) = &secret {
                assert!(!format!("{request:?}").contains(secret.as_str()));
            }
        }
        Err(error) => {
            if data.len() > MAX_REQUEST_BYTES {
                assert!(matches!(error, ProtocolError::TooLarge { .. }));
            }
            let message = error.to_string();
            if let Some(secret) = &secret {
                assert!(
                    !message.contains(secret.as_str()),
                    "a preshared key reached an error message: {message}"
                );
            }
            let response = Response::from(error);
            let line = encode_line(&response);
            assert_one_line(&line);
            assert_eq!(
                decode_response(line.as_bytes()).as_ref(),
                Ok(&response),
                "error response does not round-trip: {line}"
            );
        }
    }
}

fn assert_one_line(line: &str) {
    assert!(line.ends_with('\n'), "no newline: {line:?}");
    assert!(
        !line[..line.len() - 1].contains('\n'),
        "more than one line: {line:?}"
    );
}

/// The string value of a top-level `preshared_key` field, when the input is a JSON object
/// with one and the value appears nowhere else in the input.
fn preshared_key_value(data: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    let secret = value.get("preshared_key")?.as_str()?;
    let text = std::str::from_utf8(data).ok()?;
    (looks_like_key_material(secret) && text.matches(secret).count() == 1)
        .then(|| secret.to_owned())
}
