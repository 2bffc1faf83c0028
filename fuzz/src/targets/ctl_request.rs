//! The control socket's request decoder ([`decode_request`]) on arbitrary lines: what any
//! local root process, or a confused script, may write to `/run/warpline/<name>.sock`.
//!
//! Asserts: decoding never panics; an accepted request validates, encodes to one line and
//! decodes back to itself; a refused one becomes an error response that encodes to one line
//! and decodes back to itself; lines over the limit are refused as too large; and the value
//! of a `preshared_key` field reaches neither an error message nor a request's Debug output.
//!
//! The same bytes also go through the server's framing ([`read_request`]) over a real Unix
//! socket, arriving in small chunks: it must answer exactly what [`decode_request`] answers
//! for the first line (a client that sends only whitespace and closes is no request).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use warpline_control::ctl::Response;
use warpline_control::ctl::server::{ReadError, read_request};

use crate::secrets::looks_like_key_material;
use warpline_control::ctl::protocol::{
    MAX_REQUEST_BYTES, ProtocolError, decode_request, decode_response, encode_line,
};

/// One input: the request line as read from the socket.
pub fn run(data: &[u8]) {
    check_framing(data);
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

/// The framing over a socket pair, fed in 7-byte writes, against the line decoder.
fn check_framing(data: &[u8]) {
    let (mut client, mut server) = UnixStream::pair().expect("socketpair");
    // Small writes cost socket-buffer space each: a writer thread keeps the pair from
    // filling up while nothing reads.
    let framed = std::thread::scope(|scope| {
        scope.spawn(move || {
            for chunk in data.chunks(7) {
                if client.write_all(chunk).is_err() {
                    break; // the server stopped reading (it has its answer)
                }
            }
        });
        let framed = read_request(&mut server, Duration::from_secs(5));
        // Let the writer finish (it blocks on a full buffer otherwise): read to its end.
        let _ = server.set_read_timeout(None);
        let _ = std::io::copy(&mut server, &mut std::io::sink());
        framed
    });
    let line = match data.iter().position(|&b| b == b'\n') {
        Some(end) => &data[..=end],
        None => data,
    };
    let closed_empty = !data.contains(&b'\n') && data.iter().all(u8::is_ascii_whitespace);
    match (framed, decode_request(line)) {
        (Ok(None), _) => assert!(closed_empty, "framing saw no request in {data:?}"),
        (Ok(Some(framed)), Ok(decoded)) => assert_eq!(framed, decoded),
        (Err(ReadError::Protocol(framed)), Err(decoded)) => {
            assert_eq!(framed.to_string(), decoded.to_string());
        }
        (Err(ReadError::Protocol(ProtocolError::TooLarge { .. })), Ok(_)) => {
            panic!("framing refused as too large a line the decoder accepts")
        }
        (framed, decoded) => panic!("framing {framed:?} but decoding {decoded:?}"),
    }
}
