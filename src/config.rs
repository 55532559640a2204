//! The command line turned, once, into what each stage of the run needs: every value typed and
//! checked, every rule between flags applied. The only module besides `main` and `cli` that
//! reads [`Cli`]; each stage takes only its own part.

use std::num::NonZeroUsize;

use clap::CommandFactory;

use crate::batch::Limits;
use crate::cli::{Cli, Concurrency, Header, OnError};
use crate::flow::{self, retry::Policy};
use crate::http;
use crate::input;
use crate::output::Files;
use crate::report::Display;
use crate::wire::{self, Codec};

/// Everything a run needs, checked.
pub struct Config {
    pub input: input::Settings,
    pub batch: Limits,
    /// Most requests in flight at once: fixed, or adapting within bounds.
    pub concurrency: Concurrency,
    pub http: http::Settings,
    /// How requests are made and answers read.
    pub codec: Codec,
    pub flow: flow::Settings,
    pub files: Files,
    pub display: Display,
}

impl Config {
    /// Checks `cli` as a whole and splits it up; a problem is a usage error.
    pub fn new(cli: Cli) -> Result<Config, clap::Error> {
        let usage = |kind, message: String| Cli::command().error(kind, message);
        let headers: Vec<Header> = cli.headers().cloned().collect();
        let conflict = |message| usage(clap::error::ErrorKind::ArgumentConflict, message);
        let codec = Codec::new(&wire::Flags {
            api: cli.api,
            input: &cli.input,
            template: &cli.template,
            results: &cli.results,
            result: &cli.result,
            index: &cli.index,
            merge: &cli.merge,
            single: cli.single,
            model: &cli.model,
            sets: &cli.sets,
            v2_input: &cli.v2_input,
            v2_datatype: &cli.v2_datatype,
            v2_output: &cli.v2_output,
        })
        .map_err(|problem| usage(clap::error::ErrorKind::InvalidValue, problem))?;
        if cli.max_errors.is_some() && cli.on_error == OnError::Abort {
            return Err(conflict(
                "--max-errors needs --on-error skip or null: under abort the first failure \
                 already stops the run"
                    .into(),
            ));
        }
        if cli.resume && cli.on_error == OnError::Skip {
            return Err(conflict(
                "--resume cannot be used with --on-error skip: skipped records leave no line, \
                 so the output's line count no longer tells how far the input was done"
                    .into(),
            ));
        }
        let files = Files {
            output: cli.output,
            errors: cli.errors,
            stats: cli.stats,
            ordered: cli.ordered,
            resume: cli.resume,
            dry_run: cli.dry_run,
        };
        crate::files::check(&cli.inputs, &files).map_err(conflict)?;
        let url = cli.url.ok_or_else(|| {
            usage(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--url (or ABATCH_URL) is required".into(),
            )
        })?;
        Ok(Config {
            batch: Limits {
                // --single: one record per request.
                records: if codec.single() {
                    NonZeroUsize::MIN
                } else {
                    cli.batch_size
                },
                bytes: cli.max_batch_bytes,
                timeout: cli.batch_timeout,
                ordered: cli.ordered,
            },
            input: input::Settings {
                paths: cli.inputs,
                max_line: cli.max_line_bytes.get(),
            },
            concurrency: cli.concurrency,
            http: http::Settings {
                url,
                timeout: cli.timeout,
                headers,
                cacert: cli.cacert,
                insecure: cli.insecure,
                max_response_bytes: cli.max_response_bytes.get(),
            },
            codec,
            flow: flow::Settings {
                policy: Policy {
                    retries: cli.retries,
                    backoff: cli.retry_backoff,
                    split: cli.split_on_error,
                    max_wait: cli.retry_max_wait,
                },
                rate: cli.rate,
                tpm: cli.tpm,
                on_error: cli.on_error,
                max_errors: cli.max_errors,
                deadline: cli.deadline,
                idempotency_key: cli.idempotency_key,
                dry_run: cli.dry_run,
            },
            files,
            display: Display {
                quiet: cli.quiet,
                verbose: cli.verbose,
                progress: cli.progress,
                no_progress: cli.no_progress,
                insecure: cli.insecure,
            },
        })
    }
}
