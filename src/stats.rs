//! What a run measures beyond the record counts (request latencies, batch sizes and what sent
//! each batch, achieved concurrency, HTTP statuses), and the `--stats` JSON document made of
//! them and the counts. Memory stays bounded: latencies go into an HDR histogram.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::batch::Flush;
use crate::client::{Answer, Failure};
use crate::summary::Tally;

pub struct Measures {
    /// Attempt latencies, in microseconds.
    latency: RefCell<Histogram<u64>>,
    statuses: RefCell<BTreeMap<u16, u64>>,
    /// Attempts that got no HTTP answer, by kind.
    errors: RefCell<BTreeMap<&'static str, u64>>,
    smallest_batch: Cell<Option<usize>>,
    largest_batch: Cell<usize>,
    records_batched: Cell<u64>,
    /// Batches sent by size, bytes, timeout, end of input, an invalid line.
    flushes: [Cell<u64>; 5],
    requests_in_flight: Cell<u64>,
    most_requests_in_flight: Cell<u64>,
    /// The sum of all attempts' durations: divided by the run's, the mean concurrency.
    busy: Cell<Duration>,
}

impl Default for Measures {
    fn default() -> Self {
        // Three significant figures from 1µs to an hour; anything longer counts as an hour.
        let latency = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .or_else(|_| Histogram::new(3))
            .unwrap_or_else(|_| unreachable!("3 significant figures are valid"));
        Measures {
            latency: RefCell::new(latency),
            statuses: RefCell::default(),
            errors: RefCell::default(),
            smallest_batch: Cell::default(),
            largest_batch: Cell::default(),
            records_batched: Cell::default(),
            flushes: Default::default(),
            requests_in_flight: Cell::default(),
            most_requests_in_flight: Cell::default(),
            busy: Cell::default(),
        }
    }
}

impl Measures {
    pub fn batch(&self, size: usize, flush: Flush) {
        let smallest = self.smallest_batch.get().map_or(size, |s| s.min(size));
        self.smallest_batch.set(Some(smallest));
        self.largest_batch.set(self.largest_batch.get().max(size));
        self.records_batched
            .set(self.records_batched.get() + size as u64);
        let flush = &self.flushes[flush as usize];
        flush.set(flush.get() + 1);
    }

    pub fn attempt_started(&self) {
        let now = self.requests_in_flight.get() + 1;
        self.requests_in_flight.set(now);
        self.most_requests_in_flight
            .set(self.most_requests_in_flight.get().max(now));
    }

    /// Attempts sent and not yet answered.
    pub fn requests_in_flight(&self) -> u64 {
        self.requests_in_flight.get()
    }

    /// An attempt given up before its answer came.
    pub fn attempt_given_up(&self, took: Duration) {
        self.requests_in_flight
            .set(self.requests_in_flight.get().saturating_sub(1));
        self.busy.set(self.busy.get() + took);
    }

    pub fn attempt_finished(&self, took: Duration, sent: &Result<Answer, Failure>) {
        self.requests_in_flight
            .set(self.requests_in_flight.get().saturating_sub(1));
        self.busy.set(self.busy.get() + took);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency.borrow_mut().saturating_record(micros.max(1));
        let status = match sent {
            Ok(answer) => Some(answer.status),
            Err(failure) => failure.status(),
        };
        match status {
            Some(status) => {
                *self
                    .statuses
                    .borrow_mut()
                    .entry(status.as_u16())
                    .or_default() += 1
            }
            None => {
                let kind = match sent {
                    Err(Failure::Timeout(_)) => "timeout",
                    Err(Failure::Connect { .. }) => "connect",
                    Err(Failure::Certificate { .. }) => "certificate",
                    _ => "transport",
                };
                *self.errors.borrow_mut().entry(kind).or_default() += 1;
            }
        }
    }
}

/// The `--stats` document.
#[derive(Serialize)]
pub struct Report {
    records: Records,
    batches: Batches,
    requests: Requests,
    concurrency: Concurrency,
    elapsed_s: f64,
    records_per_s: f64,
    exit: u8,
}

#[derive(Serialize)]
struct Records {
    read: u64,
    skipped: u64,
    written: u64,
    failed: u64,
    unanswered: u64,
}

#[derive(Serialize)]
struct Batches {
    count: u64,
    size: Sizes,
    flushed_by: FlushedBy,
}

#[derive(Serialize)]
struct Sizes {
    min: usize,
    mean: f64,
    max: usize,
}

#[derive(Serialize)]
struct FlushedBy {
    size: u64,
    bytes: u64,
    timeout: u64,
    end_of_input: u64,
    invalid_line: u64,
}

#[derive(Serialize)]
struct Requests {
    count: u64,
    retries: u64,
    latency_ms: Latency,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

#[derive(Serialize)]
struct Concurrency {
    limit: usize,
    mean: f64,
    max: u64,
}

impl Report {
    pub fn new(tally: &Tally, elapsed: Duration, limit: usize, exit: u8) -> Report {
        let m = &tally.measures;
        let batches = tally.batches.get();
        let latency = m.latency.borrow();
        let ms = |micros: u64| micros as f64 / 1000.0;
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Report {
            records: Records {
                read: tally.read.get(),
                skipped: tally.skipped.get(),
                written: tally.written.get(),
                failed: tally.failed.get(),
                unanswered: tally.unsent.get(),
            },
            batches: Batches {
                count: batches,
                size: Sizes {
                    min: m.smallest_batch.get().unwrap_or(0),
                    mean: m.records_batched.get() as f64 / batches.max(1) as f64,
                    max: m.largest_batch.get(),
                },
                flushed_by: FlushedBy {
                    size: m.flushes[Flush::Size as usize].get(),
                    bytes: m.flushes[Flush::Bytes as usize].get(),
                    timeout: m.flushes[Flush::Timeout as usize].get(),
                    end_of_input: m.flushes[Flush::End as usize].get(),
                    invalid_line: m.flushes[Flush::Invalid as usize].get(),
                },
            },
            requests: Requests {
                count: tally.requests.get(),
                retries: tally.retries.get(),
                latency_ms: Latency {
                    p50: ms(latency.value_at_quantile(0.50)),
                    p90: ms(latency.value_at_quantile(0.90)),
                    p99: ms(latency.value_at_quantile(0.99)),
                    max: ms(latency.max()),
                },
                statuses: m.statuses.borrow().clone(),
                errors: m.errors.borrow().clone(),
            },
            concurrency: Concurrency {
                limit,
                mean: m.busy.get().as_secs_f64() / seconds,
                max: m.most_requests_in_flight.get(),
            },
            elapsed_s: elapsed.as_secs_f64(),
            records_per_s: tally.read.get() as f64 / seconds,
            exit,
        }
    }
}
