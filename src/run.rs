//! Wires the run top to bottom: input → cache lookups → batches → exchanges (bounded, ordered
//! or as completed) → results remembered → routing → output and dead letters; then hands the
//! ending to the report.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures::{Stream, StreamExt};

use crate::batch;
use crate::cache::Cache;
use crate::config::Config;
use crate::exit::Exit;
use crate::flow::exchange::{Exchanger, Outcome};
use crate::flow::replicas::Replicas;
use crate::http::Client;
use crate::input::{self, Record};
use crate::order;
use crate::output::route::{Routed, Router};
use crate::output::{self, Done, Finished, GiveUp, Output, Reader, resume};
use crate::report::hadoop::Counters;
use crate::report::progress::{self, Progress};
use crate::report::{self, Ending, Metrics, conclude, say};
use crate::stop::{Signals, Stop};
use crate::wire::Codec;

/// Finished batches that may wait behind a slow one, per batch outstanding, with --ordered.
const WAITING_PER_SLOT: usize = 4;
/// Most records looked up in the cache at once (those ready together).
const LOOKED_UP_TOGETHER: usize = 1024;

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
        cache,
        display,
    } = config;
    let started = Instant::now();
    // Caught from the start: a signal before anything is sent still ends the run in order.
    let signals = Signals::catch();
    // Every input opens before anything is sent or any file is touched.
    let sources = input::open(&input.paths, input.shard)?;
    let dry_run_output = files.output.as_deref().filter(|_| files.dry_run);
    report::before_the_run(input.paths.is_empty(), &display, dry_run_output);
    let client = Client::new(&http)?;
    let metrics = Metrics {
        cache: cache.is_some().then(Default::default),
        ..Metrics::default()
    };
    // Before the output: a cache another program holds too long refuses the run untouched.
    let cache = cache
        .map(|cache| Cache::open(&cache, &codec, &metrics))
        .transpose()?;
    let inputs: Vec<resume::Input> = sources
        .list
        .iter()
        .map(|s| resume::Input {
            name: s.name(),
            size: s.size(),
        })
        .collect();
    let (output, resumed) = Output::open(&files, &inputs)?;
    drop(inputs);

    let stop = Stop::default();
    let limit = Replicas::new(client.replicas(), concurrency, Instant::now());
    metrics
        .measures
        .limit(limit.size(), limit.adapts(), Instant::now());
    if limit.len() > 1 {
        let names = (0..limit.len())
            .map(|r| client.shown(r).to_owned())
            .collect();
        metrics.measures.replicas(names);
    }
    let exchanger = Exchanger::new(&flow, &client, &codec, &limit, &stop, &metrics);
    // Batches beyond the most attempts the limit allows would only wait.
    let outstanding = limit.most();
    let progress = progress::wanted(display.progress, display.no_progress, display.quiet)
        .then(|| Progress::start(sources.size()));

    let reading = input::records(sources, &input, stop.stopping().clone());
    let records = skipping(reading, &resumed, &codec, &metrics);
    let records = recalled(records, cache.as_ref());
    let exchanges = batch::batches(records, limits).map(|batch| {
        let exchanger = &exchanger;
        async move { Ok(exchanger.outcome(batch?).await) }
    });
    // The stream chain caps the batches outstanding; the limit, the attempts in flight. The
    // reorder window follows the limit as it changes.
    let completed = if files.ordered {
        let waiting = || WAITING_PER_SLOT * limit.size();
        order::ordered(exchanges, outstanding, waiting).left_stream()
    } else {
        exchanges.buffer_unordered(outstanding).right_stream()
    };
    let mut router = Router::new(
        flow.on_error,
        flow.max_errors,
        files.ordered,
        &stop,
        &metrics,
        &output,
        &codec,
    );
    let counters = display.hadoop_counters.then(Counters::default);
    let mut watch = Watch {
        stop: &stop,
        signals,
        progress,
        counters: counters.as_ref(),
        metrics: &metrics,
        give_up: output.give_up(),
        timeout: http.timeout,
    };
    let mut input_error = watch
        .around(
            route_all(completed, cache.as_ref(), &mut router),
            Phase::Routing,
        )
        .await;
    let Routed {
        first_failure,
        failed_batches,
        reader,
        stopped,
    } = router.finish();
    let input_ended = input_error.is_none() && stop.signalled().is_none() && failed_batches == 0;
    if input_ended {
        input_error = output::resume_overrun(resumed.count(), metrics.skipped.get(), &files);
    }
    // finish() first: it tells a closed pipe from a failed write. Signals still count while
    // it waits: a second one gives up on an output nobody reads.
    let finished = watch.around(output.finish(), Phase::Draining).await;
    let reader_gone = reader == Reader::Gone || finished.reader == Reader::Gone;
    let (input_error, opened) = account_output(finished, &metrics, input_error);
    if let Some(counters) = &counters {
        counters.report(&metrics);
    }

    let ending = Ending {
        metrics: &metrics,
        signal: stop.signalled(),
        first_failure,
        failed_batches,
        stopped,
        input_error,
        reader_gone,
        elapsed: started.elapsed(),
        errors_place: files.errors_place(),
        output: files.output.as_deref(),
        stats: files.written(&files.stats),
        dry_run: files.dry_run,
    };
    let exit = conclude(&display, outstanding, ending);
    Ok(output::empty_after_a_clean_run(exit, opened, &files))
}

/// Takes the writer's word for what was written (some answers may have become dead letters
/// instead), and adds a failure of the output to the run's error; says whether the output
/// file was opened.
fn account_output(
    finished: Finished,
    metrics: &Metrics,
    error: Option<anyhow::Error>,
) -> (Option<anyhow::Error>, bool) {
    let written = finished.written;
    metrics.written.set(written.results);
    Metrics::add(&metrics.unsent, written.given_up as usize);
    let error = match (error, finished.error) {
        (Some(first), Some(then)) => Some(anyhow!("{first:#}; also, {then:#}")),
        (first, then) => first.or(then),
    };
    (error, written.opened)
}

/// Routes every outcome as it comes (its fresh results remembered in `cache` first), until
/// they end or nobody reads the output; returns the input error that ended them, if one did.
async fn route_all(
    completed: impl Stream<Item = anyhow::Result<Outcome>>,
    cache: Option<&Cache<'_>>,
    router: &mut Router<'_>,
) -> Option<anyhow::Error> {
    let mut completed = std::pin::pin!(completed);
    let mut input_error = None;
    loop {
        // Fresh results are committed within their time even while no outcome comes.
        let due = cache.and_then(Cache::due);
        let outcome = tokio::select! {
            outcome = completed.next() => outcome,
            () = until(due) => {
                if let Some(cache) = cache {
                    cache.commit();
                }
                continue;
            }
        };
        let Some(outcome) = outcome else { break };
        match outcome {
            Ok(outcome) => {
                if let Some(cache) = cache {
                    cache.remember(&outcome);
                }
                router.route(outcome).await;
            }
            Err(error) => input_error = Some(error),
        }
        if router.reader() == Reader::Gone {
            break;
        }
    }
    if let Some(cache) = cache {
        cache.commit();
    }
    input_error
}

/// Resolves at `due`, or never.
async fn until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// What the run is doing while it is watched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sending and routing outcomes: the progress display is drawn.
    Routing,
    /// Every outcome is routed; the output is being written.
    Draining,
}

/// What the run does beside its work: the progress display, and what each signal says and
/// does (see [`Stop`]).
struct Watch<'a> {
    stop: &'a Stop,
    signals: Option<Signals>,
    progress: Option<Progress>,
    /// --hadoop-counters.
    counters: Option<&'a Counters>,
    metrics: &'a Metrics,
    give_up: GiveUp,
    timeout: Duration,
}

impl Watch<'_> {
    /// Does `work`, acting on signals the while (and drawing the progress display while
    /// routing); returns what `work` gives.
    async fn around<T>(&mut self, work: impl Future<Output = T>, phase: Phase) -> T {
        let Watch {
            stop,
            signals,
            progress,
            counters,
            metrics,
            give_up,
            timeout,
        } = self;
        let counters = counters.filter(|_| phase == Phase::Routing);
        let (progress, metrics, timeout) = (&*progress, *metrics, *timeout);
        let first_signal = || {
            // Off the screen before the message, which it would otherwise be drawn after.
            if let Some(progress) = progress {
                progress.hide();
            }
            say(report::stopping(
                metrics.measures.requests_in_flight(),
                timeout,
                phase == Phase::Draining,
            ));
        };
        let second_signal = || {
            give_up.now();
            say("stopping at once: records in flight go to the dead letters, unanswered");
        };
        let show_progress = async {
            if let Some(progress) = progress.as_ref().filter(|_| phase == Phase::Routing) {
                // Off the screen as soon as the run stops, so that no stale frame stays.
                tokio::select! {
                    () = progress.run(metrics) => {}
                    _ = stop.stopped() => progress.hide(),
                }
            }
            std::future::pending::<()>().await;
        };
        let report_counts = async {
            if let Some(counters) = counters {
                counters.run(metrics).await;
            }
            std::future::pending::<()>().await;
        };
        let done = tokio::select! {
            biased;
            done = work => done,
            () = stop.watch_signals(signals, &first_signal, &second_signal) => {
                unreachable!("signals are watched until the run ends")
            }
            () = show_progress => unreachable!("the progress display runs until the run ends"),
            () = report_counts => unreachable!("counts are reported until the run ends"),
        };
        self.hide();
        done
    }

    fn hide(&self) {
        if let Some(progress) = &self.progress {
            progress.hide();
        }
    }
}

/// The records of `reading`, less those `done` already (their results are in the output,
/// --resume), counted as skipped or read.
fn skipping<'a>(
    reading: impl Stream<Item = anyhow::Result<Record>> + 'a,
    done: &'a Done,
    codec: &'a Codec,
    metrics: &'a Metrics,
) -> impl Stream<Item = anyhow::Result<Record>> + 'a {
    let mut seen = 0;
    reading.filter(move |record| {
        let skip = match record {
            Ok(record) => {
                seen += 1;
                done.has(record, seen - 1, codec)
            }
            Err(_) => false,
        };
        match record {
            _ if skip => Metrics::add(&metrics.skipped, 1),
            Ok(record) if !record.blank => Metrics::add(&metrics.read, 1),
            _ => {}
        }
        futures::future::ready(!skip)
    })
}

/// The records of `records`, each looked up in `cache` when there is one (--cache), those
/// read together at once.
fn recalled<'a>(
    records: impl Stream<Item = anyhow::Result<Record>> + 'a,
    cache: Option<&'a Cache<'a>>,
) -> impl Stream<Item = anyhow::Result<Record>> + 'a {
    let Some(cache) = cache else {
        return records.left_stream();
    };
    let looked_up = records
        .ready_chunks(LOOKED_UP_TOGETHER)
        .flat_map(move |mut records| {
            cache.recall(&mut records);
            futures::stream::iter(records)
        });
    looked_up.right_stream()
}
