//! The inputs, opened before anything is sent or written: a file or stdin, its name, and its
//! size when it is a regular file, which the progress display measures against; with
//! --shard, the share of each that this worker reads. Reads give up, taking nothing more,
//! once the run is stopping. (Decoders are in `decode.rs`.)
//!
//! Shards cut plain regular files by bytes, as Hadoop's line reader does: the files are
//! taken as one run of bytes, in order, cut into N equal ranges; a line belongs to the range
//! in which it starts. A worker seeks to its range's start in each file it overlaps, skips to
//! the next line start (unless the byte before is a newline), and reads the lines that start
//! before the range's end, the last one to its end. Only to number lines as the whole file
//! does, it counts the newlines before its range, without parsing them. Stdin, pipes and
//! compressed files, which cannot be entered in the middle, are read whole and keep every
//! N-th record.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use tokio_util::sync::CancellationToken;

use crate::cli::Shard;
use crate::input::decode::is_compressed;

/// How often a reader waiting on an idle pipe or terminal looks for the order to stop.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// An input, open and ready to read.
pub struct Source {
    name: Arc<str>,
    file: File,
    /// Whether a read may wait for data (a pipe, a terminal), rather than only for a disk.
    may_wait: bool,
    /// Its size, when it is a regular file.
    size: Option<u64>,
    /// Whether it may be read from any offset: a file named on the command line (stdin may
    /// be a file some of which was read before).
    named: bool,
    /// The part of it this worker reads.
    pub share: Share,
}

/// The part of a source a worker reads (--shard).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// All of it.
    Whole,
    /// The lines that start at a byte offset in `start..end`.
    Bytes { start: u64, end: u64 },
    /// Every record whose number (from 0, in this source) is `index` modulo `count`.
    Every { index: u64, count: u64 },
}

/// Where a slice's lines begin (the source is left at its first line): that line's number,
/// and how many bytes from there hold starts of its lines.
pub struct Entered {
    pub first_line: u64,
    pub length: u64,
}

/// The inputs of a run, open, in order.
pub struct Sources {
    pub list: Vec<Source>,
}

impl Sources {
    /// Their total size (of the shares read), when every one is a regular file.
    pub fn size(&self) -> Option<u64> {
        self.list
            .iter()
            .map(|s| match s.share {
                Share::Bytes { start, end } => Some(end - start),
                _ => s.size,
            })
            .sum()
    }

    /// Cuts the sources into `shard`'s share: byte ranges of the plain regular files,
    /// every N-th record of the others.
    fn share(&mut self, shard: Shard) {
        let every = Share::Every {
            index: shard.index,
            count: shard.count,
        };
        let sliceable: Vec<bool> = self.list.iter().map(Source::sliceable).collect();
        let total: u64 = self
            .list
            .iter()
            .zip(&sliceable)
            .filter(|(_, sliceable)| **sliceable)
            .filter_map(|(s, _)| s.size)
            .sum();
        // The range's bounds in the run of all sliceable files' bytes.
        let bound = |k: u64| (u128::from(total) * u128::from(k) / u128::from(shard.count)) as u64;
        let (from, to) = (bound(shard.index), bound(shard.index + 1));
        let mut offset = 0;
        for (source, sliceable) in self.list.iter_mut().zip(sliceable) {
            let Some(size) = source.size.filter(|_| sliceable) else {
                source.share = every;
                continue;
            };
            let start = from.clamp(offset, offset + size) - offset;
            let end = to.clamp(offset, offset + size) - offset;
            source.share = Share::Bytes { start, end };
            offset += size;
        }
    }
}

impl Source {
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its whole size, when it is a regular file.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// This source, read until `stop` is cancelled.
    pub fn stoppable(self, stop: &CancellationToken) -> Stoppable<'_> {
        Stoppable { source: self, stop }
    }

    /// Whether it can be read from the middle: a regular file named on the command line, not
    /// compressed.
    fn sliceable(&self) -> bool {
        let mut first = [0; 8];
        if !self.named || self.size.is_none() {
            return false;
        }
        let read = self.file.read_at(&mut first, 0).unwrap_or(0);
        !is_compressed(&first[..read])
    }

    /// Seeks to the first line that starts in the source's byte range (after `start`, or at
    /// it when the byte before is a newline) and counts the lines before it; nothing when the
    /// range holds no line start. Reads stop (with an error) once `stop` is cancelled.
    pub fn enter(&mut self, stop: &CancellationToken) -> io::Result<Option<Entered>> {
        let Share::Bytes { start, end } = self.share else {
            return Ok(Some(Entered {
                first_line: 1,
                length: u64::MAX,
            }));
        };
        if start >= end {
            return Ok(None);
        }
        // The first line start after `start - 1`, and the newlines before it, found a buffer at
        // a time: the line that holds byte `start - 1` belongs to the range before.
        let mut newlines = 0;
        let mut at = 0;
        let mut buffer = vec![0; 1 << 20];
        let before = start.saturating_sub(1);
        let first = loop {
            if start == 0 {
                break 0;
            }
            if stop.is_cancelled() {
                return Err(io::Error::other(Stopping));
            }
            let read = self.file.read_at(&mut buffer, at)?;
            if read == 0 {
                return Ok(None);
            }
            let read = &buffer[..read];
            // Bytes of this buffer before `start - 1`, where newlines are only counted.
            let counted = read.len().min(before.saturating_sub(at) as usize);
            newlines += memchr::memchr_iter(b'\n', &read[..counted]).count() as u64;
            if let Some(newline) = memchr::memchr(b'\n', &read[counted..]) {
                newlines += 1;
                break at + (counted + newline) as u64 + 1;
            }
            at += read.len() as u64;
        };
        if first >= end {
            return Ok(None);
        }
        self.file.seek(io::SeekFrom::Start(first))?;
        Ok(Some(Entered {
            first_line: newlines + 1,
            length: end - first,
        }))
    }
}

/// Opens each of `inputs` ('-' or none: stdin) now, so that a missing or unreadable input is
/// found before anything is sent or any output is touched.
/// With `shard`, each is cut to this worker's share.
pub fn open(inputs: &[PathBuf], shard: Option<Shard>) -> anyhow::Result<Sources> {
    let list = if inputs.is_empty() {
        vec![stdin()?]
    } else {
        inputs
            .iter()
            .map(|path| open_one(path))
            .collect::<anyhow::Result<_>>()?
    };
    let mut sources = Sources { list };
    if let Some(shard) = shard {
        sources.share(shard);
    }
    Ok(sources)
}

/// `path` ('-': stdin), opened.
fn open_one(path: &Path) -> anyhow::Result<Source> {
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
        size: meta.is_file().then_some(meta.len()),
        file,
        named: true,
        share: Share::Whole,
    })
}

/// Standard input, read through a descriptor of its own: no buffer but ours holds its bytes.
fn stdin() -> anyhow::Result<Source> {
    let file = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| anyhow!("cannot read standard input: {e}"))?;
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    Ok(Source {
        name: Arc::from("<stdin>"),
        file,
        may_wait: size.is_none(),
        size,
        named: false,
        share: Share::Whole,
    })
}

/// A source whose reads give up, without taking any byte, once the run is stopping; a read
/// that may wait for data waits in short steps, to notice it.
pub struct Stoppable<'a> {
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

/// Whether a read failed because the run is stopping.
pub fn is_stopping(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<Stopping>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_or_a_directory_is_named() {
        let missing = PathBuf::from("/no/such/file.jsonl");
        let err = open(&[missing], None).err().unwrap().to_string();
        assert!(
            err.starts_with("cannot open /no/such/file.jsonl: "),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = open(&[dir.path().to_owned()], None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(" is a directory; give the files in it"),
            "{err}"
        );
    }

    #[test]
    fn sources_know_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "1\n2\n").unwrap();
        std::fs::write(&b, "3\n").unwrap();
        assert_eq!(open(&[a.clone(), b], None).unwrap().size(), Some(6));
        assert_eq!(open(&[a, PathBuf::from("-")], None).unwrap().size(), None);
    }

    /// Byte ranges over two files: every line starts in exactly one shard's range, and each
    /// shard's first line is numbered as in its file.
    #[test]
    fn byte_ranges_give_each_line_to_one_shard() {
        let dir = tempfile::tempdir().unwrap();
        let texts = [("a", "1\n22\n333\n4444\n"), ("b", "55555\n666666")];
        let mut paths = Vec::new();
        let mut every_start = Vec::new();
        for (name, text) in texts {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1));
            every_start.extend(starts.filter(|&s| s < text.len()).map(|s| (name, s as u64)));
            paths.push(path);
        }
        let stop = CancellationToken::new();
        for count in 1..=12 {
            let mut starts = Vec::new();
            for index in 0..count {
                let shard = Some(Shard { index, count });
                for mut source in open(&paths, shard).unwrap().list {
                    let name = source.name.rsplit('/').next().unwrap().to_owned();
                    let Some(entered) = source.enter(&stop).unwrap() else {
                        continue;
                    };
                    let at = source.file.stream_position().unwrap();
                    let text = texts.iter().find(|(n, _)| *n == name).unwrap().1;
                    let before = &text[..at as usize];
                    assert_eq!(entered.first_line, before.matches('\n').count() as u64 + 1);
                    for &(file, start) in &every_start {
                        if file == name && start >= at && start - at < entered.length {
                            starts.push((file, start));
                        }
                    }
                }
            }
            starts.sort();
            assert_eq!(starts, every_start, "{count} shards");
        }
    }
}
