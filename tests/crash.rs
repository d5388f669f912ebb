//! A janitor killed with SIGKILL in the middle of a pass: its history file opens again and holds the
//! attempts made before the kill, the next run finishes the cleanup, and nothing outside the
//! selection was ever written to.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use cloud_janitor::history::{Access, HistoryStore, DEFAULT_RETENTION};
use cloud_janitor_sim::faults::FaultRule;
use support::{daemon_cli, free_port, janitor_cli, run, wait_for, Cloud, Daemon};

/// Attempts recorded in the history file, read as `history` would (read-only, beside a janitor).
fn attempts(path: &std::path::Path) -> u32 {
    HistoryStore::open(path, Access::ReadOnly, None, DEFAULT_RETENTION)
        .map(|store| store.records(None).iter().map(|(_, r)| r.attempts).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_janitor_killed_mid_pass_keeps_its_history_and_the_next_run_finishes_the_job() {
    let cloud = Cloud::start(true).await;
    let seeded = cloud.demo.seeded.clone().unwrap();
    // Server deletes take a minute: the pass is still running when it is killed.
    let slow = FaultRule {
        method: Some("DELETE".into()),
        ..FaultRule::latency("/servers/", Duration::from_secs(60))
    };
    cloud.sim.faults().add(slow);
    let history = cloud.dir.path().join("history.db");
    let config = cloud.config(
        "janitor.toml",
        &format!("history_file = \"{}\"", history.display()),
    );
    let daemon = Daemon::spawn(daemon_cli(&config, "* * * * * *", free_port()));

    // Attempts reach the file within about a second of being made.
    wait_for(
        Duration::from_secs(60),
        "attempts committed to the history",
        || async { attempts(&history) >= 3 },
    )
    .await;
    daemon.signal("KILL");
    let (status, _) = daemon.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), None, "killed by a signal");

    // The store opens for a new janitor (the kernel released the lock) with what was recorded.
    let store = HistoryStore::open(&history, Access::Exclusive, None, DEFAULT_RETENTION)
        .expect("the history opens after a kill");
    let attempted: Vec<String> = store
        .records(None)
        .into_iter()
        .filter(|(_, r)| r.attempts > 0)
        .map(|(key, _)| key.to_string())
        .collect();
    assert!(attempted.len() >= 3, "{attempted:?}");
    drop(store);

    // The cloud answers normally again; the next run finishes the cleanup.
    cloud.sim.faults().clear();
    let mut once = janitor_cli(&["once"], &config);
    once.env("CLOUD_JANITOR_WAITS__BUSY_TIMEOUT", "300ms");
    let finished = run(once).await;
    assert_eq!(
        finished.code,
        Some(1),
        "only the true leftovers stay: {}",
        finished.both()
    );
    let left: BTreeSet<String> = seeded.expected_left().into_iter().map(|(_, id)| id).collect();
    for (kind, id) in seeded.tagged() {
        assert_eq!(cloud.sim.exists(kind, &id), left.contains(&id), "{kind} {id}");
    }
    for (kind, id) in seeded.survivors() {
        assert!(cloud.sim.exists(kind, &id), "{kind} {id} survives");
        assert_eq!(
            cloud.writes_to(&id),
            Vec::<String>::new(),
            "{kind} {id} never written to"
        );
    }
}
