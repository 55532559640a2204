//! Turns one batch into its outcome: sends it, tries again what may pass on another attempt
//! (backoff, Retry-After, the request rate), and sends the halves of a batch the server
//! rejects, so that only the records at fault fail. Every record of the batch comes back,
//! answered or not, so that none is lost. Once the run is stopping no attempt starts and no
//! wait goes on; once attempts in flight are given up, they end at once.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::batch::{self, Batch};
use crate::cli::OnError;
use crate::flow::Settings;
use crate::flow::limit::{Ended, Limit};
use crate::flow::pace::Pace;
use crate::flow::retry::{GiveUp, Policy};
use crate::http::{Client, Failure};
use crate::input::Record;
use crate::report::Metrics;
use crate::stop::{Stop, Unsent};
use crate::wire::{Codec, Input};

/// A batch's records and what became of them.
pub struct Outcome {
    pub records: Vec<Record>,
    /// Consecutive runs of records, in record order, covering all of them.
    pub parts: Vec<Part>,
}

pub enum Part {
    /// One result per record, after this many attempts.
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
    /// --dry-run: the request that would have carried these records, as a JSON line.
    Shown {
        records: usize,
        request: Box<RawValue>,
    },
}

impl Part {
    pub fn len(&self) -> usize {
        match self {
            Part::Answered { results, .. } => results.len(),
            Part::Failed { records, .. }
            | Part::Unsent { records, .. }
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
    limit: &'a Limit,
    stop: &'a Stop,
    metrics: &'a Metrics,
    /// Whether a failed batch stops the run (--on-error abort).
    aborts: bool,
    /// Show each request instead of sending it.
    dry_run: bool,
}

impl<'a> Exchanger<'a> {
    /// Exchanges as `flow` says (retries, splitting, rate, error policy, dry run), through
    /// `client`, each attempt holding a slot of `limit`.
    pub fn new(
        flow: &Settings,
        client: &'a Client,
        codec: &'a Codec,
        limit: &'a Limit,
        stop: &'a Stop,
        metrics: &'a Metrics,
    ) -> Exchanger<'a> {
        Exchanger {
            client,
            codec,
            policy: flow.policy,
            pace: Pace::new(flow.rate),
            limit,
            stop,
            metrics,
            aborts: flow.on_error == OnError::Abort,
            dry_run: flow.dry_run,
        }
    }

    /// Sends `batch` (unless the run is stopping) and returns what became of each record.
    pub async fn outcome(&self, batch: Batch) -> Outcome {
        let records = batch.records;
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
        if let Some(problem) = invalid_line(&records) {
            // Nothing to send: it fails alone.
            let failure = Failure::Line(problem.to_string());
            return Outcome {
                parts: vec![self.failed(records.len(), failure, 0)],
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
        let parts = self.parts(number, &records).await;
        drop(in_flight);
        Outcome { records, parts }
    }

    /// The parts for `records`. A record the codec cannot send fails alone, at once; the runs
    /// of records between such records go as requests of their own.
    async fn parts(&self, number: u64, records: &[Record]) -> Vec<Part> {
        let Some(inputs) = self.codec.inputs(records.iter().map(|r| &*r.json)) else {
            return self.sent(number, records, &[]).await;
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
                parts.extend(Box::pin(self.sent(number, &records[start..end], &run)).await);
            }
            if let Some(problem) = problem {
                parts.push(self.failed(1, Failure::Record(problem.clone()), 0));
            }
            start = end + 1;
        }
        parts
    }

    /// The parts for `records` (whose inputs are `inputs`, or none on the plain path): all
    /// answered, or, for a rejected batch that splits, the parts of each half in turn. With
    /// --dry-run, the request instead.
    async fn sent(&self, number: u64, records: &[Record], inputs: &[Input<'_>]) -> Vec<Part> {
        let failed = |failure, attempts| vec![self.failed(records.len(), failure, attempts)];
        let body = match self.codec.body(records, inputs) {
            Ok(body) => Bytes::from(body),
            Err(problem) => return failed(Failure::Record(problem), 0),
        };
        if self.dry_run {
            return vec![Part::Shown {
                records: records.len(),
                request: self.client.show(&body),
            }];
        }
        let (failure, attempts) = match self.attempts(number, records, body).await {
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
            let mut parts = Box::pin(self.sent(number, first, first_inputs)).await;
            parts.extend(Box::pin(self.sent(number, second, second_inputs)).await);
            return parts;
        }
        failed(failure, attempts)
    }

    /// Attempt number `attempt` at sending `body` (for `records`): a slot of the limit, the
    /// request rate, the exchange, the answer read by the codec; how it ended and how long it
    /// took. Or, when the run stops first, why and how many attempts were made.
    async fn attempt(
        &self,
        records: &[Record],
        body: &Bytes,
        attempt: u32,
    ) -> Result<(Result<Answer, Failure>, Duration), (Unsent, u32)> {
        if let Some(why) = self.stop.no_new_attempts() {
            return Err((why, attempt - 1));
        }
        let slot = tokio::select! {
            biased;
            why = self.stop.stopped() => return Err((why, attempt - 1)),
            slot = self.limit.acquire() => slot,
        };
        self.pace
            .wait(self.stop)
            .await
            .map_err(|why| (why, attempt - 1))?;
        if attempt > 1 {
            Metrics::add(&self.metrics.retries, 1);
        }
        Metrics::add(&self.metrics.requests, 1);
        let measures = &self.metrics.measures;
        let sent_now = measures.attempt_started();
        let started = Instant::now();
        let sent = tokio::select! {
            biased;
            why = self.stop.in_flight_cancelled() => {
                let took = started.elapsed();
                measures.attempt_given_up(took);
                drop(sent_now);
                drop(slot);
                self.limit.attempt_ended(took, records.len(), Ended::GivenUp);
                return Err((why, attempt));
            }
            sent = self.client.send(body.clone()) => sent,
        };
        // An answer the codec cannot read fails the attempt like any other.
        let sent = sent.and_then(|reply| {
            let status = reply.status;
            match self.codec.results(&reply.body, records.len()) {
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
        drop(sent_now);
        drop(slot);
        self.limit.attempt_ended(took, records.len(), ended(&sent));
        Ok((sent, took))
    }

    /// Records that failed for good; under `--on-error abort`, nothing new starts after them
    /// (not even the other half of a split batch).
    fn failed(&self, records: usize, failure: Failure, attempts: u32) -> Part {
        if self.aborts {
            self.stop.abort();
        }
        Part::Failed {
            records,
            failure,
            attempts,
        }
    }

    /// Sends `records` until they are answered, the policy gives up or the run stops.
    async fn attempts(&self, number: u64, records: &[Record], body: Bytes) -> Tried {
        let mut attempt = 1;
        loop {
            let (sent, took) = match self.attempt(records, &body, attempt).await {
                Ok(ended) => ended,
                Err((why, made)) => return Tried::Unsent(why, made),
            };
            let span = || batch::span(records);
            let ms = took.as_secs_f64() * 1000.0;
            let failure = match sent {
                Ok(Answer { status, results }) => {
                    tracing::info!(
                        "batch {number} ({}), {} records, attempt {attempt}: {status} in {ms:.1} ms",
                        span(),
                        records.len()
                    );
                    return Tried::Answered(results, attempt);
                }
                Err(failure) => failure,
            };
            let retry = self.policy.retry(&failure, attempt, fastrand::f64());
            tracing::info!(
                "batch {number} ({}), {} records, attempt {attempt}: {failure} after {ms:.1} ms{}",
                span(),
                records.len(),
                match retry {
                    Ok(wait) => format!("; retrying in {:.0} ms", wait.as_secs_f64() * 1000.0),
                    Err(_) => String::new(),
                }
            );
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
            tokio::select! {
                biased;
                why = self.stop.stopped() => return Tried::Unsent(why, attempt),
                () = tokio::time::sleep(wait) => {}
            }
            attempt += 1;
        }
    }
}

/// An attempt answered: its status, and one result per record, in record order.
struct Answer {
    status: reqwest::StatusCode,
    results: Vec<Box<RawValue>>,
}

/// How an attempt ended, as the concurrency limit sees it.
fn ended(sent: &Result<Answer, Failure>) -> Ended {
    match sent {
        Ok(_) => Ended::Answered,
        Err(Failure::Timeout(_)) => Ended::Overloaded,
        Err(failure) => match failure.status().map(|s| s.as_u16()) {
            Some(429 | 503) => Ended::Overloaded,
            Some(_) => Ended::Answered,
            None => Ended::Failed,
        },
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

/// Why a batch is one invalid input line, if it is (the batcher sends such a line alone).
fn invalid_line(records: &[Record]) -> Option<&str> {
    match records {
        [record] => record.invalid.as_deref(),
        _ => None,
    }
}
