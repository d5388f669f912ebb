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

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_janitor::events::{Event, EventSink};
use cloud_janitor::outcome::{LeftReason, Outcome};
use cloud_janitor::pass::Janitor;
use cloud_janitor::report::{PassReport, PassResult, ReportItem};
use cloud_janitor::selection::Verdict;
use cloud_janitor_sim::faults::{Breakage, FaultRule};
use cloud_janitor_sim::openstack::Seeded;
use cloud_janitor_sim::proxmox::{GuestSpec, ProxmoxSim, ProxmoxSimConfig, TaskQuirks};
use support::{
    janitor_from, openstack_write_target, proxmox_write_target, temp_dir, write, Cloud, WriteTarget,
};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// The pass timeout of every bench's config: each pass here ends far sooner; one that does not is
/// a hang.
const PASS_TIMEOUT: Duration = Duration::from_secs(30);

/// The request timeout of every bench's config, unless a row sets its own: the most a pass may run
/// past its deadline (the call in flight then).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The tag the Proxmox VE bench's CI guests carry.
const CI_TAG: &str = "ci-job";

/// The simulator a bench runs against.
enum Sim {
    /// Seeded like the demo.
    OpenStack(Box<Cloud>),
    /// With the directory of its token secret, removed with it.
    Proxmox { sim: ProxmoxSim, _dir: TempDir },
}

/// A simulated cloud, the janitor for it, and what the five checks compare against, by id with the
/// simulator's kind word.
struct Bench {
    sim: Sim,
    janitor: Janitor,
    /// The config's `pass_timeout`.
    pass_timeout: Duration,
    /// What the rules pick and a correct cleanup deletes.
    selected: BTreeMap<String, &'static str>,
    /// What the rules pick but a correct cleanup leaves, for good: in use, locked, and what those
    /// hold.
    held: BTreeMap<String, &'static str>,
    /// What no pass may touch: unselected or guarded.
    untouchable: BTreeMap<String, &'static str>,
}

/// Which selected resources the fault may keep this pass.
enum Stay {
    /// None: everything deletable is deleted despite the fault.
    Nothing,
    /// These, and what they hold (reported blocked).
    These(Vec<String>),
    /// Any of them.
    Any,
}

/// What a row expects of the pass under its fault.
struct Expect {
    /// The cloud cannot be listed this pass: its error in the report contains this, and nothing
    /// is touched.
    listing_fails: Option<&'static str>,
    stay: Stay,
    /// The reasons a kept resource may be reported with (besides `blocked` for what it holds).
    reasons: &'static [&'static str],
    /// Selected resources the fault puts under a guard this pass: reported not selected, untouched.
    guarded: Vec<String>,
}

impl Expect {
    /// The fault changes nothing: every deletable resource goes.
    fn all_deleted() -> Self {
        Expect::kept(Stay::Nothing, &[])
    }

    /// The cloud's listing fails, naming `text`.
    fn unlisted(text: &'static str) -> Self {
        Expect {
            listing_fails: Some(text),
            ..Expect::kept(Stay::Any, &[])
        }
    }

    /// `stay` may stay, each reported with one of `reasons`.
    fn kept(stay: Stay, reasons: &'static [&'static str]) -> Self {
        Expect {
            listing_fails: None,
            stay,
            reasons,
            guarded: Vec::new(),
        }
    }
}

/// What a row's pass under the fault produced: its report and the requests the simulator served.
struct Faulted {
    report: PassReport,
    log: Vec<(String, String, u16)>,
    /// The fault rules not used up by the pass.
    rules_left: Vec<FaultRule>,
}

/// Records the executor's events, for rows that check a decision (the delay a `Retry-After` set).
#[derive(Default)]
struct Events(Mutex<Vec<Event>>);

impl EventSink for Events {
    fn on_event(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Bench {
    /// The simulated OpenStack seeded like the demo, and its janitor with `env` over the quick
    /// defaults.
    async fn openstack(env: &[(&str, &str)]) -> Bench {
        Bench::openstack_within(PASS_TIMEOUT, env).await
    }

    /// [`Bench::openstack`] with `pass_timeout` as the config's.
    async fn openstack_within(pass_timeout: Duration, env: &[(&str, &str)]) -> Bench {
        let cloud = Cloud::start(true).await;
        let seeded = cloud.demo.seeded.clone().unwrap();
        let request_timeout = format!("{}s", REQUEST_TIMEOUT.as_secs());
        let pass_timeout_text = format!("{}ms", pass_timeout.as_millis());
        let mut environment = vec![
            ("CLOUD_JANITOR_PASS_TIMEOUT", pass_timeout_text.as_str()),
            ("CLOUD_JANITOR_RETRY__MAX_ATTEMPTS", "4"),
            ("CLOUD_JANITOR_WAITS__DELETE_TIMEOUT", "5s"),
            (
                "CLOUD_JANITOR_CLOUDS__SIM__REQUEST_TIMEOUT",
                request_timeout.as_str(),
            ),
        ];
        environment.extend_from_slice(env);
        let (janitor, _) = janitor_from(&cloud.config("janitor.toml", ""), &environment);
        let held: BTreeMap<String, &'static str> = seeded
            .expected_left()
            .into_iter()
            .map(|(kind, id)| (id, kind))
            .collect();
        let mut selected: BTreeMap<String, &'static str> = seeded
            .tagged()
            .into_iter()
            .filter(|(_, id)| !held.contains_key(id))
            .map(|(kind, id)| (id, kind))
            .collect();
        // The demo's job with a load balancer goes too (its VIP port with the load balancer); its
        // idle untagged floating IP is only a suspected leak, never deleted by default.
        let job = cloud.demo.load_balancer_job.clone().unwrap();
        selected.extend([
            (job.load_balancer, "load_balancer"),
            (job.network, "network"),
            (job.subnet, "subnet"),
            (job.security_group, "security_group"),
        ]);
        let mut untouchable: BTreeMap<String, &'static str> = seeded
            .survivors()
            .into_iter()
            .map(|(kind, id)| (id, kind))
            .collect();
        untouchable.insert(cloud.demo.idle_floating_ip.clone().unwrap(), "floating_ip");
        Bench {
            sim: Sim::OpenStack(Box::new(cloud)),
            janitor,
            pass_timeout,
            selected,
            held,
            untouchable,
        }
    }

    /// A small Proxmox VE cluster: three CI guests to delete (a running VM, a stopped VM on the other
    /// node and shared storage, a container), and an untagged VM, a tagged template and a tagged
    /// protected VM that must stay; `cloud_extra` is added to the cloud's table.
    async fn proxmox(config: ProxmoxSimConfig, cloud_extra: &str) -> Bench {
        let sim = ProxmoxSim::start(([127, 0, 0, 1], 0).into(), config)
            .await
            .unwrap();
        let ci = |spec: GuestSpec| spec.tags(&[CI_TAG]);
        sim.add_guest(ci(GuestSpec::vm(101, "ci-vm-1")).running());
        sim.add_guest(GuestSpec {
            disks: vec!["ceph".into()],
            ..ci(GuestSpec::vm(102, "ci-vm-2")).on("pve2")
        });
        sim.add_guest(ci(GuestSpec::container(201, "ci-ct-1")));
        sim.add_guest(GuestSpec::vm(110, "prod-db").running());
        sim.add_guest(GuestSpec {
            template: true,
            ..ci(GuestSpec::vm(9000, "ci-template"))
        });
        sim.add_guest(GuestSpec {
            protection: true,
            ..ci(GuestSpec::vm(105, "ci-keep"))
        });
        let dir = temp_dir();
        let secret = write(dir.path(), "token-secret", &sim.token_secret());
        let config = format!(
            r#"schedule = "0 0 * * * *"
listen = "127.0.0.1:0"
pass_timeout = "{pass_timeout}s"

[retry]
max_attempts = 4

[waits]
busy_timeout = "300ms"

[[clouds]]
name = "lab"
type = "proxmox"
url = "{url}"
token_id = "{token_id}"
token_secret_file = "{secret}"
poll_interval = "20ms"
task_timeout = "1s"
request_timeout = "{request_timeout}s"
{cloud_extra}

[clouds.select]
tags_all = ["{CI_TAG}"]
"#,
            pass_timeout = PASS_TIMEOUT.as_secs(),
            request_timeout = REQUEST_TIMEOUT.as_secs(),
            url = sim.url(),
            token_id = sim.token_id(),
            secret = secret.display(),
        );
        let (janitor, _) = janitor_from(&write(dir.path(), "janitor.toml", &config), &[]);
        let ids = |vmids: &[u32]| vmids.iter().map(|v| (v.to_string(), "guest")).collect();
        Bench {
            sim: Sim::Proxmox { sim, _dir: dir },
            janitor,
            pass_timeout: PASS_TIMEOUT,
            selected: ids(&[101, 102, 201]),
            held: BTreeMap::new(),
            untouchable: ids(&[110, 9000, 105]),
        }
    }

    /// The Proxmox VE bench with the simulator's defaults but quick tasks.
    async fn proxmox_default() -> Bench {
        let config = ProxmoxSimConfig {
            task_duration: Duration::from_millis(20),
            lock_wait: Duration::from_millis(100),
            ..ProxmoxSimConfig::default()
        };
        Bench::proxmox(config, "").await
    }

    fn openstack_sim(&self) -> &Cloud {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud,
            Sim::Proxmox { .. } => panic!("an OpenStack bench"),
        }
    }

    /// What the OpenStack bench's seed made.
    fn seeded(&self) -> &Seeded {
        self.openstack_sim().demo.seeded.as_ref().expect("a seeded cloud")
    }

    fn proxmox_sim(&self) -> &ProxmoxSim {
        match &self.sim {
            Sim::Proxmox { sim, .. } => sim,
            Sim::OpenStack(..) => panic!("a Proxmox VE bench"),
        }
    }

    fn inject(&self, rule: FaultRule) {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.faults().add(rule),
            Sim::Proxmox { sim, .. } => sim.faults().add(rule),
        }
    }

    /// The fault rules not used up.
    fn rules_left(&self) -> Vec<FaultRule> {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.faults().rules(),
            Sim::Proxmox { sim, .. } => sim.faults().rules(),
        }
    }

    fn clear_faults(&self) {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.faults().clear(),
            Sim::Proxmox { sim, .. } => sim.faults().clear(),
        }
    }

    /// The requests served, as `(method, path, status)`.
    fn log(&self) -> Vec<(String, String, u16)> {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.request_log(),
            Sim::Proxmox { sim, .. } => sim.request_log(),
        }
    }

    fn clear_log(&self) {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.clear_request_log(),
            Sim::Proxmox { sim, .. } => sim.clear_request_log(),
        }
    }

    fn exists(&self, id: &str, kind: &str) -> bool {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.exists(kind, id),
            Sim::Proxmox { sim, .. } => sim.exists(id.parse().unwrap()),
        }
    }

    /// The id each write request of `log` names; `None` for a write that names no resource.
    fn written(&self, log: &[(String, String, u16)]) -> Vec<(String, Option<String>)> {
        log.iter()
            .filter_map(|(method, path, _)| {
                let target = match &self.sim {
                    Sim::OpenStack(..) => openstack_write_target(method, path),
                    Sim::Proxmox { .. } => proxmox_write_target(method, path),
                }?;
                let id = match target {
                    WriteTarget::OpenStack { id, .. } => Some(id),
                    WriteTarget::Guest(vmid) => Some(vmid.to_string()),
                    WriteTarget::Volume { volid, .. } => Some(volid),
                    WriteTarget::Other(_) => None,
                };
                Some((format!("{method} {path}"), id))
            })
            .collect()
    }

    /// One pass, which must end before its deadline and the call then in flight (check 1).
    async fn pass(&self, watch: Option<Arc<dyn EventSink>>) -> PassReport {
        let bound = self.pass_timeout + REQUEST_TIMEOUT;
        let started = Instant::now();
        let report = tokio::time::timeout(bound, self.janitor.run_pass(CancellationToken::new(), watch))
            .await
            .unwrap_or_else(|_| panic!("the pass did not end within {bound:?}"));
        assert!(started.elapsed() < bound, "{:?}", started.elapsed());
        report
    }

    /// Check 2: no write in `log` names anything outside the selection, and every untouchable
    /// resource is still there.
    fn untouched(&self, report: &PassReport, log: &[(String, String, u16)]) {
        for (request, id) in self.written(log) {
            let picked = id
                .as_deref()
                .is_some_and(|id| self.selected.contains_key(id) || self.held.contains_key(id));
            assert!(
                picked,
                "{request} writes outside the selection\n{}",
                report.render_table()
            );
        }
        for (id, kind) in &self.untouchable {
            assert!(
                self.exists(id, kind),
                "{kind} {id} is gone\n{}",
                report.render_table()
            );
        }
    }

    /// Checks 3 and 4 for a pass whose listing succeeded: each selected resource is gone, or the
    /// fault may keep it and the report says why; held ones stay, reported.
    fn deleted_or_reported(&self, report: &PassReport, expect: &Expect) {
        let table = report.render_table();
        for (id, kind) in &self.selected {
            if !self.exists(id, kind) {
                continue;
            }
            if expect.guarded.contains(id) {
                let line = item(report, id).unwrap_or_else(|| panic!("{kind} {id} unreported\n{table}"));
                assert!(
                    matches!(line.status, Outcome::Skipped(Verdict::Guarded(_))),
                    "{kind} {id}: {:?}\n{table}",
                    line.status
                );
                continue;
            }
            let reason =
                left_reason(report, id).unwrap_or_else(|| panic!("{kind} {id} stays unreported\n{table}"));
            let may_stay = match &expect.stay {
                Stay::Nothing => false,
                Stay::These(ids) => ids.contains(id),
                Stay::Any => true,
            };
            let blocked_by_a_survivor = matches!(
                reason,
                LeftReason::Blocked { by } if self.exists(&by.id, self.kind_of(&by.id))
            );
            assert!(
                blocked_by_a_survivor || (may_stay && expect.reasons.contains(&reason.label())),
                "{kind} {id} stays: {reason}\n{table}"
            );
        }
        self.held_stay(report, expect.reasons);
    }

    /// What `id` is, for a lookup in the simulator: a port when the bench does not list it (a port
    /// Nova made, a router interface).
    fn kind_of(&self, id: &str) -> &'static str {
        [&self.selected, &self.held, &self.untouchable]
            .into_iter()
            .find_map(|known| known.get(id).copied())
            .unwrap_or("port")
    }

    /// The held resources stay, reported as held (or with one of `also`, a fault's reasons).
    fn held_stay(&self, report: &PassReport, also: &[&str]) {
        for (id, kind) in &self.held {
            assert!(self.exists(id, kind), "held {kind} {id} is gone");
            let reason = left_reason(report, id)
                .unwrap_or_else(|| panic!("held {kind} {id} unreported\n{}", report.render_table()));
            let label = reason.label();
            assert!(
                ["busy", "blocked", "in_use"].contains(&label) || also.contains(&label),
                "held {kind} {id}: {reason}\n{}",
                report.render_table()
            );
        }
    }

    /// The five checks around one fault, injected before this is called: a pass under it, then
    /// `clear` ends it (as well as every fault rule) and a pass finishes the job.
    async fn row(&self, expect: Expect, clear: impl FnOnce()) -> Faulted {
        self.row_watched(expect, clear, None).await
    }

    /// [`Bench::row`], with `watch` hearing the executor's events in the pass under the fault.
    async fn row_watched(
        &self,
        expect: Expect,
        clear: impl FnOnce(),
        watch: Option<Arc<dyn EventSink>>,
    ) -> Faulted {
        self.clear_log();
        let report = self.pass(watch).await;
        let log = self.log();
        self.untouched(&report, &log);
        match expect.listing_fails {
            Some(text) => {
                assert_eq!(report.result(), PassResult::Failed, "{}", report.render_table());
                let error = report.clouds[0].error.clone().unwrap_or_default();
                assert!(error.contains(text), "`{text}` not in: {error}");
                assert_eq!(self.written(&log), Vec::new(), "nothing is touched");
            }
            None => self.deleted_or_reported(&report, &expect),
        }

        let rules_left = self.rules_left();
        self.clear_faults();
        clear();
        self.clear_log();
        let after = self.pass(None).await;
        self.untouched(&after, &self.log());
        let table = after.render_table();
        for (id, kind) in &self.selected {
            assert!(
                !self.exists(id, kind),
                "{kind} {id} stays after the fault cleared\n{table}"
            );
        }
        self.held_stay(&after, &[]);
        let expected = if self.held.is_empty() {
            PassResult::Clean
        } else {
            PassResult::Leftovers
        };
        assert_eq!(after.result(), expected, "{table}");
        Faulted {
            report,
            log,
            rules_left,
        }
    }
}

/// The report's line for `id`.
fn item<'a>(report: &'a PassReport, id: &str) -> Option<&'a ReportItem> {
    report.items.iter().find(|i| i.key.id == id)
}

/// Why the report says `id` stayed.
fn left_reason<'a>(report: &'a PassReport, id: &str) -> Option<&'a LeftReason> {
    item(report, id).and_then(|i| i.status.left_reason())
}

fn with_body(rule: FaultRule, body: &str) -> FaultRule {
    FaultRule {
        body: Some(body.to_string()),
        ..rule
    }
}

fn forever(rule: FaultRule) -> FaultRule {
    FaultRule { count: None, ..rule }
}

fn retry_after(rule: FaultRule, after: &str) -> FaultRule {
    FaultRule {
        headers: vec![("Retry-After".to_string(), after.to_string())],
        ..rule
    }
}

/// The selected resources of the seeded cloud of `kind`.
fn of_kind(bench: &Bench, kind: &str) -> Vec<String> {
    bench
        .selected
        .iter()
        .filter(|(_, k)| **k == kind)
        .map(|(id, _)| id.clone())
        .collect()
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
    bench.inject(FaultRule::status("GET", "/compute/v2.1/servers/", 500, 2));
    bench.inject(forever(FaultRule::status("DELETE", "/v2.0/networks/", 500, 0)));
    bench
        .row(Expect::kept(Stay::These(networks), &["retries_exhausted"]), || {})
        .await;
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
    let server = bench.seeded().jobs[1].servers[0].clone();
    bench.inject(retry_after(
        forever(FaultRule::status("GET", &format!("/servers/{server}"), 503, 0)),
        "3600",
    ));
    let faulted = bench
        .row(
            Expect::kept(
                Stay::These(vec![server.clone()]),
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
    bench.inject(FaultRule::broken("GET", "/volumes/", Breakage::Hangup, 2));
    bench.inject(FaultRule::broken("DELETE", "/v2.0/ports/", Breakage::Hangup, 2));
    bench.row(Expect::all_deleted(), || {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_is_retried_and_a_delete_whose_answer_was_lost_is_found_done() {
    let bench = Bench::openstack(&[]).await;
    let group = bench.seeded().jobs[1].security_group.clone();
    let server = bench.seeded().jobs[1].servers[0].clone();
    bench.inject(FaultRule::broken("GET", "/v2.0/networks", Breakage::Truncate, 1));
    bench.inject(FaultRule::broken(
        "GET",
        &format!("/servers/{server}"),
        Breakage::Truncate,
        1,
    ));
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
    let server = bench.seeded().jobs[1].servers[0].clone();
    bench.inject(with_body(
        FaultRule::status("GET", &format!("/servers/{server}"), 200, 1),
        r#"{"server": {"status": "ACT"#,
    ));
    bench
        .row(
            Expect::kept(Stay::These(vec![server]), &["permanent_error"]),
            || {},
        )
        .await;
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
