//! Aligned output for pipe engines (--aligned, --hadoop-counters): one output line per input
//! line, whatever happens to it, and counts in Hadoop Streaming's form.

use std::collections::BTreeMap;

use crate::common::*;

/// Lines of every kind: records, blank lines, an invalid line, and records the server
/// refuses (a 400 for the request that carries them).
const INPUT: &str = "{\"id\":0}\n\n{\"id\":1}\nnot json\n{\"id\":2,\"mock\":{\"status\":400}}\n\
                     {\"id\":3}\n   \n{\"id\":4}\n{\"id\":5}";

/// What each input line of INPUT must become, in order.
const EXPECTED: [&str; 9] = [
    r#"{"echo":{"id":0}}"#,
    "null",
    r#"{"echo":{"id":1}}"#,
    "null",
    "null",
    r#"{"echo":{"id":3}}"#,
    "null",
    r#"{"echo":{"id":4}}"#,
    r#"{"echo":{"id":5}}"#,
];

/// Every input line has its output line, in place: a result, or null for a blank, invalid or
/// failed line; only the failed and invalid ones are dead letters, and the run exits 0.
#[test]
fn every_input_line_has_its_output_line_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["--aligned", "--split-on-error", "-b", "3", "--stats"])
        .arg(&stats)
        .write_stdin(INPUT)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), EXPECTED);
    let stderr = Stderr::of(&out.get_output().stderr);
    let mut dead: Vec<u64> = stderr
        .dead
        .iter()
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    dead.sort_unstable();
    assert_eq!(dead, [4, 5], "{stderr:#?}");
    // Blank lines are not sent, and not records.
    let sent: usize = server.requests().iter().map(|r| r.records).sum();
    assert!(sent >= 6, "{sent}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(stats["records"]["read"], 7);
    assert_eq!(stats["records"]["blank_lines"], 2);
    assert_eq!(stats["exit"], 0);
    assert!(
        stderr.summary.contains("2 blank lines written as null"),
        "{}",
        stderr.summary
    );
}

/// With --max-errors, failing more than it allows stops the run and exits 1, so that the
/// engine retries the task; --on-error skip or abort would break alignment and is refused.
#[test]
fn only_max_errors_fails_an_aligned_run() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["--aligned", "--max-errors", "0", "-b", "1"])
        .write_stdin(INPUT)
        .assert()
        .code(1);
    assert!(
        String::from_utf8_lossy(&out.get_output().stderr).contains("--max-errors"),
        "{}",
        String::from_utf8_lossy(&out.get_output().stderr)
    );
    for policy in ["skip", "abort"] {
        let out = abatch_to(&server)
            .args(["--aligned", "--on-error", policy])
            .write_stdin(INPUT)
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains("would break the alignment"), "{stderr}");
    }
    for args in [&["--shard", "0/2"][..], &["--dry-run"]] {
        let out = abatch_to(&server)
            .arg("--aligned")
            .args(args)
            .write_stdin(INPUT)
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains("one line per line of its input"),
            "{stderr}"
        );
    }
    // Nor does an OpenAI batch file take shaping flags it would ignore.
    let out = abatch_to(&server)
        .args(["--api", "openai-batch", "--model", "m"])
        .write_stdin(INPUT)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("--model does not apply"), "{stderr}");
}

/// --hadoop-counters adds what changed to each counter, so that the amounts add up to the
/// run's totals; the status line comes at most once a second while the run goes on.
#[test]
fn hadoop_counters_add_up_to_the_totals() {
    let server = server(Behavior {
        latency: Some(std::time::Duration::from_millis(150)),
        ..Behavior::default()
    });
    let started = std::time::Instant::now();
    let out = abatch_to(&server)
        .args(["--aligned", "--hadoop-counters", "-b", "1", "-c", "1"])
        .write_stdin(format!("{INPUT}\n{}", records(10..24)))
        .assert()
        .success();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    let mut statuses = 0;
    for line in stderr.lines() {
        if let Some(counter) = line.strip_prefix("reporter:counter:abatch,") {
            let (name, amount) = counter.rsplit_once(',').unwrap();
            *sums.entry(name.to_owned()).or_default() += amount.parse::<u64>().unwrap();
        } else if line.starts_with("reporter:status:") {
            statuses += 1;
        }
    }
    assert_eq!(sums["records_read"], 21, "{stderr}");
    assert_eq!(sums["records_written"], 19, "{stderr}");
    assert_eq!(sums["records_failed"], 2, "{stderr}");
    assert_eq!(sums["blank_lines"], 2, "{stderr}");
    // One a second while it ran, and one at the end.
    assert!(statuses >= 2, "{stderr}");
    assert!(
        statuses as f64 <= took.as_secs_f64() + 2.0,
        "{statuses} in {took:?}"
    );
}

/// Aligned output stays in place when the cache answers some records and the server the
/// others, and a tagged aligned output (blank lines included) resumes by its tags.
#[test]
fn aligned_output_keeps_its_place_with_the_cache_and_resumes_by_tag() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let server = quick_server();
    let run = |input: &str| {
        let out = abatch_to(&server)
            .args(["--aligned", "--split-on-error", "-b", "2", "--cache"])
            .arg(&cache)
            .write_stdin(input.to_owned())
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    };
    run(INPUT);
    // Records 0 and 4 are new; the others come from the cache, between them.
    let edited = INPUT
        .replace("{\"id\":0}", "{\"id\":10}")
        .replace("{\"id\":4}", "{\"id\":14}");
    let mut expected = EXPECTED.map(String::from);
    expected[0] = r#"{"echo":{"id":10}}"#.into();
    expected[7] = r#"{"echo":{"id":14}}"#.into();
    assert_eq!(run(&edited).lines().collect::<Vec<_>>(), expected);

    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, INPUT).unwrap();
    let out = dir.path().join("out.jsonl");
    let tagged = |args: &[&str]| {
        abatch_to(&server)
            .args(["--aligned", "--tag", "--split-on-error", "-o"])
            .arg(&out)
            .args(args)
            .arg(&input)
            .assert()
            .success();
    };
    tagged(&[]);
    let whole = std::fs::read_to_string(&out).unwrap();
    let kept: String = whole.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(&out, kept).unwrap();
    tagged(&["--resume"]);
    let mut lines: Vec<u64> = json_lines(std::fs::read_to_string(&out).unwrap().as_bytes())
        .iter()
        .map(|line| line["line"].as_u64().unwrap())
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, (1..=9).collect::<Vec<_>>());
}
