//! wg-quick's PreUp/PostUp/PreDown/PostDown hooks: shell commands run around bringing the
//! interface up and down, with `%i` replaced by the interface name, as wg-quick runs them.

use std::process::Command;

use super::DaemonError;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the interface exists; failure aborts `up`.
    PreUp,
    /// After the interface is configured; failure aborts `up`.
    PostUp,
    /// Before the interface is removed; failure is logged.
    PreDown,
    /// After the interface is removed; failure is logged.
    PostDown,
}

impl Stage {
    fn key(self) -> &'static str {
        match self {
            Stage::PreUp => "PreUp",
            Stage::PostUp => "PostUp",
            Stage::PreDown => "PreDown",
            Stage::PostDown => "PostDown",
        }
    }
}

/// Runs `commands` in order with `sh -c`, `%i` replaced by `interface`. Up hooks stop at
/// the first failure and return it; down hooks log failures and go on.
pub fn run(stage: Stage, commands: &[String], interface: &str) -> Result<(), DaemonError> {
    for command in commands {
        let expanded = command.replace("%i", interface);
        tracing::info!(hook = stage.key(), command = %expanded, "running hook");
        let outcome = Command::new("sh").arg("-c").arg(&expanded).status();
        let failure = match outcome {
            Ok(status) if status.success() => continue,
            Ok(status) => format!("exited with {status}"),
            Err(e) => format!("could not start sh: {e}"),
        };
        match stage {
            Stage::PreUp | Stage::PostUp => {
                return Err(DaemonError::Hook {
                    key: stage.key(),
                    command: expanded,
                    failure,
                });
            }
            Stage::PreDown | Stage::PostDown => {
                tracing::warn!(hook = stage.key(), command = %expanded, "hook failed: {failure}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_i_is_the_interface_and_up_failures_abort() {
        let dir = std::env::temp_dir().join(format!("wl-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("marker");
        let write = format!("echo %i > {}", marker.display());
        run(Stage::PostUp, &[write], "wl7").unwrap();
        assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "wl7");
        let error = run(
            Stage::PreUp,
            &["exit 3".into(), "touch never".into()],
            "wl7",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("PreUp") && error.contains("exit 3"),
            "{error}"
        );
        run(Stage::PostDown, &["exit 1".into()], "wl7").expect("down hooks only log");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
