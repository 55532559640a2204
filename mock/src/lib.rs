//! A scriptable mock inference endpoint: it answers a JSON array of records with one result
//! per record, misbehaves on request, and keeps a log of every request it saw.
//!
//! The same server backs abatch's tests, its benchmark and the `abatch-mock` command, so what
//! a person tries by hand is what the tests assert on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap};
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

mod apis;
mod behavior;

use apis::{Api, results};
pub use behavior::Behavior;
use behavior::{Script, hold_until};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    /// When it arrived.
    pub arrived: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How many records the body's array held (0 when the body was not an array).
    pub records: usize,
    /// Requests being handled when this one arrived, this one included.
    pub in_flight: usize,
}

impl Request {
    /// The records of the body's array, as text (empty when the body was not an array).
    pub fn record_texts(&self) -> Vec<String> {
        serde_json::from_slice::<Vec<&RawValue>>(&self.body)
            .map(|records| records.iter().map(|r| r.get().to_owned()).collect())
            .unwrap_or_default()
    }
}

struct State {
    behavior: Behavior,
    log: Mutex<Vec<Request>>,
    logged: Condvar,
    in_flight: AtomicUsize,
    /// Requests that have arrived, for --fail-first and --drop-first.
    arrived: AtomicUsize,
    options: Options,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The request was answered by closing the connection (--drop-first).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

const LOCALHOST: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
const RECORD: Options = Options {
    record: true,
    print: false,
};

/// What the server keeps and tells about the requests it answers.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Keep every request, body included, for [`MockServer::requests`]. Off for long runs.
    pub record: bool,
    /// Print one line per request to stderr.
    pub print: bool,
}

/// A running server; it stops when dropped.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockServer {
    /// Starts a quiet server that records every request, on 127.0.0.1 at a port the OS chooses.
    pub fn start(behavior: Behavior) -> std::io::Result<MockServer> {
        MockServer::serve(LOCALHOST, behavior, RECORD, None)
    }

    /// Like [`MockServer::start`], but speaking HTTPS with this certificate chain and private
    /// key (PEM).
    pub fn start_tls(behavior: Behavior, cert: &str, key: &str) -> std::io::Result<MockServer> {
        MockServer::serve(LOCALHOST, behavior, RECORD, Some(tls_acceptor(cert, key)?))
    }

    /// Starts a server on `addr`.
    pub fn serve(
        addr: SocketAddr,
        behavior: Behavior,
        options: Options,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<MockServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            behavior,
            log: Mutex::new(Vec::new()),
            logged: Condvar::new(),
            in_flight: AtomicUsize::new(0),
            arrived: AtomicUsize::new(0),
            options,
            tls,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (shutdown, stop) = oneshot::channel();
        let served = state.clone();
        let thread = std::thread::Builder::new()
            .name("abatch-mock".into())
            .spawn(move || {
                runtime.block_on(accept(listener, served, stop));
                // Hanging requests never finish by themselves; do not wait for them.
                runtime.shutdown_background();
            })?;
        Ok(MockServer {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint to give abatch.
    pub fn url(&self) -> String {
        let scheme = if self.state.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/predict", self.addr)
    }

    /// Every request seen so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.log().clone()
    }

    /// The largest number of requests that were being handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.log().iter().map(|r| r.in_flight).max().unwrap_or(0)
    }

    /// Waits until at least `n` requests have arrived, or `limit` has passed; returns the log.
    pub fn wait_for_requests(&self, n: usize, limit: Duration) -> Vec<Request> {
        let deadline = Instant::now() + limit;
        let mut log = self.log();
        while log.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            log = match self.state.logged.wait_timeout(log, left) {
                Ok((log, _)) => log,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        log.clone()
    }

    fn log(&self) -> MutexGuard<'_, Vec<Request>> {
        lock(&self.state.log)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            match &state.tls {
                None => serve_connection(stream, state.clone()).await,
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        serve_connection(stream, state.clone()).await;
                    }
                }
            }
        });
    }
}

async fn serve_connection<IO>(io: IO, state: Arc<State>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| answer(state.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// A TLS acceptor for this certificate chain and private key (PEM).
fn tls_acceptor(cert: &str, key: &str) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| invalid(&e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Decrements the in-flight count however the request ends, hung requests included.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_takes_longest_delay_and_first_status() {
        let a = RawValue::from_string(r#"{"mock":{"delay_ms":5,"status":503}}"#.into()).unwrap();
        let b = RawValue::from_string(r#"{"mock":{"delay_ms":9,"status":500}}"#.into()).unwrap();
        let c = RawValue::from_string(r#""mock""#.into()).unwrap();
        let script = Script::of(&[&a, &b, &c]);
        assert_eq!(script.delay, Some(Duration::from_millis(9)));
        assert_eq!(script.status, Some(503));
    }

    #[test]
    fn results_echo_each_record_verbatim() {
        let a = RawValue::from_string("1.0e+300".into()).unwrap();
        let b = RawValue::from_string(r#"{"x": -0.0}"#.into()).unwrap();
        assert_eq!(
            results(&[&a, &b], false),
            "[{\"echo\":1.0e+300},{\"echo\":{\"x\": -0.0}}]\n"
        );
        let pretty: Vec<serde_json::Value> =
            serde_json::from_str(&results(&[&a, &b], true)).unwrap();
        assert_eq!(pretty.len(), 2);
    }

    #[test]
    fn random_latency_stays_in_range() {
        let behavior = Behavior {
            latency: Some(Duration::from_millis(2)),
            latency_max: Some(Duration::from_millis(4)),
            ..Behavior::default()
        };
        for _ in 0..1000 {
            let d = behavior.delay();
            assert!(
                d >= Duration::from_millis(2) && d <= Duration::from_millis(4),
                "{d:?}"
            );
        }
    }
}
