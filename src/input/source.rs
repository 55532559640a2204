//! The inputs, opened before anything is sent or written: a file or stdin, its name, and its
//! size when it is a regular file, which the progress display measures against.
//! Reads give up, taking nothing more, once the run is stopping. (Byte-range shards belong
//! here, as wrappers of a source; decoders are in `decode.rs`.)

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use tokio_util::sync::CancellationToken;

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
}

/// The inputs of a run, open, in order.
pub struct Sources {
    pub list: Vec<Source>,
}

impl Sources {
    /// Their total size, when every one is a regular file.
    pub fn size(&self) -> Option<u64> {
        self.list.iter().map(|s| s.size).sum()
    }
}

impl Source {
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// This source, read until `stop` is cancelled.
    pub fn stoppable(self, stop: &CancellationToken) -> Stoppable<'_> {
        Stoppable { source: self, stop }
    }
}

/// Opens each of `inputs` ('-' or none: stdin) now, so that a missing or unreadable input is
/// found before anything is sent or any output is touched.
pub fn open(inputs: &[PathBuf]) -> anyhow::Result<Sources> {
    let list = if inputs.is_empty() {
        vec![stdin()?]
    } else {
        inputs
            .iter()
            .map(|path| open_one(path))
            .collect::<anyhow::Result<_>>()?
    };
    Ok(Sources { list })
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

    #[test]
    fn sources_know_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "1\n2\n").unwrap();
        std::fs::write(&b, "3\n").unwrap();
        assert_eq!(open(&[a.clone(), b]).unwrap().size(), Some(6));
        assert_eq!(open(&[a, PathBuf::from("-")]).unwrap().size(), None);
    }
}
