//! The items of a peer's `Endpoint` list and their own settings (warpline extension), like
//! OpenVPN's `<connection>` blocks:
//!
//! ```ini
//! EndpointPort = 51820                                   # for the names below without a port
//! Endpoint = gw1.example.com keepalive=25, [2001:db8::7]:443 keepalive=off, 192.0.2.7
//! ```
//!
//! An item is `HOST[:PORT]` followed by space-separated `name=value` settings. Without a
//! port it takes the peer's `EndpointPort`; an IPv6 address without a port needs brackets,
//! because `2001:db8::1:443` is read as address and port, as `wg` reads it.

use std::fmt;
use std::num::NonZeroU16;

use super::endpoint::Endpoint;
use super::values::{ValueError, parse_decimal, parse_keepalive, value_error};

/// The settings one endpoint of a list carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct EndpointSettings {
    /// `keepalive=SECONDS|off`: the peer's persistent keepalive while this endpoint is in
    /// use (`Some(None)` is off); `None` leaves the peer's `PersistentKeepalive`.
    pub keepalive: Option<Option<NonZeroU16>>,
}

impl EndpointSettings {
    /// Whether the item sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for EndpointSettings {
    /// The settings as they follow the address in a list item: ` keepalive=25`, or nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.keepalive {
            None => Ok(()),
            Some(None) => write!(f, " keepalive=off"),
            Some(Some(seconds)) => write!(f, " keepalive={seconds}"),
        }
    }
}

/// One list item as written: its address may still lack the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointItem {
    address: ItemAddress,
    settings: EndpointSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ItemAddress {
    Complete(Endpoint),
    /// `host` (brackets removed) waits for `EndpointPort`; `text` is as written.
    WithoutPort {
        text: String,
        host: String,
    },
}

impl EndpointItem {
    /// Parses `HOST[:PORT] [name=value ...]`.
    pub(crate) fn parse(item: &str) -> Result<Self, ValueError> {
        let mut words = item.split_whitespace();
        let address_text = words.next().unwrap_or_default();
        let address = match port_less_host(address_text) {
            Some(host) => ItemAddress::WithoutPort {
                text: address_text.to_owned(),
                host: host.to_owned(),
            },
            None => ItemAddress::Complete(address_text.parse()?),
        };
        let mut settings = EndpointSettings::default();
        for word in words {
            let (name, value) = word.split_once('=').ok_or_else(|| {
                value_error!(
                    "{word:?} after {address_text} is not a setting (expected name=value, \
                     e.g. keepalive=25; items are separated by commas)"
                )
            })?;
            match name {
                "keepalive" => {
                    if settings.keepalive.is_some() {
                        return Err(value_error!("{address_text} sets keepalive twice"));
                    }
                    settings.keepalive = Some(parse_keepalive(value)?);
                }
                _ => {
                    return Err(value_error!(
                        "{name:?} is not an endpoint setting (valid: keepalive)"
                    ));
                }
            }
        }
        Ok(Self { address, settings })
    }

    /// The endpoint, a missing port taken from `default_port` (`EndpointPort`).
    pub(crate) fn complete(
        self,
        default_port: Option<u16>,
    ) -> Result<(Endpoint, EndpointSettings), ValueError> {
        let endpoint = match self.address {
            ItemAddress::Complete(endpoint) => endpoint,
            ItemAddress::WithoutPort { text, host } => {
                let port = default_port.ok_or_else(|| {
                    value_error!(
                        "{text:?} has no :PORT and the peer sets no EndpointPort (write \
                         {text}:51820, or add EndpointPort = 51820)"
                    )
                })?;
                Endpoint::from_host(&text, &host, port)?
            }
        };
        Ok((endpoint, self.settings))
    }
}

/// The host of an address written without a port: a name or IPv4 address (no colon at all),
/// or a bracketed IPv6 address with nothing after the `]`.
fn port_less_host(text: &str) -> Option<&str> {
    if let Some(inside) = text.strip_prefix('[') {
        return inside.strip_suffix(']');
    }
    (!text.is_empty() && !text.contains(':')).then_some(text)
}

/// Parses `EndpointPort`: 1 to 65535.
pub(crate) fn parse_endpoint_port(text: &str) -> Result<u16, ValueError> {
    parse_decimal(text)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&port| port != 0)
        .ok_or_else(|| value_error!("{text:?} is not a UDP port (expected 1 to 65535)"))
}

/// An endpoint with its settings, as the config writer puts it in the list.
pub(crate) struct ListedEndpoint<'a>(pub &'a Endpoint, pub EndpointSettings);

impl fmt::Display for ListedEndpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(item: &str, port: Option<u16>) -> Result<(String, EndpointSettings), String> {
        EndpointItem::parse(item)
            .and_then(|item| item.complete(port))
            .map(|(endpoint, settings)| (endpoint.to_string(), settings))
            .map_err(ValueError::into_message)
    }

    fn keepalive(seconds: u16) -> EndpointSettings {
        EndpointSettings {
            keepalive: Some(NonZeroU16::new(seconds)),
        }
    }

    #[test]
    fn items_take_settings_and_the_default_port() {
        let cases = [
            (
                "192.0.2.1:51820",
                None,
                "192.0.2.1:51820",
                EndpointSettings::default(),
            ),
            (
                "gw.example.com keepalive=25",
                Some(443),
                "gw.example.com:443",
                keepalive(25),
            ),
            (
                "192.0.2.1 keepalive=off",
                Some(443),
                "192.0.2.1:443",
                keepalive(0),
            ),
            (
                "[2001:db8::1]  keepalive=0",
                Some(1),
                "[2001:db8::1]:1",
                keepalive(0),
            ),
            (
                "[2001:db8::1]:51820",
                Some(1),
                "[2001:db8::1]:51820",
                EndpointSettings::default(),
            ),
            (
                "[fe80::1%eth0]",
                Some(7),
                "[fe80::1%eth0]:7",
                EndpointSettings::default(),
            ),
        ];
        for (item, port, endpoint, settings) in cases {
            assert_eq!(
                complete(item, port),
                Ok((endpoint.to_owned(), settings)),
                "{item:?}"
            );
        }
    }

    #[test]
    fn bad_items_say_what_is_wrong() {
        let cases = [
            (
                "gw.example.com",
                None,
                "has no :PORT and the peer sets no EndpointPort",
            ),
            (
                "gw.example.com:1 keepalive",
                None,
                "is not a setting (expected name=value",
            ),
            (
                "gw.example.com:1 port=5",
                None,
                "\"port\" is not an endpoint setting",
            ),
            ("gw:1 keepalive=1 keepalive=2", None, "sets keepalive twice"),
            ("gw:1 keepalive=-3", None, "is not a keepalive interval"),
            ("gw:1 keepalive=70000", None, "is not a keepalive interval"),
            ("2001:db8::1", Some(5), "is not an IPv6 address"),
            ("[2001:db8::1", Some(5), "has '[' without ']'"),
            ("bad_name!", Some(5), "bad_name!"),
            ("gw:0", Some(5), "the port must be a number from 1 to 65535"),
        ];
        for (item, port, expected) in cases {
            let error = complete(item, port).expect_err(item);
            assert!(error.contains(expected), "{item:?}: {error}");
        }
    }

    #[test]
    fn listed_endpoints_parse_back_to_themselves() {
        for settings in [EndpointSettings::default(), keepalive(0), keepalive(65535)] {
            for endpoint in ["192.0.2.1:1", "[2001:db8::1]:51820", "gw.example.com:443"] {
                let endpoint: Endpoint = endpoint.parse().unwrap();
                let written = ListedEndpoint(&endpoint, settings).to_string();
                assert_eq!(
                    complete(&written, None),
                    Ok((endpoint.to_string(), settings)),
                    "{written:?}"
                );
            }
        }
        assert_eq!(parse_endpoint_port("443").unwrap(), 443);
        for bad in ["0", "65536", "x", ""] {
            assert!(parse_endpoint_port(bad).is_err(), "{bad:?}");
        }
    }
}
