//! The command line turned, once, into what each stage of the run needs: every value typed and
//! checked, every rule between flags applied. The only module besides `main` and `cli` that
//! reads [`Cli`]; each stage takes only its own part.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::CommandFactory;
use reqwest::Url;

use crate::batch::Limits;
use crate::cli::{CaCerts, Cli, Header, OnError, Rate};
use crate::flow::retry::Policy;
use crate::wire::{self, Codec};

/// Everything a run needs, checked.
pub struct Config {
    pub input: Input,
    pub batch: Limits,
    /// Most batches outstanding at once.
    pub concurrency: NonZeroUsize,
    pub http: Http,
    /// How requests are made and answers read.
    pub codec: Codec,
    pub flow: Flow,
    pub files: Files,
    pub display: Display,
}

/// What to read.
pub struct Input {
    /// Files in turn; none means stdin, and '-' stands for it.
    pub paths: Vec<PathBuf>,
    /// Longest input line accepted.
    pub max_line: usize,
}

/// Where and how requests go.
pub struct Http {
    pub url: Url,
    pub timeout: Duration,
    pub headers: Vec<Header>,
    pub cacert: Option<CaCerts>,
    pub insecure: bool,
    pub max_response_bytes: usize,
}

/// How batches become outcomes.
pub struct Flow {
    pub policy: Policy,
    pub rate: Option<Rate>,
    pub on_error: OnError,
    /// Show each request instead of sending it.
    pub dry_run: bool,
}

/// What the run writes, and in what order.
pub struct Files {
    /// Results: stdout when None.
    pub output: Option<PathBuf>,
    /// Dead letters: stderr when None.
    pub errors: Option<PathBuf>,
    pub stats: Option<PathBuf>,
    pub ordered: bool,
    /// Continue the run whose results are in `output`.
    pub resume: bool,
    /// Write no file at all (--dry-run).
    pub dry_run: bool,
}

/// What people see on stderr.
pub struct Display {
    pub quiet: bool,
    pub verbose: u8,
    /// Progress forced on (--progress) or off (--no-progress).
    pub progress: bool,
    pub no_progress: bool,
    pub insecure: bool,
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
            },
            input: Input {
                paths: cli.inputs,
                max_line: cli.max_line_bytes.get(),
            },
            concurrency: cli.concurrency,
            http: Http {
                url,
                timeout: cli.timeout,
                headers,
                cacert: cli.cacert,
                insecure: cli.insecure,
                max_response_bytes: cli.max_response_bytes.get(),
            },
            codec,
            flow: Flow {
                policy: Policy {
                    retries: cli.retries,
                    backoff: cli.retry_backoff,
                    split: cli.split_on_error,
                    max_wait: cli.retry_max_wait,
                },
                rate: cli.rate,
                on_error: cli.on_error,
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

impl Files {
    /// A file the run writes: none in a dry run, which leaves every file alone.
    pub fn written<'a>(&self, path: &'a Option<PathBuf>) -> Option<&'a std::path::Path> {
        path.as_deref().filter(|_| !self.dry_run)
    }
}
