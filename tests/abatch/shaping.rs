//! Request and response shaping: the generic flags, each --api preset against the mock's
//! version of that API, records passed through byte for byte, and records the shape cannot
//! send failing alone under the error policy.

use crate::common::*;

/// The mock, with abatch pointed at `path` on it.
fn at(server: &MockServer, path: &str) -> assert_cmd::Command {
    let mut cmd = abatch();
    cmd.arg("--url")
        .arg(format!("http://{}{path}", server.addr()));
    cmd
}

/// Runs `cmd` on `input`, expects it to stop with exit 1, and returns its one message.
fn aborted_with(cmd: &mut assert_cmd::Command, input: impl Into<Vec<u8>>) -> String {
    let out = cmd.write_stdin(input).assert().code(1);
    Stderr::of(&out.get_output().stderr).message().to_owned()
}

fn lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn body_of(server: &MockServer, n: usize) -> String {
    String::from_utf8_lossy(&server.requests()[n].body).into_owned()
}

const UNUSUAL: &str =
    r#"{"id":1,"text":"caf\u00e9","x":[1.0e+300,-0.0,123456789012345678901234567890]}"#;

#[test]
fn records_and_results_pass_through_byte_for_byte() {
    let server = quick_server();
    let out = abatch_to(&server)
        .args(["-q", "--ordered"])
        .write_stdin(format!("{UNUSUAL}\n"))
        .assert()
        .success();
    assert_eq!(body_of(&server, 0), format!("[{UNUSUAL}]"));
    assert_eq!(
        lines(&out.get_output().stdout),
        [format!("{{\"echo\":{UNUSUAL}}}")]
    );

    let server = quick_server();
    let out = at(&server, "/v1/models/m:predict")
        .args([
            "-q",
            "--api",
            "tfserving",
            "--input",
            "/x",
            "--merge",
            "pred",
        ])
        .write_stdin(format!("{UNUSUAL}\n"))
        .assert()
        .success();
    assert_eq!(
        body_of(&server, 0),
        r#"{"instances": [[1.0e+300,-0.0,123456789012345678901234567890]]}"#
    );
    assert_eq!(
        lines(&out.get_output().stdout),
        [
            r#"{"id":1,"text":"caf\u00e9","x":[1.0e+300,-0.0,123456789012345678901234567890],"pred":{"echo":[1.0e+300,-0.0,123456789012345678901234567890]}}"#
        ]
    );
}

#[test]
fn generic_flags_shape_the_body_and_find_the_results() {
    let server = quick_server();
    let out = at(&server, "/v1/models/m:predict")
        .args(["-q", "--ordered", "-b", "2", "-c", "1", "--input", "/text"])
        .args([
            "--template",
            r#"{"instances": $batch, "note": "$batch stays"}"#,
        ])
        .args(["--results", "/predictions", "--result", "/echo"])
        .write_stdin("{\"text\":\"a\"}\n{\"text\":\"b\"}\n{\"text\":\"c\"}\n")
        .assert()
        .success();
    assert_eq!(lines(&out.get_output().stdout), ["\"a\"", "\"b\"", "\"c\""]);
    assert_eq!(
        body_of(&server, 0).replace(' ', ""),
        r#"{"instances":["a","b"],"note":"$batchstays"}"#
    );
}

#[test]
fn a_record_the_shape_cannot_send_fails_alone() {
    let server = quick_server();
    let out = at(&server, "/v1/models/m:predict")
        .args([
            "--api",
            "tfserving",
            "--input",
            "/text",
            "--ordered",
            "--on-error",
            "null",
        ])
        .write_stdin("{\"text\":\"a\"}\n{\"other\":1}\n{\"text\":\"c\"}\n")
        .assert()
        .code(3);
    assert_eq!(
        lines(&out.get_output().stdout),
        ["{\"echo\":\"a\"}", "null", "{\"echo\":\"c\"}"]
    );
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(stderr.dead.len(), 1);
    assert_eq!(stderr.dead[0]["line"], 2);
    assert_eq!(stderr.dead[0]["attempts"], 0);
    assert_eq!(stderr.dead[0]["error"], "the record has no /text (--input)");
    assert_eq!(
        server.requests().len(),
        2,
        "the good records on either side were sent"
    );

    // Under the default policy the run stops, naming the line.
    let message = aborted_with(
        abatch_to(&server).args(["--merge", "p"]),
        "{\"a\":1}\n[1]\n",
    );
    assert!(
        message.ends_with("line 2 of <stdin>: --merge needs each record to be a JSON object"),
        "{message}"
    );
}

#[test]
fn an_answer_without_the_results_is_a_failure_naming_the_batch() {
    let server = quick_server();
    let message = aborted_with(
        abatch_to(&server).args(["--results", "/predictions", "--retries", "0"]),
        records(0..3),
    );
    assert!(
        message.ends_with(
            "batch of 3 records, lines 1-3 of <stdin>: invalid response: the answer has no \
             /predictions (--results); the answer itself is an array of 3: try --results ''; \
             body: [{\"echo\":{\"id\":0}},{\"echo\":{\"id\":1}},{\"echo\":{\"id\":2}}]"
        ),
        "{message}"
    );
}

#[test]
fn an_answer_of_the_wrong_shape_shows_its_start_and_the_results_to_try() {
    let results: Vec<String> = (0..32).map(|i| format!("{{\"label\":{i}}}")).collect();
    let answer = format!("{{\"model\":\"m\",\"results\":[{}]}}", results.join(","));
    let server = server(Behavior {
        reply: Some(answer.clone()),
        ..Behavior::default()
    });
    let message = aborted_with(abatch_to(&server).args(["-b", "32"]), records(0..32));
    let start: String = answer.chars().take(200).collect();
    assert!(
        message.ends_with(&format!(
            "invalid response: expected a JSON array of results, but the answer is an object; \
             its member /results is an array of 32: try --results /results; body: {start} …"
        )),
        "{message}"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "an answer of the wrong shape is not retried"
    );

    let out = abatch_to(&server)
        .args(["-b", "32", "--results", "/results", "--ordered", "-q"])
        .write_stdin(records(0..32))
        .assert()
        .success();
    assert_eq!(lines(&out.get_output().stdout), results);
    assert_eq!(sizes(&server), [32, 32]);
}

#[test]
fn tfserving_speaks_instances_and_predictions() {
    let server = quick_server();
    let out = at(&server, "/v1/models/iris:predict")
        .args(["-q", "--ordered", "--api", "tfserving"])
        .write_stdin("[5.1,3.5,1.4,0.2]\n[6.2,2.9,4.3,1.3]\n")
        .assert()
        .success();
    assert_eq!(
        body_of(&server, 0),
        r#"{"instances": [[5.1,3.5,1.4,0.2],[6.2,2.9,4.3,1.3]]}"#
    );
    assert_eq!(
        lines(&out.get_output().stdout),
        [
            r#"{"echo":[5.1,3.5,1.4,0.2]}"#,
            r#"{"echo":[6.2,2.9,4.3,1.3]}"#
        ]
    );
}

#[test]
fn v2_sends_one_tensor_and_splits_the_output_by_row() {
    let server = quick_server();
    let out = at(&server, "/v2/models/iris/infer")
        .args(["-q", "--ordered", "--api", "v2", "-b", "3"])
        .write_stdin("[5.1,3.5,1.4,0.2]\n[6.2,2.9,4.3,1.3]\n[7.7,3.0,6.1,2.3]\n")
        .assert()
        .success();
    assert_eq!(
        body_of(&server, 0),
        r#"{"inputs":[{"name":"input-0","shape":[3,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2,6.2,2.9,4.3,1.3,7.7,3.0,6.1,2.3]}]}"#
    );
    assert_eq!(
        lines(&out.get_output().stdout),
        [
            "[5.1,3.5,1.4,0.2]",
            "[6.2,2.9,4.3,1.3]",
            "[7.7,3.0,6.1,2.3]"
        ]
    );

    let out = at(&server, "/v2/models/iris/infer")
        .args([
            "-q",
            "--api",
            "v2",
            "--v2-input",
            "x",
            "--v2-datatype",
            "FP32",
            "--v2-output",
            "output-0",
        ])
        .write_stdin("1\n2\n")
        .assert()
        .success();
    assert_eq!(
        body_of(&server, 1),
        r#"{"inputs":[{"name":"x","shape":[2,1],"datatype":"FP32","data":[1,2]}]}"#
    );
    assert_eq!(lines(&out.get_output().stdout).len(), 2);

    let message = aborted_with(
        at(&server, "/v2/models/iris/infer").args(["--api", "v2", "-b", "2", "--retries", "0"]),
        "[1,2]\n[1,2,3]\n",
    );
    assert!(
        message.ends_with(
            "line 2 of <stdin>: the row has 3 values where the batch's first has 2 values \
             (--api v2 needs rows of equal length)"
        ),
        "{message}"
    );
}

#[test]
fn a_v2_row_of_another_length_fails_alone() {
    let server = quick_server();
    let out = at(&server, "/v2/models/iris/infer")
        .args(["--api", "v2", "-b", "4", "--ordered", "--on-error", "null"])
        .write_stdin("[1,2]\n[3,4]\n[3]\n[5,6]\n")
        .assert()
        .code(3);
    assert_eq!(
        lines(&out.get_output().stdout),
        ["[1,2]", "[3,4]", "null", "[5,6]"]
    );
    let stderr = Stderr::of(&out.get_output().stderr);
    assert_eq!(stderr.dead.len(), 1, "{stderr:#?}");
    assert_eq!(stderr.dead[0]["line"], 3);
    assert_eq!(
        stderr.dead[0]["error"],
        "the row has 1 value where the batch's first has 2 values (--api v2 needs rows of \
         equal length)"
    );
    // The rows on either side of it were sent, each run as a tensor of its own.
    let data: Vec<serde_json::Value> = server
        .requests()
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            body["inputs"][0]["data"].clone()
        })
        .collect();
    assert_eq!(
        data,
        [serde_json::json!([1, 2, 3, 4]), serde_json::json!([5, 6])]
    );
}

#[test]
fn openai_embeddings_are_placed_by_index() {
    let server = quick_server();
    let out = at(&server, "/v1/embeddings")
        .args([
            "-q",
            "--ordered",
            "--api",
            "openai-embeddings",
            "--model",
            "text-embedding-3-small",
        ])
        .write_stdin("\"first\"\n\"second\"\n\"third\"\n")
        .assert()
        .success();
    assert_eq!(
        body_of(&server, 0),
        r#"{"model":"text-embedding-3-small","input": ["first","second","third"]}"#
    );
    assert_eq!(
        lines(&out.get_output().stdout),
        [
            r#"{"echo":"first"}"#,
            r#"{"echo":"second"}"#,
            r#"{"echo":"third"}"#
        ],
        "the mock answers in reverse order; --index puts them back"
    );
}

#[test]
fn openai_completions_take_extra_fields_and_place_by_index() {
    let server = quick_server();
    let out = at(&server, "/v1/completions")
        .args([
            "-q",
            "--ordered",
            "--api",
            "openai-completions",
            "--model",
            "m",
        ])
        .args(["--set", "max_tokens=64", "--set", "stop=[\"\\n\"]"])
        .write_stdin("\"Once upon\"\n\"In a galaxy\"\n")
        .assert()
        .success();
    assert_eq!(
        body_of(&server, 0),
        r#"{"model":"m","max_tokens":64,"stop":["\n"],"prompt": ["Once upon","In a galaxy"]}"#
    );
    assert_eq!(
        lines(&out.get_output().stdout),
        ["\"Once upon\"", "\"In a galaxy\""]
    );
}

#[test]
fn openai_chat_sends_one_record_per_request() {
    let server = quick_server();
    let out = at(&server, "/v1/chat/completions")
        .args(["-q", "--ordered", "--api", "openai-chat", "--model", "m", "-c", "2"])
        .write_stdin("\"Hi\"\n{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief\"},{\"role\":\"user\",\"content\":\"Why?\"}]}\n")
        .assert()
        .success();
    let mut bodies: Vec<String> = (0..2).map(|n| body_of(&server, n)).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [
            r#"{"model":"m","messages": [{"role":"system","content":"Be brief"},{"role":"user","content":"Why?"}]}"#,
            r#"{"model":"m","messages": [{"role":"user","content":"Hi"}]}"#,
        ]
    );
    assert_eq!(
        lines(&out.get_output().stdout),
        [
            r#"{"echo":[{"role":"user","content":"Hi"}]}"#,
            r#"{"echo":[{"role":"system","content":"Be brief"},{"role":"user","content":"Why?"}]}"#
        ]
    );

    let message = aborted_with(
        at(&server, "/v1/chat/completions").args(["--api", "openai-chat", "--model", "m"]),
        "42\n",
    );
    assert!(
        message.contains("a chat record must be a string or an object with a \"messages\" array"),
        "{message}"
    );
}

#[test]
fn tei_and_ollama_embeddings() {
    let server = quick_server();
    let out = at(&server, "/embed")
        .args(["-q", "--ordered", "--api", "tei"])
        .write_stdin("\"a\"\n\"b\"\n")
        .assert()
        .success();
    assert_eq!(body_of(&server, 0), r#"{"inputs": ["a","b"]}"#);
    assert_eq!(
        lines(&out.get_output().stdout),
        [r#"{"echo":"a"}"#, r#"{"echo":"b"}"#]
    );

    let out = at(&server, "/api/embed")
        .args([
            "-q",
            "--ordered",
            "--api",
            "ollama-embed",
            "--model",
            "nomic-embed-text",
        ])
        .write_stdin("\"a\"\n\"b\"\n")
        .assert()
        .success();
    assert_eq!(
        body_of(&server, 1),
        r#"{"model":"nomic-embed-text","input": ["a","b"]}"#
    );
    assert_eq!(
        lines(&out.get_output().stdout),
        [r#"{"echo":"a"}"#, r#"{"echo":"b"}"#]
    );
}

#[test]
fn single_sends_each_record_as_the_body() {
    let server = quick_server();
    let out = at(&server, "/v1/models/m:predict")
        .args(["-q", "--ordered", "--single", "--input", "/q"])
        .args([
            "--template",
            r#"{"instances": [$record]}"#,
            "--result",
            "/predictions/0/echo",
        ])
        .write_stdin("{\"q\":\"x\"}\n{\"q\":\"y\"}\n")
        .assert()
        .success();
    let mut bodies: Vec<String> = (0..2).map(|n| body_of(&server, n)).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [r#"{"instances": ["x"]}"#, r#"{"instances": ["y"]}"#]
    );
    assert_eq!(lines(&out.get_output().stdout), ["\"x\"", "\"y\""]);
}

#[test]
fn bad_shapes_are_usage_errors() {
    let server = quick_server();
    for args in [
        &["--api", "openai-embeddings"][..],
        &["--template", r#"{"input": "$batch"}"#],
        &["--template", r#"{"input": $batch"#],
        &["--input", "text"],
        &["--set", "k=not json"],
        &["--single", "-b", "4"],
    ] {
        let out = abatch_to(&server)
            .args(args)
            .write_stdin("1\n")
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert!(server.requests().is_empty());
}
