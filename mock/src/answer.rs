//! How one request is answered: read, logged, rate-limited, queued for a worker, held, failed
//! or echoed, as the behaviour says.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use hyper::{Method, StatusCode};
use serde_json::value::RawValue;

use crate::apis::{Api, results};
use crate::behavior::{Script, hold_until};
use crate::compress;
use crate::{Behavior, Request, State, lock};

/// The request was answered by closing the connection (--drop-first).
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

/// Decrements a count (in flight, being served) however the request ends, hung requests
/// included.
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
    let epoch = *state.epoch.get_or_init(|| arrived);
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
    let compress = state
        .behavior
        .compress
        .filter(|encoding| encoding.accepted(&parts.headers));
    let idempotency_key = parts
        .headers
        .get("idempotency-key")
        .map(|key| String::from_utf8_lossy(key.as_bytes()).into_owned());
    let logged = state.options.record.then(|| {
        let mut log = lock(&state.log);
        log.push(Request {
            arrived,
            served: state.gate.is_none().then_some(arrived),
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body: body.clone(),
            records: count,
            in_flight,
        });
        state.logged.notify_all();
        log.len() - 1
    });

    // The rate limit stands in front of the workers, so a request beyond it does not queue.
    let verdict = state.limiter.as_ref().map(|l| l.admit(arrived, epoch));
    let mut outcome = match verdict {
        Some(verdict) if !verdict.allowed => Ok(failure(&state.behavior, 429)),
        _ => {
            let received = Received {
                number,
                arrived,
                epoch,
                api,
                body: &body,
                records,
                script: &script,
                logged,
            };
            serve(&state, received).await
        }
    };
    if let Ok(response) = &mut outcome {
        if let (Some(limiter), Some(verdict)) = (&state.limiter, &verdict) {
            limiter.write(verdict, Instant::now(), response.headers_mut());
        }
        for (name, value) in &script.headers {
            response.headers_mut().insert(name, value.clone());
        }
        if let Some(encoding) = compress {
            let body = std::mem::take(response.body_mut());
            let plain = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let (encoded, coding) = encoding.encode(&plain);
            *response.body_mut() = Full::new(encoded);
            response.headers_mut().insert(CONTENT_ENCODING, coding);
        }
    }
    if state.options.print {
        let key = idempotency_key
            .map(|key| format!(", idempotency-key={key}"))
            .unwrap_or_default();
        let answered = match &outcome {
            Ok(response) => response.status().as_u16().to_string(),
            Err(Dropped) => "dropped".to_owned(),
        };
        // Not eprintln!, which panics when stderr is closed.
        let _ = writeln!(
            std::io::stderr(),
            "{} {}: {count} records{key} -> {answered}",
            parts.method,
            parts.uri.path()
        );
    }
    outcome
}

/// A request as read, for the part of its answer that a worker gives.
struct Received<'a> {
    /// Its place in order of arrival, from 0.
    number: usize,
    arrived: Instant,
    /// When the first request arrived.
    epoch: Instant,
    api: Api,
    body: &'a [u8],
    records: Option<Vec<&'a RawValue>>,
    script: &'a Script,
    /// Where it is in the log, if the log is kept.
    logged: Option<usize>,
}

/// Waits for a worker, if --capacity limits them, then answers as the behaviour and the
/// request's script say.
async fn serve(
    state: &State,
    request: Received<'_>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let behavior = &state.behavior;
    let worker = match &state.gate {
        None => None,
        Some(gate) => match gate.enter(request.epoch.into()).await {
            Some(worker) => Some(worker),
            None => return Ok(failure(behavior, 429)),
        },
    };
    let served = match &worker {
        Some(worker) if worker.waited => Instant::now(),
        _ => request.arrived,
    };
    if let Some(entry) = request.logged {
        if let Some(logged) = lock(&state.log).get_mut(entry) {
            logged.served = Some(served);
        }
    }
    let serving = state.serving.fetch_add(1, Ordering::SeqCst) + 1;
    state.most_serving.fetch_max(serving, Ordering::SeqCst);
    let _serving = InFlight(&state.serving);

    if behavior.hang {
        std::future::pending::<()>().await;
    }
    if request.number < behavior.drop_first {
        return Err(Dropped);
    }
    let delay = request.script.delay.unwrap_or_else(|| behavior.delay());
    match served.checked_add(delay) {
        Some(deadline) if !delay.is_zero() => hold_until(deadline).await,
        Some(_) => {}
        // Beyond what a clock can hold: as good as never.
        None => std::future::pending().await,
    }
    let count = request.records.as_ref().map_or(0, Vec::len);
    let failing = match behavior.fail_first {
        Some(first) if request.number < first => Some(behavior.status.unwrap_or(503)),
        Some(_) => None,
        None => behavior.status,
    };
    let too_many = behavior.max_records.filter(|max| count > *max).map(|_| 413);
    if let Some(code) = request.script.status.or(too_many).or(failing) {
        return Ok(failure(behavior, code));
    }
    if let Some(size) = behavior.bomb {
        let mut bomb = hyper::Response::new(Full::new(compress::bomb(size)));
        let gzip = HeaderValue::from_static("gzip");
        bomb.headers_mut().insert(CONTENT_ENCODING, gzip);
        return Ok(bomb);
    }
    if let Some(body) = &behavior.reply {
        return Ok(reply(StatusCode::OK, body));
    }
    let Some(records) = request.records else {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            &format!("expected {}\n", request.api.expects()),
        ));
    };
    let keep = if behavior.wrong_count {
        count.saturating_sub(1)
    } else {
        count
    };
    let records = &records[..keep];
    let answer = match request.api {
        Api::Plain => results(records, behavior.pretty),
        api => api.answer(records, request.body),
    };
    Ok(reply(StatusCode::OK, &answer))
}

/// A failure with this status: --reply's body or a short one, a Location for a redirect, and
/// --retry-after's header.
fn failure(behavior: &Behavior, code: u16) -> hyper::Response<Full<Bytes>> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = behavior
        .reply
        .clone()
        .unwrap_or_else(|| format!("mock failure {code}\n"));
    let mut failure = reply(status, &body);
    if status.is_redirection() {
        let moved = HeaderValue::from_static("/moved");
        failure.headers_mut().insert(LOCATION, moved);
    }
    let retry_after = behavior.retry_after.as_deref().map(str::parse);
    if let Some(Ok(value)) = retry_after {
        failure.headers_mut().insert(RETRY_AFTER, value);
    }
    failure
}

fn reply(status: StatusCode, body: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
