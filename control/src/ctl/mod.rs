//! The control socket: how `warpline show`, `warpline set` and `warpline down` talk to a running
//! `warpline up <name>` daemon.
//!
//! The daemon owns the interface's state (keys, peers, sessions, worker counters); the CLI is a
//! separate, short-lived process. A Unix stream socket at `/run/warpline/<name>.sock`
//! ([`socket_path`]) joins them because file permissions and the kernel's peer credentials
//! (`SO_PEERCRED`) make "root only" enforceable without any authentication protocol of our own,
//! and because it needs no port and no network exposure.
//!
//! - [`model`]: the snapshot types `show` reports (public data only, no secrets).
//! - [`protocol`]: requests and responses, one JSON object per line, size-limited and checked.
//! - [`server`]: [`CtlServer`], the daemon side: refuses non-root callers, oversized, slow and
//!   malformed requests, and too many connections, each with an error, without disturbing the
//!   daemon.
//! - [`client`]: [`request`], the CLI side, with errors that say what to do.
//! - [`render`]: `wg show`-style text and `--json` output.

pub mod client;
pub mod model;
pub mod protocol;
pub mod render;
pub mod server;

use std::io;
use std::path::{Path, PathBuf};

pub use client::request;
pub use model::{HaPartnerSnapshot, HaSnapshot, InterfaceSnapshot, PeerSnapshot, WorkerSnapshot};
pub use protocol::{Request, Response};
pub use server::{CtlHandle, CtlServer};

/// The directory that holds the daemons' control sockets.
pub const SOCKET_DIR: &str = "/run/warpline";

/// The control socket of interface `name`: `/run/warpline/<name>.sock`.
///
/// Refuses names that are empty, longer than an interface name may be (15 bytes), or hold
/// anything but ASCII letters, digits, `_`, `-`, `.` (so no `/` and no `..` escape the
/// directory).
pub fn socket_path(name: &str) -> Result<PathBuf, CtlError> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(Path::new(SOCKET_DIR).join(format!("{name}.sock")))
    } else {
        Err(CtlError::BadName {
            name: name.to_owned(),
        })
    }
}

/// Everything that can go wrong talking over, or setting up, a control socket. Each message
/// says what the user can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// No daemon listens on the socket (no file, or a stale one).
    #[error("no warpline is running on {}: is `warpline up <name>` running?", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket exists but this user may not use it.
    #[error("permission denied on {}: the control socket is root-only, run as root", path.display())]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// The daemon did not answer in time.
    #[error("the daemon on {} did not answer within {secs} s: it may be overloaded or stuck", path.display())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// The time waited, in seconds.
        secs: u64,
    },
    /// The daemon answered something that is not a response (a different program or version?).
    #[error("bad response from {}: {message} (is the daemon the same warpline version as this CLI?)", path.display())]
    BadResponse {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Binding: another daemon already answers on the socket.
    #[error("another warpline is already running on {}", path.display())]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// Binding: something that is not a socket is in the way.
    #[error("{} exists and is not a socket: remove it or pick another interface name", path.display())]
    NotASocket {
        /// The path in the way.
        path: PathBuf,
    },
    /// The interface name cannot name a socket.
    #[error("{name:?} is not a valid interface name (1 to 15 of A-Z a-z 0-9 _ - .)")]
    BadName {
        /// The name given.
        name: String,
    },
    /// Any other I/O failure.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot connect to").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths() {
        assert_eq!(
            socket_path("wg0").unwrap(),
            Path::new("/run/warpline/wg0.sock")
        );
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../etc",
            "0123456789abcdef",
            "wg 0",
            "wg0\n",
        ] {
            assert!(
                matches!(socket_path(bad), Err(CtlError::BadName { .. })),
                "{bad:?}"
            );
        }
        let message = CtlError::NotRunning {
            path: socket_path("wg0").unwrap(),
        }
        .to_string();
        assert!(message.contains("warpline up"), "{message}");
    }
}
