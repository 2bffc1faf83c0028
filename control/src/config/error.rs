//! What can be wrong with a config file, phrased for the person who has to fix it.
//!
//! Secrets never reach a message: values of `PrivateKey` and `PresharedKey` are not echoed,
//! nor are malformed lines, nor key or section names that do not look like names (a pasted
//! base64 key on a line of its own would otherwise be echoed as an "unknown key").

use std::fmt;
use std::io;

use crate::keys::PublicKey;

/// A section of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// `[Interface]`: the local end.
    Interface,
    /// `[Peer]`: one remote end.
    Peer,
}

impl Section {
    /// The keys valid in this section, spelled as documented (matching is case-insensitive).
    pub const fn valid_keys(self) -> &'static [&'static str] {
        match self {
            Self::Interface => &[
                "PrivateKey",
                "ListenPort",
                "Address",
                "MTU",
                "DNS",
                "Table",
                "FwMark",
                "PreUp",
                "PostUp",
                "PreDown",
                "PostDown",
                "SaveConfig",
                "MetricsAddress",
                "TestTimerScale",
                "Attach",
                "XdpMode",
                "Inner",
                "Spread",
                "Workers",
                "Cores",
                "Queues",
                "ZeroCopy",
                "FrameSize",
                "RingSize",
                "BusyPoll",
                "HaMode",
                "HaNodeId",
                "HaKey",
                "HaListen",
                "HaPeer",
                "HaCheckpointMs",
                "HaVirtualIp",
                "HaPriority",
                "HaPreempt",
                "HaTrackInterface",
                "HaPool",
            ],
            Self::Peer => &[
                "PublicKey",
                "PresharedKey",
                "AllowedIPs",
                "Endpoint",
                "PersistentKeepalive",
                "Cipher",
                "EndpointPolicy",
                "FailoverAfter",
                "FailBack",
                "EndpointPort",
            ],
        }
    }

    /// The documented spelling of `key` if it is valid in this section.
    pub(crate) fn canonical_key(self, key: &str) -> Option<&'static str> {
        self.valid_keys()
            .iter()
            .copied()
            .find(|valid| valid.eq_ignore_ascii_case(key))
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Interface => "[Interface]",
            Self::Peer => "[Peer]",
        })
    }
}

/// A name from the file (key or section) as it may be shown in a message: echoed when it looks
/// like an identifier, withheld otherwise because it may be secret material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownName(Option<String>);

impl ShownName {
    /// Longest name echoed. Base64 keys are 43+ characters, so they never qualify.
    const MAX_LEN: usize = 32;

    pub(crate) fn new(name: &str) -> Self {
        let plausible = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' '));
        Self(plausible.then(|| name.to_owned()))
    }

    /// The name, if it is shown.
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Display for ShownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(name) => write!(f, "{name:?}"),
            None => f.write_str("(not shown: it does not look like a name)"),
        }
    }
}

/// A config file that could not be read or is not a valid configuration.
///
/// Displays as `FILE:LINE: what is wrong`, or `FILE: what is wrong` for problems that belong
/// to no single line.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}{}: {kind}", line_suffix(*.line))]
pub struct ConfigError {
    source_name: String,
    line: Option<usize>,
    // Not a `#[source]`: the message already includes it, and error reporters that walk the
    // source chain would print it twice.
    kind: ConfigErrorKind,
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|n| format!(":{n}")).unwrap_or_default()
}

impl ConfigError {
    pub(crate) fn new(source_name: &str, line: Option<usize>, kind: ConfigErrorKind) -> Self {
        Self {
            source_name: source_name.to_owned(),
            line,
            kind,
        }
    }

    /// The file name (or other source name) the error is about.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The 1-based line number, when the problem is on one line.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// What is wrong.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }
}

/// What is wrong with a config file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(io::Error),
    /// The file is too large to be a configuration (guards against `/dev/zero` and the like).
    #[error("larger than {limit} bytes, so not a WireGuard config")]
    TooLarge {
        /// The size limit in bytes.
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// A line that is neither a section header, a `Key = Value` pair, a comment nor blank.
    /// The line is not echoed: it might be a mistyped `PrivateKey` line.
    #[error("expected \"Key = Value\", a [Section] header, or a # comment")]
    MalformedLine,
    /// A `[Name]` header other than `[Interface]` or `[Peer]`.
    #[error("unknown section [{}]; valid sections are [Interface] and [Peer]", .name.as_str().unwrap_or("(not shown)"))]
    UnknownSection {
        /// The section name as written, when shown.
        name: ShownName,
    },
    /// A second `[Interface]` section.
    #[error("[Interface] appears again (first at line {first_line}); a config has one")]
    DuplicateInterface {
        /// Where the first `[Interface]` header is.
        first_line: usize,
    },
    /// A `Key = Value` line before the first section header.
    #[error("key {key} is outside any section; put it under [Interface] or [Peer]")]
    KeyOutsideSection {
        /// The key as written, when shown.
        key: ShownName,
    },
    /// A key the section does not have.
    #[error("{section} unknown key {key}; valid keys are {}", .section.valid_keys().join(", "))]
    UnknownKey {
        /// The section the key appeared in.
        section: Section,
        /// The key as written, when shown.
        key: ShownName,
    },
    /// A single-valued key set twice in one section.
    #[error("{section} {key}: set twice (first at line {first_line}); it takes one value")]
    DuplicateKey {
        /// The section.
        section: Section,
        /// The key, in its documented spelling.
        key: &'static str,
        /// Where the first value is.
        first_line: usize,
    },
    /// A value that does not parse. The problem text quotes the value unless it is secret.
    #[error("{section} {key}: {problem}")]
    InvalidValue {
        /// The section.
        section: Section,
        /// The key, in its documented spelling.
        key: &'static str,
        /// What is wrong with the value.
        problem: String,
    },
    /// A required key is missing (reported at the section's header line).
    #[error("{section} {key}: missing; every {section} section needs one")]
    MissingKey {
        /// The section.
        section: Section,
        /// The key, in its documented spelling.
        key: &'static str,
    },
    /// There is no `[Interface]` section.
    #[error("no [Interface] section; a config needs one with a PrivateKey")]
    MissingInterface,
    /// Two `[Peer]` sections with the same public key.
    #[error("[Peer] PublicKey: peer {public_key} is already defined at line {first_line}")]
    DuplicatePeer {
        /// The repeated key.
        public_key: PublicKey,
        /// Where the first peer's `PublicKey` is.
        first_line: usize,
    },
    /// A peer whose public key is the interface's own.
    #[error(
        "[Peer] PublicKey: {public_key} is this interface's own public key (derived from its \
         PrivateKey); a peer must be the other end of the tunnel"
    )]
    PeerIsSelf {
        /// The interface's public key.
        public_key: PublicKey,
    },
}
