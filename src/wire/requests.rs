//! OpenAI Batch API files (--api openai-batch): each input line is a whole request,
//! `{"custom_id", "method": "POST", "url": "/v1/...", "body": {...}}`, and each output line
//! follows the batch output format, `{"id", "custom_id", "response": {"status_code",
//! "request_id", "body"}, "error"}`.

use std::cell::Cell;
use std::fmt::Write as _;
use std::hash::Hasher;

use serde_json::value::RawValue;

use crate::wire::json::{self, Pointer};

/// A 64-bit hash of a custom_id, the same for every id in one run (two of 10 million ids
/// collide with a chance of about 3 in a million).
pub fn id_hash(id: &str) -> u64 {
    // SipHash with fixed keys.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(id.as_bytes());
    hasher.finish()
}

/// What a request line holds that abatch uses.
pub struct Request<'a> {
    /// The path the request goes to, under the base URL (-u).
    pub url: &'a str,
    pub body: &'a RawValue,
}

/// The request on `line`, or why it is not one (the message names the member at fault).
pub fn request(line: &RawValue) -> Result<Request<'_>, String> {
    let member = |name: &str| {
        Pointer::parse(&format!("/{name}"))
            .ok()
            .and_then(|pointer| pointer.find(line))
    };
    if !json::is_object(line) {
        return Err("an OpenAI batch request must be a JSON object".into());
    }
    member("custom_id")
        .and_then(string)
        .ok_or("the request has no \"custom_id\" string")?;
    let method = member("method").and_then(string);
    if method != Some("POST") {
        return Err(format!(
            "the request's \"method\" is {}, not \"POST\"",
            method.map_or_else(|| "missing".to_string(), |m| format!("{m:?}"))
        ));
    }
    let url = member("url")
        .and_then(string)
        .filter(|url| url.starts_with('/') && !url.starts_with("//"))
        .ok_or("the request's \"url\" must be a path such as \"/v1/chat/completions\"")?;
    if url.contains(['?', '#', ' ', '\\']) {
        return Err(format!("the request's \"url\" {url:?} is not a plain path"));
    }
    let body = member("body")
        .filter(|body| json::is_object(body))
        .ok_or("the request's \"body\" must be a JSON object")?;
    Ok(Request { url, body })
}

/// The custom_id of a request line, if it has one.
pub fn custom_id(line: &RawValue) -> Option<&str> {
    let pointer = Pointer::parse("/custom_id").ok()?;
    pointer.find(line).and_then(string)
}

/// A JSON string's text, unless it holds escapes (a custom_id or a path never needs one).
fn string(value: &RawValue) -> Option<&str> {
    let text = value.get().strip_prefix('"')?.strip_suffix('"')?;
    (!text.contains('\\')).then_some(text)
}

/// The `response` member for a 2xx answer: its status, the request id the server gave (the
/// x-request-id header, else the answer's own "id") and its body.
pub fn response(status: u16, request_id: Option<&str>, body: &RawValue) -> Box<RawValue> {
    let body_id = Pointer::parse("/id")
        .ok()
        .and_then(|pointer| pointer.find(body))
        .filter(|id| id.get().starts_with('"'))
        .map(|id| id.get().to_owned());
    let request_id = match request_id {
        Some(id) => quoted(id),
        None => body_id.unwrap_or_else(|| "null".into()),
    };
    raw(format!(
        r#"{{"status_code":{status},"request_id":{request_id},"body":{}}}"#,
        body.get()
    ))
}

/// How a request failed, for its output line.
pub enum Failed<'a> {
    /// The server answered with an error status: recorded as its response, as OpenAI does,
    /// with its body when it is JSON, else the start of it quoted, as a string.
    Answered {
        status: u16,
        json: Option<&'a RawValue>,
        quoted: &'a str,
    },
    /// No answer: `code` names the kind of failure.
    Unanswered { code: &'a str, message: &'a str },
}

/// Makes each output line's `id`: unique in the run, `batch_req_` then the run's random part
/// and a count.
#[derive(Debug)]
pub struct Ids {
    run: String,
    next: Cell<u64>,
}

impl Ids {
    pub fn new() -> Ids {
        Ids {
            run: format!("{:016x}", fastrand::u64(..)),
            next: Cell::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.next.get();
        self.next.set(n + 1);
        format!("\"batch_req_{}_{n}\"", self.run)
    }

    /// The output line for `request` (a request line), answered with `response` (see
    /// [`response`]).
    pub fn answered(&self, request: &RawValue, response: &RawValue) -> Box<RawValue> {
        self.line(request, response.get(), "null")
    }

    /// The output line for `request` (a request line, or any line) that got no answer.
    pub fn failed(&self, request: &RawValue, failed: &Failed) -> Box<RawValue> {
        match failed {
            Failed::Answered {
                status,
                json,
                quoted: start,
            } => {
                let body = json.map_or_else(|| quoted(start), |json| json.get().to_owned());
                let response =
                    format!(r#"{{"status_code":{status},"request_id":null,"body":{body}}}"#);
                self.line(request, &response, "null")
            }
            Failed::Unanswered { code, message } => {
                let error = format!(
                    r#"{{"code":{},"message":{}}}"#,
                    quoted(code),
                    quoted(message)
                );
                self.line(request, "null", &error)
            }
        }
    }

    fn line(&self, request: &RawValue, response: &str, error: &str) -> Box<RawValue> {
        let custom_id = custom_id(request).map_or_else(|| "null".to_string(), quoted);
        let mut line = String::with_capacity(response.len() + error.len() + 80);
        let _ = write!(
            line,
            r#"{{"id":{},"custom_id":{custom_id},"response":{response},"error":{error}}}"#,
            self.next()
        );
        raw(line)
    }
}

/// `text` as a JSON string.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "null".into())
}

/// JSON text made here, from JSON parts.
fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn a_request_line_is_read_and_checked() {
        let ok = line(
            r#"{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}"#,
        );
        let read = request(&ok).unwrap();
        assert_eq!(read.url, "/v1/chat/completions");
        assert_eq!(read.body.get(), r#"{"model": "m"}"#);
        for (text, says) in [
            (r#"[1]"#, "must be a JSON object"),
            (
                r#"{"method": "POST", "url": "/v1/x", "body": {}}"#,
                "no \"custom_id\"",
            ),
            (
                r#"{"custom_id": 7, "method": "POST", "url": "/v1/x", "body": {}}"#,
                "custom_id",
            ),
            (
                r#"{"custom_id": "a", "method": "GET", "url": "/v1/x", "body": {}}"#,
                "\"GET\", not",
            ),
            (
                r#"{"custom_id": "a", "url": "/v1/x", "body": {}}"#,
                "is missing, not",
            ),
            (
                r#"{"custom_id": "a", "method": "POST", "url": "http://evil/", "body": {}}"#,
                "a path",
            ),
            (
                r#"{"custom_id": "a", "method": "POST", "url": "//evil/x", "body": {}}"#,
                "a path",
            ),
            (
                r#"{"custom_id": "a", "method": "POST", "url": "/v1/x?a=b", "body": {}}"#,
                "plain path",
            ),
            (
                r#"{"custom_id": "a", "method": "POST", "url": "/v1/x", "body": [1]}"#,
                "\"body\"",
            ),
            (
                r#"{"custom_id": "a", "method": "POST", "url": "/v1/x"}"#,
                "\"body\"",
            ),
        ] {
            let error = request(&line(text)).err().unwrap_or_default();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn output_lines_follow_the_batch_output_format() {
        let ids = Ids::new();
        let request = line(r#"{"custom_id": "r\u00e9", "method": "POST"}"#);
        // An escaped custom_id is not read as text: such ids get null.
        let body = line(r#"{"id": "chatcmpl-1", "choices": []}"#);
        let answered = ids.answered(&request, &response(200, None, &body));
        let value: serde_json::Value = serde_json::from_str(answered.get()).unwrap();
        assert_eq!(value["response"]["status_code"], 200);
        assert_eq!(value["response"]["request_id"], "chatcmpl-1");
        assert_eq!(value["response"]["body"]["choices"], serde_json::json!([]));
        assert_eq!(value["error"], serde_json::Value::Null);
        assert!(value["id"].as_str().unwrap().starts_with("batch_req_"));

        let request = line(r#"{"custom_id": "r2"}"#);
        let refused = ids.failed(
            &request,
            &Failed::Answered {
                status: 400,
                json: Some(&line(r#"{"error": {"message": "bad"}}"#)),
                quoted: "{\"error\": ...",
            },
        );
        let value: serde_json::Value = serde_json::from_str(refused.get()).unwrap();
        assert_eq!(value["custom_id"], "r2");
        assert_eq!(value["response"]["status_code"], 400);
        assert_eq!(value["response"]["body"]["error"]["message"], "bad");
        let unanswered = ids.failed(
            &request,
            &Failed::Unanswered {
                code: "timeout",
                message: "timed out after 1s",
            },
        );
        let value: serde_json::Value = serde_json::from_str(unanswered.get()).unwrap();
        assert_eq!(value["response"], serde_json::Value::Null);
        assert_eq!(value["error"]["code"], "timeout");
        let first: serde_json::Value = serde_json::from_str(answered.get()).unwrap();
        assert_ne!(first["id"], value["id"]);
    }
}
