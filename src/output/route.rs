//! Where each part of an outcome goes, under the error policy: results to the output,
//! records without one to the dead letters (and a line each with --on-error null: `null`, or
//! what the codec writes for a failure); with
//! --ordered, nothing after a record that has no line. It also keeps the first failure, to
//! tell at the end.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::batch;
use crate::cli::{ErrorBudget, OnError};
use crate::flow::exchange::{Outcome, Part};
use crate::http::Failure;
use crate::input::Record;
use crate::output::{DeadLetter, Lines, Output, Reader, Results};
use crate::report::{Metrics, Stopped};
use crate::stop::{Stop, Unsent};
use crate::wire::{Codec, Failed};

/// A percentage budget is judged once this many records were answered or failed.
const BUDGET_JUDGED_FROM: u64 = 100;

/// Sends each part of each outcome where it belongs under the error policy: results to the
/// output, records without one to the dead-letter sink (and a line standing for each with
/// --on-error null).
pub struct Router<'a> {
    on_error: OnError,
    max_errors: Option<ErrorBudget>,
    ordered: bool,
    stop: &'a Stop,
    metrics: &'a Metrics,
    output: &'a Output,
    /// How each result becomes a line (--merge).
    codec: &'a Codec,
    /// With --ordered: why results can no longer be written (an earlier record has none and
    /// no line stands in for it).
    gap: Option<&'static str>,
    /// What it will have to tell at the end, so far.
    routed: Routed,
}

/// What routing leaves to tell at the end.
pub struct Routed {
    /// The first failure, described for the final message.
    pub first_failure: Option<String>,
    pub failed_batches: usize,
    pub reader: Reader,
    /// Why a failure stopped the run, when one did.
    pub stopped: Option<Stopped>,
}

impl<'a> Router<'a> {
    /// Routes under `on_error` to `output`, counting in `metrics`; `codec` makes each result a
    /// line (--merge).
    pub fn new(
        on_error: OnError,
        max_errors: Option<ErrorBudget>,
        ordered: bool,
        stop: &'a Stop,
        metrics: &'a Metrics,
        output: &'a Output,
        codec: &'a Codec,
    ) -> Router<'a> {
        Router {
            on_error,
            max_errors,
            ordered,
            stop,
            metrics,
            output,
            codec,
            gap: None,
            routed: Routed {
                first_failure: None,
                failed_batches: 0,
                reader: Reader::Listening,
                stopped: None,
            },
        }
    }

    /// Whether anyone still reads the output.
    pub fn reader(&self) -> Reader {
        self.routed.reader
    }

    pub fn finish(self) -> Routed {
        self.routed
    }

    pub async fn route(&mut self, outcome: Outcome) {
        let Outcome { records, parts } = outcome;
        let bytes: u64 = records.iter().map(|r| r.bytes).sum();
        Metrics::add(&self.metrics.bytes_done, bytes as usize);
        let mut records = records.into_iter();
        for part in parts {
            let n = part.len();
            let these: Vec<Record> = records.by_ref().take(n).collect();
            match part {
                Part::Answered { results, attempts } => {
                    self.answered(these, results, attempts).await;
                }
                Part::Failed {
                    failure, attempts, ..
                } => self.failed(these, failure, attempts).await,
                // Records the cache answers show no request: none would be sent.
                Part::Shown { request, .. } => {
                    if let Some(request) = request {
                        self.write(Lines::Shown(request)).await;
                    }
                }
                // With --ordered, no line may stand after a record that has none.
                Part::Blank { .. } if self.gap.is_some() => {}
                Part::Blank { records } => {
                    Metrics::add(&self.metrics.blank, records);
                    let blank = Failed::Unanswered {
                        code: "blank_line",
                        message: "a blank line",
                    };
                    let lines = these
                        .iter()
                        .map(|record| self.codec.failed_line(record, &blank))
                        .collect();
                    self.write(Lines::Nulls(lines)).await;
                }
                Part::Unsent { why, attempts, .. } => {
                    Metrics::add(&self.metrics.unsent, n);
                    self.leave_gap(why);
                    let letters = dead_letters(these, why.describe(attempts), None, attempts);
                    self.write(letters).await;
                }
            }
        }
    }

    /// Results for `records`: written, unless a gap (with --ordered) keeps them out.
    async fn answered(&mut self, records: Vec<Record>, results: Results, attempts: u32) {
        let n = records.len();
        if let Some(why) = self.gap {
            let error = format!("answered, but not written: {why}");
            Metrics::add(&self.metrics.unsent, n);
            self.write(dead_letters(records, &error, None, attempts))
                .await;
            return;
        }
        let results = if self.codec.writes_results_as_they_are() {
            results
        } else {
            records
                .iter()
                .zip(results)
                .map(|(record, result)| self.codec.line(record, result))
                .collect()
        };
        Metrics::add(&self.metrics.written, n);
        self.write(Lines::Results {
            records,
            results,
            attempts,
        })
        .await;
    }

    /// `records` failed for good: dead letters, and what the error policy says.
    async fn failed(&mut self, records: Vec<Record>, failure: Failure, attempts: u32) {
        let n = records.len();
        self.routed.failed_batches += 1;
        if self.routed.first_failure.is_none() {
            self.routed.first_failure = Some(match &failure {
                // An input line: where it is says it all.
                Failure::Line(problem) => format!("{}: {problem}", records[0].at),
                _ => {
                    let span = batch::span(&records);
                    let noun = if n == 1 { "record" } else { "records" };
                    format!("batch of {n} {noun}, {span}: {failure}")
                }
            });
        }
        Metrics::add(&self.metrics.failed, n);
        let status = failure.status().map(|s| s.as_u16());
        let mut nulls = (self.on_error == OnError::Null).then(|| self.nulls(&records, &failure));
        let letters = dead_letters(records, &failure.to_string(), status, attempts);
        let stops = match (failure.fatal(), self.on_error) {
            (Some(advice), _) => Some(Stopped::Refused {
                status: status.unwrap_or_default(),
                advice,
            }),
            (None, OnError::Abort) => Some(Stopped::Abort),
            (None, _) => self.over_budget(),
        };
        match (self.on_error, stops) {
            (_, Some(stopped)) => {
                self.stop.abort();
                // Nothing was sent for a record that could not be: what is in flight came
                // before it, and may finish.
                if !matches!(
                    failure,
                    Failure::Line(_) | Failure::Record(_) | Failure::Uncached
                ) {
                    self.stop.cancel_in_flight();
                }
                // Under null, these records still get their line, unless a gap came before
                // them (with --ordered, an earlier batch left unsent when the run stopped).
                if let Some(nulls) = nulls.take().filter(|_| self.gap.is_none()) {
                    self.write(nulls).await;
                }
                self.leave_gap(Unsent::Aborted);
                self.routed.stopped.get_or_insert(stopped);
            }
            (OnError::Abort | OnError::Skip, None) => {}
            // With --ordered, no line may stand after a record that has none.
            (OnError::Null, None) if self.gap.is_some() => {}
            (OnError::Null, None) => {
                if let Some(nulls) = nulls {
                    self.write(nulls).await;
                }
            }
        }
        self.write(letters).await;
    }

    /// The lines that stand for `records`, failed by `failure` (--on-error null).
    fn nulls(&self, records: &[Record], failure: &Failure) -> Lines {
        if !self.codec.writes_failures() {
            return Lines::Nulls(vec![RawValue::NULL.to_owned(); records.len()]);
        }
        let message = failure.to_string();
        // The server's answer, when the failure wraps one (a Retry-After too long, a
        // deadline after an error answer).
        let failed = match failure.answer().unwrap_or(failure) {
            Failure::Status {
                status, body, json, ..
            } => Failed::Answered {
                status: status.as_u16(),
                json: json.as_deref(),
                quoted: body,
            },
            _ => Failed::Unanswered {
                code: match failure {
                    Failure::Record(_) | Failure::Line(_) => "invalid_request",
                    Failure::Response { .. } => "invalid_response",
                    _ => failure.status_or_kind().err().unwrap_or("failed"),
                },
                message: &message,
            },
        };
        Lines::Nulls(
            records
                .iter()
                .map(|record| self.codec.failed_line(record, &failed))
                .collect(),
        )
    }

    /// Whether the records failed so far are more than --max-errors allows.
    fn over_budget(&self) -> Option<Stopped> {
        let budget = self.max_errors?;
        let failed = self.metrics.failed.get();
        let judged = failed + self.metrics.written.get();
        let over = match budget {
            ErrorBudget::Records(most) => failed > most,
            ErrorBudget::Percent(most) => {
                judged >= BUDGET_JUDGED_FROM && failed as f64 * 100.0 > most * judged as f64
            }
        };
        over.then_some(Stopped::Budget {
            failed,
            judged,
            budget,
        })
    }

    /// With --ordered, nothing after records that have no line may be written.
    fn leave_gap(&mut self, why: Unsent) {
        if self.ordered && self.gap.is_none() {
            self.gap = Some(match why {
                Unsent::Aborted => "an earlier batch failed and the output keeps input order",
                Unsent::Interrupted => {
                    "an earlier batch was interrupted and the output keeps input order"
                }
            });
        }
    }

    async fn write(&mut self, lines: Lines) {
        if self.routed.reader == Reader::Listening {
            self.routed.reader = self.output.write(lines).await;
        }
        // Results that cannot be written are not worth asking for.
        if self.output.failing() {
            self.stop.abort();
            self.leave_gap(Unsent::Aborted);
        }
    }
}

fn dead_letters(records: Vec<Record>, error: &str, status: Option<u16>, attempts: u32) -> Lines {
    let error: Arc<str> = Arc::from(error);
    Lines::DeadLetters(
        records
            .into_iter()
            .map(|record| DeadLetter {
                record,
                error: error.clone(),
                status,
                attempts,
            })
            .collect(),
    )
}
