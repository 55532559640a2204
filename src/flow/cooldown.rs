//! The shared cooldown: when the server says "not now" (a 429, a 503 with Retry-After, or
//! rate-limit headers saying nothing is left), no attempt of any batch starts until the wait
//! is over, not only the one that was told. Attempts in flight finish. A wait is never longer
//! than --retry-max-wait, and the first signal ends it.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

use crate::stop::{Stop, Unsent};

pub struct Cooldown {
    until: Cell<Option<Instant>>,
    longest: Duration,
}

impl Cooldown {
    /// A cooldown whose waits are at most `longest` (--retry-max-wait).
    pub fn new(longest: Duration) -> Cooldown {
        Cooldown {
            until: Cell::new(None),
            longest,
        }
    }

    /// No attempt starts for `wait` (at most the longest) from `now`; a cooldown already
    /// running longer stays. Says how long the pause is from now if this call lengthened it.
    pub fn pause(&self, wait: Duration, now: Instant) -> Option<Duration> {
        let until = now + wait.min(self.longest);
        if self.until.get().is_some_and(|current| current >= until) {
            return None;
        }
        self.until.set(Some(until));
        Some(until - now)
    }

    /// Waits until no cooldown runs, or the run stops (saying why).
    pub async fn wait(&self, stop: &Stop) -> Result<(), Unsent> {
        while let Some(until) = self.until.get().filter(|until| *until > Instant::now()) {
            stop.sleep_until(until).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_waiter_until_it_is_over_and_never_longer_than_the_longest() {
        let stop = Stop::default();
        let cooldown = Cooldown::new(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(
            cooldown.pause(Duration::from_secs(1), start),
            Some(Duration::from_secs(1))
        );
        // A shorter pause does not shorten it; a longer one lengthens it, up to the longest.
        assert_eq!(cooldown.pause(Duration::from_millis(10), start), None);
        assert_eq!(
            cooldown.pause(Duration::from_secs(600), start),
            Some(Duration::from_secs(5))
        );
        let (a, b) = tokio::join!(cooldown.wait(&stop), cooldown.wait(&stop));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // Over: no wait.
        cooldown.wait(&stop).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_signal_ends_the_wait() {
        let stop = Stop::default();
        let cooldown = Cooldown::new(Duration::from_secs(300));
        let start = Instant::now();
        cooldown.pause(Duration::from_secs(120), start);
        let waiting = cooldown.wait(&stop);
        let stopping = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.abort();
        };
        let (waited, ()) = tokio::join!(waiting, stopping);
        assert!(waited.is_err());
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
