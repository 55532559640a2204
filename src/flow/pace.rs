//! The request rate (--rate): starts evenly spaced, a burst of one, so that no second ever
//! holds more than N of them. A wait for the next start ends at once when the run stops.

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use crate::cli::Rate;
use crate::stop::{Stop, Unsent};

pub struct Pace {
    limiter: Option<(DefaultDirectRateLimiter, DefaultClock)>,
}

impl Pace {
    /// At most `rate`, or no limit.
    pub fn new(rate: Option<Rate>) -> Pace {
        let limiter = rate.map(|rate| {
            let quota = Quota::with_period(rate.per / rate.count.get())
                .unwrap_or_else(|| Quota::per_second(rate.count));
            let clock = DefaultClock::default();
            (
                DefaultDirectRateLimiter::direct_with_clock(quota, clock.clone()),
                clock,
            )
        });
        Pace { limiter }
    }

    /// Waits until the rate allows one more request, or the run stops (saying why).
    pub async fn wait(&self, stop: &Stop) -> Result<(), Unsent> {
        let Some((limiter, clock)) = &self.limiter else {
            return Ok(());
        };
        while let Err(not_until) = limiter.check() {
            let wait = not_until.wait_time_from(clock.now());
            tracing::debug!("--rate: waiting {:.1} ms", wait.as_secs_f64() * 1000.0);
            let wait = wait.max(Duration::from_micros(100));
            stop.sleep_until(tokio::time::Instant::now() + wait).await?;
        }
        Ok(())
    }
}
