//! `abatch-mock`: the mock inference endpoint as a command, to serve until Ctrl-C or to run
//! one command against it.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, ExitCode};

use abatch_mock::{Behavior, MockServer, Options};
use anyhow::Context;
use clap::Parser;

/// A mock inference endpoint: POST it a JSON array of records and it answers with
/// `{"echo": <record>}` for each, after the delays and failures you choose.
///
/// A record can script the request that carries it: {"id": 7, "mock": {"delay_ms": 300,
/// "status": 503}} delays that request by 300 ms and fails it with 503.
///
/// With a COMMAND, it serves on a free port, runs the command with ABATCH_URL set to its
/// endpoint, and exits with the command's status.
#[derive(Parser, Debug)]
#[command(name = "abatch-mock", version)]
#[command(after_help = "Examples:\n  \
    abatch-mock --port 8080 --latency 20ms\n  \
    abatch-mock --latency 5ms --latency-max 50ms -- abatch --ordered fixtures/reviews.jsonl")]
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

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let default_port = if args.command.is_empty() { 8080 } else { 0 };
    let addr = SocketAddr::new(args.host, args.port.unwrap_or(default_port));
    let running = args.command.is_empty();
    let options = Options {
        record: false,
        print: running && !args.quiet,
    };
    let server = MockServer::serve(addr, args.behavior, options, None)
        .with_context(|| format!("cannot listen on {addr}"))?;

    let Some((program, rest)) = args.command.split_first() else {
        eprintln!(
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
        .with_context(|| format!("cannot run {program}"))?;
    let code = status.code().unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
