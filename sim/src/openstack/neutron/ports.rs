//! Ports: fixed addresses, security groups (the project's `default` one unless told otherwise), the
//! binding details only admins see, and which ports no one may delete directly.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::subnets::subnet_contains;
use super::{bad_request, conflict, Changes, Resource, Standard};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{
    iso, new_id, Cloud, Ctx, Network, Port, SecurityGroup, Subnet, OWNER_FLOATING_IP, OWNER_ROUTER_GATEWAY,
    OWNER_ROUTER_INTERFACE,
};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct FixedIpReq {
    pub subnet_id: Option<String>,
    pub ip_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PortReq {
    #[serde(flatten)]
    pub standard: Standard,
    pub network_id: String,
    pub fixed_ips: Option<Vec<FixedIpReq>>,
    pub device_id: String,
    pub device_owner: String,
    pub security_groups: Option<Vec<String>>,
    pub admin_state_up: Option<bool>,
}

impl PortReq {
    /// An unbound port on the network with an address from its first subnet, in `security_groups`
    /// (the project's `default` group when `None`).
    pub fn new(
        network_id: &str,
        name: &str,
        security_groups: Option<Vec<String>>,
        tags: Vec<String>,
    ) -> Self {
        PortReq {
            standard: Standard::named(name, tags),
            network_id: network_id.into(),
            security_groups,
            ..PortReq::default()
        }
    }
}

impl Port {
    /// `ACTIVE` once something owns the port.
    pub(super) fn status(&self) -> &'static str {
        if self.device_owner.is_empty() {
            "DOWN"
        } else {
            "ACTIVE"
        }
    }
}

impl Resource for Port {
    const NOT_FOUND: (&'static str, &'static str) = ("PortNotFound", "Port {id} could not be found.");
    const SINGULAR: &'static str = "port";
    const FILTERS: &'static str = "name network_id mac_address admin_state_up status device_id device_owner fixed_ips security_groups binding:host_id";
    /// The port binding's details (`binding:vnic_type` stays visible).
    const ADMIN_ONLY: &'static str = "binding:host_id binding:profile binding:vif_details binding:vif_type";
    type Create = PortReq;

    /// Members also see every port on the networks they own.
    fn visible(&self, cloud: &Cloud, ctx: &Ctx) -> bool {
        ctx.owns(&self.project_id) || cloud.network_is(&self.network_id, |n| ctx.owns(&n.project_id))
    }

    fn render(&self, _cloud: &Cloud) -> Value {
        let fixed: Vec<Value> = self
            .fixed_ips
            .iter()
            .map(|(s, ip)| json!({"subnet_id": s, "ip_address": ip}))
            .collect();
        json!({
            "id": self.id, "name": self.name, "description": self.description,
            "project_id": self.project_id, "tenant_id": self.project_id,
            "network_id": self.network_id, "mac_address": self.mac_address,
            "admin_state_up": self.admin_state_up, "status": self.status(),
            "device_id": self.device_id, "device_owner": self.device_owner,
            "fixed_ips": fixed, "allowed_address_pairs": [], "extra_dhcp_opts": [],
            "security_groups": self.security_groups, "port_security_enabled": true,
            "binding:vnic_type": "normal", "binding:host_id": self.binding_host,
            "binding:vif_type": if self.binding_host.is_empty() { "unbound" } else { "ovs" },
            "binding:vif_details": {}, "binding:profile": {},
            "tags": self.tags, "created_at": iso(&self.created), "updated_at": iso(&self.updated),
            "revision_number": 2,
        })
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, req: PortReq) -> Result<String, ApiError> {
        cloud.visible_or_404::<Network>(ctx, &req.network_id)?;
        let project_id = req.standard.owner(ctx)?;
        if let Some(groups) = &req.security_groups {
            cloud.check_security_groups(ctx, groups)?;
        }
        // Like Neutron: without fixed_ips, one address from the network's first subnet.
        let requested = req.fixed_ips.unwrap_or_else(|| {
            cloud
                .first_subnet(&req.network_id)
                .map(|s| {
                    vec![FixedIpReq {
                        subnet_id: Some(s.id.clone()),
                        ip_address: None,
                    }]
                })
                .unwrap_or_default()
        });
        let mut fixed_ips = Vec::new();
        for wanted in &requested {
            let subnet_id = cloud.fixed_ip_subnet(&req.network_id, wanted)?;
            let ip = cloud.allocate_ip(&subnet_id, wanted.ip_address.as_deref())?;
            fixed_ips.push((subnet_id, ip));
        }
        let security_groups = match req.security_groups {
            Some(groups) => groups,
            None if req.device_owner.starts_with("network:") => Vec::new(),
            None => vec![cloud.ensure_default_security_group(&project_id)],
        };
        let id = new_id();
        let mut port = cloud.new_port(&id, &req.network_id, &project_id, fixed_ips);
        port.tags = req.standard.tags();
        port.name = req.standard.name;
        port.description = req.standard.description;
        port.device_id = req.device_id;
        port.device_owner = req.device_owner;
        port.security_groups = security_groups;
        port.admin_state_up = req.admin_state_up.unwrap_or(true);
        cloud.ports.insert(id.clone(), port);
        Ok(id)
    }

    fn update(cloud: &mut Cloud, ctx: &Ctx, id: &str, changes: &Changes) -> Result<(), ApiError> {
        if let Some(groups) = changes.get("security_groups") {
            let groups: Vec<String> = serde_json::from_value(groups.clone())
                .map_err(|e| bad_request(format!("Invalid input for security_groups: {e}")))?;
            cloud.check_security_groups(ctx, &groups)?;
            if let Some(port) = cloud.ports.get_mut(id) {
                port.security_groups = groups;
            }
        }
        let port = cloud.record_mut::<Port>(id)?;
        changes.set_text("device_id", &mut port.device_id);
        changes.set_text("device_owner", &mut port.device_owner);
        changes.set_bool("admin_state_up", &mut port.admin_state_up);
        changes.rename(&mut port.name, &mut port.description, &mut port.updated);
        Ok(())
    }

    /// Deletes a port a user may delete: not a router's or a floating IP's, and (for members) not one
    /// Nova bound to a server.
    fn delete(cloud: &mut Cloud, ctx: &Ctx, port_id: &str) -> Result<(), ApiError> {
        cloud.visible_or_404::<Port>(ctx, port_id)?;
        let owner = cloud.record::<Port>(port_id)?.device_owner.as_str();
        let service_port = owner.starts_with(OWNER_ROUTER_INTERFACE)
            || owner == OWNER_ROUTER_GATEWAY
            || owner == OWNER_FLOATING_IP;
        if service_port {
            return Err(conflict(
                "ServicePortInUse",
                format!(
                    "Port {port_id} cannot be deleted directly via the port API: has device owner {owner}."
                ),
            ));
        }
        // Under the default policy only Nova (a service user) and admins delete a port bound to a server.
        if owner.starts_with("compute:") && !ctx.admin {
            return Err(ApiError::neutron_policy("delete_port"));
        }
        cloud.remove_port(port_id);
        Ok(())
    }
}

impl Cloud {
    /// A port record with a new MAC address, unbound and owned by nobody.
    pub(super) fn new_port(
        &mut self,
        id: &str,
        network_id: &str,
        project_id: &str,
        fixed_ips: Vec<(String, String)>,
    ) -> Port {
        let now = Utc::now();
        Port {
            id: id.to_string(),
            name: String::new(),
            description: String::new(),
            project_id: project_id.to_string(),
            network_id: network_id.to_string(),
            mac_address: self.new_mac(),
            fixed_ips,
            device_id: String::new(),
            device_owner: String::new(),
            security_groups: Vec::new(),
            binding_host: String::new(),
            admin_state_up: true,
            tags: Vec::new(),
            created: now,
            updated: now,
        }
    }

    /// Checks that every named security group exists for the caller.
    fn check_security_groups(&self, ctx: &Ctx, groups: &[String]) -> Result<(), ApiError> {
        match groups.iter().find(|g| !self.visible::<SecurityGroup>(ctx, g)) {
            Some(missing) => Err(SecurityGroup::not_found(missing)),
            None => Ok(()),
        }
    }

    /// The subnet of the network a requested fixed IP names, or the one its address lies in.
    fn fixed_ip_subnet(&self, network_id: &str, wanted: &FixedIpReq) -> Result<String, ApiError> {
        let subnet_id = match (&wanted.subnet_id, &wanted.ip_address) {
            (Some(subnet_id), _) => subnet_id.clone(),
            (None, Some(ip)) => self
                .subnets
                .values()
                .filter(|s| s.network_id == network_id)
                .find(|s| subnet_contains(&s.cidr, ip))
                .map(|s| s.id.clone())
                .ok_or_else(|| {
                    bad_request(format!(
                        "IP address {ip} is not a valid IP for the specified network."
                    ))
                })?,
            (None, None) => {
                return Err(bad_request(
                    "Invalid input for fixed_ips: no subnet_id or ip_address",
                ))
            }
        };
        if self
            .subnets
            .get(&subnet_id)
            .is_none_or(|s: &Subnet| s.network_id != network_id)
        {
            return Err(bad_request(format!(
                "Invalid input for operation: Failed to create port on network {network_id}, because fixed_ips \
                 included invalid subnet {subnet_id}."
            )));
        }
        Ok(subnet_id)
    }

    /// Removes a port without policy checks, disassociating any floating IP on it.
    pub(crate) fn remove_port(&mut self, port_id: &str) {
        for fip in self
            .floating_ips
            .values_mut()
            .filter(|f| f.port_id.as_deref() == Some(port_id))
        {
            fip.port_id = None;
            fip.fixed_ip_address = None;
            fip.router_id = None;
            fip.updated = Utc::now();
        }
        self.ports.remove(port_id);
    }
}
