//! How many requests the server works on at once (--capacity, --capacity-schedule): a gate in
//! front of its workers that queues the rest in order of arrival, or refuses them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::lock;

/// How many workers the server has from each moment on, counted from the first request's
/// arrival: `0s:32,5s:8,10s:32` is 32 workers, 8 from 5s on, and 32 again from 10s on.
///
/// It starts at `0s`, and its times only go forward; a capacity of 0 is a server that answers
/// nothing (or only 429s) for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// (from, workers), from 0s on, in order.
    steps: Vec<(Duration, usize)>,
}

impl Schedule {
    /// A server with `workers` workers from start to end.
    pub fn fixed(workers: usize) -> Schedule {
        Schedule {
            steps: vec![(Duration::ZERO, workers)],
        }
    }

    /// The workers there are `elapsed` after the first request arrived.
    pub fn workers_at(&self, elapsed: Duration) -> usize {
        self.steps
            .iter()
            .take_while(|(from, _)| *from <= elapsed)
            .last()
            .map_or(0, |(_, workers)| *workers)
    }

    /// When, after `elapsed`, the capacity next changes.
    fn next_change(&self, elapsed: Duration) -> Option<Duration> {
        self.steps
            .iter()
            .map(|(from, _)| *from)
            .find(|from| *from > elapsed)
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Schedule, String> {
        let mut steps: Vec<(Duration, usize)> = Vec::new();
        for step in text.split(',').map(str::trim) {
            let Some((from, workers)) = step.split_once(':') else {
                return Err(format!("{step:?} is not TIME:WORKERS, such as 5s:8"));
            };
            let from = humantime::parse_duration(from.trim())
                .map_err(|e| format!("{:?} is not a time: {e}", from.trim()))?;
            let workers = workers
                .trim()
                .parse()
                .map_err(|e| format!("{:?} is not a number of workers: {e}", workers.trim()))?;
            match steps.last() {
                None if !from.is_zero() => {
                    return Err("the schedule must start at 0s".to_owned());
                }
                Some((before, _)) if from <= *before => {
                    return Err(format!("{step:?} does not come after the step before it"));
                }
                _ => steps.push((from, workers)),
            }
        }
        Ok(Schedule { steps })
    }
}

/// The workers, and the requests waiting for one in order of arrival.
pub(crate) struct Gate {
    schedule: Schedule,
    /// Answer 429 rather than queue when every worker is busy.
    refuse: bool,
    queue: Mutex<Queue>,
    /// Told whenever a worker may have come free or the head of the queue moved.
    changed: Notify,
}

#[derive(Default)]
struct Queue {
    busy: usize,
    /// Tickets of the waiting requests, first come first.
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

/// A worker taken through the gate; dropping it frees the worker.
pub(crate) struct Worker<'a> {
    gate: &'a Gate,
    /// Whether the request had to queue for it.
    pub(crate) waited: bool,
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        lock(&self.gate.queue).busy -= 1;
        self.gate.changed.notify_waiters();
    }
}

/// A request's place in the queue; it leaves the queue if the request is given up (the client
/// went away) before a worker takes it, so that those behind it move up.
struct Place<'a> {
    gate: &'a Gate,
    ticket: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut queue = lock(&self.gate.queue);
        if let Some(at) = queue.waiting.iter().position(|t| *t == self.ticket) {
            queue.waiting.remove(at);
            drop(queue);
            self.gate.changed.notify_waiters();
        }
    }
}

impl Gate {
    pub(crate) fn new(schedule: Schedule, refuse: bool) -> Gate {
        Gate {
            schedule,
            refuse,
            queue: Mutex::new(Queue::default()),
            changed: Notify::new(),
        }
    }

    /// Takes a worker, first waiting behind the requests that came before if every worker is
    /// busy; `None` when every worker is busy and the gate refuses rather than queues.
    /// `epoch` is when the first request arrived, from which the schedule counts.
    pub(crate) async fn enter(&self, epoch: Instant) -> Option<Worker<'_>> {
        let ticket = {
            let mut queue = lock(&self.queue);
            if queue.waiting.is_empty() && queue.busy < self.workers_since(epoch) {
                queue.busy += 1;
                return Some(Worker {
                    gate: self,
                    waited: false,
                });
            }
            if self.refuse {
                return None;
            }
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.waiting.push_back(ticket);
            ticket
        };
        let _place = Place { gate: self, ticket };
        loop {
            // Made before looking, so that no change between the look and the wait is missed.
            let changed = self.changed.notified();
            let elapsed = {
                let mut queue = lock(&self.queue);
                let elapsed = Instant::now().saturating_duration_since(epoch);
                if queue.waiting.front() == Some(&ticket)
                    && queue.busy < self.schedule.workers_at(elapsed)
                {
                    queue.waiting.pop_front();
                    queue.busy += 1;
                    drop(queue);
                    // The next in line may fit as well, when the capacity grew by more than one.
                    self.changed.notify_waiters();
                    return Some(Worker {
                        gate: self,
                        waited: true,
                    });
                }
                elapsed
            };
            // Nobody frees a worker when the capacity grows with time, so look again then.
            match self.schedule.next_change(elapsed) {
                Some(change) => tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep_until(epoch + change) => {}
                },
                None => changed.await,
            }
        }
    }

    fn workers_since(&self, epoch: Instant) -> usize {
        self.schedule
            .workers_at(Instant::now().saturating_duration_since(epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::oneshot;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_schedule_reads_as_steps_from_0s() {
        let schedule: Schedule = "0s:32, 5s:8,10s:32".parse().unwrap();
        assert_eq!(schedule.workers_at(Duration::ZERO), 32);
        assert_eq!(schedule.workers_at(Duration::from_millis(4999)), 32);
        assert_eq!(schedule.workers_at(secs(5)), 8);
        assert_eq!(schedule.workers_at(secs(10)), 32);
        assert_eq!(schedule.workers_at(secs(1000)), 32);
        assert_eq!(schedule.next_change(Duration::ZERO), Some(secs(5)));
        assert_eq!(schedule.next_change(secs(5)), Some(secs(10)));
        assert_eq!(schedule.next_change(secs(10)), None);
        assert_eq!("0s:4".parse::<Schedule>().unwrap(), Schedule::fixed(4));
        assert_eq!(
            "0ms:0,1m:3"
                .parse::<Schedule>()
                .unwrap()
                .workers_at(secs(60)),
            3
        );
    }

    #[test]
    fn a_bad_schedule_says_why() {
        for (text, why) in [
            ("", "not TIME:WORKERS"),
            ("0s:4,", "not TIME:WORKERS"),
            ("1s:4", "must start at 0s"),
            ("0s:4,5s:2,5s:3", "does not come after"),
            ("0s:4,5s:2,3s:3", "does not come after"),
            ("0s:-1", "not a number of workers"),
            ("zero:1", "not a time"),
        ] {
            let err = text.parse::<Schedule>().unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    /// A task holding or waiting for a worker: it says on the first channel when it got one,
    /// and lets go when the second is sent to or dropped.
    type Client = (oneshot::Receiver<bool>, oneshot::Sender<()>);

    fn client(gate: &Arc<Gate>, epoch: Instant) -> Client {
        let (got, got_rx) = oneshot::channel();
        let (done_tx, done) = oneshot::channel::<()>();
        let gate = gate.clone();
        tokio::spawn(async move {
            let worker = gate.enter(epoch).await;
            let _ = got.send(worker.is_some());
            let _ = done.await;
            drop(worker);
        });
        (got_rx, done_tx)
    }

    /// Whether the client got a worker since last asked.
    fn got_one(client: &mut Client) -> bool {
        client.0.try_recv() == Ok(true)
    }

    /// Lets every task that can run do so.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_capacity_wait_their_turn_in_order() {
        let gate = Arc::new(Gate::new(Schedule::fixed(2), false));
        let epoch = Instant::now();
        let mut clients: Vec<Client> = (0..5).map(|_| client(&gate, epoch)).collect();
        settle().await;
        let got: Vec<bool> = clients.iter_mut().map(got_one).collect();
        assert_eq!(got, [true, true, false, false, false]);
        // The second lets go: the third, not a later one, takes its worker.
        let (_, done) = clients.remove(1);
        let _ = done.send(());
        settle().await;
        let got: Vec<bool> = clients[1..].iter_mut().map(got_one).collect();
        assert_eq!(got, [true, false, false]);
        assert_eq!(lock(&gate.queue).busy, 2);
        assert_eq!(lock(&gate.queue).waiting.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_given_up_in_the_queue_lets_the_next_move_up() {
        let gate = Arc::new(Gate::new(Schedule::fixed(1), false));
        let epoch = Instant::now();
        let first = gate.enter(epoch).await.expect("a free worker");
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter(epoch).await.is_some() }
        });
        let mut next = client(&gate, epoch);
        settle().await;
        waiting.abort();
        settle().await;
        assert_eq!(lock(&gate.queue).waiting.len(), 1);
        drop(first);
        settle().await;
        assert!(got_one(&mut next));
        assert!(lock(&gate.queue).waiting.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_gate_that_refuses_answers_at_once() {
        let gate = Gate::new(Schedule::fixed(1), true);
        let epoch = Instant::now();
        let first = gate.enter(epoch).await.expect("a free worker");
        assert!(!first.waited);
        assert!(gate.enter(epoch).await.is_none());
        drop(first);
        assert!(gate.enter(epoch).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_follows_the_schedule_both_ways() {
        let schedule: Schedule = "0s:2,5s:1,10s:3".parse().unwrap();
        let gate = Arc::new(Gate::new(schedule, false));
        let epoch = Instant::now();
        let mut a = client(&gate, epoch);
        let mut b = client(&gate, epoch);
        settle().await;
        assert!(got_one(&mut a) && got_one(&mut b));

        // Shrunk to 1 with 2 busy: both keep working; a third waits even when one ends.
        tokio::time::advance(secs(6)).await;
        let mut c = client(&gate, epoch);
        let mut d = client(&gate, epoch);
        settle().await;
        let _ = a.1.send(());
        settle().await;
        assert!(!got_one(&mut c), "1 busy of 1: the third still waits");

        // Grown to 3 at 10s with nobody letting go: the clock lets both waiting ones in.
        tokio::time::advance(secs(4)).await;
        settle().await;
        assert!(got_one(&mut c) && got_one(&mut d));
        assert_eq!(lock(&gate.queue).busy, 3);
    }
}
