//! The exit statuses abatch documents, as a type; --help and the man page list them from
//! here.

use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every record has a result, or the reader of the output went away.
    Success = 0,
    /// The run stopped early: a batch or an invalid input line failed under `--on-error
    /// abort`, an input is missing or cannot be read, an output could not be written, or the
    /// `--cache` file could not be opened.
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

impl Exit {
    /// Every status, in the order the documentation lists them.
    pub const DOCUMENTED: [Exit; 6] = [
        Exit::Success,
        Exit::Aborted,
        Exit::Usage,
        Exit::SomeFailed,
        Exit::Interrupted,
        Exit::Terminated,
    ];

    /// What the status means, as --help and the man page say it.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "every record has a result (or the reader of the output went away)",
            Exit::Aborted => {
                "aborted: a batch or an invalid input line failed under --on-error abort, more \
                 records failed than --max-errors allows, the server refused the run (401, 403, \
                 404, 405), an input is missing or cannot be read, an output could not be \
                 written, or the --cache file could not be opened"
            }
            Exit::Usage => {
                "usage error, a file named by a flag (--cacert, -H @FILE, --cache) that cannot be \
                 read or used included; nothing was read or sent, and no file touched"
            }
            Exit::SomeFailed => "finished, but some records failed (--on-error skip or null)",
            Exit::Interrupted => {
                "interrupted by SIGINT; a first signal starts nothing new and waits for the \
                 requests in flight, a second stops at once"
            }
            Exit::Terminated => "terminated by SIGTERM, as for SIGINT",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}
