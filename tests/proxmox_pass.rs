//! Whole passes over the simulated Proxmox VE, as `cloud-janitor once` runs them: a janitor built from
//! a TOML config like a user's, `run_pass`, then what the user sees in the report, in the cluster and
//! in the metrics. Wedged guests, locks taken after discovery, guards, task polling, orphan disks
//! across a restart, and stop-before-destroy through the engine. The provider alone is tested in
//! `proxmox_provider.rs`.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{proxmox_cloud_table, temp_dir, write};

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_janitor::config::Config;
use cloud_janitor::events::{Event, EventSink};
use cloud_janitor::history::Access;
use cloud_janitor::metrics::Metrics;
use cloud_janitor::outcome::Outcome;
use cloud_janitor::pass::Janitor;
use cloud_janitor::report::{PassReport, PassResult, ReportItem};
use cloud_janitor::setup::build_janitor;
use cloud_janitor_sim::proxmox::{GuestSpec, ProxmoxSim, ProxmoxSimConfig, TaskQuirks};
use tokio_util::sync::CancellationToken;

/// The tag the test's CI jobs put on their guests.
const CI_TAG: &str = "ci-job";

/// No pass here may take longer; a pass that does is a hang.
const PASS_BOUND: Duration = Duration::from_secs(60);

async fn start_sim(config: ProxmoxSimConfig) -> ProxmoxSim {
    ProxmoxSim::start(([127, 0, 0, 1], 0).into(), config)
        .await
        .expect("the simulated Proxmox VE starts")
}

/// Writes a janitor config for `sim` into `dir` as a user would, with `cloud_extra` added to the
/// cloud's table (`shutdown = "graceful"`, ...), and builds the janitor from it.
fn janitor(sim: &ProxmoxSim, dir: &Path, cloud_extra: &str, metrics: Arc<Metrics>) -> Janitor {
    let table = proxmox_cloud_table(
        "lab",
        sim,
        dir,
        &format!("poll_interval = \"20ms\"\ntask_timeout = \"10s\"\n{cloud_extra}"),
    );
    let config = format!(
        r#"schedule = "0 0 * * * *"
listen = "127.0.0.1:0"
pass_timeout = "60s"
history_file = "{state}"

[retry]
max_attempts = 10
base_delay = "100ms"
max_delay = "400ms"

[waits]
busy_timeout = "5s"
delete_timeout = "20s"
poll_interval = "50ms"

{table}
[clouds.select]
tags_all = ["{CI_TAG}"]
untaggable_name_pattern = "^vm-99[0-9]-disk-"
"#,
        state = dir.join("history.db").display(),
    );
    let path = write(dir, "janitor.toml", &config);
    let config = Config::load_with_env(&path, Default::default()).expect("the config is valid");
    build_janitor(&config, metrics, Access::Exclusive).expect("the janitor builds")
}

/// One pass, bounded: a pass that does not end within [`PASS_BOUND`] fails the test.
async fn pass(janitor: &Janitor, progress: Option<Arc<dyn EventSink>>) -> (PassReport, Duration) {
    let started = Instant::now();
    let report = tokio::time::timeout(PASS_BOUND, janitor.run_pass(CancellationToken::new(), progress))
        .await
        .expect("the pass ends");
    (report, started.elapsed())
}

fn item<'a>(report: &'a PassReport, kind: &str, id: u32) -> &'a ReportItem {
    let id = id.to_string();
    report
        .items
        .iter()
        .find(|i| i.key.kind.as_str() == kind && i.key.id == id)
        .unwrap_or_else(|| panic!("{kind} {id} is in the report:\n{}", report.render_table()))
}

fn is_deleted(item: &ReportItem) -> bool {
    matches!(item.status, Outcome::Deleted)
}

/// The value of one metric series in the Prometheus text, if present.
fn metric(metrics: &Metrics, series: &str) -> Option<f64> {
    metrics.render().lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

/// Positions in the request log of requests with `method` whose path contains `needle`.
fn positions(log: &[(String, String, u16)], method: &str, needle: &str) -> Vec<usize> {
    log.iter()
        .enumerate()
        .filter(|(_, (m, p, _))| m == method && p.contains(needle))
        .map(|(i, _)| i)
        .collect()
}

fn wedged(spec: GuestSpec) -> GuestSpec {
    GuestSpec {
        wedged: true,
        ..spec.running()
    }
}

#[tokio::test]
async fn a_wedged_guest_is_destroyed_with_stop_and_with_graceful_after_its_timeout() {
    let sim = start_sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(wedged(GuestSpec::vm(301, "ci-installer-stuck").tags(&[CI_TAG])));

    // The default: a hard stop, which a wedged guest OS cannot ignore.
    let scratch = temp_dir();
    let dir = scratch.path();
    let metrics = Arc::new(Metrics::new());
    let (report, took) = pass(&janitor(&sim, dir, "", metrics.clone()), None).await;
    assert!(is_deleted(item(&report, "vm", 301)), "{}", report.render_table());
    assert_eq!(report.result(), PassResult::Clean, "{}", report.render_table());
    assert!(!sim.exists(301), "the wedged guest is gone");
    assert!(took < Duration::from_secs(30), "the pass took {took:?}");
    let log = sim.request_log();
    assert!(
        positions(&log, "POST", "/qemu/301/status/shutdown").is_empty()
            && positions(&log, "POST", "/qemu/301/status/stop").len() == 1,
        "the default stops at once, without asking the wedged OS: {log:?}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"cloud_janitor_deletes_total{cloud="lab",kind="vm",outcome="deleted"}"#
        ),
        Some(1.0)
    );

    // Graceful: the guest ignores the ACPI shutdown; after shutdown_timeout the janitor stops it.
    sim.add_guest(wedged(GuestSpec::vm(302, "ci-installer-stuck-2").tags(&[CI_TAG])));
    sim.clear_request_log();
    let scratch = temp_dir();
    let dir = scratch.path();
    let graceful = janitor(
        &sim,
        dir,
        "shutdown = \"graceful\"\nshutdown_timeout = \"1s\"",
        Arc::new(Metrics::new()),
    );
    let (report, took) = pass(&graceful, None).await;
    assert!(is_deleted(item(&report, "vm", 302)), "{}", report.render_table());
    assert!(!sim.exists(302), "the wedged guest is gone");
    assert!(
        took >= Duration::from_secs(1),
        "the guest OS got its shutdown_timeout first ({took:?})"
    );
    assert!(took < Duration::from_secs(30), "the pass took {took:?}");
    let log = sim.request_log();
    let shutdown = positions(&log, "POST", "/qemu/302/status/shutdown");
    let stop = positions(&log, "POST", "/qemu/302/status/stop");
    let destroy = positions(&log, "DELETE", "/qemu/302?");
    assert_eq!(shutdown.len(), 1, "one graceful shutdown: {log:?}");
    assert_eq!(stop.len(), 1, "one fallback stop: {log:?}");
    assert_eq!(destroy.len(), 1, "one destroy: {log:?}");
    assert!(
        shutdown[0] < stop[0] && stop[0] < destroy[0],
        "shutdown, then stop, then destroy: {log:?}"
    );
}

#[tokio::test]
async fn a_guest_locked_after_discovery_is_requeued_and_deleted_once_the_lock_clears() {
    let sim = start_sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(310, "ci-backed-up").tags(&[CI_TAG]).running());
    let scratch = temp_dir();
    let dir = scratch.path();
    let metrics = Arc::new(Metrics::new());
    let janitor = janitor(&sim, dir, "", metrics.clone());

    // A backup starts between the janitor's status read and its stop: the backup task holds the
    // guest's config lock file, so the stop waits for it and fails with "got timeout".
    let locked_once = Arc::new(AtomicBool::new(false));
    let backup = {
        let sim = sim.clone();
        let locked_once = locked_once.clone();
        Arc::new(move |event: &Event| {
            if let Event::Attempted { key, .. } = event {
                if key.id == "310" && !locked_once.swap(true, Ordering::SeqCst) {
                    sim.hold_lock_file(310, Duration::from_millis(800));
                }
            }
        }) as Arc<dyn EventSink>
    };
    let (report, _) = pass(&janitor, Some(backup)).await;
    assert!(locked_once.load(Ordering::SeqCst), "the lock was taken mid-pass");
    let vm = item(&report, "vm", 310);
    assert!(is_deleted(vm), "{}", report.render_table());
    assert!(
        vm.requeues > 0,
        "the conflict was requeued:\n{}",
        report.render_table()
    );
    assert!(!sim.exists(310), "deleted once the lock cleared");
    let table = report.render_table();
    assert!(
        table.contains(&format!("{} conflicts requeued", vm.requeues)),
        "{table}"
    );
    let requeued = metric(
        &metrics,
        r#"cloud_janitor_conflicts_requeued_total{cloud="lab",kind="vm"}"#,
    );
    assert_eq!(requeued, Some(f64::from(vm.requeues)));
    let timeouts = sim
        .request_log()
        .iter()
        .filter(|(m, p, s)| m == "POST" && p.contains("/qemu/310/status/stop") && *s == 500)
        .count();
    assert!(timeouts > 0, "the stop met the held lock file");
}

#[tokio::test]
async fn protected_template_locked_and_untagged_guests_survive_and_are_reported_not_selected() {
    let sim = start_sim(ProxmoxSimConfig::default()).await;
    let ci = |spec: GuestSpec| spec.tags(&[CI_TAG, "job-4711"]);
    sim.add_guest(ci(GuestSpec::vm(320, "ci-leftover")).running());
    sim.add_guest(GuestSpec {
        protection: true,
        ..ci(GuestSpec::vm(321, "ci-keep-me")).running()
    });
    sim.add_guest(GuestSpec {
        template: true,
        ..ci(GuestSpec::vm(9001, "ci-template"))
    });
    sim.add_guest(GuestSpec {
        lock: Some("backup".into()),
        ..ci(GuestSpec::vm(322, "ci-being-backed-up"))
    });
    sim.add_guest(GuestSpec::vm(323, "prod-db").running());
    sim.add_guest(GuestSpec::container(324, "prod-dns").running());
    sim.add_guest(ci(GuestSpec::vm(325, "ci-far-away")).on("pve2"));
    sim.set_node_online("pve2", false);

    let scratch = temp_dir();
    let dir = scratch.path();
    let metrics = Arc::new(Metrics::new());
    let (report, _) = pass(&janitor(&sim, dir, "", metrics.clone()), None).await;
    let table = report.render_table();
    assert!(is_deleted(item(&report, "vm", 320)), "{table}");
    assert!(!sim.exists(320));
    let expected = [
        ("vm", 321, "never touched: protected"),
        ("vm", 9001, "never touched: template"),
        ("vm", 322, "never touched: locked"),
        ("vm", 325, "never touched: status unknown"),
        ("vm", 323, "not matched: tags_all"),
        ("container", 324, "not matched: tags_all"),
    ];
    let log = sim.request_log();
    for (kind, vmid, why) in expected {
        match &item(&report, kind, vmid).status {
            Outcome::Skipped(verdict) => assert_eq!(verdict.describe(), why, "{kind} {vmid}"),
            other => panic!("{kind} {vmid} should be skipped ({why}), is {other:?}\n{table}"),
        }
        assert!(sim.exists(vmid), "{kind} {vmid} survives");
        let writes: Vec<_> = log
            .iter()
            .filter(|(m, p, _)| m != "GET" && p.contains(&format!("/{vmid}")))
            .collect();
        assert!(writes.is_empty(), "{kind} {vmid} was written to: {writes:?}");
    }
    assert_eq!(report.result(), PassResult::Clean, "{table}");
    assert!(
        table.contains("1 deleted, 0 already gone, 0 left, 6 not selected"),
        "{table}"
    );
    let exposition = metrics.render();
    assert!(
        exposition
            .lines()
            .all(|l| !l.starts_with("cloud_janitor_leftover_resources{") || l.ends_with(" 0")),
        "no leftovers are reported: {exposition}"
    );
    assert_eq!(
        support::metric(&exposition, "cloud_janitor_passes_total", &[("result", "clean")]),
        Some(1.0)
    );
    assert_eq!(
        support::metric(
            &exposition,
            "cloud_janitor_deletes_total",
            &[("cloud", "lab"), ("kind", "vm"), ("outcome", "deleted")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_task_without_exit_status_for_a_while_is_still_polled_to_success() {
    let sim = start_sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(330, "ci-slow-node").tags(&[CI_TAG]).running());
    sim.set_task_quirks(TaskQuirks {
        exitstatus_lag: Duration::from_millis(400),
        unknown_for: Duration::from_millis(100),
    });
    let scratch = temp_dir();
    let dir = scratch.path();
    let (report, _) = pass(&janitor(&sim, dir, "", Arc::new(Metrics::new())), None).await;
    assert!(is_deleted(item(&report, "vm", 330)), "{}", report.render_table());
    assert_eq!(report.result(), PassResult::Clean);
    assert!(!sim.exists(330));
    let log = sim.request_log();
    let unknown = log
        .iter()
        .filter(|(_, p, s)| p.contains("/tasks/") && *s == 400)
        .count();
    let answered = log
        .iter()
        .filter(|(_, p, s)| p.contains("/tasks/") && *s == 200)
        .count();
    assert!(unknown > 0, "the tasks were unknown for a while: {log:?}");
    // Two tasks (stop, destroy), each stopped without an exit status for 400 ms, polled every
    // 20 ms at first: far more than one status read per task.
    assert!(
        answered >= 6,
        "stopped-without-exitstatus was polled again ({answered})"
    );
}

#[tokio::test]
async fn a_failed_task_leaves_the_guest_with_the_task_text_in_the_report() {
    let sim = start_sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(340, "ci-broken-storage").tags(&[CI_TAG]));
    sim.fail_next_task(340, "storage 'local-lvm' is not online");
    let scratch = temp_dir();
    let dir = scratch.path();
    let metrics = Arc::new(Metrics::new());
    let (report, _) = pass(&janitor(&sim, dir, "", metrics.clone()), None).await;
    let table = report.render_table();
    assert!(sim.exists(340), "the guest stays");
    assert_eq!(report.result(), PassResult::Leftovers, "{table}");
    assert_eq!(report.result().exit_code(), 1);
    let (left, reason) = report.left().next().expect("one leftover");
    assert_eq!(left.key.id, "340");
    assert_eq!(reason.label(), "permanent_error");
    assert!(
        reason.to_string().contains("storage 'local-lvm' is not online"),
        "{reason}"
    );
    assert!(
        table.contains("Left in place:")
            && table.contains("ci-broken-storage")
            && table.contains("storage 'local-lvm' is not online"),
        "{table}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"cloud_janitor_leftover_resources{cloud="lab",kind="vm",reason="permanent_error"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"cloud_janitor_deletes_total{cloud="lab",kind="vm",outcome="failed"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_orphan_disk_is_deleted_only_on_its_second_sighting_even_across_a_restart() {
    let sim = start_sim(ProxmoxSimConfig::default()).await;
    let orphan = sim.add_volume("pve1", "local-lvm", "vm-999-disk-0");
    let not_ours = sim.add_volume("pve1", "local-lvm", "vm-500-disk-0");
    let scratch = temp_dir();
    let dir = scratch.path();
    let history_file = dir.join("history.db");

    // First pass: seen once, kept.
    let first = janitor(&sim, dir, "", Arc::new(Metrics::new()));
    let (report, _) = pass(&first, None).await;
    let table = report.render_table();
    let disk = |report: &PassReport, name: &str| {
        report
            .items
            .iter()
            .find(|i| i.key.kind.as_str() == "disk" && i.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("disk {name} is in the report:\n{}", report.render_table()))
    };
    match disk(&report, "vm-999-disk-0").status {
        Outcome::Skipped(verdict) => assert_eq!(verdict.describe(), "seen in 1 of 2 passes needed"),
        other => panic!("the orphan is kept on its first sighting, not {other:?}\n{table}"),
    }
    assert!(sim.disk_exists(&orphan), "not deleted on the first sighting");
    assert!(history_file.is_file(), "the sighting is persisted");
    drop(first);

    // A restart: a new janitor from the same config and history file.
    let second = janitor(&sim, dir, "", Arc::new(Metrics::new()));
    let (report, _) = pass(&second, None).await;
    let table = report.render_table();
    assert!(
        is_deleted(&disk(&report, "vm-999-disk-0")),
        "deleted on its second sighting:\n{table}"
    );
    assert!(!sim.disk_exists(&orphan));
    match disk(&report, "vm-500-disk-0").status {
        Outcome::Skipped(verdict) => assert_eq!(verdict.describe(), "not matched: untaggable_name_pattern"),
        other => panic!("a disk outside the pattern is never selected, not {other:?}\n{table}"),
    }
    assert!(sim.disk_exists(&not_ours));
    assert!(table.contains("1 deleted"), "{table}");
}

#[tokio::test]
async fn the_default_brings_guests_down_with_stop_before_destroy_never_a_bare_shutdown() {
    let sim = start_sim(ProxmoxSimConfig::default()).await;
    sim.add_guest(GuestSpec::vm(350, "ci-k8s-node").tags(&[CI_TAG]).running());
    sim.add_guest(
        GuestSpec::container(351, "ci-runner")
            .tags(&[CI_TAG])
            .running()
            .on("pve2"),
    );
    let scratch = temp_dir();
    let dir = scratch.path();
    let (report, _) = pass(&janitor(&sim, dir, "", Arc::new(Metrics::new())), None).await;
    assert_eq!(report.result(), PassResult::Clean, "{}", report.render_table());
    assert!(is_deleted(item(&report, "vm", 350)));
    assert!(is_deleted(item(&report, "container", 351)));
    assert!(!sim.exists(350) && !sim.exists(351));
    let log = sim.request_log();
    for path in ["/nodes/pve1/qemu/350", "/nodes/pve2/lxc/351"] {
        let stop = positions(&log, "POST", &format!("{path}/status/stop"));
        let destroy = positions(&log, "DELETE", &format!("{path}?"));
        assert_eq!(stop.len(), 1, "{path}: one stop: {log:?}");
        assert_eq!(destroy.len(), 1, "{path}: one destroy: {log:?}");
        assert!(stop[0] < destroy[0], "{path}: stop precedes destroy: {log:?}");
        let (_, destroy_path, _) = &log[destroy[0]];
        assert!(
            destroy_path.contains("purge=1") && destroy_path.contains("destroy-unreferenced-disks=1"),
            "{destroy_path}"
        );
    }
    let shutdowns = positions(&log, "POST", "/status/shutdown");
    assert!(shutdowns.is_empty(), "no shutdown by default: {log:?}");
}
