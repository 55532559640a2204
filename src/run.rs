//! Wires the run top to bottom: input → batches → exchanges (bounded, ordered or as
//! completed) → routing → output and dead letters; then hands the ending to the report.

use std::fs::File;
use std::io::IsTerminal;
use std::time::Instant;

use anyhow::anyhow;
use futures::StreamExt;

use crate::batch;
use crate::config::Config;
use crate::exit::Exit;
use crate::flow::exchange::Exchanger;
use crate::flow::limit::Limit;
use crate::http::Client;
use crate::input;
use crate::order;
use crate::output::route::{Routed, Router};
use crate::output::{self, Output, Reader, Sinks};
use crate::report::progress::{self, Progress};
use crate::report::summary;
use crate::report::{self, Ending, Metrics, conclude, say};
use crate::stop::{Signals, Stop};

/// Finished batches that may wait behind a slow one, per connection slot, with --ordered.
const WAITING_PER_SLOT: usize = 4;

pub fn run(config: Config) -> anyhow::Result<Exit> {
    report::log_requests(config.display.verbose);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the runtime: {e}"))?;
    let outcome = runtime.block_on(pipe(config));
    // Requests still in flight when the reader of the output went away are dropped.
    runtime.shutdown_background();
    outcome
}

async fn pipe(config: Config) -> anyhow::Result<Exit> {
    let Config {
        input,
        batch: limits,
        concurrency,
        http,
        codec,
        flow,
        files,
        display,
    } = config;
    let started = Instant::now();
    let mut signals = Signals::catch();
    // Every input opens before anything is sent or any file is touched.
    let sources = input::open(&input.paths)?;
    if input.paths.is_empty() && std::io::stdin().is_terminal() && !display.quiet {
        say("reading JSON lines from the terminal; end with Ctrl-D");
    }
    if display.insecure {
        say("warning: --insecure: TLS certificates are not verified");
    }
    let client = Client::new(&http)?;
    // --dry-run writes the requests to stdout and leaves every file alone.
    if let (true, Some(output)) = (files.dry_run, &files.output) {
        say(format_args!(
            "--dry-run: the requests go to standard output; {} is left alone",
            output.display()
        ));
    }
    if let Some(stats) = files.written(&files.stats) {
        output::writable(stats).map_err(|e| anyhow!("cannot create {}: {e}", stats.display()))?;
    }
    let resumed = match (files.written(&files.output), files.resume) {
        (Some(output), true) => output::complete_lines(output)?,
        _ => 0,
    };
    let sinks = Sinks {
        output: files.written(&files.output),
        errors: files.written(&files.errors),
        append: files.resume,
    };
    let output = Output::open(&sinks)?;
    let errors_place = sinks.errors_place();

    let stop = Stop::default();
    let tally = Metrics::default();
    let limit = Limit::new(concurrency.get());
    let exchanger = Exchanger::new(&flow, &client, &codec, &limit, &stop, &tally);
    let concurrency = concurrency.get();
    let progress = progress::wanted(display.progress, display.no_progress, display.quiet)
        .then(|| Progress::start(sources.size()));
    let taken = sources.taken();

    let mut to_skip = resumed;
    let reading = input::records(sources, input.max_line, stop.stopping().clone());
    let records = reading.filter(|record| {
        let skip = record.is_ok() && to_skip > 0;
        if skip {
            to_skip -= 1;
            Metrics::add(&tally.skipped, 1);
        } else if record.is_ok() {
            Metrics::add(&tally.read, 1);
        }
        futures::future::ready(!skip)
    });
    let exchanges = batch::batches(records, limits).map(|batch| {
        let exchanger = &exchanger;
        async move { Ok(exchanger.outcome(batch?).await) }
    });
    let completed = if files.ordered {
        order::ordered(exchanges, concurrency, WAITING_PER_SLOT * concurrency).left_stream()
    } else {
        exchanges.buffer_unordered(concurrency).right_stream()
    };

    let mut router = Router::new(flow.on_error, files.ordered, &stop, &tally, &output, &codec);
    let mut input_error = None;
    let drive = async {
        let mut completed = std::pin::pin!(completed);
        while let Some(outcome) = completed.next().await {
            match outcome {
                Ok(outcome) => router.route(outcome).await,
                Err(error) => input_error = Some(error),
            }
            if router.reader() == Reader::Gone {
                break;
            }
        }
    };
    let show_progress = async {
        if let Some(progress) = &progress {
            // Off the screen as soon as the run stops, so that no stale frame stays.
            tokio::select! {
                () = progress.run(&tally, &taken) => {}
                _ = stop.stopped() => progress.hide(),
            }
        }
        std::future::pending().await
    };
    let give_up = output.give_up();
    let first_signal = || {
        // Off the screen before the message, which it would otherwise be drawn after.
        if let Some(progress) = &progress {
            progress.hide();
        }
        let waiting = match tally.measures.requests_in_flight() {
            0 => "nothing is in flight".to_string(),
            n => format!(
                "waiting for the {} in flight, at most {}",
                summary::count(n, "request", "requests"),
                humantime::format_duration(http.timeout)
            ),
        };
        say(format_args!(
            "stopping: no new requests, and every record not yet answered goes to the dead \
             letters; {waiting} (signal again to stop at once)"
        ));
    };
    let second_signal = || {
        give_up.now();
        say("stopping at once: records in flight go to the dead letters, unanswered");
    };
    tokio::select! {
        biased;
        () = drive => {}
        () = stop.watch_signals(&mut signals, &first_signal, &second_signal) => {}
        () = show_progress => {}
    }
    if let Some(progress) = &progress {
        progress.hide();
    }
    let Routed {
        first_failure,
        failed_batches,
        reader,
    } = router.finish();
    let input_ended = input_error.is_none() && stop.signalled().is_none() && failed_batches == 0;
    if let Some(output) = files
        .output
        .as_ref()
        .filter(|_| input_ended && tally.skipped.get() < resumed)
    {
        input_error = Some(anyhow!(
            "--resume: {} held {resumed} lines, but the input has only {} records; \
             is it the output of another input?",
            output.display(),
            tally.skipped.get()
        ));
    }
    // finish() first: it tells a closed pipe from a failed write. Signals still count while
    // it waits: a second one gives up on an output nobody reads.
    let finished = tokio::select! {
        biased;
        finished = output.finish() => finished,
        () = stop.watch_signals(&mut signals, &first_signal, &second_signal) => unreachable!(),
    };
    // The writer's count is the truth: some answers may have become dead letters instead.
    let written = finished.written;
    tally.written.set(written.results);
    Metrics::add(&tally.unsent, written.given_up as usize);
    if let Some(error) = finished.error {
        input_error = Some(match input_error {
            None => error,
            Some(first) => anyhow!("{first:#}; also, {error:#}"),
        });
    }
    let reader_gone = reader == Reader::Gone || finished.reader == Reader::Gone;

    let ending = Ending {
        tally: &tally,
        signal: stop.signalled(),
        first_failure,
        failed_batches,
        input_error,
        reader_gone,
        elapsed: started.elapsed(),
        errors_place,
        output: files.output.as_deref(),
        stats: files.written(&files.stats),
        dry_run: files.dry_run,
    };
    let exit = conclude(&display, flow.on_error, concurrency, ending);
    // A clean run that had nothing to write still leaves its output, empty, as `>` would.
    if let (Exit::Success, false, false, Some(path)) = (
        exit,
        written.opened,
        files.resume,
        files.written(&files.output),
    ) {
        if let Err(e) = File::create(path) {
            say(format_args!("cannot create {}: {e}", path.display()));
            return Ok(Exit::Aborted);
        }
    }
    Ok(exit)
}
