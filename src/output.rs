//! Writes results as JSON lines, and records without a result as dead letters, on a thread of
//! its own: each result compacted onto one line, lines always whole, and both sinks flushed
//! whenever the writer has caught up.
//!
//! A thread of its own, because a write that blocks (a slow reader, a full pipe) must not hold
//! up the requests in flight, and a pipe that stops the writer must stop the run quietly.
//!
//! The output file is created (or truncated) only when its first line is written, so a run
//! that writes nothing leaves an existing file as it was. A pipe is written in pieces of whole
//! lines no larger than PIPE_BUF, each once the pipe has room for it: such a write is all or
//! nothing, so when the run must stop while nobody reads the pipe, the writer knows exactly
//! which lines went out, and the others become dead letters.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::anyhow;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use crate::input::Record;

/// One batch's results, in record order.
pub type Results = Vec<Box<RawValue>>;

/// What the writer is asked to write.
pub enum Lines {
    /// One line per result, with the records they answer, for the dead letters should the
    /// lines be impossible to write.
    Results {
        records: Vec<Record>,
        results: Results,
        /// Attempts it took to get them.
        attempts: u32,
    },
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
/// "status": 503 or null, "attempts": N}`; for an input line that is not JSON, `"raw"` (the
/// line, as a string) stands where `"record"` would.
#[derive(Serialize)]
struct Letter<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a RawValue>,
    file: &'a str,
    line: u64,
    error: &'a str,
    status: Option<u16>,
    attempts: u32,
}

impl<'a> Letter<'a> {
    fn of(letter: &'a DeadLetter) -> Letter<'a> {
        let record = &letter.record;
        let json: &RawValue = &record.json;
        let (record_json, raw) = match record.invalid {
            None => (Some(json), None),
            Some(_) => (None, Some(json)),
        };
        Letter {
            record: record_json,
            raw,
            file: &record.at.source,
            line: record.at.line,
            error: &letter.error,
            status: letter.status,
            attempts: letter.attempts,
        }
    }
}

/// Messages that may wait for the writer before the pipe waits too.
const QUEUED: usize = 16;
const WRITE_BUFFER: usize = 64 * 1024;
/// The most a write to a pipe may hold and still be all or nothing (POSIX's PIPE_BUF).
const PIPE_BUF: usize = 4096;
/// How often a writer waiting for room in a pipe looks for the order to give up.
const GIVE_UP_CHECK: Duration = Duration::from_millis(50);
/// Dead letters shown on a terminal before the rest are only counted.
const SHOWN_ON_TERMINAL: u64 = 5;
/// Why results that were answered went to the dead letters instead.
const NOT_READ: &str =
    "answered, but not written: the run was stopped while the output was not being read";

pub struct Output {
    lines: mpsc::Sender<Lines>,
    done: oneshot::Receiver<Result<Written, Failed>>,
    give_up: Arc<AtomicBool>,
    name: String,
    /// The dead-letter file, for messages.
    errors_name: String,
}

/// What the writer did, beyond the lines it was given.
#[derive(Debug, Default)]
pub struct Written {
    /// Whether the output file was created (or opened to append to).
    pub opened: bool,
    /// Results that became dead letters because the writer gave up on the output.
    pub given_up: u64,
}

/// Which sink failed, and how.
enum Failed {
    Results(io::Error),
    Create(PathBuf, io::Error),
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
    /// Opens the dead-letter file now (emptied, or opened for appending), and checks that the
    /// output file could be written, without touching it yet.
    pub fn open(sinks: &Sinks) -> anyhow::Result<Output> {
        if let Some(path) = sinks.output {
            writable(path).map_err(|e| anyhow!("cannot create {}: {e}", path.display()))?;
        }
        let errors = sinks
            .errors
            .map(|path| {
                open_file(path, sinks.append)
                    .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))
            })
            .transpose()?;
        let name = sinks.output.map_or_else(
            || "standard output".to_string(),
            |p| p.display().to_string(),
        );
        let results = match sinks.output {
            Some(path) => Sink::Later {
                path: path.to_owned(),
                append: sinks.append,
            },
            None => Sink::open_stdout().map_err(|e| anyhow!("cannot write to {name}: {e}"))?,
        };
        let shown = match &errors {
            None if io::stderr().is_terminal() => Some(SHOWN_ON_TERMINAL),
            _ => None,
        };
        let give_up = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            results,
            errors: BufWriter::new(match errors {
                Some(file) => Box::new(file) as Box<dyn Write + Send>,
                // Unlocked, and around the progress display: the rest of abatch writes
                // there too.
                None => Box::new(crate::progress::Stderr),
            }),
            give_up: give_up.clone(),
            shown,
            hidden: 0,
            written: Written::default(),
        };
        let (lines, queue) = mpsc::channel(QUEUED);
        let (report, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("abatch-output".into())
            .spawn(move || {
                let _ = report.send(writer.run(queue));
            })
            .map_err(|e| anyhow!("cannot start the output writer: {e}"))?;
        Ok(Output {
            lines,
            done,
            give_up,
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

    /// From now on, results that cannot be written at once (nobody reads the pipe) become
    /// dead letters instead of waiting.
    pub fn give_up(&self) {
        self.give_up.store(true, Ordering::Relaxed);
    }

    /// Waits until everything queued is written and flushed.
    pub async fn finish(self) -> anyhow::Result<(Reader, Written)> {
        drop(self.lines);
        match self.done.await {
            Ok(Ok(written)) => Ok((Reader::Listening, written)),
            Ok(Err(Failed::Results(e))) if e.kind() == io::ErrorKind::BrokenPipe => {
                Ok((Reader::Gone, Written::default()))
            }
            Ok(Err(Failed::Results(e))) => Err(anyhow!("cannot write to {}: {e}", self.name)),
            Ok(Err(Failed::Create(path, e))) => {
                Err(anyhow!("cannot create {}: {e}", path.display()))
            }
            Ok(Err(Failed::Errors(e))) => Err(anyhow!("cannot write to {}: {e}", self.errors_name)),
            Err(_) => Err(anyhow!("the writer of {} stopped unexpectedly", self.name)),
        }
    }
}

/// Creates `path` (or empties it), or opens it to append to.
fn open_file(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    if append {
        options.append(true);
    } else {
        options.truncate(true);
    }
    options.open(path)
}

/// Whether `path` could be opened for writing, changing nothing: an existing file is opened
/// without truncating it; for a new one, its directory must exist.
pub fn writable(path: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let directory = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            if std::fs::metadata(directory)?.is_dir() {
                Ok(())
            } else {
                Err(io::Error::from(io::ErrorKind::NotADirectory))
            }
        }
        Err(e) => Err(e),
    }
}

/// Where results go.
enum Sink {
    /// A file not yet opened: it is, at the first line.
    Later { path: PathBuf, append: bool },
    /// A file, or stdout; `may_wait` when it is a pipe, a socket or a terminal, whose room is
    /// waited for in steps.
    Open { file: File, may_wait: bool },
}

impl Sink {
    /// Standard output, written through a descriptor of its own (no buffer but ours).
    fn open_stdout() -> io::Result<Sink> {
        let fd: OwnedFd = io::stdout().as_fd().try_clone_to_owned()?;
        let file = File::from(fd);
        let may_wait = !file.metadata().is_ok_and(|m| m.is_file());
        Ok(Sink::Open { file, may_wait })
    }
}

/// The writer thread's state.
struct Writer {
    results: Sink,
    errors: BufWriter<Box<dyn Write + Send>>,
    give_up: Arc<AtomicBool>,
    /// How many more dead letters may be shown (on a terminal), if limited.
    shown: Option<u64>,
    /// Dead letters not shown.
    hidden: u64,
    written: Written,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Lines>) -> Result<Written, Failed> {
        let mut text = Vec::new();
        let mut ends = Vec::new();
        while let Some(lines) = queue.blocking_recv() {
            text.clear();
            ends.clear();
            match lines {
                Lines::Results {
                    records,
                    results,
                    attempts,
                } => {
                    for result in &results {
                        compact_into(result.get(), &mut text);
                        text.push(b'\n');
                        ends.push(text.len());
                    }
                    let done = self.write_results(&text, &ends)?;
                    if done < results.len() {
                        self.written.given_up += (results.len() - done) as u64;
                        let letters: Vec<DeadLetter> = records
                            .into_iter()
                            .skip(done)
                            .map(|record| DeadLetter {
                                record,
                                error: Arc::from(NOT_READ),
                                status: None,
                                attempts,
                            })
                            .collect();
                        self.write_letters(&letters, &mut text)?;
                    }
                }
                Lines::Nulls(n) => {
                    for _ in 0..n {
                        text.extend_from_slice(b"null\n");
                        ends.push(text.len());
                    }
                    // Records that failed have their dead letters already.
                    self.write_results(&text, &ends)?;
                }
                Lines::DeadLetters(letters) => self.write_letters(&letters, &mut text)?,
            }
            if queue.is_empty() {
                self.errors.flush().map_err(Failed::Errors)?;
            }
        }
        if self.hidden > 0 {
            let more = self.hidden;
            let records = if more == 1 {
                "record has"
            } else {
                "records have"
            };
            let line = format!(
                "abatch: {more} more {records} no result (not shown here); --errors FILE keeps them all\n"
            );
            self.errors
                .write_all(line.as_bytes())
                .map_err(Failed::Errors)?;
        }
        self.errors.flush().map_err(Failed::Errors)?;
        Ok(self.written)
    }

    fn write_letters(&mut self, letters: &[DeadLetter], text: &mut Vec<u8>) -> Result<(), Failed> {
        text.clear();
        for letter in letters {
            if let Some(shown) = &mut self.shown {
                if *shown == 0 {
                    self.hidden += 1;
                    continue;
                }
                *shown -= 1;
            }
            serde_json::to_writer(&mut *text, &Letter::of(letter))
                .map_err(|e| Failed::Errors(e.into()))?;
            text.push(b'\n');
        }
        self.errors.write_all(text).map_err(Failed::Errors)
    }

    /// Writes the lines of `text` (each ending at one of `ends`); returns how many were
    /// written, all of them unless the writer gave up on a pipe nobody reads.
    fn write_results(&mut self, text: &[u8], ends: &[usize]) -> Result<usize, Failed> {
        if ends.is_empty() {
            return Ok(0);
        }
        if let Sink::Later { path, append } = &self.results {
            let file = open_file(path, *append).map_err(|e| Failed::Create(path.clone(), e))?;
            self.written.opened = true;
            self.results = Sink::Open {
                file,
                may_wait: false,
            };
        }
        let Sink::Open { file, may_wait } = &mut self.results else {
            return Ok(0);
        };
        if !*may_wait {
            file.write_all(text).map_err(Failed::Results)?;
            return Ok(ends.len());
        }
        let (mut start, mut done) = (0, 0);
        while done < ends.len() {
            // Whole lines up to PIPE_BUF, or one longer line on its own.
            let mut end = done + 1;
            while end < ends.len() && ends[end] - start <= PIPE_BUF {
                end += 1;
            }
            let piece = &text[start..ends[end - 1]];
            for part in piece.chunks(PIPE_BUF) {
                if !wait_for_room(file, &self.give_up) {
                    return Ok(done);
                }
                file.write_all(part).map_err(Failed::Results)?;
            }
            start = ends[end - 1];
            done = end;
        }
        Ok(done)
    }
}

/// Waits until `file` has room for PIPE_BUF bytes; false if told to give up first. Once told,
/// it looks without waiting.
fn wait_for_room(file: &File, give_up: &AtomicBool) -> bool {
    let mut fds = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        let giving_up = give_up.load(Ordering::Relaxed);
        let millis = if giving_up {
            0
        } else {
            GIVE_UP_CHECK.as_millis() as libc::c_int
        };
        // SAFETY: one valid pollfd, for a descriptor `file` keeps open during the call.
        let ready = unsafe { libc::poll(&mut fds, 1, millis) };
        // Ready, or an error or hang-up that the write itself will report.
        if ready > 0 {
            return true;
        }
        if giving_up {
            return false;
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
