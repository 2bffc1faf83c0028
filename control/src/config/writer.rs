//! Writes a [`Config`] back as wg-quick text.

use std::fmt::{Display, Write as _};

use super::endpoint_list::ListedEndpoint;
use super::{
    CipherSuite, Config, FailoverKeys, HaConfig, InnerSide, LayoutKeys, RoutingTable, XdpMode,
};

pub(super) fn write(config: &Config) -> String {
    let interface = &config.interface;
    let mut out = Lines(String::from("[Interface]\n"));
    out.pair("PrivateKey", &interface.private_key.to_base64());
    if let Some(port) = interface.listen_port {
        out.pair("ListenPort", &port);
    }
    out.list("Address", &interface.addresses);
    if let Some(mtu) = interface.mtu {
        out.pair("MTU", &mtu);
    }
    let dns: Vec<String> = (interface.dns_servers.iter().map(ToString::to_string))
        .chain(interface.dns_search.iter().cloned())
        .collect();
    out.list("DNS", &dns);
    if interface.table != RoutingTable::Auto {
        out.pair("Table", &interface.table);
    }
    if let Some(mark) = interface.fwmark {
        out.pair("FwMark", &format_args!("{:#x}", mark.get()));
    }
    let hooks = &interface.hooks;
    for (key, commands) in [
        ("PreUp", &hooks.pre_up),
        ("PostUp", &hooks.post_up),
        ("PreDown", &hooks.pre_down),
        ("PostDown", &hooks.post_down),
    ] {
        for command in commands {
            out.pair(key, command);
        }
    }
    if interface.save_config {
        out.pair("SaveConfig", &true);
    }
    if let Some(address) = &interface.metrics_address {
        out.pair("MetricsAddress", address);
    }
    if let Some(scale) = &interface.test_timer_scale {
        out.pair("TestTimerScale", scale);
    }
    out.list("Attach", &interface.attach);
    if interface.xdp_mode != XdpMode::Auto {
        out.pair("XdpMode", &interface.xdp_mode);
    }
    if interface.inner != InnerSide::Tun {
        out.pair("Inner", &interface.inner);
    }
    if interface.spread {
        out.pair("Spread", &"on");
    }
    write_layout(&mut out, &interface.layout);
    if let Some(ha) = &interface.ha {
        write_ha(&mut out, ha);
    }
    for peer in &config.peers {
        out.0.push_str("\n[Peer]\n");
        out.pair("PublicKey", &peer.public_key);
        if let Some(psk) = &peer.preshared_key {
            out.pair("PresharedKey", &psk.to_base64());
        }
        out.list("AllowedIPs", &peer.allowed_ips);
        let endpoints: Vec<_> = (peer.endpoints().enumerate())
            .map(|(index, endpoint)| ListedEndpoint(endpoint, peer.settings_of(index)))
            .collect();
        out.list("Endpoint", &endpoints);
        write_failover(&mut out, &peer.failover);
        if let Some(seconds) = peer.persistent_keepalive {
            out.pair("PersistentKeepalive", &seconds);
        }
        // Only when needed, so configs without the extension stay readable by stock wg-quick.
        if peer.cipher != CipherSuite::default() {
            out.pair("Cipher", &peer.cipher.config_name());
        }
    }
    out.0
}

/// The layout keys that differ from their defaults, so a config without them stays plain
/// wg-quick.
fn write_layout(out: &mut Lines, layout: &LayoutKeys) {
    let defaults = LayoutKeys::default();
    if layout.workers != defaults.workers {
        out.pair("Workers", &layout.workers);
    }
    if let Some(cores) = &layout.cores {
        out.pair("Cores", cores);
    }
    if layout.queues != defaults.queues {
        out.pair("Queues", &layout.queues);
    }
    if layout.zero_copy != defaults.zero_copy {
        out.pair("ZeroCopy", &layout.zero_copy);
    }
    if layout.frame_size != defaults.frame_size {
        out.pair("FrameSize", &layout.frame_size);
    }
    if layout.ring_size != defaults.ring_size {
        out.pair("RingSize", &layout.ring_size);
    }
    if layout.busy_poll {
        out.pair("BusyPoll", &"on");
    }
}

fn write_ha(out: &mut Lines, ha: &HaConfig) {
    out.pair("HaMode", &ha.mode);
    out.pair("HaNodeId", &ha.node_id);
    out.pair("HaKey", &ha.key.to_base64());
    out.pair("HaListen", &ha.listen);
    out.list("HaPeer", &ha.partners);
    if ha.checkpoint != super::DEFAULT_CHECKPOINT {
        out.pair("HaCheckpointMs", &ha.checkpoint.as_millis());
    }
    for vip in &ha.virtual_ips {
        out.pair("HaVirtualIp", vip);
    }
    if ha.mode == super::HaMode::Builtin {
        out.pair("HaPriority", &ha.priority);
        out.pair("HaPreempt", &if ha.preempt { "on" } else { "off" });
    }
    for interface in &ha.track_interfaces {
        out.pair("HaTrackInterface", interface);
    }
    out.list("HaPool", &ha.pools);
}

/// The failover keys that differ from their defaults.
fn write_failover(out: &mut Lines, failover: &FailoverKeys) {
    let defaults = FailoverKeys::default();
    if failover.policy != defaults.policy {
        out.pair("EndpointPolicy", &failover.policy);
    }
    if failover.after != defaults.after {
        out.pair("FailoverAfter", &failover.after.as_secs());
    }
    if let Some(fail_back) = failover.fail_back {
        out.pair("FailBack", &fail_back.as_secs());
    }
}

/// The text being written, one `Key = Value` line at a time.
struct Lines(String);

impl Lines {
    fn pair(&mut self, key: &str, value: &dyn Display) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "{key} = {value}");
    }

    /// One comma-separated line, or none for an empty list.
    fn list<T: Display>(&mut self, key: &str, items: &[T]) {
        if items.is_empty() {
            return;
        }
        let _ = write!(self.0, "{key} = ");
        for (index, item) in items.iter().enumerate() {
            let separator = if index == 0 { "" } else { ", " };
            let _ = write!(self.0, "{separator}{item}");
        }
        self.0.push('\n');
    }
}
