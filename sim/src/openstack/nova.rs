//! Nova v2.1: servers (asynchronous delete, locks, tags, the ports Nova makes and unbinds), volume
//! attachments, keypairs and server groups, behind microversion negotiation.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::errors::{ApiError, Service};
use super::keystone::require_token;
use super::listing::{self, Params};
use super::neutron::{Kind, PortReq};
use super::state::{iso, new_id, Cloud, Ctx, Keypair, Server, ServerGroup, VolumeAttachment, OWNER_COMPUTE};
use super::Inner;

const API: &str = "/compute/v2.1";
/// What `hostId` shows: every server runs on the one simulated compute host.
const HOST_ID: &str = "8d3c1f7a5e9b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c";
/// The highest compute microversion served (`2.MAX_MINOR`; real Nova 34 serves 2.104).
pub(crate) const MAX_MINOR: u32 = 96;
/// The simulated compute host every server runs on (admins see it).
const COMPUTE_HOST: &str = "sim-compute";

/// The negotiated compute microversion `2.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Microversion(pub u32);

impl Microversion {
    fn at_least(self, minor: u32) -> bool {
        self.0 >= minor
    }
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::nova(StatusCode::NOT_FOUND, message)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::nova(StatusCode::BAD_REQUEST, message)
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::nova(StatusCode::CONFLICT, message)
}

fn instance_not_found(server_id: &str) -> ApiError {
    not_found(format!("Instance {server_id} could not be found."))
}

/// The compute version a request asks for, from `OpenStack-API-Version: compute 2.x` or the legacy
/// `X-OpenStack-Nova-API-Version: 2.x`; 2.1 when it asks for none.
fn requested_version(headers: &HeaderMap) -> Result<Microversion, ApiError> {
    let modern = headers
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let mut words = part.split_whitespace();
            let service = words.next()?;
            service
                .eq_ignore_ascii_case("compute")
                .then(|| words.next())
                .flatten()
                .map(str::to_string)
        });
    let legacy = headers
        .get("x-openstack-nova-api-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(text) = modern.or(legacy) else {
        return Ok(Microversion(1));
    };
    if text.eq_ignore_ascii_case("latest") {
        return Ok(Microversion(MAX_MINOR));
    }
    let minor = text
        .strip_prefix("2.")
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| bad_request(format!("Invalid API version request string {text}")))?;
    if (1..=MAX_MINOR).contains(&minor) {
        Ok(Microversion(minor))
    } else {
        Err(ApiError::nova(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {text} is not supported by the API. Minimum is 2.1 and maximum is 2.{MAX_MINOR}."
            ),
        ))
    }
}

/// Middleware: negotiates the microversion and names it in the response headers, as Nova does.
async fn negotiate(mut request: Request, next: Next) -> Response {
    let version = match requested_version(request.headers()) {
        Ok(version) => version,
        Err(error) => return error.into_response(),
    };
    request.extensions_mut().insert(version);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("compute 2.{}", version.0)) {
        headers.insert("openstack-api-version", value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("2.{}", version.0)) {
        headers.insert("x-openstack-nova-api-version", value);
    }
    headers.insert(
        "vary",
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// One network interface asked for at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Nic {
    /// A port created beforehand; Nova binds it and unbinds it when the server goes.
    Port(String),
    /// A network; Nova creates a port on it and deletes that port with the server.
    Network(String),
}

/// What a server is booted with.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerSpec {
    pub name: String,
    pub image_ref: String,
    pub flavor_ref: String,
    pub nics: Vec<Nic>,
    pub key_name: Option<String>,
    pub security_groups: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub group: Option<String>,
}

impl Cloud {
    /// A server the caller may look at, `DELETED` ones included (GET answers 200 for them).
    fn visible_server(&self, ctx: &Ctx, server_id: &str) -> Result<&Server, ApiError> {
        self.servers
            .get(server_id)
            .filter(|s| ctx.owns(&s.project_id))
            .ok_or_else(|| instance_not_found(server_id))
    }

    /// A server the caller may act on: visible and not yet `DELETED` (which answers 404 to
    /// everything but GET).
    fn live_server(&self, ctx: &Ctx, server_id: &str) -> Result<&Server, ApiError> {
        self.visible_server(ctx, server_id)
            .ok()
            .filter(|s| !s.is_terminated())
            .ok_or_else(|| instance_not_found(server_id))
    }

    /// A server the caller may change: visible, not being deleted, and unlocked unless admin.
    fn changeable_server(&self, ctx: &Ctx, server_id: &str, action: &str) -> Result<&Server, ApiError> {
        let server = self.live_server(ctx, server_id)?;
        if server.task_state.as_deref() == Some("deleting") {
            return Err(conflict(format!(
                "Cannot '{action}' instance {server_id} while it is in task_state deleting"
            )));
        }
        if server.locked && !ctx.admin && action != "unlock" {
            return Err(conflict(format!("Instance {server_id} is locked")));
        }
        Ok(server)
    }

    pub(crate) fn create_server(&mut self, ctx: &Ctx, spec: ServerSpec) -> Result<String, ApiError> {
        if let Some(key_name) = &spec.key_name {
            if !self
                .keypairs
                .contains_key(&(ctx.user_id.clone(), key_name.clone()))
            {
                return Err(bad_request("Invalid key_name provided."));
            }
        }
        if let Some(group) = &spec.group {
            if !self
                .server_groups
                .get(group)
                .is_some_and(|g| ctx.owns(&g.project_id))
            {
                return Err(bad_request(format!("Invalid server group {group}")));
            }
        }
        let group_names = if spec.security_groups.is_empty() {
            vec!["default".to_string()]
        } else {
            spec.security_groups.clone()
        };
        let mut group_ids = Vec::new();
        for name in &group_names {
            if name == "default" {
                group_ids.push(self.ensure_default_security_group(&ctx.project_id));
                continue;
            }
            let found = self
                .security_groups
                .values()
                .find(|g| g.project_id == ctx.project_id && (&g.name == name || &g.id == name))
                .ok_or_else(|| {
                    bad_request(format!("Unable to find security_group with name or id '{name}'"))
                })?;
            group_ids.push(found.id.clone());
        }
        for nic in &spec.nics {
            match nic {
                Nic::Port(port_id) => {
                    let port = self
                        .ports
                        .get(port_id)
                        .filter(|_| self.neutron_visible(ctx, Kind::Port, port_id))
                        .ok_or_else(|| bad_request(format!("Port {port_id} could not be found.")))?;
                    if !port.device_id.is_empty() {
                        return Err(conflict(format!("Port {port_id} is still in use.")));
                    }
                }
                Nic::Network(network_id) => {
                    if !self.neutron_visible(ctx, Kind::Network, network_id) {
                        return Err(bad_request(format!("Network {network_id} could not be found.")));
                    }
                }
            }
        }
        let server_id = new_id();
        let mut port_ids = Vec::new();
        let mut nova_created_ports = Vec::new();
        for nic in &spec.nics {
            let port_id = match nic {
                Nic::Port(port_id) => port_id.clone(),
                Nic::Network(network_id) => {
                    let port_id = self.create_port(
                        ctx,
                        PortReq {
                            network_id: network_id.clone(),
                            device_id: server_id.clone(),
                            device_owner: OWNER_COMPUTE.into(),
                            security_groups: Some(group_ids.clone()),
                            ..PortReq::default()
                        },
                    )?;
                    nova_created_ports.push(port_id.clone());
                    port_id
                }
            };
            if let Some(port) = self.ports.get_mut(&port_id) {
                port.device_id.clone_from(&server_id);
                port.device_owner = OWNER_COMPUTE.into();
                port.binding_host = "sim-compute".into();
                port.updated = Utc::now();
            }
            port_ids.push(port_id);
        }
        if let Some(group) = spec.group.as_ref().and_then(|g| self.server_groups.get_mut(g)) {
            group.members.push(server_id.clone());
        }
        let now = Utc::now();
        self.servers.insert(
            server_id.clone(),
            Server {
                id: server_id.clone(),
                name: spec.name,
                project_id: ctx.project_id.clone(),
                user_id: ctx.user_id.clone(),
                status: "ACTIVE".into(),
                task_state: None,
                locked: false,
                locked_reason: None,
                tags: spec.tags,
                metadata: spec.metadata,
                key_name: spec.key_name,
                image_ref: spec.image_ref,
                flavor_ref: spec.flavor_ref,
                security_group_names: group_names,
                port_ids,
                nova_created_ports,
                delete_requested: None,
                terminated: None,
                created: now,
                updated: now,
            },
        );
        Ok(server_id)
    }

    /// Accepts a DELETE: the server shows status `ACTIVE` with task_state `deleting` until
    /// [`Cloud::reap`] moves it on (see there for the timeline).
    pub(crate) fn delete_server(&mut self, ctx: &Ctx, server_id: &str) -> Result<(), ApiError> {
        let server = self.live_server(ctx, server_id)?;
        if server.delete_requested.is_some() {
            return Ok(());
        }
        if server.locked && !ctx.admin {
            return Err(conflict(format!("Instance {server_id} is locked")));
        }
        if let Some(server) = self.servers.get_mut(server_id) {
            server.task_state = Some("deleting".into());
            server.delete_requested = Some(self.clock.now());
            server.updated = Utc::now();
        }
        Ok(())
    }

    /// Detaches every volume from the server, as Nova does early in a delete: each one left with no
    /// attachment becomes `available`.
    pub(crate) fn detach_all_volumes(&mut self, server_id: &str) {
        for volume in self.volumes.values_mut() {
            let before = volume.attachments.len();
            volume.attachments.retain(|a| a.server_id != server_id);
            if before != volume.attachments.len()
                && volume.attachments.is_empty()
                && volume.status == "in-use"
            {
                volume.status = "available".into();
                volume.updated = Utc::now();
            }
        }
    }

    /// What Nova does once the hypervisor has destroyed the server: detaches its volumes, deletes the
    /// ports it created, unbinds the ones it was given, leaves its server group, and shows the server
    /// as status `DELETED` (vm_state `deleted`, no task) until its record goes.
    pub(crate) fn terminate_server(&mut self, server_id: &str) {
        self.detach_all_volumes(server_id);
        let Some(server) = self.servers.get(server_id) else {
            return;
        };
        if server.is_terminated() {
            return;
        }
        let port_ids = server.port_ids.clone();
        let nova_created = server.nova_created_ports.clone();
        for port_id in &port_ids {
            if nova_created.contains(port_id) {
                self.remove_port(port_id);
            } else if let Some(port) = self.ports.get_mut(port_id).filter(|p| p.device_id == server_id) {
                port.device_id.clear();
                port.device_owner.clear();
                port.binding_host.clear();
                port.updated = Utc::now();
            }
        }
        for group in self.server_groups.values_mut() {
            group.members.retain(|m| m != server_id);
        }
        if let Some(server) = self.servers.get_mut(server_id) {
            let now = Utc::now();
            server.status = "DELETED".into();
            server.task_state = None;
            server.terminated = Some(now);
            server.updated = now;
        }
    }

    /// The end of a delete: the server is terminated if it was not yet, and its record goes (404).
    pub(crate) fn finish_server_delete(&mut self, server_id: &str) {
        self.terminate_server(server_id);
        self.servers.remove(server_id);
    }

    pub(crate) fn set_server_lock(
        &mut self,
        ctx: &Ctx,
        server_id: &str,
        locked: bool,
        reason: Option<String>,
    ) -> Result<(), ApiError> {
        self.changeable_server(ctx, server_id, if locked { "lock" } else { "unlock" })?;
        if let Some(server) = self.servers.get_mut(server_id) {
            server.locked = locked;
            server.locked_reason = if locked { reason } else { None };
            server.updated = Utc::now();
        }
        Ok(())
    }

    pub(crate) fn attach_volume(
        &mut self,
        ctx: &Ctx,
        server_id: &str,
        volume_id: &str,
    ) -> Result<String, ApiError> {
        self.changeable_server(ctx, server_id, "attach_volume")?;
        let n_attached = self
            .volumes
            .values()
            .filter(|v| v.attachments.iter().any(|a| a.server_id == server_id))
            .count();
        let volume = self
            .volumes
            .get_mut(volume_id)
            .filter(|v| ctx.owns(&v.project_id))
            .ok_or_else(|| not_found(format!("Volume {volume_id} could not be found.")))?;
        if volume.status != "available" {
            return Err(bad_request(format!(
                "Invalid input received: Invalid volume: Volume status must be available or downloading to \
                 reserve, but the current status is {}.",
                volume.status
            )));
        }
        let letter = char::from(b'b' + u8::try_from(n_attached.min(24)).unwrap_or(24));
        let device = format!("/dev/vd{letter}");
        volume.attachments.push(VolumeAttachment {
            attachment_id: new_id(),
            server_id: server_id.to_string(),
            device: device.clone(),
            attached_at: Utc::now(),
        });
        volume.status = "in-use".into();
        volume.updated = Utc::now();
        Ok(device)
    }

    pub(crate) fn detach_volume(
        &mut self,
        ctx: &Ctx,
        server_id: &str,
        volume_id: &str,
    ) -> Result<(), ApiError> {
        self.changeable_server(ctx, server_id, "detach_volume")?;
        let volume = self
            .volumes
            .get_mut(volume_id)
            .filter(|v| v.attachments.iter().any(|a| a.server_id == server_id))
            .ok_or_else(|| {
                not_found(format!(
                    "Volume {volume_id} is not attached to server {server_id}"
                ))
            })?;
        volume.attachments.retain(|a| a.server_id != server_id);
        if volume.attachments.is_empty() {
            volume.status = "available".into();
        }
        volume.updated = Utc::now();
        Ok(())
    }

    pub(crate) fn create_keypair(
        &mut self,
        ctx: &Ctx,
        name: &str,
        public_key: Option<String>,
    ) -> Result<Keypair, ApiError> {
        let key = (ctx.user_id.clone(), name.to_string());
        if self.keypairs.contains_key(&key) {
            return Err(conflict(format!("Key pair '{name}' already exists.")));
        }
        if name.is_empty() || name.len() > 255 {
            return Err(bad_request(
                "Keypair data is invalid: Keypair name must be string and between 1 and 255 characters long",
            ));
        }
        let digest = uuid::Uuid::new_v4();
        let fingerprint: Vec<String> = digest.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let fingerprint = fingerprint.join(":");
        let keypair = Keypair {
            name: name.to_string(),
            user_id: ctx.user_id.clone(),
            public_key: public_key
                .unwrap_or_else(|| format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{}", digest.simple())),
            fingerprint,
            key_type: "ssh".into(),
            created: Utc::now(),
        };
        self.keypairs.insert(key, keypair.clone());
        Ok(keypair)
    }

    pub(crate) fn create_server_group(
        &mut self,
        ctx: &Ctx,
        name: &str,
        policy: &str,
    ) -> Result<String, ApiError> {
        if !matches!(
            policy,
            "affinity" | "anti-affinity" | "soft-affinity" | "soft-anti-affinity"
        ) {
            return Err(bad_request(format!(
                "Invalid input for field/attribute policy. Value: {policy}."
            )));
        }
        let id = new_id();
        self.server_groups.insert(
            id.clone(),
            ServerGroup {
                id: id.clone(),
                name: name.to_string(),
                project_id: ctx.project_id.clone(),
                user_id: ctx.user_id.clone(),
                policy: policy.to_string(),
                members: Vec::new(),
            },
        );
        Ok(id)
    }

    // -- rendering -------------------------------------------------------------------------------

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

    fn render_volume_attachment(
        &self,
        server_id: &str,
        volume_id: &str,
        version: Microversion,
    ) -> Option<Value> {
        let volume = self.volumes.get(volume_id)?;
        let attachment = volume.attachments.iter().find(|a| a.server_id == server_id)?;
        let mut body = json!({"serverId": server_id, "volumeId": volume_id, "device": attachment.device});
        if version.at_least(89) {
            body["attachment_id"] = json!(attachment.attachment_id);
            body["bdm_uuid"] = json!(attachment.attachment_id);
        } else {
            body["id"] = json!(volume_id);
        }
        if version.at_least(70) {
            body["tag"] = Value::Null;
        }
        if version.at_least(79) {
            body["delete_on_termination"] = json!(false);
        }
        Some(body)
    }

    fn render_server_group(&self, group: &ServerGroup, version: Microversion) -> Value {
        let mut body = json!({
            "id": group.id, "name": group.name, "members": group.members,
            "project_id": group.project_id, "user_id": group.user_id,
        });
        if version.at_least(64) {
            body["policy"] = json!(group.policy);
            body["rules"] = json!({});
        } else {
            body["policies"] = json!([group.policy]);
            body["metadata"] = json!({});
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

fn render_keypair(keypair: &Keypair, detail: bool) -> Value {
    let mut body = json!({
        "name": keypair.name, "public_key": keypair.public_key,
        "fingerprint": keypair.fingerprint, "type": keypair.key_type,
    });
    if detail {
        body["user_id"] = json!(keypair.user_id);
        body["created_at"] = json!(keypair.created.format("%Y-%m-%dT%H:%M:%S%.6f").to_string());
        body["deleted"] = json!(false);
        body["deleted_at"] = Value::Null;
        body["updated_at"] = Value::Null;
        body["id"] = json!(1);
    }
    body
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

pub(crate) fn routes(app: Arc<Inner>) -> Router {
    let authenticated = Router::new()
        .route(
            &format!("{API}/servers"),
            get(list_servers_brief).post(create_server),
        )
        .route(&format!("{API}/servers/detail"), get(list_servers_detail))
        .route(
            &format!("{API}/servers/{{id}}"),
            get(show_server).delete(delete_server),
        )
        .route(&format!("{API}/servers/{{id}}/action"), post(server_action))
        .route(
            &format!("{API}/servers/{{id}}/os-volume_attachments"),
            get(list_attachments).post(attach),
        )
        .route(
            &format!("{API}/servers/{{id}}/os-volume_attachments/{{volume_id}}"),
            get(show_attachment).delete(detach),
        )
        .route(
            &format!("{API}/servers/{{id}}/tags"),
            get(list_tags).put(replace_tags).delete(clear_tags),
        )
        .route(
            &format!("{API}/servers/{{id}}/tags/{{tag}}"),
            get(has_tag).put(add_tag).delete(remove_tag),
        )
        .route(
            &format!("{API}/os-keypairs"),
            get(list_keypairs).post(create_keypair),
        )
        .route(
            &format!("{API}/os-keypairs/{{name}}"),
            get(show_keypair).delete(delete_keypair),
        )
        .route(
            &format!("{API}/os-server-groups"),
            get(list_server_groups).post(create_server_group),
        )
        .route(
            &format!("{API}/os-server-groups/{{id}}"),
            get(show_server_group).delete(delete_server_group),
        )
        .route_layer(from_fn(negotiate))
        .route_layer(from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/compute", get(versions))
        .route("/compute/", get(versions))
        .route(API, get(version))
        .route(&format!("{API}/"), get(version))
        .merge(authenticated)
        .with_state(app)
}

fn version_body(url: &str) -> Value {
    json!({
        "id": "v2.1", "status": "CURRENT", "version": format!("2.{MAX_MINOR}"), "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{url}{API}/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    })
}

async fn versions(State(app): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"versions": [version_body(&app.url)]}))
}

async fn version(State(app): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"version": version_body(&app.url)}))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(Service::Nova, format!("Malformed request body: {e}")))
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

async fn create_server(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec = server_spec(&parse_json(&body)?, version)?;
    let group_names = if spec.security_groups.is_empty() {
        vec!["default".to_string()]
    } else {
        spec.security_groups.clone()
    };
    let server_id = app.cloud().create_server(&ctx, spec)?;
    let link = format!("{}{API}/servers/{server_id}", app.url);
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

/// The page, plus `servers_links` when the page is full (Nova links even when nothing follows).
fn list_servers(
    app: &Inner,
    ctx: &Ctx,
    params: &Params,
    version: Microversion,
    detail: bool,
) -> Result<Json<Value>, ApiError> {
    let cloud = app.cloud();
    let servers = select_servers(&cloud, ctx, params, version)?;
    let limit = listing::limit(params, Service::Nova)?.unwrap_or(1000).min(1000);
    let marker = listing::param(params, "marker");
    let page = listing::paginate(servers, |s| s.id.as_str(), Some(limit), marker)
        .ok_or_else(|| bad_request(format!("marker [{}] not found", marker.unwrap_or(""))))?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|s| {
            if detail {
                cloud.render_server(&app.url, ctx, s, version)
            } else {
                json!({"id": s.id, "name": s.name, "links": [{"rel": "self", "href": format!("{}{API}/servers/{}", app.url, s.id)}]})
            }
        })
        .collect();
    let mut body = json!({"servers": items});
    if let (true, Some(last)) = (page.items.len() == limit, page.items.last()) {
        let path = if detail {
            format!("{API}/servers/detail")
        } else {
            format!("{API}/servers")
        };
        body["servers_links"] =
            json!([{"rel": "next", "href": listing::next_link(&app.url, &path, params, limit, &last.id)}]);
    }
    Ok(Json(body))
}

async fn list_servers_detail(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    list_servers(&app, &ctx, &params, version, true)
}

async fn list_servers_brief(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    list_servers(&app, &ctx, &params, version, false)
}

async fn show_server(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path(server_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cloud = app.cloud();
    let server = cloud.visible_server(&ctx, &server_id)?;
    Ok(Json(
        json!({"server": cloud.render_server(&app.url, &ctx, server, version)}),
    ))
}

async fn delete_server(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(server_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.cloud().delete_server(&ctx, &server_id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn server_action(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(server_id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let body = parse_json(&body)?;
    let action = body
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_default();
    let mut cloud = app.cloud();
    match action.as_str() {
        "lock" => {
            let reason = body
                .pointer("/lock/locked_reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            cloud.set_server_lock(&ctx, &server_id, true, reason)?;
        }
        "unlock" => cloud.set_server_lock(&ctx, &server_id, false, None)?,
        "os-stop" | "os-start" => {
            cloud.changeable_server(&ctx, &server_id, &action)?;
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

async fn list_attachments(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path(server_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cloud = app.cloud();
    cloud.live_server(&ctx, &server_id)?;
    let attachments: Vec<Value> = cloud
        .volumes
        .keys()
        .filter_map(|v| cloud.render_volume_attachment(&server_id, v, version))
        .collect();
    Ok(Json(json!({"volumeAttachments": attachments})))
}

async fn attach(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path(server_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_json(&body)?;
    let volume_id = body
        .pointer("/volumeAttachment/volumeId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Invalid input for field/attribute volumeAttachment."))?;
    let mut cloud = app.cloud();
    cloud.attach_volume(&ctx, &server_id, volume_id)?;
    let attachment = cloud
        .render_volume_attachment(&server_id, volume_id, version)
        .unwrap_or(Value::Null);
    Ok(Json(json!({"volumeAttachment": attachment})))
}

async fn show_attachment(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path((server_id, volume_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let cloud = app.cloud();
    cloud.live_server(&ctx, &server_id)?;
    let attachment = cloud
        .render_volume_attachment(&server_id, &volume_id, version)
        .ok_or_else(|| {
            not_found(format!(
                "Volume {volume_id} is not attached to server {server_id}"
            ))
        })?;
    Ok(Json(json!({"volumeAttachment": attachment})))
}

async fn detach(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((server_id, volume_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    app.cloud().detach_volume(&ctx, &server_id, &volume_id)?;
    Ok(StatusCode::ACCEPTED)
}

/// The server's tags, which exist from microversion 2.26 on.
fn server_tags<'a>(
    cloud: &'a mut Cloud,
    ctx: &Ctx,
    server_id: &str,
    version: Microversion,
) -> Result<&'a mut Vec<String>, ApiError> {
    if !version.at_least(26) {
        return Err(ApiError::unknown_path(Service::Nova));
    }
    cloud.live_server(ctx, server_id)?;
    cloud
        .servers
        .get_mut(server_id)
        .map(|s| &mut s.tags)
        .ok_or_else(|| instance_not_found(server_id))
}

async fn list_tags(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path(server_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut cloud = app.cloud();
    Ok(Json(
        json!({"tags": server_tags(&mut cloud, &ctx, &server_id, version)?}),
    ))
}

async fn replace_tags(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path(server_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_json(&body)?;
    let tags: Vec<String> = body
        .get("tags")
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .ok_or_else(|| bad_request("Invalid input for field/attribute tags."))?;
    let mut cloud = app.cloud();
    let current = server_tags(&mut cloud, &ctx, &server_id, version)?;
    current.clear();
    for tag in tags {
        if !current.contains(&tag) {
            current.push(tag);
        }
    }
    Ok(Json(json!({"tags": current})))
}

async fn clear_tags(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path(server_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut cloud = app.cloud();
    server_tags(&mut cloud, &ctx, &server_id, version)?.clear();
    Ok(StatusCode::NO_CONTENT)
}

async fn has_tag(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path((server_id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut cloud = app.cloud();
    if server_tags(&mut cloud, &ctx, &server_id, version)?.contains(&tag) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(format!("Tag {tag} could not be found.")))
    }
}

async fn add_tag(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path((server_id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut cloud = app.cloud();
    let tags = server_tags(&mut cloud, &ctx, &server_id, version)?;
    if tags.contains(&tag) {
        return Ok(StatusCode::NO_CONTENT);
    }
    tags.push(tag);
    Ok(StatusCode::CREATED)
}

async fn remove_tag(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path((server_id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut cloud = app.cloud();
    let tags = server_tags(&mut cloud, &ctx, &server_id, version)?;
    let before = tags.len();
    tags.retain(|t| t != &tag);
    if tags.len() == before {
        return Err(not_found(format!("Tag {tag} could not be found.")));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn list_keypairs(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let cloud = app.cloud();
    let keypairs: Vec<&Keypair> = cloud
        .keypairs
        .values()
        .filter(|k| k.user_id == ctx.user_id)
        .collect();
    let limit = listing::limit(&params, Service::Nova)?;
    let marker = listing::param(&params, "marker");
    let page = listing::paginate(keypairs, |k| k.name.as_str(), limit, marker)
        .ok_or_else(|| bad_request(format!("marker [{}] not found", marker.unwrap_or(""))))?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|k| json!({"keypair": render_keypair(k, false)}))
        .collect();
    let mut body = json!({"keypairs": items});
    if let (Some(limit), Some(last)) = (limit, page.items.last()) {
        if page.items.len() == limit {
            body["keypairs_links"] = json!([{"rel": "next", "href": listing::next_link(&app.url, &format!("{API}/os-keypairs"), &params, limit, &last.name)}]);
        }
    }
    Ok(Json(body))
}

async fn create_keypair(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json(&body)?;
    let name = body
        .pointer("/keypair/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let public_key = body
        .pointer("/keypair/public_key")
        .and_then(Value::as_str)
        .map(str::to_string);
    let generated = public_key.is_none();
    if generated && version.at_least(92) {
        let given = body.get("keypair").map_or_else(String::new, python_repr);
        return Err(bad_request(format!(
            "Invalid input for field/attribute keypair. Value: {given}. 'public_key' is a required property"
        )));
    }
    let keypair = app.cloud().create_keypair(&ctx, name, public_key)?;
    let mut rendered = render_keypair(&keypair, false);
    rendered["user_id"] = json!(keypair.user_id);
    if generated {
        rendered["private_key"] =
            json!("-----BEGIN OPENSSH PRIVATE KEY-----\nsimulated\n-----END OPENSSH PRIVATE KEY-----\n");
    }
    let status = if version.at_least(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"keypair": rendered}))).into_response())
}

/// A JSON value as Python prints it, as Nova's schema errors quote the request.
fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("'{k}': {}", python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn keypair_not_found(name: &str, user_id: &str) -> ApiError {
    not_found(format!("Keypair {name} not found for user {user_id}"))
}

async fn show_keypair(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cloud = app.cloud();
    let keypair = cloud
        .keypairs
        .get(&(ctx.user_id.clone(), name.clone()))
        .ok_or_else(|| keypair_not_found(&name, &ctx.user_id))?;
    Ok(Json(json!({"keypair": render_keypair(keypair, true)})))
}

async fn delete_keypair(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.cloud()
        .keypairs
        .remove(&(ctx.user_id.clone(), name.clone()))
        .ok_or_else(|| keypair_not_found(&name, &ctx.user_id))?;
    Ok(if version.at_least(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}

async fn list_server_groups(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Query(params): Query<Params>,
) -> Json<Value> {
    let cloud = app.cloud();
    let all = ctx.admin && listing::param(&params, "all_projects").is_some_and(|v| v != "0" && v != "false");
    let groups: Vec<Value> = cloud
        .server_groups
        .values()
        .filter(|g| all || g.project_id == ctx.project_id)
        .map(|g| cloud.render_server_group(g, version))
        .collect();
    Json(json!({"server_groups": groups}))
}

async fn create_server_group(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_json(&body)?;
    let group = body
        .get("server_group")
        .ok_or_else(|| bad_request("Invalid input for field/attribute server_group."))?;
    let name = group.get("name").and_then(Value::as_str).unwrap_or_default();
    let policy = group
        .get("policy")
        .and_then(Value::as_str)
        .or_else(|| group.pointer("/policies/0").and_then(Value::as_str))
        .unwrap_or_default();
    let mut cloud = app.cloud();
    let id = cloud.create_server_group(&ctx, name, policy)?;
    let rendered = cloud
        .server_groups
        .get(&id)
        .map(|g| cloud.render_server_group(g, version));
    Ok(Json(json!({"server_group": rendered})))
}

fn group_not_found(group_id: &str) -> ApiError {
    not_found(format!("Instance group {group_id} could not be found."))
}

async fn show_server_group(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Extension(version): Extension<Microversion>,
    Path(group_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cloud = app.cloud();
    let group = cloud
        .server_groups
        .get(&group_id)
        .filter(|g| ctx.owns(&g.project_id))
        .ok_or_else(|| group_not_found(&group_id))?;
    Ok(Json(
        json!({"server_group": cloud.render_server_group(group, version)}),
    ))
}

/// Nova deletes a server group even while it has members.
async fn delete_server_group(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(group_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut cloud = app.cloud();
    if !cloud
        .server_groups
        .get(&group_id)
        .is_some_and(|g| ctx.owns(&g.project_id))
    {
        return Err(group_not_found(&group_id));
    }
    cloud.server_groups.remove(&group_id);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microversions_come_from_either_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(requested_version(&headers), Ok(Microversion(1)));
        headers.insert(
            "openstack-api-version",
            HeaderValue::from_static("volume 3.5, compute 2.79"),
        );
        assert_eq!(requested_version(&headers), Ok(Microversion(79)));
        let mut legacy = HeaderMap::new();
        legacy.insert("x-openstack-nova-api-version", HeaderValue::from_static("latest"));
        assert_eq!(requested_version(&legacy), Ok(Microversion(MAX_MINOR)));
        legacy.insert("x-openstack-nova-api-version", HeaderValue::from_static("2.999"));
        assert_eq!(
            requested_version(&legacy).map_err(|e| e.status),
            Err(StatusCode::NOT_ACCEPTABLE)
        );
    }
}
