//! What an interrupted run already wrote (--resume), read from its output: how many lines
//! (ordered output), or which records they answer (tagged output: file and line; OpenAI
//! batch output: custom_id), so that the run goes on with the others.
//!
//! Memory stays small: one bit per line number of each input file named in tags, or one
//! sorted 64-bit hash per custom_id (80 MB for 10 million).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::anyhow;
use serde::Deserialize;

use crate::input::Record;
use crate::output::complete_lines;
use crate::wire::{Codec, id_hash as hash};

/// How the output says which records are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matching {
    /// By position: the output's first N lines answer the input's first N records.
    Count,
    /// By {"file", "line"} tags (--tag).
    Tags,
    /// By the custom_id of OpenAI batch output lines.
    Ids,
}

/// The records an earlier run answered.
pub enum Done {
    /// The first this many records.
    First(u64),
    /// These lines of these files, and how many there are.
    Lines {
        files: HashMap<String, Vec<u64>>,
        count: u64,
    },
    /// The records whose id hashes to one of these (sorted).
    Ids(Vec<u64>),
}

impl Done {
    /// Nothing done: a run that starts afresh.
    pub fn nothing() -> Done {
        Done::First(0)
    }

    /// How many records the output answers.
    pub fn count(&self) -> u64 {
        match self {
            Done::First(n) => *n,
            Done::Lines { count, .. } => *count,
            Done::Ids(ids) => ids.len() as u64,
        }
    }

    /// Whether `record`, the `read`th record of the input (from 0), is answered already.
    pub fn has(&self, record: &Record, read: u64, codec: &Codec) -> bool {
        match self {
            Done::First(n) => read < *n,
            Done::Lines { files, .. } => files
                .get(&*record.at.source)
                .is_some_and(|bits| bit(bits, record.at.line)),
            Done::Ids(ids) => codec
                .id(&record.json)
                .is_some_and(|id| ids.binary_search(&hash(id)).is_ok()),
        }
    }
}

/// An input of the run as tags name it, and how many lines it may have at most (a line takes
/// a byte at least; an input of unknown size, stdin say, is taken to have at most 2^32).
pub struct Input<'a> {
    pub name: &'a str,
    pub size: Option<u64>,
}

impl Input<'_> {
    fn most_lines(&self) -> u64 {
        self.size.map_or(1 << 32, |size| size + 1)
    }
}

/// What `path` (the output, kept to its complete lines) says is done, read as `matching`
/// says, for a run that reads `inputs`. A missing file says nothing is. Tags that name
/// another input, or a line past an input's end, are refused: the output of another input.
pub fn done(path: &Path, matching: Matching, inputs: &[Input]) -> anyhow::Result<Done> {
    let lines = complete_lines(path)?;
    if matching == Matching::Count || lines == 0 {
        return Ok(Done::First(lines));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow!("cannot open {} to resume: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::new();
    let mut files: HashMap<String, Vec<u64>> = HashMap::new();
    let mut ids = Vec::new();
    let mut count = 0;
    for number in 1..=lines {
        line.clear();
        reader
            .read_until(b'\n', &mut line)
            .map_err(|e| anyhow!("cannot read {} to resume: {e}", path.display()))?;
        let unmatched = |what: &str| {
            anyhow!(
                "--resume: line {number} of {} {what}, so it cannot be matched to its record; \
                 was it written by another kind of run?",
                path.display()
            )
        };
        match matching {
            Matching::Tags => {
                let tag: Tag = serde_json::from_slice(&line)
                    .map_err(|_| unmatched("has no \"file\" and \"line\" tag (--tag)"))?;
                let foreign = || {
                    anyhow!(
                        "--resume: {} holds results for line {} of {}, which this run does not \
                         read; is it the output of another input?",
                        path.display(),
                        tag.line,
                        tag.file
                    )
                };
                let input = inputs
                    .iter()
                    .find(|i| i.name == tag.file)
                    .ok_or_else(foreign)?;
                if tag.line > input.most_lines() {
                    return Err(foreign());
                }
                let bits = files.entry(tag.file.into_owned()).or_default();
                if !bit(bits, tag.line) {
                    set(bits, tag.line);
                    count += 1;
                }
            }
            Matching::Ids => {
                let answer: Answer = serde_json::from_slice(&line).map_err(|_| {
                    unmatched("is not an OpenAI batch output line with a custom_id")
                })?;
                if let Some(id) = answer.custom_id {
                    ids.push(hash(&id));
                }
            }
            Matching::Count => {}
        }
    }
    Ok(match matching {
        Matching::Tags => Done::Lines { files, count },
        _ => {
            ids.sort_unstable();
            ids.dedup();
            Done::Ids(ids)
        }
    })
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(borrow)]
    file: Cow<'a, str>,
    line: u64,
}

#[derive(Deserialize)]
struct Answer<'a> {
    /// Null for a line that was no request (its record fails again).
    #[serde(borrow)]
    custom_id: Option<Cow<'a, str>>,
}

fn bit(bits: &[u64], line: u64) -> bool {
    bits.get((line / 64) as usize)
        .is_some_and(|word| word & (1 << (line % 64)) != 0)
}

fn set(bits: &mut Vec<u64>, line: u64) {
    let word = (line / 64) as usize;
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    bits[word] |= 1 << (line % 64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_bits_are_kept_per_file() {
        let mut bits = Vec::new();
        for line in [1, 63, 64, 1000] {
            set(&mut bits, line);
        }
        assert!(bit(&bits, 1) && bit(&bits, 63) && bit(&bits, 64) && bit(&bits, 1000));
        assert!(!bit(&bits, 2) && !bit(&bits, 999) && !bit(&bits, 1_000_000));
        assert_eq!(bits.len(), 16);
    }

    #[test]
    fn tagged_and_id_outputs_say_what_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(
            &path,
            "{\"file\":\"a.jsonl\",\"line\":3,\"result\":[1]}\n\
             {\"file\":\"b.jsonl\",\"line\":1,\"result\":null}\n\
             {\"file\":\"a.jsonl\",\"line\":3,\"result\":[1]}\n\
             {\"file\":\"a.jsonl\",\"line\":9,\"res",
        )
        .unwrap();
        let input = |name| Input {
            name,
            size: Some(100),
        };
        let other = done(&path, Matching::Tags, &[input("a.jsonl")])
            .err()
            .unwrap();
        assert!(
            other
                .to_string()
                .contains("line 1 of b.jsonl, which this run does not read")
        );
        let short = [
            input("a.jsonl"),
            Input {
                name: "b.jsonl",
                size: Some(0),
            },
        ];
        assert!(done(&path, Matching::Tags, &short).is_ok());
        let shorter = [
            Input {
                name: "a.jsonl",
                size: Some(1),
            },
            input("b.jsonl"),
        ];
        assert!(done(&path, Matching::Tags, &shorter).is_err());
        let done = done(&path, Matching::Tags, &[input("a.jsonl"), input("b.jsonl")]).unwrap();
        assert_eq!(done.count(), 2);
        // The partial line is gone from the file.
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);

        std::fs::write(
            &path,
            "{\"id\":\"x\",\"custom_id\":\"r1\"}\n{\"custom_id\":\"r2\"}\n",
        )
        .unwrap();
        let Done::Ids(ids) = super::done(&path, Matching::Ids, &[]).unwrap() else {
            panic!("ids expected");
        };
        assert_eq!(ids.len(), 2);
        assert!(ids.binary_search(&hash("r2")).is_ok());
        assert!(super::done(&path, Matching::Tags, &[]).is_err());
    }
}
