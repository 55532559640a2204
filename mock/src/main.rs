//! `abatch-mock`: the mock inference endpoint as a command, to serve until Ctrl-C or to run
//! one command against it.

use std::io::{ErrorKind, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, ExitCode};

use abatch_mock::{Behavior, MockServer, Options};
use clap::Parser;

/// A mock inference endpoint: POST it a JSON array of records and it answers with
/// `{"echo": <record>}` for each, after the delays and failures you choose.
///
/// A record can script the request that carries it: {"id": 7, "mock": {"delay_ms": 300,
/// "status": 503}} delays that request by 300 ms and fails it with 503, and {"mock":
/// {"headers": {"x-ratelimit-remaining-requests": "0"}, "retry_after": "1"}} adds those headers
/// to its answer.
///
/// With a COMMAND, it serves on a free port, runs the command with ABATCH_URL set to its
/// endpoint, and exits with the command's status.
#[derive(Parser, Debug)]
#[command(name = "abatch-mock", version)]
#[command(after_help = "Examples:\n  \
    abatch-mock --port 8080 --latency 20ms\n  \
    abatch-mock --latency 5ms --latency-max 50ms -- abatch --ordered fixtures/reviews.jsonl\n  \
    abatch-mock --latency 50ms --capacity-schedule 0s:16,5s:4 --ratelimit 200/1s -- abatch fixtures/reviews.jsonl\n\n\
    Exit status: the COMMAND's (128 + N if signal N ended it); 1 if the server cannot listen; \
    126 if the COMMAND cannot be run, 127 if it is not found, as in a shell; 2 for a usage \
    error.")]
struct Args {
    /// Port to listen on (default: 8080, or any free port when running a COMMAND)
    #[arg(short, long)]
    port: Option<u16>,

    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,

    /// Do not print a line per request
    #[arg(short, long)]
    quiet: bool,

    #[command(flatten)]
    behavior: Behavior,

    /// Command to run against the server, with ABATCH_URL set
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Why the mock stopped without serving or running its command: one line, and a status.
struct Failure {
    message: String,
    status: u8,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(status) => status,
        Err(failure) => {
            // Not eprintln!, which panics when stderr is closed.
            let _ = writeln!(std::io::stderr(), "abatch-mock: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, Failure> {
    let default_port = if args.command.is_empty() { 8080 } else { 0 };
    let addr = SocketAddr::new(args.host, args.port.unwrap_or(default_port));
    let running = args.command.is_empty();
    let options = Options {
        record: false,
        print: running && !args.quiet,
    };
    let server = MockServer::serve(addr, args.behavior, options, None).map_err(|e| Failure {
        message: format!("cannot listen on {addr}: {e}"),
        status: 1,
    })?;

    let Some((program, rest)) = args.command.split_first() else {
        let _ = writeln!(
            std::io::stderr(),
            "abatch-mock: listening on {} (Ctrl-C to stop)",
            server.url()
        );
        loop {
            std::thread::park();
        }
    };
    let status = Command::new(program)
        .args(rest)
        .env("ABATCH_URL", server.url())
        .status()
        .map_err(|e| Failure {
            message: format!("cannot run {program}: {e}"),
            status: if e.kind() == ErrorKind::NotFound {
                127
            } else {
                126
            },
        })?;
    Ok(ExitCode::from(exit_code(status)))
}

/// A command's exit status as a shell gives it: its code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return u8::try_from(128 + signal).unwrap_or(u8::MAX);
    }
    status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks its own rules (groups, requirements, defaults) only when asked.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Args::command().debug_assert();
    }
}
