//! Under the default policy (abort), a failed batch stops the run with one clear message
//! naming its records and the cause, and its records go to the dead-letter sink.

use std::io::Write;

use crate::common::*;

/// The one message before the summary, after checking that every record of the failed batch
/// is a dead letter.
fn one_line(stderr: &[u8]) -> String {
    let stderr = Stderr::of(stderr);
    assert!(!stderr.dead.is_empty(), "{stderr:#?}");
    stderr.message().to_owned()
}

#[test]
fn http_error_names_status_body_and_lines() {
    let server = server(Behavior {
        status: Some(500),
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["-b", "10", "-c", "1", "--retries", "0"])
        .write_stdin(records(0..25))
        .assert()
        .code(1)
        .stdout("");
    let message = one_line(&out.get_output().stderr);
    assert_eq!(
        message.trim_end(),
        "abatch: batch of 10 records, lines 1-10 of <stdin>: HTTP 500 Internal Server Error: mock failure 500"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "nothing new starts after a failure"
    );
}

#[test]
fn results_before_a_failed_batch_stay_written_in_order() {
    let server = quick_server();
    let mut input = records(0..44);
    input.push_str("{\"id\":44,\"mock\":{\"status\":503}}\n");
    input.push_str(&records(45..100));
    let out = abatch_to(&server)
        .args(["-b", "10", "-c", "3", "--ordered", "--retries", "0"])
        .write_stdin(input)
        .assert()
        .code(1);
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..40).collect::<Vec<_>>()
    );
    let message = one_line(&out.get_output().stderr);
    assert!(
        message
            .contains("batch of 10 records, lines 41-50 of <stdin>: HTTP 503 Service Unavailable"),
        "{message}"
    );
    // Reading stopped: at most the batches already in flight beside the failed one were sent.
    assert!(
        server.requests().len() <= 5 + 3,
        "{} requests",
        server.requests().len()
    );
}

#[test]
fn connection_refused_is_reported() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = abatch()
        .args(["--url", &format!("http://127.0.0.1:{port}/predict")])
        .args(["--retries", "0"])
        .write_stdin(records(0..3))
        .assert()
        .code(1);
    let message = one_line(&out.get_output().stderr);
    assert!(
        message.contains(&format!(
            "batch of 3 records, lines 1-3 of <stdin>: cannot connect to 127.0.0.1:{port}"
        )),
        "{message}"
    );
}

#[test]
fn invalid_responses_are_failures() {
    let cases = [
        (
            Behavior {
                reply: Some("<html>busy</html>".into()),
                ..Behavior::default()
            },
            "invalid response: not valid JSON",
        ),
        (
            Behavior {
                reply: Some("{\"predictions\": [1, 2]}".into()),
                ..Behavior::default()
            },
            "invalid response: expected a JSON array of results",
        ),
        (
            Behavior {
                wrong_count: true,
                ..Behavior::default()
            },
            "invalid response: expected 2 results (one per record), got 1",
        ),
    ];
    for (behavior, expected) in cases {
        let server = server(behavior);
        let out = abatch_to(&server)
            .write_stdin(records(0..2))
            .assert()
            .code(1)
            .stdout("");
        let message = one_line(&out.get_output().stderr);
        assert!(message.contains(expected), "{message} lacks {expected}");
        assert!(message.contains("lines 1-2 of <stdin>"), "{message}");
    }
}

#[test]
fn a_hanging_server_times_out() {
    let server = server(Behavior {
        hang: true,
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["--timeout", "300ms", "--retries", "0"])
        .write_stdin(records(0..4))
        .assert()
        .code(1);
    let message = one_line(&out.get_output().stderr);
    assert!(
        message.contains("lines 1-4 of <stdin>: timed out after 300ms"),
        "{message}"
    );
}

#[test]
fn invalid_input_line_is_named_after_earlier_records_are_answered() {
    let server = quick_server();
    let input = format!("{}\n{{\"id\": 3,}}\n{}", records(0..3), records(4..6));
    let out = abatch_to(&server)
        .args(["--ordered", "-b", "2"])
        .write_stdin(input)
        .assert()
        .code(1);
    assert_eq!(echoed_ids(&out.get_output().stdout), vec![0, 1, 2]);
    let message = Stderr::of(&out.get_output().stderr).message().to_owned();
    assert!(
        message.starts_with("abatch: <stdin>:5: invalid JSON at column 10: key must be a string"),
        "{message}"
    );
    assert_eq!(
        sizes(&server).iter().sum::<usize>(),
        3,
        "nothing after the bad line was sent"
    );
}

#[test]
fn a_failure_stops_reading_even_from_an_idle_stdin() {
    let server = server(Behavior {
        status: Some(502),
        ..Behavior::default()
    });
    let mut child = spawn_to(&server, &["-t", "10ms", "--retries", "0"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(records(0..1).as_bytes()).unwrap();
    stdin.flush().unwrap();
    // stdin stays open: abatch must not wait for more input before it reports the failure.
    let status = exit_of(&mut child);
    assert_eq!(status.code(), Some(1));
    assert!(stderr_of(&mut child).contains("HTTP 502 Bad Gateway"));
    drop(stdin);
}

#[test]
fn a_redirect_that_would_drop_the_body_is_reported_not_followed() {
    let server = server(Behavior {
        status: Some(302),
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .write_stdin(records(0..2))
        .assert()
        .code(1);
    let message = one_line(&out.get_output().stderr);
    assert!(
        message.contains("HTTP 302 Found: redirects to /moved"),
        "{message}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_long_error_body_is_quoted_short_on_one_line() {
    let page = format!(
        "<html>\n<body>\n{}\n</body>\n</html>\n",
        "Internal error. ".repeat(20_000)
    );
    let server = server(Behavior {
        status: Some(500),
        reply: Some(page),
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["--retries", "0"])
        .write_stdin(records(0..1))
        .assert()
        .code(1);
    let message = one_line(&out.get_output().stderr);
    assert!(
        message.contains("batch of 1 record, line 1 of <stdin>: HTTP 500 Internal Server Error: <html> <body> Internal error."),
        "{message}"
    );
    assert!(
        message.len() < 400 && message.trim_end().ends_with('…'),
        "{message}"
    );
    let dead = Stderr::of(&out.get_output().stderr).dead;
    assert!(dead[0]["error"].as_str().unwrap().len() < 400, "{dead:?}");
}

#[test]
fn a_terminal_shows_a_few_dead_letters_and_a_log_gets_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    std::fs::write(&input, records(0..1000)).unwrap();
    let args = [
        "-u",
        "http://127.0.0.1:1/x",
        "-b",
        "256",
        "-c",
        "16",
        "--retries",
        "0",
    ];
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_abatch"));
    cmd.args(args)
        .arg("--no-progress")
        .arg(&input)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let (status, screen) = stderr_on_a_terminal(cmd, 200);
    assert_eq!(status.code(), Some(1));
    let lines: Vec<&str> = screen.lines().map(|l| l.trim_end_matches('\r')).collect();
    let shown = lines.iter().filter(|l| l.starts_with('{')).count();
    assert_eq!(shown, 5, "{screen}");
    let n = lines.len();
    assert_eq!(
        lines[n - 3],
        "abatch: 995 more records have no result (not shown here); --errors FILE keeps them all"
    );
    assert!(
        lines[n - 2].contains("cannot connect to 127.0.0.1:1: Connection refused"),
        "the cause stays the last line before the summary: {screen}"
    );
    assert!(
        lines[n - 1]
            .starts_with("abatch: 1000 records read: 0 written, 256 failed, 744 unanswered"),
        "{screen}"
    );

    let out = abatch().args(args).arg(&input).assert().code(1);
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(
        stderr.dead.len(),
        1000,
        "in a pipe or a log, every dead letter"
    );
    assert!(stderr.message().contains("Connection refused"));
}
