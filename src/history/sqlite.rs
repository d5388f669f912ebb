//! The history's file: one SQLite database (WAL), its lock, what happens to a corrupt or unwritable
//! one, and the writer thread that batches changes and commits them at least every second.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{Access, HistoryError, Persistence, Record};
use crate::model::{Kind, ResourceKey};

/// The longest a change waits before it is committed.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// A batch this large is committed at once.
const MAX_BATCH: usize = 10_000;
/// Bumped when the tables change; an older file is migrated, a newer one refused. 2 added
/// `leak_sightings`.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    cloud TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    last_pass INTEGER NOT NULL,
    sightings INTEGER NOT NULL,
    leak_sightings INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    last_outcome TEXT,
    left_streak INTEGER NOT NULL,
    gone_since_ms INTEGER,
    PRIMARY KEY (cloud, kind, id)
);
";

/// What opening the file produced.
pub(super) struct Opened {
    /// For writing; `None` when opened read-only.
    pub connection: Option<Connection>,
    /// Held while the janitor runs; released when dropped.
    pub lock: Option<File>,
    pub pass: u64,
    pub records: HashMap<ResourceKey, Record>,
    /// Whether a JSON state file was imported into it already.
    pub imported: bool,
}

fn io_error(path: &Path, message: impl std::fmt::Display) -> HistoryError {
    HistoryError::Io {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// `NAME.lock` beside the file.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Who holds the lock: written into the lock file, shown to a second janitor.
fn holder_text() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "an unknown host".to_string());
    format!(
        "pid {} on {host}, since {}",
        std::process::id(),
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Takes the exclusive lock. `Ok(None)`: the lock file cannot be created (a read-only directory).
fn lock(path: &Path) -> Result<Option<File>, HistoryError> {
    let lock_file = lock_path(path);
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_file)
    {
        Ok(file) => file,
        Err(error) => {
            tracing::error!(file = %lock_file.display(), %error, "cannot create the history lock file");
            return Ok(None);
        }
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(HistoryError::Locked {
                path: path.to_path_buf(),
                holder: if holder.is_empty() {
                    "no holder recorded".to_string()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(TryLockError::Error(error)) => {
            return Err(io_error(&lock_file, format!("cannot lock: {error}")));
        }
    }
    // Best effort: the lock itself is what keeps a second janitor out; the text only names us.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = file.write_all(holder_text().as_bytes());
    let _ = file.sync_all();
    Ok(Some(file))
}

/// Opens the file for `access`. `Ok(None)`: there is no usable file (read-only: none yet;
/// exclusive: it cannot be written), so history stays in memory.
pub(super) fn open(path: &Path, access: Access) -> Result<Option<Opened>, HistoryError> {
    match access {
        Access::ReadOnly => {
            if !path.exists() {
                return Ok(None);
            }
            let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|error| io_error(path, error))?;
            load(&connection, path).map(|(pass, records, imported)| {
                Some(Opened {
                    connection: None,
                    lock: None,
                    pass,
                    records,
                    imported,
                })
            })
        }
        Access::Exclusive => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if let Err(error) = std::fs::create_dir_all(parent) {
                    tracing::error!(directory = %parent.display(), %error, "cannot create the history directory; history stays in memory");
                    return Ok(None);
                }
            }
            let Some(lock) = lock(path)? else {
                return Ok(None);
            };
            let connection = match prepare(path) {
                Ok(connection) => connection,
                Err(error) if is_corrupt(&error) => {
                    let aside = move_aside(path)?;
                    tracing::error!(
                        file = %path.display(),
                        moved_to = %aside.display(),
                        %error,
                        "the history file is corrupt: moved aside, starting a fresh one"
                    );
                    prepare(path).map_err(|error| io_error(path, error))?
                }
                Err(error) => {
                    tracing::error!(file = %path.display(), %error, "cannot open the history file for writing; history stays in memory");
                    return Ok(None);
                }
            };
            let (pass, records, imported) = load(&connection, path)?;
            Ok(Some(Opened {
                connection: Some(connection),
                lock: Some(lock),
                pass,
                records,
                imported,
            }))
        }
    }
}

/// Opens the database for writing, checks it and creates the tables.
fn prepare(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    // WAL: readers (`plan`, `history`) never block the writer. NORMAL: a commit survives the
    // process being killed; only a power loss may take the last transactions.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    let check: String = connection.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!("integrity check: {check}")),
        ));
    }
    connection.execute_batch(SCHEMA)?;
    let version: Option<String> = connection
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |row| {
            row.get(0)
        })
        .optional()?;
    match version.as_deref().map(str::parse::<i64>) {
        None => {
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                params![SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(Ok(SCHEMA_VERSION)) => {}
        Some(Ok(1)) => {
            // Version 1 had no `leak_sightings`: every resource starts at 0, as if never seen leaked.
            let transaction = connection.unchecked_transaction()?;
            transaction.execute_batch(
                "ALTER TABLE resources ADD COLUMN leak_sightings INTEGER NOT NULL DEFAULT 0",
            )?;
            transaction.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                params![SCHEMA_VERSION.to_string()],
            )?;
            transaction.commit()?;
        }
        Some(_) => {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!(
                    "schema version {version:?}, this janitor writes {SCHEMA_VERSION}"
                )),
            ))
        }
    }
    Ok(connection)
}

fn is_corrupt(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Renames the file (and its WAL and shared-memory files) to `NAME.corrupt-<timestamp>`.
fn move_aside(path: &Path) -> Result<PathBuf, HistoryError> {
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    let aside = with_suffix(&format!(".corrupt-{stamp}"));
    std::fs::rename(path, &aside)
        .map_err(|error| io_error(path, format!("cannot move a corrupt file aside: {error}")))?;
    for suffix in ["-wal", "-shm"] {
        let companion = with_suffix(suffix);
        if companion.exists() {
            let _ = std::fs::rename(&companion, with_suffix(&format!(".corrupt-{stamp}{suffix}")));
        }
    }
    Ok(aside)
}

/// A key as the table's primary key holds it.
fn storage_key(key: &ResourceKey) -> (String, &'static str, String) {
    (key.cloud.clone(), key.kind.as_str(), key.id.clone())
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

type Loaded = (u64, HashMap<ResourceKey, Record>, bool);

fn load(connection: &Connection, path: &Path) -> Result<Loaded, HistoryError> {
    let error = |error: rusqlite::Error| io_error(path, error);
    let meta = |key: &str| -> Result<Option<String>, HistoryError> {
        connection
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(error)
    };
    let pass = meta("pass")?.and_then(|p| p.parse().ok()).unwrap_or(0);
    let imported = meta("imported_state_file")?.is_some();
    // A file of schema version 1, opened read-only (and so not migrated), has no leak_sightings.
    let has_leak_sightings = connection
        .prepare("SELECT 1 FROM pragma_table_info('resources') WHERE name = 'leak_sightings'")
        .and_then(|mut statement| statement.exists([]))
        .map_err(error)?;
    let leak_sightings = if has_leak_sightings { "leak_sightings" } else { "0" };
    let mut statement = connection
        .prepare(&format!(
            "SELECT cloud, kind, id, name, first_seen_ms, last_seen_ms, last_pass, sightings, attempts,
                    last_error, last_outcome, left_streak, gone_since_ms, {leak_sightings} FROM resources"
        ))
        .map_err(error)?;
    let rows = statement
        .query_map([], |row| {
            let kind: String = row.get(1)?;
            let record = Record {
                name: row.get(3)?,
                first_seen: from_ms(row.get(4)?),
                last_seen: from_ms(row.get(5)?),
                last_pass: u64::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
                sightings: row.get(7)?,
                attempts: row.get(8)?,
                last_error: row.get(9)?,
                last_outcome: row.get(10)?,
                left_streak: row.get(11)?,
                gone_since: row.get::<_, Option<i64>>(12)?.map(from_ms),
                leak_sightings: row.get(13)?,
            };
            Ok((row.get::<_, String>(0)?, kind, row.get::<_, String>(2)?, record))
        })
        .map_err(error)?;
    let mut records = HashMap::new();
    for row in rows {
        let (cloud, kind, id, record) = row.map_err(error)?;
        // A kind this version does not know (written by a newer one) is skipped.
        if let Some(kind) = Kind::parse(&kind) {
            records.insert(ResourceKey::new(cloud, kind, id), record);
        }
    }
    Ok((pass, records, imported))
}

enum Message {
    Upsert(ResourceKey, Box<Record>),
    Remove(ResourceKey),
    Meta(String, String),
    /// Commit what is pending now.
    CommitSoon,
    /// Commit, then answer.
    Flush(mpsc::Sender<()>),
}

/// The writer thread's handle. Dropping the history store closes it, committing what is left.
pub struct Writer {
    sender: Option<mpsc::Sender<Message>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(super) fn start(
        connection: Connection,
        lock: Option<File>,
        path: PathBuf,
        persistence: Arc<Mutex<Persistence>>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || {
                // The lock lives as long as the writer: a second janitor stays out until it ends.
                let _lock = lock;
                write_loop(connection, &receiver, &path, &persistence);
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(error) => {
                tracing::error!(%error, "cannot start the history writer; history stays in memory");
                None
            }
        };
        Writer {
            sender: thread.as_ref().map(|_| sender),
            thread,
        }
    }

    fn send(&self, message: Message) {
        if let Some(sender) = &self.sender {
            // The thread only ends when the sender is dropped, so sending cannot fail while it runs.
            let _ = sender.send(message);
        }
    }

    pub(super) fn upsert(&self, key: &ResourceKey, record: &Record) {
        self.send(Message::Upsert(key.clone(), Box::new(record.clone())));
    }

    pub(super) fn remove(&self, key: &ResourceKey) {
        self.send(Message::Remove(key.clone()));
    }

    pub(super) fn set_meta(&self, key: &str, value: &str) {
        self.send(Message::Meta(key.to_string(), value.to_string()));
    }

    pub(super) fn commit_soon(&self) {
        self.send(Message::CommitSoon);
    }

    /// Waits until everything sent so far is committed (or failed).
    pub(super) fn flush(&self) {
        let (ack, done) = mpsc::channel();
        self.send(Message::Flush(ack));
        let _ = done.recv_timeout(Duration::from_secs(30));
    }

    /// Commits what is left and stops the thread.
    pub(super) fn close(mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_loop(
    mut connection: Connection,
    receiver: &mpsc::Receiver<Message>,
    path: &Path,
    persistence: &Mutex<Persistence>,
) {
    let mut pending: Vec<Message> = Vec::new();
    let mut deadline = Instant::now();
    loop {
        let message = if pending.is_empty() {
            match receiver.recv() {
                Ok(message) => message,
                Err(_) => break,
            }
        } else {
            match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    commit(&mut connection, &mut pending, path, persistence);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        if pending.is_empty() {
            deadline = Instant::now() + COMMIT_EVERY;
        }
        match message {
            Message::CommitSoon => commit(&mut connection, &mut pending, path, persistence),
            Message::Flush(ack) => {
                commit(&mut connection, &mut pending, path, persistence);
                let _ = ack.send(());
            }
            other => {
                pending.push(other);
                if pending.len() >= MAX_BATCH {
                    commit(&mut connection, &mut pending, path, persistence);
                }
            }
        }
    }
    commit(&mut connection, &mut pending, path, persistence);
}

/// Writes a batch in one transaction; the last change of a resource wins. A failure drops the
/// batch (the memory still has it) and says so until a later batch succeeds.
fn commit(
    connection: &mut Connection,
    pending: &mut Vec<Message>,
    path: &Path,
    persistence: &Mutex<Persistence>,
) {
    if pending.is_empty() {
        return;
    }
    let mut resources: BTreeMap<(String, &'static str, String), Option<Box<Record>>> = BTreeMap::new();
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    for message in pending.drain(..) {
        match message {
            Message::Upsert(key, record) => {
                resources.insert(storage_key(&key), Some(record));
            }
            Message::Remove(key) => {
                resources.insert(storage_key(&key), None);
            }
            Message::Meta(key, value) => {
                meta.insert(key, value);
            }
            Message::CommitSoon | Message::Flush(_) => {}
        }
    }
    let result = write(connection, &resources, &meta);
    let mut state = persistence.lock().unwrap_or_else(PoisonError::into_inner);
    match result {
        Ok(()) => {
            if !state.is_persistent() {
                tracing::info!(file = %path.display(), "history is written to disk again");
                *state = Persistence::Persistent(path.to_path_buf());
            }
        }
        Err(error) => {
            if state.is_persistent() {
                tracing::error!(file = %path.display(), %error, "cannot write the history; cleaning goes on, history is not being kept");
            }
            *state = Persistence::Failing {
                path: path.to_path_buf(),
                error: error.to_string(),
            };
        }
    }
}

fn write(
    connection: &mut Connection,
    resources: &BTreeMap<(String, &'static str, String), Option<Box<Record>>>,
    meta: &BTreeMap<String, String>,
) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    {
        let mut upsert = transaction.prepare_cached(
            "INSERT INTO resources (cloud, kind, id, name, first_seen_ms, last_seen_ms, last_pass,
                 sightings, attempts, last_error, last_outcome, left_streak, gone_since_ms, leak_sightings)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (cloud, kind, id) DO UPDATE SET name = ?4, first_seen_ms = ?5,
                 last_seen_ms = ?6, last_pass = ?7, sightings = ?8, attempts = ?9, last_error = ?10,
                 last_outcome = ?11, left_streak = ?12, gone_since_ms = ?13, leak_sightings = ?14",
        )?;
        let mut remove =
            transaction.prepare_cached("DELETE FROM resources WHERE cloud = ?1 AND kind = ?2 AND id = ?3")?;
        for ((cloud, kind, id), record) in resources {
            match record {
                Some(r) => {
                    upsert.execute(params![
                        cloud,
                        kind,
                        id,
                        r.name,
                        r.first_seen.timestamp_millis(),
                        r.last_seen.timestamp_millis(),
                        i64::try_from(r.last_pass).unwrap_or(i64::MAX),
                        r.sightings,
                        r.attempts,
                        r.last_error,
                        r.last_outcome,
                        r.left_streak,
                        r.gone_since.map(|g| g.timestamp_millis()),
                        r.leak_sightings,
                    ])?;
                }
                None => {
                    remove.execute(params![cloud, kind, id])?;
                }
            }
        }
        let mut set =
            transaction.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
        for (key, value) in meta {
            set.execute(params![key, value])?;
        }
    }
    transaction.commit()
}
