//! Hostile input and hostile servers: limits that keep memory bounded, input no parser
//! expects, and secrets that never leak into messages.

use crate::common::*;

#[test]
fn a_line_over_the_limit_is_an_input_error_naming_it() {
    let server = quick_server();
    let long = format!("{{\"text\":\"{}\"}}\n", "x".repeat(200));
    let input = format!("{}{long}{}", records(0..2), records(3..5));
    let out = abatch_to(&server)
        .args(["--max-line-bytes", "100", "--ordered"])
        .write_stdin(input)
        .assert()
        .code(1);
    assert_eq!(echoed_ids(&out.get_output().stdout), [0, 1]);
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(
        stderr.message(),
        "abatch: <stdin>:3: the line is longer than --max-line-bytes (100 B)"
    );
}

#[test]
fn a_response_over_the_limit_fails_its_batch_without_retrying() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["--max-response-bytes", "64", "-b", "10"])
        .write_stdin(records(0..10))
        .assert()
        .code(1);
    let stderr = Stderr::of(&out.get_output().stderr);
    assert!(
        stderr
            .message()
            .ends_with("invalid response: the body is larger than --max-response-bytes (64 B)"),
        "{stderr:#?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn binary_and_truncated_input_get_clear_errors_or_pass() {
    let server = quick_server();
    // A last line without a newline is a record like any other.
    let out = abatch_to(&server)
        .args(["--ordered", "-q"])
        .write_stdin("{\"id\":0}\n{\"id\":1}")
        .assert()
        .success();
    assert_eq!(echoed_ids(&out.get_output().stdout), [0, 1]);
    for (input, line) in [
        (&b"{\"id\":0}\n\x00\x01\x02\n"[..], 2),
        (&b"{\"id\":0}\n{\"id\":1}\n\"\xff\xfe\"\n"[..], 3),
        (&b"\"ok\"\n{\"cut\": [1, 2"[..], 2),
    ] {
        let out = abatch_to(&server).write_stdin(input).assert().code(1);
        let stderr = Stderr::of(&out.get_output().stderr);
        let prefix = format!("abatch: <stdin>:{line}: invalid JSON at column ");
        assert!(stderr.message().starts_with(&prefix), "{stderr:#?}");
    }
}

#[test]
fn deeply_nested_records_pass_through_without_overflowing_the_stack() {
    let server = quick_server();
    let depth = 100_000;
    let nested = format!("{}{}\n", "[".repeat(depth), "]".repeat(depth));
    let out = abatch_to(&server)
        .arg("-q")
        .write_stdin(format!("{nested}{}", records(1..2)))
        .assert();
    let output = out.get_output();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    let body = format!("[{},{{\"id\":1}}]", nested.trim_end());
    assert_eq!(sent[0].body, body.as_bytes());
    let expected = format!(
        "{{\"echo\":{}}}\n{{\"echo\":{{\"id\":1}}}}\n",
        nested.trim_end()
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
}

#[test]
fn a_batch_of_ten_thousand_records_goes_in_one_request() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["-b", "10000", "--ordered", "-q"])
        .write_stdin(records(0..10_000))
        .assert()
        .success();
    assert_eq!(
        echoed_ids(&out.get_output().stdout),
        (0..10_000).collect::<Vec<_>>()
    );
    assert_eq!(sizes(&server), [10_000]);
}

#[test]
fn control_characters_from_a_server_never_reach_the_terminal() {
    // Clear the screen, retitle the terminal, and a C1 control (CSI) that some terminals obey.
    let hostile = "\x1b[2J\x1b]0;pwned\x07 oops \u{9b}31m";
    let escaped = r"\x1b[2J\x1b]0;pwned\x07 oops \u{9b}31m";
    for status in [Some(500), None] {
        let server = server(Behavior {
            status,
            reply: Some(hostile.into()),
            ..Behavior::default()
        });
        let out = abatch_to(&server)
            .args(["--retries", "0", "-v"])
            .write_stdin(records(0..2))
            .assert()
            .code(1);
        assert_eq!(server.requests().len(), 1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            !stderr.contains(['\x1b', '\x07', '\u{9b}']),
            "{status:?}: {stderr:?}"
        );
        let (logged, said) = stderr
            .lines()
            .filter(|line| line.contains(escaped))
            .partition::<Vec<&str>, _>(|line| line.contains(" INFO "));
        assert_eq!((logged.len(), said.len()), (1, 1), "{status:?}: {stderr}");
        let dead: Vec<&str> = stderr.lines().filter(|l| l.starts_with('{')).collect();
        assert_eq!(dead.len(), 2, "{stderr}");
    }
}

#[test]
fn headers_from_a_file_are_sent_and_never_shown() {
    let server = quick_server();
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    std::fs::write(
        &headers,
        "# keep out of ps\nAuthorization: Bearer hunter2\nX-Team: ml\n",
    )
    .unwrap();
    let arg = format!("@{}", headers.display());
    let out = abatch_to(&server)
        .args(["-H", &arg, "-H", "X-Extra: 1"])
        .write_stdin(records(0..1))
        .assert()
        .success();
    let seen = &server.requests()[0].headers;
    assert_eq!(seen["authorization"], "Bearer hunter2");
    assert_eq!(seen["x-team"], "ml");
    assert_eq!(seen["x-extra"], "1");
    let output = out.get_output();
    assert!(!String::from_utf8_lossy(&output.stderr).contains("hunter2"));

    std::fs::write(&headers, "Authorization: Bearer hunter2\u{7f}\n").unwrap();
    let out = abatch_to(&server)
        .args(["-H", &arg])
        .write_stdin(records(0..1))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("{}:1: ", headers.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn an_invalid_line_follows_the_error_policy_and_keeps_its_raw_text() {
    let server = quick_server();
    let input = format!("{}not json\n{}", records(0..3), records(4..7));
    let raw_letter = |stderr: &Stderr| {
        let raw: Vec<_> = stderr
            .dead
            .iter()
            .filter(|l| l.get("raw").is_some())
            .collect();
        assert_eq!(raw.len(), 1, "{stderr:#?}");
        assert_eq!(raw[0]["raw"], "not json");
        assert_eq!(raw[0]["line"], 4);
        assert_eq!(raw[0]["attempts"], 0);
        assert!(
            raw[0]["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON at column 2")
        );
    };

    let out = abatch_to(&server)
        .args(["--ordered", "-b", "2"])
        .write_stdin(input.clone())
        .assert()
        .code(1);
    assert_eq!(echoed_ids(&out.get_output().stdout), [0, 1, 2]);
    let stderr = Stderr::of(&out.get_output().stderr);
    raw_letter(&stderr);
    assert!(
        stderr
            .message()
            .starts_with("abatch: <stdin>:4: invalid JSON at column 2: "),
        "{stderr:#?}"
    );
    assert_eq!(dead_ids(&stderr.dead[1..]), [4, 5, 6], "read, not sent");
    assert_eq!(stderr.records_read(), 7);

    let out = abatch_to(&server)
        .args(["--ordered", "-b", "2", "--on-error", "skip"])
        .write_stdin(input.clone())
        .assert()
        .code(3);
    assert_eq!(echoed_ids(&out.get_output().stdout), [0, 1, 2, 4, 5, 6]);
    raw_letter(&Stderr::of(&out.get_output().stderr));

    let out = abatch_to(&server)
        .args(["--ordered", "-b", "2", "--on-error", "null"])
        .write_stdin(input)
        .assert()
        .code(3);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 7, "line for line with the input");
    assert_eq!(lines[3], "null");
    let stderr = Stderr::of(&out.get_output().stderr);
    raw_letter(&stderr);
    assert!(
        stderr
            .summary
            .contains("7 records read: 6 written, 1 failed"),
        "{stderr:#?}"
    );
}

#[test]
fn windows_exports_read_as_they_are() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["--ordered", "-q"])
        .write_stdin("\u{feff}{\"id\":0}\r\n{\"id\":1}\r\n\r\n{\"id\":2}\r\n")
        .assert()
        .success();
    assert_eq!(echoed_ids(&out.get_output().stdout), [0, 1, 2]);
    assert_eq!(
        server.requests()[0].body,
        &b"[{\"id\":0},{\"id\":1},{\"id\":2}]"[..]
    );
}

#[test]
fn a_pretty_printed_file_gets_a_way_to_convert_it() {
    let server = quick_server();
    let out = abatch_to(&server)
        .write_stdin("[\n  {\"id\": 0},\n  {\"id\": 1}\n]\n")
        .assert()
        .code(1);
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(
        stderr.message(),
        "abatch: <stdin>:1: invalid JSON at column 1: EOF while parsing a list; abatch reads one \
         JSON value per line: convert a JSON array file with `jq -c '.[]' FILE`, pretty-printed \
         values with `jq -c . FILE`"
    );
    assert!(server.requests().is_empty());
}
