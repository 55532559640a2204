//! The `--stats` JSON document, a view of the run's [`Metrics`]: counts, request latencies,
//! batch sizes and what sent each batch, achieved concurrency, HTTP statuses, the cache.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::batch::Flush;
use crate::cli::Shard;
use crate::report::Metrics;

/// The `--stats` document.
#[derive(Serialize)]
pub struct Report {
    records: Records,
    batches: Batches,
    requests: Requests,
    concurrency: Concurrency,
    /// What the server counted, when it counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<Tokens>,
    /// Each replica of the endpoint, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    replicas: Vec<Replica>,
    /// What the result cache did, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<Cache>,
    elapsed_s: f64,
    records_per_s: f64,
    exit: u8,
    /// The share of the input the run took (--shard), as K and N.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

#[derive(Serialize)]
struct Records {
    read: u64,
    skipped: u64,
    written: u64,
    failed: u64,
    unanswered: u64,
    /// Blank lines written as null lines (--aligned).
    blank_lines: u64,
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
    cached: u64,
}

#[derive(Serialize)]
struct Requests {
    count: u64,
    retries: u64,
    latency_ms: Latency,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    received_bytes: Received,
}

/// The bodies of 2xx answers: as they crossed the wire (compressed, if the server did) and
/// decompressed.
#[derive(Serialize)]
struct Received {
    wire: u64,
    decompressed: u64,
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    /// The quantiles of a histogram of microseconds, in milliseconds.
    fn of(latency: &hdrhistogram::Histogram<u64>) -> Latency {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            p50: ms(latency.value_at_quantile(0.50)),
            p90: ms(latency.value_at_quantile(0.90)),
            p99: ms(latency.value_at_quantile(0.99)),
            max: ms(latency.max()),
        }
    }
}

/// One replica's attempts, failures and latencies.
#[derive(Serialize)]
struct Replica {
    url: String,
    requests: u64,
    failures: u64,
    latency_ms: Latency,
}

/// Records the cache answered, records it did not, and fresh results it remembered.
#[derive(Serialize)]
struct Cache {
    hits: u64,
    misses: u64,
    written: u64,
}

#[derive(Serialize)]
struct Tokens {
    prompt: u64,
    completion: u64,
    total: u64,
}

/// The limit (the most it could be, and over time) and the requests in flight achieved.
#[derive(Serialize)]
struct Concurrency {
    limit: usize,
    limit_min: usize,
    limit_mean: f64,
    limit_max: usize,
    limit_final: usize,
    mean: f64,
    max: u64,
}

impl Report {
    pub fn new(metrics: &Metrics, elapsed: Duration, limit: usize, exit: u8) -> Report {
        let m = &metrics.measures;
        let batches = metrics.batches.get();
        let latency = m.latency.borrow();
        let track = m.limit.borrow();
        let track = track.as_ref();
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Report {
            records: Records {
                read: metrics.read.get(),
                skipped: metrics.skipped.get(),
                written: metrics.written.get(),
                failed: metrics.failed.get(),
                unanswered: metrics.unsent.get(),
                blank_lines: metrics.blank.get(),
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
                    cached: m.flushes[Flush::Cached as usize].get(),
                },
            },
            requests: Requests {
                count: metrics.requests.get(),
                retries: metrics.retries.get(),
                latency_ms: Latency::of(&latency),
                statuses: m.statuses.borrow().clone(),
                errors: m.errors.borrow().clone(),
                received_bytes: Received {
                    wire: m.received_wire.get(),
                    decompressed: m.received.get(),
                },
            },
            concurrency: Concurrency {
                limit,
                limit_min: track.map_or(limit, |t| t.least),
                limit_mean: track.map_or(limit as f64, |t| t.mean(Instant::now())),
                limit_max: track.map_or(limit, |t| t.most),
                limit_final: track.map_or(limit, |t| t.now),
                mean: m.busy.get().as_secs_f64() / seconds,
                max: m.most_requests_in_flight.get(),
            },
            replicas: m
                .replicas
                .borrow()
                .iter()
                .map(|r| Replica {
                    url: r.url.clone(),
                    requests: r.requests,
                    failures: r.failures,
                    latency_ms: Latency::of(&r.latency),
                })
                .collect(),
            tokens: metrics.tokens.get().map(|t| Tokens {
                prompt: t.prompt,
                completion: t.completion,
                total: t.total,
            }),
            cache: metrics.cache.as_ref().map(|c| Cache {
                hits: c.hits.get(),
                misses: c.misses.get(),
                written: c.written.get(),
            }),
            elapsed_s: elapsed.as_secs_f64(),
            records_per_s: metrics.read.get() as f64 / seconds,
            exit,
            shard: None,
        }
    }
}
