//! Budgets and limits that end batches or the run: --tpm, usage counts, --max-errors,
//! refusals no record passes (401, 403, 404, 405), --deadline and Idempotency-Key.

use std::time::{Duration, Instant};

use abatch_mock::Request;

use crate::common::*;

/// The tokens abatch estimates for a request before sending it, which is also what the mock
/// counts as its prompt: a token per 4 bytes of body, rounded up, at least 1.
fn estimated(request: &Request) -> u64 {
    request.body.len().div_ceil(4).max(1) as u64
}

/// Checks that requests started no faster than a budget of `tpm` tokens a minute allows,
/// each holding `tokens`: for every pair i < j, the tokens of requests i..j-1 were paid for
/// between their arrivals. The slack (15% plus 300 ms) is for delivery: a request the loaded
/// machine delivers late (the first, on a new connection, or one of a starved process) lets
/// the next arrive that much closer, since abatch keeps to its schedule rather than shift it.
fn assert_paced(requests: &[Request], tpm: u64, tokens: impl Fn(&Request) -> u64) {
    for i in 0..requests.len() {
        for j in i + 1..requests.len() {
            let held: u64 = requests[i..j].iter().map(&tokens).sum();
            let span = requests[j].arrived - requests[i].arrived;
            let allowed = tpm as f64 / 60.0 * (span.as_secs_f64() * 1.15 + 0.3);
            assert!(
                held as f64 <= allowed,
                "requests {i}..{j} hold {held} tokens, yet request {j} arrived {span:?} after \
                 request {i}; {tpm} a minute allows {allowed:.1}"
            );
        }
    }
}

/// Records 0..n whose bodies `[{"id":N,"pad":"…"}]` are 40 bytes each: 10 tokens, a second
/// apart at --tpm 600.
fn padded_records(n: usize) -> String {
    (0..n)
        .map(|id| format!("{{\"id\":{id},\"pad\":\"{}\"}}\n", "x".repeat(21)))
        .collect()
}

/// Records 0..n, those for which `fails` holds scripted to fail with `status`.
fn failing_where(n: usize, status: u16, fails: impl Fn(usize) -> bool) -> String {
    (0..n)
        .map(|id| {
            if fails(id) {
                format!("{{\"id\":{id},\"mock\":{{\"status\":{status}}}}}\n")
            } else {
                records(id..id + 1)
            }
        })
        .collect()
}

/// The ids of the results on stdout, in output order, and how many null lines stand among
/// them.
fn results_and_nulls(stdout: &[u8]) -> (Vec<usize>, usize) {
    let text = String::from_utf8_lossy(stdout);
    let nulls = text.lines().filter(|line| *line == "null").count();
    let results: String = text
        .lines()
        .filter(|line| *line != "null")
        .map(|line| format!("{line}\n"))
        .collect();
    (echoed_ids(results.as_bytes()), nulls)
}

/// Checks that every record read has a result line or a dead letter, and only one of them;
/// returns stderr taken apart.
fn each_record_once(out: &std::process::Output) -> Stderr {
    let stderr = Stderr::of(&out.stderr);
    let (mut ids, _) = results_and_nulls(&out.stdout);
    ids.extend(dead_ids(&stderr.dead));
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..stderr.records_read()).collect::<Vec<_>>(),
        "{stderr:#?}"
    );
    stderr
}

/// From "stopped: F of J records failed, more than --max-errors allows (...)": F and J.
fn stopped_by_budget(stderr: &Stderr, allows: &str) -> (u64, u64) {
    let message = stderr
        .messages
        .iter()
        .find_map(|m| m.strip_prefix("abatch: stopped: "))
        .unwrap_or_else(|| panic!("no stopped message: {stderr:#?}"));
    assert!(
        message.contains(&format!(
            "records failed, more than --max-errors allows ({allows})"
        )),
        "{message}"
    );
    let numbers: Vec<u64> = message
        .split(' ')
        .take(3)
        .filter_map(|word| word.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{message}");
    (numbers[0], numbers[1])
}

/// The request's Idempotency-Key, if it has one.
fn key(request: &Request) -> Option<String> {
    request
        .headers
        .get("idempotency-key")
        .map(|value| value.to_str().unwrap().to_owned())
}

/// Each request's key, split into the run's id (checked to be 16 hex digits, the same for
/// all) and the rest after it ("1", "2-0..1").
fn keys_of_one_run(requests: &[Request]) -> (String, Vec<String>) {
    let keys: Vec<String> = requests
        .iter()
        .map(|r| key(r).unwrap_or_else(|| panic!("no Idempotency-Key: {:?}", r.headers)))
        .collect();
    let run = keys[0].split('-').next().unwrap().to_owned();
    assert!(
        run.len() == 16 && run.chars().all(|c| c.is_ascii_hexdigit()),
        "{keys:?}"
    );
    let rest = keys
        .iter()
        .map(|k| {
            k.strip_prefix(&format!("{run}-"))
                .unwrap_or_else(|| panic!("{k} is not of run {run}: {keys:?}"))
                .to_owned()
        })
        .collect();
    (run, rest)
}

/// --tpm spreads request starts so that no span of time holds more tokens (a token per 4
/// bytes of body) than the budget allows, even with -c 4 free to send them all at once, and
/// waits no longer than the budget needs.
#[test]
fn tpm_spreads_requests_by_their_tokens() {
    let server = quick_server();
    let tpm = 600;
    abatch_to(&server)
        .args(["-b", "1", "-c", "4", "-q", "--tpm", &tpm.to_string()])
        .write_stdin(padded_records(5))
        .assert()
        .success();
    let requests = server.requests();
    assert_eq!(requests.len(), 5);
    assert!(requests.iter().all(|r| estimated(r) == 10));
    assert_paced(&requests, tpm, estimated);
    // Requests start once their tokens are paid for, not later: 4 × 10 tokens take 4 s.
    let budget: u64 = requests[..4].iter().map(estimated).sum();
    let needed = Duration::from_secs(60).mul_f64(budget as f64 / tpm as f64);
    let took = requests[4].arrived - requests[0].arrived;
    assert!(
        took <= needed + Duration::from_secs(1),
        "took {took:?} where the budget needs {needed:?}"
    );
}

/// The tokens the server reports in its answers (OpenAI's usage, Ollama's
/// prompt_eval_count) add up in --stats and the summary; a server that reports none leaves
/// `tokens` out of both.
#[test]
fn usage_the_server_counts_is_summed_in_stats_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let read_stats = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap()
    };
    // The API's path, its preset, and whether each record answered counts a completion token.
    for (path, api, completes) in [
        ("/v1/embeddings", "openai-embeddings", false),
        ("/v1/completions", "openai-completions", true),
        ("/api/embed", "ollama-embed", false),
    ] {
        let server = quick_server();
        let out = abatch_at(&server, path)
            .args(["--api", api, "--model", "m", "-b", "3", "--stats"])
            .arg(&stats)
            .write_stdin("\"a\"\n\"bb\"\n\"ccc\"\n\"dddd\"\n\"eeeee\"\n\"ffffff\"\n\"g\"\n")
            .assert()
            .success();
        let requests = server.requests();
        assert_eq!(requests.len(), 3, "{api}");
        let prompt: u64 = requests.iter().map(estimated).sum();
        let completion = if completes { 7 } else { 0 };
        let tokens = &read_stats()["tokens"];
        assert_eq!(
            *tokens,
            serde_json::json!({
                "prompt": prompt,
                "completion": completion,
                "total": prompt + completion,
            }),
            "{api}"
        );
        let summary = Stderr::of(&out.get_output().stderr).summary;
        assert!(
            summary.ends_with(&format!(
                ", {} tokens (as the server counted)",
                prompt + completion
            )),
            "{api}: {summary}"
        );
    }

    let server = quick_server();
    let out = abatch_to(&server)
        .args(["-b", "3", "--stats"])
        .arg(&stats)
        .write_stdin(records(0..7))
        .assert()
        .success();
    let report = read_stats();
    assert!(report.get("tokens").is_none(), "{report:#}");
    assert_eq!(report["records"]["written"], 7, "the stats are this run's");
    let summary = Stderr::of(&out.get_output().stderr).summary;
    assert!(!summary.contains("token"), "{summary}");
}

/// When the server counts more tokens than estimated (a completion token per record beyond
/// the prompt), --tpm holds the next request back for the difference too.
#[test]
fn tpm_is_corrected_by_the_tokens_the_server_counted() {
    let server = quick_server();
    let tpm = 12_000;
    // Records of 2 bytes ("7,") are half a token of prompt each, but a whole completion token:
    // the server counts nearly 3 times the estimate.
    let input: String = (0..300).map(|n| format!("{}\n", n % 10)).collect();
    abatch_at(&server, "/v1/completions")
        .args(["--api", "openai-completions", "--model", "m", "-q"])
        .args(["-b", "100", "-c", "1", "--tpm", &tpm.to_string()])
        .write_stdin(input)
        .assert()
        .success();
    let requests = server.requests();
    assert_eq!(sizes(&server), [100, 100, 100]);
    assert_paced(&requests, tpm, |r| estimated(r) + r.records as u64);
}

/// --max-errors N under skip: the run stops (exit 1) at the failure that makes more than N,
/// reading stops, and every record read is still written or a dead letter.
#[test]
fn max_errors_stops_the_run_once_more_than_n_records_failed() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["-b", "1", "--retries", "0", "--on-error", "skip"])
        .args(["--max-errors", "5"])
        .write_stdin(failing_where(1000, 500, |id| id % 2 == 0))
        .assert()
        .code(1);
    let stderr = each_record_once(out.get_output());
    let (failed, judged) = stopped_by_budget(&stderr, "5 records");
    assert_eq!(failed, 6, "{stderr:#?}");
    assert!(judged >= failed, "{stderr:#?}");
    assert!(
        stderr.summary.contains(" unanswered "),
        "{}",
        stderr.summary
    );
    let (written, nulls) = results_and_nulls(&out.get_output().stdout);
    assert_eq!(nulls, 0, "skip writes no null lines");
    assert!(written.iter().all(|id| id % 2 == 1), "{written:?}");
    let sent = server.requests().len();
    assert!(
        sent < 100,
        "{sent} requests for 1000 records: reading stopped"
    );
}

/// --max-errors P% is judged only once 100 records were answered or failed: a run failing
/// 20% against a 10% budget stops there, not at its first failures.
#[test]
fn max_errors_as_a_percentage_is_judged_from_100_records_on() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["-b", "1", "--retries", "0", "--on-error", "null"])
        .args(["--max-errors", "10%"])
        .write_stdin(failing_where(1000, 500, |id| id % 5 == 0))
        .assert()
        .code(1);
    let stderr = each_record_once(out.get_output());
    let (failed, judged) = stopped_by_budget(&stderr, "10% of the records");
    assert!(
        (100..120).contains(&judged) && failed * 10 > judged,
        "{failed} of {judged}"
    );
    let (written, nulls) = results_and_nulls(&out.get_output().stdout);
    assert_eq!(
        written.len() + nulls,
        judged as usize,
        "under null, a line for each record judged"
    );
    assert!(
        server.requests().len() < 200,
        "{} requests",
        server.requests().len()
    );
}

/// Within its --max-errors budget, a run with failures goes to the end and exits 3.
#[test]
fn max_errors_not_exceeded_lets_the_run_finish() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["-b", "1", "-c", "8", "--retries", "0", "--on-error", "null"])
        .args(["--max-errors", "50%"])
        .write_stdin(failing_where(1000, 500, |id| id % 5 == 0))
        .assert()
        .code(3);
    let stderr = each_record_once(out.get_output());
    assert!(
        !stderr.messages.iter().any(|m| m.contains("stopped")),
        "{stderr:#?}"
    );
    let (written, nulls) = results_and_nulls(&out.get_output().stdout);
    assert_eq!((written.len(), nulls), (800, 200));
    assert_eq!(
        dead_ids(&stderr.dead),
        (0..1000).step_by(5).collect::<Vec<_>>()
    );
}

/// --max-errors means nothing when the first failure stops the run: with --on-error abort,
/// given or by default, it is a usage error and nothing is sent.
#[test]
fn max_errors_needs_skip_or_null() {
    let server = quick_server();
    for args in [
        &["--max-errors", "3"][..],
        &["--max-errors", "3", "--on-error", "abort"],
        &["--max-errors", "1%", "--on-error", "abort"],
    ] {
        let out = abatch_to(&server)
            .args(args)
            .write_stdin(records(0..3))
            .assert()
            .code(2)
            .stdout("");
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.starts_with("error: ") && stderr.contains("--on-error"),
            "{args:?}: {stderr}"
        );
    }
    assert!(server.requests().is_empty());
}

/// 401, 403, 404 and 405 say something is wrong with the run, not the records: under skip
/// and abort, with retries and --split-on-error, the run stops at once (exit 1) with advice,
/// no request is retried or split, and the dead letters carry the status.
#[test]
fn refusals_no_record_passes_stop_the_run_at_once() {
    let cases = [
        (401, "credentials"),
        (403, "credentials"),
        (404, "path"),
        (405, "path"),
    ];
    for ((status, advice), policy) in cases
        .into_iter()
        .flat_map(|case| ["skip", "abort"].map(|policy| (case, policy)))
    {
        let server = server(Behavior {
            status: Some(status),
            ..Behavior::default()
        });
        let out = abatch_to(&server)
            .args([
                "-b",
                "4",
                "-c",
                "3",
                "--on-error",
                policy,
                "--split-on-error",
            ])
            .args(["--retries", "5", "--retry-backoff", "1ms"])
            .write_stdin(records(0..40))
            .assert()
            .code(1)
            .stdout("");
        let stderr = each_record_once(out.get_output());
        let stopped = stderr
            .messages
            .iter()
            .find(|m| m.starts_with("abatch: stopped: "))
            .unwrap_or_else(|| panic!("{status} {policy}: {stderr:#?}"));
        assert!(
            stopped.contains(advice) && stopped.contains(&format!("HTTP {status}")),
            "{status} {policy}: {stopped}"
        );
        let sizes = sizes(&server);
        assert!(
            sizes.len() <= 3 && sizes.iter().all(|n| *n == 4),
            "{status}: requests of {sizes:?}"
        );
        let refused: Vec<&serde_json::Value> = stderr
            .dead
            .iter()
            .filter(|letter| letter["status"] == status)
            .collect();
        assert!(!refused.is_empty(), "{status}: {stderr:#?}");
        assert!(
            refused.iter().all(|letter| letter["attempts"] == 1),
            "{status}: {refused:?}"
        );
    }
}

/// One request refused with 404 (a record scripts it) stops a run that was going well,
/// under --on-error null too: the results before stay, its records get their null lines, and
/// nothing more is sent.
#[test]
fn a_404_mid_run_stops_it_even_under_null() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args([
            "-b",
            "2",
            "-c",
            "1",
            "--on-error",
            "null",
            "--split-on-error",
        ])
        .write_stdin(failing_where(20, 404, |id| id == 9))
        .assert()
        .code(1);
    let stderr = each_record_once(out.get_output());
    let (written, nulls) = results_and_nulls(&out.get_output().stdout);
    assert_eq!((written, nulls), ((0..8).collect::<Vec<_>>(), 2));
    assert_eq!(sizes(&server), [2, 2, 2, 2, 2], "not split, not retried");
    let refused: Vec<serde_json::Value> = stderr
        .dead
        .iter()
        .filter(|letter| letter["status"] == 404)
        .cloned()
        .collect();
    assert_eq!(dead_ids(&refused), [8, 9]);
    assert!(
        stderr.messages.iter().any(|m| m.contains("path")),
        "{stderr:#?}"
    );
}

/// --deadline bounds a batch from its first attempt to its last answer: against a server
/// that always answers 503, a batch with 100 retries to spare fails once it is used up (a
/// retry that could not start in time is not waited for), under --on-error like any failure.
#[test]
fn deadline_ends_a_batch_retries_included() {
    let server = server(Behavior {
        status: Some(503),
        ..Behavior::default()
    });
    let started = Instant::now();
    let out = abatch_to(&server)
        .args([
            "--deadline",
            "1s",
            "--retries",
            "100",
            "--retry-backoff",
            "50ms",
        ])
        .args(["--on-error", "null", "-b", "5"])
        .write_stdin(records(0..10))
        .assert()
        .code(3);
    // 100 retries would take tens of minutes (waits of up to 30 s each).
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        "null\n".repeat(10)
    );
    let stderr = each_record_once(out.get_output());
    assert_eq!(stderr.dead.len(), 10);
    for letter in &stderr.dead {
        let error = letter["error"].as_str().unwrap();
        assert!(
            error.contains("--deadline") && error.contains("503"),
            "{letter}"
        );
        assert!(letter["attempts"].as_u64().unwrap() >= 3, "{letter}");
    }
    // Each batch was tried several times, every attempt starting within its deadline.
    let requests = server.requests();
    for first in [0, 5] {
        let batch: Vec<&Request> = requests
            .iter()
            .filter(|r| r.record_texts()[0] == format!("{{\"id\":{first}}}"))
            .collect();
        assert!(
            batch.len() >= 3,
            "batch from {first}: {} attempts",
            batch.len()
        );
        let span = batch.last().unwrap().arrived - batch[0].arrived;
        assert!(
            span < Duration::from_millis(1500),
            "batch from {first}: attempts over {span:?}"
        );
    }
}

/// A retry whose wait would end past the --deadline is not waited for: a server asking for
/// 20 s (Retry-After) fails a batch with 10 s left at once, naming the deadline and the
/// status.
#[test]
fn a_retry_that_would_start_past_the_deadline_fails_at_once() {
    let server = server(Behavior {
        status: Some(503),
        retry_after: Some("20".into()),
        ..Behavior::default()
    });
    let started = Instant::now();
    let out = abatch_to(&server)
        .args(["--deadline", "10s", "--on-error", "skip"])
        .write_stdin(records(0..5))
        .assert()
        .code(3)
        .stdout("");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(server.requests().len(), 1);
    let stderr = each_record_once(out.get_output());
    for letter in &stderr.dead {
        assert_eq!(letter["status"], 503, "{letter}");
        assert_eq!(letter["attempts"], 1, "{letter}");
        assert!(
            letter["error"]
                .as_str()
                .unwrap()
                .starts_with("no answer within --deadline (10s)"),
            "{letter}"
        );
    }
}

/// --idempotency-key: every attempt at a request carries the same key, RUN-BATCH with one
/// RUN (16 hex digits) for the whole run, and different requests carry different keys.
#[test]
fn idempotency_keys_stay_the_same_across_retries_only() {
    let server = server(Behavior {
        fail_first: Some(2),
        ..Behavior::default()
    });
    abatch_to(&server)
        .args(["--idempotency-key", "-c", "1", "-b", "2"])
        .args(["--retry-backoff", "10ms"])
        .write_stdin(records(0..6))
        .assert()
        .success();
    let requests = server.requests();
    let (_, keys) = keys_of_one_run(&requests);
    assert_eq!(keys, ["1", "1", "1", "2", "3"], "two 503s for batch 1");
}

/// The halves of a batch split by a 413 carry keys of their own, naming the records'
/// positions in the batch; each run has its own RUN; without the flag, no key at all.
#[test]
fn split_requests_have_keys_of_their_own_and_none_without_the_flag() {
    let server = server(Behavior {
        max_records: Some(1),
        ..Behavior::default()
    });
    let run = |flag: Option<&str>| {
        let before = server.requests().len();
        let mut cmd = abatch_to(&server);
        cmd.args(flag)
            .args(["-c", "1", "-b", "2", "--ordered", "-q"]);
        let out = cmd.write_stdin(records(0..4)).assert().success();
        assert_eq!(
            echoed_ids(&out.get_output().stdout),
            (0..4).collect::<Vec<_>>()
        );
        server.requests().split_off(before)
    };

    let requests = run(Some("--idempotency-key"));
    let (first_run, keys) = keys_of_one_run(&requests);
    assert_eq!(keys, ["1", "1-0..1", "1-1..2", "2", "2-0..1", "2-1..2"]);
    let texts: Vec<Vec<String>> = requests.iter().map(Request::record_texts).collect();
    assert_eq!(texts[1], ["{\"id\":0}"]);
    assert_eq!(texts[5], ["{\"id\":3}"]);

    let (second_run, _) = keys_of_one_run(&run(Some("--idempotency-key")));
    assert_ne!(first_run, second_run, "a new RUN for each run");

    let plain = run(None);
    assert_eq!(plain.len(), 6);
    assert!(plain.iter().all(|r| key(r).is_none()), "{plain:?}");
}

/// The deadline counts from a batch's first attempt once sent: batches held back by --tpm
/// (here, 4 of 5 for up to 4 s, with a 2 s deadline) are not failed before they were tried.
#[test]
fn waiting_for_the_token_budget_before_the_first_attempt_is_not_past_the_deadline() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["--tpm", "600", "--deadline", "2s", "-b", "1", "-c", "4"])
        .args(["--on-error", "null"])
        .write_stdin(padded_records(5))
        .assert()
        .success();
    let (ids, nulls) = results_and_nulls(&out.get_output().stdout);
    assert_eq!((ids.len(), nulls), (5, 0));
    assert_eq!(server.requests().len(), 5);
}

/// --dry-run shows the Idempotency-Key each request would carry, and sends nothing.
#[test]
fn a_dry_run_shows_each_requests_idempotency_key() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["--dry-run", "--idempotency-key", "-b", "2"])
        .write_stdin(records(0..3))
        .assert()
        .success();
    let keys: Vec<String> = String::from_utf8_lossy(&out.get_output().stdout)
        .lines()
        .map(|line| {
            let shown: serde_json::Value = serde_json::from_str(line).unwrap();
            shown["headers"]["idempotency-key"]
                .as_str()
                .unwrap_or_else(|| panic!("no key: {line}"))
                .to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 2);
    let run = keys[0]
        .strip_suffix("-1")
        .unwrap_or_else(|| panic!("{keys:?}"));
    assert_eq!(keys[1], format!("{run}-2"));
    assert!(server.requests().is_empty());
}
