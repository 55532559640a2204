//! OpenAI Batch API files (--api openai-batch): each input line is a whole request, POSTed
//! alone as its `body` to -u's base plus its `url`, and answered by one line in the batch output
//! format; a line that is not a request fails alone, a custom_id used twice stops the run, and
//! an interrupted run resumes by custom_id.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

const CHAT: &str = "/v1/chat/completions";
const EMBEDDINGS: &str = "/v1/embeddings";

/// The body of chat request `n`, spaced as a person might write it: it must reach the server
/// as it is.
fn chat_body(n: usize) -> String {
    format!(r#"{{"model": "m", "messages": [{{"role": "user", "content": "hi {n}"}}]}}"#)
}

/// A request line of an OpenAI batch file.
fn request_line(custom_id: &str, url: &str, body: &str) -> String {
    format!(r#"{{"custom_id": "{custom_id}", "method": "POST", "url": "{url}", "body": {body}}}"#)
}

/// Chat request lines `r{n}` for each n in `ids`, one per line.
fn chat_lines(ids: impl IntoIterator<Item = usize>) -> String {
    ids.into_iter()
        .map(|n| request_line(&format!("r{n}"), CHAT, &chat_body(n)) + "\n")
        .collect()
}

/// The custom_ids of output lines, sorted.
fn custom_ids(lines: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = lines
        .iter()
        .map(|line| {
            line["custom_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no custom_id in {line}"))
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// `r{n}` for each n in `ids`, sorted as strings.
fn names(ids: impl IntoIterator<Item = usize>) -> Vec<String> {
    let mut names: Vec<String> = ids.into_iter().map(|n| format!("r{n}")).collect();
    names.sort();
    names
}

/// The output line for `custom_id`.
fn line_for<'a>(lines: &'a [Value], custom_id: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|line| line["custom_id"] == custom_id)
        .collect();
    assert_eq!(found.len(), 1, "{custom_id}: {lines:#?}");
    found[0]
}

/// abatch with --api openai-batch, its base URL `server`'s root.
fn batch_run(server: &MockServer) -> assert_cmd::Command {
    let mut cmd = abatch_at(server, "");
    cmd.args(["--api", "openai-batch"]);
    cmd
}

/// abatch with --api openai-batch at `server`'s root, as a child process, reading no stdin.
fn spawn_batch_run(server: &MockServer, args: &[&str]) -> Child {
    let base = format!("http://{}", server.addr());
    let mut child = spawn_at(&base, &[&["--api", "openai-batch"], args].concat());
    drop(child.stdin.take());
    child
}

/// The complete lines of `path` (a line cut short at its end left out).
fn complete_lines(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match text.rfind('\n') {
        Some(end) => text[..=end].to_owned(),
        None => String::new(),
    }
}

/// Waits until `path` holds at least `n` complete lines; returns how many it holds.
fn wait_for_lines(path: &Path, n: usize) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lines = complete_lines(path).lines().count();
        if lines >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {lines} lines, not {n}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Each request line is sent alone, its body exactly as written, to the base URL plus the
/// line's own url; each gets one output line in the batch output format, with a distinct id,
/// the line's custom_id, and the server's answer as the response body.
#[test]
fn each_line_is_posted_alone_as_its_body_to_its_own_path_and_answered_in_the_batch_format() {
    let server = quick_server();
    let mut input = String::new();
    let mut sent = HashMap::new();
    for n in 0..30 {
        let (url, body) = if n % 5 == 4 {
            (
                EMBEDDINGS,
                format!(r#"{{"model": "e", "input": ["text {n}"]}}"#),
            )
        } else {
            (CHAT, chat_body(n))
        };
        input.push_str(&request_line(&format!("r{n}"), url, &body));
        input.push('\n');
        sent.insert(body, (format!("r{n}"), url));
    }
    let out = batch_run(&server)
        .args(["-c", "4"])
        .write_stdin(input)
        .assert()
        .success();

    let requests = server.requests();
    assert_eq!(requests.len(), 30, "one request per line");
    let mut seen = HashSet::new();
    for request in &requests {
        let body = String::from_utf8_lossy(&request.body).into_owned();
        let (custom_id, url) = sent
            .get(&body)
            .unwrap_or_else(|| panic!("a body no line holds: {body}"));
        assert_eq!(request.path, *url, "{custom_id}");
        assert!(seen.insert(custom_id.clone()), "{custom_id} sent twice");
    }

    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(custom_ids(&lines), names(0..30), "every custom_id once");
    let ids: HashSet<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 30, "ids are distinct");
    for line in &lines {
        let custom_id = line["custom_id"].as_str().unwrap();
        let n: usize = custom_id[1..].parse().unwrap();
        assert!(
            line["id"].as_str().unwrap().starts_with("batch_req_"),
            "{line}"
        );
        assert_eq!(line["error"], Value::Null, "{line}");
        let response = &line["response"];
        assert_eq!(response["status_code"], 200, "{line}");
        // The mock's answers carry neither an x-request-id header nor an "id".
        assert_eq!(response["request_id"], Value::Null, "{line}");
        if n % 5 == 4 {
            assert_eq!(
                response["body"]["data"][0]["embedding"]["echo"],
                format!("text {n}"),
                "{line}"
            );
        } else {
            assert_eq!(
                response["body"]["choices"][0]["message"]["content"]["echo"],
                json!([{"role": "user", "content": format!("hi {n}")}]),
                "{line}"
            );
            assert_eq!(response["body"]["usage"]["completion_tokens"], 1, "{line}");
        }
    }
}

/// The output's request_id is the answer's x-request-id header; without one, the answer's own
/// "id"; the header wins when there are both.
#[test]
fn the_request_id_is_the_x_request_id_header_else_the_answers_id() {
    // The mock sends a header that a record of an embeddings request asks for.
    let with_header = |custom_id: &str, id: &str| {
        let body = format!(
            r#"{{"model": "e", "input": [{{"mock": {{"headers": {{"x-request-id": "{id}"}}}}}}]}}"#
        );
        request_line(custom_id, EMBEDDINGS, &body) + "\n"
    };

    let plain = quick_server();
    let input = with_header("h", "req-7") + &chat_lines([1]);
    let out = batch_run(&plain).write_stdin(input).assert().success();
    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(line_for(&lines, "h")["response"]["request_id"], "req-7");
    assert_eq!(
        line_for(&lines, "r1")["response"]["request_id"],
        Value::Null
    );
    let answered = plain
        .requests()
        .iter()
        .filter(|r| r.path == EMBEDDINGS)
        .count();
    assert_eq!(answered, 1);

    let with_id = server(Behavior {
        reply: Some(r#"{"id": "chatcmpl-42", "choices": []}"#.into()),
        ..Behavior::default()
    });
    let input = with_header("h", "req-9") + &chat_lines([1]);
    let out = batch_run(&with_id).write_stdin(input).assert().success();
    let lines = json_lines(&out.get_output().stdout);
    let plain = &line_for(&lines, "r1")["response"];
    assert_eq!(plain["request_id"], "chatcmpl-42", "{plain}");
    assert_eq!(plain["body"], json!({"id": "chatcmpl-42", "choices": []}));
    assert_eq!(line_for(&lines, "h")["response"]["request_id"], "req-9");
    assert_eq!(with_id.requests().len(), 2);
}

/// A request the server refuses (400) under --on-error null is written with the status and
/// the server's body, as OpenAI writes it, and kept as a dead letter whose record is the
/// request line itself, so that the dead letters can be sent again as they are.
#[test]
fn a_refused_request_is_written_with_its_status_and_kept_as_a_dead_letter_to_send_again() {
    let refusal = r#"{"error":{"message":"no such model","type":"invalid_request_error"}}"#;
    let refusing = server(Behavior {
        status: Some(400),
        reply: Some(refusal.into()),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("errors.jsonl");
    let input = chat_lines(0..5);
    let out = batch_run(&refusing)
        .args(["--on-error", "null", "--errors"])
        .arg(&errors)
        .write_stdin(input.clone())
        .assert()
        .code(3);
    assert_eq!(refusing.requests().len(), 5, "each line sent once");

    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(custom_ids(&lines), names(0..5));
    for line in &lines {
        assert!(
            line["id"].as_str().unwrap().starts_with("batch_req_"),
            "{line}"
        );
        assert_eq!(line["error"], Value::Null, "{line}");
        let response = &line["response"];
        assert_eq!(response["status_code"], 400, "{line}");
        assert_eq!(response["request_id"], Value::Null, "{line}");
        assert_eq!(
            response["body"],
            serde_json::from_str::<Value>(refusal).unwrap(),
            "{line}"
        );
    }

    let letters_text = std::fs::read_to_string(&errors).unwrap();
    let letters = letters_in_file(&errors);
    assert_eq!(letters.len(), 5, "{letters_text}");
    for (n, request) in input.lines().enumerate() {
        assert!(
            letters_text.contains(&format!("{{\"record\":{request},")),
            "line {} is kept as it was: {letters_text}",
            n + 1
        );
    }
    for letter in &letters {
        assert_eq!(letter["status"], 400, "{letter}");
        assert_eq!(letter["file"], "<stdin>", "{letter}");
    }

    let healthy = quick_server();
    let again: String = letters
        .iter()
        .map(|letter| letter["record"].to_string() + "\n")
        .collect();
    let out = batch_run(&healthy).write_stdin(again).assert().success();
    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(custom_ids(&lines), names(0..5), "all answered this time");
    assert!(
        lines.iter().all(|l| l["response"]["status_code"] == 200),
        "{lines:#?}"
    );
    assert_eq!(healthy.requests().len(), 5);
}

/// A request that gets no answer within --timeout is written, under --on-error null, with no
/// response and an error whose code says why.
#[test]
fn an_unanswered_request_is_written_with_an_error_code() {
    let hanging = server(Behavior {
        hang: true,
        ..Behavior::default()
    });
    let out = batch_run(&hanging)
        .args(["--timeout", "200ms", "--retries", "0", "--on-error", "null"])
        .args(["--errors", "/dev/null"])
        .write_stdin(chat_lines(0..3))
        .assert()
        .code(3);
    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(custom_ids(&lines), names(0..3));
    for line in &lines {
        assert_eq!(line["response"], Value::Null, "{line}");
        assert_eq!(line["error"]["code"], "timeout", "{line}");
        let message = line["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("200ms"), "{line}");
    }
    assert_eq!(
        hanging.requests().len(),
        3,
        "each line sent once, not retried"
    );
}

/// Lines that are not requests (no custom_id, a body that is not an object, a url that is not
/// a path, a method other than POST) fail alone, each with a dead letter naming its problem,
/// and are never sent; the requests around them are answered, and the run exits 3.
#[test]
fn a_line_that_is_not_a_request_fails_alone() {
    let server = quick_server();
    let bad = [
        (
            format!(
                r#"{{"method": "POST", "url": "{CHAT}", "body": {}}}"#,
                chat_body(100)
            ),
            "the request has no \"custom_id\" string",
        ),
        (
            request_line("x1", CHAT, r#"[{"messages": []}]"#),
            "the request's \"body\" must be a JSON object",
        ),
        (
            request_line("x2", "http://x/y", &chat_body(102)),
            "the request's \"url\" must be a path such as \"/v1/chat/completions\"",
        ),
        (
            request_line("x3", CHAT, &chat_body(103)).replace("\"POST\"", "\"GET\""),
            "the request's \"method\" is \"GET\", not \"POST\"",
        ),
    ];
    let good = chat_lines(0..8);
    let mut good_lines = good.lines();
    let mut input = String::new();
    let mut bad_at = HashMap::new();
    for (line, (text, says)) in bad.iter().enumerate().map(|(i, b)| (3 * i + 2, b)) {
        input.push_str(good_lines.next().unwrap());
        input.push('\n');
        input.push_str(text);
        input.push('\n');
        input.push_str(good_lines.next().unwrap());
        input.push('\n');
        bad_at.insert(line as u64, (text, *says));
    }
    let out = batch_run(&server)
        .args(["--on-error", "skip"])
        .write_stdin(input)
        .assert()
        .code(3);

    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(custom_ids(&lines), names(0..8), "the requests are answered");
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(stderr.dead.len(), 4, "{stderr:#?}");
    for letter in &stderr.dead {
        let line = letter["line"].as_u64().unwrap();
        let (text, says) = bad_at
            .get(&line)
            .unwrap_or_else(|| panic!("a dead letter for line {line}: {letter}"));
        assert_eq!(letter["error"], *says, "{letter}");
        assert_eq!(
            letter["record"],
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert_eq!(letter["attempts"], 0, "{letter}");
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 8, "only the requests were sent");
    assert!(requests.iter().all(|r| r.path == CHAT));
    for request in &requests {
        let body = String::from_utf8_lossy(&request.body);
        assert!(
            !["hi 100", "hi 102", "hi 103", "\"messages\": []"]
                .iter()
                .any(|text| body.contains(text)),
            "{body}"
        );
    }
}

/// A custom_id used twice stops the run (exit 1) with one message naming both lines, in one
/// input or across two; the line that repeats it is never sent.
#[test]
fn a_custom_id_used_twice_stops_the_run_naming_both_lines() {
    let server = quick_server();
    let mut input = chat_lines(1..5);
    input.push_str(&request_line("r2", CHAT, &chat_body(99)));
    input.push('\n');
    input.push_str(&chat_lines(6..9));
    let out = batch_run(&server).write_stdin(input).assert().code(1);
    let stderr = Stderr::of(&out.get_output().stderr);
    let naming: Vec<&String> = stderr
        .messages
        .iter()
        .filter(|m| m.contains("custom_id"))
        .collect();
    assert_eq!(
        naming,
        [
            "abatch: <stdin>:5: custom_id \"r2\" is already used at <stdin>:2; each request of \
             an OpenAI batch file needs its own custom_id"
        ],
        "{stderr:#?}"
    );
    let requests = server.requests();
    assert!(requests.len() <= 4, "{} requests", requests.len());
    assert!(
        requests
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("hi 99")),
        "the repeated custom_id was sent"
    );
    let lines = json_lines(&out.get_output().stdout);
    let written = custom_ids(&lines);
    let unique: HashSet<&String> = written.iter().collect();
    assert_eq!(unique.len(), written.len(), "{written:?}");
    // Every record read before it has its line or its dead letter: none is dropped.
    assert_eq!(
        stderr.records_read(),
        lines.len() + stderr.dead.len(),
        "{stderr:#?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    std::fs::write(&first, chat_lines(0..3)).unwrap();
    let mut again = chat_lines(3..4);
    again.push_str(&request_line("r1", CHAT, &chat_body(98)));
    again.push('\n');
    std::fs::write(&second, again).unwrap();
    let other = quick_server();
    let out = batch_run(&other).arg(&first).arg(&second).assert().code(1);
    let stderr = Stderr::of(&out.get_output().stderr);
    let expected = format!(
        "abatch: {}:2: custom_id \"r1\" is already used at {}:2; each request of an OpenAI \
         batch file needs its own custom_id",
        second.display(),
        first.display()
    );
    assert!(stderr.messages.contains(&expected), "{stderr:#?}");
    assert!(
        other
            .requests()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("hi 98")),
        "the repeated custom_id was sent"
    );
}

/// --dry-run shows each request at the full URL it would go to, base plus the line's path (a
/// base ending in / too), with its body; nothing is sent.
#[test]
fn a_dry_run_shows_each_request_at_its_full_url() {
    let server = quick_server();
    let mut input = chat_lines(0..2);
    input.push_str(&request_line(
        "e",
        EMBEDDINGS,
        r#"{"model": "e", "input": ["x"]}"#,
    ));
    input.push('\n');
    for base in ["", "/"] {
        let out = abatch_at(&server, base)
            .args(["--api", "openai-batch", "--dry-run"])
            .write_stdin(input.clone())
            .assert()
            .success();
        let shown = json_lines(&out.get_output().stdout);
        let requests: Vec<Value> = input
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(shown.len(), requests.len(), "{base:?}: {shown:#?}");
        for request in &requests {
            let url = format!(
                "http://{}{}",
                server.addr(),
                request["url"].as_str().unwrap()
            );
            let found: Vec<&Value> = shown.iter().filter(|s| s["url"] == url).collect();
            assert!(
                found.iter().any(|s| s["body"] == request["body"]),
                "{base:?}: {request} not shown at {url}: {shown:#?}"
            );
            assert!(found.iter().all(|s| s["method"] == "POST"), "{found:?}");
        }
    }
    assert!(server.requests().is_empty(), "nothing sent");
}

/// An unordered run killed outright (SIGKILL) resumes with --resume -o FILE: the output ends
/// with each request's line exactly once, and the second run sends only the requests whose
/// custom_id the first run's output lacks.
#[test]
fn an_unordered_run_killed_outright_resumes_by_custom_id() {
    let slow = server(Behavior {
        latency: Some(Duration::from_millis(50)),
        latency_max: Some(Duration::from_millis(120)),
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("batch.jsonl");
    let text = chat_lines(0..300);
    std::fs::write(&input, &text).unwrap();
    let body_ids: HashMap<String, String> = text
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            (
                value["body"].to_string(),
                value["custom_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let out = dir.path().join("out.jsonl");
    let out_arg = out.to_string_lossy();
    let input_arg = input.to_string_lossy();

    let mut child = spawn_batch_run(&slow, &["-c", "4", "-q", "-o", &out_arg, &input_arg]);
    wait_for_lines(&out, 10);
    child.kill().unwrap();
    let status = exit_of(&mut child);
    assert_eq!(status.code(), None, "killed by a signal: {status:?}");
    let first = complete_lines(&out);
    let first_ids = custom_ids(&json_lines(first.as_bytes()));
    let first_set: HashSet<&String> = first_ids.iter().collect();
    assert_eq!(first_set.len(), first_ids.len(), "{first_ids:?}");
    assert!(
        first_ids.len() < 300,
        "the run was killed after {} lines",
        first_ids.len()
    );

    let healthy = quick_server();
    let resumed = batch_run(&healthy)
        .args(["--resume", "-o"])
        .arg(&out)
        .arg(&input)
        .assert()
        .success();
    let after = std::fs::read_to_string(&out).unwrap();
    assert!(
        after.starts_with(&first),
        "the first run's lines are kept as they were"
    );
    assert_eq!(
        custom_ids(&json_lines(after.as_bytes())),
        names(0..300),
        "each request's line once"
    );
    let mut sent: Vec<String> = healthy
        .requests()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body_ids[&body.to_string()].clone()
        })
        .collect();
    sent.sort();
    let missing: Vec<String> = names(0..300)
        .into_iter()
        .filter(|id| !first_set.contains(id))
        .collect();
    assert_eq!(
        sent, missing,
        "only the requests the output lacked were sent"
    );
    assert!(resumed.get_output().stdout.is_empty());
}
