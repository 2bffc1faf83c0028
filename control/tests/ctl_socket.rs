//! The control socket over real Unix sockets: round trips, and hostile callers (malformed,
//! oversized, idle, too many, not root) refused with an error while the server keeps serving.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use warpline_control::ctl::client::request_with_timeout;
use warpline_control::ctl::server::{PERMISSION_DENIED, ServerLimits};
use warpline_control::ctl::{
    CtlError, CtlHandle, CtlServer, InterfaceSnapshot, PeerSnapshot, Request, Response, request,
};

const KEY_A: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
const KEY_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
const CHILD_ENV: &str = "WARPLINE_CTL_TEST_CHILD_SOCKET";

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "warpline-ctl-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("wg0.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A toy daemon: a peer table behind the socket.
#[derive(Default)]
struct Daemon {
    peers: BTreeMap<String, PeerSnapshot>,
    down: bool,
}

fn handler(state: Arc<Mutex<Daemon>>) -> impl FnMut(Request) -> Response + Send + 'static {
    move |request| {
        let mut state = state.lock().unwrap();
        match request {
            Request::Show => Response::Show(InterfaceSnapshot {
                name: "wg0".into(),
                public_key: KEY_A.into(),
                listen_port: Some(51820),
                peers: state.peers.values().cloned().collect(),
                workers: vec![],
            }),
            Request::Down => {
                state.down = true;
                Response::Ok
            }
            Request::SetPeer {
                public_key,
                preshared_key,
                allowed_ips,
                endpoint,
                persistent_keepalive,
                cipher,
            } => {
                let peer = PeerSnapshot {
                    public_key: public_key.clone(),
                    endpoint,
                    allowed_ips,
                    latest_handshake_unix_secs: None,
                    handshakes: 0,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    persistent_keepalive_secs: persistent_keepalive,
                    cipher: cipher.unwrap_or_else(|| "chacha20poly1305".into()),
                    preshared_key: preshared_key.is_some(),
                    failover: None,
                };
                state.peers.insert(public_key, peer);
                Response::Ok
            }
            Request::RemovePeer { public_key } => match state.peers.remove(&public_key) {
                Some(_) => Response::Ok,
                None => Response::error(format!("no peer {public_key}")),
            },
            Request::HaPromote | Request::HaDemote | Request::HaStatus => {
                Response::error("HA is not configured")
            }
        }
    }
}

fn start(dir: &TempDir, limits: ServerLimits) -> (CtlHandle, Arc<Mutex<Daemon>>) {
    let state = Arc::new(Mutex::new(Daemon::default()));
    let handle = CtlServer::bind(dir.socket())
        .unwrap()
        .with_limits(limits)
        .serve(handler(Arc::clone(&state)))
        .unwrap();
    (handle, state)
}

fn quick_limits() -> ServerLimits {
    ServerLimits {
        request_timeout: Duration::from_millis(800),
        write_timeout: Duration::from_secs(2),
        max_connections: 8,
    }
}

fn show_peers(path: &Path) -> usize {
    match request(path, &Request::Show).unwrap() {
        Response::Show(snapshot) => snapshot.peers.len(),
        other => panic!("expected Show, got {other:?}"),
    }
}

fn error_message(response: Response) -> String {
    match response {
        Response::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Sends raw bytes and reads the whole answer.
fn raw(path: &Path, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes); // may fail with EPIPE once the server has refused
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn set_peer(key: &str) -> Request {
    Request::SetPeer {
        public_key: key.into(),
        preshared_key: Some(KEY_B.into()),
        allowed_ips: vec!["10.0.0.2/32".into(), "fd00::2/128".into()],
        endpoint: Some("203.0.113.7:51820".into()),
        persistent_keepalive: Some(25),
        cipher: Some("aes256gcm".into()),
    }
}

#[test]
fn round_trip_show_set_remove_down() {
    let dir = TempDir::new("roundtrip");
    let path = dir.0.join("nested/run/wg0.sock");
    let state = Arc::new(Mutex::new(Daemon::default()));
    let handle = CtlServer::bind(&path)
        .unwrap()
        .serve(handler(Arc::clone(&state)))
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o755, "directory mode {dir_mode:o}");

    assert_eq!(show_peers(&path), 0);
    assert_eq!(request(&path, &set_peer(KEY_A)).unwrap(), Response::Ok);
    assert_eq!(request(&path, &set_peer(KEY_B)).unwrap(), Response::Ok);
    match request(&path, &Request::Show).unwrap() {
        Response::Show(snapshot) => {
            assert_eq!(snapshot.peers.len(), 2);
            let peer = &snapshot.peers[0];
            assert_eq!(peer.allowed_ips, ["10.0.0.2/32", "fd00::2/128"]);
            assert_eq!(peer.endpoint.as_deref(), Some("203.0.113.7:51820"));
            assert!(peer.preshared_key);
        }
        other => panic!("{other:?}"),
    }
    let remove = Request::RemovePeer {
        public_key: KEY_A.into(),
    };
    assert_eq!(request(&path, &remove).unwrap(), Response::Ok);
    assert!(error_message(request(&path, &remove).unwrap()).contains("no peer"));
    assert_eq!(show_peers(&path), 1);
    assert_eq!(request(&path, &Request::Down).unwrap(), Response::Ok);
    assert!(state.lock().unwrap().down);

    handle.shutdown();
    assert!(!path.exists(), "shutdown removes the socket file");
    let error = request(&path, &Request::Show).unwrap_err();
    assert!(matches!(error, CtlError::NotRunning { .. }), "{error:?}");
    assert!(error.to_string().contains("warpline up"), "{error}");
}

#[test]
fn invalid_requests_are_refused_and_serving_goes_on() {
    let dir = TempDir::new("malformed");
    let (_handle, _) = start(&dir, quick_limits());
    let path = dir.socket();
    let cases: [(&[u8], &str); 7] = [
        (b"{not json\n", "malformed request"),
        (b"\n", "empty request"),
        (b"{\"type\":\"reboot\"}\n", "unknown variant"),
        (b"{\"type\":\"show\",\"all\":true}\n", "unknown field"),
        (
            b"{\"type\":\"remove_peer\",\"public_key\":\"AAAA\"}\n",
            "invalid public_key",
        ),
        (b"\xff\xfe\n", "not UTF-8"),
        // No newline before EOF: still read as the request.
        (b"{\"type\":\"show\"", "malformed request"),
    ];
    // Deep nesting hits serde_json's recursion limit, not the stack.
    let deep = [vec![b'['; 10_000], b"\n".to_vec()].concat();
    let deep_case: [(&[u8], &str); 1] = [(&deep, "recursion limit")];
    for (bytes, expected) in cases.into_iter().chain(deep_case) {
        let answer = raw(&path, bytes);
        let response = warpline_control::ctl::protocol::decode_response(answer.as_bytes())
            .unwrap_or_else(|e| panic!("{answer:?}: {e}"));
        let message = error_message(response);
        assert!(message.contains(expected), "{bytes:?}: {message}");
        assert_eq!(show_peers(&path), 0, "still serving after {bytes:?}");
    }
    // A connection that closes without a word gets nothing and harms nothing.
    drop(UnixStream::connect(&path).unwrap());
    assert_eq!(show_peers(&path), 0);
}

#[test]
fn huge_requests_are_refused() {
    let dir = TempDir::new("huge");
    let (_handle, _) = start(&dir, quick_limits());
    let path = dir.socket();

    // 1 MiB of garbage with no newline.
    let answer = raw(&path, &vec![b'a'; 1 << 20]);
    assert!(answer.contains("request too large"), "{answer:?}");

    // A well-formed 1 MiB request through the client: refused, the client still reads why.
    let big = Request::SetPeer {
        public_key: KEY_A.into(),
        preshared_key: None,
        allowed_ips: vec!["10.0.0.0/8".into(); 100_000],
        endpoint: None,
        persistent_keepalive: None,
        cipher: None,
    };
    let message = error_message(request(&path, &big).unwrap());
    assert!(
        message.contains("too large") && message.contains("65536"),
        "{message}"
    );
    assert_eq!(show_peers(&path), 0);
}

#[test]
fn idle_clients_time_out_without_blocking_others() {
    let dir = TempDir::new("idle");
    let limits = ServerLimits {
        request_timeout: Duration::from_secs(3),
        ..quick_limits()
    };
    let (handle, _) = start(&dir, limits);
    let path = dir.socket();

    let mut idle = UnixStream::connect(&path).unwrap();
    // Half a request, then silence.
    idle.write_all(b"{\"type\":").unwrap();
    assert_eq!(show_peers(&path), 0);
    // Served while the idle client is still waiting for its answer.
    idle.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let pending = idle.read(&mut byte);
    assert!(
        matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the idle client was answered before the other caller: {pending:?}"
    );
    idle.set_nonblocking(false).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    idle.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("timed out"), "{answer:?}");
    drop(handle);

    // A client that trickles one byte at a time, each well within any per-read timeout, is
    // cut off by the overall deadline (0.8 s here, the request takes 1.5 s).
    let (_handle, _) = start(&dir, quick_limits());
    let mut slow = UnixStream::connect(&path).unwrap();
    for byte in b"{\"type\":\"show\"}" {
        if slow.write_all(&[*byte]).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.contains("timed out"), "{answer:?}");
    assert_eq!(show_peers(&path), 0);
}

#[test]
fn connection_flood_is_bounded() {
    let dir = TempDir::new("flood");
    let limits = ServerLimits {
        request_timeout: Duration::from_secs(5),
        ..quick_limits()
    };
    let (_handle, _) = start(&dir, limits);
    let path = dir.socket();

    // Fill every slot with idle connections: the next caller is refused at once.
    let idle: Vec<UnixStream> = (0..limits.max_connections)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let message = error_message(request(&path, &Request::Show).unwrap());
    assert!(message.contains("too many"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused at once, not after the idle ones time out"
    );
    drop(idle);
    // The slots come back once those connections end (closed, then read as EOF).
    let deadline = Instant::now() + Duration::from_secs(3);
    while !matches!(request(&path, &Request::Show), Ok(Response::Show(_))) {
        assert!(Instant::now() < deadline, "slots never came back");
        thread::sleep(Duration::from_millis(20));
    }

    // Many callers at once: each gets an answer (served or "too many"), none hangs.
    let served = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let path = path.clone();
            let served = Arc::clone(&served);
            thread::spawn(move || {
                match request_with_timeout(&path, &Request::Show, Duration::from_secs(5)) {
                    Ok(Response::Show(_)) => {
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Response::Error { message }) => assert!(message.contains("too many")),
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    for caller in callers {
        caller.join().unwrap();
    }
    assert!(served.load(Ordering::SeqCst) > 0);
    assert_eq!(show_peers(&path), 0);
}

#[test]
fn a_panicking_handler_is_an_error_not_an_outage() {
    let dir = TempDir::new("panic");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let _handle = CtlServer::bind(dir.socket())
        .unwrap()
        .serve(move |request| {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("handler bug (expected by this test)");
            }
            match request {
                Request::Show => Response::Ok,
                _ => Response::error("no"),
            }
        })
        .unwrap();
    let message = error_message(request(dir.socket(), &Request::Show).unwrap());
    assert!(message.contains("internal error"), "{message}");
    assert_eq!(request(dir.socket(), &Request::Show).unwrap(), Response::Ok);
}

#[test]
fn stale_socket_is_replaced() {
    let dir = TempDir::new("stale");
    let path = dir.socket();
    // A crashed daemon leaves its socket file behind.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let (_handle, _) = start(&dir, quick_limits());
    assert_eq!(show_peers(&path), 0);
}

#[test]
fn second_server_on_a_live_socket_is_refused() {
    let dir = TempDir::new("second");
    let (handle, _) = start(&dir, quick_limits());
    let path = dir.socket();
    let error = CtlServer::bind(&path).unwrap_err();
    assert!(
        matches!(error, CtlError::AlreadyRunning { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("another warpline is already running on {}", path.display())
    );
    // The first one is unaffected.
    assert_eq!(show_peers(&path), 0);
    drop(handle);
    assert!(!path.exists());

    // Not a socket: left alone.
    std::fs::write(&path, b"precious").unwrap();
    let error = CtlServer::bind(&path).unwrap_err();
    assert!(matches!(error, CtlError::NotASocket { .. }), "{error:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn non_root_callers_are_refused() {
    // Our own uid without unsafe code: a directory we create is owned by it.
    let probe = TempDir::new("whoami");
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&probe.0).unwrap());
    if uid != 0 {
        println!("skipped: needs root to run a caller as another user (uid {uid})");
        return;
    }
    let dir = TempDir::new("nonroot");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_handle, state) = start(&dir, quick_limits());
    let path = dir.socket();

    let run_as_nobody = || {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "as_nobody_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };

    // Layer 1: the file is 0600 root, so connect() itself fails.
    let stdout = run_as_nobody();
    assert!(stdout.contains("CHILD: PermissionDenied"), "{stdout}");

    // Layer 2: even with the file opened up, the peer credential check refuses.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let stdout = run_as_nobody();
    assert!(
        stdout.contains(&format!("CHILD: Error {PERMISSION_DENIED}")),
        "{stdout}"
    );

    assert!(!state.lock().unwrap().down, "the refused Down did nothing");
    assert_eq!(show_peers(&path), 0, "still serving root");
}

/// Not a test of its own: the body of [`non_root_callers_are_refused`]'s child process, which
/// runs as uid 65534 and tries to bring the daemon down.
#[test]
fn as_nobody_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    match request(&path, &Request::Down) {
        Err(CtlError::PermissionDenied { .. }) => println!("CHILD: PermissionDenied"),
        Ok(Response::Error { message }) => println!("CHILD: Error {message}"),
        other => println!("CHILD: unexpected {other:?}"),
    }
}
