//! abatch: stream newline-delimited JSON records through an HTTP inference endpoint in batches.

mod app;
mod batch;
mod cli;
mod client;
mod exit;
mod input;
mod order;
mod output;
#[cfg(test)]
mod testing;

use std::io::Write;
use std::process::ExitCode;

use crate::exit::Exit;

fn main() -> ExitCode {
    let cli = match cli::Cli::parse_checked() {
        Ok(cli) => cli,
        Err(usage) => {
            let _ = usage.print();
            return if usage.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            }
            .into();
        }
    };
    match app::run(cli) {
        Ok(()) => Exit::Success.into(),
        Err(err) => {
            // Not eprintln!, which panics when stderr is closed.
            let _ = writeln!(std::io::stderr(), "abatch: {err:#}");
            Exit::Failure.into()
        }
    }
}
