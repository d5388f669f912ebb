//! Neutron v2.0: networks, subnets, ports, routers, floating IPs and security groups, with the real
//! service's conflicts, policy refusals, tags, filters and pages.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use super::errors::{ApiError, Service};
use super::keystone::require_token;
use super::listing::{self, Params};
use super::state::{
    iso, new_id, Cloud, Ctx, FloatingIp, Network, Port, Router as NeutronRouter, SecurityGroup,
    SecurityGroupRule, Subnet, OWNER_DHCP, OWNER_FLOATING_IP, OWNER_ROUTER_GATEWAY, OWNER_ROUTER_INTERFACE,
};
use super::Inner;

const API: &str = "/network/v2.0";

/// The resource kinds Neutron serves, one per collection URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Network,
    Subnet,
    Port,
    Router,
    FloatingIp,
    SecurityGroup,
    SecurityGroupRule,
}

impl Kind {
    fn from_collection(collection: &str) -> Option<Kind> {
        Some(match collection {
            "networks" => Kind::Network,
            "subnets" => Kind::Subnet,
            "ports" => Kind::Port,
            "routers" => Kind::Router,
            "floatingips" => Kind::FloatingIp,
            "security-groups" => Kind::SecurityGroup,
            "security-group-rules" => Kind::SecurityGroupRule,
            _ => return None,
        })
    }

    /// The body key of one resource.
    fn singular(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Subnet => "subnet",
            Kind::Port => "port",
            Kind::Router => "router",
            Kind::FloatingIp => "floatingip",
            Kind::SecurityGroup => "security_group",
            Kind::SecurityGroupRule => "security_group_rule",
        }
    }

    /// The body key of a list.
    fn plural(self) -> &'static str {
        match self {
            Kind::Network => "networks",
            Kind::Subnet => "subnets",
            Kind::Port => "ports",
            Kind::Router => "routers",
            Kind::FloatingIp => "floatingips",
            Kind::SecurityGroup => "security_groups",
            Kind::SecurityGroupRule => "security_group_rules",
        }
    }

    fn not_found(self, id: &str) -> ApiError {
        let (kind, message) = match self {
            Kind::Network => ("NetworkNotFound", format!("Network {id} could not be found.")),
            Kind::Subnet => ("SubnetNotFound", format!("Subnet {id} could not be found.")),
            Kind::Port => ("PortNotFound", format!("Port {id} could not be found.")),
            Kind::Router => ("RouterNotFound", format!("Router {id} could not be found.")),
            Kind::FloatingIp => (
                "FloatingIPNotFound",
                format!("Floating IP {id} could not be found"),
            ),
            Kind::SecurityGroup => (
                "SecurityGroupNotFound",
                format!("Security group {id} does not exist"),
            ),
            Kind::SecurityGroupRule => (
                "SecurityGroupRuleNotFound",
                format!("Security group rule {id} does not exist"),
            ),
        };
        ApiError::neutron(StatusCode::NOT_FOUND, kind, message)
    }

    /// Attributes a list may filter on besides `id`, `project_id`, `tenant_id`, `description`,
    /// `revision_number` and the tag filters.
    fn filterable(self) -> &'static [&'static str] {
        match self {
            Kind::Network => &[
                "name",
                "status",
                "admin_state_up",
                "shared",
                "router:external",
                "mtu",
                "is_default",
            ],
            Kind::Subnet => &[
                "name",
                "network_id",
                "cidr",
                "ip_version",
                "gateway_ip",
                "enable_dhcp",
                "subnetpool_id",
            ],
            Kind::Port => &[
                "name",
                "network_id",
                "mac_address",
                "admin_state_up",
                "status",
                "device_id",
                "device_owner",
                "fixed_ips",
                "security_groups",
                "binding:host_id",
            ],
            Kind::Router => &["name", "status", "admin_state_up", "distributed", "ha"],
            Kind::FloatingIp => &[
                "floating_network_id",
                "floating_ip_address",
                "router_id",
                "port_id",
                "fixed_ip_address",
                "status",
            ],
            Kind::SecurityGroup => &["name", "stateful", "shared"],
            Kind::SecurityGroupRule => &[
                "security_group_id",
                "direction",
                "ethertype",
                "protocol",
                "port_range_min",
                "port_range_max",
                "remote_ip_prefix",
                "remote_group_id",
            ],
        }
    }

    fn is_filterable(self, key: &str) -> bool {
        ["id", "project_id", "tenant_id", "description", "revision_number"].contains(&key)
            || self.filterable().contains(&key)
    }

    fn has_tags(self) -> bool {
        self != Kind::SecurityGroupRule
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NetworkReq {
    pub name: String,
    pub description: String,
    pub shared: bool,
    #[serde(rename = "router:external")]
    pub external: bool,
    pub admin_state_up: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SubnetReq {
    pub name: String,
    pub description: String,
    pub network_id: String,
    pub cidr: Option<String>,
    pub ip_version: Option<u8>,
    #[serde(deserialize_with = "explicit")]
    pub gateway_ip: Option<Option<String>>,
    pub enable_dhcp: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct FixedIpReq {
    pub subnet_id: Option<String>,
    pub ip_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PortReq {
    pub name: String,
    pub description: String,
    pub network_id: String,
    pub fixed_ips: Option<Vec<FixedIpReq>>,
    pub device_id: String,
    pub device_owner: String,
    pub security_groups: Option<Vec<String>>,
    pub admin_state_up: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SecurityGroupReq {
    pub name: String,
    pub description: String,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RuleReq {
    pub security_group_id: String,
    pub direction: String,
    pub ethertype: Option<String>,
    pub protocol: Option<Value>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
    pub description: String,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GatewayReq {
    pub network_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RouterReq {
    pub name: String,
    pub description: String,
    pub admin_state_up: Option<bool>,
    pub external_gateway_info: Option<GatewayReq>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct FloatingIpReq {
    pub floating_network_id: String,
    pub port_id: Option<String>,
    pub description: String,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub tags: Vec<String>,
}

/// What `add_router_interface` and `remove_router_interface` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interface {
    Subnet(String),
    Port(String),
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::neutron(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn conflict(kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::neutron(StatusCode::CONFLICT, kind, message)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(Service::Neutron, format!("Malformed JSON: {e}")))
}

/// The object under `key` in a request body, typed.
fn body_of<T: DeserializeOwned>(body: &Value, key: &str) -> Result<T, ApiError> {
    let inner = body.get(key).cloned().ok_or_else(|| {
        ApiError::bad_request(
            Service::Neutron,
            format!("Unable to find '{key}' in request body"),
        )
    })?;
    serde_json::from_value(inner)
        .map_err(|e| ApiError::bad_request(Service::Neutron, format!("Invalid input for operation: {e}.")))
}

/// The project a new resource belongs to: the caller's, or any project an admin names.
fn owner(ctx: &Ctx, project_id: &Option<String>, tenant_id: &Option<String>) -> Result<String, ApiError> {
    match project_id.as_ref().or(tenant_id.as_ref()) {
        Some(project) if project != &ctx.project_id && !ctx.admin => Err(ApiError::bad_request(
            Service::Neutron,
            "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires \
             admin privileges",
        )),
        Some(project) => Ok(project.clone()),
        None => Ok(ctx.project_id.clone()),
    }
}

fn dedup(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The model: visibility, creation, deletion and their conflicts
// ---------------------------------------------------------------------------------------------

impl Cloud {
    fn network_visible(&self, ctx: &Ctx, network: &Network) -> bool {
        ctx.owns(&network.project_id) || network.shared || network.external
    }

    /// Whether the caller can see the resource (members see their own resources, shared and
    /// external networks and their subnets, and ports on networks they own).
    pub(crate) fn neutron_visible(&self, ctx: &Ctx, kind: Kind, id: &str) -> bool {
        match kind {
            Kind::Network => self
                .networks
                .get(id)
                .is_some_and(|n| self.network_visible(ctx, n)),
            Kind::Subnet => self.subnets.get(id).is_some_and(|s| {
                ctx.owns(&s.project_id)
                    || self
                        .networks
                        .get(&s.network_id)
                        .is_some_and(|n| self.network_visible(ctx, n))
            }),
            Kind::Port => self.ports.get(id).is_some_and(|p| {
                ctx.owns(&p.project_id)
                    || self
                        .networks
                        .get(&p.network_id)
                        .is_some_and(|n| ctx.owns(&n.project_id))
            }),
            Kind::Router => self.routers.get(id).is_some_and(|r| ctx.owns(&r.project_id)),
            Kind::FloatingIp => self.floating_ips.get(id).is_some_and(|f| ctx.owns(&f.project_id)),
            Kind::SecurityGroup => self
                .security_groups
                .get(id)
                .is_some_and(|g| ctx.owns(&g.project_id)),
            Kind::SecurityGroupRule => self
                .security_group_rules
                .get(id)
                .is_some_and(|r| ctx.owns(&r.project_id)),
        }
    }

    fn ids(&self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::Network => self.networks.keys().cloned().collect(),
            Kind::Subnet => self.subnets.keys().cloned().collect(),
            Kind::Port => self.ports.keys().cloned().collect(),
            Kind::Router => self.routers.keys().cloned().collect(),
            Kind::FloatingIp => self.floating_ips.keys().cloned().collect(),
            Kind::SecurityGroup => self.security_groups.keys().cloned().collect(),
            Kind::SecurityGroupRule => self.security_group_rules.keys().cloned().collect(),
        }
    }

    fn tags_mut(&mut self, kind: Kind, id: &str) -> Option<&mut Vec<String>> {
        match kind {
            Kind::Network => self.networks.get_mut(id).map(|r| &mut r.tags),
            Kind::Subnet => self.subnets.get_mut(id).map(|r| &mut r.tags),
            Kind::Port => self.ports.get_mut(id).map(|r| &mut r.tags),
            Kind::Router => self.routers.get_mut(id).map(|r| &mut r.tags),
            Kind::FloatingIp => self.floating_ips.get_mut(id).map(|r| &mut r.tags),
            Kind::SecurityGroup => self.security_groups.get_mut(id).map(|r| &mut r.tags),
            Kind::SecurityGroupRule => None,
        }
    }

    /// The caller's view of one resource, or its kind's 404.
    fn visible_or_404(&self, ctx: &Ctx, kind: Kind, id: &str) -> Result<(), ApiError> {
        if self.neutron_visible(ctx, kind, id) {
            Ok(())
        } else {
            Err(kind.not_found(id))
        }
    }

    /// The project's `default` security group, created on first use as real Neutron does.
    pub(crate) fn ensure_default_security_group(&mut self, project_id: &str) -> String {
        if let Some(group) = self
            .security_groups
            .values()
            .find(|g| g.project_id == project_id && g.name == "default")
        {
            return group.id.clone();
        }
        let now = Utc::now();
        let group_id = new_id();
        self.security_groups.insert(
            group_id.clone(),
            SecurityGroup {
                id: group_id.clone(),
                name: "default".into(),
                description: "Default security group".into(),
                project_id: project_id.into(),
                tags: Vec::new(),
                created: now,
                updated: now,
            },
        );
        for (direction, ethertype, remote_group) in [
            ("egress", "IPv4", None),
            ("egress", "IPv6", None),
            ("ingress", "IPv4", Some(group_id.clone())),
            ("ingress", "IPv6", Some(group_id.clone())),
        ] {
            let rule_id = new_id();
            let standard_attr_id = self.new_standard_attr_id();
            self.security_group_rules.insert(
                rule_id.clone(),
                SecurityGroupRule {
                    id: rule_id,
                    security_group_id: group_id.clone(),
                    project_id: project_id.into(),
                    direction: direction.into(),
                    ethertype: ethertype.into(),
                    protocol: None,
                    port_range_min: None,
                    port_range_max: None,
                    remote_ip_prefix: None,
                    remote_group_id: remote_group,
                    description: String::new(),
                    standard_attr_id,
                    created: now,
                    updated: now,
                },
            );
        }
        group_id
    }

    pub(crate) fn create_network(&mut self, ctx: &Ctx, req: NetworkReq) -> Result<String, ApiError> {
        let project_id = owner(ctx, &req.project_id, &req.tenant_id)?;
        if (req.shared || req.external) && !ctx.admin {
            return Err(ApiError::neutron_policy("create_network:shared"));
        }
        self.ensure_default_security_group(&project_id);
        let now = Utc::now();
        let id = new_id();
        self.networks.insert(
            id.clone(),
            Network {
                id: id.clone(),
                name: req.name,
                description: req.description,
                project_id,
                shared: req.shared,
                external: req.external,
                admin_state_up: req.admin_state_up.unwrap_or(true),
                tags: dedup(&req.tags),
                created: now,
                updated: now,
            },
        );
        Ok(id)
    }

    pub(crate) fn create_subnet(&mut self, ctx: &Ctx, req: SubnetReq) -> Result<String, ApiError> {
        self.visible_or_404(ctx, Kind::Network, &req.network_id)?;
        let network_project = self
            .networks
            .get(&req.network_id)
            .map(|n| n.project_id.clone())
            .unwrap_or_default();
        if !ctx.owns(&network_project) {
            return Err(ApiError::neutron_policy("create_subnet"));
        }
        let project_id = owner(ctx, &req.project_id, &req.tenant_id)?;
        let cidr = req
            .cidr
            .ok_or_else(|| bad_request("Bad subnets request: a cidr must be specified"))?;
        let (address, _) = Subnet::parse_cidr(&cidr).ok_or_else(|| {
            bad_request(format!(
                "Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet."
            ))
        })?;
        let ip_version = if address.is_ipv4() { 4 } else { 6 };
        if req.ip_version.is_some_and(|v| v != ip_version) {
            return Err(bad_request(
                "Bad subnets request: cidr and ip_version do not match.",
            ));
        }
        let gateway_ip = match req.gateway_ip {
            None => Subnet::host_address(&cidr, 1),
            Some(explicit) => explicit,
        };
        let now = Utc::now();
        let id = new_id();
        let enable_dhcp = req.enable_dhcp.unwrap_or(true);
        let network_id = req.network_id.clone();
        self.subnets.insert(
            id.clone(),
            Subnet {
                id: id.clone(),
                name: req.name,
                description: req.description,
                project_id,
                network_id: req.network_id,
                cidr,
                ip_version,
                next_host: if gateway_ip.is_some() { 2 } else { 1 },
                gateway_ip,
                enable_dhcp,
                tags: dedup(&req.tags),
                created: now,
                updated: now,
            },
        );
        if enable_dhcp && self.dhcp_agent {
            self.add_dhcp_address(&network_id, &id, &network_project)?;
        }
        Ok(id)
    }

    /// Gives the network's DHCP port an address on a new DHCP subnet, creating the port (owned by the
    /// network's project, as the DHCP agent does) when it is the network's first. Only with a DHCP
    /// agent ([`super::SimConfig::dhcp_agent`]): without one Neutron makes no DHCP port.
    fn add_dhcp_address(
        &mut self,
        network_id: &str,
        subnet_id: &str,
        project_id: &str,
    ) -> Result<(), ApiError> {
        let ip = self.allocate_ip(subnet_id, None)?;
        let existing = self
            .ports
            .values_mut()
            .find(|p| p.network_id == network_id && p.device_owner == OWNER_DHCP);
        match existing {
            Some(port) => port.fixed_ips.push((subnet_id.to_string(), ip)),
            None => {
                let port_id = new_id();
                let mut port = self.new_port(
                    &port_id,
                    network_id,
                    project_id,
                    vec![(subnet_id.to_string(), ip)],
                );
                port.device_owner = OWNER_DHCP.into();
                port.device_id = format!("dhcp{}-{network_id}", uuid::Uuid::new_v4().simple());
                port.binding_host = "sim-network".into();
                self.ports.insert(port_id, port);
            }
        }
        Ok(())
    }

    fn new_port(
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

    fn ip_in_use(&self, subnet_id: &str, ip: &str) -> bool {
        self.ports
            .values()
            .any(|p| p.fixed_ips.iter().any(|(s, a)| s == subnet_id && a == ip))
    }

    /// An address on the subnet: `wanted` if it is free, else the next free one.
    fn allocate_ip(&mut self, subnet_id: &str, wanted: Option<&str>) -> Result<String, ApiError> {
        let subnet = self
            .subnets
            .get(subnet_id)
            .ok_or_else(|| Kind::Subnet.not_found(subnet_id))?;
        if let Some(ip) = wanted {
            if self.ip_in_use(subnet_id, ip) {
                return Err(conflict(
                    "IpAddressAlreadyAllocated",
                    format!("IP address {ip} already allocated in subnet {subnet_id}"),
                ));
            }
            return Ok(ip.to_string());
        }
        let (cidr, gateway, network_id, last) = (
            subnet.cidr.clone(),
            subnet.gateway_ip.clone(),
            subnet.network_id.clone(),
            subnet.last_host(),
        );
        let mut host = subnet.next_host;
        while host <= last {
            if let Some(ip) = Subnet::host_address(&cidr, host) {
                if Some(&ip) != gateway.as_ref() && !self.ip_in_use(subnet_id, &ip) {
                    if let Some(subnet) = self.subnets.get_mut(subnet_id) {
                        subnet.next_host = host + 1;
                    }
                    return Ok(ip);
                }
            }
            host += 1;
        }
        Err(conflict(
            "IpAddressGenerationFailure",
            format!("No more IP addresses available on network {network_id}."),
        ))
    }

    /// Checks that every named security group exists for the caller.
    fn check_security_groups(&self, ctx: &Ctx, groups: &[String]) -> Result<(), ApiError> {
        match groups
            .iter()
            .find(|g| !self.neutron_visible(ctx, Kind::SecurityGroup, g))
        {
            Some(missing) => Err(Kind::SecurityGroup.not_found(missing)),
            None => Ok(()),
        }
    }

    pub(crate) fn create_port(&mut self, ctx: &Ctx, req: PortReq) -> Result<String, ApiError> {
        self.visible_or_404(ctx, Kind::Network, &req.network_id)?;
        let project_id = owner(ctx, &req.project_id, &req.tenant_id)?;
        if let Some(groups) = &req.security_groups {
            self.check_security_groups(ctx, groups)?;
        }
        let requested = match req.fixed_ips {
            Some(ips) => ips,
            None => {
                // Like Neutron: one address from the network's first IPv4 subnet (else its first).
                let mut subnets: Vec<&Subnet> = self
                    .subnets
                    .values()
                    .filter(|s| s.network_id == req.network_id)
                    .collect();
                subnets.sort_by_key(|s| (s.ip_version, s.created));
                subnets
                    .first()
                    .map(|s| {
                        vec![FixedIpReq {
                            subnet_id: Some(s.id.clone()),
                            ip_address: None,
                        }]
                    })
                    .unwrap_or_default()
            }
        };
        let mut fixed_ips = Vec::new();
        for wanted in &requested {
            let subnet_id = match (&wanted.subnet_id, &wanted.ip_address) {
                (Some(subnet_id), _) => subnet_id.clone(),
                (None, Some(ip)) => self
                    .subnets
                    .values()
                    .filter(|s| s.network_id == req.network_id)
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
                .is_none_or(|s| s.network_id != req.network_id)
            {
                return Err(bad_request(format!(
                    "Invalid input for operation: Failed to create port on network {}, because fixed_ips included \
                     invalid subnet {subnet_id}.",
                    req.network_id
                )));
            }
            let ip = self.allocate_ip(&subnet_id, wanted.ip_address.as_deref())?;
            fixed_ips.push((subnet_id, ip));
        }
        let security_groups = match req.security_groups {
            Some(groups) => groups,
            None if req.device_owner.starts_with("network:") => Vec::new(),
            None => vec![self.ensure_default_security_group(&project_id)],
        };
        let id = new_id();
        let mut port = self.new_port(&id, &req.network_id, &project_id, fixed_ips);
        port.name = req.name;
        port.description = req.description;
        port.device_id = req.device_id;
        port.device_owner = req.device_owner;
        port.security_groups = security_groups;
        port.admin_state_up = req.admin_state_up.unwrap_or(true);
        port.tags = dedup(&req.tags);
        self.ports.insert(id.clone(), port);
        Ok(id)
    }

    pub(crate) fn create_security_group(
        &mut self,
        ctx: &Ctx,
        req: SecurityGroupReq,
    ) -> Result<String, ApiError> {
        let project_id = owner(ctx, &req.project_id, &req.tenant_id)?;
        self.ensure_default_security_group(&project_id);
        if req.name == "default" {
            return Err(conflict(
                "SecurityGroupDefaultAlreadyExists",
                "Default security group already exists.",
            ));
        }
        let now = Utc::now();
        let id = new_id();
        self.security_groups.insert(
            id.clone(),
            SecurityGroup {
                id: id.clone(),
                name: req.name,
                description: req.description,
                project_id: project_id.clone(),
                tags: dedup(&req.tags),
                created: now,
                updated: now,
            },
        );
        // Real Neutron gives every new group the two egress rules.
        for ethertype in ["IPv4", "IPv6"] {
            let rule_id = new_id();
            let standard_attr_id = self.new_standard_attr_id();
            self.security_group_rules.insert(
                rule_id.clone(),
                SecurityGroupRule {
                    id: rule_id,
                    security_group_id: id.clone(),
                    project_id: project_id.clone(),
                    direction: "egress".into(),
                    ethertype: ethertype.into(),
                    protocol: None,
                    port_range_min: None,
                    port_range_max: None,
                    remote_ip_prefix: None,
                    remote_group_id: None,
                    description: String::new(),
                    standard_attr_id,
                    created: now,
                    updated: now,
                },
            );
        }
        Ok(id)
    }

    pub(crate) fn create_security_group_rule(&mut self, ctx: &Ctx, req: RuleReq) -> Result<String, ApiError> {
        self.visible_or_404(ctx, Kind::SecurityGroup, &req.security_group_id)?;
        if !matches!(req.direction.as_str(), "ingress" | "egress") {
            return Err(bad_request(format!(
                "Invalid input for direction. Reason: {} is not in valid_values.",
                req.direction
            )));
        }
        if let Some(remote) = &req.remote_group_id {
            self.visible_or_404(ctx, Kind::SecurityGroup, remote)?;
        }
        let project_id = self
            .security_groups
            .get(&req.security_group_id)
            .map(|g| g.project_id.clone())
            .unwrap_or_else(|| ctx.project_id.clone());
        let protocol = match req.protocol {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.is_empty() || p == "any" => None,
            Some(Value::String(p)) => Some(p),
            Some(other) => Some(other.to_string()),
        };
        let now = Utc::now();
        let rule = SecurityGroupRule {
            id: new_id(),
            security_group_id: req.security_group_id,
            project_id,
            direction: req.direction,
            ethertype: req.ethertype.unwrap_or_else(|| "IPv4".into()),
            protocol,
            port_range_min: req.port_range_min,
            port_range_max: req.port_range_max,
            remote_ip_prefix: req.remote_ip_prefix,
            remote_group_id: req.remote_group_id,
            description: req.description,
            standard_attr_id: 0,
            created: now,
            updated: now,
        };
        let same = |r: &SecurityGroupRule| {
            (
                &r.security_group_id,
                &r.direction,
                &r.ethertype,
                &r.protocol,
                r.port_range_min,
                r.port_range_max,
            ) == (
                &rule.security_group_id,
                &rule.direction,
                &rule.ethertype,
                &rule.protocol,
                rule.port_range_min,
                rule.port_range_max,
            ) && (&r.remote_ip_prefix, &r.remote_group_id) == (&rule.remote_ip_prefix, &rule.remote_group_id)
        };
        if let Some(existing) = self.security_group_rules.values().find(|r| same(r)) {
            return Err(conflict(
                "SecurityGroupRuleExists",
                format!("Security group rule already exists. Rule id is {}.", existing.id),
            ));
        }
        let id = rule.id.clone();
        let rule = SecurityGroupRule {
            standard_attr_id: self.new_standard_attr_id(),
            ..rule
        };
        self.security_group_rules.insert(id.clone(), rule);
        Ok(id)
    }

    pub(crate) fn create_router(&mut self, ctx: &Ctx, req: RouterReq) -> Result<String, ApiError> {
        let project_id = owner(ctx, &req.project_id, &req.tenant_id)?;
        let gateway_network = req.external_gateway_info.and_then(|g| g.network_id);
        if let Some(network_id) = &gateway_network {
            self.check_external(network_id)?;
        }
        let now = Utc::now();
        let id = new_id();
        self.routers.insert(
            id.clone(),
            NeutronRouter {
                id: id.clone(),
                name: req.name,
                description: req.description,
                project_id,
                gateway: None,
                admin_state_up: req.admin_state_up.unwrap_or(true),
                tags: dedup(&req.tags),
                created: now,
                updated: now,
            },
        );
        if let Some(network_id) = gateway_network {
            self.set_router_gateway(ctx, &id, Some(&network_id))?;
        }
        Ok(id)
    }

    fn check_external(&self, network_id: &str) -> Result<(), ApiError> {
        match self.networks.get(network_id) {
            Some(network) if network.external => Ok(()),
            Some(_) => Err(bad_request(format!(
                "Bad router request: Network {network_id} is not a valid external network."
            ))),
            None => Err(Kind::Network.not_found(network_id)),
        }
    }

    /// Sets (`Some`) or clears (`None`) the router's external gateway and its gateway port.
    pub(crate) fn set_router_gateway(
        &mut self,
        ctx: &Ctx,
        router_id: &str,
        network_id: Option<&str>,
    ) -> Result<(), ApiError> {
        self.visible_or_404(ctx, Kind::Router, router_id)?;
        let current = self.routers.get(router_id).and_then(|r| r.gateway.clone());
        if current.as_ref().map(|(n, _)| n.as_str()) == network_id {
            return Ok(());
        }
        if let Some(network_id) = network_id {
            self.check_external(network_id)?;
        }
        if let Some((old_network, old_port)) = current {
            if self
                .floating_ips
                .values()
                .any(|f| f.router_id.as_deref() == Some(router_id))
            {
                return Err(conflict(
                    "RouterExternalGatewayInUseByFloatingIp",
                    format!(
                        "Gateway cannot be updated for router {router_id}, since a gateway to external network \
                         {old_network} is required by one or more floating IPs."
                    ),
                ));
            }
            self.ports.remove(&old_port);
            if let Some(router) = self.routers.get_mut(router_id) {
                router.gateway = None;
            }
        }
        if let Some(network_id) = network_id {
            let subnet_id = self.first_subnet(network_id).ok_or_else(|| {
                bad_request(format!(
                    "Bad router request: No subnet on external network {network_id}."
                ))
            })?;
            let ip = self.allocate_ip(&subnet_id, None)?;
            let port_id = new_id();
            // Gateway ports belong to no project, so members never list them.
            let mut port = self.new_port(&port_id, network_id, "", vec![(subnet_id, ip)]);
            port.device_owner = OWNER_ROUTER_GATEWAY.into();
            port.device_id = router_id.into();
            port.binding_host = "sim-network".into();
            self.ports.insert(port_id.clone(), port);
            if let Some(router) = self.routers.get_mut(router_id) {
                router.gateway = Some((network_id.to_string(), port_id));
                router.updated = Utc::now();
            }
        }
        Ok(())
    }

    fn first_subnet(&self, network_id: &str) -> Option<String> {
        let mut subnets: Vec<&Subnet> = self
            .subnets
            .values()
            .filter(|s| s.network_id == network_id)
            .collect();
        subnets.sort_by_key(|s| (s.ip_version, s.created));
        subnets.first().map(|s| s.id.clone())
    }

    fn interface_body(&self, router_id: &str, port_id: &str) -> Value {
        let router_project = self
            .routers
            .get(router_id)
            .map(|r| r.project_id.clone())
            .unwrap_or_default();
        let port = self.ports.get(port_id);
        let subnet_ids: Vec<String> = port
            .map(|p| p.fixed_ips.iter().map(|(s, _)| s.clone()).collect())
            .unwrap_or_default();
        json!({
            "id": router_id,
            "tenant_id": router_project,
            "project_id": router_project,
            "port_id": port_id,
            "network_id": port.map(|p| p.network_id.clone()),
            "subnet_id": subnet_ids.first(),
            "subnet_ids": subnet_ids,
        })
    }

    pub(crate) fn add_router_interface(
        &mut self,
        ctx: &Ctx,
        router_id: &str,
        interface: Interface,
    ) -> Result<Value, ApiError> {
        self.visible_or_404(ctx, Kind::Router, router_id)?;
        let router_project = self
            .routers
            .get(router_id)
            .map(|r| r.project_id.clone())
            .unwrap_or_default();
        let port_id = match interface {
            Interface::Subnet(subnet_id) => {
                self.visible_or_404(ctx, Kind::Subnet, &subnet_id)?;
                let subnet = self
                    .subnets
                    .get(&subnet_id)
                    .ok_or_else(|| Kind::Subnet.not_found(&subnet_id))?;
                let (network_id, gateway) = (subnet.network_id.clone(), subnet.gateway_ip.clone());
                let gateway = gateway.ok_or_else(|| {
                    bad_request("Bad router request: Subnet for router interface must have a gateway IP.")
                })?;
                if self
                    .router_interfaces(router_id)
                    .any(|p| p.fixed_ips.iter().any(|(s, _)| s == &subnet_id))
                {
                    return Err(bad_request(format!(
                        "Bad router request: Router already has a port on subnet {subnet_id}."
                    )));
                }
                let ip = self.allocate_ip(&subnet_id, Some(&gateway))?;
                let port_id = new_id();
                let mut port = self.new_port(&port_id, &network_id, &router_project, vec![(subnet_id, ip)]);
                port.device_owner = OWNER_ROUTER_INTERFACE.into();
                port.device_id = router_id.into();
                port.binding_host = "sim-network".into();
                self.ports.insert(port_id.clone(), port);
                port_id
            }
            Interface::Port(port_id) => {
                self.visible_or_404(ctx, Kind::Port, &port_id)?;
                let port = self
                    .ports
                    .get_mut(&port_id)
                    .ok_or_else(|| Kind::Port.not_found(&port_id))?;
                if !port.device_id.is_empty() {
                    return Err(conflict(
                        "PortInUse",
                        format!(
                            "Unable to complete operation on port {port_id} for network {}. Port already has an \
                             attached device {}.",
                            port.network_id, port.device_id
                        ),
                    ));
                }
                if port.fixed_ips.is_empty() {
                    return Err(bad_request(
                        "Bad router request: Router port must have at least one fixed IP.",
                    ));
                }
                port.device_owner = OWNER_ROUTER_INTERFACE.into();
                port.device_id = router_id.into();
                port.security_groups.clear();
                port_id
            }
        };
        Ok(self.interface_body(router_id, &port_id))
    }

    fn router_interfaces<'a>(&'a self, router_id: &'a str) -> impl Iterator<Item = &'a Port> + 'a {
        self.ports
            .values()
            .filter(move |p| p.device_id == router_id && p.device_owner.starts_with(OWNER_ROUTER_INTERFACE))
    }

    pub(crate) fn remove_router_interface(
        &mut self,
        ctx: &Ctx,
        router_id: &str,
        interface: Interface,
    ) -> Result<Value, ApiError> {
        self.visible_or_404(ctx, Kind::Router, router_id)?;
        let port = match &interface {
            Interface::Subnet(subnet_id) => {
                self.visible_or_404(ctx, Kind::Subnet, subnet_id)?;
                self.router_interfaces(router_id)
                    .find(|p| p.fixed_ips.iter().any(|(s, _)| s == subnet_id))
                    .ok_or_else(|| {
                        ApiError::neutron(
                            StatusCode::NOT_FOUND,
                            "RouterInterfaceNotFoundForSubnet",
                            format!("Router {router_id} has no interface on subnet {subnet_id}"),
                        )
                    })?
            }
            Interface::Port(port_id) => self
                .router_interfaces(router_id)
                .find(|p| &p.id == port_id)
                .ok_or_else(|| {
                    ApiError::neutron(
                        StatusCode::NOT_FOUND,
                        "RouterInterfaceNotFound",
                        format!("Router {router_id} does not have an interface with id {port_id}"),
                    )
                })?,
        };
        let port_id = port.id.clone();
        let subnets: Vec<String> = port.fixed_ips.iter().map(|(s, _)| s.clone()).collect();
        // A floating IP routed by this router to a port on one of these subnets needs the interface.
        for fip in self
            .floating_ips
            .values()
            .filter(|f| f.router_id.as_deref() == Some(router_id))
        {
            let target = fip.port_id.as_ref().and_then(|p| self.ports.get(p));
            if let Some(subnet_id) =
                target.and_then(|t| t.fixed_ips.iter().map(|(s, _)| s).find(|s| subnets.contains(s)))
            {
                return Err(conflict(
                    "RouterInterfaceInUseByFloatingIP",
                    format!(
                        "Router interface for subnet {subnet_id} on router {router_id} cannot be deleted, as it \
                         is required by one or more floating IPs."
                    ),
                ));
            }
        }
        let body = self.interface_body(router_id, &port_id);
        self.ports.remove(&port_id);
        Ok(body)
    }

    /// Where a floating IP on `floating_network_id` for `port_id` would be routed: the port's fixed
    /// address and the router joining its subnet to the external network.
    fn floating_ip_target(
        &self,
        ctx: &Ctx,
        fip_id: Option<&str>,
        floating_network_id: &str,
        port_id: &str,
    ) -> Result<(String, String), ApiError> {
        self.visible_or_404(ctx, Kind::Port, port_id)?;
        let port = self
            .ports
            .get(port_id)
            .ok_or_else(|| Kind::Port.not_found(port_id))?;
        let (subnet_id, fixed_ip) = port
            .fixed_ips
            .iter()
            .find(|(_, ip)| ip.contains('.'))
            .cloned()
            .ok_or_else(|| {
                bad_request(format!(
                    "Bad floatingip request: Port {port_id} does not have any IPv4 address."
                ))
            })?;
        if let Some(other) = self
            .floating_ips
            .values()
            .find(|f| f.port_id.as_deref() == Some(port_id) && Some(f.id.as_str()) != fip_id)
        {
            return Err(conflict(
                "FloatingIPPortAlreadyAssociated",
                format!(
                    "Cannot associate floating IP {} ({}) with port {port_id} using fixed IP {fixed_ip}, as that \
                     fixed IP already has a floating IP on external network {floating_network_id}.",
                    fip_id.unwrap_or_default(),
                    other.floating_ip_address
                ),
            ));
        }
        let router = self.routers.values().find(|r| {
            r.gateway.as_ref().is_some_and(|(n, _)| n == floating_network_id)
                && self
                    .router_interfaces(&r.id)
                    .any(|p| p.fixed_ips.iter().any(|(s, _)| s == &subnet_id))
        });
        match router {
            Some(router) => Ok((fixed_ip, router.id.clone())),
            None => Err(ApiError::neutron(
                StatusCode::NOT_FOUND,
                "ExternalGatewayForFloatingIPNotFound",
                format!(
                    "External network {floating_network_id} is not reachable from subnet {subnet_id}.  Therefore, \
                     cannot associate Port {port_id} with a Floating IP."
                ),
            )),
        }
    }

    pub(crate) fn create_floating_ip(&mut self, ctx: &Ctx, req: FloatingIpReq) -> Result<String, ApiError> {
        let project_id = owner(ctx, &req.project_id, &req.tenant_id)?;
        match self.networks.get(&req.floating_network_id) {
            Some(network) if network.external => {}
            Some(_) => {
                return Err(bad_request(format!(
                    "Bad floatingip request: Network {} is not a valid external network.",
                    req.floating_network_id
                )))
            }
            None => return Err(Kind::Network.not_found(&req.floating_network_id)),
        }
        let target = match &req.port_id {
            Some(port_id) => Some(self.floating_ip_target(ctx, None, &req.floating_network_id, port_id)?),
            None => None,
        };
        let subnet_id = self.first_subnet(&req.floating_network_id).ok_or_else(|| {
            conflict(
                "IpAddressGenerationFailure",
                format!(
                    "No more IP addresses available on network {}.",
                    req.floating_network_id
                ),
            )
        })?;
        let address = self.allocate_ip(&subnet_id, None)?;
        let id = new_id();
        let own_port_id = new_id();
        let mut own_port = self.new_port(
            &own_port_id,
            &req.floating_network_id,
            "",
            vec![(subnet_id, address.clone())],
        );
        own_port.device_owner = OWNER_FLOATING_IP.into();
        own_port.device_id = id.clone();
        self.ports.insert(own_port_id.clone(), own_port);
        let now = Utc::now();
        let (fixed_ip_address, router_id) =
            target.map_or((None, None), |(ip, router)| (Some(ip), Some(router)));
        self.floating_ips.insert(
            id.clone(),
            FloatingIp {
                id: id.clone(),
                description: req.description,
                project_id,
                floating_network_id: req.floating_network_id,
                floating_ip_address: address,
                own_port_id,
                port_id: req.port_id,
                fixed_ip_address,
                router_id,
                tags: dedup(&req.tags),
                created: now,
                updated: now,
            },
        );
        Ok(id)
    }

    /// Associates the floating IP with a port (`Some`) or disassociates it (`None`).
    pub(crate) fn associate_floating_ip(
        &mut self,
        ctx: &Ctx,
        fip_id: &str,
        port_id: Option<&str>,
    ) -> Result<(), ApiError> {
        self.visible_or_404(ctx, Kind::FloatingIp, fip_id)?;
        let network_id = self
            .floating_ips
            .get(fip_id)
            .map(|f| f.floating_network_id.clone())
            .unwrap_or_default();
        let target = match port_id {
            Some(port_id) => Some(self.floating_ip_target(ctx, Some(fip_id), &network_id, port_id)?),
            None => None,
        };
        if let Some(fip) = self.floating_ips.get_mut(fip_id) {
            fip.port_id = port_id.map(str::to_string);
            (fip.fixed_ip_address, fip.router_id) =
                target.map_or((None, None), |(ip, r)| (Some(ip), Some(r)));
            fip.updated = Utc::now();
        }
        Ok(())
    }

    pub(crate) fn delete_network(&mut self, ctx: &Ctx, network_id: &str) -> Result<(), ApiError> {
        self.visible_or_404(ctx, Kind::Network, network_id)?;
        let network = self
            .networks
            .get(network_id)
            .ok_or_else(|| Kind::Network.not_found(network_id))?;
        if !ctx.owns(&network.project_id) {
            return Err(ApiError::neutron_policy("delete_network"));
        }
        if self
            .ports
            .values()
            .any(|p| p.network_id == network_id && p.device_owner != OWNER_DHCP)
        {
            return Err(conflict(
                "NetworkInUse",
                format!(
                    "Unable to complete operation on network {network_id}. There are one or more ports still in \
                     use on the network."
                ),
            ));
        }
        self.ports.retain(|_, p| p.network_id != network_id);
        self.subnets.retain(|_, s| s.network_id != network_id);
        self.networks.remove(network_id);
        Ok(())
    }

    pub(crate) fn delete_subnet(&mut self, ctx: &Ctx, subnet_id: &str) -> Result<(), ApiError> {
        self.visible_or_404(ctx, Kind::Subnet, subnet_id)?;
        let subnet = self
            .subnets
            .get(subnet_id)
            .ok_or_else(|| Kind::Subnet.not_found(subnet_id))?;
        let network_project = self
            .networks
            .get(&subnet.network_id)
            .map(|n| n.project_id.as_str())
            .unwrap_or("");
        if !ctx.owns(&subnet.project_id) && !ctx.owns(network_project) {
            return Err(ApiError::neutron_policy("delete_subnet"));
        }
        let uses = |p: &Port| p.fixed_ips.iter().any(|(s, _)| s == subnet_id);
        if self
            .ports
            .values()
            .any(|p| uses(p) && p.device_owner != OWNER_DHCP)
        {
            return Err(conflict(
                "SubnetInUse",
                format!(
                    "Unable to complete operation on subnet {subnet_id}: One or more ports have an IP allocation \
                     from this subnet."
                ),
            ));
        }
        for port in self.ports.values_mut().filter(|p| p.device_owner == OWNER_DHCP) {
            port.fixed_ips.retain(|(s, _)| s != subnet_id);
        }
        self.ports
            .retain(|_, p| p.device_owner != OWNER_DHCP || !p.fixed_ips.is_empty());
        self.subnets.remove(subnet_id);
        Ok(())
    }

    pub(crate) fn delete_port(&mut self, ctx: &Ctx, port_id: &str) -> Result<(), ApiError> {
        self.visible_or_404(ctx, Kind::Port, port_id)?;
        let port = self
            .ports
            .get(port_id)
            .ok_or_else(|| Kind::Port.not_found(port_id))?;
        let owner = port.device_owner.as_str();
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
        self.remove_port(port_id);
        Ok(())
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

    pub(crate) fn delete_router(&mut self, ctx: &Ctx, router_id: &str) -> Result<(), ApiError> {
        self.visible_or_404(ctx, Kind::Router, router_id)?;
        if self.router_interfaces(router_id).next().is_some() {
            return Err(conflict(
                "RouterInUse",
                format!("Router {router_id} still has ports"),
            ));
        }
        if let Some((_, gateway_port)) = self.routers.get(router_id).and_then(|r| r.gateway.clone()) {
            self.ports.remove(&gateway_port);
        }
        self.routers.remove(router_id);
        Ok(())
    }

    pub(crate) fn delete_floating_ip(&mut self, ctx: &Ctx, fip_id: &str) -> Result<(), ApiError> {
        self.visible_or_404(ctx, Kind::FloatingIp, fip_id)?;
        if let Some(fip) = self.floating_ips.remove(fip_id) {
            self.ports.remove(&fip.own_port_id);
        }
        Ok(())
    }

    pub(crate) fn delete_security_group(&mut self, ctx: &Ctx, group_id: &str) -> Result<(), ApiError> {
        self.visible_or_404(ctx, Kind::SecurityGroup, group_id)?;
        if self
            .security_groups
            .get(group_id)
            .is_some_and(|g| g.name == "default")
            && !ctx.admin
        {
            return Err(conflict(
                "SecurityGroupCannotRemoveDefault",
                "Insufficient rights for removing default security group.",
            ));
        }
        if self
            .ports
            .values()
            .any(|p| p.security_groups.iter().any(|g| g == group_id))
        {
            return Err(conflict(
                "SecurityGroupInUse",
                format!("Security Group {group_id} in use."),
            ));
        }
        self.security_group_rules
            .retain(|_, r| r.security_group_id != group_id && r.remote_group_id.as_deref() != Some(group_id));
        self.security_groups.remove(group_id);
        Ok(())
    }

    pub(crate) fn delete_security_group_rule(&mut self, ctx: &Ctx, rule_id: &str) -> Result<(), ApiError> {
        self.visible_or_404(ctx, Kind::SecurityGroupRule, rule_id)?;
        self.security_group_rules.remove(rule_id);
        Ok(())
    }

    fn neutron_delete(&mut self, ctx: &Ctx, kind: Kind, id: &str) -> Result<(), ApiError> {
        match kind {
            Kind::Network => self.delete_network(ctx, id),
            Kind::Subnet => self.delete_subnet(ctx, id),
            Kind::Port => self.delete_port(ctx, id),
            Kind::Router => self.delete_router(ctx, id),
            Kind::FloatingIp => self.delete_floating_ip(ctx, id),
            Kind::SecurityGroup => self.delete_security_group(ctx, id),
            Kind::SecurityGroupRule => self.delete_security_group_rule(ctx, id),
        }
    }

    fn neutron_create(&mut self, ctx: &Ctx, kind: Kind, body: &Value) -> Result<String, ApiError> {
        let key = kind.singular();
        match kind {
            Kind::Network => self.create_network(ctx, body_of(body, key)?),
            Kind::Subnet => self.create_subnet(ctx, body_of(body, key)?),
            Kind::Port => self.create_port(ctx, body_of(body, key)?),
            Kind::Router => self.create_router(ctx, body_of(body, key)?),
            Kind::FloatingIp => self.create_floating_ip(ctx, body_of(body, key)?),
            Kind::SecurityGroup => self.create_security_group(ctx, body_of(body, key)?),
            Kind::SecurityGroupRule => self.create_security_group_rule(ctx, body_of(body, key)?),
        }
    }

    /// Applies the updatable attributes of a PUT body.
    fn neutron_update(&mut self, ctx: &Ctx, kind: Kind, id: &str, body: &Value) -> Result<(), ApiError> {
        self.visible_or_404(ctx, kind, id)?;
        let changes: Map<String, Value> = body_of(body, kind.singular())?;
        let text = |key: &str| changes.get(key).and_then(Value::as_str).map(str::to_string);
        let now = Utc::now();
        match kind {
            Kind::Network => {
                let network = self.networks.get_mut(id).ok_or_else(|| kind.not_found(id))?;
                if !ctx.owns(&network.project_id) {
                    return Err(ApiError::neutron_policy("update_network"));
                }
                network.name = text("name").unwrap_or_else(|| network.name.clone());
                network.description = text("description").unwrap_or_else(|| network.description.clone());
                if let Some(up) = changes.get("admin_state_up").and_then(Value::as_bool) {
                    network.admin_state_up = up;
                }
                network.updated = now;
            }
            Kind::Subnet => {
                let subnet = self.subnets.get_mut(id).ok_or_else(|| kind.not_found(id))?;
                if !ctx.owns(&subnet.project_id) {
                    return Err(ApiError::neutron_policy("update_subnet"));
                }
                subnet.name = text("name").unwrap_or_else(|| subnet.name.clone());
                subnet.description = text("description").unwrap_or_else(|| subnet.description.clone());
                subnet.updated = now;
            }
            Kind::Port => {
                if let Some(groups) = changes.get("security_groups") {
                    let groups: Vec<String> = serde_json::from_value(groups.clone())
                        .map_err(|e| bad_request(format!("Invalid input for security_groups: {e}")))?;
                    self.check_security_groups(ctx, &groups)?;
                    if let Some(port) = self.ports.get_mut(id) {
                        port.security_groups = groups;
                    }
                }
                let port = self.ports.get_mut(id).ok_or_else(|| kind.not_found(id))?;
                port.name = text("name").unwrap_or_else(|| port.name.clone());
                port.description = text("description").unwrap_or_else(|| port.description.clone());
                port.device_id = text("device_id").unwrap_or_else(|| port.device_id.clone());
                port.device_owner = text("device_owner").unwrap_or_else(|| port.device_owner.clone());
                if let Some(up) = changes.get("admin_state_up").and_then(Value::as_bool) {
                    port.admin_state_up = up;
                }
                port.updated = now;
            }
            Kind::Router => {
                if let Some(gateway) = changes.get("external_gateway_info") {
                    let network_id = gateway
                        .get("network_id")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    self.set_router_gateway(ctx, id, network_id.as_deref())?;
                }
                let router = self.routers.get_mut(id).ok_or_else(|| kind.not_found(id))?;
                router.name = text("name").unwrap_or_else(|| router.name.clone());
                router.description = text("description").unwrap_or_else(|| router.description.clone());
                router.updated = now;
            }
            Kind::FloatingIp => {
                if let Some(port) = changes.get("port_id") {
                    self.associate_floating_ip(ctx, id, port.as_str())?;
                }
                let fip = self.floating_ips.get_mut(id).ok_or_else(|| kind.not_found(id))?;
                fip.description = text("description").unwrap_or_else(|| fip.description.clone());
            }
            Kind::SecurityGroup => {
                let group = self
                    .security_groups
                    .get_mut(id)
                    .ok_or_else(|| kind.not_found(id))?;
                group.name = text("name").unwrap_or_else(|| group.name.clone());
                group.description = text("description").unwrap_or_else(|| group.description.clone());
                group.updated = now;
            }
            Kind::SecurityGroupRule => {
                return Err(bad_request(
                    "Resource security_group_rule does not support updates",
                ));
            }
        }
        Ok(())
    }

    // -- rendering -------------------------------------------------------------------------------

    /// The admin's (full) view of one resource; lists filter on it.
    pub(crate) fn neutron_render(&self, kind: Kind, id: &str) -> Option<Value> {
        match kind {
            Kind::Network => self.networks.get(id).map(|n| self.render_network(n)),
            Kind::Subnet => self.subnets.get(id).map(|s| self.render_subnet(s)),
            Kind::Port => self.ports.get(id).map(render_port),
            Kind::Router => self.routers.get(id).map(|r| self.render_router(r)),
            Kind::FloatingIp => self.floating_ips.get(id).map(|f| self.render_floating_ip(f)),
            Kind::SecurityGroup => self
                .security_groups
                .get(id)
                .map(|g| self.render_security_group(g)),
            Kind::SecurityGroupRule => self.security_group_rules.get(id).map(|r| self.render_rule(r)),
        }
    }

    /// The caller's view of one resource: [`Cloud::neutron_render`] less what policy hides from
    /// members.
    fn neutron_view(&self, ctx: &Ctx, kind: Kind, id: &str) -> Option<Value> {
        self.neutron_render(kind, id)
            .map(|item| caller_view(ctx, kind, item))
    }

    fn is_default_group(&self, group_id: &str) -> bool {
        self.security_groups
            .get(group_id)
            .is_some_and(|g| g.name == "default")
    }

    /// A rule as `/security-group-rules` shows it.
    fn render_rule(&self, r: &SecurityGroupRule) -> Value {
        let mut body = rule_body(r);
        body["belongs_to_default_sg"] = json!(self.is_default_group(&r.security_group_id));
        body
    }

    fn render_subnet(&self, s: &Subnet) -> Value {
        let external = self.networks.get(&s.network_id).is_some_and(|n| n.external);
        let mut body = subnet_body(s);
        body["router:external"] = json!(external);
        body
    }

    fn render_network(&self, n: &Network) -> Value {
        let subnets: Vec<&str> = self
            .subnets
            .values()
            .filter(|s| s.network_id == n.id)
            .map(|s| s.id.as_str())
            .collect();
        let mut body = json!({
            "id": n.id, "name": n.name, "description": n.description,
            "project_id": n.project_id, "tenant_id": n.project_id,
            "status": "ACTIVE", "admin_state_up": n.admin_state_up,
            "shared": n.shared, "router:external": n.external,
            "subnets": subnets, "mtu": 1500,
            "availability_zone_hints": [], "availability_zones": [],
            "ipv4_address_scope": null, "ipv6_address_scope": null,
            "port_security_enabled": true, "qinq": false, "vlan_transparent": false, "tags": n.tags,
            "created_at": iso(&n.created), "updated_at": iso(&n.updated), "revision_number": 1,
        });
        // Only external networks carry `is_default` (auto-allocated topology).
        if n.external {
            body["is_default"] = json!(false);
        }
        body
    }

    fn render_router(&self, r: &NeutronRouter) -> Value {
        let gateway = r.gateway.as_ref().map(|(network_id, port_id)| {
            let fixed: Vec<Value> = self
                .ports
                .get(port_id)
                .map(|p| {
                    p.fixed_ips
                        .iter()
                        .map(|(s, ip)| json!({"subnet_id": s, "ip_address": ip}))
                        .collect()
                })
                .unwrap_or_default();
            json!({"network_id": network_id, "enable_snat": true, "external_fixed_ips": fixed})
        });
        json!({
            "id": r.id, "name": r.name, "description": r.description,
            "project_id": r.project_id, "tenant_id": r.project_id,
            "status": "ACTIVE", "admin_state_up": r.admin_state_up,
            "external_gateway_info": gateway, "routes": [],
            "distributed": false, "ha": false, "flavor_id": null,
            "availability_zone_hints": [], "availability_zones": ["nova"],
            "tags": r.tags, "created_at": iso(&r.created), "updated_at": iso(&r.updated), "revision_number": 3,
        })
    }

    fn render_floating_ip(&self, f: &FloatingIp) -> Value {
        let port_details = f.port_id.as_ref().and_then(|p| self.ports.get(p)).map(|p| {
            json!({
                "name": p.name, "network_id": p.network_id, "mac_address": p.mac_address,
                "admin_state_up": p.admin_state_up, "status": port_status(p),
                "device_id": p.device_id, "device_owner": p.device_owner,
            })
        });
        json!({
            "id": f.id, "description": f.description,
            "project_id": f.project_id, "tenant_id": f.project_id,
            "floating_network_id": f.floating_network_id, "floating_ip_address": f.floating_ip_address,
            "router_id": f.router_id, "port_id": f.port_id, "fixed_ip_address": f.fixed_ip_address,
            "status": if f.port_id.is_some() { "ACTIVE" } else { "DOWN" },
            "port_details": port_details, "port_forwardings": [],
            "dns_domain": "", "dns_name": "", "qos_policy_id": null,
            "tags": f.tags, "created_at": iso(&f.created), "updated_at": iso(&f.updated), "revision_number": 1,
        })
    }

    fn render_security_group(&self, g: &SecurityGroup) -> Value {
        // The rules a group embeds carry `standard_attr_id` and `tags`; Neutron 29 leaves
        // `belongs_to_default_sg` null on the default group's own rules there.
        let belongs_to_default_sg = if g.name == "default" {
            Value::Null
        } else {
            json!(false)
        };
        let rules: Vec<Value> = self
            .security_group_rules
            .values()
            .filter(|r| r.security_group_id == g.id)
            .map(|r| {
                let mut body = rule_body(r);
                body["belongs_to_default_sg"] = belongs_to_default_sg.clone();
                body["standard_attr_id"] = json!(r.standard_attr_id);
                body["tags"] = json!([]);
                body
            })
            .collect();
        json!({
            "id": g.id, "name": g.name, "description": g.description,
            "project_id": g.project_id, "tenant_id": g.project_id,
            "security_group_rules": rules, "stateful": true, "shared": false,
            "tags": g.tags, "created_at": iso(&g.created), "updated_at": iso(&g.updated), "revision_number": 1,
        })
    }
}

fn subnet_contains(cidr: &str, ip: &str) -> bool {
    let (Some((network, prefix)), Ok(ip)) = (Subnet::parse_cidr(cidr), ip.parse::<std::net::IpAddr>()) else {
        return false;
    };
    match (network, ip) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

fn port_status(p: &Port) -> &'static str {
    if p.device_owner.is_empty() {
        "DOWN"
    } else {
        "ACTIVE"
    }
}

/// A subnet's attributes that need nothing but the subnet.
fn subnet_body(s: &Subnet) -> Value {
    let pools: Vec<Value> = match (
        Subnet::host_address(&s.cidr, 2),
        Subnet::host_address(&s.cidr, s.last_host()),
    ) {
        (Some(start), Some(end)) => vec![json!({"start": start, "end": end})],
        _ => Vec::new(),
    };
    json!({
        "id": s.id, "name": s.name, "description": s.description,
        "project_id": s.project_id, "tenant_id": s.project_id,
        "network_id": s.network_id, "cidr": s.cidr, "ip_version": s.ip_version,
        "gateway_ip": s.gateway_ip, "enable_dhcp": s.enable_dhcp, "allocation_pools": pools,
        "host_routes": [], "dns_nameservers": [], "ipv6_ra_mode": null, "ipv6_address_mode": null,
        "subnetpool_id": null, "service_types": [],
        "tags": s.tags, "created_at": iso(&s.created), "updated_at": iso(&s.updated), "revision_number": 0,
    })
}

fn render_port(p: &Port) -> Value {
    let fixed: Vec<Value> = p
        .fixed_ips
        .iter()
        .map(|(s, ip)| json!({"subnet_id": s, "ip_address": ip}))
        .collect();
    json!({
        "id": p.id, "name": p.name, "description": p.description,
        "project_id": p.project_id, "tenant_id": p.project_id,
        "network_id": p.network_id, "mac_address": p.mac_address,
        "admin_state_up": p.admin_state_up, "status": port_status(p),
        "device_id": p.device_id, "device_owner": p.device_owner,
        "fixed_ips": fixed, "allowed_address_pairs": [], "extra_dhcp_opts": [],
        "security_groups": p.security_groups, "port_security_enabled": true,
        "binding:vnic_type": "normal", "binding:host_id": p.binding_host,
        "binding:vif_type": if p.binding_host.is_empty() { "unbound" } else { "ovs" },
        "binding:vif_details": {}, "binding:profile": {},
        "tags": p.tags, "created_at": iso(&p.created), "updated_at": iso(&p.updated), "revision_number": 2,
    })
}

/// Attributes a member may not see (the port binding's details; `binding:vnic_type` stays).
const ADMIN_ONLY_PORT_KEYS: [&str; 4] = [
    "binding:host_id",
    "binding:profile",
    "binding:vif_details",
    "binding:vif_type",
];

/// What the caller may see of a rendered resource: admins everything, members no port binding
/// details.
fn caller_view(ctx: &Ctx, kind: Kind, mut item: Value) -> Value {
    if kind == Kind::Port && !ctx.admin {
        if let Some(map) = item.as_object_mut() {
            for key in ADMIN_ONLY_PORT_KEYS {
                map.remove(key);
            }
        }
    }
    item
}

/// A rule's attributes that need nothing but the rule.
fn rule_body(r: &SecurityGroupRule) -> Value {
    json!({
        "id": r.id, "security_group_id": r.security_group_id,
        "project_id": r.project_id, "tenant_id": r.project_id,
        "direction": r.direction, "ethertype": r.ethertype, "protocol": r.protocol,
        "port_range_min": r.port_range_min, "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix, "remote_group_id": r.remote_group_id,
        "remote_address_group_id": null, "normalized_cidr": r.remote_ip_prefix,
        "description": r.description,
        "created_at": iso(&r.created), "updated_at": iso(&r.updated), "revision_number": 0,
    })
}

// ---------------------------------------------------------------------------------------------
// Listing: filters, fields and pages
// ---------------------------------------------------------------------------------------------

/// Whether a rendered attribute equals a filter value as Neutron compares them.
fn value_matches(field: &Value, wanted: &str) -> bool {
    match field {
        Value::String(s) => s == wanted,
        Value::Bool(b) => match wanted.to_ascii_lowercase().as_str() {
            "true" | "1" => *b,
            "false" | "0" => !*b,
            _ => false,
        },
        Value::Number(n) => n.to_string() == wanted,
        Value::Null => wanted.is_empty() || wanted == "None",
        Value::Array(items) => items.iter().any(|i| value_matches(i, wanted)),
        Value::Object(_) => false,
    }
}

/// `fixed_ips=subnet_id=X` / `fixed_ips=ip_address=Y`.
fn fixed_ips_match(field: &Value, wanted: &str) -> bool {
    let Some((key, value)) = wanted.split_once('=') else {
        return false;
    };
    field.as_array().is_some_and(|ips| {
        ips.iter()
            .any(|ip| ip.get(key).and_then(Value::as_str) == Some(value))
    })
}

fn is_control_param(key: &str) -> bool {
    matches!(
        key,
        "fields" | "limit" | "marker" | "page_reverse" | "sort_key" | "sort_dir"
    ) || listing::is_tag_filter(key)
}

fn item_matches(item: &Value, params: &[(String, String)]) -> bool {
    let tags: Vec<String> = item
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if !listing::tags_match(&tags, params) {
        return false;
    }
    let mut keys: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !is_control_param(k))
        .collect();
    keys.dedup();
    keys.iter().all(|key| {
        let field = item.get(*key).unwrap_or(&Value::Null);
        params.iter().filter(|(k, _)| k == key).any(|(_, wanted)| {
            if *key == "fixed_ips" {
                fixed_ips_match(field, wanted)
            } else {
                value_matches(field, wanted)
            }
        })
    })
}

/// Keeps only the `fields=` attributes (repeated or comma-separated), when any are asked for.
fn project_fields(item: Value, params: &[(String, String)]) -> Value {
    let fields: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "fields")
        .flat_map(|(_, v)| v.split(','))
        .filter(|f| !f.is_empty())
        .collect();
    match item {
        Value::Object(map) if !fields.is_empty() => Value::Object(
            map.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect(),
        ),
        other => other,
    }
}

impl Cloud {
    fn neutron_list(&mut self, url: &str, ctx: &Ctx, kind: Kind, params: &Params) -> Result<Value, ApiError> {
        if let Some((key, _)) = params
            .iter()
            .find(|(k, _)| !is_control_param(k) && !kind.is_filterable(k))
        {
            return Err(ApiError::bad_request(
                Service::Neutron,
                format!("[{key}] is invalid attribute for filtering"),
            ));
        }
        if kind == Kind::SecurityGroup && !ctx.admin {
            self.ensure_default_security_group(&ctx.project_id);
        }
        let items: Vec<Value> = self
            .ids(kind)
            .iter()
            .filter(|id| self.neutron_visible(ctx, kind, id))
            .filter_map(|id| self.neutron_render(kind, id))
            .filter(|item| item_matches(item, params))
            .map(|item| caller_view(ctx, kind, item))
            .collect();
        let limit = listing::limit(params, Service::Neutron)?;
        let marker = listing::param(params, "marker");
        let page = listing::paginate(
            items,
            |v| v.get("id").and_then(Value::as_str).unwrap_or(""),
            limit,
            marker,
        )
        .ok_or_else(|| kind.not_found(marker.unwrap_or("")))?;
        let mut body = Map::new();
        if let (Some(limit), true, Some(last)) = (limit, page.more, page.items.last()) {
            let last_id = last.get("id").and_then(Value::as_str).unwrap_or("");
            let collection = kind.plural().replace('_', "-");
            let href = listing::next_link(url, &format!("{API}/{collection}"), params, limit, last_id);
            body.insert(
                format!("{}_links", kind.plural()),
                json!([{"rel": "next", "href": href}]),
            );
        }
        let items: Vec<Value> = page
            .items
            .into_iter()
            .map(|item| project_fields(item, params))
            .collect();
        body.insert(kind.plural().to_string(), Value::Array(items));
        Ok(Value::Object(body))
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

pub(crate) fn routes(app: Arc<Inner>) -> Router {
    let authenticated = Router::new()
        .route(&format!("{API}/{{collection}}"), get(list).post(create))
        .route(
            &format!("{API}/{{collection}}/{{id}}"),
            get(show).put(update).delete(delete),
        )
        .route(
            &format!("{API}/{{collection}}/{{id}}/{{member}}"),
            get(member_get).put(member_put).delete(member_delete),
        )
        .route(
            &format!("{API}/{{collection}}/{{id}}/tags/{{tag}}"),
            get(tag_get).put(tag_put).delete(tag_delete),
        )
        .route_layer(from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/network", get(versions))
        .route("/network/", get(versions))
        .route(API, get(resources))
        .route(&format!("{API}/"), get(resources))
        .merge(authenticated)
        .with_state(app)
}

async fn versions(State(app): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"versions": [{
        "id": "v2.0", "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{}{API}/", app.url)}],
    }]}))
}

async fn resources(State(app): State<Arc<Inner>>) -> Json<Value> {
    let resources: Vec<Value> = [
        "network",
        "subnet",
        "port",
        "router",
        "floatingip",
        "security_group",
    ]
    .iter()
    .map(|name| {
        let collection = format!("{name}s").replace('_', "-");
        json!({"name": name, "collection": collection,
                   "links": [{"rel": "self", "href": format!("{}{API}/{collection}", app.url)}]})
    })
    .collect();
    Json(json!({"resources": resources}))
}

/// The extensions this simulator implements, as `GET /v2.0/extensions` lists them.
const EXTENSIONS: [(&str, &str); 12] = [
    ("agent", "agent"),
    ("binding", "Port Binding"),
    ("external-net", "Neutron external network"),
    ("extraroute", "Neutron Extra Route"),
    ("project-id", "project_id field enabled"),
    ("router", "Neutron L3 Router"),
    ("security-group", "security-group"),
    ("standard-attr-description", "standard-attr-description"),
    (
        "standard-attr-tag",
        "Tag support for resources with standard attribute: port, subnet, network, ...",
    ),
    ("standard-attr-timestamp", "Resource timestamps"),
    ("pagination", "Pagination support"),
    ("filter-validation", "Filter parameters validation"),
];

fn extension_body(alias: &str, name: &str) -> Value {
    json!({"alias": alias, "name": name, "description": name, "updated": "2019-01-01T00:00:00-00:00", "links": []})
}

fn kind_of(collection: &str) -> Result<Kind, ApiError> {
    Kind::from_collection(collection).ok_or_else(|| ApiError::unknown_path(Service::Neutron))
}

async fn list(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(collection): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    if collection == "extensions" {
        let extensions: Vec<Value> = EXTENSIONS.iter().map(|(a, n)| extension_body(a, n)).collect();
        return Ok(Json(json!({"extensions": extensions})));
    }
    let kind = kind_of(&collection)?;
    let mut cloud = app.cloud();
    cloud.neutron_list(&app.url, &ctx, kind, &params).map(Json)
}

async fn create(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(collection): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let kind = kind_of(&collection)?;
    let body = parse_json(&body)?;
    let mut cloud = app.cloud();
    let id = cloud.neutron_create(&ctx, kind, &body)?;
    let item = cloud.neutron_view(&ctx, kind, &id).unwrap_or(Value::Null);
    Ok((StatusCode::CREATED, Json(json!({ kind.singular(): item }))).into_response())
}

async fn show(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((collection, id)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    if collection == "extensions" {
        return EXTENSIONS
            .iter()
            .find(|(alias, _)| *alias == id)
            .map(|(a, n)| Json(json!({"extension": extension_body(a, n)})))
            .ok_or_else(|| {
                ApiError::neutron(
                    StatusCode::NOT_FOUND,
                    "HTTPNotFound",
                    format!("Extension with alias {id} does not exist"),
                )
            });
    }
    let kind = kind_of(&collection)?;
    let cloud = app.cloud();
    cloud.visible_or_404(&ctx, kind, &id)?;
    let item = cloud
        .neutron_view(&ctx, kind, &id)
        .ok_or_else(|| kind.not_found(&id))?;
    Ok(Json(json!({ kind.singular(): project_fields(item, &params) })))
}

async fn update(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((collection, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let kind = kind_of(&collection)?;
    let body = parse_json(&body)?;
    let mut cloud = app.cloud();
    cloud.neutron_update(&ctx, kind, &id, &body)?;
    let item = cloud
        .neutron_view(&ctx, kind, &id)
        .ok_or_else(|| kind.not_found(&id))?;
    Ok(Json(json!({ kind.singular(): item })))
}

async fn delete(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = kind_of(&collection)?;
    app.cloud().neutron_delete(&ctx, kind, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The resource's tags, after the caller's visibility check.
fn tags_of<'a>(
    cloud: &'a mut Cloud,
    ctx: &Ctx,
    collection: &str,
    id: &str,
) -> Result<&'a mut Vec<String>, ApiError> {
    let kind = kind_of(collection)?;
    if !kind.has_tags() {
        return Err(ApiError::unknown_path(Service::Neutron));
    }
    cloud.visible_or_404(ctx, kind, id)?;
    cloud.tags_mut(kind, id).ok_or_else(|| kind.not_found(id))
}

async fn member_get(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((collection, id, member)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    if member != "tags" {
        return Err(ApiError::unknown_path(Service::Neutron));
    }
    let mut cloud = app.cloud();
    let tags = tags_of(&mut cloud, &ctx, &collection, &id)?;
    Ok(Json(json!({"tags": tags})))
}

async fn member_put(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((collection, id, member)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_json(&body)?;
    let mut cloud = app.cloud();
    match (collection.as_str(), member.as_str()) {
        (_, "tags") => {
            let tags: Vec<String> = body_of(&body, "tags")?;
            let current = tags_of(&mut cloud, &ctx, &collection, &id)?;
            *current = dedup(&tags);
            Ok(Json(json!({"tags": current})))
        }
        ("routers", "add_router_interface" | "remove_router_interface") => {
            let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
            let interface = match (text("subnet_id"), text("port_id")) {
                (Some(_), Some(_)) => {
                    return Err(bad_request(
                        "Bad router request: Cannot specify both subnet-id and port-id.",
                    ))
                }
                (Some(subnet), None) => Interface::Subnet(subnet),
                (None, Some(port)) => Interface::Port(port),
                (None, None) => {
                    return Err(bad_request(
                        "Bad router request: Either subnet_id or port_id must be specified.",
                    ))
                }
            };
            if member == "add_router_interface" {
                cloud.add_router_interface(&ctx, &id, interface).map(Json)
            } else {
                cloud.remove_router_interface(&ctx, &id, interface).map(Json)
            }
        }
        _ => Err(ApiError::unknown_path(Service::Neutron)),
    }
}

async fn member_delete(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((collection, id, member)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    if member != "tags" {
        return Err(ApiError::unknown_path(Service::Neutron));
    }
    let mut cloud = app.cloud();
    tags_of(&mut cloud, &ctx, &collection, &id)?.clear();
    Ok(StatusCode::NO_CONTENT)
}

fn tag_not_found(tag: &str, id: &str) -> ApiError {
    ApiError::neutron(
        StatusCode::NOT_FOUND,
        "TagNotFound",
        format!("Tag {tag} could not be found for resource {id}."),
    )
}

async fn tag_get(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((collection, id, tag)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut cloud = app.cloud();
    if tags_of(&mut cloud, &ctx, &collection, &id)?.contains(&tag) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(tag_not_found(&tag, &id))
    }
}

async fn tag_put(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((collection, id, tag)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut cloud = app.cloud();
    let tags = tags_of(&mut cloud, &ctx, &collection, &id)?;
    if !tags.contains(&tag) {
        tags.push(tag);
    }
    Ok(StatusCode::CREATED)
}

async fn tag_delete(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((collection, id, tag)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut cloud = app.cloud();
    let tags = tags_of(&mut cloud, &ctx, &collection, &id)?;
    let before = tags.len();
    tags.retain(|t| t != &tag);
    if tags.len() == before {
        return Err(tag_not_found(&tag, &id));
    }
    Ok(StatusCode::NO_CONTENT)
}
