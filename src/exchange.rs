//! Turns one batch into its outcome: sends it, tries again what may pass on another attempt
//! (backoff, Retry-After, the request rate), and sends the halves of a batch the server
//! rejects, so that only the records at fault fail. Every record of the batch comes back,
//! answered or not, so that none is lost.

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use serde_json::value::RawValue;

use crate::batch::Batch;
use crate::cli::Rate;
use crate::client::{Client, Failure};
use crate::input::Record;
use crate::retry::Policy;
use crate::stop::{Stop, Unsent};
use crate::summary::Tally;

/// A batch's records and what became of them.
pub struct Outcome {
    pub records: Vec<Record>,
    /// Consecutive runs of records, in record order, covering all of them.
    pub parts: Vec<Part>,
}

pub enum Part {
    /// One result per record.
    Answered(Vec<Box<RawValue>>),
    /// The server failed these records for good.
    Failed {
        records: usize,
        failure: Failure,
        attempts: u32,
    },
    /// These records were never answered because the run stopped first.
    Unsent { records: usize, why: Unsent },
}

impl Part {
    pub fn len(&self) -> usize {
        match self {
            Part::Answered(results) => results.len(),
            Part::Failed { records, .. } | Part::Unsent { records, .. } => *records,
        }
    }
}

pub struct Exchanger<'a> {
    client: &'a Client,
    policy: Policy,
    rate: Option<(DefaultDirectRateLimiter, DefaultClock)>,
    stop: &'a Stop,
    tally: &'a Tally,
    /// Whether a failed batch stops the run (--on-error abort).
    aborts: bool,
}

impl<'a> Exchanger<'a> {
    pub fn new(
        client: &'a Client,
        policy: Policy,
        rate: Option<Rate>,
        stop: &'a Stop,
        tally: &'a Tally,
        aborts: bool,
    ) -> Exchanger<'a> {
        // Evenly spaced starts (a burst of one): no second ever holds more than N of them.
        let rate = rate.map(|rate| {
            let quota = Quota::with_period(rate.per / rate.count.get())
                .unwrap_or_else(|| Quota::per_second(rate.count));
            let clock = DefaultClock::default();
            (
                DefaultDirectRateLimiter::direct_with_clock(quota, clock.clone()),
                clock,
            )
        });
        Exchanger {
            client,
            policy,
            rate,
            stop,
            tally,
            aborts,
        }
    }

    /// Sends `batch` (unless the run is stopping) and returns what became of each record.
    pub async fn outcome(&self, batch: Batch) -> Outcome {
        let records = batch.records;
        let unsent = |why| {
            vec![Part::Unsent {
                records: records.len(),
                why,
            }]
        };
        let parts = match self.stop.no_new_batches() {
            Some(why) => unsent(why),
            None => {
                tokio::select! {
                    biased;
                    why = self.stop.in_flight_cancelled() => unsent(why),
                    parts = self.parts(&records) => parts,
                }
            }
        };
        if self.aborts && parts.iter().any(|p| matches!(p, Part::Failed { .. })) {
            self.stop.abort();
        }
        Outcome { records, parts }
    }

    /// The parts for `records`: all answered, or, for a rejected batch that splits, the parts
    /// of each half in turn.
    async fn parts(&self, records: &[Record]) -> Vec<Part> {
        let (failure, attempts) = match self.attempts(records).await {
            Ok(results) => return vec![Part::Answered(results)],
            Err(failed) => failed,
        };
        if records.len() > 1 && self.policy.splits(&failure) {
            let (first, second) = records.split_at(records.len() / 2);
            let mut parts = Box::pin(self.parts(first)).await;
            parts.extend(Box::pin(self.parts(second)).await);
            return parts;
        }
        vec![Part::Failed {
            records: records.len(),
            failure,
            attempts,
        }]
    }

    /// Sends `records` until they are answered or the policy gives up; on failure, returns the
    /// last failure and how many attempts were made.
    async fn attempts(&self, records: &[Record]) -> Result<Vec<Box<RawValue>>, (Failure, u32)> {
        let mut attempt = 1;
        loop {
            self.pace().await;
            self.tally.request();
            let failure = match self.client.send(records).await {
                Ok(results) => return Ok(results),
                Err(failure) => failure,
            };
            match self.policy.retry(&failure, attempt, fastrand::f64()) {
                Some(wait) => {
                    self.tally.retry();
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => return Err((failure, attempt)),
            }
        }
    }

    /// Waits until the request rate allows one more request.
    async fn pace(&self) {
        let Some((limiter, clock)) = &self.rate else {
            return;
        };
        while let Err(not_until) = limiter.check() {
            let wait = not_until.wait_time_from(clock.now());
            tokio::time::sleep(wait.max(Duration::from_micros(100))).await;
        }
    }
}
