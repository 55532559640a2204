//! How the server misbehaves: the switches of `abatch-mock` (latency, failures, hangs, wrong
//! answers), and what a batch's own records may script for the request that carries them.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use hyper::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::value::RawValue;

use crate::capacity::Schedule;
use crate::compress::Encoding;
use crate::ratelimit::{RateLimit, RatelimitHeaders};

/// How the server answers. Every field has a command-line flag, so `abatch-mock --help`
/// documents the same switches the tests use.
///
/// A batch can also script itself: a record that is an object with a `"mock"` member, such as
/// `{"id": 7, "mock": {"delay_ms": 300, "status": 503}}`, delays or fails the request that
/// carries it; `{"mock": {"headers": {"x-ratelimit-remaining-requests": "0"}, "retry_after":
/// "1"}}` adds those headers, and a Retry-After, to its answer.
///
/// Times in a capacity schedule and rate-limit windows count from the first request's
/// arrival.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Behavior {
    /// Wait this long before answering each request
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub latency: Option<Duration>,

    /// Pick each request's delay at random between --latency (or 0) and this
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub latency_max: Option<Duration>,

    /// Answer every request with this HTTP status and a short error body (and, for a 3xx, a
    /// Location of /moved)
    #[arg(long, value_name = "CODE")]
    pub status: Option<u16>,

    /// Never answer: keep the connection open and silent
    #[arg(long)]
    pub hang: bool,

    /// Answer with one result fewer than the records sent
    #[arg(long)]
    pub wrong_count: bool,

    /// Answer every request with this body, verbatim (for example, something that is not JSON),
    /// with --status if given
    #[arg(long, value_name = "BODY")]
    pub reply: Option<String>,

    /// Pretty-print the results, with newlines inside each one
    #[arg(long)]
    pub pretty: bool,

    /// Fail only the first N requests (with --status, or 503), then answer normally
    #[arg(long, value_name = "N")]
    pub fail_first: Option<usize>,

    /// Close the connection without answering the first N requests
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub drop_first: usize,

    /// Send this Retry-After header (seconds or an HTTP date) with every failure
    #[arg(long, value_name = "VALUE")]
    pub retry_after: Option<String>,

    /// Answer 413 Payload Too Large to a request of more than N records
    #[arg(long, value_name = "N")]
    pub max_records: Option<usize>,

    /// Work on at most N requests at once; the rest wait in line, in order of arrival, and
    /// their --latency starts when a worker takes them
    #[arg(long, value_name = "N", group = "workers")]
    pub capacity: Option<NonZeroUsize>,

    /// Change the capacity over time, as TIME:N steps from 0s counted from the first request,
    /// such as 0s:32,5s:8,10s:32; not with --capacity (from Rust, this wins over it)
    ///
    /// When the capacity shrinks, the requests being worked on finish; new ones wait (or get
    /// 429 with --capacity-429) until fewer than the new capacity are busy.
    #[arg(long, value_name = "SCHEDULE", group = "workers")]
    pub capacity_schedule: Option<Schedule>,

    /// With --capacity or --capacity-schedule: answer 429 at once (with --retry-after's header,
    /// if given) to a request that finds every worker busy, rather than queue it
    #[arg(long, requires = "workers")]
    pub capacity_429: bool,

    /// Let N requests through per window of DURATION, such as 10/1s, in windows that follow one
    /// another from the first request; answer 429 at once (with --retry-after's header, if
    /// given) to the ones beyond, and tell every answer what is left in headers
    #[arg(long, value_name = "N/DURATION")]
    pub ratelimit: Option<RateLimit>,

    /// How --ratelimit's headers are written
    #[arg(
        long,
        value_name = "FORM",
        default_value = "openai",
        requires = "ratelimit"
    )]
    pub ratelimit_headers: RatelimitHeaders,

    /// Compress every answer's body this way when the request's Accept-Encoding names it
    #[arg(long, value_name = "ENCODING")]
    pub compress: Option<Encoding>,

    /// Answer every request with 200 and a gzip body that decompresses to this many spaces (a
    /// decompression bomb), whatever the request accepts
    #[arg(long, value_name = "BYTES", conflicts_with = "compress")]
    pub bomb: Option<u64>,
}

impl Behavior {
    /// The workers and how they change, if the server has a limited number.
    pub(crate) fn workers(&self) -> Option<Schedule> {
        self.capacity_schedule
            .clone()
            .or_else(|| self.capacity.map(|workers| Schedule::fixed(workers.get())))
    }

    pub(crate) fn delay(&self) -> Duration {
        let low = self.latency.unwrap_or_default();
        match self.latency_max {
            Some(high) if high > low => {
                let span = (high - low).as_micros() as u64;
                low + Duration::from_micros(fastrand::u64(0..=span))
            }
            _ => low,
        }
    }
}

/// Waits until `deadline`, to within a few microseconds, so that a 20ms server takes 20ms.
/// Latency counts from when a worker takes the request (its arrival, without --capacity), so
/// reading the body does not add to it. tokio's timer rounds up to the next millisecond and a
/// thread's sleep overshoots by up to half a millisecond on a virtual machine, so the last
/// stretch is slept short on a thread and then waited out by yielding.
pub(crate) async fn hold_until(deadline: Instant) {
    let coarse = deadline
        .checked_sub(Duration::from_millis(3))
        .unwrap_or(deadline);
    tokio::time::sleep_until(coarse.into()).await;
    let fine = tokio::task::spawn_blocking(move || {
        let short = deadline
            .checked_sub(Duration::from_millis(1))
            .unwrap_or(deadline);
        std::thread::sleep(short.saturating_duration_since(Instant::now()));
        while Instant::now() < deadline {
            std::thread::yield_now();
        }
    });
    let _ = fine.await;
}

/// What the records of one batch ask of the server.
#[derive(Default)]
pub(crate) struct Script {
    pub(crate) delay: Option<Duration>,
    pub(crate) status: Option<u16>,
    /// Headers for the answer, "retry_after" included; where records disagree, the first says.
    pub(crate) headers: HeaderMap,
}

impl Script {
    pub(crate) fn of(records: &[&RawValue]) -> Script {
        let mut script = Script::default();
        for record in records.iter().filter(|r| r.get().contains("\"mock\"")) {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(record.get()) else {
                continue;
            };
            if let Some(ms) = value.pointer("/mock/delay_ms").and_then(|v| v.as_u64()) {
                script.delay = Some(
                    script
                        .delay
                        .unwrap_or_default()
                        .max(Duration::from_millis(ms)),
                );
            }
            if let Some(code) = value.pointer("/mock/status").and_then(|v| v.as_u64()) {
                script.status = script.status.or(u16::try_from(code).ok());
            }
            if let Some(headers) = value.pointer("/mock/headers").and_then(|v| v.as_object()) {
                for (name, value) in headers {
                    script.add_header(HeaderName::from_bytes(name.as_bytes()).ok(), value);
                }
            }
            if let Some(value) = value.pointer("/mock/retry_after") {
                script.add_header(Some(RETRY_AFTER), value);
            }
        }
        script
    }

    /// Adds a header the records asked for, unless an earlier record set it; a name or value
    /// that cannot be a header's is left out.
    fn add_header(&mut self, name: Option<HeaderName>, value: &serde_json::Value) {
        let text = match value {
            serde_json::Value::String(text) => text.clone(),
            serde_json::Value::Number(number) => number.to_string(),
            _ => return,
        };
        if let (Some(name), Ok(value)) = (name, HeaderValue::from_str(&text)) {
            self.headers.entry(name).or_insert(value);
        }
    }
}
