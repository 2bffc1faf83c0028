//! `warpline set <name> peer <key> ...`: wg set's peer syntax, turned into a control request.
//!
//! One peer per invocation (wg set accepts several); host-name endpoints are resolved here,
//! since the daemon takes numeric endpoints only.

use std::net::ToSocketAddrs;
use std::path::Path;

use crate::ctl::Request;

/// Parses the words after the interface name.
pub fn parse(words: &[String]) -> Result<Request, String> {
    let mut words = words.iter().map(String::as_str);
    let (Some("peer"), Some(public_key)) = (words.next(), words.next()) else {
        return Err(
            "expected `peer <public key>` (e.g. warpline set wl0 peer <key> \
                    allowed-ips 10.0.0.2/32)"
                .into(),
        );
    };
    let mut remove = false;
    let mut preshared_key = None;
    let mut allowed_ips = Vec::new();
    let mut endpoint = None;
    let mut persistent_keepalive = None;
    let mut cipher = None;
    while let Some(word) = words.next() {
        let mut value = || {
            words
                .next()
                .ok_or_else(|| format!("`{word}` needs a value"))
        };
        match word {
            "remove" => remove = true,
            "allowed-ips" => {
                allowed_ips = value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "endpoint" => endpoint = Some(resolve(value()?)?),
            "persistent-keepalive" => {
                let text = value()?;
                let seconds = if text == "off" {
                    0
                } else {
                    text.parse::<u16>().map_err(|_| {
                        format!("persistent-keepalive: {text:?} is not 0-65535 or off")
                    })?
                };
                persistent_keepalive = Some(seconds);
            }
            "preshared-key" => preshared_key = Some(read_key_file(Path::new(value()?))?),
            "cipher" => cipher = Some(value()?.to_owned()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if remove {
        return Ok(Request::RemovePeer {
            public_key: public_key.to_owned(),
        });
    }
    Ok(Request::SetPeer {
        public_key: public_key.to_owned(),
        preshared_key,
        allowed_ips,
        endpoint,
        persistent_keepalive,
        cipher,
    })
}

fn resolve(text: &str) -> Result<String, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("endpoint {text:?}: {e}"))?
        .next()
        .map(|addr| addr.to_string())
        .ok_or_else(|| format!("endpoint {text:?} has no addresses"))
}

/// Reads a key file as `wg set ... preshared-key <file>` does (`/dev/stdin` works too).
fn read_key_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|e| format!("preshared-key: cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn wg_set_peer_syntax_becomes_a_request() {
        let request = parse(&words(
            "peer KEY allowed-ips 10.0.0.2/32,fd00::2/128 endpoint 192.0.2.1:51820 \
             persistent-keepalive 25 cipher aes256gcm",
        ))
        .unwrap();
        assert_eq!(
            request,
            Request::SetPeer {
                public_key: "KEY".into(),
                preshared_key: None,
                allowed_ips: vec!["10.0.0.2/32".into(), "fd00::2/128".into()],
                endpoint: Some("192.0.2.1:51820".into()),
                persistent_keepalive: Some(25),
                cipher: Some("aes256gcm".into()),
            }
        );
        assert_eq!(
            parse(&words("peer KEY remove")).unwrap(),
            Request::RemovePeer {
                public_key: "KEY".into()
            }
        );
        assert!(matches!(
            parse(&words("peer KEY persistent-keepalive off")).unwrap(),
            Request::SetPeer {
                persistent_keepalive: Some(0),
                ..
            }
        ));
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(
            parse(&words("KEY"))
                .unwrap_err()
                .contains("peer <public key>")
        );
        assert!(
            parse(&words("peer KEY endpoint"))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse(&words("peer KEY colour blue"))
                .unwrap_err()
                .contains("unknown option")
        );
        assert!(parse(&words("peer KEY persistent-keepalive soon")).is_err());
        assert!(
            parse(&words("peer KEY preshared-key /nonexistent/psk"))
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
