//! The `warpline` binary's key commands and `check-config`, run as processes; cross-checked
//! against wireguard-tools' `wg` when it is installed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

const WARPLINE: &str = env!("CARGO_BIN_EXE_warpline");

/// RFC 7748 section 6.1, Alice's keys, base64-encoded.
const RFC7748_PRIVATE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
const RFC7748_PUBLIC: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

/// Runs `program` with `args`, feeding `stdin`, and waits for it.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let mut child_stdin = child.stdin.take().expect("stdin was piped");
    // A command that exits before reading everything closes the pipe: not a test failure.
    let _ = child_stdin.write_all(stdin);
    drop(child_stdin);
    child.wait_with_output().expect("wait for child")
}

fn stdout_of(program: &str, args: &[&str], stdin: &[u8]) -> String {
    let output = run(program, args, stdin);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Asserts `text` is one base64 key line as wireguard-tools prints it; returns the bytes.
fn decode_key_line(text: &str) -> [u8; 32] {
    assert_eq!(
        text.len(),
        45,
        "44 base64 characters and a newline: {text:?}"
    );
    let key_text = text.strip_suffix('\n').expect("ends in a newline");
    assert!(key_text.ends_with('='), "{text:?}");
    let bytes = BASE64.decode(key_text).expect("valid base64");
    bytes.try_into().expect("32 bytes")
}

#[test]
fn genkey_prints_a_clamped_base64_key() {
    let first = decode_key_line(&stdout_of(WARPLINE, &["genkey"], b""));
    let second = decode_key_line(&stdout_of(WARPLINE, &["genkey"], b""));
    for key in [first, second] {
        assert_eq!(key[0] & 0b111, 0, "low three bits cleared");
        assert_eq!(
            key[31] & 0b1100_0000,
            0b0100_0000,
            "top bit clear, next bit set"
        );
    }
    assert_ne!(first, second, "two calls give two keys");
}

#[test]
fn genpsk_prints_32_random_bytes_in_base64() {
    let first = decode_key_line(&stdout_of(WARPLINE, &["genpsk"], b""));
    let second = decode_key_line(&stdout_of(WARPLINE, &["genpsk"], b""));
    assert_ne!(first, second);
}

#[test]
fn pubkey_of_the_rfc7748_vector() {
    let input = format!("{RFC7748_PRIVATE}\n");
    let output = stdout_of(WARPLINE, &["pubkey"], input.as_bytes());
    assert_eq!(output, format!("{RFC7748_PUBLIC}\n"));
}

#[test]
fn pubkey_rejects_bad_input_with_exit_code_1_and_a_reason() {
    let cases: [(&[u8], &str); 4] = [
        (b"", "no key on stdin"),
        (b"not a key\n", "not the correct length"),
        (
            b"!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!=\n",
            "not in the correct format",
        ),
        (
            b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo= extra\n",
            "trailing characters",
        ),
    ];
    for (input, reason) in cases {
        let output = run(WARPLINE, &["pubkey"], input);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{input:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{input:?}");
        assert!(stderr.starts_with("warpline: "), "{stderr}");
        assert!(stderr.contains(reason), "{input:?}: {stderr}");
    }
}

/// A config file under the system temp dir, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, text: &str, mode: u32) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let path =
            std::env::temp_dir().join(format!("warpline-keys-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write temp config");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("chmod temp config");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn check_config_summarises_a_valid_file_and_warns_about_permissions() {
    let text = format!(
        "[Interface]\nPrivateKey = {RFC7748_PRIVATE}\nListenPort = 51820\n\n\
         [Peer]\nPublicKey = 3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=\nAllowedIPs = 10.0.0.2\n\n\
         [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n"
    );
    let config = TempConfig::new("valid.conf", &text, 0o644);
    let output = run(WARPLINE, &["check-config", config.path()], b"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains(RFC7748_PUBLIC), "{stdout}");
    assert!(stdout.contains("port 51820"), "{stdout}");
    assert!(stdout.contains("2 peers"), "{stdout}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", config.path())),
        "{stderr}"
    );
    assert!(!stdout.contains(RFC7748_PRIVATE) && !stderr.contains(RFC7748_PRIVATE));
}

#[test]
fn check_config_fails_with_the_error_on_stderr() {
    let text = format!("[Interface]\nPrivateKey = {RFC7748_PRIVATE}\nMTU = 12\n");
    let config = TempConfig::new("invalid.conf", &text, 0o600);
    let output = run(WARPLINE, &["check-config", config.path()], b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(
        stderr.starts_with(&format!(
            "warpline: {}:3: [Interface] MTU: \"12\" is not an MTU",
            config.path()
        )),
        "{stderr}"
    );
}

/// Whether wireguard-tools' `wg` can be run; says so when it cannot.
fn wg_is_installed() -> bool {
    let installed = Command::new("wg")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !installed {
        println!("skipping: wg (wireguard-tools) not installed");
    }
    installed
}

#[test]
fn keys_interoperate_with_wireguard_tools() {
    if !wg_is_installed() {
        return;
    }
    let wg_private = stdout_of("wg", &["genkey"], b"");
    assert_eq!(
        stdout_of(WARPLINE, &["pubkey"], wg_private.as_bytes()),
        stdout_of("wg", &["pubkey"], wg_private.as_bytes()),
        "wg genkey | warpline pubkey == wg pubkey"
    );

    let our_private = stdout_of(WARPLINE, &["genkey"], b"");
    assert_eq!(
        stdout_of("wg", &["pubkey"], our_private.as_bytes()),
        stdout_of(WARPLINE, &["pubkey"], our_private.as_bytes()),
        "warpline genkey | wg pubkey == warpline pubkey"
    );

    // wg parses preshared keys with the same base64 reader as private keys, so `wg pubkey`
    // accepting it shows the format is one wg takes.
    let psk = stdout_of(WARPLINE, &["genpsk"], b"");
    let output = run("wg", &["pubkey"], psk.as_bytes());
    assert!(output.status.success(), "wg refused {psk:?}");
    decode_key_line(&stdout_of("wg", &["genpsk"], b""));
}

#[test]
fn pubkey_accepts_and_rejects_the_same_input_as_wg() {
    if !wg_is_installed() {
        return;
    }
    let inputs: [&[u8]; 9] = [
        b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n",
        b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=",
        b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=  \n\n\t",
        b" dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n",
        b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=x",
        b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCp=\n",
        b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LC==\n",
        b"short\n",
        b"",
    ];
    for input in inputs {
        let ours = run(WARPLINE, &["pubkey"], input);
        let theirs = run("wg", &["pubkey"], input);
        assert_eq!(
            ours.status.code(),
            theirs.status.code(),
            "exit codes differ for {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(ours.stdout, theirs.stdout);
    }
}
