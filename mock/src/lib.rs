//! A scriptable mock inference endpoint: it answers a JSON array of records with one result
//! per record, misbehaves on request, and keeps a log of every request it saw.
//!
//! The same server backs abatch's tests, its benchmark and the `abatch-mock` command, so what
//! a person tries by hand is what the tests assert on.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

mod answer;
mod apis;
mod behavior;
mod capacity;
mod compress;
mod ratelimit;

use answer::answer;
pub use behavior::Behavior;
pub use capacity::Schedule;
pub use compress::Encoding;
pub use ratelimit::{RateLimit, RatelimitHeaders};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    /// When it arrived.
    pub arrived: Instant,
    /// When a worker took it: `arrived` without --capacity, later if it waited in line, and
    /// `None` while it waits or if it was refused (429 for capacity or rate limit).
    pub served: Option<Instant>,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How many records the body's array held (0 when the body was not an array).
    pub records: usize,
    /// Requests being handled when this one arrived, this one included, waiting in line or
    /// not.
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
    /// When the first request arrived, from which capacity schedules and rate-limit windows
    /// count.
    epoch: OnceLock<Instant>,
    /// The workers, when they are limited (--capacity).
    gate: Option<capacity::Gate>,
    limiter: Option<ratelimit::Limiter>,
    /// Requests a worker has taken and not yet answered, and the most there were at once.
    serving: AtomicUsize,
    most_serving: AtomicUsize,
    options: Options,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

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
            log: Mutex::new(Vec::new()),
            logged: Condvar::new(),
            in_flight: AtomicUsize::new(0),
            arrived: AtomicUsize::new(0),
            epoch: OnceLock::new(),
            gate: behavior
                .workers()
                .map(|workers| capacity::Gate::new(workers, behavior.capacity_429)),
            limiter: behavior
                .ratelimit
                .map(|limit| ratelimit::Limiter::new(limit, behavior.ratelimit_headers)),
            serving: AtomicUsize::new(0),
            most_serving: AtomicUsize::new(0),
            behavior,
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

    /// The largest number of requests that workers were answering at once: at most
    /// --capacity, where [`MockServer::max_in_flight`] counts those waiting in line too.
    pub fn max_served_at_once(&self) -> usize {
        self.state
            .most_serving
            .load(std::sync::atomic::Ordering::SeqCst)
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

#[cfg(test)]
mod tests {
    use super::*;
    use apis::results;
    use behavior::Script;

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
