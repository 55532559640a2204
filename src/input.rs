//! Reads the input files (or stdin) in turn, on a thread of its own, and turns each non-blank
//! line into a record that remembers the file and line it came from.
//!
//! A thread of its own, because a blocking read of an idle stdin must never hold up the
//! requests in flight, nor keep the program from exiting. Records cross to the pipe in chunks of
//! what one read delivered, so a record never waits behind a read that may block.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// How reading may end early.
pub struct Stops {
    /// Read no more, but deliver what was already read: it cannot be read again from a pipe.
    pub finish: CancellationToken,
    /// Read no more and deliver nothing more.
    pub abandon: CancellationToken,
}

/// The records of `inputs` ('-' or none: stdin), in order. An unreadable file, a line that is
/// not JSON or one longer than `max_line` bytes ends the stream with an error naming its place.
pub fn records(
    inputs: Vec<PathBuf>,
    max_line: usize,
    stops: Stops,
) -> impl Stream<Item = anyhow::Result<Record>> {
    let (tx, rx) = mpsc::channel::<Chunk>(CHUNKS_QUEUED);
    let spawned = std::thread::Builder::new()
        .name("abatch-input".into())
        .spawn(move || read_all(inputs, max_line, &tx));
    let failed_to_start = spawned
        .err()
        .map(|e| vec![Err(anyhow!("cannot start the input reader: {e}"))]);
    let Stops { finish, abandon } = stops;
    let chunks = stream::unfold((rx, finish), |(mut rx, finish)| async move {
        // The signal first: a reader that keeps the channel full must not keep reading.
        let chunk = tokio::select! {
            biased;
            () = finish.cancelled(), if !rx.is_closed() => {
                // The reader stops at its next hand-over; what it handed over still comes.
                rx.close();
                rx.recv().await
            }
            chunk = rx.recv() => chunk,
        };
        chunk.map(|chunk| (chunk, (rx, finish)))
    });
    stream::iter(failed_to_start)
        .chain(chunks)
        .flat_map(stream::iter)
        .take_until(abandon.cancelled_owned())
}

/// Reads every input until the end, an error, or the pipe going away.
fn read_all(inputs: Vec<PathBuf>, max_line: usize, tx: &mpsc::Sender<Chunk>) {
    let stdin = [PathBuf::from("-")];
    let inputs = if inputs.is_empty() {
        &stdin[..]
    } else {
        &inputs[..]
    };
    let mut send = |chunk| tx.blocking_send(chunk).is_ok();
    let mut pending = Pending::new(&mut send);
    for path in inputs {
        match read_one(path, max_line, &mut pending) {
            Ok(true) => {}
            Ok(false) => return,
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

/// Reads one input, handing records over whenever the next read could block.
/// Returns false when nobody listens any more.
fn read_one(path: &Path, max_line: usize, pending: &mut Pending) -> anyhow::Result<bool> {
    let (name, source): (Arc<str>, Box<dyn Read>) = if path.as_os_str() == "-" {
        (Arc::from("<stdin>"), Box::new(io::stdin()))
    } else {
        let file = File::open(path).map_err(|e| anyhow!("cannot open {}: {e}", path.display()))?;
        (Arc::from(path.display().to_string()), Box::new(file))
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, source);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        let next_read_may_block = memchr::memchr(b'\n', reader.buffer()).is_none();
        if (pending.is_full() || next_read_may_block) && !pending.hand_over() {
            return Ok(false);
        }
        line.clear();
        number += 1;
        let at = Location {
            source: name.clone(),
            line: number,
        };
        // Room for the line ending ("\r\n") tells a line that is too long from one that fits.
        let read = (&mut reader)
            .take(max_line as u64 + 2)
            .read_until(b'\n', &mut line)
            .map_err(|e| anyhow!("{at}: cannot read: {e}"))?;
        if read == 0 {
            return Ok(true);
        }
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.len() > max_line {
            return Err(anyhow!(
                "{at}: the line is longer than --max-line-bytes ({})",
                bytesize::ByteSize(max_line as u64)
            ));
        }
        if line
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            continue;
        }
        let json = parse(&line).map_err(|e| anyhow!("{at}: {e}"))?;
        pending.push(Ok(Record { json, at }), read);
    }
}

/// Checks that `line` holds exactly one JSON value and keeps its text as it is.
fn parse(line: &[u8]) -> Result<Box<RawValue>, String> {
    serde_json::from_slice(line).map_err(|e| {
        let text = e.to_string();
        // serde_json counts lines within the line; the column is what helps here.
        let cause = text.split(" at line ").next().unwrap_or(&text);
        format!("invalid JSON at column {}: {cause}", e.column())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Vec<Result<(u64, String), String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, text).unwrap();
        let mut chunks = Vec::new();
        let mut send = |chunk| {
            chunks.push(chunk);
            true
        };
        let mut pending = Pending::new(&mut send);
        let result = read_one(&path, 1 << 20, &mut pending);
        if let Err(e) = result {
            pending.push(Err(e), 0);
        }
        pending.hand_over();
        chunks
            .into_iter()
            .flatten()
            .map(|r| {
                r.map(|rec| (rec.at.line, rec.json.get().to_owned()))
                    .map_err(|e| e.to_string())
            })
            .collect()
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
    fn invalid_line_names_file_line_and_column() {
        let got = read_text("1\n\n{\"a\": }\n2\n");
        assert_eq!(got.len(), 2);
        let err = got[1].clone().unwrap_err();
        assert!(
            err.ends_with("in.jsonl:3: invalid JSON at column 7: expected value"),
            "{err}"
        );
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
    fn a_line_longer_than_the_limit_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.jsonl");
        let fits = format!("\"{}\"", "x".repeat(8));
        let long = format!("\"{}\"", "x".repeat(9));
        std::fs::write(&path, format!("{fits}\r\n{fits}\n{long}\n")).unwrap();
        let mut chunks = Vec::new();
        let mut send = |chunk| {
            chunks.push(chunk);
            true
        };
        let err = read_one(&path, 10, &mut Pending::new(&mut send)).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("long.jsonl:3: the line is longer than --max-line-bytes (10 B)"),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, b"\"ok\"\n\"\xff\"\n").unwrap();
        let mut send = |_| true;
        let err = read_one(&path, 1 << 20, &mut Pending::new(&mut send)).unwrap_err();
        assert!(
            err.to_string().contains("bad.jsonl:2: invalid JSON"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let mut send = |_| true;
        let missing = Path::new("/no/such/file.jsonl");
        let err = read_one(missing, 1 << 20, &mut Pending::new(&mut send)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot open /no/such/file.jsonl: "),
            "{err}"
        );
    }
}
