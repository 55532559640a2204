//! Groups records into batches. A batch is sent when it holds `--batch-size` records, when the
//! next record would push its body past `--max-batch-bytes`, when `--batch-timeout` has passed
//! since its FIRST record arrived, or at once when the input ends.
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

/// When a batch is full or due.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub records: NonZeroUsize,
    pub bytes: Option<NonZeroUsize>,
    pub timeout: Duration,
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
}

impl fmt::Display for Flush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flush::Size => "full",
            Flush::Bytes => "at the byte cap",
            Flush::Timeout => "by the batch timeout",
            Flush::End => "at the end of input",
            Flush::Invalid => "before an invalid line",
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
    /// batch of the records before it. An input error is passed on after
    /// the batch of the records read before it, and ends the stream.
    pub struct Batches<S> {
        #[pin]
        input: Fuse<S>,
        #[pin]
        deadline: Sleep,
        limits: Limits,
        pending: Vec<Record>,
        pending_bytes: usize,
        // An invalid line, to go alone once the batch before it has gone.
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
            if *this.ended {
                return Poll::Ready(None);
            }
            match this.input.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(record))) if record.invalid.is_some() => {
                    // The records before it go first, as they are.
                    *this.invalid = Some(record);
                    if !this.pending.is_empty() {
                        let batch = Self::take(this.pending, this.limits, Flush::Invalid);
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
                }
                Poll::Ready(Some(Err(error))) => {
                    if this.pending.is_empty() {
                        *this.ended = true;
                        return Poll::Ready(Some(Err(error)));
                    }
                    *this.error = Some(error);
                    return Poll::Ready(Some(Ok(Self::take(
                        this.pending,
                        this.limits,
                        Flush::End,
                    ))));
                }
                Poll::Ready(None) => {
                    *this.ended = true;
                    if this.pending.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Self::take(
                        this.pending,
                        this.limits,
                        Flush::End,
                    ))));
                }
                Poll::Pending => {
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
