//! Sends one batch as one HTTP exchange and checks the reply against the wire contract: a 2xx
//! answer holding a JSON array with exactly one result per record, in the same order.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{StatusCode, Url};
use serde_json::value::RawValue;

use crate::batch::Batch;
use crate::cli::Header;

/// Why one exchange failed. A type of its own, because what to do next depends on it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("HTTP {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("timed out after {} (--timeout)", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("cannot connect to {host}: {cause}")]
    Connect { host: String, cause: String },
    #[error("request failed: {0}")]
    Transport(String),
    #[error("invalid response: {0}")]
    Response(String),
}

pub struct Client {
    http: reqwest::Client,
    url: Url,
    /// host:port, for messages.
    endpoint: String,
    timeout: Duration,
}

/// How much of an error body a message quotes.
const QUOTED_BODY: usize = 200;
const MAX_REDIRECTS: usize = 10;

impl Client {
    pub fn new(url: Url, extra_headers: &[Header], timeout: Duration) -> anyhow::Result<Client> {
        let mut headers = HeaderMap::new();
        for header in extra_headers {
            headers.append(header.name.clone(), header.value.clone());
        }
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("abatch/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                // 301, 302 and 303 would turn the POST into a GET without its body: report
                // them rather than follow them.
                let keeps_method = matches!(attempt.status().as_u16(), 307 | 308);
                if keeps_method && attempt.previous().len() < MAX_REDIRECTS {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {}", root_cause(&e)))?;
        // host_str keeps the brackets of an IPv6 address.
        let host = url.host_str().unwrap_or_default().to_owned();
        let endpoint = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Ok(Client {
            http,
            url,
            endpoint,
            timeout,
        })
    }

    /// POSTs `batch` and returns one result per record, in record order.
    pub async fn send(&self, batch: &Batch) -> Result<Vec<Box<RawValue>>, Failure> {
        let response = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .body(body(batch))
            .send()
            .await
            .map_err(|e| self.failure(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::Status {
                status,
                body: self.describe(response).await,
            });
        }
        let body = response.bytes().await.map_err(|e| self.failure(&e))?;
        results(&body, batch.len())
    }

    /// What an unsuccessful answer says: where it redirects, or the start of its body.
    async fn describe(&self, mut response: reqwest::Response) -> String {
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok());
            return format!("redirects to {}", location.unwrap_or("nowhere"));
        }
        let mut body = Vec::new();
        while body.len() < QUOTED_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return format!("(body unreadable: {})", self.failure(&e)),
            }
        }
        quote(&body)
    }

    fn failure(&self, error: &reqwest::Error) -> Failure {
        if error.is_timeout() {
            Failure::Timeout(self.timeout)
        } else if error.is_connect() {
            Failure::Connect {
                host: self.endpoint.clone(),
                cause: root_cause(error),
            }
        } else {
            Failure::Transport(root_cause(error))
        }
    }
}

/// The request body: a JSON array of the records' texts, exactly as read.
fn body(batch: &Batch) -> Vec<u8> {
    let size = 2 + batch
        .records
        .iter()
        .map(|r| r.json.get().len() + 1)
        .sum::<usize>();
    let mut body = Vec::with_capacity(size);
    body.push(b'[');
    for (i, record) in batch.records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(record.json.get().as_bytes());
    }
    body.push(b']');
    body
}

/// The results in a 2xx body, which must be an array of `expected` JSON values.
fn results(body: &[u8], expected: usize) -> Result<Vec<Box<RawValue>>, Failure> {
    let results: Vec<Box<RawValue>> = serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_data() {
            "expected a JSON array of results"
        } else {
            "not valid JSON"
        };
        Failure::Response(format!("{what} ({e}); body: {}", quote(body)))
    })?;
    if results.len() != expected {
        return Err(Failure::Response(format!(
            "expected {expected} results (one per record), got {}",
            results.len()
        )));
    }
    Ok(results)
}

/// The start of a body, on one line, for a message.
fn quote(body: &[u8]) -> String {
    if body.iter().all(u8::is_ascii_whitespace) {
        return "(empty body)".into();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BODY)]);
    let mut quoted = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.len() > QUOTED_BODY {
        quoted.push_str(" …");
    }
    quoted
}

/// The innermost cause of an error: "Connection refused (os error 111)" rather than
/// "error sending request for url (...)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Location, Record};
    use std::sync::Arc;

    fn batch(texts: &[&str]) -> Batch {
        let records = texts
            .iter()
            .zip(1..)
            .map(|(text, line)| Record {
                json: RawValue::from_string((*text).to_owned()).unwrap(),
                at: Location {
                    source: Arc::from("t"),
                    line,
                },
            })
            .collect();
        Batch { records }
    }

    #[test]
    fn body_passes_records_through_untouched() {
        let b = batch(&[
            "1.0e+300",
            "{\"a\" : -0.0}",
            "12345678901234567890123",
            "\"\\u00e9\"",
        ]);
        assert_eq!(
            String::from_utf8(body(&b)).unwrap(),
            "[1.0e+300,{\"a\" : -0.0},12345678901234567890123,\"\\u00e9\"]"
        );
    }

    #[test]
    fn results_must_be_an_array_of_the_right_length() {
        assert_eq!(results(b"[1, {\"b\": 2}]", 2).unwrap().len(), 2);
        let wrong = results(b"[1]", 2).unwrap_err().to_string();
        assert_eq!(
            wrong,
            "invalid response: expected 2 results (one per record), got 1"
        );
        let object = results(b"{\"predictions\": []}", 2)
            .unwrap_err()
            .to_string();
        assert!(
            object.starts_with("invalid response: expected a JSON array of results"),
            "{object}"
        );
        let garbage = results(b"<html>oops</html>", 2).unwrap_err().to_string();
        assert!(
            garbage.starts_with("invalid response: not valid JSON"),
            "{garbage}"
        );
        assert!(garbage.ends_with("body: <html>oops</html>"), "{garbage}");
    }

    #[test]
    fn quotes_are_short_and_on_one_line() {
        assert_eq!(quote(b""), "(empty body)");
        assert_eq!(quote(b"line one\nline  two\n"), "line one line two");
        let long = quote(&[b'x'; 1000]);
        assert!(long.len() < 210 && long.ends_with(" …"));
    }
}
