//! The config parser ([`Config::parse`]) on arbitrary text: what `warpline up`, `check-config`
//! and a `SaveConfig` reload read.
//!
//! Asserts: parsing never panics; an accepted config written back with
//! [`Config::to_wg_quick_string`] parses to the same config, and writing that again gives the
//! same text (the writer and the parser agree on every value they accept); an error names
//! the source and, if it has a line, a line that exists; and neither an error (Display or
//! Debug) nor a parsed config's Debug output repeats the value of a `PrivateKey` or
//! `PresharedKey` line, as `control/src/config/error.rs` promises.

use warpline_control::config::Config;

use crate::secrets::looks_like_key_material;

/// The name errors must start with.
const SOURCE_NAME: &str = "fuzz.conf";

/// One input: the file's bytes (not UTF-8 is decoded lossily, so mutations stay useful).
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let secrets = secret_values(&text);
    match Config::parse(&text, SOURCE_NAME) {
        Ok(config) => {
            let written = config.to_wg_quick_string();
            let reparsed = Config::parse(&written, "written.conf").unwrap_or_else(|error| {
                panic!("the parser refuses what the writer wrote: {error}\n---\n{written}")
            });
            assert_eq!(
                reparsed, config,
                "a config changed through write and parse:\n{written}"
            );
            assert_eq!(
                reparsed.to_wg_quick_string(),
                written,
                "writing is not stable"
            );
            let shown = format!("{config:?}");
            for secret in &secrets {
                assert!(
                    !shown.contains(secret.as_str()),
                    "a secret reached Debug output"
                );
            }
        }
        Err(error) => {
            let message = format!("{error}");
            assert!(message.starts_with(SOURCE_NAME), "{message}");
            assert_eq!(error.source_name(), SOURCE_NAME);
            if let Some(line) = error.line() {
                let lines = text.lines().count().max(1);
                assert!(
                    (1..=lines).contains(&line),
                    "line {line} of {lines}: {message}"
                );
            }
            let shown = format!("{message} {error:?}");
            for secret in &secrets {
                assert!(
                    !shown.contains(secret.as_str()),
                    "a secret value reached an error message: {message}"
                );
            }
        }
    }
}

/// Values of `PrivateKey`/`PresharedKey` lines that appear nowhere else in the text (a value
/// also written elsewhere, say in a hook, may legitimately be echoed from there).
fn secret_values(text: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default();
        let Some((key, value)) = content.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        let secret_key =
            key.eq_ignore_ascii_case("PrivateKey") || key.eq_ignore_ascii_case("PresharedKey");
        if !secret_key || !looks_like_key_material(value) {
            continue;
        }
        let elsewhere = text
            .lines()
            .enumerate()
            .any(|(other, line)| other != index && line.contains(value))
            || line.matches(value).count() > 1;
        if !elsewhere {
            secrets.push(value.to_owned());
        }
    }
    secrets
}
