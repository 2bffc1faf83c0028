//! keepalived's VRRP notify FIFO, read in order.
//!
//! keepalived runs each `notify_master`/`notify_backup` script as its own process, so two
//! transitions a few hundred microseconds apart (both nodes pass through MASTER for a moment
//! at start) can reach the gateway in the wrong order: keepalived ends as BACKUP while
//! warpline ends active. Seen in CI: "demoted" logged 2 ms before "promoted", and both
//! nodes stayed active. The notify FIFO (`vrrp_notify_fifo`) carries the same transitions as
//! one ordered stream of lines, `INSTANCE "warpline_wl0" MASTER 150`; [`wanted_role`] turns
//! each into the role the gateway should have. Sans-IO: the reader lives in the CLI.

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

/// The instance name the template gives interface `interface`.
pub fn instance_for(interface: &str) -> String {
    format!("warpline_{interface}")
}

/// The role one FIFO line (without its newline) asks `instance` for: `None` for lines about
/// other instances, sync groups and priority changes. The reader keeps only the latest
/// role it was asked for, so a MASTER quickly followed by BACKUP applies a single demote.
pub fn wanted_role(line: &str, instance: &str) -> Result<Option<WantedRole>, FifoLineError> {
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
    Ok(wanted.filter(|_| kind == "INSTANCE" && name == instance))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(line: &str) -> Result<Option<WantedRole>, FifoLineError> {
        wanted_role(line, &instance_for("wl0"))
    }

    #[test]
    fn master_asks_for_active_and_the_other_states_for_standby() {
        assert_eq!(
            wanted(r#"INSTANCE "warpline_wl0" MASTER 150"#),
            Ok(Some(WantedRole::Active))
        );
        for state in ["BACKUP", "FAULT", "STOP", "DELETED"] {
            assert_eq!(
                wanted(&format!(r#"INSTANCE "warpline_wl0" {state} 150"#)),
                Ok(Some(WantedRole::Standby)),
                "{state}"
            );
        }
    }

    #[test]
    fn other_instances_groups_and_priority_changes_change_nothing() {
        for line in [
            r#"INSTANCE "warpline_wl1" MASTER 150"#,
            r#"INSTANCE "warpline_wl01" MASTER 150"#,
            r#"GROUP "warpline_wl0" MASTER 0"#,
            r#"INSTANCE "warpline_wl0" MASTER_RX_LOWER_PRI 150"#,
            r#"INSTANCE "warpline_wl0" MASTER_PRIORITY 120"#,
            r#"INSTANCE "warpline_wl0" BACKUP_PRIORITY 90"#,
        ] {
            assert_eq!(wanted(line), Ok(None), "{line}");
        }
    }

    #[test]
    fn junk_lines_are_errors() {
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
                matches!(wanted(line), Err(FifoLineError::Malformed(_))),
                "{line:?}"
            );
        }
        assert_eq!(
            wanted(r#"INSTANCE "warpline_wl0" SLEEPING 150"#),
            Err(FifoLineError::UnknownState {
                instance: "warpline_wl0".into(),
                state: "SLEEPING".into()
            })
        );
    }
}
