//! The token budget (--tpm): requests start no faster than their tokens allow, evenly spread,
//! so that no minute holds more than the budget (beyond the one request that opens it). A
//! request's tokens are estimated before it is sent, as OpenAI's rule of thumb has it (a
//! token is about 4 bytes of text); when the answer reports the tokens the server counted,
//! the budget is corrected by the difference.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

use crate::stop::{Stop, Unsent};

pub struct Budget {
    /// The time one token takes from the budget.
    per_token: Duration,
    /// When the next request may start.
    next: Cell<Option<Instant>>,
}

/// Bytes of text per token, by OpenAI's rule of thumb.
const BYTES_PER_TOKEN: usize = 4;
/// The most a count from the server can add to the wait.
const MOST_DEBT: Duration = Duration::from_secs(60);

impl Budget {
    pub fn new(per_minute: u64) -> Budget {
        Budget {
            per_token: Duration::from_secs(60).div_f64(per_minute.max(1) as f64),
            next: Cell::new(None),
        }
    }

    /// The tokens a request of `bytes` bytes is taken to hold until the server says.
    pub fn estimate(bytes: usize) -> u64 {
        bytes.div_ceil(BYTES_PER_TOKEN).max(1) as u64
    }

    /// Takes `tokens` from the budget and says when the request may start: now, or once the
    /// tokens of those before it have been paid for.
    pub fn reserve(&self, tokens: u64, now: Instant) -> Instant {
        let start = self.next.get().map_or(now, |next| next.max(now));
        self.next.set(Some(start + self.cost(tokens)));
        start
    }

    /// The server counted `counted` tokens for a request reserved as `estimated`: later
    /// requests start later (or earlier, but never before `now`) by the difference. A count
    /// no budget could pay within a minute is taken as a minute's worth: a server's word
    /// never stalls the run for longer.
    pub fn correct(&self, estimated: u64, counted: u64, now: Instant) {
        let Some(next) = self.next.get() else { return };
        let next = if counted >= estimated {
            (next + self.cost(counted - estimated)).min(next.max(now) + MOST_DEBT)
        } else {
            next.checked_sub(self.cost(estimated - counted))
                .unwrap_or(now)
                .max(now)
        };
        self.next.set(Some(next));
    }

    /// Waits for `tokens` to be paid for, or for the run to stop (saying why).
    pub async fn wait(&self, tokens: u64, stop: &Stop) -> Result<(), Unsent> {
        let start = self.reserve(tokens, Instant::now());
        if start > Instant::now() {
            tracing::debug!(
                "--tpm: waiting {:.1} ms for {tokens} tokens",
                (start - Instant::now()).as_secs_f64() * 1000.0
            );
        }
        stop.sleep_until(start).await
    }

    fn cost(&self, tokens: u64) -> Duration {
        self.per_token
            .saturating_mul(u32::try_from(tokens).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spread_so_that_no_minute_holds_more_than_the_budget() {
        let budget = Budget::new(600);
        let start = Instant::now();
        // 100 tokens each at 10 a second: one every 10 s, the first at once.
        let starts: Vec<Duration> = (0..7).map(|_| budget.reserve(100, start) - start).collect();
        assert_eq!(starts[0], Duration::ZERO);
        assert_eq!(starts[1], Duration::from_secs(10));
        assert_eq!(starts[6], Duration::from_secs(60));
        // In any minute: 600 tokens, plus the request that opens it.
        let in_first_minute = starts
            .iter()
            .filter(|s| **s < Duration::from_secs(60))
            .count();
        assert_eq!(in_first_minute * 100, 600);
    }

    #[test]
    fn the_servers_count_corrects_the_estimate() {
        let budget = Budget::new(60);
        let start = Instant::now();
        assert_eq!(budget.reserve(10, start), start);
        // It counted 30: 20 more seconds before the next.
        budget.correct(10, 30, start);
        assert_eq!(budget.reserve(1, start) - start, Duration::from_secs(30));
        // It counted 1 of an estimated 1: no change; fewer than estimated gives time back,
        // but the next start is never in the past.
        budget.correct(1, 1, start);
        budget.correct(1000, 0, start);
        assert_eq!(budget.reserve(1, start), start);
        // A server that claims a billion tokens holds the next start back a minute at most.
        budget.correct(1, 1_000_000_000, start);
        assert!(budget.reserve(1, start) - start <= Duration::from_secs(61));
    }

    #[test]
    fn estimates_are_a_token_per_four_bytes_at_least_one() {
        assert_eq!(Budget::estimate(0), 1);
        assert_eq!(Budget::estimate(4), 1);
        assert_eq!(Budget::estimate(5), 2);
        assert_eq!(Budget::estimate(4000), 1000);
    }
}
