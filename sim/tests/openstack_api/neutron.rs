//! Neutron: the conflicts and refusals real Neutron answers, tags, filters and pages.

use serde_json::{json, Value};

use crate::client::{self, network_with_subnet, neutron_type, Client};

const N: &str = "/network/v2.0";

/// A router joined to `public` and to a subnet, a port on that subnet and a floating IP on the port.
struct Routed {
    network: String,
    subnet: String,
    router: String,
    interface_port: String,
    port: String,
    floating_ip: String,
}

/// A new security group (with Neutron's two egress rules); returns its id.
async fn security_group(client: &Client, name: &str) -> String {
    let body = json!({"name": name});
    client
        .create(&format!("{N}/security-groups"), "security_group", body)
        .await
}

async fn routed(client: &Client) -> Routed {
    let public = client.sim.public_network_id();
    let (network, subnet) = network_with_subnet(client, "routed", 30).await;
    let router = client
        .create(
            &format!("{N}/routers"),
            "router",
            json!({"name": "r", "external_gateway_info": {"network_id": public}}),
        )
        .await;
    let (status, body) = client
        .put(
            &format!("{N}/routers/{router}/add_router_interface"),
            json!({"subnet_id": subnet}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let interface_port = body["port_id"].as_str().unwrap().to_string();
    let port = client
        .create(&format!("{N}/ports"), "port", json!({"network_id": network}))
        .await;
    let floating_ip = client
        .create(
            &format!("{N}/floatingips"),
            "floatingip",
            json!({"floating_network_id": public, "port_id": port}),
        )
        .await;
    Routed {
        network,
        subnet,
        router,
        interface_port,
        port,
        floating_ip,
    }
}

#[tokio::test]
async fn router_gateway_interface_and_floating_ip_are_wired_like_neutron() {
    let (sim, client) = client::demo().await;
    let r = routed(&client).await;
    let (_, router) = client.get(&format!("{N}/routers/{}", r.router)).await;
    assert_eq!(
        router["router"]["external_gateway_info"]["network_id"],
        sim.public_network_id()
    );
    let (_, fip) = client.get(&format!("{N}/floatingips/{}", r.floating_ip)).await;
    assert_eq!(fip["floatingip"]["router_id"], Value::String(r.router.clone()));
    assert_eq!(fip["floatingip"]["port_id"], Value::String(r.port.clone()));
    assert!(fip["floatingip"]["floating_ip_address"]
        .as_str()
        .unwrap()
        .starts_with("172.24.4."));
    let (_, iface) = client.get(&format!("{N}/ports/{}", r.interface_port)).await;
    assert_eq!(iface["port"]["device_owner"], "network:router_interface");
    assert_eq!(iface["port"]["fixed_ips"][0]["ip_address"], "10.30.0.1");
    // Gateway and floating IP ports belong to no project.
    let (_, mine) = client.get(&format!("{N}/ports?fields=device_owner")).await;
    let owners = client::strings(&mine, "ports", "device_owner");
    assert!(
        !owners
            .iter()
            .any(|o| o == "network:router_gateway" || o == "network:floatingip"),
        "{owners:?}"
    );
}

#[tokio::test]
async fn in_use_resources_answer_409_with_neutrons_types() {
    let (sim, client) = client::demo().await;
    let r = routed(&client).await;
    let group = security_group(&client, "sg").await;
    let (status, body) = client
        .put(
            &format!("{N}/ports/{}", r.port),
            json!({"port": {"security_groups": [group]}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = client.delete(&format!("{N}/security-groups/{group}")).await;
    assert_eq!((status, neutron_type(&body)), (409, "SecurityGroupInUse"));
    assert_eq!(
        body["NeutronError"]["message"],
        format!("Security Group {group} in use.")
    );
    assert_eq!(body["NeutronError"]["detail"], "");

    let (status, body) = client.delete(&format!("{N}/ports/{}", r.interface_port)).await;
    assert_eq!((status, neutron_type(&body)), (409, "ServicePortInUse"));
    let (status, body) = client.delete(&format!("{N}/networks/{}", r.network)).await;
    assert_eq!((status, neutron_type(&body)), (409, "NetworkInUse"));
    let (status, body) = client.delete(&format!("{N}/subnets/{}", r.subnet)).await;
    assert_eq!((status, neutron_type(&body)), (409, "SubnetInUse"));
    let (status, body) = client.delete(&format!("{N}/routers/{}", r.router)).await;
    assert_eq!((status, neutron_type(&body)), (409, "RouterInUse"));
    let remove = json!({"subnet_id": r.subnet});
    let (status, body) = client
        .put(
            &format!("{N}/routers/{}/remove_router_interface", r.router),
            remove.clone(),
        )
        .await;
    assert_eq!(
        (status, neutron_type(&body)),
        (409, "RouterInterfaceInUseByFloatingIP")
    );

    // In dependency order everything goes.
    assert_eq!(
        client
            .delete(&format!("{N}/floatingips/{}", r.floating_ip))
            .await
            .0,
        204
    );
    assert_eq!(
        client
            .put(
                &format!("{N}/routers/{}/remove_router_interface", r.router),
                remove
            )
            .await
            .0,
        200
    );
    assert_eq!(client.delete(&format!("{N}/routers/{}", r.router)).await.0, 204);
    assert_eq!(client.delete(&format!("{N}/ports/{}", r.port)).await.0, 204);
    assert_eq!(
        client.delete(&format!("{N}/security-groups/{group}")).await.0,
        204
    );
    // A member may create a `network:dhcp` port itself (how the e2e tests fake a DHCP agent);
    // Neutron deletes it with the network.
    let dhcp = client
        .create(
            &format!("{N}/ports"),
            "port",
            json!({"network_id": r.network, "device_owner": "network:dhcp", "device_id": "dhcp-fake"}),
        )
        .await;
    assert_eq!(client.delete(&format!("{N}/networks/{}", r.network)).await.0, 204);
    assert!(!sim.exists("port", &dhcp), "the DHCP port goes with its network");
    assert!(!sim.exists("subnet", &r.subnet));
}

#[tokio::test]
async fn members_get_403_for_external_networks_and_nova_ports() {
    let (sim, client) = client::demo().await;
    let public = sim.public_network_id();
    let (status, body) = client.delete(&format!("{N}/networks/{public}")).await;
    assert_eq!((status, neutron_type(&body)), (403, "PolicyNotAuthorized"));
    let (_, subnets) = client.get(&format!("{N}/subnets?network_id={public}")).await;
    let public_subnet = subnets["subnets"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        client.delete(&format!("{N}/subnets/{public_subnet}")).await.0,
        403
    );

    let (network, _) = network_with_subnet(&client, "n", 31).await;
    let body = json!({"server": {"name": "vm", "imageRef": "img", "flavorRef": "1", "networks": [{"uuid": network}]}});
    let (status, server) = client.post("/compute/v2.1/servers", body).await;
    assert_eq!(status, 202);
    let server_id = server["server"]["id"].as_str().unwrap();
    let (_, ports) = client.get(&format!("{N}/ports?device_id={server_id}")).await;
    let port = &ports["ports"][0];
    assert_eq!(port["device_owner"], "compute:nova");
    let (status, body) = client
        .delete(&format!("{N}/ports/{}", port["id"].as_str().unwrap()))
        .await;
    assert_eq!((status, neutron_type(&body)), (403, "PolicyNotAuthorized"));
    // The admin may, and another project's private network is simply not there.
    let admin = Client::admin(&sim).await;
    assert_eq!(
        admin
            .delete(&format!("{N}/ports/{}", port["id"].as_str().unwrap()))
            .await
            .0,
        204
    );
    let other = Client::login(&sim, "other", "otherpass", "other").await;
    assert_eq!(other.delete(&format!("{N}/networks/{network}")).await.0, 404);
}

#[tokio::test]
async fn deleting_a_port_disassociates_its_floating_ip() {
    let (_, client) = client::demo().await;
    let r = routed(&client).await;
    assert_eq!(client.delete(&format!("{N}/ports/{}", r.port)).await.0, 204);
    let (_, fip) = client.get(&format!("{N}/floatingips/{}", r.floating_ip)).await;
    assert_eq!(fip["floatingip"]["port_id"], Value::Null);
    assert_eq!(fip["floatingip"]["router_id"], Value::Null);
    assert_eq!(fip["floatingip"]["status"], "DOWN");
    // With no floating IP left on it, the interface can go.
    let path = format!("{N}/routers/{}/remove_router_interface", r.router);
    assert_eq!(
        client.put(&path, json!({"port_id": r.interface_port})).await.0,
        200
    );
}

#[tokio::test]
async fn the_default_security_group_is_created_on_first_use_and_cannot_be_deleted() {
    let (_, client) = client::demo().await;
    let (_, groups) = client.get(&format!("{N}/security-groups?name=default")).await;
    let groups = groups["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["security_group_rules"].as_array().unwrap().len(), 4);
    let (status, body) = client
        .delete(&format!(
            "{N}/security-groups/{}",
            groups[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (status, neutron_type(&body)),
        (409, "SecurityGroupCannotRemoveDefault")
    );
}

#[tokio::test]
async fn tags_filter_lists_and_pages_link_to_the_next() {
    let (sim, client) = client::demo().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = client
            .create(
                &format!("{N}/networks"),
                "network",
                json!({"name": format!("n{i}")}),
            )
            .await;
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        assert_eq!(
            client
                .put(&format!("{N}/networks/{id}/tags/ci-job"), json!(null))
                .await
                .0,
            201
        );
        let (status, body) = client
            .put(
                &format!("{N}/networks/{id}/tags"),
                json!({"tags": ["ci-job", tag]}),
            )
            .await;
        assert_eq!((status, body["tags"].clone()), (200, json!(["ci-job", tag])));
        ids.push(id);
    }
    let names = |body: &Value| client::strings(body, "networks", "name");
    let (_, even) = client.get(&format!("{N}/networks?tags=ci-job,even")).await;
    assert_eq!(names(&even).len(), 3);
    let (_, any) = client.get(&format!("{N}/networks?tags-any=odd,nothing")).await;
    assert_eq!(names(&any).len(), 2);
    let (_, not) = client.get(&format!("{N}/networks?not-tags=ci-job")).await;
    let not = client::sorted(names(&not));
    assert_eq!(
        not,
        ["public", "shared"],
        "only the untagged external and shared networks are left"
    );
    let (_, not_any) = client
        .get(&format!("{N}/networks?not-tags-any=odd&tags=ci-job"))
        .await;
    assert_eq!(names(&not_any).len(), 3);
    let (status, body) = client.get(&format!("{N}/networks?colour=blue")).await;
    assert_eq!((status, neutron_type(&body)), (400, "HTTPBadRequest"));

    // Pages of two, following `networks_links` until none is given.
    let mut seen = Vec::new();
    let mut next = Some(format!("{}{N}/networks?tags=ci-job&limit=2&fields=id", sim.url()));
    while let Some(url) = next.take() {
        let (status, page) = client.get(url.strip_prefix(&sim.url()).unwrap()).await;
        assert_eq!(status, 200);
        for network in page["networks"].as_array().unwrap() {
            assert_eq!(
                network.as_object().unwrap().len(),
                1,
                "fields=id keeps only the id"
            );
            seen.push(network["id"].as_str().unwrap().to_string());
        }
        next = page["networks_links"]
            .as_array()
            .and_then(|links| links.iter().find(|l| l["rel"] == "next"))
            .map(|l| l["href"].as_str().unwrap().to_string());
    }
    ids.sort();
    assert_eq!(seen, ids);
    let (status, body) = client
        .delete(&format!("{N}/networks/{}/tags/absent", ids[0]))
        .await;
    assert_eq!((status, neutron_type(&body)), (404, "TagNotFound"));
}

#[tokio::test]
async fn members_see_shared_and_external_networks_but_not_other_projects() {
    let sim = client::start().await;
    let seeded = sim.seed_ci_leftovers();
    let client = Client::demo(&sim).await;
    let (_, networks) = client
        .get(&format!("{N}/networks?fields=id&fields=project_id"))
        .await;
    let ids = client::strings(&networks, "networks", "id");
    assert!(ids.contains(&seeded.keep.shared_network));
    assert!(ids.contains(&seeded.keep.public_network));
    let (_, external) = client.get(&format!("{N}/networks?router:external=true")).await;
    assert_eq!(client::items(&external, "networks").len(), 1);
    let (_, subnets) = client
        .get(&format!("{N}/subnets?network_id={}", seeded.keep.shared_network))
        .await;
    assert_eq!(
        subnets["subnets"][0]["id"],
        Value::String(seeded.keep.shared_subnet.clone())
    );
    let (status, _) = client
        .delete(&format!("{N}/networks/{}", seeded.keep.shared_network))
        .await;
    assert_eq!(status, 403);
    // Another project's port on its shared network is not the member's to see.
    let other = Client::login(&sim, "other", "otherpass", "other").await;
    other
        .create(
            &format!("{N}/ports"),
            "port",
            json!({"network_id": seeded.keep.shared_network}),
        )
        .await;
    let (_, ports) = client
        .get(&format!("{N}/ports?network_id={}", seeded.keep.shared_network))
        .await;
    assert_eq!(ports["ports"], json!([]));
}

/// The port ids of a list body, sorted.
fn port_ids(body: &Value) -> Vec<String> {
    client::sorted(client::strings(body, "ports", "id"))
}

/// As `test_neutron_tags_filters_and_pagination` sees real Neutron (which runs no DHCP agent on the
/// test stack): all four tag filters work server-side, and a network's ports are the ones created.
#[tokio::test]
async fn all_four_tag_filters_select_ports_and_no_dhcp_agent_adds_one() {
    let (_, client) = client::demo().await;
    let (network, _) = network_with_subnet(&client, "tags", 33).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            client
                .create(&format!("{N}/ports"), "port", json!({"network_id": network}))
                .await,
        );
    }
    let (_, on_network) = client.get(&format!("{N}/ports?network_id={network}")).await;
    let mut all = ids.clone();
    all.sort();
    assert_eq!(port_ids(&on_network), all, "no DHCP port without a DHCP agent");

    assert_eq!(
        client
            .put(&format!("{N}/ports/{}/tags/job", ids[0]), json!(null))
            .await
            .0,
        201
    );
    client
        .put(
            &format!("{N}/ports/{}/tags", ids[1]),
            json!({"tags": ["job", "other"]}),
        )
        .await;
    client
        .put(&format!("{N}/ports/{}/tags", ids[2]), json!({"tags": ["job"]}))
        .await;
    let query = |q: &str| format!("{N}/ports?{q}&network_id={network}&fields=id");
    let first_and_last = client::sorted(vec![ids[0].clone(), ids[2].clone()]);
    let (_, got) = client.get(&query("tags=job")).await;
    assert_eq!(port_ids(&got), all);
    let (_, got) = client.get(&query("tags=job,other")).await;
    assert_eq!(port_ids(&got), [ids[1].clone()], "tags: all of");
    let (_, got) = client.get(&query("tags-any=other,nope")).await;
    assert_eq!(port_ids(&got), [ids[1].clone()], "tags-any: one of");
    let (_, got) = client.get(&query("not-tags=other")).await;
    assert_eq!(port_ids(&got), first_and_last, "not-tags");
    let (_, got) = client.get(&query("not-tags=job,other")).await;
    assert_eq!(port_ids(&got), first_and_last, "not-tags: not all of");
    let (_, got) = client.get(&query("not-tags-any=other,nope")).await;
    assert_eq!(port_ids(&got), first_and_last, "not-tags-any: none of");
    let (_, got) = client.get(&query("not-tags-any=nope")).await;
    assert_eq!(port_ids(&got), all);
}

/// With [`SimConfig::dhcp_agent`] on, each network gets one `network:dhcp` port (owned by the
/// network's project) with its first DHCP subnet; it does not block deleting the subnet or network.
#[tokio::test]
async fn a_dhcp_agent_gives_each_network_one_dhcp_port() {
    let sim = client::start_with(cloud_janitor_sim::openstack::SimConfig {
        dhcp_agent: true,
        ..cloud_janitor_sim::openstack::SimConfig::default()
    })
    .await;
    let client = Client::demo(&sim).await;
    let (network, subnet) = network_with_subnet(&client, "dhcp", 34).await;
    client
        .create(
            &format!("{N}/subnets"),
            "subnet",
            json!({"network_id": network, "cidr": "10.35.0.0/24", "ip_version": 4}),
        )
        .await;
    let (_, dhcp) = client
        .get(&format!(
            "{N}/ports?network_id={network}&device_owner=network:dhcp"
        ))
        .await;
    let dhcp = dhcp["ports"].as_array().unwrap();
    assert_eq!(dhcp.len(), 1);
    assert_eq!(dhcp[0]["fixed_ips"].as_array().unwrap().len(), 2);
    assert_eq!(client.delete(&format!("{N}/subnets/{subnet}")).await.0, 204);
    let ports_before = sim.count("port");
    assert_eq!(client.delete(&format!("{N}/networks/{network}")).await.0, 204);
    assert_eq!(
        sim.count("port"),
        ports_before - 1,
        "the DHCP port goes with its network"
    );
}

/// What a member sees of ports, subnets and security group rules, as Neutron 29 shows them.
#[tokio::test]
async fn members_see_neutrons_member_view_of_ports_subnets_and_rules() {
    let (sim, client) = client::demo().await;
    let admin = Client::admin(&sim).await;
    let (network, subnet) = network_with_subnet(&client, "view", 36).await;
    let port = client
        .create(&format!("{N}/ports"), "port", json!({"network_id": network}))
        .await;
    let hidden = [
        "binding:host_id",
        "binding:profile",
        "binding:vif_details",
        "binding:vif_type",
    ];
    let (_, shown) = client.get(&format!("{N}/ports/{port}")).await;
    let (_, listed) = client.get(&format!("{N}/ports?network_id={network}")).await;
    for body in [&shown["port"], &listed["ports"][0]] {
        for key in hidden {
            assert!(body.get(key).is_none(), "members do not see {key}: {body}");
        }
        assert_eq!(body["binding:vnic_type"], "normal");
    }
    let (_, created) = client
        .post(&format!("{N}/ports"), json!({"port": {"network_id": network}}))
        .await;
    assert!(created["port"].get("binding:vif_type").is_none());
    let (_, as_admin) = admin.get(&format!("{N}/ports/{port}")).await;
    for key in hidden {
        assert!(as_admin["port"].get(key).is_some(), "admins see {key}");
    }
    assert_eq!(as_admin["port"]["binding:vif_type"], "unbound");

    // Subnets carry their network's router:external.
    let (_, own) = client.get(&format!("{N}/subnets/{subnet}")).await;
    assert_eq!(own["subnet"]["router:external"], json!(false));
    let public = sim.public_network_id();
    let (_, external) = client.get(&format!("{N}/subnets?network_id={public}")).await;
    assert_eq!(external["subnets"][0]["router:external"], json!(true));
    assert!(own["subnet"].get("segment_id").is_none());

    // Rules: `belongs_to_default_sg` everywhere; `standard_attr_id` and `tags` only inside a group.
    let group = security_group(&client, "g").await;
    let (_, rules) = client
        .get(&format!("{N}/security-group-rules?security_group_id={group}"))
        .await;
    for rule in rules["security_group_rules"].as_array().unwrap() {
        assert_eq!(rule["belongs_to_default_sg"], json!(false));
        assert!(rule.get("standard_attr_id").is_none() && rule.get("tags").is_none());
    }
    let (_, shown) = client.get(&format!("{N}/security-groups/{group}")).await;
    let embedded = shown["security_group"]["security_group_rules"]
        .as_array()
        .unwrap();
    assert_eq!(embedded.len(), 2);
    for rule in embedded {
        assert_eq!(rule["belongs_to_default_sg"], json!(false));
        assert!(rule["standard_attr_id"].as_u64().unwrap() > 0);
        assert_eq!(rule["tags"], json!([]));
    }
    let (_, default) = client.get(&format!("{N}/security-groups?name=default")).await;
    let default = &default["security_groups"][0];
    assert!(default["security_group_rules"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["belongs_to_default_sg"].is_null()));
    let (_, rules) = client
        .get(&format!(
            "{N}/security-group-rules?security_group_id={}",
            default["id"].as_str().unwrap()
        ))
        .await;
    assert!(rules["security_group_rules"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["belongs_to_default_sg"] == json!(true)));
}
