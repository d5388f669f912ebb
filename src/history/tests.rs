//! The history store against real files: restarts, the lock, corrupt and unwritable files, the
//! import of the JSON state file, retention, and writes that fail.

use std::collections::HashSet;

use chrono::{Duration as Age, Utc};

use super::*;
use crate::model::Kind;
use crate::outcome::LeftReason;
use crate::report::{CloudStatus, PassReport, ReportItem};

fn exclusive(path: &Path) -> HistoryStore {
    HistoryStore::open(path, Access::Exclusive, None, DEFAULT_RETENTION).unwrap()
}

fn disk() -> ResourceKey {
    ResourceKey::new("lab", Kind::Disk, "local:vm-9-disk-0")
}

fn lab() -> HashSet<String> {
    HashSet::from(["lab".to_string()])
}

/// A pass that saw `keys` in cloud `lab`.
fn sighting(store: &HistoryStore, keys: &[&ResourceKey], now: DateTime<Utc>) -> u64 {
    leak_sighting(store, keys, &[], now)
}

/// A pass that saw `keys` in cloud `lab`, those in `leaked` looking leaked.
fn leak_sighting(
    store: &HistoryStore,
    keys: &[&ResourceKey],
    leaked: &[&ResourceKey],
    now: DateTime<Utc>,
) -> u64 {
    let pass = store.begin_pass();
    let seen: Vec<Sighting> = keys
        .iter()
        .map(|key| Sighting {
            key,
            name: "vm-9-disk-0",
            looks_leaked: leaked.contains(key),
        })
        .collect();
    store.record_sightings(pass, &lab(), &seen, now);
    pass
}

fn report_left(key: &ResourceKey, reason: LeftReason) -> PassReport {
    PassReport {
        mode: crate::pass::Mode::Delete,
        pass: 0,
        started: Utc::now(),
        duration: std::time::Duration::ZERO,
        clouds: vec![CloudStatus {
            name: key.cloud.clone(),
            error: None,
        }],
        items: vec![ReportItem {
            key: key.clone(),
            name: String::new(),
            born: None,
            status: Outcome::Left(reason),
            requeues: 0,
            passes_left: 0,
            suspected_leak: None,
        }],
    }
}

#[test]
fn sightings_attempts_and_leftover_streaks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    // Times are kept to the millisecond.
    let t0 = DateTime::from_timestamp_millis((Utc::now() - Age::hours(2)).timestamp_millis()).unwrap();
    let store = exclusive(&path);
    assert_eq!(store.persistence(), Persistence::Persistent(path.clone()));
    sighting(&store, &[&disk()], t0);
    assert_eq!(store.history(&disk()).map(|h| h.sightings), Some(1));
    store.on_event(&Event::Attempted {
        key: disk(),
        attempt: 1,
    });
    let mut report = report_left(
        &disk(),
        LeftReason::Busy {
            state: "locked".into(),
        },
    );
    store.record_report(&mut report, t0);
    assert_eq!(report.items[0].passes_left, 1);
    assert_eq!(report.items[0].born, Some(t0), "age from the first sighting");
    drop(store);

    let store = exclusive(&path);
    sighting(&store, &[&disk()], t0 + Age::hours(1));
    assert_eq!(
        store.history(&disk()),
        Some(History {
            first_seen: t0,
            sightings: 2,
            leak_sightings: 0,
        })
    );
    let mut report = report_left(
        &disk(),
        LeftReason::Busy {
            state: "locked".into(),
        },
    );
    store.record_report(&mut report, t0 + Age::hours(1));
    assert_eq!(report.items[0].passes_left, 2, "counted across restarts");
    let record = store.record(&disk()).unwrap();
    assert_eq!(record.attempts, 1);
    assert_eq!(record.last_outcome.as_deref(), Some("busy"));
    assert_eq!(record.last_error.as_deref(), Some("busy: locked"));
    assert_eq!(record.name, "vm-9-disk-0");
}

#[test]
fn a_resource_not_listed_is_marked_gone_and_a_reused_id_starts_a_new_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = exclusive(&dir.path().join("history.db"));
    let t0 = Utc::now() - Age::days(3);
    sighting(&store, &[&disk()], t0);
    sighting(&store, &[&disk()], t0 + Age::hours(1));
    // Another cloud's pass leaves it alone; a pass of its own cloud that does not list it marks it gone.
    let pass = store.begin_pass();
    store.record_sightings(pass, &HashSet::from(["other".to_string()]), &[], t0);
    assert_eq!(store.record(&disk()).unwrap().gone_since, None);
    sighting(&store, &[], t0 + Age::hours(2));
    assert_eq!(
        store.record(&disk()).unwrap().gone_since,
        Some(t0 + Age::hours(2))
    );
    // The same id shows up again (a vmid reused): a new resource, first seen now.
    let later = t0 + Age::hours(3);
    sighting(&store, &[&disk()], later);
    assert_eq!(
        store.history(&disk()),
        Some(History {
            first_seen: later,
            sightings: 1,
            leak_sightings: 0,
        })
    );
}

#[test]
fn looking_leaked_is_counted_in_passes_in_a_row_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let t0 = Utc::now() - Age::days(1);
    let store = exclusive(&path);
    let leaks = |store: &HistoryStore| store.history(&disk()).map(|h| h.leak_sightings);
    leak_sighting(&store, &[&disk()], &[&disk()], t0);
    assert_eq!(leaks(&store), Some(1));
    leak_sighting(&store, &[&disk()], &[&disk()], t0 + Age::hours(1));
    assert_eq!(leaks(&store), Some(2));
    // A pass in which it looked in use starts the count again.
    leak_sighting(&store, &[&disk()], &[], t0 + Age::hours(2));
    assert_eq!(leaks(&store), Some(0));
    leak_sighting(&store, &[&disk()], &[&disk()], t0 + Age::hours(3));
    assert_eq!(leaks(&store), Some(1));
    // A pass that did not list its cloud breaks the row.
    store.begin_pass();
    leak_sighting(&store, &[&disk()], &[&disk()], t0 + Age::hours(4));
    assert_eq!(leaks(&store), Some(1));
    leak_sighting(&store, &[&disk()], &[&disk()], t0 + Age::hours(5));
    drop(store);
    let store = exclusive(&path);
    assert_eq!(leaks(&store), Some(2), "kept in the file");
}

#[test]
fn a_file_of_schema_version_1_is_read_and_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '1'), ('pass', '7');
                 CREATE TABLE resources (cloud TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
                     name TEXT NOT NULL, first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
                     last_pass INTEGER NOT NULL, sightings INTEGER NOT NULL, attempts INTEGER NOT NULL,
                     last_error TEXT, last_outcome TEXT, left_streak INTEGER NOT NULL,
                     gone_since_ms INTEGER, PRIMARY KEY (cloud, kind, id));
                 INSERT INTO resources VALUES ('lab', 'disk', 'local:vm-9-disk-0', 'vm-9-disk-0',
                     1700000000000, 1700000000000, 7, 3, 1, NULL, 'busy', 2, NULL);",
            )
            .unwrap();
    }
    let read_only = HistoryStore::open(&path, Access::ReadOnly, None, DEFAULT_RETENTION).unwrap();
    assert_eq!(
        read_only.record(&disk()).map(|r| (r.sightings, r.leak_sightings)),
        Some((3, 0))
    );
    drop(read_only);
    let store = exclusive(&path);
    leak_sighting(&store, &[&disk()], &[&disk()], Utc::now());
    let record = store.record(&disk()).unwrap();
    assert_eq!(
        (record.sightings, record.leak_sightings, record.left_streak),
        (4, 1, 2)
    );
    store.flush();
    drop(store);
    let version: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(version, "2");
}

#[test]
fn a_second_janitor_on_the_same_file_is_refused_with_the_holder_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let first = exclusive(&path);
    let error = HistoryStore::open(&path, Access::Exclusive, None, DEFAULT_RETENTION)
        .err()
        .unwrap();
    let HistoryError::Locked { holder, .. } = &error else {
        panic!("not a lock error: {error}");
    };
    assert!(
        holder.starts_with(&format!("pid {} on ", std::process::id())),
        "{holder}"
    );
    assert!(error.to_string().contains("held by another janitor"), "{error}");
    // A reader is not a janitor: it may look while the first one runs.
    let reader = HistoryStore::open(&path, Access::ReadOnly, None, DEFAULT_RETENTION).unwrap();
    assert_eq!(reader.records(None).len(), 0);
    drop(first);
    let again = HistoryStore::open(&path, Access::Exclusive, None, DEFAULT_RETENTION);
    assert!(again.is_ok(), "the lock goes with the first janitor");
}

#[test]
fn a_corrupt_file_is_moved_aside_and_a_fresh_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    std::fs::write(&path, b"this is not a database, it only has a database's name").unwrap();
    let store = exclusive(&path);
    assert_eq!(store.persistence(), Persistence::Persistent(path.clone()));
    sighting(&store, &[&disk()], Utc::now());
    store.flush();
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("history.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(dir.path().join(&aside[0])).unwrap(),
        b"this is not a database, it only has a database's name"
    );
    drop(store);
    assert_eq!(exclusive(&path).records(None).len(), 1, "the fresh file works");
}

#[test]
fn a_file_that_cannot_be_written_leaves_history_in_memory_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that cannot exist: its parent is a regular file (root can write anywhere else).
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let path = blocker.join("history.db");
    let store = exclusive(&path);
    let persistence = store.persistence();
    assert!(
        matches!(persistence, Persistence::MemoryOnly(_)),
        "{persistence:?}"
    );
    assert_eq!(
        persistence.describe(),
        format!("history not persistent: {} cannot be written", path.display())
    );
    // It still remembers, for the life of the process.
    sighting(&store, &[&disk()], Utc::now());
    assert_eq!(store.history(&disk()).map(|h| h.sightings), Some(1));
}

#[test]
fn a_write_that_fails_is_reported_and_cleaning_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let mut opened = sqlite::open(&path, Access::Exclusive).unwrap().unwrap();
    // A full disk, as SQLite sees one: no page beyond the ones it has.
    let connection = opened.connection.as_mut().unwrap();
    let pages: i64 = connection
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap();
    connection.pragma_update(None, "max_page_count", pages).unwrap();
    let store = HistoryStore::from_opened(opened, &path, Access::Exclusive, DEFAULT_RETENTION);
    let keys: Vec<ResourceKey> = (0..500)
        .map(|i| ResourceKey::new("lab", Kind::Vm, format!("{i}-{}", "x".repeat(200))))
        .collect();
    let refs: Vec<&ResourceKey> = keys.iter().collect();
    sighting(&store, &refs, Utc::now());
    store.flush();
    let persistence = store.persistence();
    let Persistence::Failing { error, .. } = &persistence else {
        panic!("not failing: {persistence:?}");
    };
    assert!(error.contains("full"), "{error}");
    assert!(persistence
        .describe()
        .starts_with("history not being kept: writing "));
    assert_eq!(
        store.history(&keys[0]).map(|h| h.sightings),
        Some(1),
        "memory goes on"
    );
}

#[test]
fn the_json_state_file_of_earlier_versions_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("state.json");
    std::fs::write(
        &json,
        r#"{"pass": 41, "resources": {"lab/disk/local:vm-9-disk-0": {"first_seen": "2026-11-01T10:00:00Z",
            "last_pass": 41, "sightings": 1, "failed_passes": 2, "last_error": "busy: locked"},
            "lab/lambda/f": {"first_seen": "2026-11-01T10:00:00Z", "last_pass": 41, "sightings": 1}}}"#,
    )
    .unwrap();
    let path = dir.path().join("history.db");
    let store = HistoryStore::open(&path, Access::Exclusive, Some(&json), DEFAULT_RETENTION).unwrap();
    let record = store.record(&disk()).unwrap();
    assert_eq!(record.first_seen.to_rfc3339(), "2026-11-01T10:00:00+00:00");
    assert_eq!((record.sightings, record.left_streak), (1, 2));
    assert_eq!(store.records(None).len(), 1, "an unknown kind is skipped");
    assert_eq!(store.begin_pass(), 42, "pass numbers go on");
    drop(store);

    // Changed afterwards, the JSON file is not read again.
    std::fs::write(&json, r#"{"pass": 1, "resources": {}}"#).unwrap();
    let store = HistoryStore::open(&path, Access::Exclusive, Some(&json), DEFAULT_RETENTION).unwrap();
    assert_eq!(store.record(&disk()).map(|r| r.left_streak), Some(2));
    assert_eq!(store.begin_pass(), 43);
}

#[test]
fn records_of_resources_gone_longer_than_the_retention_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let store = HistoryStore::open(
        &path,
        Access::Exclusive,
        None,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let t0 = Utc::now() - Age::days(1);
    let (gone, stays) = (disk(), ResourceKey::new("lab", Kind::Vm, "100"));
    sighting(&store, &[&gone, &stays], t0);
    sighting(&store, &[&stays], t0 + Age::minutes(1));
    store.prune(t0 + Age::minutes(30));
    assert!(store.record(&gone).is_some(), "within the retention");
    store.prune(t0 + Age::hours(2));
    assert!(store.record(&gone).is_none());
    assert!(store.record(&stays).is_some(), "still listed: kept");
    drop(store);
    let reopened = exclusive(&path);
    assert_eq!(reopened.records(None).len(), 1, "pruned on disk too");
}

#[test]
fn records_list_what_has_been_left_longest_first() {
    let store = HistoryStore::in_memory("test");
    let (a, b) = (
        ResourceKey::new("lab", Kind::Vm, "a"),
        ResourceKey::new("lab", Kind::Vm, "b"),
    );
    sighting(&store, &[&a, &b], Utc::now());
    let busy = LeftReason::Busy {
        state: "locked".into(),
    };
    for _ in 0..3 {
        store.record_report(&mut report_left(&b, busy.clone()), Utc::now());
    }
    store.record_report(&mut report_left(&a, busy), Utc::now());
    let order: Vec<String> = store
        .records(Some("lab"))
        .into_iter()
        .map(|(k, _)| k.id)
        .collect();
    assert_eq!(order, ["b", "a"]);
    assert_eq!(store.stuck(3), HashMap::from([("lab".to_string(), 1)]));
    assert!(store.records(Some("other")).is_empty());
}
