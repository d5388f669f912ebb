//! Safety by property. Each case builds a random OpenStack project and a random Proxmox VE cluster
//! in the simulators through their direct APIs (kinds, references, tags, ages, names, the guarded
//! kinds), writes a janitor config with random rules for both, and runs real passes over HTTP: one
//! under a random fault schedule (409, 5xx with and without `Retry-After`, 429, latency, a
//! connection that hangs up, an answer cut short after the API acted), then one after the faults
//! stop. From the simulators' request logs and state it asserts:
//! 1. no write ever reaches a resource the rules do not pick, or a guarded one;
//! 2. a pass without injected faults meets no refusal: no 409, no "in use", no error at all but a
//!    404 to a status read of what is gone;
//! 3. after the pass that follows the faults, every selected resource is gone but those held, and
//!    each held one is held by a real user that stays (or is a locked server);
//! 4. the report, the metrics and the pass result agree with what the simulators hold.
//!
//! What is selected and who uses whom comes from how the test built the clouds, never from the
//! janitor's code. `PROPTEST_CASES` sets the number of cases (256 by default); failures shrinking
//! found are kept in `tests/properties/main.proptest-regressions` and run first.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod build;
mod world;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use build::*;
use cloud_janitor::config::Config;
use cloud_janitor::history::Access;
use cloud_janitor::metrics::Metrics;
use cloud_janitor::outcome::{LeftReason, Outcome};
use cloud_janitor::pass::Janitor;
use cloud_janitor::report::{PassReport, PassResult};
use cloud_janitor::selection::Verdict;
use cloud_janitor::setup::build_janitor;
use cloud_janitor_sim::faults::{Breakage, FaultRule};
use cloud_janitor_sim::openstack::{NewServer, OpenStackSim, SimConfig};
use cloud_janitor_sim::proxmox::{unix_now, GuestSpec, GuestType, ProxmoxSim, ProxmoxSimConfig};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use support::{
    metric, openstack_write_target, proxmox_cloud_table, proxmox_guest_of, proxmox_write_target, temp_dir,
    write, WriteTarget,
};
use tokio_util::sync::CancellationToken;
use world::*;

/// The cloud names in the janitor's config.
const OS: &str = "os";
const PVE: &str = "pve";
/// The selection's tags.
const CI: &str = "ci-job";
const KEEP: &str = "keep";
/// How old "old" resources are, and the `min_age` when the rules have one.
const OLD: chrono::Duration = chrono::Duration::hours(3);
const MIN_AGE: &str = "1h";
/// The pass timeout in the config: every pass must end before it (and a little for the last call).
const PASS_TIMEOUT: Duration = Duration::from_secs(20);

fn config() -> ProptestConfig {
    ProptestConfig {
        // `cases` comes from PROPTEST_CASES, 256 when unset.
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        max_shrink_iters: 1024,
        ..ProptestConfig::default()
    }
}

/// One runtime for every case: starting one per case would cost more than the case.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

// ---------------------------------------------------------------------------------------------
// Passes.
// ---------------------------------------------------------------------------------------------

/// Shuts both simulators down when the case ends, however it ends.
struct Running(OpenStackSim, ProxmoxSim);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.shutdown();
        self.1.shutdown();
    }
}

/// The janitor config for both simulators: the cases' rules, short waits, quick retries.
fn janitor(
    world: &World,
    openstack: &OpenStackSim,
    proxmox: &ProxmoxSim,
    dir: &std::path::Path,
) -> (Janitor, Arc<Metrics>) {
    let clouds_yaml = write(dir, "clouds.yaml", &openstack.clouds_yaml());
    let proxmox_table = proxmox_cloud_table(
        PVE,
        proxmox,
        dir,
        "request_timeout = \"5s\"\npoll_interval = \"5ms\"\ntask_timeout = \"500ms\"",
    );
    let text = format!(
        r#"schedule = "0 0 * * * *"
listen = "127.0.0.1:0"
pass_timeout = "{pass_timeout}s"

[retry]
max_attempts = 4
base_delay = "1ms"
max_delay = "4ms"

[waits]
busy_timeout = "60ms"
delete_timeout = "500ms"
poll_interval = "5ms"

[[clouds]]
name = "{OS}"
type = "openstack"
cloud = "sim"
clouds_yaml = "{clouds_yaml}"
request_timeout = "5s"
page_size = {page_size}
{openstack_select}
{proxmox_table}{proxmox_select}"#,
        pass_timeout = PASS_TIMEOUT.as_secs(),
        clouds_yaml = clouds_yaml.display(),
        page_size = world.openstack.page_size,
        openstack_select = world.openstack.rules.select_table("^ci-"),
        proxmox_select = world.proxmox.rules.select_table("^vm-99[0-9]-disk-"),
    );
    let path = write(dir, "janitor.toml", &text);
    let config = Config::load_with_env(&path, HashMap::new()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let janitor = build_janitor(&config, metrics.clone(), Access::Exclusive).unwrap();
    (janitor, metrics)
}

/// One pass, which must end within the pass timeout (and one request timeout for the call in
/// flight at the deadline).
async fn pass(janitor: &Janitor) -> PassReport {
    let bound = PASS_TIMEOUT + Duration::from_secs(5);
    tokio::time::timeout(bound, janitor.run_pass(CancellationToken::new(), None))
        .await
        .unwrap_or_else(|_| panic!("the pass did not end within {bound:?}"))
}

/// The requests each simulator served since the last call, forgotten there.
fn take_logs(built: &Built) -> Logs {
    let logs = Logs {
        openstack: built.openstack.request_log(),
        proxmox: built.proxmox.request_log(),
    };
    built.openstack.clear_request_log();
    built.proxmox.clear_request_log();
    logs
}

struct Logs {
    openstack: Vec<(String, String, u16)>,
    proxmox: Vec<(String, String, u16)>,
}

async fn check(world: World) {
    let openstack = OpenStackSim::start(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            server_delete_delay: Duration::from_millis(30),
            volume_delete_delay: Duration::from_millis(10),
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let proxmox = ProxmoxSim::start(
        "127.0.0.1:0".parse().unwrap(),
        ProxmoxSimConfig {
            task_duration: Duration::from_millis(5),
            lock_wait: Duration::from_millis(20),
            ..ProxmoxSimConfig::default()
        },
    )
    .await
    .unwrap();
    let _running = Running(openstack.clone(), proxmox.clone());
    let mut built = Built {
        openstack: openstack.clone(),
        proxmox: proxmox.clone(),
        known: BTreeMap::new(),
    };
    build_openstack(&world.openstack, &mut built);
    build_proxmox(&world.proxmox, &mut built);
    let dir = temp_dir();
    let (janitor, metrics) = janitor(&world, &openstack, &proxmox, dir.path());
    take_logs(&built);

    // The pass under the faults.
    for fault in &world.faults {
        match fault.target {
            Target::OpenStack => openstack.faults().add(fault.rule()),
            Target::Proxmox => proxmox.faults().add(fault.rule()),
        }
    }
    let first = pass(&janitor).await;
    let first_logs = take_logs(&built);
    only_the_selection_is_written(&built, &first_logs, &first);
    if world.faults.is_empty() {
        nothing_is_refused(&built, &first_logs, &first);
    }

    // The pass after the faults stop.
    openstack.faults().clear();
    proxmox.faults().clear();
    let before = metrics.render();
    let last = pass(&janitor).await;
    let last_logs = take_logs(&built);
    only_the_selection_is_written(&built, &last_logs, &last);
    nothing_is_refused(&built, &last_logs, &last);
    let unconfirmed = unconfirmed_disks_allowed(&built, &world, &last);
    the_job_is_finished(&built, &last, &unconfirmed);
    the_report_and_metrics_agree(&built, &last, &unconfirmed, &before, &metrics.render());
}

// ---------------------------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------------------------

/// Property 1: every write names a selected resource (an interface's removal: its router's).
fn only_the_selection_is_written(built: &Built, logs: &Logs, report: &PassReport) {
    let selected = |id: &str| built.known.get(id).is_some_and(|k| k.selected);
    for (method, path, _) in &logs.openstack {
        match openstack_write_target(method, path) {
            None => {}
            Some(WriteTarget::OpenStack { id, .. }) if selected(&id) => {}
            Some(other) => panic!(
                "{method} {path} ({other:?}) writes to what the rules do not pick\n{}",
                report.render_table()
            ),
        }
    }
    for (method, path, _) in &logs.proxmox {
        match proxmox_write_target(method, path) {
            None => {}
            Some(WriteTarget::Guest(vmid)) if selected(&vmid.to_string()) => {}
            Some(WriteTarget::Volume { node, volid })
                if selected(&volid) || selected(&format!("{node}/{volid}")) => {}
            Some(other) => panic!(
                "{method} {path} ({other:?}) writes to what the rules do not pick\n{}",
                report.render_table()
            ),
        }
    }
}

/// Property 2: without injected faults nothing is refused: every answer is a success, but a read of
/// what went meanwhile (a 404; Proxmox VE's 500 "does not exist" for a guest that is gone).
fn nothing_is_refused(built: &Built, logs: &Logs, report: &PassReport) {
    let success = |status: &u16| (200..300).contains(status);
    let openstack = logs
        .openstack
        .iter()
        .filter(|(method, _, status)| !(success(status) || (method == "GET" && *status == 404)));
    let proxmox = logs.proxmox.iter().filter(|(method, path, status)| {
        let read_of_gone_guest = method == "GET"
            && *status == 500
            && proxmox_guest_of(path).is_some_and(|vmid| !built.proxmox.exists(vmid));
        !(success(status) || read_of_gone_guest)
    });
    let refused: Vec<String> = openstack
        .chain(proxmox)
        .map(|(method, path, status)| format!("{status} {method} {path}"))
        .collect();
    assert!(
        refused.is_empty(),
        "refused without a fault: {refused:#?}\n{}",
        report.render_table()
    );
}

/// Orphan disks the last pass may still leave unconfirmed: an orphan needs two passes in a row that
/// saw it, and a fault in the first pass may have kept it from being seen there (its storage not
/// listed, or the cluster's listing given up).
fn unconfirmed_disks_allowed(built: &Built, world: &World, last: &PassReport) -> BTreeSet<String> {
    let disturbed = world
        .faults
        .iter()
        .any(|f| f.target == Target::Proxmox && (f.status.is_some() || f.breakage.is_some()));
    if !disturbed {
        return BTreeSet::new();
    }
    built
        .known
        .values()
        .filter(|k| k.kind == "disk")
        .filter(|k| {
            last.items.iter().any(|item| {
                item.key.cloud == PVE
                    && item.key.id == k.id
                    && item.status == Outcome::Skipped(Verdict::Unconfirmed { seen: 1, required: 2 })
            })
        })
        .map(|k| k.id.clone())
        .collect()
}

/// The report's line for a known resource.
fn item<'a>(report: &'a PassReport, known: &Known) -> Option<&'a cloud_janitor::report::ReportItem> {
    report
        .items
        .iter()
        .find(|i| i.key.cloud == known.cloud && i.key.id == known.id && i.key.kind.as_str() == known.kind)
}

/// Property 3: after the pass that follows the faults, what the model says goes is gone; the rest
/// is there, and each selected one stays for a true reason: a user that stays, or a lock.
fn the_job_is_finished(built: &Built, report: &PassReport, unconfirmed: &BTreeSet<String>) {
    let table = report.render_table();
    let mut memo = HashMap::new();
    for known in built.known.values() {
        let exists = built.exists(known);
        let goes = built.goes(&known.id, &mut memo);
        let what = format!("{} {} {}", known.cloud, known.kind, known.id);
        if unconfirmed.contains(&known.id) {
            assert!(exists, "{what}: unconfirmed, yet gone\n{table}");
            continue;
        }
        assert_eq!(exists, !goes, "{what}: {known:?} exists: {exists}\n{table}");
        if !known.selected || goes {
            continue;
        }
        let reason = item(report, known)
            .and_then(|i| i.status.left_reason())
            .unwrap_or_else(|| panic!("{what} stays without a reason in the report\n{table}"));
        match reason {
            LeftReason::InUse { by } | LeftReason::Blocked { by } => {
                let user = built.known.get(&by.id);
                assert!(
                    known.users.contains(&by.id) && user.is_some_and(|u| built.exists(u)),
                    "{what} held by {by}, which does not use it or is gone; users {:?}\n{table}",
                    known.users
                );
            }
            LeftReason::Busy { .. } if known.locked => {}
            other => panic!("{what} left for {other:?} in a pass without faults\n{table}"),
        }
    }
}

/// Property 4: every report line matches the simulators, the leftover gauges count the report's
/// leftovers and the model's survivors, the delete counters moved by the report's deletes, and the
/// result says whether anything selected stays.
fn the_report_and_metrics_agree(
    built: &Built,
    report: &PassReport,
    unconfirmed: &BTreeSet<String>,
    before: &str,
    after: &str,
) {
    let table = report.render_table();
    for line in &report.items {
        let Some(known) = built
            .known
            .get(&line.key.id)
            .filter(|k| k.cloud == line.key.cloud)
        else {
            // Something the test did not make: what every cloud has (the default group, the
            // guarded networks' subnets). Never selected.
            assert!(
                matches!(line.status, Outcome::Skipped(_)),
                "{} {}: {:?}\n{table}",
                line.key.cloud,
                line.key,
                line.status
            );
            continue;
        };
        let exists = built.exists(known);
        let agrees = match &line.status {
            Outcome::Deleted | Outcome::AlreadyGone | Outcome::RemovedWithOwner => !exists,
            Outcome::Left(_) => exists,
            Outcome::Skipped(_) => exists || known.owner.is_some(),
            Outcome::WouldDelete => false,
        };
        assert!(
            agrees,
            "{} {}: {:?} but exists: {exists}\n{table}",
            line.key.cloud, line.key, line.status
        );
    }

    let mut left: BTreeMap<(String, String), BTreeMap<String, f64>> = BTreeMap::new();
    let mut deleted: BTreeMap<(String, String), f64> = BTreeMap::new();
    for line in &report.items {
        let at = (line.key.cloud.clone(), line.key.kind.as_str().to_string());
        match &line.status {
            Outcome::Left(reason) => {
                *left
                    .entry(at)
                    .or_default()
                    .entry(reason.label().to_string())
                    .or_default() += 1.0
            }
            Outcome::Deleted => *deleted.entry(at).or_default() += 1.0,
            _ => {}
        }
    }
    let mut staying: BTreeMap<(String, String), f64> = BTreeMap::new();
    for known in built.known.values() {
        if known.selected && !unconfirmed.contains(&known.id) && built.exists(known) {
            *staying
                .entry((known.cloud.to_string(), known.kind.to_string()))
                .or_default() += 1.0;
        }
    }
    let kinds: BTreeSet<(String, String)> = left
        .keys()
        .chain(staying.keys())
        .chain(deleted.keys())
        .cloned()
        .collect();
    for (cloud, kind) in kinds {
        let at = (cloud.clone(), kind.clone());
        let reasons = left.get(&at).cloned().unwrap_or_default();
        let mut gauged = 0.0;
        for label in [
            "in_use",
            "blocked",
            "cycle",
            "conflict",
            "permanent_error",
            "retries_exhausted",
            "busy",
            "delete_cap",
            "pass_deadline",
            "shutdown",
        ] {
            let value = metric(
                after,
                "cloud_janitor_leftover_resources",
                &[("cloud", &cloud), ("kind", &kind), ("reason", label)],
            )
            .unwrap_or(0.0);
            assert_eq!(
                value,
                reasons.get(label).copied().unwrap_or(0.0),
                "{cloud} {kind} {label}\n{table}"
            );
            gauged += value;
        }
        assert_eq!(
            gauged,
            staying.get(&at).copied().unwrap_or(0.0),
            "{cloud} {kind} staying\n{table}"
        );
        let counter = |exposition: &str| {
            metric(
                exposition,
                "cloud_janitor_deletes_total",
                &[("cloud", &cloud), ("kind", &kind), ("outcome", "deleted")],
            )
            .unwrap_or(0.0)
        };
        assert_eq!(
            counter(after) - counter(before),
            deleted.get(&at).copied().unwrap_or(0.0),
            "{cloud} {kind} deletes counted\n{table}"
        );
    }

    let anything_stays = staying.values().any(|&n| n > 0.0);
    let expected = if anything_stays {
        PassResult::Leftovers
    } else {
        PassResult::Clean
    };
    assert_eq!(report.result(), expected, "{table}");
    let passes = |exposition: &str| {
        metric(
            exposition,
            "cloud_janitor_passes_total",
            &[("result", expected.as_str())],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(passes(after) - passes(before), 1.0);
    for cloud in [OS, PVE] {
        assert_eq!(
            metric(after, "cloud_janitor_cloud_up", &[("cloud", cloud)]),
            Some(1.0)
        );
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every property on one random world per case.
    #[test]
    fn passes_write_only_the_selection_in_order_finish_after_faults_and_report_the_truth(world in world()) {
        runtime().block_on(check(world));
    }
}
