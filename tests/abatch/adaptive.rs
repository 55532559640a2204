//! -c auto against servers of limited capacity, the shared cooldown and rate-limit headers.

use std::num::NonZeroUsize;
use std::process::Stdio;
use std::time::Duration;

use abatch_mock::RatelimitHeaders;
use serde_json::{Value, json};

use crate::common::*;

/// What a run that answered every record left behind: its -v log and its --stats.
struct Run {
    log: String,
    stats: Value,
}

impl Run {
    /// A number in the stats, by JSON pointer ("/concurrency/limit_final").
    fn stat(&self, pointer: &str) -> f64 {
        self.stats
            .pointer(pointer)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("no number at {pointer} in {:#}", self.stats))
    }

    /// How many answers had this HTTP status, as abatch counted them.
    fn answers(&self, status: u16) -> f64 {
        self.stats["requests"]["statuses"][status.to_string()]
            .as_f64()
            .unwrap_or(0.0)
    }

    /// The changes of the concurrency limit the log tells of: (from, to, why).
    fn limit_changes(&self) -> Vec<(usize, usize, &str)> {
        self.log
            .lines()
            .filter_map(|line| line.split_once(" INFO concurrency limit ").map(|(_, c)| c))
            .map(|change| {
                let parsed = change.split_once(" → ").and_then(|(from, rest)| {
                    let (to, why) = rest.split_once(": ")?;
                    Some((from.parse().ok()?, to.parse().ok()?, why))
                });
                parsed.unwrap_or_else(|| panic!("not a limit change: {change}"))
            })
            .collect()
    }
}

/// Runs abatch against `server` with `args`, -v and --stats, on `input` (records whose ids
/// are 0..n, scripted or not); expects exit 0 and every record answered once.
fn answered_all(server: &MockServer, args: &[&str], input: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let out = abatch_to(server)
        .args(args)
        .arg("-v")
        .arg("--stats")
        .arg(&stats)
        .write_stdin(input)
        .assert();
    let output = out.get_output();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    let told: Vec<&str> = log.lines().filter(|l| !l.contains(" INFO ")).collect();
    assert_eq!(output.status.code(), Some(0), "{args:?}: {told:#?}");
    let mut ids = echoed_ids(&output.stdout);
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..input.lines().count()).collect::<Vec<_>>(),
        "{args:?}"
    );
    let stats = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    Run { log, stats }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Pins that -c auto:MIN..MAX starts at MIN, grows while the server keeps up, and never lets
/// more than MAX attempts be in flight: against a server with no limit of its own it climbs
/// from 1 to 6 and stops there, by its stats, its log and what the server saw. (The server
/// takes 50 ms: against a few ms, the client's own delays on a loaded machine look like a
/// queue, and the limit may turn back before it reaches 6.)
#[test]
fn the_limit_rises_from_its_start_and_never_past_its_most() {
    let server = server(Behavior {
        latency: Some(ms(50)),
        ..Behavior::default()
    });
    let run = answered_all(&server, &["-c", "auto:1..6", "-b", "1"], &records(0..150));
    let most = server.max_in_flight();
    assert!(most <= 6, "{most} requests at once");
    assert_eq!(run.stat("/concurrency/limit"), 6.0);
    assert_eq!(run.stat("/concurrency/limit_min"), 1.0);
    assert_eq!(run.stat("/concurrency/limit_max"), 6.0, "it reached MAX");
    assert!(run.stat("/concurrency/limit_final") <= 6.0);
    assert!(run.stat("/concurrency/max") <= 6.0);
    let changes = run.limit_changes();
    assert_eq!(
        changes.first().map(|c| (c.0, c.1)),
        Some((1, 2)),
        "{changes:?}"
    );
    assert!(
        changes.iter().all(|c| (1..=6).contains(&c.1)),
        "{changes:?}"
    );
}

/// Pins that 429s for a full server shrink the limit and keep it near the server's capacity:
/// 4 workers that refuse the rest; after the overshoot that finds them, few attempts are
/// refused and every record is answered.
#[test]
fn the_limit_falls_after_429s_and_stays_near_the_capacity() {
    let server = server(Behavior {
        latency: Some(ms(25)),
        capacity: NonZeroUsize::new(4),
        capacity_429: true,
        ..Behavior::default()
    });
    let run = answered_all(
        &server,
        &["-c", "auto:1..32", "-b", "1", "--on-error", "null"],
        &records(0..300),
    );
    let last = run.stat("/concurrency/limit_final");
    let most = run.stat("/concurrency/limit_max");
    // The limit ends at the capacity, or one above it while probing for more.
    assert!(last <= 6.0, "limit_final {last}");
    assert!(most > last, "limit_max {most}, limit_final {last}");
    let requests = run.stat("/requests/count");
    assert_eq!(requests as usize, server.requests().len());
    let refused = run.answers(429);
    assert!(refused < requests * 0.05, "{refused} of {requests} refused");
    let changes = run.limit_changes();
    assert!(
        changes
            .iter()
            .any(|(from, to, why)| to < from && why.contains("overloaded (429, 503 or timeout)")),
        "{changes:#?}"
    );
}

/// Pins that -c auto follows a queue that forms in a server with no 429s: 8 workers, the
/// rest waiting in line. The limit settles around 8 rather than growing to 64, few requests
/// wait for a worker, and the 99th percentile latency stays near the server's own (it would
/// be 8 times that with 64 in flight). The server takes 100 ms, so that the client's own
/// delays on a loaded machine do not pass for a queue.
#[test]
fn the_limit_follows_a_queue_in_the_server() {
    let latency = ms(100);
    let server = server(Behavior {
        latency: Some(latency),
        capacity: NonZeroUsize::new(8),
        ..Behavior::default()
    });
    let run = answered_all(&server, &["-c", "auto", "-b", "1"], &records(0..240));
    let last = run.stat("/concurrency/limit_final");
    let mean = run.stat("/concurrency/limit_mean");
    let most = run.stat("/concurrency/limit_max");
    let requests = server.requests();
    let waited = requests
        .iter()
        .filter(|r| r.served != Some(r.arrived))
        .count();
    assert!((4.0..=12.0).contains(&last), "limit_final {last}");
    assert!((4.0..=12.0).contains(&mean), "limit_mean {mean}");
    // Slow start overshoots the capacity by half at most, and probes go one above.
    assert!(most <= 16.0, "limit_max {most}");
    assert!(server.max_in_flight() <= 16, "{}", server.max_in_flight());
    // A limit held above 8 keeps a queue standing, and then every request waits in it.
    assert!(
        waited * 3 < requests.len(),
        "{waited} of {} requests waited for a worker",
        requests.len()
    );
    let p99 = run.stat("/requests/latency_ms/p99");
    let bound = 3.0 * latency.as_secs_f64() * 1000.0;
    assert!(p99 < bound, "p99 {p99} ms, over {bound} ms");
}

/// Pins the shared cooldown: one 429 with Retry-After: 1 holds back every new attempt of
/// every batch for that second, not only the retry of the batch that got it. Without it, the
/// other three slots would go on sending all through the second.
#[test]
fn a_429_holds_back_every_new_attempt_until_its_retry_after() {
    let server = server(Behavior {
        latency: Some(ms(20)),
        fail_first: Some(1),
        status: Some(429),
        retry_after: Some("1".into()),
        ..Behavior::default()
    });
    let run = answered_all(&server, &["-c", "4", "-b", "1"], &records(0..40));
    let requests = server.requests();
    // The refused record is the one sent twice; its first request got the 429.
    let refused = requests
        .iter()
        .position(|r| requests.iter().filter(|other| other.body == r.body).count() == 2)
        .expect("one record sent twice");
    let at = requests[refused].arrived;
    // Requests abatch started before it heard of the 429 may still arrive just after it.
    let quiet = at + ms(100)..at + ms(950);
    let during: Vec<Duration> = requests
        .iter()
        .filter(|r| quiet.contains(&r.arrived))
        .map(|r| r.arrived - at)
        .collect();
    assert!(during.is_empty(), "requests {during:?} after the 429");
    assert!(
        requests.iter().any(|r| r.arrived >= quiet.end),
        "the run went on"
    );
    // Batch N carries the record on line N, {"id": N - 1}.
    let id: Value = serde_json::from_slice(&requests[refused].body).unwrap();
    let batch = id[0]["id"].as_u64().unwrap() + 1;
    let paused = format!("INFO no new attempt for 1000 ms: batch {batch} got HTTP 429");
    let pauses: Vec<&str> = run
        .log
        .lines()
        .filter(|l| l.contains("no new attempt"))
        .collect();
    assert!(
        pauses.len() == 1 && pauses[0].contains(&paused),
        "{pauses:#?}"
    );
}

/// Pins that each form of rate-limit header saying nothing is left pauses new attempts until
/// its reset (1 s here), and that malformed ones, or ones with something left, change
/// nothing: no pause and no error. The record before the gap scripts the headers of its
/// answer.
#[test]
fn rate_limit_headers_saying_nothing_is_left_pause_until_the_reset() {
    let cases = [
        (
            json!({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}),
            true,
        ),
        (
            json!({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1s"}),
            true,
        ),
        (json!({"ratelimit": "\"default\";r=0;t=1"}), true),
        (json!({"ratelimit": "limit=5, remaining=0, reset=1"}), true),
        (
            json!({"ratelimit-remaining": "0", "ratelimit-reset": "1"}),
            true,
        ),
        (
            json!({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}),
            true,
        ),
        (
            json!({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "soon"}),
            false,
        ),
        (json!({"ratelimit": "garbage;;;==,,"}), false),
        (
            json!({"ratelimit-remaining": "0", "ratelimit-reset": "-1"}),
            false,
        ),
        (json!({"ratelimit": "\"default\";r=3;t=1"}), false),
    ];
    // Each case waits a second at most: side by side, not one after the other.
    std::thread::scope(|scope| {
        for (headers, pauses) in cases {
            scope.spawn(move || {
                let server = quick_server();
                let scripted = json!({"id": 0, "mock": {"headers": headers}});
                let input = format!("{scripted}\n{}", records(1..2));
                let run = answered_all(&server, &["-c", "1", "-b", "1"], &input);
                let requests = server.requests();
                assert_eq!(requests.len(), 2, "{headers}");
                let gap = requests[1].arrived - requests[0].arrived;
                let paused = run.log.contains("INFO no new attempt for ");
                if pauses {
                    assert!(gap >= ms(900), "{headers}: next request after {gap:?}");
                    assert!(
                        paused && run.log.contains(": rate limit reached ("),
                        "{headers}: {}",
                        run.log
                    );
                } else {
                    assert!(gap < ms(500), "{headers}: next request after {gap:?}");
                    assert!(!paused, "{headers}: {}", run.log);
                }
            });
        }
    });
}

/// Pins that abatch heeds the rate-limit headers of a server that counts requests per
/// window, in each form the mock writes: it pauses when an answer says nothing is left, so
/// the only 429s are for the attempts already in flight then (3 with -c 4), not a stream of
/// refused retries through the window.
#[test]
fn a_servers_window_rate_limit_is_heeded_with_few_429s() {
    std::thread::scope(|scope| {
        for form in [
            RatelimitHeaders::OpenAi,
            RatelimitHeaders::Ietf,
            RatelimitHeaders::Legacy,
        ] {
            scope.spawn(move || {
                let server = server(Behavior {
                    ratelimit: Some("5/1s".parse().unwrap()),
                    ratelimit_headers: form,
                    ..Behavior::default()
                });
                // Two windows: the first runs out with 3 more in flight, the second is enough.
                answered_all(&server, &["-c", "4", "-b", "1"], &records(0..10));
                let refused = server.requests().len() - 10;
                assert!(refused <= 3, "{form:?}: {refused} requests refused");
            });
        }
    });
}

/// Where a progress line says how many requests are in flight: "3 of 8 in flight" under -c
/// auto (3 of a limit of 8), "3 in flight" otherwise; `(3, Some(8))` or `(3, None)` for each
/// time it was drawn.
fn in_flight_drawn(screen: &str) -> Vec<(usize, Option<usize>)> {
    screen
        .match_indices(" in flight")
        .filter_map(|(at, _)| screen[..at].rsplit_once("· ").map(|(_, count)| count))
        .map(|count| {
            let parsed = match count.split_once(" of ") {
                Some((n, limit)) => n.parse().ok().zip(limit.parse().ok().map(Some)),
                None => count.parse().ok().map(|n| (n, None)),
            };
            parsed.unwrap_or_else(|| panic!("not a count in flight: {count:?}"))
        })
        .collect()
}

/// Pins that the progress line on a terminal shows the limit under -c auto ("N of L in
/// flight", L within MIN..MAX), and only the count with a fixed -c.
#[test]
fn progress_shows_the_limit_under_auto() {
    let server = server(Behavior {
        latency: Some(ms(100)),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, records(0..12)).unwrap();
    let drawn = |concurrency: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_abatch"));
        cmd.env_remove("ABATCH_URL")
            .args(["--url", &server.url(), "-b", "1", "-c", concurrency])
            .arg(&input)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let (status, screen) = stderr_on_a_terminal(cmd, 120);
        assert!(status.success(), "{status:?}: {screen}");
        assert!(screen.contains("12 records read: 12 written"), "{screen}");
        let drawn = in_flight_drawn(&screen);
        assert!(!drawn.is_empty(), "no progress drawn: {screen}");
        drawn
    };
    let auto = drawn("auto:2..5");
    assert!(
        auto.iter()
            .all(|(_, limit)| limit.is_some_and(|l| (2..=5).contains(&l))),
        "{auto:?}"
    );
    let fixed = drawn("3");
    assert!(fixed.iter().all(|(_, limit)| limit.is_none()), "{fixed:?}");
}
