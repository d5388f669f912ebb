//! Servers: booting on ports and networks, the delete timeline [`Cloud::reap`] moves on (volumes
//! detached, Nova's own ports deleted and given ones unbound, then `DELETED`, then gone), and locks.

use std::collections::BTreeMap;

use chrono::Utc;

use super::{bad_request, conflict, not_found};
use crate::openstack::errors::ApiError;
use crate::openstack::neutron::PortReq;
use crate::openstack::state::{new_id, Cloud, Ctx, Network, Port, Server, OWNER_COMPUTE};

pub(super) fn instance_not_found(server_id: &str) -> ApiError {
    not_found(format!("Instance {server_id} could not be found."))
}

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

impl ServerSpec {
    /// A server of the CirrOS image and flavor `1` (neither is checked) on `nics`.
    pub fn new(name: &str, nics: Vec<Nic>, tags: Vec<String>) -> Self {
        ServerSpec {
            name: name.into(),
            image_ref: "cirros-0.6.2".into(),
            flavor_ref: "1".into(),
            nics,
            tags,
            ..ServerSpec::default()
        }
    }
}

impl Cloud {
    /// A server the caller may look at, `DELETED` ones included (GET answers 200 for them).
    pub(super) fn visible_server(&self, ctx: &Ctx, server_id: &str) -> Result<&Server, ApiError> {
        self.servers
            .get(server_id)
            .filter(|s| ctx.owns(&s.project_id))
            .ok_or_else(|| instance_not_found(server_id))
    }

    /// A server the caller may act on: visible and not yet `DELETED` (which answers 404 to
    /// everything but GET).
    pub(super) fn live_server(&self, ctx: &Ctx, server_id: &str) -> Result<&Server, ApiError> {
        self.visible_server(ctx, server_id)
            .ok()
            .filter(|s| !s.is_terminated())
            .ok_or_else(|| instance_not_found(server_id))
    }

    /// A server the caller may change: visible, not being deleted, and unlocked unless admin.
    pub(super) fn changeable_server(
        &self,
        ctx: &Ctx,
        server_id: &str,
        action: &str,
    ) -> Result<&Server, ApiError> {
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
                        .filter(|_| self.visible::<Port>(ctx, port_id))
                        .ok_or_else(|| bad_request(format!("Port {port_id} could not be found.")))?;
                    if !port.device_id.is_empty() {
                        return Err(conflict(format!("Port {port_id} is still in use.")));
                    }
                }
                Nic::Network(network_id) => {
                    if !self.visible::<Network>(ctx, network_id) {
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
                    let port_id = self.create::<Port>(
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
}
