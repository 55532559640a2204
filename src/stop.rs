//! How a run stops before its input ends, and what each stage is told.
//!
//! - A batch that fails under `--on-error abort` (or that stops the run under any policy: a
//!   401, 403, 404 or 405, or more failures than --max-errors allows), or a first SIGINT or
//!   SIGTERM: read no more input, start no new attempt (no new batch, no retry, no split
//!   half), and end every wait (backoff, the shared cooldown, --rate, --tpm) at once. Attempts already in flight run to their end.
//!   Every record read but not answered goes to the dead letters.
//! - Once an abort is reported (unless what failed was never sent: an invalid line, a record
//!   the codec cannot hold), or on a second signal: give up on the attempts in flight
//!   too. A second signal also stops waiting for a reader of the output that does not read.
//! - Further signals change nothing: the run is already ending as fast as it can.

use std::cell::Cell;

use tokio_util::sync::CancellationToken;

use crate::exit::Exit;

/// Why records went unanswered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsent {
    /// An earlier failure stopped the run (see the module's comment), or the output could not
    /// be written.
    Aborted,
    /// A signal stopped the run.
    Interrupted,
}

impl Unsent {
    /// Why records that were tried `attempts` times have no result.
    pub fn describe(self, attempts: u32) -> &'static str {
        match (self, attempts) {
            (Unsent::Aborted, 0) => "not sent: the run stopped at an earlier failure",
            (Unsent::Aborted, _) => "not answered: the run stopped at an earlier failure",
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
    /// Signals received so far.
    received: Cell<u32>,
}

/// SIGINT and SIGTERM, caught from the start of the run to its very end.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Catches both signals; None where they cannot be caught (they keep their default
    /// effect).
    pub fn catch() -> Option<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(Signals {
            interrupt: signal(SignalKind::interrupt()).ok()?,
            terminate: signal(SignalKind::terminate()).ok()?,
        })
    }
}

impl Stop {
    /// Cancelled once the run is stopping: the reader watches it.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    /// A failure stops the run (see the module's comment), or the output cannot be written.
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

    /// Sleeps until `at`, or until the run starts stopping (saying why): every wait before
    /// an attempt ends at once.
    pub async fn sleep_until(&self, at: tokio::time::Instant) -> Result<(), Unsent> {
        tokio::select! {
            biased;
            why = self.stopped() => Err(why),
            () = tokio::time::sleep_until(at) => Ok(()),
        }
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

    /// Acts on SIGINT and SIGTERM; never resolves by itself, and may be called again for a
    /// later stage of the run. `first` says what the run now waits for; `second` stops
    /// waiting for what can be left.
    pub async fn watch_signals(
        &self,
        signals: &mut Option<Signals>,
        first: impl Fn(),
        second: impl Fn(),
    ) {
        let Some(signals) = signals else {
            return std::future::pending().await;
        };
        loop {
            let exit = tokio::select! {
                _ = signals.interrupt.recv() => Exit::Interrupted,
                _ = signals.terminate.recv() => Exit::Terminated,
            };
            self.received.set(self.received.get() + 1);
            if self.signal.get().is_none() {
                self.signal.set(Some(exit));
            }
            self.stopping.cancel();
            match self.received.get() {
                1 => first(),
                2 => {
                    self.cancel.cancel();
                    second();
                }
                // The run already ends as fast as it can.
                _ => {}
            }
        }
    }
}
