//! Retries, the error policies, dead letters, splitting, the request rate, and the accounting
//! that every record read is answered or in the dead-letter sink.

use std::time::Duration;

use crate::common::*;

/// A record the mock fails with `status` whenever a request carries it.
fn poison(id: usize, status: u16) -> String {
    format!("{{\"id\":{id},\"mock\":{{\"status\":{status}}}}}\n")
}

/// Records 0..n, with the ids in `bad` poisoned with 400.
fn with_poison(n: usize, bad: &[usize]) -> String {
    (0..n)
        .map(|id| {
            if bad.contains(&id) {
                poison(id, 400)
            } else {
                records(id..id + 1)
            }
        })
        .collect()
}

fn dead_letters(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn the_first_failures_are_retried_until_one_passes() {
    let server = server(Behavior {
        fail_first: Some(2),
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["-b", "10", "--retry-backoff", "10ms"])
        .write_stdin(records(0..10))
        .assert()
        .success();
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(sizes(&server), vec![10, 10, 10], "two 503s, then success");
    let summary = Stderr::of(&out.get_output().stderr).summary;
    assert!(
        summary.contains("10 written, 0 failed; 1 batch, 2 retries"),
        "{summary}"
    );
}

#[test]
fn retries_stop_at_the_limit_and_the_records_say_how_many_attempts() {
    let server = server(Behavior {
        status: Some(503),
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["--retries", "2", "--retry-backoff", "1ms"])
        .write_stdin(records(0..3))
        .assert()
        .code(1);
    assert_eq!(server.requests().len(), 3);
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(stderr.dead.len(), 3);
    for (letter, id) in stderr.dead.iter().zip(0..) {
        assert_eq!(letter["record"]["id"], id);
        assert_eq!(letter["file"], "<stdin>");
        assert_eq!(letter["line"], id + 1);
        assert_eq!(letter["status"], 503);
        assert_eq!(letter["attempts"], 3);
        assert!(
            letter["error"]
                .as_str()
                .unwrap()
                .starts_with("HTTP 503 Service Unavailable"),
            "{letter}"
        );
    }
}

#[test]
fn retry_after_is_waited_out() {
    let server = server(Behavior {
        fail_first: Some(1),
        status: Some(429),
        retry_after: Some("1".into()),
        ..Behavior::default()
    });
    abatch_to(&server)
        .args(["--retry-backoff", "1ms"])
        .write_stdin(records(0..2))
        .assert()
        .success();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].arrived - requests[0].arrived;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
}

#[test]
fn a_400_is_not_retried() {
    let server = server(Behavior {
        status: Some(400),
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["--retries", "5", "--retry-backoff", "1ms"])
        .write_stdin(records(0..2))
        .assert()
        .code(1);
    assert_eq!(server.requests().len(), 1);
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(stderr.dead[0]["attempts"], 1);
    assert!(stderr.summary.contains("0 retries"), "{}", stderr.summary);
}

#[test]
fn dropped_connections_are_retried() {
    let server = server(Behavior {
        drop_first: 2,
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["--retry-backoff", "1ms"])
        .write_stdin(records(0..5))
        .assert()
        .success();
    assert_eq!(echoed_ids(&out.get_output().stdout).len(), 5);
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn skip_writes_nothing_for_failed_records_and_exits_3() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("failed.jsonl");
    let out = abatch_to(&server)
        .args(["-b", "5", "--ordered", "--on-error", "skip", "--errors"])
        .arg(&errors)
        .write_stdin(with_poison(30, &[7, 21]))
        .assert()
        .code(3);
    let expected: Vec<usize> = (0..30)
        .filter(|id| !(5..10).contains(id) && !(20..25).contains(id))
        .collect();
    assert_eq!(echoed_ids(&out.get_output().stdout), expected);
    let letters = dead_letters(&errors);
    assert_eq!(dead_ids(&letters), [5, 6, 7, 8, 9, 20, 21, 22, 23, 24]);
    assert!(
        letters
            .iter()
            .all(|l| l["status"] == 400 && l["attempts"] == 1)
    );
    let stderr = Stderr::of(&out.get_output().stderr);
    assert!(stderr.dead.is_empty(), "dead letters went to --errors");
    assert!(
        stderr.message().starts_with(
            "abatch: first failure: batch of 5 records, lines 6-10 of <stdin>: HTTP 400"
        ),
        "{stderr:#?}"
    );
    assert!(
        stderr.summary.starts_with(&format!(
            "abatch: 30 records read: 20 written, 10 failed (dead letters in {}); ",
            errors.display()
        )),
        "{}",
        stderr.summary
    );
}

#[test]
fn null_keeps_the_output_line_for_line_with_the_input() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["-b", "4", "-c", "3", "--ordered", "--on-error", "null"])
        .write_stdin(with_poison(20, &[9]))
        .assert()
        .code(3);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 20);
    for (id, line) in lines.iter().enumerate() {
        if (8..12).contains(&id) {
            assert_eq!(*line, "null");
        } else {
            assert_eq!(*line, format!("{{\"echo\":{{\"id\":{id}}}}}"));
        }
    }
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(
        dead_ids(&stderr.dead),
        [8, 9, 10, 11],
        "dead letters on stderr by default"
    );
}

#[test]
fn feeding_dead_letters_back_retries_exactly_those_records() {
    let flaky = server(Behavior {
        fail_first: Some(3),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("failed.jsonl");
    let first = abatch_to(&flaky)
        .args([
            "-b",
            "4",
            "-c",
            "1",
            "--retries",
            "0",
            "--on-error",
            "skip",
            "--errors",
        ])
        .arg(&errors)
        .write_stdin(records(0..20))
        .assert()
        .code(3);
    let answered = echoed_ids(&first.get_output().stdout);
    let letters = dead_letters(&errors);
    assert_eq!(dead_ids(&letters), (0..12).collect::<Vec<_>>());
    assert_eq!(answered, (12..20).collect::<Vec<_>>());

    let healthy = quick_server();
    let again: String = letters
        .iter()
        .map(|l| format!("{}\n", l["record"]))
        .collect();
    let second = abatch_to(&healthy)
        .args(["-b", "100"])
        .write_stdin(again)
        .assert()
        .success();
    assert_eq!(
        echoed_ids(&second.get_output().stdout),
        (0..12).collect::<Vec<_>>()
    );
    let sent = healthy.requests()[0].record_texts();
    let expected: Vec<String> = (0..12).map(|id| format!("{{\"id\":{id}}}")).collect();
    assert_eq!(
        sent, expected,
        "exactly the failed records, as they were read"
    );
}

#[test]
fn split_on_error_isolates_poison_records() {
    let server = quick_server();
    let bad = [13, 77];
    let out = abatch_to(&server)
        .args([
            "-b",
            "16",
            "-c",
            "2",
            "--ordered",
            "--split-on-error",
            "--on-error",
            "null",
        ])
        .write_stdin(with_poison(100, &bad))
        .assert()
        .code(3);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 100);
    for (id, line) in lines.iter().enumerate() {
        if bad.contains(&id) {
            assert_eq!(*line, "null", "line {id}");
        } else {
            assert_eq!(*line, format!("{{\"echo\":{{\"id\":{id}}}}}"), "line {id}");
        }
    }
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(dead_ids(&stderr.dead), bad);
    // Each poisoned batch of 16 took 1 + 2 + 2 + 2 + 2 requests (halves down to one record).
    let requests = server.requests().len();
    assert_eq!(requests, 7 + 2 * 8, "{requests} requests");
}

#[test]
fn a_413_always_splits() {
    let server = server(Behavior {
        max_records: Some(4),
        ..Behavior::default()
    });
    let out = abatch_to(&server)
        .args(["-b", "16", "--ordered"])
        .write_stdin(records(0..16))
        .assert()
        .success();
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..16).collect::<Vec<_>>()
    );
    assert_eq!(sizes(&server), [16, 8, 4, 4, 8, 4, 4]);
}

#[test]
fn rate_limits_request_starts() {
    let server = quick_server();
    abatch_to(&server)
        .args(["-b", "1", "-c", "4", "--rate", "10/s", "-q"])
        .write_stdin(records(0..15))
        .assert()
        .success();
    let arrived: Vec<_> = server.requests().iter().map(|r| r.arrived).collect();
    assert_eq!(arrived.len(), 15);
    for window in arrived.windows(11) {
        let span = window[10] - window[0];
        // Evenly paced at 100ms, so 11 starts span a second; allow for delivery jitter.
        assert!(
            span >= Duration::from_millis(900),
            "11 requests within {span:?}"
        );
    }
}

#[test]
fn an_abort_leaves_every_unanswered_record_in_the_dead_letters() {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(5)),
        latency_max: Some(Duration::from_millis(40)),
        ..Behavior::default()
    });
    for ordered in [true, false] {
        // More than the reader takes in at once.
        let mut input = records(0..300);
        input.push_str(&poison(300, 500));
        input.push_str(&records(301..200_000));
        let before = server.requests().len();
        let mut cmd = abatch_to(&server);
        cmd.args(["-b", "7", "-c", "4", "--retries", "0"]);
        if ordered {
            cmd.arg("--ordered");
        }
        let out = cmd.write_stdin(input).assert().code(1);
        let written = echoed_ids(&out.get_output().stdout);
        let stderr = Stderr::of(&out.get_output().stderr);
        let read = stderr.records_read();
        assert_eq!(
            written.len() + stderr.dead.len(),
            read,
            "ordered={ordered}: {stderr:#?}"
        );
        let mut all: Vec<usize> = written.clone();
        all.extend(dead_ids(&stderr.dead));
        all.sort_unstable();
        assert_eq!(all, (0..read).collect::<Vec<_>>(), "each record once");
        // Every record taken from stdin counts, those read ahead included; reading stopped.
        assert!(read < 200_000, "reading stopped");
        let sent: usize = server.requests()[before..].iter().map(|r| r.records).sum();
        assert!(sent < 400, "nothing new was sent after the failure: {sent}");
        if ordered {
            assert_eq!(written, (0..294).collect::<Vec<_>>());
        }
    }
}

/// Random batch sizes, timeouts, concurrency, latencies, orders and poisoned records, through
/// the real binary with --on-error null: every record comes out exactly once, as its result or
/// as a null line with a dead letter, and in input order when asked.
#[test]
fn property_every_record_once_whatever_the_settings() {
    let server = server(Behavior {
        latency_max: Some(Duration::from_millis(15)),
        ..Behavior::default()
    });
    let mut rng = fastrand::Rng::with_seed(7);
    for case in 0..8 {
        let count = rng.usize(0..400);
        let bad: Vec<usize> = (0..rng.usize(0..4))
            .map(|_| rng.usize(0..count.max(1)))
            .collect();
        let batch = rng.usize(1..40).to_string();
        let concurrency = rng.usize(1..9).to_string();
        let timeout = format!("{}ms", rng.u64(0..20));
        let ordered = rng.bool();
        let split = rng.bool();
        let mut cmd = abatch_to(&server);
        cmd.args([
            "-b",
            &batch,
            "-c",
            &concurrency,
            "-t",
            &timeout,
            "--on-error",
            "null",
        ]);
        if ordered {
            cmd.arg("--ordered");
        }
        if split {
            cmd.arg("--split-on-error");
        }
        let out = cmd.write_stdin(with_poison(count, &bad)).assert();
        let output = out.get_output();
        let context = format!(
            "case {case}: {count} records, bad {bad:?}, -b {batch} -c {concurrency} -t {timeout} ordered={ordered} split={split}"
        );
        let expected_code = if bad.is_empty() || count == 0 { 0 } else { 3 };
        assert_eq!(output.status.code(), Some(expected_code), "{context}");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), count, "{context}");
        let stderr = Stderr::of(&output.stderr);
        let answered: Vec<usize> = lines
            .iter()
            .filter(|line| **line != "null")
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                value["echo"]["id"].as_u64().unwrap() as usize
            })
            .collect();
        let mut all = answered.clone();
        all.extend(dead_ids(&stderr.dead));
        all.sort_unstable();
        assert_eq!(all, (0..count).collect::<Vec<_>>(), "{context}");
        assert!(
            bad.iter().all(|b| dead_ids(&stderr.dead).contains(b)),
            "{context}"
        );
        if split {
            let mut expected_dead = bad.clone();
            expected_dead.sort_unstable();
            expected_dead.dedup();
            assert_eq!(dead_ids(&stderr.dead), expected_dead, "{context}");
        }
        if ordered {
            for (i, line) in lines.iter().enumerate() {
                if *line != "null" {
                    assert_eq!(*line, format!("{{\"echo\":{{\"id\":{i}}}}}"), "{context}");
                }
            }
        }
    }
}

#[test]
fn a_retry_after_longer_than_the_longest_wait_fails_at_once_quoting_it() {
    for (asked, wait) in [
        ("100000", "1day 3h 46m 40s"),
        ("Fri, 31 Dec 9999 23:59:59 GMT", "7972years"),
    ] {
        let server = server(Behavior {
            status: Some(503),
            retry_after: Some(asked.into()),
            ..Behavior::default()
        });
        let started = std::time::Instant::now();
        let out = abatch_to(&server)
            .write_stdin(records(0..3))
            .assert()
            .code(1);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(server.requests().len(), 1);
        let stderr = Stderr::of(&out.get_output().stderr);
        let message = stderr.message();
        assert!(
            message.contains(&format!(
                "(Retry-After: {asked}), longer than --retry-max-wait (5m)"
            )) && message.contains(&format!("the server asked to wait {wait}")),
            "{message}"
        );
        assert_eq!(stderr.dead[0]["status"], 503);
    }
}
