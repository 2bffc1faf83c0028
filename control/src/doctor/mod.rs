//! `warpline doctor`: checks that the host and each `Attach` NIC can run the XDP data plane
//! well, says for each check what was found, why it matters and the command that fixes it,
//! and with `--fix` applies the fixes that are safe to apply on a running host.
//!
//! The parts: [`facts`] gathers (syscalls, ioctls, `/proc`, `/sys`; nothing is shelled out,
//! the target machines have no ethtool or iproute2), [`checks`] judges (pure functions of
//! the facts, unit-tested with made-up hosts), [`render`] prints, [`fix`] applies.
//! docs/doctor.md explains every check.

pub mod checks;
pub mod drivers;
pub mod facts;
pub mod fix;
pub mod render;
pub mod sys;

use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use crate::config::{Config, ConfigError};

pub use self::fix::FixAction;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Status {
    /// Fine.
    #[serde(rename = "OK")]
    Ok,
    /// Works, but costs performance or robustness.
    #[serde(rename = "WARN")]
    Warn,
    /// The data plane will not start, or will lose traffic.
    #[serde(rename = "FAIL")]
    Fail,
}

impl Status {
    /// `OK`, `WARN` or `FAIL`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked: `host`, `config`, `cpu`, or a NIC's name.
    pub scope: String,
    /// Which check, a stable id (see docs/doctor.md).
    pub check: &'static str,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub found: String,
    /// Why it matters.
    pub why: String,
    /// How to fix it, when it is not OK (and sometimes a hint when it is).
    pub fix: Option<Remedy>,
}

/// How to fix a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remedy {
    /// The command (or config change) an operator runs.
    pub command: String,
    /// What `--fix` does instead of the command, when the fix is safe to apply itself.
    pub action: Option<FixAction>,
}

impl Finding {
    fn new(scope: &str, check: &'static str, status: Status, found: String, why: &str) -> Self {
        Self {
            scope: scope.to_owned(),
            check,
            status,
            found,
            why: why.to_owned(),
            fix: None,
        }
    }

    /// With a fix only an operator can apply.
    fn manual_fix(mut self, command: impl Into<String>) -> Self {
        self.fix = Some(Remedy {
            command: command.into(),
            action: None,
        });
        self
    }

    /// With a fix `--fix` applies.
    fn auto_fix(mut self, command: impl Into<String>, action: FixAction) -> Self {
        self.fix = Some(Remedy {
            command: command.into(),
            action: Some(action),
        });
        self
    }

    /// The action `--fix` would apply, if this finding is not OK and has one.
    pub fn pending_action(&self) -> Option<&FixAction> {
        if self.status == Status::Ok {
            return None;
        }
        self.fix.as_ref()?.action.as_ref()
    }
}

/// Counts of findings by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// OK findings.
    pub ok: usize,
    /// WARN findings.
    pub warn: usize,
    /// FAIL findings.
    pub fail: usize,
}

impl Summary {
    /// Counts `findings`.
    pub fn of(findings: &[Finding]) -> Self {
        let count = |status| findings.iter().filter(|f| f.status == status).count();
        Self {
            ok: count(Status::Ok),
            warn: count(Status::Warn),
            fail: count(Status::Fail),
        }
    }
}

/// What `warpline doctor` was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoctorOptions {
    /// The config whose `Attach` NICs and layout keys to check; host checks only without.
    pub config: Option<PathBuf>,
    /// Print JSON instead of a table.
    pub json: bool,
    /// Apply the safe fixes (after confirmation).
    pub fix: bool,
    /// Do not ask before fixing.
    pub yes: bool,
}

/// Why `warpline doctor` could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The config file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Output could not be written.
    #[error("cannot write the report: {0}")]
    Write(io::Error),
    /// The interface-ioctl socket could not be opened.
    #[error("cannot open a socket for interface ioctls: {0}")]
    Socket(io::Error),
    /// Some checks failed (the report says which).
    #[error("{0} check(s) failed; see the FAIL rows above")]
    ChecksFailed(usize),
}

/// Runs the checks, applies fixes if asked, prints the report to `out` (prompts and
/// progress to `err`), and fails with [`DoctorError::ChecksFailed`] when any check failed.
pub fn run(
    options: &DoctorOptions,
    out: &mut impl Write,
    err: &mut impl Write,
    input: &mut impl BufRead,
) -> Result<Summary, DoctorError> {
    let config = match &options.config {
        Some(path) => {
            let (config, warnings) = Config::load(path)?;
            for warning in warnings {
                let _ = writeln!(err, "warpline: warning: {warning}");
            }
            Some(config)
        }
        None => None,
    };
    let mut findings = examine(config.as_ref())?;
    let mut applied = None;
    if options.fix {
        let planned: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.pending_action().is_some())
            .collect();
        if planned.is_empty() {
            let _ = writeln!(err, "warpline doctor: nothing that --fix can fix");
            applied = Some(Vec::new());
        } else if options.yes || confirm(&planned, err, input) {
            let results = fix::apply_all(&planned)?;
            findings = examine(config.as_ref())?;
            applied = Some(results);
        } else {
            let _ = writeln!(err, "warpline doctor: nothing changed");
        }
    }
    let text = if options.json {
        render::json(&findings, applied.as_deref())
    } else {
        render::table(&findings, applied.as_deref())
    };
    out.write_all(text.as_bytes()).map_err(DoctorError::Write)?;
    let summary = Summary::of(&findings);
    if summary.fail > 0 {
        return Err(DoctorError::ChecksFailed(summary.fail));
    }
    Ok(summary)
}

/// Gathers the facts and judges them.
fn examine(config: Option<&Config>) -> Result<Vec<Finding>, DoctorError> {
    let attach = config.map_or(&[][..], |config| &config.interface.attach[..]);
    let host = facts::HostReport::gather(!attach.is_empty());
    let ethtool = sys::ethtool::EthtoolSocket::open().map_err(DoctorError::Socket)?;
    let nics: Vec<facts::NicReport> = attach
        .iter()
        .map(|nic| facts::NicReport::gather(nic, &ethtool))
        .collect();
    let inner = match config.map(|config| &config.interface.inner) {
        Some(crate::config::InnerSide::Nic(name)) => Some(facts::NicReport::gather(name, &ethtool)),
        _ => None,
    };
    Ok(checks::evaluate_with_inner(
        &host,
        &nics,
        inner.as_ref(),
        config,
    ))
}

/// Lists the planned fixes on `err` and asks; true on `y` or `yes`.
fn confirm(planned: &[&Finding], err: &mut impl Write, input: &mut impl BufRead) -> bool {
    let _ = writeln!(err, "warpline doctor --fix will:");
    for finding in planned {
        if let Some(remedy) = &finding.fix {
            let _ = writeln!(
                err,
                "  {} {}: {}",
                finding.scope, finding.check, remedy.command
            );
        }
    }
    let _ = write!(err, "Apply these {} fixes? [y/N] ", planned.len());
    let _ = err.flush();
    let mut answer = String::new();
    if input.read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(status: Status, action: Option<FixAction>) -> Finding {
        Finding {
            scope: "eth0".into(),
            check: "mtu",
            status,
            found: String::new(),
            why: String::new(),
            fix: Some(Remedy {
                command: "ip link set dev eth0 mtu 1540".into(),
                action,
            }),
        }
    }

    #[test]
    fn fixes_are_applied_only_after_a_yes() {
        let action = FixAction::SetMtu {
            nic: "eth0".into(),
            mtu: 1540,
        };
        let planned = finding(Status::Fail, Some(action));
        for (answer, expected) in [("y\n", true), ("YES\n", true), ("n\n", false), ("", false)] {
            let mut err = Vec::new();
            let confirmed = confirm(&[&planned], &mut err, &mut answer.as_bytes());
            assert_eq!(confirmed, expected, "{answer:?}");
            let prompt = String::from_utf8(err).unwrap();
            assert!(
                prompt.contains("eth0 mtu: ip link set dev eth0 mtu 1540"),
                "{prompt}"
            );
            assert!(prompt.ends_with("Apply these 1 fixes? [y/N] "), "{prompt}");
        }
    }

    #[test]
    fn only_findings_that_are_not_ok_have_pending_fixes() {
        let action = Some(FixAction::SetMtu {
            nic: "eth0".into(),
            mtu: 1540,
        });
        assert!(
            finding(Status::Warn, action.clone())
                .pending_action()
                .is_some()
        );
        assert!(finding(Status::Ok, action).pending_action().is_none());
        assert!(finding(Status::Fail, None).pending_action().is_none());
    }
}
