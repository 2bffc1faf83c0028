//! The report as a table for people or JSON for automation.

use std::fmt::Write as _;

use super::fix::Applied;
use super::{Finding, Summary};

/// One row per check; rows that are not OK get their reason and fix underneath.
/// `applied` lists the fixes `--fix` made, when it ran.
pub fn table(findings: &[Finding], applied: Option<&[Applied]>) -> String {
    let mut out = String::new();
    if let Some(applied) = applied
        && !applied.is_empty()
    {
        out.push_str("Fixes applied:\n");
        for fix in applied {
            let outcome = match &fix.error {
                None => "done".to_owned(),
                Some(error) => format!("FAILED: {error}"),
            };
            let _ = writeln!(
                out,
                "  {} {}: {} -> {outcome}",
                fix.scope, fix.check, fix.command
            );
        }
        out.push_str("\nChecks after fixing:\n");
    }
    let scope_width = column_width(findings.iter().map(|f| f.scope.as_str()), "WHERE");
    let check_width = column_width(findings.iter().map(|f| f.check), "CHECK");
    let _ = writeln!(
        out,
        "{:<8}{:<scope_width$}{:<check_width$}FOUND",
        "STATUS", "WHERE", "CHECK"
    );
    let indent = " ".repeat(8 + scope_width + check_width);
    for finding in findings {
        let _ = writeln!(
            out,
            "{:<8}{:<scope_width$}{:<check_width$}{}",
            finding.status.label(),
            finding.scope,
            finding.check,
            finding.found
        );
        if finding.status == super::Status::Ok {
            continue;
        }
        let _ = writeln!(out, "{indent}why: {}", finding.why);
        if let Some(remedy) = &finding.fix {
            let marker = if remedy.action.is_some() {
                "  [--fix]"
            } else {
                ""
            };
            let _ = writeln!(out, "{indent}fix: {}{marker}", remedy.command);
        }
    }
    let summary = Summary::of(findings);
    let fixable = findings
        .iter()
        .filter(|f| f.pending_action().is_some())
        .count();
    let _ = write!(
        out,
        "\n{} OK, {} WARN, {} FAIL",
        summary.ok, summary.warn, summary.fail
    );
    if fixable > 0 {
        let _ = write!(
            out,
            "; `warpline doctor --fix` applies the {fixable} fix{} marked [--fix]",
            if fixable == 1 { "" } else { "es" }
        );
    }
    out.push_str(". Each check is explained in docs/doctor.md.\n");
    out
}

fn column_width<'a>(values: impl Iterator<Item = &'a str>, header: &str) -> usize {
    values
        .map(str::len)
        .chain([header.len()])
        .max()
        .unwrap_or(0)
        + 2
}

#[derive(serde::Serialize)]
struct JsonReport<'a> {
    checks: Vec<JsonFinding<'a>>,
    summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    fixes: Option<Vec<JsonFix<'a>>>,
}

#[derive(serde::Serialize)]
struct JsonFinding<'a> {
    scope: &'a str,
    check: &'a str,
    status: super::Status,
    found: &'a str,
    why: &'a str,
    fix: Option<&'a str>,
    auto_fix: bool,
}

#[derive(serde::Serialize)]
struct JsonFix<'a> {
    scope: &'a str,
    check: &'a str,
    command: &'a str,
    applied: bool,
    error: Option<&'a str>,
}

/// `{"checks": [...], "summary": {...}, "fixes": [...]}`; `fixes` only after `--fix`.
pub fn json(findings: &[Finding], applied: Option<&[Applied]>) -> String {
    let report = JsonReport {
        checks: findings
            .iter()
            .map(|finding| JsonFinding {
                scope: &finding.scope,
                check: finding.check,
                status: finding.status,
                found: &finding.found,
                why: &finding.why,
                fix: finding.fix.as_ref().map(|remedy| remedy.command.as_str()),
                auto_fix: finding.pending_action().is_some(),
            })
            .collect(),
        summary: Summary::of(findings),
        fixes: applied.map(|applied| {
            applied
                .iter()
                .map(|fix| JsonFix {
                    scope: &fix.scope,
                    check: fix.check,
                    command: &fix.command,
                    applied: fix.error.is_none(),
                    error: fix.error.as_deref(),
                })
                .collect()
        }),
    };
    // Serialising plain strings, numbers and bools cannot fail.
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::{FixAction, Remedy, Status};

    fn findings() -> Vec<Finding> {
        vec![
            Finding {
                scope: "host".into(),
                check: "kernel",
                status: Status::Ok,
                found: "Linux 6.18".into(),
                why: "why kernel".into(),
                fix: None,
            },
            Finding {
                scope: "eth0".into(),
                check: "mtu",
                status: Status::Fail,
                found: "MTU 1500".into(),
                why: "why mtu".into(),
                fix: Some(Remedy {
                    command: "ip link set dev eth0 mtu 1560".into(),
                    action: Some(FixAction::SetMtu {
                        nic: "eth0".into(),
                        mtu: 1560,
                    }),
                }),
            },
        ]
    }

    #[test]
    fn table_aligns_columns_and_explains_what_is_not_ok() {
        let text = table(&findings(), None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "STATUS  WHERE  CHECK   FOUND");
        assert_eq!(lines[1], "OK      host   kernel  Linux 6.18");
        assert_eq!(lines[2], "FAIL    eth0   mtu     MTU 1500");
        assert_eq!(lines[3], "                       why: why mtu");
        assert_eq!(
            lines[4],
            "                       fix: ip link set dev eth0 mtu 1560  [--fix]"
        );
        assert!(!text.contains("why kernel"), "OK rows stay one line");
        assert!(text.contains("1 OK, 0 WARN, 1 FAIL; `warpline doctor --fix` applies the 1 fix"));
    }

    #[test]
    fn json_carries_every_field_and_the_fixes() {
        let applied = [Applied {
            scope: "eth0".into(),
            check: "mtu",
            command: "ip link set dev eth0 mtu 1560".into(),
            error: Some("Operation not permitted".into()),
        }];
        let value: serde_json::Value =
            serde_json::from_str(&json(&findings(), Some(&applied))).unwrap();
        assert_eq!(value["checks"][1]["status"], "FAIL");
        assert_eq!(value["checks"][1]["auto_fix"], true);
        assert_eq!(value["checks"][0]["fix"], serde_json::Value::Null);
        assert_eq!(value["summary"]["fail"], 1);
        assert_eq!(value["fixes"][0]["applied"], false);
        let without: serde_json::Value = serde_json::from_str(&json(&findings(), None)).unwrap();
        assert!(without.get("fixes").is_none());
    }
}
