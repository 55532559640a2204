//! Compressed input, read as it is: each format on a file and on stdin, known by its first
//! bytes; line numbers of the decompressed text; a corrupt or truncated stream named.

use crate::common::*;

#[path = "../shared/compress.rs"]
pub mod compress;

#[derive(Clone, Copy, Debug)]
enum Format {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

const FORMATS: [Format; 4] = [Format::Gzip, Format::Zstd, Format::Bzip2, Format::Xz];

/// `text` compressed as `format`.
fn compressed(text: &[u8], format: Format) -> Vec<u8> {
    match format {
        Format::Gzip => compress::gzip(text),
        Format::Zstd => compress::zstd(text),
        Format::Bzip2 => compress::bzip2(text),
        Format::Xz => compress::xz(text),
    }
}

/// 300 records, a blank line after each, and an invalid one at line 201.
fn text() -> String {
    let mut text: String = (0..300).map(|id| format!("{{\"id\":{id}}}\n\n")).collect();
    text.insert_str(
        text.match_indices('\n').nth(199).map_or(0, |(i, _)| i + 1),
        "not json\n",
    );
    text
}

/// Each format, from a file (its name says nothing of it) and from stdin: every record
/// answered once, and the invalid line's dead letter names the decompressed text's line.
#[test]
fn each_format_is_read_from_a_file_and_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    for format in FORMATS {
        let data = compressed(text().as_bytes(), format);
        let path = dir.path().join(format!("{format:?}.jsonl"));
        std::fs::write(&path, &data).unwrap();
        for from_stdin in [false, true] {
            let server = quick_server();
            let mut cmd = abatch_to(&server);
            cmd.args(["--on-error", "skip", "-b", "7"]);
            if from_stdin {
                cmd.write_stdin(data.clone());
            } else {
                cmd.arg(&path);
            }
            let out = cmd.assert().code(3);
            let mut ids = echoed_ids(&out.get_output().stdout);
            ids.sort_unstable();
            assert_eq!(ids, (0..300).collect::<Vec<_>>(), "{format:?} {from_stdin}");
            let stderr = Stderr::of(&out.get_output().stderr);
            assert_eq!(stderr.dead.len(), 1, "{format:?}: {stderr:#?}");
            let letter = &stderr.dead[0];
            assert_eq!(letter["line"], 201, "{format:?}: {letter}");
            assert_eq!(letter["raw"], "not json", "{format:?}: {letter}");
            let file = if from_stdin {
                "<stdin>".to_string()
            } else {
                path.display().to_string()
            };
            assert_eq!(letter["file"], file.as_str(), "{format:?}: {letter}");
        }
    }
}

/// A gzip file of several members (as `cat a.gz b.gz` makes) is one text.
#[test]
fn gzip_members_one_after_another_are_read_in_turn() {
    let server = quick_server();
    let mut data = compressed(records(0..50).as_bytes(), Format::Gzip);
    data.extend(compressed(records(50..100).as_bytes(), Format::Gzip));
    let out = abatch_to(&server)
        .arg("--ordered")
        .write_stdin(data)
        .assert()
        .success();
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..100).collect::<Vec<_>>()
    );
}

/// A stream cut short stops the run (exit 1) with one line naming the file, the format and the
/// last line read; what came before it is still sent and written.
#[test]
fn a_truncated_stream_is_an_input_error_naming_the_file_and_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..20_000)
        .map(|id| format!("{{\"id\":{id},\"n\":{}}}\n", id * 7919 % 10007))
        .collect();
    for format in FORMATS {
        let data = compressed(text.as_bytes(), format);
        let path = dir.path().join("cut.jsonl.gz");
        std::fs::write(&path, &data[..data.len() / 2]).unwrap();
        let server = quick_server();
        let out = abatch_to(&server).arg(&path).assert().code(1);
        let stderr = Stderr::of(&out.get_output().stderr);
        let message = stderr
            .messages
            .iter()
            .find(|m| m.contains("cannot decompress"))
            .unwrap_or_else(|| panic!("{format:?}: {stderr:#?}"));
        let last = message
            .split("after line ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{format:?}: {message}"));
        assert!(
            message.contains(&path.display().to_string()),
            "{format:?}: {message}"
        );
        let written = echoed_ids(&out.get_output().stdout).len();
        assert!(
            last > 0 && last < 20_000 && written <= last,
            "{format:?}: {written} written, last line {last}: {message}"
        );
    }
}

/// abatch asks for compressed answers and reads each encoding the server picks: the results
/// are those of a plain answer, and --stats tells the bytes on the wire from the bytes they
/// stand for.
#[test]
fn compressed_answers_are_read_and_counted_on_the_wire_and_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    // Records that compress well, so the wire carries less than the answer holds.
    let input: String = (0..200)
        .map(|id| format!("{{\"id\":{id},\"text\":\"{}\"}}\n", "word ".repeat(20)))
        .collect();
    for encoding in [
        abatch_mock::Encoding::Gzip,
        abatch_mock::Encoding::Zstd,
        abatch_mock::Encoding::Br,
    ] {
        let server = server(Behavior {
            compress: Some(encoding),
            ..Behavior::default()
        });
        let out = abatch_to(&server)
            .args(["--ordered", "-b", "10", "--stats"])
            .arg(&stats)
            .write_stdin(input.clone())
            .assert()
            .success();
        assert_eq!(
            echoed_ids(&out.get_output().stdout),
            (0..200).collect::<Vec<_>>(),
            "{encoding:?}"
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 20, "{encoding:?}");
        for request in &requests {
            let accepted = request.headers["accept-encoding"].to_str().unwrap();
            assert_eq!(accepted, "gzip, zstd, br", "{encoding:?}");
        }
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        let received = &stats["requests"]["received_bytes"];
        let wire = received["wire"].as_u64().unwrap();
        let decompressed = received["decompressed"].as_u64().unwrap();
        assert!(
            wire > 0 && wire * 4 < decompressed,
            "{encoding:?}: {received}"
        );
    }
}

/// A small body that decompresses to more than --max-response-bytes fails its batch cleanly:
/// the records become dead letters that say why, and the run goes on with the next batch.
#[test]
fn a_decompression_bomb_fails_its_batch_and_nothing_else() {
    let server = server(Behavior {
        bomb: Some(16 << 20),
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args([
            "-b",
            "5",
            "--max-response-bytes",
            "1MiB",
            "--on-error",
            "skip",
        ])
        .write_stdin(records(0..10))
        .assert()
        .code(3);
    assert!(out.get_output().stdout.is_empty());
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(stderr.dead.len(), 10, "{stderr:#?}");
    let error = stderr.dead[0]["error"].as_str().unwrap();
    assert!(
        error.contains("decompresses to more than --max-response-bytes (1.0 MiB)"),
        "{error}"
    );
    assert_eq!(server.requests().len(), 2);
}
