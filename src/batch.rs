//! Groups records into batches. A batch is sent when it holds `--batch-size` records, when the
//! next record would push its body past `--max-batch-bytes`, when `--batch-timeout` has passed
//! since its FIRST record arrived, or at once when the input ends.
//!
//! Records the result cache (--cache) answers are never sent: a run of them goes as a batch of
//! its own, at once, as an invalid line does. With --ordered such a record ends the batch
//! before it, so that batches stay in input order; without, fresh records keep filling their
//! batch around it, so that scattered cached records do not make the requests smaller.
//!
//! tokio-stream's `chunks_timeout` has the count and timeout rules but cannot cut a batch on
//! its body size, hence this small adapter.

use std::fmt;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::stream::{Fuse, StreamExt};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::input::Record;

/// Most records in a batch the cache answers: its results are held in memory with it.
pub const CACHED_RECORDS: usize = 1024;
/// Most bytes (records and their results) in a batch the cache answers.
pub const CACHED_BYTES: usize = 1 << 20;

/// When a batch is full or due.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub records: NonZeroUsize,
    pub bytes: Option<NonZeroUsize>,
    pub timeout: Duration,
    /// Batches keep input order (--ordered): a record the cache answers ends the batch before
    /// it.
    pub ordered: bool,
}

/// Records to send together, in input order.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Why the batch was sent when it was.
    pub flush: Flush,
}

/// What sent a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// It held --batch-size records.
    Size,
    /// No further record fit within --max-batch-bytes.
    Bytes,
    /// --batch-timeout passed since its first record.
    Timeout,
    /// The input ended (or stopped).
    End,
    /// An invalid input line came next: it goes alone, as a batch of its own.
    Invalid,
    /// With --ordered, a record the cache answers came next; a run of such records goes as a
    /// batch of its own, never sent.
    Cached,
}

impl fmt::Display for Flush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flush::Size => "full",
            Flush::Bytes => "at the byte cap",
            Flush::Timeout => "by the batch timeout",
            Flush::End => "at the end of input",
            Flush::Invalid => "before an invalid line",
            Flush::Cached => "before records the cache answers",
        })
    }
}

/// Which records these are, for messages: "lines 3-9 of data.jsonl".
pub fn span(records: &[Record]) -> Span<'_> {
    Span(records)
}

pub struct Span<'a>(&'a [Record]);

impl fmt::Display for Span<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(first), Some(last)) = (self.0.first(), self.0.last()) else {
            return f.write_str("no records");
        };
        let (first, last) = (&first.at, &last.at);
        if first.source != last.source {
            write!(f, "{first} to {last}")
        } else if first.line == last.line {
            write!(f, "line {} of {}", first.line, first.source)
        } else {
            write!(f, "lines {}-{} of {}", first.line, last.line, first.source)
        }
    }
}

/// The size of the JSON array `[a,b,c]` holding records of these lengths.
fn body_len(records: usize, record_bytes: usize) -> usize {
    2 + record_bytes + records.saturating_sub(1)
}

pin_project! {
    /// The stream of batches made from a stream of records. An invalid line goes alone, after the
    /// batches of the records before it; a run of records the cache answers goes as a batch of
    /// its own. An input error is passed on after the batches of the records read before it,
    /// and ends the stream.
    pub struct Batches<S> {
        #[pin]
        input: Fuse<S>,
        #[pin]
        deadline: Sleep,
        limits: Limits,
        pending: Vec<Record>,
        pending_bytes: usize,
        // Records the cache answers, to go together, at once.
        cached: Vec<Record>,
        cached_bytes: usize,
        // An invalid line, to go alone once the batches before it have gone.
        invalid: Option<Record>,
        error: Option<anyhow::Error>,
        ended: bool,
    }
}

/// Batches `input` within `limits`. Must be called within a tokio runtime.
pub fn batches<S>(input: S, limits: Limits) -> Batches<S>
where
    S: Stream<Item = anyhow::Result<Record>>,
{
    Batches {
        input: input.fuse(),
        deadline: tokio::time::sleep(limits.timeout),
        limits,
        pending: Vec::new(),
        pending_bytes: 0,
        cached: Vec::new(),
        cached_bytes: 0,
        invalid: None,
        error: None,
        ended: false,
    }
}

impl<S> Batches<S> {
    /// Why the pending batch must go now, if it must: full by count, or no further record
    /// could fit (the smallest record adds two bytes: a comma and one character).
    fn is_full(pending: &[Record], pending_bytes: usize, limits: &Limits) -> Option<Flush> {
        if pending.len() >= limits.records.get() {
            Some(Flush::Size)
        } else if !pending.is_empty()
            && limits
                .bytes
                .is_some_and(|max| pending_bytes + 2 > max.get())
        {
            Some(Flush::Bytes)
        } else {
            None
        }
    }

    fn take(pending: &mut Vec<Record>, limits: &Limits, flush: Flush) -> Batch {
        let fresh = Vec::with_capacity(limits.records.get().min(1024));
        Batch {
            records: std::mem::replace(pending, fresh),
            flush,
        }
    }

    /// The run of records the cache answers, as a batch.
    fn take_cached(cached: &mut Vec<Record>, cached_bytes: &mut usize) -> Batch {
        *cached_bytes = 0;
        Batch {
            records: std::mem::take(cached),
            flush: Flush::Cached,
        }
    }
}

/// The bytes a record the cache answers holds in memory: its text and its result.
fn cached_size(record: &Record) -> usize {
    let result = record.cache.as_ref().and_then(|c| c.result.as_ref());
    record.json.get().len() + result.map_or(0, |r| r.get().len())
}

impl<S> Stream for Batches<S>
where
    S: Stream<Item = anyhow::Result<Record>>,
{
    type Item = anyhow::Result<Batch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(flush) = Self::is_full(this.pending, *this.pending_bytes, this.limits) {
                return Poll::Ready(Some(Ok(Self::take(this.pending, this.limits, flush))));
            }
            if this.cached.len() >= CACHED_RECORDS || *this.cached_bytes >= CACHED_BYTES {
                let batch = Self::take_cached(this.cached, this.cached_bytes);
                return Poll::Ready(Some(Ok(batch)));
            }
            // An invalid line, an input error or the end: what was read before goes first.
            if this.invalid.is_some() || this.error.is_some() || *this.ended {
                if !this.cached.is_empty() {
                    let batch = Self::take_cached(this.cached, this.cached_bytes);
                    return Poll::Ready(Some(Ok(batch)));
                }
                if !this.pending.is_empty() {
                    let flush = match this.invalid {
                        Some(_) => Flush::Invalid,
                        None => Flush::End,
                    };
                    return Poll::Ready(Some(Ok(Self::take(this.pending, this.limits, flush))));
                }
                if let Some(invalid) = this.invalid.take() {
                    return Poll::Ready(Some(Ok(Batch {
                        records: vec![invalid],
                        flush: Flush::Invalid,
                    })));
                }
                if let Some(error) = this.error.take() {
                    *this.ended = true;
                    return Poll::Ready(Some(Err(error)));
                }
                return Poll::Ready(None);
            }
            match this.input.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(record))) if record.invalid.is_some() => {
                    *this.invalid = Some(record);
                }
                Poll::Ready(Some(Ok(record))) if record.is_cached() => {
                    *this.cached_bytes += cached_size(&record);
                    this.cached.push(record);
                    // In order, the fresh records before it go first.
                    if this.limits.ordered && !this.pending.is_empty() {
                        let batch = Self::take(this.pending, this.limits, Flush::Cached);
                        return Poll::Ready(Some(Ok(batch)));
                    }
                }
                Poll::Ready(Some(Ok(record))) => {
                    let record_bytes = record.json.get().len();
                    let grown = *this.pending_bytes + 1 + record_bytes;
                    let overflows = !this.pending.is_empty()
                        && this.limits.bytes.is_some_and(|max| grown > max.get());
                    // A record that does not fit sends the batch and starts the next one.
                    let full =
                        overflows.then(|| Self::take(this.pending, this.limits, Flush::Bytes));
                    if this.pending.is_empty() {
                        let due = Instant::now() + this.limits.timeout;
                        this.deadline.as_mut().reset(due);
                        *this.pending_bytes = body_len(1, record_bytes);
                    } else {
                        *this.pending_bytes = grown;
                    }
                    this.pending.push(record);
                    if let Some(full) = full {
                        return Poll::Ready(Some(Ok(full)));
                    }
                    // In order, the cached records before it go first (nothing fresh was
                    // pending behind them).
                    if this.limits.ordered && !this.cached.is_empty() {
                        let batch = Self::take_cached(this.cached, this.cached_bytes);
                        return Poll::Ready(Some(Ok(batch)));
                    }
                }
                Poll::Ready(Some(Err(error))) => *this.error = Some(error),
                Poll::Ready(None) => *this.ended = true,
                Poll::Pending => {
                    // Results the cache holds never wait for more input.
                    if !this.cached.is_empty() {
                        let batch = Self::take_cached(this.cached, this.cached_bytes);
                        return Poll::Ready(Some(Ok(batch)));
                    }
                    if !this.pending.is_empty() && this.deadline.as_mut().poll(cx).is_ready() {
                        let batch = Self::take(this.pending, this.limits, Flush::Timeout);
                        return Poll::Ready(Some(Ok(batch)));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{positions, record};
    use futures::FutureExt;
    use futures::channel::mpsc;

    fn limits(records: usize, bytes: Option<usize>, timeout_ms: u64) -> Limits {
        Limits {
            records: NonZeroUsize::new(records).unwrap(),
            bytes: bytes.and_then(NonZeroUsize::new),
            timeout: Duration::from_millis(timeout_ms),
            ordered: false,
        }
    }

    /// The lines of each batch the stream has ready now, without waiting.
    fn ready<S: Stream<Item = anyhow::Result<Batch>> + Unpin>(batches: &mut S) -> Vec<Vec<u64>> {
        let mut out = Vec::new();
        while let Some(Some(batch)) = batches.next().now_or_never() {
            out.push(batch.unwrap().records.iter().map(|r| r.at.line).collect());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn sends_full_batches_and_flushes_the_rest_at_end_of_input() {
        let input = futures::stream::iter((1..=7).map(|n| Ok(record("a", n, "1"))));
        let mut batches = Box::pin(batches(input, limits(3, None, 60_000)));
        assert_eq!(
            ready(&mut batches),
            vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]
        );
        assert!(matches!(batches.next().now_or_never(), Some(None)));
    }

    #[tokio::test(start_paused = true)]
    async fn each_batch_says_what_sent_it() {
        let (tx, rx) = mpsc::unbounded();
        let mut batches = Box::pin(batches(rx, limits(2, Some(9), 50)));
        let flush = |batch: Option<anyhow::Result<Batch>>| batch.unwrap().unwrap().flush;
        for line in 1..=2 {
            tx.unbounded_send(Ok(record("a", line, "1"))).unwrap();
        }
        assert_eq!(flush(batches.next().await), Flush::Size);
        tx.unbounded_send(Ok(record("a", 3, "1234567"))).unwrap();
        tx.unbounded_send(Ok(record("a", 4, "1"))).unwrap();
        assert_eq!(flush(batches.next().await), Flush::Bytes);
        assert_eq!(flush(batches.next().await), Flush::Timeout);
        tx.unbounded_send(Ok(record("a", 5, "1"))).unwrap();
        drop(tx);
        assert_eq!(flush(batches.next().await), Flush::End);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_counts_from_the_first_record_of_a_batch() {
        let (tx, rx) = mpsc::unbounded();
        let mut batches = Box::pin(batches(rx, limits(10, None, 100)));
        assert!(ready(&mut batches).is_empty());
        tokio::time::advance(Duration::from_millis(500)).await; // idle time before a batch counts for nothing
        tx.unbounded_send(Ok(record("a", 1, "1"))).unwrap();
        assert!(ready(&mut batches).is_empty());
        tokio::time::advance(Duration::from_millis(60)).await;
        tx.unbounded_send(Ok(record("a", 2, "2"))).unwrap();
        assert!(ready(&mut batches).is_empty());
        tokio::time::advance(Duration::from_millis(39)).await;
        assert!(ready(&mut batches).is_empty(), "sent before 100ms");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(ready(&mut batches), vec![vec![1, 2]]);
        // The next batch starts its own clock with its own first record.
        tokio::time::advance(Duration::from_millis(70)).await;
        tx.unbounded_send(Ok(record("a", 3, "3"))).unwrap();
        assert!(ready(&mut batches).is_empty());
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(ready(&mut batches).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(ready(&mut batches), vec![vec![3]]);
        drop(tx);
        assert!(matches!(batches.next().now_or_never(), Some(None)));
    }

    #[tokio::test(start_paused = true)]
    async fn end_of_input_flushes_without_waiting_for_the_timeout() {
        let (tx, rx) = mpsc::unbounded();
        let mut batches = Box::pin(batches(rx, limits(10, None, 3_600_000)));
        tx.unbounded_send(Ok(record("a", 1, "1"))).unwrap();
        tx.unbounded_send(Ok(record("a", 2, "2"))).unwrap();
        assert!(ready(&mut batches).is_empty());
        drop(tx);
        assert_eq!(ready(&mut batches), vec![vec![1, 2]]);
    }

    #[tokio::test(start_paused = true)]
    async fn byte_cap_cuts_before_the_record_that_would_not_fit() {
        // Bodies: [1111] is 6 bytes, [1111,2222] is 11.
        let lines = ["1111", "2222", "3333", "44444444444444", "5", "6"];
        let input =
            futures::stream::iter(lines.iter().zip(1..).map(|(j, n)| Ok(record("a", n, j))));
        let mut batches = Box::pin(batches(input, limits(100, Some(11), 60_000)));
        // Record 4 alone is larger than the cap: it goes alone, and at once.
        assert_eq!(
            ready(&mut batches),
            vec![vec![1, 2], vec![3], vec![4], vec![5, 6]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn batch_with_no_room_left_goes_without_waiting() {
        let (tx, rx) = mpsc::unbounded();
        let mut batches = Box::pin(batches(rx, limits(100, Some(10), 60_000)));
        tx.unbounded_send(Ok(record("a", 1, "1234567"))).unwrap(); // [1234567] = 9 bytes: nothing else fits
        assert_eq!(ready(&mut batches), vec![vec![1]]);
    }

    #[tokio::test(start_paused = true)]
    async fn input_error_follows_the_records_read_before_it() {
        let items = vec![
            Ok(record("a", 1, "1")),
            Ok(record("a", 2, "2")),
            Err(anyhow::anyhow!("a:3: invalid JSON")),
        ];
        let mut batches = Box::pin(batches(
            futures::stream::iter(items),
            limits(10, None, 60_000),
        ));
        let first = batches.next().await.unwrap().unwrap();
        assert_eq!(first.records.len(), 2);
        let err = batches.next().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "a:3: invalid JSON");
        assert!(batches.next().await.is_none());
    }

    /// Random sizes, caps, timeouts and arrival gaps: every record comes out once and in order;
    /// no batch is over its count or (unless alone) its byte cap; none is held past the timeout
    /// from its first record; and one sent before that timeout had a reason to go.
    #[tokio::test(start_paused = true)]
    async fn property_every_record_once_in_order_and_on_time() {
        let mut rng = crate::testing::Rng::new(31);
        for case in 0..300 {
            let size = 1 + rng.below(8) as usize;
            let cap = (rng.below(2) == 0).then(|| 8 + rng.below(40) as usize);
            let timeout = Duration::from_millis(1 + rng.below(50));
            let count = rng.below(80) as usize;
            let plan: Vec<(Duration, usize)> = (0..count)
                .map(|_| {
                    let gap = if rng.below(3) == 0 { rng.below(80) } else { 0 };
                    (Duration::from_millis(gap), 1 + rng.below(12) as usize)
                })
                .collect();
            let start = Instant::now();
            let mut arrivals = Vec::new();
            let mut at = start;
            for (gap, _) in &plan {
                at += *gap;
                arrivals.push(at);
            }
            let lengths: Vec<usize> = plan.iter().map(|(_, len)| *len).collect();

            let (tx, rx) = mpsc::unbounded();
            let producer = tokio::spawn(async move {
                for (line, (gap, len)) in (1..).zip(plan) {
                    tokio::time::sleep(gap).await;
                    let _ = tx.unbounded_send(Ok(record("p", line, &"7".repeat(len))));
                }
            });
            let mut batches = Box::pin(batches(rx, limits(size, cap, timeout.as_millis() as u64)));
            let mut sent = Vec::new();
            while let Some(batch) = batches.next().await {
                sent.push((Instant::now(), positions(&batch.unwrap())));
            }
            producer.await.unwrap();

            let all: Vec<usize> = sent.iter().flat_map(|(_, lines)| lines.clone()).collect();
            assert_eq!(all, (0..count).collect::<Vec<_>>(), "case {case}");
            for (n, (when, lines)) in sent.iter().enumerate() {
                let body = body_len(lines.len(), lines.iter().map(|&i| lengths[i]).sum());
                assert!(lines.len() <= size, "case {case}: {} records", lines.len());
                assert!(
                    cap.is_none_or(|cap| body <= cap || lines.len() == 1),
                    "case {case}: {body} bytes"
                );
                let due = arrivals[lines[0]] + timeout;
                assert!(*when <= due, "case {case}: batch {n} held past its timeout");
                let next = lines.last().map(|&i| i + 1).filter(|&i| i < count);
                let full = lines.len() == size
                    || cap.is_some_and(|cap| {
                        body + 2 > cap || next.is_some_and(|i| body + 1 + lengths[i] > cap)
                    });
                let last = n + 1 == sent.len();
                assert!(
                    *when >= due || full || last,
                    "case {case}: batch {n} sent early without a reason"
                );
            }
        }
    }

    /// Lines 1-12, those in `cached` answered by the cache.
    fn some_cached(cached: &[u64]) -> Vec<anyhow::Result<Record>> {
        (1..=12)
            .map(|n| {
                Ok(if cached.contains(&n) {
                    crate::testing::cached("a", n, "1", "2")
                } else {
                    record("a", n, "1")
                })
            })
            .collect()
    }

    /// Each batch's lines and what sent it.
    fn flushed(
        batches: &mut (impl Stream<Item = anyhow::Result<Batch>> + Unpin),
    ) -> Vec<(Vec<u64>, Flush)> {
        let mut out = Vec::new();
        while let Some(Some(batch)) = batches.next().now_or_never() {
            let batch = batch.unwrap();
            out.push((
                batch.records.iter().map(|r| r.at.line).collect(),
                batch.flush,
            ));
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn in_order_a_cached_record_ends_the_batch_before_it() {
        let input = futures::stream::iter(some_cached(&[3, 4, 9]));
        let mut batches = Box::pin(batches(
            input,
            Limits {
                ordered: true,
                ..limits(4, None, 60_000)
            },
        ));
        assert_eq!(
            flushed(&mut batches),
            vec![
                (vec![1, 2], Flush::Cached),
                (vec![3, 4], Flush::Cached),
                (vec![5, 6, 7, 8], Flush::Size),
                (vec![9], Flush::Cached),
                (vec![10, 11, 12], Flush::End),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_order_cached_records_go_at_once_and_batches_stay_full() {
        let (tx, rx) = mpsc::unbounded();
        let mut batches = Box::pin(batches(rx, limits(4, None, 60_000)));
        let mut records = some_cached(&[2, 5, 6, 11]).into_iter();
        for record in records.by_ref().take(6) {
            tx.unbounded_send(record).unwrap();
        }
        // The cached records do not wait for the fresh batch around them to fill.
        assert_eq!(flushed(&mut batches), vec![(vec![2, 5, 6], Flush::Cached)]);
        for record in records {
            tx.unbounded_send(record).unwrap();
        }
        assert_eq!(
            flushed(&mut batches),
            vec![
                (vec![1, 3, 4, 7], Flush::Size),
                (vec![8, 9, 10, 12], Flush::Size),
                (vec![11], Flush::Cached),
            ]
        );
        drop(tx);
        assert!(matches!(batches.next().now_or_never(), Some(None)));
    }

    #[tokio::test(start_paused = true)]
    async fn cached_records_go_before_an_invalid_line_and_an_input_error() {
        let mut items = some_cached(&[2, 3]);
        items.truncate(4);
        let mut bad = record("a", 5, "\"x\"");
        bad.invalid = Some("not JSON".into());
        items.push(Ok(bad));
        items.push(Ok(crate::testing::cached("a", 6, "1", "2")));
        items.push(Err(anyhow::anyhow!("a:7: cannot read")));
        let mut batches = Box::pin(batches(
            futures::stream::iter(items),
            limits(10, None, 60_000),
        ));
        let mut seen = Vec::new();
        while let Some(batch) = batches.next().await {
            seen.push(match batch {
                Ok(batch) => format!(
                    "{:?}",
                    batch.records.iter().map(|r| r.at.line).collect::<Vec<_>>()
                ),
                Err(e) => e.to_string(),
            });
        }
        assert_eq!(seen, ["[2, 3]", "[1, 4]", "[5]", "[6]", "a:7: cannot read"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_of_cached_records_is_capped() {
        let count = CACHED_RECORDS as u64 * 2 + 5;
        let input = futures::stream::iter(
            (1..=count).map(|n| Ok(crate::testing::cached("a", n, "1", "2"))),
        );
        let mut many = Box::pin(batches(input, limits(4, None, 60_000)));
        let sizes: Vec<usize> = flushed(&mut many)
            .iter()
            .map(|(lines, _)| lines.len())
            .collect();
        assert_eq!(sizes, [CACHED_RECORDS, CACHED_RECORDS, 5]);
        let big = "7".repeat(CACHED_BYTES / 4);
        let input =
            futures::stream::iter((1..=9).map(|n| Ok(crate::testing::cached("a", n, "1", &big))));
        let mut more = Box::pin(batches(input, limits(4, None, 60_000)));
        let sizes: Vec<usize> = flushed(&mut more)
            .iter()
            .map(|(lines, _)| lines.len())
            .collect();
        assert_eq!(sizes, [4, 4, 1]);
    }

    /// Random runs of cached and fresh records, in order or not: every record comes out once;
    /// a batch is all cached or all fresh; in order, batches follow the input; out of order,
    /// the fresh batches are those the fresh records alone would make (full, but the last).
    #[tokio::test(start_paused = true)]
    async fn property_cached_records_never_change_the_fresh_batches_out_of_order() {
        let mut rng = crate::testing::Rng::new(7);
        for case in 0..300 {
            let size = 1 + rng.below(6) as usize;
            let ordered = rng.below(2) == 0;
            let count = rng.below(60);
            let odds = 1 + rng.below(4);
            let cached: Vec<bool> = (0..count).map(|_| rng.below(odds) == 0).collect();
            let input = futures::stream::iter((1..=count).map(|n| {
                Ok(if cached[n as usize - 1] {
                    crate::testing::cached("p", n, "1", "2")
                } else {
                    record("p", n, "1")
                })
            }));
            let mut batches = Box::pin(batches(
                input,
                Limits {
                    ordered,
                    ..limits(size, None, 60_000)
                },
            ));
            let mut sent = Vec::new();
            while let Some(batch) = batches.next().await {
                sent.push(flushed_one(batch.unwrap()));
            }
            let is_cached = |line: u64| cached[line as usize - 1];
            let mut all: Vec<u64> = sent.iter().flat_map(|(lines, _)| lines.clone()).collect();
            if ordered {
                assert_eq!(all, (1..=count).collect::<Vec<_>>(), "case {case}");
            }
            all.sort_unstable();
            assert_eq!(all, (1..=count).collect::<Vec<_>>(), "case {case}");
            for (lines, flush) in &sent {
                let cached_batch = is_cached(lines[0]);
                assert!(
                    lines.iter().all(|&l| is_cached(l) == cached_batch),
                    "case {case}"
                );
                assert!(lines.len() <= if cached_batch { CACHED_RECORDS } else { size });
                assert!(
                    ordered || cached_batch || *flush != Flush::Cached,
                    "case {case}"
                );
            }
            let fresh: Vec<&Vec<u64>> = sent
                .iter()
                .map(|(lines, _)| lines)
                .filter(|l| !is_cached(l[0]))
                .collect();
            let fresh_lines: Vec<u64> = fresh.iter().flat_map(|l| l.iter().copied()).collect();
            let expected: Vec<u64> = (1..=count).filter(|&l| !is_cached(l)).collect();
            assert_eq!(fresh_lines, expected, "case {case}");
            if !ordered {
                let sizes: Vec<usize> = fresh.iter().map(|l| l.len()).collect();
                let full: Vec<usize> = expected.chunks(size).map(<[u64]>::len).collect();
                assert_eq!(sizes, full, "case {case}");
            }
        }
    }

    fn flushed_one(batch: Batch) -> (Vec<u64>, Flush) {
        (
            batch.records.iter().map(|r| r.at.line).collect(),
            batch.flush,
        )
    }

    #[test]
    fn span_names_lines_and_files() {
        assert_eq!(
            span(&[record("a.jsonl", 4, "1")]).to_string(),
            "line 4 of a.jsonl"
        );
        assert_eq!(
            span(&[record("a.jsonl", 4, "1"), record("a.jsonl", 9, "1")]).to_string(),
            "lines 4-9 of a.jsonl"
        );
        assert_eq!(
            span(&[record("a.jsonl", 99, "1"), record("<stdin>", 2, "1")]).to_string(),
            "a.jsonl:99 to <stdin>:2"
        );
    }
}
