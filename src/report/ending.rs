//! How a run ended: its exit status, the closing messages on stderr, and --stats.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

use crate::cli::ErrorBudget;
use crate::exit::Exit;
use crate::report::Display;
use crate::report::stats::Report;
use crate::report::summary::Summary;
use crate::report::{Metrics, say};

/// Why a failure stopped the run.
#[derive(Clone, Debug, PartialEq)]
pub enum Stopped {
    /// --on-error abort.
    Abort,
    /// A refusal no record would pass (401, 403, 404, 405), and what is likely wrong.
    Refused { status: u16, advice: &'static str },
    /// More records failed than --max-errors allows: `failed` of `judged`.
    Budget {
        failed: u64,
        judged: u64,
        budget: ErrorBudget,
    },
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Abort => Ok(()),
            Stopped::Refused { status, advice } => {
                write!(f, "stopped: HTTP {status}: {advice}")
            }
            Stopped::Budget {
                failed,
                judged,
                budget,
            } => {
                let allowed = match budget {
                    ErrorBudget::Records(n) => format!("{n} records"),
                    ErrorBudget::Percent(p) => format!("{p}% of the records"),
                };
                write!(
                    f,
                    "stopped: {failed} of {judged} records failed, more than --max-errors allows \
                     ({allowed}); the server may be broken: see the first failure above"
                )
            }
        }
    }
}

/// How a run ended, for the closing messages, the exit status and --stats.
pub struct Ending<'a> {
    pub metrics: &'a Metrics,
    pub signal: Option<Exit>,
    pub first_failure: Option<String>,
    pub failed_batches: usize,
    /// Why a failure stopped the run, when one did.
    pub stopped: Option<Stopped>,
    pub input_error: Option<anyhow::Error>,
    pub reader_gone: bool,
    pub elapsed: Duration,
    /// Where dead letters went: "in FILE" or "on stderr".
    pub errors_place: String,
    /// The output file, where --resume found earlier results.
    pub output: Option<&'a Path>,
    /// Where --stats goes (none in a dry run).
    pub stats: Option<&'a Path>,
    pub dry_run: bool,
}

/// Decides the exit status, says how the run ended on stderr, and writes --stats.
pub fn conclude(display: &Display, concurrency: usize, ending: Ending) -> Exit {
    let exit = if let Some(signal) = ending.signal {
        signal
    } else if ending.input_error.is_some() || ending.stopped.is_some() {
        Exit::Aborted
    } else if ending.metrics.unsent.get() > 0
        || (ending.metrics.failed.get() > 0 && !display.aligned)
    {
        // Aligned output holds a null line for each failed record: every line was written.
        Exit::SomeFailed
    } else {
        Exit::Success
    };
    if let Some(first) = ending.first_failure {
        let label = if ending.stopped == Some(Stopped::Abort) {
            ""
        } else {
            "first failure: "
        };
        match ending.failed_batches {
            0 | 1 => say(format_args!("{label}{first}")),
            n => say(format_args!(
                "{label}{first} (and {} more failed batches)",
                n - 1
            )),
        }
    }
    if let Some(stopped) = ending.stopped.as_ref().filter(|s| **s != Stopped::Abort) {
        say(stopped);
    }
    if let Some(input_error) = ending.input_error {
        say(format_args!("{input_error:#}"));
    }
    if !display.quiet || exit != Exit::Success {
        let output_name = ending.output.map(|p| p.display().to_string());
        say(Summary {
            shard: display.shard,
            metrics: ending.metrics,
            elapsed: ending.elapsed,
            errors: &ending.errors_place,
            reader_gone: ending.reader_gone,
            resumed_from: output_name.as_deref(),
            dry_run: ending.dry_run,
        });
    }
    if let Some(path) = ending.stats {
        let mut report = Report::new(ending.metrics, ending.elapsed, concurrency, exit as u8);
        report.shard = display.shard;
        let written = File::create(path).and_then(|file| {
            serde_json::to_writer_pretty(BufWriter::new(file), &report).map_err(Into::into)
        });
        if let Err(e) = written {
            say(format_args!("cannot write {}: {e}", path.display()));
            return Exit::Aborted;
        }
    }
    exit
}
