//! Tells the files a run reads from those it writes by what they are (device and inode), not
//! by how they are named: no file abatch writes may be one it reads, or another one it writes.
//! A hard link, a path through `..`, a symbolic link or stdin redirected from the file all name
//! the same file.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::output::Files;

/// What a file is, whatever it is called.
#[derive(Debug, PartialEq, Eq)]
enum Identity {
    /// An existing file.
    Inode { device: u64, inode: u64 },
    /// A file not yet created: its directory, resolved, and its name.
    Path(PathBuf),
}

/// A file the run reads or writes, and how to name it in a message.
struct Named {
    name: String,
    identity: Identity,
}

/// Checks that no file of `files` (nor the result `cache`) is one of `inputs` or another of
/// them, nor stdout one of `inputs`; says which two clash when some do.
pub fn check(inputs: &[PathBuf], files: &Files, cache: Option<&Path>) -> Result<(), String> {
    let mut read = Vec::new();
    let stdin_read = inputs.is_empty() || inputs.iter().any(|p| p.as_os_str() == "-");
    if stdin_read {
        read.extend(regular_stdio(io::stdin().as_fd(), "standard input"));
    }
    for input in inputs.iter().filter(|p| p.as_os_str() != "-") {
        read.extend(named(input));
    }
    let flags = [
        ("--output", &files.output),
        ("--errors", &files.errors),
        ("--stats", &files.stats),
    ];
    // A dry run writes none of them.
    let mut written: Vec<(String, Named)> = flags
        .into_iter()
        .filter(|_| !files.dry_run)
        .filter_map(|(flag, path)| {
            let file = named(path.as_deref()?)?;
            Some((format!("{flag} {}", file.name), file))
        })
        .collect();
    // Written to, or (in a dry run) read as a database: never an input or an output.
    if let Some(file) = cache.and_then(named) {
        written.push((format!("--cache {}", file.name), file));
    }
    if files.output.is_none() || files.dry_run {
        if let Some(stdout) = regular_stdio(io::stdout().as_fd(), "standard output") {
            written.push(("standard output".into(), stdout));
        }
    }
    for (i, (what, file)) in written.iter().enumerate() {
        if let Some(input) = read.iter().find(|r| r.identity == file.identity) {
            let also = if input.name == file.name {
                "also an input".to_string()
            } else {
                format!("also an input ({})", input.name)
            };
            return Err(format!(
                "{what} is {also}; writing it would destroy the input before it is read"
            ));
        }
        if let Some((other, _)) = written[..i]
            .iter()
            .find(|(_, earlier)| earlier.identity == file.identity)
        {
            return Err(format!(
                "{other} and {what} are the same file; each needs a file of its own"
            ));
        }
    }
    Ok(())
}

fn named(path: &Path) -> Option<Named> {
    Some(Named {
        name: path.display().to_string(),
        identity: identity(path)?,
    })
}

fn identity(path: &Path) -> Option<Identity> {
    match fs::metadata(path) {
        Ok(meta) => Some(Identity::Inode {
            device: meta.dev(),
            inode: meta.ino(),
        }),
        Err(_) => {
            let parent = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            let directory = fs::canonicalize(parent).ok()?;
            Some(Identity::Path(directory.join(path.file_name()?)))
        }
    }
}

/// stdin or stdout, when it is redirected from or to a regular file.
fn regular_stdio(fd: std::os::fd::BorrowedFd, name: &str) -> Option<Named> {
    let meta = File::from(fd.try_clone_to_owned().ok()?).metadata().ok()?;
    meta.is_file().then(|| Named {
        name: name.into(),
        identity: Identity::Inode {
            device: meta.dev(),
            inode: meta.ino(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_one_file_share_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.jsonl");
        std::fs::write(&data, "1\n").unwrap();
        let link = dir.path().join("link.jsonl");
        std::fs::hard_link(&data, &link).unwrap();
        let dotted = dir.path().join(".").join("data.jsonl");
        assert_eq!(identity(&data), identity(&link));
        assert_eq!(identity(&data), identity(&dotted));
        let new = dir.path().join("new.jsonl");
        let new_dotted = dir.path().join("sub").join("..").join("new.jsonl");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(identity(&new), identity(&new_dotted));
        assert_ne!(identity(&new), identity(&data));
    }
}
