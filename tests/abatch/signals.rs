//! SIGINT and SIGTERM: a first signal starts nothing new and ends every wait, a second gives up
//! at once, every record read ends as a line or a dead letter, and --resume continues an
//! interrupted run to the output an uninterrupted one gives.

use std::io::Write;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::*;

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Lines of a child's stderr, delivered as they are written.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    lines_of(child.stderr.take().unwrap())
}

/// Collects stderr lines until one contains `needle`; returns them all.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(PATIENCE) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!("no stderr line with {needle:?}; saw {seen:#?}"),
        }
    }
}

#[test]
fn a_first_sigint_starts_nothing_new_and_keeps_every_record_read_as_a_dead_letter() {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(300)),
        ..Behavior::default()
    });
    // One slot: while the first batch is out, the other records wait, read (in several
    // chunks) but not batched. A long batch timeout: the last 100 records would wait in a
    // partial batch forever.
    let mut child = spawn_to(&server, &["-b", "500", "-c", "1", "-t", "1h", "--ordered"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(records(0..2600).as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(server.wait_for_requests(1, PATIENCE).len(), 1);
    let output = lines_of(child.stdout.take().unwrap());
    let errors = stderr_lines(&mut child);
    signal(&child, libc::SIGINT);
    // stdin stays open: the signal, not the end of input, ends reading.
    let status = exit_of(&mut child);
    assert_eq!(status.code(), Some(130));
    let written: Vec<String> = output.iter().collect();
    assert_eq!(
        echoed_ids(written.join("\n").as_bytes()),
        (0..500).collect::<Vec<_>>(),
        "the batch in flight was answered and written"
    );
    assert_eq!(sizes(&server), [500], "nothing new was sent");
    let stderr = Stderr::of(errors.iter().collect::<Vec<_>>().join("\n").as_bytes());
    assert_eq!(
        stderr.messages[0],
        "abatch: stopping: no new requests, and every record not yet answered goes to the dead \
         letters; waiting for the 1 request in flight, at most 30s (signal again to stop at once)"
    );
    let read = stderr.records_read();
    assert_eq!(dead_ids(&stderr.dead), (500..read).collect::<Vec<_>>());
    assert!(
        stderr
            .dead
            .iter()
            .all(|l| l["error"] == "not sent: the run was interrupted" && l["attempts"] == 0),
        "{:?}",
        stderr.dead[0]
    );
    assert!(
        stderr.summary.starts_with(&format!(
            "abatch: {read} records read: 500 written, 0 failed, {} unanswered",
            read - 500
        )),
        "{}",
        stderr.summary
    );
    drop(stdin);
}

#[test]
fn a_first_sigint_ends_the_run_within_the_attempts_in_flight() {
    let server = server(Behavior {
        latency: Some(Duration::from_secs(1)),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, records(0..300)).unwrap();
    let out = dir.path().join("out.jsonl");
    let errors = dir.path().join("errors.jsonl");
    let mut child = spawn_to(
        &server,
        &[
            "-b",
            "1",
            "-c",
            "2",
            "--ordered",
            "-o",
            &out.to_string_lossy(),
            "--errors",
            &errors.to_string_lossy(),
            &input.to_string_lossy(),
        ],
    );
    let sent = server.wait_for_requests(2, PATIENCE);
    signal(&child, libc::SIGINT);
    let signalled = std::time::Instant::now();
    assert_eq!(exit_of(&mut child).code(), Some(130));
    let took = signalled.elapsed();
    let attempt_left = Duration::from_secs(1).saturating_sub(sent[0].arrived.elapsed() - took);
    // The attempts in flight, plus 100 ms, plus room for a loaded machine: far less than the
    // 150 s the rest of the input would take.
    assert!(
        took < attempt_left + Duration::from_secs(2),
        "took {took:?}, the attempts in flight needed {attempt_left:?}"
    );
    assert_eq!(server.requests().len(), 2, "nothing new was sent");
    let written = std::fs::read(&out).unwrap();
    assert_eq!(echoed_ids(&written), [0, 1]);
    let letters = std::fs::read_to_string(&errors).unwrap();
    assert_eq!(letters.lines().count(), 298);
}

#[test]
fn a_first_sigterm_ends_a_long_retry_after_wait_at_once() {
    let server = server(Behavior {
        status: Some(503),
        retry_after: Some("120".into()),
        ..Behavior::default()
    });
    let mut child = spawn_to(&server, &["-b", "5", "-c", "2", "-v"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(records(0..10).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let lines = stderr_lines(&mut child);
    // Both batches are waiting out the 120 s the server asked for.
    wait_for_line(&lines, "retrying in 120000 ms");
    wait_for_line(&lines, "retrying in 120000 ms");
    signal(&child, libc::SIGTERM);
    let signalled = std::time::Instant::now();
    assert_eq!(exit_of(&mut child).code(), Some(143));
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} of a 120 s wait"
    );
    assert_eq!(server.requests().len(), 2, "no retry started");
    let dead = letters_in(lines.iter());
    assert_eq!(dead_ids(&dead), (0..10).collect::<Vec<_>>());
    assert!(
        dead.iter()
            .all(|l| l["error"] == "interrupted before it was answered" && l["attempts"] == 1),
        "{dead:?}"
    );
    drop(stdin);
}

#[test]
fn a_second_sigint_gives_up_at_once_and_keeps_the_records_as_dead_letters() {
    let server = server(Behavior {
        hang: true,
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("failed.jsonl");
    let errors_arg = errors.to_string_lossy();
    let mut child = spawn_to(&server, &["-b", "5", "-c", "2", "--errors", &errors_arg]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(records(0..10).as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(server.wait_for_requests(2, PATIENCE).len(), 2);
    let lines = stderr_lines(&mut child);
    signal(&child, libc::SIGINT);
    wait_for_line(&lines, "stopping: no new requests");
    signal(&child, libc::SIGINT);
    let status = exit_of(&mut child);
    assert_eq!(status.code(), Some(130));
    let letters = letters_in_file(&errors);
    let mut ids: Vec<u64> = letters
        .iter()
        .map(|l| l["record"]["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..10).collect::<Vec<_>>());
    assert!(
        letters
            .iter()
            .all(|l| l["error"] == "interrupted before it was answered")
    );
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.last()
            .unwrap()
            .contains("10 records read: 0 written, 0 failed, 10 unanswered"),
        "{rest:#?}"
    );
    drop(stdin);
}

#[test]
fn sigterm_exits_143() {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(100)),
        ..Behavior::default()
    });
    let mut child = spawn_to(&server, &["-b", "1", "-q"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(records(0..2).as_bytes()).unwrap();
    stdin.flush().unwrap();
    server.wait_for_requests(2, PATIENCE);
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_of(&mut child).code(), Some(143));
    drop(stdin);
}

/// Runs abatch over `input` into `out` with --resume, in the background.
fn resumable(server: &MockServer, input: &std::path::Path, out: &std::path::Path) -> Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_abatch"))
        .env_remove("ABATCH_URL")
        .args([
            "--url",
            &server.url(),
            "-b",
            "10",
            "-c",
            "3",
            "--ordered",
            "--resume",
            "-q",
        ])
        .arg("-o")
        .arg(out)
        .arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("abatch starts")
}

#[test]
fn resuming_an_interrupted_run_gives_the_output_of_an_uninterrupted_one() {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(2)),
        latency_max: Some(Duration::from_millis(30)),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, records(0..500)).unwrap();

    let whole = dir.path().join("whole.jsonl");
    let mut child = resumable(&server, &input, &whole);
    assert_eq!(exit_of(&mut child).code(), Some(0));

    let out = dir.path().join("out.jsonl");
    let before = server.requests().len();
    let mut child = resumable(&server, &input, &out);
    server.wait_for_requests(before + 12, PATIENCE);
    let lines = stderr_lines(&mut child);
    signal(&child, libc::SIGINT);
    wait_for_line(&lines, "stopping: no new requests");
    signal(&child, libc::SIGINT);
    assert_eq!(exit_of(&mut child).code(), Some(130));
    let partial = std::fs::read_to_string(&out).unwrap();
    let done = partial.lines().count();
    assert!(done < 500, "the run was interrupted after {done} records");
    // A run killed outright can leave half a line; --resume drops it.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .unwrap()
        .write_all(b"{\"echo\":{\"id\"")
        .unwrap();

    let before = server.requests().len();
    let mut child = resumable(&server, &input, &out);
    assert_eq!(exit_of(&mut child).code(), Some(0));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&whole).unwrap());
    let resent: usize = server.requests()[before..].iter().map(|r| r.records).sum();
    assert_eq!(
        resent,
        500 - done,
        "only the records not yet in the output were sent"
    );
}

#[test]
fn resume_refuses_an_output_longer_than_the_input() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, "1\n2\n3\n").unwrap();
    let result = abatch_to(&server)
        .args(["--ordered", "--resume", "-o"])
        .arg(&out)
        .write_stdin(records(0..2))
        .assert()
        .code(1);
    let stderr = Stderr::of(&result.get_output().stderr);
    assert_eq!(
        stderr.message(),
        format!(
            "abatch: --resume: {} answers 3 records, but only 2 of them are in the \
             input; is it the output of another input?",
            out.display()
        )
    );
    assert!(server.requests().is_empty());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "1\n2\n3\n");
}

#[test]
fn resume_needs_ordered_output_to_a_file_that_keeps_every_line() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out = out.to_string_lossy();
    for args in [
        vec!["--resume", "-o", &out],
        vec!["--resume", "--ordered"],
        vec!["--resume", "--ordered", "-o", &out, "--on-error", "skip"],
    ] {
        let result = abatch_to(&server)
            .args(&args)
            .write_stdin("1\n")
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&result.get_output().stderr).into_owned();
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert!(server.requests().is_empty());
}

#[test]
fn a_second_signal_exits_promptly_even_when_nobody_reads_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("errors.jsonl");
    let errors_arg = errors.to_string_lossy();
    let (took, stdout, _, summary) =
        stopped_with_nobody_reading(&["-b", "100", "--errors", &errors_arg], 100_000);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(stdout.ends_with('\n'), "whole lines only");
    let written = echoed_ids(stdout.as_bytes());
    let letters = letters_in_file(&errors);
    assert!(
        letters.iter().any(|l| l["error"]
            == "answered, but not written: the run was stopped while the output was not being read"),
        "answers that could not be written are dead letters"
    );
    let read = records_read(&summary);
    // A line half read when reading stopped is kept raw.
    let (raw, letters): (Vec<_>, Vec<_>) =
        letters.into_iter().partition(|l| l.get("raw").is_some());
    let mut all = written;
    all.extend(dead_ids(&letters));
    all.sort_unstable();
    assert_eq!(all.len() + raw.len(), read);
    assert_eq!(
        all,
        (0..all.len()).collect::<Vec<_>>(),
        "each record read, once"
    );
}

/// One run over 100,000 records given as a regular file on stdin, stopped by `signals`
/// signals: every byte abatch took from stdin ends as exactly one output line or one dead
/// letter.
fn conservation_after(signals: usize) {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(20)),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let text = records(0..100_000);
    std::fs::write(&input, &text).unwrap();
    let errors = dir.path().join("errors.jsonl");
    let mut stdin = std::fs::File::open(&input).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_abatch"))
        .env_remove("ABATCH_URL")
        .args(["--url", &server.url(), "-b", "50", "-c", "1", "--errors"])
        .arg(&errors)
        // The same open file: its offset, read below, is how far abatch read.
        .stdin(stdin.try_clone().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = lines_of(child.stdout.take().unwrap());
    let lines = stderr_lines(&mut child);
    server.wait_for_requests(5, PATIENCE);
    signal(&child, libc::SIGINT);
    if signals > 1 {
        wait_for_line(&lines, "stopping: no new requests");
        for _ in 1..signals {
            signal(&child, libc::SIGINT);
        }
    }
    assert_eq!(exit_of(&mut child).code(), Some(130), "{signals} signals");
    let taken = std::io::Seek::stream_position(&mut stdin).unwrap() as usize;
    assert!(taken < text.len(), "reading stopped early");
    let whole = text[..taken].matches('\n').count();
    let partial = !text[..taken].ends_with('\n');

    let written = echoed_ids(output.iter().collect::<Vec<_>>().join("\n").as_bytes());
    let letters = letters_in_file(&errors);
    let (raw, records): (Vec<_>, Vec<_>) =
        letters.into_iter().partition(|l| l.get("raw").is_some());
    let mut all = written;
    all.extend(dead_ids(&records));
    all.sort_unstable();
    assert_eq!(
        all,
        (0..whole).collect::<Vec<_>>(),
        "{signals} signals: each record once"
    );
    assert_eq!(raw.len(), usize::from(partial), "{raw:?}");
    if partial {
        let start = text[..taken].rfind('\n').unwrap() + 1;
        assert_eq!(
            raw[0]["raw"],
            text[start..taken],
            "the half-read line is kept"
        );
        assert_eq!(raw[0]["error"], "not sent: the run was interrupted");
    }
    let summary: Vec<String> = lines.iter().collect();
    let summary = summary.last().unwrap();
    assert_eq!(
        records_read(summary),
        whole + usize::from(partial),
        "{summary}"
    );
}

#[test]
fn one_signal_keeps_every_byte_taken_from_stdin() {
    conservation_after(1);
}

#[test]
fn two_signals_keep_every_byte_taken_from_stdin() {
    conservation_after(2);
}

#[test]
fn three_signals_keep_every_byte_taken_from_stdin() {
    conservation_after(3);
}

#[test]
fn no_null_line_is_written_after_a_record_without_one_and_resume_completes_the_output() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // The first batch is slow; the third fails, which gives null lines.
    let mut text = String::from("{\"id\":0,\"mock\":{\"delay_ms\":1500}}\n");
    text.push_str(&records(1..25));
    text.push_str("{\"id\":25,\"mock\":{\"status\":500}}\n");
    text.push_str(&records(26..40));
    std::fs::write(&input, &text).unwrap();
    let run = |out: &std::path::Path, resume: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_abatch"));
        cmd.env_remove("ABATCH_URL")
            .args(["--url", &server.url(), "-b", "10", "-c", "4", "--ordered"])
            .args(["--on-error", "null", "--retries", "0", "-o"])
            .arg(out)
            .arg(&input)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if resume {
            cmd.arg("--resume");
        }
        cmd.spawn().unwrap()
    };
    let whole = dir.path().join("whole.jsonl");
    assert_eq!(exit_of(&mut run(&whole, false)).code(), Some(3));

    let out = dir.path().join("out.jsonl");
    let before = server.requests().len();
    let mut child = run(&out, false);
    server.wait_for_requests(before + 4, PATIENCE);
    let lines = stderr_lines(&mut child);
    signal(&child, libc::SIGINT);
    wait_for_line(&lines, "stopping: no new requests");
    signal(&child, libc::SIGINT);
    assert_eq!(exit_of(&mut child).code(), Some(130));
    let partial = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(
        partial, "",
        "the first record has no line: nothing may follow it"
    );

    let mut child = run(&out, true);
    assert_eq!(exit_of(&mut child).code(), Some(3));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&whole).unwrap());
}

#[test]
fn a_first_signal_ends_a_wait_for_the_request_rate_at_once() {
    let server = quick_server();
    let mut child = spawn_to(&server, &["-b", "1", "--rate", "1/m"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(records(0..5).as_bytes()).unwrap();
    stdin.flush().unwrap();
    server.wait_for_requests(1, PATIENCE);
    let lines = stderr_lines(&mut child);
    signal(&child, libc::SIGINT);
    let signalled = std::time::Instant::now();
    assert_eq!(exit_of(&mut child).code(), Some(130));
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "a 60 s wait was cut short"
    );
    assert_eq!(server.requests().len(), 1);
    let dead = letters_in(lines.iter());
    assert_eq!(dead_ids(&dead), [1, 2, 3, 4]);
    assert!(dead.iter().all(|l| l["attempts"] == 0), "{dead:?}");
    drop(stdin);
}

#[test]
fn the_progress_display_leaves_the_screen_at_the_first_signal() {
    let server = server(Behavior {
        latency: Some(Duration::from_millis(500)),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, records(0..100)).unwrap();
    let (leader, follower) = pty(80);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_abatch"))
        .env_remove("ABATCH_URL")
        .args(["--url", &server.url(), "-b", "1", "-c", "1"])
        .arg(&input)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(follower)
        .spawn()
        .unwrap();
    let screen = screen_of(leader);
    let mut seen = String::new();
    while !seen.contains(" in flight · ") {
        seen.push_str(&screen.recv_timeout(PATIENCE).unwrap());
    }
    signal(&child, libc::SIGINT);
    assert_eq!(exit_of(&mut child).code(), Some(130));
    seen.extend(screen.iter());
    let after = &seen[seen.find("stopping: no new requests").unwrap()..];
    assert!(
        !after.contains(" in flight · "),
        "a frame was drawn after the signal: {after}"
    );
}

#[test]
fn a_terminal_as_input_is_pointed_out_once() {
    let server = quick_server();
    let (leader, follower) = pty(80);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_abatch"))
        .env_remove("ABATCH_URL")
        .args(["--url", &server.url(), "--ordered"])
        .stdin(follower.try_clone().unwrap())
        .stdout(Stdio::piped())
        .stderr(follower)
        .spawn()
        .unwrap();
    let mut keyboard = std::fs::File::from(leader.try_clone().unwrap());
    let screen = screen_of(leader);
    let hint = "reading JSON lines from the terminal; end with Ctrl-D";
    let mut seen = String::new();
    while !seen.contains(hint) {
        seen.push_str(&screen.recv_timeout(PATIENCE).unwrap());
    }
    // Typed, then Ctrl-D on an empty line: the end of input.
    keyboard.write_all(b"{\"id\":7}\n\x04").unwrap();
    assert_eq!(exit_of(&mut child).code(), Some(0));
    seen.extend(screen.iter());
    assert_eq!(seen.matches(hint).count(), 1, "{seen}");
    let mut stdout = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(echoed_ids(&stdout), [7]);
}

/// Waits until `server` has seen requests and then no new one for a while: abatch is held up
/// (here, by an output nobody reads).
fn wait_until_requests_stop(server: &MockServer) {
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut seen = 0;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = server.requests().len();
        if now > 0 && now == seen {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "requests never stopped: {now}"
        );
        seen = now;
    }
}

/// Runs abatch over `n` records with `args`, never reading its stdout; once it is held up,
/// signals twice and returns how long the exit took after the second signal, its stdout, what
/// the first signal said, and the summary line.
fn stopped_with_nobody_reading(args: &[&str], n: usize) -> (Duration, String, String, String) {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, records(0..n)).unwrap();
    let input = input.to_string_lossy();
    let mut all: Vec<&str> = args.to_vec();
    all.push(&input);
    let mut child = spawn_to(&server, &all);
    let lines = stderr_lines(&mut child);
    if args.contains(&"--dry-run") {
        // Nothing reaches the server; -v shows each batch as it is made, until the output
        // nobody reads holds the run up.
        let mut last = String::new();
        while let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            last = line;
        }
        assert!(!last.is_empty());
    } else {
        wait_until_requests_stop(&server);
    }
    signal(&child, libc::SIGINT);
    let said = wait_for_line(&lines, "stopping: no new requests");
    signal(&child, libc::SIGINT);
    let signalled = std::time::Instant::now();
    assert_eq!(exit_of(&mut child).code(), Some(130));
    let took = signalled.elapsed();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let summary = lines.iter().last().unwrap();
    (
        took,
        stdout,
        said.last().cloned().unwrap_or_default(),
        summary,
    )
}

#[test]
fn signals_still_count_while_abatch_waits_for_its_output_to_drain() {
    // All 3000 answers are in: the run only waits for the writer, which waits for a reader.
    let (took, stdout, said, summary) =
        stopped_with_nobody_reading(&["-b", "100", "--errors", "/dev/null"], 3000);
    assert!(
        said.contains("waiting for the output to be written"),
        "{said}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(stdout.ends_with('\n'));
    let written = stdout.lines().count();
    assert!(
        summary.contains(&format!(
            "3000 records read: {written} written, 0 failed, {} unanswered",
            3000 - written
        )),
        "{summary}"
    );
}

#[test]
fn a_dry_run_nobody_reads_stops_too() {
    let (took, _, _, summary) = stopped_with_nobody_reading(
        &["--dry-run", "-b", "1", "-vv", "--errors", "/dev/null"],
        3000,
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(summary.contains("dry run: "), "{summary}");
}
