//! Replicas of one endpoint (-u given more than once): which one takes the next attempt, and
//! which are out of rotation for now. Each replica has its own concurrency limit (-c is per
//! replica, fixed or adaptive). An attempt goes to the replica with the fewest attempts in
//! flight among those that are up and have a free slot, ties taken in turn. A replica that
//! refuses connections, times out or answers 5xx is left out for a backoff that doubles while
//! it keeps failing (1 s, 2 s, ... 30 s); its first answer after that puts it back. When every
//! replica is out, attempts wait for the first to come back, as they wait out a cooldown.
//!
//! With one replica this is the limit and nothing more: it is never left out.

use std::cell::Cell;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cli::Concurrency;
use crate::flow::adapt::Change;
use crate::flow::limit::{Ended, Limit, Slot};

/// How long a failing replica is first left out.
const FIRST_OUT: Duration = Duration::from_secs(1);
/// The longest a failing replica is left out at a time.
const LONGEST_OUT: Duration = Duration::from_secs(30);

pub struct Replicas {
    list: Vec<Replica>,
    /// Where the search for the least busy starts, so that equals take turns.
    turn: Cell<usize>,
    /// Told when a slot is given back or a limit grows (with several replicas).
    changed: Notify,
}

struct Replica {
    limit: Limit,
    /// Until when it is out of rotation.
    out_until: Cell<Option<Instant>>,
    /// Attempts that failed in a row.
    failing: Cell<u32>,
}

/// A slot of one replica's limit, for one attempt; given back when dropped.
pub struct Taken<'a> {
    pub replica: usize,
    _slot: Slot<'a>,
    replicas: &'a Replicas,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.replicas.list.len() > 1 {
            self.replicas.changed.notify_one();
        }
    }
}

impl Replicas {
    /// `count` replicas (at least one), each with the limit `concurrency` asks for.
    pub fn new(count: usize, concurrency: Concurrency, now: std::time::Instant) -> Replicas {
        let list = (0..count.max(1))
            .map(|_| Replica {
                limit: Limit::of(concurrency, now),
                out_until: Cell::new(None),
                failing: Cell::new(0),
            })
            .collect();
        Replicas {
            list,
            turn: Cell::new(0),
            changed: Notify::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The most attempts that may be in flight at once, over all replicas.
    pub fn most(&self) -> usize {
        self.list.iter().map(|r| r.limit.most()).sum()
    }

    /// The limit now, over all replicas.
    pub fn size(&self) -> usize {
        self.list.iter().map(|r| r.limit.size()).sum()
    }

    /// Whether the limits adapt while the run goes.
    pub fn adapts(&self) -> bool {
        self.list.iter().any(|r| r.limit.adapts())
    }

    /// Waits for a free slot of a replica that is up, and takes it.
    pub async fn acquire(&self) -> Taken<'_> {
        if let [only] = &self.list[..] {
            let slot = only.limit.acquire().await;
            return self.taken(0, slot);
        }
        loop {
            let changed = self.changed.notified();
            let now = Instant::now();
            if let Some(replica) = self.least_busy(now) {
                if let Some(slot) = self.list[replica].limit.try_acquire() {
                    self.turn.set((replica + 1) % self.list.len());
                    return self.taken(replica, slot);
                }
            }
            match self.first_back(now) {
                Some(back) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(back) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    fn taken<'a>(&'a self, replica: usize, slot: Slot<'a>) -> Taken<'a> {
        Taken {
            replica,
            _slot: slot,
            replicas: self,
        }
    }

    /// The replica that is up, has a free slot and the fewest attempts in flight; among
    /// equals, the first from the one whose turn it is.
    fn least_busy(&self, now: Instant) -> Option<usize> {
        let n = self.list.len();
        (0..n)
            .map(|i| (self.turn.get() + i) % n)
            .filter(|&i| self.is_up(i, now) && self.list[i].limit.has_room())
            .min_by_key(|&i| self.list[i].limit.in_use())
    }

    fn is_up(&self, replica: usize, now: Instant) -> bool {
        self.list[replica]
            .out_until
            .get()
            .is_none_or(|until| until <= now)
    }

    /// When the first replica that is out comes back, if every one is out.
    fn first_back(&self, now: Instant) -> Option<Instant> {
        if (0..self.list.len()).any(|i| self.is_up(i, now)) {
            return None;
        }
        self.list.iter().filter_map(|r| r.out_until.get()).min()
    }

    /// How many replicas are up at `now`.
    #[cfg(test)]
    pub fn up(&self, now: Instant) -> usize {
        (0..self.list.len()).filter(|&i| self.is_up(i, now)).count()
    }

    /// Whether a replica other than `replica` is up.
    pub fn another_is_up(&self, replica: usize, now: Instant) -> bool {
        (0..self.list.len()).any(|i| i != replica && self.is_up(i, now))
    }

    /// Told how an attempt on `replica` went: a failure that says the replica itself is
    /// unwell leaves it out (longer each time in a row), and returns for how long; anything
    /// else puts it back. With one replica, nothing is left out.
    pub fn went(&self, replica: usize, unwell: bool, now: Instant) -> Option<Duration> {
        let this = self.list.get(replica)?;
        if !unwell {
            this.failing.set(0);
            this.out_until.set(None);
            return None;
        }
        if self.list.len() == 1 {
            return None;
        }
        let failing = this.failing.get().saturating_add(1);
        this.failing.set(failing);
        let out = FIRST_OUT
            .saturating_mul(1 << (failing - 1).min(16))
            .min(LONGEST_OUT);
        this.out_until.set(Some(now + out));
        Some(out)
    }

    /// Until when `replica` is out, if it is.
    pub fn out_until(&self, replica: usize) -> Option<Instant> {
        self.list.get(replica)?.out_until.get()
    }

    /// The limit of `replica` hears how an attempt went (see [`Limit::attempt_ended`]).
    pub fn attempt_ended(
        &self,
        replica: usize,
        started: std::time::Instant,
        took: Duration,
        records: usize,
        ended: Ended,
        in_flight: usize,
    ) -> Option<Change> {
        let limit = &self.list.get(replica)?.limit;
        let change = limit.attempt_ended(started, took, records, ended, in_flight);
        if change.as_ref().is_some_and(|c| c.to > c.from) && self.list.len() > 1 {
            self.changed.notify_waiters();
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    fn replicas(count: usize, each: usize) -> Replicas {
        let each = Concurrency::Fixed(NonZeroUsize::new(each).unwrap());
        Replicas::new(count, each, std::time::Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_go_to_the_least_busy_in_turn() {
        let pool = replicas(3, 2);
        let first = pool.acquire().await;
        let second = pool.acquire().await;
        let third = pool.acquire().await;
        assert_eq!([first.replica, second.replica, third.replica], [0, 1, 2]);
        drop(second);
        // Replica 1 has the fewest in flight now.
        let again = pool.acquire().await;
        assert_eq!(again.replica, 1);
        // Three more fill the other slots, one on each replica.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(pool.acquire().await);
        }
        let mut replicas: Vec<usize> = held.iter().map(|taken| taken.replica).collect();
        replicas.sort_unstable();
        assert_eq!(replicas, [0, 1, 2]);
        assert_eq!(pool.size(), 6);
        // Every slot is taken: the next waits for one.
        let waiting = tokio::time::timeout(Duration::from_secs(1), pool.acquire()).await;
        assert!(waiting.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_replica_is_left_out_longer_each_time() {
        let pool = replicas(2, 4);
        let now = Instant::now();
        assert_eq!(pool.went(0, true, now), Some(Duration::from_secs(1)));
        assert_eq!(pool.up(now), 1);
        for _ in 0..4 {
            let taken = pool.acquire().await;
            assert_eq!(taken.replica, 1);
        }
        assert_eq!(pool.went(0, true, now), Some(Duration::from_secs(2)));
        assert_eq!(pool.went(0, true, now), Some(Duration::from_secs(4)));
        for _ in 0..10 {
            pool.went(0, true, now);
        }
        assert_eq!(pool.out_until(0), Some(now + LONGEST_OUT));
        // Back after its time; one answer resets it.
        tokio::time::advance(LONGEST_OUT).await;
        assert_eq!(pool.up(Instant::now()), 2);
        assert_eq!(pool.went(0, false, Instant::now()), None);
        assert_eq!(pool.went(0, true, Instant::now()), Some(FIRST_OUT));
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_replica_is_out_attempts_wait_for_the_first_back() {
        let pool = replicas(2, 1);
        let start = Instant::now();
        pool.went(0, true, start);
        pool.went(1, true, start);
        pool.went(1, true, start);
        let taken = pool.acquire().await;
        assert_eq!(taken.replica, 0);
        assert_eq!(Instant::now() - start, FIRST_OUT);
    }

    #[tokio::test(start_paused = true)]
    async fn one_replica_is_never_left_out() {
        let pool = replicas(1, 1);
        assert_eq!(pool.went(0, true, Instant::now()), None);
        assert_eq!(pool.up(Instant::now()), 1);
        let _taken = pool.acquire().await;
    }
}
