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
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use crate::exit::Exit;
use crate::input::Record;
use crate::report::say;

pub mod resume;
pub mod route;

pub use resume::{Done, Matching};

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
    /// The line that stands for each failed record (--on-error null): `null`, or what the
    /// codec writes instead.
    Nulls(Vec<Box<RawValue>>),
    /// --dry-run: the request that would carry some records, as one line.
    Shown(Box<RawValue>),
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
/// How long a result line longer than PIPE_BUF, once started, may wait to be finished after
/// the writer was told to give up: cutting it would leave half a line.
const LONG_LINE_PATIENCE: Duration = Duration::from_secs(1);

pub struct Output {
    lines: mpsc::Sender<Lines>,
    /// Set once the output cannot take results (it could not be created or written).
    failing: Arc<AtomicBool>,
    done: oneshot::Receiver<(Written, Result<(), Failed>)>,
    give_up: Arc<AtomicBool>,
    name: String,
    /// The dead-letter file, for messages.
    errors_name: String,
}

/// What the writer did with the lines it was given.
#[derive(Debug, Default)]
pub struct Written {
    /// Whether the output file was created (or opened to append to).
    pub opened: bool,
    /// Result lines written (not null lines, nor requests shown by --dry-run).
    pub results: u64,
    /// Results that became dead letters instead: the output could not take them.
    pub given_up: u64,
}

/// How the writer ended.
pub struct Finished {
    pub reader: Reader,
    pub written: Written,
    /// Why the output could not be written, when it could not.
    pub error: Option<anyhow::Error>,
}

/// Which sink failed, and how.
enum Failed {
    Results(io::Error),
    /// The output file could not be created: its results went to the dead letters.
    Create(PathBuf, io::Error),
    Errors(io::Error),
}

/// Why results go to the dead letters instead of the output, from some point on.
enum Lost {
    /// The run was stopped at once while nobody read the output.
    NotRead,
    /// The output file could not be created.
    Create(PathBuf, io::Error),
    /// The output (named) could not be written to.
    Write(String, io::Error),
}

impl Lost {
    fn describe(&self) -> String {
        match self {
            Lost::NotRead => "answered, but not written: the run was stopped while the output \
                              was not being read"
                .into(),
            Lost::Create(path, e) => {
                format!(
                    "answered, but not written: cannot create {}: {e}",
                    path.display()
                )
            }
            Lost::Write(name, e) => {
                format!("answered, but not written: cannot write to {name}: {e}")
            }
        }
    }
}

/// Whether anyone still reads what is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    Listening,
    /// The reader closed the pipe (as `head` does): a reason to stop quietly, not an error.
    Gone,
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
    /// How the output says which records it answers, for --resume.
    pub matching: Matching,
    /// Write no file at all (--dry-run).
    pub dry_run: bool,
}

impl Files {
    /// Where dead letters go, for messages: "in FILE" or "on stderr".
    pub fn errors_place(&self) -> String {
        self.written(&self.errors).map_or_else(
            || "on stderr".to_string(),
            |p| format!("in {}", p.display()),
        )
    }

    /// A file the run writes: none in a dry run, which leaves every file alone.
    pub fn written<'a>(&self, path: &'a Option<PathBuf>) -> Option<&'a std::path::Path> {
        path.as_deref().filter(|_| !self.dry_run)
    }
}

/// Where results and dead letters go, as the writer opens them.
struct Sinks<'a> {
    /// Results: stdout when None.
    output: Option<&'a Path>,
    /// Dead letters: stderr when None.
    errors: Option<&'a Path>,
    /// Append to both files instead of creating them anew.
    append: bool,
}

impl Output {
    /// The output of `files`, once the inputs are open: --stats checked writable, an -o to
    /// resume counted (how many lines it holds, returned too), the dead-letter file emptied
    /// (or opened for appending), and -o checked writable without touching it yet.
    pub fn open(files: &Files, inputs: &[resume::Input]) -> anyhow::Result<(Output, Done)> {
        if let Some(stats) = files.written(&files.stats) {
            writable(stats).map_err(|e| anyhow!("cannot create {}: {e}", stats.display()))?;
        }
        let resumed = match (files.written(&files.output), files.resume) {
            (Some(output), true) => resume::done(output, files.matching, inputs)?,
            _ => Done::nothing(),
        };
        let sinks = Sinks {
            output: files.written(&files.output),
            errors: files.written(&files.errors),
            append: files.resume,
        };
        if let Some(path) = sinks.output {
            // Probed without truncating; a FIFO is not opened, which its reader would see.
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
        let failing = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            results,
            name: name.clone(),
            errors: BufWriter::new(match errors {
                Some(file) => Box::new(file) as Box<dyn Write + Send>,
                // Unlocked, and around the progress display: the rest of abatch writes
                // there too.
                None => Box::new(crate::report::progress::Stderr),
            }),
            give_up: give_up.clone(),
            failing: failing.clone(),
            lost: None,
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
        let output = Output {
            lines,
            failing,
            done,
            give_up,
            name,
            errors_name: sinks
                .errors
                .map_or_else(|| "standard error".to_string(), |p| p.display().to_string()),
        };
        Ok((output, resumed))
    }

    /// Queues lines for writing; waits while the writer is behind.
    pub async fn write(&self, lines: Lines) -> Reader {
        match self.lines.send(lines).await {
            Ok(()) => Reader::Listening,
            // The writer stopped: finish() tells why.
            Err(_) => Reader::Gone,
        }
    }

    /// Whether the output can no longer take results: the run had better stop.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// The switch that tells the writer to give up on an output nobody reads: from then on,
    /// results that cannot be written at once become dead letters instead of waiting.
    pub fn give_up(&self) -> GiveUp {
        GiveUp(self.give_up.clone())
    }

    /// Waits until everything queued is written (or given up) and flushed.
    pub async fn finish(self) -> Finished {
        drop(self.lines);
        let Ok((written, ended)) = self.done.await else {
            return Finished {
                reader: Reader::Listening,
                written: Written::default(),
                error: Some(anyhow!("the writer of {} stopped unexpectedly", self.name)),
            };
        };
        let (reader, error) = match ended {
            Ok(()) => (Reader::Listening, None),
            Err(Failed::Results(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                (Reader::Gone, None)
            }
            Err(Failed::Results(e)) => (
                Reader::Listening,
                Some(anyhow!("cannot write to {}: {e}", self.name)),
            ),
            Err(Failed::Create(path, e)) => (
                Reader::Listening,
                Some(anyhow!("cannot create {}: {e}", path.display())),
            ),
            Err(Failed::Errors(e)) => (
                Reader::Listening,
                Some(anyhow!("cannot write to {}: {e}", self.errors_name)),
            ),
        };
        Finished {
            reader,
            written,
            error,
        }
    }
}

/// Tells the writer to give up on an output nobody reads (see [`Output::give_up`]).
pub struct GiveUp(Arc<AtomicBool>);

impl GiveUp {
    pub fn now(&self) {
        self.0.store(true, Ordering::Relaxed);
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
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => OpenOptions::new().write(true).open(path).map(drop),
        // A FIFO or a device: opening it would be seen by its other end.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let directory = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            if !std::fs::metadata(directory)?.is_dir() {
                return Err(io::Error::from(io::ErrorKind::NotADirectory));
            }
            let name = std::ffi::CString::new(directory.as_os_str().as_encoded_bytes())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: a valid NUL-terminated path; access(2) only reads it.
            if unsafe { libc::access(name.as_ptr(), libc::W_OK) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
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
        Ok(Sink::open(File::from(fd)))
    }

    fn open(file: File) -> Sink {
        use std::os::unix::fs::FileTypeExt;
        let kind = file.metadata().map(|m| m.file_type());
        let may_wait = kind.is_ok_and(|k| k.is_fifo() || k.is_socket()) || file.is_terminal();
        Sink::Open { file, may_wait }
    }
}

/// The writer thread's state.
struct Writer {
    results: Sink,
    /// The output's name, for messages.
    name: String,
    errors: BufWriter<Box<dyn Write + Send>>,
    give_up: Arc<AtomicBool>,
    /// Raised when results can no longer be written, for the run to stop.
    failing: Arc<AtomicBool>,
    /// Once set, every result from then on goes to the dead letters: nothing is written
    /// after a line that could not be.
    lost: Option<Lost>,
    /// How many more dead letters may be shown (on a terminal), if limited.
    shown: Option<u64>,
    /// Dead letters not shown.
    hidden: u64,
    written: Written,
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Lines>) -> (Written, Result<(), Failed>) {
        let ended = self.write_all(queue);
        let ended = match (ended, self.lost.take()) {
            (Ok(()), Some(Lost::Create(path, e))) => Err(Failed::Create(path, e)),
            (Ok(()), Some(Lost::Write(_, e))) => Err(Failed::Results(e)),
            (ended, _) => ended,
        };
        (self.written, ended)
    }

    fn write_all(&mut self, mut queue: mpsc::Receiver<Lines>) -> Result<(), Failed> {
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
                    self.written.results += done as u64;
                    if let Some(lost) = self.lost.as_ref().filter(|_| done < results.len()) {
                        self.written.given_up += (results.len() - done) as u64;
                        let error: Arc<str> = Arc::from(lost.describe());
                        let letters: Vec<DeadLetter> = records
                            .into_iter()
                            .skip(done)
                            .map(|record| DeadLetter {
                                record,
                                error: error.clone(),
                                status: None,
                                attempts,
                            })
                            .collect();
                        self.write_letters(&letters, &mut text)?;
                    }
                }
                Lines::Nulls(lines) => {
                    for line in &lines {
                        compact_into(line.get(), &mut text);
                        text.push(b'\n');
                        ends.push(text.len());
                    }
                    // Records that failed have their dead letters already.
                    self.write_results(&text, &ends)?;
                }
                Lines::Shown(request) => {
                    compact_into(request.get(), &mut text);
                    text.push(b'\n');
                    ends.push(text.len());
                    // Nothing was sent: a request not shown loses nothing.
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
        self.errors.flush().map_err(Failed::Errors)
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

    /// After a failed write: a reader that went away stops the writer (quietly: see
    /// [`Reader::Gone`]); any other failure sends every result from now on to the dead
    /// letters, and is reported at the end.
    fn lose(&mut self, e: io::Error) -> Result<(), Failed> {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Err(Failed::Results(e));
        }
        self.lost = Some(Lost::Write(self.name.clone(), e));
        self.failing.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Writes the lines of `text` (each ending at one of `ends`); returns how many were
    /// written: all of them, unless the output was lost (see [`Lost`]) before or during.
    fn write_results(&mut self, text: &[u8], ends: &[usize]) -> Result<usize, Failed> {
        if ends.is_empty() || self.lost.is_some() {
            return Ok(0);
        }
        if let Sink::Later { path, append } = &self.results {
            match open_file(path, *append) {
                Ok(file) => {
                    self.written.opened = true;
                    self.results = Sink::open(file);
                }
                Err(e) => {
                    self.lost = Some(Lost::Create(path.clone(), e));
                    self.failing.store(true, Ordering::Relaxed);
                    return Ok(0);
                }
            }
        }
        let Sink::Open { file, may_wait } = &mut self.results else {
            return Ok(0);
        };
        if !*may_wait {
            return match file.write_all(text) {
                Ok(()) => Ok(ends.len()),
                Err(e) => self.lose(e).map(|()| 0),
            };
        }
        let (mut start, mut done) = (0, 0);
        while done < ends.len() {
            // Whole lines up to PIPE_BUF, or one longer line on its own.
            let mut end = done + 1;
            while end < ends.len() && ends[end] - start <= PIPE_BUF {
                end += 1;
            }
            let piece = &text[start..ends[end - 1]];
            for (i, part) in piece.chunks(PIPE_BUF).enumerate() {
                // A long line, once begun, is given a little longer to end whole.
                let room = match i {
                    0 => wait_for_room(file, &self.give_up, None),
                    _ => wait_for_room(file, &self.give_up, Some(LONG_LINE_PATIENCE)),
                };
                if !room {
                    self.lost = Some(Lost::NotRead);
                    return Ok(done);
                }
                if let Err(e) = file.write_all(part) {
                    return self.lose(e).map(|()| done);
                }
            }
            start = ends[end - 1];
            done = end;
        }
        Ok(done)
    }
}

/// Waits until `file` has room for PIPE_BUF bytes; false if told to give up first (after
/// `patience` more, if given). Once told, it looks without waiting.
fn wait_for_room(file: &File, give_up: &AtomicBool, patience: Option<Duration>) -> bool {
    let mut fds = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let mut deadline = None;
    loop {
        let giving_up = give_up.load(Ordering::Relaxed);
        if giving_up && deadline.is_none() {
            deadline = Some(Instant::now() + patience.unwrap_or_default());
        }
        let late = deadline.is_some_and(|d| Instant::now() >= d);
        let millis = if late {
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
        if late {
            return false;
        }
    }
}

/// With --resume, an output that answered more records than the input has (or, tagged,
/// records it does not have): the output of another input, most likely.
pub fn resume_overrun(resumed: u64, skipped: u64, files: &Files) -> Option<anyhow::Error> {
    (skipped < resumed).then(|| {
        anyhow!(
            "--resume: {} answers {resumed} records, but only {skipped} of them are in the \
             input; is it the output of another input?",
            files.output.as_deref().unwrap_or(Path::new("-o")).display(),
        )
    })
}

/// A clean run that had nothing to write still leaves its output, empty, as `>` would.
pub fn empty_after_a_clean_run(exit: Exit, opened: bool, files: &Files) -> Exit {
    let Some(path) = files.written(&files.output) else {
        return exit;
    };
    if exit != Exit::Success || opened || files.resume {
        return exit;
    }
    match File::create(path) {
        Ok(_) => exit,
        Err(e) => {
            say(format_args!("cannot create {}: {e}", path.display()));
            Exit::Aborted
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
