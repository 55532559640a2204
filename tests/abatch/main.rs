//! abatch's integration tests: the real binary against the mock server on 127.0.0.1.

mod common;

mod adaptive;
mod aligned;
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
mod replicas;
mod requests;
mod shaping;
mod shards;
mod signals;
mod tagged;
mod tls;
mod usage;
