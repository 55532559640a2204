//! A request rate limit (--ratelimit N/DURATION) in fixed windows from the first request, and
//! the headers that tell a client what is left of it, in the forms servers use.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::lock;

/// So many requests per window, such as `10/1s`: windows follow one another from the first
/// request's arrival, and each lets this many requests through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    requests: u64,
    window: Duration,
}

impl RateLimit {
    /// `requests` per `window`; `None` for an empty window.
    pub fn new(requests: u64, window: Duration) -> Option<RateLimit> {
        (!window.is_zero()).then_some(RateLimit { requests, window })
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<RateLimit, String> {
        let Some((requests, window)) = text.split_once('/') else {
            return Err(format!("{text:?} is not N/DURATION, such as 10/1s"));
        };
        let requests = requests
            .trim()
            .parse()
            .map_err(|e| format!("{:?} is not a number of requests: {e}", requests.trim()))?;
        let window = humantime::parse_duration(window.trim())
            .map_err(|e| format!("{:?} is not a duration: {e}", window.trim()))?;
        RateLimit::new(requests, window).ok_or_else(|| "the window must not be empty".to_owned())
    }
}

/// How the rate-limit headers are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RatelimitHeaders {
    /// OpenAI's: x-ratelimit-limit-requests, x-ratelimit-remaining-requests and
    /// x-ratelimit-reset-requests, a duration such as 1s, 6m0s or 20ms
    #[default]
    #[value(name = "openai")]
    OpenAi,
    /// The IETF draft's structured fields: RateLimit-Policy: "default";q=N;w=SECONDS and
    /// RateLimit: "default";r=LEFT;t=SECONDS
    Ietf,
    /// RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (in seconds)
    Legacy,
}

/// The window under way and how much of it is used.
pub(crate) struct Limiter {
    limit: RateLimit,
    form: RatelimitHeaders,
    /// (window number from the first request, requests let through in it)
    window: Mutex<(u64, u64)>,
}

/// What the limiter said to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) allowed: bool,
    limit: RateLimit,
    /// Requests the window has left after this one.
    remaining: u64,
    /// When the window this request fell in ends.
    ends: Instant,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit, form: RatelimitHeaders) -> Limiter {
        Limiter {
            limit,
            form,
            window: Mutex::new((0, 0)),
        }
    }

    /// Counts a request that arrived at `at` against its window; `epoch` is when the first
    /// request arrived. A request refused does not count.
    pub(crate) fn admit(&self, at: Instant, epoch: Instant) -> Verdict {
        let window = self.limit.window;
        let number = (at.saturating_duration_since(epoch).as_nanos() / window.as_nanos()) as u64;
        let mut current = lock(&self.window);
        // A request that reaches the limiter late, after its window ended, counts in the
        // window under way, so that counts never go back.
        if number > current.0 {
            *current = (number, 0);
        }
        let allowed = current.1 < self.limit.requests;
        if allowed {
            current.1 += 1;
        }
        let ends = u32::try_from(current.0 + 1)
            .ok()
            .and_then(|n| window.checked_mul(n))
            .and_then(|end| epoch.checked_add(end))
            .unwrap_or(at);
        Verdict {
            allowed,
            limit: self.limit,
            remaining: self.limit.requests - current.1,
            ends,
        }
    }

    /// Writes `verdict` into an answer's headers, its reset counted from `now`.
    pub(crate) fn write(&self, verdict: &Verdict, now: Instant, headers: &mut HeaderMap) {
        for (name, value) in verdict.headers(self.form, now) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
}

impl Verdict {
    fn headers(&self, form: RatelimitHeaders, now: Instant) -> Vec<(HeaderName, String)> {
        let (limit, remaining) = (self.limit.requests, self.remaining);
        let reset = self.ends.saturating_duration_since(now);
        let name = HeaderName::from_static;
        match form {
            RatelimitHeaders::OpenAi => vec![
                (name("x-ratelimit-limit-requests"), limit.to_string()),
                (
                    name("x-ratelimit-remaining-requests"),
                    remaining.to_string(),
                ),
                (
                    name("x-ratelimit-reset-requests"),
                    go_duration(ceil_millis(reset)),
                ),
            ],
            RatelimitHeaders::Ietf => vec![
                (
                    name("ratelimit-policy"),
                    format!("\"default\";q={limit};w={}", ceil_secs(self.limit.window)),
                ),
                (
                    name("ratelimit"),
                    format!("\"default\";r={remaining};t={}", ceil_secs(reset)),
                ),
            ],
            RatelimitHeaders::Legacy => vec![
                (name("ratelimit-limit"), limit.to_string()),
                (name("ratelimit-remaining"), remaining.to_string()),
                (name("ratelimit-reset"), ceil_secs(reset).to_string()),
            ],
        }
    }
}

/// Whole seconds, rounded up, so that a client that waits that long finds the window over.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Rounded up to the millisecond, as servers give it and for the reason of [`ceil_secs`].
fn ceil_millis(d: Duration) -> Duration {
    let millis = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// A duration as Go's `time.Duration.String` writes it, which is what OpenAI's reset headers
/// hold: `1.5s`, `6m0s`, `1h0m0s`, `20ms`, `1.5µs`, `0s`.
fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    // Digits of `value / 10^scale`, with the fraction's trailing zeros left out.
    let decimal = |value: u128, scale: u32| {
        let unit = 10u128.pow(scale);
        let fraction = format!("{:0width$}", value % unit, width = scale as usize);
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            format!("{}", value / unit)
        } else {
            format!("{}.{fraction}", value / unit)
        }
    };
    match nanos {
        0 => "0s".to_owned(),
        1..1_000 => format!("{nanos}ns"),
        1_000..1_000_000 => format!("{}µs", decimal(nanos, 3)),
        1_000_000..1_000_000_000 => format!("{}ms", decimal(nanos, 6)),
        _ => {
            let secs = d.as_secs();
            let (hours, minutes) = (secs / 3600, secs / 60 % 60);
            let seconds = decimal(
                u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos()),
                9,
            );
            match (hours, minutes) {
                (0, 0) => format!("{seconds}s"),
                (0, _) => format!("{minutes}m{seconds}s"),
                _ => format!("{hours}h{minutes}m{seconds}s"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_rate_limit_reads_as_requests_per_window() {
        assert_eq!("10/1s".parse(), Ok(RateLimit::new(10, ms(1000)).unwrap()));
        assert_eq!("0 / 250ms".parse(), Ok(RateLimit::new(0, ms(250)).unwrap()));
        for (text, why) in [
            ("10", "not N/DURATION"),
            ("ten/1s", "not a number"),
            ("10/soon", "not a duration"),
            ("10/0s", "must not be empty"),
        ] {
            let err = text.parse::<RateLimit>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn each_window_lets_n_through_and_refused_ones_do_not_count() {
        let limiter = Limiter::new("2/1s".parse().unwrap(), RatelimitHeaders::OpenAi);
        let epoch = Instant::now();
        let at = |millis| epoch + ms(millis);
        let seen: Vec<(bool, u64)> = [0, 10, 20, 999, 1000, 1500, 1600, 3200]
            .into_iter()
            .map(|t| limiter.admit(at(t), epoch))
            .map(|v| (v.allowed, v.remaining))
            .collect();
        assert_eq!(
            seen,
            [
                (true, 1),
                (true, 0),
                (false, 0),
                (false, 0),
                (true, 1),
                (true, 0),
                (false, 0),
                (true, 1)
            ]
        );
        assert_eq!(limiter.admit(at(3300), epoch).ends, at(4000));
        // Late to the limiter: counted in the window under way.
        assert_eq!(limiter.admit(at(100), epoch).ends, at(4000));
    }

    #[test]
    fn headers_come_in_three_forms() {
        let limiter = Limiter::new("10/1m".parse().unwrap(), RatelimitHeaders::OpenAi);
        let epoch = Instant::now();
        let verdict = limiter.admit(epoch, epoch);
        let at = epoch + Duration::from_micros(1_500_001);
        let text = |form| {
            verdict
                .headers(form, at)
                .into_iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            text(RatelimitHeaders::OpenAi),
            [
                "x-ratelimit-limit-requests: 10",
                "x-ratelimit-remaining-requests: 9",
                "x-ratelimit-reset-requests: 58.5s",
            ]
        );
        assert_eq!(
            text(RatelimitHeaders::Ietf),
            [
                "ratelimit-policy: \"default\";q=10;w=60",
                "ratelimit: \"default\";r=9;t=59",
            ]
        );
        assert_eq!(
            text(RatelimitHeaders::Legacy),
            [
                "ratelimit-limit: 10",
                "ratelimit-remaining: 9",
                "ratelimit-reset: 59",
            ]
        );
        let mut headers = HeaderMap::new();
        limiter.write(&verdict, epoch + ms(60_000), &mut headers);
        assert_eq!(headers["x-ratelimit-reset-requests"], "0s");
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(100), "100ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (ms(20), "20ms"),
            (Duration::from_micros(1_234), "1.234ms"),
            (ms(1000), "1s"),
            (ms(1500), "1.5s"),
            (ms(360_000), "6m0s"),
            (ms(3_600_000), "1h0m0s"),
            (Duration::from_nanos(7_384_005_000_000), "2h3m4.005s"),
        ];
        for (d, text) in cases {
            assert_eq!(go_duration(d), text, "{d:?}");
        }
        assert_eq!(ceil_millis(Duration::from_nanos(1_000_001)), ms(2));
        assert_eq!(ceil_secs(ms(1001)), 2);
        assert_eq!(ceil_secs(ms(1000)), 1);
    }
}
