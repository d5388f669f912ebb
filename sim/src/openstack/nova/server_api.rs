//! What the API accepts and shows of servers: boot requests, the server view of each microversion
//! and role, lists, actions, and tags.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::servers::{instance_not_found, Nic, ServerSpec};
use super::{bad_request, not_found, Element, Microversion, NovaCall, API};
use crate::openstack::errors::{parse_json, ApiError, Service};
use crate::openstack::listing::{self, PageOf, Params, View};
use crate::openstack::state::{iso, Cloud, Ctx, Server};
use crate::openstack::tags::{TagPath, Tagged};
use crate::openstack::Inner;

/// What `hostId` shows: every server runs on the one simulated compute host.
const HOST_ID: &str = "8d3c1f7a5e9b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c";
/// The simulated compute host every server runs on (admins see it).
const COMPUTE_HOST: &str = "sim-compute";

impl Cloud {
    fn render_server(&self, url: &str, ctx: &Ctx, server: &Server, version: Microversion) -> Value {
        let mut addresses = serde_json::Map::new();
        for port in server
            .port_ids
            .iter()
            .filter_map(|p| self.ports.get(p))
            .filter(|p| p.device_id == server.id)
        {
            let network_name = self
                .networks
                .get(&port.network_id)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            let entries = addresses.entry(network_name).or_insert_with(|| json!([]));
            let Some(entries) = entries.as_array_mut() else {
                continue;
            };
            for (_, ip) in &port.fixed_ips {
                let version = if ip.contains(':') { 6 } else { 4 };
                entries.push(json!({"version": version, "addr": ip, "OS-EXT-IPS:type": "fixed",
                                    "OS-EXT-IPS-MAC:mac_addr": port.mac_address}));
            }
            for fip in self
                .floating_ips
                .values()
                .filter(|f| f.port_id.as_deref() == Some(port.id.as_str()))
            {
                entries.push(
                    json!({"version": 4, "addr": fip.floating_ip_address, "OS-EXT-IPS:type": "floating",
                                    "OS-EXT-IPS-MAC:mac_addr": port.mac_address}),
                );
            }
        }
        let volumes: Vec<Value> = self
            .volumes
            .values()
            .filter(|v| v.attachments.iter().any(|a| a.server_id == server.id))
            .map(|v| json!({"id": v.id, "delete_on_termination": false}))
            .collect();
        let flavor = if version.at_least(47) {
            json!({"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0,
                   "original_name": "m1.tiny", "extra_specs": {}})
        } else {
            json!({"id": server.flavor_ref, "links": [{"rel": "bookmark", "href": format!("{url}/compute/flavors/{}", server.flavor_ref)}]})
        };
        let groups: Vec<&str> = self
            .server_groups
            .values()
            .filter(|g| g.members.contains(&server.id))
            .map(|g| g.id.as_str())
            .collect();
        let link = format!("{url}{API}/servers/{}", server.id);
        let mut body = json!({
            "id": server.id, "name": server.name, "status": server.status,
            "tenant_id": server.project_id, "user_id": server.user_id, "metadata": server.metadata,
            "hostId": HOST_ID, "image": {"id": server.image_ref, "links": []},
            "flavor": flavor, "created": iso(&server.created), "updated": iso(&server.updated),
            "addresses": addresses, "accessIPv4": "", "accessIPv6": "",
            "links": [{"rel": "self", "href": link}, {"rel": "bookmark", "href": link.replace(API, "/compute")}],
            "OS-DCF:diskConfig": "MANUAL", "progress": 0, "OS-EXT-AZ:availability_zone": "nova",
            "config_drive": "", "key_name": server.key_name,
            "OS-SRV-USG:launched_at": server.created.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            "OS-SRV-USG:terminated_at": server.terminated.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
            "security_groups": server.security_group_names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
            "OS-EXT-STS:task_state": server.task_state, "OS-EXT-STS:vm_state": server.status.to_lowercase(),
            "OS-EXT-STS:power_state": match server.status.as_str() { "ACTIVE" => 1, "DELETED" => 0, _ => 4 },
            "os-extended-volumes:volumes_attached": volumes,
        });
        if version.at_least(9) {
            body["locked"] = json!(server.locked);
        }
        if version.at_least(19) {
            body["description"] = Value::Null;
        }
        if version.at_least(26) {
            body["tags"] = json!(server.tags);
        }
        if version.at_least(63) {
            body["trusted_image_certificates"] = Value::Null;
        }
        if version.at_least(71) {
            body["server_groups"] = json!(groups);
        }
        if version.at_least(73) {
            body["locked_reason"] = json!(server.locked_reason);
        }
        if version.at_least(96) {
            body["pinned_availability_zone"] = Value::Null;
        }
        if ctx.admin {
            body["OS-EXT-SRV-ATTR:host"] = json!(COMPUTE_HOST);
            body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(COMPUTE_HOST);
            body["OS-EXT-SRV-ATTR:instance_name"] = json!(format!("instance-{}", short_id(&server.id)));
        }
        if ctx.admin && version.at_least(3) {
            body["OS-EXT-SRV-ATTR:kernel_id"] = json!("");
            body["OS-EXT-SRV-ATTR:ramdisk_id"] = json!("");
            body["OS-EXT-SRV-ATTR:launch_index"] = json!(0);
            body["OS-EXT-SRV-ATTR:reservation_id"] = json!(format!("r-{}", short_id(&server.id)));
            body["OS-EXT-SRV-ATTR:root_device_name"] = json!("/dev/vda");
            body["OS-EXT-SRV-ATTR:user_data"] = Value::Null;
        }
        if ctx.admin && version.at_least(16) {
            body["host_status"] = json!("UP");
        }
        // Admins see the guest's hostname from 2.3, members from 2.90.
        if (ctx.admin && version.at_least(3)) || version.at_least(90) {
            body["OS-EXT-SRV-ATTR:hostname"] = json!(hostname(&server.name));
        }
        body
    }
}

/// The first eight characters of an id, for names Nova derives from its own sequence numbers.
fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The guest hostname Nova derives from a display name: lower case, runs of other characters as
/// one `-`, at most 63 characters.
fn hostname(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-');
    if trimmed.is_empty() {
        "server".into()
    } else {
        trimmed.into()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServerReq {
    name: String,
    #[serde(rename = "imageRef")]
    image_ref: Value,
    #[serde(rename = "flavorRef")]
    flavor_ref: Value,
    networks: Option<Value>,
    key_name: Option<String>,
    security_groups: Vec<NameRef>,
    metadata: BTreeMap<String, String>,
    tags: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct NameRef {
    name: String,
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn server_spec(body: &Value, version: Microversion) -> Result<ServerSpec, ApiError> {
    let server = body
        .get("server")
        .ok_or_else(|| bad_request("Invalid input for field/attribute server."))?;
    let req: ServerReq = serde_json::from_value(server.clone())
        .map_err(|e| bad_request(format!("Invalid input for field/attribute server. Value: {e}")))?;
    if req.name.is_empty() {
        return Err(bad_request("Invalid input for field/attribute name."));
    }
    if !req.tags.is_empty() && !version.at_least(52) {
        return Err(bad_request(
            "Additional properties are not allowed ('tags' was unexpected)",
        ));
    }
    let nics = match &req.networks {
        None if version.at_least(37) => {
            return Err(bad_request(
                "Invalid input for field/attribute server. Value: 'networks' is a required property",
            ))
        }
        None | Some(Value::String(_)) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                match (
                    item.get("port").and_then(Value::as_str),
                    item.get("uuid").and_then(Value::as_str),
                ) {
                    (Some(port), _) => Ok(Nic::Port(port.to_string())),
                    (None, Some(network)) => Ok(Nic::Network(network.to_string())),
                    (None, None) => Err(bad_request(
                        "Bad networks format: network uuid is not in proper format",
                    )),
                }
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad_request("Bad networks format")),
    };
    let hints = body
        .get("os:scheduler_hints")
        .or_else(|| body.get("OS-SCH-HNT:scheduler_hints"));
    Ok(ServerSpec {
        name: req.name,
        image_ref: text_of(&req.image_ref),
        flavor_ref: text_of(&req.flavor_ref),
        nics,
        key_name: req.key_name,
        security_groups: req.security_groups.into_iter().map(|g| g.name).collect(),
        metadata: req.metadata,
        tags: req.tags,
        group: hints
            .and_then(|h| h.get("group"))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// `POST /servers`: boots the server; answers with its id, links and security groups.
pub(super) async fn create(call: NovaCall, body: Bytes) -> Result<Response, ApiError> {
    let spec = server_spec(&parse_json(Service::Nova, &body)?, call.version)?;
    let group_names = if spec.security_groups.is_empty() {
        vec!["default".to_string()]
    } else {
        spec.security_groups.clone()
    };
    let server_id = call.cloud().create_server(&call.ctx, spec)?;
    let link = format!("{}{API}/servers/{server_id}", call.app.url);
    let body = json!({"server": {
        "id": server_id,
        "links": [{"rel": "self", "href": link}, {"rel": "bookmark", "href": link.replace(API, "/compute")}],
        "OS-DCF:diskConfig": "MANUAL",
        "security_groups": group_names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
        "adminPass": "simulated-admin-pass",
    }});
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&link) {
        response.headers_mut().insert("location", location);
    }
    Ok(response)
}

/// The servers a list call selects, newest first, as Nova sorts them.
fn select_servers<'a>(
    cloud: &'a Cloud,
    ctx: &Ctx,
    params: &Params,
    version: Microversion,
) -> Result<Vec<&'a Server>, ApiError> {
    let all_projects = ["all_tenants", "all_projects"]
        .iter()
        .any(|k| listing::param(params, k).is_some_and(|v| !matches!(v, "0" | "false" | "False")));
    if all_projects && !ctx.admin {
        return Err(ApiError::nova(
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed.",
        ));
    }
    let project_filter = listing::param(params, "project_id").or_else(|| listing::param(params, "tenant_id"));
    let name = match listing::param(params, "name") {
        Some(pattern) => {
            Some(regex::Regex::new(pattern).map_err(|e| bad_request(format!("Invalid name filter: {e}")))?)
        }
        None => None,
    };
    let status = listing::param(params, "status");
    let locked = listing::param(params, "locked").filter(|_| version.at_least(73));
    let mut servers: Vec<&Server> = cloud
        .servers
        .values()
        .filter(|s| !s.is_terminated())
        .filter(|s| {
            if all_projects {
                project_filter.is_none_or(|p| p == s.project_id)
            } else {
                s.project_id == ctx.project_id
            }
        })
        .filter(|s| name.as_ref().is_none_or(|re| re.is_match(&s.name)))
        .filter(|s| status.is_none_or(|st| st.eq_ignore_ascii_case(&s.status)))
        .filter(|s| locked.is_none_or(|l| l.eq_ignore_ascii_case(&s.locked.to_string())))
        .filter(|s| !version.at_least(26) || listing::tags_match(&s.tags, params))
        .collect();
    servers.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    Ok(servers)
}

/// `GET /servers` and `GET /servers/detail`: one page, newest first, with `servers_links` when the
/// page is full (Nova links even when nothing follows).
pub(super) async fn list(
    call: NovaCall,
    Query(params): Query<Params>,
    view: View,
) -> Result<Json<Value>, ApiError> {
    let cloud = call.cloud();
    let url = &call.app.url;
    let items = select_servers(&cloud, &call.ctx, &params, call.version)?
        .into_iter()
        .map(|s| {
            let body = match view {
                View::Detail => cloud.render_server(url, &call.ctx, s, call.version),
                View::Brief => {
                    json!({"id": s.id, "name": s.name, "links": [{"rel": "self", "href": format!("{url}{API}/servers/{}", s.id)}]})
                }
            };
            (s.id.clone(), body)
        })
        .collect();
    let page = PageOf {
        url,
        path: &format!("{API}/servers{}", view.suffix()),
        key: "servers",
        service: Service::Nova,
        max_limit: Some(1000),
    };
    listing::page_body(page, items, &params, |marker| {
        bad_request(format!("marker [{marker}] not found"))
    })
    .map(Json)
}

/// `POST /servers/{id}/action`: lock, unlock, stop and start.
pub(super) async fn action(
    call: NovaCall,
    Path(server_id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let body = parse_json(Service::Nova, &body)?;
    let action = body
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_default();
    let ctx = &call.ctx;
    let mut cloud = call.cloud();
    match action.as_str() {
        "lock" => {
            let reason = body
                .pointer("/lock/locked_reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            cloud.set_server_lock(ctx, &server_id, true, reason)?;
        }
        "unlock" => cloud.set_server_lock(ctx, &server_id, false, None)?,
        "os-stop" | "os-start" => {
            cloud.changeable_server(ctx, &server_id, &action)?;
            if let Some(server) = cloud.servers.get_mut(&server_id) {
                server.status = if action == "os-stop" {
                    "SHUTOFF".into()
                } else {
                    "ACTIVE".into()
                };
            }
        }
        other => return Err(bad_request(format!("There is no such action: {other}"))),
    }
    Ok(StatusCode::ACCEPTED)
}

impl Element for Server {
    const KEY: &'static str = "server";

    /// `DELETED` servers too, until they are gone.
    fn show(cloud: &Cloud, call: &NovaCall, id: &str) -> Result<Value, ApiError> {
        let server = cloud.visible_server(&call.ctx, id)?;
        Ok(cloud.render_server(&call.app.url, &call.ctx, server, call.version))
    }

    fn delete(cloud: &mut Cloud, call: &NovaCall, id: &str) -> Result<StatusCode, ApiError> {
        cloud.delete_server(&call.ctx, id)?;
        Ok(StatusCode::NO_CONTENT)
    }
}

/// The tags of `/servers/{id}`, which exist from microversion 2.26 on.
pub(super) struct ServerTags;

impl Tagged for ServerTags {
    type Call = NovaCall;
    const PUT_EXISTING: StatusCode = StatusCode::NO_CONTENT;

    fn app(call: &NovaCall) -> &Inner {
        &call.app
    }

    fn tags<'a>(
        cloud: &'a mut Cloud,
        call: &NovaCall,
        path: &TagPath,
    ) -> Result<&'a mut Vec<String>, ApiError> {
        if !call.version.at_least(26) {
            return Err(ApiError::unknown_path(Service::Nova));
        }
        cloud.live_server(&call.ctx, &path.id)?;
        cloud
            .servers
            .get_mut(&path.id)
            .map(|s| &mut s.tags)
            .ok_or_else(|| instance_not_found(&path.id))
    }

    fn parse_tags(body: &[u8]) -> Result<Vec<String>, ApiError> {
        parse_json(Service::Nova, body)?
            .get("tags")
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .ok_or_else(|| bad_request("Invalid input for field/attribute tags."))
    }

    fn tag_not_found(tag: &str, _path: &TagPath) -> ApiError {
        not_found(format!("Tag {tag} could not be found."))
    }
}
