//! `explain` over a small CI plan: a resource deleted after others, one held by an unselected user,
//! a suspected leak, an expiry tag not reached, and a name that matches nothing.

use chrono::{DateTime, Duration as Age, Utc};

use super::*;
use crate::model::{Kind, LeakSign, Resource};
use crate::selection::SelectionConfig;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 time")
}

fn now() -> DateTime<Utc> {
    at("2026-12-05T18:00:00Z")
}

fn key(kind: Kind, id: &str) -> ResourceKey {
    ResourceKey::new("ci", kind, id)
}

fn resource(kind: Kind, id: &str, name: &str, tags: &[&str]) -> Resource {
    let mut r = Resource::new(key(kind, id), name);
    r.tags = tags.iter().map(|t| t.to_string()).collect();
    r.created = Some(now() - Age::hours(3));
    r.project = Some("demo".into());
    r.status = "ACTIVE".into();
    r
}

fn selector() -> Selector {
    Selector::new(&SelectionConfig {
        tags_all: vec!["ci-job".into()],
        min_age: Some(std::time::Duration::from_secs(3600)),
        leak_min_age: std::time::Duration::from_secs(3600),
        ..SelectionConfig::default()
    })
    .expect("valid rules")
}

fn history(passes: u32) -> Option<History> {
    Some(History {
        first_seen: now() - Age::hours(2),
        sightings: passes,
        leak_sightings: passes,
    })
}

/// A server on a port with a floating IP; the port on a subnet and a group; a second group an
/// untagged port uses; an idle untagged floating IP; a network that asked to live a day.
fn plan() -> Plan {
    let ci = ["ci-job", "job-1"];
    let server = resource(Kind::Server, "srv-1", "ci-job-1-vm", &ci);
    let mut port = resource(Kind::Port, "port-1", "ci-job-1-port", &ci);
    port.status = "ACTIVE".into();
    port.references = vec![
        key(Kind::SecurityGroup, "sg-1"),
        key(Kind::Subnet, "subnet-1"),
        key(Kind::Network, "net-1"),
    ];
    port.used_by = vec![key(Kind::Server, "srv-1")];
    let mut fip = resource(Kind::FloatingIp, "fip-1", "172.24.4.10", &ci);
    fip.references = vec![key(Kind::Port, "port-1")];
    let mut subnet = resource(Kind::Subnet, "subnet-1", "ci-job-1-subnet", &ci);
    subnet.references = vec![key(Kind::Network, "net-1")];
    let network = resource(Kind::Network, "net-1", "ci-job-1-net", &ci);
    let group = resource(Kind::SecurityGroup, "sg-1", "ci-job-1-sg", &ci);
    let held_group = resource(Kind::SecurityGroup, "sg-3", "ci-job-3-sg", &["ci-job", "job-3"]);
    let mut keep_port = resource(Kind::Port, "port-keep", "keep-port", &[]);
    keep_port.references = vec![key(Kind::SecurityGroup, "sg-3")];
    let mut idle = resource(Kind::FloatingIp, "fip-idle", "172.24.4.99", &[]);
    idle.leak = Some(LeakSign::FloatingIpWithoutPort);
    let cache = resource(Kind::Network, "net-cache", "ci-cache", &["ci-job", "ttl-1d"]);
    let resources = vec![
        server, port, fip, subnet, network, group, held_group, keep_port, idle, cache,
    ];
    let s = selector();
    let verdicts = resources.iter().map(|r| s.judge(r, history(2), now())).collect();
    Plan::build(resources, verdicts)
}

fn explained(id: &str, mode: Mode) -> Explanation {
    let plan = plan();
    let found = find(&plan, None, id);
    assert_eq!(found.len(), 1, "{id}");
    let record = Record {
        name: String::new(),
        first_seen: now() - Age::hours(2),
        last_seen: now() - Age::minutes(15),
        last_pass: 8,
        sightings: 8,
        leak_sightings: 0,
        attempts: 2,
        last_error: Some("conflict: HTTP 409: SecurityGroupInUse".into()),
        last_outcome: Some("conflict".into()),
        left_streak: 1,
        gone_since: None,
    };
    explain(
        &plan,
        found[0],
        &selector(),
        history(2),
        Some(record),
        mode,
        now(),
    )
}

#[test]
fn a_resource_deleted_after_others_names_them_in_its_verdict() {
    let port = explained("ci-job-1-port", Mode::Delete);
    assert_eq!(
        port.verdict,
        "would be deleted after server srv-1 (ci-job-1-vm) and floating_ip fip-1 (172.24.4.10)"
    );
    assert_eq!(
        port.plan,
        PlanPlace::Delete {
            position: 3,
            of: 6,
            after: vec![
                "server srv-1 (ci-job-1-vm)".into(),
                "floating_ip fip-1 (172.24.4.10)".into()
            ],
        }
    );
    insta::assert_snapshot!("explain_deleted_later", port.render_text(now()));
    insta::assert_snapshot!(
        "explain_deleted_later_json",
        serde_json::to_string_pretty(&port).expect("JSON")
    );
    let report_only = explained("port-1", Mode::ReportOnly);
    assert_eq!(
        report_only.verdict,
        "would be deleted after server srv-1 (ci-job-1-vm) and floating_ip fip-1 (172.24.4.10), but the \
         janitor runs report-only: nothing is deleted"
    );
}

#[test]
fn a_held_resource_names_its_user_and_why_the_user_stays() {
    let group = explained("sg-3", Mode::Delete);
    assert_eq!(
        group.verdict,
        "held: in use by port port-keep (keep-port), which is not selected (not matched: tags_all)"
    );
    insta::assert_snapshot!("explain_held", group.render_text(now()));
}

#[test]
fn kept_resources_say_which_rule_keeps_them() {
    assert_eq!(
        explained("fip-idle", Mode::Delete).verdict,
        "not deleted: a suspected leak (a floating IP with no port), reported only; add \"floating_ip\" \
         to delete_suspected_leaks to delete such leaks"
    );
    assert_eq!(
        explained("ci-cache", Mode::Delete).verdict,
        "not deleted before 2026-12-06 15:00:00 UTC: its expiry tag ttl-1d has not passed, whatever \
         min_age says"
    );
    assert_eq!(
        explained("keep-port", Mode::Delete).verdict,
        "not deleted: not selected (tags_all does not match)"
    );
}

#[test]
fn a_name_that_matches_nothing_lists_the_closest() {
    let plan = plan();
    assert!(find(&plan, None, "ci-job-1-prot").is_empty());
    let closest = closest(&plan, None, "ci-job-1-prot", 3);
    assert_eq!(
        closest.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["port-1", "net-1", "srv-1"]
    );
    insta::assert_snapshot!(
        "explain_not_found",
        render_not_found("ci-job-1-prot", &["ci"], &closest)
    );
    assert!(
        find(&plan, Some("other"), "port-1").is_empty(),
        "only the cloud asked for"
    );
    assert_eq!(distance("kitten", "sitting"), 3);
}
