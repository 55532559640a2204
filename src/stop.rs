//! How a run stops before its input ends, and what each stage is told.
//!
//! - A batch that fails under `--on-error abort`: read no more, start no new batch; once the
//!   failure is reported, give up on what is still in flight.
//! - A first SIGINT or SIGTERM: read no more, but send what was already read (it cannot be
//!   read again from a pipe) and finish everything in flight.
//! - A second one: give up on what is in flight. A third exits at once, in case something
//!   still blocks.

use std::cell::Cell;
use std::io::Write;

use tokio_util::sync::CancellationToken;

use crate::exit::Exit;

/// Why records went unanswered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsent {
    /// An earlier batch failed under `--on-error abort`.
    Aborted,
    /// A signal stopped the run.
    Interrupted,
}

impl Unsent {
    pub fn describe(self) -> &'static str {
        match self {
            Unsent::Aborted => "not sent: the run stopped at an earlier failure (--on-error abort)",
            Unsent::Interrupted => "interrupted before it was answered",
        }
    }
}

#[derive(Default)]
pub struct Stop {
    /// Read no more input; what was read still goes through.
    finish_reading: CancellationToken,
    /// Read no more input and drop what was read but not yet batched.
    abandon_reading: CancellationToken,
    /// Start no new batch.
    aborted: Cell<bool>,
    /// Give up on batches in flight.
    cancel: CancellationToken,
    /// The first signal received, if any.
    signal: Cell<Option<Exit>>,
}

impl Stop {
    pub fn finish_reading(&self) -> &CancellationToken {
        &self.finish_reading
    }

    pub fn abandon_reading(&self) -> &CancellationToken {
        &self.abandon_reading
    }

    /// A batch failed under `--on-error abort`.
    pub fn abort(&self) {
        self.aborted.set(true);
        self.abandon_reading.cancel();
    }

    /// Gives up on everything in flight.
    pub fn cancel_in_flight(&self) {
        self.cancel.cancel();
    }

    /// Why no new batch may start, if one may not.
    pub fn no_new_batches(&self) -> Option<Unsent> {
        if self.cancel.is_cancelled() {
            Some(self.why())
        } else if self.aborted.get() {
            Some(Unsent::Aborted)
        } else {
            None
        }
    }

    /// Resolves when batches in flight must be given up, saying why.
    pub async fn in_flight_cancelled(&self) -> Unsent {
        self.cancel.cancelled().await;
        self.why()
    }

    fn why(&self) -> Unsent {
        if self.signal.get().is_some() {
            Unsent::Interrupted
        } else {
            Unsent::Aborted
        }
    }

    /// The exit status a signal asked for, if one came.
    pub fn signalled(&self) -> Option<Exit> {
        self.signal.get()
    }

    /// Acts on SIGINT and SIGTERM until the run ends; never resolves by itself.
    pub async fn watch_signals(&self, in_flight: impl Fn() -> u64) {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            // Without handlers, the signals keep their default effect.
            return std::future::pending().await;
        };
        let mut received = 0;
        loop {
            let exit = tokio::select! {
                _ = interrupt.recv() => Exit::Interrupted,
                _ = terminate.recv() => Exit::Terminated,
            };
            received += 1;
            let first = *self.signal.get().get_or_insert(exit);
            self.signal.set(Some(first));
            let note = match received {
                1 => {
                    self.finish_reading.cancel();
                    format!(
                        "stopping: reading no more input, finishing the {} batch(es) in flight \
                         (signal again to stop at once)",
                        in_flight()
                    )
                }
                2 => {
                    self.cancel.cancel();
                    "stopping at once: records in flight go to the dead letters, unanswered"
                        .to_string()
                }
                _ => std::process::exit(first as i32),
            };
            let _ = writeln!(std::io::stderr(), "abatch: {note}");
        }
    }
}
