//! Counts on stderr in the form Hadoop Streaming reads from a task (--hadoop-counters):
//! `reporter:counter:abatch,NAME,AMOUNT` lines, each adding what changed since the last, and a
//! `reporter:status:MESSAGE` line, at most once a second and once more at the end.

use std::cell::Cell;
use std::io::Write;
use std::time::Duration;

use crate::report::Metrics;
use crate::report::progress::Stderr;

/// How often the counters are reported while the run goes on.
pub const EVERY: Duration = Duration::from_secs(1);

/// The counters as last reported.
#[derive(Default)]
pub struct Counters {
    reported: [Cell<u64>; 7],
}

const NAMES: [&str; 7] = [
    "records_read",
    "records_written",
    "records_failed",
    "records_unanswered",
    "blank_lines",
    "requests",
    "retries",
];

impl Counters {
    /// Reports what changed since the last report, and a status line.
    pub fn report(&self, metrics: &Metrics) {
        let now = [
            metrics.read.get(),
            metrics.written.get(),
            metrics.failed.get(),
            metrics.unsent.get(),
            metrics.blank.get(),
            metrics.requests.get(),
            metrics.retries.get(),
        ];
        let mut text = String::new();
        for ((name, now), reported) in NAMES.iter().zip(now).zip(&self.reported) {
            let added = now.saturating_sub(reported.get());
            if added > 0 {
                text.push_str(&format!("reporter:counter:abatch,{name},{added}\n"));
                reported.set(now);
            }
        }
        text.push_str(&format!(
            "reporter:status:abatch: {} records read, {} written, {} failed\n",
            now[0], now[1], now[2]
        ));
        // Not eprint!, which panics when stderr is closed.
        let _ = Stderr.write_all(text.as_bytes());
    }

    /// Reports every `EVERY` until dropped.
    pub async fn run(&self, metrics: &Metrics) {
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: nothing to say yet.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.report(metrics);
        }
    }
}
