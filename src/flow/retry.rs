//! The retry policy, as data and pure functions: which failures may pass on another attempt,
//! how long to wait before it (never longer than --retry-max-wait), and which rejected batches
//! are worth splitting.

use std::time::Duration;

use reqwest::StatusCode;

use crate::http::{Failure, RetryAfter};

/// The longest wait the backoff schedule chooses (a Retry-After may ask for longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Extra attempts after the first.
    pub retries: u32,
    /// The first backoff step; each later one doubles it.
    pub backoff: Duration,
    /// Split a batch rejected with a 4xx to find the records at fault.
    pub split: bool,
    /// The longest one wait may be; a server asking for more is not waited for.
    pub max_wait: Duration,
}

/// Why the policy gives up on a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// Another attempt would fail the same way, or the attempts are used up.
    Done,
    /// The server asked (with this Retry-After) to wait longer than --retry-max-wait.
    WaitTooLong(RetryAfter),
}

impl Policy {
    /// How long to wait before trying again after `failure` ended attempt number `attempt`
    /// (the first is 1), or why not to. `jitter`, in [0, 1), picks the wait within the
    /// exponential step ("full jitter"); a Retry-After from the server is a floor, and one
    /// longer than `max_wait` gives up rather than wait.
    pub fn retry(&self, failure: &Failure, attempt: u32, jitter: f64) -> Result<Duration, GiveUp> {
        if attempt > self.retries || !retryable(failure) {
            return Err(GiveUp::Done);
        }
        let doubling = 2u32.saturating_pow(attempt.saturating_sub(1));
        let step = self
            .backoff
            .saturating_mul(doubling)
            .min(MAX_BACKOFF)
            .min(self.max_wait);
        let wait = step.mul_f64(jitter.clamp(0.0, 1.0));
        match failure {
            Failure::Status {
                retry_after: Some(asked),
                ..
            } if asked.wait > self.max_wait => Err(GiveUp::WaitTooLong(asked.clone())),
            Failure::Status {
                retry_after: Some(asked),
                ..
            } => Ok(wait.max(asked.wait)),
            _ => Ok(wait),
        }
    }

    /// Whether a batch of more than one record that failed this way should be sent again as
    /// two halves: always for 413 (too large), and with --split-on-error for any other 4xx the
    /// retry policy gives up on.
    pub fn splits(&self, failure: &Failure) -> bool {
        // Only a refusal itself: not a batch past its deadline or told to wait too long,
        // whose last attempt was refused.
        let Failure::Status { status, .. } = failure else {
            return false;
        };
        match *status {
            StatusCode::PAYLOAD_TOO_LARGE => true,
            _ if failure.fatal().is_some() => false,
            status => self.split && status.is_client_error() && !retryable(failure),
        }
    }
}

/// Failures another attempt may cure: no connection or no answer, a timeout, and the statuses
/// that say "not now" (408, 429, 500, 502, 503, 504). Other 4xx, a reply that breaks the wire
/// contract and a refused certificate would fail the same way again.
pub fn retryable(failure: &Failure) -> bool {
    match failure {
        Failure::Timeout(_) | Failure::Connect { .. } | Failure::Transport(_) => true,
        Failure::Status { status, .. } => {
            matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
        }
        Failure::Response { .. }
        | Failure::Certificate { .. }
        | Failure::Record(_)
        | Failure::Line(_)
        | Failure::Uncached
        | Failure::WaitTooLong { .. }
        | Failure::Deadline { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid() -> Failure {
        Failure::Response {
            status: StatusCode::OK,
            problem: "wrong count".into(),
        }
    }

    fn status(code: u16, retry_after: Option<u64>) -> Failure {
        Failure::Status {
            status: StatusCode::from_u16(code).unwrap(),
            body: String::new(),
            json: None,
            retry_after: retry_after.map(|s| RetryAfter {
                wait: Duration::from_secs(s),
                header: s.to_string(),
            }),
        }
    }

    const POLICY: Policy = Policy {
        retries: 3,
        backoff: Duration::from_millis(200),
        split: false,
        max_wait: Duration::from_secs(300),
    };

    #[test]
    fn retries_only_what_may_pass_next_time() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(retryable(&status(code, None)), "{code}");
        }
        for code in [400, 401, 403, 404, 413, 422, 501, 505] {
            assert!(!retryable(&status(code, None)), "{code}");
        }
        assert!(retryable(&Failure::Timeout(Duration::from_secs(1))));
        assert!(retryable(&Failure::Transport("connection reset".into())));
        assert!(retryable(&Failure::Connect {
            host: "h:1".into(),
            cause: "refused".into()
        }));
        assert!(!retryable(&invalid()));
    }

    #[test]
    fn backoff_doubles_with_full_jitter_and_a_cap() {
        let failure = status(503, None);
        let top = |attempt| POLICY.retry(&failure, attempt, 0.999_999).unwrap();
        assert!(top(1) <= Duration::from_millis(200) && top(1) > Duration::from_millis(199));
        assert!(top(2) > Duration::from_millis(399) && top(2) <= Duration::from_millis(400));
        assert!(top(3) > Duration::from_millis(799) && top(3) <= Duration::from_millis(800));
        assert_eq!(POLICY.retry(&failure, 1, 0.0), Ok(Duration::ZERO));
        assert_eq!(
            POLICY.retry(&failure, 4, 0.5),
            Err(GiveUp::Done),
            "three retries, then give up"
        );
        let many = Policy {
            retries: 100,
            ..POLICY
        };
        assert!(many.retry(&failure, 60, 0.999_999).unwrap() <= MAX_BACKOFF);
        assert_eq!(POLICY.retry(&status(400, None), 1, 0.5), Err(GiveUp::Done));
        let short = Policy {
            retries: 100,
            max_wait: Duration::from_secs(2),
            ..POLICY
        };
        assert!(short.retry(&failure, 60, 0.999_999).unwrap() <= Duration::from_secs(2));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let asked = status(429, Some(5));
        assert_eq!(POLICY.retry(&asked, 1, 0.5), Ok(Duration::from_secs(5)));
        let no_retries = Policy {
            retries: 0,
            ..POLICY
        };
        assert_eq!(no_retries.retry(&asked, 1, 0.5), Err(GiveUp::Done));
    }

    #[test]
    fn a_retry_after_longer_than_the_longest_wait_is_not_waited_for() {
        assert_eq!(
            POLICY.retry(&status(429, Some(300)), 1, 0.5),
            Ok(Duration::from_secs(300))
        );
        let too_long = |retry| matches!(retry, Err(GiveUp::WaitTooLong(_)));
        assert!(too_long(POLICY.retry(&status(429, Some(301)), 1, 0.5)));
        assert!(too_long(POLICY.retry(&status(503, Some(100_000)), 3, 0.5)));
    }

    #[test]
    fn splits_rejections_not_outages() {
        let split = Policy {
            split: true,
            ..POLICY
        };
        assert!(POLICY.splits(&status(413, None)), "413 always splits");
        assert!(!POLICY.splits(&status(400, None)));
        assert!(split.splits(&status(400, None)));
        assert!(split.splits(&status(422, None)));
        assert!(!split.splits(&status(429, None)));
        assert!(!split.splits(&status(503, None)));
        assert!(!split.splits(&invalid()));
    }
}
