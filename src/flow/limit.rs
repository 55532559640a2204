//! The concurrency limit: how many attempts may be in flight at once. Each attempt takes a
//! slot before it is sent and gives it back when its answer is in (or it is given up). The
//! size may change while the run goes: a smaller size lets no new attempt start until enough
//! slots are back; a larger one wakes the attempts waiting. The limit is told how each
//! attempt went ([`Limit::attempt_ended`]): a fixed `-c N` does not change, `-c auto` asks
//! its [`Controller`] for the next size.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::cli::Concurrency;
use crate::flow::adapt::{Change, Controller, Sample};

pub struct Limit {
    size: Cell<usize>,
    taken: Cell<usize>,
    freed: Notify,
    /// The largest size it may take.
    most: usize,
    /// Decides the size under `-c auto`.
    controller: Option<RefCell<Controller>>,
}

/// A slot in the limit, given back when dropped.
pub struct Slot<'a> {
    limit: &'a Limit,
}

/// How an attempt ended, as far as the limit cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// A 2xx answer came (read, or not readable by the codec).
    Answered,
    /// The server said it is overloaded (429, 503, a gateway's 504), or the attempt timed out
    /// (--timeout, or cut by --deadline).
    Overloaded,
    /// Anything else: no answer, a refusal for other reasons, a refused certificate.
    Failed,
}

impl Limit {
    /// A limit of `size` slots (at least one).
    pub fn new(size: usize) -> Limit {
        Limit {
            size: Cell::new(size.max(1)),
            taken: Cell::new(0),
            freed: Notify::new(),
            most: size.max(1),
            controller: None,
        }
    }

    /// The limit `-c` asks for, starting at `now`: fixed, or adaptive from its least.
    pub fn of(concurrency: Concurrency, now: Instant) -> Limit {
        match concurrency {
            Concurrency::Fixed(size) => Limit::new(size.get()),
            Concurrency::Auto(bounds) => {
                let controller = Controller::new(bounds, now);
                Limit {
                    controller: Some(RefCell::new(controller)),
                    most: bounds.max,
                    ..Limit::new(bounds.min)
                }
            }
        }
    }

    /// The largest size the limit may take: batches outstanding beyond it would only wait.
    pub fn most(&self) -> usize {
        self.most
    }

    /// Whether the size adapts while the run goes.
    pub fn adapts(&self) -> bool {
        self.controller.is_some()
    }

    /// Waits for a free slot and takes it.
    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            let freed = self.freed.notified();
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            freed.await;
        }
    }

    /// Takes a free slot, if there is one.
    pub fn try_acquire(&self) -> Option<Slot<'_>> {
        self.has_room().then(|| {
            self.taken.set(self.taken.get() + 1);
            Slot { limit: self }
        })
    }

    /// Whether a slot is free.
    pub fn has_room(&self) -> bool {
        self.taken.get() < self.size.get()
    }

    /// Changes the number of slots (at least one); attempts in flight keep theirs.
    pub fn resize(&self, size: usize) {
        let grown = size.max(1).saturating_sub(self.size.get());
        self.size.set(size.max(1));
        for _ in 0..grown {
            self.freed.notify_one();
        }
    }

    pub fn size(&self) -> usize {
        self.size.get()
    }

    /// Slots taken now.
    pub fn in_use(&self) -> usize {
        self.taken.get()
    }

    /// Told of each attempt as it ends: `took` from `started`, for `records` records, with
    /// `in_flight` requests on their way (itself included). A fixed limit does not change; an
    /// adaptive one decides its next size here, and says so.
    pub fn attempt_ended(
        &self,
        started: Instant,
        took: Duration,
        records: usize,
        ended: Ended,
        in_flight: usize,
    ) -> Option<Change> {
        let mut controller = self.controller.as_ref()?.borrow_mut();
        let change = controller.sample(Sample {
            started,
            took,
            records,
            ended,
            in_flight,
        });
        if change.is_some() {
            self.resize(controller.slots());
        }
        change
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let limit = self.limit;
        limit.taken.set(limit.taken.get() - 1);
        // One slot for one waiter: waking them all would cost each release as many wake-ups
        // as batches wait (up to the most under -c auto).
        limit.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// Runs `attempts` attempts of 10 ms each through `limit` while `resize` changes it on a
    /// paused clock; checks no more attempts than the limit allowed when each started are in
    /// flight, and returns the most in flight at once.
    #[tokio::test(start_paused = true)]
    async fn in_flight_never_exceeds_the_limit_as_it_shrinks_and_grows() {
        let limit = Rc::new(Limit::new(4));
        let most = Rc::new(Cell::new(0));
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let mut tasks = Vec::new();
                for _ in 0..200 {
                    let (limit, most) = (limit.clone(), most.clone());
                    tasks.push(tokio::task::spawn_local(async move {
                        let slot = limit.acquire().await;
                        assert!(
                            limit.in_use() <= limit.size(),
                            "{} in use, limit {}",
                            limit.in_use(),
                            limit.size()
                        );
                        most.set(most.get().max(limit.in_use()));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        drop(slot);
                    }));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
                assert_eq!(limit.in_use(), 4);
                limit.resize(1);
                // Those in flight finish; then one at a time.
                tokio::time::sleep(Duration::from_millis(15)).await;
                assert_eq!(limit.in_use(), 1);
                most.set(0);
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert_eq!(most.get(), 1, "shrunk to one");
                limit.resize(8);
                tokio::time::sleep(Duration::from_millis(1)).await;
                assert_eq!(
                    limit.in_use(),
                    8,
                    "grown: the waiting attempts start at once"
                );
                for task in tasks {
                    task.await.unwrap();
                }
                assert_eq!(limit.in_use(), 0);
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_is_never_below_one() {
        let limit = Limit::new(0);
        assert_eq!(limit.size(), 1);
        let slot = limit.acquire().await;
        limit.resize(0);
        assert_eq!(limit.size(), 1);
        drop(slot);
        let _again = limit.acquire().await;
    }
}
