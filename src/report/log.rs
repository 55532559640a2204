//! The -v log on stderr: one line per attempt, more with -vv and -vvv.

use std::io::IsTerminal;

/// With -v, logs each request on stderr (-vv: also batches, splits and waits; -vvv: also the
/// HTTP library's connection events). -v is asked for by name, so it wins over --quiet.
pub fn log_requests(verbose: u8) {
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (ours, theirs) = match verbose {
        0 => return,
        1 => (LevelFilter::INFO, LevelFilter::OFF),
        2 => (LevelFilter::DEBUG, LevelFilter::OFF),
        _ => (LevelFilter::DEBUG, LevelFilter::DEBUG),
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target(env!("CARGO_CRATE_NAME"), ours)
        .with_default(theirs);
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_timer(super::progress::Uptime::default())
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| super::progress::Stderr);
    tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .init();
}
