//! Writes results as JSON lines, and records without a result as dead letters, on a thread of
//! its own: each result compacted onto one line, lines always whole, and both sinks flushed
//! whenever the writer has caught up.
//!
//! A thread of its own, because a write that blocks (a slow reader, a full pipe) must not hold
//! up the requests in flight, and a pipe that stops the writer must stop the run quietly.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use crate::input::Record;

/// One batch's results, in record order.
pub type Results = Vec<Box<RawValue>>;

/// What the writer is asked to write.
pub enum Lines {
    /// One line per result.
    Results(Results),
    /// A `null` line for each of this many failed records (--on-error null).
    Nulls(usize),
    /// Records without a result, to the dead-letter sink.
    DeadLetters(Vec<DeadLetter>),
}

/// A record that has no result, and why.
pub struct DeadLetter {
    pub record: Record,
    pub error: Arc<str>,
    /// The HTTP status of the last attempt, if the server answered.
    pub status: Option<u16>,
    /// Attempts made; 0 when the record was never sent.
    pub attempts: u32,
}

/// A dead letter as written: `{"record": <as read>, "file": ..., "line": N, "error": ...,
/// "status": 503 or null, "attempts": N}`.
#[derive(Serialize)]
struct Letter<'a> {
    record: &'a RawValue,
    file: &'a str,
    line: u64,
    error: &'a str,
    status: Option<u16>,
    attempts: u32,
}

/// Messages that may wait for the writer before the pipe waits too.
const QUEUED: usize = 16;
const WRITE_BUFFER: usize = 64 * 1024;

pub struct Output {
    lines: mpsc::Sender<Lines>,
    done: oneshot::Receiver<Result<(), Failed>>,
    name: String,
    /// The dead-letter file, for messages.
    errors_name: String,
}

/// Which sink failed, and how.
enum Failed {
    Results(io::Error),
    Errors(io::Error),
}

/// Whether anyone still reads what is written.
#[derive(Debug, PartialEq, Eq)]
pub enum Reader {
    Listening,
    /// The reader closed the pipe (as `head` does): a reason to stop quietly, not an error.
    Gone,
}

/// Where results and dead letters go.
pub struct Sinks<'a> {
    /// Results: stdout when None.
    pub output: Option<&'a Path>,
    /// Dead letters: stderr when None.
    pub errors: Option<&'a Path>,
    /// Append to both files instead of creating them anew.
    pub append: bool,
}

impl Sinks<'_> {
    /// Where dead letters go, for messages: "in FILE" or "on stderr".
    pub fn errors_place(&self) -> String {
        self.errors.map_or_else(
            || "on stderr".to_string(),
            |p| format!("in {}", p.display()),
        )
    }
}

impl Output {
    /// Opens both sinks now, before anything is sent: a file is created (or truncated, or
    /// opened for appending).
    pub fn open(sinks: &Sinks) -> anyhow::Result<Output> {
        let open = |path: &Path| {
            let mut options = OpenOptions::new();
            options.write(true).create(true);
            if sinks.append {
                options.append(true);
            } else {
                options.truncate(true);
            }
            options
                .open(path)
                .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))
        };
        let output = sinks.output.map(open).transpose()?;
        let errors = sinks.errors.map(open).transpose()?;
        let name = sinks.output.map_or_else(
            || "standard output".to_string(),
            |p| p.display().to_string(),
        );
        let (lines, queue) = mpsc::channel(QUEUED);
        let (report, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("abatch-output".into())
            .spawn(move || {
                let results: Box<dyn Write> = match output {
                    Some(file) => Box::new(file),
                    None => Box::new(io::stdout().lock()),
                };
                let errors: Box<dyn Write> = match errors {
                    Some(file) => Box::new(file),
                    // Unlocked, and around the progress display: the rest of abatch
                    // writes there too.
                    None => Box::new(crate::progress::Stderr),
                };
                let _ = report.send(write_lines(results, errors, queue));
            })
            .map_err(|e| anyhow!("cannot start the output writer: {e}"))?;
        Ok(Output {
            lines,
            done,
            name,
            errors_name: sinks
                .errors
                .map_or_else(|| "standard error".to_string(), |p| p.display().to_string()),
        })
    }

    /// Queues lines for writing; waits while the writer is behind.
    pub async fn write(&self, lines: Lines) -> Reader {
        match self.lines.send(lines).await {
            Ok(()) => Reader::Listening,
            // The writer stopped: finish() tells why.
            Err(_) => Reader::Gone,
        }
    }

    /// Waits until everything queued is written and flushed.
    pub async fn finish(self) -> anyhow::Result<Reader> {
        drop(self.lines);
        match self.done.await {
            Ok(Ok(())) => Ok(Reader::Listening),
            Ok(Err(Failed::Results(e))) if e.kind() == io::ErrorKind::BrokenPipe => {
                Ok(Reader::Gone)
            }
            Ok(Err(Failed::Results(e))) => Err(anyhow!("cannot write to {}: {e}", self.name)),
            Ok(Err(Failed::Errors(e))) => Err(anyhow!("cannot write to {}: {e}", self.errors_name)),
            Err(_) => Err(anyhow!("the writer of {} stopped unexpectedly", self.name)),
        }
    }
}

/// Prepares `path` for --resume: drops a trailing partial line (the end of a run that was
/// killed) and returns how many complete lines it holds. A missing file holds none.
pub fn complete_lines(path: &Path) -> anyhow::Result<u64> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(anyhow!("cannot open {} to resume: {e}", path.display())),
    };
    let fail = |e: io::Error| anyhow!("cannot read {} to resume: {e}", path.display());
    let mut reader = BufReader::with_capacity(WRITE_BUFFER, &file);
    let (mut lines, mut complete_bytes, mut read) = (0u64, 0u64, 0u64);
    loop {
        let buffer = reader.fill_buf().map_err(fail)?;
        if buffer.is_empty() {
            break;
        }
        let len = buffer.len();
        for newline in memchr::memchr_iter(b'\n', buffer) {
            lines += 1;
            complete_bytes = read + newline as u64 + 1;
        }
        read += len as u64;
        reader.consume(len);
    }
    if complete_bytes < read {
        drop(reader);
        file.set_len(complete_bytes).map_err(fail)?;
        (&file).seek(io::SeekFrom::End(0)).map_err(fail)?;
    }
    Ok(lines)
}

fn write_lines(
    results: impl Write,
    errors: impl Write,
    mut queue: mpsc::Receiver<Lines>,
) -> Result<(), Failed> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, results);
    let mut dead = BufWriter::new(errors);
    let mut text = Vec::new();
    while let Some(lines) = queue.blocking_recv() {
        text.clear();
        match lines {
            Lines::Results(results) => {
                for result in &results {
                    compact_into(result.get(), &mut text);
                    text.push(b'\n');
                }
                out.write_all(&text).map_err(Failed::Results)?;
            }
            Lines::Nulls(n) => {
                for _ in 0..n {
                    text.extend_from_slice(b"null\n");
                }
                out.write_all(&text).map_err(Failed::Results)?;
            }
            Lines::DeadLetters(letters) => {
                for letter in &letters {
                    let letter = Letter {
                        record: &letter.record.json,
                        file: &letter.record.at.source,
                        line: letter.record.at.line,
                        error: &letter.error,
                        status: letter.status,
                        attempts: letter.attempts,
                    };
                    serde_json::to_writer(&mut text, &letter)
                        .map_err(|e| Failed::Errors(e.into()))?;
                    text.push(b'\n');
                }
                dead.write_all(&text).map_err(Failed::Errors)?;
            }
        }
        if queue.is_empty() {
            out.flush().map_err(Failed::Results)?;
            dead.flush().map_err(Failed::Errors)?;
        }
    }
    out.flush().map_err(Failed::Results)?;
    dead.flush().map_err(Failed::Errors)
}

/// Appends `json` (valid JSON) without the whitespace between its tokens, so that a result
/// pretty-printed by a server still fits on one line. Strings and numbers keep their text.
fn compact_into(json: &str, out: &mut Vec<u8>) {
    let bytes = json.as_bytes();
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => at += 1,
            b'"' => {
                let end = string_end(bytes, at);
                out.extend_from_slice(&bytes[at..end]);
                at = end;
            }
            _ => {
                out.push(byte);
                at += 1;
            }
        }
    }
}

/// Where the string that opens at `start` ends (just past its closing quote), skipping
/// escaped quotes a whole run at a time.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while let Some(found) = bytes
        .get(at..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        let special = at + found;
        if bytes[special] == b'"' {
            return special + 1;
        }
        at = special + 2;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(json: &str) -> String {
        let mut out = Vec::new();
        compact_into(json, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn resume_counts_complete_lines_and_drops_a_partial_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        assert_eq!(
            complete_lines(&path).unwrap(),
            0,
            "a missing file holds none"
        );
        std::fs::write(&path, "1\n2\n{\"cut").unwrap();
        assert_eq!(complete_lines(&path).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n2\n");
        std::fs::write(&path, "").unwrap();
        assert_eq!(complete_lines(&path).unwrap(), 0);
        let big: String = (0..100_000).map(|n| format!("{n}\n")).collect();
        std::fs::write(&path, &big).unwrap();
        assert_eq!(complete_lines(&path).unwrap(), 100_000);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), big);
    }

    #[test]
    fn removes_whitespace_between_tokens_only() {
        assert_eq!(
            compact("{\n  \"a b\" : [ 1.0e+300 , -0.0 ],\r\n\t\"c\": \"x \\\" y\\\\\" }"),
            "{\"a b\":[1.0e+300,-0.0],\"c\":\"x \\\" y\\\\\"}"
        );
        assert_eq!(compact("\"\\\\\" "), "\"\\\\\"");
        assert_eq!(
            compact("12345678901234567890123"),
            "12345678901234567890123"
        );
        assert_eq!(compact(r#"[ "a\\" , "\"b\" c" ]"#), r#"["a\\","\"b\" c"]"#);
        // Never past the end, even on a truncated escape.
        assert_eq!(compact(r#""abc\"#), r#""abc\"#);
    }
}
