//! How one request is answered: read, logged, held, failed or echoed as the behaviour says.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, StatusCode};

use crate::apis::{Api, results};
use crate::behavior::{Script, hold_until};
use crate::{Request, State, lock};

/// The request was answered by closing the connection (--drop-first).
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

/// Decrements the in-flight count however the request ends, hung requests included.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) async fn answer(
    state: Arc<State>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let number = state.arrived.fetch_add(1, Ordering::SeqCst);
    let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&state.in_flight);
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST a JSON array of records\n",
        ));
    }
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "unreadable body\n")),
    };
    let api = Api::of(parts.uri.path());
    let records = api.inputs(&body);
    let count = records.as_ref().map_or(0, Vec::len);
    let script = records.as_deref().map(Script::of).unwrap_or_default();
    if state.options.print {
        eprintln!("{} {}: {count} records", parts.method, parts.uri.path());
    }
    if state.options.record {
        let mut log = lock(&state.log);
        log.push(Request {
            arrived,
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body: body.clone(),
            records: count,
            in_flight,
        });
        state.logged.notify_all();
    }

    let behavior = &state.behavior;
    if behavior.hang {
        std::future::pending::<()>().await;
    }
    if number < behavior.drop_first {
        return Err(Dropped);
    }
    let delay = script.delay.unwrap_or_else(|| behavior.delay());
    match arrived.checked_add(delay) {
        Some(deadline) if !delay.is_zero() => hold_until(deadline).await,
        Some(_) => {}
        // Beyond what a clock can hold: as good as never.
        None => std::future::pending().await,
    }
    let failing = match behavior.fail_first {
        Some(first) if number < first => Some(behavior.status.unwrap_or(503)),
        Some(_) => None,
        None => behavior.status,
    };
    let too_many = behavior.max_records.filter(|max| count > *max).map(|_| 413);
    if let Some(code) = script.status.or(too_many).or(failing) {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = behavior
            .reply
            .clone()
            .unwrap_or_else(|| format!("mock failure {code}\n"));
        let mut failure = reply(status, &body);
        if status.is_redirection() {
            let moved = hyper::header::HeaderValue::from_static("/moved");
            failure.headers_mut().insert(hyper::header::LOCATION, moved);
        }
        let retry_after = behavior.retry_after.as_deref().map(str::parse);
        if let Some(Ok(value)) = retry_after {
            failure
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, value);
        }
        return Ok(failure);
    }
    if let Some(body) = &behavior.reply {
        return Ok(reply(StatusCode::OK, body));
    }
    let Some(records) = records else {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            &format!("expected {}\n", api.expects()),
        ));
    };
    let keep = if behavior.wrong_count {
        count.saturating_sub(1)
    } else {
        count
    };
    let records = &records[..keep];
    let answer = match api {
        Api::Plain => results(records, behavior.pretty),
        _ => api.answer(records, &body),
    };
    Ok(reply(StatusCode::OK, &answer))
}

fn reply(status: StatusCode, body: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
