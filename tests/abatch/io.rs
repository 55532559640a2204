//! Where records come from and where results go: files, stdin, `-o`, and a reader that leaves.

use std::io::{BufRead, BufReader};

use crate::common::*;

#[test]
fn files_and_stdin_are_read_in_turn() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    std::fs::write(&a, records(0..5)).unwrap();
    std::fs::write(&b, records(8..12)).unwrap();
    let out = abatch_to(&server)
        .args(["--ordered", "-b", "4"])
        .arg(&a)
        .arg("-")
        .arg(&b)
        .write_stdin(records(5..8))
        .assert()
        .success();
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..12).collect::<Vec<_>>()
    );
    // Batches run across file boundaries.
    assert_eq!(sizes(&server), vec![4, 4, 4]);
}

#[test]
fn output_file_receives_the_results() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.jsonl");
    std::fs::write(&out_path, "old contents\n").unwrap();
    abatch_to(&server)
        .args(["--ordered", "-o"])
        .arg(&out_path)
        .write_stdin(records(0..50))
        .assert()
        .success()
        .stdout("");
    let written = std::fs::read(&out_path).unwrap();
    assert_eq!(echoed_ids(&written), (0..50).collect::<Vec<_>>());
}

#[test]
fn an_unwritable_output_fails_before_anything_is_sent() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["-o", "/nonexistent-dir/out.jsonl"])
        .write_stdin(records(0..3))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        stderr.starts_with("abatch: cannot create /nonexistent-dir/out.jsonl: "),
        "{stderr}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn a_closed_output_pipe_ends_the_run_quietly_and_promptly() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    std::fs::write(&input, records(0..200_000)).unwrap();
    let input = input.to_string_lossy();
    let mut child = spawn_to(&server, &["-b", "10", &input]);
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"echo\":"), "{first}");
    // The reader (like `head -n1`) is gone now.
    let status = exit_of(&mut child);
    let stderr = Stderr::of(stderr_of(&mut child).as_bytes());
    assert!(
        stderr.messages.is_empty(),
        "a broken pipe is not an error: {stderr:#?}"
    );
    assert!(stderr.dead.is_empty(), "{stderr:#?}");
    assert!(
        stderr
            .summary
            .contains("the rest not written (the output was closed)"),
        "{stderr:#?}"
    );
    assert_eq!(status.code(), Some(0));
    let sent: usize = sizes(&server).iter().sum();
    assert!(sent < 200_000, "kept sending after the reader left");
}

#[test]
fn empty_input_sends_nothing_and_succeeds() {
    let server = quick_server();
    let out = abatch_to(&server)
        .write_stdin("\n  \n")
        .assert()
        .success()
        .stdout("");
    let summary = Stderr::of(&out.get_output().stderr).summary;
    assert!(summary.starts_with("abatch: 0 records read: 0 written, 0 failed; 0 batches"));
    assert!(server.requests().is_empty());
}

#[test]
fn output_that_is_also_an_input_is_refused() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    std::fs::write(&data, records(0..3)).unwrap();
    let same = dir.path().join(".").join("data.jsonl");
    let out = abatch_to(&server)
        .arg(&data)
        .arg("-o")
        .arg(&same)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("is also an input"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), records(0..3));
    assert!(server.requests().is_empty());
}

#[test]
fn a_failing_output_is_an_error_naming_it_and_stops_the_run() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["-o", "/dev/full", "-b", "10", "-c", "1"])
        .write_stdin(records(0..1000))
        .assert()
        .code(1);
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(
        stderr.message(),
        "abatch: cannot write to /dev/full: No space left on device (os error 28)"
    );
    let read = stderr.records_read();
    assert_eq!(dead_ids(&stderr.dead), (0..read).collect::<Vec<_>>());
    assert!(
        stderr.dead[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("answered, but not written: cannot write to /dev/full"),
        "{:?}",
        stderr.dead[0]
    );
    assert!(
        server.requests().len() < 100,
        "the run stopped: {} requests",
        server.requests().len()
    );
}

#[test]
fn the_quickstart_fixture_gives_the_expected_output() {
    let server = quick_server();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = abatch_to(&server)
        .args(["--ordered", "-b", "4"])
        .arg(format!("{root}/fixtures/reviews.jsonl"))
        .assert()
        .success();
    let expected =
        std::fs::read_to_string(format!("{root}/fixtures/expected/reviews.jsonl")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.get_output().stdout), expected);
    let mut seen = sizes(&server);
    seen.sort_unstable();
    assert_eq!(seen, vec![2, 4, 4]);
}
