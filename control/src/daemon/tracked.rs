//! `HaTrackInterface` (builtin mode): the links an active node needs, polled over netlink.
//! A link that is down, has lost carrier or has vanished faults the node; the election
//! (sans-IO) decides what that means.

use std::time::Duration;

use warpline_dataplane::lab::Netlink;
use warpline_dataplane::time::Time;

use super::DaemonError;

/// How often the links are checked: well inside the partner's 600 ms dead time, and a
/// netlink request is a few microseconds.
const CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The tracked links and what was last seen of them.
#[derive(Debug)]
pub struct TrackedInterfaces {
    names: Vec<String>,
    netlink: Option<Netlink>,
    next_check: Time,
    /// The tracked links down at the last check.
    down: Vec<String>,
}

impl TrackedInterfaces {
    /// Tracks `names`; one that does not exist at start-up is an error naming it (a typo
    /// would otherwise fault the node for good).
    pub fn new(names: &[String]) -> Result<Self, DaemonError> {
        let fail = |reason: String| DaemonError::DataPlane {
            what: "HaTrackInterface",
            reason,
        };
        let netlink = if names.is_empty() {
            None
        } else {
            let mut netlink = Netlink::open().map_err(|e| fail(format!("netlink: {e}")))?;
            for name in names {
                netlink
                    .link_by_name(name)
                    .map_err(|e| fail(format!("no interface {name}: {e}")))?;
            }
            Some(netlink)
        };
        Ok(Self {
            names: names.to_vec(),
            netlink,
            next_check: Time::ZERO,
            down: Vec::new(),
        })
    }

    /// The tracked links down at the last check.
    pub fn down(&self) -> &[String] {
        &self.down
    }

    /// At `now`, when a check is due and its outcome changed: the tracked links that are
    /// down (empty: all are up again).
    pub fn poll(&mut self, now: Time) -> Option<&[String]> {
        let netlink = self.netlink.as_mut()?;
        if now < self.next_check {
            return None;
        }
        self.next_check = now + CHECK_INTERVAL;
        let down: Vec<String> = (self.names.iter())
            .filter(|name| {
                !netlink
                    .link_by_name(name)
                    .is_ok_and(|link| link.is_up_with_carrier())
            })
            .cloned()
            .collect();
        if down == self.down {
            return None;
        }
        self.down = down;
        Some(&self.down)
    }
}
