//! Shards for job arrays (--shard K/N, --shard-from-env): N workers together answer every
//! record once, each reads its own byte range of plain files (or every N-th record of stdin
//! and compressed input), and line numbers stay those of the whole file.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;
use crate::compressed::compress;

/// Records of random lengths (some near the cut points), blank lines among them, the last one
/// without a newline; returns the text and each record's id → line number.
fn ragged(seed: u64, records: usize) -> (String, BTreeMap<usize, u64>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut text = String::new();
    let mut lines = BTreeMap::new();
    let mut line = 0;
    for id in 0..records {
        if rng.u8(..10) == 0 {
            text.push('\n');
            line += 1;
        }
        line += 1;
        lines.insert(id, line);
        let pad = "x".repeat(rng.usize(..400));
        text.push_str(&format!("{{\"id\":{id},\"pad\":\"{pad}\"}}"));
        if id + 1 < records {
            text.push('\n');
        }
    }
    (text, lines)
}

/// One shard's run over `inputs` (or `stdin`) against a fresh server: its tagged output lines
/// as (file, line, id), and how many records the server saw.
fn shard_run(shard: &str, inputs: &[&Path], stdin: Option<Vec<u8>>) -> Vec<(String, u64, usize)> {
    let server = quick_server();
    let mut cmd = abatch_to(&server);
    cmd.args(["--shard", shard, "--tag", "-b", "16"])
        .args(inputs);
    if let Some(data) = stdin {
        cmd.write_stdin(data);
    }
    let out = cmd.assert().success();
    // The summary is about this shard's share.
    let summary = Stderr::of(&out.get_output().stderr).summary;
    assert!(
        summary.starts_with(&format!("abatch: shard {shard}: ")),
        "{summary}"
    );
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let seen: usize = server.requests().iter().map(|r| r.records).sum();
    let tagged: Vec<(String, u64, usize)> = stdout
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                value["file"].as_str().unwrap().to_owned(),
                value["line"].as_u64().unwrap(),
                value["result"]["echo"]["id"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(seen, tagged.len(), "{shard}");
    tagged
}

/// N = 1, 3 and 7 over two files of ragged lines: every record is answered by exactly one
/// shard, under the line number it has in its whole file.
#[test]
fn shards_of_files_answer_every_record_once_with_whole_file_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (first, first_lines) = ragged(1, 700);
    let (second, second_lines) = ragged(2, 300);
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    std::fs::write(&a, first).unwrap();
    std::fs::write(&b, second).unwrap();
    let name = |path: &Path| path.display().to_string();
    for n in [1, 3, 7] {
        let mut all: Vec<(String, u64, usize)> = (0..n)
            .flat_map(|k| shard_run(&format!("{k}/{n}"), &[&a, &b], None))
            .collect();
        all.sort();
        let mut expected: Vec<(String, u64, usize)> = first_lines
            .iter()
            .map(|(id, line)| (name(&a), *line, *id))
            .chain(second_lines.iter().map(|(id, line)| (name(&b), *line, *id)))
            .collect();
        expected.sort();
        assert_eq!(all, expected, "N = {n}");
    }
}

/// Over a file of lines of one length, each of 7 shards gets within 20% of an even split.
#[test]
fn shards_of_uniform_lines_are_even() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("uniform.jsonl");
    let text: String = (0..7000)
        .map(|id: usize| {
            let pad = "y".repeat(56 - id.to_string().len());
            format!("{{\"id\":{id},\"pad\":\"{pad}\"}}\n")
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    for k in 0..7 {
        let got = shard_run(&format!("{k}/7"), &[&path], None).len();
        assert!((800..=1200).contains(&got), "shard {k} of 7: {got} records");
    }
}

/// Stdin, and a compressed file, cannot be entered in the middle: each shard reads all of it
/// and keeps every N-th record, so the shards still answer each record once.
#[test]
fn stdin_and_compressed_input_are_shared_record_by_record() {
    let dir = tempfile::tempdir().unwrap();
    let (text, lines) = ragged(3, 500);
    let gz = dir.path().join("data.jsonl.gz");
    std::fs::write(&gz, compress::gzip(text.as_bytes())).unwrap();
    for from_stdin in [true, false] {
        let mut all = Vec::new();
        for k in 0..3 {
            let got = if from_stdin {
                shard_run(&format!("{k}/3"), &[], Some(text.clone().into_bytes()))
            } else {
                shard_run(&format!("{k}/3"), &[&gz], None)
            };
            // Record number modulo 3.
            assert!(got.iter().all(|(_, _, id)| id % 3 == k), "{k}: {got:?}");
            all.extend(got);
        }
        all.sort_by_key(|(_, _, id)| *id);
        let found: Vec<(usize, u64)> = all.iter().map(|(_, line, id)| (*id, *line)).collect();
        let expected: Vec<(usize, u64)> = lines.iter().map(|(id, line)| (*id, *line)).collect();
        assert_eq!(found, expected, "stdin: {from_stdin}");
    }
}

/// --shard-from-env takes K and N from a Kubernetes Indexed Job or a Slurm array, as --shard
/// would; missing or inconsistent variables are a usage error that names them.
#[test]
fn the_shard_comes_from_the_job_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.jsonl");
    std::fs::write(&path, records(0..90)).unwrap();
    let ids = |env: &[(&str, &str)], extra: &[&str]| -> Vec<usize> {
        let server = quick_server();
        let mut cmd = abatch_to(&server);
        cmd.arg("--ordered").args(extra).arg(&path);
        for (name, value) in env {
            cmd.env(name, value);
        }
        echoed_ids(&cmd.assert().success().get_output().stdout)
    };
    let direct = ids(&[], &["--shard", "2/3"]);
    assert!(!direct.is_empty() && direct.len() < 90);
    let kubernetes = ids(
        &[("JOB_COMPLETION_INDEX", "2"), ("ABATCH_SHARD_COUNT", "3")],
        &["--shard-from-env"],
    );
    assert_eq!(kubernetes, direct);
    let slurm = ids(
        &[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
        ],
        &["--shard-from-env"],
    );
    assert_eq!(slurm, direct);

    for (env, says) in [
        (vec![], "neither JOB_COMPLETION_INDEX"),
        (vec![("JOB_COMPLETION_INDEX", "1")], "--shard-count"),
        (
            vec![("JOB_COMPLETION_INDEX", "3"), ("ABATCH_SHARD_COUNT", "3")],
            "shard 3 does not exist among 3",
        ),
    ] {
        let server = quick_server();
        let mut cmd = abatch_to(&server);
        cmd.arg("--shard-from-env").arg(&path);
        for (name, value) in env {
            cmd.env(name, value);
        }
        let out = cmd.assert().code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains(says), "{stderr}");
        assert!(server.requests().is_empty());
    }
}

/// A shard retried by its engine resumes its own output: the second run sends only what the
/// shard's first output lacks, and the two together are the shard's records.
#[test]
fn a_shard_resumes_its_own_output() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = ragged(4, 400);
    let input = dir.path().join("data.jsonl");
    std::fs::write(&input, text).unwrap();
    let whole = shard_run("1/4", &[&input], None);
    let out = dir.path().join("out-1.jsonl");
    // A first run that got a few answers out, then was killed.
    let kept: String = {
        let server = quick_server();
        let run = abatch_to(&server)
            .args(["--shard", "1/4", "--tag", "-b", "16"])
            .arg(&input)
            .assert()
            .success();
        let stdout = String::from_utf8_lossy(&run.get_output().stdout).into_owned();
        stdout.lines().take(20).map(|l| format!("{l}\n")).collect()
    };
    std::fs::write(&out, &kept).unwrap();
    let server = quick_server();
    abatch_to(&server)
        .args(["--shard", "1/4", "--tag", "--resume", "-o"])
        .arg(&out)
        .arg(&input)
        .assert()
        .success();
    let sent: usize = server.requests().iter().map(|r| r.records).sum();
    assert_eq!(sent, whole.len() - 20);
    let mut lines: Vec<u64> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    lines.sort_unstable();
    let mut expected: Vec<u64> = whole.iter().map(|(_, line, _)| *line).collect();
    expected.sort_unstable();
    assert_eq!(lines, expected);
}
