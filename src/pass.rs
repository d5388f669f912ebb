//! One pass over every configured cloud: discover, remember, select, plan, execute, then set the
//! metrics and build the report. Also the dry run (`plan`), which stops before executing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use std::panic::AssertUnwindSafe;

use futures::future::join_all;
use futures::FutureExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ConcurrencyConfig, Config, WaitConfig};
use crate::events::{EventSink, Fanout, LogSink, Recorded, Recorder};
use crate::executor::{Executor, ExecutorSettings};
use crate::history::{HistoryStore, Sighting};
use crate::metrics::Metrics;
use crate::model::Resource;
use crate::outcome::{LeftReason, Outcome};
use crate::planner::{Disposition, Plan};
use crate::policy::RetryPolicy;
use crate::provider::{Provider, ProviderError};
use crate::report::{CloudStatus, PassReport, ReportItem};
use crate::selection::{History, Selector, Verdict};

/// A leftover counts as stuck once it has stayed this many passes in a row.
pub const STUCK_AFTER_PASSES: u32 = 3;

/// A configured cloud, ready to use.
pub struct Cloud {
    pub name: String,
    pub selector: Selector,
    pub provider: Arc<dyn Provider>,
}

/// Whether passes delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Delete what the selection picks (the default).
    #[default]
    Delete,
    /// Discover, plan, report and export what would be deleted; delete nothing.
    ReportOnly,
}

/// The settings a pass needs, from the config.
#[derive(Debug, Clone)]
pub struct PassSettings {
    pub mode: Mode,
    pub pass_timeout: Duration,
    pub max_deletes_per_pass: usize,
    pub concurrency: ConcurrencyConfig,
    pub retry: RetryPolicy,
    pub waits: WaitConfig,
}

impl From<&Config> for PassSettings {
    fn from(config: &Config) -> Self {
        PassSettings {
            mode: config.mode,
            pass_timeout: config.pass_timeout,
            max_deletes_per_pass: config.max_deletes_per_pass,
            concurrency: config.concurrency,
            retry: config.retry,
            waits: config.waits,
        }
    }
}

/// The janitor: clouds, settings, metrics and history, shared by every pass.
pub struct Janitor {
    clouds: Vec<Cloud>,
    settings: PassSettings,
    metrics: Arc<Metrics>,
    history: Arc<HistoryStore>,
}

/// What discovery and planning produced, before anything is deleted.
pub struct Planned {
    pub pass: u64,
    pub started: DateTime<Utc>,
    /// The moment every verdict of the plan was judged at.
    pub judged: DateTime<Utc>,
    pub plan: Plan,
    pub clouds: Vec<CloudStatus>,
}

impl Janitor {
    pub fn new(
        clouds: Vec<Cloud>,
        settings: PassSettings,
        metrics: Arc<Metrics>,
        history: Arc<HistoryStore>,
    ) -> Self {
        Janitor {
            clouds,
            settings,
            metrics,
            history,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What an operator should know about how this janitor runs, one line each (empty when all is
    /// well): today, that its history does not reach the disk, and what that costs.
    pub fn notes(&self) -> Vec<String> {
        let persistence = self.history.persistence();
        if persistence.is_persistent() {
            return Vec::new();
        }
        vec![format!(
            "{}; rules that need an earlier sighting restart with every process: Proxmox orphan \
             disks (seen in 2 passes) and the age of guests without a creation time. Set \
             history_file on a persistent volume",
            persistence.describe()
        )]
    }

    /// The history every pass reads and writes.
    pub fn history(&self) -> &Arc<HistoryStore> {
        &self.history
    }

    /// The selection rules of a cloud.
    pub fn selector(&self, cloud: &str) -> Option<&Selector> {
        self.clouds.iter().find(|c| c.name == cloud).map(|c| &c.selector)
    }

    /// Discovers every cloud concurrently and plans. `remember` records sightings in the history
    /// (a dry run does not).
    pub async fn plan(&self, remember: bool) -> Planned {
        self.plan_clouds(remember, None).await
    }

    /// [`Janitor::plan`] of one cloud only, when `only` names one.
    pub async fn plan_clouds(&self, remember: bool, only: Option<&str>) -> Planned {
        let started = Utc::now();
        let discovery_started = Instant::now();
        let timeout = self.settings.pass_timeout;
        let clouds = self
            .clouds
            .iter()
            .filter(|cloud| only.is_none_or(|name| cloud.name == name));
        let discoveries = join_all(clouds.map(|cloud| async move {
            let result = match tokio::time::timeout(timeout, cloud.provider.discover()).await {
                Ok(result) => result,
                Err(_) => Err(ProviderError::Deadline {
                    operation: format!("discovery of cloud {}", cloud.name),
                    waited: timeout,
                    last_state: "listing".into(),
                }),
            };
            (cloud, result)
        }))
        .await;

        self.metrics
            .pass_phase("discover", discovery_started.elapsed().as_secs_f64());
        // Planning is pure computation: its thread's CPU time is its cost.
        let planning = crate::cputime::ThreadCpu::start();
        let mut statuses = Vec::new();
        let mut listed_clouds = HashSet::new();
        let mut everything: Vec<(Resource, &Selector)> = Vec::new();
        for (cloud, result) in discoveries {
            match result {
                Ok(resources) => {
                    tracing::info!(cloud = %cloud.name, resources = resources.len(), "discovered");
                    listed_clouds.insert(cloud.name.clone());
                    statuses.push(CloudStatus {
                        name: cloud.name.clone(),
                        error: None,
                    });
                    everything.extend(resources.into_iter().map(|r| (r, &cloud.selector)));
                }
                Err(error) => {
                    tracing::error!(cloud = %cloud.name, error = %error, "discovery failed; nothing in this cloud is touched this pass");
                    statuses.push(CloudStatus {
                        name: cloud.name.clone(),
                        error: Some(error.to_string()),
                    });
                }
            }
        }

        let now = Utc::now();
        let pass = if remember {
            let pass = self.history.begin_pass();
            self.history.prune(now);
            let seen: Vec<Sighting> = everything
                .iter()
                .map(|(r, _)| Sighting {
                    key: &r.key,
                    name: r.name.as_str(),
                    looks_leaked: r.leak.is_some(),
                })
                .collect();
            self.history.record_sightings(pass, &listed_clouds, &seen, now);
            pass
        } else {
            0
        };
        let verdicts: Vec<Verdict> = everything
            .iter()
            .map(|(resource, selector)| {
                let history = if remember {
                    self.history.history(&resource.key)
                } else {
                    self.dry_run_history(resource)
                };
                selector.judge(resource, history, now)
            })
            .collect();
        let resources = everything.into_iter().map(|(r, _)| r).collect();
        let plan = Plan::build(resources, verdicts);
        self.metrics.pass_phase("plan_cpu", planning.seconds());
        Planned {
            pass,
            started,
            judged: now,
            plan,
            clouds: statuses,
        }
    }

    /// What selection sees of a resource's history in a dry run (`plan`, `explain`): this sighting
    /// counted as the next pass would count it, without storing it.
    pub fn dry_run_history(&self, resource: &Resource) -> Option<History> {
        self.history
            .record(&resource.key)
            .filter(|r| r.gone_since.is_none())
            .map(|r| History {
                first_seen: r.first_seen,
                sightings: r.sightings + 1,
                leak_sightings: if resource.leak.is_some() {
                    r.leak_sightings + 1
                } else {
                    0
                },
            })
    }

    /// Runs one whole pass: plan, delete, metrics, history. Never fails: what went wrong is in the
    /// report (and so in the exit code and metrics). `watch` also hears the executor's events (the
    /// demo's live display). A pass that panics is caught and reported as a failed pass of every
    /// cloud, so a bug costs one pass, never the daemon's schedule.
    pub async fn run_pass(&self, cancel: CancellationToken, watch: Option<Arc<dyn EventSink>>) -> PassReport {
        let started = Utc::now();
        let clock = Instant::now();
        match AssertUnwindSafe(self.try_pass(cancel, watch, clock))
            .catch_unwind()
            .await
        {
            Ok(report) => report,
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(%message, "the pass panicked; it is reported as failed");
                let report = PassReport {
                    pass: 0,
                    mode: self.settings.mode,
                    started,
                    duration: clock.elapsed(),
                    clouds: self
                        .clouds
                        .iter()
                        .map(|cloud| CloudStatus {
                            name: cloud.name.clone(),
                            error: Some(format!("the pass panicked: {message}")),
                        })
                        .collect(),
                    items: Vec::new(),
                };
                self.update_metrics(&report);
                report
            }
        }
    }

    async fn try_pass(
        &self,
        cancel: CancellationToken,
        watch: Option<Arc<dyn EventSink>>,
        clock: Instant,
    ) -> PassReport {
        self.metrics.pass_started();
        let planned = self.plan(true).await;
        let providers: HashMap<String, Arc<dyn Provider>> = self
            .clouds
            .iter()
            .map(|c| (c.name.clone(), c.provider.clone()))
            .collect();
        let settings = ExecutorSettings {
            retry: self.settings.retry,
            global_concurrency: self.settings.concurrency.global,
            per_cloud: self.settings.concurrency.limit_policy(),
            busy_timeout: self.settings.waits.busy_timeout,
            delete_timeout: self.settings.waits.delete_timeout,
            poll_interval: self.settings.waits.poll_interval,
            max_deletes: self.settings.max_deletes_per_pass,
            deadline: clock + self.settings.pass_timeout,
        };
        let recorder = Arc::new(Recorder::default());
        let mut events = Fanout::new()
            .with(recorder.clone())
            .with(self.metrics.clone())
            .with(self.history.clone())
            .with(Arc::new(LogSink));
        if let Some(watch) = watch {
            events = events.with(watch);
        }
        let executing = Instant::now();
        match self.settings.mode {
            Mode::Delete => {
                Executor::new(providers, settings, Arc::new(events), cancel)
                    .execute(&planned.plan)
                    .await;
                self.metrics
                    .pass_phase("execute", executing.elapsed().as_secs_f64());
            }
            Mode::ReportOnly => tracing::info!(
                would_delete = planned.plan.order.len(),
                "report-only: nothing is deleted"
            ),
        }
        let mut report = build_report(
            &planned,
            &recorder.recorded(),
            self.settings.mode,
            clock.elapsed(),
        );
        self.history.record_report(&mut report, Utc::now());
        self.update_metrics(&report);
        report
    }

    fn update_metrics(&self, report: &PassReport) {
        self.metrics.record_pass(
            report,
            &self.history.stuck(STUCK_AFTER_PASSES),
            self.history.persistence().is_persistent(),
        );
    }
}

/// The text a panic carried, if it was a string (as `panic!` and `expect` make it).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

/// Turns the plan and what the executor reported into the report.
pub fn build_report(planned: &Planned, recorded: &Recorded, mode: Mode, duration: Duration) -> PassReport {
    let graph = &planned.plan.graph;
    let mut items = Vec::with_capacity(graph.node_count());
    for plan_node in graph.node_weights() {
        let Some(verdict) = &plan_node.verdict else {
            continue;
        }; // a stand-in for an unlisted user
        let key = &plan_node.resource.key;
        let status = match (&plan_node.disposition, recorded.outcomes.get(key)) {
            (Disposition::Held { reason }, _) => Outcome::Left(reason.clone()),
            (Disposition::Delete, _) if mode == Mode::ReportOnly => Outcome::WouldDelete,
            (Disposition::Delete, Some(outcome)) => outcome.clone(),
            // Never reached: every actionable node gets an outcome. Say so rather than guess.
            (Disposition::Delete, None) => Outcome::Left(LeftReason::Shutdown),
            (Disposition::AwaitRemoval { .. }, _) | (Disposition::Keep, _) => {
                Outcome::Skipped(verdict.clone())
            }
        };
        let resource = &plan_node.resource;
        items.push(ReportItem {
            key: key.clone(),
            name: resource.name.clone(),
            born: resource.created,
            status,
            requeues: recorded.requeues.get(key).copied().unwrap_or(0),
            passes_left: 0,
            suspected_leak: verdict.suspected_leak(),
        });
    }
    items.sort_by(|a, b| a.key.cmp(&b.key));
    PassReport {
        pass: planned.pass,
        mode,
        started: planned.started,
        duration,
        clouds: planned.clouds.clone(),
        items,
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::model::{DeleteOutcome, Observed};
    use crate::report::PassResult;
    use crate::selection::SelectionConfig;

    /// A provider with a bug: discovery panics.
    struct Panicking;

    #[async_trait]
    impl Provider for Panicking {
        fn cloud(&self) -> &str {
            "buggy"
        }
        fn provider_type(&self) -> &'static str {
            "test"
        }
        async fn discover(&self) -> Result<Vec<Resource>, ProviderError> {
            panic!("index out of bounds in a listing");
        }
        async fn observe(&self, _: &Resource) -> Result<Observed, ProviderError> {
            Ok(Observed::Gone)
        }
        async fn delete(&self, _: &Resource) -> Result<DeleteOutcome, ProviderError> {
            Ok(DeleteOutcome::Completed)
        }
    }

    #[tokio::test]
    async fn a_pass_that_panics_is_reported_failed_and_the_next_pass_runs() {
        let selection = SelectionConfig {
            tags_all: vec!["ci".into()],
            ..SelectionConfig::default()
        };
        let cloud = Cloud {
            name: "buggy".into(),
            selector: Selector::new(&selection).unwrap(),
            provider: Arc::new(Panicking),
        };
        let settings = PassSettings {
            mode: Mode::Delete,
            pass_timeout: Duration::from_secs(60),
            max_deletes_per_pass: 10,
            concurrency: ConcurrencyConfig::default(),
            retry: RetryPolicy::default(),
            waits: WaitConfig::default(),
        };
        let metrics = Arc::new(Metrics::new());
        let history = Arc::new(HistoryStore::in_memory("test"));
        let janitor = Janitor::new(vec![cloud], settings, metrics.clone(), history);
        for pass in 1..=2 {
            let report = janitor.run_pass(CancellationToken::new(), None).await;
            assert_eq!(report.result(), PassResult::Failed);
            assert_eq!(
                report.clouds[0].error.as_deref(),
                Some("the pass panicked: index out of bounds in a listing")
            );
            assert_eq!(metrics.passes_total.with_label_values(&["failed"]).get(), pass);
            assert_eq!(metrics.cloud_up.with_label_values(&["buggy"]).get(), 0);
        }
    }
}
