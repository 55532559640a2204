//! Restores input order without idling connections: up to `active` futures run at once, and a
//! finished one waits for those before it, up to `waiting` of them (a number that may change
//! while the stream runs, as the concurrency limit does).
//!
//! futures' `buffered(n)` counts a finished-but-held result as one of its n slots, so one slow
//! batch would leave the other slots idle; this adapter keeps the two limits apart.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{Fuse, FuturesUnordered, StreamExt};
use futures::{Future, Stream};
use pin_project_lite::pin_project;

pin_project! {
    /// See [`ordered`].
    pub struct Ordered<S, W>
    where
        S: Stream,
        S::Item: Future,
    {
        #[pin]
        input: Fuse<S>,
        running: FuturesUnordered<Numbered<S::Item>>,
        finished: BTreeMap<u64, <S::Item as Future>::Output>,
        started: u64,
        emitted: u64,
        active: usize,
        waiting: W,
    }
}

/// Runs the futures of `input` with at most `active` unfinished at once and yields their
/// outputs in input order. While the oldest is unfinished, at most `waiting()` finished
/// outputs are held; when that many are, no new future starts (so reading pauses). Both
/// limits are at least 1.
pub fn ordered<S, W>(input: S, active: usize, waiting: W) -> Ordered<S, W>
where
    S: Stream,
    S::Item: Future,
    W: Fn() -> usize,
{
    Ordered {
        input: input.fuse(),
        running: FuturesUnordered::new(),
        finished: BTreeMap::new(),
        started: 0,
        emitted: 0,
        active: active.max(1),
        waiting,
    }
}

impl<S, W> Stream for Ordered<S, W>
where
    S: Stream,
    S::Item: Future,
    W: Fn() -> usize,
{
    type Item = <S::Item as Future>::Output;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            let waiting = (this.waiting)().max(1);
            while this.running.len() < *this.active && this.finished.len() < waiting {
                match this.input.as_mut().poll_next(cx) {
                    Poll::Ready(Some(future)) => {
                        this.running.push(Numbered {
                            number: *this.started,
                            future,
                        });
                        *this.started += 1;
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            if let Some(output) = this.finished.remove(this.emitted) {
                *this.emitted += 1;
                return Poll::Ready(Some(output));
            }
            match this.running.poll_next_unpin(cx) {
                Poll::Ready(Some((number, output))) if number == *this.emitted => {
                    *this.emitted += 1;
                    return Poll::Ready(Some(output));
                }
                Poll::Ready(Some((number, output))) => {
                    this.finished.insert(number, output);
                }
                // Nothing runs, so nothing is held either: the input decides.
                Poll::Ready(None) if this.input.is_done() => return Poll::Ready(None),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

pin_project! {
    /// A future that remembers its place in the input.
    struct Numbered<F> {
        number: u64,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Numbered<F> {
    type Output = (u64, F::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.future.poll(cx).map(|output| (*this.number, output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    type Counter = Rc<Cell<usize>>;

    /// Futures that sleep for the given milliseconds, counting how many run at once.
    fn sleepers(
        delays: Vec<u64>,
        running: &Counter,
        peak: &Counter,
        started: &Counter,
    ) -> impl Stream<Item = impl Future<Output = usize>> {
        let (running, peak, started) = (running.clone(), peak.clone(), started.clone());
        futures::stream::iter(delays.into_iter().enumerate()).map(move |(i, ms)| {
            let (running, peak, started) = (running.clone(), peak.clone(), started.clone());
            async move {
                started.set(started.get() + 1);
                running.set(running.get() + 1);
                peak.set(peak.get().max(running.get()));
                tokio::time::sleep(Duration::from_millis(ms)).await;
                running.set(running.get() - 1);
                i
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn yields_in_input_order_with_at_most_active_running() {
        let delays: Vec<u64> = (0..200).map(|_| spread_ms()).collect();
        let (running, peak, started) = Default::default();
        let out: Vec<usize> = ordered(sleepers(delays, &running, &peak, &started), 4, || 16)
            .collect()
            .await;
        assert_eq!(out, (0..200).collect::<Vec<_>>());
        assert_eq!(peak.get(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_head_keeps_the_other_slots_busy_until_the_window_is_full() {
        let mut delays = vec![1_000];
        delays.extend(std::iter::repeat_n(10, 30));
        let (running, peak, started) = Default::default();
        let mut out = Box::pin(ordered(
            sleepers(delays, &running, &peak, &started),
            2,
            || 4,
        ));
        let early = tokio::time::timeout(Duration::from_millis(500), out.next()).await;
        assert!(
            early.is_err(),
            "nothing can come out before the head finishes"
        );
        // The head and four finished ones wait: the window is full, nothing more starts.
        assert_eq!(started.get(), 5);
        assert_eq!(running.get(), 1);
        let all: Vec<usize> = out.collect().await;
        assert_eq!(all, (0..31).collect::<Vec<_>>());
        assert_eq!(peak.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn empty_input_ends_at_once() {
        let input = futures::stream::iter(Vec::<futures::future::Ready<u8>>::new());
        assert_eq!(
            ordered(input, 3, || 3).collect::<Vec<_>>().await,
            Vec::<u8>::new()
        );
    }

    /// A cheap deterministic spread of delays (1-40 ms).
    fn spread_ms() -> u64 {
        thread_local!(static RNG: std::cell::RefCell<crate::testing::Rng> = std::cell::RefCell::new(crate::testing::Rng::new(7)));
        RNG.with(|rng| 1 + rng.borrow_mut().below(40))
    }

    /// Random delays, limits and lengths: every output comes out once, in input order, with
    /// never more than `active` running nor more than `active + waiting` outstanding.
    #[tokio::test(start_paused = true)]
    async fn property_in_order_exactly_once_within_both_limits() {
        let mut rng = crate::testing::Rng::new(2024);
        for case in 0..300 {
            let count = rng.below(60) as usize;
            let active = 1 + rng.below(6) as usize;
            let waiting = rng.below(10) as usize;
            let delays: Vec<u64> = (0..count).map(|_| rng.below(50)).collect();
            let (running, peak, started): (Counter, Counter, Counter) = Default::default();
            let emitted = Rc::new(Cell::new(0usize));
            let outstanding_peak = Rc::new(Cell::new(0usize));
            let (counted, gone, most) =
                (started.clone(), emitted.clone(), outstanding_peak.clone());
            let input = sleepers(delays, &running, &peak, &started).map(move |future| {
                let (counted, gone, most) = (counted.clone(), gone.clone(), most.clone());
                async move {
                    // This one is about to start: it counts as outstanding from now.
                    most.set(most.get().max(counted.get() + 1 - gone.get()));
                    future.await
                }
            });
            let mut out = Box::pin(ordered(input, active, move || waiting));
            let mut seen = Vec::new();
            while let Some(i) = out.next().await {
                seen.push(i);
                emitted.set(emitted.get() + 1);
            }
            assert_eq!(seen, (0..count).collect::<Vec<_>>(), "case {case}");
            assert!(peak.get() <= active, "case {case}: {} running", peak.get());
            let window = active + waiting.max(1);
            assert!(
                outstanding_peak.get() <= window,
                "case {case}: {} outstanding",
                outstanding_peak.get()
            );
        }
    }

    /// The batcher and this window together, as the pipe uses them: records arriving at
    /// random gaps, random batch limits, and batches completing in random order. Every record
    /// comes out exactly once, in input order with `ordered`, and as a permutation with
    /// futures' `buffer_unordered`.
    #[tokio::test(start_paused = true)]
    async fn property_batched_records_come_out_once_and_in_order_when_asked() {
        use crate::batch::{Limits, batches};
        use crate::testing::{positions, record};
        use std::num::NonZeroUsize;
        let mut rng = crate::testing::Rng::new(99);
        for case in 0..200 {
            let count = rng.below(120) as usize;
            let limits = Limits {
                records: NonZeroUsize::new(1 + rng.below(9) as usize).unwrap(),
                bytes: None,
                timeout: Duration::from_millis(rng.below(30)),
                ordered: false,
            };
            let active = 1 + rng.below(5) as usize;
            let in_order = rng.below(2) == 0;
            let gaps: Vec<u64> = (0..count)
                .map(|_| if rng.below(4) == 0 { rng.below(40) } else { 0 })
                .collect();
            let delays: Vec<u64> = (0..count).map(|_| rng.below(60)).collect();
            let records =
                futures::stream::iter(gaps.into_iter().enumerate()).then(|(i, gap)| async move {
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                    Ok(record("p", i as u64 + 1, &i.to_string()))
                });
            let delays = &delays;
            let exchanges = batches(Box::pin(records), limits).map(|batch| async move {
                let lines = positions(&batch.unwrap());
                // Completion order: each batch takes as long as its first record says.
                let delay = lines.first().map_or(0, |&i| delays[i]);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                lines
            });
            let out: Vec<Vec<usize>> = if in_order {
                ordered(exchanges, active, move || 4 * active)
                    .collect()
                    .await
            } else {
                exchanges.buffer_unordered(active).collect().await
            };
            let mut seen: Vec<usize> = out.into_iter().flatten().collect();
            if !in_order {
                seen.sort_unstable();
            }
            assert_eq!(seen, (0..count).collect::<Vec<_>>(), "case {case}");
        }
    }
}
