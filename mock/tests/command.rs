//! The abatch-mock command: it runs a COMMAND against itself and exits with its status, says
//! in one line, with the status its help gives, why it could not serve or run one, and tells
//! a person what it answered.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

/// Runs abatch-mock with `args`, killing it if it runs longer than a test should.
fn mock(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_abatch-mock"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("abatch-mock starts");
    let deadline = Instant::now() + PATIENCE;
    while child
        .try_wait()
        .expect("abatch-mock can be waited for")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("abatch-mock {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("abatch-mock's output")
}

/// The one line abatch-mock wrote on stderr.
fn one_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn a_port_in_use_is_said_in_one_line_with_status_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = taken.local_addr().expect("its address").port();
    let out = mock(&["--port", &port.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line(&out);
    let expected = format!("abatch-mock: cannot listen on 127.0.0.1:{port}: ");
    assert!(line.starts_with(&expected), "{line}");
    assert!(line.contains("(os error "), "{line}");
}

#[test]
fn a_command_that_cannot_run_is_said_in_one_line_with_a_shell_s_status() {
    let out = mock(&["--", "/no/such/command"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let line = one_line(&out);
    assert!(
        line.starts_with("abatch-mock: cannot run /no/such/command: No such file or directory"),
        "{line}"
    );

    // A directory cannot be run.
    let folder = env!("CARGO_MANIFEST_DIR");
    let out = mock(&["--", folder]);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    let line = one_line(&out);
    assert!(
        line.starts_with(&format!("abatch-mock: cannot run {folder}: ")),
        "{line}"
    );
}

#[test]
fn a_command_s_status_is_the_mock_s() {
    let out = mock(&["--", "sh", "-c", "test -n \"$ABATCH_URL\" && exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let out = mock(&["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15), "{out:?}");
}

/// A serving abatch-mock, stopped when the test ends however it ends.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serving_prints_a_line_per_answer_with_its_idempotency_key_and_status() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_abatch-mock"))
        .args(["--port", "0", "--status", "503"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("abatch-mock starts");
    let stderr = child.stderr.take().expect("its stderr");
    let _serving = Serving(child);
    let (lines, said) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let next = || {
        said.recv_timeout(PATIENCE)
            .expect("a line from abatch-mock")
    };

    let listening = next();
    let addr = listening
        .strip_prefix("abatch-mock: listening on http://")
        .and_then(|rest| rest.split_once("/predict"))
        .map(|(addr, _)| addr.to_owned())
        .unwrap_or_else(|| panic!("{listening}"));
    let send = |extra: &str, body: &str| {
        let mut stream = std::net::TcpStream::connect(&addr).expect("the mock accepts");
        let request = format!(
            "POST /predict HTTP/1.1\r\nHost: mock\r\nContent-Length: {}\r\n\
             Connection: close\r\n{extra}\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("sent");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    };

    send("Idempotency-Key: batch-7\r\n", "[1,2]");
    assert_eq!(
        next(),
        "POST /predict: 2 records, idempotency-key=batch-7 -> 503"
    );
    send("", "[3]");
    assert_eq!(next(), "POST /predict: 1 records -> 503");
}
