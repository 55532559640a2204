//! The transport, and only it: POSTs a body, and returns a 2xx answer's status and body (within
//! --max-response-bytes), or why the exchange failed, typed for the retry policy: the status
//! and Retry-After of a refusal, a timeout, a connection or TLS failure said in words. What
//! the body holds is the codec's business (see `wire`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use bytes::Bytes;
use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION,
};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::cli::{CaCerts, Header};
use encoding::Undecodable;
pub use told::{Exhausted, RetryAfter};

mod encoding;
mod told;
use crate::report::{QUOTED_BODY, quote};

/// Where and how requests go.
pub struct Settings {
    /// Replicas of one endpoint: each request goes to one of them.
    pub urls: Vec<Url>,
    pub timeout: Duration,
    pub headers: Vec<Header>,
    pub cacert: Option<CaCerts>,
    pub insecure: bool,
    pub max_response_bytes: usize,
    /// Keep an error answer's body whole when it is JSON (an OpenAI batch output line
    /// records it); else only the start quoted in messages is read.
    pub keep_error_bodies: bool,
}

/// Why one exchange failed. A type of its own, because what to do next depends on it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("HTTP {status}: {body}")]
    Status {
        status: StatusCode,
        /// The start of the body, quoted for messages.
        body: String,
        /// The body, when it is JSON of at most `KEPT_BODY` bytes (an OpenAI batch output
        /// line records it).
        json: Option<Box<RawValue>>,
        /// How long the server asked to wait before trying again.
        retry_after: Option<RetryAfter>,
    },
    #[error("timed out after {} (--timeout)", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("cannot connect to {host}: {cause}")]
    Connect { host: String, cause: String },
    /// TLS could not be set up: the server's certificate was refused, or the server does not
    /// speak TLS. No other attempt will do better.
    #[error("cannot connect to {host}: {cause}")]
    Certificate { host: String, cause: String },
    #[error("request failed: {0}")]
    Transport(String),
    /// A record (or the batch's records together) cannot be sent as --api or the shaping
    /// flags ask; nothing was sent.
    #[error("{0}")]
    Record(String),
    /// A 2xx answer that breaks the wire contract.
    #[error("invalid response: {problem}")]
    Response { status: StatusCode, problem: String },
    /// An input line that is not one JSON value; nothing was sent.
    #[error("{0}")]
    Line(String),
    /// --cache-only, and the cache holds no result for the record; nothing was sent.
    #[error("not in the cache (--cache-only)")]
    Uncached,
    /// The server asked to wait longer than --retry-max-wait before the next attempt.
    #[error(
        "{failure}; the server asked to wait {} (Retry-After: {}), longer than --retry-max-wait ({})",
        humantime::format_duration(std::time::Duration::from_secs(.asked.wait.as_secs())),
        .asked.header,
        humantime::format_duration(*.max_wait)
    )]
    WaitTooLong {
        failure: Box<Failure>,
        asked: RetryAfter,
        max_wait: Duration,
    },
    /// The batch took longer than --deadline, waits and retries included.
    #[error("no answer within --deadline ({}){}", humantime::format_duration(*.limit), match .last {
        Some(last) => format!("; the last attempt: {last}"),
        None => String::new(),
    })]
    Deadline {
        limit: Duration,
        /// How the last attempt that ended failed, if one did.
        last: Option<Box<Failure>>,
    },
}

impl Failure {
    /// The HTTP status when the server answered, else the kind of failure, as --stats counts
    /// them.
    pub fn status_or_kind(&self) -> Result<StatusCode, &'static str> {
        match self {
            Failure::Status { status, .. } | Failure::Response { status, .. } => Ok(*status),
            Failure::WaitTooLong { failure, .. } => failure.status_or_kind(),
            Failure::Deadline { .. } => Err("deadline"),
            Failure::Timeout(_) => Err("timeout"),
            Failure::Connect { .. } => Err("connect"),
            Failure::Certificate { .. } => Err("certificate"),
            Failure::Transport(_) | Failure::Record(_) | Failure::Line(_) | Failure::Uncached => {
                Err("transport")
            }
        }
    }

    /// The error answer this failure is or wraps, if the server answered.
    pub fn answer(&self) -> Option<&Failure> {
        match self {
            Failure::Status { .. } => Some(self),
            Failure::WaitTooLong { failure, .. } => failure.answer(),
            Failure::Deadline { last, .. } => last.as_deref().and_then(Failure::answer),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Failure::Status { status, .. } | Failure::Response { status, .. } => Some(*status),
            Failure::WaitTooLong { failure, .. } => failure.status(),
            Failure::Deadline { last, .. } => last.as_ref().and_then(|last| last.status()),
            _ => None,
        }
    }

    /// A refusal that is about the run, not its records (401, 403, 404, 405): what is
    /// likely wrong. No record will pass, so the run stops at once under every --on-error.
    pub fn fatal(&self) -> Option<&'static str> {
        let Failure::Status { status, .. } = self else {
            return None;
        };
        match status.as_u16() {
            401 => Some(
                "the server wants credentials: pass them with -H 'Authorization: Bearer ...' \
                 (or -H @FILE)",
            ),
            403 => Some(
                "the server refused these credentials: check the -H headers and what the key may do",
            ),
            404 => Some("nothing answers at this URL: check its path (and the model's name in it)"),
            405 => Some("this URL does not take POST: check its path"),
            _ => None,
        }
    }
}

/// A 2xx answer: its status and its body, whole and decompressed, and how many bytes it took
/// on the wire.
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub wire: usize,
    /// The x-request-id header's value, if the server sent one.
    pub request_id: Option<String>,
}

/// One exchange: its answer or why it failed, and whether the server's rate-limit headers
/// said that nothing is left until a reset (on any answer, 2xx or not).
pub struct Exchanged {
    pub answer: Result<Reply, Failure>,
    pub exhausted: Option<Exhausted>,
}

pub struct Client {
    http: reqwest::Client,
    /// The replicas of the endpoint, in the order given.
    endpoints: Vec<Endpoint>,
    timeout: Duration,
    max_response_bytes: usize,
    keep_error_bodies: bool,
    /// The headers every request carries, as --dry-run shows them: values given with -H are
    /// redacted.
    shown_headers: BTreeMap<String, String>,
}

/// One replica of the endpoint.
struct Endpoint {
    url: Url,
    /// The URL as messages and --dry-run show it, its password redacted.
    shown: String,
    /// host:port, for messages.
    host: String,
}

impl Endpoint {
    fn new(url: Url) -> Endpoint {
        let shown = redacted(&url);
        // host_str keeps the brackets of an IPv6 address.
        let host = url.host_str().unwrap_or_default().to_owned();
        let host = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Endpoint { url, shown, host }
    }

    /// The URL of a request to `path` under this one, if given.
    fn at(&self, path: Option<&str>) -> Url {
        under(&self.url, path)
    }

    fn failure(&self, timeout: Duration, error: &reqwest::Error) -> Failure {
        if error.is_timeout() {
            Failure::Timeout(timeout)
        } else if let Some(tls) = tls_error(error).filter(|_| error.is_connect()) {
            Failure::Certificate {
                cause: tls_refusal(tls, self.url.host_str().unwrap_or_default()),
                host: self.host.clone(),
            }
        } else if error.is_connect() {
            Failure::Connect {
                host: self.host.clone(),
                cause: root_cause(error),
            }
        } else {
            Failure::Transport(root_cause(error))
        }
    }
}

/// A request as --dry-run shows it.
#[derive(Serialize)]
struct Shown<'a> {
    method: &'static str,
    url: &'a str,
    headers: &'a BTreeMap<String, String>,
    body: &'a RawValue,
}

const USER_AGENT: &str = concat!("abatch/", env!("CARGO_PKG_VERSION"));

const MAX_REDIRECTS: usize = 10;
/// The most of an error answer's body kept whole.
const KEPT_BODY: usize = 16 << 10;
const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl Client {
    /// The client `http` describes: its URL, headers, timeouts, limits and trust.
    pub fn new(http: &Settings) -> anyhow::Result<Client> {
        let mut headers = HeaderMap::new();
        let mut shown_headers =
            BTreeMap::from([("user-agent".to_string(), USER_AGENT.to_string())]);
        for header in &http.headers {
            headers.append(header.name.clone(), header.value.clone());
            shown_headers.insert(header.name.to_string(), "(redacted)".into());
        }
        let defaults = [
            (CONTENT_TYPE, "application/json"),
            (ACCEPT_ENCODING, encoding::ACCEPTED),
        ];
        for (name, value) in defaults {
            if !headers.contains_key(&name) {
                shown_headers.insert(name.to_string(), value.into());
                headers.insert(name, HeaderValue::from_static(value));
            }
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
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
            .tls_danger_accept_invalid_certs(http.insecure);
        if let Some(ca) = &http.cacert {
            builder = builder.tls_certs_merge(ca.certs.clone());
        }
        let client = builder
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTP client: {}", root_cause(&e)))?;
        let endpoints: Vec<Endpoint> = http.urls.iter().cloned().map(Endpoint::new).collect();
        for endpoint in &endpoints {
            tracing::debug!("POST to {}", endpoint.shown);
        }
        Ok(Client {
            http: client,
            endpoints,
            timeout: http.timeout,
            max_response_bytes: http.max_response_bytes,
            keep_error_bodies: http.keep_error_bodies,
            shown_headers,
        })
    }

    /// The request that would carry `body` (with this Idempotency-Key, if any, to `path` under
    /// the URL, if given), as one JSON value: method, URL, headers (values given with -H
    /// redacted) and body.
    pub fn show(&self, body: &[u8], key: Option<&str>, path: Option<&str>) -> Box<RawValue> {
        // The body is made of JSON records, so it is JSON.
        let body = std::str::from_utf8(body)
            .ok()
            .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
            .unwrap_or(RawValue::NULL);
        let mut headers = self.shown_headers.clone();
        if let Some(key) = key {
            headers.insert(IDEMPOTENCY_KEY.into(), key.into());
        }
        // A dry run shows the first replica.
        // A dry run shows the first replica.
        let url = self
            .endpoints
            .first()
            .map_or_else(String::new, |e| redacted(&e.at(path)));
        let shown = Shown {
            method: "POST",
            url: &url,
            headers: &headers,
            body,
        };
        serde_json::value::to_raw_value(&shown).unwrap_or_else(|_| RawValue::NULL.to_owned())
    }

    /// How many replicas the endpoint has.
    pub fn replicas(&self) -> usize {
        self.endpoints.len()
    }

    /// host:port of replica `replica`, for messages.
    pub fn host(&self, replica: usize) -> &str {
        self.endpoints.get(replica).map_or("", |e| e.host.as_str())
    }

    /// Replica `replica`'s URL as messages show it, its password redacted.
    pub fn shown(&self, replica: usize) -> &str {
        self.endpoints.get(replica).map_or("", |e| e.shown.as_str())
    }

    /// POSTs `body` once to replica `replica` (with this Idempotency-Key, if any, to `path`
    /// under its URL, if given) and returns the 2xx answer, whole (within
    /// --max-response-bytes), and what the rate-limit headers said.
    pub async fn send(
        &self,
        replica: usize,
        body: Bytes,
        key: Option<&str>,
        path: Option<&str>,
    ) -> Exchanged {
        let unsent = |failure| Exchanged {
            answer: Err(failure),
            exhausted: None,
        };
        let Some(endpoint) = self.endpoints.get(replica) else {
            return unsent(Failure::Transport(format!("no replica {replica}")));
        };
        let mut request = self.http.post(endpoint.at(path)).timeout(self.timeout);
        if let Some(key) = key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) => return unsent(endpoint.failure(self.timeout, &e)),
        };
        let exhausted = told::exhausted(response.headers(), SystemTime::now());
        Exchanged {
            answer: self.answer(endpoint, response).await,
            exhausted,
        }
    }

    /// The 2xx answer, whole and decompressed (within --max-response-bytes), or the refusal.
    async fn answer(
        &self,
        endpoint: &Endpoint,
        mut response: reqwest::Response,
    ) -> Result<Reply, Failure> {
        let status = response.status();
        if !status.is_success() {
            let retry_after = told::retry_after(response.headers(), SystemTime::now());
            let (body, json) = self.describe(endpoint, response).await;
            return Err(Failure::Status {
                status,
                retry_after,
                body,
                json,
            });
        }
        let limit = self.max_response_bytes;
        let invalid = |problem| Failure::Response { status, problem };
        let too_large = || {
            invalid(format!(
                "the body is larger than --max-response-bytes ({})",
                bytesize::ByteSize(limit as u64)
            ))
        };
        let announced = response.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(too_large());
        }
        let coding = content_encoding(&response);
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|id| id.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::with_capacity(announced as usize);
        let failure = |e| endpoint.failure(self.timeout, &e);
        while let Some(chunk) = response.chunk().await.map_err(failure)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let wire = body.len();
        let body = encoding::decoded(coding.as_deref(), body, limit).map_err(|e| match e {
            Undecodable::TooLarge => invalid(format!(
                "the body decompresses to more than --max-response-bytes ({})",
                bytesize::ByteSize(limit as u64)
            )),
            Undecodable::Unknown(coding) => invalid(format!(
                "the body is compressed as {coding:?}, which abatch cannot read (it asks for {})",
                encoding::ACCEPTED
            )),
            Undecodable::Corrupt(cause) => invalid(format!(
                "the {} body cannot be decompressed: {cause}",
                coding.as_deref().unwrap_or("")
            )),
        })?;
        Ok(Reply {
            status,
            body,
            wire,
            request_id,
        })
    }

    /// What an unsuccessful answer says: where it redirects, or the start of its body; and
    /// the body itself when it is JSON of at most `KEPT_BODY` bytes.
    async fn describe(
        &self,
        endpoint: &Endpoint,
        mut response: reqwest::Response,
    ) -> (String, Option<Box<RawValue>>) {
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok());
            return (
                format!("redirects to {}", location.unwrap_or("nowhere")),
                None,
            );
        }
        let coding = content_encoding(&response);
        let kept = match self.keep_error_bodies {
            true => KEPT_BODY,
            false => QUOTED_BODY,
        };
        // Enough of a compressed body to hold the part kept.
        let enough = if coding.is_some() { 64 << 10 } else { kept + 1 };
        let mut body = Vec::new();
        while body.len() < enough {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    let failure = endpoint.failure(self.timeout, &e);
                    return (format!("(body unreadable: {failure})"), None);
                }
            }
        }
        let body = encoding::start(coding.as_deref(), body, kept + 1);
        let json = std::str::from_utf8(&body)
            .ok()
            .filter(|_| self.keep_error_bodies && body.len() <= KEPT_BODY)
            .and_then(|text| RawValue::from_string(text.to_owned()).ok());
        (quote(&body), json)
    }
}

/// How the answer's body is compressed, if it says.
fn content_encoding(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(CONTENT_ENCODING)?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// `base` with `path` (a plain absolute path, checked by the codec) added to its path, its
/// query kept: `https://x/openai?v=1` and `/v1/chat` make `https://x/openai/v1/chat?v=1`.
fn under(base: &Url, path: Option<&str>) -> Url {
    let mut url = base.clone();
    if let Some(path) = path {
        url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
    }
    url
}

/// `url` with its password, if any, replaced by ****, as header values are: the URL is a
/// secret's carrier too (http://user:password@host/).
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only a URL that cannot have a password refuses one, and this one has one.
        let _ = shown.set_password(Some("****"));
    }
    shown.into()
}

/// The TLS error somewhere in this chain of causes. An io::Error's source() skips the error
/// it wraps (it returns that error's own source), and rustls' error travels inside two of
/// them, so each io::Error is opened by hand.
fn tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let wrapped = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        cause = match wrapped {
            Some(inner) => Some(inner),
            None => error.source(),
        };
    }
    None
}

/// Why TLS could not be set up with `host`, in words (rustls says some of it only in its
/// Debug output). Every such failure would recur on another attempt.
fn tls_refusal(tls: &rustls::Error, host: &str) -> String {
    use rustls::CertificateError as Cert;
    let when = |time: rustls::pki_types::UnixTime| {
        let time = std::time::UNIX_EPOCH + Duration::from_secs(time.as_secs());
        humantime::format_rfc3339_seconds(time).to_string()
    };
    let yours = "the server's certificate";
    let cert = match tls {
        rustls::Error::InvalidCertificate(cert) => cert,
        // The first bytes back were not a TLS record: most likely an HTTP answer.
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            return "the server did not answer with TLS; is it plain http?".into();
        }
        other => return format!("TLS failed: {other}"),
    };
    match cert {
        Cert::UnknownIssuer => format!("{yours} is not signed by a trusted CA (--cacert adds one)"),
        Cert::Expired => format!("{yours} has expired"),
        Cert::ExpiredContext { not_after, .. } => {
            format!("{yours} expired on {}", when(*not_after))
        }
        Cert::NotValidYet => format!("{yours} is not valid yet (is this machine's clock right?)"),
        Cert::NotValidYetContext { not_before, .. } => format!(
            "{yours} is not valid until {} (is this machine's clock right?)",
            when(*not_before)
        ),
        Cert::NotValidForName => format!("{yours} is not valid for {host}"),
        Cert::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names: Vec<&str> = presented.iter().filter_map(|n| presented_name(n)).collect();
            match names[..] {
                [] => format!(
                    "{yours} is not valid for {}; it names no host",
                    expected.to_str()
                ),
                _ => format!(
                    "{yours} is not valid for {}; it names {}",
                    expected.to_str(),
                    names.join(", ")
                ),
            }
        }
        Cert::Revoked => format!("{yours} has been revoked"),
        Cert::BadSignature => format!("{yours} has a signature that does not verify"),
        Cert::BadEncoding => format!("{yours} is malformed"),
        Cert::InvalidPurpose | Cert::InvalidPurposeContext { .. } => {
            format!("{yours} is not meant for a TLS server (its extended key usage)")
        }
        Cert::UnsupportedSignatureAlgorithmContext { .. }
        | Cert::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            format!("{yours} is signed with an algorithm abatch does not support")
        }
        Cert::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(webpki::Error::CaUsedAsEndEntity) => format!(
                "{yours} is a CA certificate; --cacert needs the CA that issued the server's \
                 certificate, and the server a certificate of its own"
            ),
            Some(webpki::Error::EndEntityUsedAsCa) => {
                format!("{yours} was signed by a certificate that is not a CA certificate")
            }
            Some(other) => format!("{yours} was refused ({other:?})"),
            None => format!("{yours} was refused: {}", other.0),
        },
        other => format!("{yours} was refused: {other}"),
    }
}

/// A host name as webpki lists the names a certificate presents: `DnsName("example.com")`
/// or `IpAddress(10.0.0.1)`.
fn presented_name(text: &str) -> Option<&str> {
    let dns = text
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"));
    dns.or_else(|| {
        text.strip_prefix("IpAddress(")
            .and_then(|rest| rest.strip_suffix(')'))
    })
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

    #[test]
    fn a_path_goes_under_the_base_and_before_its_query() {
        let base = Url::parse("https://x/openai/?api-version=1").unwrap();
        assert_eq!(
            under(&base, Some("/v1/chat/completions")).as_str(),
            "https://x/openai/v1/chat/completions?api-version=1"
        );
        let root = Url::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(
            under(&root, Some("/v1/x")).as_str(),
            "http://127.0.0.1:8000/v1/x"
        );
        assert_eq!(under(&root, None), root);
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        let url = |text| Url::parse(text).unwrap();
        assert_eq!(
            redacted(&url("https://me:s3cret@host:8443/p?q=1")),
            "https://me:****@host:8443/p?q=1"
        );
        assert_eq!(redacted(&url("http://me@host/")), "http://me@host/");
        assert_eq!(redacted(&url("http://host/")), "http://host/");
    }

    #[test]
    fn presented_names_lose_their_library_wrapping() {
        assert_eq!(
            presented_name("DnsName(\"example.com\")"),
            Some("example.com")
        );
        assert_eq!(presented_name("IpAddress(10.0.0.1)"), Some("10.0.0.1"));
        assert_eq!(presented_name("DirectoryName"), None);
    }
}
