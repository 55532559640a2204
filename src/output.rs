//! Writes results as JSON lines: each result compacted onto one line, each batch written whole
//! and flushed as soon as it may be emitted.

use std::io;
use std::path::Path;
use std::pin::Pin;

use anyhow::anyhow;
use serde_json::value::RawValue;
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub struct Output {
    sink: Pin<Box<dyn AsyncWrite + Send>>,
    name: String,
    lines: Vec<u8>,
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
    pub async fn open(path: Option<&Path>) -> anyhow::Result<Output> {
        let Some(path) = path else {
            return Ok(Output::new(
                Box::pin(tokio::io::stdout()),
                "standard output".into(),
            ));
        };
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))?;
        Ok(Output::new(Box::pin(file), path.display().to_string()))
    }

    fn new(sink: Pin<Box<dyn AsyncWrite + Send>>, name: String) -> Output {
        Output {
            sink,
            name,
            lines: Vec::new(),
        }
    }

    /// Writes one line per result and flushes, so a reader sees each batch as it completes.
    pub async fn write(&mut self, results: &[Box<RawValue>]) -> anyhow::Result<Reader> {
        self.lines.clear();
        for result in results {
            compact_into(result.get(), &mut self.lines);
            self.lines.push(b'\n');
        }
        let written = async {
            self.sink.write_all(&self.lines).await?;
            self.sink.flush().await
        };
        match written.await {
            Ok(()) => Ok(Reader::Listening),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Reader::Gone),
            Err(e) => Err(anyhow!("cannot write to {}: {e}", self.name)),
        }
    }
}

/// Appends `json` (valid JSON) without the whitespace between its tokens, so that a result
/// pretty-printed by a server still fits on one line. Strings and numbers keep their text.
fn compact_into(json: &str, out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json.as_bytes() {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(byte);
            in_string = byte == b'"';
        }
    }
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
    }
}
