//! --tag: each line says which record it answers, {"file", "line", "result"}, so that output
//! in completion order can be matched to its input and an interrupted run resumed from it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// The lines of `text`, sorted.
fn sorted_lines(text: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(text)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// The records the server was sent, as text, sorted.
fn sent_records(server: &MockServer) -> Vec<String> {
    let mut sent: Vec<String> = server
        .requests()
        .iter()
        .flat_map(|r| r.record_texts())
        .collect();
    sent.sort();
    sent
}

/// The (file, line) tag of an output line.
fn tag_of(line: &Value) -> (String, u64) {
    let file = line["file"]
        .as_str()
        .unwrap_or_else(|| panic!("no file in {line}"));
    let number = line["line"]
        .as_u64()
        .unwrap_or_else(|| panic!("no line in {line}"));
    (file.to_owned(), number)
}

/// The complete lines of `path` (a line cut short at its end left out).
fn complete_lines(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match text.rfind('\n') {
        Some(end) => text[..=end].to_owned(),
        None => String::new(),
    }
}

/// Waits until `path` holds at least `n` complete lines.
fn wait_for_lines(path: &Path, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lines = complete_lines(path).lines().count();
        if lines >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {lines} lines, not {n}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// abatch pointed at `server`, reading the files in `args`, as a child process.
fn spawn_on_files(server: &MockServer, args: &[&str]) -> Child {
    let mut child = spawn_to(server, args);
    drop(child.stdin.take());
    child
}

/// Each result of string, array and object records, over two files, is written as
/// {"file", "line", "result"}: the file as it was named, its line counted with blank lines.
/// Only the records themselves are sent.
#[test]
fn each_result_is_tagged_with_its_file_as_named_and_its_line() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.jsonl"),
        "\"text\"\n\n[1,2,3]\n{\"id\":\"a4\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.jsonl"),
        "\n{\"k\":[true]}\n\"b\"\n\n\n[]\n",
    )
    .unwrap();
    let out = abatch_to(&server)
        .current_dir(dir.path())
        .args(["--tag", "-b", "2", "-c", "2", "a.jsonl", "b.jsonl"])
        .assert()
        .success();
    let mut expected = vec![
        r#"{"file":"a.jsonl","line":1,"result":{"echo":"text"}}"#,
        r#"{"file":"a.jsonl","line":3,"result":{"echo":[1,2,3]}}"#,
        r#"{"file":"a.jsonl","line":4,"result":{"echo":{"id":"a4"}}}"#,
        r#"{"file":"b.jsonl","line":2,"result":{"echo":{"k":[true]}}}"#,
        r#"{"file":"b.jsonl","line":3,"result":{"echo":"b"}}"#,
        r#"{"file":"b.jsonl","line":6,"result":{"echo":[]}}"#,
    ];
    expected.sort();
    assert_eq!(sorted_lines(&out.get_output().stdout), expected);
    let mut records = vec![
        "\"text\"",
        "[1,2,3]",
        "{\"id\":\"a4\"}",
        "{\"k\":[true]}",
        "\"b\"",
        "[]",
    ];
    records.sort();
    assert_eq!(sent_records(&server), records, "the records, untagged");
}

/// Standard input is tagged "<stdin>", between files too, each source counting its own lines.
#[test]
fn standard_input_is_tagged_as_stdin() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, "{\"id\":1}\n\n{\"id\":3}\n").unwrap();
    let name = file.to_string_lossy().into_owned();
    let out = abatch_to(&server)
        .args(["--tag", "--ordered"])
        .arg(&file)
        .arg("-")
        .arg(&file)
        .write_stdin("\n\"x\"\n[0]\n")
        .assert()
        .success();
    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(
        lines,
        [
            json!({"file": name, "line": 1, "result": {"echo": {"id": 1}}}),
            json!({"file": name, "line": 3, "result": {"echo": {"id": 3}}}),
            json!({"file": "<stdin>", "line": 2, "result": {"echo": "x"}}),
            json!({"file": "<stdin>", "line": 3, "result": {"echo": [0]}}),
            json!({"file": name, "line": 1, "result": {"echo": {"id": 1}}}),
            json!({"file": name, "line": 3, "result": {"echo": {"id": 3}}}),
        ]
    );
    assert_eq!(sent_records(&server).len(), 6);
}

/// With --merge FIELD, the tagged result is the record with its result under FIELD.
#[test]
fn a_merged_record_is_the_tagged_result() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.jsonl"),
        "{\"id\":1}\n\n{\"id\":2,\"name\":\"x\"}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.jsonl"), "\n{\"id\":3}\n").unwrap();
    let out = abatch_to(&server)
        .current_dir(dir.path())
        .args(["--tag", "--merge", "out", "-b", "1", "a.jsonl", "b.jsonl"])
        .assert()
        .success();
    let mut expected = vec![
        r#"{"file":"a.jsonl","line":1,"result":{"id":1,"out":{"echo":{"id":1}}}}"#,
        r#"{"file":"a.jsonl","line":3,"result":{"id":2,"name":"x","out":{"echo":{"id":2,"name":"x"}}}}"#,
        r#"{"file":"b.jsonl","line":2,"result":{"id":3,"out":{"echo":{"id":3}}}}"#,
    ];
    expected.sort();
    assert_eq!(sorted_lines(&out.get_output().stdout), expected);
    assert_eq!(server.requests().len(), 3);
}

/// Under --on-error null, a record that failed is written as its tag with a null result; its
/// dead letter names the same file and line.
#[test]
fn a_failed_record_is_a_tagged_null() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("errors.jsonl");
    std::fs::write(
        dir.path().join("a.jsonl"),
        "{\"id\":0}\n\n{\"id\":2,\"mock\":{\"status\":400}}\n{\"id\":3}\n",
    )
    .unwrap();
    let out = abatch_to(&server)
        .current_dir(dir.path())
        .args(["--tag", "-b", "1", "--retries", "0", "--on-error", "null"])
        .arg("--errors")
        .arg(&errors)
        .arg("a.jsonl")
        .assert()
        .code(3);
    let mut expected = vec![
        r#"{"file":"a.jsonl","line":1,"result":{"echo":{"id":0}}}"#,
        r#"{"file":"a.jsonl","line":3,"result":null}"#,
        r#"{"file":"a.jsonl","line":4,"result":{"echo":{"id":3}}}"#,
    ];
    expected.sort();
    assert_eq!(sorted_lines(&out.get_output().stdout), expected);
    let letters = letters_in_file(&errors);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["file"], "a.jsonl");
    assert_eq!(letters[0]["line"], 3);
    assert_eq!(letters[0]["status"], 400);
    assert_eq!(server.requests().len(), 3);
}

/// An unordered tagged run killed outright (SIGKILL) resumes with --resume --tag: the output
/// ends with each record's line exactly once, and the second run sends only the records the
/// first run's output lacks.
#[test]
fn an_unordered_run_killed_outright_resumes_from_its_tags() {
    let slow = server(Behavior {
        latency: Some(Duration::from_millis(60)),
        latency_max: Some(Duration::from_millis(150)),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let first_file = dir.path().join("first.jsonl");
    let second_file = dir.path().join("second.jsonl");
    let first_name = first_file.to_string_lossy().into_owned();
    let second_name = second_file.to_string_lossy().into_owned();
    // Record id → its tag; a blank line now and then, so that lines are not ids.
    let mut tags: HashMap<u64, (String, u64)> = HashMap::new();
    for (file, name, ids) in [
        (&first_file, &first_name, 0..150u64),
        (&second_file, &second_name, 150..300),
    ] {
        let mut text = String::new();
        let mut line = 0;
        for id in ids {
            if id % 7 == 3 {
                text.push('\n');
                line += 1;
            }
            text.push_str(&format!("{{\"id\":{id}}}\n"));
            line += 1;
            tags.insert(id, (name.clone(), line));
        }
        std::fs::write(file, text).unwrap();
    }
    let all: BTreeSet<(String, u64)> = tags.values().cloned().collect();
    let out = dir.path().join("out.jsonl");
    let out_arg = out.to_string_lossy();

    let mut child = spawn_on_files(
        &slow,
        &[
            "--tag",
            "-b",
            "5",
            "-c",
            "3",
            "-q",
            "-o",
            &out_arg,
            &first_name,
            &second_name,
        ],
    );
    wait_for_lines(&out, 20);
    child.kill().unwrap();
    let status = exit_of(&mut child);
    assert_eq!(status.code(), None, "killed by a signal: {status:?}");
    let first = complete_lines(&out);
    let first_lines = json_lines(first.as_bytes());
    let done: BTreeSet<(String, u64)> = first_lines.iter().map(tag_of).collect();
    assert_eq!(done.len(), first_lines.len(), "no tag twice: {first}");
    assert!(
        done.len() < 300,
        "the run was killed after {} lines",
        done.len()
    );

    let healthy = quick_server();
    abatch_to(&healthy)
        .args(["--tag", "--resume", "-b", "5", "-o"])
        .arg(&out)
        .arg(&first_file)
        .arg(&second_file)
        .assert()
        .success();
    let after = std::fs::read_to_string(&out).unwrap();
    assert!(
        after.starts_with(&first),
        "the first run's lines are kept as they were"
    );
    let lines = json_lines(after.as_bytes());
    let tagged: BTreeSet<(String, u64)> = lines.iter().map(tag_of).collect();
    assert_eq!(lines.len(), 300, "one line per record");
    assert_eq!(tagged, all, "each record's tag once");
    for line in &lines {
        let id = line["result"]["echo"]["id"].as_u64().unwrap();
        assert_eq!(tags[&id], tag_of(line), "the tag names the record: {line}");
    }
    let sent: BTreeSet<(String, u64)> = sent_records(&healthy)
        .iter()
        .map(|text| {
            let record: Value = serde_json::from_str(text).unwrap();
            tags[&record["id"].as_u64().unwrap()].clone()
        })
        .collect();
    let missing: BTreeSet<(String, u64)> = all.difference(&done).cloned().collect();
    assert_eq!(
        sent, missing,
        "only the records the output lacked were sent"
    );
    assert_eq!(
        sent_records(&healthy).len(),
        missing.len(),
        "each sent once"
    );
}

/// --resume without --ordered, on output that does not say which record each line answers, is
/// a usage error (exit 2) that points to --tag; nothing is sent and the output is untouched.
#[test]
fn resume_of_untagged_unordered_output_is_refused_pointing_to_tag() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, "{\"echo\":{\"id\":0}}\n").unwrap();
    let result = abatch_to(&server)
        .args(["--resume", "-o"])
        .arg(&out)
        .write_stdin(records(0..3))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&result.get_output().stderr).into_owned();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("--tag"), "{stderr}");
    assert!(server.requests().is_empty());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "{\"echo\":{\"id\":0}}\n"
    );
}

/// --resume --tag over an output that cannot be matched to the input stops (exit 1) naming
/// what is wrong: an untagged line (by its line number in the output), or tags that name a
/// file this run does not read. Nothing is sent and the output is untouched.
#[test]
fn resume_with_tag_refuses_an_output_it_cannot_match() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, records(0..3)).unwrap();
    let other = dir.path().join("other.jsonl");
    let out = dir.path().join("out.jsonl");
    let tagged = |file: &Path| json!({"file": file.to_string_lossy(), "line": 1, "result": {"echo": {"id": 0}}});
    for (written, said) in [
        (
            format!("{}\n{{\"echo\":{{\"id\":1}}}}\n", tagged(&input)),
            format!(
                "--resume: line 2 of {} has no \"file\" and \"line\" tag",
                out.display()
            ),
        ),
        (
            format!("{}\n", tagged(&other)),
            format!(
                "holds results for line 1 of {}, which this run does not read",
                other.display()
            ),
        ),
    ] {
        std::fs::write(&out, &written).unwrap();
        let server = quick_server();
        let result = abatch_to(&server)
            .args(["--tag", "--resume", "-o"])
            .arg(&out)
            .arg(&input)
            .assert()
            .code(1);
        let stderr = String::from_utf8_lossy(&result.get_output().stderr).into_owned();
        assert!(stderr.contains(&said), "{stderr}");
        assert!(server.requests().is_empty(), "nothing sent");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), written);
    }
}

/// --resume --tag cuts a line left half-written at the output's end: the complete lines stay
/// as they were, the half-written one is gone, and its record is sent again with the others
/// not yet answered.
#[test]
fn resume_with_tag_cuts_a_partial_last_line_and_sends_its_record_again() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, records(0..10)).unwrap();
    let name = input.to_string_lossy().into_owned();
    let complete: String = [2u64, 0, 1]
        .iter()
        .map(|&id| {
            format!(
                "{}\n",
                json!({"file": name, "line": id + 1, "result": {"echo": {"id": id}}})
            )
        })
        .collect();
    let out = dir.path().join("out.jsonl");
    std::fs::write(
        &out,
        format!("{complete}{{\"file\":\"{name}\",\"line\":4,\"res"),
    )
    .unwrap();
    abatch_to(&server)
        .args(["--tag", "--resume", "-o"])
        .arg(&out)
        .arg(&input)
        .assert()
        .success();
    let after = std::fs::read_to_string(&out).unwrap();
    assert!(after.starts_with(&complete), "{after}");
    assert!(after.ends_with('\n'), "{after}");
    let lines = json_lines(after.as_bytes());
    let tags: BTreeSet<(String, u64)> = lines.iter().map(tag_of).collect();
    assert_eq!(lines.len(), 10, "{after}");
    assert_eq!(tags, (1..=10).map(|line| (name.clone(), line)).collect());
    let sent: Vec<usize> = echoed_ids(
        sent_records(&server)
            .iter()
            .map(|r| format!("{{\"echo\":{r}}}\n"))
            .collect::<String>()
            .as_bytes(),
    );
    let mut sent = sent;
    sent.sort_unstable();
    assert_eq!(sent, (3..10).collect::<Vec<_>>());
}
