//! Octavia: asynchronous provisioning, the VIP port in Neutron, the 409s of a pending load balancer,
//! the 400 of a delete without cascade, cascade delete, pages, tags and other projects.

use std::time::Duration;

use cloud_janitor_sim::openstack::{OctaviaTimings, OpenStackSim, SimConfig};
use serde_json::{json, Value};

use crate::client::{self, items, network_with_subnet, strings, Client};

const LB: &str = "/load-balancer/v2/lbaas";
/// Longer than any test runs: a load balancer stays pending until the test advances the clock.
const STEP: Duration = Duration::from_secs(60);

async fn start() -> (OpenStackSim, Client) {
    let sim = client::start_with(SimConfig {
        octavia: Some(OctaviaTimings {
            provision_delay: STEP,
            delete_delay: STEP,
        }),
        ..SimConfig::default()
    })
    .await;
    let client = Client::demo(&sim).await;
    (sim, client)
}

/// A load balancer on a fresh subnet, `ACTIVE`; returns (load balancer, subnet).
async fn active_load_balancer(client: &Client, n: u8, extra: Value) -> (String, String) {
    let (_, subnet) = network_with_subnet(client, &format!("lb-net-{n}"), n).await;
    let mut body = json!({"name": format!("lb-{n}"), "vip_subnet_id": subnet});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let lb = client
        .create(&format!("{LB}/loadbalancers"), "loadbalancer", body)
        .await;
    client.sim.advance_clock(STEP);
    (lb, subnet)
}

async fn status(client: &Client, lb: &str) -> (u16, String) {
    let (code, body) = client.get(&format!("{LB}/loadbalancers/{lb}")).await;
    let status = body["loadbalancer"]["provisioning_status"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (code, status)
}

#[tokio::test]
async fn the_catalog_lists_octavia_and_its_root_lists_the_v2_versions() {
    let (sim, _) = start().await;
    let (_, _, token) = client::issue_token(&sim, &client::password_auth("demo", "demopass", "demo")).await;
    let entry = token["token"]["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "load-balancer")
        .cloned()
        .expect("a load-balancer entry");
    assert_eq!(
        entry["endpoints"][0]["url"],
        json!(format!("{}/load-balancer", sim.url()))
    );
    let versions: Value = reqwest::get(format!("{}/load-balancer", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let current: Vec<&Value> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["status"] == "CURRENT")
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(
        current[0]["links"][0]["href"],
        json!(format!("{}/load-balancer/v2", sim.url()))
    );

    let without = client::start_with(SimConfig {
        octavia: None,
        ..SimConfig::default()
    })
    .await;
    let (_, _, token) =
        client::issue_token(&without, &client::password_auth("demo", "demopass", "demo")).await;
    assert!(!token["token"]["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["type"] == "load-balancer"));
}

#[tokio::test]
async fn a_load_balancer_provisions_asynchronously_and_owns_its_vip_port() {
    let (sim, client) = start().await;
    let (_, subnet) = network_with_subnet(&client, "lb-net", 1).await;
    let (code, created) = client
        .post(
            &format!("{LB}/loadbalancers"),
            json!({"loadbalancer": {"name": "ci-lb", "vip_subnet_id": subnet, "tags": ["ci-job"]}}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let lb = created["loadbalancer"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["loadbalancer"]["provisioning_status"], "PENDING_CREATE");
    assert_eq!(created["loadbalancer"]["operating_status"], "OFFLINE");
    let vip_port = created["loadbalancer"]["vip_port_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, port) = client.get(&format!("/network/v2.0/ports/{vip_port}")).await;
    assert_eq!(port["port"]["device_owner"], "Octavia");
    assert_eq!(port["port"]["device_id"], json!(format!("lb-{lb}")));
    assert_eq!(port["port"]["name"], json!(format!("octavia-lb-{lb}")));
    assert_eq!(
        port["port"]["fixed_ips"][0]["ip_address"],
        created["loadbalancer"]["vip_address"]
    );

    // Pending: nothing can be added to it.
    let listener = json!({"listener": {"loadbalancer_id": lb, "protocol": "HTTP", "protocol_port": 80}});
    let (code, body) = client.post(&format!("{LB}/listeners"), listener.clone()).await;
    assert_eq!(code, 409);
    assert_eq!(
        body,
        json!({"faultcode": "Client", "faultstring": format!("Load Balancer {lb} is immutable and cannot be updated."), "debuginfo": null})
    );
    sim.advance_clock(STEP);
    assert_eq!(status(&client, &lb).await, (200, "ACTIVE".to_string()));
    let (code, body) = client.post(&format!("{LB}/listeners"), listener).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["listener"]["provisioning_status"], "PENDING_CREATE");
    assert_eq!(status(&client, &lb).await.1, "PENDING_UPDATE");
    // A delete while it updates: 409, with the state named.
    let (code, body) = client
        .delete(&format!("{LB}/loadbalancers/{lb}?cascade=true"))
        .await;
    assert_eq!(code, 409);
    assert_eq!(
        body["faultstring"],
        json!(format!(
            "Invalid state PENDING_UPDATE of loadbalancer resource {lb}"
        ))
    );
    // The VIP port holds the subnet.
    let (code, body) = client.delete(&format!("/network/v2.0/subnets/{subnet}")).await;
    assert_eq!((code, client::neutron_type(&body)), (409, "SubnetInUse"));
}

#[tokio::test]
async fn a_delete_without_cascade_of_one_with_children_is_refused_and_cascade_takes_everything() {
    let (sim, client) = start().await;
    let seeded = sim.seed_load_balancer_job().unwrap();
    let lb = &seeded.load_balancer;
    let (code, body) = client.delete(&format!("{LB}/loadbalancers/{lb}")).await;
    assert_eq!(code, 400);
    assert_eq!(
        body["faultstring"],
        json!(format!(
            "Validation failure: Cannot delete Load Balancer {lb} - it has children"
        ))
    );
    let (code, _) = client
        .delete(&format!("{LB}/loadbalancers/{lb}?cascade=true"))
        .await;
    assert_eq!(code, 204);
    let (_, shown) = client.get(&format!("{LB}/loadbalancers/{lb}")).await;
    assert_eq!(shown["loadbalancer"]["provisioning_status"], "PENDING_DELETE");
    let (_, pool) = client.get(&format!("{LB}/pools/{}", seeded.pool)).await;
    assert_eq!(pool["pool"]["provisioning_status"], "PENDING_DELETE");
    assert!(sim.exists("port", &seeded.vip_port), "the VIP port goes last");

    let gone = client
        .get_after_deletes(&format!("{LB}/loadbalancers/{lb}"))
        .await;
    assert_eq!(
        gone["faultstring"],
        json!(format!("Load Balancer {lb} not found."))
    );
    for (path, id) in [
        ("listeners", &seeded.listener),
        ("pools", &seeded.pool),
        ("healthmonitors", &seeded.health_monitor),
    ] {
        assert_eq!(client.get(&format!("{LB}/{path}/{id}")).await.0, 404, "{path}");
    }
    assert!(!sim.exists("member", &seeded.member));
    assert!(
        !sim.exists("port", &seeded.vip_port),
        "Octavia removed its VIP port"
    );
    // What the VIP port held can go now.
    assert_eq!(
        client
            .delete(&format!("/network/v2.0/subnets/{}", seeded.subnet))
            .await
            .0,
        204
    );
    assert_eq!(
        client
            .delete(&format!(
                "/network/v2.0/security-groups/{}",
                seeded.security_group
            ))
            .await
            .0,
        204
    );
}

#[tokio::test]
async fn a_load_balancer_in_error_can_be_deleted_and_the_seeded_tree_is_tagged() {
    let (sim, client) = start().await;
    let seeded = sim.seed_load_balancer_job().unwrap();
    let lb = &seeded.load_balancer;
    let (_, shown) = client.get(&format!("{LB}/loadbalancers/{lb}")).await;
    assert_eq!(shown["loadbalancer"]["provisioning_status"], "ACTIVE");
    assert_eq!(shown["loadbalancer"]["tags"], json!(["ci-job", seeded.job]));
    assert_eq!(
        shown["loadbalancer"]["vip_sg_ids"],
        json!([seeded.security_group])
    );
    assert_eq!(
        shown["loadbalancer"]["listeners"],
        json!([{"id": seeded.listener}])
    );
    let (_, members) = client.get(&format!("{LB}/pools/{}/members", seeded.pool)).await;
    assert_eq!(strings(&members, "members", "id"), vec![seeded.member.clone()]);
    assert_eq!(items(&members, "members")[0]["operating_status"], "NO_MONITOR");
    assert!(sim.fail_load_balancer(lb));
    assert_eq!(status(&client, lb).await.1, "ERROR");
    assert_eq!(
        client
            .delete(&format!("{LB}/loadbalancers/{lb}?cascade=true"))
            .await
            .0,
        204
    );
    client
        .get_after_deletes(&format!("{LB}/loadbalancers/{lb}"))
        .await;
}

#[tokio::test]
async fn lists_page_by_marker_filter_by_tags_and_show_only_the_callers_project() {
    let (sim, client) = start().await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let tags = if n == 2 { json!(["ci-job"]) } else { json!([]) };
        let (lb, _) = active_load_balancer(&client, n, json!({"tags": tags})).await;
        ids.push(lb);
    }
    let (_, page) = client.get(&format!("{LB}/loadbalancers?limit=2")).await;
    assert_eq!(strings(&page, "loadbalancers", "id"), ids[..2].to_vec());
    let next = page["loadbalancers_links"][0].clone();
    assert_eq!(next["rel"], "next");
    let href = next["href"].as_str().unwrap().replace(&sim.url(), "");
    let (_, last) = client.get(&href).await;
    assert_eq!(strings(&last, "loadbalancers", "id"), ids[2..].to_vec());
    assert_eq!(
        last["loadbalancers_links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["rel"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["previous"],
        "the last page has no next link"
    );
    let (code, body) = client.get(&format!("{LB}/loadbalancers?marker=nope")).await;
    assert_eq!(
        (code, body["faultstring"].clone()),
        (400, json!("Supplied pagination marker 'nope' is not valid."))
    );
    let (_, tagged) = client.get(&format!("{LB}/loadbalancers?tags=ci-job")).await;
    assert_eq!(strings(&tagged, "loadbalancers", "id"), [ids[1].clone()]);
    let (_, fields) = client
        .get(&format!("{LB}/loadbalancers?fields=id,provisioning_status"))
        .await;
    assert_eq!(
        items(&fields, "loadbalancers")[0],
        json!({"id": ids[0], "provisioning_status": "ACTIVE"})
    );

    let other = Client::login(&sim, "other", "otherpass", "other").await;
    let (_, theirs) = other.get(&format!("{LB}/loadbalancers")).await;
    assert!(items(&theirs, "loadbalancers").is_empty());
    let (code, body) = other.get(&format!("{LB}/loadbalancers/{}", ids[0])).await;
    assert_eq!(
        (code, body["faultstring"].clone()),
        (403, json!("Policy does not allow this request to be performed."))
    );
    let admin = Client::admin(&sim).await;
    let (_, all) = admin.get(&format!("{LB}/loadbalancers")).await;
    assert_eq!(items(&all, "loadbalancers").len(), 3);
}

#[tokio::test]
async fn children_are_validated_and_go_with_their_parents() {
    let (sim, client) = start().await;
    let (lb, subnet) = active_load_balancer(&client, 4, json!({})).await;
    let (code, body) = client
        .post(
            &format!("{LB}/listeners"),
            json!({"listener": {"loadbalancer_id": lb, "protocol": "GOPHER", "protocol_port": 70}}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let listener = client
        .create(
            &format!("{LB}/listeners"),
            "listener",
            json!({"loadbalancer_id": lb, "protocol": "TCP", "protocol_port": 22}),
        )
        .await;
    sim.advance_clock(STEP);
    let pool = client
        .create(
            &format!("{LB}/pools"),
            "pool",
            json!({"listener_id": listener, "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"}),
        )
        .await;
    sim.advance_clock(STEP);
    let (_, shown) = client.get(&format!("{LB}/listeners/{listener}")).await;
    assert_eq!(shown["listener"]["default_pool_id"], json!(pool));
    let member = client
        .create(
            &format!("{LB}/pools/{pool}/members"),
            "member",
            json!({"address": "10.4.0.9", "protocol_port": 22, "subnet_id": subnet}),
        )
        .await;
    sim.advance_clock(STEP);
    // Deleting the pool takes its member along at the next step.
    assert_eq!(client.delete(&format!("{LB}/pools/{pool}")).await.0, 204);
    sim.advance_clock(STEP);
    assert_eq!(client.get(&format!("{LB}/pools/{pool}")).await.0, 404);
    assert!(!sim.exists("member", &member));
    let (_, shown) = client.get(&format!("{LB}/listeners/{listener}")).await;
    assert_eq!(shown["listener"]["default_pool_id"], Value::Null);
    assert_eq!(status(&client, &lb).await.1, "ACTIVE");
    // Without children now: deleted without cascade.
    assert_eq!(client.delete(&format!("{LB}/listeners/{listener}")).await.0, 204);
    sim.advance_clock(STEP);
    assert_eq!(client.delete(&format!("{LB}/loadbalancers/{lb}")).await.0, 204);
    client
        .get_after_deletes(&format!("{LB}/loadbalancers/{lb}"))
        .await;
}
