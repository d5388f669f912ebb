//! Whole passes over the simulated OpenStack for what operators ask beyond tags: suspected untagged
//! leaks over two passes, expiry tags, and load balancers with their VIP ports. A janitor built from
//! a TOML config like a user's, `run_pass`, then what the user sees in the report, in the cloud and
//! in the metrics. Requeues and metrics over passes are in `openstack_pass.rs`.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cloud_janitor::config::Config;
use cloud_janitor::history::Access;
use cloud_janitor::metrics::Metrics;
use cloud_janitor::model::{Kind, LeakSign};
use cloud_janitor::outcome::LeftReason;
use cloud_janitor::outcome::Outcome;
use cloud_janitor::pass::Janitor;
use cloud_janitor::report::{PassReport, ReportItem};
use cloud_janitor::selection::Verdict;
use cloud_janitor::setup::build_janitor;
use cloud_janitor_sim::openstack::{OpenStackSim, SimConfig};
use tokio_util::sync::CancellationToken;

/// The tag the test's CI jobs put on their resources.
const CI_TAG: &str = "ci-job";

/// No pass here may take longer; a pass that does is a hang.
const PASS_BOUND: Duration = Duration::from_secs(60);

async fn start_sim() -> OpenStackSim {
    OpenStackSim::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .expect("the simulated OpenStack starts")
}

/// Writes a janitor config for `sim` into `dir` as a user would, with `select_extra` added to the
/// cloud's `[clouds.select]` table, and builds the janitor from it.
fn janitor(sim: &OpenStackSim, dir: &Path, select_extra: &str, metrics: Arc<Metrics>) -> Janitor {
    let clouds_yaml = dir.join("clouds.yaml");
    std::fs::write(&clouds_yaml, sim.clouds_yaml()).unwrap();
    let config = format!(
        r#"schedule = "*/15 * * * *"
listen = "127.0.0.1:0"
pass_timeout = "60s"
history_file = "{history}"

[retry]
max_attempts = 5
base_delay = "50ms"
max_delay = "200ms"

[waits]
busy_timeout = "2s"
delete_timeout = "20s"
poll_interval = "50ms"

[[clouds]]
name = "ci"
type = "openstack"
cloud = "sim"
clouds_yaml = "{clouds_yaml}"

[clouds.select]
tags_all = ["{CI_TAG}"]
{select_extra}
"#,
        history = dir.join("history.db").display(),
        clouds_yaml = clouds_yaml.display(),
    );
    let path = dir.join("janitor.toml");
    std::fs::write(&path, config).unwrap();
    let config = Config::load_with_env(&path, Default::default()).expect("the config is valid");
    build_janitor(&config, metrics, Access::Exclusive).expect("the janitor builds")
}

async fn pass(janitor: &Janitor) -> PassReport {
    tokio::time::timeout(PASS_BOUND, janitor.run_pass(CancellationToken::new(), None))
        .await
        .expect("the pass ends")
}

fn item<'a>(report: &'a PassReport, id: &str) -> &'a ReportItem {
    report
        .items
        .iter()
        .find(|i| i.key.id == id)
        .unwrap_or_else(|| panic!("{id} is in the report:\n{}", report.render_table()))
}

#[tokio::test]
async fn an_idle_untagged_floating_ip_is_reported_after_two_passes_and_deleted_only_when_opted_in() {
    let sim = start_sim().await;
    let idle = sim.create_floating_ip(None, &[]).unwrap();
    let tagged_net = sim.create_network("ci-net", &[CI_TAG]).unwrap();
    let scratch = support::temp_dir();
    let dir = scratch.path();
    let metrics = Arc::new(Metrics::new());
    let reporting = janitor(&sim, dir, "leak_min_age = \"0s\"", metrics.clone());
    let suspected = |metrics: &Metrics| {
        metrics
            .suspected_leaks
            .with_label_values(&["ci", "floating_ip"])
            .get()
    };

    let first = pass(&reporting).await;
    assert_eq!(
        item(&first, &idle).status,
        Outcome::Skipped(Verdict::NotMatched("tags_all")),
        "one sighting is not enough"
    );
    assert_eq!(item(&first, &tagged_net).status, Outcome::Deleted);
    assert_eq!(suspected(&metrics), 0);

    let second = pass(&reporting).await;
    assert_eq!(
        item(&second, &idle).status,
        Outcome::Skipped(Verdict::SuspectedLeak(LeakSign::FloatingIpWithoutPort))
    );
    assert_eq!(suspected(&metrics), 1);
    assert!(sim.exists("floating_ip", &idle), "report-only by default");
    let table = second.render_table();
    assert!(
        table.contains("Suspected leaks (1)") && table.contains("a floating IP with no port: reported only"),
        "{table}"
    );
    drop(reporting);

    // The same history, now with floating IPs opted in: deleted at the next pass.
    let deleting = janitor(
        &sim,
        dir,
        "leak_min_age = \"0s\"\ndelete_suspected_leaks = [\"floating_ip\"]",
        metrics.clone(),
    );
    let third = pass(&deleting).await;
    assert_eq!(item(&third, &idle).status, Outcome::Deleted);
    assert_eq!(
        item(&third, &idle).suspected_leak,
        Some(LeakSign::FloatingIpWithoutPort)
    );
    assert!(!sim.exists("floating_ip", &idle));
    assert_eq!(suspected(&metrics), 0, "deleted: no longer a suspect");
    sim.shutdown();
}

#[tokio::test]
async fn a_port_and_a_volume_younger_than_leak_min_age_are_not_suspected() {
    let sim = start_sim().await;
    let network = sim.create_network("keep-net", &[]).unwrap();
    sim.create_subnet(&network, "keep-subnet", "10.42.0.0/24", &[])
        .unwrap();
    let port = sim.create_port(&network, "spare", &[], &[]).unwrap();
    let volume = sim.create_volume("scratch", 1, &[]).unwrap();
    let scratch = support::temp_dir();
    let dir = scratch.path();
    let janitor = janitor(&sim, dir, "leak_min_age = \"1h\"", Arc::new(Metrics::new()));
    pass(&janitor).await;
    let second = pass(&janitor).await;
    for id in [&port, &volume] {
        assert_eq!(
            item(&second, id).status,
            Outcome::Skipped(Verdict::NotMatched("tags_all")),
            "{id} is younger than leak_min_age"
        );
    }
    assert!(!second.render_table().contains("Suspected leaks"));
    sim.shutdown();
}

#[tokio::test]
async fn expiry_tags_select_by_themselves_once_passed_never_before_and_a_malformed_one_is_reported() {
    let sim = start_sim().await;
    // No CI tag, but its own expiry time has passed: deleted.
    let expired = sim
        .create_network("demo-net", &["expires-20200101t0000z"])
        .unwrap();
    // Tagged for CI, and the config has no min_age, but it asked to live a day: kept.
    let living = sim.create_network("ci-cache", &[CI_TAG, "ttl-1d"]).unwrap();
    // A lifetime the janitor cannot read: never guessed, reported.
    let unreadable = sim.create_network("ci-odd", &[CI_TAG, "ttl-6"]).unwrap();
    let scratch = support::temp_dir();
    let dir = scratch.path();
    let janitor = janitor(&sim, dir, "", Arc::new(Metrics::new()));
    let report = pass(&janitor).await;
    assert_eq!(item(&report, &expired).status, Outcome::Deleted);
    assert!(matches!(
        &item(&report, &living).status,
        Outcome::Skipped(Verdict::NotExpired { tag, .. }) if tag == "ttl-1d"
    ));
    assert!(sim.exists("network", &living));
    assert!(sim.exists("network", &unreadable));
    let table = report.render_table();
    let line = table
        .lines()
        .find(|l| l.contains(&unreadable))
        .unwrap_or_else(|| panic!("the malformed tag is reported:\n{table}"));
    assert!(
        line.ends_with("expiry tag `ttl-6` not understood: `6` has no unit; expected amounts with units m, h, d or w, e.g. `6h` or `1d12h`"),
        "{line}"
    );
    sim.shutdown();
}

/// The position in the request log of the first request `method` to a path containing `needle`.
fn first_request(sim: &OpenStackSim, method: &str, needle: &str) -> Option<usize> {
    sim.request_log()
        .iter()
        .position(|(m, path, _)| m == method && path.contains(needle))
}

#[tokio::test]
async fn a_jobs_load_balancer_is_deleted_with_cascade_before_what_its_vip_port_holds() {
    let sim = start_sim().await;
    let job = sim.seed_load_balancer_job().unwrap();
    let scratch = support::temp_dir();
    let dir = scratch.path();
    let janitor = janitor(&sim, dir, "", Arc::new(Metrics::new()));
    sim.clear_request_log();
    let report = pass(&janitor).await;
    assert_eq!(item(&report, &job.load_balancer).status, Outcome::Deleted);
    for id in [&job.subnet, &job.network, &job.security_group] {
        assert_eq!(item(&report, id).status, Outcome::Deleted, "{id}");
    }
    let lb_delete = first_request(
        &sim,
        "DELETE",
        &format!("/lbaas/loadbalancers/{}?cascade=true", job.load_balancer),
    )
    .expect("the load balancer is deleted with cascade");
    for held in [&job.subnet, &job.network, &job.security_group] {
        let delete = first_request(&sim, "DELETE", held).expect("deleted");
        assert!(lb_delete < delete, "the load balancer goes before {held}");
    }
    assert_eq!(
        first_request(&sim, "DELETE", &format!("/ports/{}", job.vip_port)),
        None,
        "Octavia removes its VIP port; the janitor never deletes it"
    );
    for (kind, id) in [
        ("load_balancer", &job.load_balancer),
        ("port", &job.vip_port),
        ("listener", &job.listener),
        ("pool", &job.pool),
        ("member", &job.member),
        ("health_monitor", &job.health_monitor),
        ("subnet", &job.subnet),
    ] {
        assert!(!sim.exists(kind, id), "{kind} {id} is gone");
    }
    sim.shutdown();
}

#[tokio::test]
async fn a_load_balancer_busy_past_busy_timeout_is_left_and_holds_what_it_uses_and_one_in_error_goes() {
    let sim = start_sim().await;
    let busy = sim.seed_load_balancer_job().unwrap();
    let failed = sim.seed_load_balancer_job().unwrap();
    assert!(sim.hold_load_balancer(&busy.load_balancer, Duration::from_secs(600)));
    assert!(sim.fail_load_balancer(&failed.load_balancer));
    let scratch = support::temp_dir();
    let dir = scratch.path();
    let metrics = Arc::new(Metrics::new());
    let janitor = janitor(&sim, dir, "", metrics.clone());
    let report = pass(&janitor).await;
    assert_eq!(
        item(&report, &busy.load_balancer).status,
        Outcome::Left(LeftReason::Busy {
            state: "PENDING_UPDATE".into()
        })
    );
    assert_eq!(
        item(&report, &busy.subnet).status,
        Outcome::Left(LeftReason::Blocked {
            by: cloud_janitor::model::ResourceKey::new("ci", Kind::LoadBalancer, &busy.load_balancer)
        }),
        "the load balancer still holds its VIP subnet"
    );
    assert_eq!(
        item(&report, &busy.security_group).status,
        Outcome::Left(LeftReason::Blocked {
            by: cloud_janitor::model::ResourceKey::new("ci", Kind::Port, &busy.vip_port)
        }),
        "and its VIP port its security group"
    );
    assert_eq!(
        metrics
            .leftover_resources
            .with_label_values(&["ci", "load_balancer", "busy"])
            .get(),
        1
    );
    assert!(sim.exists("load_balancer", &busy.load_balancer));
    assert_eq!(item(&report, &failed.load_balancer).status, Outcome::Deleted);
    assert!(!sim.exists("subnet", &failed.subnet));
    sim.shutdown();
}
