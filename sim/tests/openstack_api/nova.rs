//! Nova: asynchronous deletes, what a delete does to ports and volumes, locks, tags, microversions,
//! pages, keypairs and server groups.

use cloud_janitor_sim::openstack::NewServer;
use serde_json::{json, Value};

use crate::client::{self, network_with_subnet, Client};

const C: &str = "/compute/v2.1";

async fn boot(client: &Client, name: &str, networks: Value) -> String {
    let body = json!({"server": {"name": name, "imageRef": "img", "flavorRef": "1", "networks": networks}});
    client
        .create(&format!("{C}/servers"), "server", body["server"].clone())
        .await
}

#[tokio::test]
async fn delete_is_asynchronous_and_cleans_ports_and_volumes() {
    let sim = client::start().await;
    let client = Client::demo(&sim).await;
    let (network, _) = network_with_subnet(&client, "n", 40).await;
    let own_port = client
        .create("/network/v2.0/ports", "port", json!({"network_id": network}))
        .await;
    let server = boot(&client, "vm", json!([{"port": own_port}, {"uuid": network}])).await;
    let (_, detail) = client.get(&format!("{C}/servers/{server}")).await;
    assert_eq!(detail["server"]["status"], "ACTIVE");
    let (_, ports) = client
        .get(&format!("/network/v2.0/ports?device_id={server}"))
        .await;
    let ports = ports["ports"].as_array().unwrap().clone();
    assert_eq!(ports.len(), 2);
    let nova_port = ports
        .iter()
        .find(|p| p["id"] != Value::String(own_port.clone()))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sim.port_binding(&own_port),
        Some((server.clone(), "compute:nova".to_string()))
    );

    let volume = client
        .create(
            "/volume/v3/{project}/volumes",
            "volume",
            json!({"size": 1, "name": "v"}),
        )
        .await;
    let (status, attachment) = client
        .post(
            &format!("{C}/servers/{server}/os-volume_attachments"),
            json!({"volumeAttachment": {"volumeId": volume}}),
        )
        .await;
    assert_eq!(status, 200, "{attachment}");
    assert_eq!(attachment["volumeAttachment"]["device"], "/dev/vdb");
    assert_eq!(sim.volume_status(&volume).as_deref(), Some("in-use"));

    assert_eq!(client.delete(&format!("{C}/servers/{server}")).await.0, 204);
    let (status, deleting) = client.get(&format!("{C}/servers/{server}")).await;
    assert_eq!(status, 200);
    assert_eq!(deleting["server"]["OS-EXT-STS:task_state"], "deleting");
    assert_eq!(
        client.delete(&format!("{C}/servers/{server}")).await.0,
        204,
        "a repeated DELETE is accepted"
    );
    let gone = client
        .wait_for_status(&format!("{C}/servers/{server}"), 404)
        .await;
    assert_eq!(
        gone["itemNotFound"]["message"],
        format!("Instance {server} could not be found.")
    );

    assert!(
        !sim.exists("port", &nova_port),
        "Nova deletes the port it created"
    );
    assert_eq!(
        sim.port_binding(&own_port),
        Some((String::new(), String::new())),
        "and unbinds the one it was given"
    );
    assert_eq!(sim.volume_status(&volume).as_deref(), Some("available"));
    assert_eq!(
        client.delete(&format!("/network/v2.0/ports/{own_port}")).await.0,
        204
    );
    assert_eq!(
        client
            .delete(&format!("/network/v2.0/networks/{network}"))
            .await
            .0,
        204
    );
}

#[tokio::test]
async fn a_locked_server_refuses_delete_until_unlocked() {
    let sim = client::start().await;
    let client = Client::demo(&sim).await;
    let server = boot(&client, "vm", json!("none")).await;
    assert_eq!(
        client
            .post(
                &format!("{C}/servers/{server}/action"),
                json!({"lock": {"locked_reason": "debug"}})
            )
            .await
            .0,
        202
    );
    let (_, detail) = client.get(&format!("{C}/servers/{server}")).await;
    assert_eq!(
        (
            detail["server"]["locked"].clone(),
            detail["server"]["locked_reason"].clone()
        ),
        (json!(true), json!("debug"))
    );
    let (status, body) = client.delete(&format!("{C}/servers/{server}")).await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"conflictingRequest": {"code": 409, "message": format!("Instance {server} is locked")}})
    );
    assert_eq!(
        client
            .post(&format!("{C}/servers/{server}/action"), json!({"unlock": null}))
            .await
            .0,
        202
    );
    assert_eq!(client.delete(&format!("{C}/servers/{server}")).await.0, 204);
    client
        .wait_for_status(&format!("{C}/servers/{server}"), 404)
        .await;
}

#[tokio::test]
async fn server_tags_need_microversion_2_26_and_filter_lists() {
    let sim = client::start().await;
    let mut client = Client::demo(&sim).await;
    let tagged = sim
        .create_server(NewServer {
            name: "a",
            tags: &["ci-job", "job-1"],
            ..NewServer::default()
        })
        .unwrap();
    let other = sim
        .create_server(NewServer {
            name: "b",
            tags: &["job-2"],
            ..NewServer::default()
        })
        .unwrap();
    let ids = |body: &Value| -> Vec<String> {
        body["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, list) = client.get(&format!("{C}/servers/detail?tags=ci-job")).await;
    assert_eq!(ids(&list), [tagged.as_str()]);
    assert_eq!(list["servers"][0]["tags"], json!(["ci-job", "job-1"]));
    let (_, list) = client
        .get(&format!("{C}/servers/detail?tags-any=job-1,job-2"))
        .await;
    assert_eq!(ids(&list).len(), 2);
    let (_, list) = client.get(&format!("{C}/servers/detail?not-tags=ci-job")).await;
    assert_eq!(ids(&list), [other.as_str()]);
    let (_, list) = client.get(&format!("{C}/servers/detail?name=^b$")).await;
    assert_eq!(ids(&list), [other.as_str()]);
    assert_eq!(
        client
            .put(&format!("{C}/servers/{other}/tags/ci-job"), json!(null))
            .await
            .0,
        201
    );
    let (_, tags) = client.get(&format!("{C}/servers/{other}/tags")).await;
    assert_eq!(tags["tags"], json!(["job-2", "ci-job"]));

    // Before 2.26 there are no tags: no filter, no field, no tags URL.
    client.compute_version = Some("2.25".into());
    let (_, list) = client.get(&format!("{C}/servers/detail?tags=ci-job")).await;
    assert_eq!(ids(&list).len(), 2);
    assert!(list["servers"][0].get("tags").is_none());
    assert_eq!(client.get(&format!("{C}/servers/{other}/tags")).await.0, 404);
    client.compute_version = Some("2.999".into());
    assert_eq!(client.get(&format!("{C}/servers/detail")).await.0, 406);
}

#[tokio::test]
async fn server_lists_page_with_servers_links() {
    let sim = client::start().await;
    let client = Client::demo(&sim).await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            sim.create_server(NewServer {
                name: &format!("vm{i}"),
                ..NewServer::default()
            })
            .unwrap(),
        );
    }
    let mut seen = Vec::new();
    let mut path = Some(format!("{C}/servers/detail?limit=2"));
    while let Some(current) = path.take() {
        let (status, page) = client.get(&current).await;
        assert_eq!(status, 200);
        seen.extend(
            page["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string()),
        );
        path = page["servers_links"][0]["href"]
            .as_str()
            .map(|h| h.strip_prefix(&sim.url()).unwrap().to_string());
    }
    created.sort();
    seen.sort();
    assert_eq!(seen, created);
    let (status, body) = client.get(&format!("{C}/servers/detail?marker=nope")).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = client.get(&format!("{C}/servers/detail?all_tenants=1")).await;
    assert_eq!(status, 403, "only admins list every project");
    let admin = Client::admin(&sim).await;
    let (_, all) = admin.get(&format!("{C}/servers/detail?all_tenants=1")).await;
    assert_eq!(all["servers"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn keypairs_and_server_groups_have_novas_shapes() {
    let sim = client::start().await;
    let client = Client::demo(&sim).await;
    let (status, keypair) = client
        .post(
            &format!("{C}/os-keypairs"),
            json!({"keypair": {"name": "ci-key"}}),
        )
        .await;
    assert_eq!(status, 201);
    assert!(keypair["keypair"]["private_key"].is_string());
    let (_, list) = client.get(&format!("{C}/os-keypairs")).await;
    assert_eq!(list["keypairs"][0]["keypair"]["name"], "ci-key");
    let (status, body) = client
        .post(
            &format!("{C}/os-keypairs"),
            json!({"keypair": {"name": "ci-key"}}),
        )
        .await;
    assert_eq!(
        (status, body["conflictingRequest"]["code"].clone()),
        (409, json!(409))
    );

    let (_, group) = client
        .post(
            &format!("{C}/os-server-groups"),
            json!({"server_group": {"name": "ci-group", "policy": "anti-affinity"}}),
        )
        .await;
    let group_id = group["server_group"]["id"].as_str().unwrap().to_string();
    let body = json!({"server": {"name": "vm", "imageRef": "i", "flavorRef": "1", "networks": "none", "key_name": "ci-key"},
                      "os:scheduler_hints": {"group": group_id}});
    let (_, server) = client.post(&format!("{C}/servers"), body).await;
    let server_id = server["server"]["id"].as_str().unwrap().to_string();
    let (_, group) = client.get(&format!("{C}/os-server-groups/{group_id}")).await;
    assert_eq!(group["server_group"]["members"], json!([server_id]));
    assert_eq!(group["server_group"]["policy"], "anti-affinity");
    assert_eq!(client.delete(&format!("{C}/servers/{server_id}")).await.0, 204);
    client
        .wait_for_status(&format!("{C}/servers/{server_id}"), 404)
        .await;
    let (_, group) = client.get(&format!("{C}/os-server-groups/{group_id}")).await;
    assert_eq!(
        group["server_group"]["members"],
        json!([]),
        "a deleted server leaves its group"
    );
    assert_eq!(client.delete(&format!("{C}/os-keypairs/ci-key")).await.0, 204);
    let (status, body) = client.delete(&format!("{C}/os-keypairs/ci-key")).await;
    assert_eq!((status, body["itemNotFound"]["code"].clone()), (404, json!(404)));
    assert_eq!(
        client.delete(&format!("{C}/os-server-groups/{group_id}")).await.0,
        204
    );
}
