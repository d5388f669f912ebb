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

/// A server booted on a port made beforehand and on a network, where Nova makes a port of its own.
struct Booted {
    network: String,
    given_port: String,
    server: String,
    nova_port: String,
}

/// Boots `vm` on a new network `10.<n>.0.0/24`, with a port made first and a port Nova makes.
async fn boot_on_port_and_network(client: &Client, n: u8) -> Booted {
    let (network, _) = network_with_subnet(client, "n", n).await;
    let given_port = client
        .create("/network/v2.0/ports", "port", json!({"network_id": network}))
        .await;
    let server = boot(client, "vm", json!([{"port": given_port}, {"uuid": network}])).await;
    let (_, ports) = client
        .get(&format!("/network/v2.0/ports?device_id={server}"))
        .await;
    let ports = client::strings(&ports, "ports", "id");
    assert_eq!(ports.len(), 2, "{ports:?}");
    let nova_port = ports.into_iter().find(|p| *p != given_port).unwrap();
    Booted {
        network,
        given_port,
        server,
        nova_port,
    }
}

#[tokio::test]
async fn delete_is_asynchronous_and_cleans_ports_and_volumes() {
    let (sim, client) = client::demo().await;
    let Booted {
        network,
        given_port: own_port,
        server,
        nova_port,
    } = boot_on_port_and_network(&client, 40).await;
    let (_, detail) = client.get(&format!("{C}/servers/{server}")).await;
    assert_eq!(detail["server"]["status"], "ACTIVE");
    assert_eq!(
        sim.port_binding(&own_port),
        Some((server.clone(), "compute:nova".to_string()))
    );
    assert_eq!(sim.nova_ports(&server), vec![nova_port.clone()]);
    let (_, subnets) = client
        .get(&format!("/network/v2.0/subnets?network_id={network}"))
        .await;
    assert_eq!(
        sim.port_subnets(&own_port),
        client::strings(&subnets, "subnets", "id")
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
    let gone = client.get_after_deletes(&format!("{C}/servers/{server}")).await;
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
    let (_, client) = client::demo().await;
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
    client.get_after_deletes(&format!("{C}/servers/{server}")).await;
}

#[tokio::test]
async fn server_tags_need_microversion_2_26_and_filter_lists() {
    let (sim, mut client) = client::demo().await;
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
    let ids = |body: &Value| client::strings(body, "servers", "id");
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
    let (sim, client) = client::demo().await;
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
        seen.extend(client::strings(&page, "servers", "id"));
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
    assert_eq!(client::items(&all, "servers").len(), 5);
}

#[tokio::test]
async fn keypairs_and_server_groups_have_novas_shapes() {
    let (_, client) = client::demo().await;
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
        .get_after_deletes(&format!("{C}/servers/{server_id}"))
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

/// One look at a server being deleted, and at what it holds.
#[derive(Debug)]
struct Seen {
    /// 404, or 200 with status and task state.
    status: u16,
    server_status: String,
    task_state: Value,
    volume: String,
    nova_port: bool,
    kept_port_bound: bool,
    listed: bool,
}

/// Real Nova's delete, as `test_nova_server_lifecycle` and the README measured it: 204; `ACTIVE` with
/// task_state `deleting` (volumes become `available` about half way); then `DELETED` with 200, by
/// which time Nova's own port is gone and the given one unbound; then 404. A `DELETED` server is
/// not listed and answers 404 to another DELETE.
#[tokio::test]
async fn delete_shows_deleting_then_deleted_then_404_and_frees_volumes_and_ports_before() {
    let (sim, client) = client::demo().await;
    let Booted {
        given_port: kept,
        server,
        nova_port,
        ..
    } = boot_on_port_and_network(&client, 41).await;
    let volume = sim.create_volume("v", 1, &[]).unwrap();
    sim.attach_volume(&server, &volume).unwrap();

    assert_eq!(client.delete(&format!("{C}/servers/{server}")).await.0, 204);
    let mut seen: Vec<Seen> = Vec::new();
    // Looks at the server at these tenths of the delete's delay, until it answers 404.
    let mut tenths_passed = 0;
    for tenths in [0, 3, 5, 6, 7, 9, 10] {
        sim.advance_clock(client::DELETE_DELAY * (tenths - tenths_passed) / 10);
        tenths_passed = tenths;
        let (status, body) = client.get(&format!("{C}/servers/{server}")).await;
        let (_, list) = client.get(&format!("{C}/servers")).await;
        seen.push(Seen {
            status,
            server_status: body["server"]["status"].as_str().unwrap_or("").to_string(),
            task_state: body["server"]["OS-EXT-STS:task_state"].clone(),
            volume: sim.volume_status(&volume).unwrap(),
            nova_port: sim.exists("port", &nova_port),
            kept_port_bound: sim.port_binding(&kept).unwrap().0 == server,
            listed: client::strings(&list, "servers", "id").contains(&server),
        });
        if status == 404 {
            assert_eq!(
                body["itemNotFound"]["message"],
                format!("Instance {server} could not be found.")
            );
            break;
        }
        if seen.last().unwrap().server_status == "DELETED" {
            assert_eq!(
                (
                    body["server"]["OS-EXT-STS:vm_state"].clone(),
                    body["server"]["OS-EXT-STS:power_state"].clone(),
                    body["server"]["addresses"].clone()
                ),
                (json!("deleted"), json!(0), json!({}))
            );
            assert!(body["server"]["OS-SRV-USG:terminated_at"].is_string());
            let (again, _) = client.delete(&format!("{C}/servers/{server}")).await;
            assert_eq!(again, 404, "a DELETED server is not there to delete");
        }
    }
    assert_eq!(seen.last().map(|s| s.status), Some(404), "{seen:#?}");
    let phase = |s: &Seen| match (s.status, s.server_status.as_str()) {
        (404, _) => 2,
        (200, "DELETED") => 1,
        (200, "ACTIVE") if s.task_state == json!("deleting") => 0,
        _ => panic!("unexpected state {s:?}"),
    };
    let phases: Vec<u8> = seen.iter().map(phase).collect();
    assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{seen:#?}");
    assert!(phases.contains(&0) && phases.contains(&1), "{seen:#?}");
    for s in &seen {
        match phase(s) {
            0 => assert!(s.nova_port && s.kept_port_bound && s.listed, "{s:?}"),
            _ => assert!(
                !s.nova_port && !s.kept_port_bound && !s.listed && s.volume == "available",
                "gone before the 404: {s:?}"
            ),
        }
    }
    let deleting: Vec<&Seen> = seen.iter().filter(|s| phase(s) == 0).collect();
    assert_eq!(deleting[0].volume, "in-use", "{seen:#?}");
    assert!(
        deleting.iter().any(|s| s.volume == "available"),
        "the volume is available while the server still shows ACTIVE/deleting: {seen:#?}"
    );
}

/// Members see `OS-EXT-SRV-ATTR:hostname` from 2.90 only, admins from 2.3 together with the host
/// attributes; 2.96 adds `pinned_availability_zone`.
#[tokio::test]
async fn server_attributes_follow_the_role_and_microversion() {
    let (sim, mut client) = client::demo().await;
    let mut admin = Client::admin(&sim).await;
    let server = sim
        .create_server(NewServer {
            name: "CI Job_7",
            ..NewServer::default()
        })
        .unwrap();
    let path = format!("{C}/servers/{server}");
    for (version, member_hostname) in [("2.89", false), ("2.90", true), ("2.96", true)] {
        client.compute_version = Some(version.into());
        let (_, shown) = client.get(&path).await;
        let shown = &shown["server"];
        assert_eq!(
            shown.get("OS-EXT-SRV-ATTR:hostname").is_some(),
            member_hostname,
            "{version}"
        );
        assert!(shown.get("OS-EXT-SRV-ATTR:host").is_none());
        assert!(shown.get("host_status").is_none());
        assert_eq!(shown.get("pinned_availability_zone").is_some(), version == "2.96");
    }
    let (_, shown) = client.get(&path).await;
    assert_eq!(shown["server"]["OS-EXT-SRV-ATTR:hostname"], "ci-job-7");
    for (version, hostname) in [("2.1", false), ("2.3", true)] {
        admin.compute_version = Some(version.into());
        let (_, shown) = admin.get(&path).await;
        assert!(shown["server"]["OS-EXT-SRV-ATTR:host"].is_string());
        assert_eq!(
            shown["server"].get("OS-EXT-SRV-ATTR:hostname").is_some(),
            hostname
        );
    }
}

/// Compute microversions go up to 2.96 (openstacksdk negotiates its highest); from 2.92 a keypair
/// needs `public_key`.
#[tokio::test]
async fn microversions_reach_2_96_and_keypairs_need_a_public_key_from_2_92() {
    let (_, mut client) = client::demo().await;
    let (_, version) = client.get(C).await;
    assert_eq!(version["version"]["version"], "2.96");
    client.compute_version = Some("2.96".into());
    assert_eq!(client.get(&format!("{C}/servers")).await.0, 200);
    client.compute_version = Some("2.97".into());
    let (status, body) = client.get(&format!("{C}/servers")).await;
    assert_eq!(status, 406);
    assert_eq!(
        body["computeFault"]["message"],
        "Version 2.97 is not supported by the API. Minimum is 2.1 and maximum is 2.96."
    );
    client.compute_version = Some("2.92".into());
    let (status, body) = client
        .post(&format!("{C}/os-keypairs"), json!({"keypair": {"name": "k"}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["badRequest"]["message"],
        "Invalid input for field/attribute keypair. Value: {'name': 'k'}. 'public_key' is a required property"
    );
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1gY1dX0Y2pYQz6h5E9cP1u8c2V8h6JdK9jvS5p0aXk ci";
    let (status, _) = client
        .post(
            &format!("{C}/os-keypairs"),
            json!({"keypair": {"name": "k", "public_key": key}}),
        )
        .await;
    assert_eq!(status, 201);
}
