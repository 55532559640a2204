//! The benchmark (`cargo bench`): runs the release binary against the mock server and prints
//! latency hiding (and its gain from a second replica), ordered against unordered throughput,
//! CPU per million records, peak memory at two input sizes, the result cache's cost and pace,
//! and how `-c auto` does against
//! servers of limited capacity (a sweep of fixed `-c` for comparison).
//!
//! Each run is one child process measured by wait4(2): wall time from spawn to exit, user and
//! system CPU, and peak resident memory, of abatch alone (the server runs in this process).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abatch_mock::{Behavior, MockServer, Options, Schedule};

struct Measured {
    wall: Duration,
    cpu: Duration,
    peak_rss_mib: f64,
}

fn main() {
    // `cargo bench -- <filter>` passes extra arguments; this harness runs everything.
    let dir = tempfile::tempdir().expect("temporary directory");
    let records_1k = write_records(dir.path(), 1_000);
    let records_20k = write_records(dir.path(), 20_000);
    let records_100k = write_records(dir.path(), 100_000);
    let records_1m = write_records(dir.path(), 1_000_000);
    let mut rows: Vec<[String; 4]> = Vec::new();

    // 1. Latency hiding: c·b/L is the best any client can do against a server that takes L.
    let latency = Duration::from_millis(20);
    let (batch, concurrency) = (50, 8);
    let server = mock(Behavior {
        latency: Some(latency),
        ..Behavior::default()
    });
    let ideal = (concurrency * batch) as f64 / latency.as_secs_f64();
    let args = ["-b", &batch.to_string(), "-c", &concurrency.to_string()].map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = best_of(3, || abatch(&server, &records_20k, &args));
    let achieved = 20_000.0 / run.wall.as_secs_f64();
    rows.push([
        "latency hiding: 20k records, L=20ms, -b 50 -c 8".into(),
        format!(
            "{achieved:.0} records/s = {:.3} of c·b/L ({ideal:.0}/s)",
            achieved / ideal
        ),
        "≥ 0.95".into(),
        verdict(achieved / ideal >= 0.95),
    ]);
    // What one exchange really takes here, waking up included: the same server, one at a time.
    let one_at_a_time = best_of(3, || abatch(&server, &records_1k, &["-b", "50", "-c", "1"]));
    let exchange = one_at_a_time.wall / 20;
    let reachable = (concurrency * batch) as f64 / exchange.as_secs_f64();
    rows.push([
        "  one exchange at a time (-c 1), for comparison".into(),
        format!(
            "{:.2} ms per exchange: {:.3} of c·b/that",
            exchange.as_secs_f64() * 1e3,
            achieved / reachable
        ),
        String::new(),
        String::new(),
    ]);
    // Two replicas of the same server, -c 8 each: twice the requests in flight.
    let second = mock(Behavior {
        latency: Some(latency),
        ..Behavior::default()
    });
    let two_urls = format!("{},{}", server.url(), second.url());
    let two = best_of(3, || abatch_at(&two_urls, &records_20k, &args));
    let gain = run.wall.as_secs_f64() / two.wall.as_secs_f64();
    rows.push([
        "two replicas of L=20ms, -c 8 each, against one (20k records, -b 50)".into(),
        format!(
            "{:.0} vs {achieved:.0} records/s = {gain:.2}×",
            20_000.0 / two.wall.as_secs_f64()
        ),
        "≥ 1.9×".into(),
        verdict(gain >= 1.9),
    ]);
    drop(second);
    drop(server);

    // 2. Ordered against unordered under random latency.
    let server = mock(Behavior {
        latency: Some(Duration::from_millis(5)),
        latency_max: Some(Duration::from_millis(50)),
        ..Behavior::default()
    });
    let unordered = best_of(3, || {
        abatch(&server, &records_20k, &["-b", "50", "-c", "8"])
    });
    let ordered = best_of(3, || {
        abatch(&server, &records_20k, &["-b", "50", "-c", "8", "--ordered"])
    });
    let ratio = unordered.wall.as_secs_f64() / ordered.wall.as_secs_f64();
    rows.push([
        "ordered vs unordered: 20k records, L=5-50ms random, -b 50 -c 8".into(),
        format!(
            "{:.0} vs {:.0} records/s = {ratio:.3}",
            20_000.0 / ordered.wall.as_secs_f64(),
            20_000.0 / unordered.wall.as_secs_f64()
        ),
        "≥ 0.90".into(),
        verdict(ratio >= 0.90),
    ]);
    drop(server);

    // 3 and 4. Overhead and memory against a server that answers at once.
    let server = mock(Behavior::default());
    for (label, args) in [
        ("-b 32 -c 4 (defaults)", &["-b", "32"][..]),
        ("-b 256 -c 4", &["-b", "256"][..]),
    ] {
        for ordered in [false, true] {
            let mut args = args.to_vec();
            if ordered {
                args.push("--ordered");
            }
            let run = best_of(3, || abatch(&server, &records_1m, &args));
            let order = if ordered { ", --ordered" } else { "" };
            rows.push([
                format!("CPU per 1M records, {label}{order}"),
                per_million(&run),
                "far below a script".into(),
                String::new(),
            ]);
        }
    }
    // A shaped request (--api tfserving) against the plain path's figures above.
    let shaped_server = mock(Behavior::default());
    let shaped_url = format!("http://{}/v1/models/m:predict", shaped_server.addr());
    let shaped = best_of(3, || {
        abatch_at(
            &shaped_url,
            &records_1m,
            &["-b", "32", "--api", "tfserving"],
        )
    });
    rows.push([
        "CPU per 1M records, -b 32 -c 4, --api tfserving".into(),
        per_million(&shaped),
        "close to the plain path".into(),
        String::new(),
    ]);
    drop(shaped_server);
    // The progress display, drawn (to /dev/null) ten times a second, against none.
    let off = best_of(3, || {
        abatch(&server, &records_1m, &["-b", "32", "--no-progress"])
    });
    let on = best_of(3, || {
        abatch(&server, &records_1m, &["-b", "32", "--progress"])
    });
    rows.push([
        "progress display on vs off, 1M records, -b 32 -c 4".into(),
        format!(
            "{:.2} vs {:.2} s CPU; {:.2} vs {:.2} s wall",
            on.cpu.as_secs_f64(),
            off.cpu.as_secs_f64(),
            on.wall.as_secs_f64(),
            off.wall.as_secs_f64()
        ),
        "no measurable cost".into(),
        String::new(),
    ]);
    if let Some(python) = python_with_aiohttp() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/asyncio_client.py");
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .arg(server.url())
            .arg(&records_1m)
            .args(["32", "4"]);
        let run = measure(cmd);
        rows.push([
            "same job in Python asyncio + aiohttp, -b 32 -c 4".into(),
            per_million(&run),
            "the baseline".into(),
            String::new(),
        ]);
    }
    let small = abatch(&server, &records_100k, &["-b", "32", "--ordered"]);
    let large = abatch(&server, &records_1m, &["-b", "32", "--ordered"]);
    rows.push([
        "peak RSS, 100k records, --ordered".into(),
        format!("{:.1} MiB", small.peak_rss_mib),
        String::new(),
        String::new(),
    ]);
    rows.push([
        "peak RSS, 1M records, --ordered".into(),
        format!("{:.1} MiB", large.peak_rss_mib),
        "< 40 MB, flat".into(),
        verdict(
            large.peak_rss_mib * 1.048_576 < 40.0 && large.peak_rss_mib < small.peak_rss_mib * 1.25,
        ),
    ]);
    compressed_input(&server, &records_1m, &mut rows);
    result_cache(&server, dir.path(), &records_1m, &mut rows);
    drop(server);

    flow_control(dir.path(), &records_1m, &mut rows);
    print_table(&rows);
}

/// Reading a compressed file against decompressing it with its own tool into a pipe, both in
/// CPU (the pipe's: the tool's and abatch's together). Skipped where the tool is missing.
fn compressed_input(server: &MockServer, records_1m: &Path, rows: &mut Vec<[String; 4]>) {
    for (tool, compress, extension) in [("zcat", "gzip", "gz"), ("zstd -dc", "zstd", "zst")] {
        let packed = records_1m.with_extension(format!("jsonl.{extension}"));
        let made = Command::new(compress)
            .args(["-q", "-k", "-f"])
            .arg(records_1m)
            .status()
            .is_ok_and(|s| s.success())
            && std::fs::rename(
                records_1m.with_extension(format!("jsonl.{extension}")),
                &packed,
            )
            .is_ok();
        if !made {
            eprintln!("no {compress} command: its comparison is skipped");
            continue;
        }
        let direct = best_of(3, || abatch(server, &packed, &["-c", "8"]));
        let piped = best_of(3, || {
            let mut cmd = Command::new("bash");
            cmd.arg("-c").arg(format!(
                "{tool} '{}' | '{}' --url '{}' --quiet -c 8",
                packed.display(),
                env!("CARGO_BIN_EXE_abatch"),
                server.url()
            ));
            measure(cmd)
        });
        let ratio = direct.cpu.as_secs_f64() / piped.cpu.as_secs_f64();
        rows.push([
            format!("CPU per 1M records from a .{extension} file, against {tool} FILE | abatch"),
            format!(
                "{:.2} vs {:.2} s CPU = {ratio:.2}×",
                direct.cpu.as_secs_f64(),
                piped.cpu.as_secs_f64()
            ),
            "≤ 1.2×".into(),
            verdict(ratio <= 1.2),
        ]);
    }
}

/// The result cache (--cache) against a server that answers at once: what it costs when it
/// holds nothing yet (each record looked up, each result written), against no cache; and the
/// pace of a run it answers entirely.
fn result_cache(server: &MockServer, dir: &Path, records_1m: &Path, rows: &mut Vec<[String; 4]>) {
    let cache = dir.join("cache.db");
    let cache_arg = cache.to_string_lossy().into_owned();
    let args = ["--cache", cache_arg.as_str()];
    let forget = || {
        for end in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{cache_arg}{end}"));
        }
    };
    let without = best_of(3, || abatch(server, records_1m, &[]));
    let empty = best_of(3, || {
        forget();
        abatch(server, records_1m, &args)
    });
    let full = best_of(3, || abatch(server, records_1m, &args));
    forget();
    let ratio = empty.cpu.as_secs_f64() / without.cpu.as_secs_f64();
    rows.push([
        "CPU per 1M records, --cache holding none of them, against no --cache".into(),
        format!(
            "{:.2} vs {:.2} s CPU = {ratio:.2}×; {:.0}k vs {:.0}k records/s",
            empty.cpu.as_secs_f64(),
            without.cpu.as_secs_f64(),
            1_000.0 / empty.wall.as_secs_f64(),
            1_000.0 / without.wall.as_secs_f64()
        ),
        "≤ 1.5×".into(),
        verdict(ratio <= 1.5),
    ]);
    let pace = 1e6 / full.wall.as_secs_f64();
    rows.push([
        "1M records, --cache holding all of them (nothing sent)".into(),
        per_million(&full),
        "≥ 200k records/s".into(),
        verdict(pace >= 200_000.0),
    ]);
}

/// `-c auto` against servers of 16 workers (queueing, or answering 429 beyond), against the
/// best fixed `-c` of a sweep; following a capacity that drops from 32 to 8 and back; and its
/// cost on a server that answers at once.
fn flow_control(dir: &Path, records_1m: &Path, rows: &mut Vec<[String; 4]>) {
    let latency = Some(Duration::from_millis(20));
    let capacity = NonZeroUsize::new(16);
    let queueing = mock(Behavior {
        latency,
        capacity,
        ..Behavior::default()
    });
    let refusing = mock(Behavior {
        latency,
        capacity,
        capacity_429: true,
        ..Behavior::default()
    });
    // Runs far from the capacity are slow; their rate needs fewer records.
    let (full, few) = (write_records(dir, 40_000), write_records(dir, 4_000));
    for (server, what, batch, least) in [
        (&queueing, "queues beyond", "8", 0.90),
        (&refusing, "answers 429 beyond", "4", 0.85),
    ] {
        let common = ["-b", batch, "--retries", "50", "--on-error", "null"];
        let sweep: Vec<(usize, Run)> = [1, 2, 4, 8, 16, 32, 64]
            .into_iter()
            .map(|c| {
                let input = if (8..=16).contains(&c) { &full } else { &few };
                let c_text = c.to_string();
                (
                    c,
                    with_stats(server, input, &[&common[..], &["-c", &c_text]].concat()),
                )
            })
            .collect();
        let Some((best_c, best)) = sweep
            .iter()
            .max_by(|a, b| a.1.records_per_s.total_cmp(&b.1.records_per_s))
        else {
            return;
        };
        let at_capacity = sweep
            .iter()
            .find(|(c, _)| *c == 16)
            .map_or(best, |(_, run)| run);
        let sweep: Vec<String> = sweep
            .iter()
            .map(|(c, run)| format!("{c}: {:.0}", run.records_per_s))
            .collect();
        let auto = with_stats(server, &full, &[&common[..], &["-c", "auto"]].concat());
        let share = auto.records_per_s / best.records_per_s;
        let p99 = auto.p99_ms / best.p99_ms;
        rows.push([
            format!("-c auto, 16 workers, L=20ms, {what}: -b {batch}, records/s"),
            format!(
                "{:.0} = {share:.3} of the best fixed (-c {best_c}: {:.0}); sweep {}",
                auto.records_per_s,
                best.records_per_s,
                sweep.join(", ")
            ),
            format!("≥ {least:.2}"),
            verdict(share >= least),
        ]);
        rows.push([
            "  its p99 latency, and its 429s".into(),
            format!(
                "{:.1} ms = {p99:.2}× the best fixed's {:.1} ms (-c 16: {:.1} ms); 429s {} of {} requests ({:.2}%); limit mean {:.1}, final {}",
                auto.p99_ms,
                best.p99_ms,
                at_capacity.p99_ms,
                auto.too_many,
                auto.requests,
                auto.too_many as f64 * 100.0 / auto.requests.max(1) as f64,
                auto.limit_mean,
                auto.limit_final
            ),
            if least >= 0.90 { "p99 ≤ 1.5×" } else { "429s < 1%" }.into(),
            verdict(if least >= 0.90 {
                p99 <= 1.5
            } else {
                auto.too_many * 100 < auto.requests
            }),
        ]);
    }
    drop((queueing, refusing));

    // Capacity 32, then 8 from 4 s to 8 s, then 32 again, answering 429 beyond.
    let schedule: Schedule = "0s:32,4s:8,8s:32".parse().expect("a schedule");
    let changing = mock(Behavior {
        latency,
        capacity_schedule: Some(schedule),
        capacity_429: true,
        ..Behavior::default()
    });
    let input = write_records(dir, 80_000);
    let args = [
        "-b",
        "8",
        "-c",
        "auto",
        "--retries",
        "50",
        "--on-error",
        "null",
        "-v",
    ];
    let (run, log) = with_log(&changing, &input, &args);
    let limits = limit_changes(&log);
    let after = |from: f64, most: usize| {
        limits
            .iter()
            .find(|(at, limit)| *at >= from && *limit <= most)
            .map(|(at, _)| at - from)
    };
    let (down, up) = (after(4.0, 8), {
        let from = 8.0;
        limits
            .iter()
            .find(|(at, limit)| *at >= from && *limit >= 28)
            .map(|(at, _)| at - from)
    });
    let secs = |t: Option<f64>| t.map_or("never".into(), |t| format!("{t:.2} s"));
    rows.push([
        "-c auto, capacity 32 → 8 (at 4 s) → 32 (at 8 s), 429 beyond".into(),
        format!(
            "limit ≤ 8 {} after the drop, ≥ 28 {} after the rise; 429s {} of {} requests ({:.2}%)",
            secs(down),
            secs(up),
            run.too_many,
            run.requests,
            run.too_many as f64 * 100.0 / run.requests.max(1) as f64
        ),
        "follows within 2 s; 429s < 2%".into(),
        verdict(down.is_some_and(|t| t <= 2.0) && run.too_many * 50 < run.requests),
    ]);
    drop(changing);

    // What adapting costs where there is nothing to adapt to.
    let instant = mock(Behavior::default());
    let fixed = best_of(3, || abatch(&instant, records_1m, &["-c", "8"]));
    let auto = best_of(3, || abatch(&instant, records_1m, &["-c", "auto"]));
    rows.push([
        "CPU per 1M records, -c auto vs -c 8, instant server".into(),
        format!(
            "{:.2} vs {:.2} s CPU; {:.2} vs {:.2} s wall",
            auto.cpu.as_secs_f64(),
            fixed.cpu.as_secs_f64(),
            auto.wall.as_secs_f64(),
            fixed.wall.as_secs_f64()
        ),
        "within noise".into(),
        String::new(),
    ]);
}

/// What a run's --stats says of its pace, latency, 429s and limit.
struct Run {
    records_per_s: f64,
    p99_ms: f64,
    requests: u64,
    too_many: u64,
    limit_mean: f64,
    limit_final: u64,
}

/// Runs abatch once with --stats and reads what it says.
fn with_stats(server: &MockServer, input: &Path, args: &[&str]) -> Run {
    with_log(server, input, args).0
}

/// Runs abatch once with --stats, and returns what they say and what it wrote on stderr.
fn with_log(server: &MockServer, input: &Path, args: &[&str]) -> (Run, String) {
    let stats = tempfile::NamedTempFile::new().expect("stats file");
    let stats_path = stats.path().to_string_lossy().into_owned();
    let output = Command::new(env!("CARGO_BIN_EXE_abatch"))
        .args(["--url", &server.url(), "--stats", &stats_path])
        .args(args)
        .arg(input)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdout(Stdio::null())
        .output()
        .expect("abatch runs");
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?} failed: {said}");
    let text = std::fs::read_to_string(stats.path()).expect("stats written");
    let stats: serde_json::Value = serde_json::from_str(&text).expect("stats are JSON");
    let number = |pointer: &str| {
        stats
            .pointer(pointer)
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
    };
    let run = Run {
        records_per_s: number("/records_per_s"),
        p99_ms: number("/requests/latency_ms/p99"),
        requests: number("/requests/count") as u64,
        too_many: number("/requests/statuses/429") as u64,
        limit_mean: number("/concurrency/limit_mean"),
        limit_final: number("/concurrency/limit_final") as u64,
    };
    (run, said)
}

/// (seconds since the start, new limit) for each "concurrency limit A → B" line of a -v log.
fn limit_changes(log: &str) -> Vec<(f64, usize)> {
    log.lines()
        .filter_map(|line| {
            let (at, rest) = line.trim_start().split_once("s ")?;
            let (_, change) = rest.split_once("concurrency limit ")?;
            let (_, to) = change.split_once(" → ")?;
            let to = to.split(':').next()?;
            Some((at.parse().ok()?, to.trim().parse().ok()?))
        })
        .collect()
}

/// A server that keeps no log: this process must stay small, because a child's peak memory
/// as the kernel reports it starts from its parent's size at spawn.
fn mock(behavior: Behavior) -> MockServer {
    let options = Options {
        record: false,
        print: false,
    };
    MockServer::serve(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        behavior,
        options,
        None,
    )
    .expect("mock server")
}

/// A run over a million records: its CPU, its pace, its memory.
fn per_million(run: &Measured) -> String {
    format!(
        "{:.2} s CPU; {:.0}k records/s; {:.1} MiB peak",
        run.cpu.as_secs_f64(),
        1_000.0 / run.wall.as_secs_f64(),
        run.peak_rss_mib
    )
}

fn verdict(pass: bool) -> String {
    if pass { "pass" } else { "MISS" }.into()
}

/// `{"id":N,"text":"..."}`, about 60 bytes a line.
fn write_records(dir: &Path, count: usize) -> PathBuf {
    let path = dir.join(format!("records-{count}.jsonl"));
    let mut out = BufWriter::new(File::create(&path).expect("input file"));
    for id in 0..count {
        writeln!(
            out,
            "{{\"id\":{id},\"text\":\"record number {id} of the benchmark\"}}"
        )
        .expect("write input");
    }
    out.flush().expect("write input");
    path
}

fn best_of(runs: usize, mut run: impl FnMut() -> Measured) -> Measured {
    (0..runs)
        .map(|_| run())
        .min_by(|a, b| a.wall.cmp(&b.wall))
        .expect("at least one run")
}

/// Runs abatch once over `input`, its output thrown away, and measures it.
fn abatch(server: &MockServer, input: &Path, args: &[&str]) -> Measured {
    abatch_at(&server.url(), input, args)
}

/// Runs abatch once over `input` against `url`, its output thrown away, and measures it.
fn abatch_at(url: &str, input: &Path, args: &[&str]) -> Measured {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_abatch"));
    cmd.args(["--url", url, "--quiet"]).args(args).arg(input);
    measure(cmd)
}

/// Runs `cmd` to completion, its output thrown away, and measures it alone.
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports its resource use"
)]
fn measure(mut cmd: Command) -> Measured {
    // Kept aside (a progress display draws there) and shown only if the run fails.
    let mut stderr = tempfile::tempfile().expect("temporary file");
    let started = Instant::now();
    let child = cmd
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.try_clone().expect("a second handle"))
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    let mut status = 0;
    // SAFETY: rusage is plain data, and wait4 fills it for the child we just spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: status and usage are valid for writes; the pid is our own unwaited child.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let mut said = String::new();
        let _ = stderr.seek(std::io::SeekFrom::Start(0));
        let _ = stderr.read_to_string(&mut said);
        panic!("{cmd:?} failed: status {status}; it said:\n{said}");
    }
    let seconds = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    Measured {
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    }
}

/// A Python with aiohttp for the baseline, in a virtual environment made once under target/;
/// None (and a note why) where it cannot be had.
fn python_with_aiohttp() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv");
    let python = venv.join("bin/python");
    let has_aiohttp = |python: &Path| {
        Command::new(python)
            .args(["-c", "import aiohttp"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_aiohttp(&python) {
        return Some(python);
    }
    eprintln!(
        "setting up {} with aiohttp for the Python baseline",
        venv.display()
    );
    let made = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "aiohttp"])
            .status()
            .is_ok_and(|s| s.success());
    if made && has_aiohttp(&python) {
        Some(python)
    } else {
        eprintln!("no Python with aiohttp: the baseline is skipped");
        None
    }
}

fn print_table(rows: &[[String; 4]]) {
    let headers = ["measure", "figure", "target", ""];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    let mut line = |cells: [&str; 4]| {
        let mut text = String::from("|");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(
                text,
                " {cell}{} |",
                " ".repeat(width - cell.chars().count())
            );
        }
        table.push_str(text.trim_end());
        table.push('\n');
    };
    line(headers);
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line([&rules[0], &rules[1], &rules[2], &rules[3]]);
    for row in rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
    print!("{table}");
}
