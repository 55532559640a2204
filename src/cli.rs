//! The command line: every flag, its help text, and the parsers that turn each value into a
//! type that cannot hold a bad setting, so mistakes stop as usage errors before anything runs.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::exit::Exit;

/// Send newline-delimited JSON records to an HTTP inference endpoint in batches, and write one
/// result per record.
///
/// Records are read from the FILEs in turn (or stdin), grouped into batches of up to
/// --batch-size records, and each batch is POSTed as a JSON array. A batch that is not yet full
/// is sent --batch-timeout after its first record arrived, and at once when the input ends. The
/// endpoint must answer with a JSON array holding one result per record, in the same order;
/// each result is written as one line of JSON. (--api and the shaping flags change both
/// bodies.)
#[derive(Parser, Debug)]
#[command(name = "abatch", version)]
#[command(after_long_help = after_long_help())]
pub struct Cli {
    /// Endpoint to POST each batch to (http or https; http when no scheme is given). Give it
    /// more than once (or several in ABATCH_URL, separated by commas or spaces) for replicas
    /// of one server: each request goes to the one with the fewest in flight, and one that
    /// fails is left out for a while
    #[arg(short, long, env = "ABATCH_URL", hide_env_values = true, value_name = "URL", value_parser = parse_urls, required_unless_present = "generate")]
    pub url: Vec<Urls>,

    /// Input files of newline-delimited JSON; '-' or none means stdin
    #[arg(value_name = "FILE")]
    pub inputs: Vec<PathBuf>,

    /// Longest input line accepted (at most 4GiB); a longer one is an input error, not an
    /// out-of-memory
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = parse_bytes, allow_hyphen_values = true, help_heading = "Input", env = "ABATCH_MAX_LINE_BYTES")]
    pub max_line_bytes: NonZeroUsize,

    /// Take only share K of N of the input (K from 0 to N-1), for N workers of a job array:
    /// the lines that start in the K-th of N equal byte ranges of the input files (read from
    /// there), or, for stdin and compressed input, every N-th record from the K-th
    #[arg(long, value_name = "K/N", value_parser = parse_shard, conflicts_with = "shard_from_env", help_heading = "Input", env = "ABATCH_SHARD")]
    pub shard: Option<Shard>,

    /// Take K and N of --shard from the job engine: a Kubernetes Indexed Job
    /// (JOB_COMPLETION_INDEX, with N from --shard-count) or a Slurm job array
    /// (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_MIN)
    #[arg(long, help_heading = "Input", env = "ABATCH_SHARD_FROM_ENV", value_parser = Switch)]
    pub shard_from_env: bool,

    /// N for --shard-from-env where the engine does not say it (a Kubernetes Indexed Job's
    /// completions)
    #[arg(long, value_name = "N", value_parser = parse_shard_count, requires = "shard_from_env", help_heading = "Input", env = "ABATCH_SHARD_COUNT")]
    pub shard_count: Option<u64>,

    /// Most records in one batch (1 to 1000000)
    #[arg(short, long, value_name = "N", default_value = "32", value_parser = parse_batch_size, allow_negative_numbers = true, help_heading = "Batching", env = "ABATCH_BATCH_SIZE")]
    pub batch_size: NonZeroUsize,

    /// Send a batch that is not full this long after its first record arrived (e.g. 100ms, 2s,
    /// 1m; 0s sends whatever has arrived; at most 7days)
    #[arg(short = 't', long, value_name = "DURATION", default_value = "100ms", value_parser = parse_delay, allow_hyphen_values = true, help_heading = "Batching", env = "ABATCH_BATCH_TIMEOUT")]
    pub batch_timeout: Duration,

    /// Also send a batch before its body (the JSON array) would grow past this size (e.g. 4MiB;
    /// at most 4GiB)
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, allow_hyphen_values = true, help_heading = "Batching", env = "ABATCH_MAX_BATCH_BYTES")]
    pub max_batch_bytes: Option<NonZeroUsize>,

    /// Most requests in flight at once (1 to 10000), or 'auto' to find what the server
    /// serves best while the run goes, between 1 and 64 ('auto:MIN..MAX' to choose); reading
    /// pauses while that many batches are outstanding
    #[arg(short, long, value_name = "N|auto", default_value = "4", value_parser = parse_concurrency, allow_negative_numbers = true, help_heading = "Requests", env = "ABATCH_CONCURRENCY")]
    pub concurrency: Concurrency,

    /// Give up on an attempt that has not been fully answered after this long (at most 7days)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_limit, allow_hyphen_values = true, help_heading = "Requests", env = "ABATCH_TIMEOUT")]
    pub timeout: Duration,

    /// Start at most N requests per second or minute, retries included (e.g. 20/s, 600/m)
    #[arg(long, value_name = "N/s|N/m", value_parser = parse_rate, help_heading = "Requests", env = "ABATCH_RATE")]
    pub rate: Option<Rate>,

    /// Send at most N tokens per minute, each request's tokens estimated before it is sent as
    /// its body's bytes / 4 (OpenAI's rule of thumb), then corrected by the count the server
    /// reports in its answer's usage; with --rate and -c, the strictest wins
    #[arg(long, value_name = "N", value_parser = parse_tpm, help_heading = "Requests", env = "ABATCH_TPM")]
    pub tpm: Option<NonZeroU64>,

    /// The longest a batch may take from its first attempt (once sent) to its last answer,
    /// waits and retries included (--timeout is per attempt); a batch past it goes to
    /// --on-error
    #[arg(long, value_name = "DURATION", value_parser = parse_limit, allow_hyphen_values = true, help_heading = "Requests", env = "ABATCH_DEADLINE")]
    pub deadline: Option<Duration>,

    /// Give every request an 'Idempotency-Key: RUN-BATCH' header (RUN-BATCH-FIRST..END for
    /// part of a split batch), the same on each retry and different between requests, so a
    /// server that supports it never applies a retried request twice
    #[arg(long, help_heading = "Requests", env = "ABATCH_IDEMPOTENCY_KEY", value_parser = Switch)]
    pub idempotency_key: bool,

    /// Extra request header, 'Name: value', or @FILE for one header per line (repeatable);
    /// values never appear in messages
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = HeaderParser, help_heading = "Requests", env = "ABATCH_HEADER", hide_env_values = true)]
    pub headers: Vec<Headers>,

    /// Also trust the CA certificates in this PEM file
    #[arg(
        long,
        value_name = "FILE",
        value_parser = CaCertParser,
        help_heading = "Requests",
        env = "ABATCH_CACERT"
    )]
    pub cacert: Option<CaCerts>,

    /// Do not verify TLS certificates (says so on stderr)
    #[arg(long, help_heading = "Requests", env = "ABATCH_INSECURE", value_parser = Switch)]
    pub insecure: bool,

    /// Longest response body accepted (at most 4GiB); a longer one fails its batch
    #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = parse_bytes, allow_hyphen_values = true, help_heading = "Requests", env = "ABATCH_MAX_RESPONSE_BYTES")]
    pub max_response_bytes: NonZeroUsize,

    /// Speak a known API: a preset of the shaping flags below (explicit flags win)
    #[arg(
        long,
        value_name = "NAME",
        value_enum,
        env = "ABATCH_API",
        help_heading = "Shaping"
    )]
    pub api: Option<Api>,

    /// JSON pointer into each record: the part sent for it (e.g. /text)
    #[arg(
        long,
        value_name = "POINTER",
        env = "ABATCH_INPUT",
        help_heading = "Shaping"
    )]
    pub input: Option<String>,

    /// Request body, with the bare token $batch where the array of inputs goes (or $record
    /// with --single), e.g. '{"model":"m","input":$batch}'
    #[arg(
        long,
        value_name = "JSON",
        env = "ABATCH_TEMPLATE",
        help_heading = "Shaping"
    )]
    pub template: Option<String>,

    /// JSON pointer to the array of results in the answer (e.g. /predictions)
    #[arg(
        long,
        value_name = "POINTER",
        env = "ABATCH_RESULTS",
        help_heading = "Shaping"
    )]
    pub results: Option<String>,

    /// JSON pointer applied to each element of the results (e.g. /embedding)
    #[arg(
        long,
        value_name = "POINTER",
        env = "ABATCH_RESULT",
        help_heading = "Shaping"
    )]
    pub result: Option<String>,

    /// JSON pointer to a number in each element saying which input it answers, for servers
    /// that may answer out of order (e.g. /index)
    #[arg(
        long,
        value_name = "POINTER",
        env = "ABATCH_INDEX",
        help_heading = "Shaping"
    )]
    pub index: Option<String>,

    /// Write each record (an object) with its result stored under FIELD, instead of the
    /// result alone
    #[arg(
        long,
        value_name = "FIELD",
        env = "ABATCH_MERGE",
        help_heading = "Shaping"
    )]
    pub merge: Option<String>,

    /// Write each result as {"file": FILE, "line": N, "result": RESULT}, FILE as the input
    /// was named ("<stdin>" for standard input) and N its line, so that output in completion
    /// order can be matched to its records, and resumed (--resume)
    #[arg(long, env = "ABATCH_TAG", value_parser = Switch, help_heading = "Output")]
    pub tag: bool,

    /// One record per request: the record (or its --input part, at $record in --template) is
    /// the body, and the answer (or --result in it) its result
    #[arg(long, env = "ABATCH_SINGLE", value_parser = Switch, conflicts_with = "batch_size", help_heading = "Shaping")]
    pub single: bool,

    /// Model name, added to the body as "model" (the OpenAI and Ollama presets need it); the
    /// body must be a JSON object (an --api or a --template that makes one)
    #[arg(
        long,
        value_name = "NAME",
        env = "ABATCH_MODEL",
        help_heading = "Shaping"
    )]
    pub model: Option<String>,

    /// Add a top-level field to the body, KEY=JSON (repeatable), e.g. max_tokens=64; the body
    /// must be a JSON object without that field
    #[arg(long = "set", value_name = "KEY=JSON", value_parser = parse_set, help_heading = "Shaping")]
    pub sets: Vec<Set>,

    /// --api v2: name of the input tensor (default: input-0)
    #[arg(
        long,
        value_name = "NAME",
        env = "ABATCH_V2_INPUT",
        help_heading = "Shaping"
    )]
    pub v2_input: Option<String>,

    /// --api v2: datatype of the input tensor (FP32, FP64, INT64, BYTES, BOOL, ...; inferred
    /// from the rows when not given)
    #[arg(
        long,
        value_name = "TYPE",
        env = "ABATCH_V2_DATATYPE",
        help_heading = "Shaping"
    )]
    pub v2_datatype: Option<String>,

    /// --api v2: name of the output tensor to split into results (default: the first)
    #[arg(
        long,
        value_name = "NAME",
        env = "ABATCH_V2_OUTPUT",
        help_heading = "Shaping"
    )]
    pub v2_output: Option<String>,

    /// Write results to FILE instead of stdout; it is created (or emptied) only when its first
    /// line is written, so a run that writes none leaves it as it was
    #[arg(
        short,
        long,
        value_name = "FILE",
        help_heading = "Output",
        env = "ABATCH_OUTPUT"
    )]
    pub output: Option<PathBuf>,

    /// Write results in input order (default: as each batch completes)
    #[arg(long, help_heading = "Output", env = "ABATCH_ORDERED", value_parser = Switch)]
    pub ordered: bool,

    /// Exactly one output line per input line, in order, as Spark's RDD.pipe and Hadoop
    /// Streaming expect: a result, or null for a line that failed, was blank or was invalid
    /// (dead letters say why); exit 0 unless --max-errors stops the run. Implies --ordered
    /// and --on-error null
    #[arg(long, help_heading = "Output", env = "ABATCH_ALIGNED", value_parser = Switch)]
    pub aligned: bool,

    /// Also report counts on stderr as Hadoop Streaming reads them
    /// (reporter:counter:abatch,NAME,AMOUNT and reporter:status:MESSAGE), at most once a
    /// second
    #[arg(long, help_heading = "Display", env = "ABATCH_HADOOP_COUNTERS", value_parser = Switch)]
    pub hadoop_counters: bool,

    /// Continue an interrupted run: keep the complete lines of --output, skip the records
    /// they answer, and append the rest (needs --output, and --ordered, --tag or --api
    /// openai-batch to match lines to records)
    #[arg(long, requires = "output", help_heading = "Output", env = "ABATCH_RESUME", value_parser = Switch)]
    pub resume: bool,

    /// Extra attempts for a batch that failed in a way that may pass on a second try
    /// (no connection, timeout, HTTP 408, 429, 500, 502, 503, 504); 0 to 1000
    #[arg(
        long,
        value_name = "N",
        default_value = "3",
        value_parser = parse_retries,
        allow_negative_numbers = true,
        help_heading = "Reliability",
        env = "ABATCH_RETRIES"
    )]
    pub retries: u32,

    /// Base of the exponential backoff between attempts, with full jitter, capped at 30s;
    /// a Retry-After from the server is honoured (at most 7days)
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_delay, allow_hyphen_values = true, help_heading = "Reliability", env = "ABATCH_RETRY_BACKOFF")]
    pub retry_backoff: Duration,

    /// The longest one wait between attempts may be: the backoff stops growing there, a
    /// server asking (with Retry-After) to wait longer fails the batch instead, and no pause
    /// of every new attempt (after a 429, or rate-limit headers) lasts longer (at most 7days)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_limit, allow_hyphen_values = true, help_heading = "Reliability", env = "ABATCH_RETRY_MAX_WAIT")]
    pub retry_max_wait: Duration,

    /// What a batch (or an invalid input line) that still fails does: stop the run (abort),
    /// write nothing for its records (skip), or write a null line for each (null; with --api
    /// openai-batch, the line OpenAI writes for a failed request); a 401, 403, 404 or 405,
    /// which no record would pass, stops the run under each [default: abort; null with --api
    /// openai-batch or --aligned]
    #[arg(
        long,
        value_name = "POLICY",
        value_enum,
        help_heading = "Reliability",
        env = "ABATCH_ON_ERROR"
    )]
    pub on_error: Option<OnError>,

    /// Under --on-error skip or null, stop the run (exit 1) once more than N records, or more
    /// than P% of those answered or failed so far (judged from 100 on), have failed
    #[arg(long, value_name = "N|P%", value_parser = parse_error_budget, help_heading = "Reliability", env = "ABATCH_MAX_ERRORS")]
    pub max_errors: Option<ErrorBudget>,

    /// Write each record that has no result here, as a JSON line with its error; emptied once
    /// the inputs open (default: stderr, where a terminal shows the first five)
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Reliability",
        env = "ABATCH_ERRORS"
    )]
    pub errors: Option<PathBuf>,

    /// Split a batch the server rejects with a 4xx into halves, down to single records, so
    /// only the records at fault fail (a 413 always splits)
    #[arg(long, help_heading = "Reliability", env = "ABATCH_SPLIT_ON_ERROR", value_parser = Switch)]
    pub split_on_error: bool,

    /// Remember each record's result in FILE (an SQLite database, created if missing) and
    /// answer a record whose result it holds without sending it. A result is found again for
    /// the same URLs (every -u), shaping flags (--api, --template, --input, --model, --set, ...) and what
    /// is sent for the record; -H headers are not part of it (they hold secrets and seldom
    /// change an answer), nor --merge, batch sizes or record order. Results of failed batches
    /// are never remembered; fresh results are committed within a second (a killed run loses
    /// no more). Runs may share FILE at once
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Cache",
        env = "ABATCH_CACHE"
    )]
    pub cache: Option<PathBuf>,

    /// Send nothing: answer from --cache only, and fail every record it holds no result for
    /// ("not in the cache (--cache-only)"), as --on-error says
    #[arg(long, requires = "cache", help_heading = "Cache", env = "ABATCH_CACHE_ONLY", value_parser = Switch)]
    pub cache_only: bool,

    /// Read --cache but write nothing to it: fresh results are not remembered
    #[arg(long, requires = "cache", help_heading = "Cache", env = "ABATCH_NO_CACHE_WRITE", value_parser = Switch)]
    pub no_cache_write: bool,

    /// Print nothing on stderr but errors and warnings: no progress, and no summary unless
    /// records failed (-v still logs)
    #[arg(short, long, env = "ABATCH_QUIET", value_parser = Switch, help_heading = "Display")]
    pub quiet: bool,

    /// Log each request on stderr: batch, size, attempt, status, latency (-vv: also waits and
    /// splits)
    #[arg(short, long, env = "ABATCH_VERBOSE", action = clap::ArgAction::Count, value_parser = Verbosity, help_heading = "Display")]
    pub verbose: u8,

    /// Show progress on stderr even when it is not a terminal
    #[arg(long, env = "ABATCH_PROGRESS", value_parser = Switch, help_heading = "Display")]
    pub progress: bool,

    /// Never show progress (with --progress, a usage error)
    #[arg(long, env = "ABATCH_NO_PROGRESS", value_parser = Switch, help_heading = "Display")]
    pub no_progress: bool,

    /// Write run statistics as JSON to FILE at the end: counts, latency percentiles, batch
    /// sizes, concurrency, HTTP statuses
    #[arg(
        long,
        env = "ABATCH_STATS",
        value_name = "FILE",
        help_heading = "Display"
    )]
    pub stats: Option<PathBuf>,

    /// Read and batch as usual but send nothing: print each request that would be sent as one
    /// JSON line (header values and a password in the URL redacted) on stdout; no file is
    /// written
    #[arg(long, env = "ABATCH_DRY_RUN", value_parser = Switch, help_heading = "Display")]
    pub dry_run: bool,

    /// Print shell completions or the man page, and exit
    // A long help of its own: the man page shows no help that -h hides.
    #[arg(
        long,
        value_name = "KIND",
        value_enum,
        exclusive = true,
        hide_short_help = true,
        long_help = "Print shell completions or the man page (roff), and exit"
    )]
    pub generate: Option<Generate>,
}

/// The APIs abatch speaks out of the box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// {"instances": [...]} → /predictions: TF-Serving, KServe v1, MLflow /invocations
    Tfserving,
    /// Open Inference Protocol tensors: KServe v2, Seldon MLServer, NVIDIA Triton
    V2,
    /// {"model", "input": [...]} → /data, each /embedding, placed by /index
    OpenaiEmbeddings,
    /// {"model", "prompt": [...]} → /choices, each /text, placed by /index
    OpenaiCompletions,
    /// One record per request → /choices/0/message/content
    OpenaiChat,
    /// Hugging Face text-embeddings-inference /embed: {"inputs": [...]} → vectors
    Tei,
    /// Ollama /api/embed: {"model", "input": [...]} → /embeddings
    OllamaEmbed,
    /// OpenAI Batch API files: each line a request {"custom_id", "method", "url", "body"},
    /// sent to -u's base plus its url; output in the batch output format
    OpenaiBatch,
}

impl Api {
    /// The name on the command line.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// A top-level field for the request body (--set).
#[derive(Clone, Debug)]
pub struct Set {
    pub key: String,
    pub value: Box<serde_json::value::RawValue>,
}

fn parse_set(text: &str) -> Result<Set, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or("expected KEY=JSON, such as max_tokens=64")?;
    let value =
        serde_json::value::RawValue::from_string(value.trim().to_owned()).map_err(|_| {
            format!("the value of {key} is not JSON (a string needs quotes: {key}='\"...\"')")
        })?;
    Ok(Set {
        key: key.trim().to_owned(),
        value,
    })
}

/// What `--generate` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
    Man,
}

/// What to do with a batch that failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Stop reading, cancel what is in flight, exit 1
    Abort,
    /// Write nothing for the batch's records and go on
    Skip,
    /// Write a null line for each of the batch's records and go on
    Null,
}

/// How many requests may be in flight at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    /// `-c N`.
    Fixed(NonZeroUsize),
    /// `-c auto:MIN..MAX`: adapts to the server while the run goes.
    Auto(Bounds),
}

/// `-c auto:MIN..MAX`: the least and the most the limit may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub min: usize,
    pub max: usize,
}

/// --max-errors: how many failed records a run may have before it stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ErrorBudget {
    Records(u64),
    /// A percentage of the records answered or failed so far.
    Percent(f64),
}

/// At most `count` requests started per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Cli {
    /// Parses the command line, settling what only the parse can tell: which of two
    /// contradicting flags was given where, and a URL given where a FILE goes. The rules
    /// between flags are [`crate::config::Config`]'s.
    pub fn parse_checked() -> Result<Cli, clap::Error> {
        let matches = Cli::command()
            .try_get_matches()
            .map_err(url_given_as_file)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        let conflict = |message: String| {
            Cli::command().error(clap::error::ErrorKind::ArgumentConflict, message)
        };
        if cli.progress && cli.no_progress {
            // A flag on the command line wins over a variable; two at the same level clash.
            let source = |id| matches.value_source(id);
            match (source("progress"), source("no_progress")) {
                (a, b) if a == b => {
                    return Err(conflict(format!(
                        "{} and {} contradict each other",
                        given_as(&matches, "progress"),
                        given_as(&matches, "no_progress")
                    )));
                }
                (Some(ValueSource::CommandLine), _) => cli.no_progress = false,
                _ => cli.progress = false,
            }
        }
        Ok(cli)
    }

    /// Every -H header, those read from files included, in order.
    pub fn headers(&self) -> impl Iterator<Item = &Header> {
        self.headers.iter().flat_map(|h| &h.0)
    }
}

/// How `id` was given, for a message: its variable's name if that is where it came from,
/// else its flag.
fn given_as(matches: &clap::ArgMatches, id: &str) -> String {
    let command = Cli::command();
    let Some(arg) = command.get_arguments().find(|arg| arg.get_id() == id) else {
        return id.to_owned();
    };
    match (matches.value_source(id), arg.get_env()) {
        (Some(ValueSource::EnvVariable), Some(variable)) => variable.to_string_lossy().into_owned(),
        _ => arg
            .get_long()
            .map_or_else(|| id.to_owned(), |long| format!("--{long}")),
    }
}

/// A missing --url, when an input FILE looks like the URL meant: says so, rather than leaving
/// the URL to be read as a file that does not exist.
fn url_given_as_file(error: clap::Error) -> clap::Error {
    if error.kind() != clap::error::ErrorKind::MissingRequiredArgument {
        return error;
    }
    // The same command line again, with --url optional, to see what stood in its place.
    let relaxed = Cli::command()
        .mut_arg("url", |url| {
            url.required_unless_present(clap::builder::Resettable::<clap::Id>::Reset)
        })
        .try_get_matches();
    let Ok(matches) = relaxed else {
        return error;
    };
    let inputs = matches.get_many::<PathBuf>("inputs").into_iter().flatten();
    let Some(url) = inputs
        .filter_map(|input| input.to_str())
        .find(|input| input.starts_with("http://") || input.starts_with("https://"))
    else {
        return error;
    };
    Cli::command().error(
        clap::error::ErrorKind::MissingRequiredArgument,
        format!("no --url given; did you mean -u {url}?"),
    )
}

/// Examples, as --help and the man page give them: what each does, and the command.
pub const EXAMPLES: [(&str, &str); 4] = [
    (
        "Score a file in batches of 32, results in input order:",
        "abatch -u http://127.0.0.1:8080/predict -b 32 --ordered records.jsonl > results.jsonl",
    ),
    (
        "Keep going past failures, with a null line for each failed record and the failed \
         records kept for a retry:",
        "abatch -u http://host/predict --on-error null --errors failed.jsonl big.jsonl > out.jsonl",
    ),
    (
        "Retry exactly the records that failed:",
        "jq -c .record failed.jsonl | abatch -u http://host/predict >> retried.jsonl",
    ),
    (
        "Continue an interrupted run where it stopped:",
        "abatch -u http://host/predict --ordered --resume -o out.jsonl big.jsonl",
    ),
];

/// What --help shows after the options.
fn after_long_help() -> String {
    let mut text = String::from(
        "Every record read ends up with a result in the output or, with its error, in the \
         --errors file (stderr by default); a summary line on stderr says how many went where.\n\n\
         Exit status:\n",
    );
    for exit in Exit::DOCUMENTED {
        text.push_str(&format!("  {:<4} {}\n", exit as u8, exit.meaning()));
    }
    text.push_str("\nExamples:\n");
    for (what, command) in EXAMPLES {
        text.push_str(&format!("  # {what}\n  {command}\n"));
    }
    text
}

/// The CA certificates of --cacert, read with the command line, so that a file that cannot
/// be read is a usage error like any other, before anything is read or sent.
#[derive(Clone)]
pub struct CaCerts {
    pub certs: Vec<reqwest::Certificate>,
}

impl fmt::Debug for CaCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} CA certificates", self.certs.len())
    }
}

/// Reads and parses the --cacert file.
#[derive(Clone)]
struct CaCertParser;

impl clap::builder::TypedValueParser for CaCertParser {
    type Value = CaCerts;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<CaCerts, clap::Error> {
        let path = Path::new(value);
        let refuse = |message: String| {
            let kind = clap::error::ErrorKind::InvalidValue;
            cmd.clone().error(kind, message)
        };
        let pem = std::fs::read(path).map_err(|e| refuse(unreadable("--cacert ", path, &e)))?;
        let ders = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refuse(format!("--cacert {}: {}", path.display(), pem_problem(&e))))?;
        if ders.is_empty() {
            return Err(refuse(format!(
                "--cacert {} holds no PEM certificate",
                path.display()
            )));
        }
        // Checked here, because the HTTP client would only say "BadEncoding" when it starts.
        let malformed = |number: usize| {
            refuse(format!(
                "--cacert {}: certificate {number} of {} is malformed",
                path.display(),
                ders.len()
            ))
        };
        let mut certs = Vec::with_capacity(ders.len());
        for (number, der) in (1..).zip(&ders) {
            webpki::anchor_from_trusted_cert(der).map_err(|_| malformed(number))?;
            certs.push(reqwest::Certificate::from_der(der).map_err(|_| malformed(number))?);
        }
        Ok(CaCerts { certs })
    }
}

/// What is wrong with a PEM file, in words (some of rustls' messages show bytes as numbers).
fn pem_problem(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { end_marker } => format!(
            "a section has no closing line (-----END {}-----)",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { .. } => "a section's opening line is malformed".into(),
        Error::Base64Decode(_) => "a section is not valid base64".into(),
        other => other.to_string(),
    }
}

/// The message for a file named by a flag that cannot be read: the same for every such flag.
fn unreadable(flag: &str, path: &Path, error: &std::io::Error) -> String {
    format!("cannot read {flag}{}: {error}", path.display())
}

/// A request header whose value is kept out of every message.
#[derive(Clone)]
pub struct Header {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: (redacted)", self.name)
    }
}

/// An http or https URL; without a scheme, http, as curl and xh take it. (A URL parser alone
/// would read "localhost:8080/predict" as the scheme "localhost".)
/// One or more URLs, as one -u (or ABATCH_URL) gives them: separated by commas or whitespace.
#[derive(Clone, Debug)]
pub struct Urls(pub Vec<Url>);

fn parse_urls(text: &str) -> Result<Urls, String> {
    // Whitespace always separates; a comma only before a scheme, since a URL may hold
    // commas of its own (`?fields=a,b`).
    let mut parts: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let mut pieces = word.split(',').filter(|piece| !piece.is_empty());
        let Some(first) = pieces.next() else { continue };
        parts.push(first.to_owned());
        for piece in pieces {
            match parts.last_mut() {
                Some(last) if !piece.starts_with("http://") && !piece.starts_with("https://") => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => parts.push(piece.to_owned()),
            }
        }
    }
    let urls: Vec<Url> = parts
        .iter()
        .map(|part| match parts.len() {
            1 => parse_url(part),
            // A stray space in one URL must not make two of it.
            _ if !part.contains("://") => Err(format!(
                "{part}: in a list of URLs each one needs its scheme (http:// or https://)"
            )),
            _ => parse_url(part).map_err(|e| format!("{part}: {e}")),
        })
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err("no URL given".into());
    }
    Ok(Urls(urls))
}

fn parse_url(text: &str) -> Result<Url, String> {
    let url = if text.contains("://") {
        Url::parse(text)
    } else {
        Url::parse(&format!("http://{text}"))
    }
    .map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http or https, not '{}'",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(url)
}

// The bounds of the numeric flags, as their help gives them. Each is far past any sensible
// setting; a value beyond it is a mistake (a typo, a unit left out), and near the limits of
// the machine's integers and clocks it would be misread: wrapped, or clamped in silence.

/// The largest batch, in records.
const MAX_BATCH_SIZE: u64 = 1_000_000;
/// The most requests in flight at once.
const MAX_CONCURRENCY: u64 = 10_000;
/// The most tokens per minute.
const MAX_TPM: u64 = 1_000_000_000_000;
/// `-c auto`.
const DEFAULT_AUTO: Bounds = Bounds { min: 1, max: 64 };
/// The most extra attempts for one batch.
const MAX_RETRIES: u64 = 1000;
/// The largest size a size flag takes (4GiB).
const MAX_BYTES: u64 = 4 << 30;
/// The longest duration a duration flag takes.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

fn parse_batch_size(text: &str) -> Result<NonZeroUsize, String> {
    count(text, MAX_BATCH_SIZE)
}

/// "8", "auto" (1..64), "auto:4..32".
fn parse_concurrency(text: &str) -> Result<Concurrency, String> {
    let Some(auto) = text.trim().strip_prefix("auto") else {
        return count(text, MAX_CONCURRENCY).map(Concurrency::Fixed);
    };
    let expected = || "expected a number, auto, or auto:MIN..MAX such as auto:2..32".to_string();
    let bounds = match auto.strip_prefix(':') {
        None if auto.is_empty() => DEFAULT_AUTO,
        None => return Err(expected()),
        Some(range) => {
            let (min, max) = range.split_once("..").ok_or_else(expected)?;
            let (min, max) = (count(min, MAX_CONCURRENCY)?, count(max, MAX_CONCURRENCY)?);
            if min > max {
                return Err(format!("auto:{min}..{max}: the least is above the most"));
            }
            Bounds {
                min: min.get(),
                max: max.get(),
            }
        }
    };
    Ok(Concurrency::Auto(bounds))
}

fn parse_tpm(text: &str) -> Result<NonZeroU64, String> {
    let n = whole(text, 1, MAX_TPM)?;
    NonZeroU64::new(n).ok_or_else(|| "must be at least 1".to_string())
}

/// "50" records, or "5%".
fn parse_error_budget(text: &str) -> Result<ErrorBudget, String> {
    let Some(percent) = text.trim().strip_suffix('%') else {
        return whole(text, 0, u64::MAX).map(ErrorBudget::Records);
    };
    match percent.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(ErrorBudget::Percent(p)),
        _ => Err("expected a number of records, or a percentage from 0% to 100%".into()),
    }
}

fn parse_retries(text: &str) -> Result<u32, String> {
    let retries = whole(text, 0, MAX_RETRIES)?;
    u32::try_from(retries).map_err(|_| format!("must be at most {MAX_RETRIES}"))
}

/// The most shards an input may be cut into.
pub const MOST_SHARDS: u64 = 1_000_000;

/// Share K of N of the input, K from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Share `index` of `count`, unless `index` is past the last.
    pub fn new(index: u64, count: u64) -> Result<Shard, String> {
        if count == 0 || count > MOST_SHARDS {
            return Err(format!(
                "the number of shards must be from 1 to {MOST_SHARDS}"
            ));
        }
        if index >= count {
            return Err(format!(
                "shard {index} does not exist among {count} (they are numbered from 0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    let (index, count) = text
        .split_once('/')
        .ok_or("expected K/N, such as 0/4 (shard K of N, K from 0)")?;
    let index = whole(index, 0, MOST_SHARDS - 1).map_err(|e| format!("K {e}"))?;
    let count = whole(count, 1, MOST_SHARDS).map_err(|e| format!("N {e}"))?;
    Shard::new(index, count)
}

fn parse_shard_count(text: &str) -> Result<u64, String> {
    whole(text, 1, MOST_SHARDS)
}

/// A count from 1 to `max`.
fn count(text: &str, max: u64) -> Result<NonZeroUsize, String> {
    let n = whole(text, 1, max)?;
    usize::try_from(n)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| format!("must be at most {max}"))
}

/// A whole number from `min` to `max`, with a message naming the bound it passes, however
/// many digits it has.
fn whole(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let text = text.trim();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let below = || format!("must be at least {min}");
    let above = || format!("must be at most {max}");
    if let Some(negative) = text.strip_prefix('-') {
        return Err(if digits(negative) {
            below()
        } else {
            format!("expected a whole number from {min} to {max}")
        });
    }
    if !digits(text) {
        return Err(format!("expected a whole number from {min} to {max}"));
    }
    let n: u64 = text.parse().map_err(|_| above())?;
    match n {
        n if n < min => Err(below()),
        n if n > max => Err(above()),
        n => Ok(n),
    }
}

/// Whether `text` is a negative number (with or without a unit), rather than a flag that took
/// the place of a value.
fn negative(text: &str) -> bool {
    let mut chars = text.trim().chars();
    chars.next() == Some('-') && chars.next().is_some_and(|c| c.is_ascii_digit())
}

/// A delay, which may be zero (send whatever has arrived without waiting).
fn parse_delay(text: &str) -> Result<Duration, String> {
    let too_long = || {
        format!(
            "must be at most {}",
            humantime::format_duration(MAX_DURATION)
        )
    };
    if negative(text) {
        return Err("must not be negative".into());
    }
    let delay = humantime::parse_duration(text.trim()).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => too_long(),
        e => format!("{e} (expected a duration such as 100ms, 2s or 1m)"),
    })?;
    if delay > MAX_DURATION {
        return Err(too_long());
    }
    Ok(delay)
}

/// A time limit, which must leave some time.
fn parse_limit(text: &str) -> Result<Duration, String> {
    let limit = parse_delay(text)?;
    if limit.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(limit)
}

fn parse_bytes(text: &str) -> Result<NonZeroUsize, String> {
    if negative(text) {
        return Err("must be at least 1 byte".into());
    }
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|_| "expected a size such as 65536, 512KiB or 4MiB".to_string())?;
    if size.as_u64() > MAX_BYTES {
        return Err("must be at most 4GiB".into());
    }
    usize::try_from(size.as_u64())
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| "must be at least 1 byte".to_string())
}

/// "20/s", "600/m" (also "/sec", "/second", "/min", "/minute").
fn parse_rate(text: &str) -> Result<Rate, String> {
    let expected = || "expected requests per second or minute, such as 20/s or 600/m".to_string();
    let (count, unit) = text.trim().split_once('/').ok_or_else(expected)?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        _ => return Err(expected()),
    };
    let count: u32 = count.trim().parse().map_err(|_| expected())?;
    let count =
        NonZeroU32::new(count).ok_or_else(|| "must allow at least 1 request".to_string())?;
    Ok(Rate { count, per })
}

/// Parses an on/off flag's value, which only its variable gives (the flag itself stands for
/// true): true/false, 1/0, yes/no or on/off, in any case; empty is false. Anything else is a
/// usage error naming the variable. clap's own parsers take any unknown word as true
/// (ABATCH_INSECURE=flase turned checks off) or name only the flag, which was not typed.
#[derive(Clone)]
struct Switch;

const SWITCH_WORDS: &str = "true or false, 1 or 0, yes or no, on or off";

impl clap::builder::TypedValueParser for Switch {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<bool, clap::Error> {
        switch(value).ok_or_else(|| invalid_variable(cmd, arg, value, SWITCH_WORDS))
    }
}

/// The value of an on/off word, or None when it is not one.
fn switch(value: &std::ffi::OsStr) -> Option<bool> {
    let word = value.to_str()?.trim().to_ascii_lowercase();
    match word.as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Parses ABATCH_VERBOSE: a level (2 is -vv) or an on/off word (on is -v).
#[derive(Clone)]
struct Verbosity;

impl clap::builder::TypedValueParser for Verbosity {
    type Value = u8;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<u8, clap::Error> {
        let level = value.to_str().and_then(|v| v.trim().parse().ok());
        level
            .or_else(|| switch(value).map(u8::from))
            .ok_or_else(|| {
                invalid_variable(cmd, arg, value, "a level such as 1 or 2, or on or off")
            })
    }
}

/// The usage error for a variable's `value` that is not one of `expected`, naming the variable
/// and its flag.
fn invalid_variable(
    cmd: &clap::Command,
    arg: Option<&clap::Arg>,
    value: &std::ffi::OsStr,
    expected: &str,
) -> clap::Error {
    let variable = arg
        .and_then(clap::Arg::get_env)
        .map_or_else(|| "the variable".into(), |v| v.to_string_lossy());
    let flag = arg
        .and_then(clap::Arg::get_long)
        .map_or_else(String::new, |long| format!(" (--{long})"));
    cmd.clone().error(
        clap::error::ErrorKind::InvalidValue,
        format!(
            "invalid value '{}' for {variable}{flag}: expected {expected}",
            value.to_string_lossy()
        ),
    )
}

/// The headers of one `-H`: one header, or every line of an @FILE.
#[derive(Clone, Debug)]
pub struct Headers(Vec<Header>);

/// Parses `-H` values. Unlike a plain function parser, its errors leave the value out: clap
/// would otherwise quote the whole argument, secret and all.
#[derive(Clone)]
struct HeaderParser;

impl clap::builder::TypedValueParser for HeaderParser {
    type Value = Headers;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Headers, clap::Error> {
        let invalid = |problem: String| {
            let mut cmd = cmd.clone();
            cmd.error(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid --header: {problem}"),
            )
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid("not valid UTF-8".into()))?;
        match text.strip_prefix('@').map(Path::new) {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    let message = unreadable("-H @", path, &e);
                    cmd.clone()
                        .error(clap::error::ErrorKind::InvalidValue, message)
                })?;
                headers_in(&text, path).map_err(invalid)
            }
            None => parse_header(text)
                .map(|h| Headers(vec![h]))
                .map_err(invalid),
        }
    }
}

/// The headers in `text`, the content of the file at `path`, one per line; blank lines and
/// lines starting with '#' are skipped.
fn headers_in(text: &str, path: &Path) -> Result<Headers, String> {
    let mut headers = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let header = parse_header(line)
            .map_err(|problem| format!("{}:{}: {problem}", path.display(), number + 1))?;
        headers.push(header);
    }
    Ok(Headers(headers))
}

fn parse_header(text: &str) -> Result<Header, String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err("expected 'Name: value', with a colon".into());
    };
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("'{}' is not a valid header name", name.trim()))?;
    let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
        format!("the value of header '{name}' has characters a header cannot carry")
    })?;
    value.set_sensitive(true);
    Ok(Header { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn header_errors_never_show_the_value() {
        let err = parse_header("Authorization: Bearer s3cret\u{7f}").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        let header = parse_header("Authorization:  Bearer s3cret ").unwrap();
        assert_eq!(header.value.to_str().unwrap(), "Bearer s3cret");
        assert!(!format!("{header:?}").contains("s3cret"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn header_files_name_the_line_but_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("headers");
        std::fs::write(
            &path,
            "# secrets\nAuthorization: Bearer s3cret\n\nX-Key: k\n",
        )
        .unwrap();
        let read = |path: &Path| headers_in(&std::fs::read_to_string(path).unwrap(), path);
        let headers = read(&path).unwrap();
        let names: Vec<_> = headers.0.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["authorization", "x-key"]);
        std::fs::write(&path, "X-Ok: 1\nX-Bad: s3cret\u{7f}\n").unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            err.ends_with(
                "headers:2: the value of header 'x-bad' has characters a header cannot carry"
            ),
            "{err}"
        );
        assert!(!err.contains("s3cret"));
    }

    #[test]
    fn rates_per_second_and_minute() {
        let rate = parse_rate("20/s").unwrap();
        assert_eq!((rate.count.get(), rate.per), (20, Duration::from_secs(1)));
        assert_eq!(
            parse_rate(" 600 / min ").unwrap().per,
            Duration::from_secs(60)
        );
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("20").is_err());
        assert!(parse_rate("20/h").is_err());
        assert!(parse_rate("x/s").is_err());
    }

    #[test]
    fn urls_need_http_and_a_host() {
        assert!(parse_url("http://127.0.0.1:8080/predict").is_ok());
        assert!(parse_url("https://example.com").is_ok());
        assert!(parse_url("ftp://example.com").is_err());
        assert_eq!(
            parse_url("localhost:8080/predict").unwrap().as_str(),
            "http://localhost:8080/predict"
        );
        assert_eq!(
            parse_url("127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080/"
        );
        assert!(parse_url("mailto://someone").is_err());
        assert!(parse_url("http://").is_err());
    }

    #[test]
    fn several_urls_are_listed_with_commas_or_spaces_each_with_its_scheme() {
        let urls = |text| parse_urls(text).map(|u| u.0.len());
        assert_eq!(urls("http://a/p, http://b/p http://c/p"), Ok(3));
        assert_eq!(urls("localhost:8080/p"), Ok(1));
        assert!(
            urls("exa mple.com/predict")
                .unwrap_err()
                .contains("needs its scheme")
        );
        assert!(urls(" , ").is_err());
        // A comma of the URL's own.
        assert_eq!(urls("http://h/score?fields=a,b"), Ok(1));
        assert_eq!(urls("http://h/s?f=a,b,https://g/s"), Ok(2));
    }

    #[test]
    fn sizes_durations_and_counts() {
        assert_eq!(parse_bytes("4MiB").unwrap().get(), 4 << 20);
        assert_eq!(parse_bytes("100").unwrap().get(), 100);
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("-1").is_err());
        assert_eq!(parse_delay("0ms").unwrap(), Duration::ZERO);
        assert_eq!(parse_delay("7days").unwrap(), MAX_DURATION);
        assert_eq!(parse_delay("8days").unwrap_err(), "must be at most 7days");
        assert_eq!(
            parse_delay("500000000000years").unwrap_err(),
            "must be at most 7days"
        );
        assert_eq!(
            parse_delay("50000000000000000000000years").unwrap_err(),
            "must be at most 7days"
        );
        assert!(parse_limit("0s").is_err());
        assert!(parse_delay("-1s").is_err());
        assert_eq!(parse_bytes("4GiB").unwrap().get() as u64, MAX_BYTES);
        assert_eq!(
            parse_bytes("18446744073709551614").unwrap_err(),
            "must be at most 4GiB"
        );
        assert_eq!(parse_batch_size("8").unwrap().get(), 8);
        assert_eq!(parse_batch_size("0").unwrap_err(), "must be at least 1");
        assert_eq!(parse_batch_size("-3").unwrap_err(), "must be at least 1");
        assert_eq!(parse_batch_size("1000000").unwrap().get(), 1_000_000);
        assert_eq!(
            parse_batch_size("1000001").unwrap_err(),
            "must be at most 1000000"
        );
        assert_eq!(
            parse_concurrency("99999999999999999999999").unwrap_err(),
            "must be at most 10000"
        );
        assert!(parse_concurrency("4x").is_err());
        assert_eq!(
            parse_concurrency("auto"),
            Ok(Concurrency::Auto(Bounds { min: 1, max: 64 }))
        );
        assert_eq!(
            parse_concurrency("auto:2..32"),
            Ok(Concurrency::Auto(Bounds { min: 2, max: 32 }))
        );
        assert_eq!(
            parse_concurrency("auto:5..5"),
            Ok(Concurrency::Auto(Bounds { min: 5, max: 5 }))
        );
        assert!(parse_concurrency("auto:9..2").is_err());
        assert!(parse_concurrency("auto:0..2").is_err());
        assert!(parse_concurrency("auto:1..99999").is_err());
        assert!(parse_concurrency("auto:").is_err());
        assert!(parse_concurrency("automatic").is_err());
        assert_eq!(parse_error_budget("0"), Ok(ErrorBudget::Records(0)));
        assert_eq!(parse_error_budget("25"), Ok(ErrorBudget::Records(25)));
        assert_eq!(parse_error_budget("2.5%"), Ok(ErrorBudget::Percent(2.5)));
        assert!(parse_error_budget("101%").is_err());
        assert!(parse_error_budget("-1").is_err());
        assert!(parse_error_budget("x%").is_err());
        assert!(parse_tpm("0").is_err());
        assert_eq!(parse_retries("0").unwrap(), 0);
        assert_eq!(parse_retries("1001").unwrap_err(), "must be at most 1000");
    }
}
