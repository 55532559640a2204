//! The command line turned, once, into what each stage of the run needs: every value typed and
//! checked, every rule between flags applied. The only module besides `main` and `cli` that
//! reads [`Cli`]; each stage takes only its own part.

use std::num::NonZeroUsize;

use clap::CommandFactory;
use reqwest::Url;

use crate::batch::Limits;
use crate::cache;
use crate::cli::{Cli, Concurrency, Header, OnError, Shard};
use crate::flow::{self, retry::Policy};
use crate::http;
use crate::input;
use crate::output::{Files, Matching};
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
            tag: cli.tag,
        })
        .map_err(|problem| usage(clap::error::ErrorKind::InvalidValue, problem))?;
        let fingerprint = fingerprint(&cli);
        // A batch file's failed requests get their lines, as OpenAI writes them; aligned
        // output has a line for every input line.
        let on_error = match cli.on_error {
            Some(on_error) if cli.aligned && on_error != OnError::Null => {
                return Err(conflict(
                    "--aligned writes a null line for each record that fails: --on-error skip \
                     or abort would break the alignment (leave --on-error out)"
                        .into(),
                ));
            }
            Some(on_error) => on_error,
            None if codec.requests() || cli.aligned => OnError::Null,
            None => OnError::Abort,
        };
        let ordered = cli.ordered || cli.aligned;
        if cli.aligned && (cli.shard.is_some() || cli.shard_from_env || cli.dry_run) {
            return Err(conflict(
                "--aligned writes one line per line of its input: not with --shard (a share of \
                 stdin is every N-th record) or --dry-run (a line per request)"
                    .into(),
            ));
        }
        if cli.max_errors.is_some() && on_error == OnError::Abort {
            return Err(conflict(
                "--max-errors needs --on-error skip or null: under abort the first failure \
                 already stops the run"
                    .into(),
            ));
        }
        let matching = match (cli.tag, codec.requests()) {
            (true, _) => Matching::Tags,
            (false, true) => Matching::Ids,
            (false, false) => Matching::Count,
        };
        if cli.resume && !ordered && matching == Matching::Count {
            return Err(conflict(
                "--resume without --ordered needs output that says which record each line \
                 answers: add --tag (or --ordered, whose lines follow the input)"
                    .into(),
            ));
        }
        if cli.resume && matching == Matching::Count && on_error == OnError::Skip {
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
            ordered,
            resume: cli.resume,
            matching,
            dry_run: cli.dry_run,
        };
        crate::files::check(&cli.inputs, &files, cli.cache.as_deref()).map_err(conflict)?;
        let shard = match (cli.shard, cli.shard_from_env) {
            (Some(shard), _) => Some(shard),
            (None, true) => Some(
                shard_from_env(cli.shard_count, |name| std::env::var(name).ok())
                    .map_err(|e| usage(clap::error::ErrorKind::ValueValidation, e))?,
            ),
            (None, false) => None,
        };
        let urls: Vec<Url> = cli.url.into_iter().flat_map(|urls| urls.0).collect();
        if urls.is_empty() {
            return Err(usage(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--url (or ABATCH_URL) is required".into(),
            ));
        }
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
                ordered,
            },
            input: input::Settings {
                paths: cli.inputs,
                max_line: cli.max_line_bytes.get(),
                shard,
                keep_blank: cli.aligned,
                unique: codec.requests().then_some(input::UniqueBy {
                    name: "custom_id",
                    rule: "each request of an OpenAI batch file needs its own custom_id",
                    of: wire::custom_id,
                }),
            },
            concurrency: cli.concurrency,
            http: http::Settings {
                urls,
                timeout: cli.timeout,
                headers,
                cacert: cli.cacert,
                insecure: cli.insecure,
                max_response_bytes: cli.max_response_bytes.get(),
                keep_error_bodies: codec.requests(),
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
                on_error,
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
                aligned: cli.aligned,
                hadoop_counters: cli.hadoop_counters,
                shard,
            },
        })
    }
}

/// The shard a job engine's environment (`var`) names: a Kubernetes Indexed Job's
/// JOB_COMPLETION_INDEX with `count` (--shard-count), or a Slurm array's task id, count and
/// first id. Kubernetes' is looked for first.
fn shard_from_env(
    count: Option<u64>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Shard, String> {
    let number =
        |name: &str| -> Result<Option<u64>, String> {
            match var(name) {
                None => Ok(None),
                Some(text) => text.trim().parse().map(Some).map_err(|_| {
                    format!("--shard-from-env: {name}={text:?} is not a whole number")
                }),
            }
        };
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = count.ok_or(
            "--shard-from-env: JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) says K, but not \
             N: pass the Job's completions as --shard-count N (or ABATCH_SHARD_COUNT)",
        )?;
        return Shard::new(index, count).map_err(|e| {
            format!(
                "--shard-from-env: JOB_COMPLETION_INDEX={index} with --shard-count {count}: {e}"
            )
        });
    }
    if let Some(task) = number("SLURM_ARRAY_TASK_ID")? {
        let slurm_count = number("SLURM_ARRAY_TASK_COUNT")?;
        let first = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let total = match (slurm_count, count) {
            (Some(slurm), Some(given)) if slurm != given => {
                return Err(format!(
                    "--shard-from-env: SLURM_ARRAY_TASK_COUNT={slurm} but --shard-count {given}; \
                     drop --shard-count"
                ));
            }
            (Some(total), _) | (None, Some(total)) => total,
            (None, None) => {
                return Err("--shard-from-env: SLURM_ARRAY_TASK_ID is set but not \
                            SLURM_ARRAY_TASK_COUNT; pass --shard-count N"
                    .into());
            }
        };
        let index = task.checked_sub(first).ok_or_else(|| {
            format!(
                "--shard-from-env: SLURM_ARRAY_TASK_ID={task} is below SLURM_ARRAY_TASK_MIN={first}"
            )
        })?;
        return Shard::new(index, total).map_err(|e| {
            format!(
                "--shard-from-env: SLURM_ARRAY_TASK_ID={task} (from SLURM_ARRAY_TASK_MIN={first}) \
                 of SLURM_ARRAY_TASK_COUNT={total}: {e}; abatch needs the array's ids to be \
                 consecutive, as --array=0-{} makes them",
                total.saturating_sub(1)
            )
        });
    }
    Err(
        "--shard-from-env: neither JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) nor \
         SLURM_ARRAY_TASK_ID (a Slurm job array) is set; pass --shard K/N instead"
            .into(),
    )
}

/// Everything besides a record's own bytes that decides the answer it gets: the URLs (every
/// replica's, sorted) and the
/// shaping flags (--api, --template, --results, --result, --index, --model, --set, --input,
/// --single, --v2-*), as JSON, whose quoting keeps values apart. Not --merge, applied to the
/// lines written; not the batch size, order or timeouts; not -H headers, which hold secrets
/// and seldom change an answer. The result cache keys each record by it and what is sent for
/// the record.
fn fingerprint(cli: &Cli) -> String {
    let mut urls: Vec<&str> = cli.url.iter().flat_map(|u| &u.0).map(Url::as_str).collect();
    urls.sort_unstable();
    urls.dedup();
    let sets: Vec<[&str; 2]> = cli
        .sets
        .iter()
        .map(|set| [set.key.as_str(), set.value.get()])
        .collect();
    serde_json::json!({
        // Raised when what is sent for the same flags changes.
        "keys": 1,
        // Every replica's, in one order whatever the order given.
        "url": urls,
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
        // Replicas: every URL counts, in whatever order they were given.
        let replicas = fingerprint_of(&["-u", "http://127.0.0.1:10/v1/embeddings"]);
        assert_ne!(replicas, fingerprint_of(&[]));
        let both = "http://127.0.0.1:10/v1/embeddings,http://127.0.0.1:9/v1/embeddings";
        let mut line = vec!["abatch", "-u", both];
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache.db");
        line.extend(["--cache", cache.to_str().unwrap()]);
        let config = Config::new(Cli::try_parse_from(line).unwrap()).unwrap();
        assert_eq!(config.cache.unwrap().fingerprint, replicas);
        // --set fields go into the body in the order given.
        assert_ne!(
            fingerprint_of(&[&base[..], &["--set", "a=1", "--set", "b=2"]].concat()),
            fingerprint_of(&[&base[..], &["--set", "b=2", "--set", "a=1"]].concat())
        );
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn each_engine_names_its_shard() {
        let shard = |count, vars: &[(&str, &str)]| shard_from_env(count, env(vars));
        assert_eq!(
            shard(Some(4), &[("JOB_COMPLETION_INDEX", "3")]),
            Ok(Shard { index: 3, count: 4 })
        );
        assert_eq!(
            shard(
                None,
                &[
                    ("SLURM_ARRAY_TASK_ID", "12"),
                    ("SLURM_ARRAY_TASK_COUNT", "5"),
                    ("SLURM_ARRAY_TASK_MIN", "10")
                ]
            ),
            Ok(Shard { index: 2, count: 5 })
        );
        assert_eq!(
            shard(Some(3), &[("SLURM_ARRAY_TASK_ID", "1")]),
            Ok(Shard { index: 1, count: 3 })
        );
    }

    #[test]
    fn missing_or_inconsistent_variables_are_named() {
        let error = |count, vars: &[(&str, &str)]| shard_from_env(count, env(vars)).unwrap_err();
        assert!(error(None, &[]).contains("neither JOB_COMPLETION_INDEX"));
        assert!(error(None, &[("JOB_COMPLETION_INDEX", "0")]).contains("--shard-count"));
        assert!(error(Some(2), &[("JOB_COMPLETION_INDEX", "2")]).contains("does not exist"));
        assert!(error(Some(2), &[("JOB_COMPLETION_INDEX", "x")]).contains("not a whole number"));
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert!(error(None, &slurm).contains("consecutive"));
        assert!(error(Some(3), &slurm[..2]).contains("drop --shard-count"));
        assert!(error(None, &[("SLURM_ARRAY_TASK_ID", "0")]).contains("SLURM_ARRAY_TASK_COUNT"));
        let below = [
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert!(error(None, &below).contains("below"));
    }
}
