//! What people are told about the run: one set of [`Metrics`], and its views, the summary
//! line, the --stats document and the progress display; the -v log; how the run ended and
//! its exit status; and [`say`], for every message on stderr.

mod ending;
pub mod hadoop;
mod log;
mod metrics;
pub mod progress;
pub mod stats;
pub mod summary;

pub use ending::{Ending, Stopped, conclude};
pub use log::log_requests;
pub use metrics::Metrics;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use crate::cli::Shard;

/// What people see on stderr.
pub struct Display {
    pub quiet: bool,
    pub verbose: u8,
    /// Progress forced on (--progress) or off (--no-progress).
    pub progress: bool,
    pub no_progress: bool,
    pub insecure: bool,
    /// One line per input line (--aligned): failures written as null lines do not fail
    /// the run.
    pub aligned: bool,
    /// Report counts in Hadoop Streaming's form (--hadoop-counters).
    pub hadoop_counters: bool,
    /// The share of the input this run took (--shard), which its reports are about.
    pub shard: Option<Shard>,
}

/// Writes a line on stderr; not eprintln!, which panics when stderr is closed.
pub fn say(message: impl std::fmt::Display) {
    let _ = writeln!(progress::Stderr, "abatch: {message}");
}

/// What to say before the run starts: where input comes from when it is the terminal, that
/// --insecure is on, and that a dry run leaves -o alone.
pub fn before_the_run(reads_stdin_only: bool, display: &Display, dry_run_output: Option<&Path>) {
    if reads_stdin_only && std::io::stdin().is_terminal() && !display.quiet {
        say("reading JSON lines from the terminal; end with Ctrl-D");
    }
    if display.insecure {
        say("warning: --insecure: TLS certificates are not verified");
    }
    // --dry-run writes the requests to stdout and leaves every file alone.
    if let Some(output) = dry_run_output {
        say(format_args!(
            "--dry-run: the requests go to standard output; {} is left alone",
            output.display()
        ));
    }
}

/// What the first signal says: what the run now waits for (the requests in flight, or, when
/// every answer is in, the output to be written), and that a second stops at once.
pub fn stopping(in_flight: u64, timeout: Duration, draining: bool) -> String {
    let waiting = match in_flight {
        0 if draining => "waiting for the output to be written".to_string(),
        0 => "nothing is in flight".to_string(),
        n => format!(
            "waiting for the {} in flight, at most {}",
            summary::count(n, "request", "requests"),
            humantime::format_duration(timeout)
        ),
    };
    format!(
        "stopping: no new requests, and every record not yet answered goes to the dead \
         letters; {waiting} (signal again to stop at once)"
    )
}

/// How much of a body a message quotes.
pub const QUOTED_BODY: usize = 200;

/// The start of a body, on one line, for a message. Runs of whitespace, newlines included,
/// become one space, and control characters are escaped, so that what a server sends cannot
/// clear the screen, retitle the terminal or hide text in it.
pub fn quote(body: &[u8]) -> String {
    if body.iter().all(u8::is_ascii_whitespace) {
        return "(empty body)".into();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BODY)]);
    let mut quoted = String::with_capacity(text.len());
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            quoted.push(' ');
        }
        escape_controls(word, &mut quoted);
    }
    if body.len() > QUOTED_BODY {
        quoted.push_str(" …");
    }
    quoted
}

/// Appends `text` with each control character escaped as -v's log lines escape them
/// (tracing-subscriber's style): `\x1b` for ESC and the other C0 controls and DEL, `\u{9b}` for
/// a C1 control. Backslashes are left as they are: the result is for reading, not parsing.
fn escape_controls(text: &str, out: &mut String) {
    for c in text.chars() {
        match u32::from(c) {
            code @ (0..=0x1f | 0x7f) => {
                let _ = write!(out, "\\x{code:02x}");
            }
            code @ 0x80..=0x9f => {
                let _ = write!(out, "\\u{{{code:x}}}");
            }
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_and_on_one_line() {
        assert_eq!(quote(b""), "(empty body)");
        assert_eq!(quote(b"line one\nline  two\n"), "line one line two");
        assert_eq!(
            quote("\x1b[2J\x1b]0;title\x07 \u{9b}31m\x7f".as_bytes()),
            r"\x1b[2J\x1b]0;title\x07 \u{9b}31m\x7f"
        );
        let long = quote(&[b'x'; 1000]);
        assert!(long.len() < 210 && long.ends_with(" …"));
    }
}
