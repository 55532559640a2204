//! The result cache (--cache): an SQLite file that remembers each record's result, so that a
//! later run answers the records whose results it holds without sending them.
//!
//! A record's key is a 128-bit hash of the settings that decide its answer (the fingerprint
//! `config.rs` makes of the URL and the shaping flags) and of what is sent for it (see
//! [`Codec::sent`]): its text as read on the plain path, its --input part, its chat messages.
//! Results are kept as the JSON text the server answered, before --merge, which is applied
//! when lines are written.
//!
//! Records are looked up before batching, those read together in one read transaction
//! ([`Cache::recall`] sets [`Record::cache`]). The fresh results of each outcome are
//! remembered after it ([`Cache::remember`]) and committed within [`COMMIT_AFTER`], together
//! with those of the other outcomes of that time, sorted by key, in one short transaction.
//! One commit per batch would be simpler, but each new key lands on a page of its own in a
//! large table, and a commit writes every page it touched: at a few hundred thousand records
//! a second that is the run's whole CPU many times over (see the README's benchmark).
//!
//! In WAL mode with `synchronous=NORMAL`, a commit survives the process being killed; a power
//! cut may lose the last commits but leaves the file whole. A run killed (SIGKILL) loses at
//! most the results of its last [`COMMIT_AFTER`]; any other ending commits them all. Two runs
//! may share a file: a commit holds the lock for a moment, and a writer waits up to [`BUSY`]
//! for the other's.
//!
//! The cache only ever saves work: a result it cannot read is asked for again, and a write
//! that fails stops the remembering (with one warning), never the run.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use rusqlite::{CachedStatement, Connection, ErrorCode, OpenFlags, Transaction};
use rusqlite::{TransactionBehavior, params};
use serde_json::value::RawValue;
use tokio::time::Instant;
use xxhash_rust::xxh3::Xxh3Default;

use crate::flow::exchange::{Outcome, Part};
use crate::input::{Cached, Record};
use crate::report::{Metrics, say};
use crate::wire::Codec;

/// What `PRAGMA application_id` holds in an abatch cache: "abch".
const APPLICATION_ID: i32 = 0x6162_6368;
/// The layout of the file, in `PRAGMA user_version` (1: keys in a unique index of blobs).
const SCHEMA: i32 = 2;
/// How long a run waits for another to let go of the file before it gives up.
pub const BUSY: Duration = Duration::from_secs(10);
/// The longest a fresh result waits to be committed.
pub const COMMIT_AFTER: Duration = Duration::from_secs(1);
/// The most memory results waiting to be committed take (their text and a place in the
/// list of keys): a commit rewrites every page of the key index it touches, and with random
/// keys a commit of k results touches about k pages, so fewer and larger commits write less.
const WAITING_BYTES: usize = 16 << 20;
/// What a waiting result costs besides its text: its key and where its text is.
const WAITING_ENTRY: usize = std::mem::size_of::<([u8; 16], Range<usize>)>();
/// SQLite's page cache, in KiB (its default is 2 MiB): keys are random, so lookups and
/// inserts visit the pages of a large cache in no order, and a page not held is read again.
const PAGE_CACHE_KIB: u32 = 32 * 1024;

/// Results in a table that grows at its end (rows in the order they came), found through a
/// unique index of the first 64 bits of their keys (`id`). A new result appends a row and
/// adds a small index entry, where a table ordered by the random keys themselves would
/// rewrite a random page of every result (1M fresh results: 5.8 s of CPU against 8.6 s); an
/// index of integers is smaller and quicker to search than one of the 16-byte keys (about
/// 4.6 s against 5.3 s). The whole key is kept in the row: of two keys that share their first
/// 64 bits (among a million results, a chance of about 1 in 37 million), the second is not
/// stored (its record is sent each time), and a lookup never takes one's result for the
/// other's.
const CREATE: &str = "CREATE TABLE results (id INTEGER NOT NULL, key BLOB NOT NULL, \
                      result TEXT NOT NULL); CREATE UNIQUE INDEX results_by_id ON results (id)";
const FIND: &str = "SELECT key, result FROM results WHERE id = ?1";
const STORE: &str = "INSERT OR IGNORE INTO results (id, key, result) VALUES (?1, ?2, ?3)";

/// The column `id` of `key`: its first 64 bits.
fn id(key: &[u8; 16]) -> i64 {
    let mut first = [0; 8];
    first.copy_from_slice(&key[..8]);
    i64::from_le_bytes(first)
}

/// The cache a run uses, as the command line says.
pub struct Settings {
    pub path: PathBuf,
    /// Everything besides a record's own bytes that decides its answer, as one string.
    pub fingerprint: String,
    /// Remember fresh results (not with --no-cache-write, --cache-only or --dry-run).
    pub write: bool,
}

/// The open cache.
pub struct Cache<'a> {
    /// None when there is nothing to read: a file not yet made, in a run that makes none.
    connection: Option<Connection>,
    name: String,
    keys: Keys,
    codec: &'a Codec,
    metrics: &'a Metrics,
    /// Still remembering: not after a write failed.
    writing: Cell<bool>,
    /// Whether a failed read was told of.
    told_unreadable: Cell<bool>,
    /// Fresh results not yet committed.
    waiting: RefCell<Waiting>,
}

/// Fresh results not yet committed: their keys and where each one's text is in `text`, and
/// when the first came. One buffer for all their texts: no allocation per result.
#[derive(Default)]
struct Waiting {
    results: Vec<([u8; 16], Range<usize>)>,
    text: String,
    since: Option<Instant>,
}

impl Waiting {
    fn push(&mut self, key: [u8; 16], result: &str) {
        let start = self.text.len();
        self.text.push_str(result);
        self.results.push((key, start..self.text.len()));
    }

    /// The memory the waiting results take.
    fn bytes(&self) -> usize {
        self.text.len() + self.results.len() * WAITING_ENTRY
    }

    /// Writes the results in one transaction, in the order of the index (which touches each
    /// of its pages once): how many were written (a key already held is not written again).
    fn store(self, connection: &Connection) -> rusqlite::Result<usize> {
        let Waiting {
            mut results, text, ..
        } = self;
        results.sort_unstable_by_key(|(key, _)| id(key));
        let transaction = Transaction::new_unchecked(connection, TransactionBehavior::Immediate)?;
        let mut written = 0;
        {
            let mut store = transaction.prepare_cached(STORE)?;
            for (key, at) in &results {
                let result = text.get(at.clone()).unwrap_or_default();
                written += store.execute(params![id(key), &key[..], result])?;
            }
        }
        transaction.commit()?;
        Ok(written)
    }
}

/// The text of the result stored under `key`, found by `find` (the statement [`FIND`]).
fn lookup(find: &mut CachedStatement, key: &[u8; 16]) -> rusqlite::Result<Option<String>> {
    let mut rows = find.query([id(key)])?;
    while let Some(row) = rows.next()? {
        if row.get_ref(0)?.as_blob()? == key {
            return row.get(1).map(Some);
        }
    }
    Ok(None)
}

/// What an existing file holds.
#[derive(Debug, PartialEq, Eq)]
enum Holds {
    /// An abatch cache.
    Cache,
    /// Nothing yet: a new (or empty) SQLite database.
    Nothing,
}

/// Checks, before the run, that `path` is a cache abatch can use: an abatch cache, an empty
/// file, or (unless `must_exist`) a file not yet made in a directory that exists. The error
/// names the file and what to do.
pub fn check(path: &Path, must_exist: bool) -> Result<(), String> {
    let name = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(format!("--cache {name} is a directory; name a file")),
        Ok(_) => holds(&read_only(path)?, path).map(|_| ()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if must_exist {
                return Err(format!(
                    "--cache {name} does not exist; --cache-only and --no-cache-write only \
                     read a cache that an earlier run made"
                ));
            }
            let parent = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            match parent.is_dir() {
                true => Ok(()),
                false => Err(format!(
                    "cannot create --cache {name}: {} is not a directory",
                    parent.display()
                )),
            }
        }
        Err(e) => Err(format!("cannot read --cache {name}: {e}")),
    }
}

/// The file at `path`, opened only to read.
fn read_only(path: &Path) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
        .and_then(tuned)
        .map_err(|e| problem(path, &e))
}

/// `connection`, set to wait for another run and to hold more pages.
fn tuned(connection: Connection) -> rusqlite::Result<Connection> {
    connection.busy_timeout(BUSY)?;
    connection.execute_batch(&format!("PRAGMA cache_size = -{PAGE_CACHE_KIB}"))?;
    Ok(connection)
}

/// What the file of `connection` holds, or why it is no cache of ours.
fn holds(connection: &Connection, path: &Path) -> Result<Holds, String> {
    let pragma = |name: &str| {
        connection.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
    };
    let read = || -> rusqlite::Result<(i64, i64, i64)> {
        Ok((
            pragma("application_id")?,
            pragma("user_version")?,
            connection.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?,
        ))
    };
    let (id, version, tables) = read().map_err(|e| problem(path, &e))?;
    let name = path.display();
    match (id, version) {
        (id, version) if id == i64::from(APPLICATION_ID) && version == i64::from(SCHEMA) => {
            Ok(Holds::Cache)
        }
        (id, version) if id == i64::from(APPLICATION_ID) => Err(format!(
            "--cache {name} was made by {} abatch (layout {version}; this one knows {SCHEMA}): \
             use that version, or name another file",
            if version > i64::from(SCHEMA) {
                "a newer"
            } else {
                "an earlier"
            }
        )),
        (0, 0) if tables == 0 => Ok(Holds::Nothing),
        _ => Err(format!(
            "--cache {name} is an SQLite database, but not an abatch cache; name another file"
        )),
    }
}

/// What went wrong with the file at `path`, and what to do, in one line.
fn problem(path: &Path, error: &rusqlite::Error) -> String {
    let name = path.display();
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            format!(
                "--cache {name} is not an abatch cache (not an SQLite database); name another file"
            )
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "--cache {name} is locked: another program has held it for more than {}s; try \
             again once it lets go",
            BUSY.as_secs()
        ),
        _ => format!("cannot use --cache {name}: {error}"),
    }
}

impl<'a> Cache<'a> {
    /// Opens the cache `settings` name (making it, when the run writes to it), for records
    /// sent as `codec` says, counting in `metrics`.
    pub fn open(
        settings: &Settings,
        codec: &'a Codec,
        metrics: &'a Metrics,
    ) -> anyhow::Result<Cache<'a>> {
        let path = &settings.path;
        let connection = match (settings.write, path.exists()) {
            (true, _) => Some(Self::made(path)?),
            (false, true) => {
                let connection = read_only(path).map_err(|e| anyhow!(e))?;
                // A file with nothing in it yet has no table to read.
                match holds(&connection, path).map_err(|e| anyhow!(e))? {
                    Holds::Cache => Some(connection),
                    Holds::Nothing => None,
                }
            }
            (false, false) => None,
        };
        Ok(Cache {
            connection,
            name: path.display().to_string(),
            keys: Keys::new(&settings.fingerprint),
            codec,
            metrics,
            writing: Cell::new(settings.write),
            told_unreadable: Cell::new(false),
            waiting: RefCell::default(),
        })
    }

    /// The cache at `path`, opened to read and write, made if need be.
    fn made(path: &Path) -> anyhow::Result<Connection> {
        let fail = |e: rusqlite::Error| anyhow!(problem(path, &e));
        let connection = Connection::open(path).and_then(tuned).map_err(fail)?;
        // WAL: readers and a writer do not block each other, and a commit needs no sync.
        let _: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(fail)?;
        connection
            .execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(fail)?;
        if holds(&connection, path).map_err(|e| anyhow!(e))? == Holds::Cache {
            return Ok(connection);
        }
        // Another run may be making it too: look again and make it in one transaction.
        let made = Transaction::new_unchecked(&connection, TransactionBehavior::Immediate)
            .map_err(fail)?;
        if holds(&made, path).map_err(|e| anyhow!(e))? == Holds::Nothing {
            made.execute_batch(&format!(
                "{CREATE}; PRAGMA application_id = {APPLICATION_ID}; \
                 PRAGMA user_version = {SCHEMA};"
            ))
            .map_err(fail)?;
        }
        made.commit().map_err(fail)?;
        Ok(connection)
    }

    /// Looks each record up, in one read transaction: sets its key, and the result
    /// remembered for it if there is one. An invalid line is not looked up; a record the codec
    /// cannot send (it fails without being sent) gets no key, and nothing is remembered for it.
    pub fn recall(&self, records: &mut [anyhow::Result<Record>]) {
        let Some(connection) = &self.connection else {
            let valid = records.iter().flatten().filter(|r| r.invalid.is_none());
            return self.count(valid.count(), 0);
        };
        // One snapshot and one statement for them all: a transaction per lookup would cost
        // more than the lookup.
        let reading = connection
            .is_autocommit()
            .then(|| connection.unchecked_transaction().ok())
            .flatten();
        let mut find = connection
            .prepare_cached(FIND)
            .map_err(|e| self.unreadable(&e))
            .ok();
        let (mut misses, mut hits) = (0, 0);
        for record in records.iter_mut().flatten() {
            if record.invalid.is_some() {
                continue;
            }
            let Some(key) = self
                .codec
                .sent(&record.json)
                .map(|sent| self.keys.of(&sent))
            else {
                misses += 1;
                continue;
            };
            let result = find.as_mut().and_then(|find| self.find(find, &key));
            match result {
                Some(_) => hits += 1,
                None => misses += 1,
            }
            record.cache = Some(Cached { key, result });
        }
        drop(find);
        if let Some(reading) = reading {
            let _ = reading.finish();
        }
        self.count(misses, hits);
    }

    /// Counts lookups, in --stats.
    fn count(&self, misses: usize, hits: usize) {
        if let Some(counts) = &self.metrics.cache {
            Metrics::add(&counts.misses, misses);
            Metrics::add(&counts.hits, hits);
        }
    }

    /// The result remembered under `key`, if one is and it can be read.
    fn find(&self, find: &mut CachedStatement, key: &[u8; 16]) -> Option<Box<RawValue>> {
        match lookup(find, key) {
            Ok(text) => RawValue::from_string(text?).ok(),
            Err(e) => {
                self.unreadable(&e);
                None
            }
        }
    }

    /// Tells, once, that the cache cannot be read.
    fn unreadable(&self, error: &rusqlite::Error) {
        if !self.told_unreadable.replace(true) {
            say(format_args!(
                "warning: cannot read the cache {}: {error}; the records it cannot answer are \
                 sent",
                self.name
            ));
        }
    }

    /// Remembers the results of `outcome` the server gave (none from a failed batch, nor
    /// those the cache gave): they are committed within [`COMMIT_AFTER`], or at once when
    /// many are waiting.
    pub fn remember(&self, outcome: &Outcome) {
        if self.connection.is_none() || !self.writing.get() {
            return;
        }
        let mut waiting = self.waiting.borrow_mut();
        let mut at = 0;
        for part in &outcome.parts {
            let these = outcome.records.get(at..at + part.len()).unwrap_or_default();
            at += part.len();
            match part {
                Part::Answered { results, attempts } if *attempts > 0 => {
                    for (record, result) in these.iter().zip(results) {
                        if let Some(cached) = &record.cache {
                            waiting.push(cached.key, result.get());
                        }
                    }
                }
                _ => {}
            }
        }
        if waiting.results.is_empty() {
            return;
        }
        let since = *waiting.since.get_or_insert_with(Instant::now);
        let full = waiting.bytes() >= WAITING_BYTES;
        drop(waiting);
        if full || since.elapsed() >= COMMIT_AFTER {
            self.commit();
        }
    }

    /// When the results waiting must be committed, if some are.
    pub fn due(&self) -> Option<Instant> {
        Some(self.waiting.borrow().since? + COMMIT_AFTER)
    }

    /// Commits the results waiting, in one transaction, in the order of their keys (which
    /// touches each page once). A failure is told once, and nothing more is written.
    pub fn commit(&self) {
        let waiting = self.waiting.take();
        let Some(connection) = self.connection.as_ref().filter(|_| self.writing.get()) else {
            return;
        };
        if waiting.results.is_empty() {
            return;
        }
        match waiting.store(connection) {
            Ok(written) => {
                if let Some(counts) = &self.metrics.cache {
                    Metrics::add(&counts.written, written);
                }
            }
            Err(e) => {
                self.writing.set(false);
                say(format_args!(
                    "warning: cannot write to the cache {}: {e}; results from here on are \
                     not remembered",
                    self.name
                ));
            }
        }
    }
}

impl Drop for Cache<'_> {
    /// Whatever ends the run, what was answered is kept.
    fn drop(&mut self) {
        self.commit();
    }
}

/// Makes the keys: a 128-bit hash of the settings' fingerprint, then of what is sent for the
/// record.
///
/// xxh3-128, not a cryptographic hash: the keys stand for the user's own records in the
/// user's own file, so only an accidental collision matters, and among a billion records the
/// chance of one is about 10^-21. It takes tens of nanoseconds for a short record, where
/// blake3 takes several times as long, on every record a run reads. (A cache shared with
/// whoever chooses the records could be fed a crafted collision: keep one per trust.)
struct Keys {
    /// The hash's state after the fingerprint.
    settings: Xxh3Default,
}

impl Keys {
    fn new(fingerprint: &str) -> Keys {
        let mut settings = Xxh3Default::new();
        // Its length first, so that no fingerprint and record run into one another.
        settings.update(&(fingerprint.len() as u64).to_le_bytes());
        settings.update(fingerprint.as_bytes());
        Keys { settings }
    }

    /// The key of a record for which `sent` is sent, in pieces.
    fn of(&self, sent: &[&[u8]]) -> [u8; 16] {
        let mut hash = self.settings.clone();
        for piece in sent {
            hash.update(piece);
        }
        hash.digest128().to_le_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_the_settings_and_the_bytes_sent_only() {
        let a = Keys::new("settings a");
        let b = Keys::new("settings b");
        assert_eq!(a.of(&[b"{\"id\":1}"]), a.of(&[b"{\"id\"", b":1}"]));
        assert_ne!(a.of(&[b"{\"id\":1}"]), b.of(&[b"{\"id\":1}"]));
        assert_ne!(a.of(&[b"{\"id\":1}"]), a.of(&[b"{\"id\": 1}"]));
        // The fingerprint's length is hashed: its end cannot pass for a record's start.
        assert_ne!(Keys::new("ab").of(&[b"c"]), Keys::new("a").of(&[b"bc"]));
    }

    #[test]
    fn waiting_results_share_one_buffer_and_count_their_keys() {
        let mut waiting = Waiting::default();
        waiting.push([2; 16], r#"{"b":2}"#);
        waiting.push([1; 16], "1");
        assert_eq!(waiting.bytes(), 8 + 2 * WAITING_ENTRY);
        waiting.results.sort_unstable_by_key(|(key, _)| *key);
        let texts: Vec<&str> = waiting
            .results
            .iter()
            .map(|(_, at)| &waiting.text[at.clone()])
            .collect();
        assert_eq!(texts, ["1", r#"{"b":2}"#]);
        // Tiny results still fill it: memory is bounded by the count too.
        let mut tiny = Waiting::default();
        while tiny.bytes() < WAITING_BYTES {
            tiny.push([0; 16], "0");
        }
        assert!(tiny.results.len() < WAITING_BYTES / WAITING_ENTRY + 1);
    }

    #[test]
    fn a_key_that_shares_its_first_64_bits_with_one_held_is_not_taken_for_it() {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(CREATE).unwrap();
        let key = |first: u8, last: u8| {
            let mut key = [first; 16];
            key[15] = last;
            key
        };
        let mut waiting = Waiting::default();
        waiting.push(key(7, 1), "\"one\"");
        waiting.push(key(7, 2), "\"two\"");
        waiting.push(key(7, 1), "\"one\"");
        waiting.push(key(200, 1), "\"far\"");
        assert_eq!(
            waiting.store(&connection).unwrap(),
            2,
            "the first of each id"
        );
        let mut find = connection.prepare_cached(FIND).unwrap();
        let mut found = |key| lookup(&mut find, &key).unwrap();
        assert_eq!(found(key(7, 1)).as_deref(), Some("\"one\""));
        assert_eq!(found(key(7, 2)), None);
        assert_eq!(found(key(200, 1)).as_deref(), Some("\"far\""));
        assert_eq!(found(key(7, 3)), None);
    }

    #[test]
    fn files_that_are_no_cache_are_named_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "x".repeat(4096)).unwrap();
        let err = check(&text, false).unwrap_err();
        assert!(err.contains("notes.txt is not an abatch cache"), "{err}");
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = check(&other, false).unwrap_err();
        assert!(
            err.contains("other.db is an SQLite database, but not"),
            "{err}"
        );
        for (version, made_by) in [(1, "an earlier abatch (layout 1;"), (3, "a newer abatch")] {
            let other = dir.path().join(format!("layout-{version}.db"));
            Connection::open(&other)
                .unwrap()
                .execute_batch(&format!(
                    "CREATE TABLE results (key BLOB, result TEXT); \
                     PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {version};"
                ))
                .unwrap();
            let err = check(&other, false).unwrap_err();
            assert!(err.contains(made_by), "{err}");
        }
        let missing = dir.path().join("missing.db");
        assert!(check(&missing, false).is_ok());
        assert!(
            check(&missing, true)
                .unwrap_err()
                .contains("does not exist")
        );
        assert!(check(&dir.path().join("no/such.db"), false).is_err());
        assert!(
            check(dir.path(), false)
                .unwrap_err()
                .contains("is a directory")
        );
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, "").unwrap();
        assert!(check(&empty, false).is_ok());
    }
}
