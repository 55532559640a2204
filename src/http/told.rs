//! What a server's headers say about waiting: a Retry-After, and rate-limit headers that say
//! nothing is left until a reset. Read defensively: a header that cannot be read says
//! nothing, and is never an error.
//!
//! The rate-limit forms read: OpenAI's `x-ratelimit-remaining-requests` / `-tokens` with
//! `x-ratelimit-reset-requests` / `-tokens` (Go durations such as `1s`, `6m0s`, `20ms`); the
//! IETF draft's structured `RateLimit: "default";r=0;t=5` (and its older
//! `RateLimit: limit=100, remaining=0, reset=5`); and the older separate
//! `RateLimit-Remaining` / `RateLimit-Reset` (also `X-RateLimit-*`), whose reset may be
//! seconds or a Unix time.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How much of a header's value a message quotes.
const QUOTED_HEADER: usize = 64;
/// A reset beyond this many seconds is a Unix time, not a number of seconds.
const UNIX_TIME_FROM: u64 = 1_000_000_000;

/// A Retry-After header: the wait it asks for, and its text, to quote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryAfter {
    pub wait: Duration,
    pub header: String,
}

/// Rate-limit headers said nothing is left: wait this long for the reset. `header` names
/// the one that said so, and its value, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exhausted {
    pub wait: Duration,
    pub header: String,
}

/// How long a Retry-After header asks to wait: a number of seconds, or an HTTP date (`now`
/// is when the answer came).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<RetryAfter> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or_default()
        }
    };
    Some(RetryAfter {
        wait,
        header: value.chars().take(QUOTED_HEADER).collect(),
    })
}

/// The longest wait any rate-limit header asks for by saying that nothing is left, if one
/// does (`now` is when the answer came).
pub fn exhausted(headers: &HeaderMap, now: SystemTime) -> Option<Exhausted> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let mut found: Vec<Exhausted> = Vec::new();
    for kind in ["requests", "tokens"] {
        let remaining = format!("x-ratelimit-remaining-{kind}");
        let reset = format!("x-ratelimit-reset-{kind}");
        if is_zero(text(&remaining)) {
            if let Some(wait) = text(&reset).and_then(go_duration) {
                found.push(said(&reset, text(&reset), wait));
            }
        }
    }
    for prefix in ["ratelimit", "x-ratelimit"] {
        let reset = format!("{prefix}-reset");
        if is_zero(text(&format!("{prefix}-remaining"))) {
            if let Some(wait) = text(&reset).and_then(|t| seconds_or_unix_time(t, now)) {
                found.push(said(&reset, text(&reset), wait));
            }
        }
    }
    for value in headers.get_all("ratelimit") {
        if let Some(wait) = value.to_str().ok().and_then(structured) {
            found.push(said("ratelimit", value.to_str().ok(), wait));
        }
    }
    found.into_iter().max_by_key(|e| e.wait)
}

fn said(name: &str, value: Option<&str>, wait: Duration) -> Exhausted {
    let value: String = value
        .unwrap_or_default()
        .chars()
        .take(QUOTED_HEADER)
        .collect();
    Exhausted {
        wait,
        header: format!("{name}: {value}"),
    }
}

fn is_zero(remaining: Option<&str>) -> bool {
    remaining.and_then(|r| r.parse::<u64>().ok()) == Some(0)
}

/// `RateLimit: "default";r=0;t=5, "daily";r=10;t=3600` (the draft's structured form) or
/// `RateLimit: limit=100, remaining=0, reset=5` (its older form): the longest reset among the
/// limits with nothing left.
fn structured(value: &str) -> Option<Duration> {
    let field = |part: &str, names: [&str; 2]| {
        part.split([';', ','])
            .filter_map(|p| p.trim().split_once('='))
            .find(|(key, _)| names.contains(&key.trim()))
            .and_then(|(_, v)| v.trim().trim_matches('"').parse::<u64>().ok())
    };
    let items: Vec<&str> = if value.contains(';') {
        value.split(',').collect()
    } else {
        // The older form is one limit spread over the comma-separated members.
        vec![value]
    };
    items
        .into_iter()
        .filter(|item| field(item, ["r", "remaining"]) == Some(0))
        .filter_map(|item| field(item, ["t", "reset"]))
        .map(Duration::from_secs)
        .max()
}

/// Seconds, or a Unix time when large (some servers send one).
fn seconds_or_unix_time(text: &str, now: SystemTime) -> Option<Duration> {
    let number: f64 = text
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    if number >= UNIX_TIME_FROM as f64 {
        let at = SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(number).ok()?)?;
        return Some(at.duration_since(now).unwrap_or_default());
    }
    Duration::try_from_secs_f64(number).ok()
}

/// A Go duration as OpenAI sends them: `1s`, `6m0s`, `20ms`, `1.5s`, `1h2m3s`, `300us`; a
/// bare number is seconds.
fn go_duration(text: &str) -> Option<Duration> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    if text.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|n| *n > 0)?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number.parse::<f64>().ok()? * scale;
        rest = after;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        let wait = |headers: &HeaderMap| retry_after(headers, now).map(|r| r.wait);
        assert_eq!(wait(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(
            retry_after(&headers, now),
            Some(RetryAfter {
                wait: Duration::from_secs(7),
                header: "7".into()
            })
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(wait(&headers), Some(Duration::from_secs(90)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&earlier).unwrap());
        assert_eq!(wait(&headers), Some(Duration::ZERO));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Fri, 31 Dec 9999 23:59:59 GMT"),
        );
        assert!(wait(&headers).unwrap() > Duration::from_secs(7000 * 365 * 86400));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(wait(&headers), None);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn wait(pairs: &[(&'static str, &'static str)]) -> Option<Duration> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        exhausted(&headers(pairs), now).map(|e| e.wait)
    }

    #[test]
    fn go_durations_as_openai_sends_them() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration("1s"), Some(ms(1000)));
        assert_eq!(go_duration("6m0s"), Some(ms(360_000)));
        assert_eq!(go_duration("20ms"), Some(ms(20)));
        assert_eq!(go_duration("1.5s"), Some(ms(1500)));
        assert_eq!(go_duration("1h2m3s"), Some(ms(3_723_000)));
        assert_eq!(go_duration("300us"), Some(Duration::from_micros(300)));
        assert_eq!(go_duration("2"), Some(ms(2000)));
        for bad in ["", "s", "1x", "-1s", "1..2s", "NaN", "1e400"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn openai_headers_say_when_nothing_is_left() {
        let ms = Duration::from_millis;
        assert_eq!(
            wait(&[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1s"),
            ]),
            Some(ms(1000))
        );
        // Tokens exhausted for longer than requests: the longer wait.
        assert_eq!(
            wait(&[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "20ms"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ]),
            Some(ms(360_000))
        );
        // Something left: nothing to wait for.
        assert_eq!(
            wait(&[
                ("x-ratelimit-remaining-requests", "3"),
                ("x-ratelimit-reset-requests", "1s"),
            ]),
            None
        );
    }

    #[test]
    fn ietf_headers_in_both_drafts_forms() {
        let s = Duration::from_secs;
        assert_eq!(wait(&[("ratelimit", "\"default\";r=0;t=5")]), Some(s(5)));
        assert_eq!(
            wait(&[("ratelimit", "\"burst\";r=3;t=1, \"daily\";r=0;t=60")]),
            Some(s(60))
        );
        assert_eq!(wait(&[("ratelimit", "\"default\";r=7;t=5")]), None);
        assert_eq!(
            wait(&[("ratelimit", "limit=100, remaining=0, reset=9")]),
            Some(s(9))
        );
        assert_eq!(
            wait(&[("ratelimit", "limit=100, remaining=4, reset=9")]),
            None
        );
    }

    #[test]
    fn older_separate_headers_with_seconds_or_a_unix_time() {
        let s = Duration::from_secs;
        assert_eq!(
            wait(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "3")]),
            Some(s(3))
        );
        assert_eq!(
            wait(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1700000042")
            ]),
            Some(s(42))
        );
        assert_eq!(
            wait(&[
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", "1600000000")
            ]),
            Some(Duration::ZERO),
            "a reset in the past waits for nothing"
        );
    }

    #[test]
    fn malformed_headers_say_nothing() {
        for pairs in [
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "soon"),
            ][..],
            &[
                ("x-ratelimit-remaining-requests", "none"),
                ("x-ratelimit-reset-requests", "1s"),
            ],
            &[("x-ratelimit-remaining-requests", "0")],
            &[("ratelimit", "garbage;;;==,,")],
            &[("ratelimit", "\"d\";r=0;t=-4")],
            &[("ratelimit-remaining", "0"), ("ratelimit-reset", "-1")],
            &[("ratelimit-remaining", "0"), ("ratelimit-reset", "inf")],
        ] {
            assert_eq!(wait(pairs), None, "{pairs:?}");
        }
    }
}
