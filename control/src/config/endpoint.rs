//! `Endpoint`: where a peer is reached.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::str::FromStr;

use super::values::{ValueError, check_host_name, parse_decimal, value_error};

/// Where a peer is reached: an address, or a host name for the control plane to resolve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// An IP literal (`192.0.2.1:51820`, `[2001:db8::1]:51820`, `[fe80::1%2]:51820`).
    Addr(SocketAddr),
    /// A name kept as written (`vpn.example.com:51820`, or an IPv6 address with a named scope
    /// such as `[fe80::1%eth0]:51820`): resolving it is the control plane's job, at start-up and
    /// again when the peer goes quiet, so config parsing stays pure.
    Host {
        /// The host name, without brackets.
        host: String,
        /// The UDP port, never 0.
        port: u16,
    },
}

impl FromStr for Endpoint {
    type Err = ValueError;

    /// Parses `HOST:PORT`, `[IPV6]:PORT`, or, as `wg` allows, an unbracketed IPv6 address
    /// whose last colon separates the port.
    fn from_str(text: &str) -> Result<Self, ValueError> {
        let expected = "expected HOST:PORT, e.g. 192.0.2.1:51820, [2001:db8::1]:51820 \
                        or vpn.example.com:51820";
        let (host, port_text) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| value_error!("{text:?} has '[' without ']' ({expected})"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| value_error!("{text:?} has no :PORT after ']' ({expected})"))?;
            (host, port)
        } else {
            text.rsplit_once(':')
                .ok_or_else(|| value_error!("{text:?} has no :PORT ({expected})"))?
        };
        let port = parse_decimal(port_text)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0)
            .ok_or_else(|| value_error!("{text:?}: the port must be a number from 1 to 65535"))?;
        Self::from_host(text, host, port)
    }
}

impl Endpoint {
    /// The endpoint for `host` (an IP literal without brackets, an IPv6 address with a
    /// `%scope`, or a name) and `port`; `text` is what the user wrote, for error messages.
    pub(crate) fn from_host(text: &str, host: &str, port: u16) -> Result<Self, ValueError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Self::Addr(SocketAddr::new(ip, port)));
        }
        if let Some((addr_text, scope)) = host.split_once('%') {
            let addr: Ipv6Addr = addr_text
                .parse()
                .map_err(|_| value_error!("{text:?}: only IPv6 addresses take a %scope"))?;
            if let Some(scope_id) = parse_decimal(scope).and_then(|s| u32::try_from(s).ok()) {
                return Ok(Self::Addr(SocketAddr::V6(SocketAddrV6::new(
                    addr, port, 0, scope_id,
                ))));
            }
            if !is_interface_name(scope) {
                return Err(value_error!("{text:?}: {scope:?} is not an interface name"));
            }
        } else if host.contains(':') {
            return Err(value_error!("{text:?}: {host:?} is not an IPv6 address"));
        } else {
            check_host_name(host).map_err(|why| value_error!("{text:?}: {why}"))?;
        }
        Ok(Self::Host {
            host: host.to_owned(),
            port,
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Addr(addr) => addr.port(),
            Self::Host { port, .. } => *port,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr(addr) => write!(f, "{addr}"),
            Self::Host { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Linux interface names: at most 15 bytes, no '/', no whitespace, not `.` or `..`.
fn is_interface_name(text: &str) -> bool {
    (1..=15).contains(&text.len())
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        let cases = [
            ("192.0.2.1:51820", "192.0.2.1:51820"),
            ("[2001:db8::1]:51820", "[2001:db8::1]:51820"),
            ("2001:db8::1:51820", "[2001:db8::1]:51820"),
            ("[fe80::1%3]:51820", "[fe80::1%3]:51820"),
            ("[fe80::1%eth0]:51820", "[fe80::1%eth0]:51820"),
            ("vpn.example.com:443", "vpn.example.com:443"),
            ("vpn.example.com.:443", "vpn.example.com.:443"),
        ];
        for (text, shown) in cases {
            let endpoint = Endpoint::from_str(text).unwrap();
            assert_eq!(endpoint.to_string(), shown);
            assert_eq!(Endpoint::from_str(shown).unwrap(), endpoint);
        }
        assert_eq!(
            Endpoint::from_str("vpn.example.com:443").unwrap(),
            Endpoint::Host {
                host: "vpn.example.com".into(),
                port: 443
            }
        );
    }

    #[test]
    fn endpoint_rejects() {
        for bad in [
            "192.0.2.1",
            "192.0.2.1:0",
            "192.0.2.1:65536",
            "192.0.2.1:port",
            "[2001:db8::1]",
            "[2001:db8::1:51820",
            "10.0.0.300:51820",
            "bad_-.name:1",
            "-bad.example:1",
            "a..b:1",
            ":51820",
            "1.2.3.4%eth0:1",
            "[fe80::1%a/b]:1",
            "fe80:::1:51820",
        ] {
            assert!(Endpoint::from_str(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
