//! --ratelimit: N requests per window, 429 beyond, and headers on every answer that say what
//! is left, in the form --ratelimit-headers asks for.

use std::time::Duration;

use abatch_mock::{Behavior, RateLimit, RatelimitHeaders};

use crate::{Answer, post, server};

/// The window of these tests: long enough that none ends while a test runs.
const WINDOW: Duration = Duration::from_secs(50);

/// Three requests to a server that lets two through per window.
fn three_requests(form: RatelimitHeaders) -> Vec<Answer> {
    let server = server(Behavior {
        ratelimit: RateLimit::new(2, WINDOW),
        ratelimit_headers: form,
        retry_after: Some("7".to_owned()),
        ..Behavior::default()
    });
    let answers: Vec<Answer> = (0..3)
        .map(|i| post(&server, "/predict", &[], &format!("[{i}]")))
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 429], "{answers:#?}");
    assert_eq!(answers[2].header("retry-after"), Some("7"));
    assert_eq!(answers[0].header("retry-after"), None);
    answers
}

/// Whole seconds to the window's end, as the IETF and legacy forms give them.
fn seconds_left(text: &str) -> u64 {
    let seconds: u64 = text.parse().unwrap_or_else(|_| panic!("{text}"));
    assert!((40..=50).contains(&seconds), "{text}");
    seconds
}

#[test]
fn openai_headers_count_down_and_give_a_go_duration() {
    let answers = three_requests(RatelimitHeaders::OpenAi);
    for (answer, left) in answers.iter().zip(["1", "0", "0"]) {
        assert_eq!(answer.header("x-ratelimit-limit-requests"), Some("2"));
        assert_eq!(answer.header("x-ratelimit-remaining-requests"), Some(left));
        let reset = answer
            .header("x-ratelimit-reset-requests")
            .expect("a reset");
        let seconds: f64 = reset
            .strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{reset}"));
        assert!((40.0..=50.0).contains(&seconds), "{reset}");
    }
}

#[test]
fn ietf_headers_are_structured_fields() {
    let answers = three_requests(RatelimitHeaders::Ietf);
    for (answer, left) in answers.iter().zip([1, 0, 0]) {
        assert_eq!(
            answer.header("ratelimit-policy"),
            Some("\"default\";q=2;w=50")
        );
        let value = answer.header("ratelimit").expect("a RateLimit header");
        let t = value
            .strip_prefix(&format!("\"default\";r={left};t="))
            .unwrap_or_else(|| panic!("{value}"));
        seconds_left(t);
    }
}

#[test]
fn legacy_headers_give_seconds() {
    let answers = three_requests(RatelimitHeaders::Legacy);
    for (answer, left) in answers.iter().zip(["1", "0", "0"]) {
        assert_eq!(answer.header("ratelimit-limit"), Some("2"));
        assert_eq!(answer.header("ratelimit-remaining"), Some(left));
        seconds_left(answer.header("ratelimit-reset").expect("a reset"));
    }
}
