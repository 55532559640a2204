//! SIGINT and SIGTERM: a first signal finishes what was read, a second gives up at once, and
//! --resume continues an interrupted run to the output an uninterrupted one gives.

use std::io::Write;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::*;

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Lines of a child's stderr, delivered as they are written.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    lines_of(child.stderr.take().unwrap())
}

/// Collects stderr lines until one contains `needle`; returns them all.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(PATIENCE) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!("no stderr line with {needle:?}; saw {seen:#?}"),
        }
    }
}

#[test]
fn a_first_sigint_sends_what_was_read_finishes_in_flight_batches_and_exits_130() {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(150)),
        ..Behavior::default()
    });
    // One slot: while the first batch is out, the other records wait, read (in several
    // chunks) but not batched. A long batch timeout: the last 100 records would wait in a
    // partial batch forever.
    let mut child = spawn_to(&server, &["-b", "500", "-c", "1", "-t", "1h", "--ordered"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(records(0..2600).as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(server.wait_for_requests(1, PATIENCE).len(), 1);
    let output = lines_of(child.stdout.take().unwrap());
    let errors = stderr_lines(&mut child);
    signal(&child, libc::SIGINT);
    // stdin stays open: the signal, not the end of input, ends reading.
    let status = exit_of(&mut child);
    assert_eq!(status.code(), Some(130));
    let written: Vec<String> = output.iter().collect();
    assert_eq!(
        echoed_ids(written.join("\n").as_bytes()),
        (0..2600).collect::<Vec<_>>()
    );
    assert_eq!(
        sizes(&server),
        [500, 500, 500, 500, 500, 100],
        "every record read was sent, the partial batch too"
    );
    let stderr: Vec<String> = errors.iter().collect();
    assert!(
        stderr[0].contains("stopping: reading no more input"),
        "{stderr:#?}"
    );
    assert!(
        stderr
            .last()
            .unwrap()
            .starts_with("abatch: 2600 records read: 2600 written, 0 failed;"),
        "{stderr:#?}"
    );
    drop(stdin);
}

#[test]
fn a_first_sigint_stops_reading_a_file_and_answers_every_record_it_read() {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(50)),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    std::fs::write(&input, records(0..200_000)).unwrap();
    let mut child = spawn_to(&server, &["-b", "100", "-c", "1", &input.to_string_lossy()]);
    server.wait_for_requests(2, PATIENCE);
    let output = lines_of(child.stdout.take().unwrap());
    let errors = stderr_lines(&mut child);
    signal(&child, libc::SIGINT);
    assert_eq!(exit_of(&mut child).code(), Some(130));
    let written = output.iter().count();
    let summary = errors.iter().last().unwrap();
    let read = records_read(&summary);
    assert!(read < 200_000, "reading stopped: {summary}");
    assert_eq!(written, read, "every record read was answered: {summary}");
    assert_eq!(sizes(&server).iter().sum::<usize>(), read);
}

#[test]
fn a_second_sigint_gives_up_at_once_and_keeps_the_records_as_dead_letters() {
    let server = server(Behavior {
        hang: true,
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("failed.jsonl");
    let errors_arg = errors.to_string_lossy();
    let mut child = spawn_to(&server, &["-b", "5", "-c", "2", "--errors", &errors_arg]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(records(0..10).as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(server.wait_for_requests(2, PATIENCE).len(), 2);
    let lines = stderr_lines(&mut child);
    signal(&child, libc::SIGINT);
    wait_for_line(&lines, "stopping: reading no more input");
    signal(&child, libc::SIGINT);
    let status = exit_of(&mut child);
    assert_eq!(status.code(), Some(130));
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&errors)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<u64> = letters
        .iter()
        .map(|l| l["record"]["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..10).collect::<Vec<_>>());
    assert!(
        letters
            .iter()
            .all(|l| l["error"] == "interrupted before it was answered")
    );
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.last()
            .unwrap()
            .contains("10 records read: 0 written, 0 failed, 10 unanswered"),
        "{rest:#?}"
    );
    drop(stdin);
}

#[test]
fn sigterm_exits_143() {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(100)),
        ..Behavior::default()
    });
    let mut child = spawn_to(&server, &["-b", "1", "-q"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(records(0..2).as_bytes()).unwrap();
    stdin.flush().unwrap();
    server.wait_for_requests(2, PATIENCE);
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_of(&mut child).code(), Some(143));
    drop(stdin);
}

/// Runs abatch over `input` into `out` with --resume, in the background.
fn resumable(server: &MockServer, input: &std::path::Path, out: &std::path::Path) -> Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_abatch"))
        .env_remove("ABATCH_URL")
        .args([
            "--url",
            &server.url(),
            "-b",
            "10",
            "-c",
            "3",
            "--ordered",
            "--resume",
            "-q",
        ])
        .arg("-o")
        .arg(out)
        .arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("abatch starts")
}

#[test]
fn resuming_an_interrupted_run_gives_the_output_of_an_uninterrupted_one() {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(2)),
        latency_max: Some(Duration::from_millis(30)),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, records(0..500)).unwrap();

    let whole = dir.path().join("whole.jsonl");
    let mut child = resumable(&server, &input, &whole);
    assert_eq!(exit_of(&mut child).code(), Some(0));

    let out = dir.path().join("out.jsonl");
    let before = server.requests().len();
    let mut child = resumable(&server, &input, &out);
    server.wait_for_requests(before + 12, PATIENCE);
    let lines = stderr_lines(&mut child);
    signal(&child, libc::SIGINT);
    wait_for_line(&lines, "stopping: reading no more input");
    signal(&child, libc::SIGINT);
    assert_eq!(exit_of(&mut child).code(), Some(130));
    let partial = std::fs::read_to_string(&out).unwrap();
    let done = partial.lines().count();
    assert!(done < 500, "the run was interrupted after {done} records");
    // A run killed outright can leave half a line; --resume drops it.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .unwrap()
        .write_all(b"{\"echo\":{\"id\"")
        .unwrap();

    let before = server.requests().len();
    let mut child = resumable(&server, &input, &out);
    assert_eq!(exit_of(&mut child).code(), Some(0));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&whole).unwrap());
    let resent: usize = server.requests()[before..].iter().map(|r| r.records).sum();
    assert_eq!(
        resent,
        500 - done,
        "only the records not yet in the output were sent"
    );
}

#[test]
fn resume_refuses_an_output_longer_than_the_input() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, "1\n2\n3\n").unwrap();
    let result = abatch_to(&server)
        .args(["--ordered", "--resume", "-o"])
        .arg(&out)
        .write_stdin(records(0..2))
        .assert()
        .code(1);
    let stderr = Stderr::of(&result.get_output().stderr);
    assert_eq!(
        stderr.message(),
        format!(
            "abatch: --resume: {} held 3 lines, but the input has only 2 records; \
             is it the output of another input?",
            out.display()
        )
    );
    assert!(server.requests().is_empty());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "1\n2\n3\n");
}

#[test]
fn resume_needs_ordered_output_to_a_file_that_keeps_every_line() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out = out.to_string_lossy();
    for args in [
        vec!["--resume", "-o", &out],
        vec!["--resume", "--ordered"],
        vec!["--resume", "--ordered", "-o", &out, "--on-error", "skip"],
    ] {
        let result = abatch_to(&server)
            .args(&args)
            .write_stdin("1\n")
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&result.get_output().stderr).into_owned();
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert!(server.requests().is_empty());
}
