//! The Prometheus metrics cloud-janitor exports, their names and bounded labels, in one registry.
//! Counters of the executor's work come from its events ([`Metrics`] is an [`EventSink`]); gauges of
//! what is left come from the pass report (`pass.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;

use crate::events::{Event, EventSink, Task};
use crate::outcome::Outcome;
use crate::report::{PassReport, PassResult};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric, registered once. Labels are bounded: cloud names come from config, kinds, reasons and
/// outcomes from enums; never ids or messages.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub leftover_resources: IntGaugeVec,
    pub oldest_leftover_age_seconds: GaugeVec,
    pub would_delete_resources: IntGaugeVec,
    pub suspected_leaks: IntGaugeVec,
    pub deletes_total: IntCounterVec,
    pub conflicts_requeued_total: IntCounterVec,
    pub delete_duration_seconds: HistogramVec,
    pub api_requests_total: IntCounterVec,
    pub api_retries_total: IntCounterVec,
    pub pass_duration_seconds: Histogram,
    pub passes_total: IntCounterVec,
    pub passes_skipped_total: IntCounter,
    pub last_pass_start_timestamp_seconds: Gauge,
    pub last_pass_end_timestamp_seconds: Gauge,
    pub last_pass_success_timestamp_seconds: Gauge,
    pub cloud_up: IntGaugeVec,
    pub stuck_leftover_resources: IntGaugeVec,
    pub history_persistent: IntGauge,
    pub config_valid: IntGauge,
    pub config_reloads_total: IntCounterVec,
    pub concurrency_limit: IntGaugeVec,
    pub last_pass_phase_seconds: GaugeVec,
    /// `(cloud, kind, reason)` label sets of the per-pass gauges set so far, so that a series that
    /// drops to nothing says 0 instead of keeping its last value.
    gauge_series: Arc<Mutex<HashSet<(String, String, String)>>>,
}

fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> prometheus::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// The pseudo-reason under which "would delete" series are remembered for zeroing.
const WOULD_DELETE: &str = "would_delete";
/// The pseudo-reason under which suspected leak series are remembered for zeroing.
const SUSPECTED_LEAK: &str = "suspected_leak";

fn unix_now() -> f64 {
    Utc::now().timestamp_millis() as f64 / 1000.0
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("cloud_janitor")
}

impl Metrics {
    pub fn new() -> Self {
        // Invariant: every name, help text and label set below is fixed and valid, and each is
        // registered once into a fresh registry, so building cannot fail. Every test run builds it
        // (`the_exposition_is_pinned`), so a mistake here fails CI, never a daemon.
        #[allow(clippy::expect_used)]
        Self::build().expect("fixed, valid metric definitions")
    }

    fn build() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let r = &registry;
        let build_info = registered(
            r,
            IntGaugeVec::new(opts("build_info", "Build information; always 1"), &["version"])?,
        )?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // process_resident_memory_bytes, process_start_time_seconds, CPU, file descriptors.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let metrics = Metrics {
            leftover_resources: registered(
                r,
                IntGaugeVec::new(
                    opts(
                        "leftover_resources",
                        "Selected resources still present after the last pass, by why they stayed",
                    ),
                    &["cloud", "kind", "reason"],
                )?,
            )?,
            oldest_leftover_age_seconds: registered(
                r,
                GaugeVec::new(
                    opts(
                        "oldest_leftover_age_seconds",
                        "Age of the oldest resource left after the last pass",
                    ),
                    &["cloud", "kind"],
                )?,
            )?,
            would_delete_resources: registered(
                r,
                IntGaugeVec::new(
                    opts(
                        "would_delete_resources",
                        "Selected resources the last pass would have deleted, in report-only mode",
                    ),
                    &["cloud", "kind"],
                )?,
            )?,
            suspected_leaks: registered(
                r,
                IntGaugeVec::new(
                    opts(
                        "suspected_leaks",
                        "Untagged resources that looked leaked in two passes in a row and are older than leak_min_age, still there after the last pass",
                    ),
                    &["cloud", "kind"],
                )?,
            )?,
            deletes_total: registered(
                r,
                IntCounterVec::new(
                    opts("deletes_total", "Resources the janitor finished with, by outcome"),
                    &["cloud", "kind", "outcome"],
                )?,
            )?,
            conflicts_requeued_total: registered(
                r,
                IntCounterVec::new(
                    opts(
                        "conflicts_requeued_total",
                        "Deletes that met a conflict and went back into the queue",
                    ),
                    &["cloud", "kind"],
                )?,
            )?,
            delete_duration_seconds: registered(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "delete_duration_seconds",
                        "From the first status read of a resource to its confirmed deletion, requeues included",
                    )
                    .namespace("cloud_janitor")
                    .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
                    &["cloud", "kind"],
                )?,
            )?,
            api_requests_total: registered(
                r,
                IntCounterVec::new(
                    opts(
                        "api_requests_total",
                        "Requests made to cloud APIs, by service and status class",
                    ),
                    &["cloud", "service", "status_class"],
                )?,
            )?,
            api_retries_total: registered(
                r,
                IntCounterVec::new(
                    opts(
                        "api_retries_total",
                        "Reads sent again after a 429, a 5xx, a timeout or no answer, by service",
                    ),
                    &["cloud", "service"],
                )?,
            )?,
            pass_duration_seconds: registered(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("pass_duration_seconds", "How long each pass took")
                        .namespace("cloud_janitor")
                        .buckets(vec![
                            1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
                        ]),
                )?,
            )?,
            passes_total: registered(
                r,
                IntCounterVec::new(
                    opts(
                        "passes_total",
                        "Passes run, by result: clean, leftovers or failed",
                    ),
                    &["result"],
                )?,
            )?,
            passes_skipped_total: registered(
                r,
                IntCounter::with_opts(opts(
                    "passes_skipped_total",
                    "Scheduled passes skipped because the previous one was still running",
                ))?,
            )?,
            last_pass_start_timestamp_seconds: registered(
                r,
                Gauge::with_opts(opts(
                    "last_pass_start_timestamp_seconds",
                    "When the last pass started",
                ))?,
            )?,
            last_pass_end_timestamp_seconds: registered(
                r,
                Gauge::with_opts(opts(
                    "last_pass_end_timestamp_seconds",
                    "When the last pass ended",
                ))?,
            )?,
            last_pass_success_timestamp_seconds: registered(
                r,
                Gauge::with_opts(opts(
                    "last_pass_success_timestamp_seconds",
                    "When the last pass that could run against every cloud ended",
                ))?,
            )?,
            cloud_up: registered(
                r,
                IntGaugeVec::new(
                    opts(
                        "cloud_up",
                        "1 if the last pass could list the cloud, 0 if it could not (auth, unreachable API)",
                    ),
                    &["cloud"],
                )?,
            )?,
            stuck_leftover_resources: registered(
                r,
                IntGaugeVec::new(
                    opts(
                        "stuck_leftover_resources",
                        "Selected resources left in 3 or more passes in a row (from the history)",
                    ),
                    &["cloud"],
                )?,
            )?,
            history_persistent: registered(
                r,
                IntGauge::with_opts(opts(
                    "history_persistent",
                    "1 if the history (first sightings, attempts) reaches its file, 0 if it is kept in memory only or writing it fails",
                ))?,
            )?,
            config_valid: registered(
                r,
                IntGauge::with_opts(opts(
                    "config_valid",
                    "1 if the config file on disk is the one in use, 0 if it was refused and the last good one is used",
                ))?,
            )?,
            config_reloads_total: registered(
                r,
                IntCounterVec::new(
                    opts(
                        "config_reloads_total",
                        "Readings of the config file before a pass or on SIGHUP, by whether it was applied or rejected",
                    ),
                    &["result"],
                )?,
            )?,
            concurrency_limit: registered(
                r,
                IntGaugeVec::new(
                    opts(
                        "concurrency_limit",
                        "Calls the janitor allows in flight against the cloud now (moves when [concurrency] adaptive is on)",
                    ),
                    &["cloud"],
                )?,
            )?,
            last_pass_phase_seconds: registered(
                r,
                GaugeVec::new(
                    opts(
                        "last_pass_phase_seconds",
                        "Where the last pass spent its time: discover (wall), plan_cpu (CPU of judging and building the plan), execute (wall)",
                    ),
                    &["phase"],
                )?,
            )?,
            gauge_series: Arc::new(Mutex::new(HashSet::new())),
            registry,
        };
        // Every result series exists from start-up, so `increase()` sees the first pass of each.
        for result in ["clean", "leftovers", "failed"] {
            metrics.passes_total.with_label_values(&[result]);
        }
        Ok(metrics)
    }

    /// Records how long a phase of the current pass took (`discover`, `plan_cpu`, `execute`).
    pub fn pass_phase(&self, phase: &'static str, seconds: f64) {
        self.last_pass_phase_seconds
            .with_label_values(&[phase])
            .set(seconds);
    }

    /// A pass starts now.
    pub fn pass_started(&self) {
        self.last_pass_start_timestamp_seconds.set(unix_now());
    }

    /// Sets the per-pass gauges from a pass's report (leftovers by reason and age, clouds up, the
    /// history's stuck resources and whether it is kept) and counts the pass. A cloud that could not
    /// be listed keeps its gauges from the pass before: what stayed there is unknown, not zero.
    pub fn record_pass(&self, report: &PassReport, stuck: &HashMap<String, i64>, history_persistent: bool) {
        let now = Utc::now();
        let failed_clouds: HashSet<&str> = report
            .clouds
            .iter()
            .filter(|c| c.error.is_some())
            .map(|c| c.name.as_str())
            .collect();
        let mut counts: HashMap<(String, String, String), i64> = HashMap::new();
        let mut oldest: HashMap<(String, String), f64> = HashMap::new();
        for item in &report.items {
            let (cloud, kind) = (item.key.cloud.clone(), item.key.kind.as_str().to_string());
            if item.suspected_leak.is_some() && !item.status.is_gone() {
                *counts
                    .entry((cloud.clone(), kind.clone(), SUSPECTED_LEAK.to_string()))
                    .or_default() += 1;
            }
            let reason = match &item.status {
                Outcome::Left(reason) => reason.label(),
                Outcome::WouldDelete => WOULD_DELETE,
                _ => continue,
            };
            *counts
                .entry((cloud.clone(), kind.clone(), reason.to_string()))
                .or_default() += 1;
            if reason != WOULD_DELETE {
                let age = item
                    .born
                    .map_or(0.0, |born| (now - born).num_milliseconds().max(0) as f64 / 1000.0);
                let slot = oldest.entry((cloud, kind)).or_default();
                *slot = slot.max(age);
            }
        }
        let mut series = self.gauge_series.lock().unwrap_or_else(PoisonError::into_inner);
        for (cloud, kind, reason) in series.iter() {
            if failed_clouds.contains(cloud.as_str()) {
                continue;
            }
            if reason == WOULD_DELETE {
                self.would_delete_resources
                    .with_label_values(&[cloud, kind])
                    .set(0);
            } else if reason == SUSPECTED_LEAK {
                self.suspected_leaks.with_label_values(&[cloud, kind]).set(0);
            } else {
                self.leftover_resources
                    .with_label_values(&[cloud, kind, reason])
                    .set(0);
                self.oldest_leftover_age_seconds
                    .with_label_values(&[cloud, kind])
                    .set(0.0);
            }
        }
        for ((cloud, kind, reason), count) in counts {
            if reason == WOULD_DELETE {
                self.would_delete_resources
                    .with_label_values(&[&cloud, &kind])
                    .set(count);
            } else if reason == SUSPECTED_LEAK {
                self.suspected_leaks
                    .with_label_values(&[&cloud, &kind])
                    .set(count);
            } else {
                self.leftover_resources
                    .with_label_values(&[&cloud, &kind, &reason])
                    .set(count);
            }
            series.insert((cloud, kind, reason));
        }
        drop(series);
        for ((cloud, kind), age) in oldest {
            self.oldest_leftover_age_seconds
                .with_label_values(&[&cloud, &kind])
                .set(age);
        }
        for cloud in &report.clouds {
            self.stuck_leftover_resources
                .with_label_values(&[&cloud.name])
                .set(stuck.get(&cloud.name).copied().unwrap_or(0));
            self.cloud_up
                .with_label_values(&[&cloud.name])
                .set(i64::from(cloud.error.is_none()));
        }
        self.history_persistent.set(i64::from(history_persistent));
        self.pass_duration_seconds.observe(report.duration.as_secs_f64());
        self.passes_total
            .with_label_values(&[report.result().as_str()])
            .inc();
        let end = unix_now();
        self.last_pass_end_timestamp_seconds.set(end);
        if report.result() != PassResult::Failed {
            self.last_pass_success_timestamp_seconds.set(end);
        }
    }

    /// Counts one API request; `status` is `None` when no response came.
    pub fn api_request(&self, cloud: &str, service: &str, status: Option<u16>) {
        let class = match status {
            Some(s @ 100..=599) => ["1xx", "2xx", "3xx", "4xx", "5xx"][usize::from(s / 100 - 1)],
            Some(_) => "5xx",
            None => "network_error",
        };
        self.api_requests_total
            .with_label_values(&[cloud, service, class])
            .inc();
    }

    /// Counts one read that is sent again.
    pub fn api_retry(&self, cloud: &str, service: &str) {
        self.api_retries_total.with_label_values(&[cloud, service]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which `new` cannot produce.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

impl EventSink for Metrics {
    fn on_event(&self, event: &Event) {
        match event {
            Event::ConcurrencyChanged { cloud, limit } => self
                .concurrency_limit
                .with_label_values(&[cloud.as_str()])
                .set(i64::try_from(*limit).unwrap_or(i64::MAX)),
            Event::Requeued { key, .. } => self
                .conflicts_requeued_total
                .with_label_values(&[key.cloud.as_str(), key.kind.as_str()])
                .inc(),
            Event::Finished {
                key,
                task: Task::Delete,
                outcome,
                elapsed,
                ..
            } => {
                let labels = [key.cloud.as_str(), key.kind.as_str()];
                let label = match outcome {
                    Outcome::Deleted => {
                        self.delete_duration_seconds
                            .with_label_values(&labels)
                            .observe(elapsed.as_secs_f64());
                        "deleted"
                    }
                    Outcome::AlreadyGone => "already_gone",
                    Outcome::Left(reason) if reason.is_failed_attempt() => "failed",
                    _ => return,
                };
                self.deletes_total
                    .with_label_values(&[labels[0], labels[1], label])
                    .inc();
            }
            Event::Finished { .. } | Event::Attempted { .. } | Event::Retrying { .. } => {}
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Kind, ResourceKey};
    use crate::outcome::LeftReason;

    fn finished(kind: Kind, id: &str, task: Task, outcome: Outcome) -> Event {
        Event::Finished {
            key: ResourceKey::new("ci", kind, id),
            task,
            outcome,
            elapsed: Duration::from_millis(1500),
        }
    }

    #[test]
    fn executor_events_become_counters_by_outcome_and_a_requeue_is_not_a_failure() {
        let metrics = Metrics::new();
        let sg = ResourceKey::new("ci", Kind::SecurityGroup, "sg");
        for attempt in 1..=2 {
            metrics.on_event(&Event::Requeued {
                key: sg.clone(),
                attempt,
                after: Duration::from_secs(1),
                error: "409".into(),
            });
        }
        metrics.on_event(&finished(
            Kind::SecurityGroup,
            "sg",
            Task::Delete,
            Outcome::Deleted,
        ));
        metrics.on_event(&finished(Kind::Port, "p", Task::Delete, Outcome::AlreadyGone));
        let failed = Outcome::Left(LeftReason::PermanentError {
            message: "403".into(),
        });
        metrics.on_event(&finished(Kind::Server, "s", Task::Delete, failed));
        // Not failures of an attempt: blocked by another, or a port Nova was to remove.
        let blocked = Outcome::Left(LeftReason::Blocked { by: sg.clone() });
        metrics.on_event(&finished(Kind::Network, "n", Task::Delete, blocked));
        let busy = Outcome::Left(LeftReason::Busy {
            state: "bound".into(),
        });
        metrics.on_event(&finished(Kind::Port, "owned", Task::AwaitRemoval, busy));

        let count = |kind: &str, outcome: &str| {
            metrics
                .deletes_total
                .with_label_values(&["ci", kind, outcome])
                .get()
        };
        assert_eq!(
            metrics
                .conflicts_requeued_total
                .with_label_values(&["ci", "security_group"])
                .get(),
            2
        );
        assert_eq!(count("security_group", "deleted"), 1);
        assert_eq!(count("port", "already_gone"), 1);
        assert_eq!(count("server", "failed"), 1);
        assert_eq!(count("network", "failed"), 0);
        assert_eq!(count("port", "failed"), 0);
        let durations = metrics
            .delete_duration_seconds
            .with_label_values(&["ci", "security_group"]);
        assert_eq!(durations.get_sample_count(), 1);
        assert_eq!(durations.get_sample_sum(), 1.5);
    }

    #[test]
    fn suspected_leaks_still_there_are_counted_by_kind_and_drop_to_zero_when_gone() {
        use crate::model::LeakSign;
        use crate::report::{CloudStatus, PassReport, ReportItem};
        use crate::selection::Verdict;
        let item = |kind, id: &str, status, sign| ReportItem {
            key: ResourceKey::new("ci", kind, id),
            name: String::new(),
            born: None,
            status,
            requeues: 0,
            passes_left: 0,
            suspected_leak: Some(sign),
        };
        let report = |items| PassReport {
            pass: 1,
            mode: crate::pass::Mode::Delete,
            started: Utc::now(),
            duration: Duration::from_secs(1),
            clouds: vec![CloudStatus {
                name: "ci".into(),
                error: None,
            }],
            items,
        };
        let fip = LeakSign::FloatingIpWithoutPort;
        let reported = |id| {
            item(
                Kind::FloatingIp,
                id,
                Outcome::Skipped(Verdict::SuspectedLeak(fip)),
                fip,
            )
        };
        let metrics = Metrics::new();
        metrics.record_pass(
            &report(vec![
                reported("f1"),
                reported("f2"),
                item(
                    Kind::Volume,
                    "v1",
                    Outcome::Deleted,
                    LeakSign::VolumeWithoutAttachment,
                ),
            ]),
            &HashMap::new(),
            true,
        );
        let gauge = |kind| metrics.suspected_leaks.with_label_values(&["ci", kind]).get();
        assert_eq!((gauge("floating_ip"), gauge("volume")), (2, 0));
        metrics.record_pass(&report(vec![]), &HashMap::new(), true);
        assert_eq!(gauge("floating_ip"), 0);
    }

    /// Names, labels, help texts and types, as Prometheus reads them, after one deleted resource.
    #[test]
    fn the_exposition_is_pinned() {
        let metrics = Metrics::new();
        metrics.on_event(&finished(Kind::Port, "p", Task::Delete, Outcome::Deleted));
        metrics.api_request("ci", "network", Some(204));
        metrics.api_request("ci", "network", None);
        metrics.cloud_up.with_label_values(&["ci"]).set(1);
        metrics
            .leftover_resources
            .with_label_values(&["ci", "volume", "busy"])
            .set(2);
        metrics
            .oldest_leftover_age_seconds
            .with_label_values(&["ci", "volume"])
            .set(7200.0);
        metrics
            .suspected_leaks
            .with_label_values(&["ci", "floating_ip"])
            .set(1);
        let text = metrics.render();
        // The process collector's values change from run to run; its names are what is promised.
        for name in [
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_cpu_seconds_total",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{name} "))),
                "{name} is exported:\n{text}"
            );
        }
        let ours: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("process_") && !l.contains(" process_"))
            .collect();
        insta::assert_snapshot!(ours.join("\n"));
    }
}
