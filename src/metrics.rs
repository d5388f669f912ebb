//! The Prometheus metrics cloud-janitor exports, their names and bounded labels, in one registry.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric, registered once. Labels are bounded: cloud names come from config, kinds, reasons and
/// outcomes from enums; never ids or messages.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub leftover_resources: IntGaugeVec,
    pub oldest_leftover_age_seconds: GaugeVec,
    pub deletes_total: IntCounterVec,
    pub conflicts_requeued_total: IntCounterVec,
    pub api_requests_total: IntCounterVec,
    pub pass_duration_seconds: Histogram,
    pub passes_total: IntCounterVec,
    pub passes_skipped_total: IntCounter,
    pub last_pass_start_timestamp_seconds: Gauge,
    pub last_pass_end_timestamp_seconds: Gauge,
    pub last_pass_success_timestamp_seconds: Gauge,
    pub cloud_up: IntGaugeVec,
}

/// Registering a fixed, valid set of metric names into a fresh registry cannot fail; a failure here
/// is a programming error caught by the first test that builds `Metrics`.
fn registered<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("cloud_janitor")
}

impl Metrics {
    // The `expect`s below hold: fixed names and label sets are valid by construction (see `registered`).
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let build_info = registered(
            r,
            IntGaugeVec::new(opts("build_info", "Build information; always 1"), &["version"])
                .expect("valid metric"),
        );
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let metrics = Metrics {
            leftover_resources: registered(
                r,
                IntGaugeVec::new(
                    opts(
                        "leftover_resources",
                        "Selected resources still present after the last pass, by why they stayed",
                    ),
                    &["cloud", "kind", "reason"],
                )
                .expect("valid metric"),
            ),
            oldest_leftover_age_seconds: registered(
                r,
                GaugeVec::new(
                    opts(
                        "oldest_leftover_age_seconds",
                        "Age of the oldest resource left after the last pass",
                    ),
                    &["cloud", "kind"],
                )
                .expect("valid metric"),
            ),
            deletes_total: registered(
                r,
                IntCounterVec::new(
                    opts("deletes_total", "Resources the janitor finished with, by outcome"),
                    &["cloud", "kind", "outcome"],
                )
                .expect("valid metric"),
            ),
            conflicts_requeued_total: registered(
                r,
                IntCounterVec::new(
                    opts(
                        "conflicts_requeued_total",
                        "Deletes that met a conflict and went back into the queue",
                    ),
                    &["cloud", "kind"],
                )
                .expect("valid metric"),
            ),
            api_requests_total: registered(
                r,
                IntCounterVec::new(
                    opts(
                        "api_requests_total",
                        "Requests made to cloud APIs, by service and status class",
                    ),
                    &["cloud", "service", "status_class"],
                )
                .expect("valid metric"),
            ),
            pass_duration_seconds: registered(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("pass_duration_seconds", "How long each pass took")
                        .namespace("cloud_janitor")
                        .buckets(vec![
                            1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
                        ]),
                )
                .expect("valid metric"),
            ),
            passes_total: registered(
                r,
                IntCounterVec::new(
                    opts(
                        "passes_total",
                        "Passes run, by result: clean, leftovers or failed",
                    ),
                    &["result"],
                )
                .expect("valid metric"),
            ),
            passes_skipped_total: registered(
                r,
                IntCounter::with_opts(opts(
                    "passes_skipped_total",
                    "Scheduled passes skipped because the previous one was still running",
                ))
                .expect("valid metric"),
            ),
            last_pass_start_timestamp_seconds: registered(
                r,
                Gauge::with_opts(opts(
                    "last_pass_start_timestamp_seconds",
                    "When the last pass started",
                ))
                .expect("valid metric"),
            ),
            last_pass_end_timestamp_seconds: registered(
                r,
                Gauge::with_opts(opts(
                    "last_pass_end_timestamp_seconds",
                    "When the last pass ended",
                ))
                .expect("valid metric"),
            ),
            last_pass_success_timestamp_seconds: registered(
                r,
                Gauge::with_opts(opts(
                    "last_pass_success_timestamp_seconds",
                    "When the last pass that could run against every cloud ended",
                ))
                .expect("valid metric"),
            ),
            cloud_up: registered(
                r,
                IntGaugeVec::new(
                    opts(
                        "cloud_up",
                        "1 if the last pass could list the cloud, 0 if it could not (auth, unreachable API)",
                    ),
                    &["cloud"],
                )
                .expect("valid metric"),
            ),
            registry,
        };
        // Every result series exists from start-up, so `increase()` sees the first pass of each.
        for result in ["clean", "leftovers", "failed"] {
            metrics.passes_total.with_label_values(&[result]);
        }
        metrics
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which `new` cannot produce.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
