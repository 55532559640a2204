//! The mock server as a client sees it over a real socket: its workers, its rate limit, and
//! what its answers carry.

mod answers;
mod capacity;
mod ratelimit;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use abatch_mock::MockServer;

/// Long enough for a loaded machine; a test that needs it has already failed.
const PATIENCE: Duration = Duration::from_secs(30);

/// An answer as it came off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Names in lower case, as the server sent them.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// POSTs `body` to `path` with these extra headers, on a connection of its own, and reads the
/// whole answer.
fn post(server: &MockServer, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = TcpStream::connect(server.addr()).expect("the mock accepts");
    stream.set_read_timeout(Some(PATIENCE)).expect("a timeout");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("the request is sent");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("an answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn server(behavior: abatch_mock::Behavior) -> MockServer {
    MockServer::start(behavior).expect("mock server starts")
}
