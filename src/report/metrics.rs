//! One set of metrics for the run, counted as it goes: what became of the records, and what
//! --stats reports beyond that (latencies, batch sizes, concurrency, statuses). The summary
//! line, the --stats document and the progress display are views of it. Memory stays bounded:
//! latencies go into an HDR histogram.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::StatusCode;

use crate::batch::Flush;
use crate::wire::Usage;

#[derive(Default)]
pub struct Metrics {
    pub read: Cell<u64>,
    /// Records skipped because --resume found their results already written.
    pub skipped: Cell<u64>,
    /// Records whose result was written.
    pub written: Cell<u64>,
    /// Records the server failed for good (in the dead-letter sink).
    pub failed: Cell<u64>,
    /// Records never answered because the run stopped (in the dead-letter sink).
    pub unsent: Cell<u64>,
    /// Blank lines written as null lines (--aligned); not records.
    pub blank: Cell<u64>,
    pub batches: Cell<u64>,
    pub requests: Cell<u64>,
    pub retries: Cell<u64>,
    /// Batches being sent or waiting to be retried.
    pub in_flight: Cell<u64>,
    /// Input bytes of the records whose outcome is known, for the progress display.
    pub bytes_done: Cell<u64>,
    /// The tokens the server counted, once it counts any.
    pub tokens: Cell<Option<Usage>>,
    /// What the result cache did, when there is one (--cache).
    pub cache: Option<CacheCounts>,
    /// What --stats reports beyond these counts.
    pub measures: Measures,
}

/// What the result cache (--cache) did.
#[derive(Default)]
pub struct CacheCounts {
    /// Records it answered.
    pub hits: Cell<u64>,
    /// Records looked up that it holds no result for.
    pub misses: Cell<u64>,
    /// Fresh results it remembered.
    pub written: Cell<u64>,
}

/// One counted in a counter while it lives: a future dropped half way (when the reader of
/// the output leaves) still gives its count back.
pub struct Counted<'a>(&'a Cell<u64>);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl Metrics {
    /// Adds one to `counter` until the guard returned is dropped.
    pub fn count(counter: &Cell<u64>) -> Counted<'_> {
        counter.set(counter.get() + 1);
        Counted(counter)
    }

    /// Adds `n` to one of the counters.
    pub fn add(counter: &Cell<u64>, n: usize) {
        counter.set(counter.get() + n as u64);
    }

    /// Adds the tokens the server counted for one request.
    pub fn tokens(&self, usage: Usage) {
        let sum = self.tokens.get().unwrap_or_default();
        self.tokens.set(Some(Usage {
            prompt: sum.prompt.saturating_add(usage.prompt),
            completion: sum.completion.saturating_add(usage.completion),
            total: sum.total.saturating_add(usage.total),
        }));
    }

    /// Records that have no result.
    pub fn dead(&self) -> u64 {
        self.failed.get() + self.unsent.get()
    }
}

pub struct Measures {
    /// Attempt latencies, in microseconds.
    pub(super) latency: RefCell<Histogram<u64>>,
    pub(super) statuses: RefCell<BTreeMap<u16, u64>>,
    /// Attempts that got no HTTP answer, by kind.
    pub(super) errors: RefCell<BTreeMap<&'static str, u64>>,
    pub(super) smallest_batch: Cell<Option<usize>>,
    pub(super) largest_batch: Cell<usize>,
    pub(super) records_batched: Cell<u64>,
    /// Batches sent by size, bytes, timeout, end of input, an invalid line, cached records.
    pub(super) flushes: [Cell<u64>; 6],
    pub(super) requests_in_flight: Cell<u64>,
    pub(super) most_requests_in_flight: Cell<u64>,
    /// Bytes of 2xx answers as they crossed the wire, and decompressed.
    pub(super) received_wire: Cell<u64>,
    pub(super) received: Cell<u64>,
    /// The sum of all attempts' durations: divided by the run's, the mean concurrency.
    pub(super) busy: Cell<Duration>,
    /// The concurrency limit over time.
    pub(super) limit: RefCell<Option<Track>>,
    /// Each replica of the endpoint, when there are several.
    pub(super) replicas: RefCell<Vec<Replica>>,
}

/// A size over time: where it is, its least and most, and its time-weighted sum.
pub(super) struct Track {
    pub(super) adapts: bool,
    started: Instant,
    since: Instant,
    pub(super) now: usize,
    pub(super) least: usize,
    pub(super) most: usize,
    /// Size × seconds, up to `since`.
    weighted: f64,
}

impl Track {
    /// The mean size from the start to `end`.
    pub(super) fn mean(&self, end: Instant) -> f64 {
        let span = end.saturating_duration_since(self.started).as_secs_f64();
        let weighted = self.weighted
            + self.now as f64 * end.saturating_duration_since(self.since).as_secs_f64();
        if span > 0.0 {
            weighted / span
        } else {
            self.now as f64
        }
    }
}

/// Latencies in microseconds, to three significant figures from 1µs to an hour; anything
/// longer counts as an hour.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .or_else(|_| Histogram::new(3))
        .unwrap_or_else(|_| unreachable!("3 significant figures are valid"))
}

/// What is counted of one replica of the endpoint.
pub(super) struct Replica {
    pub(super) url: String,
    pub(super) requests: u64,
    pub(super) failures: u64,
    /// Attempt latencies, in microseconds.
    pub(super) latency: Histogram<u64>,
    out_until: Option<Instant>,
}

impl Default for Measures {
    fn default() -> Self {
        Measures {
            latency: RefCell::new(histogram()),
            replicas: RefCell::default(),
            statuses: RefCell::default(),
            errors: RefCell::default(),
            smallest_batch: Cell::default(),
            largest_batch: Cell::default(),
            records_batched: Cell::default(),
            flushes: Default::default(),
            requests_in_flight: Cell::default(),
            most_requests_in_flight: Cell::default(),
            received_wire: Cell::default(),
            received: Cell::default(),
            busy: Cell::default(),
            limit: RefCell::default(),
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

    /// An attempt sent: counted in flight until the guard returned is dropped, however the
    /// attempt ends.
    pub fn attempt_started(&self) -> Counted<'_> {
        let counted = Metrics::count(&self.requests_in_flight);
        self.most_requests_in_flight.set(
            self.most_requests_in_flight
                .get()
                .max(self.requests_in_flight.get()),
        );
        counted
    }

    /// The concurrency limit is `size` from `at` on (the first call starts the track).
    pub fn limit(&self, size: usize, adapts: bool, at: Instant) {
        let mut track = self.limit.borrow_mut();
        let track = track.get_or_insert(Track {
            adapts,
            started: at,
            since: at,
            now: size,
            least: size,
            most: size,
            weighted: 0.0,
        });
        track.weighted +=
            track.now as f64 * at.saturating_duration_since(track.since).as_secs_f64();
        track.since = at;
        track.now = size;
        track.least = track.least.min(size);
        track.most = track.most.max(size);
    }

    /// The concurrency limit now, when it adapts.
    pub fn adaptive_limit(&self) -> Option<usize> {
        self.limit
            .borrow()
            .as_ref()
            .filter(|track| track.adapts)
            .map(|track| track.now)
    }

    /// A 2xx answer of `wire` bytes that decompressed to `body` bytes.
    pub fn received(&self, wire: usize, body: usize) {
        Metrics::add(&self.received_wire, wire);
        Metrics::add(&self.received, body);
    }

    /// Names the replicas of the endpoint, when there are several, to count each apart.
    pub fn replicas(&self, urls: Vec<String>) {
        *self.replicas.borrow_mut() = urls
            .into_iter()
            .map(|url| Replica {
                url,
                requests: 0,
                failures: 0,
                latency: histogram(),
                out_until: None,
            })
            .collect();
    }

    /// An attempt on `replica` that took `took` and failed or not; until when the replica is
    /// out of rotation after it, if it is.
    pub fn replica(
        &self,
        replica: usize,
        took: Duration,
        failed: bool,
        out_until: Option<Instant>,
    ) {
        let mut replicas = self.replicas.borrow_mut();
        let Some(this) = replicas.get_mut(replica) else {
            return;
        };
        this.requests += 1;
        this.failures += u64::from(failed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        this.latency.saturating_record(micros.max(1));
        this.out_until = out_until;
    }

    /// How many replicas are up at `now`, of how many, when there are several.
    pub fn replicas_up(&self, now: Instant) -> Option<(usize, usize)> {
        let replicas = self.replicas.borrow();
        let up = replicas
            .iter()
            .filter(|r| r.out_until.is_none_or(|until| until <= now))
            .count();
        (replicas.len() > 1).then_some((up, replicas.len()))
    }

    /// Attempts sent and not yet answered.
    pub fn requests_in_flight(&self) -> u64 {
        self.requests_in_flight.get()
    }

    /// An attempt given up before its answer came.
    pub fn attempt_given_up(&self, took: Duration) {
        self.busy.set(self.busy.get() + took);
    }

    /// An attempt that ended after `took`: with an HTTP status, or, when no answer came, a
    /// kind of error ("timeout", "connect", ...).
    pub fn attempt_finished(&self, took: Duration, ended: Result<StatusCode, &'static str>) {
        self.busy.set(self.busy.get() + took);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency.borrow_mut().saturating_record(micros.max(1));
        match ended {
            Ok(status) => {
                *self
                    .statuses
                    .borrow_mut()
                    .entry(status.as_u16())
                    .or_default() += 1
            }
            Err(kind) => *self.errors.borrow_mut().entry(kind).or_default() += 1,
        }
    }
}
