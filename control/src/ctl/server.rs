//! The daemon side of the control socket.
//!
//! A control socket is reachable by anything on the host that can open the file, and the daemon
//! behind it forwards line-rate traffic, so the server is built to be unbreakable by its callers:
//!
//! - Root only, twice over: the socket file is mode 0600, and every connection's kernel-reported
//!   peer credentials (`SO_PEERCRED`) must be uid 0 or the daemon's own uid, else the caller gets
//!   an error and nothing else.
//! - Bounded work per caller: one request line of at most [`MAX_REQUEST_BYTES`], read under one
//!   deadline for the whole request (not per `read`, so a byte-a-second client cannot hold a
//!   connection open), then one response and the connection closes.
//! - Bounded concurrency: at most [`ServerLimits::max_connections`] connections are served at
//!   once, each on its own thread; callers beyond that get an error at once.
//! - Every failure (malformed JSON, unknown request, bad values, oversize, timeout, even a
//!   panicking handler) becomes an error response to that caller; the accept loop and the
//!   handler carry on.
//!
//! Requests reach the handler one at a time (it sits behind a mutex), so it may mutate the
//! daemon's state without further locking.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::CtlError;
use super::protocol::{
    MAX_REQUEST_BYTES, ProtocolError, Request, Response, decode_request, encode_line,
};

/// The message a caller that is neither root nor the daemon's user gets.
pub const PERMISSION_DENIED: &str = "permission denied: the control socket is root-only";

/// How long and how many: the server's resource bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// The whole request line must arrive within this time after the connection is accepted.
    pub request_timeout: Duration,
    /// How long writing a response may block on a client that does not read.
    pub write_timeout: Duration,
    /// Connections served at once; more are answered with an error and closed.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    /// 2 s to send a request, 2 s to take the response, 16 connections.
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(2),
            max_connections: 16,
        }
    }
}

/// A bound, not yet serving, control socket.
#[derive(Debug)]
pub struct CtlServer {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file we created, so we only ever remove our own.
    file_id: (u64, u64),
    limits: ServerLimits,
}

impl CtlServer {
    /// Binds the control socket at `path`.
    ///
    /// Creates the parent directory (mode 0755) if it is missing. A socket file already at
    /// `path` is tested: if a daemon answers on it the bind is refused with
    /// [`CtlError::AlreadyRunning`], if nothing answers it is stale and is replaced. Anything
    /// other than a socket at `path` is left alone ([`CtlError::NotASocket`]). The new socket
    /// is made mode 0600.
    pub fn bind(path: impl AsRef<Path>) -> Result<Self, CtlError> {
        let path = path.as_ref().to_path_buf();
        let io_error = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| CtlError::Io {
                action,
                path,
                source,
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(io_error("cannot create directory", parent))?;
        }
        match fs::symlink_metadata(&path) {
            Ok(metadata) if !metadata.file_type().is_socket() => {
                return Err(CtlError::NotASocket { path });
            }
            Ok(_) => match UnixStream::connect(&path) {
                Ok(_live) => return Err(CtlError::AlreadyRunning { path }),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing stale control socket");
                    fs::remove_file(&path)
                        .map_err(io_error("cannot remove stale socket", &path))?;
                }
                Err(e) => return Err(io_error("cannot check existing socket", &path)(e)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("cannot inspect", &path)(e)),
        }
        let listener = UnixListener::bind(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                // Another daemon bound it between our check and our bind.
                CtlError::AlreadyRunning { path: path.clone() }
            } else {
                io_error("cannot bind", &path)(e)
            }
        })?;
        // Between bind and chmod the file has the umask's mode; the credential check below
        // refuses anyone who connects in that window.
        let chmod = fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(io_error("cannot set permissions on", &path));
        let metadata = chmod
            .and_then(|()| fs::symlink_metadata(&path).map_err(io_error("cannot inspect", &path)));
        match metadata {
            Ok(metadata) => Ok(Self {
                listener,
                file_id: (metadata.dev(), metadata.ino()),
                path,
                limits: ServerLimits::default(),
            }),
            Err(error) => {
                let _ = fs::remove_file(&path);
                Err(error)
            }
        }
    }

    /// Replaces the default [`ServerLimits`].
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts serving on a thread of its own, one more thread per connection; every valid
    /// request is passed to `handler` (one at a time) and its response sent back.
    ///
    /// Serving stops, and the socket file is removed, when the returned handle is shut down or
    /// dropped.
    pub fn serve<H>(self, handler: H) -> Result<CtlHandle, CtlError>
    where
        H: FnMut(Request) -> Response + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = self.listener.try_clone().map_err(|source| CtlError::Io {
            action: "cannot duplicate listener for",
            path: self.path.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            handler: Mutex::new(Box::new(handler)),
            active: AtomicUsize::new(0),
            limits: self.limits,
            // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
            own_uid: unsafe { libc::geteuid() },
        });
        let listener = self.listener;
        let accept_stop = Arc::clone(&stop);
        let accept_thread = thread::Builder::new()
            .name("warpline-ctl".into())
            .spawn(move || accept_loop(&listener, &accept_stop, &shared))
            .map_err(|source| CtlError::Io {
                action: "cannot start the server thread for",
                path: self.path.clone(),
                source,
            })?;
        Ok(CtlHandle {
            stop,
            wake,
            accept_thread: Some(accept_thread),
            path: self.path,
            file_id: self.file_id,
        })
    }
}

/// A serving control socket. [`CtlHandle::shutdown`], or dropping the handle, stops accepting,
/// waits for the accept thread and removes the socket file (if it is still ours). Connections
/// already being served finish on their own threads, within the request and write timeouts.
#[derive(Debug)]
pub struct CtlHandle {
    stop: Arc<AtomicBool>,
    /// A duplicate of the listening socket, to wake the blocked `accept`.
    wake: UnixListener,
    accept_thread: Option<JoinHandle<()>>,
    path: PathBuf,
    file_id: (u64, u64),
}

impl CtlHandle {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving and removes the socket file.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(accept_thread) = self.accept_thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // SAFETY: `wake` is an open listening socket owned by `self`, so its descriptor is
        // valid for the duration of the call; shutdown() only changes socket state. It wakes
        // the accept thread, blocked in accept() on the same socket, with an error.
        let rc = unsafe { libc::shutdown(self.wake.as_raw_fd(), libc::SHUT_RDWR) };
        if rc != 0 {
            // Fall back to waking it with a connection of our own.
            let _ = UnixStream::connect(&self.path);
        }
        let _ = accept_thread.join();
        let ours =
            fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file_id);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for CtlHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

type Handler = Box<dyn FnMut(Request) -> Response + Send>;

struct Shared {
    handler: Mutex<Handler>,
    active: AtomicUsize,
    limits: ServerLimits,
    own_uid: u32,
}

/// Releases a connection slot when the connection's thread ends, however it ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: &UnixListener, stop: &AtomicBool, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning, then go on.
                tracing::warn!(%error, "control socket accept failed");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = stream.set_write_timeout(Some(shared.limits.write_timeout));
        match peer_uid(&stream) {
            Ok(uid) if uid == 0 || uid == shared.own_uid => {}
            Ok(uid) => {
                tracing::warn!(uid, "control socket: refused a caller that is not root");
                refuse(stream, PERMISSION_DENIED);
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "control socket: cannot read peer credentials");
                refuse(stream, "permission denied: cannot identify the caller");
                continue;
            }
        }
        if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.limits.max_connections {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            refuse(
                stream,
                "too many control connections at once; try again in a moment",
            );
            continue;
        }
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("warpline-ctl-conn".into())
            .spawn(move || {
                let _slot = Slot(&conn_shared.active);
                serve_connection(stream, &conn_shared);
            });
        if let Err(error) = spawned {
            // The closure, and with it the stream and the slot count, was not consumed by a
            // thread: give the slot back. The stream was dropped with the closure.
            shared.active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(%error, "control socket: cannot start a connection thread");
        }
    }
}

/// Sends one error response and closes.
fn refuse(mut stream: UnixStream, message: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(encode_line(&Response::error(message)).as_bytes());
}

fn serve_connection(mut stream: UnixStream, shared: &Shared) {
    let response = match read_request(&mut stream, shared.limits.request_timeout) {
        Ok(Some(request)) => {
            let mut handler = shared
                .handler
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            catch_unwind(AssertUnwindSafe(|| handler(request))).unwrap_or_else(|_| {
                tracing::error!("control request handler panicked");
                Response::error("internal error in the daemon while handling the request")
            })
        }
        // Connected and closed without a word (a liveness probe): nothing to answer.
        Ok(None) => return,
        Err(error) => {
            tracing::debug!(%error, "control socket: refused a request");
            Response::from(error)
        }
    };
    let _ = stream.write_all(encode_line(&response).as_bytes());
}

/// Why reading a request failed, as the caller will be told.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The line is not a valid request.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// No complete line before the deadline.
    #[error("timed out waiting for a complete request line")]
    Timeout,
    /// The connection failed.
    #[error("cannot read the request: {0}")]
    Io(io::Error),
}

impl From<ReadError> for Response {
    fn from(error: ReadError) -> Self {
        Response::error(error.to_string())
    }
}

/// Reads one request line under one overall deadline. `Ok(None)`: the client closed without
/// sending anything. Public for the `ctl_request` fuzz target, which checks this framing
/// against [`decode_request`] on the same bytes.
pub fn read_request(
    stream: &mut UnixStream,
    timeout: Duration,
) -> Result<Option<Request>, ReadError> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        stream.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::Timeout);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        if n == 0 {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            // A last line without its newline is still a request.
            return Ok(Some(decode_request(&line)?));
        }
        let chunk = &chunk[..n];
        if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&chunk[..=end]);
            // Anything after the newline is ignored: one request per connection.
            return decode_request(&line).map(Some).map_err(ReadError::from);
        }
        line.extend_from_slice(chunk);
        if line.len() > MAX_REQUEST_BYTES {
            return Err(ProtocolError::TooLarge {
                limit: MAX_REQUEST_BYTES,
            }
            .into());
        }
    }
}

/// The uid of the process at the other end, as the kernel recorded it at `connect`.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let expected = std::mem::size_of::<libc::ucred>();
    let mut len = libc::socklen_t::try_from(expected).map_err(io::Error::other)?;
    // SAFETY: the descriptor belongs to `stream`, which outlives the call; `cred` is a live,
    // writable `ucred` and `len` holds its exact size, which is what SO_PEERCRED writes; both
    // pointers come from exclusive borrows that last for the call only.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if usize::try_from(len).ok() != Some(expected) {
        return Err(io::Error::other("short SO_PEERCRED answer"));
    }
    Ok(cred.uid)
}
