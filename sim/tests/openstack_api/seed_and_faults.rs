//! The seeded CI leftovers, fault injection, the request log and shutdown.

use cloud_janitor_sim::faults::{Breakage, FaultRule};
use serde_json::{json, Value};

use crate::client::{self, Client};
use crate::support::wait_until_refused;

#[tokio::test]
async fn seeded_leftovers_are_visible_through_the_api_as_the_janitor_will_list_them() {
    let sim = client::start().await;
    let seeded = sim.seed_ci_leftovers();
    assert_eq!(seeded.jobs.len(), 3);
    for (kind, id) in seeded.tagged().iter().chain(seeded.survivors().iter()) {
        assert!(sim.exists(kind, id), "{kind} {id}");
    }
    let client = Client::demo(&sim).await;
    let (_, networks) = client.get("/network/v2.0/networks?tags=ci-job").await;
    assert_eq!(client::items(&networks, "networks").len(), 3);
    let created = networks["networks"][0]["created_at"].as_str().unwrap();
    let age = chrono::Utc::now() - created.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(age > chrono::Duration::hours(2), "leftovers are a few hours old");

    let (_, servers) = client.get("/compute/v2.1/servers/detail?tags=ci-job").await;
    let servers = client::items(&servers, "servers");
    assert_eq!(servers.len(), 4);
    let locked: Vec<&Value> = servers.iter().filter(|s| s["locked"] == json!(true)).collect();
    assert_eq!(locked.len(), 1);
    assert_eq!(locked[0]["id"], json!(seeded.locked_server));
    let (_, untagged) = client.get("/compute/v2.1/servers/detail?not-tags=ci-job").await;
    assert_eq!(untagged["servers"][0]["id"], json!(seeded.keep.server));

    let (_, volumes) = client
        .get("/volume/v3/{project}/volumes/detail?metadata={\"ci-job\":\"true\"}")
        .await;
    assert_eq!(client::items(&volumes, "volumes").len(), 4);
    let (_, keypairs) = client.get("/compute/v2.1/os-keypairs").await;
    assert!(keypairs["keypairs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["keypair"]["name"].as_str().unwrap().starts_with("ci-")));

    // The tagged group the untagged port uses is in use; the default group is untouchable.
    let (status, body) = client
        .delete(&format!(
            "/network/v2.0/security-groups/{}",
            seeded.in_use_security_group
        ))
        .await;
    assert_eq!((status, client::neutron_type(&body)), (409, "SecurityGroupInUse"));
    let (status, _) = client
        .delete(&format!("/compute/v2.1/servers/{}", seeded.locked_server))
        .await;
    assert_eq!(status, 409);
    // Nova's own port for each booted-on-network server is untagged and refused to members.
    let nova_port = &seeded.jobs[1].nova_ports[0];
    assert_eq!(
        client.delete(&format!("/network/v2.0/ports/{nova_port}")).await.0,
        403
    );
    let (_, tagged_ports) = client.get("/network/v2.0/ports?tags=ci-job&fields=id").await;
    assert!(!client::strings(&tagged_ports, "ports", "id").contains(nova_port));

    // Seeding twice numbers the jobs on rather than colliding.
    let again = sim.seed_ci_leftovers();
    assert_eq!(again.jobs[0].job, "job-4");
}

#[tokio::test]
async fn injected_faults_answer_before_the_api_and_are_logged() {
    let (sim, client) = client::demo().await;
    sim.faults()
        .add(FaultRule::status("GET", "/network/v2.0/networks", 503, 1));
    let (status, _) = client.get("/network/v2.0/networks").await;
    assert_eq!(status, 503);
    assert_eq!(
        client.get("/network/v2.0/networks").await.0,
        200,
        "the rule was used up"
    );

    // The admin endpoint adds rules over HTTP too, and is itself never faulted.
    let rule = json!({"method": "DELETE", "path": "/volumes/", "status": 500, "count": 1});
    let http = reqwest::Client::new();
    let added = http
        .post(format!("{}/_sim/faults", sim.url()))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status().as_u16(), 204);
    let volume = sim.create_volume("v", 1, &[]).unwrap();
    assert_eq!(
        client
            .delete(&format!("/volume/v3/{{project}}/volumes/{volume}"))
            .await
            .0,
        500
    );
    assert_eq!(
        client
            .delete(&format!("/volume/v3/{{project}}/volumes/{volume}"))
            .await
            .0,
        202
    );

    let log = sim.request_log();
    assert!(log
        .iter()
        .any(|(m, p, s)| m == "GET" && p == "/network/v2.0/networks" && *s == 503));
    let lists = log
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.starts_with("/network/v2.0/networks"))
        .count();
    assert_eq!(lists, 2);
    sim.clear_request_log();
    assert!(sim.request_log().is_empty());
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = client::start().await;
    let url = format!("{}/identity/v3", sim.url());
    assert_eq!(reqwest::get(&url).await.unwrap().status().as_u16(), 200);
    sim.shutdown();
    // The listener closes on the server's task, in real time.
    wait_until_refused(&url).await;
}

/// The DELETE path of one seeded resource.
fn delete_path(kind: &str, id: &str) -> String {
    match kind {
        "server" => format!("/compute/v2.1/servers/{id}"),
        "keypair" => format!("/compute/v2.1/os-keypairs/{id}"),
        "server_group" => format!("/compute/v2.1/os-server-groups/{id}"),
        "volume" => format!("/volume/v3/{{project}}/volumes/{id}"),
        "volume_snapshot" => format!("/volume/v3/{{project}}/snapshots/{id}"),
        "floating_ip" => format!("/network/v2.0/floatingips/{id}"),
        "security_group" => format!("/network/v2.0/security-groups/{id}"),
        other => format!("/network/v2.0/{other}s/{id}"),
    }
}

#[tokio::test]
async fn deleting_every_tagged_resource_until_nothing_moves_leaves_exactly_the_expected_ones() {
    let sim = client::start().await;
    let seeded = sim.seed_ci_leftovers();
    let client = Client::demo(&sim).await;
    let tagged = seeded.tagged();
    // No dependency order at all: retry everything until a round accepts nothing.
    for _round in 0..8 {
        let mut accepted = Vec::new();
        for (kind, id) in tagged.iter().filter(|(kind, id)| sim.exists(kind, id)) {
            if *kind == "router" {
                let (_, ports) = client
                    .get(&format!(
                        "/network/v2.0/ports?device_id={id}&device_owner=network:router_interface"
                    ))
                    .await;
                for port in client::items(&ports, "ports") {
                    let body = json!({"port_id": port["id"]});
                    client
                        .put(
                            &format!("/network/v2.0/routers/{id}/remove_router_interface"),
                            body,
                        )
                        .await;
                }
            }
            let (status, _) = client.delete(&delete_path(kind, id)).await;
            if status == 202 || status == 204 {
                accepted.push((*kind, id.clone()));
            }
        }
        if accepted.is_empty() {
            break;
        }
        sim.advance_clock(client::DELETE_DELAY);
        let unfinished: Vec<_> = accepted
            .iter()
            .filter(|(kind, id)| sim.exists(kind, id))
            .collect();
        assert!(unfinished.is_empty(), "deletes did not finish: {unfinished:?}");
    }
    let mut left: Vec<(&str, String)> = tagged
        .into_iter()
        .filter(|(kind, id)| sim.exists(kind, id))
        .collect();
    let mut expected = seeded.expected_left();
    left.sort();
    expected.sort();
    assert_eq!(left, expected);
    for (kind, id) in seeded.survivors() {
        assert!(sim.exists(kind, &id), "{kind} {id} must survive");
    }
}

/// A fresh (`--empty`) simulator has what the real test stack has before any test runs: the external
/// network `public` of project admin, the network `shared` (with its subnet) that project `other`
/// shares with everyone, and project demo's `default` security group. Seeding reuses them.
#[tokio::test]
async fn a_fresh_sim_has_public_shared_and_the_default_group_and_seeding_reuses_them() {
    let sim = client::start().await;
    let admin = Client::admin(&sim).await;
    let demo = Client::demo(&sim).await;
    let other = Client::login(&sim, "other", "otherpass", "other").await;
    let (_, networks) = admin.get("/network/v2.0/networks").await;
    let networks = networks["networks"].as_array().unwrap();
    assert_eq!(networks.len(), 2, "{networks:?}");
    let public = networks.iter().find(|n| n["name"] == "public").unwrap();
    assert_eq!(
        (public["router:external"].clone(), public["project_id"].clone()),
        (json!(true), json!(admin.project_id))
    );
    let shared = networks.iter().find(|n| n["name"] == "shared").unwrap();
    assert_eq!(
        (
            shared["shared"].clone(),
            shared["router:external"].clone(),
            shared["project_id"].clone()
        ),
        (json!(true), json!(false), json!(other.project_id))
    );
    let shared_id = shared["id"].as_str().unwrap().to_string();
    assert_eq!(sim.shared_network_id(), shared_id);
    assert_eq!(shared["subnets"].as_array().unwrap().len(), 1);
    let (_, subnet) = demo
        .get(&format!(
            "/network/v2.0/subnets/{}",
            shared["subnets"][0].as_str().unwrap()
        ))
        .await;
    assert_eq!(subnet["subnet"]["cidr"], "10.250.0.0/24");

    // How the e2e tests find it: shared, not external, not demo's.
    let (_, visible) = demo.get("/network/v2.0/networks?shared=true").await;
    let candidates: Vec<&Value> = visible["networks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["router:external"] == json!(false) && n["project_id"] != json!(demo.project_id))
        .collect();
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0]["id"], json!(shared_id));
    let (status, _) = demo.delete(&format!("/network/v2.0/networks/{shared_id}")).await;
    assert_eq!(status, 403);

    // demo's default group exists before demo ever called Neutron.
    let (_, groups) = admin
        .get(&format!(
            "/network/v2.0/security-groups?name=default&project_id={}",
            demo.project_id
        ))
        .await;
    assert_eq!(groups["security_groups"].as_array().unwrap().len(), 1);

    let seeded = sim.seed_ci_leftovers();
    assert_eq!(seeded.keep.shared_network, shared_id, "one shared network");
    assert_eq!(seeded.keep.public_network, sim.public_network_id());
    let (_, networks) = admin.get("/network/v2.0/networks?shared=true").await;
    assert_eq!(networks["networks"].as_array().unwrap().len(), 1);
}

/// Sends `GET path` on a fresh connection and reads until the server closes it: the raw bytes.
async fn raw_get(sim: &cloud_janitor_sim::openstack::OpenStackSim, path: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = sim.url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // A reset instead of a clean close ends the read too; what arrived before it is kept.
    let _ = stream.read_to_end(&mut answer).await;
    answer
}

#[tokio::test]
async fn a_hangup_closes_the_connection_without_an_answer_and_the_api_never_acts() {
    let (sim, client) = client::demo().await;
    let group = sim.create_security_group("ci-sg", &[]).unwrap();
    sim.faults()
        .add(FaultRule::broken("GET", "/identity/v3", Breakage::Hangup, 1));
    assert_eq!(raw_get(&sim, "/identity/v3").await, b"");
    let answer = raw_get(&sim, "/identity/v3").await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "one request only: {}",
        String::from_utf8_lossy(&answer)
    );

    sim.faults().add(FaultRule::broken(
        "DELETE",
        "/security-groups/",
        Breakage::Hangup,
        1,
    ));
    let path = format!("/network/v2.0/security-groups/{group}");
    let error = client.try_delete(&path).await.expect_err("no answer");
    assert!(!error.is_status(), "{error}");
    assert!(sim.exists("security_group", &group), "never acted on");
}

#[tokio::test]
async fn a_truncated_answer_promises_the_whole_body_sends_half_and_the_api_has_acted() {
    let (sim, client) = client::demo().await;
    let whole = raw_get(&sim, "/identity/v3").await;
    let body_of = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_string)
            })
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (length, body.to_string())
    };
    let (length, body) = body_of(&whole);
    assert_eq!(length, body.len());

    sim.faults()
        .add(FaultRule::broken("GET", "/identity/v3", Breakage::Truncate, 1));
    let (promised, sent) = body_of(&raw_get(&sim, "/identity/v3").await);
    assert_eq!((promised, sent.as_str()), (length, &body[..length / 2]));

    let group = sim.create_security_group("ci-sg", &[]).unwrap();
    sim.faults().add(FaultRule::broken(
        "DELETE",
        "/security-groups/",
        Breakage::Truncate,
        1,
    ));
    let path = format!("/network/v2.0/security-groups/{group}");
    let error = client
        .try_delete(&path)
        .await
        .expect_err("a 204 has no half: lost whole");
    assert!(!error.is_status(), "{error}");
    assert!(!sim.exists("security_group", &group), "done all the same");
    // A body with something in it: the listing arrives cut short, and the client says so.
    sim.faults().add(FaultRule::broken(
        "GET",
        "/security-groups",
        Breakage::Truncate,
        1,
    ));
    let error = client
        .try_get("/network/v2.0/security-groups")
        .await
        .expect_err("half a body");
    assert!(error.is_body() || error.is_decode(), "{error}");
}

#[tokio::test]
async fn an_endless_body_keeps_streaming_after_the_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = client::start().await;
    sim.faults()
        .add(FaultRule::broken("GET", "/identity/v3", Breakage::Endless, 1));
    let address = sim.url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /identity/v3 HTTP/1.1\r\nHost: sim\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    while received.len() < 4 << 20 {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the body ended after {} bytes", received.len());
        received.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&received[..4096]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("transfer-encoding: chunked") && !text.contains("content-length"),
        "{text}"
    );
    assert!(
        text.contains("\"version\""),
        "the real answer comes first: {text}"
    );
}

#[test]
fn a_breakage_is_one_rule_s_answer_and_posts_as_json() {
    use axum::http::Method;
    use cloud_janitor_sim::faults::{Faults, Injected};
    let faults = Faults::default();
    faults.add(FaultRule::broken("DELETE", "/ports/", Breakage::Truncate, 1));
    faults.add(FaultRule::status("DELETE", "/ports/", 503, 1));
    let first = faults.take(&Method::DELETE, "/v2.0/ports/p");
    assert_eq!(
        first,
        Injected {
            breakage: Some(Breakage::Truncate),
            ..Injected::default()
        },
        "the first deciding rule answers; the second waits its turn"
    );
    assert_eq!(
        faults
            .take(&Method::DELETE, "/v2.0/ports/p")
            .response
            .map(|r| r.0),
        Some(503)
    );
    let rule: FaultRule =
        serde_json::from_str(r#"{"path": "/ports", "status": 200, "breakage": "endless"}"#).unwrap();
    assert_eq!(rule.breakage, Some(Breakage::Endless));
}

#[tokio::test]
async fn one_resource_is_backdated_and_another_project_s_resources_stay_out_of_sight() {
    let (sim, client) = client::demo().await;
    let old = sim.create_security_group("ci-old", &["ci-job"]).unwrap();
    let new = sim.create_security_group("ci-new", &["ci-job"]).unwrap();
    assert!(sim.backdate("security_group", &old, chrono::Duration::hours(3)));
    assert!(!sim.backdate("security_group", "no-such-group", chrono::Duration::hours(3)));
    let theirs = sim
        .create_security_group_of_other_project("ci-theirs", &["ci-job"])
        .unwrap();
    let their_network = sim
        .create_network_of_other_project("ci-theirs", &["ci-job"])
        .unwrap();
    let (_, groups) = client.get("/network/v2.0/security-groups?tags=ci-job").await;
    let age = |id: &str| {
        let group = client::items(&groups, "security_groups")
            .iter()
            .find(|g| g["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed: {groups}"));
        let created: chrono::DateTime<chrono::Utc> = group["created_at"].as_str().unwrap().parse().unwrap();
        chrono::Utc::now() - created
    };
    assert!(age(&old) > chrono::Duration::minutes(179), "{:?}", age(&old));
    assert!(age(&new) < chrono::Duration::minutes(1), "{:?}", age(&new));
    assert_eq!(client::items(&groups, "security_groups").len(), 2, "not {theirs}");
    let (status, _) = client
        .get(&format!("/network/v2.0/networks/{their_network}"))
        .await;
    assert_eq!(status, 404);
    let other = Client::login(&sim, "other", "otherpass", "other").await;
    let (_, mine) = other
        .get(&format!("/network/v2.0/security-groups/{theirs}"))
        .await;
    assert_eq!(mine["security_group"]["project_id"], json!(other.project_id));
}

#[tokio::test]
async fn guarded_resources_can_carry_a_ci_tag_added_as_an_admin_would() {
    let (sim, client) = client::demo().await;
    let default_group = sim.default_security_group_id();
    let shared = sim.shared_network_id();
    let shared_subnets = sim.network_subnets(&shared);
    assert_eq!(shared_subnets.len(), 1);
    assert!(sim.add_tag("security_group", &default_group, "ci-job"));
    assert!(sim.add_tag("network", &shared, "ci-job"));
    assert!(sim.add_tag("subnet", &shared_subnets[0], "ci-job"));
    assert!(!sim.add_tag("volume", "any", "ci-job"), "Cinder has no tags");
    assert!(!sim.add_tag("network", "no-such-network", "ci-job"));
    let (_, groups) = client.get("/network/v2.0/security-groups?tags=ci-job").await;
    assert_eq!(client::strings(&groups, "security_groups", "name"), ["default"]);
    assert_eq!(
        client::strings(&groups, "security_groups", "id"),
        [default_group.as_str()]
    );
    let (_, networks) = client.get("/network/v2.0/networks?tags=ci-job").await;
    assert_eq!(client::strings(&networks, "networks", "id"), [shared.as_str()]);
}
