//! keepalived's VRRP notify FIFO, read in order.
//!
//! keepalived runs each `notify_master`/`notify_backup` script as its own process, so two
//! transitions a few hundred microseconds apart (both nodes pass through MASTER for a moment
//! at start) can reach the gateway in the wrong order: keepalived ends as BACKUP while
//! warpline ends active. Seen in CI: "demoted" logged 2 ms before "promoted", and both
//! nodes stayed active. The notify FIFO (`vrrp_notify_fifo`) carries the same transitions as
//! one ordered stream of lines, `INSTANCE "warpline_wl0" MASTER 150`; [`RoleFollower`] turns
//! them into the role the gateway should have. Sans-IO: the reader lives in the CLI.

/// The role keepalived's last transition asks the gateway for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantedRole {
    /// keepalived is MASTER: `warpline ha promote`.
    Active,
    /// BACKUP, FAULT, STOP or DELETED: `warpline ha demote`.
    Standby,
}

/// A FIFO line that is not a keepalived notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FifoLineError {
    /// Not `TYPE "NAME" STATE PRIORITY`.
    #[error("not a keepalived notify line (TYPE \"NAME\" STATE PRIORITY): {0:?}")]
    Malformed(String),
    /// A state keepalived 2.x does not send.
    #[error("unknown keepalived state {state:?} for instance {instance:?}")]
    UnknownState {
        /// The instance the line names.
        instance: String,
        /// The state field.
        state: String,
    },
}

/// Lines longer than this are not keepalived's (its instance names are short); the reader
/// drops them rather than buffering without bound.
pub const MAX_FIFO_LINE: usize = 1024;

/// Follows one VRRP instance's transitions and coalesces them: only the latest one matters,
/// so a MASTER quickly followed by BACKUP applies a single demote.
#[derive(Debug, Clone)]
pub struct RoleFollower {
    instance: String,
    pending: Option<WantedRole>,
}

impl RoleFollower {
    /// Follows the instance keepalived names `instance` (the template's `warpline_<iface>`).
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            pending: None,
        }
    }

    /// The instance name the template gives interface `interface`.
    pub fn instance_for(interface: &str) -> String {
        format!("warpline_{interface}")
    }

    /// Takes one FIFO line (without its newline). Lines about other instances, sync groups
    /// and priority changes change nothing.
    pub fn feed(&mut self, line: &str) -> Result<(), FifoLineError> {
        let malformed = || FifoLineError::Malformed(line.chars().take(80).collect());
        let mut fields = line.split_ascii_whitespace();
        let (Some(kind), Some(name), Some(state), Some(priority), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(malformed());
        };
        let name = name
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .ok_or_else(malformed)?;
        if priority.parse::<u16>().is_err() || !matches!(kind, "INSTANCE" | "GROUP") {
            return Err(malformed());
        }
        let wanted = match state {
            "MASTER" => Some(WantedRole::Active),
            "BACKUP" | "FAULT" | "STOP" | "DELETED" => Some(WantedRole::Standby),
            // Still master (a lower-priority advert was seen), or only the priority moved.
            "MASTER_RX_LOWER_PRI" | "MASTER_PRIORITY" | "BACKUP_PRIORITY" => None,
            _ => {
                return Err(FifoLineError::UnknownState {
                    instance: name.to_owned(),
                    state: state.chars().take(40).collect(),
                });
            }
        };
        if kind == "INSTANCE"
            && name == self.instance
            && let Some(wanted) = wanted
        {
            self.pending = Some(wanted);
        }
        Ok(())
    }

    /// The role still to apply, if any.
    pub fn pending(&self) -> Option<WantedRole> {
        self.pending
    }

    /// The gateway took `role`; a newer transition fed since stays pending.
    pub fn applied(&mut self, role: WantedRole) {
        if self.pending == Some(role) {
            self.pending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower() -> RoleFollower {
        RoleFollower::new(RoleFollower::instance_for("wl0"))
    }

    #[test]
    fn master_asks_for_active_and_the_other_states_for_standby() {
        let mut follow = follower();
        follow
            .feed(r#"INSTANCE "warpline_wl0" MASTER 150"#)
            .unwrap();
        assert_eq!(follow.pending(), Some(WantedRole::Active));
        for state in ["BACKUP", "FAULT", "STOP", "DELETED"] {
            follow.applied(WantedRole::Standby);
            follow
                .feed(r#"INSTANCE "warpline_wl0" MASTER 150"#)
                .unwrap();
            follow
                .feed(&format!(r#"INSTANCE "warpline_wl0" {state} 150"#))
                .unwrap();
            assert_eq!(follow.pending(), Some(WantedRole::Standby), "{state}");
        }
    }

    #[test]
    fn the_latest_transition_wins_and_applying_clears_only_it() {
        let mut follow = follower();
        follow
            .feed(r#"INSTANCE "warpline_wl0" BACKUP 100"#)
            .unwrap();
        follow
            .feed(r#"INSTANCE "warpline_wl0" MASTER 100"#)
            .unwrap();
        follow
            .feed(r#"INSTANCE "warpline_wl0" BACKUP 100"#)
            .unwrap();
        assert_eq!(follow.pending(), Some(WantedRole::Standby));
        // A promote that was in flight when BACKUP arrived does not clear the demote.
        follow.applied(WantedRole::Active);
        assert_eq!(follow.pending(), Some(WantedRole::Standby));
        follow.applied(WantedRole::Standby);
        assert_eq!(follow.pending(), None);
    }

    #[test]
    fn other_instances_groups_and_priority_changes_change_nothing() {
        let mut follow = follower();
        for line in [
            r#"INSTANCE "warpline_wl1" MASTER 150"#,
            r#"INSTANCE "warpline_wl01" MASTER 150"#,
            r#"GROUP "warpline_wl0" MASTER 0"#,
            r#"INSTANCE "warpline_wl0" MASTER_RX_LOWER_PRI 150"#,
            r#"INSTANCE "warpline_wl0" MASTER_PRIORITY 120"#,
            r#"INSTANCE "warpline_wl0" BACKUP_PRIORITY 90"#,
        ] {
            follow.feed(line).unwrap();
            assert_eq!(follow.pending(), None, "{line}");
        }
    }

    #[test]
    fn junk_lines_are_errors_and_keep_the_pending_role() {
        let mut follow = follower();
        follow
            .feed(r#"INSTANCE "warpline_wl0" MASTER 150"#)
            .unwrap();
        for line in [
            "",
            "MASTER",
            r#"INSTANCE warpline_wl0 BACKUP 150"#,
            r#"INSTANCE "warpline_wl0 BACKUP 150"#,
            r#"INSTANCE "warpline_wl0" BACKUP"#,
            r#"INSTANCE "warpline_wl0" BACKUP 150 extra"#,
            r#"INSTANCE "warpline_wl0" BACKUP high"#,
            r#"VS "warpline_wl0" BACKUP 150"#,
        ] {
            assert!(
                matches!(follow.feed(line), Err(FifoLineError::Malformed(_))),
                "{line:?}"
            );
        }
        assert_eq!(
            follow.feed(r#"INSTANCE "warpline_wl0" SLEEPING 150"#),
            Err(FifoLineError::UnknownState {
                instance: "warpline_wl0".into(),
                state: "SLEEPING".into()
            })
        );
        assert_eq!(follow.pending(), Some(WantedRole::Active));
    }
}
