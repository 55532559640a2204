//! abatch's integration tests: the real binary against the mock server on 127.0.0.1.

mod common;

mod adaptive;
mod batching;
mod budgets;
mod cache;
mod compressed;
mod concurrency;
mod display;
mod docs;
mod failures;
mod files;
mod hostile;
mod io;
mod reliability;
mod shaping;
mod signals;
mod tls;
mod usage;
