//! The exit statuses abatch documents, as a type.

use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every record has a result, or the reader of the output went away.
    Success = 0,
    /// The run stopped early: a batch or an invalid input line failed under `--on-error
    /// abort`, an input is missing or cannot be read, or an output could not be written.
    Aborted = 1,
    /// The command line is wrong, or a file a flag names cannot be read; no input was read
    /// and nothing sent.
    Usage = 2,
    /// The run finished, but some records have no result (`--on-error skip` or `null`).
    SomeFailed = 3,
    /// SIGINT stopped the run.
    Interrupted = 130,
    /// SIGTERM stopped the run.
    Terminated = 143,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}
