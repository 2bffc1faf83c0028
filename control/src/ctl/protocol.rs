//! The control socket's wire format: one JSON object per line, one request and one response
//! per connection.
//!
//! JSON because the same objects are what `warpline show --json` prints and what scripts and
//! monitoring send, and because `serde`'s derived decoders give exact, field-naming error messages
//! for malformed input at no hand-written parsing cost. Every object carries a `"type"` tag
//! (`{"type":"show"}`, `{"type":"remove_peer","public_key":"..."}`); unknown fields are refused
//! rather than ignored, so a typo in a hand-written request is an error instead of a silent
//! no-op.
//!
//! Decoding never panics: whatever arrives becomes a [`Request`] or a [`ProtocolError`], which
//! turns into a [`Response::Error`] with a message a person can act on. Requests are also
//! checked here (keys are 32-byte base64, prefixes and endpoints parse, the cipher exists), so
//! the daemon's handler sees only well-formed values and every front end gets the same messages.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::model::{HaSnapshot, InterfaceSnapshot};
use crate::keys::{PresharedKey, PublicKey};

/// The longest request line accepted, newline included: 64 KiB. Longer ones are refused with an
/// error response and the connection is closed. A `set_peer` with a few thousand allowed IPs
/// still fits.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The longest response line a client accepts: 64 MiB, room for a `show` of ~100k peers.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// What a client asks the daemon to do.
///
/// `Debug` output never shows a preshared key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Report the interface: answered with [`Response::Show`].
    Show,
    /// Bring the interface down and stop the daemon: answered with [`Response::Ok`] before the
    /// daemon goes.
    Down,
    /// Add a peer, or change an existing one, without a restart (like `wg set wg0 peer ...`).
    ///
    /// For an existing peer, `allowed_ips` replaces its list and every `None` leaves that
    /// setting as it is; for a new peer a `None` means the default (no preshared key, no
    /// endpoint until the peer's first handshake, no keepalive, ChaCha20-Poly1305).
    SetPeer {
        /// The peer's public key, base64.
        public_key: String,
        /// A preshared key, base64 (an all-zero key means none, as in `wg`).
        #[serde(default)]
        preshared_key: Option<String>,
        /// Allowed IPs, `ADDRESS[/LENGTH]`.
        #[serde(default)]
        allowed_ips: Vec<String>,
        /// The endpoint as a numeric `IP:PORT` (`[IPv6]:PORT`); the client resolves names.
        #[serde(default)]
        endpoint: Option<String>,
        /// Persistent keepalive interval in seconds; `Some(0)` turns it off.
        #[serde(default)]
        persistent_keepalive: Option<u16>,
        /// The AEAD suite's config name (`chacha20poly1305`, `aes256gcm`).
        #[serde(default)]
        cipher: Option<String>,
    },
    /// Remove a peer and drop its sessions.
    RemovePeer {
        /// The peer's public key, base64.
        public_key: String,
    },
    /// Become the active node of the HA cluster and take over every synced session
    /// (keepalived's MASTER transition): answered with [`Response::Ha`].
    HaPromote,
    /// Become a standby (keepalived's BACKUP, FAULT or STOP transition): answered with
    /// [`Response::Ha`].
    HaDemote,
    /// Report the node's HA state: answered with [`Response::Ha`].
    HaStatus,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Show => f.write_str("Show"),
            Self::Down => f.write_str("Down"),
            Self::SetPeer {
                public_key,
                preshared_key,
                allowed_ips,
                endpoint,
                persistent_keepalive,
                cipher,
            } => f
                .debug_struct("SetPeer")
                .field("public_key", public_key)
                .field("preshared_key", &preshared_key.as_ref().map(|_| "(hidden)"))
                .field("allowed_ips", allowed_ips)
                .field("endpoint", endpoint)
                .field("persistent_keepalive", persistent_keepalive)
                .field("cipher", cipher)
                .finish(),
            Self::RemovePeer { public_key } => f
                .debug_struct("RemovePeer")
                .field("public_key", public_key)
                .finish(),
            Self::HaPromote => f.write_str("HaPromote"),
            Self::HaDemote => f.write_str("HaDemote"),
            Self::HaStatus => f.write_str("HaStatus"),
        }
    }
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The answer to [`Request::Show`].
    Show(InterfaceSnapshot),
    /// The answer to the `Ha*` requests: the state after the request.
    Ha(HaSnapshot),
    /// The request was carried out.
    Ok,
    /// The request was refused or failed; nothing was changed.
    Error {
        /// What went wrong, as a sentence for the user.
        message: String,
    },
}

impl Response {
    /// A [`Response::Error`] with this message.
    pub fn error(message: impl Into<String>) -> Self {
        Self::Error {
            message: message.into(),
        }
    }
}

/// Why a request (or, on the client side, a response) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The line was longer than the limit.
    #[error("request too large: the limit is {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Nothing but whitespace arrived.
    #[error("empty request: send one JSON object on one line")]
    Empty,
    /// The line is not UTF-8.
    #[error("malformed request: not UTF-8 text")]
    NotUtf8,
    /// Not JSON, or not an object of a known type with the right fields.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Well-formed, but a value is unusable.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl From<ProtocolError> for Response {
    fn from(error: ProtocolError) -> Self {
        Response::error(error.to_string())
    }
}

/// Serializes one message as a JSON line, newline included.
pub fn encode_line<T: Serialize>(message: &T) -> String {
    // Every message type here is a tree of strings, integers, booleans, options and lists, for
    // which serde_json cannot fail; the fallback only keeps this total.
    let mut line = serde_json::to_string(message).unwrap_or_else(|error| {
        serde_json::json!({"type": "error", "message": format!("cannot encode: {error}")})
            .to_string()
    });
    line.push('\n');
    line
}

/// Decodes and checks one request line (a trailing `\n` or `\r\n` is allowed).
pub fn decode_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(ProtocolError::TooLarge {
            limit: MAX_REQUEST_BYTES,
        });
    }
    let value: serde_json::Value = decode_json(line)?;
    // serde's `deny_unknown_fields` does not reach the field-less variants of a tagged enum.
    if let Some(object) = value.as_object() {
        let tag = object.get("type").and_then(serde_json::Value::as_str);
        if matches!(tag, Some("show" | "down"))
            && let Some(field) = object.keys().find(|key| *key != "type")
        {
            return Err(ProtocolError::Malformed(format!(
                "unknown field `{field}`: a {} request has no fields",
                tag.unwrap_or_default()
            )));
        }
    }
    let request: Request = serde_json::from_value(value)
        .map_err(|error| ProtocolError::Malformed(error.to_string()))?;
    request.validate()?;
    Ok(request)
}

/// Decodes one response line (a trailing `\n` or `\r\n` is allowed).
pub fn decode_response(line: &[u8]) -> Result<Response, ProtocolError> {
    decode_json(line)
}

fn decode_json<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, ProtocolError> {
    let text = std::str::from_utf8(line).map_err(|_| ProtocolError::NotUtf8)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ProtocolError::Empty);
    }
    serde_json::from_str(text).map_err(|error| ProtocolError::Malformed(error.to_string()))
}

impl Request {
    /// Checks the values a request carries; [`decode_request`] already does.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            Self::Show | Self::Down | Self::HaPromote | Self::HaDemote | Self::HaStatus => Ok(()),
            Self::RemovePeer { public_key } => check_public_key(public_key),
            Self::SetPeer {
                public_key,
                preshared_key,
                allowed_ips,
                endpoint,
                persistent_keepalive: _,
                cipher,
            } => {
                check_public_key(public_key)?;
                if let Some(psk) = preshared_key {
                    // The parse error never quotes the key.
                    PresharedKey::from_base64(psk).map_err(|error| ProtocolError::Invalid {
                        field: "preshared_key",
                        message: error.to_string(),
                    })?;
                }
                for prefix in allowed_ips {
                    check_prefix(prefix).map_err(|message| ProtocolError::Invalid {
                        field: "allowed_ips",
                        message,
                    })?;
                }
                if let Some(endpoint) = endpoint {
                    endpoint
                        .parse::<SocketAddr>()
                        .map_err(|_| ProtocolError::Invalid {
                            field: "endpoint",
                            message: format!(
                                "{endpoint:?} is not IP:PORT or [IPv6]:PORT (resolve names before sending)"
                            ),
                        })?;
                }
                if let Some(cipher) = cipher {
                    crate::config::parse_cipher_suite(cipher).map_err(|error| {
                        ProtocolError::Invalid {
                            field: "cipher",
                            message: error.to_string(),
                        }
                    })?;
                }
                Ok(())
            }
        }
    }
}

fn check_public_key(text: &str) -> Result<(), ProtocolError> {
    PublicKey::from_base64(text)
        .map(drop)
        .map_err(|error| ProtocolError::Invalid {
            field: "public_key",
            message: error.to_string(),
        })
}

/// `ADDRESS[/LENGTH]` with the length at most the address width.
fn check_prefix(text: &str) -> Result<(), String> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an IP prefix (expected ADDRESS/LENGTH)"))?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    if let Some(len) = len {
        let len_ok = len.bytes().all(|b| b.is_ascii_digit())
            && len.parse::<u8>().is_ok_and(|len| len <= width);
        if !len_ok {
            return Err(format!(
                "{text:?} has an impossible prefix length (at most {width})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

    #[test]
    fn requests_round_trip() {
        let requests = [
            Request::Show,
            Request::Down,
            Request::RemovePeer {
                public_key: KEY.into(),
            },
            Request::SetPeer {
                public_key: KEY.into(),
                preshared_key: Some(KEY.into()),
                allowed_ips: vec!["10.0.0.2/32".into(), "fd00::/64".into(), "10.1.0.1".into()],
                endpoint: Some("[2001:db8::1]:51820".into()),
                persistent_keepalive: Some(25),
                cipher: Some("aes256gcm".into()),
            },
        ];
        for request in requests {
            let line = encode_line(&request);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(decode_request(line.as_bytes()), Ok(request));
        }
    }

    #[test]
    fn wire_form_is_tagged() {
        assert_eq!(encode_line(&Request::Show), "{\"type\":\"show\"}\n");
        assert_eq!(encode_line(&Response::Ok), "{\"type\":\"ok\"}\n");
        assert_eq!(
            decode_request(b"{\"type\":\"set_peer\",\"public_key\":\"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\"}\r\n"),
            Ok(Request::SetPeer {
                public_key: KEY.into(),
                preshared_key: None,
                allowed_ips: vec![],
                endpoint: None,
                persistent_keepalive: None,
                cipher: None,
            })
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: [&[u8]; 10] = [
            b"",
            b"\n",
            b"{",
            b"null",
            b"[1,2]",
            b"{\"type\":\"reboot\"}",
            b"{\"type\":\"show\",\"extra\":1}",
            b"{\"type\":\"remove_peer\"}",
            b"{\"type\":\"set_peer\",\"public_key\":\"x\",\"persistent_keepalive\":70000}",
            b"\xff\xfe",
        ];
        for case in cases {
            let error = decode_request(case).unwrap_err();
            let response = Response::from(error);
            assert!(matches!(response, Response::Error { .. }), "{case:?}");
        }
        let too_big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(
            decode_request(&too_big),
            Err(ProtocolError::TooLarge {
                limit: MAX_REQUEST_BYTES
            })
        );
    }

    #[test]
    fn values_are_checked() {
        let set = |f: &dyn Fn(&mut Request)| {
            let mut request = Request::SetPeer {
                public_key: KEY.into(),
                preshared_key: None,
                allowed_ips: vec![],
                endpoint: None,
                persistent_keepalive: None,
                cipher: None,
            };
            f(&mut request);
            request.validate()
        };
        let field_of = |result: Result<(), ProtocolError>| match result {
            Err(ProtocolError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert_eq!(set(&|_| {}), Ok(()));
        assert_eq!(
            field_of(set(&|r| {
                if let Request::SetPeer { public_key, .. } = r {
                    *public_key = "AAAA".into();
                }
            })),
            "public_key"
        );
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "host/8",
            "",
        ] {
            assert_eq!(
                field_of(set(&|r| {
                    if let Request::SetPeer { allowed_ips, .. } = r {
                        *allowed_ips = vec![bad.into()];
                    }
                })),
                "allowed_ips",
                "{bad}"
            );
        }
        assert_eq!(
            field_of(set(&|r| {
                if let Request::SetPeer { endpoint, .. } = r {
                    *endpoint = Some("vpn.example.com:51820".into());
                }
            })),
            "endpoint"
        );
        assert_eq!(
            field_of(set(&|r| {
                if let Request::SetPeer { cipher, .. } = r {
                    *cipher = Some("rot13".into());
                }
            })),
            "cipher"
        );
    }

    #[test]
    fn preshared_keys_stay_hidden() {
        let secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MDA=";
        let request = Request::SetPeer {
            public_key: KEY.into(),
            preshared_key: Some(secret.into()),
            allowed_ips: vec![],
            endpoint: None,
            persistent_keepalive: None,
            cipher: None,
        };
        assert!(!format!("{request:?}").contains(secret));
        let mut bad = request.clone();
        if let Request::SetPeer { preshared_key, .. } = &mut bad {
            *preshared_key = Some(format!("{secret}x"));
        }
        assert!(!bad.validate().unwrap_err().to_string().contains(secret));
    }
}
