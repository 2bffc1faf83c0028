//! The `warpline` command line: its arguments and the commands behind them.
//!
//! The key commands print exactly what `wg genkey`, `wg pubkey` and `wg genpsk` print (base64
//! and a newline), so scripts written for wireguard-tools work with either. Commands take
//! their input and output as parameters so tests can drive them without a process.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use zeroize::Zeroizing;

use crate::config::{Config, ConfigError, ConfigWarning};
use crate::ctl::{Request, Response};
use crate::keys::{KeyParseError, PresharedKey, PrivateKey, PublicKey};

mod follow_keepalived;
mod set_args;
pub mod syncconf;

/// The `warpline` command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "warpline",
    version,
    about = "warpline: a WireGuard-compatible kernel-bypass VPN gateway"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Key commands mirror wireguard-tools; interface management
/// (`up`, `show`, `set`, `down`) joins them as it is built.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Generate a private key and print it in base64 (like `wg genkey`).
    Genkey,
    /// Read a base64 private key on stdin and print its public key (like `wg pubkey`).
    Pubkey,
    /// Generate a preshared key and print it in base64 (like `wg genpsk`).
    Genpsk,
    /// Check a configuration file and summarise it; exits 1 if it is invalid.
    CheckConfig {
        /// The wg-quick style configuration file, e.g. /etc/warpline/wl0.conf.
        path: PathBuf,
    },
    /// Run the gateway for a config in the foreground until SIGINT/SIGTERM or `warpline down`.
    /// The interface is named after the file (`wl0.conf` -> `wl0`).
    Up {
        /// The configuration file, e.g. /etc/warpline/wl0.conf.
        config: PathBuf,
        /// The control socket (default: /run/warpline/<name>.sock).
        #[arg(long)]
        control_socket: Option<PathBuf>,
        /// Run in the background; return once the gateway is up (log beside the socket).
        #[arg(long)]
        daemon: bool,
    },
    /// Show a running interface: peers, endpoints, handshakes, transfer, drop counters.
    Show {
        /// The interface name (the config file's name without .conf).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The control socket (default: /run/warpline/<name>.sock).
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
    /// Change a running interface's peers without a restart, in `wg set` syntax:
    /// `peer <key> [remove] [allowed-ips <list>] [endpoint <host:port>]
    /// [persistent-keepalive <secs|off>] [preshared-key <file>] [cipher <suite>]`.
    Set {
        /// The interface name.
        name: String,
        /// `peer <public key>` followed by the settings to change.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        settings: Vec<String>,
        /// The control socket (default: /run/warpline/<name>.sock).
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
    /// Check that this host and the config's Attach NICs can run the XDP data plane well:
    /// prints OK/WARN/FAIL rows with what was found, why it matters and the fix; exits 1 if
    /// a check fails. docs/doctor.md explains each check.
    Doctor {
        /// The configuration whose Attach NICs and layout keys to check (without one, only
        /// the host is checked).
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Apply the fixes that are safe at run time (queue counts, MTU, offloads, UDP
        /// hashing, IRQ affinity, sysctls); asks first unless --yes.
        #[arg(long)]
        fix: bool,
        /// With --fix: apply without asking.
        #[arg(long, requires = "fix")]
        yes: bool,
    },
    /// Make a running interface's peers match a config file without a restart (like
    /// `wg syncconf`): peers missing from the file are removed, every peer of the file is set.
    /// The whole file is checked first, so an invalid one changes nothing.
    Syncconf {
        /// The interface name.
        name: String,
        /// The configuration file, e.g. /etc/warpline/wl0.conf.
        config: PathBuf,
        /// The control socket (default: /run/warpline/<name>.sock).
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
    /// High availability: switch a cluster node's role (keepalived's notify scripts call
    /// these) or show its state.
    Ha {
        /// What to do.
        #[command(subcommand)]
        action: HaAction,
    },
    /// Stop a running interface.
    Down {
        /// The interface name.
        name: String,
        /// The control socket (default: /run/warpline/<name>.sock).
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
}

/// `warpline ha ...`.
#[derive(Debug, clap::Subcommand)]
pub enum HaAction {
    /// Become the active node: take over every synced session (no handshakes needed).
    Promote {
        /// The interface name.
        name: String,
        /// The control socket (default: /run/warpline/<name>.sock).
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
    /// Become a standby: drop own sessions (the partner owns them), start nothing.
    Demote {
        /// The interface name.
        name: String,
        /// The control socket (default: /run/warpline/<name>.sock).
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
    /// Follow keepalived's VRRP notify FIFO (its `vrrp_notify_fifo_script`): promote on
    /// MASTER, demote on BACKUP/FAULT/STOP, in the order keepalived sent them. Runs until
    /// keepalived closes the FIFO.
    FollowKeepalived {
        /// The interface name; keepalived's instance must be `warpline_<name>`.
        name: String,
        /// The FIFO keepalived writes (it passes it as the last argument).
        fifo: PathBuf,
        /// The control socket (default: /run/warpline/<name>.sock).
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
    /// Show the node's role, partners and takeover counters.
    Status {
        /// The interface name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The control socket (default: /run/warpline/<name>.sock).
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
}

impl Cli {
    /// Runs the command on the process's standard streams; errors go to stderr.
    pub fn run(self) -> ExitCode {
        let mut stdout = io::stdout().lock();
        // Not locked: daemon threads log to stderr while `up` runs on this thread.
        let mut stderr = io::stderr();
        let result = match self.command {
            Command::Genkey => {
                if stdout_is_a_file_others_can_access() {
                    let _ = writeln!(
                        stderr,
                        "warpline: warning: writing a private key to a file others can access; \
                         run `umask 077` before creating it"
                    );
                }
                genkey(&mut stdout)
            }
            Command::Pubkey => pubkey(&mut io::stdin().lock(), &mut stdout),
            Command::Genpsk => genpsk(&mut stdout),
            Command::CheckConfig { path } => check_config(&path, &mut stdout, &mut stderr),
            Command::Up {
                config,
                control_socket,
                daemon,
            } => {
                let options = crate::daemon::UpOptions {
                    config_path: config,
                    control_socket,
                };
                if daemon {
                    start_in_background(&options, &mut stdout)
                } else {
                    crate::daemon::up(&options).map_err(CliError::from)
                }
            }
            Command::Show {
                name,
                json,
                control_socket,
            } => show(&name, json, control_socket, &mut stdout),
            Command::Set {
                name,
                settings,
                control_socket,
            } => set_args::parse(&settings)
                .map_err(CliError::Usage)
                .and_then(|request| control_request(&name, control_socket, &request))
                .map(|_| ()),
            Command::Syncconf {
                name,
                config,
                control_socket,
            } => sync_config(&name, &config, control_socket, &mut stdout, &mut stderr),
            Command::Down {
                name,
                control_socket,
            } => control_request(&name, control_socket, &Request::Down).map(|_| ()),
            Command::Ha { action } => ha(action, &mut stdout, &mut stderr),
            Command::Doctor {
                config,
                json,
                fix,
                yes,
            } => {
                let options = crate::doctor::DoctorOptions {
                    config,
                    json,
                    fix,
                    yes,
                };
                crate::doctor::run(&options, &mut stdout, &mut stderr, &mut io::stdin().lock())
                    .map(drop)
                    .map_err(CliError::from)
            }
        };
        match result.and_then(|()| stdout.flush().map_err(CliError::WriteOutput)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                let _ = writeln!(stderr, "warpline: {error}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `pubkey` got something other than one private key on stdin.
    #[error(transparent)]
    PubkeyInput(#[from] PubkeyInputError),
    /// The configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The gateway failed to start or stopped with an error.
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// Talking to a running gateway failed.
    #[error(transparent)]
    Control(#[from] crate::ctl::CtlError),
    /// `warpline doctor` found failures or could not run.
    #[error(transparent)]
    Doctor(#[from] crate::doctor::DoctorError),
    /// The command's arguments are wrong.
    #[error("{0}")]
    Usage(String),
    /// The gateway refused a request.
    #[error("{0}")]
    Refused(String),
    /// Standard output could not be written (for example, a closed pipe).
    #[error("cannot write to stdout: {0}")]
    WriteOutput(io::Error),
}

/// What is wrong with the input to `pubkey`.
#[derive(Debug, thiserror::Error)]
pub enum PubkeyInputError {
    /// Nothing, or only whitespace, arrived.
    #[error("no key on stdin; pipe a private key in, e.g. `warpline genkey | warpline pubkey`")]
    Empty,
    /// Fewer characters than a key has.
    #[error(
        "the key on stdin is not the correct length: {0} characters, a key is 44 \
         (base64 of 32 bytes)"
    )]
    TooShort(usize),
    /// 44 characters that are not a key's base64.
    #[error("the key on stdin is not in the correct format: {0}")]
    NotAKey(KeyParseError),
    /// More than whitespace after the key.
    #[error("trailing characters found after the key on stdin; give exactly one key")]
    TrailingCharacters,
    /// Reading stdin failed.
    #[error("cannot read stdin: {0}")]
    Read(io::Error),
}

pub(crate) fn control_request(
    name: &str,
    control_socket: Option<PathBuf>,
    request: &Request,
) -> Result<Response, CliError> {
    let path = match control_socket {
        Some(path) => path,
        None => crate::ctl::socket_path(name)?,
    };
    match crate::ctl::request(&path, request)? {
        Response::Error { message } => Err(CliError::Refused(message)),
        response => Ok(response),
    }
}

/// `warpline ha ...`: sends the request and prints the state after it (`follow-keepalived`
/// keeps sending them, reporting on `err`).
fn ha(action: HaAction, out: &mut impl Write, err: &mut impl Write) -> Result<(), CliError> {
    let (name, control_socket, request, json) = match action {
        HaAction::Promote {
            name,
            control_socket,
        } => (name, control_socket, Request::HaPromote, false),
        HaAction::Demote {
            name,
            control_socket,
        } => (name, control_socket, Request::HaDemote, false),
        HaAction::Status {
            name,
            json,
            control_socket,
        } => (name, control_socket, Request::HaStatus, json),
        HaAction::FollowKeepalived {
            name,
            fifo,
            control_socket,
        } => return follow_keepalived::run(&name, &fifo, control_socket, err),
    };
    let Response::Ha(status) = control_request(&name, control_socket, &request)? else {
        return Err(CliError::Refused("the gateway sent no HA state".into()));
    };
    let text = if json {
        serde_json::to_string_pretty(&status).expect("plain data serializes") + "\n"
    } else {
        crate::ctl::render::ha_status(&status)
    };
    out.write_all(text.as_bytes())
        .map_err(CliError::WriteOutput)
}

/// `warpline show`: asks the running gateway and prints its answer as `wg show` would.
fn show(
    name: &str,
    json: bool,
    control_socket: Option<PathBuf>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let Response::Show(snapshot) = control_request(name, control_socket, &Request::Show)? else {
        return Err(CliError::Refused("the gateway sent no snapshot".into()));
    };
    let text = if json {
        crate::ctl::render::render_json(&snapshot)
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        crate::ctl::render::render_show(&snapshot, now)
    };
    out.write_all(text.as_bytes())
        .map_err(CliError::WriteOutput)
}

/// Length of a key's base64 text.
const KEY_TEXT_LEN: usize = 44;

/// Prints a new private key (`wg genkey`).
pub fn genkey(out: &mut impl Write) -> Result<(), CliError> {
    let text = Zeroizing::new(PrivateKey::generate().to_base64());
    writeln!(out, "{}", text.as_str()).map_err(CliError::WriteOutput)
}

/// Prints a new preshared key (`wg genpsk`).
pub fn genpsk(out: &mut impl Write) -> Result<(), CliError> {
    let text = Zeroizing::new(PresharedKey::generate().to_base64());
    writeln!(out, "{}", text.as_str()).map_err(CliError::WriteOutput)
}

/// Reads a private key from `input` and prints its public key (`wg pubkey`).
pub fn pubkey(input: &mut impl Read, out: &mut impl Write) -> Result<(), CliError> {
    let public_key = read_public_key(input)?;
    writeln!(out, "{public_key}").map_err(CliError::WriteOutput)
}

/// Accepts what `wg pubkey` accepts: the first 44 bytes are the key, and everything after
/// them is whitespace or NUL.
pub fn read_public_key(input: &mut impl Read) -> Result<PublicKey, PubkeyInputError> {
    let mut key_text = Zeroizing::new([0u8; KEY_TEXT_LEN]);
    let filled = read_up_to(input, &mut key_text[..])?;
    let Some(key_text) = key_text.get(..filled) else {
        return Err(PubkeyInputError::Empty);
    };
    if filled < KEY_TEXT_LEN {
        let meaningful = key_text.trim_ascii_end().len();
        return Err(if meaningful == 0 {
            PubkeyInputError::Empty
        } else {
            PubkeyInputError::TooShort(meaningful)
        });
    }
    let text = std::str::from_utf8(key_text)
        .map_err(|_| PubkeyInputError::NotAKey(KeyParseError::NotBase64))?;
    let private_key = PrivateKey::from_base64(text).map_err(PubkeyInputError::NotAKey)?;
    ensure_only_whitespace_remains(input)?;
    Ok(private_key.public_key())
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, PubkeyInputError> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PubkeyInputError::Read(e)),
        }
    }
    Ok(filled)
}

fn ensure_only_whitespace_remains(input: &mut impl Read) -> Result<(), PubkeyInputError> {
    let mut chunk = [0u8; 512];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PubkeyInputError::Read(e)),
        };
        // C's isspace() plus NUL, as in wireguard-tools.
        let is_blank = |b: &u8| matches!(b, 0 | b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c');
        if !chunk.get(..n).unwrap_or_default().iter().all(is_blank) {
            return Err(PubkeyInputError::TrailingCharacters);
        }
    }
}

/// Loads the config at `path` and prints its warnings to `err`.
fn load_config(
    path: &Path,
    err: &mut impl Write,
) -> Result<(Config, Vec<ConfigWarning>), CliError> {
    let (config, warnings) = Config::load(path)?;
    for warning in &warnings {
        // A warning that cannot be shown must not turn a valid config into a failure.
        let _ = writeln!(err, "warpline: warning: {warning}");
    }
    Ok((config, warnings))
}

/// Loads the config at `path`, prints its warnings to `err` and a summary to `out`.
pub fn check_config(
    path: &Path,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    let (config, warnings) = load_config(path, err)?;
    let summary = config_summary(&config, &path.display().to_string(), &warnings);
    writeln!(out, "{summary}").map_err(CliError::WriteOutput)
}

/// `warpline syncconf`: checks the whole file, plans against the running interface, then
/// sends the plan. A request the gateway refuses stops the sync there and says how far it got.
fn sync_config(
    name: &str,
    path: &Path,
    control_socket: Option<PathBuf>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    let (config, _) = load_config(path, err)?;
    let running = match control_request(name, control_socket.clone(), &Request::Show)? {
        Response::Show(snapshot) => snapshot,
        other => {
            return Err(CliError::Refused(format!(
                "the gateway answered show with {other:?}"
            )));
        }
    };
    let plan = syncconf::plan(&config, &running, syncconf::resolve_system)
        .map_err(|e| CliError::Refused(format!("{}: nothing changed: {e}", path.display())))?;
    for (done, request) in plan.requests.iter().enumerate() {
        control_request(name, control_socket.clone(), request).map_err(|e| {
            CliError::Refused(format!(
                "{e} (syncing {} stopped after {done} of {} changes; run it again once fixed)",
                path.display(),
                plan.requests.len()
            ))
        })?;
    }
    for note in &plan.restart_needed {
        let _ = writeln!(
            err,
            "warpline: warning: not applied, needs a restart: {note}"
        );
    }
    writeln!(
        out,
        "{name}: synced {}: {} peers added, {} updated, {} removed, {} re-created (cipher \
         changed)",
        path.display(),
        plan.added,
        plan.kept,
        plan.removed,
        plan.recreated
    )
    .map_err(CliError::WriteOutput)
}

/// One paragraph describing a valid config: what an operator checks before bringing it up.
pub fn config_summary(config: &Config, source_name: &str, warnings: &[ConfigWarning]) -> String {
    let listen = match config.interface.listen_port {
        Some(port) if port != 0 => format!("listens on UDP port {port}"),
        _ => "listens on a random UDP port (no ListenPort set)".to_owned(),
    };
    let peers = match config.peers.len() {
        1 => "1 peer".to_owned(),
        n => format!("{n} peers"),
    };
    let default_suite = crate::config::CipherSuite::default();
    let extension_peers = config
        .peers
        .iter()
        .filter(|peer| peer.cipher != default_suite)
        .count();
    let mut summary = format!(
        "{source_name} is valid{}: the interface has public key {}, {listen}, and has {peers}.",
        if warnings.is_empty() {
            ""
        } else {
            " (with warnings)"
        },
        config.interface.private_key.public_key(),
    );
    if extension_peers > 0 {
        summary += &format!(
            " Peers on the aes256gcm extension, which only warpline peers configured for it can \
             speak: {extension_peers}."
        );
    }
    summary
}

/// Whether stdout is a regular file that users other than its owner can access, as
/// `wg genkey` checks before writing a private key there.
fn stdout_is_a_file_others_can_access() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::PermissionsExt as _;
        let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() else {
            return false;
        };
        std::fs::File::from(fd)
            .metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o007 != 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// `warpline up --daemon`: starts the gateway in the background and says where it logs.
fn start_in_background(
    options: &crate::daemon::UpOptions,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let (pid, log) = crate::daemon::background::start(options)?;
    writeln!(
        out,
        "warpline is up in the background (pid {pid}, log {})",
        log.display()
    )
    .map_err(CliError::WriteOutput)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    const ALICE_PRIVATE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
    const ALICE_PUBLIC: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

    fn pubkey_of(input: &[u8]) -> Result<String, CliError> {
        let mut out = Vec::new();
        pubkey(&mut &input[..], &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn pubkey_accepts_what_wg_accepts() {
        let expected = format!("{ALICE_PUBLIC}\n");
        for input in [
            format!("{ALICE_PRIVATE}\n"),
            ALICE_PRIVATE.to_owned(),
            format!("{ALICE_PRIVATE} \r\n\t\0\n\n"),
        ] {
            assert_eq!(pubkey_of(input.as_bytes()).unwrap(), expected, "{input:?}");
        }
    }

    #[test]
    fn pubkey_rejects_with_a_reason() {
        let cases: [(String, &str); 6] = [
            (String::new(), "no key on stdin"),
            ("\n\n".to_owned(), "no key on stdin"),
            (
                "abc\n".to_owned(),
                "not the correct length: 3 characters, a key is 44",
            ),
            (
                format!("{ALICE_PRIVATE}x\n"),
                "trailing characters found after the key",
            ),
            (
                format!("{ALICE_PRIVATE}\n{ALICE_PRIVATE}\n"),
                "trailing characters",
            ),
            (
                format!(" {ALICE_PRIVATE}"),
                "not in the correct format: not valid base64",
            ),
        ];
        for (input, expected) in cases {
            let message = pubkey_of(input.as_bytes()).unwrap_err().to_string();
            assert!(message.contains(expected), "{input:?}: {message}");
            assert!(
                !message.contains(&ALICE_PRIVATE[..20]),
                "echoed the key: {message}"
            );
        }
        let non_utf8 = [0xffu8; 44];
        assert!(matches!(
            pubkey_of(&non_utf8),
            Err(CliError::PubkeyInput(PubkeyInputError::NotAKey(_)))
        ));
    }

    #[test]
    fn generated_keys_are_base64_lines_that_parse_back() {
        let mut out = Vec::new();
        genkey(&mut out).unwrap();
        genpsk(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        let private = PrivateKey::from_base64(lines[0]).unwrap();
        assert_eq!(
            private.to_base64(),
            lines[0],
            "printed key is already clamped"
        );
        PresharedKey::from_base64(lines[1]).unwrap();
        assert_ne!(lines[0], lines[1]);
    }

    #[test]
    fn subcommand_names_match_wireguard_tools() {
        for (args, expected) in [
            (vec!["warpline", "genkey"], "Genkey"),
            (vec!["warpline", "pubkey"], "Pubkey"),
            (vec!["warpline", "genpsk"], "Genpsk"),
            (vec!["warpline", "check-config", "wl0.conf"], "CheckConfig"),
            (vec!["warpline", "doctor"], "Doctor"),
            (
                vec!["warpline", "doctor", "wl0.conf", "--json", "--fix", "--yes"],
                "Doctor",
            ),
        ] {
            let cli = Cli::try_parse_from(&args).unwrap();
            assert!(format!("{:?}", cli.command).starts_with(expected));
        }
        assert!(Cli::try_parse_from(["warpline", "check-config"]).is_err());
        assert!(Cli::try_parse_from(["warpline", "pubkey", "extra"]).is_err());
        assert!(
            Cli::try_parse_from(["warpline", "doctor", "--yes"]).is_err(),
            "--yes without --fix"
        );
    }

    #[test]
    fn summary_names_key_port_and_peer_count() {
        let text = format!(
            "[Interface]\nPrivateKey = {ALICE_PRIVATE}\nListenPort = 51820\n\
             [Peer]\nPublicKey = 3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=\nCipher = aes256gcm\n"
        );
        let config = Config::parse(&text, "wl0.conf").unwrap();
        let summary = config_summary(&config, "wl0.conf", &[]);
        assert_eq!(
            summary,
            format!(
                "wl0.conf is valid: the interface has public key {ALICE_PUBLIC}, listens on UDP \
                 port 51820, and has 1 peer. Peers on the aes256gcm extension, which only \
                 warpline peers configured for it can speak: 1."
            )
        );
    }
}
