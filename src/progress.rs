//! The progress display on stderr: records done, their rate, batches in flight, retries and
//! failures, elapsed time; and, when the input is files of known size, a bar with percent and
//! ETA by the input bytes whose records are done. It reads the run's counters ten times a second, so the pipe itself pays
//! nothing for it.
//!
//! Everything else abatch writes on stderr goes through [`Stderr`], which lifts the display
//! out of the way first, so a message never lands in the middle of it.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use crate::summary::Tally;

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

/// Whether to show progress: asked for, or stderr is a terminal and nobody said not to.
pub fn wanted(forced: bool, hidden: bool, quiet: bool) -> bool {
    forced || (!hidden && !quiet && io::stderr().is_terminal())
}

/// The total size of the inputs, when they are all files whose size is known.
pub fn total_bytes(inputs: &[PathBuf]) -> Option<u64> {
    if inputs.is_empty() {
        return None;
    }
    inputs.iter().try_fold(0u64, |total, path| {
        if path.as_os_str() == "-" {
            return None;
        }
        let meta = std::fs::metadata(path).ok()?;
        meta.is_file().then(|| total + meta.len())
    })
}

pub struct Progress {
    bar: ProgressBar,
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
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::with_draw_target(Some(total), target),
                "{wide_bar} {percent:>3}% of {total_bytes}, ETA {eta} · {msg} · {elapsed}",
            ),
            None => (
                ProgressBar::with_draw_target(None, target),
                "{spinner} {msg} · {elapsed}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message("starting");
        let _ = BAR.set(bar.clone());
        Progress { bar }
    }

    /// Redraws from the counters until dropped; never resolves by itself.
    pub async fn run(&self, tally: &Tally) {
        let mut ticks = tokio::time::interval(REFRESH);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            self.bar.set_position(tally.bytes_done.get());
            self.bar.set_message(status(tally, self.bar.elapsed()));
        }
    }

    /// Takes the display off the screen, for good: the run is ending.
    pub fn hide(&self) {
        self.bar.finish_and_clear();
    }

    /// Takes the display off the screen for good.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// "12,345 done, 4,100/s · 3 in flight · 2 retries · 1 failed".
fn status(tally: &Tally, elapsed: Duration) -> String {
    let done = tally.written.get() + tally.dead();
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
    format!(
        "{done} done, {rate:.0}/s · {} in flight · {} retries · {} failed",
        tally.in_flight.get(),
        tally.retries.get(),
        tally.dead()
    )
}

/// stderr as a terminal, whether or not it is one.
#[derive(Debug)]
struct AnyStderr(console::Term);

impl TermLike for AnyStderr {
    fn width(&self) -> u16 {
        self.0.size_checked().map_or(100, |(_, width)| width)
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
