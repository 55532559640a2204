//! Turns one batch into its outcome: sends it, tries again what may pass on another attempt
//! (backoff, Retry-After), and sends the halves of a batch the server rejects, so that only
//! the records at fault fail. Before each attempt starts it takes a slot of the concurrency
//! limit and waits out the shared cooldown, the request rate and the token budget; after it,
//! the limit learns how it went. Every record of the batch comes back, answered or not, so
//! that none is lost. Once the run is stopping no attempt starts and no wait goes on; once
//! attempts in flight are given up, they end at once; a batch past its --deadline fails.
//! A batch of records the result cache answers is answered at once, without a slot; a batch
//! of blank lines (--aligned) is neither sent nor left unsent. With several replicas, each
//! attempt goes to the one `Replicas` hands it, and a replica that fails is told so.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::batch::{self, Batch};
use crate::cli::OnError;
use crate::flow::Settings;
use crate::flow::cooldown::Cooldown;
use crate::flow::limit::Ended;
use crate::flow::pace::Pace;
use crate::flow::replicas::Replicas;
use crate::flow::retry::{GiveUp, Policy};
use crate::flow::tokens::Budget;
use crate::http::{Client, Exchanged, Failure};
use crate::input::Record;
use crate::report::Metrics;
use crate::stop::{Stop, Unsent};
use crate::wire::{self, Codec, Input, Meta};

/// A batch's records and what became of them.
pub struct Outcome {
    pub records: Vec<Record>,
    /// Consecutive runs of records, in record order, covering all of them.
    pub parts: Vec<Part>,
}

pub enum Part {
    /// One result per record, after this many attempts: 0 when the result cache (--cache)
    /// answered them.
    Answered {
        results: Vec<Box<RawValue>>,
        attempts: u32,
    },
    /// The server failed these records for good.
    Failed {
        records: usize,
        failure: Failure,
        attempts: u32,
    },
    /// These records were never answered because the run stopped first, after `attempts`
    /// attempts (the last one given up, if any).
    Unsent {
        records: usize,
        why: Unsent,
        attempts: u32,
    },
    /// Blank lines kept (--aligned): nothing to send, a null line each.
    Blank { records: usize },
    /// --dry-run: the request that would have carried these records, as a JSON line; none
    /// for records the result cache answers, which no request would carry.
    Shown {
        records: usize,
        request: Option<Box<RawValue>>,
    },
}

impl Part {
    pub fn len(&self) -> usize {
        match self {
            Part::Answered { results, .. } => results.len(),
            Part::Failed { records, .. }
            | Part::Unsent { records, .. }
            | Part::Blank { records }
            | Part::Shown { records, .. } => *records,
        }
    }
}

pub struct Exchanger<'a> {
    client: &'a Client,
    /// How records become a body, and an answer results.
    codec: &'a Codec,
    policy: Policy,
    pace: Pace,
    /// --tpm.
    budget: Option<Budget>,
    cooldown: Cooldown,
    /// The replicas of the endpoint, each with its concurrency limit.
    replicas: &'a Replicas,
    stop: &'a Stop,
    metrics: &'a Metrics,
    /// Whether a failed batch stops the run (--on-error abort).
    aborts: bool,
    /// Show each request instead of sending it.
    dry_run: bool,
    /// Fail, unsent, every record the result cache does not answer (--cache-only).
    cache_only: bool,
    /// The longest a batch may take, retries and waits included.
    deadline: Option<Duration>,
    /// This run's id, for Idempotency-Key headers, when they are asked for.
    run: Option<String>,
}

/// One request's records: which batch, and where they sit in it.
#[derive(Clone, Copy)]
struct Request<'r> {
    batch: u64,
    /// The position in the batch of the first record, and the batch's size.
    first: usize,
    whole: usize,
    records: &'r [Record],
    /// When the batch's first attempt was sent: its --deadline counts from there.
    first_sent: &'r Cell<Option<Instant>>,
}

impl<'r> Request<'r> {
    /// The request for `records`, `from` the start of this one's.
    fn part(self, from: usize, records: &'r [Record]) -> Request<'r> {
        Request {
            first: self.first + from,
            records,
            ..self
        }
    }

    /// `RUN-BATCH` for a whole batch, `RUN-BATCH-FIRST..END` for part of one (its records'
    /// positions in the batch, from 0): the same for every attempt at this request, and
    /// different from every other request.
    fn idempotency_key(&self, run: &str) -> String {
        let end = self.first + self.records.len();
        if self.first == 0 && end == self.whole {
            format!("{run}-{}", self.batch)
        } else {
            format!("{run}-{}-{}..{end}", self.batch, self.first)
        }
    }

    /// When the batch is past `limit` (--deadline), once its first attempt was sent.
    fn deadline(&self, limit: Option<Duration>) -> Option<Instant> {
        Some(self.first_sent.get()? + limit?)
    }
}

/// Why an attempt was cut short.
enum Cut {
    /// The run stopped, after this many attempts (this one included if it was sent).
    Stopped(Unsent, u32),
    /// The batch is past its --deadline.
    Deadline,
}

impl<'a> Exchanger<'a> {
    /// Exchanges as `flow` says (retries, splitting, rate, error policy, dry run), through
    /// `client`, each attempt holding a slot of `limit`.
    pub fn new(
        flow: &Settings,
        client: &'a Client,
        codec: &'a Codec,
        replicas: &'a Replicas,
        stop: &'a Stop,
        metrics: &'a Metrics,
    ) -> Exchanger<'a> {
        Exchanger {
            client,
            codec,
            policy: flow.policy,
            pace: Pace::new(flow.rate),
            budget: flow.tpm.map(|tpm| Budget::new(tpm.get())),
            cooldown: Cooldown::new(flow.policy.max_wait),
            replicas,
            stop,
            metrics,
            aborts: flow.on_error == OnError::Abort,
            dry_run: flow.dry_run,
            cache_only: flow.cache_only,
            deadline: flow.deadline,
            run: flow
                .idempotency_key
                .then(|| format!("{:016x}", fastrand::u64(..))),
        }
    }

    /// Sends `batch` (unless the run is stopping) and returns what became of each record.
    pub async fn outcome(&self, batch: Batch) -> Outcome {
        let mut records = batch.records;
        // Blank lines are not records: never sent, nor left unsent.
        if records.iter().all(|record| record.blank) {
            return Outcome {
                parts: vec![Part::Blank {
                    records: records.len(),
                }],
                records,
            };
        }
        if let Some(why) = self.stop.no_new_attempts() {
            // Read, but never to be sent: an invalid line read ahead too.
            return Outcome {
                parts: vec![Part::Unsent {
                    records: records.len(),
                    why,
                    attempts: 0,
                }],
                records,
            };
        }
        if let Some(results) = remembered(&mut records) {
            // The cache answers them: nothing to send, or to show.
            let part = match self.dry_run {
                true => Part::Shown {
                    records: results.len(),
                    request: None,
                },
                false => Part::Answered {
                    results,
                    attempts: 0,
                },
            };
            return Outcome {
                parts: vec![part],
                records,
            };
        }
        if let Some(problem) = invalid_line(&records) {
            // Nothing to send: it fails alone.
            let failure = Failure::Line(problem.to_string());
            return Outcome {
                parts: vec![self.failed(records.len(), failure, 0)],
                records,
            };
        }
        if self.cache_only {
            return Outcome {
                parts: vec![self.failed(records.len(), Failure::Uncached, 0)],
                records,
            };
        }
        let metrics = self.metrics;
        Metrics::add(&metrics.batches, 1);
        let number = metrics.batches.get();
        metrics.measures.batch(records.len(), batch.flush);
        tracing::debug!(
            "batch {number} ({}): {} records, sent {}",
            batch::span(&records),
            records.len(),
            batch.flush
        );
        let in_flight = Metrics::count(&metrics.in_flight);
        let first_sent = Cell::new(None);
        let whole = Request {
            batch: number,
            first: 0,
            whole: records.len(),
            records: &records,
            first_sent: &first_sent,
        };
        let parts = self.parts(whole).await;
        drop(in_flight);
        Outcome { records, parts }
    }

    /// The parts for the batch. A record the codec cannot send fails alone, at once; the runs
    /// of records between such records go as requests of their own.
    async fn parts(&self, whole: Request<'_>) -> Vec<Part> {
        let records = whole.records;
        let Some(inputs) = self.codec.inputs(records.iter().map(|r| &*r.json)) else {
            return self.sent(whole, &[]).await;
        };
        let mut parts = Vec::new();
        let mut start = 0;
        for end in 0..=records.len() {
            let problem = inputs.get(end).and_then(|input| input.as_ref().err());
            if end < records.len() && problem.is_none() {
                continue;
            }
            if start < end {
                let run: Vec<Input> = inputs[start..end]
                    .iter()
                    .filter_map(|input| input.as_ref().ok().copied())
                    .collect();
                let request = whole.part(start, &records[start..end]);
                parts.extend(Box::pin(self.sent(request, &run)).await);
            }
            if let Some(problem) = problem {
                parts.push(self.failed(1, Failure::Record(problem.clone()), 0));
            }
            start = end + 1;
        }
        parts
    }

    /// The parts for `request` (whose inputs are `inputs`, or none on the plain path): all
    /// answered, or, for a rejected batch that splits, the parts of each half in turn. With
    /// --dry-run, the request instead.
    async fn sent(&self, request: Request<'_>, inputs: &[Input<'_>]) -> Vec<Part> {
        let records = request.records;
        let number = request.batch;
        let failed = |failure, attempts| vec![self.failed(records.len(), failure, attempts)];
        let body = match self.codec.body(records, inputs) {
            Ok(body) => Bytes::from(body),
            Err(problem) => return failed(Failure::Record(problem), 0),
        };
        if self.dry_run {
            return vec![Part::Shown {
                records: records.len(),
                request: Some(self.client.show(
                    &body,
                    self.key(&request).as_deref(),
                    self.codec.path(records),
                )),
            }];
        }
        let (failure, attempts) = match self.attempts(request, body).await {
            Tried::Answered(results, attempts) => {
                return vec![Part::Answered { results, attempts }];
            }
            Tried::Unsent(why, attempts) => {
                return vec![Part::Unsent {
                    records: records.len(),
                    why,
                    attempts,
                }];
            }
            Tried::Failed(failure, attempts) => (failure, attempts),
        };
        if records.len() > 1 && self.policy.splits(&failure) {
            let half = records.len() / 2;
            let (first, second) = records.split_at(half);
            let (first_inputs, second_inputs) = inputs.split_at(half.min(inputs.len()));
            tracing::debug!(
                "batch {number}: splitting {} records into {} and {}",
                records.len(),
                first.len(),
                second.len()
            );
            let (first, second) = (request.part(0, first), request.part(half, second));
            let mut parts = Box::pin(self.sent(first, first_inputs)).await;
            parts.extend(Box::pin(self.sent(second, second_inputs)).await);
            return parts;
        }
        failed(failure, attempts)
    }

    /// Attempt number `attempt` at sending `body` for `request`: a slot of the limit, the
    /// waits (the shared cooldown, the request rate, the token budget), the exchange, the
    /// answer read by the codec; how it ended and how long it took. Or, when the run stops
    /// first, why and how many attempts were made; or that the batch is past its deadline.
    /// `made` counts the attempt once it is sent.
    async fn attempt(
        &self,
        request: &Request<'_>,
        body: &Bytes,
        attempt: u32,
        made: &Cell<u32>,
    ) -> Result<Attempted, Cut> {
        let unsent = |why| Cut::Stopped(why, attempt - 1);
        if let Some(why) = self.stop.no_new_attempts() {
            return Err(unsent(why));
        }
        let slot = tokio::select! {
            biased;
            why = self.stop.stopped() => return Err(unsent(why)),
            slot = self.replicas.acquire() => slot,
        };
        let tokens = Budget::estimate(body.len());
        self.cooldown.wait(self.stop).await.map_err(unsent)?;
        self.pace.wait(self.stop).await.map_err(unsent)?;
        if let Some(budget) = &self.budget {
            budget.wait(tokens, self.stop).await.map_err(unsent)?;
            // A cooldown may have begun meanwhile.
            self.cooldown.wait(self.stop).await.map_err(unsent)?;
        }
        let deadline = request.deadline(self.deadline);
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            return Err(Cut::Deadline);
        }
        made.set(attempt);
        if request.first_sent.get().is_none() {
            request.first_sent.set(Some(Instant::now()));
        }
        let deadline = request.deadline(self.deadline);
        if attempt > 1 {
            Metrics::add(&self.metrics.retries, 1);
        }
        Metrics::add(&self.metrics.requests, 1);
        let measures = &self.metrics.measures;
        let sent_now = measures.attempt_started();
        let started = Instant::now();
        let key = self.key(request);
        let path = self.codec.path(request.records);
        let replica = slot.replica;
        let records = request.records.len();
        let Exchanged { answer, exhausted } = tokio::select! {
            biased;
            why = self.stop.in_flight_cancelled() => {
                measures.attempt_given_up(started.elapsed());
                return Err(Cut::Stopped(why, attempt));
            }
            () = until(deadline) => {
                // The slowest attempts are the clearest sign of a queue: the limit hears of
                // this one as of a timeout.
                let took = started.elapsed();
                measures.attempt_given_up(took);
                let in_flight = measures.requests_in_flight() as usize;
                self.replicas.attempt_ended(replica, started.into_std(), took, records, Ended::Overloaded, in_flight);
                // No answer in all that time: the replica is unwell.
                self.replica_went(replica, started, took, Some(true));
                return Err(Cut::Deadline);
            }
            sent = self.client.send(replica, body.clone(), key.as_deref(), path) => sent,
        };
        if let Some(exhausted) = exhausted {
            let why = format!("rate limit reached ({})", exhausted.header);
            self.pause(exhausted.wait, &why);
        }
        // An answer the codec cannot read fails the attempt like any other.
        let sent = answer.and_then(|reply| {
            let status = reply.status;
            measures.received(reply.wire, reply.body.len());
            if let Some(usage) = wire::usage(&reply.body) {
                self.metrics.tokens(usage);
                if let Some(budget) = &self.budget {
                    budget.correct(tokens, usage.total, Instant::now());
                }
            }
            let meta = Meta {
                status: status.as_u16(),
                request_id: reply.request_id.as_deref(),
            };
            match self.codec.results(&reply.body, records, meta) {
                Ok(results) => Ok(Answer { status, results }),
                Err(problem) => Err(Failure::Response { status, problem }),
            }
        });
        // Reading the answer is part of the attempt.
        let took = started.elapsed();
        let status = match &sent {
            Ok(answer) => Ok(answer.status),
            Err(failure) => failure.status_or_kind(),
        };
        measures.attempt_finished(took, status);
        let out = self.replica_went(replica, started, took, sent.as_ref().err().map(unwell));
        // Requests on their way, this one included (not slots, which attempts also hold
        // while they wait for the cooldown, the rate or the token budget).
        let in_flight = measures.requests_in_flight() as usize;
        drop(sent_now);
        let change = self.replicas.attempt_ended(
            replica,
            started.into_std(),
            took,
            records,
            ended(&sent),
            in_flight,
        );
        drop(slot);
        if let Some(change) = change {
            tracing::info!(
                "concurrency limit {} → {}: {}",
                change.from,
                change.to,
                change.why
            );
            let size = self.replicas.size();
            measures.limit(size, true, std::time::Instant::now());
        }
        Ok(Attempted {
            sent,
            took,
            replica,
            out,
        })
    }

    /// Tells the replicas, and the replica's counts, how an attempt that `started` on `replica`
    /// and took `took` went: answered, or failed (unwell or not). Returns for how long it
    /// left the replica out, if it did.
    fn replica_went(
        &self,
        replica: usize,
        started: Instant,
        took: Duration,
        failed: Option<bool>,
    ) -> Option<Duration> {
        let unwell = failed == Some(true);
        let out = self.replicas.went(replica, unwell, started, Instant::now());
        if self.replicas.len() > 1 {
            let out_until = self.replicas.out_until(replica).map(Instant::into_std);
            let measures = &self.metrics.measures;
            measures.replica(replica, took, failed.is_some(), out_until);
        }
        out
    }

    /// The Idempotency-Key of `request`, when they are asked for.
    fn key(&self, request: &Request<'_>) -> Option<String> {
        self.run.as_deref().map(|run| request.idempotency_key(run))
    }

    /// No attempt of any batch starts for `wait` (at most --retry-max-wait).
    fn pause(&self, wait: Duration, why: &str) {
        if let Some(paused) = self.cooldown.pause(wait, Instant::now()) {
            let ms = paused.as_secs_f64() * 1000.0;
            tracing::info!("no new attempt for {ms:.0} ms: {why}");
        }
    }

    /// Records that failed for good; under `--on-error abort`, nothing new starts after them
    /// (not even the other half of a split batch).
    fn failed(&self, records: usize, failure: Failure, attempts: u32) -> Part {
        if self.aborts || failure.fatal().is_some() {
            self.stop.abort();
        }
        Part::Failed {
            records,
            failure,
            attempts,
        }
    }

    /// Sends `request` until it is answered, the policy gives up, the run stops or the batch
    /// is past its deadline.
    async fn attempts(&self, request: Request<'_>, body: Bytes) -> Tried {
        let number = request.batch;
        let records = request.records;
        let made = Cell::new(0);
        let mut last = None;
        let mut attempt = 1;
        loop {
            // The waits before a retry count against the deadline too.
            let deadline = request.deadline(self.deadline);
            let attempted = within(deadline, self.attempt(&request, &body, attempt, &made));
            let Attempted {
                sent,
                took,
                replica,
                out,
            } = match attempted.await {
                Some(Ok(attempted)) => attempted,
                Some(Err(Cut::Stopped(why, made))) => return Tried::Unsent(why, made),
                Some(Err(Cut::Deadline)) | None => {
                    return Tried::Failed(self.past_deadline(last), made.get());
                }
            };
            let span = || batch::span(records);
            let ms = took.as_secs_f64() * 1000.0;
            // With several replicas, which one it went to.
            let on = match self.replicas.len() {
                1 => String::new(),
                _ => format!(" on {}", self.client.host(replica)),
            };
            let failure = match sent {
                Ok(Answer { status, results }) => {
                    tracing::info!(
                        "batch {number} ({}), {} records, attempt {attempt}{on}: {status} in {ms:.1} ms",
                        span(),
                        records.len()
                    );
                    return Tried::Answered(results, attempt);
                }
                Err(failure) => failure,
            };
            let mut retry = self.policy.retry(&failure, attempt, fastrand::f64());
            // A replica left out: the retry goes at once to another one that is up, whatever
            // the failure (a certificate one replica has wrong is no reason to give up), as
            // long as retries are left; and the others need not pause for it.
            let elsewhere = out.is_some() && self.replicas.another_is_up(replica, Instant::now());
            if elsewhere && attempt <= self.policy.retries {
                retry = Ok(Duration::ZERO);
            }
            tracing::info!(
                "batch {number} ({}), {} records, attempt {attempt}{on}: {failure} after {ms:.1} ms{}{}",
                span(),
                records.len(),
                match out {
                    Some(out) => format!(
                        "; {} left out for {}",
                        self.client.host(replica),
                        humantime::format_duration(out)
                    ),
                    None => String::new(),
                },
                match retry {
                    Ok(wait) => format!("; retrying in {:.0} ms", wait.as_secs_f64() * 1000.0),
                    Err(_) => String::new(),
                }
            );
            if let Some(wait) = self.cooldown_after(&failure).filter(|_| !elsewhere) {
                self.pause(wait, &format!("batch {number} got {failure}"));
            }
            let wait = match retry {
                Ok(wait) => wait,
                Err(GiveUp::Done) => return Tried::Failed(failure, attempt),
                Err(GiveUp::WaitTooLong(asked)) => {
                    let failure = Failure::WaitTooLong {
                        failure: Box::new(failure),
                        asked,
                        max_wait: self.policy.max_wait,
                    };
                    return Tried::Failed(failure, attempt);
                }
            };
            if request
                .deadline(self.deadline)
                .is_some_and(|d| Instant::now() + wait >= d)
            {
                // The retry could not start in time: no use waiting for it.
                return Tried::Failed(self.past_deadline(Some(failure)), attempt);
            }
            last = Some(failure);
            if let Err(why) = self.stop.sleep_until(Instant::now() + wait).await {
                return Tried::Unsent(why, attempt);
            }
            attempt += 1;
        }
    }

    /// How long every new attempt waits after `failure`: a 429 or a 503 pauses them all for
    /// the Retry-After it carries; a 429 without one, for as long as a first retry would wait
    /// (not this batch's own backoff, which grows with its attempts: one batch retried often
    /// must not hold the others back for long).
    fn cooldown_after(&self, failure: &Failure) -> Option<Duration> {
        let Failure::Status {
            status,
            retry_after,
            ..
        } = failure
        else {
            return None;
        };
        match (status.as_u16(), retry_after) {
            (429 | 503, Some(asked)) => Some(asked.wait),
            (429, None) => Some(self.policy.backoff.mul_f64(fastrand::f64())),
            _ => None,
        }
    }

    fn past_deadline(&self, last: Option<Failure>) -> Failure {
        Failure::Deadline {
            limit: self.deadline.unwrap_or_default(),
            last: last.map(Box::new),
        }
    }
}

/// Resolves at `deadline`, or never.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What `work` gives, unless `deadline` passes first.
async fn within<T>(deadline: Option<Instant>, work: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
        None => Some(work.await),
    }
}

/// An attempt answered: its status, and one result per record, in record order.
struct Answer {
    status: reqwest::StatusCode,
    results: Vec<Box<RawValue>>,
}

/// One attempt that was made.
struct Attempted {
    sent: Result<Answer, Failure>,
    took: Duration,
    /// The replica it went to.
    replica: usize,
    /// For how long the failure left its replica out of rotation, if it did.
    out: Option<Duration>,
}

/// Whether a failure says the replica itself is unwell: it refused the connection, timed out,
/// broke off, refused TLS, or answered 5xx.
fn unwell(failure: &Failure) -> bool {
    match failure {
        Failure::Connect { .. }
        | Failure::Timeout(_)
        | Failure::Transport(_)
        | Failure::Certificate { .. } => true,
        Failure::Status { status, .. } => status.is_server_error(),
        _ => false,
    }
}

/// How an attempt ended, as the concurrency limit sees it: only answers that were read teach
/// it latency.
fn ended(sent: &Result<Answer, Failure>) -> Ended {
    match sent {
        Ok(_) | Err(Failure::Response { .. }) => Ended::Answered,
        Err(Failure::Timeout(_)) => Ended::Overloaded,
        // Only the refusal itself: a batch past its deadline or told to wait too long was
        // heard of at its attempts. A gateway's timeout (504) is a timeout.
        Err(Failure::Status { status, .. }) if matches!(status.as_u16(), 429 | 503 | 504) => {
            Ended::Overloaded
        }
        Err(_) => Ended::Failed,
    }
}

/// How the attempts at one request ended.
enum Tried {
    /// Answered at this attempt.
    Answered(Vec<Box<RawValue>>, u32),
    /// The policy gave up after this many attempts.
    Failed(Failure, u32),
    /// The run stopped after this many attempts (the last one given up, if any).
    Unsent(Unsent, u32),
}

/// The results the cache holds for a batch's records, taken out of them, when it holds one
/// for each (the batcher keeps such records in batches of their own).
fn remembered(records: &mut [Record]) -> Option<Vec<Box<RawValue>>> {
    if records.is_empty() || !records.iter().all(Record::is_cached) {
        return None;
    }
    let taken = records
        .iter_mut()
        .filter_map(|record| record.cache.as_mut()?.result.take());
    Some(taken.collect())
}

/// Why a batch is one invalid input line, if it is (the batcher sends such a line alone).
fn invalid_line(records: &[Record]) -> Option<&str> {
    match records {
        [record] => record.invalid.as_deref(),
        _ => None,
    }
}
