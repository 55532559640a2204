//! Bounded concurrency, and output in input order or as completed.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

fn jittery() -> MockServer {
    server(Behavior {
        latency: Some(Duration::from_millis(1)),
        latency_max: Some(Duration::from_millis(25)),
        ..Behavior::default()
    })
}

#[test]
fn ordered_output_follows_input_under_random_latency() {
    let server = jittery();
    let out = abatch_to(&server)
        .args(["-b", "7", "-c", "8", "--ordered", "--quiet"])
        .write_stdin(records(0..2000))
        .assert()
        .success()
        .stderr("");
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..2000).collect::<Vec<_>>()
    );
    assert!(server.max_in_flight() <= 8);
}

#[test]
fn unordered_output_has_every_result_exactly_once() {
    let server = jittery();
    let out = abatch_to(&server)
        .args(["-b", "7", "-c", "8", "-q"])
        .write_stdin(records(0..2000))
        .assert()
        .success()
        .stderr("");
    let mut ids = echoed_ids(&out.get_output().stdout);
    ids.sort_unstable();
    assert_eq!(ids, (0..2000).collect::<Vec<_>>());
    assert_eq!(sizes(&server).iter().sum::<usize>(), 2000);
}

#[test]
fn unordered_output_does_not_wait_for_a_slow_batch() {
    let server = quick_server();
    let slow = "{\"id\":0,\"mock\":{\"delay_ms\":1500}}\n";
    let input = format!("{slow}{}", records(1..10));
    let out = abatch_to(&server)
        .args(["-b", "5", "-c", "2"])
        .write_stdin(input)
        .assert()
        .success();
    let ids = echoed_ids(&out.get_output().stdout);
    assert_eq!(ids.len(), 10);
    assert_eq!(&ids[..5], &[5, 6, 7, 8, 9], "the fast batch came out first");
}

#[test]
fn concurrency_bound_is_reached_and_never_exceeded() {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(40)),
        ..Behavior::default()
    });
    abatch_to(&server)
        .args(["-b", "10", "-c", "4"])
        .write_stdin(records(0..400))
        .assert()
        .success();
    assert_eq!(server.requests().len(), 40);
    assert_eq!(server.max_in_flight(), 4);
}

#[test]
fn a_slow_batch_in_ordered_mode_does_not_idle_the_other_slots() {
    let server = quick_server();
    let slow = "{\"id\":0,\"mock\":{\"delay_ms\":2000}}\n";
    let input = format!("{slow}{}", records(1..400));
    let mut run = abatch_to(&server);
    run.args(["-b", "5", "-c", "4", "--ordered"])
        .write_stdin(input);
    let out = run.assert().success();
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..400).collect::<Vec<_>>()
    );

    let requests = server.requests();
    let head_done = requests[0].arrived + Duration::from_millis(2000);
    let during_head = requests.iter().filter(|r| r.arrived < head_done).count();
    // buffered(4) would have sent 4 requests and then waited for the head; the reorder window
    // keeps the other three slots working until it holds 4 × 4 finished batches.
    assert!(
        during_head > 8,
        "only {during_head} requests while the slow batch was out"
    );
    assert!(
        during_head <= 4 + 16,
        "{during_head} requests: the reorder window is unbounded"
    );
}

#[test]
fn reading_pauses_while_every_slot_is_busy() {
    let server = server(Behavior {
        hang: true,
        ..Behavior::default()
    });
    let mut child = spawn_to(&server, &["-b", "10", "-c", "2"]);
    let mut stdin = child.stdin.take().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let written = written.clone();
        std::thread::spawn(move || {
            let block = records(0..10_000);
            // About 150 MB, far more than abatch may hold while nothing comes back.
            for _ in 0..1_000 {
                if stdin.write_all(block.as_bytes()).is_err() {
                    break;
                }
                written.fetch_add(block.len(), Ordering::SeqCst);
            }
        })
    };
    assert_eq!(server.wait_for_requests(2, PATIENCE).len(), 2);
    // Wait for the writer to stall: reading has paused once its count stops moving.
    let deadline = Instant::now() + PATIENCE;
    let mut seen = usize::MAX;
    while written.load(Ordering::SeqCst) != seen {
        assert!(Instant::now() < deadline, "the writer never stalled");
        seen = written.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        seen < 10 << 20,
        "abatch read {seen} bytes with both slots stuck"
    );
    assert_eq!(server.requests().len(), 2, "a third request started");
    let rss = resident_kib(child.id());
    assert!(rss < 40 * 1024, "{rss} KiB resident");
    let _ = child.kill();
    let _ = child.wait();
    let _ = writer.join();
}

/// The resident memory of a running process, from /proc.
fn resident_kib(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc is readable");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}
