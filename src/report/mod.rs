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

use std::io::Write;

/// Writes a line on stderr; not eprintln!, which panics when stderr is closed.
pub fn say(message: impl std::fmt::Display) {
    let _ = writeln!(progress::Stderr, "abatch: {message}");
}
