//! How a run stops before its input ends, and what each stage is told.
//!
//! - A batch that fails under `--on-error abort`, or a first SIGINT or SIGTERM: read no more
//!   input, start no new attempt (no new batch, no retry, no split half), and end every wait
//!   (backoff, Retry-After, --rate) at once. Attempts already in flight run to their end.
//!   Every record read but not answered goes to the dead letters.
//! - Once an abort is reported, or on a second signal: give up on the attempts in flight too.
//!   A second signal also stops waiting for a reader of the output that does not read.
//! - Further signals change nothing: the run is already ending as fast as it can.

use std::cell::Cell;

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
    /// Why records that were tried `attempts` times have no result.
    pub fn describe(self, attempts: u32) -> &'static str {
        match (self, attempts) {
            (Unsent::Aborted, 0) => {
                "not sent: the run stopped at an earlier failure (--on-error abort)"
            }
            (Unsent::Aborted, _) => {
                "not answered: the run stopped at an earlier failure (--on-error abort)"
            }
            (Unsent::Interrupted, 0) => "not sent: the run was interrupted",
            (Unsent::Interrupted, _) => "interrupted before it was answered",
        }
    }
}

#[derive(Default)]
pub struct Stop {
    /// Read no more input, start no new attempt, end every wait.
    stopping: CancellationToken,
    /// Give up on attempts in flight.
    cancel: CancellationToken,
    /// The first signal received, if any.
    signal: Cell<Option<Exit>>,
}

impl Stop {
    /// Cancelled once the run is stopping: the reader watches it.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    /// A batch failed under `--on-error abort`.
    pub fn abort(&self) {
        self.stopping.cancel();
    }

    /// Gives up on everything in flight.
    pub fn cancel_in_flight(&self) {
        self.cancel.cancel();
    }

    /// Why no new attempt may start, if one may not.
    pub fn no_new_attempts(&self) -> Option<Unsent> {
        self.stopping.is_cancelled().then(|| self.why())
    }

    /// Resolves when the run starts stopping, saying why: a wait for the next attempt ends.
    pub async fn stopped(&self) -> Unsent {
        self.stopping.cancelled().await;
        self.why()
    }

    /// Resolves when attempts in flight must be given up, saying why.
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

    /// Acts on SIGINT and SIGTERM until the run ends; never resolves by itself. `first` says
    /// what the run now waits for; `second` is called on the second signal.
    pub async fn watch_signals(&self, first: impl Fn() -> String, second: impl Fn()) {
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
            if self.signal.get().is_none() {
                self.signal.set(Some(exit));
            }
            match received {
                1 => {
                    self.stopping.cancel();
                    crate::app::say(first());
                }
                2 => {
                    self.stopping.cancel();
                    self.cancel.cancel();
                    second();
                    crate::app::say(
                        "stopping at once: records in flight go to the dead letters, unanswered",
                    );
                }
                _ => {}
            }
        }
    }
}
