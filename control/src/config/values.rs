//! Value types of the config file and their text forms.
//!
//! Parsers return the problem as a [`ValueError`] sentence; the line parser adds the file, line,
//! section and key. The sentence quotes the value, so parsers of secrets must not use it.

use std::fmt;
use std::net::IpAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::str::FromStr;

/// A config value that does not parse: a sentence quoting the value and saying what was
/// expected, e.g. `"10.0.0.300/32" is not an IP prefix (expected ADDRESS/LENGTH, ...)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

impl ValueError {
    pub(crate) fn into_message(self) -> String {
        self.0
    }
}

impl From<String> for ValueError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

/// `value_error!("{text:?} is not ...")`: a [`ValueError`] from `format!` arguments.
macro_rules! value_error {
    ($($arg:tt)*) => {
        $crate::config::ValueError::from(format!($($arg)*))
    };
}
pub(crate) use value_error;

pub use warpline_dataplane::allowed_ips::IpPrefix;

/// Parses an `AllowedIPs` item, `ADDRESS[/LENGTH]` (no length: a single host, as in `wg`),
/// and clears the host bits: `10.0.0.7/24` becomes `10.0.0.0/24`, as `wg` and the kernel do.
pub fn parse_allowed_ip(text: &str) -> Result<IpPrefix, ValueError> {
    let (addr, len) = parse_addr_with_len(text)?;
    // `parse_addr_with_len` already bounds `len` by the address width.
    IpPrefix::new(addr, len)
        .map(IpPrefix::masked)
        .map_err(|_| value_error!("{text:?} has an impossible prefix length"))
}

/// An address assigned to the tunnel interface, with the prefix length of its subnet.
///
/// Unlike [`IpPrefix`], the host bits are the point: `10.0.0.1/24` is host `.1` on a /24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterfaceAddress {
    /// The interface's own address.
    pub addr: IpAddr,
    /// The subnet's prefix length; at most 32 (IPv4) or 128 (IPv6).
    pub prefix_len: u8,
}

impl FromStr for InterfaceAddress {
    type Err = ValueError;

    /// Parses `ADDRESS[/LENGTH]`; a missing length means a single host (`ip address add`'s
    /// default, which wg-quick relies on).
    fn from_str(text: &str) -> Result<Self, ValueError> {
        parse_addr_with_len(text).map(|(addr, prefix_len)| Self { addr, prefix_len })
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

fn max_prefix_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn parse_addr_with_len(text: &str) -> Result<(IpAddr, u8), ValueError> {
    let (addr_text, len_text) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| {
        value_error!(
            "{text:?} is not an IP prefix (expected ADDRESS/LENGTH, e.g. 10.0.0.0/24 or fd00::/64)"
        )
    })?;
    let max = max_prefix_len(addr);
    let Some(len_text) = len_text else {
        return Ok((addr, max));
    };
    let len = parse_decimal(len_text)
        .filter(|&len| len <= u64::from(max))
        .ok_or_else(|| {
            value_error!(
                "{text:?}: the prefix length must be a number from 0 to {max} for this address"
            )
        })?;
    // `len <= max <= 128` was just checked.
    Ok((addr, u8::try_from(len).unwrap_or(max)))
}

/// Parses plain ASCII decimal digits: no sign, no spaces (`u64::from_str` would accept `+5`).
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks DNS name syntax (letters, digits, '-', '_' in labels of 1-63 bytes, an optional
/// trailing dot). A name whose last label is all digits is refused: it is a mistyped IPv4
/// address (`10.0.0.300`), never a resolvable name.
pub(crate) fn check_host_name(text: &str) -> Result<(), ValueError> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > 253 {
        return Err(value_error!(
            "{text:?} is not a host name (empty or over 253 characters)"
        ));
    }
    let valid_labels = name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !valid_labels {
        return Err(value_error!(
            "{text:?} is neither an IP address nor a host name (names use letters, digits, '-' \
             and '.')"
        ));
    }
    let last_label = name.rsplit('.').next().unwrap_or(name);
    if last_label.bytes().all(|b| b.is_ascii_digit()) {
        return Err(value_error!("{text:?} is not a valid IP address"));
    }
    Ok(())
}

/// Which routing table wg-quick-style route setup uses (`Table =`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum RoutingTable {
    /// The default: routes for allowed IPs go to the main table, and a default route gets a
    /// table of its own plus policy rules (wg-quick's behaviour).
    #[default]
    Auto,
    /// Add no routes at all.
    Off,
    /// A numeric table id.
    Id(u32),
    /// A table name from `/etc/iproute2/rt_tables`, resolved when routes are installed.
    Name(String),
}

impl FromStr for RoutingTable {
    type Err = ValueError;

    /// Parses `off`, `auto`, a table number or a table name.
    fn from_str(text: &str) -> Result<Self, ValueError> {
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        if text.starts_with(|c: char| c.is_ascii_digit()) {
            return parse_decimal(text)
                .and_then(|n| u32::try_from(n).ok())
                .map(Self::Id)
                .ok_or_else(|| value_error!("{text:?} is not a table number (0 to 4294967295)"));
        }
        let is_name = text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if is_name {
            Ok(Self::Name(text.to_owned()))
        } else {
            Err(value_error!(
                "{text:?} is not a routing table (expected auto, off, a number or a name from \
                 /etc/iproute2/rt_tables)"
            ))
        }
    }
}

impl fmt::Display for RoutingTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Off => f.write_str("off"),
            Self::Id(id) => write!(f, "{id}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// How the XDP program attaches to an `Attach` NIC (`XdpMode =`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// Native (driver) XDP where the driver supports it, generic otherwise.
    #[default]
    Auto,
    /// Native XDP only: fail if the driver lacks it.
    Native,
    /// Generic (skb) XDP: works on every NIC, slower.
    Generic,
}

impl FromStr for XdpMode {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        [Self::Auto, Self::Native, Self::Generic]
            .into_iter()
            .find(|mode| mode.to_string().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                value_error!("{text:?} is not an XDP mode; valid: auto, native, generic")
            })
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

/// The inner side of the gateway (`Inner =`): where decapsulated packets leave and where
/// packets for the tunnels come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum InnerSide {
    /// A TUN interface: the kernel routes between it and the LAN (one copy per packet).
    #[default]
    Tun,
    /// A LAN NIC over AF_XDP (full bypass): the steering program in its LAN role sends
    /// packets for the tunnels' prefixes to the workers, whose sockets on it share each
    /// queue's UMEM with the `Attach` NIC's.
    Nic(String),
}

impl FromStr for InnerSide {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        if text.eq_ignore_ascii_case("tun") {
            return Ok(Self::Tun);
        }
        parse_interface_name(text).map(Self::Nic).map_err(|_| {
            value_error!(
                "{text:?} is neither `tun` nor a network interface name (the LAN NIC, \
                 1-15 characters, no '/', ':' or spaces)"
            )
        })
    }
}

impl fmt::Display for InnerSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tun => f.write_str("tun"),
            Self::Nic(name) => f.write_str(name),
        }
    }
}

/// Checks an `Attach` value: a network interface name as the kernel accepts it.
pub(crate) fn parse_interface_name(text: &str) -> Result<String, ValueError> {
    let valid = !text.is_empty()
        && text.len() < 16
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(value_error!(
            "{text:?} is not a network interface name (1-15 characters, no '/', ':' or spaces)"
        ))
    }
}

/// Parses `FwMark`: `off`, decimal, or `0x` hexadecimal as `wg` reads it; 0 means off.
pub(crate) fn parse_fwmark(text: &str) -> Result<Option<NonZeroU32>, ValueError> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let value = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None => parse_decimal(text).and_then(|n| u32::try_from(n).ok()),
    };
    value.map(NonZeroU32::new).ok_or_else(|| {
        value_error!(
            "{text:?} is not a firewall mark (expected off, or a 32-bit number like 51820 or \
             0xca6c)"
        )
    })
}

/// Parses `PersistentKeepalive`: `off` or seconds 0-65535, where 0 also means off.
pub(crate) fn parse_keepalive(text: &str) -> Result<Option<NonZeroU16>, ValueError> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_decimal(text)
        .and_then(|n| u16::try_from(n).ok())
        .map(NonZeroU16::new)
        .ok_or_else(|| {
            value_error!(
                "{text:?} is not a keepalive interval (expected off, or seconds from 0 to 65535)"
            )
        })
}

/// The smallest MTU Linux accepts on an Ethernet-like device (`ETH_MIN_MTU`).
pub const MIN_MTU: u16 = 68;

/// Parses `MTU`: a number from [`MIN_MTU`] to 65535.
pub(crate) fn parse_mtu(text: &str) -> Result<u16, ValueError> {
    parse_decimal(text)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&mtu| mtu >= MIN_MTU)
        .ok_or_else(|| {
            value_error!("{text:?} is not an MTU (expected a number from {MIN_MTU} to 65535)")
        })
}

/// Parses `ListenPort`: 0 (any free port) to 65535.
pub(crate) fn parse_port(text: &str) -> Result<u16, ValueError> {
    parse_decimal(text)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| {
            value_error!("{text:?} is not a UDP port (expected a number from 0 to 65535)")
        })
}

/// Parses `SaveConfig`, which wg-quick reads as exactly `true` or `false`.
pub(crate) fn parse_bool(text: &str) -> Result<bool, ValueError> {
    if text.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(value_error!("{text:?} is neither true nor false"))
    }
}

/// One item of a `DNS =` list: wg-quick passes IP addresses to resolvconf as name servers and
/// everything else as search domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DnsItem {
    Server(IpAddr),
    SearchDomain(String),
}

pub(crate) fn parse_dns_item(text: &str) -> Result<DnsItem, ValueError> {
    if let Ok(ip) = text.parse() {
        return Ok(DnsItem::Server(ip));
    }
    // wg-quick's own test: digits and dots, or any colon, means an address was meant.
    if text.contains(':') || text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(value_error!("{text:?} is not an IP address"));
    }
    check_host_name(text)?;
    Ok(DnsItem::SearchDomain(text.to_owned()))
}

/// Splits a comma-separated list, trimming items and skipping empty ones (wg-quick splits on
/// commas and whitespace, so `a,,b` and a trailing comma are harmless there).
pub(crate) fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_masks_host_bits_and_defaults_to_host_length() {
        let p = parse_allowed_ip("10.0.0.7/24").unwrap();
        assert_eq!(p.to_string(), "10.0.0.0/24");
        assert_eq!(
            parse_allowed_ip("10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            parse_allowed_ip("fd00::1:2/64").unwrap().to_string(),
            "fd00::/64"
        );
        assert_eq!(parse_allowed_ip("fd00::1").unwrap().prefix_len(), 128);
        assert_eq!(parse_allowed_ip("0.0.0.0/0").unwrap().prefix_len(), 0);
        assert!(p.contains("10.0.0.200".parse().unwrap()));
        assert!(!p.contains("10.0.1.1".parse().unwrap()));
        assert!(!p.contains("fd00::1".parse().unwrap()));
    }

    #[test]
    fn prefix_rejects_bad_lengths_and_addresses() {
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.300/32",
            "host/32",
            "",
            "10.0.0.0/99999999999999999999999",
        ] {
            assert!(parse_allowed_ip(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn interface_address_keeps_host_bits() {
        let a = InterfaceAddress::from_str("10.0.0.1/24").unwrap();
        assert_eq!(a.to_string(), "10.0.0.1/24");
        assert_eq!(
            InterfaceAddress::from_str("fd00::1").unwrap().prefix_len,
            128
        );
    }

    #[test]
    fn scalar_values() {
        assert_eq!(parse_keepalive("off"), Ok(None));
        assert_eq!(parse_keepalive("0"), Ok(None));
        assert_eq!(parse_keepalive("25"), Ok(NonZeroU16::new(25)));
        assert!(parse_keepalive("65536").is_err());
        assert!(parse_keepalive("-1").is_err());
        assert_eq!(parse_fwmark("0xca6c"), Ok(NonZeroU32::new(0xca6c)));
        assert_eq!(parse_fwmark("51820"), Ok(NonZeroU32::new(51820)));
        assert_eq!(parse_fwmark("off"), Ok(None));
        assert_eq!(parse_fwmark("0"), Ok(None));
        assert!(parse_fwmark("0x").is_err());
        assert!(parse_fwmark("0x100000000").is_err());
        assert_eq!(parse_mtu("1420"), Ok(1420));
        assert!(parse_mtu("67").is_err());
        assert!(parse_mtu("65536").is_err());
        assert_eq!(parse_port("0"), Ok(0));
        assert!(parse_port("65536").is_err());
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert!(parse_bool("yes").is_err());
        assert_eq!(RoutingTable::from_str("1234"), Ok(RoutingTable::Id(1234)));
        assert_eq!(RoutingTable::from_str("Off"), Ok(RoutingTable::Off));
        assert_eq!(
            RoutingTable::from_str("vpn"),
            Ok(RoutingTable::Name("vpn".into()))
        );
        assert!(RoutingTable::from_str("12ab").is_err());
        assert!(RoutingTable::from_str("a b").is_err());
    }

    #[test]
    fn dns_items_split_servers_from_search_domains() {
        assert_eq!(
            parse_dns_item("1.1.1.1"),
            Ok(DnsItem::Server("1.1.1.1".parse().unwrap()))
        );
        assert_eq!(
            parse_dns_item("corp.example"),
            Ok(DnsItem::SearchDomain("corp.example".into()))
        );
        assert!(parse_dns_item("1.1.1.300").is_err());
        assert!(parse_dns_item("fd00::zz").is_err());
        assert_eq!(list_items(" a, ,b,").collect::<Vec<_>>(), ["a", "b"]);
    }
}
