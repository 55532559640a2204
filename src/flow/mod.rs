//! Flow control: how a batch becomes an outcome. Every attempt (a first try, a retry, a split
//! half) takes a slot from the concurrency [`limit`] (sized by [`adapt`] under `-c auto`),
//! waits out the shared [`cooldown`], the request rate ([`pace`]) and the token budget
//! ([`tokens`]); the [`retry`] policy says what to try again and when; [`exchange`] puts them
//! together for one batch.

pub mod adapt;
pub mod cooldown;
pub mod exchange;
pub mod limit;
pub mod pace;
pub mod replicas;
pub mod retry;
pub mod tokens;

use std::num::NonZeroU64;
use std::time::Duration;

use crate::cli::{ErrorBudget, OnError, Rate};
use retry::Policy;

/// How batches become outcomes.
pub struct Settings {
    pub policy: Policy,
    pub rate: Option<Rate>,
    /// Tokens per minute.
    pub tpm: Option<NonZeroU64>,
    pub on_error: OnError,
    /// When failures stop the run under --on-error skip or null.
    pub max_errors: Option<ErrorBudget>,
    /// The longest a batch may take, retries and waits included.
    pub deadline: Option<Duration>,
    /// Give every request an Idempotency-Key.
    pub idempotency_key: bool,
    /// Show each request instead of sending it.
    pub dry_run: bool,
    /// Answer only from the result cache (--cache-only): fail every other record unsent.
    pub cache_only: bool,
}
