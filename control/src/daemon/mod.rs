//! `warpline up`: the gateway process.
//!
//! This is the portable mode: a kernel UDP socket carries all WireGuard traffic and a TUN
//! device the inner packets, one event loop drives the sans-IO [`Tunnel`](crate::tunnel).
//! It runs anywhere and is the fallback the config gets without `Attach`; the AF_XDP
//! workers plug in beside it (handshakes keep using this socket, since the XDP program
//! passes them to the kernel).

pub mod background;
mod data_plane;
mod endpoints;
mod event_loop;
mod gso_batch;
mod ha;
mod ha_link;
mod hooks;
mod interface;
mod lan;
mod notify;
mod pool_routes;
mod portable_io;
mod privileges;
mod setup;
mod snapshot;
mod sticky_source;
mod tracked;
mod vip;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use setup::{DEFAULT_MTU, resolve, tunnel_from_config};

use crate::config::{Config, ConfigError};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The config's worker layout does not fit this host (names the key to change).
    #[error("worker layout: {0}")]
    Layout(String),
    /// The interface name derived from the file name is unusable.
    #[error(
        "cannot name the interface after {path}: {reason} (use a file name of 1-15 letters, \
         digits, '_' or '-' before .conf, e.g. wl0.conf)"
    )]
    InterfaceName {
        /// The config file.
        path: PathBuf,
        /// What is wrong with its name.
        reason: &'static str,
    },
    /// The config file holds a private key but others may read it.
    #[error("refusing to start: {message}")]
    InsecureConfig {
        /// What is wrong and the chmod that fixes it.
        message: String,
    },
    /// A peer's endpoint could not be resolved.
    #[error("peer {peer}: endpoint: {reason}")]
    Endpoint {
        /// The peer's public key.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A peer could not be added.
    #[error("peer {peer}: {reason}")]
    Peer {
        /// The peer's public key.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Setting up the TUN device, its addresses or routes failed.
    #[error("interface {name}: {what}: {source}{hint}")]
    Interface {
        /// The interface.
        name: String,
        /// The step that failed.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// The UDP socket could not be bound.
    #[error("cannot listen on UDP port {port}: {source} (is another WireGuard using it?)")]
    Listen {
        /// The port.
        port: u16,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PreUp or PostUp hook failed.
    #[error("{key} hook `{command}` {failure}")]
    Hook {
        /// Which hook.
        key: &'static str,
        /// The command as run.
        command: String,
        /// How it failed.
        failure: String,
    },
    /// The XDP data plane could not be set up.
    #[error("XDP data plane: {what}: {reason}")]
    DataPlane {
        /// The step that failed.
        what: &'static str,
        /// Why, with what to do.
        reason: String,
    },
    /// The control socket could not be set up.
    #[error("control socket: {0}")]
    Control(String),
    /// The event loop failed.
    #[error("event loop: {0}")]
    Io(#[from] std::io::Error),
}

/// What `warpline up` was asked to do.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The config file; the interface is named after it (`wl0.conf` -> `wl0`).
    pub config_path: PathBuf,
    /// Where the control socket goes; `None` for `/run/warpline/<name>.sock`.
    pub control_socket: Option<PathBuf>,
}

/// The interface name wg-quick would use for `path`: the file stem, 1-15 characters of
/// `[a-zA-Z0-9_.-]` (wg-quick also allows `=` and `+`, which a control socket name cannot hold).
pub fn interface_name(path: &Path) -> Result<String, DaemonError> {
    let fail = |reason| DaemonError::InterfaceName {
        path: path.to_path_buf(),
        reason,
    };
    if path.extension().and_then(|e| e.to_str()) != Some("conf") {
        return Err(fail(
            "the file name must end in .conf, as wg-quick requires",
        ));
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| fail("the file name is not valid UTF-8"))?;
    if stem.is_empty() || stem.len() > 15 {
        return Err(fail("the name before .conf must be 1-15 characters"));
    }
    if !stem
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(fail(
            "the name contains characters an interface name cannot have",
        ));
    }
    Ok(stem.to_owned())
}

/// Runs the gateway in the foreground until SIGINT or SIGTERM.
pub fn up(options: &UpOptions) -> Result<(), DaemonError> {
    let name = interface_name(&options.config_path)?;
    let (config, warnings) = Config::load(&options.config_path)?;
    // A private key others can read is a key others may have: `up` refuses it (check-config
    // only warns, so the file can be fixed and checked first).
    if let Some(warning) = warnings.first() {
        return Err(DaemonError::InsecureConfig {
            message: warning.to_string(),
        });
    }
    let wall_clock_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let tunnel = tunnel_from_config(&config, wall_clock_now, resolve)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let hook_commands = config.interface.hooks.clone();
    hooks::run(hooks::Stage::PreUp, &hook_commands.pre_up, &name)?;
    let layout = if config.interface.attach.is_empty() {
        None
    } else {
        Some(data_plane::DataPlane::plan_layout(&config)?)
    };
    let worker_queues = layout
        .as_ref()
        .map_or(0, data_plane::DataPlane::tun_queues_needed);
    let mut interface = interface::Interface::create(&name, &config, worker_queues)?;
    hooks::run(hooks::Stage::PostUp, &hook_commands.post_up, &name)?;
    let control_path = match &options.control_socket {
        Some(path) => path.clone(),
        None => crate::ctl::socket_path(&name).map_err(|e| DaemonError::Control(e.to_string()))?,
    };
    if config.interface.attach.is_empty() {
        tracing::info!(
            interface = %name,
            public_key = %tunnel.node().public_key(),
            peers = config.peers.len(),
            "warpline up (portable mode: kernel UDP socket and TUN; no Attach configured)"
        );
    } else {
        tracing::info!(
            interface = %name,
            public_key = %tunnel.node().public_key(),
            peers = config.peers.len(),
            attach = ?config.interface.attach,
            workers = worker_queues,
            "warpline up (XDP mode: AF_XDP workers on the attached NICs, handshakes on a \
             kernel UDP socket)"
        );
    }
    let result = event_loop::run(event_loop::Parts {
        name: name.clone(),
        config,
        tunnel,
        interface: &mut interface,
        layout,
        control_path,
        stop,
        wall_clock_at_start: wall_clock_now,
    });
    hooks::run(hooks::Stage::PreDown, &hook_commands.pre_down, &name)?;
    drop(interface);
    hooks::run(hooks::Stage::PostDown, &hook_commands.post_down, &name)?;
    tracing::info!(interface = %name, "warpline down");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_wg_quick() {
        assert_eq!(
            interface_name(Path::new("/etc/warpline/wl0.conf")).unwrap(),
            "wl0"
        );
        assert!(interface_name(Path::new("/x/this-name-is-far-too-long.conf")).is_err());
        assert!(interface_name(Path::new("/x/bad name.conf")).is_err());
        assert!(interface_name(Path::new("/x/.conf")).is_err());
        assert!(interface_name(Path::new("/x/wl0.ini")).is_err());
    }
}
