//! What abatch tells people: progress on a terminal (and only there), the summary line,
//! --stats, --dry-run and -v.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

/// Runs abatch with its stderr on a pseudo-terminal `columns` wide, and returns everything
/// written there.
fn stderr_on_a_terminal_of(
    server: &MockServer,
    columns: u16,
    args: &[&str],
    input: &str,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, input).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_abatch"));
    cmd.env_remove("ABATCH_URL")
        .args(["--url", &server.url()])
        .args(args)
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let (status, screen) = stderr_on_a_terminal(cmd, columns);
    assert!(status.success(), "{status:?}");
    screen
}

fn slow_server() -> MockServer {
    server(Behavior {
        latency: Some(Duration::from_millis(150)),
        ..Behavior::default()
    })
}

#[test]
fn progress_shows_on_a_terminal_and_not_in_a_pipe() {
    let server = slow_server();
    let screen = stderr_on_a_terminal_of(&server, 80, &["-b", "5", "-c", "2"], &records(0..30));
    assert!(screen.contains(" in flight · "), "{screen}");
    assert!(
        screen.contains("% of "),
        "a bar for a file of known size: {screen}"
    );
    assert!(screen.contains("30 records read: 30 written"), "{screen}");

    for hidden in [&["--quiet"][..], &["--no-progress"]] {
        let screen = stderr_on_a_terminal_of(&server, 80, hidden, &records(0..4));
        assert!(!screen.contains(" in flight · "), "{hidden:?}: {screen}");
    }

    let out = abatch_to(&server)
        .args(["-b", "5"])
        .write_stdin(records(0..10))
        .assert()
        .success();
    let piped = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!piped.contains(" in flight"), "{piped}");

    let out = abatch_to(&server)
        .args(["-b", "5", "--progress"])
        .write_stdin(records(0..10))
        .assert()
        .success();
    let forced = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        forced.contains(" in flight · "),
        "--progress draws anyway: {forced}"
    );
    assert!(
        !forced.contains("% of "),
        "stdin has no known size: a spinner"
    );
}

/// The lines the progress display drew on `screen`, escape sequences taken out: each redraw
/// starts after a carriage return or a newline. abatch's own messages are left out; they
/// may wrap like any text.
fn drawn_lines(screen: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = screen.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte from @ to ~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .split(['\r', '\n'])
        .filter(|line| !line.is_empty() && !line.starts_with("abatch: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_progress_line_fits_the_terminal() {
    let server = slow_server();
    for columns in [60, 120] {
        let screen =
            stderr_on_a_terminal_of(&server, columns, &["-b", "5", "-c", "2"], &records(0..30));
        let drawn = drawn_lines(&screen);
        assert!(
            drawn.iter().any(|line| line.contains("% of ")),
            "{columns}: {screen:?}"
        );
        for line in &drawn {
            assert!(
                line.chars().count() <= usize::from(columns),
                "{columns} columns, {} drawn: {line:?}",
                line.chars().count()
            );
        }
        assert!(screen.contains("30 records read: 30 written"), "{screen}");
    }
    assert_eq!(server.requests().len(), 12);
}

#[test]
fn the_summary_counts_what_the_server_saw() {
    let server = server(Behavior {
        fail_first: Some(2),
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["-b", "7", "-c", "1", "--retry-backoff", "1ms"])
        .write_stdin(records(0..50))
        .assert()
        .success();
    let requests = server.requests();
    let batches = requests.len() - 2;
    let summary = Stderr::of(&out.get_output().stderr).summary;
    let expected =
        format!("abatch: 50 records read: 50 written, 0 failed; {batches} batches, 2 retries, ");
    assert!(summary.starts_with(&expected), "{summary}");
    assert_eq!(batches, 8);
}

#[test]
fn stats_report_what_the_server_saw() {
    let server = server(Behavior {
        fail_first: Some(1),
        latency: Some(Duration::from_millis(5)),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    abatch_to(&server)
        .args([
            "-b",
            "10",
            "-c",
            "3",
            "-t",
            "1h",
            "--retry-backoff",
            "1ms",
            "-q",
            "--stats",
        ])
        .arg(&stats)
        .write_stdin(records(0..45))
        .assert()
        .success();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let requests = server.requests();
    assert_eq!(report["records"]["read"], 45);
    assert_eq!(report["records"]["written"], 45);
    assert_eq!(report["records"]["failed"], 0);
    assert_eq!(report["records"]["unanswered"], 0);
    assert_eq!(report["records"]["skipped"], 0);
    assert_eq!(report["batches"]["count"], 5);
    assert_eq!(report["batches"]["size"]["min"], 5);
    assert_eq!(report["batches"]["size"]["max"], 10);
    assert_eq!(report["batches"]["size"]["mean"], 9.0);
    assert_eq!(report["batches"]["flushed_by"]["size"], 4);
    assert_eq!(report["batches"]["flushed_by"]["end_of_input"], 1);
    assert_eq!(report["batches"]["flushed_by"]["timeout"], 0);
    assert_eq!(report["batches"]["flushed_by"]["bytes"], 0);
    assert_eq!(report["requests"]["count"], requests.len());
    assert_eq!(report["requests"]["retries"], 1);
    assert_eq!(report["requests"]["statuses"]["200"], 5);
    assert_eq!(report["requests"]["statuses"]["503"], 1);
    let latency = &report["requests"]["latency_ms"];
    for field in ["p50", "p90", "p99", "max"] {
        let ms = latency[field].as_f64().unwrap();
        assert!((5.0..30_000.0).contains(&ms), "{field}: {ms}");
    }
    assert!(latency["p50"].as_f64() <= latency["max"].as_f64());
    assert_eq!(report["concurrency"]["limit"], 3);
    let max = report["concurrency"]["max"].as_u64().unwrap();
    assert!((1..=3).contains(&max), "{max}");
    assert!(max as usize >= server.max_in_flight().min(3));
    let mean = report["concurrency"]["mean"].as_f64().unwrap();
    assert!(mean > 0.0 && mean <= 3.0, "{mean}");
    assert!(report["elapsed_s"].as_f64().unwrap() > 0.0);
    assert!(report["records_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["exit"], 0);
}

#[test]
fn a_dry_run_sends_nothing_and_prints_each_request() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args([
            "-b",
            "2",
            "--dry-run",
            "-H",
            "Authorization: Bearer hunter2",
        ])
        .write_stdin("{\"a\": 1.0e+300}\n\"x\"\n[1, 2]\n")
        .assert()
        .success();
    assert!(server.requests().is_empty());
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["url"], server.url());
    assert_eq!(lines[0]["headers"]["authorization"], "(redacted)");
    assert_eq!(lines[0]["headers"]["content-type"], "application/json");
    assert_eq!(lines[1]["body"], serde_json::json!([[1, 2]]));
    assert!(
        stdout.starts_with(&format!(
            "{{\"method\":\"POST\",\"url\":\"{}\"",
            server.url()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"body\":[{\"a\":1.0e+300},\"x\"]"),
        "bodies verbatim: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!stderr.contains("hunter2") && !stdout.contains("hunter2"));
    assert_eq!(
        stderr,
        "abatch: dry run: 3 records read into 2 batches; nothing sent\n"
    );
}

#[test]
fn a_password_in_the_url_is_redacted_where_the_url_is_shown() {
    let server = quick_server();
    let url = server.url().replace("http://", "http://me:hunter2@");
    let shown = server.url().replace("http://", "http://me:****@");
    let out = abatch()
        .args(["-u", &url, "--dry-run"])
        .write_stdin(records(0..1))
        .assert()
        .success();
    let output = out.get_output();
    let request: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(request["url"], shown.as_str());
    assert!(server.requests().is_empty());

    let out = abatch()
        .args(["-u", &url, "-vv"])
        .write_stdin(records(0..1))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("DEBUG POST to {shown}\n")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // The password still goes to the server, as basic authentication ("me:hunter2").
    let seen = &server.requests()[0].headers;
    assert_eq!(seen["authorization"], "Basic bWU6aHVudGVyMg==");
}

#[test]
fn verbose_logs_each_request_and_never_a_header_value() {
    let server = server(Behavior {
        fail_first: Some(1),
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["-b", "3", "-c", "1", "-v", "--retry-backoff", "1ms"])
        .args(["-H", "Authorization: Bearer hunter2"])
        .write_stdin(records(0..5))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let logged: Vec<&str> = stderr.lines().filter(|l| l.contains(" INFO ")).collect();
    assert_eq!(logged.len(), 3, "{stderr}");
    for line in &logged {
        // Seconds to the millisecond, as README shows: "0.054s  INFO batch 1 ...".
        let (time, rest) = line.split_once("s  INFO batch ").unwrap_or_default();
        let (seconds, millis) = time.split_once('.').unwrap_or_default();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        assert!(
            digits(seconds) && millis.len() == 3 && digits(millis) && !rest.is_empty(),
            "{line}"
        );
    }
    assert!(
        logged[0].contains("batch 1 (lines 1-3 of <stdin>), 3 records, attempt 1: HTTP 503"),
        "{stderr}"
    );
    assert!(logged[0].contains("; retrying in "), "{stderr}");
    assert!(
        logged[1].contains("batch 1 (lines 1-3 of <stdin>), 3 records, attempt 2: 200 OK in "),
        "{stderr}"
    );
    assert!(
        logged[2].contains("batch 2 (lines 4-5 of <stdin>), 2 records, attempt 1: 200 OK"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));

    let out = abatch_to(&server)
        .env("ABATCH_QUIET", "1")
        .args(["-vv", "-b", "3"])
        .write_stdin(records(0..3))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("DEBUG batch 1 (lines 1-3 of <stdin>): 3 records, sent full"),
        "{stderr}"
    );
    assert!(!stderr.contains(" read: "), "otherwise quiet: {stderr}");
}
