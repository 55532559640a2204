//! --capacity: requests beyond the workers wait in line, and their latency grows by the wait;
//! with --capacity-429 they are refused at once instead.

use std::num::NonZeroUsize;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use abatch_mock::{Behavior, MockServer};

use crate::{PATIENCE, post, server};

const LATENCY: Duration = Duration::from_millis(100);

/// Sends `n` requests at once, each on a thread of its own; the statuses come back in the
/// order the threads were started, and with them when the last answer came.
fn at_once(server: &Arc<MockServer>, n: usize) -> (Vec<u16>, Duration) {
    let start = Arc::new(Barrier::new(n + 1));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (server, start) = (server.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                post(&server, "/predict", &[], &format!("[{{\"id\":{i}}}]")).status
            })
        })
        .collect();
    start.wait();
    let sent = Instant::now();
    let statuses = threads
        .into_iter()
        .map(|t| t.join().expect("the client thread"))
        .collect();
    (statuses, sent.elapsed())
}

#[test]
fn requests_beyond_capacity_wait_for_a_worker_and_take_longer() {
    let server = Arc::new(server(Behavior {
        capacity: NonZeroUsize::new(2),
        latency: Some(LATENCY),
        ..Behavior::default()
    }));
    let (statuses, took) = at_once(&server, 6);
    assert_eq!(statuses, [200; 6], "none is refused");
    // Three rounds of two, where six workers would have answered all in one.
    assert!(took >= 3 * LATENCY, "{took:?}");
    assert!(server.max_served_at_once() <= 2);

    let log = server.requests();
    let mut served: Vec<Instant> = log
        .iter()
        .map(|r| {
            let served = r.served.expect("every request was served");
            assert!(served >= r.arrived, "{r:?}");
            served
        })
        .collect();
    served.sort();
    // A worker comes free only after its latency, so the third of any three in a row to be
    // served waited for the first to be answered.
    for three in served.windows(3) {
        assert!(three[2] >= three[0] + LATENCY, "{log:#?}");
    }
}

#[test]
fn capacity_429_refuses_at_once_what_the_workers_cannot_take() {
    let server = Arc::new(server(Behavior {
        capacity: NonZeroUsize::new(2),
        capacity_429: true,
        latency: Some(Duration::from_millis(500)),
        ..Behavior::default()
    }));
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || post(&server, "/predict", &[], "[1]").status)
        })
        .collect();
    // Both workers taken: both requests are in the log with the time a worker took them.
    let deadline = Instant::now() + PATIENCE;
    while server
        .requests()
        .iter()
        .filter(|r| r.served.is_some())
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "{:#?}", server.requests());
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused = post(&server, "/predict", &[], "[2]");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(
        refused.header("retry-after"),
        None,
        "no --retry-after, no header"
    );
    assert_eq!(server.requests()[2].served, None);

    for thread in busy {
        assert_eq!(thread.join().expect("the client thread"), 200);
    }
    assert_eq!(post(&server, "/predict", &[], "[3]").status, 200);
}

#[test]
fn without_capacity_a_request_is_served_as_it_arrives() {
    let server = server(Behavior::default());
    assert_eq!(post(&server, "/predict", &[], "[1]").status, 200);
    let log = server.requests();
    assert_eq!(log[0].served, Some(log[0].arrived));
    assert_eq!(server.max_served_at_once(), 1);
}
