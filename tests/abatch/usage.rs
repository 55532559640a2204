//! Bad command lines stop with a usage error (exit 2) before anything is read or sent.

use crate::common::*;

#[test]
fn invalid_arguments_exit_2_and_send_nothing() {
    let server = quick_server();
    let cases: &[&[&str]] = &[
        &["-b", "0"],
        &["--batch-size", "many"],
        &["-c", "0"],
        &["-t", "soon"],
        &["--batch-timeout=-1s"],
        &["--timeout", "0s"],
        &["--timeout", "5 parsecs"],
        &["--max-batch-bytes", "0"],
        &["--max-batch-bytes", "lots"],
        &["-H", "no colon here"],
        &["-H", "bad name: x"],
        &["--no-such-flag"],
    ];
    for args in cases {
        let out = abatch_to(&server)
            .args(*args)
            .write_stdin(records(0..3))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert!(server.requests().is_empty());
}

#[test]
fn values_past_their_bound_are_usage_errors_naming_it() {
    let server = quick_server();
    let cases: &[(&[&str], &str)] = &[
        (&["--max-line-bytes", "18446744073709551614"], "4GiB"),
        (&["--max-batch-bytes", "5GiB"], "4GiB"),
        (&["--max-response-bytes", "4097MiB"], "4GiB"),
        (&["-t", "8days"], "7days"),
        (&["--timeout", "500000000000years"], "7days"),
        (&["--retry-backoff", "1000weeks"], "7days"),
        (&["-b", "1000001"], "1000000"),
        (&["-c", "10001"], "10000"),
        (&["--retries", "1001"], "1000"),
        (&["--retries", "4294967296"], "1000"),
    ];
    for (args, bound) in cases {
        let out = abatch_to(&server)
            .args(*args)
            .write_stdin(records(0..3))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr);
        let expected = format!("error: invalid value '{}' for '--", args[1]);
        assert!(stderr.starts_with(&expected), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(": must be at most {bound}\n")),
            "{args:?}: {stderr}"
        );
    }
    assert!(server.requests().is_empty());

    // The bounds themselves, and a batch timeout of zero, are allowed.
    abatch_to(&server)
        .args(["--max-line-bytes", "4GiB", "--max-response-bytes", "4GiB"])
        .args([
            "-b",
            "1000000",
            "-c",
            "10000",
            "--retries",
            "1000",
            "-t",
            "0s",
            "-q",
        ])
        .write_stdin(records(0..3))
        .assert()
        .success();
    assert_eq!(
        server.requests().iter().map(|r| r.records).sum::<usize>(),
        3
    );
}

/// Environment variables to set, name and value.
type Vars<'a> = &'a [(&'a str, &'a str)];

#[test]
fn contradictory_or_meaningless_flags_are_usage_errors_that_say_why() {
    let server = quick_server();
    let cases: &[(&[&str], Vars, &str)] = &[
        (
            &["--progress", "--no-progress"],
            &[],
            "--progress and --no-progress contradict each other",
        ),
        (
            &[],
            &[("ABATCH_PROGRESS", "1"), ("ABATCH_NO_PROGRESS", "yes")],
            "ABATCH_PROGRESS and ABATCH_NO_PROGRESS contradict each other",
        ),
        (
            &["--v2-input", "x"],
            &[],
            "--v2-input only applies to --api v2",
        ),
        (
            &[],
            &[("ABATCH_V2_INPUT", "x"), ("ABATCH_API", "tfserving")],
            "--v2-input only applies to --api v2",
        ),
        (
            &[
                "--api",
                "tfserving",
                "--v2-datatype",
                "FP32",
                "--v2-output",
                "o",
            ],
            &[],
            "--v2-datatype and --v2-output only apply to --api v2",
        ),
        (
            &[
                "--api",
                "v2",
                "--template",
                r#"{"rows": $batch}"#,
                "--v2-input",
                "x",
            ],
            &[],
            "--v2-input applies to the --api v2 tensor, which --template replaces",
        ),
        (
            &["--model", "m"],
            &[],
            "--model has no place in the request: without --template (or an --api) the body \
             is the bare JSON array of records; give a --template such as '{\"input\": $batch}'",
        ),
        (
            &["--single", "--set", "k=1"],
            &[],
            "--set has no place in the request: with --single and no --template the body is \
             the record itself; give a --template such as '{\"input\": $record}'",
        ),
        (
            &["--template", "[$batch]", "--model", "m", "--set", "k=1"],
            &[],
            "--model and --set have no place in the request: --template is not a JSON object",
        ),
        (
            &[
                "--api",
                "openai-embeddings",
                "--model",
                "m",
                "--set",
                "input=1",
            ],
            &[],
            "--set input: the body already has a member \"input\" (from --api openai-embeddings)",
        ),
        (
            &["--model", "m", "--set", "model=\"n\""],
            &[],
            "--model and --set model both set \"model\"",
        ),
    ];
    for (args, vars, expected) in cases {
        let out = abatch_to(&server)
            .args(*args)
            .envs(vars.iter().copied())
            .write_stdin("[1]\n")
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.starts_with(&format!("error: {expected}\n")),
            "{args:?} {vars:?}: {stderr}"
        );
    }
    assert!(server.requests().is_empty());

    // A flag on the command line wins over a variable that says the opposite.
    let out = abatch_to(&server)
        .env("ABATCH_PROGRESS", "1")
        .args(["--no-progress", "-b", "1"])
        .write_stdin(records(0..2))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!stderr.contains(" in flight"), "{stderr}");
    assert_eq!(sizes(&server), [1, 1]);
}

#[test]
fn a_negative_number_gets_a_plain_message() {
    for (args, expected) in [
        (["-b", "-1"], "must be at least 1"),
        (["-c", "-5"], "must be at least 1"),
        (["--retries", "-1"], "must be at least 0"),
        (["--max-line-bytes", "-1"], "must be at least 1 byte"),
        (["--max-batch-bytes", "-1KiB"], "must be at least 1 byte"),
        (["-t", "-1s"], "must not be negative"),
        (["--timeout", "-2s"], "must not be negative"),
    ] {
        let out = abatch()
            .args(["-u", "http://127.0.0.1:9/"])
            .args(args)
            .write_stdin(records(0..1))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("error: invalid value '{}' for '--", args[1]))
                && first.ends_with(&format!(": {expected}")),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("-- "),
            "no hint to escape the value: {stderr}"
        );
    }
}

#[test]
fn url_is_required_and_must_be_http() {
    for args in [
        &[][..],
        &["--url", "exa mple.com/predict"],
        &["-u", "ftp://example.com/"],
        &["-u", "http://"],
    ] {
        let out = abatch()
            .args(args)
            .write_stdin(records(0..1))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr);
        assert!(stderr.contains("--url"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_url_without_a_scheme_is_http() {
    let server = quick_server();
    let port = server.addr().port();
    for host in ["127.0.0.1", "localhost"] {
        let out = abatch()
            .args(["-u", &format!("{host}:{port}/predict"), "-q", "--ordered"])
            .write_stdin(records(0..2))
            .assert()
            .success();
        assert_eq!(echoed_ids(&out.get_output().stdout), [0, 1], "{host}");
    }
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/predict", "/predict"]);
}

#[test]
fn a_url_given_as_a_file_is_pointed_out() {
    let server = quick_server();
    let out = abatch()
        .arg(server.url())
        .write_stdin(records(0..1))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    let expected = format!("error: no --url given; did you mean -u {}?", server.url());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(server.requests().is_empty());
}

#[test]
fn a_file_named_by_a_flag_that_cannot_be_read_is_a_usage_error() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let folder = dir.path().display().to_string();
    let missing = missing.display().to_string();
    for (flag, prefix, path, problem) in [
        ("--cacert", "", &missing, "No such file or directory"),
        ("--cacert", "", &folder, "Is a directory"),
        ("-H", "@", &missing, "No such file or directory"),
        ("-H", "@", &folder, "Is a directory"),
    ] {
        let out = abatch_to(&server)
            .args([flag, &format!("{prefix}{path}")])
            .write_stdin(records(0..1))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        let expected = format!("error: cannot read {flag} {prefix}{path}: {problem} (os error ");
        assert!(stderr.starts_with(&expected), "{stderr}");
    }
    assert!(server.requests().is_empty());
}

#[test]
fn header_values_never_appear_in_errors() {
    let out = abatch()
        .args([
            "-u",
            "http://127.0.0.1:9/",
            "-H",
            "Authorization Bearer hunter2",
        ])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("invalid --header"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn help_and_version_succeed() {
    let help = abatch().arg("--help").assert().success();
    let text = String::from_utf8_lossy(&help.get_output().stdout);
    for flag in [
        "--url",
        "--batch-size",
        "--batch-timeout",
        "--concurrency",
        "--ordered",
        "--max-batch-bytes",
        "--timeout",
        "--header",
        "--output",
        "Exit status",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    abatch()
        .arg("--version")
        .assert()
        .success()
        .stdout(format!("abatch {}\n", env!("CARGO_PKG_VERSION")));
}
