//! `warpline ha follow-keepalived`: keepalived's VRRP notify FIFO applied in order.
//!
//! keepalived starts this as its `vrrp_notify_fifo_script` and writes one line per state
//! transition. A reader thread hands lines over; the main loop coalesces whatever has arrived
//! (only the latest transition matters) and sends one promote or demote.
//! A refused or failed request (the daemon restarting) is retried every second until it
//! works or a newer transition replaces it. keepalived sends SIGTERM before its final STOP
//! lines, so SIGTERM is ignored: the follower ends when keepalived closes the FIFO.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use super::{CliError, control_request};
use crate::ctl::{Request, Response};
use crate::ha::{MAX_FIFO_LINE, WantedRole, instance_for, wanted_role};

/// How long a failed promote or demote waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the reader thread hands over.
enum FifoEvent {
    Line(String),
    /// A line over [`MAX_FIFO_LINE`] bytes (dropped), or one that is not UTF-8.
    Unreadable(&'static str),
    /// keepalived closed the FIFO (or reading it failed): the follower is done.
    Closed(Option<std::io::Error>),
}

/// Runs until keepalived closes `fifo`; reports every transition and failure on `err`.
pub fn run(
    name: &str,
    fifo: &Path,
    control_socket: Option<PathBuf>,
    err: &mut impl Write,
) -> Result<(), CliError> {
    ignore_sigterm();
    // Opening a FIFO for reading waits for keepalived to open it for writing.
    let file = std::fs::File::open(fifo).map_err(|error| {
        CliError::Usage(format!(
            "cannot open keepalived's notify FIFO {}: {error}",
            fifo.display()
        ))
    })?;
    let (sender, events) = mpsc::channel();
    std::thread::Builder::new()
        .name("fifo-reader".into())
        .spawn(move || read_lines(BufReader::new(file), &sender))
        .map_err(|error| CliError::Usage(format!("cannot start the FIFO reader: {error}")))?;
    let instance = instance_for(name);
    // The role keepalived last asked for and the gateway has not taken yet.
    let mut pending: Option<WantedRole> = None;
    // A daemon that stays down would otherwise fill keepalived's log once a second.
    let mut last_failure = String::new();
    let say = |err: &mut dyn Write, text: std::fmt::Arguments<'_>| {
        let _ = writeln!(err, "warpline ha follow-keepalived {name}: {text}");
    };
    loop {
        // A reader thread gone without a word (it cannot, short of a panic) is a closed FIFO
        // too: never spin on a dead channel.
        let first = match pending {
            Some(_) => match events.recv_timeout(RETRY_AFTER) {
                Ok(event) => Some(event),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => Some(FifoEvent::Closed(None)),
            },
            None => Some(events.recv().unwrap_or(FifoEvent::Closed(None))),
        };
        let mut closed = false;
        // Everything already queued is fed before acting: the latest transition wins.
        for event in first
            .into_iter()
            .chain(std::iter::from_fn(|| events.try_recv().ok()))
        {
            match event {
                FifoEvent::Line(line) => match wanted_role(&line, &instance) {
                    Ok(Some(role)) => pending = Some(role),
                    Ok(None) => {}
                    Err(error) => say(err, format_args!("ignored: {error}")),
                },
                FifoEvent::Unreadable(why) => say(err, format_args!("ignored a line: {why}")),
                FifoEvent::Closed(error) => {
                    if let Some(error) = error {
                        say(err, format_args!("reading the FIFO failed: {error}"));
                    }
                    closed = true;
                }
            }
        }
        if let Some(role) = pending {
            let request = match role {
                WantedRole::Active => Request::HaPromote,
                WantedRole::Standby => Request::HaDemote,
            };
            match control_request(name, control_socket.clone(), &request) {
                Ok(Response::Ha(status)) => {
                    pending = None;
                    last_failure.clear();
                    say(err, format_args!("now {}", status.role));
                }
                outcome => {
                    let failure = match outcome {
                        Err(error) => format!("{role:?} failed ({error})"),
                        Ok(_) => format!("{role:?}: the gateway sent no HA state"),
                    };
                    if failure != last_failure {
                        say(err, format_args!("{failure}; retrying every second"));
                        last_failure = failure;
                    }
                }
            }
        }
        if closed {
            say(err, format_args!("keepalived closed the FIFO; stopping"));
            return Ok(());
        }
    }
}

/// Reads lines of at most [`MAX_FIFO_LINE`] bytes until EOF.
fn read_lines(mut reader: impl BufRead, sender: &mpsc::Sender<FifoEvent>) {
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        let read = reader
            .by_ref()
            .take(MAX_FIFO_LINE as u64 + 1)
            .read_until(b'\n', &mut line);
        let event = match read {
            Ok(0) => FifoEvent::Closed(None),
            Err(error) => FifoEvent::Closed(Some(error)),
            Ok(_) if line.last() != Some(&b'\n') && line.len() > MAX_FIFO_LINE => {
                if let Err(error) = reader.by_ref().skip_until(b'\n') {
                    let _ = sender.send(FifoEvent::Closed(Some(error)));
                    return;
                }
                FifoEvent::Unreadable("longer than a keepalived notification")
            }
            Ok(_) => match std::str::from_utf8(line.trim_ascii_end()) {
                Ok(text) => FifoEvent::Line(text.to_owned()),
                Err(_) => FifoEvent::Unreadable("not UTF-8"),
            },
        };
        let closed = matches!(event, FifoEvent::Closed(_));
        if sender.send(event).is_err() || closed {
            return;
        }
    }
}

/// keepalived signals the FIFO script with SIGTERM *before* writing the STOP transitions;
/// the follower must stay to apply them and end at EOF instead.
fn ignore_sigterm() {
    // SAFETY: SIG_IGN installs no handler code; this runs before any thread of this
    // command starts, and nothing else in the process depends on SIGTERM's disposition.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}
