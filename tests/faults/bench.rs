//! The bench every fault test runs on: a simulated cloud, the janitor for it, the faults of one
//! row injected and cleared, and the five checks of the matrix.

use super::*;

/// The pass timeout of every bench's config: each pass here ends far sooner; one that does not is
/// a hang.
pub(crate) const PASS_TIMEOUT: Duration = Duration::from_secs(30);

/// The request timeout of every bench's config, unless a row sets its own: the most a pass may run
/// past its deadline (the call in flight then).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The tag the Proxmox VE bench's CI guests carry.
pub(crate) const CI_TAG: &str = "ci-job";

/// The simulator a bench runs against.
pub(crate) enum Sim {
    /// Seeded like the demo.
    OpenStack(Box<Cloud>),
    /// With the directory of its token secret, removed with it.
    Proxmox { sim: ProxmoxSim, _dir: TempDir },
}

/// A simulated cloud, the janitor for it, and what the five checks compare against, by id with the
/// simulator's kind word.
pub(crate) struct Bench {
    pub(crate) sim: Sim,
    pub(crate) janitor: Janitor,
    /// The config's `pass_timeout`.
    pub(crate) pass_timeout: Duration,
    /// What the rules pick and a correct cleanup deletes.
    pub(crate) selected: BTreeMap<String, &'static str>,
    /// What the rules pick but a correct cleanup leaves, for good: in use, locked, and what those
    /// hold.
    pub(crate) held: BTreeMap<String, &'static str>,
    /// What no pass may touch: unselected or guarded.
    pub(crate) untouchable: BTreeMap<String, &'static str>,
}

/// Which selected resources the fault may keep this pass.
pub(crate) enum Stay {
    /// None: everything deletable is deleted despite the fault.
    Nothing,
    /// These, and what they hold (reported blocked).
    These(Vec<String>),
    /// Any of them.
    Any,
}

/// What a row expects of the pass under its fault.
pub(crate) struct Expect {
    /// The cloud cannot be listed this pass: its error in the report contains this, and nothing
    /// is touched.
    pub(crate) listing_fails: Option<&'static str>,
    pub(crate) stay: Stay,
    /// The reasons a kept resource may be reported with (besides `blocked` for what it holds).
    pub(crate) reasons: &'static [&'static str],
    /// Selected resources the fault puts under a guard this pass: reported not selected, untouched.
    pub(crate) guarded: Vec<String>,
}

impl Expect {
    /// The fault changes nothing: every deletable resource goes.
    pub(crate) fn all_deleted() -> Self {
        Expect::kept(Stay::Nothing, &[])
    }

    /// The cloud's listing fails, naming `text`.
    pub(crate) fn unlisted(text: &'static str) -> Self {
        Expect {
            listing_fails: Some(text),
            ..Expect::kept(Stay::Any, &[])
        }
    }

    /// `stay` may stay, each reported with one of `reasons`.
    pub(crate) fn kept(stay: Stay, reasons: &'static [&'static str]) -> Self {
        Expect {
            listing_fails: None,
            stay,
            reasons,
            guarded: Vec::new(),
        }
    }
}

/// What a row's pass under the fault produced: its report and the requests the simulator served.
pub(crate) struct Faulted {
    pub(crate) report: PassReport,
    pub(crate) log: Vec<(String, String, u16)>,
    /// The fault rules not used up by the pass.
    pub(crate) rules_left: Vec<FaultRule>,
}

/// Records the executor's events, for rows that check a decision (the delay a `Retry-After` set).
#[derive(Default)]
pub(crate) struct Events(pub(crate) Mutex<Vec<Event>>);

impl EventSink for Events {
    fn on_event(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Bench {
    /// The simulated OpenStack seeded like the demo, and its janitor with `env` over the quick
    /// defaults.
    pub(crate) async fn openstack(env: &[(&str, &str)]) -> Bench {
        Bench::openstack_within(PASS_TIMEOUT, env).await
    }

    /// [`Bench::openstack`] with `pass_timeout` as the config's.
    pub(crate) async fn openstack_within(pass_timeout: Duration, env: &[(&str, &str)]) -> Bench {
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
    pub(crate) async fn proxmox(config: ProxmoxSimConfig, cloud_extra: &str) -> Bench {
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
        let table = proxmox_cloud_table(
            "lab",
            &sim,
            dir.path(),
            &format!(
                "poll_interval = \"20ms\"\ntask_timeout = \"1s\"\nrequest_timeout = \"{}s\"\n{cloud_extra}",
                REQUEST_TIMEOUT.as_secs()
            ),
        );
        let config = format!(
            r#"schedule = "0 0 * * * *"
listen = "127.0.0.1:0"
pass_timeout = "{pass_timeout}s"

[retry]
max_attempts = 4

[waits]
busy_timeout = "300ms"

{table}
[clouds.select]
tags_all = ["{CI_TAG}"]
"#,
            pass_timeout = PASS_TIMEOUT.as_secs(),
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
    pub(crate) async fn proxmox_default() -> Bench {
        let config = ProxmoxSimConfig {
            task_duration: Duration::from_millis(20),
            lock_wait: Duration::from_millis(100),
            ..ProxmoxSimConfig::default()
        };
        Bench::proxmox(config, "").await
    }

    pub(crate) fn openstack_sim(&self) -> &Cloud {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud,
            Sim::Proxmox { .. } => panic!("an OpenStack bench"),
        }
    }

    /// What the OpenStack bench's seed made.
    pub(crate) fn seeded(&self) -> &Seeded {
        self.openstack_sim().demo.seeded.as_ref().expect("a seeded cloud")
    }

    pub(crate) fn proxmox_sim(&self) -> &ProxmoxSim {
        match &self.sim {
            Sim::Proxmox { sim, .. } => sim,
            Sim::OpenStack(..) => panic!("a Proxmox VE bench"),
        }
    }

    pub(crate) fn inject(&self, rule: FaultRule) {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.faults().add(rule),
            Sim::Proxmox { sim, .. } => sim.faults().add(rule),
        }
    }

    /// The fault rules not used up.
    pub(crate) fn rules_left(&self) -> Vec<FaultRule> {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.faults().rules(),
            Sim::Proxmox { sim, .. } => sim.faults().rules(),
        }
    }

    pub(crate) fn clear_faults(&self) {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.faults().clear(),
            Sim::Proxmox { sim, .. } => sim.faults().clear(),
        }
    }

    /// The requests served, as `(method, path, status)`.
    pub(crate) fn log(&self) -> Vec<(String, String, u16)> {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.request_log(),
            Sim::Proxmox { sim, .. } => sim.request_log(),
        }
    }

    pub(crate) fn clear_log(&self) {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.clear_request_log(),
            Sim::Proxmox { sim, .. } => sim.clear_request_log(),
        }
    }

    pub(crate) fn exists(&self, id: &str, kind: &str) -> bool {
        match &self.sim {
            Sim::OpenStack(cloud) => cloud.sim.exists(kind, id),
            Sim::Proxmox { sim, .. } => sim.exists(id.parse().unwrap()),
        }
    }

    /// The id each write request of `log` names; `None` for a write that names no resource.
    pub(crate) fn written(&self, log: &[(String, String, u16)]) -> Vec<(String, Option<String>)> {
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
    pub(crate) async fn pass(&self, watch: Option<Arc<dyn EventSink>>) -> PassReport {
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
    pub(crate) fn untouched(&self, report: &PassReport, log: &[(String, String, u16)]) {
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
    pub(crate) fn deleted_or_reported(&self, report: &PassReport, expect: &Expect) {
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
    pub(crate) fn kind_of(&self, id: &str) -> &'static str {
        [&self.selected, &self.held, &self.untouchable]
            .into_iter()
            .find_map(|known| known.get(id).copied())
            .unwrap_or("port")
    }

    /// The held resources stay, reported as held (or with one of `also`, a fault's reasons).
    pub(crate) fn held_stay(&self, report: &PassReport, also: &[&str]) {
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
    pub(crate) async fn row(&self, expect: Expect, clear: impl FnOnce()) -> Faulted {
        self.row_watched(expect, clear, None).await
    }

    /// [`Bench::row`], with `watch` hearing the executor's events in the pass under the fault.
    pub(crate) async fn row_watched(
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
pub(crate) fn item<'a>(report: &'a PassReport, id: &str) -> Option<&'a ReportItem> {
    report.items.iter().find(|i| i.key.id == id)
}

/// Why the report says `id` stayed.
pub(crate) fn left_reason<'a>(report: &'a PassReport, id: &str) -> Option<&'a LeftReason> {
    item(report, id).and_then(|i| i.status.left_reason())
}

pub(crate) fn with_body(rule: FaultRule, body: &str) -> FaultRule {
    FaultRule {
        body: Some(body.to_string()),
        ..rule
    }
}

pub(crate) fn forever(rule: FaultRule) -> FaultRule {
    FaultRule { count: None, ..rule }
}

pub(crate) fn retry_after(rule: FaultRule, after: &str) -> FaultRule {
    FaultRule {
        headers: vec![("Retry-After".to_string(), after.to_string())],
        ..rule
    }
}

/// The selected resources of the seeded cloud of `kind`.
pub(crate) fn of_kind(bench: &Bench, kind: &str) -> Vec<String> {
    bench
        .selected
        .iter()
        .filter(|(_, k)| **k == kind)
        .map(|(id, _)| id.clone())
        .collect()
}
