//! Per-resource history across passes and restarts: first and last seen, consecutive sightings,
//! delete attempts, the last outcome and error, and how many passes in a row a resource was left.
//! History, never truth about the cloud: every pass discovers afresh.
//!
//! Reads come from memory, so a pass never waits on the disk. Every change is also sent to a writer
//! thread that commits to one SQLite file at least every second ([`sqlite`]), so `kill -9` loses at
//! most the last second. A missing file is created, a corrupt one moved aside, an unwritable one
//! leaves the janitor cleaning with history kept in memory only, said in the log, `/readyz` and
//! `cloud_janitor_history_persistent`. One janitor at a time: the file is locked while open.

mod legacy;
mod sqlite;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::events::{Event, EventSink};
use crate::model::ResourceKey;
use crate::outcome::Outcome;
use crate::report::PassReport;
use crate::selection::History;

pub use sqlite::Writer;

/// Why the history file cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Another janitor holds the file: two janitors must never clean the same clouds at once.
    #[error("history file {}: held by another janitor ({holder}); only one may run against it", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("history file {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
}

/// What the janitor remembers about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub name: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The pass that saw it last.
    pub last_pass: u64,
    /// Consecutive passes that saw it, up to `last_pass`.
    pub sightings: u32,
    /// Consecutive passes, up to `last_pass`, in which it looked leaked (see `LeakSign`).
    pub leak_sightings: u32,
    /// Delete calls made, over every pass.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The bounded label of the last outcome: `deleted`, `already_gone`, a leftover reason such as
    /// `in_use`, `skipped`, or `attempted` while a delete is under way.
    pub last_outcome: Option<String>,
    /// Passes in a row that ended with it selected and still there.
    pub left_streak: u32,
    /// When it was found gone (deleted, or no longer listed); pruned after the retention.
    pub gone_since: Option<DateTime<Utc>>,
}

impl Record {
    fn new(name: &str, now: DateTime<Utc>) -> Self {
        Record {
            name: name.to_string(),
            first_seen: now,
            last_seen: now,
            last_pass: 0,
            sightings: 0,
            leak_sightings: 0,
            attempts: 0,
            last_error: None,
            last_outcome: None,
            left_streak: 0,
            gone_since: None,
        }
    }
}

/// Whether history reaches the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persistence {
    /// Written to this file.
    Persistent(PathBuf),
    /// Kept in memory only; the text says why (none configured, the file could not be opened).
    MemoryOnly(String),
    /// The file was open but the last write failed (a full or read-only disk); retried each batch.
    Failing { path: PathBuf, error: String },
}

impl Persistence {
    /// True when history reaches the disk.
    pub fn is_persistent(&self) -> bool {
        matches!(self, Persistence::Persistent(_))
    }

    /// One line for logs and `/readyz`.
    pub fn describe(&self) -> String {
        match self {
            Persistence::Persistent(path) => format!("history kept in {}", path.display()),
            Persistence::MemoryOnly(why) => format!("history not persistent: {why}"),
            Persistence::Failing { path, error } => {
                format!(
                    "history not being kept: writing {} failed: {error}",
                    path.display()
                )
            }
        }
    }
}

/// One resource a pass listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting<'a> {
    pub key: &'a ResourceKey,
    pub name: &'a str,
    /// Whether it looked leaked (its provider gave it a `LeakSign`).
    pub looks_leaked: bool,
}

/// How the store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The one janitor that cleans: takes the lock, writes.
    Exclusive,
    /// Commands that only look (`plan`, `history`, `explain`): no lock, nothing written.
    ReadOnly,
}

#[derive(Debug, Default)]
struct Memory {
    pass: u64,
    records: HashMap<ResourceKey, Record>,
}

/// The history store. Cheap to share (`Arc`); it is also an [`EventSink`], so attempts and outcomes
/// are recorded as they happen.
pub struct HistoryStore {
    memory: Mutex<Memory>,
    writer: Option<Writer>,
    persistence: Arc<Mutex<Persistence>>,
    retention: Duration,
}

/// The default time a gone resource's record is kept.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl HistoryStore {
    /// History in memory only, for the life of the process; `why` says why, for the log.
    pub fn in_memory(why: impl Into<String>) -> Self {
        HistoryStore {
            memory: Mutex::new(Memory::default()),
            writer: None,
            persistence: Arc::new(Mutex::new(Persistence::MemoryOnly(why.into()))),
            retention: DEFAULT_RETENTION,
        }
    }

    /// Opens (or creates) the history file. With `legacy_json`, a JSON state file of earlier
    /// versions is imported once. A corrupt file is moved aside and a fresh one started; a file that
    /// cannot be written leaves history in memory only. Only a file held by another janitor is an
    /// error.
    pub fn open(
        path: &Path,
        access: Access,
        legacy_json: Option<&Path>,
        retention: Duration,
    ) -> Result<Self, HistoryError> {
        let opened = match sqlite::open(path, access)? {
            Some(opened) => opened,
            None if access == Access::ReadOnly => {
                let mut store = HistoryStore::in_memory("no history file yet");
                store.retention = retention;
                return Ok(store);
            }
            None => {
                let mut store = HistoryStore::in_memory(format!("{} cannot be written", path.display()));
                store.retention = retention;
                return Ok(store);
            }
        };
        let imported = opened.imported;
        let store = Self::from_opened(opened, path, access, retention);
        if let Some(json) = legacy_json.filter(|_| access == Access::Exclusive && !imported) {
            store.import(json);
        }
        Ok(store)
    }

    fn from_opened(opened: sqlite::Opened, path: &Path, access: Access, retention: Duration) -> Self {
        let persistence = Arc::new(Mutex::new(match access {
            Access::Exclusive => Persistence::Persistent(path.to_path_buf()),
            Access::ReadOnly => Persistence::MemoryOnly("opened read-only".into()),
        }));
        let writer = match (access, opened.connection) {
            (Access::Exclusive, Some(connection)) => Some(Writer::start(
                connection,
                opened.lock,
                path.to_path_buf(),
                persistence.clone(),
            )),
            _ => None,
        };
        HistoryStore {
            memory: Mutex::new(Memory {
                pass: opened.pass,
                records: opened.records,
            }),
            writer,
            persistence,
            retention,
        }
    }

    /// Imports a JSON state file of earlier versions, once: the file is marked imported.
    fn import(&self, json: &Path) {
        let imported = match legacy::read(json) {
            Ok(Some(imported)) => imported,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%error, "the JSON state file could not be imported; starting without it");
                return;
            }
        };
        tracing::info!(
            from = %json.display(),
            resources = imported.records.len(),
            "imported the JSON state file into the history; it is no longer read"
        );
        let mut memory = self.memory();
        memory.pass = memory.pass.max(imported.pass);
        for (key, record) in imported.records {
            self.persist(&key, &record);
            memory.records.insert(key, record);
        }
        if let Some(writer) = &self.writer {
            writer.set_meta("pass", &memory.pass.to_string());
            writer.set_meta("imported_state_file", &json.display().to_string());
        }
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a changed record to the store, if there is one. The channel is unbounded: this never
    /// waits on the disk, so it is called with the records locked, and nothing is copied twice.
    fn persist(&self, key: &ResourceKey, record: &Record) {
        if let Some(writer) = &self.writer {
            writer.upsert(key, record);
        }
    }

    /// Whether history reaches the disk right now.
    pub fn persistence(&self) -> Persistence {
        self.persistence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts a pass: returns its number.
    pub fn begin_pass(&self) -> u64 {
        let mut memory = self.memory();
        memory.pass += 1;
        if let Some(writer) = &self.writer {
            writer.set_meta("pass", &memory.pass.to_string());
        }
        memory.pass
    }

    /// Records what `pass` listed in the `clouds` that could be listed: seen resources are (re)seen,
    /// the others of those clouds are marked gone. A resource seen again after it was gone starts a
    /// new record: an id can be reused (Proxmox vmids are), and an old first sighting must never make
    /// a new resource look older than it is. Whether each looked leaked is counted the same way:
    /// passes in a row.
    pub fn record_sightings(
        &self,
        pass: u64,
        clouds: &HashSet<String>,
        seen: &[Sighting<'_>],
        now: DateTime<Utc>,
    ) {
        let mut memory = self.memory();
        let seen_keys: HashSet<&ResourceKey> = seen.iter().map(|sighting| sighting.key).collect();
        for (key, record) in memory.records.iter_mut() {
            if clouds.contains(&key.cloud) && !seen_keys.contains(key) && record.gone_since.is_none() {
                record.gone_since = Some(now);
                record.sightings = 0;
                record.leak_sightings = 0;
                self.persist(key, record);
            }
        }
        for Sighting {
            key,
            name,
            looks_leaked,
        } in seen
        {
            let record = memory
                .records
                .entry((*key).clone())
                .or_insert_with(|| Record::new(name, now));
            if record.gone_since.is_some() {
                *record = Record::new(name, now);
            }
            let in_a_row = record.last_pass + 1 == pass;
            record.sightings = if in_a_row { record.sightings + 1 } else { 1 };
            record.leak_sightings = match (looks_leaked, in_a_row) {
                (false, _) => 0,
                (true, true) => record.leak_sightings + 1,
                (true, false) => 1,
            };
            record.last_pass = pass;
            record.last_seen = now;
            record.name = name.to_string();
            self.persist(key, record);
        }
    }

    /// What selection needs to know of a resource.
    pub fn history(&self, key: &ResourceKey) -> Option<History> {
        self.memory().records.get(key).map(|r| History {
            first_seen: r.first_seen,
            sightings: r.sightings,
            leak_sightings: r.leak_sightings,
        })
    }

    /// The whole record of a resource.
    pub fn record(&self, key: &ResourceKey) -> Option<Record> {
        self.memory().records.get(key).cloned()
    }

    /// Every record, filtered by cloud when given, what has been left longest first.
    pub fn records(&self, cloud: Option<&str>) -> Vec<(ResourceKey, Record)> {
        let mut records: Vec<(ResourceKey, Record)> = self
            .memory()
            .records
            .iter()
            .filter(|(key, _)| cloud.is_none_or(|c| key.cloud == c))
            .map(|(key, record)| (key.clone(), record.clone()))
            .collect();
        records.sort_by(|(a_key, a), (b_key, b)| {
            b.left_streak
                .cmp(&a.left_streak)
                .then(a.first_seen.cmp(&b.first_seen))
                .then(a_key.cmp(b_key))
        });
        records
    }

    /// Applies a pass's report: leftovers extend their streak (the report then says "left in N
    /// passes"), everything else ends it. Returns nothing; the report's items are updated in place.
    pub fn record_report(&self, report: &mut PassReport, now: DateTime<Utc>) {
        let mut memory = self.memory();
        for item in report.items.iter_mut() {
            let Some(record) = memory.records.get_mut(&item.key) else {
                continue;
            };
            if item.born.is_none() {
                // A resource without a creation time (a Proxmox guest without meta ctime) is as old
                // as the janitor's first sighting of it.
                item.born = Some(record.first_seen);
            }
            match &item.status {
                Outcome::Left(reason) => {
                    record.left_streak += 1;
                    record.last_outcome = Some(reason.label().to_string());
                    record.last_error = Some(reason.to_string());
                    item.passes_left = record.left_streak;
                }
                outcome => {
                    record.left_streak = 0;
                    record.last_outcome = Some(outcome.label().to_string());
                    if outcome.is_gone() {
                        record.gone_since.get_or_insert(now);
                    }
                }
            }
            self.persist(&item.key, record);
        }
        drop(memory);
        if let Some(writer) = &self.writer {
            writer.commit_soon();
        }
    }

    /// Forgets resources gone for longer than the retention.
    pub fn prune(&self, now: DateTime<Utc>) {
        let retention = chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        let mut memory = self.memory();
        let expired: Vec<ResourceKey> = memory
            .records
            .iter()
            .filter(|(_, r)| r.gone_since.is_some_and(|gone| now - gone > retention))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            memory.records.remove(key);
        }
        drop(memory);
        if let Some(writer) = &self.writer {
            for key in &expired {
                writer.remove(key);
            }
        }
    }

    /// Resources left in at least `passes` passes in a row, per cloud.
    pub fn stuck(&self, passes: u32) -> HashMap<String, i64> {
        let mut counts = HashMap::new();
        for (key, record) in self.memory().records.iter() {
            if record.left_streak >= passes && record.gone_since.is_none() {
                *counts.entry(key.cloud.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// Waits until everything recorded so far is on disk (or failed to get there).
    pub fn flush(&self) {
        if let Some(writer) = &self.writer {
            writer.flush();
        }
    }

    fn update(&self, key: &ResourceKey, change: impl FnOnce(&mut Record)) {
        let mut memory = self.memory();
        let Some(record) = memory.records.get_mut(key) else {
            return;
        };
        change(record);
        let record = record.clone();
        drop(memory);
        self.persist(key, &record);
    }
}

impl Drop for HistoryStore {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.close();
        }
    }
}

/// Attempts, errors and outcomes are recorded as they happen, so a killed pass keeps them.
impl EventSink for HistoryStore {
    fn on_event(&self, event: &Event) {
        match event {
            Event::Attempted { key, .. } => self.update(key, |record| {
                record.attempts += 1;
                record.last_outcome = Some("attempted".into());
            }),
            Event::Requeued { key, error, .. } | Event::Retrying { key, error, .. } => {
                let error = error.clone();
                self.update(key, |record| record.last_error = Some(error));
            }
            Event::ConcurrencyChanged { .. } => {}
            Event::Finished { key, outcome, .. } => {
                let now = Utc::now();
                self.update(key, |record| match outcome {
                    Outcome::Left(reason) => {
                        record.last_outcome = Some(reason.label().to_string());
                        record.last_error = Some(reason.to_string());
                    }
                    outcome => {
                        record.last_outcome = Some(outcome.label().to_string());
                        if outcome.is_gone() {
                            record.gone_since.get_or_insert(now);
                        }
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
