//! What people are told about the run: one set of [`Metrics`], and its views, the summary
//! line, the --stats document and the progress display.

mod metrics;
pub mod progress;
pub mod stats;
pub mod summary;

pub use metrics::Metrics;
