//! Flow control: how a batch becomes an outcome. Every attempt (a first try, a retry, a split
//! half) takes a slot from the concurrency [`limit`] and waits for the request rate
//! ([`pace`]); the [`retry`] policy says what to try again and when; [`exchange`] puts them
//! together for one batch.

pub mod exchange;
pub mod limit;
pub mod pace;
pub mod retry;

use crate::cli::{OnError, Rate};
use retry::Policy;

/// How batches become outcomes.
pub struct Settings {
    pub policy: Policy,
    pub rate: Option<Rate>,
    pub on_error: OnError,
    /// Show each request instead of sending it.
    pub dry_run: bool,
}
