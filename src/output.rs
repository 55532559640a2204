//! Writes results as JSON lines, on a thread of its own: each result compacted onto one line,
//! each batch written whole, and the output flushed whenever the writer has caught up.
//!
//! A thread of its own, because a write that blocks (a slow reader, a full pipe) must not hold
//! up the requests in flight, and a pipe that stops the writer must stop the run quietly.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::anyhow;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

/// One batch's results, in record order.
pub type Results = Vec<Box<RawValue>>;

/// Batches that may wait for the writer before the pipe waits too.
const QUEUED: usize = 16;
const WRITE_BUFFER: usize = 64 * 1024;

pub struct Output {
    batches: mpsc::Sender<Results>,
    done: oneshot::Receiver<io::Result<()>>,
    name: String,
}

/// Whether anyone still reads what is written.
#[derive(Debug, PartialEq, Eq)]
pub enum Reader {
    Listening,
    /// The reader closed the pipe (as `head` does): a reason to stop quietly, not an error.
    Gone,
}

impl Output {
    /// Standard output, or `path` created (or truncated) now, before anything is sent.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Output> {
        let (file, name) = match path {
            None => (None, "standard output".to_string()),
            Some(path) => {
                let file = File::create(path)
                    .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))?;
                (Some(file), path.display().to_string())
            }
        };
        let (batches, queue) = mpsc::channel(QUEUED);
        let (report, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("abatch-output".into())
            .spawn(move || {
                let written = match file {
                    Some(file) => write_lines(file, queue),
                    None => write_lines(io::stdout().lock(), queue),
                };
                let _ = report.send(written);
            })
            .map_err(|e| anyhow!("cannot start the output writer: {e}"))?;
        Ok(Output {
            batches,
            done,
            name,
        })
    }

    /// Queues one batch's results for writing; waits while the writer is behind.
    pub async fn write(&self, results: Results) -> Reader {
        match self.batches.send(results).await {
            Ok(()) => Reader::Listening,
            // The writer stopped: finish() tells why.
            Err(_) => Reader::Gone,
        }
    }

    /// Waits until everything queued is written and flushed.
    pub async fn finish(self) -> anyhow::Result<Reader> {
        drop(self.batches);
        match self.done.await {
            Ok(Ok(())) => Ok(Reader::Listening),
            Ok(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Reader::Gone),
            Ok(Err(e)) => Err(anyhow!("cannot write to {}: {e}", self.name)),
            Err(_) => Err(anyhow!("the writer of {} stopped unexpectedly", self.name)),
        }
    }
}

fn write_lines(sink: impl Write, mut queue: mpsc::Receiver<Results>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, sink);
    let mut lines = Vec::new();
    while let Some(results) = queue.blocking_recv() {
        lines.clear();
        for result in &results {
            compact_into(result.get(), &mut lines);
            lines.push(b'\n');
        }
        out.write_all(&lines)?;
        if queue.is_empty() {
            out.flush()?;
        }
    }
    out.flush()
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
