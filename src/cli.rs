//! The command line: every flag, its help text, and the parsers that turn each value into a
//! type that cannot hold a bad setting, so mistakes stop as usage errors before anything runs.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};

/// Send newline-delimited JSON records to an HTTP inference endpoint in batches, and write one
/// result per record.
///
/// Records are read from the FILEs in turn (or stdin), grouped into batches of up to
/// --batch-size records, and each batch is POSTed as a JSON array. A batch that is not yet full
/// is sent --batch-timeout after its first record arrived, and at once when the input ends. The
/// endpoint must answer with a JSON array holding one result per record, in the same order;
/// each result is written as one line of JSON.
#[derive(Parser, Debug)]
#[command(name = "abatch", version)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct Cli {
    /// Endpoint to POST each batch to (http or https)
    #[arg(short, long, env = "ABATCH_URL", hide_env_values = true, value_name = "URL", value_parser = parse_url)]
    pub url: Url,

    /// Most records in one batch
    #[arg(short, long, value_name = "N", default_value = "32", value_parser = parse_count)]
    pub batch_size: NonZeroUsize,

    /// Send a batch that is not full this long after its first record arrived (e.g. 100ms, 2s, 1m)
    #[arg(short = 't', long, value_name = "DURATION", default_value = "100ms", value_parser = parse_delay)]
    pub batch_timeout: Duration,

    /// Most batches in flight at once; reading pauses while that many are outstanding
    #[arg(short, long, value_name = "N", default_value = "4", value_parser = parse_count)]
    pub concurrency: NonZeroUsize,

    /// Write results in input order (default: as each batch completes)
    #[arg(long)]
    pub ordered: bool,

    /// Also send a batch before its body (the JSON array) would grow past this size (e.g. 4MiB)
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_batch_bytes: Option<NonZeroUsize>,

    /// Give up on a request that has not been fully answered after this long
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_limit)]
    pub timeout: Duration,

    /// Extra request header, 'Name: value' (repeatable); values never appear in messages
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = HeaderParser)]
    pub headers: Vec<Header>,

    /// Write results to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Input files of newline-delimited JSON; '-' or none means stdin
    #[arg(value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
}

impl Cli {
    /// Parses the command line and checks what no single flag can: that the output is not
    /// also an input, which creating it would wipe before it is read.
    pub fn parse_checked() -> Result<Cli, clap::Error> {
        let cli = Cli::try_parse()?;
        if let Some(output) = cli
            .output
            .as_deref()
            .and_then(|o| std::fs::canonicalize(o).ok())
        {
            let clash = cli
                .inputs
                .iter()
                .find(|input| std::fs::canonicalize(input).is_ok_and(|i| i == output));
            if let Some(input) = clash {
                let message = format!(
                    "--output {} is also an input; it would be emptied before it is read",
                    input.display()
                );
                return Err(Cli::command().error(clap::error::ErrorKind::ArgumentConflict, message));
            }
        }
        Ok(cli)
    }
}

const AFTER_LONG_HELP: &str = "\
Exit status:
  0  every record has a result (or the reader of the output went away)
  1  a batch failed, an input line is not JSON, or a file could not be read or written
  2  usage error

Examples:
  cat records.jsonl | abatch -u http://127.0.0.1:8080/predict -b 32 -t 100ms --ordered
  abatch -u http://host/predict -b 64 -c 8 part1.jsonl part2.jsonl -o out.jsonl
  tail -f events.jsonl | abatch -u http://host/predict -t 1s";

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

fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| e.to_string())?;
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

fn parse_count(text: &str) -> Result<NonZeroUsize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| "expected a whole number of at least 1".to_string())?;
    NonZeroUsize::new(n).ok_or_else(|| "must be at least 1".to_string())
}

/// Longer than any run; a longer duration means the same and could overflow a clock.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A delay, which may be zero (send whatever has arrived without waiting).
fn parse_delay(text: &str) -> Result<Duration, String> {
    let delay = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e} (expected a duration such as 100ms, 2s or 1m)"))?;
    Ok(delay.min(FOREVER))
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
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|_| "expected a size such as 65536, 512KiB or 4MiB".to_string())?;
    usize::try_from(size.as_u64())
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| "must be at least 1 byte".to_string())
}

/// Parses `-H` values. Unlike a plain function parser, its errors leave the value out: clap
/// would otherwise quote the whole argument, secret and all.
#[derive(Clone)]
struct HeaderParser;

impl clap::builder::TypedValueParser for HeaderParser {
    type Value = Header;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Header, clap::Error> {
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                "a --header is not valid UTF-8\n",
            )
            .with_cmd(cmd)
        })?;
        parse_header(text).map_err(|problem| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid --header: {problem}\n"),
            )
            .with_cmd(cmd)
        })
    }
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
    fn urls_need_http_and_a_host() {
        assert!(parse_url("http://127.0.0.1:8080/predict").is_ok());
        assert!(parse_url("https://example.com").is_ok());
        assert!(parse_url("ftp://example.com").is_err());
        assert!(parse_url("example.com/predict").is_err());
        assert!(parse_url("http://").is_err());
    }

    #[test]
    fn sizes_durations_and_counts() {
        assert_eq!(parse_bytes("4MiB").unwrap().get(), 4 << 20);
        assert_eq!(parse_bytes("100").unwrap().get(), 100);
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("-1").is_err());
        assert_eq!(parse_delay("0ms").unwrap(), Duration::ZERO);
        assert_eq!(parse_delay("500000000000years").unwrap(), FOREVER);
        assert!(parse_limit("0s").is_err());
        assert!(parse_delay("-1s").is_err());
        assert_eq!(parse_count("8").unwrap().get(), 8);
        assert!(parse_count("0").is_err());
        assert!(parse_count("-3").is_err());
    }
}
