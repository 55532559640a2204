//! abatch: stream newline-delimited JSON records through an HTTP inference endpoint in batches.

mod batch;
mod cache;
mod cli;
mod config;
mod exit;
mod files;
mod flow;
mod generate;
mod http;
mod input;
mod order;
mod output;
mod report;
mod run;
mod stop;
#[cfg(test)]
mod testing;
mod wire;

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
    if let Some(kind) = cli.generate {
        return match generate::write(kind, &mut std::io::stdout().lock()) {
            Ok(()) => Exit::Success.into(),
            Err(e) => {
                report::say(format_args!("cannot write to standard output: {e}"));
                Exit::Aborted.into()
            }
        };
    }
    let config = match config::Config::new(cli) {
        Ok(config) => config,
        Err(usage) => {
            let _ = usage.print();
            return Exit::Usage.into();
        }
    };
    match run::run(config) {
        Ok(exit) => exit.into(),
        Err(err) => {
            report::say(format_args!("{err:#}"));
            Exit::Aborted.into()
        }
    }
}
