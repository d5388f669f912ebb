//! The OpenStack provider against the simulated OpenStack: authentication paths, pagination,
//! server-side filters, and what a pass asks of the API (listed once, never re-listed per delete).
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cloud_janitor::metrics::Metrics;
use cloud_janitor::model::{Kind, Observed};
use cloud_janitor::policy::RetryPolicy;
use cloud_janitor::provider::openstack::{OpenStackProvider, OpenStackSettings};
use cloud_janitor::provider::{ErrorClass, Provider, ProviderError};
use cloud_janitor_sim::faults::FaultRule;
use cloud_janitor_sim::openstack::{OpenStackSim, SimConfig};

async fn seeded(name: &str) -> (OpenStackSim, PathBuf) {
    let sim = OpenStackSim::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    sim.seed_ci_leftovers();
    let dir = std::env::temp_dir().join(format!("cj-os-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clouds.yaml");
    std::fs::write(&path, sim.clouds_yaml()).unwrap();
    (sim, path)
}

/// Reads are retried three times, quickly.
const QUICK_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: std::time::Duration::from_millis(10),
    max_delay: std::time::Duration::from_millis(40),
};

fn provider(cloud: &str, clouds_yaml: PathBuf, page_size: u32) -> OpenStackProvider {
    let mut settings = OpenStackSettings::from_clouds_yaml(cloud, clouds_yaml);
    settings.page_size = page_size;
    OpenStackProvider::new("sim", &settings, Arc::new(Metrics::new()), &HashMap::new())
        .unwrap()
        .with_read_retry(QUICK_RETRY)
}

/// The list requests (paged: they carry `limit=`) in a simulator's request log.
fn listings(log: &[(String, String, u16)]) -> Vec<&String> {
    log.iter()
        .filter(|(method, path, _)| method == "GET" && path.contains("limit="))
        .map(|(_, path, _)| path)
        .collect()
}

fn count_kind(resources: &[cloud_janitor::model::Resource], kind: Kind) -> usize {
    resources.iter().filter(|r| r.key.kind == kind).count()
}

#[tokio::test]
async fn small_pages_list_the_same_resources_as_one_large_page() {
    let (sim, yaml) = seeded("pages").await;
    let whole = provider("sim", yaml.clone(), 1000).discover().await.unwrap();
    sim.clear_request_log();
    let paged = provider("sim", yaml, 2).discover().await.unwrap();
    let key_set = |r: &[cloud_janitor::model::Resource]| {
        let mut keys: Vec<String> = r.iter().map(|r| r.key.to_string()).collect();
        keys.sort();
        keys
    };
    assert_eq!(key_set(&whole), key_set(&paged));
    assert!(count_kind(&paged, Kind::Port) > 4, "the seed has many ports");
    let port_pages = sim
        .request_log()
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.contains("/ports?"))
        .count();
    assert!(port_pages >= 3, "two per page means several pages: {port_pages}");
    assert!(
        sim.request_log().iter().any(|(_, p, _)| p.contains("marker=")),
        "pages follow markers"
    );
    sim.shutdown();
}

/// Found by the property tests: listings filtered by tag on the server hid unselected users (an
/// untagged server using a selected keypair, an untagged floating IP on a selected port), and what
/// they used was deleted from under them. Every listing is whole for the project.
#[tokio::test]
async fn listings_are_project_scoped_and_never_filtered_by_tag() {
    let (sim, yaml) = seeded("filters").await;
    let untagged_fip = sim.create_floating_ip(None, &[]).unwrap();
    sim.clear_request_log();
    let resources = provider("sim", yaml, 1000).discover().await.unwrap();
    let log = sim.request_log();
    let listings = listings(&log);
    assert_eq!(listings.len(), 12, "{listings:#?}");
    for listing in &listings {
        assert!(!listing.contains("tags"), "{listing}");
    }
    for collection in [
        "/networks?",
        "/subnets?",
        "/ports?",
        "/routers?",
        "/security-groups?",
        "/floatingips?",
        "/lbaas/loadbalancers?",
    ] {
        let list = listings.iter().find(|p| p.contains(collection)).expect("listed");
        assert!(
            list.contains("project_id="),
            "{collection} is project-scoped: {list}"
        );
    }
    let untagged: Vec<&str> = resources
        .iter()
        .filter(|r| r.key.kind == Kind::Server && !r.tags.iter().any(|t| t == "ci-job"))
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(untagged, vec!["keep-vm"]);
    assert_eq!(count_kind(&resources, Kind::Server), 5, "four tagged, one not");
    assert!(resources
        .iter()
        .any(|r| r.key.kind == Kind::FloatingIp && r.key.id == untagged_fip));
    sim.shutdown();
}

#[tokio::test]
async fn a_401_re_authenticates_once_and_an_application_credential_works() {
    let (sim, yaml) = seeded("auth").await;
    let provider = provider("sim-appcred", yaml, 1000);
    provider
        .discover()
        .await
        .expect("application credential authenticates");
    sim.clear_request_log();
    sim.faults()
        .add(FaultRule::status("GET", "/network/v2.0/ports", 401, 1));
    provider
        .discover()
        .await
        .expect("a 401 is answered by re-authenticating");
    let tokens = sim
        .request_log()
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.contains("/auth/tokens"))
        .count();
    assert_eq!(tokens, 1, "exactly one re-authentication");
    sim.shutdown();
}

#[tokio::test]
async fn a_pass_lists_each_collection_once_and_reads_each_resource_before_deleting_it() {
    use cloud_janitor::demo::{demo_janitor, DemoCloud};
    let (sim, clouds_yaml) = seeded("requests").await;
    let cloud = DemoCloud {
        sim: sim.clone(),
        clouds_yaml,
        seeded: None,
        load_balancer_job: None,
        idle_floating_ip: None,
    };
    let janitor = demo_janitor(&cloud, None, Arc::new(Metrics::new())).unwrap();
    sim.clear_request_log();
    let report = janitor
        .run_pass(tokio_util::sync::CancellationToken::new(), None)
        .await;
    let log = sim.request_log();
    let listings = listings(&log);
    // 6 Neutron + 3 Nova + 2 Cinder + 1 Octavia collections, one page each: never re-listed per
    // delete.
    assert_eq!(listings.len(), 12, "{listings:#?}");
    // Router interfaces go by PUT remove_router_interface, never DELETE /ports (409 ServicePortInUse).
    let deletes = log
        .iter()
        .filter(|(m, p, _)| m == "DELETE" || (m == "PUT" && p.ends_with("/remove_router_interface")))
        .count();
    assert!(
        !log.iter()
            .any(|(m, p, s)| m == "DELETE" && p.contains("/ports/") && *s == 409),
        "no router interface port was DELETEd"
    );
    let deleted = report
        .items
        .iter()
        .filter(|i| matches!(i.status, cloud_janitor::outcome::Outcome::Deleted))
        .count();
    assert!(
        deletes >= deleted && deleted > 20,
        "{deletes} deletes for {deleted} deleted"
    );
    // Every Neutron DELETE follows a read that names its resource: alone, or in a batch read
    // (`?id=A&id=B`); nothing is re-listed instead. `openstack_status_reads.rs` pins that the read
    // is fresh (taken after what had to go first was gone).
    let neutron = [
        "ports",
        "networks",
        "subnets",
        "security-groups",
        "routers",
        "floatingips",
    ];
    let deleted_id = |path: &str| -> Option<String> {
        let rest = path.split("/v2.0/").nth(1)?;
        let (collection, id) = rest.split_once('/')?;
        (neutron.contains(&collection) && !id.contains('/'))
            .then(|| id.split('?').next().unwrap_or(id).to_string())
    };
    let names =
        |path: &str, id: &str| path.ends_with(&format!("/{id}")) || path.contains(&format!("id={id}"));
    let mut neutron_deletes = 0;
    for (position, (method, path, _)) in log.iter().enumerate() {
        let Some(id) = deleted_id(path).filter(|_| method == "DELETE") else {
            continue;
        };
        neutron_deletes += 1;
        assert!(
            log[..position]
                .iter()
                .any(|(m, p, _)| m == "GET" && names(p, &id)),
            "{path} deleted without a status read naming it first"
        );
    }
    assert!(neutron_deletes > 10, "{neutron_deletes}");
    sim.shutdown();
}

#[tokio::test]
async fn a_429_with_retry_after_is_classified_as_rate_limited_with_that_delay() {
    use std::time::Duration;
    let (sim, yaml) = seeded("ratelimit").await;
    let provider = provider("sim", yaml, 1000);
    let resources = provider.discover().await.unwrap();
    let group = resources
        .iter()
        .find(|r| r.key.kind == Kind::SecurityGroup && r.name == "ci-job-2-sg")
        .expect("seeded group");
    let mut limited = FaultRule::status("DELETE", "/security-groups/", 429, 1);
    limited.headers = vec![("Retry-After".into(), "7".into())];
    sim.faults().add(limited);
    let error = provider.delete(group).await.expect_err("the injected 429");
    assert_eq!(
        error.class(),
        ErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(error.to_string().contains("HTTP 429"), "{error}");
    sim.shutdown();
}

#[tokio::test]
async fn list_pages_token_requests_and_status_reads_are_retried_on_5xx_429_and_given_up_after_the_budget() {
    let (sim, yaml) = seeded("retries").await;
    let provider = provider("sim", yaml, 1000);
    // One of each passing failure on the way: the token, a list page, a page with an HTTP-date
    // Retry-After already past, then a status read.
    sim.faults()
        .add(FaultRule::status("POST", "/auth/tokens", 503, 1));
    sim.faults().add(FaultRule::status("GET", "/v2.0/ports", 502, 1));
    let mut dated = FaultRule::status("GET", "/v2.0/networks", 429, 1);
    dated.headers = vec![("Retry-After".into(), "Sun, 06 Nov 1994 08:49:37 GMT".into())];
    sim.faults().add(dated);
    let resources = provider
        .discover()
        .await
        .expect("every read succeeded on its second try");
    let status = |path: &str, status: u16| {
        sim.request_log()
            .iter()
            .filter(|(_, logged, code)| logged.contains(path) && *code == status)
            .count()
    };
    assert_eq!((status("/auth/tokens", 503), status("/auth/tokens", 201)), (1, 1));
    assert_eq!((status("/v2.0/ports", 502), status("/v2.0/ports", 200)), (1, 1));
    assert_eq!(
        (status("/v2.0/networks", 429), status("/v2.0/networks", 200)),
        (1, 1)
    );
    let server = resources
        .iter()
        .find(|r| r.key.kind == Kind::Server)
        .expect("a seeded server");
    sim.faults().add(FaultRule::status("GET", "/servers/", 500, 1));
    assert!(matches!(
        provider.observe(server).await,
        Ok(Observed::Ready | Observed::Busy(_))
    ));

    // A listing that keeps failing: discovery fails, naming the listing and the tries.
    sim.faults()
        .add(FaultRule::status("GET", "/v2.0/subnets", 503, 3));
    let error = provider.discover().await.expect_err("subnets never listed");
    let message = error.to_string();
    assert!(
        message.starts_with("listing network: subnets: GET ") && message.ends_with("(tried 3 times)"),
        "{message}"
    );
    assert_eq!(error.class(), ErrorClass::RateLimited { retry_after: None });
    sim.shutdown();
}

#[tokio::test]
async fn max_requests_per_second_spaces_a_discovery_out() {
    use std::time::{Duration, Instant};
    let (sim, yaml) = seeded("rate").await;
    let mut settings = OpenStackSettings::from_clouds_yaml("sim", yaml);
    settings.max_requests_per_second = Some(20.0);
    let provider =
        OpenStackProvider::new("sim", &settings, Arc::new(Metrics::new()), &HashMap::new()).unwrap();
    sim.clear_request_log();
    let started = Instant::now();
    provider.discover().await.unwrap();
    let requests = sim.request_log().len();
    // n requests at 20 per second cannot take less than (n - 1) / 20 seconds.
    let floor = Duration::from_millis(50 * (requests as u64 - 1));
    assert!(requests >= 12, "{requests}");
    assert!(
        started.elapsed() >= floor,
        "{requests} requests in {:?}",
        started.elapsed()
    );
    sim.shutdown();
}

#[tokio::test]
async fn an_item_without_its_id_is_a_decode_error_naming_service_kind_item_and_field() {
    let (sim, yaml) = seeded("decode").await;
    let mut broken = FaultRule::status("GET", "/network/v2.0/ports", 200, 1);
    broken.body = Some(r#"{"ports": [{"id": "p1", "name": "fine"}, {"name": "no id"}]}"#.to_string());
    sim.faults().add(broken);
    let error = provider("sim", yaml, 1000)
        .discover()
        .await
        .expect_err("the second port has no id");
    assert!(matches!(error, ProviderError::Decode { .. }), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Permanent);
    let message = error.to_string();
    let (url, detail) = message
        .split_once(": unexpected response: ")
        .expect("a decode message");
    assert!(
        url.contains("/network/v2.0/ports?limit=1000&project_id="),
        "{message}"
    );
    assert_eq!(detail, "network: ports: item 1: missing field `id`");
    sim.shutdown();
}
