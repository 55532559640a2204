//! What answers carry besides results: headers a record scripts, and token usage counted by
//! the rule apis.rs documents.

use abatch_mock::Behavior;

use crate::{post, server};

#[test]
fn a_record_scripts_its_answer_s_headers() {
    let server = server(Behavior::default());
    let scripted = r#"[{"id":1,"mock":{"headers":{"x-ratelimit-remaining-requests":"0",
        "x-ratelimit-reset-requests":"1s"},"retry_after":"1","status":429}},
        {"id":2,"mock":{"headers":{"x-ratelimit-remaining-requests":"9"},"retry_after":3}}]"#;
    let answer = post(&server, "/predict", &[], scripted);
    assert_eq!(answer.status, 429);
    // Where two records disagree, the first says.
    assert_eq!(answer.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(answer.header("x-ratelimit-reset-requests"), Some("1s"));
    assert_eq!(answer.header("retry-after"), Some("1"));

    let answer = post(
        &server,
        "/predict",
        &[],
        r#"[{"mock":{"headers":{"x-custom":"yes","bad name":"x"}}}]"#,
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-custom"), Some("yes"));
}

/// The prompt tokens apis.rs promises for a body.
fn prompt_tokens(body: &str) -> u64 {
    body.len().div_ceil(4) as u64
}

#[test]
fn openai_answers_count_tokens_in_usage() {
    let server = server(Behavior::default());

    let body = r#"{"model":"m","input":["a","bb"]}"#;
    let answer = post(&server, "/v1/embeddings", &[], body).json();
    let p = prompt_tokens(body);
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        answer["usage"],
        serde_json::json!({"prompt_tokens": p, "total_tokens": p})
    );

    let body = r#"{"model":"m","prompt":["a","b","c"]}"#;
    let answer = post(&server, "/v1/completions", &[], body).json();
    let p = prompt_tokens(body);
    assert_eq!(answer["choices"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        answer["usage"],
        serde_json::json!({"prompt_tokens": p, "completion_tokens": 3, "total_tokens": p + 3})
    );

    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let answer = post(&server, "/v1/chat/completions", &[], body).json();
    let p = prompt_tokens(body);
    assert_eq!(
        answer["usage"],
        serde_json::json!({"prompt_tokens": p, "completion_tokens": 1, "total_tokens": p + 1})
    );

    let body = r#"{"model":"m","input":["a"]}"#;
    let answer = post(&server, "/api/embed", &[], body).json();
    assert_eq!(answer["prompt_eval_count"], prompt_tokens(body));
}

#[test]
fn a_chat_with_its_answer_taken_away_has_no_choice_rather_than_a_crash() {
    let server = server(Behavior {
        wrong_count: true,
        ..Behavior::default()
    });
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let answer = post(&server, "/v1/chat/completions", &[], body).json();
    assert_eq!(answer["choices"], serde_json::json!([]));
    assert_eq!(answer["usage"]["completion_tokens"], 0);
}
