//! One input's bytes (decompressed, see `decode.rs`) → lines → records with their file and
//! line: a byte order mark skipped, blank lines counted but skipped (or kept as blank records
//! under --aligned), CRLF accepted, each line checked to be one JSON value (one that is not
//! becomes an invalid record with its raw text), --max-line-bytes enforced, and, for a shard
//! that keeps every N-th record, only its own kept; a byte-range shard starts and stops where
//! its source says (`Source::enter`).

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use anyhow::anyhow;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::decode::{self, Format};
use super::source::{Share, Source, is_stopping};
use super::{Location, Pending, Record};

const READ_BUFFER: usize = 256 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why reading one input ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Its end was reached.
    Input,
    /// The run is stopping: read no further input.
    Stopped,
    /// Nobody listens any more.
    Gone,
}

/// Reads one input, handing records over whenever the next read could block.
pub fn read_one(
    mut source: Source,
    max_line: usize,
    keep_blank: bool,
    stop: &CancellationToken,
    pending: &mut Pending,
) -> anyhow::Result<Ended> {
    let name = source.name().clone();
    let share = source.share;
    // Of a byte-range shard, where its lines begin and how far they may start.
    let entered = match source.enter(stop) {
        Ok(Some(entered)) => entered,
        Ok(None) => return Ok(Ended::Input),
        Err(e) if is_stopping(&e) => return Ok(Ended::Stopped),
        Err(e) => return Err(anyhow!("{name}: cannot read: {e}")),
    };
    let decoded = match share {
        Share::Bytes { .. } => decode::plain(source.stoppable(stop)),
        _ => decode::decoded(source.stoppable(stop))
            .map_err(|e| anyhow!("{name}:1: cannot read: {e}"))?,
    };
    let format = decoded.format;
    let mut reader = BufReader::with_capacity(READ_BUFFER, decoded.text);
    let mut line = Vec::new();
    let mut number = entered.first_line - 1;
    // Records met so far, for a shard that keeps every N-th.
    let mut met = 0u64;
    let ours = |met: &mut u64| match share {
        Share::Every { index, count } => {
            *met += 1;
            (*met - 1) % count == index
        }
        _ => true,
    };
    let mut first_value = entered.first_line == 1;
    // Bytes taken from this input: each record counts those since the record before it, blank
    // lines, a byte order mark and line endings included, for the progress display; of a
    // compressed input, the compressed bytes, which its size on disk measures.
    let mut bytes = Bytes {
        compressed: (format != Format::Plain).then_some(decoded.taken),
        ..Bytes::default()
    };
    // A read of line `number` failed: of a compressed input, most likely a corrupt or
    // truncated stream.
    let failed = |e: io::Error, number: u64| match format {
        _ if format == Format::Plain || decode::is_unreadable(&e) => {
            anyhow!("{name}:{number}: cannot read: {e}")
        }
        _ => {
            let place = match number - 1 {
                0 => "before its first line".to_string(),
                last => format!("after line {last}"),
            };
            anyhow!(
                "{name}: cannot decompress ({format}) {place}: {e}; the file may be truncated \
                 or corrupt"
            )
        }
    };
    loop {
        let next_read_may_block = memchr::memchr(b'\n', reader.buffer()).is_none();
        if (pending.is_full() || next_read_may_block) && !pending.hand_over() {
            return Ok(Ended::Gone);
        }
        if bytes.taken >= entered.length {
            // The next line starts past this shard's range.
            return Ok(Ended::Input);
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
                if !is_blank(&line) && ours(&mut met) {
                    bytes.taken(line.len());
                    let problem = "the run stopped before the rest of this line was read";
                    let record = invalid(&line, at, problem.into(), bytes.record());
                    pending.push(Ok(record), line.len());
                }
                return Ok(Ended::Stopped);
            }
            Err(e) => return Err(failed(e, number)),
        };
        if read == 0 {
            return Ok(Ended::Input);
        }
        bytes.taken(read);
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
                true => Ok(0),
                false => skip_line(&mut reader),
            };
            bytes.taken(*skipped.as_ref().unwrap_or(&0));
            if ours(&mut met) {
                let record = invalid(kept, at.clone(), problem, bytes.record());
                pending.push(Ok(record), read);
            }
            match skipped {
                Ok(_) => continue,
                Err(e) if is_stopping(&e) => return Ok(Ended::Stopped),
                Err(e) => return Err(failed(e, at.line)),
            }
        }
        if is_blank(content) {
            if keep_blank && ours(&mut met) {
                let blank = Record {
                    json: RawValue::NULL.to_owned(),
                    at,
                    invalid: Some("a blank line".into()),
                    bytes: bytes.record(),
                    blank: true,
                    cache: None,
                };
                pending.push(Ok(blank), read);
            }
            continue;
        }
        if !ours(&mut met) {
            continue;
        }
        let record = match parse(content, first_value) {
            Ok(json) => {
                let record = Record {
                    json,
                    at,
                    invalid: None,
                    bytes: bytes.record(),
                    blank: false,
                    cache: None,
                };
                // A repeated id stops reading here, as an unreadable line does.
                pending.check(&record)?;
                record
            }
            Err(problem) => invalid(content, at, problem, bytes.record()),
        };
        first_value = false;
        pending.push(Ok(record), read);
    }
}

/// Bytes taken from an input, and those already counted by a record.
#[derive(Default)]
struct Bytes {
    taken: u64,
    counted: u64,
    /// Of a compressed input, the compressed bytes taken, which count instead.
    compressed: Option<Rc<Cell<u64>>>,
}

impl Bytes {
    fn taken(&mut self, n: usize) {
        self.taken += n as u64;
    }

    /// The bytes a record stands for: those taken since the record before it.
    fn record(&mut self) -> u64 {
        let taken = self.compressed.as_ref().map_or(self.taken, |c| c.get());
        let since = taken - self.counted;
        self.counted = taken;
        since
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Reads and drops the rest of a line that is too long to keep; says how many bytes that was.
fn skip_line(reader: &mut impl BufRead) -> io::Result<usize> {
    let mut skipped = 0;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(skipped);
        }
        match memchr::memchr(b'\n', buffer) {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(skipped + end + 1);
            }
            None => {
                let len = buffer.len();
                reader.consume(len);
                skipped += len;
            }
        }
    }
}

/// An invalid record: the raw text of its line (invalid UTF-8 shown as U+FFFD), and why.
fn invalid(raw: &[u8], at: Location, problem: String, bytes: u64) -> Record {
    let text = String::from_utf8_lossy(raw);
    let json = serde_json::value::to_raw_value(&text).unwrap_or_else(|_| RawValue::NULL.to_owned());
    Record {
        json,
        at,
        invalid: Some(problem.into()),
        bytes,
        blank: false,
        cache: None,
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

    /// The records (or the error) reading `bytes` as a file gives.
    fn records_of(bytes: &[u8], max_line: usize) -> Vec<anyhow::Result<Record>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, bytes).unwrap();
        let mut chunks = Vec::new();
        let mut send = |chunk| {
            chunks.push(chunk);
            true
        };
        let mut pending = Pending::new(&mut send);
        let source = super::super::open(&[path], None)
            .unwrap()
            .list
            .pop()
            .unwrap();
        let result = read_one(
            source,
            max_line,
            false,
            &CancellationToken::new(),
            &mut pending,
        );
        if let Err(e) = result {
            pending.push(Err(e), 0);
        }
        pending.hand_over();
        chunks.into_iter().flatten().collect()
    }

    /// What reading `bytes` as a file gives: (line, text) for each record, and "file:line:
    /// problem" for an invalid one or an error.
    fn read_bytes(bytes: &[u8], max_line: usize) -> Vec<Result<(u64, String), String>> {
        records_of(bytes, max_line)
            .into_iter()
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
    fn records_count_every_byte_for_the_progress_display() {
        let text = "\u{feff}1\r\n\n  \n2\n";
        let bytes: Vec<u64> = records_of(text.as_bytes(), 100)
            .into_iter()
            .map(|r| r.unwrap().bytes)
            .collect();
        assert_eq!(bytes, [6, 6]);
        assert_eq!(bytes.iter().sum::<u64>(), text.len() as u64);
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
        let source = super::super::open(&[path], None)
            .unwrap()
            .list
            .pop()
            .unwrap();
        let ended = read_one(source, 100, false, &stop, &mut Pending::new(&mut send)).unwrap();
        assert_eq!(ended, Ended::Stopped);
        assert!(chunks.is_empty());
    }

    /// A compressed input's records stand for the compressed bytes, which its size on disk
    /// measures, so that the progress display's percentage stays true.
    #[test]
    fn records_of_a_compressed_input_count_its_compressed_bytes() {
        use super::super::decode::{Format, tests::compressed};
        let text: String = (0..3000).map(|i| format!("{{\"id\":{i}}}\n\n")).collect();
        for format in [Format::Gzip, Format::Zstd, Format::Bzip2, Format::Xz] {
            let data = compressed(text.as_bytes(), format);
            let records: Vec<Record> = records_of(&data, 1 << 20)
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(records.len(), 3000, "{format}");
            // Line numbers are those of the decompressed text, blank lines counted.
            assert_eq!(records[2999].at.line, 5999, "{format}");
            let bytes: u64 = records.iter().map(|r| r.bytes).sum();
            assert_eq!(bytes, data.len() as u64, "{format}");
        }
    }
}
