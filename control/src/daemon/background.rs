//! `warpline up --daemon`: start the gateway in the background and return once it is up.
//!
//! Forking a process that may already hold threads is unsafe in Rust, so the parent starts a
//! fresh copy of itself (the same binary and arguments, without `--daemon`) in a new session,
//! with its log going to a file, and waits until that child's control socket appears — or
//! until it exits, in which case the log's tail says why. The exit status tells scripts
//! whether the gateway really came up.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{DaemonError, UpOptions, interface_name};

/// How long the parent waits for the gateway's control socket.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the background gateway logs: beside its control socket.
pub fn log_path(control_socket: &Path) -> PathBuf {
    control_socket.with_extension("log")
}

/// Starts `warpline up` for `options` in the background; returns its pid once it is up.
pub fn start(options: &UpOptions) -> Result<(u32, PathBuf), DaemonError> {
    let name = interface_name(&options.config_path)?;
    let socket = match &options.control_socket {
        Some(path) => path.clone(),
        None => crate::ctl::socket_path(&name).map_err(|e| DaemonError::Control(e.to_string()))?,
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = log_path(&socket);
    let log_file = std::fs::File::create(&log).map_err(|e| {
        DaemonError::Control(format!("cannot create the log file {}: {e}", log.display()))
    })?;
    let binary = std::env::current_exe()?;
    let mut command = Command::new(binary);
    command
        .arg("up")
        .arg(&options.config_path)
        .arg("--control-socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file.try_clone()?))
        .stderr(Stdio::from(log_file));
    let new_session = || {
        // SAFETY: setsid takes no arguments and is async-signal-safe, so it may run between
        // fork and exec; it detaches the child from the caller's terminal and process group.
        if unsafe { libc::setsid() } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook only calls setsid (async-signal-safe) and allocates nothing unless it
    // fails, as pre_exec requires of code running in the forked child.
    unsafe { command.pre_exec(new_session) };
    let mut child = command.spawn()?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(DaemonError::Control(format!(
                "the background gateway exited ({status}) before it was up; {}:\n{}",
                log.display(),
                tail.join("\n")
            )));
        }
        if socket.exists() && crate::ctl::request(&socket, &crate::ctl::Request::Show).is_ok() {
            return Ok((child.id(), log));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(DaemonError::Control(format!(
                "the background gateway did not answer on {} within {STARTUP_TIMEOUT:?}; see {}",
                socket.display(),
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
