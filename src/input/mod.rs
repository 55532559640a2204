//! Input: the sources (opened before anything is sent or written, see `source.rs`), read in
//! turn on a thread of its own, each line turned into a record that remembers the file and
//! line it came from (see `lines.rs`).
//!
//! A thread of its own, because a blocking read of an idle stdin must never hold up the
//! requests in flight, nor keep the program from exiting. Records cross to the pipe in chunks of
//! what one read delivered, so a record never waits behind a read that may block.
//!
//! Told to stop, the reader takes no more bytes from the input, but hands over every byte it
//! already took: the records in its buffer, and the start of a line it was in the middle of (as
//! an invalid record). "Read" means every byte abatch took, and every one of them ends as a
//! result or a dead letter.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::Hasher;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;

use crate::cli::Shard;
use futures::Stream;
use futures::stream::{self, StreamExt};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod decode;
mod lines;
mod source;

use lines::Ended;
pub use source::{Sources, open};

/// One input record: its JSON text exactly as read, and where it was read.
#[derive(Debug)]
pub struct Record {
    pub json: Box<RawValue>,
    pub at: Location,
    /// Why the line is not a record that can be sent; `json` then holds the line's raw text as
    /// a JSON string.
    pub invalid: Option<Box<str>>,
    /// The input bytes it stands for: since the record before it, blank lines and line
    /// endings included.
    pub bytes: u64,
    /// A blank line, kept (--aligned) so that it gets its null line; never sent.
    pub blank: bool,
    /// Its place in the result cache (--cache), once looked up there.
    pub cache: Option<Cached>,
}

/// What the result cache (--cache) holds for a record: its key, and the result remembered for
/// it, if there is one. Set by the lookup before batching; the result is taken out when the
/// record is answered with it.
#[derive(Debug)]
pub struct Cached {
    pub key: [u8; 16],
    pub result: Option<Box<RawValue>>,
}

impl Record {
    /// Whether the cache holds a result for this record.
    pub fn is_cached(&self) -> bool {
        self.cache.as_ref().is_some_and(|c| c.result.is_some())
    }
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

/// What to read, as the command line says.
pub struct Settings {
    /// Files in turn; none means stdin, and '-' stands for it.
    pub paths: Vec<PathBuf>,
    /// Longest input line accepted.
    pub max_line: usize,
    /// Only this share of the input (--shard).
    pub shard: Option<Shard>,
    /// Blank lines become records too (--aligned), to be answered with null.
    pub keep_blank: bool,
    /// Records that must each have their own id (an OpenAI batch file's custom_id): its
    /// name, and where a record has it. A repeated id is an input error naming both lines.
    pub unique: Option<UniqueBy>,
}

/// An id each record must have alone: its name and the rule, for messages, and how to find it.
#[derive(Clone, Copy)]
pub struct UniqueBy {
    pub name: &'static str,
    pub rule: &'static str,
    pub of: fn(&RawValue) -> Option<&str>,
}

/// The ids met so far, as 64-bit hashes, and where each was: its input (by number) and line.
struct Unique {
    by: UniqueBy,
    seen: HashMap<u64, (u32, u64)>,
    sources: Vec<Arc<str>>,
}

impl Unique {
    /// Notes `record`'s id; an input error naming both lines if an earlier record had it.
    fn check(&mut self, record: &Record) -> anyhow::Result<()> {
        let Some(id) = (self.by.of)(&record.json) else {
            return Ok(());
        };
        let at = &record.at;
        if self.sources.last() != Some(&at.source) {
            self.sources.push(at.source.clone());
        }
        let source = (self.sources.len() - 1) as u32;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        hasher.write(id.as_bytes());
        match self.seen.entry(hasher.finish()) {
            Entry::Vacant(entry) => {
                entry.insert((source, at.line));
                Ok(())
            }
            Entry::Occupied(first) => {
                let (source, line) = *first.get();
                let first = Location {
                    source: self.sources[source as usize].clone(),
                    line,
                };
                Err(anyhow!(
                    "{at}: {} {id:?} is already used at {first}; {}",
                    self.by.name,
                    self.by.rule
                ))
            }
        }
    }
}

type Chunk = Vec<anyhow::Result<Record>>;

/// Most records handed over at once; it bounds how far reading runs ahead of batching.
const CHUNK_RECORDS: usize = 1024;
/// Most bytes handed over at once, so that large records queue in small numbers.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks that may wait between the reader and the pipe.
const CHUNKS_QUEUED: usize = 4;

/// The records of `sources`, in order. An input that cannot be read ends the stream with an
/// error naming its place. Once `stop` is cancelled no more bytes are read, and the stream ends
/// once what was read is handed over.
pub fn records(
    sources: Sources,
    settings: &Settings,
    stop: CancellationToken,
) -> impl Stream<Item = anyhow::Result<Record>> {
    let (max_line, keep_blank) = (settings.max_line, settings.keep_blank);
    let unique = settings.unique.map(|by| Unique {
        by,
        seen: HashMap::new(),
        sources: Vec::new(),
    });
    let (tx, rx) = mpsc::channel::<Chunk>(CHUNKS_QUEUED);
    let spawned = std::thread::Builder::new()
        .name("abatch-input".into())
        .spawn(move || read_all(sources, max_line, keep_blank, unique, &stop, &tx));
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
    sources: Sources,
    max_line: usize,
    keep_blank: bool,
    unique: Option<Unique>,
    stop: &CancellationToken,
    tx: &mpsc::Sender<Chunk>,
) {
    let mut send = |chunk| tx.blocking_send(chunk).is_ok();
    let mut pending = Pending::new(&mut send);
    pending.unique = unique;
    for source in sources.list {
        match lines::read_one(source, max_line, keep_blank, stop, &mut pending) {
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
pub struct Pending<'a> {
    chunk: Chunk,
    bytes: usize,
    send: &'a mut dyn FnMut(Chunk) -> bool,
    /// Ids the records must not repeat, if any.
    unique: Option<Unique>,
}

impl<'a> Pending<'a> {
    pub fn new(send: &'a mut dyn FnMut(Chunk) -> bool) -> Self {
        Pending {
            chunk: Chunk::new(),
            bytes: 0,
            send,
            unique: None,
        }
    }

    /// Whether `record` may be pushed: an input error if it repeats an earlier one's id.
    pub fn check(&mut self, record: &Record) -> anyhow::Result<()> {
        match &mut self.unique {
            Some(unique) => unique.check(record),
            None => Ok(()),
        }
    }

    pub fn push(&mut self, record: anyhow::Result<Record>, bytes: usize) {
        self.chunk.push(record);
        self.bytes += bytes;
    }

    pub fn is_full(&self) -> bool {
        self.chunk.len() >= CHUNK_RECORDS || self.bytes >= CHUNK_BYTES
    }

    /// Hands what is pending to the pipe; false when nobody listens any more.
    pub fn hand_over(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        self.bytes = 0;
        (self.send)(std::mem::take(&mut self.chunk))
    }
}
