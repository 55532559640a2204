//! The result cache (--cache): what it holds is answered without being sent, whatever the
//! batch size or record order; the key follows what decides an answer; only answers are kept;
//! a killed run's cache is used; --cache-only and --no-cache-write; two runs at once.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// The records a server was sent, as text, in order of arrival.
fn sent(requests: &[abatch_mock::Request]) -> Vec<String> {
    requests.iter().flat_map(|r| r.record_texts()).collect()
}

/// `{"id":N}` records for N in `ids`, with record N's text changed for N in `edited`.
fn edited(ids: std::ops::Range<usize>, edited: &[usize]) -> String {
    ids.map(|id| match edited.contains(&id) {
        true => format!("{{\"id\":{id},\"edited\":true}}\n"),
        false => format!("{{\"id\":{id}}}\n"),
    })
    .collect()
}

/// What --stats says of the cache.
fn cache_stats(stats: &Path) -> [u64; 3] {
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stats).unwrap()).unwrap();
    let cache = &stats["cache"];
    ["hits", "misses", "written"].map(|field| {
        cache[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no cache.{field} in {stats}"))
    })
}

/// A run of `input` through `server` with `cache`, which succeeds.
fn remember(server: &MockServer, cache: &Path, input: impl Into<Vec<u8>>) {
    abatch_to(server)
        .arg("--cache")
        .arg(cache)
        .write_stdin(input)
        .assert()
        .success();
}

/// How many results the cache file holds (none while it is being made).
fn remembered(cache: &Path) -> usize {
    let connection = rusqlite::Connection::open(cache).unwrap();
    let count: i64 = connection
        .query_row("SELECT count(*) FROM results", [], |row| row.get(0))
        .unwrap_or(0);
    count as usize
}

#[test]
fn a_second_identical_run_sends_nothing_and_writes_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, stats) = (dir.path().join("cache.db"), dir.path().join("stats.json"));
    let server = quick_server();
    let run = || {
        abatch_to(&server)
            .args(["--ordered", "-b", "8", "--cache"])
            .arg(&cache)
            .arg("--stats")
            .arg(&stats)
            .write_stdin(records(0..100))
            .assert()
            .success()
    };
    let first = run();
    assert_eq!(sent(&server.requests()).len(), 100);
    assert_eq!(cache_stats(&stats), [0, 100, 100]);
    let second = run();
    assert_eq!(server.requests().len(), 13, "the second run sent nothing");
    assert_eq!(first.get_output().stdout, second.get_output().stdout);
    assert_eq!(cache_stats(&stats), [100, 0, 0]);
    let summary = Stderr::of(&second.get_output().stderr).summary;
    assert!(
        summary.contains("100 written, 0 failed; 100 from the cache, 0 batches"),
        "{summary}"
    );
}

#[test]
fn after_editing_three_records_only_those_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let server = quick_server();
    let run = |input: String| {
        abatch_to(&server)
            .args(["--ordered", "--cache"])
            .arg(&cache)
            .write_stdin(input)
            .assert()
            .success()
    };
    run(records(0..100));
    let before = server.requests().len();
    let out = run(edited(0..100, &[3, 50, 97]));
    let mut seen = sent(&server.requests()[before..]);
    seen.sort_unstable_by_key(|text| echoed_number(text));
    assert_eq!(
        seen,
        [
            r#"{"id":3,"edited":true}"#,
            r#"{"id":50,"edited":true}"#,
            r#"{"id":97,"edited":true}"#
        ]
    );
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..100).collect::<Vec<_>>()
    );
}

#[test]
fn another_model_is_another_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let server = quick_server();
    let run = |model: &str| {
        let out = abatch_at(&server, "/v1/embeddings")
            .args(["--api", "openai-embeddings", "--model", model, "--cache"])
            .arg(&cache)
            .write_stdin(records(0..40))
            .assert()
            .success();
        let mut ids = echoed_ids(&out.get_output().stdout);
        ids.sort_unstable();
        assert_eq!(ids, (0..40).collect::<Vec<_>>());
    };
    let records_sent = || server.requests().iter().map(|r| r.records).sum::<usize>();
    run("a");
    assert_eq!(records_sent(), 40);
    run("a");
    assert_eq!(records_sent(), 40, "the same model: all from the cache");
    run("b");
    assert_eq!(records_sent(), 80, "another model: everything sent");
}

#[test]
fn neither_batch_size_nor_record_order_changes_what_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let server = quick_server();
    abatch_to(&server)
        .args(["-b", "7", "--cache"])
        .arg(&cache)
        .write_stdin(records(0..100))
        .assert()
        .success();
    let before = server.requests().len();
    let shuffled: Vec<usize> = (0..100).map(|i| i * 37 % 100).collect();
    let out = abatch_to(&server)
        .args(["-b", "13", "--ordered", "--cache"])
        .arg(&cache)
        .write_stdin(records(shuffled.iter().copied()))
        .assert()
        .success();
    assert_eq!(server.requests().len(), before, "nothing sent");
    assert_eq!(echoed_ids(&out.get_output().stdout), shuffled);
}

/// With --ordered, the output of a run that mixes remembered and fresh results is the output
/// of a run without the cache; without, scattered cached records leave the requests full.
#[test]
fn cached_and_fresh_results_interleave_as_an_uncached_run_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let server = quick_server();
    let every_third = records((0..100).filter(|id| id % 3 == 0));
    abatch_to(&server)
        .args(["--cache"])
        .arg(&cache)
        .write_stdin(every_third)
        .assert()
        .success();
    let uncached = abatch_to(&server)
        .args(["--ordered", "-b", "10"])
        .write_stdin(records(0..100))
        .assert()
        .success();
    let before = server.requests().len();
    let cached = abatch_to(&server)
        .args(["--ordered", "-b", "10", "--cache"])
        .arg(&cache)
        .write_stdin(records(0..100))
        .assert()
        .success();
    assert_eq!(cached.get_output().stdout, uncached.get_output().stdout);
    let fresh: Vec<String> = (0..100)
        .filter(|id| id % 3 != 0)
        .map(|id| format!("{{\"id\":{id}}}"))
        .collect();
    let mut seen = sent(&server.requests()[before..]);
    seen.sort_unstable_by_key(|text| echoed_number(text));
    assert_eq!(seen, fresh);

    // Out of order: the 66 fresh records still go in batches of 10.
    let other = dir.path().join("other.db");
    abatch_to(&server)
        .args(["--cache"])
        .arg(&other)
        .write_stdin(records((0..100).filter(|id| id % 3 == 0)))
        .assert()
        .success();
    let mid = server.requests().len();
    abatch_to(&server)
        .args(["-b", "10", "-c", "1", "--cache"])
        .arg(&other)
        .write_stdin(records(0..100))
        .assert()
        .success();
    let sizes: Vec<usize> = server.requests()[mid..].iter().map(|r| r.records).collect();
    assert_eq!(sizes, [10, 10, 10, 10, 10, 10, 6]);
}

/// The number in a record's text `{"id":N}`.
fn echoed_number(text: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    value["id"].as_u64().unwrap()
}

/// A run killed outright keeps what it committed: the next run sends only the rest, and the
/// two together answer every record once.
#[test]
fn a_killed_runs_cache_is_used_by_the_next_run() {
    // About 6 s of work: the first commit comes long before the end.
    const RECORDS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let cache_arg = cache.to_str().unwrap();
    let server = server(Behavior {
        latency: Some(Duration::from_millis(100)),
        ..Behavior::default()
    });
    let mut child = spawn_to(&server, &["-b", "5", "-c", "1", "--cache", cache_arg]);
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, records(0..RECORDS).as_bytes()).unwrap();
    drop(stdin);
    let deadline = std::time::Instant::now() + PATIENCE;
    while !cache.exists() || remembered(&cache) < 15 {
        assert!(std::time::Instant::now() < deadline, "nothing remembered");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    assert!(!exit_of(&mut child).success());
    let kept = remembered(&cache);
    assert!((15..RECORDS).contains(&kept), "{kept}");
    let first_requests = server.requests();
    let first = sent(&first_requests);

    let out = abatch_to(&server)
        .args(["-c", "8", "--cache"])
        .arg(&cache)
        .write_stdin(records(0..RECORDS))
        .assert()
        .success();
    let second = sent(&server.requests()[first_requests.len()..]);
    assert_eq!(
        second.len(),
        RECORDS - kept,
        "only what was not kept is sent"
    );
    let never_sent = (0..RECORDS)
        .map(|id| format!("{{\"id\":{id}}}"))
        .filter(|text| !first.contains(text));
    for text in never_sent {
        assert!(second.contains(&text), "{text} was never answered");
    }
    let mut ids = echoed_ids(&out.get_output().stdout);
    ids.sort_unstable();
    assert_eq!(ids, (0..RECORDS).collect::<Vec<_>>());
    assert_eq!(remembered(&cache), RECORDS);
}

#[test]
fn cache_only_sends_nothing_and_fails_what_it_does_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let server = quick_server();
    remember(&server, &cache, records(0..50));
    let before = server.requests().len();
    let out = abatch_to(&server)
        .args(["--cache-only", "--on-error", "skip", "--ordered", "--cache"])
        .arg(&cache)
        .write_stdin(records(0..100))
        .assert()
        .code(3);
    assert_eq!(server.requests().len(), before, "nothing sent");
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..50).collect::<Vec<_>>()
    );
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(dead_ids(&stderr.dead), (50..100).collect::<Vec<_>>());
    for letter in &stderr.dead {
        assert_eq!(
            letter["error"], "not in the cache (--cache-only)",
            "{letter}"
        );
        assert_eq!(letter["attempts"], 0, "{letter}");
    }
    // Under abort, the first record it does not hold stops the run.
    abatch_to(&server)
        .args(["--cache-only", "--cache"])
        .arg(&cache)
        .write_stdin(records(40..60))
        .assert()
        .code(1);
    assert_eq!(server.requests().len(), before, "nothing sent");
}

#[test]
fn no_cache_write_reads_the_cache_and_leaves_it_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let server = quick_server();
    remember(&server, &cache, records(0..50));
    let bytes = std::fs::read(&cache).unwrap();
    let before = server.requests().len();
    let run = |extra: &[&str]| {
        abatch_to(&server)
            .args(extra)
            .arg("--cache")
            .arg(&cache)
            .write_stdin(records(0..100))
            .assert()
            .success()
    };
    let out = run(&["--no-cache-write"]);
    assert_eq!(sent(&server.requests()[before..]).len(), 50);
    assert_eq!(echoed_ids(&out.get_output().stdout).len(), 100);
    assert_eq!(
        std::fs::read(&cache).unwrap(),
        bytes,
        "the file is unchanged"
    );
    assert_eq!(remembered(&cache), 50);
    // A dry run shows only what would be sent, and writes nothing either.
    let shown = run(&["--dry-run"]);
    let requests: Vec<serde_json::Value> = String::from_utf8_lossy(&shown.get_output().stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let shown_records: usize = requests
        .iter()
        .map(|r| r["body"].as_array().unwrap().len())
        .sum();
    assert_eq!(shown_records, 50);
    assert_eq!(remembered(&cache), 50);
    let new = dir.path().join("new.db");
    abatch_to(&server)
        .args(["--dry-run", "--cache"])
        .arg(&new)
        .write_stdin(records(0..10))
        .assert()
        .success();
    assert!(!new.exists(), "a dry run makes no cache");
    // Then a run that writes sends those 50 again, and keeps them.
    let before = server.requests().len();
    run(&[]);
    assert_eq!(sent(&server.requests()[before..]).len(), 50);
    assert_eq!(remembered(&cache), 100);
}

#[test]
fn results_of_failed_batches_are_not_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    // The first ten requests fail: the first run's, one for each batch.
    let server = server(Behavior {
        status: Some(500),
        fail_first: Some(10),
        ..Behavior::default()
    });
    let run = || {
        abatch_to(&server)
            .args([
                "-b",
                "10",
                "-c",
                "1",
                "--retries",
                "0",
                "--on-error",
                "skip",
            ])
            .arg("--cache")
            .arg(&cache)
            .write_stdin(records(0..100))
            .assert()
    };
    run().code(3);
    assert_eq!(server.requests().len(), 10);
    assert_eq!(remembered(&cache), 0);
    let out = run().success();
    assert_eq!(sent(&server.requests()[10..]).len(), 100, "all sent again");
    assert_eq!(echoed_ids(&out.get_output().stdout).len(), 100);
    assert_eq!(remembered(&cache), 100);
}

#[test]
fn two_runs_on_one_cache_at_once_both_finish() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let cache_arg = cache.to_str().unwrap();
    let server = server(Behavior {
        latency: Some(Duration::from_millis(20)),
        ..Behavior::default()
    });
    // Long enough (about 0.6 s) for each to commit several times while the other runs.
    let args = ["-b", "5", "--ordered", "--cache", cache_arg];
    let mut runs: Vec<_> = [0..600, 300..900]
        .into_iter()
        .map(|ids| {
            let mut child = spawn_to(&server, &args);
            let mut stdin = child.stdin.take().unwrap();
            let output = lines_of(child.stdout.take().unwrap());
            std::io::Write::write_all(&mut stdin, records(ids.clone()).as_bytes()).unwrap();
            (child, output, ids)
        })
        .collect();
    for (child, output, ids) in &mut runs {
        let status = exit_of(child);
        let stderr = stderr_of(child);
        assert!(status.success(), "{status}: {stderr}");
        let lines: Vec<String> = output.iter().collect();
        assert_eq!(
            echoed_ids(lines.join("\n").as_bytes()),
            ids.clone().collect::<Vec<_>>()
        );
    }
    assert_eq!(remembered(&cache), 900);
    let before = server.requests().len();
    remember(&server, &cache, records(0..900));
    assert_eq!(server.requests().len(), before, "everything was remembered");
}

/// A run that finds the file locked by another waits for it, and remembers everything.
#[test]
fn a_run_waits_for_another_to_let_go_of_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let server = quick_server();
    remember(&server, &cache, records(0..1));
    // Another program writes, and holds the lock while the run sends its records.
    let other = rusqlite::Connection::open(&cache).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut child = spawn_to(&server, &["-b", "10", "--cache", cache.to_str().unwrap()]);
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, records(0..100).as_bytes()).unwrap();
    drop(stdin);
    let deadline = std::time::Instant::now() + PATIENCE;
    while sent(&server.requests()).len() < 1 + 99 {
        assert!(
            std::time::Instant::now() < deadline,
            "the records were not sent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    other.execute_batch("COMMIT").unwrap();
    let status = exit_of(&mut child);
    let stderr = stderr_of(&mut child);
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(remembered(&cache), 100);
}

#[test]
fn a_file_that_is_no_cache_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "x".repeat(5000)).unwrap();
    let server = quick_server();
    let out = abatch_to(&server)
        .arg("--cache")
        .arg(&notes)
        .write_stdin(records(0..10))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let first = stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "error: --cache {} is not an abatch cache (not an SQLite database); name another file",
            notes.display()
        )
    );
    assert_eq!(std::fs::read(&notes).unwrap(), "x".repeat(5000).as_bytes());
    assert!(server.requests().is_empty());
    // --cache-only and --no-cache-write never make a cache.
    let missing = dir.path().join("missing.db");
    let out = abatch_to(&server)
        .args(["--no-cache-write", "--cache"])
        .arg(&missing)
        .write_stdin(records(0..10))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("missing.db does not exist"), "{stderr}");
    assert!(!missing.exists());
    abatch_to(&server)
        .arg("--cache-only")
        .write_stdin(records(0..10))
        .assert()
        .code(2);
    assert!(server.requests().is_empty());
}
