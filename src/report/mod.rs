//! What people are told about the run: one set of [`Metrics`], and its views, the summary
//! line, the --stats document and the progress display; the -v log; how the run ended and
//! its exit status; and [`say`], for every message on stderr.

mod ending;
mod log;
mod metrics;
pub mod progress;
pub mod stats;
pub mod summary;

pub use ending::{Ending, conclude};
pub use log::log_requests;
pub use metrics::Metrics;

use std::fmt::Write as _;
use std::io::Write;

/// What people see on stderr.
pub struct Display {
    pub quiet: bool,
    pub verbose: u8,
    /// Progress forced on (--progress) or off (--no-progress).
    pub progress: bool,
    pub no_progress: bool,
    pub insecure: bool,
}

/// Writes a line on stderr; not eprintln!, which panics when stderr is closed.
pub fn say(message: impl std::fmt::Display) {
    let _ = writeln!(progress::Stderr, "abatch: {message}");
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
