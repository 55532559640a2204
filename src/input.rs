//! Opens every input (files, or stdin) before anything is sent or written, then reads them in
//! turn on a thread of its own and turns each non-blank line into a record that remembers the
//! file and line it came from. A line that is not one JSON value becomes an invalid record that
//! carries its raw text, so that it fails alone under the error policy.
//!
//! A thread of its own, because a blocking read of an idle stdin must never hold up the
//! requests in flight, nor keep the program from exiting. Records cross to the pipe in chunks of
//! what one read delivered, so a record never waits behind a read that may block.
//!
//! Told to stop, the reader takes no more bytes from the input, but hands over every byte it
//! already took: the records in its buffer, and the start of a line it was in the middle of (as
//! an invalid record). "Read" means every byte abatch took, and every one of them ends as a
//! result or a dead letter.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use futures::Stream;
use futures::stream::{self, StreamExt};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One input record: its JSON text exactly as read, and where it was read.
#[derive(Debug)]
pub struct Record {
    pub json: Box<RawValue>,
    pub at: Location,
    /// Why the line is not a record that can be sent; `json` then holds the line's raw text as
    /// a JSON string.
    pub invalid: Option<Box<str>>,
}

/// A file (or stdin) and a 1-based line number, blank lines counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub source: Arc<str>,
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

type Chunk = Vec<anyhow::Result<Record>>;

/// Most records handed over at once; it bounds how far reading runs ahead of batching.
const CHUNK_RECORDS: usize = 1024;
/// Most bytes handed over at once, so that large records queue in small numbers.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks that may wait between the reader and the pipe.
const CHUNKS_QUEUED: usize = 4;
const READ_BUFFER: usize = 256 * 1024;
/// How often a reader waiting on an idle pipe or terminal looks for the order to stop.
const STOP_CHECK: Duration = Duration::from_millis(50);
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An input, open and ready to read.
pub struct Source {
    name: Arc<str>,
    file: File,
    /// Whether a read may wait for data (a pipe, a terminal), rather than only for a disk.
    may_wait: bool,
}

/// Opens each of `inputs` ('-' or none: stdin) now, so that a missing or unreadable input is
/// found before anything is sent or any output is touched.
pub fn open(inputs: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    if inputs.is_empty() {
        return Ok(vec![stdin()?]);
    }
    inputs
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                return stdin();
            }
            let name = path.display();
            let file = File::open(path).map_err(|e| anyhow!("cannot open {name}: {e}"))?;
            let meta = file
                .metadata()
                .map_err(|e| anyhow!("cannot open {name}: {e}"))?;
            if meta.is_dir() {
                return Err(anyhow!(
                    "{name} is a directory; give the files in it instead (e.g. {name}/*.jsonl)"
                ));
            }
            Ok(Source {
                name: Arc::from(name.to_string()),
                may_wait: !meta.is_file(),
                file,
            })
        })
        .collect()
}

/// Standard input, read through a descriptor of its own: no buffer but ours holds its bytes.
fn stdin() -> anyhow::Result<Source> {
    let file = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| anyhow!("cannot read standard input: {e}"))?;
    let may_wait = !file.metadata().is_ok_and(|m| m.is_file());
    Ok(Source {
        name: Arc::from("<stdin>"),
        file,
        may_wait,
    })
}

/// The records of `sources`, in order. An input that cannot be read ends the stream with an
/// error naming its place. Once `stop` is cancelled no more bytes are read, and the stream ends
/// once what was read is handed over.
pub fn records(
    sources: Vec<Source>,
    max_line: usize,
    stop: CancellationToken,
) -> impl Stream<Item = anyhow::Result<Record>> {
    let (tx, rx) = mpsc::channel::<Chunk>(CHUNKS_QUEUED);
    let spawned = std::thread::Builder::new()
        .name("abatch-input".into())
        .spawn(move || read_all(sources, max_line, &stop, &tx));
    let failed_to_start = spawned
        .err()
        .map(|e| vec![Err(anyhow!("cannot start the input reader: {e}"))]);
    let chunks = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    stream::iter(failed_to_start)
        .chain(chunks)
        .flat_map(stream::iter)
}

/// Reads every input until the end, an error, the order to stop, or the pipe going away.
fn read_all(
    sources: Vec<Source>,
    max_line: usize,
    stop: &CancellationToken,
    tx: &mpsc::Sender<Chunk>,
) {
    let mut send = |chunk| tx.blocking_send(chunk).is_ok();
    let mut pending = Pending::new(&mut send);
    for source in sources {
        match read_one(source, max_line, stop, &mut pending) {
            Ok(Ended::Input) => {}
            Ok(Ended::Stopped) => break,
            Ok(Ended::Gone) => return,
            Err(e) => {
                pending.push(Err(e), 0);
                break;
            }
        }
    }
    pending.hand_over();
}

/// Records read but not yet handed to the pipe.
struct Pending<'a> {
    chunk: Chunk,
    bytes: usize,
    send: &'a mut dyn FnMut(Chunk) -> bool,
}

impl<'a> Pending<'a> {
    fn new(send: &'a mut dyn FnMut(Chunk) -> bool) -> Self {
        Pending {
            chunk: Chunk::new(),
            bytes: 0,
            send,
        }
    }

    fn push(&mut self, record: anyhow::Result<Record>, bytes: usize) {
        self.chunk.push(record);
        self.bytes += bytes;
    }

    fn is_full(&self) -> bool {
        self.chunk.len() >= CHUNK_RECORDS || self.bytes >= CHUNK_BYTES
    }

    /// Hands what is pending to the pipe; false when nobody listens any more.
    fn hand_over(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        self.bytes = 0;
        (self.send)(std::mem::take(&mut self.chunk))
    }
}

/// Why reading one input ended without an error.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Its end was reached.
    Input,
    /// The run is stopping: read no further input.
    Stopped,
    /// Nobody listens any more.
    Gone,
}

/// A source whose reads give up, without taking any byte, once the run is stopping; a read
/// that may wait for data waits in short steps, to notice it.
struct Stoppable<'a> {
    source: Source,
    stop: &'a CancellationToken,
}

/// The error a [`Stoppable`] read gives once the run is stopping.
#[derive(Debug)]
struct Stopping;

impl fmt::Display for Stopping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the run is stopping")
    }
}

impl std::error::Error for Stopping {}

impl Read for Stoppable<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.stop.is_cancelled() {
                return Err(io::Error::other(Stopping));
            }
            if !self.source.may_wait || readable(&self.source.file, STOP_CHECK) {
                return self.source.file.read(buf);
            }
        }
    }
}

/// Whether `file` has data (or its end) to read within `wait`.
fn readable(file: &File, wait: Duration) -> bool {
    let mut fds = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, for a descriptor `file` keeps open during the call.
    let ready = unsafe { libc::poll(&mut fds, 1, millis) };
    // An error (EINTR) counts as not yet: the caller looks again.
    ready > 0
}

fn is_stopping(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<Stopping>())
}

/// Reads one input, handing records over whenever the next read could block.
fn read_one(
    source: Source,
    max_line: usize,
    stop: &CancellationToken,
    pending: &mut Pending,
) -> anyhow::Result<Ended> {
    let name = source.name.clone();
    let mut reader = BufReader::with_capacity(READ_BUFFER, Stoppable { source, stop });
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut first_value = true;
    loop {
        let next_read_may_block = memchr::memchr(b'\n', reader.buffer()).is_none();
        if (pending.is_full() || next_read_may_block) && !pending.hand_over() {
            return Ok(Ended::Gone);
        }
        line.clear();
        number += 1;
        let at = Location {
            source: name.clone(),
            line: number,
        };
        // Room for the line ending ("\r\n") tells a line that is too long from one that fits.
        let read = match (&mut reader)
            .take(max_line as u64 + 2)
            .read_until(b'\n', &mut line)
        {
            Ok(read) => read,
            Err(e) if is_stopping(&e) => {
                // The start of a line whose end was never read: bytes taken, so kept.
                if !is_blank(&line) {
                    let problem = "the run stopped before the rest of this line was read";
                    pending.push(Ok(invalid(&line, at, problem.into())), line.len());
                }
                return Ok(Ended::Stopped);
            }
            Err(e) => return Err(anyhow!("{at}: cannot read: {e}")),
        };
        if read == 0 {
            return Ok(Ended::Input);
        }
        let mut content = line.strip_suffix(b"\n").unwrap_or(&line);
        content = content.strip_suffix(b"\r").unwrap_or(content);
        if number == 1 {
            content = content.strip_prefix(BOM).unwrap_or(content);
        }
        if content.len() > max_line {
            let kept = &content[..max_line];
            // Its dead letter keeps the first --max-line-bytes: memory stays bounded.
            let problem = format!(
                "the line is longer than --max-line-bytes ({})",
                bytesize::ByteSize(max_line as u64)
            );
            // The line's end may be in what was read already.
            let skipped = match line.ends_with(b"\n") {
                true => Ok(()),
                false => skip_line(&mut reader),
            };
            pending.push(Ok(invalid(kept, at.clone(), problem)), read);
            match skipped {
                Ok(()) => continue,
                Err(e) if is_stopping(&e) => return Ok(Ended::Stopped),
                Err(e) => return Err(anyhow!("{at}: cannot read: {e}")),
            }
        }
        if is_blank(content) {
            continue;
        }
        let record = match parse(content, first_value) {
            Ok(json) => Record {
                json,
                at,
                invalid: None,
            },
            Err(problem) => invalid(content, at, problem),
        };
        first_value = false;
        pending.push(Ok(record), read);
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Reads and drops the rest of a line that is too long to keep.
fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        match memchr::memchr(b'\n', buffer) {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(());
            }
            None => {
                let len = buffer.len();
                reader.consume(len);
            }
        }
    }
}

/// An invalid record: the raw text of its line (invalid UTF-8 shown as U+FFFD), and why.
fn invalid(raw: &[u8], at: Location, problem: String) -> Record {
    let text = String::from_utf8_lossy(raw);
    let json = serde_json::value::to_raw_value(&text).unwrap_or_else(|_| RawValue::NULL.to_owned());
    Record {
        json,
        at,
        invalid: Some(problem.into()),
    }
}

/// Checks that `line` holds exactly one JSON value and keeps its text as it is. `first` says
/// whether it is the first value of its input, where a value cut short most likely means a
/// pretty-printed file.
fn parse(line: &[u8], first: bool) -> Result<Box<RawValue>, String> {
    serde_json::from_slice(line).map_err(|e| {
        let text = e.to_string();
        // serde_json counts lines within the line; the column is what helps here.
        let cause = text.split(" at line ").next().unwrap_or(&text);
        let mut problem = format!("invalid JSON at column {}: {cause}", e.column().max(1));
        if first && e.is_eof() {
            problem.push_str(
                "; abatch reads one JSON value per line: convert a JSON array file with \
                 `jq -c '.[]' FILE`, pretty-printed values with `jq -c . FILE`",
            );
        }
        problem
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What reading `bytes` as a file gives: (line, text) for each record, and "file:line:
    /// problem" for an invalid one or an error.
    fn read_bytes(bytes: &[u8], max_line: usize) -> Vec<Result<(u64, String), String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, bytes).unwrap();
        let mut chunks = Vec::new();
        let mut send = |chunk| {
            chunks.push(chunk);
            true
        };
        let mut pending = Pending::new(&mut send);
        let source = open(&[path]).unwrap().pop().unwrap();
        let result = read_one(source, max_line, &CancellationToken::new(), &mut pending);
        if let Err(e) = result {
            pending.push(Err(e), 0);
        }
        pending.hand_over();
        chunks
            .into_iter()
            .flatten()
            .map(|r| match r {
                Ok(rec) => match rec.invalid {
                    None => Ok((rec.at.line, rec.json.get().to_owned())),
                    Some(problem) => Err(format!(
                        "in.jsonl:{}: {problem} [{}]",
                        rec.at.line,
                        rec.json.get()
                    )),
                },
                Err(e) => Err(e.to_string()),
            })
            .collect()
    }

    fn read_text(text: &str) -> Vec<Result<(u64, String), String>> {
        read_bytes(text.as_bytes(), 1 << 20)
    }

    #[test]
    fn skips_blank_lines_but_counts_them() {
        let got = read_text("{\"a\": 1}\n\n   \t\r\n[1, 2]\r\n\"last\"");
        assert_eq!(
            got,
            vec![
                Ok((1, "{\"a\": 1}".into())),
                Ok((4, "[1, 2]".into())),
                Ok((5, "\"last\"".into()))
            ]
        );
    }

    #[test]
    fn skips_a_byte_order_mark_at_the_start() {
        let got = read_text("\u{feff}{\"a\": 1}\r\n2\r\n");
        assert_eq!(got, vec![Ok((1, "{\"a\": 1}".into())), Ok((2, "2".into()))]);
    }

    #[test]
    fn keeps_record_text_untouched() {
        let got = read_text(
            "  {\"n\":1.0e+300, \"z\" : -0.0,\"big\":123456789012345678901234567890,\"u\":\"\\u00e9\"}  \n",
        );
        assert_eq!(
            got,
            vec![Ok((1, "{\"n\":1.0e+300, \"z\" : -0.0,\"big\":123456789012345678901234567890,\"u\":\"\\u00e9\"}".into()))]
        );
    }

    #[test]
    fn an_invalid_line_is_a_record_of_its_own_naming_line_and_column() {
        let got = read_text("1\n\n{\"a\": }\n2\n");
        assert_eq!(
            got,
            vec![
                Ok((1, "1".into())),
                Err(
                    "in.jsonl:3: invalid JSON at column 7: expected value [\"{\\\"a\\\": }\"]"
                        .into()
                ),
                Ok((4, "2".into()))
            ]
        );
    }

    #[test]
    fn a_value_cut_short_on_the_first_line_suggests_converting_the_file() {
        let got = read_text("[\n  1,\n  2\n]\n");
        let first = got[0].clone().unwrap_err();
        assert!(
            first.contains(":1: invalid JSON at column 1: EOF while parsing a list; abatch reads one JSON value per line: convert a JSON array file with `jq -c '.[]' FILE`"),
            "{first}"
        );
        let later = read_text("1\n[1,\n")[1].clone().unwrap_err();
        assert!(!later.contains("jq"), "{later}");
    }

    #[test]
    fn two_values_on_one_line_are_rejected() {
        let got = read_text("1 2\n");
        assert!(
            got[0]
                .clone()
                .unwrap_err()
                .contains(":1: invalid JSON at column 3: trailing characters")
        );
    }

    #[test]
    fn a_line_longer_than_the_limit_keeps_its_start_and_reading_goes_on() {
        let fits = format!("\"{}\"", "x".repeat(8));
        let long = format!("\"{}\"", "y".repeat(30));
        let got = read_bytes(format!("{fits}\r\n{fits}\n{long}\n3\n").as_bytes(), 10);
        assert_eq!(got[0], Ok((1, fits.clone())));
        assert_eq!(got[1], Ok((2, fits)));
        assert_eq!(
            got[2],
            Err(
                "in.jsonl:3: the line is longer than --max-line-bytes (10 B) [\"\\\"yyyyyyyyy\"]"
                    .into()
            )
        );
        assert_eq!(got[3], Ok((4, "3".into())));
    }

    #[test]
    fn a_line_one_byte_over_the_limit_leaves_the_next_line_alone() {
        let got = read_bytes(b"\"12345678\"\n\"123456789\"\n7\n", 10);
        assert_eq!(got[0], Ok((1, "\"12345678\"".into())));
        assert!(
            got[1]
                .clone()
                .unwrap_err()
                .starts_with("in.jsonl:2: the line is longer")
        );
        assert_eq!(got[2], Ok((3, "7".into())));
    }

    #[test]
    fn invalid_utf8_is_an_invalid_record_not_a_panic() {
        let got = read_bytes(b"\"ok\"\n\"\xff\"\n", 1 << 20);
        let err = got[1].clone().unwrap_err();
        assert!(err.contains("in.jsonl:2: invalid JSON"), "{err}");
        assert!(err.ends_with("[\"\\\"\u{fffd}\\\"\"]"), "{err}");
    }

    #[test]
    fn a_stopped_reader_takes_nothing_more_and_hands_over_what_it_took() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "1\n2\n").unwrap();
        let stop = CancellationToken::new();
        stop.cancel();
        let mut chunks = Vec::new();
        let mut send = |chunk| {
            chunks.push(chunk);
            true
        };
        let source = open(&[path]).unwrap().pop().unwrap();
        let ended = read_one(source, 100, &stop, &mut Pending::new(&mut send)).unwrap();
        assert_eq!(ended, Ended::Stopped);
        assert!(chunks.is_empty());
    }

    #[test]
    fn a_missing_file_or_a_directory_is_named() {
        let missing = PathBuf::from("/no/such/file.jsonl");
        let err = open(&[missing]).err().unwrap().to_string();
        assert!(
            err.starts_with("cannot open /no/such/file.jsonl: "),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = open(&[dir.path().to_owned()]).err().unwrap().to_string();
        assert!(
            err.contains(" is a directory; give the files in it"),
            "{err}"
        );
    }
}
