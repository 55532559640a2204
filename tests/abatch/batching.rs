//! What goes into each request: batch sizes, the batch timeout, the end-of-input flush, the
//! byte cap, and records passed through untouched.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn every_record_gets_its_result() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["-b", "4"])
        .write_stdin(records(0..10))
        .assert()
        .success();
    let summary = Stderr::of(&out.get_output().stderr).summary;
    assert!(
        summary
            .starts_with("abatch: 10 records read: 10 written, 0 failed; 3 batches, 0 retries, "),
        "{summary}"
    );
    let mut ids = echoed_ids(&out.get_output().stdout);
    ids.sort_unstable();
    assert_eq!(ids, (0..10).collect::<Vec<_>>());
    let mut seen = sizes(&server);
    seen.sort_unstable();
    assert_eq!(seen, vec![2, 4, 4]);
    for request in server.requests() {
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.path, "/predict");
    }
}

#[test]
fn batches_are_exactly_batch_size_until_the_last() {
    let server = quick_server();
    abatch_to(&server)
        .args(["-b", "32", "-c", "1", "-t", "1h"])
        .write_stdin(records(0..100))
        .assert()
        .success();
    assert_eq!(sizes(&server), vec![32, 32, 32, 4]);
}

#[test]
fn end_of_input_sends_the_partial_batch_at_once() {
    let server = quick_server();
    let started = Instant::now();
    let out = abatch_to(&server)
        .args(["-b", "100", "-t", "1h"])
        .write_stdin(records(0..5))
        .assert()
        .success();
    // The batch timeout is an hour; finishing within the test's patience means nobody waited.
    assert!(started.elapsed() < PATIENCE);
    assert_eq!(echoed_ids(&out.get_output().stdout), vec![0, 1, 2, 3, 4]);
    assert_eq!(sizes(&server), vec![5]);
}

#[test]
fn the_longest_durations_allowed_are_waited_for_no_longer_than_needed() {
    let server = quick_server();
    abatch_to(&server)
        .args([
            "-t",
            "7days",
            "--timeout",
            "7days",
            "--retry-backoff",
            "7days",
        ])
        .write_stdin(records(0..2))
        .assert()
        .success();
    assert_eq!(sizes(&server), vec![2]);
}

#[test]
fn timeout_flushes_while_stdin_is_open_and_idle() {
    let server = quick_server();
    let mut child = spawn_to(&server, &["-b", "100", "-t", "300ms", "--ordered"]);
    let mut stdin = child.stdin.take().unwrap();
    let lines = lines_of(child.stdout.take().unwrap());

    let written = Instant::now();
    stdin.write_all(records(0..3).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let seen = server.wait_for_requests(1, PATIENCE);
    assert_eq!(seen.len(), 1, "no batch sent while stdin stayed open");
    assert_eq!(seen[0].records, 3);
    // The clock starts when the first record arrives, so the batch cannot leave earlier.
    let waited = seen[0].arrived.duration_since(written);
    assert!(
        waited >= Duration::from_millis(300),
        "sent after {waited:?}, before the 300ms timeout"
    );
    for id in 0..3 {
        let line = lines
            .recv_timeout(PATIENCE)
            .expect("results arrive before stdin closes");
        assert_eq!(echoed_ids(line.as_bytes()), vec![id]);
    }

    stdin.write_all(records(3..5).as_bytes()).unwrap();
    drop(stdin);
    assert!(exit_of(&mut child).success());
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(echoed_ids(rest.join("\n").as_bytes()), vec![3, 4]);
    assert_eq!(sizes(&server), vec![3, 2]);
}

#[test]
fn byte_cap_limits_each_body_and_an_oversized_record_goes_alone() {
    let server = quick_server();
    let small = format!("{{\"id\":1,\"pad\":\"{}\"}}", "x".repeat(40));
    let large = format!("{{\"id\":2,\"pad\":\"{}\"}}", "y".repeat(500));
    let input = format!("{small}\n{small}\n{small}\n{large}\n{small}\n{small}\n");
    abatch_to(&server)
        .args(["-b", "100", "-c", "1", "--max-batch-bytes", "120"])
        .write_stdin(input)
        .assert()
        .success();
    let bodies: Vec<usize> = server.requests().iter().map(|r| r.body.len()).collect();
    assert_eq!(sizes(&server), vec![2, 1, 1, 2]);
    let (two, one) = (2 * small.len() + 3, small.len() + 2);
    assert!(two <= 120 && two + small.len() + 1 > 120);
    assert_eq!(bodies, vec![two, one, large.len() + 2, two]);
}

#[test]
fn records_pass_through_byte_for_byte() {
    let server = quick_server();
    let input = "{\"f\":1.0e+300,\"z\":-0.0}\n  [9007199254740993, 123456789012345678901234567890]\n\"caf\\u00e9 \\ud83c\\udfac\"\n{ \"spaced\" : true }\n";
    let out = abatch_to(&server).write_stdin(input).assert().success();
    let sent = String::from_utf8(server.requests()[0].body.to_vec()).unwrap();
    assert_eq!(
        sent,
        "[{\"f\":1.0e+300,\"z\":-0.0},[9007199254740993, 123456789012345678901234567890],\"caf\\u00e9 \\ud83c\\udfac\",{ \"spaced\" : true }]"
    );
    // Results are compacted onto one line each, but numbers and strings keep their text.
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(
        stdout,
        "{\"echo\":{\"f\":1.0e+300,\"z\":-0.0}}\n{\"echo\":[9007199254740993,123456789012345678901234567890]}\n{\"echo\":\"caf\\u00e9 \\ud83c\\udfac\"}\n{\"echo\":{\"spaced\":true}}\n"
    );
}

#[test]
fn pretty_printed_results_come_out_one_per_line() {
    let server = server(Behavior {
        pretty: true,
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["--ordered"])
        .write_stdin(records(0..3))
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        "{\"echo\":{\"id\":0}}\n{\"echo\":{\"id\":1}}\n{\"echo\":{\"id\":2}}\n"
    );
}

#[test]
fn blank_lines_are_skipped_and_crlf_is_accepted() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["--ordered"])
        .write_stdin("\n{\"id\":0}\r\n   \n\t\r\n{\"id\":1}\n\n")
        .assert()
        .success();
    assert_eq!(echoed_ids(&out.get_output().stdout), vec![0, 1]);
    assert_eq!(sizes(&server), vec![2]);
}

#[test]
fn extra_headers_are_sent() {
    let server = quick_server();
    abatch_to(&server)
        .args([
            "-H",
            "Authorization: Bearer s3cret",
            "-H",
            "X-Trace:  abc",
            "-H",
            "Content-Type: application/json; charset=utf-8",
        ])
        .write_stdin(records(0..1))
        .assert()
        .success();
    let request = &server.requests()[0];
    assert_eq!(request.headers["authorization"], "Bearer s3cret");
    assert_eq!(request.headers["x-trace"], "abc");
    assert_eq!(
        request.headers["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(request.headers.get_all("content-type").iter().count(), 1);
}

#[test]
fn url_can_come_from_the_environment() {
    let server = quick_server();
    abatch()
        .env("ABATCH_URL", server.url())
        .write_stdin(records(0..2))
        .assert()
        .success();
    assert_eq!(sizes(&server), vec![2]);
}
