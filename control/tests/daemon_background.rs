//! `warpline up --daemon` (as root, in a namespace): returns once the gateway answers on its
//! control socket, the gateway keeps running in the background until `warpline down`; a
//! gateway that cannot start makes `up --daemon` fail with the reason from its log.

mod gateway_support;

use std::time::{Duration, Instant};

use gateway_support::{TempDir, command_in};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, require_root, unique_name};

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn up_daemon_returns_once_up_and_down_stops_it() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let host = Host::new("d").unwrap();
    let dir = TempDir::new();
    let name = format!("{}d", unique_name());
    let config = dir.write(
        &format!("{name}.conf"),
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51830\nAddress = 10.90.0.1/32\n",
            PrivateKey::generate().to_base64()
        ),
    );
    let socket = dir.0.join(format!("{name}.sock"));
    let binary = env!("CARGO_BIN_EXE_warpline");
    let output = command_in(host.netns(), binary)
        .arg("up")
        .arg(&config)
        .arg("--daemon")
        .arg("--control-socket")
        .arg(&socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "up --daemon failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pid: u32 = stdout
        .split("pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {stdout:?}"));
    assert!(process_alive(pid), "the background gateway is not running");

    let show = std::process::Command::new(binary)
        .args(["show", &name, "--control-socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        show.status.success(),
        "show against the background gateway failed"
    );
    assert!(String::from_utf8_lossy(&show.stdout).contains("listening port: 51830"));

    let down = std::process::Command::new(binary)
        .args(["down", &name, "--control-socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(down.status.success(), "down failed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the background gateway did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(socket.with_extension("log")).unwrap_or_default();
    assert!(
        log.contains("warpline down"),
        "log lacks the shutdown:\n{log}"
    );
}

#[test]
fn up_daemon_reports_why_the_gateway_could_not_start() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let host = Host::new("d").unwrap();
    let dir = TempDir::new();
    let name = format!("{}d", unique_name());
    let config = dir.write(
        &format!("{name}.conf"),
        &format!(
            "[Interface]\nPrivateKey = {}\nAttach = nosuchnic0\n",
            PrivateKey::generate().to_base64()
        ),
    );
    let output = command_in(host.netns(), env!("CARGO_BIN_EXE_warpline"))
        .arg("up")
        .arg(&config)
        .arg("--daemon")
        .arg("--control-socket")
        .arg(dir.0.join(format!("{name}.sock")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "up --daemon succeeded without a NIC"
    );
    assert!(
        stderr.contains("exited") && stderr.contains("nosuchnic0"),
        "the failure does not say why: {stderr}"
    );
}

/// A config that others can read holds a private key others may have: `up` refuses it and
/// names the file and the chmod to run (no root needed: it refuses before touching anything).
#[test]
fn up_refuses_a_world_readable_private_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new();
    let config = dir.write(
        "wl9.conf",
        &format!(
            "[Interface]\nPrivateKey = {}\n",
            PrivateKey::generate().to_base64()
        ),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warpline"))
        .arg("up")
        .arg(&config)
        .arg("--control-socket")
        .arg(dir.0.join("wl9.sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "up accepted a world-readable key");
    assert!(
        stderr.contains("refusing to start")
            && stderr.contains(&format!("chmod 600 {}", config.display())),
        "the refusal must name the file and the fix: {stderr}"
    );
}
