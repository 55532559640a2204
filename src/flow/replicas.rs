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
    /// When it was last left out: attempts that started before do not count for or against
    /// it.
    left_at: Cell<Option<Instant>>,
    /// Times it was left out in a row.
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
                left_at: Cell::new(None),
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
            match self.next_back(now) {
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

    /// When the next replica that is out comes back, if one is out.
    fn next_back(&self, now: Instant) -> Option<Instant> {
        self.list
            .iter()
            .filter_map(|r| r.out_until.get())
            .filter(|&until| until > now)
            .min()
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

    /// Told how an attempt on `replica` that `started` went: a failure that says the replica
    /// itself is unwell leaves it out (longer each time in a row), and returns for how long;
    /// anything else puts it back. An attempt that started before the replica was last left
    /// out tells nothing new (the others in flight then failed with it, or were answered
    /// before it failed), and one that fails while it is out does not make it longer. With
    /// one replica, nothing is left out.
    pub fn went(
        &self,
        replica: usize,
        unwell: bool,
        started: Instant,
        now: Instant,
    ) -> Option<Duration> {
        let this = self.list.get(replica)?;
        if self.list.len() == 1 || this.left_at.get().is_some_and(|left| started < left) {
            return None;
        }
        if !unwell {
            this.failing.set(0);
            this.out_until.set(None);
            return None;
        }
        if this.out_until.get().is_some_and(|until| until > now) {
            return None;
        }
        this.left_at.set(Some(now));
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

    /// An attempt that starts now and fails at once.
    fn fails(pool: &Replicas, replica: usize) -> Option<Duration> {
        let now = Instant::now();
        pool.went(replica, true, now, now)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_replica_is_left_out_longer_each_time() {
        let pool = replicas(2, 4);
        let before = Instant::now();
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(fails(&pool, 0), Some(FIRST_OUT));
        assert_eq!(pool.up(Instant::now()), 1);
        for _ in 0..4 {
            let taken = pool.acquire().await;
            assert_eq!(taken.replica, 1);
        }
        // The other attempts in flight when it failed tell nothing new, failed or answered.
        assert_eq!(pool.went(0, true, before, Instant::now()), None);
        assert_eq!(pool.went(0, false, before, Instant::now()), None);
        assert_eq!(pool.up(Instant::now()), 1);
        // Nor does a failure while it is out.
        assert_eq!(fails(&pool, 0), None);
        // Back after its time; failing again, out for twice as long, then four times...
        let mut out = FIRST_OUT;
        for _ in 0..8 {
            tokio::time::advance(out).await;
            assert_eq!(pool.up(Instant::now()), 2);
            out = fails(&pool, 0).unwrap();
        }
        assert_eq!(out, LONGEST_OUT);
        // ... until an answer puts it back for good.
        tokio::time::advance(out).await;
        let now = Instant::now();
        assert_eq!(pool.went(0, false, now, now), None);
        assert_eq!(fails(&pool, 0), Some(FIRST_OUT));
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_replica_is_out_attempts_wait_for_the_first_back() {
        let pool = replicas(2, 1);
        let start = Instant::now();
        fails(&pool, 0);
        fails(&pool, 1);
        let taken = pool.acquire().await;
        assert_eq!(Instant::now() - start, FIRST_OUT);
        drop(taken);
    }

    /// A replica back from its time out takes attempts at once, though another is busy.
    #[tokio::test(start_paused = true)]
    async fn a_replica_back_is_used_at_once() {
        let pool = replicas(2, 1);
        let start = Instant::now();
        fails(&pool, 0);
        let busy = pool.acquire().await;
        assert_eq!(busy.replica, 1);
        let taken = pool.acquire().await;
        assert_eq!(taken.replica, 0);
        assert_eq!(Instant::now() - start, FIRST_OUT);
    }

    #[tokio::test(start_paused = true)]
    async fn one_replica_is_never_left_out() {
        let pool = replicas(1, 1);
        assert_eq!(fails(&pool, 0), None);
        assert_eq!(pool.up(Instant::now()), 1);
        let _taken = pool.acquire().await;
    }
}
