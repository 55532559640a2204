//! The progress display on stderr: records done, their rate, batches in flight, retries and
//! failures, elapsed time; and, when the input is files of known size, a bar with percent and
//! ETA by the input bytes whose records are done. It reads the run's counters ten times a
//! second, so the pipe itself pays nothing for it. It is one line, cut to the terminal's width.
//!
//! Everything else abatch writes on stderr goes through [`Stderr`], which lifts the display
//! out of the way first, so a message never lands in the middle of it.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{
    HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike,
};

use crate::report::Metrics;

/// Redraws per second, at most.
const REDRAWS: u8 = 10;
const REFRESH: Duration = Duration::from_millis(100);

static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// Runs `write` with the progress display (if any) lifted off the screen.
pub fn suspend<R>(write: impl FnOnce() -> R) -> R {
    match BAR.get() {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// stderr, for everything but the display itself.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        suspend(|| io::stderr().write_all(buf)).map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// The time on each -v line: seconds since logging started, to the millisecond ("0.054s"),
/// which is as fine as the latencies they sit beside need.
pub struct Uptime(std::time::Instant);

impl Default for Uptime {
    fn default() -> Uptime {
        Uptime(std::time::Instant::now())
    }
}

impl tracing_subscriber::fmt::time::FormatTime for Uptime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> fmt::Result {
        let elapsed = self.0.elapsed();
        write!(w, "{}.{:03}s", elapsed.as_secs(), elapsed.subsec_millis())
    }
}

/// Whether to show progress: asked for, or stderr is a terminal and nobody said not to.
pub fn wanted(forced: bool, hidden: bool, quiet: bool) -> bool {
    forced || (!hidden && !quiet && io::stderr().is_terminal())
}

pub struct Progress {
    bar: ProgressBar,
    /// The size of the inputs, when known: the bar's length.
    total: Option<u64>,
}

/// The width of stderr when it is not a terminal (--progress), or cannot say.
const ASSUMED_WIDTH: u16 = 100;

/// The columns of the bar on a terminal this wide: a quarter of it, within reason. The bar
/// is fixed and the rest of the line is the status, which indicatif cuts to what is left
/// ({wide_msg}), so the line never wraps. (A {wide_bar} with a long status after it would
/// shrink to nothing and still wrap.)
fn bar_width(columns: u16) -> u16 {
    (columns / 4).clamp(8, 40)
}

impl Progress {
    /// Starts the display: a bar over `total` bytes, or a spinner when the size is unknown.
    pub fn start(total: Option<u64>) -> Progress {
        let target = if io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(REDRAWS)
        } else {
            // Asked for with --progress: draw even though stderr is not a terminal.
            ProgressDrawTarget::term_like_with_hz(
                Box::new(AnyStderr(console::Term::stderr())),
                REDRAWS,
            )
        };
        let columns = console::Term::stderr()
            .size_checked()
            .map_or(ASSUMED_WIDTH, |(_, columns)| columns);
        let template = match total {
            Some(_) => format!("{{bar:{}}} {{wide_msg}}", bar_width(columns)),
            None => "{spinner} {wide_msg}".to_string(),
        };
        let bar = ProgressBar::with_draw_target(total, target);
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        bar.set_message("starting");
        let _ = BAR.set(bar.clone());
        Progress { bar, total }
    }

    /// Redraws from the counters until dropped; never resolves by itself.
    pub async fn run(&self, metrics: &Metrics) {
        let mut ticks = tokio::time::interval(REFRESH);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            self.bar.set_position(metrics.bytes_done.get());
            let mut line = String::new();
            if let Some(total) = self.total {
                let done = self.bar.position().min(total);
                let percent = (done * 100).checked_div(total).unwrap_or(100);
                line = format!(
                    "{percent:>3}% of {}, ETA {:#} · ",
                    HumanBytes(total),
                    HumanDuration(self.bar.eta())
                );
            }
            line.push_str(&status(metrics, self.bar.elapsed()));
            self.bar.set_message(line);
        }
    }

    /// Takes the display off the screen, for good: the run is ending.
    pub fn hide(&self) {
        self.bar.finish_and_clear();
    }
}

/// "12345 done, 4100/s · 3 in flight · 2 retries · 1 failed · 3s" (with `-c auto`, "3 in
/// flight of 16"; with replicas, "· 2/3 replicas up" after the requests in flight): the most
/// telling first, since a narrow terminal cuts the end.
fn status(metrics: &Metrics, elapsed: Duration) -> String {
    let done = metrics.written.get() + metrics.dead();
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
    let limit = match metrics.measures.adaptive_limit() {
        Some(limit) => format!(" of {limit}"),
        None => String::new(),
    };
    let replicas = match metrics.measures.replicas_up(std::time::Instant::now()) {
        Some((up, all)) => format!(" · {up}/{all} replicas up"),
        None => String::new(),
    };
    format!(
        "{done} done, {rate:.0}/s · {}{limit} in flight{replicas} · {} retries · {} failed · {:#}",
        metrics.measures.requests_in_flight(),
        metrics.retries.get(),
        metrics.dead(),
        HumanDuration(elapsed)
    )
}

/// stderr as a terminal, whether or not it is one.
#[derive(Debug)]
struct AnyStderr(console::Term);

impl TermLike for AnyStderr {
    fn width(&self) -> u16 {
        self.0
            .size_checked()
            .map_or(ASSUMED_WIDTH, |(_, width)| width)
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_up(n)
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.0.write_line(s)
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.0.write_str(s)
    }

    fn clear_line(&self) -> io::Result<()> {
        self.0.clear_line()
    }

    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}
