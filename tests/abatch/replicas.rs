//! Several replicas of one endpoint (-u more than once): each attempt goes to the least busy
//! replica, a failing one is left out for a while and its batches go elsewhere, and when every
//! replica is out the run waits, then fails as it would with one.

use std::time::{Duration, Instant};

use crate::common::*;

fn slow(latency_ms: u64) -> MockServer {
    server(Behavior {
        latency: Some(Duration::from_millis(latency_ms)),
        ..Behavior::default()
    })
}

/// abatch pointed at every one of `servers`.
fn abatch_to_all(servers: &[&MockServer]) -> assert_cmd::Command {
    let mut cmd = abatch();
    for server in servers {
        cmd.arg("-u").arg(server.url());
    }
    cmd
}

fn requests_of(server: &MockServer) -> usize {
    server.requests().len()
}

/// Three replicas, one six times slower: every record is answered once, the slow one takes
/// the fewest requests, and --stats and -v name each replica.
#[test]
fn the_slow_replica_gets_fewer_requests() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let (a, b, c) = (slow(10), slow(10), slow(60));
    let out = abatch_to_all(&[&a, &b, &c])
        .args(["-b", "2", "-c", "2", "--ordered", "-v", "--stats"])
        .arg(&stats)
        .write_stdin(records(0..600))
        .assert()
        .success();
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..600).collect::<Vec<_>>()
    );
    let (fast_a, fast_b, slow_c) = (requests_of(&a), requests_of(&b), requests_of(&c));
    assert_eq!(fast_a + fast_b + slow_c, 300);
    assert!(
        slow_c * 2 < fast_a && slow_c * 2 < fast_b,
        "{fast_a} {fast_b} {slow_c}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let replicas = stats["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 3);
    assert_eq!(replicas[2]["url"], c.url().as_str());
    assert_eq!(replicas[2]["requests"], slow_c);
    assert!(replicas[2]["latency_ms"]["p50"].as_f64().unwrap() >= 60.0);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let host = c
        .url()
        .trim_start_matches("http://")
        .trim_end_matches("/predict")
        .to_owned();
    assert!(
        stderr.contains(&format!("attempt 1 on {host}: 200 OK")),
        "{stderr}"
    );
}

/// A replica stopped in the middle of the run: its batches go to the others, no record is
/// lost or answered twice, and the run ends with exit 0.
#[test]
fn a_replica_stopped_mid_run_loses_nothing() {
    let (a, b) = (slow(20), slow(20));
    let c = slow(20);
    let mut child = spawn_to(&a, &["-u", &b.url(), "-u", &c.url(), "-b", "4", "-c", "2"]);
    let mut stdin = child.stdin.take().unwrap();
    let input = records(0..800);
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(input.as_bytes());
    });
    let stdout = lines_of(child.stdout.take().unwrap());
    // Once the third replica has answered some, it goes away.
    c.wait_for_requests(5, PATIENCE);
    drop(c);
    let mut ids: Vec<usize> = Vec::new();
    while let Ok(line) = stdout.recv_timeout(PATIENCE) {
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        ids.push(value["echo"]["id"].as_u64().unwrap() as usize);
        if ids.len() == 800 {
            break;
        }
    }
    writer.join().unwrap();
    let status = exit_of(&mut child);
    let stderr = stderr_of(&mut child);
    assert!(status.success(), "{status:?}: {stderr}");
    ids.sort_unstable();
    assert_eq!(ids, (0..800).collect::<Vec<_>>(), "{stderr}");
}

/// Every replica down: the run waits for them (they are left out for a growing while) and
/// then fails as it does with one replica: the same exit status and message.
#[test]
fn with_every_replica_down_the_run_waits_then_fails_as_with_one() {
    let down: Vec<String> = (0..3)
        .map(|_| {
            let server = quick_server();
            let url = server.url();
            drop(server);
            url
        })
        .collect();
    let run = |urls: &[String]| {
        let mut cmd = abatch();
        for url in urls {
            cmd.arg("-u").arg(url);
        }
        let started = Instant::now();
        let out = cmd
            .args(["--retries", "3", "--retry-backoff", "10ms"])
            .write_stdin(records(0..3))
            .assert()
            .code(1);
        let stderr = Stderr::of(&out.get_output().stderr);
        (stderr, started.elapsed())
    };
    let (one, _) = run(&down[..1]);
    let (all, took) = run(&down);
    let first_words = |s: &str| s.split(": cannot connect").next().unwrap_or("").to_owned();
    assert!(
        all.message().contains("cannot connect to 127.0.0.1:"),
        "{all:#?}"
    );
    assert_eq!(first_words(all.message()), first_words(one.message()));
    // Three replicas out together, then left out for 1 s: the run waited for one to be back.
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

/// ABATCH_URL may hold several replicas, separated by commas or spaces.
#[test]
fn the_environment_may_name_several_replicas() {
    let (a, b) = (slow(5), slow(5));
    abatch()
        .env("ABATCH_URL", format!("{}, {}", a.url(), b.url()))
        .args(["-b", "1", "-c", "1"])
        .write_stdin(records(0..20))
        .assert()
        .success();
    assert!(requests_of(&a) > 0 && requests_of(&b) > 0);
    assert_eq!(requests_of(&a) + requests_of(&b), 20);
}
