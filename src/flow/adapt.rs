//! The adaptive concurrency limit (`-c auto`) as a pure function of the attempts it is told
//! of: no clock, no sockets, so it is tested sample by sample.
//!
//! How it decides, in windows of about one limit's worth of attempts:
//! - Each answered attempt is measured on its own (a retry is a sample of its own), per
//!   record, and grouped with batches of about the same size (the same power of two of
//!   records), so that a batch of 3 flushed by the timeout is compared with other small
//!   batches, not with full ones. The window's mean per-record latency, over the best such
//!   mean seen recently, is `r`; `limit × (1 − 1/r)` estimates the attempts queued in the
//!   server (TCP Vegas' estimate, as in Netflix's Vegas limiter; by Little's law it is the
//!   limit less what the server serves at once).
//! - Nothing queued: grow, by half until the first sign of a queue, then by one a window;
//!   only while the run uses at least half the limit.
//! - Half an attempt queued or more on average (`limit / 50` for large limits, which latency
//!   noise would otherwise trip), in two windows in a row (or twice that in one): shrink to
//!   what the server serves at once, `limit / r`.
//! - An attempt the server refuses as overloaded (429, 503) or that times out shrinks the
//!   limit at once by a tenth, and at the window's end to the share of attempts that passed,
//!   never by more than half (so a burst of 429s cannot collapse it).
//! - Either sign sets a ceiling where the limit was: the limit grows back to just under it
//!   and probes above it only now and then, the wait doubling (1 s to 16 s) while probes keep
//!   failing at the same ceiling. A server sees few 429s, and few requests wait in its queue.
//! - Every 10 s the best latencies are measured again, for one window at half the limit, so
//!   that a queue that never drains cannot pass for the server's best; they may rise by a
//!   quarter at most each time (a server that has just lost capacity may queue even then).
//! - A rise of less than half a millisecond an attempt is taken for noise: a fast server's
//!   latency moves that much with the machine's load, queue or no queue; and a window whose
//!   attempts took 2 ms or less on average shows no queue worth shrinking for.

use std::time::{Duration, Instant};

use crate::cli::Bounds;
use crate::flow::limit::Ended;

/// One attempt, as it ended.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub started: Instant,
    pub took: Duration,
    pub records: usize,
    pub ended: Ended,
    /// Attempts in flight when it ended, itself included.
    pub in_flight: usize,
}

/// Why the limit changed, for the log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Why {
    /// Latency stayed near its best (`r` times it).
    Grew { r: f64 },
    /// Latency grew beyond its best: a queue is building in the server.
    Queueing { r: f64 },
    /// `overloaded` of `of` attempts in the window were refused as overloaded or timed out.
    Overloaded { overloaded: usize, of: usize },
    /// Measuring the best latencies again, at half the limit, for one window.
    Remeasuring,
    /// Measured again: back to the limit before.
    Remeasured,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Grew { r } => write!(f, "latency {r:.2}× its best"),
            Why::Queueing { r } => write!(f, "latency {r:.2}× its best: the server is queueing"),
            Why::Overloaded { overloaded, of } => {
                write!(
                    f,
                    "{overloaded} of {of} attempts overloaded (429, 503 or timeout)"
                )
            }
            Why::Remeasuring => f.write_str("measuring the best latency again"),
            Why::Remeasured => f.write_str("best latency measured again"),
        }
    }
}

/// A new number of slots, and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    pub from: usize,
    pub to: usize,
    pub why: Why,
}

/// Size classes: batches of 2^k to 2^(k+1) − 1 records.
const CLASSES: usize = 32;
/// How often the best latencies are measured again.
const REMEASURE_EVERY: Duration = Duration::from_secs(10);
/// The first wait before probing above a ceiling, and the longest.
const PROBE_FIRST: Duration = Duration::from_secs(1);
const PROBE_MOST: Duration = Duration::from_secs(16);
/// A rise in an attempt's latency this small is noise, not a queue.
const NOISE: Duration = Duration::from_micros(500);
/// A server whose attempts take this long or less has no queue worth shrinking for.
const FAST: Duration = Duration::from_millis(2);
/// How much the best latency of a size class may rise at each remeasure.
const BEST_RISES_AT_MOST: f64 = 1.25;
/// Growth a window until the first sign of a queue: by half, so that the window that
/// finds the server's capacity overshoots it by a third at most.
const SLOW_START: f64 = 1.5;
/// The shrink at the first overloaded attempt of a window.
const OVERLOAD_AT_ONCE: f64 = 0.9;
/// Attempts queued in the server that count as a queue: half of one, or a share of large
/// limits, whose window means latency noise moves more.
const QUEUED_LEAST: f64 = 0.5;
const QUEUED_SHARE: f64 = 0.02;

pub struct Controller {
    bounds: Bounds,
    /// The limit, kept fractional so that small steps add up.
    limit: f64,
    /// The slots given out now: the limit, or half of it while remeasuring.
    slots: usize,
    /// The best window mean of per-record latency (seconds), by size class.
    best: [Option<f64>; CLASSES],
    window: Window,
    /// Doubling until the first sign of a queue or an overload.
    slow_start: bool,
    ceiling: Option<Ceiling>,
    /// When the best latencies were last measured.
    measured: Instant,
    /// While remeasuring: attempts started before this measure the old queue.
    remeasuring: Option<Instant>,
    /// When the limit last shrank: the latency of attempts started before it tells of the
    /// queue that made it shrink, not of the limit now.
    shrank: Instant,
    /// Windows in a row at or above the ceiling without a queue: two lift it (the first may
    /// hold too few attempts started above it to tell).
    clean_above: u32,
    /// Whether the last window saw a queue forming: a small queue must be seen twice in a row
    /// to count, since a busy machine's own delays look like one for a moment.
    forming: bool,
    /// Whether the last remeasure held a rise of the best latency back.
    capped: bool,
}

#[derive(Default)]
struct Window {
    samples: usize,
    overloaded: usize,
    /// Per size class: the sum of per-record latencies, of records, and how many attempts.
    latency: [(f64, usize, usize); CLASSES],
    /// The answered attempts' latencies, summed (seconds).
    took: f64,
    /// Most attempts in flight seen.
    busiest: usize,
    /// The limit when the window began, and whether it shrank at once already.
    limit_at_start: f64,
    shrunk: bool,
}

/// The limit at which the server last showed it had enough, and when to probe above it.
/// Lifted once the limit passed it without a sign, but kept: a sign near it again is the
/// same knee found again, and waits longer before the next probe.
struct Ceiling {
    at: f64,
    probe_after: Instant,
    wait: Duration,
    lifted: bool,
}

impl Controller {
    /// Starts at `bounds.min`, at `now`.
    pub fn new(bounds: Bounds, now: Instant) -> Controller {
        let min = bounds.min.max(1);
        let bounds = Bounds {
            min,
            max: bounds.max.max(min),
        };
        Controller {
            bounds,
            limit: min as f64,
            slots: min,
            best: [None; CLASSES],
            window: Window::starting(min as f64),
            slow_start: true,
            ceiling: None,
            measured: now,
            remeasuring: None,
            shrank: now,
            clean_above: 0,
            forming: false,
            capped: false,
        }
    }

    /// The attempts that may be in flight now.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Takes one attempt into account; says when the number of slots changes.
    pub fn sample(&mut self, sample: Sample) -> Option<Change> {
        let from = self.slots;
        let why = self.decide(sample)?;
        self.slots = self.slots_at(self.limit);
        (self.slots != from).then_some(Change {
            from,
            to: self.slots,
            why,
        })
    }

    fn decide(&mut self, sample: Sample) -> Option<Why> {
        let now = sample.started + sample.took;
        if sample.ended == Ended::Failed {
            return None;
        }
        if let Some(since) = self.remeasuring {
            if sample.started < since {
                return None;
            }
            if sample.ended == Ended::Overloaded {
                // Not a moment to measure: back to normal, which shrinks.
                self.remeasuring = None;
                self.measured = now;
                self.window = Window::starting(self.limit);
            }
        }
        let window = &mut self.window;
        window.samples += 1;
        window.busiest = window.busiest.max(sample.in_flight);
        let mut why = None;
        match sample.ended {
            Ended::Overloaded => {
                window.overloaded += 1;
                self.slow_start = false;
                if !window.shrunk {
                    window.shrunk = true;
                    let of = window.samples;
                    self.set_ceiling(now);
                    self.shrank = now;
                    self.forming = false;
                    self.limit = (self.limit * OVERLOAD_AT_ONCE).max(self.bounds.min as f64);
                    why = Some(Why::Overloaded { overloaded: 1, of });
                }
            }
            Ended::Answered if sample.started < self.shrank => {}
            Ended::Answered => {
                let class = &mut window.latency[class(sample.records)];
                class.0 += sample.took.as_secs_f64() / sample.records.max(1) as f64;
                class.1 += sample.records.max(1);
                class.2 += 1;
                window.took += sample.took.as_secs_f64();
            }
            Ended::Failed => {}
        }
        if self.window.samples < self.slots_at(self.window.limit_at_start) {
            return why;
        }
        let window = std::mem::replace(&mut self.window, Window::starting(self.limit));
        if self.remeasuring.take().is_some() {
            // The best may rise (a server grown slower), but by a quarter at most at once:
            // half the limit may still be more than a server that has just shrunk can serve,
            // and its queue must not pass for its best. Held back twice in a row, the rise is
            // real, and is taken whole. A class not seen keeps its best.
            let before = std::mem::replace(&mut self.best, [None; CLASSES]);
            self.r(&window);
            let mut capped = false;
            for (best, before) in self.best.iter_mut().zip(before) {
                match (best.as_mut(), before) {
                    (Some(best), Some(before)) if *best > before * BEST_RISES_AT_MOST => {
                        capped = true;
                        if !self.capped {
                            *best = before * BEST_RISES_AT_MOST;
                        }
                    }
                    (None, before) => *best = before,
                    _ => {}
                }
            }
            if capped && self.capped {
                // The knee found against the old best was no knee.
                self.ceiling = None;
            }
            self.capped = capped && !self.capped;
            self.measured = now;
            self.forming = false;
            return Some(Why::Remeasured);
        }
        let decided = self.window_ended(&window, now);
        self.window.limit_at_start = self.limit;
        if now.duration_since(self.measured) >= REMEASURE_EVERY && !self.slow_start {
            self.remeasuring = Some(now);
            self.window = Window::starting(self.limit);
            return Some(Why::Remeasuring);
        }
        decided.or(why)
    }

    /// What a window says, once it has seen about a limit's worth of attempts.
    fn window_ended(&mut self, window: &Window, now: Instant) -> Option<Why> {
        let limit = window.limit_at_start;
        if window.overloaded > 0 {
            let passed = (window.samples - window.overloaded) as f64 / window.samples as f64;
            // The ceiling was set at the window's first overload.
            let to = (limit * passed).max(limit / 2.0);
            self.limit = self.limit.min(to).max(self.bounds.min as f64);
            return Some(Why::Overloaded {
                overloaded: window.overloaded,
                of: window.samples,
            });
        }
        let r = self.r(window)?;
        let answered: usize = window.latency.iter().map(|class| class.2).sum();
        // A server that answers this fast has no queue worth a smaller limit: what slows it
        // is the machine's own load, which fewer requests at once would only make costlier
        // per record.
        let fast = window.took / answered.max(1) as f64 <= FAST.as_secs_f64();
        let r = if fast { 1.0 } else { r };
        let queued = limit * (1.0 - 1.0 / r);
        let queue = (limit * QUEUED_SHARE).max(QUEUED_LEAST);
        tracing::debug!(
            "concurrency window: limit {limit:.1}, latency {r:.3}× its best, {queued:.2} queued, \
             {} answered{}",
            answered,
            if fast { ", a fast server" } else { "" }
        );
        let seen_before = std::mem::replace(&mut self.forming, queued >= queue / 2.0);
        if queued >= 2.0 * queue || (queued >= queue && seen_before) {
            self.slow_start = false;
            // What the server serves at once; the queue starts one beyond.
            let serves = (limit / r).max(limit / 2.0).max(self.bounds.min as f64);
            self.ceiling_at(serves.floor() + 1.0, now);
            self.shrank = now;
            self.forming = false;
            self.limit = serves;
            return Some(Why::Queueing { r });
        }
        // Only a run that uses the limit learns whether more would pass; a queue forming
        // waits for the next window.
        if (window.busiest as f64) < limit / 2.0 || self.forming {
            return None;
        }
        let grown = if self.slow_start {
            (limit * SLOW_START).max(limit + 1.0)
        } else {
            limit + 1.0
        };
        self.limit = self.under_ceiling(grown, now).min(self.bounds.max as f64);
        Some(Why::Grew { r })
    }

    /// The window's mean per-record latency over the best, weighing each size class by its
    /// attempts; each class's best takes the window's mean when it is lower (or first). A
    /// rise of less than [`NOISE`] an attempt is no rise: a fast server's latency moves that
    /// much with the machine's load, queue or no queue.
    fn r(&mut self, window: &Window) -> Option<f64> {
        let (mut weighted, mut answered) = (0.0, 0);
        for (best, (sum, records, n)) in self.best.iter_mut().zip(window.latency) {
            if n == 0 {
                continue;
            }
            let mean = sum / n as f64;
            let least = best.map_or(mean, |b| b.min(mean));
            *best = Some(least);
            let noise = NOISE.as_secs_f64() * n as f64 / records as f64;
            let rise = (mean - least - noise).max(0.0);
            weighted += n as f64 * if least > 0.0 { 1.0 + rise / least } else { 1.0 };
            answered += n;
        }
        (answered > 0).then(|| (weighted / answered as f64).max(1.0))
    }

    /// Growth held just under the ceiling, unless it is time to probe above it; a window
    /// at or above the ceiling without a sign of congestion lifts it.
    fn under_ceiling(&mut self, grown: f64, now: Instant) -> f64 {
        let Some(ceiling) = &self.ceiling else {
            return grown;
        };
        if ceiling.lifted {
            return grown;
        }
        if self.limit >= ceiling.at {
            self.clean_above += 1;
            if self.clean_above >= 2 {
                if let Some(ceiling) = &mut self.ceiling {
                    ceiling.lifted = true;
                }
                return grown;
            }
            return self.limit;
        }
        self.clean_above = 0;
        let below = (ceiling.at - 1.0).max(self.limit);
        if grown <= below || now < ceiling.probe_after {
            return grown.min(below);
        }
        grown.max(ceiling.at)
    }

    /// The server showed it had enough at the limit now: a ceiling there, probed again
    /// after a wait that doubles while probes keep failing at the same ceiling.
    fn set_ceiling(&mut self, now: Instant) {
        self.ceiling_at(self.limit.floor(), now);
    }

    /// A ceiling at `at`, probed after a wait that doubles while probes keep failing there.
    fn ceiling_at(&mut self, at: f64, now: Instant) {
        let at = at.max(self.bounds.min as f64);
        // Near the last ceiling, even one lifted since: the same knee, found again.
        let wait = match &self.ceiling {
            Some(ceiling)
                if at >= ceiling.at - (ceiling.at * 0.1).max(2.0) && at <= ceiling.at + 2.0 =>
            {
                (ceiling.wait * 2).min(PROBE_MOST)
            }
            _ => PROBE_FIRST,
        };
        self.clean_above = 0;
        self.ceiling = Some(Ceiling {
            at,
            probe_after: now + wait,
            wait,
            lifted: false,
        });
    }

    /// The slots a limit gives: half of it while remeasuring.
    fn slots_at(&self, limit: f64) -> usize {
        match self.remeasuring {
            Some(_) => self.clamp(limit / 2.0),
            None => self.clamp(limit),
        }
    }

    fn clamp(&self, limit: f64) -> usize {
        (limit.floor() as usize).clamp(self.bounds.min, self.bounds.max)
    }
}

impl Window {
    fn starting(limit: f64) -> Window {
        Window {
            limit_at_start: limit,
            ..Window::default()
        }
    }
}

/// Batches of 2^k to 2^(k+1) − 1 records are class k.
fn class(records: usize) -> usize {
    (usize::BITS - 1 - records.max(1).leading_zeros()) as usize % CLASSES
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A server with `capacity` workers that each take `service` per batch of 32 records,
    /// queueing beyond (or refusing with 429 when `refuses`), driven by the controller in a
    /// closed loop: every slot is kept busy. Time is simulated, so the test is exact.
    struct Server {
        capacity: usize,
        service: Duration,
        refuses: bool,
    }

    /// Runs `controller` against `server` from `start` for `span` of simulated time; returns
    /// the slots over time (time, slots), the attempts made and the ones refused.
    fn simulate(
        controller: &mut Controller,
        server: &dyn Fn(Duration) -> Server,
        start: Instant,
        span: Duration,
    ) -> (Vec<(Duration, usize)>, usize, usize) {
        // Each attempt in flight: (started, finishes, overloaded).
        let mut in_flight: Vec<(Instant, Instant, bool)> = Vec::new();
        // When each busy worker is free again.
        let mut workers: Vec<Instant> = Vec::new();
        let mut now = start;
        let mut trace = vec![(Duration::ZERO, controller.slots())];
        let (mut attempts, mut refused) = (0, 0);
        while now < start + span {
            let at = server(now - start);
            workers.retain(|free| *free > now);
            while in_flight.len() < controller.slots() {
                attempts += 1;
                if at.refuses && workers.len() >= at.capacity {
                    refused += 1;
                    in_flight.push((now, now + MS / 2, true));
                    continue;
                }
                // FIFO: the earliest free worker, or a new one while under capacity.
                let begins = if workers.len() < at.capacity {
                    now
                } else {
                    let (i, earliest) = workers
                        .iter()
                        .copied()
                        .enumerate()
                        .min_by_key(|(_, free)| *free)
                        .unwrap_or((0, now));
                    workers.swap_remove(i);
                    earliest
                };
                let done = begins + at.service;
                workers.push(done);
                in_flight.push((now, done, false));
            }
            let next = in_flight.iter().map(|f| f.1).min().unwrap_or(now + MS);
            now = next;
            let (done, going): (Vec<_>, Vec<_>) = in_flight.into_iter().partition(|f| f.1 <= now);
            in_flight = going;
            let ending = done.len();
            for (i, (started, finished, overloaded)) in done.into_iter().enumerate() {
                let sample = Sample {
                    started,
                    took: finished - started,
                    records: 32,
                    ended: if overloaded {
                        Ended::Overloaded
                    } else {
                        Ended::Answered
                    },
                    in_flight: in_flight.len() + ending - i,
                };
                if let Some(change) = controller.sample(sample) {
                    trace.push((now - start, change.to));
                }
            }
        }
        (trace, attempts, refused)
    }

    fn auto(min: usize, max: usize) -> (Controller, Instant) {
        let start = Instant::now();
        (Controller::new(Bounds { min, max }, start), start)
    }

    fn answered(started: Instant, took: Duration, records: usize) -> Sample {
        Sample {
            started,
            took,
            records,
            ended: Ended::Answered,
            in_flight: 64,
        }
    }

    /// The mean of the slots over the trace's last `tail` of time.
    fn mean_slots(trace: &[(Duration, usize)], span: Duration, tail: Duration) -> f64 {
        let from = span - tail;
        let mut total = 0.0;
        for (i, (at, slots)) in trace.iter().enumerate() {
            let until = trace.get(i + 1).map_or(span, |next| next.0).min(span);
            let begin = (*at).max(from);
            if until > begin {
                total += (until - begin).as_secs_f64() * *slots as f64;
            }
        }
        total / tail.as_secs_f64()
    }

    #[test]
    fn it_settles_at_a_queueing_servers_capacity() {
        let (mut controller, start) = auto(1, 64);
        let span = Duration::from_secs(30);
        let server = |_| Server {
            capacity: 16,
            service: 20 * MS,
            refuses: false,
        };
        let (trace, _, _) = simulate(&mut controller, &server, start, span);
        let settled = mean_slots(&trace, span, Duration::from_secs(20));
        assert!(
            (15.0..=18.0).contains(&settled),
            "settled at {settled:.1}: {trace:?}"
        );
        let reached = trace.iter().find(|(_, slots)| *slots >= 16).map(|t| t.0);
        assert!(
            reached.is_some_and(|at| at < Duration::from_secs(1)),
            "reached 16 at {reached:?}"
        );
    }

    #[test]
    fn it_rarely_probes_a_server_that_refuses_beyond_its_capacity() {
        let (mut controller, start) = auto(1, 64);
        let span = Duration::from_secs(30);
        let server = |_| Server {
            capacity: 16,
            service: 20 * MS,
            refuses: true,
        };
        let (trace, attempts, refused) = simulate(&mut controller, &server, start, span);
        let settled = mean_slots(&trace, span, Duration::from_secs(20));
        assert!((14.5..=17.0).contains(&settled), "settled at {settled:.1}");
        assert!(
            (refused as f64) < attempts as f64 * 0.005,
            "{refused} of {attempts} refused: {trace:?}"
        );
    }

    #[test]
    fn it_follows_capacity_down_and_up_again() {
        let (mut controller, start) = auto(1, 64);
        let span = Duration::from_secs(30);
        let server = |at: Duration| Server {
            capacity: if (Duration::from_secs(10)..Duration::from_secs(20)).contains(&at) {
                8
            } else {
                32
            },
            service: 20 * MS,
            refuses: true,
        };
        let (trace, attempts, refused) = simulate(&mut controller, &server, start, span);
        let at = |t: u64| {
            trace
                .iter()
                .rev()
                .find(|(at, _)| *at <= Duration::from_secs(t) + 500 * MS)
                .map_or(0, |(_, slots)| *slots)
        };
        assert!((28..=33).contains(&at(9)), "before the drop: {}", at(9));
        // Within a second of the drop (the test of the binary allows two).
        assert!((6..=8).contains(&at(11)), "after the drop: {trace:?}");
        assert!(at(29) >= 24, "back up: {}", at(29));
        assert!(
            (refused as f64) < attempts as f64 * 0.01,
            "{refused} of {attempts} refused"
        );
    }

    #[test]
    fn it_follows_a_queue_when_capacity_drops() {
        let (mut controller, start) = auto(1, 64);
        let span = Duration::from_secs(20);
        let server = |at: Duration| Server {
            capacity: if at < Duration::from_secs(10) { 32 } else { 8 },
            service: 20 * MS,
            refuses: false,
        };
        let (trace, _, _) = simulate(&mut controller, &server, start, span);
        let after = mean_slots(&trace, span, Duration::from_secs(8));
        assert!((7.0..=12.0).contains(&after), "after the drop: {after:.1}");
    }

    /// A server that grows three times slower for good (longer records, a busier model) is not
    /// taken for a queue forever: after two remeasures that held the rise back, its new best
    /// stands and the limit grows again.
    #[test]
    fn a_server_grown_slower_for_good_is_learned() {
        let (mut controller, start) = auto(1, 64);
        let span = Duration::from_secs(40);
        let server = |at: Duration| Server {
            capacity: 1000,
            service: if at < Duration::from_secs(5) {
                20 * MS
            } else {
                60 * MS
            },
            refuses: false,
        };
        let (trace, _, _) = simulate(&mut controller, &server, start, span);
        let late = mean_slots(&trace, span, Duration::from_secs(10));
        assert!(late >= 32.0, "{late:.1}: {trace:?}");
    }

    #[test]
    fn it_never_leaves_its_bounds() {
        let (mut controller, start) = auto(3, 10);
        assert_eq!(controller.slots(), 3);
        let fast = |_| Server {
            capacity: 1000,
            service: MS,
            refuses: false,
        };
        let (trace, _, _) = simulate(&mut controller, &fast, start, Duration::from_secs(5));
        assert!(trace.iter().all(|(_, s)| (3..=10).contains(s)), "{trace:?}");
        assert_eq!(controller.slots(), 10);
        let refusing = |_| Server {
            capacity: 0,
            service: MS,
            refuses: true,
        };
        let later = start + Duration::from_secs(5);
        let (trace, _, _) = simulate(&mut controller, &refusing, later, Duration::from_secs(5));
        assert!(trace.iter().all(|(_, s)| (3..=10).contains(s)), "{trace:?}");
        assert_eq!(controller.slots(), 3);
    }

    /// Against a server that answers in a fraction of a millisecond, slower the more requests
    /// the machine handles at once (its CPU, not a queue), the limit does not sink: fewer
    /// requests at once would only cost more CPU per record.
    #[test]
    fn a_fast_servers_load_is_not_a_queue() {
        let (mut controller, start) = auto(1, 64);
        let mut at = start;
        for _ in 0..5000 {
            let in_flight = controller.slots();
            let took = Duration::from_micros(30 * in_flight as u64);
            controller.sample(Sample {
                in_flight,
                ..answered(at, took, 32)
            });
            at += took / in_flight as u32;
        }
        assert!(controller.slots() >= 32, "sank to {}", controller.slots());
    }

    #[test]
    fn a_small_batch_is_compared_with_small_batches() {
        let (mut controller, start) = auto(4, 64);
        controller.slow_start = false;
        let mut at = start;
        // Full batches of 32 in 20 ms, and now and then 3 records flushed by the timeout,
        // also in 20 ms: per record, 10× slower than the full ones, but no queue.
        for i in 0..200 {
            let records = if i % 5 == 0 { 3 } else { 32 };
            controller.sample(answered(at, 20 * MS, records));
            at += 5 * MS;
        }
        assert!(controller.slots() > 4, "it grew: {}", controller.slots());
    }

    #[test]
    fn a_retry_is_a_sample_of_its_own_and_timeouts_shrink_at_once() {
        let (mut controller, start) = auto(1, 64);
        controller.limit = 20.0;
        controller.slots = 20;
        controller.window.limit_at_start = 20.0;
        let change = controller.sample(Sample {
            started: start,
            took: Duration::from_secs(30),
            records: 32,
            ended: Ended::Overloaded,
            in_flight: 20,
        });
        assert_eq!(
            change.map(|c| (c.from, c.to)),
            Some((20, 18)),
            "shrunk by a tenth at once"
        );
        // Another in the same window does not shrink again until the window ends.
        let again = controller.sample(Sample {
            started: start,
            took: 10 * MS,
            records: 32,
            ended: Ended::Overloaded,
            in_flight: 20,
        });
        assert_eq!(again, None);
    }

    #[test]
    fn refused_attempts_in_a_burst_never_halve_the_limit_more_than_once_a_window() {
        let (mut controller, start) = auto(1, 64);
        controller.limit = 32.0;
        controller.slots = 32;
        controller.slow_start = false;
        controller.window.limit_at_start = 32.0;
        for _ in 0..32 {
            controller.sample(Sample {
                started: start,
                took: MS,
                records: 32,
                ended: Ended::Overloaded,
                in_flight: 32,
            });
        }
        assert_eq!(controller.slots(), 16, "halved, not collapsed");
    }

    #[test]
    fn failures_other_than_overload_teach_nothing() {
        let (mut controller, start) = auto(2, 64);
        for _ in 0..100 {
            let sample = Sample {
                ended: Ended::Failed,
                ..answered(start, MS, 32)
            };
            assert_eq!(controller.sample(sample), None);
        }
        assert_eq!(controller.slots(), 2);
    }
}
