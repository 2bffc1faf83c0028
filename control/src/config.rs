//! Configuration files: wg-quick's INI format, so existing WireGuard configs work unchanged,
//! plus warpline extension keys.
//!
//! ```text
//! [Interface]
//! PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
//! ListenPort = 51820
//! Address = 10.0.0.1/24, fd00::1/64
//!
//! [Peer]
//! PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
//! AllowedIPs = 10.0.0.2/32
//! Endpoint = vpn.example.com:51820
//! Cipher = aes256gcm          # warpline extension; both ends must say so
//! ```
//!
//! [`Config::parse`] is pure (for tests and fuzzing); [`Config::load`] reads a file and also
//! reports [`ConfigWarning`]s about it. Parsing resolves no host names and runs no hooks.

mod endpoint;
mod endpoint_list;
mod error;
mod ha_keys;
mod layout_keys;
mod parser;
mod values;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::net::IpAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

pub use self::endpoint::Endpoint;
pub use self::endpoint_list::EndpointSettings;
pub use self::error::{ConfigError, ConfigErrorKind, Section, ShownName};
pub use self::ha_keys::{
    DEFAULT_CHECKPOINT, DEFAULT_FAILOVER_AFTER, DEFAULT_PRIORITY, EndpointPolicy, FailoverKeys,
    HaConfig, HaMode, VirtualIp,
};
pub use self::layout_keys::{
    CoreList, Count, FrameSize, KeyConflict, LayoutKeys, MAX_COUNT, MAX_CPU, RingSize, ZeroCopy,
    max_mtu_for, parse_cpu_list,
};
pub use self::values::{
    InnerSide, InterfaceAddress, IpPrefix, MIN_MTU, RoutingTable, ValueError, XdpMode,
    parse_allowed_ip,
};
/// The AEAD suite a peer's sessions use (`Cipher =`); one type shared with the data plane.
pub use warpline_dataplane::aead::Suite as CipherSuite;

use self::values::value_error;
use crate::keys::{PresharedKey, PrivateKey, PublicKey};

/// Largest file [`Config::load`] reads: generous for tens of thousands of peers, and a stop
/// for mistakes like `check-config /dev/zero`.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// A parsed configuration: the local interface and its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The `[Interface]` section.
    pub interface: InterfaceConfig,
    /// The `[Peer]` sections in file order; their public keys are distinct and differ from the
    /// interface's own.
    pub peers: Vec<PeerConfig>,
}

/// The `[Interface]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// `PrivateKey`: the interface's static key (required). Redacted in `Debug`.
    pub private_key: PrivateKey,
    /// `ListenPort`: the UDP port for handshakes and data; `None` or 0 picks a free port.
    pub listen_port: Option<u16>,
    /// `Address`: addresses to assign to the tunnel interface.
    pub addresses: Vec<InterfaceAddress>,
    /// `MTU`: the tunnel interface MTU; `None` derives it from the outgoing route.
    pub mtu: Option<u16>,
    /// `DNS` entries that are IP addresses: name servers to configure while the tunnel is up.
    pub dns_servers: Vec<IpAddr>,
    /// `DNS` entries that are names: search domains (wg-quick's split of the same key).
    pub dns_search: Vec<String>,
    /// `Table`: where routes for allowed IPs go.
    pub table: RoutingTable,
    /// `FwMark`: the mark on outgoing encrypted packets; `None` when off (or 0).
    pub fwmark: Option<NonZeroU32>,
    /// `PreUp`, `PostUp`, `PreDown`, `PostDown`: shell commands, verbatim.
    pub hooks: Hooks,
    /// `SaveConfig`: write the running state back to the file on shutdown.
    pub save_config: bool,
    /// `MetricsAddress` (warpline extension): where to serve Prometheus metrics, if anywhere.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// `TestTimerScale` (test-only warpline extension): divide every protocol timer by this
    /// factor, so tests see rekeys in seconds instead of minutes. Never set it in production:
    /// the daemon logs a warning when it is.
    pub test_timer_scale: Option<std::num::NonZeroU32>,
    /// `Attach` (warpline extension, repeatable): NICs whose queues carry the tunnels over
    /// XDP and AF_XDP workers. Empty: the portable mode (one kernel UDP socket).
    pub attach: Vec<String>,
    /// `XdpMode` (warpline extension): how the XDP program attaches to the `Attach` NICs.
    pub xdp_mode: XdpMode,
    /// `Inner` (warpline extension): `tun` (the default) or the LAN NIC for full bypass, which
    /// needs exactly one `Attach` NIC.
    pub inner: InnerSide,
    /// `Spread` (warpline extension, `on`/`off`): the AF_XDP workers share one tunnel's
    /// decryption (see `warpline_dataplane::spread`).
    pub spread: bool,
    /// `Workers`, `Cores`, `Queues`, `ZeroCopy`, `FrameSize`, `RingSize`, `BusyPoll` (warpline
    /// extensions): the worker layout on the `Attach` NICs; see `crate::layout`.
    pub layout: LayoutKeys,
    /// `HaMode`, `HaNodeId`, `HaKey`, `HaListen`, `HaPeer`, `HaCheckpointMs` (warpline
    /// extensions): this node's place in a gateway cluster; `None` for a lone gateway.
    pub ha: Option<HaConfig>,
}

/// Shell commands run around bringing the interface up and down, kept verbatim in file order.
/// Whoever runs them substitutes `%i` with the interface name, as wg-quick does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `PreUp`: before the interface is created.
    pub pre_up: Vec<String>,
    /// `PostUp`: after the interface is up.
    pub post_up: Vec<String>,
    /// `PreDown`: before the interface is removed.
    pub pre_down: Vec<String>,
    /// `PostDown`: after the interface is removed.
    pub post_down: Vec<String>,
}

/// One `[Peer]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// `PublicKey`: the peer's identity (required).
    pub public_key: PublicKey,
    /// `PresharedKey`: mixed into handshakes; `None` means the all-zero key. Redacted in `Debug`.
    pub preshared_key: Option<PresharedKey>,
    /// `AllowedIPs`: source addresses accepted from the peer and destinations routed to it,
    /// host bits masked off.
    pub allowed_ips: Vec<IpPrefix>,
    /// `Endpoint`: where to send until the peer is heard from; `None` waits for it to call.
    /// With several endpoints listed, the first.
    pub endpoint: Option<Endpoint>,
    /// The further endpoints of an `Endpoint` list (warpline extension), in order: where to
    /// fail over to when the current one goes silent.
    pub more_endpoints: Vec<Endpoint>,
    /// The settings written after each `Endpoint` list item (`gw.example.com:51820
    /// keepalive=25`, warpline extension), by position (0 is `endpoint`). The list may be
    /// shorter than the endpoints: a missing entry sets nothing (the parser leaves no
    /// trailing empty ones).
    pub endpoint_settings: Vec<EndpointSettings>,
    /// `EndpointPolicy`, `FailoverAfter`, `FailBack` (warpline extensions): how the endpoints
    /// are used; only matters with more than one.
    pub failover: FailoverKeys,
    /// `PersistentKeepalive`: seconds between keepalives; `None` when off (or 0).
    pub persistent_keepalive: Option<NonZeroU16>,
    /// `Cipher` (warpline extension): the AEAD suite, ChaCha20-Poly1305 unless set. AES-256-GCM
    /// only works between warpline peers that both configure it.
    pub cipher: CipherSuite,
}

impl PeerConfig {
    /// The `Endpoint` list in order: `endpoint`, then `more_endpoints`.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoint.iter().chain(&self.more_endpoints)
    }

    /// The settings of endpoint `index` of the list.
    pub fn settings_of(&self, index: usize) -> EndpointSettings {
        self.endpoint_settings
            .get(index)
            .copied()
            .unwrap_or_default()
    }

    /// The persistent keepalive while endpoint `index` is in use: its own `keepalive=`
    /// if it has one, else `PersistentKeepalive`.
    pub fn keepalive_at(&self, index: usize) -> Option<NonZeroU16> {
        self.settings_of(index)
            .keepalive
            .unwrap_or(self.persistent_keepalive)
    }
}

impl Config {
    /// Parses config text. `source_name` (usually the file name) starts every error message.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        parser::parse(text, source_name)
    }

    /// Reads and parses the file at `path`. The warnings are for the caller to show or log;
    /// they do not make the config unusable.
    pub fn load(path: impl AsRef<Path>) -> Result<(Self, Vec<ConfigWarning>), ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let at_file = |kind| ConfigError::new(&name, None, kind);
        let file = File::open(path).map_err(|e| at_file(ConfigErrorKind::Read(e)))?;
        let metadata = file
            .metadata()
            .map_err(|e| at_file(ConfigErrorKind::Read(e)))?;
        // The buffer holds the private key: wipe it once parsed. Sizing it up front avoids
        // reallocations that would leave unwiped copies behind.
        let capacity = metadata.len().min(MAX_CONFIG_BYTES) + 1;
        let mut bytes = Zeroizing::new(Vec::with_capacity(usize::try_from(capacity).unwrap_or(0)));
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| at_file(ConfigErrorKind::Read(e)))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(at_file(ConfigErrorKind::TooLarge {
                limit: MAX_CONFIG_BYTES,
            }));
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            ConfigError::new(&name, Some(line), ConfigErrorKind::NotUtf8)
        })?;
        let config = Self::parse(text, &name)?;
        Ok((config, permission_warnings(path, &metadata)))
    }

    /// The config as wg-quick text, private key included. For any config that [`Config::parse`]
    /// produced, parsing the result gives the same config back; values set by hand that a
    /// file cannot hold (line breaks, `#`) are written as they are.
    pub fn to_wg_quick_string(&self) -> String {
        writer::write(self)
    }
}

/// Parses a `Cipher` value (case-insensitive), as named by [`CipherSuite::config_name`].
pub fn parse_cipher_suite(text: &str) -> Result<CipherSuite, ValueError> {
    const SUITES: [CipherSuite; 2] = [CipherSuite::ChaCha20Poly1305, CipherSuite::Aes256Gcm];
    SUITES
        .into_iter()
        .find(|suite| suite.config_name().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            value_error!(
                "{text:?} is not a cipher suite; valid: {} (the default), {}",
                CipherSuite::ChaCha20Poly1305.config_name(),
                CipherSuite::Aes256Gcm.config_name()
            )
        })
}

/// Something worth fixing about a config file that still loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// The file holds a private key but users other than its owner may read or change it.
    AccessibleByOthers {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl ConfigWarning {
    /// The shell command that fixes it.
    pub fn fix_command(&self) -> String {
        match self {
            Self::AccessibleByOthers { path, .. } => {
                let mut shown = path.display().to_string();
                // `chmod 600 -x.conf` would read the name as options.
                if shown.starts_with('-') {
                    shown.insert_str(0, "./");
                }
                format!("chmod 600 {}", shell_quote(&shown))
            }
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AccessibleByOthers { path, mode } => write!(
                f,
                "{} is accessible by group or others (mode {:04o}) but holds a private key; \
                 run: {}",
                path.display(),
                mode & 0o7777,
                self.fix_command()
            ),
        }
    }
}

#[cfg(unix)]
fn permission_warnings(path: &Path, metadata: &std::fs::Metadata) -> Vec<ConfigWarning> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode();
    if metadata.is_file() && mode & 0o077 != 0 {
        vec![ConfigWarning::AccessibleByOthers {
            path: path.to_owned(),
            mode,
        }]
    } else {
        Vec::new()
    }
}

#[cfg(not(unix))]
fn permission_warnings(_path: &Path, _metadata: &std::fs::Metadata) -> Vec<ConfigWarning> {
    Vec::new()
}

/// Quotes `text` for a POSIX shell unless it is plainly safe, so a printed command can be
/// pasted as is.
fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,".contains(&b));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
