//! The command line turned, once, into what each stage of the run needs: every value typed and
//! checked, every rule between flags applied. The only module besides `main` and `cli` that
//! reads [`Cli`]; each stage takes only its own part.

use std::num::NonZeroUsize;

use clap::CommandFactory;

use reqwest::Url;

use crate::batch::Limits;
use crate::cache;
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
    /// The result cache, when there is one (--cache).
    pub cache: Option<cache::Settings>,
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
        let fingerprint = fingerprint(&cli);
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
        crate::files::check(&cli.inputs, &files, cli.cache.as_deref()).map_err(conflict)?;
        let url = cli.url.ok_or_else(|| {
            usage(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--url (or ABATCH_URL) is required".into(),
            )
        })?;
        let cache = match &cli.cache {
            Some(path) => {
                // Only read, it must be there: a misspelt name would send everything.
                let only_read = cli.cache_only || cli.no_cache_write;
                cache::check(path, only_read)
                    .map_err(|problem| usage(clap::error::ErrorKind::InvalidValue, problem))?;
                Some(cache::Settings {
                    path: path.clone(),
                    fingerprint,
                    write: !(only_read || cli.dry_run),
                })
            }
            None => None,
        };
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
                cache_only: cli.cache_only,
            },
            files,
            cache,
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

/// Everything besides a record's own bytes that decides the answer it gets: the URL and the
/// shaping flags (--api, --template, --results, --result, --index, --model, --set, --input,
/// --single, --v2-*), as JSON, whose quoting keeps values apart. Not --merge, applied to the
/// lines written; not the batch size, order or timeouts; not -H headers, which hold secrets
/// and seldom change an answer. The result cache keys each record by it and what is sent for
/// the record.
fn fingerprint(cli: &Cli) -> String {
    let sets: Vec<[&str; 2]> = cli
        .sets
        .iter()
        .map(|set| [set.key.as_str(), set.value.get()])
        .collect();
    serde_json::json!({
        // Raised when what is sent for the same flags changes.
        "keys": 1,
        "url": cli.url.as_ref().map(Url::as_str),
        "api": cli.api.map(|api| api.name()),
        "template": cli.template,
        "results": cli.results,
        "result": cli.result,
        "index": cli.index,
        "model": cli.model,
        "set": sets,
        "input": cli.input,
        "single": cli.single,
        "v2_input": cli.v2_input,
        "v2_datatype": cli.v2_datatype,
        "v2_output": cli.v2_output,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The cache's fingerprint of a run with these arguments (besides --url and --cache).
    fn fingerprint_of(args: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache.db");
        let mut line = vec![
            "abatch",
            "--url",
            "http://127.0.0.1:9/v1/embeddings",
            "--cache",
        ];
        let cache = cache.to_str().unwrap();
        line.push(cache);
        line.extend(args);
        let config = Config::new(Cli::try_parse_from(line).unwrap()).unwrap();
        config.cache.unwrap().fingerprint
    }

    #[test]
    fn the_cache_key_holds_what_decides_an_answer_and_nothing_else() {
        let base = ["--api", "openai-embeddings", "--model", "a"];
        let same = fingerprint_of(&base);
        // Headers (secrets), --merge, batching and order do not change an answer.
        for more in [
            &["-H", "Authorization: Bearer s3cret"][..],
            &["--merge", "embedding"],
            &["-b", "7", "--ordered", "-c", "9", "--batch-timeout", "1s"],
            &["--retries", "0", "--on-error", "skip"],
        ] {
            assert_eq!(
                fingerprint_of(&[&base[..], more].concat()),
                same,
                "{more:?}"
            );
        }
        assert!(!same.contains("s3cret"));
        // The model, the URL and every shaping flag do.
        let other_model = ["--api", "openai-embeddings", "--model", "b"];
        assert_ne!(fingerprint_of(&other_model), same);
        for more in [
            &["--input", "/text"][..],
            &["--set", "dimensions=8"],
            &["--index", "/i"],
            &["--result", "/r"],
            &["--results", "/rs"],
        ] {
            assert_ne!(
                fingerprint_of(&[&base[..], more].concat()),
                same,
                "{more:?}"
            );
        }
        assert_ne!(
            fingerprint_of(&["--template", r#"{"in":$batch}"#]),
            fingerprint_of(&["--template", r#"{"input":$batch}"#])
        );
        assert_ne!(fingerprint_of(&[]), fingerprint_of(&["--single"]));
        // --set fields go into the body in the order given.
        assert_ne!(
            fingerprint_of(&[&base[..], &["--set", "a=1", "--set", "b=2"]].concat()),
            fingerprint_of(&[&base[..], &["--set", "b=2", "--set", "a=1"]].concat())
        );
    }
}
