//! Whole passes against the simulated OpenStack, in process: a real 409 through the provider is
//! requeued until it clears, or reported as a conflict once the budget is spent; and the per-pass
//! metrics over several passes (gauges back to 0 when a leftover goes, kept for a cloud whose pass
//! failed).
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use cloud_janitor::metrics::Metrics;
use cloud_janitor::outcome::{LeftReason, Outcome};
use cloud_janitor::pass::Janitor;
use cloud_janitor::report::{PassReport, PassResult, ReportItem};
use cloud_janitor_sim::faults::FaultRule;
use support::{janitor_from, metric, Cloud};
use tokio_util::sync::CancellationToken;

/// The janitor for `cloud` as its config describes it, with `env` as the environment (quick waits
/// and retries by default).
fn janitor(cloud: &Cloud, env: &[(&str, &str)]) -> (Janitor, Arc<Metrics>) {
    janitor_from(&cloud.config("janitor.toml", ""), env)
}

async fn pass(janitor: &Janitor) -> PassReport {
    janitor.run_pass(CancellationToken::new(), None).await
}

fn item<'a>(report: &'a PassReport, id: &str) -> &'a ReportItem {
    report
        .items
        .iter()
        .find(|i| i.key.id == id)
        .unwrap_or_else(|| panic!("{id} in the report:\n{}", report.render_table()))
}

/// Neutron's answer, to deletes of the group `id`, while Nova is still unplugging a port.
fn security_group_in_use(id: &str, count: Option<u32>) -> FaultRule {
    FaultRule {
        count,
        body: Some(
            r#"{"NeutronError": {"type": "SecurityGroupInUse", "message": "Security Group is in use by a port being unplugged.", "detail": ""}}"#
                .into(),
        ),
        ..FaultRule::status("DELETE", &format!("/security-groups/{id}"), 409, 0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_409_is_requeued_until_it_clears() {
    let cloud = Cloud::start(true).await;
    let group = cloud.demo.seeded.clone().unwrap().jobs[1].security_group.clone();
    cloud.sim.faults().add(security_group_in_use(&group, Some(2)));
    let (janitor, metrics) = janitor(&cloud, &[]);
    let report = pass(&janitor).await;
    let sg = item(&report, &group);
    assert_eq!(
        (&sg.status, sg.requeues),
        (&Outcome::Deleted, 2),
        "{}",
        report.render_table()
    );
    assert!(!cloud.sim.exists("security_group", &group));
    let requeued = metrics
        .conflicts_requeued_total
        .with_label_values(&["sim", "security_group"])
        .get();
    assert_eq!(requeued, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_that_never_clears_is_reported_as_a_conflict_after_the_retry_budget() {
    let cloud = Cloud::start(true).await;
    let group = cloud.demo.seeded.clone().unwrap().jobs[1].security_group.clone();
    cloud.sim.faults().add(security_group_in_use(&group, None));
    let (janitor, metrics) = janitor(&cloud, &[("CLOUD_JANITOR_RETRY__MAX_ATTEMPTS", "3")]);
    let report = pass(&janitor).await;
    let sg = item(&report, &group);
    let Outcome::Left(LeftReason::Conflict { message }) = &sg.status else {
        panic!("a conflict, not {:?}", sg.status);
    };
    assert!(
        message.contains("HTTP 409") && message.contains("SecurityGroupInUse"),
        "{message}"
    );
    assert_eq!(sg.requeues, 2, "requeued twice, given up on the third");
    assert_eq!(report.result(), PassResult::Leftovers);
    assert!(cloud.sim.exists("security_group", &group));
    let failed = metrics
        .deletes_total
        .with_label_values(&["sim", "security_group", "failed"])
        .get();
    assert!(failed >= 1, "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_gauges_drop_to_zero_when_the_leftover_goes_and_stay_while_the_cloud_cannot_be_listed() {
    let cloud = Cloud::start(true).await;
    let seeded = cloud.demo.seeded.clone().unwrap();
    let (janitor, metrics) = janitor(&cloud, &[("CLOUD_JANITOR_RETRY__MAX_ATTEMPTS", "1")]);
    let gauge = |kind: &str, reason: &str| {
        metric(
            &metrics.render(),
            "cloud_janitor_leftover_resources",
            &[("cloud", "sim"), ("kind", kind), ("reason", reason)],
        )
    };

    // Pass 1: the locked server stays (busy); the group the untagged port uses stays (in use).
    assert_eq!(pass(&janitor).await.result(), PassResult::Leftovers);
    assert_eq!(gauge("server", "busy"), Some(1.0));
    assert_eq!(gauge("security_group", "in_use"), Some(1.0));
    let oldest = metric(
        &metrics.render(),
        "cloud_janitor_oldest_leftover_age_seconds",
        &[("cloud", "sim"), ("kind", "server")],
    );
    assert!(oldest.unwrap() > 0.0, "{oldest:?}");

    // Pass 2: the server is unlocked and goes; its gauge says 0 rather than vanishing.
    cloud.sim.set_server_locked(&seeded.locked_server, false).unwrap();
    let second = pass(&janitor).await;
    assert_eq!(item(&second, &seeded.locked_server).status, Outcome::Deleted);
    assert_eq!(gauge("server", "busy"), Some(0.0));
    assert_eq!(
        metric(
            &metrics.render(),
            "cloud_janitor_oldest_leftover_age_seconds",
            &[("cloud", "sim"), ("kind", "server")]
        ),
        Some(0.0)
    );
    assert_eq!(gauge("security_group", "in_use"), Some(1.0));

    // Pass 3: Neutron cannot list networks; what stayed is unknown, so the gauges keep their values.
    cloud.sim.faults().add(FaultRule {
        count: None,
        ..FaultRule::status("GET", "/v2.0/networks", 500, 0)
    });
    let third = pass(&janitor).await;
    assert_eq!(third.result(), PassResult::Failed);
    let exposition = metrics.render();
    assert_eq!(
        metric(&exposition, "cloud_janitor_cloud_up", &[("cloud", "sim")]),
        Some(0.0)
    );
    assert_eq!(gauge("security_group", "in_use"), Some(1.0));
    assert_eq!(
        metric(&exposition, "cloud_janitor_passes_total", &[("result", "failed")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&exposition, "cloud_janitor_pass_duration_seconds_count", &[]),
        Some(3.0)
    );
}

/// Found by the property tests (`tests/properties/`): servers and floating IPs were listed
/// filtered by tag, so an untagged server using a selected keypair, and an untagged floating IP on
/// a selected port, were not seen, and the keypair and the port were deleted from under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_server_s_keypair_and_an_untagged_floating_ip_s_port_are_in_use_never_deleted() {
    use cloud_janitor_sim::openstack::{NewServer, CI_TAG};
    let cloud = Cloud::start(false).await;
    let sim = &cloud.sim;
    let keypair = sim.create_keypair("ci-job-key").unwrap();
    let server = sim
        .create_server(NewServer {
            name: "untagged",
            key_name: Some(&keypair),
            ..NewServer::default()
        })
        .unwrap();
    let network = sim.create_network("ci-net", &[CI_TAG]).unwrap();
    let subnet = sim
        .create_subnet(&network, "ci-subnet", "10.9.0.0/24", &[CI_TAG])
        .unwrap();
    let router = sim
        .create_router("ci-router", Some(&sim.public_network_id()), &[CI_TAG])
        .unwrap();
    sim.add_router_interface(&router, &subnet).unwrap();
    let port = sim.create_port(&network, "ci-port", &[], &[CI_TAG]).unwrap();
    let fip = sim.create_floating_ip(Some(&port), &[]).unwrap();
    let (janitor, _) = janitor(&cloud, &[]);
    let report = pass(&janitor).await;
    let in_use_by = |id: &str| match &item(&report, id).status {
        Outcome::Left(LeftReason::InUse { by }) => by.id.clone(),
        other => panic!("{id}: {other:?}\n{}", report.render_table()),
    };
    assert_eq!((in_use_by(&keypair), in_use_by(&port)), (server, fip));
    assert!(sim.exists("keypair", &keypair) && sim.exists("port", &port));
    assert_eq!(cloud.writes_to(&keypair), Vec::<String>::new());
    assert_eq!(cloud.writes_to(&port), Vec::<String>::new());
}
