//! Helpers shared by the tests: the command under test, records to feed it, and ways to read
//! what came out without sleeping for luck.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use abatch_mock::{Behavior, MockServer};
use assert_cmd::Command;

/// Long enough for a loaded machine; a test that needs it has already failed.
pub const PATIENCE: Duration = Duration::from_secs(30);

const PROXY_VARS: [&str; 6] = [
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];

/// abatch with nothing from the environment that could change where it connects.
pub fn abatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_abatch"));
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.env_remove("ABATCH_URL").timeout(PATIENCE);
    cmd
}

/// abatch pointed at `server`.
pub fn abatch_to(server: &MockServer) -> Command {
    let mut cmd = abatch();
    cmd.arg("--url").arg(server.url());
    cmd
}

/// abatch pointed at `server`, as a child process the test talks to while it runs.
pub fn spawn_to(server: &MockServer, args: &[&str]) -> Child {
    spawn_at(&server.url(), args)
}

/// abatch pointed at `url`, as a child process the test talks to while it runs.
pub fn spawn_at(url: &str, args: &[&str]) -> Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_abatch"));
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.env_remove("ABATCH_URL")
        .arg("--url")
        .arg(url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("abatch starts")
}

pub fn server(behavior: Behavior) -> MockServer {
    MockServer::start(behavior).expect("mock server starts")
}

pub fn quick_server() -> MockServer {
    server(Behavior::default())
}

/// Records `{"id":N}` for N in `ids`, one per line.
pub fn records(ids: impl IntoIterator<Item = usize>) -> String {
    ids.into_iter()
        .map(|id| format!("{{\"id\":{id}}}\n"))
        .collect()
}

/// Each line of `text`, parsed.
pub fn json_lines(text: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The ids echoed back in abatch's output, in output order.
pub fn echoed_ids(stdout: &[u8]) -> Vec<usize> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            value["echo"]["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("no echo.id in {line}")) as usize
        })
        .collect()
}

/// Lines of a child's stdout or stderr, delivered as they are written.
pub fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a child to exit, killing it if it outlives PATIENCE.
pub fn exit_of(child: &mut Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("child can be waited for") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("abatch did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
    }
    text
}

/// Batch sizes in order of arrival.
pub fn sizes(server: &MockServer) -> Vec<usize> {
    server.requests().iter().map(|r| r.records).collect()
}

/// What abatch wrote on stderr, taken apart: dead letters (JSON lines), messages, and the
/// closing summary line.
#[derive(Debug)]
pub struct Stderr {
    pub dead: Vec<serde_json::Value>,
    pub messages: Vec<String>,
    pub summary: String,
}

impl Stderr {
    pub fn of(stderr: &[u8]) -> Stderr {
        let text = String::from_utf8_lossy(stderr);
        let mut dead = Vec::new();
        let mut messages = Vec::new();
        for line in text.lines() {
            if line.starts_with('{') {
                dead.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")));
            } else {
                assert!(
                    line.starts_with("abatch: "),
                    "unexpected stderr line: {line}"
                );
                messages.push(line.to_owned());
            }
        }
        let summary = messages
            .pop()
            .filter(|last| last.contains(" read: "))
            .unwrap_or_else(|| panic!("no summary line at the end of: {text}"));
        Stderr {
            dead,
            messages,
            summary,
        }
    }

    /// How many records the summary says were read.
    pub fn records_read(&self) -> usize {
        records_read(&self.summary)
    }

    /// The one message before the summary.
    pub fn message(&self) -> &str {
        assert_eq!(self.messages.len(), 1, "{self:#?}");
        &self.messages[0]
    }
}

/// How many records a summary line ("abatch: N records read: ...") says were read.
pub fn records_read(summary: &str) -> usize {
    summary
        .strip_prefix("abatch: ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a summary line: {summary}"))
}

/// The dead letters among lines of text (the other lines are messages).
pub fn letters_in(lines: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<serde_json::Value> {
    lines
        .into_iter()
        .filter(|line| line.as_ref().starts_with('{'))
        .map(|line| {
            let line = line.as_ref();
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
        })
        .collect()
}

/// The dead letters in an --errors file.
pub fn letters_in_file(path: &std::path::Path) -> Vec<serde_json::Value> {
    letters_in(std::fs::read_to_string(path).unwrap().lines())
}

/// The ids of the records in dead letters, sorted.
pub fn dead_ids(letters: &[serde_json::Value]) -> Vec<usize> {
    let mut ids: Vec<usize> = letters
        .iter()
        .map(|l| l["record"]["id"].as_u64().unwrap() as usize)
        .collect();
    ids.sort_unstable();
    ids
}

/// A new pseudo-terminal `columns` wide: its leader (what a terminal emulator holds) and its
/// follower (what a program gets as its terminal).
pub fn pty(columns: u16) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut leader, mut follower) = (0, 0);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two new descriptors into the integers it is given.
    let opened = unsafe {
        libc::openpty(
            &mut leader,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(opened, 0, "a pseudo-terminal can be opened");
    // SAFETY: both descriptors were just opened and nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(leader), OwnedFd::from_raw_fd(follower)) }
}

/// What a program writes on the terminal whose leader is `leader`, as it comes.
pub fn screen_of(leader: std::os::fd::OwnedFd) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(leader);
        let mut buffer = [0u8; 4096];
        // Ends with EIO once the last holder of the follower exits.
        while let Ok(n @ 1..) = std::io::Read::read(&mut file, &mut buffer) {
            if tx
                .send(String::from_utf8_lossy(&buffer[..n]).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Runs `cmd` with its stderr on a pseudo-terminal `columns` wide; returns its exit status and
/// everything written there.
pub fn stderr_on_a_terminal(
    mut cmd: std::process::Command,
    columns: u16,
) -> (std::process::ExitStatus, String) {
    let (leader, follower) = pty(columns);
    let mut child = cmd
        .stderr(Stdio::from(follower))
        .spawn()
        .expect("abatch starts");
    // The command holds the follower too: let it go, so the leader sees the end.
    drop(cmd);
    let screen = screen_of(leader);
    let status = exit_of(&mut child);
    (status, screen.iter().collect())
}

/// abatch pointed at `path` on `server`, as an API's own path (/v1/embeddings, /api/embed).
pub fn abatch_at(server: &MockServer, path: &str) -> Command {
    let mut cmd = abatch();
    cmd.arg("--url")
        .arg(format!("http://{}{path}", server.addr()));
    cmd
}
