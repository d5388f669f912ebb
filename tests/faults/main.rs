//! The fault matrix of `docs/FAULTS.md`: each test injects one fault where it strikes (a listing, a
//! status read, a delete, a poll, authentication) into the simulated OpenStack seeded like the demo,
//! or into a small simulated Proxmox VE cluster, and makes the same five checks ([`Bench::row`]):
//! 1. the pass under the fault ends within its deadline;
//! 2. nothing outside the selection is written to, and all of it is still there;
//! 3. what the fault left deletable was deleted;
//! 4. what it kept is reported, each with its reason (or the cloud is reported unlisted);
//! 5. the pass after the fault clears finishes the job: only what is held for good stays.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod bench;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::*;
use cloud_janitor::events::{Event, EventSink};
use cloud_janitor::outcome::{LeftReason, Outcome};
use cloud_janitor::pass::Janitor;
use cloud_janitor::report::{PassReport, PassResult, ReportItem};
use cloud_janitor::selection::Verdict;
use cloud_janitor_sim::faults::{Breakage, FaultRule};
use cloud_janitor_sim::openstack::Seeded;
use cloud_janitor_sim::proxmox::{GuestSpec, ProxmoxSim, ProxmoxSimConfig, TaskQuirks};
use support::{
    janitor_from, openstack_write_target, proxmox_cloud_table, proxmox_write_target, temp_dir, write, Cloud,
    WriteTarget,
};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// `rule` moved past discovery's listing: it strikes the batched status reads of that collection
/// (Nova and Cinder answer them from the same list, read again).
fn on_status_reads(rule: FaultRule) -> FaultRule {
    FaultRule { skip: 1, ..rule }
}

/// Asserts that the fault on `path` was met as often as it was set to be: a row whose fault never
/// struck would prove nothing.
fn assert_struck(faulted: &Faulted, path: &str) {
    let left: Vec<&FaultRule> = faulted
        .rules_left
        .iter()
        .filter(|rule| rule.path == path)
        .collect();
    assert!(
        left.is_empty(),
        "the fault on {path} never struck in full: {left:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 409 storms
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_storm_on_every_delete_is_requeued_then_reported_as_conflicts() {
    let bench = Bench::openstack(&[]).await;
    bench.inject(forever(FaultRule::status("DELETE", "/", 409, 0)));
    let faulted = bench.row(Expect::kept(Stay::Any, &["conflict"]), || {}).await;
    let requeues: u32 = faulted.report.items.iter().map(|i| i.requeues).sum();
    assert!(requeues > 0, "{}", faulted.report.render_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_storm_that_passes_is_requeued_until_it_clears() {
    let bench = Bench::openstack(&[]).await;
    let group = bench.seeded().jobs[1].security_group.clone();
    bench.inject(with_body(
        FaultRule::status("DELETE", &format!("/security-groups/{group}"), 409, 2),
        r#"{"NeutronError": {"type": "SecurityGroupInUse", "message": "in use", "detail": ""}}"#,
    ));
    let faulted = bench.row(Expect::all_deleted(), || {}).await;
    let line = item(&faulted.report, &group).unwrap();
    assert_eq!((&line.status, line.requeues), (&Outcome::Deleted, 2));
}

#[tokio::test]
async fn a_proxmox_lock_timeout_storm_is_a_conflict_then_cleared() {
    let bench = Bench::proxmox_default().await;
    bench.inject(with_body(
        forever(FaultRule::status("DELETE", "/qemu/101", 500, 0)),
        r#"{"data": null, "message": "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout\n"}"#,
    ));
    let expect = Expect::kept(Stay::These(vec!["101".into()]), &["conflict"]);
    let faulted = bench.row(expect, || {}).await;
    assert!(item(&faulted.report, "102").unwrap().status.is_gone());
}

// ---------------------------------------------------------------------------------------------
// 5xx, with and without Retry-After, and 429
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_on_a_listing_is_retried_and_one_that_persists_leaves_the_cloud_unlisted() {
    let bench = Bench::openstack(&[]).await;
    bench.inject(FaultRule::status("POST", "/auth/tokens", 500, 1));
    bench.inject(FaultRule::status("GET", "/v2.0/ports", 502, 2));
    bench.inject(FaultRule::status("GET", "/compute/v2.1/servers/detail", 500, 1));
    bench.inject(forever(FaultRule::status("GET", "/v2.0/subnets", 503, 0)));
    bench
        .row(Expect::unlisted("listing network: subnets"), || {})
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_on_deletes_and_status_reads_is_retried_and_one_that_persists_is_reported() {
    let bench = Bench::openstack(&[]).await;
    let networks = of_kind(&bench, "network");
    bench.inject(FaultRule::status("DELETE", "/v2.0/ports/", 502, 3));
    bench.inject(on_status_reads(FaultRule::status(
        "GET",
        "/compute/v2.1/servers/detail",
        500,
        2,
    )));
    bench.inject(forever(FaultRule::status("DELETE", "/v2.0/networks/", 500, 0)));
    let faulted = bench
        .row(Expect::kept(Stay::These(networks), &["retries_exhausted"]), || {})
        .await;
    assert_struck(&faulted, "/compute/v2.1/servers/detail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_with_retry_after_on_a_delete_waits_as_long_as_it_says() {
    let bench = Bench::openstack(&[]).await;
    let server = bench.seeded().jobs[1].servers[0].clone();
    bench.inject(retry_after(
        FaultRule::status("DELETE", &format!("/servers/{server}"), 503, 1),
        "2",
    ));
    let events = Arc::new(Events::default());
    bench
        .row_watched(Expect::all_deleted(), || {}, Some(events.clone()))
        .await;
    let delays: Vec<Duration> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            Event::Retrying { key, after, .. } if key.id == server => Some(*after),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![Duration::from_secs(2)]);
}

/// A `Retry-After` longer than the pass has left is honoured by not asking again this pass: the
/// pass still ends at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_the_pass_ends_that_resource_at_the_deadline() {
    let bench = Bench::openstack_within(Duration::from_secs(3), &[]).await;
    // Every status read of the servers (one batched list) is told to come back in an hour.
    let servers = of_kind(&bench, "server");
    bench.inject(on_status_reads(retry_after(
        forever(FaultRule::status("GET", "/compute/v2.1/servers/detail", 503, 0)),
        "3600",
    )));
    let faulted = bench
        .row(
            Expect::kept(
                Stay::These(servers.clone()),
                &["pass_deadline", "retries_exhausted"],
            ),
            || {},
        )
        .await;
    assert!(
        faulted.report.duration < Duration::from_secs(4),
        "{:?}",
        faulted.report.duration
    );
    for server in &servers {
        assert!(
            left_reason(&faulted.report, server).is_some(),
            "server {server} met the fault and stayed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_and_without_retry_after_is_waited_out() {
    let bench = Bench::openstack(&[]).await;
    bench.inject(retry_after(
        FaultRule::status("GET", "/v2.0/networks", 429, 1),
        "1",
    ));
    bench.inject(FaultRule::status("DELETE", "/v2.0/security-groups/", 429, 3));
    bench.inject(retry_after(
        FaultRule::status("POST", "/auth/tokens", 429, 1),
        "Sun, 06 Nov 1994 08:49:37 GMT",
    ));
    bench.row(Expect::all_deleted(), || {}).await;
}

#[tokio::test]
async fn proxmox_5xx_on_listings_deletes_and_task_polls_are_retried() {
    let bench = Bench::proxmox_default().await;
    bench.inject(FaultRule::status("GET", "/cluster/resources", 503, 1));
    bench.inject(FaultRule::status("DELETE", "/lxc/201", 502, 2));
    bench.inject(FaultRule::status("GET", "/tasks/", 500, 2));
    bench.row(Expect::all_deleted(), || {}).await;
}

// ---------------------------------------------------------------------------------------------
// A connection reset, a body cut short, a response slower than the request timeout
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_is_retried_wherever_it_strikes() {
    let bench = Bench::openstack(&[]).await;
    bench.inject(FaultRule::broken("POST", "/auth/tokens", Breakage::Hangup, 1));
    bench.inject(FaultRule::broken("GET", "/v2.0/routers", Breakage::Hangup, 1));
    bench.inject(on_status_reads(FaultRule::broken(
        "GET",
        "/volumes/detail",
        Breakage::Hangup,
        2,
    )));
    bench.inject(FaultRule::broken("DELETE", "/v2.0/ports/", Breakage::Hangup, 2));
    let faulted = bench.row(Expect::all_deleted(), || {}).await;
    assert_struck(&faulted, "/volumes/detail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_is_retried_and_a_delete_whose_answer_was_lost_is_found_done() {
    let bench = Bench::openstack(&[]).await;
    let group = bench.seeded().jobs[1].security_group.clone();
    bench.inject(FaultRule::broken("GET", "/v2.0/networks", Breakage::Truncate, 1));
    bench.inject(on_status_reads(FaultRule::broken(
        "GET",
        "/compute/v2.1/servers/detail",
        Breakage::Truncate,
        1,
    )));
    bench.inject(FaultRule::broken(
        "DELETE",
        &format!("/security-groups/{group}"),
        Breakage::Truncate,
        1,
    ));
    let faulted = bench.row(Expect::all_deleted(), || {}).await;
    assert_eq!(
        item(&faulted.report, &group).unwrap().status,
        Outcome::AlreadyGone
    );
    assert_struck(&faulted, "/compute/v2.1/servers/detail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_slower_than_the_request_timeout_is_retried_and_one_always_slow_is_reported() {
    let bench = Bench::openstack(&[("CLOUD_JANITOR_CLOUDS__SIM__REQUEST_TIMEOUT", "300ms")]).await;
    bench.inject(FaultRule {
        method: Some("GET".into()),
        count: Some(1),
        ..FaultRule::latency("/v2.0/subnets", Duration::from_secs(2))
    });
    bench.inject(FaultRule {
        method: Some("DELETE".into()),
        count: Some(1),
        ..FaultRule::latency("/v2.0/ports/", Duration::from_secs(2))
    });
    bench.row(Expect::all_deleted(), || {}).await;

    let bench = Bench::openstack(&[("CLOUD_JANITOR_CLOUDS__SIM__REQUEST_TIMEOUT", "300ms")]).await;
    bench.inject(FaultRule {
        method: Some("GET".into()),
        ..FaultRule::latency("/v2.0/ports", Duration::from_secs(2))
    });
    bench.row(Expect::unlisted("listing network: ports"), || {}).await;
}

// ---------------------------------------------------------------------------------------------
// A 401 mid-pass
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_mid_pass_re_authenticates_once_then_gives_up_on_that_call() {
    let bench = Bench::openstack(&[]).await;
    let ports = of_kind(&bench, "port");
    bench.inject(FaultRule::status("DELETE", "/servers/", 401, 1));
    bench.inject(forever(FaultRule::status("DELETE", "/v2.0/ports/", 401, 0)));
    let faulted = bench
        .row(Expect::kept(Stay::These(ports), &["permanent_error"]), || {})
        .await;
    // Each refused delete was sent twice, around one new token, then given up.
    let mut deletes: BTreeMap<&str, usize> = BTreeMap::new();
    for (method, path, _) in &faulted.log {
        if method == "DELETE" && path.contains("/v2.0/ports/") {
            *deletes.entry(path.as_str()).or_default() += 1;
        }
    }
    let tokens = faulted
        .log
        .iter()
        .filter(|(method, path, _)| method == "POST" && path.ends_with("/auth/tokens"))
        .count();
    assert!(!deletes.is_empty());
    assert!(deletes.values().all(|&n| n == 2), "{deletes:#?}");
    // The first token, one for the server's 401, one per port.
    assert_eq!(tokens, 2 + deletes.len());
}

// ---------------------------------------------------------------------------------------------
// An empty or missing status
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_missing_status_is_busy_never_ready_nor_gone() {
    use serde_json::json;
    let bench = Bench::openstack(&[]).await;
    let servers = bench.seeded().jobs[1].servers.clone();
    let volume = bench.seeded().jobs[1].volumes[0].clone();
    let snapshot = bench.seeded().jobs[1].snapshots[0].clone();
    // The status reads are batched through the lists, which discovery reads first: every rule
    // skips the answer discovery gets and edits the status reads'.
    let after_discovery = |rule: FaultRule, skip: u32| FaultRule { skip, ..rule };
    // Before a delete: empty twice, then the real status.
    bench.inject(after_discovery(
        FaultRule::rewrite("GET", "/servers/detail", &servers[0], json!({"status": ""}), 2),
        1,
    ));
    // Missing once, then the real status.
    let mut missing = FaultRule::rewrite("GET", "/volumes/detail", &volume, json!({}), 1);
    if let Some(rewrite) = missing.rewrite.as_mut() {
        rewrite.remove = vec!["status".to_string()];
    }
    bench.inject(after_discovery(missing, 1));
    // While polling after a delete (the read before it passes): null three times, not gone yet.
    bench.inject(after_discovery(
        FaultRule::rewrite("GET", "/snapshots/detail", &snapshot, json!({"status": null}), 3),
        2,
    ));
    // Empty for good: busy until busy_timeout, then left as busy.
    bench.inject(after_discovery(
        forever(FaultRule::rewrite(
            "GET",
            "/servers/detail",
            &servers[1],
            json!({"status": "", "OS-EXT-STS:task_state": null}),
            0,
        )),
        1,
    ));
    let expect = Expect::kept(Stay::These(vec![servers[1].clone()]), &["busy"]);
    let faulted = bench.row(expect, || {}).await;
    assert_eq!(
        left_reason(&faulted.report, &servers[1]),
        Some(&LeftReason::Busy {
            state: "empty status".into()
        })
    );
    for deleted in [&servers[0], &volume, &snapshot] {
        assert_eq!(item(&faulted.report, deleted).unwrap().status, Outcome::Deleted);
    }
    // Every rule but the endless one was used up: each odd answer was read, and waited out.
    let rules = &faulted.rules_left;
    assert_eq!(rules.len(), 1, "{rules:#?}");
    assert_eq!(
        rules[0].rewrite.as_ref().map(|r| r.id.as_str()),
        Some(servers[1].as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed and truncated JSON, a pagination marker that repeats
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_in_a_listing_leaves_the_cloud_unlisted() {
    let bench = Bench::openstack(&[]).await;
    bench.inject(with_body(
        FaultRule::status("GET", "/v2.0/routers", 200, 1),
        "<html><body>502 Bad Gateway</body></html>",
    ));
    bench.row(Expect::unlisted("network: routers"), || {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_json_in_a_listing_leaves_the_cloud_unlisted_and_in_a_status_read_its_resource() {
    let bench = Bench::openstack(&[]).await;
    bench.inject(with_body(
        FaultRule::status("GET", "/v2.0/ports", 200, 1),
        r#"{"ports": [{"id": "p1", "name": "#,
    ));
    bench.row(Expect::unlisted("network: ports"), || {}).await;

    let bench = Bench::openstack(&[]).await;
    let servers = of_kind(&bench, "server");
    bench.inject(on_status_reads(with_body(
        FaultRule::status("GET", "/compute/v2.1/servers/detail", 200, 1),
        r#"{"servers": [{"id": "x", "status": "ACT"#,
    )));
    let faulted = bench
        .row(
            Expect::kept(Stay::These(servers.clone()), &["permanent_error"]),
            || {},
        )
        .await;
    assert_struck(&faulted, "/compute/v2.1/servers/detail");
    assert!(
        servers
            .iter()
            .any(|server| left_reason(&faulted.report, server).is_some()),
        "the servers of the round that met the cut answer stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pagination_marker_that_repeats_leaves_the_cloud_unlisted() {
    let bench = Bench::openstack(&[("CLOUD_JANITOR_CLOUDS__SIM__PAGE_SIZE", "2")]).await;
    let sim = &bench.openstack_sim().sim;
    let again = format!(
        "{}/network/v2.0/networks?limit=2&marker=n-loop&project_id={}",
        sim.url(),
        bench.seeded().project_id
    );
    let page = format!(
        r#"{{"networks": [{{"id": "n-loop", "name": "loop"}}], "networks_links": [{{"rel": "next", "href": "{again}"}}]}}"#
    );
    bench.inject(with_body(
        FaultRule::status("GET", "/v2.0/networks", 200, 2),
        &page,
    ));
    bench.row(Expect::unlisted("pagination loops back"), || {}).await;
}

// ---------------------------------------------------------------------------------------------
// A body beyond the size cap
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_beyond_the_size_cap_is_refused_unread_and_leaves_the_cloud_unlisted() {
    let cap = [("CLOUD_JANITOR_CLOUDS__SIM__MAX_RESPONSE_BYTES", "65536")];
    // A body that never ends: read up to the cap, then refused (a client reading it all would
    // still be reading when the request timeout ended it).
    let bench = Bench::openstack(&cap).await;
    bench.inject(FaultRule::broken("GET", "/v2.0/ports", Breakage::Endless, 1));
    bench
        .row(
            Expect::unlisted("larger than max_response_bytes (65536 bytes)"),
            || {},
        )
        .await;
    // A length announced beyond the cap: refused before its body is read.
    let bench = Bench::openstack(&cap).await;
    let large = format!(r#"{{"networks": [], "padding": "{}"}}"#, "x".repeat(100_000));
    bench.inject(with_body(
        FaultRule::status("GET", "/v2.0/networks", 200, 1),
        &large,
    ));
    bench
        .row(
            Expect::unlisted("larger than max_response_bytes (65536 bytes)"),
            || {},
        )
        .await;
}

// ---------------------------------------------------------------------------------------------
// Proxmox VE: a node offline, a task that never ends
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_proxmox_node_offline_keeps_its_guests_untouched_until_it_is_back() {
    let bench = Bench::proxmox_default().await;
    let sim = bench.proxmox_sim().clone();
    sim.set_node_online("pve2", false);
    // A proxy error on the task polls of the online node too: polled again, not failed.
    bench.inject(FaultRule::status("GET", "/tasks/", 595, 2));
    let expect = Expect {
        guarded: vec!["102".into()],
        ..Expect::all_deleted()
    };
    let faulted = bench.row(expect, || sim.set_node_online("pve2", true)).await;
    assert!(
        faulted
            .log
            .iter()
            .all(|(method, path, _)| method == "GET" || !path.contains("/nodes/pve2/")),
        "nothing written through the offline node"
    );
    assert_eq!(faulted.report.result(), PassResult::Clean);
}

#[tokio::test]
async fn a_proxmox_task_unknown_at_first_and_then_without_exit_status_is_polled_until_it_has_one() {
    let config = ProxmoxSimConfig {
        task_duration: Duration::from_millis(20),
        lock_wait: Duration::from_millis(100),
        exitstatus_lag: Duration::from_millis(200),
        unknown_task_for: Duration::from_millis(100),
        ..ProxmoxSimConfig::default()
    };
    let bench = Bench::proxmox(config, "").await;
    let sim = bench.proxmox_sim().clone();
    let faulted = bench
        .row(Expect::all_deleted(), || {
            sim.set_task_quirks(TaskQuirks::default())
        })
        .await;
    let unknown = faulted
        .log
        .iter()
        .filter(|(_, path, status)| path.contains("/tasks/") && *status == 400)
        .count();
    assert!(unknown > 0, "tasks were polled while unknown");
}

#[tokio::test]
async fn a_proxmox_task_that_never_ends_is_bounded_and_the_guest_goes_once_it_is_killed() {
    let bench = Bench::proxmox_default().await;
    let sim = bench.proxmox_sim().clone();
    sim.hang_tasks(101, true);
    let expect = Expect::kept(
        Stay::These(vec!["101".into()]),
        &["retries_exhausted", "conflict"],
    );
    let faulted = bench.row(expect, || sim.hang_tasks(101, false)).await;
    // Bounded by task_timeout (1s) per attempt; the hung stop kept its lock, so later stops timed
    // out waiting for it.
    let reason = left_reason(&faulted.report, "101").unwrap();
    assert!(
        reason.to_string().contains("not finished after") || reason.to_string().contains("got timeout"),
        "{reason}"
    );
}
