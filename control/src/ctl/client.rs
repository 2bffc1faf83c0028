//! The CLI side of the control socket: one request, one response.
//!
//! Errors are mapped to what the user should do next ([`CtlError`]'s messages): a missing or
//! stale socket means the daemon is not running, `EACCES` means "run as root", a silent daemon
//! is a timeout rather than a hang. An error *response* (the daemon refused the request) is not
//! an error here: it comes back as [`Response::Error`] for the caller to print.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::CtlError;
use super::protocol::{MAX_RESPONSE_BYTES, Request, Response, decode_response, encode_line};

/// How long [`request`] waits for the daemon to take the request and answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` to the daemon on `path` and returns its response, waiting at most
/// [`DEFAULT_TIMEOUT`] for each read or write.
pub fn request(path: impl AsRef<Path>, request: &Request) -> Result<Response, CtlError> {
    request_with_timeout(path, request, DEFAULT_TIMEOUT)
}

/// [`request`] with a chosen timeout for each read or write.
pub fn request_with_timeout(
    path: impl AsRef<Path>,
    request: &Request,
    timeout: Duration,
) -> Result<Response, CtlError> {
    let path = path.as_ref();
    let io_error = |action: &'static str| {
        move |source| CtlError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let timeout_error = || CtlError::Timeout {
        path: path.to_path_buf(),
        secs: timeout.as_secs().max(1),
    };
    let mut stream = UnixStream::connect(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => CtlError::NotRunning {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => CtlError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => io_error("cannot connect to")(error),
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(io_error("cannot set timeouts on"))?;

    let sent = stream.write_all(encode_line(request).as_bytes());
    match sent {
        Ok(()) => {}
        // The daemon may already have answered (a refusal) and closed: read that answer.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) if is_timeout(&e) => return Err(timeout_error()),
        Err(e) => return Err(io_error("cannot send the request to")(e)),
    }

    let mut line = Vec::new();
    let limit = u64::try_from(MAX_RESPONSE_BYTES).unwrap_or(u64::MAX) + 1;
    let read = (&mut stream).take(limit).read_to_end(&mut line);
    match read {
        Ok(_) => {}
        Err(e) if is_timeout(&e) => return Err(timeout_error()),
        // Data the daemon wrote before closing was already read; a reset after it is harmless
        // if a complete line arrived.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset && line.ends_with(b"\n") => {}
        Err(e) => return Err(io_error("cannot read the response from")(e)),
    }
    let bad = |message: String| CtlError::BadResponse {
        path: path.to_path_buf(),
        message,
    };
    if line.len() > MAX_RESPONSE_BYTES {
        return Err(bad(format!("longer than {MAX_RESPONSE_BYTES} bytes")));
    }
    if line.is_empty() {
        return Err(bad(
            "the daemon closed the connection without answering".into()
        ));
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    decode_response(&line[..end]).map_err(|error| bad(error.to_string()))
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
