//! The line parser: wg-quick's INI dialect into [`Config`].
//!
//! Like wg-quick: `#` starts a comment anywhere on a line, whitespace around `=` and around
//! list items is ignored, keys and section names match case-insensitively, and sections may
//! come in any order. Unlike wg (which lets a repeated key override), repeating a
//! single-valued key is an error: in a hand-edited file it is almost always a mistake.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::{NonZeroU16, NonZeroU32};

use super::endpoint::Endpoint;
use super::endpoint_list::{EndpointItem, parse_endpoint_port};
use super::error::{ConfigError, ConfigErrorKind, Section, ShownName};
use super::ha_keys::{
    DEFAULT_CHECKPOINT, DEFAULT_PRIORITY, FailoverKeys, HaConfig, HaMode, VirtualIp,
    parse_checkpoint, parse_fail_back, parse_failover_after, parse_ha_mode, parse_node_id,
    parse_priority, parse_sync_address, parse_virtual_ip,
};
use super::layout_keys::{LayoutKeys, parse_on_off};
use super::values::{
    DnsItem, InnerSide, InterfaceAddress, IpPrefix, RoutingTable, ValueError, XdpMode, list_items,
    parse_allowed_ip, parse_bool, parse_dns_item, parse_fwmark, parse_interface_name,
    parse_keepalive, parse_mtu, parse_port, value_error,
};
use super::{
    CipherSuite, Config, EndpointSettings, Hooks, InterfaceConfig, PeerConfig, parse_cipher_suite,
};
use crate::keys::{KeyParseError, PresharedKey, PrivateKey, PublicKey};

/// Parses a whole file; `source_name` prefixes every error.
pub(super) fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::default();
    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        parser
            .feed(raw_line, line)
            .map_err(|kind| ConfigError::new(source_name, Some(line), kind))?;
    }
    parser
        .finish()
        .map_err(|(line, kind)| ConfigError::new(source_name, line, kind))
}

#[derive(Default)]
struct Parser {
    open: OpenSection,
    interface: Option<InterfaceBuilder>,
    peers: Vec<PeerBuilder>,
}

/// The section that `Key = Value` lines currently add to.
#[derive(Default)]
enum OpenSection {
    #[default]
    None,
    Interface(Box<InterfaceBuilder>),
    Peer(Box<PeerBuilder>),
}

impl Parser {
    fn feed(&mut self, raw_line: &str, line: usize) -> Result<(), ConfigErrorKind> {
        let content = raw_line
            .split_once('#')
            .map_or(raw_line, |(before_comment, _)| before_comment)
            .trim();
        if content.is_empty() {
            return Ok(());
        }
        if let Some(rest) = content.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or(ConfigErrorKind::MalformedLine)?;
            return self.open_section(name.trim(), line);
        }
        let (key, value) = content
            .split_once('=')
            .ok_or(ConfigErrorKind::MalformedLine)?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(ConfigErrorKind::MalformedLine);
        }
        match &mut self.open {
            OpenSection::None => Err(ConfigErrorKind::KeyOutsideSection {
                key: ShownName::new(key),
            }),
            OpenSection::Interface(interface) => interface.set(key, value, line),
            OpenSection::Peer(peer) => peer.set(key, value, line),
        }
    }

    fn open_section(&mut self, name: &str, line: usize) -> Result<(), ConfigErrorKind> {
        self.close_open_section();
        if name.eq_ignore_ascii_case("Interface") {
            if let Some(first) = &self.interface {
                return Err(ConfigErrorKind::DuplicateInterface {
                    first_line: first.header_line,
                });
            }
            self.open = OpenSection::Interface(Box::new(InterfaceBuilder::new(line)));
        } else if name.eq_ignore_ascii_case("Peer") {
            self.open = OpenSection::Peer(Box::new(PeerBuilder::new(line)));
        } else {
            return Err(ConfigErrorKind::UnknownSection {
                name: ShownName::new(name),
            });
        }
        Ok(())
    }

    fn close_open_section(&mut self) {
        match std::mem::take(&mut self.open) {
            OpenSection::None => {}
            OpenSection::Interface(interface) => self.interface = Some(*interface),
            OpenSection::Peer(peer) => self.peers.push(*peer),
        }
    }

    /// Checks what only the whole file can show; errors carry their line, if any.
    fn finish(mut self) -> Result<Config, (Option<usize>, ConfigErrorKind)> {
        self.close_open_section();
        let interface = self
            .interface
            .ok_or((None, ConfigErrorKind::MissingInterface))?
            .build()?;
        let own_public_key = interface.private_key.public_key();
        let mut first_line_of_peer: HashMap<PublicKey, usize> = HashMap::new();
        let mut peers = Vec::with_capacity(self.peers.len());
        for builder in self.peers {
            let (peer, key_line) = builder.build()?;
            if peer.public_key == own_public_key {
                return Err((
                    Some(key_line),
                    ConfigErrorKind::PeerIsSelf {
                        public_key: own_public_key,
                    },
                ));
            }
            if let Some(&first_line) = first_line_of_peer.get(&peer.public_key) {
                return Err((
                    Some(key_line),
                    ConfigErrorKind::DuplicatePeer {
                        public_key: peer.public_key,
                        first_line,
                    },
                ));
            }
            first_line_of_peer.insert(peer.public_key, key_line);
            peers.push(peer);
        }
        Ok(Config { interface, peers })
    }
}

/// Lines where single-valued keys of one section were set, to refuse a second value.
#[derive(Default)]
struct SingleValuedKeys(Vec<(&'static str, usize)>);

impl SingleValuedKeys {
    fn claim(
        &mut self,
        section: Section,
        key: &'static str,
        line: usize,
    ) -> Result<(), ConfigErrorKind> {
        if let Some(&(_, first_line)) = self.0.iter().find(|(seen, _)| *seen == key) {
            return Err(ConfigErrorKind::DuplicateKey {
                section,
                key,
                first_line,
            });
        }
        self.0.push((key, line));
        Ok(())
    }

    /// The line `key` was set on, if it was.
    fn line_of(&self, key: &str) -> Option<usize> {
        self.0
            .iter()
            .find_map(|&(seen, line)| (seen == key).then_some(line))
    }
}

/// The problem with a secret value: says what is wrong without echoing the value.
fn secret_key_problem(what: &str, error: KeyParseError) -> ValueError {
    value_error!("not a valid {what}: {error} (the value is secret, so it is not shown)")
}

fn canonical_key(section: Section, key: &str) -> Result<&'static str, ConfigErrorKind> {
    section
        .canonical_key(key)
        .ok_or_else(|| ConfigErrorKind::UnknownKey {
            section,
            key: ShownName::new(key),
        })
}

struct InterfaceBuilder {
    header_line: usize,
    single_valued: SingleValuedKeys,
    private_key: Option<PrivateKey>,
    listen_port: Option<u16>,
    addresses: Vec<InterfaceAddress>,
    mtu: Option<u16>,
    dns_servers: Vec<IpAddr>,
    dns_search: Vec<String>,
    table: RoutingTable,
    fwmark: Option<NonZeroU32>,
    hooks: Hooks,
    save_config: bool,
    metrics_address: Option<std::net::SocketAddr>,
    test_timer_scale: Option<std::num::NonZeroU32>,
    attach: Vec<String>,
    inner: InnerSide,
    spread: bool,
    xdp_mode: XdpMode,
    layout: LayoutKeys,
    ha: HaBuilder,
}

/// The `Ha*` keys as read; checked together in [`HaBuilder::build`].
#[derive(Default)]
struct HaBuilder {
    mode: Option<HaMode>,
    node_id: Option<u8>,
    key: Option<PresharedKey>,
    listen: Option<std::net::SocketAddr>,
    partners: Vec<std::net::SocketAddr>,
    checkpoint: Option<std::time::Duration>,
    virtual_ips: Vec<VirtualIp>,
    priority: Option<u8>,
    preempt: Option<bool>,
    track_interfaces: Vec<String>,
    /// The line of the first `HaTrackInterface` (a repeatable key has no single line).
    track_line: Option<usize>,
    pools: Vec<IpPrefix>,
    pool_line: Option<usize>,
}

impl HaBuilder {
    fn build(
        self,
        keys: &SingleValuedKeys,
    ) -> Result<Option<HaConfig>, (Option<usize>, ConfigErrorKind)> {
        let invalid = |key: &'static str, problem: String| {
            (
                keys.line_of(key),
                ConfigErrorKind::InvalidValue {
                    section: Section::Interface,
                    key,
                    problem,
                },
            )
        };
        let Some(mode) = self.mode else {
            let set = [
                ("HaNodeId", self.node_id.is_some()),
                ("HaKey", self.key.is_some()),
                ("HaListen", self.listen.is_some()),
                ("HaPeer", !self.partners.is_empty()),
                ("HaCheckpointMs", self.checkpoint.is_some()),
                ("HaVirtualIp", !self.virtual_ips.is_empty()),
                ("HaPriority", self.priority.is_some()),
                ("HaPreempt", self.preempt.is_some()),
                ("HaTrackInterface", !self.track_interfaces.is_empty()),
                ("HaPool", !self.pools.is_empty()),
            ];
            if let Some((key, _)) = set.into_iter().find(|(_, set)| *set) {
                return Err(invalid(
                    key,
                    "is only used with HaMode = keepalived or active-active".to_owned(),
                ));
            }
            return Ok(None);
        };
        let missing = |key: &'static str| {
            invalid(
                "HaMode",
                format!("HaMode = {mode} also needs {key} in [Interface]"),
            )
        };
        let listen = self.listen.ok_or_else(|| missing("HaListen"))?;
        if self.partners.is_empty() {
            return Err(missing("HaPeer"));
        }
        let builtin_only = [
            ("HaVirtualIp", !self.virtual_ips.is_empty()),
            ("HaPriority", self.priority.is_some()),
            ("HaPreempt", self.preempt.is_some()),
        ];
        if mode != HaMode::Builtin
            && let Some((key, _)) = builtin_only.into_iter().find(|(_, set)| *set)
        {
            return Err(invalid(
                key,
                format!("is only used with HaMode = builtin (here: {mode})"),
            ));
        }
        // Repeatable keys have no single line in `keys`: their first line is kept apart.
        let mode_only = [
            (
                "HaPool",
                self.pool_line,
                HaMode::ActiveActive,
                !self.pools.is_empty(),
                "the active node of a pair routes every peer",
            ),
            (
                "HaTrackInterface",
                self.track_line,
                HaMode::Builtin,
                !self.track_interfaces.is_empty(),
                "with keepalived, use its track_interface",
            ),
        ];
        for (key, line, wanted, set, hint) in mode_only {
            if set && mode != wanted {
                return Err((
                    line,
                    ConfigErrorKind::InvalidValue {
                        section: Section::Interface,
                        key,
                        problem: format!(
                            "is only used with HaMode = {wanted} (here: {mode}; {hint})"
                        ),
                    },
                ));
            }
        }
        if mode == HaMode::Builtin {
            if self.virtual_ips.is_empty() {
                return Err(missing("HaVirtualIp"));
            }
            if self.partners.len() != 1 {
                return Err(invalid(
                    "HaPeer",
                    "HaMode = builtin runs two nodes: list exactly one HaPeer".to_owned(),
                ));
            }
        }
        if self.partners.contains(&listen) {
            return Err(invalid(
                "HaPeer",
                format!("{listen} is this node's own HaListen; list the other nodes"),
            ));
        }
        Ok(Some(HaConfig {
            mode,
            node_id: self.node_id.ok_or_else(|| missing("HaNodeId"))?,
            key: self.key.ok_or_else(|| missing("HaKey"))?,
            listen,
            partners: self.partners,
            checkpoint: self.checkpoint.unwrap_or(DEFAULT_CHECKPOINT),
            virtual_ips: self.virtual_ips,
            priority: self.priority.unwrap_or(DEFAULT_PRIORITY),
            preempt: self.preempt.unwrap_or(true),
            track_interfaces: self.track_interfaces,
            pools: self.pools,
        }))
    }
}

impl InterfaceBuilder {
    fn new(header_line: usize) -> Self {
        Self {
            header_line,
            single_valued: SingleValuedKeys::default(),
            private_key: None,
            listen_port: None,
            addresses: Vec::new(),
            mtu: None,
            dns_servers: Vec::new(),
            dns_search: Vec::new(),
            table: RoutingTable::Auto,
            fwmark: None,
            hooks: Hooks::default(),
            save_config: false,
            metrics_address: None,
            test_timer_scale: None,
            attach: Vec::new(),
            inner: InnerSide::Tun,
            spread: false,
            xdp_mode: XdpMode::Auto,
            layout: LayoutKeys::default(),
            ha: HaBuilder::default(),
        }
    }

    fn set(&mut self, key: &str, value: &str, line: usize) -> Result<(), ConfigErrorKind> {
        const SECTION: Section = Section::Interface;
        let key = canonical_key(SECTION, key)?;
        let invalid = |problem: ValueError| ConfigErrorKind::InvalidValue {
            section: SECTION,
            key,
            problem: problem.into_message(),
        };
        let repeatable = matches!(
            key,
            "Address"
                | "DNS"
                | "PreUp"
                | "PostUp"
                | "PreDown"
                | "PostDown"
                | "Attach"
                | "HaPeer"
                | "HaVirtualIp"
                | "HaTrackInterface"
                | "HaPool"
        );
        if !repeatable {
            self.single_valued.claim(SECTION, key, line)?;
        }
        match key {
            "PrivateKey" => {
                let private_key = PrivateKey::from_base64(value)
                    .map_err(|e| invalid(secret_key_problem("private key", e)))?;
                self.private_key = Some(private_key);
            }
            "ListenPort" => self.listen_port = Some(parse_port(value).map_err(invalid)?),
            "Address" => {
                for item in list_items(value) {
                    self.addresses
                        .push(item.parse::<InterfaceAddress>().map_err(invalid)?);
                }
            }
            "MTU" => self.mtu = Some(parse_mtu(value).map_err(invalid)?),
            "DNS" => {
                for item in list_items(value) {
                    match parse_dns_item(item).map_err(invalid)? {
                        DnsItem::Server(ip) => self.dns_servers.push(ip),
                        DnsItem::SearchDomain(domain) => self.dns_search.push(domain),
                    }
                }
            }
            "Table" => self.table = value.parse::<RoutingTable>().map_err(invalid)?,
            "FwMark" => self.fwmark = parse_fwmark(value).map_err(invalid)?,
            // Hooks are shell commands: kept verbatim, `%i` is substituted when they run.
            "PreUp" => self.hooks.pre_up.push(value.to_owned()),
            "PostUp" => self.hooks.post_up.push(value.to_owned()),
            "PreDown" => self.hooks.pre_down.push(value.to_owned()),
            "PostDown" => self.hooks.post_down.push(value.to_owned()),
            "SaveConfig" => self.save_config = parse_bool(value).map_err(invalid)?,
            "MetricsAddress" => {
                let address = value.parse().map_err(|_| {
                    invalid(value_error!(
                        "{value:?} is not an IP:PORT to listen on (e.g. 127.0.0.1:9586)"
                    ))
                })?;
                self.metrics_address = Some(address);
            }
            "TestTimerScale" => {
                let scale = value.parse().map_err(|_| {
                    invalid(value_error!(
                        "{value:?} is not a whole number from 1 upwards"
                    ))
                })?;
                self.test_timer_scale = Some(scale);
            }
            "Attach" => {
                for item in list_items(value) {
                    let name = parse_interface_name(item).map_err(invalid)?;
                    if self.attach.contains(&name) {
                        return Err(invalid(value_error!("{name} is attached twice")));
                    }
                    self.attach.push(name);
                }
            }
            "XdpMode" => self.xdp_mode = value.parse::<XdpMode>().map_err(invalid)?,
            "Inner" => self.inner = value.parse::<InnerSide>().map_err(invalid)?,
            "Spread" => self.spread = parse_on_off(value).map_err(invalid)?,
            "Workers" => self.layout.workers = value.parse().map_err(invalid)?,
            "Cores" => self.layout.cores = Some(value.parse().map_err(invalid)?),
            "Queues" => self.layout.queues = value.parse().map_err(invalid)?,
            "ZeroCopy" => self.layout.zero_copy = value.parse().map_err(invalid)?,
            "FrameSize" => self.layout.frame_size = value.parse().map_err(invalid)?,
            "RingSize" => self.layout.ring_size = value.parse().map_err(invalid)?,
            "BusyPoll" => self.layout.busy_poll = parse_on_off(value).map_err(invalid)?,
            "HaMode" => self.ha.mode = parse_ha_mode(value).map_err(invalid)?,
            "HaNodeId" => self.ha.node_id = Some(parse_node_id(value).map_err(invalid)?),
            "HaKey" => {
                let key = PresharedKey::from_base64(value)
                    .map_err(|e| invalid(secret_key_problem("HA key", e)))?;
                self.ha.key = Some(key);
            }
            "HaListen" => self.ha.listen = Some(parse_sync_address(value).map_err(invalid)?),
            "HaPeer" => {
                for item in list_items(value) {
                    let partner = parse_sync_address(item).map_err(invalid)?;
                    if self.ha.partners.contains(&partner) {
                        return Err(invalid(value_error!("{partner} is listed twice")));
                    }
                    self.ha.partners.push(partner);
                }
            }
            "HaCheckpointMs" => {
                self.ha.checkpoint = Some(parse_checkpoint(value).map_err(invalid)?);
            }
            "HaVirtualIp" => {
                let vip = parse_virtual_ip(value).map_err(invalid)?;
                if self.ha.virtual_ips.contains(&vip) {
                    return Err(invalid(value_error!("{vip} is listed twice")));
                }
                self.ha.virtual_ips.push(vip);
            }
            "HaPriority" => self.ha.priority = Some(parse_priority(value).map_err(invalid)?),
            "HaPreempt" => self.ha.preempt = Some(parse_on_off(value).map_err(invalid)?),
            "HaPool" => {
                for item in list_items(value) {
                    let pool = parse_allowed_ip(item).map_err(invalid)?;
                    if self.ha.pools.contains(&pool) {
                        return Err(invalid(value_error!("{pool} is listed twice")));
                    }
                    self.ha.pools.push(pool);
                }
                self.ha.pool_line.get_or_insert(line);
            }
            "HaTrackInterface" => {
                let name = parse_interface_name(value).map_err(invalid)?;
                if self.ha.track_interfaces.contains(&name) {
                    return Err(invalid(value_error!("{name} is listed twice")));
                }
                self.ha.track_interfaces.push(name);
                self.ha.track_line.get_or_insert(line);
            }
            // Only reachable if `Section::valid_keys` gains a key this match lacks.
            _ => return Err(invalid(value_error!("{key} is not supported yet"))),
        }
        Ok(())
    }

    fn build(self) -> Result<InterfaceConfig, (Option<usize>, ConfigErrorKind)> {
        let private_key = self.private_key.ok_or((
            Some(self.header_line),
            ConfigErrorKind::MissingKey {
                section: Section::Interface,
                key: "PrivateKey",
            },
        ))?;
        let xdp_mode_mtu = (!self.attach.is_empty()).then(|| {
            self.mtu
                .map_or(crate::daemon::DEFAULT_MTU as u32, u32::from)
        });
        if let Err(conflict) = self.layout.check_combination(xdp_mode_mtu) {
            let line = self.single_valued.line_of(conflict.key);
            return Err((
                line,
                ConfigErrorKind::InvalidValue {
                    section: Section::Interface,
                    key: conflict.key,
                    problem: conflict.problem,
                },
            ));
        }
        if let InnerSide::Nic(lan) = &self.inner {
            let problem = match self.attach.as_slice() {
                [wan] if wan == lan => Some(format!(
                    "{lan} is the Attach NIC (the WAN side); Inner names the LAN NIC"
                )),
                [_] => None,
                attached => Some(format!(
                    "Inner = {lan} (full bypass) needs exactly one Attach NIC, the WAN side; \
                     found {}",
                    attached.len()
                )),
            };
            if let Some(problem) = problem {
                return Err((
                    self.single_valued.line_of("Inner"),
                    ConfigErrorKind::InvalidValue {
                        section: Section::Interface,
                        key: "Inner",
                        problem,
                    },
                ));
            }
        }
        if self.spread && self.attach.is_empty() {
            return Err((
                self.single_valued.line_of("Spread"),
                ConfigErrorKind::InvalidValue {
                    section: Section::Interface,
                    key: "Spread",
                    problem: "Spread = on spreads the AF_XDP workers' decryption: it needs an \
                              Attach NIC"
                        .to_owned(),
                },
            ));
        }
        let ha = self.ha.build(&self.single_valued)?;
        Ok(InterfaceConfig {
            private_key,
            listen_port: self.listen_port,
            addresses: self.addresses,
            mtu: self.mtu,
            dns_servers: self.dns_servers,
            dns_search: self.dns_search,
            table: self.table,
            fwmark: self.fwmark,
            hooks: self.hooks,
            save_config: self.save_config,
            metrics_address: self.metrics_address,
            test_timer_scale: self.test_timer_scale,
            attach: self.attach,
            xdp_mode: self.xdp_mode,
            inner: self.inner,
            spread: self.spread,
            layout: self.layout,
            ha,
        })
    }
}

struct PeerBuilder {
    header_line: usize,
    single_valued: SingleValuedKeys,
    public_key: Option<(PublicKey, usize)>,
    preshared_key: Option<PresharedKey>,
    allowed_ips: Vec<IpPrefix>,
    /// The `Endpoint` items and their lines: completed in `build`, once `EndpointPort`
    /// (which may come later) is known.
    endpoints: Vec<(EndpointItem, usize)>,
    endpoint_port: Option<(u16, usize)>,
    persistent_keepalive: Option<NonZeroU16>,
    cipher: CipherSuite,
    failover: FailoverKeys,
}

impl PeerBuilder {
    fn new(header_line: usize) -> Self {
        Self {
            header_line,
            single_valued: SingleValuedKeys::default(),
            public_key: None,
            preshared_key: None,
            allowed_ips: Vec::new(),
            endpoints: Vec::new(),
            endpoint_port: None,
            persistent_keepalive: None,
            cipher: CipherSuite::default(),
            failover: FailoverKeys::default(),
        }
    }

    fn set(&mut self, key: &str, value: &str, line: usize) -> Result<(), ConfigErrorKind> {
        const SECTION: Section = Section::Peer;
        let key = canonical_key(SECTION, key)?;
        let invalid = |problem: ValueError| ConfigErrorKind::InvalidValue {
            section: SECTION,
            key,
            problem: problem.into_message(),
        };
        if key != "AllowedIPs" && key != "Endpoint" {
            self.single_valued.claim(SECTION, key, line)?;
        }
        match key {
            "PublicKey" => {
                let public_key = PublicKey::from_base64(value)
                    .map_err(|e| invalid(value_error!("{value:?} is not a public key: {e}")))?;
                self.public_key = Some((public_key, line));
            }
            "PresharedKey" => {
                let preshared_key = PresharedKey::from_base64(value)
                    .map_err(|e| invalid(secret_key_problem("preshared key", e)))?;
                self.preshared_key = Some(preshared_key);
            }
            "AllowedIPs" => {
                for item in list_items(value) {
                    self.allowed_ips
                        .push(parse_allowed_ip(item).map_err(invalid)?);
                }
            }
            // Several endpoints (a list, or repeated lines) are tried in turn: warpline's
            // failover extension; one endpoint is plain wg-quick.
            "Endpoint" => {
                for item in list_items(value) {
                    let item = EndpointItem::parse(item).map_err(invalid)?;
                    self.endpoints.push((item, line));
                }
            }
            "EndpointPort" => {
                self.endpoint_port = Some((parse_endpoint_port(value).map_err(invalid)?, line));
            }
            "EndpointPolicy" => self.failover.policy = value.parse().map_err(invalid)?,
            "FailoverAfter" => {
                self.failover.after = parse_failover_after(value).map_err(invalid)?;
            }
            "FailBack" => self.failover.fail_back = parse_fail_back(value).map_err(invalid)?,
            "PersistentKeepalive" => {
                self.persistent_keepalive = parse_keepalive(value).map_err(invalid)?;
            }
            "Cipher" => self.cipher = parse_cipher_suite(value).map_err(invalid)?,
            // Only reachable if `Section::valid_keys` gains a key this match lacks.
            _ => return Err(invalid(value_error!("{key} is not supported yet"))),
        }
        Ok(())
    }

    /// The peer and the line of its `PublicKey`.
    fn build(self) -> Result<(PeerConfig, usize), (Option<usize>, ConfigErrorKind)> {
        let (public_key, key_line) = self.public_key.ok_or((
            Some(self.header_line),
            ConfigErrorKind::MissingKey {
                section: Section::Peer,
                key: "PublicKey",
            },
        ))?;
        let (endpoints, endpoint_settings) =
            complete_endpoints(self.endpoints, self.endpoint_port)?;
        let mut endpoints = endpoints.into_iter();
        let peer = PeerConfig {
            public_key,
            preshared_key: self.preshared_key,
            allowed_ips: self.allowed_ips,
            endpoint: endpoints.next(),
            more_endpoints: endpoints.collect(),
            endpoint_settings,
            failover: self.failover,
            persistent_keepalive: self.persistent_keepalive,
            cipher: self.cipher,
        };
        Ok((peer, key_line))
    }
}

/// A peer's endpoints and the settings of each (see [`PeerConfig::endpoint_settings`]).
type EndpointList = (Vec<Endpoint>, Vec<EndpointSettings>);

/// The peer's endpoint list with the ports `EndpointPort` fills in, and the settings of each
/// item (without trailing empty ones).
fn complete_endpoints(
    items: Vec<(EndpointItem, usize)>,
    endpoint_port: Option<(u16, usize)>,
) -> Result<EndpointList, (Option<usize>, ConfigErrorKind)> {
    let invalid = |line, key, problem: ValueError| {
        (
            Some(line),
            ConfigErrorKind::InvalidValue {
                section: Section::Peer,
                key,
                problem: problem.into_message(),
            },
        )
    };
    if items.is_empty()
        && let Some((_, line)) = endpoint_port
    {
        return Err(invalid(
            line,
            "EndpointPort",
            value_error!("is set but the peer has no Endpoint to use it"),
        ));
    }
    let mut endpoints = Vec::with_capacity(items.len());
    let mut settings = Vec::with_capacity(items.len());
    for (item, line) in items {
        let (endpoint, item_settings) = item
            .complete(endpoint_port.map(|(port, _)| port))
            .map_err(|problem| invalid(line, "Endpoint", problem))?;
        if endpoints.contains(&endpoint) {
            return Err(invalid(
                line,
                "Endpoint",
                value_error!("{endpoint} is listed twice"),
            ));
        }
        endpoints.push(endpoint);
        settings.push(item_settings);
    }
    while settings.last().is_some_and(EndpointSettings::is_empty) {
        settings.pop();
    }
    Ok((endpoints, settings))
}
