//! Wires the pipe top to bottom: input → batches → requests (bounded, ordered or as completed)
//! → output, and decides how the run ends.

use anyhow::anyhow;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::batch::{self, Limits};
use crate::cli::Cli;
use crate::client::Client;
use crate::input;
use crate::order;
use crate::output::{Output, Reader};

/// Finished batches that may wait behind a slow one, per connection slot, with --ordered.
const WAITING_PER_SLOT: usize = 4;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the runtime: {e}"))?;
    let outcome = runtime.block_on(pipe(cli));
    // Requests still in flight after a failure are dropped, not awaited.
    runtime.shutdown_background();
    outcome
}

async fn pipe(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(cli.url, &cli.headers, cli.timeout)?;
    let output = Output::open(cli.output.as_deref())?;
    let limits = Limits {
        records: cli.batch_size,
        bytes: cli.max_batch_bytes,
        timeout: cli.batch_timeout,
    };
    let concurrency = cli.concurrency.get();

    // A failure stops reading at once, even from an idle stdin; batches already in flight
    // still finish.
    let stop = CancellationToken::new();
    let batches = batch::batches(input::records(cli.inputs), limits)
        .take_until(stop.clone().cancelled_owned());
    let exchanges = batches.map(|batch| {
        let (client, stop) = (&client, &stop);
        async move {
            let results = match batch {
                Ok(batch) => client.send(&batch).await.map_err(|failure| {
                    let records = if batch.len() == 1 {
                        "record"
                    } else {
                        "records"
                    };
                    anyhow!(
                        "batch of {} {records}, {}: {failure}",
                        batch.len(),
                        batch.span()
                    )
                }),
                Err(input_error) => Err(input_error),
            };
            if results.is_err() {
                stop.cancel();
            }
            results
        }
    });
    let completed = if cli.ordered {
        order::ordered(exchanges, concurrency, WAITING_PER_SLOT * concurrency).left_stream()
    } else {
        exchanges.buffer_unordered(concurrency).right_stream()
    };
    let mut completed = std::pin::pin!(completed);

    let mut first_failure = None;
    let mut failures = 0usize;
    while let Some(results) = completed.next().await {
        match results {
            Ok(results) => {
                if output.write(results).await == Reader::Gone {
                    break;
                }
            }
            Err(failure) => {
                failures += 1;
                first_failure.get_or_insert(failure);
                // In input order, nothing after a failure may be written.
                if cli.ordered {
                    break;
                }
            }
        }
    }
    if output.finish().await? == Reader::Gone {
        return Ok(());
    }
    match first_failure {
        None => Ok(()),
        Some(failure) if failures > 1 => Err(anyhow!(
            "{failure:#} (and {} more failed batches)",
            failures - 1
        )),
        Some(failure) => Err(failure),
    }
}
