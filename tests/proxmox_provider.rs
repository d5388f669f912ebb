//! The Proxmox provider against the simulated Proxmox VE: stop before destroy, wedged and locked
//! guests, guards, task polling, orphan disks, and both kinds of authentication.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_janitor::metrics::Metrics;
use cloud_janitor::model::{DeleteOutcome, Details, Guard, Kind, Observed, Resource};
use cloud_janitor::policy::RetryPolicy;
use cloud_janitor::provider::proxmox::config::ProxmoxSettings;
use cloud_janitor::provider::proxmox::{ProxmoxDetails, ProxmoxProvider};
use cloud_janitor::provider::{ErrorClass, Provider, ProviderError};
use cloud_janitor_sim::faults::FaultRule;
use cloud_janitor_sim::proxmox::{GuestSpec, ProxmoxSim, ProxmoxSimConfig, TaskQuirks};

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn sim(config: ProxmoxSimConfig) -> ProxmoxSim {
    ProxmoxSim::start(any_port(), config).await.expect("sim starts")
}

/// A file in cargo's directory for integration tests' files, holding `content`.
fn secret_file(name: &str, content: &str) -> std::path::PathBuf {
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

/// Token settings, the secret read from a file of its own (tests never touch the process's
/// environment, which other tests share).
fn token_settings(sim: &ProxmoxSim, extra: serde_json::Value) -> ProxmoxSettings {
    let secret = secret_file(
        &format!("pve-token-{}", sim.url().replace(['/', ':', '.'], "-")),
        &sim.token_secret(),
    );
    let mut value = serde_json::json!({
        "url": sim.url(), "token_id": sim.token_id(), "token_secret_file": secret,
        "poll_interval": "20ms", "task_timeout": "5s",
    });
    if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::from_value(value).expect("valid settings")
}

/// Reads are retried three times, quickly.
const QUICK_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: Duration::from_millis(10),
    max_delay: Duration::from_millis(40),
};

fn provider(settings: &ProxmoxSettings) -> ProxmoxProvider {
    ProxmoxProvider::new("lab".to_string(), settings, Arc::new(Metrics::new()))
        .expect("provider")
        .with_read_retry(QUICK_RETRY)
}

async fn find(provider: &ProxmoxProvider, kind: Kind, id: &str) -> Resource {
    let resources = provider.discover().await.expect("discover");
    resources
        .into_iter()
        .find(|r| r.key.kind == kind && r.key.id == id)
        .expect("resource discovered")
}

#[tokio::test]
async fn default_stop_precedes_destroy_and_no_shutdown_is_sent() {
    let sim = sim(ProxmoxSimConfig::default()).await;
    let vmid = sim.add_guest(GuestSpec::vm(101, "ci-a").tags(&["ci"]).running());
    let provider = provider(&token_settings(&sim, serde_json::json!({})));
    let vm = find(&provider, Kind::Vm, "101").await;
    assert_eq!(provider.observe(&vm).await.unwrap(), Observed::Ready);
    sim.clear_request_log();
    assert_eq!(provider.delete(&vm).await.unwrap(), DeleteOutcome::Completed);
    assert!(!sim.exists(vmid));
    let log = sim.request_log();
    let position =
        |needle: &str, method: &str| log.iter().position(|(m, p, _)| m == method && p.contains(needle));
    let stop = position("/status/stop", "POST").expect("a stop was sent");
    let destroy = position("/qemu/101?", "DELETE").expect("a destroy was sent");
    assert!(stop < destroy, "stop must precede destroy: {log:?}");
    assert!(
        log.iter().all(|(_, p, _)| !p.contains("/status/shutdown")),
        "no shutdown by default: {log:?}"
    );
    let (_, destroy_path, _) = &log[destroy];
    assert!(destroy_path.contains("purge=1") && destroy_path.contains("destroy-unreferenced-disks=1"));
    assert_eq!(provider.observe(&vm).await.unwrap(), Observed::Gone);
    assert_eq!(
        provider.delete(&vm).await.unwrap(),
        DeleteOutcome::Completed,
        "a second delete is done"
    );
}

#[tokio::test]
async fn a_wedged_guest_is_destroyed_with_stop_and_with_graceful_after_its_timeout() {
    let sim = sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec {
        wedged: true,
        ..GuestSpec::vm(103, "stuck").running()
    });
    sim.add_guest(GuestSpec {
        wedged: true,
        ..GuestSpec::vm(104, "stuck-too").running()
    });

    let stopping = provider(&token_settings(&sim, serde_json::json!({})));
    let vm = find(&stopping, Kind::Vm, "103").await;
    sim.clear_request_log();
    stopping.delete(&vm).await.expect("stop then destroy");
    assert!(!sim.exists(103));
    let sent: Vec<String> = sim
        .request_log()
        .into_iter()
        .filter(|(method, _, _)| method != "GET")
        .map(|(method, path, _)| format!("{method} {}", path.split('?').next().unwrap_or_default()))
        .collect();
    assert_eq!(
        sent,
        [
            "POST /api2/json/nodes/pve1/qemu/103/status/stop",
            "DELETE /api2/json/nodes/pve1/qemu/103"
        ],
        "stopped at once, no shutdown waited for"
    );

    let graceful = provider(&token_settings(
        &sim,
        serde_json::json!({"shutdown": "graceful", "shutdown_timeout": "1s"}),
    ));
    let vm = find(&graceful, Kind::Vm, "104").await;
    sim.clear_request_log();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), graceful.delete(&vm))
        .await
        .expect("never hangs")
        .expect("falls back to stop");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the shutdown got its timeout"
    );
    assert!(!sim.exists(104));
    let log = sim.request_log();
    let shutdown = log
        .iter()
        .position(|(_, p, _)| p.contains("/status/shutdown"))
        .expect("shutdown tried");
    let stop = log
        .iter()
        .position(|(_, p, _)| p.contains("/status/stop"))
        .expect("fell back to stop");
    assert!(shutdown < stop);
}

#[tokio::test]
async fn a_healthy_guest_goes_down_gracefully_without_stop() {
    let sim = sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(120, "fine").running());
    let graceful = provider(&token_settings(&sim, serde_json::json!({"shutdown": "graceful"})));
    let vm = find(&graceful, Kind::Vm, "120").await;
    graceful.delete(&vm).await.expect("deleted");
    assert!(!sim.exists(120));
    assert!(sim
        .request_log()
        .iter()
        .all(|(_, p, _)| !p.contains("/status/stop")));
}

#[tokio::test]
async fn a_locked_guest_conflicts_until_its_lock_clears() {
    let sim = sim(ProxmoxSimConfig {
        lock_wait: Duration::from_millis(100),
        ..ProxmoxSimConfig::default()
    })
    .await;
    sim.add_guest(GuestSpec::vm(130, "backed-up").running());
    let provider = provider(&token_settings(&sim, serde_json::json!({})));
    let vm = find(&provider, Kind::Vm, "130").await;
    assert_eq!(vm.guard, None);

    // A config lock taken after discovery.
    sim.set_lock(130, Some("backup"));
    assert!(matches!(provider.observe(&vm).await.unwrap(), Observed::Busy(_)));
    let error = provider.delete(&vm).await.expect_err("locked");
    assert_eq!(error.class(), ErrorClass::Conflict, "{error}");
    assert!(sim.exists(130));

    // The lock file held by a running backup task: stop answers 500 "got timeout".
    sim.set_lock(130, None);
    sim.hold_lock_file(130, Duration::from_millis(400));
    let error = provider.delete(&vm).await.expect_err("lock file held");
    assert_eq!(error.class(), ErrorClass::Conflict, "{error}");
    assert!(error.to_string().contains("got timeout"), "{error}");

    sim.advance_clock(Duration::from_millis(400));
    provider.delete(&vm).await.expect("deleted once the lock cleared");
    assert!(!sim.exists(130));
}

#[tokio::test]
async fn seeded_guards_and_orphans() {
    let sim = sim(ProxmoxSimConfig::default()).await;
    let seeded = sim.seed_ci_leftovers();
    let provider = provider(&token_settings(&sim, serde_json::json!({})));
    let resources = provider.discover().await.expect("discover");
    let guard = |id: u32| {
        resources
            .iter()
            .find(|r| r.key.id == id.to_string())
            .and_then(|r| r.guard)
    };
    assert_eq!(guard(seeded.protected_vm), Some(Guard::Protected));
    assert_eq!(guard(seeded.template_vm), Some(Guard::Template));
    assert_eq!(guard(seeded.backup_locked_vm), Some(Guard::Locked));
    assert_eq!(guard(seeded.running_vms[0]), None);
    let container = resources
        .iter()
        .find(|r| r.key.kind == Kind::Container && r.key.id == "201")
        .expect("ct");
    assert!(
        container.created.is_some(),
        "creation time from the ci-created- tag"
    );
    assert!(container.tags.iter().any(|t| t == &seeded.ci_tag));
    let vm = resources.iter().find(|r| r.key.id == "101").expect("vm 101");
    assert!(vm.created.is_some(), "creation time from meta");
    assert!(vm
        .references
        .iter()
        .any(|k| k.kind == Kind::Disk && k.id == "pve1/local-lvm:vm-101-disk-0"));

    let orphans: Vec<&Resource> = resources.iter().filter(|r| r.key.kind == Kind::Disk).collect();
    let ids: Vec<&str> = orphans.iter().map(|r| r.key.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "ceph:vm-998-disk-0",
            "pve1/local-lvm:vm-999-disk-0",
            "pve1/local-lvm:vm-999-disk-1"
        ]
    );
    assert!(orphans.iter().all(|r| r.sightings_required == 2
        && matches!(&r.details, Details::Proxmox(ProxmoxDetails::OrphanDisk(disk))
            if r.key.id.ends_with(&disk.volid))));

    // A stopped container is destroyed without a stop.
    sim.clear_request_log();
    provider.delete(container).await.expect("container deleted");
    assert!(!sim.exists(201));
    assert!(sim
        .request_log()
        .iter()
        .all(|(_, p, _)| !p.contains("/status/stop")));

    // An orphan disk is deleted through its storage.
    let disk = orphans[1];
    assert_eq!(provider.observe(disk).await.unwrap(), Observed::Ready);
    provider.delete(disk).await.expect("disk deleted");
    assert!(!sim.disk_exists("local-lvm:vm-999-disk-0"));
    assert_eq!(provider.observe(disk).await.unwrap(), Observed::Gone);

    // The protected guest survives even a direct delete.
    let protected = resources
        .iter()
        .find(|r| r.key.id == seeded.protected_vm.to_string())
        .expect("protected");
    let error = provider.delete(protected).await.expect_err("protected");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(sim.exists(seeded.protected_vm));
}

#[tokio::test]
async fn a_task_without_exit_status_is_polled_until_it_has_one() {
    let sim = sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(140, "slow").running());
    let provider = provider(&token_settings(&sim, serde_json::json!({})));
    let vm = find(&provider, Kind::Vm, "140").await;
    sim.set_task_quirks(TaskQuirks {
        exitstatus_lag: Duration::from_millis(300),
        unknown_for: Duration::from_millis(100),
    });
    provider.delete(&vm).await.expect("deleted after polling");
    assert!(!sim.exists(140));
    let log = sim.request_log();
    let unknown = log
        .iter()
        .filter(|(_, p, s)| p.contains("/tasks/") && *s == 400)
        .count();
    assert!(unknown > 0, "the task was unknown for a while");
    let polls = log
        .iter()
        .filter(|(_, p, s)| p.contains("/tasks/") && *s == 200)
        .count();
    assert!(
        polls >= 4,
        "stopped-without-exitstatus was polled again ({polls} polls)"
    );
}

#[tokio::test]
async fn a_task_that_never_reports_an_exit_status_ends_at_the_deadline() {
    let sim = sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(141, "silent"));
    let provider = provider(&token_settings(
        &sim,
        serde_json::json!({"task_timeout": "500ms"}),
    ));
    let vm = find(&provider, Kind::Vm, "141").await;
    sim.set_task_quirks(TaskQuirks {
        exitstatus_lag: Duration::from_secs(3600),
        unknown_for: Duration::ZERO,
    });
    let error = tokio::time::timeout(Duration::from_secs(5), provider.delete(&vm))
        .await
        .expect("bounded");
    let error = error.expect_err("no exit status, no success");
    assert!(matches!(error, ProviderError::Deadline { .. }), "{error}");
}

#[tokio::test]
async fn a_failed_task_reports_its_text() {
    let sim = sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(150, "broken"));
    let provider = provider(&token_settings(&sim, serde_json::json!({})));
    let vm = find(&provider, Kind::Vm, "150").await;
    sim.fail_next_task(150, "storage 'local-lvm' is not online");
    let error = provider.delete(&vm).await.expect_err("task failed");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(
        error.to_string().contains("storage 'local-lvm' is not online"),
        "{error}"
    );
    assert!(sim.exists(150));
}

#[tokio::test]
async fn an_offline_node_makes_its_guests_unknown_and_its_requests_transient() {
    let sim = sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(160, "far").on("pve2").running());
    let provider = provider(&token_settings(&sim, serde_json::json!({})));
    let vm = find(&provider, Kind::Vm, "160").await;
    sim.set_node_online("pve2", false);
    let offline = find(&provider, Kind::Vm, "160").await;
    assert_eq!(offline.guard, Some(Guard::UnknownState));
    sim.clear_request_log();
    let error = provider.observe(&vm).await.expect_err("595");
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    assert!(
        matches!(error, ProviderError::Exhausted { attempts: 3, .. }),
        "read three times, then given up: {error:?}"
    );
    let tries = sim
        .request_log()
        .iter()
        .filter(|(_, _, status)| *status == 595)
        .count();
    assert_eq!(tries, 3, "{:?}", sim.request_log());
    sim.set_node_online("pve2", true);
    provider.delete(&vm).await.expect("deleted once the node is back");
}

#[tokio::test]
async fn ticket_auth_carries_csrf_on_writes_and_logs_in_again_when_the_ticket_is_refused() {
    let sim = sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(170, "ticketed").running());
    let password = secret_file("pve-password", &sim.password());
    let settings: ProxmoxSettings = serde_json::from_value(serde_json::json!({
        "url": sim.url(), "user": sim.user(), "password_file": password, "poll_interval": "20ms",
    }))
    .unwrap();
    let provider = provider(&settings);
    let vm = find(&provider, Kind::Vm, "170").await;
    provider.delete(&vm).await.expect("writes carry the CSRF token");
    assert!(!sim.exists(170));
    // The cluster's clock passes the ticket's two hours: it is refused (401) and replaced.
    sim.advance_clock(Duration::from_secs(3 * 3600));
    sim.clear_request_log();
    provider.discover().await.expect("a refused ticket is replaced");
    let answers: Vec<(String, u16)> = sim
        .request_log()
        .into_iter()
        .map(|(method, path, status)| {
            (
                format!("{method} {}", path.split('?').next().unwrap_or_default()),
                status,
            )
        })
        .take(3)
        .collect();
    assert_eq!(
        answers,
        [
            ("GET /api2/json/cluster/resources".to_string(), 401),
            ("POST /api2/json/access/ticket".to_string(), 200),
            ("GET /api2/json/cluster/resources".to_string(), 200),
        ]
    );
}

#[tokio::test]
async fn tls_with_a_ca_file_and_bad_credentials_are_reported() {
    let sim = sim(ProxmoxSimConfig {
        tls: true,
        ..ProxmoxSimConfig::default()
    })
    .await;
    sim.add_guest(GuestSpec::vm(175, "over-tls"));
    let ca = secret_file("pve-ca.pem", &sim.ca_pem().unwrap());
    let settings = token_settings(&sim, serde_json::json!({"ca_file": ca}));
    let listed = provider(&settings)
        .discover()
        .await
        .expect("TLS with the CA file");
    assert_eq!(
        listed.iter().map(|r| r.key.id.as_str()).collect::<Vec<_>>(),
        ["175"]
    );
    let mut bad = settings.clone();
    bad.token_secret_file = Some(secret_file("pve-token-bad", "wrong"));
    let error = provider(&bad).discover().await.expect_err("refused");
    assert!(error.is_fatal_for_cloud(), "{error}");
    assert!(
        matches!(&error, ProviderError::Listing { source, .. } if matches!(**source, ProviderError::Auth { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_guest_listed_without_its_node_fails_discovery_instead_of_vanishing() {
    let sim = sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(180, "ci-listed").running());
    let provider = provider(&token_settings(&sim, serde_json::json!({})));
    let mut broken = FaultRule::status("GET", "/cluster/resources", 200, 1);
    broken.body = Some(r#"{"data": [{"type": "qemu", "vmid": 180, "name": "ci-listed"}]}"#.to_string());
    sim.faults().add(broken);
    let error = provider.discover().await.expect_err("a guest without a node");
    assert!(matches!(error, ProviderError::Decode { .. }), "{error:?}");
    let message = error.to_string();
    let (url, detail) = message
        .split_once(": unexpected response: ")
        .expect("a decode message");
    assert!(url.ends_with("/api2/json/cluster/resources?type=vm"), "{message}");
    assert_eq!(detail, "proxmox: cluster guests: item 0: missing field `node`");
}
