//! The exit statuses abatch documents, as a type.

use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every record has a result, or the reader of the output went away.
    Success = 0,
    /// A batch failed, an input line is not JSON, or a file could not be read or written.
    Failure = 1,
    /// The command line is wrong; nothing was read or sent.
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}
