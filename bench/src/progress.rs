//! A live progress line on stderr while a suite runs, so a multi-minute run shows where it is.
//!
//! On a terminal the line is rewritten in place (`\r`, then erase-line) and cleared when the
//! suite finishes, so the table on stdout stays clean. When stderr is a file or a pipe (the
//! device script's log, CI), rewriting in place would leave one unreadable line of `\r`s, so
//! full lines are printed instead, at most one every few seconds, plus the first one.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a progress line is written when stderr is not a terminal.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The progress line of one suite. `steps` is how many steps the suite will report; with it
/// the line shows how far along the suite is and roughly how long is left.
#[derive(Debug)]
pub struct Progress {
    suite: &'static str,
    terminal: bool,
    started: Instant,
    steps: usize,
    done: usize,
    last_logged: Option<Instant>,
}

impl Progress {
    /// A progress line for `suite`, which will report `steps` steps (0: unknown).
    pub fn new(suite: &'static str, steps: usize) -> Self {
        Self {
            suite,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            steps,
            done: 0,
            last_logged: None,
        }
    }

    /// Shows `what` is being measured now; counts one step.
    pub fn step(&mut self, what: impl Display) {
        self.done += 1;
        let mut line = format!("[{}] {what}", self.suite);
        if self.steps > 0 {
            line += &format!(" ({}/{}", self.done.min(self.steps), self.steps);
            if let Some(left) = self.time_left() {
                line += &format!(", ~{} left", human(left));
            }
            line.push(')');
        }
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            // Erase the previous line rather than padding over it: lines vary in length.
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        } else if self
            .last_logged
            .is_none_or(|at| at.elapsed() >= LOG_INTERVAL)
        {
            let _ = writeln!(stderr, "{line}");
            self.last_logged = Some(Instant::now());
        }
    }

    /// Clears the line (terminal) so the results print on a clean screen.
    pub fn finish(&mut self) {
        if self.terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        } else {
            eprintln!("[{}] done in {}", self.suite, human(self.started.elapsed()));
        }
    }

    /// The time the remaining steps should take at the pace so far; `None` until one step is
    /// complete (the current step is the one just started, so `done - 1` are complete).
    fn time_left(&self) -> Option<Duration> {
        let complete = self.done.checked_sub(1).filter(|&c| c > 0)?;
        let per_step = self.started.elapsed() / complete as u32;
        Some(per_step * (self.steps.saturating_sub(complete)) as u32)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A suite that fails midway must not leave a half line that the error message joins.
        if self.terminal {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// `1m05s`, `42s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
