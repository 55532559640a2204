//! The user's files are never destroyed without cause: every input opens before anything is
//! sent or touched, an existing output is left as it was by a run that writes no line to it,
//! a dry run touches nothing, and no file abatch writes may be one it reads or another it writes.

use std::fs::File;

use crate::common::*;

const PRECIOUS: &str = "{\"echo\":\"yesterday's result\"}\n";

/// A directory holding `precious.jsonl` (an earlier run's results) and `in.jsonl`.
fn workspace(input: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.jsonl"), PRECIOUS).unwrap();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    dir
}

fn intact(dir: &tempfile::TempDir, name: &str) {
    let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(text, PRECIOUS, "{name} was changed");
}

#[test]
fn a_missing_input_is_found_before_anything_is_sent_or_touched() {
    let server = quick_server();
    let dir = workspace(&records(0..3));
    let missing = dir.path().join("typo.jsonl");
    let out = abatch_to(&server)
        .current_dir(dir.path())
        .args([
            "-o",
            "precious.jsonl",
            "--errors",
            "errors.jsonl",
            "--stats",
        ])
        .arg("stats.json")
        .arg("in.jsonl")
        .arg(&missing)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "abatch: cannot open {}: No such file or directory (os error 2)",
            missing.display()
        ),
        "one line, and no summary of a run that never started"
    );
    assert!(server.requests().is_empty(), "nothing was sent");
    intact(&dir, "precious.jsonl");
    assert!(!dir.path().join("errors.jsonl").exists());
    assert!(!dir.path().join("stats.json").exists());
}

#[test]
fn a_directory_given_as_input_says_so() {
    let server = quick_server();
    let dir = workspace("");
    let out = abatch_to(&server).arg(dir.path()).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "abatch: {0} is a directory; give the files in it instead (e.g. {0}/*.jsonl)",
            dir.path().display()
        )
    );
}

#[test]
fn an_existing_output_is_left_as_it_was_by_a_run_that_writes_no_line() {
    // The server is down from the first request.
    let dir = workspace(&records(0..3));
    abatch()
        .current_dir(dir.path())
        .args(["-u", "http://127.0.0.1:1/predict", "--retries", "0"])
        .args(["-o", "precious.jsonl", "in.jsonl"])
        .assert()
        .code(1);
    intact(&dir, "precious.jsonl");

    // The first record is invalid.
    let server = quick_server();
    let dir = workspace("{\"id\": 0,}\n{\"id\":1}\n");
    abatch_to(&server)
        .current_dir(dir.path())
        .args(["-o", "precious.jsonl", "in.jsonl"])
        .assert()
        .code(1);
    intact(&dir, "precious.jsonl");
    assert!(server.requests().is_empty());

    // A run that writes lines replaces it.
    let dir = workspace(&records(0..3));
    abatch_to(&server)
        .current_dir(dir.path())
        .args(["--ordered", "-o", "precious.jsonl", "in.jsonl"])
        .assert()
        .success();
    let written = std::fs::read(dir.path().join("precious.jsonl")).unwrap();
    assert_eq!(echoed_ids(&written), [0, 1, 2]);
}

#[test]
fn a_clean_run_with_nothing_to_write_leaves_an_empty_output_and_empty_dead_letters() {
    let server = quick_server();
    let dir = workspace("\n\n");
    std::fs::write(dir.path().join("errors.jsonl"), PRECIOUS).unwrap();
    abatch_to(&server)
        .current_dir(dir.path())
        .args([
            "-o",
            "precious.jsonl",
            "--errors",
            "errors.jsonl",
            "in.jsonl",
        ])
        .assert()
        .success();
    for name in ["precious.jsonl", "errors.jsonl"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(text, "", "{name}: yesterday's lines never pass for today's");
    }
}

#[test]
fn yesterdays_dead_letters_are_emptied_once_the_inputs_open() {
    let server = quick_server();
    let dir = workspace(&records(0..3));
    std::fs::write(dir.path().join("errors.jsonl"), PRECIOUS).unwrap();
    abatch_to(&server)
        .current_dir(dir.path())
        .args(["--errors", "errors.jsonl", "in.jsonl"])
        .assert()
        .success();
    let text = std::fs::read_to_string(dir.path().join("errors.jsonl")).unwrap();
    assert_eq!(text, "");
}

#[test]
fn a_dry_run_touches_no_file() {
    let server = quick_server();
    let dir = workspace(&records(0..3));
    let out = abatch_to(&server)
        .current_dir(dir.path())
        .args(["--dry-run", "--ordered", "-o", "precious.jsonl"])
        .args([
            "--errors",
            "errors.jsonl",
            "--stats",
            "stats.json",
            "in.jsonl",
        ])
        .assert()
        .success();
    intact(&dir, "precious.jsonl");
    assert!(!dir.path().join("errors.jsonl").exists());
    assert!(!dir.path().join("stats.json").exists());
    assert!(server.requests().is_empty());
    let stdout = String::from_utf8_lossy(&out.get_output().stdout);
    assert_eq!(stdout.lines().count(), 1, "the request went to stdout");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        stderr.starts_with(
            "abatch: --dry-run: the requests go to standard output; precious.jsonl is left alone\n"
        ),
        "{stderr}"
    );
}

/// Runs abatch in `dir` with `args`, stdin from `stdin` (a file there) if given; expects a
/// usage error naming the clash, and nothing sent or touched.
fn refused(dir: &tempfile::TempDir, args: &[&str], stdin: Option<&str>, expected: &str) {
    let server = quick_server();
    let before: Vec<_> = ["in.jsonl", "precious.jsonl"]
        .iter()
        .map(|name| std::fs::read(dir.path().join(name)).unwrap())
        .collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_abatch"));
    cmd.env_remove("ABATCH_URL")
        .args(["-u", &server.url()])
        .current_dir(dir.path())
        .args(args);
    if let Some(name) = stdin {
        // A regular file as stdin, as `< name` gives.
        cmd.stdin(File::open(dir.path().join(name)).unwrap());
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
    assert!(server.requests().is_empty());
    let after: Vec<_> = ["in.jsonl", "precious.jsonl"]
        .iter()
        .map(|name| std::fs::read(dir.path().join(name)).unwrap())
        .collect();
    assert_eq!(before, after, "{args:?} touched a file");
}

#[test]
fn no_file_written_may_be_one_read_or_another_written() {
    let dir = workspace(&records(0..3));
    std::fs::hard_link(dir.path().join("in.jsonl"), dir.path().join("link.jsonl")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let also_input = "is also an input; writing it would destroy the input before it is read";
    refused(
        &dir,
        &["--stats", "in.jsonl", "in.jsonl"],
        None,
        &format!("--stats in.jsonl {also_input}"),
    );
    refused(
        &dir,
        &["-o", "in.jsonl"],
        Some("in.jsonl"),
        "--output in.jsonl is also an input (standard input)",
    );
    refused(
        &dir,
        &["--errors", "in.jsonl"],
        Some("in.jsonl"),
        "--errors in.jsonl is also an input (standard input)",
    );
    refused(
        &dir,
        &["-o", "link.jsonl", "in.jsonl"],
        None,
        "--output link.jsonl is also an input (in.jsonl)",
    );
    refused(
        &dir,
        &["-o", "new.jsonl", "--stats", "sub/../new.jsonl", "in.jsonl"],
        None,
        "--output new.jsonl and --stats sub/../new.jsonl are the same file",
    );
    refused(
        &dir,
        &[
            "-o",
            "precious.jsonl",
            "--errors",
            "./precious.jsonl",
            "in.jsonl",
        ],
        None,
        "--output precious.jsonl and --errors ./precious.jsonl are the same file",
    );
    assert!(!dir.path().join("new.jsonl").exists());
}

#[test]
fn standard_output_may_not_be_an_input() {
    let server = quick_server();
    let dir = workspace(&records(0..3));
    let input = dir.path().join("in.jsonl");
    // As `abatch in.jsonl >> in.jsonl` would: abatch would read its own results.
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_abatch"))
        .env_remove("ABATCH_URL")
        .args(["-u", &server.url(), "in.jsonl"])
        .current_dir(dir.path())
        .stdout(appended)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("standard output is also an input (in.jsonl)"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&input).unwrap(), records(0..3));
    assert!(server.requests().is_empty());
}
