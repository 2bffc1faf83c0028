//! systemd readiness (`Type=notify`): one datagram to `$NOTIFY_SOCKET`, as `sd_notify(3)`
//! sends it. No libsystemd: the protocol is a unix datagram of `KEY=VALUE` lines, and the
//! socket is either a path or, with a leading `@`, an abstract name.
//!
//! Without `$NOTIFY_SOCKET` (not started by systemd) nothing is sent. A failure is logged and
//! otherwise ignored: systemd then reports the start as timed out, which says more than a
//! gateway that refuses to run because its supervisor went away.

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tells systemd the gateway is up (`READY=1`) with a status line for `systemctl status`.
pub fn ready(status: &str) {
    notify(&ready_message(status));
}

/// Tells systemd the gateway is stopping (`STOPPING=1`).
pub fn stopping() {
    notify("STOPPING=1\n");
}

fn ready_message(status: &str) -> String {
    // A status with a newline would start a new assignment.
    let status = status.replace('\n', " ");
    format!("READY=1\nSTATUS={status}\nMAINPID={}\n", std::process::id())
}

fn notify(message: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&target, message) {
        tracing::warn!(socket = ?target, "could not notify systemd: {e}");
    }
}

fn send_to(target: &std::ffi::OsStr, message: &str) -> std::io::Result<usize> {
    let target = target
        .to_str()
        .ok_or_else(|| std::io::Error::other("NOTIFY_SOCKET is not UTF-8"))?;
    let address = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(target)?,
    };
    UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(listener: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn ready_reaches_a_path_socket_and_an_abstract_one() {
        let dir = std::env::temp_dir().join(format!("warpline-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), &ready_message("up:\n2 workers")).unwrap();
        let text = receive(&listener);
        assert!(
            text.starts_with("READY=1\nSTATUS=up: 2 workers\nMAINPID="),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);

        let name = format!("warpline-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        send_to(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1\n").unwrap();
        assert_eq!(receive(&listener), "STOPPING=1\n");
    }
}
