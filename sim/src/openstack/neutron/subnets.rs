//! Subnets and the addresses allocated on them: gateways, the next free address, the DHCP port a DHCP
//! agent adds, and the 409 for a subnet with allocations.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{bad_request, conflict, Changes, Resource, Standard};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{iso, new_id, Cloud, Ctx, Network, Port, Subnet, OWNER_DHCP};

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SubnetReq {
    #[serde(flatten)]
    pub standard: Standard,
    pub network_id: String,
    pub cidr: Option<String>,
    pub ip_version: Option<u8>,
    #[serde(deserialize_with = "explicit")]
    pub gateway_ip: Option<Option<String>>,
    pub enable_dhcp: Option<bool>,
}

impl SubnetReq {
    /// A subnet of `cidr` with DHCP on and its gateway at `.1`.
    pub fn new(network_id: &str, name: &str, cidr: &str, tags: Vec<String>) -> Self {
        SubnetReq {
            standard: Standard::named(name, tags),
            network_id: network_id.into(),
            cidr: Some(cidr.into()),
            ..SubnetReq::default()
        }
    }
}

impl Resource for Subnet {
    const NOT_FOUND: (&'static str, &'static str) = ("SubnetNotFound", "Subnet {id} could not be found.");
    const SINGULAR: &'static str = "subnet";
    const FILTERS: &'static str = "name network_id cidr ip_version gateway_ip enable_dhcp subnetpool_id";
    type Create = SubnetReq;

    /// Members also see the subnets of the networks they see (shared and external ones).
    fn visible(&self, cloud: &Cloud, ctx: &Ctx) -> bool {
        ctx.owns(&self.project_id) || cloud.network_is(&self.network_id, |n| n.visible_to(ctx))
    }

    fn render(&self, cloud: &Cloud) -> Value {
        let pools: Vec<Value> = match (
            Subnet::host_address(&self.cidr, 2),
            Subnet::host_address(&self.cidr, self.last_host()),
        ) {
            (Some(start), Some(end)) => vec![json!({"start": start, "end": end})],
            _ => Vec::new(),
        };
        let external = cloud.networks.get(&self.network_id).is_some_and(|n| n.external);
        json!({
            "id": self.id, "name": self.name, "description": self.description,
            "project_id": self.project_id, "tenant_id": self.project_id,
            "network_id": self.network_id, "cidr": self.cidr, "ip_version": self.ip_version,
            "gateway_ip": self.gateway_ip, "enable_dhcp": self.enable_dhcp, "allocation_pools": pools,
            "host_routes": [], "dns_nameservers": [], "ipv6_ra_mode": null, "ipv6_address_mode": null,
            "subnetpool_id": null, "service_types": [], "router:external": external,
            "tags": self.tags, "created_at": iso(&self.created), "updated_at": iso(&self.updated),
            "revision_number": 0,
        })
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, req: SubnetReq) -> Result<String, ApiError> {
        cloud.visible_or_404::<Network>(ctx, &req.network_id)?;
        let network_project = cloud.record::<Network>(&req.network_id)?.project_id.clone();
        if !ctx.owns(&network_project) {
            return Err(ApiError::neutron_policy("create_subnet"));
        }
        let project_id = req.standard.owner(ctx)?;
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
        let enable_dhcp = req.enable_dhcp.unwrap_or(true);
        let network_id = req.network_id.clone();
        let tags = req.standard.tags();
        let id = cloud.insert_new(|id, now| Subnet {
            id,
            name: req.standard.name,
            description: req.standard.description,
            project_id,
            network_id: req.network_id,
            cidr,
            ip_version,
            next_host: if gateway_ip.is_some() { 2 } else { 1 },
            gateway_ip,
            enable_dhcp,
            tags,
            created: now,
            updated: now,
        });
        if enable_dhcp && cloud.dhcp_agent {
            cloud.add_dhcp_address(&network_id, &id, &network_project)?;
        }
        Ok(id)
    }

    fn update(cloud: &mut Cloud, ctx: &Ctx, id: &str, changes: &Changes) -> Result<(), ApiError> {
        let subnet = cloud.record_mut::<Subnet>(id)?;
        if !ctx.owns(&subnet.project_id) {
            return Err(ApiError::neutron_policy("update_subnet"));
        }
        changes.rename(&mut subnet.name, &mut subnet.description, &mut subnet.updated);
        Ok(())
    }

    /// Deletes the subnet, taking its address off the network's DHCP port; any other allocation keeps
    /// it in use.
    fn delete(cloud: &mut Cloud, ctx: &Ctx, subnet_id: &str) -> Result<(), ApiError> {
        cloud.visible_or_404::<Subnet>(ctx, subnet_id)?;
        let subnet = cloud.record::<Subnet>(subnet_id)?;
        let owns_network = cloud.network_is(&subnet.network_id, |n| ctx.owns(&n.project_id));
        if !ctx.owns(&subnet.project_id) && !owns_network {
            return Err(ApiError::neutron_policy("delete_subnet"));
        }
        let uses = |p: &Port| p.fixed_ips.iter().any(|(s, _)| s == subnet_id);
        if cloud
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
        for port in cloud.ports.values_mut().filter(|p| p.device_owner == OWNER_DHCP) {
            port.fixed_ips.retain(|(s, _)| s != subnet_id);
        }
        cloud
            .ports
            .retain(|_, p| p.device_owner != OWNER_DHCP || !p.fixed_ips.is_empty());
        cloud.subnets.remove(subnet_id);
        Ok(())
    }
}

impl Cloud {
    /// Gives the network's DHCP port an address on a new DHCP subnet, creating the port (owned by the
    /// network's project, as the DHCP agent does) when it is the network's first. Only with a DHCP
    /// agent ([`crate::openstack::SimConfig::dhcp_agent`]): without one Neutron makes no DHCP port.
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

    fn ip_in_use(&self, subnet_id: &str, ip: &str) -> bool {
        self.ports
            .values()
            .any(|p| p.fixed_ips.iter().any(|(s, a)| s == subnet_id && a == ip))
    }

    /// An address on the subnet: `wanted` if it is free, else the next free one.
    pub(super) fn allocate_ip(&mut self, subnet_id: &str, wanted: Option<&str>) -> Result<String, ApiError> {
        let subnet = self.record::<Subnet>(subnet_id)?;
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

    /// The network's first subnet, IPv4 before IPv6, older before newer: where Neutron allocates an
    /// address when none is asked for.
    pub(super) fn first_subnet(&self, network_id: &str) -> Option<&Subnet> {
        let mut subnets: Vec<&Subnet> = self
            .subnets
            .values()
            .filter(|s| s.network_id == network_id)
            .collect();
        subnets.sort_by_key(|s| (s.ip_version, s.created));
        subnets.first().copied()
    }
}

/// Whether `ip` lies in `cidr`.
pub(super) fn subnet_contains(cidr: &str, ip: &str) -> bool {
    let (Some((network, prefix)), Ok(ip)) = (Subnet::parse_cidr(cidr), ip.parse::<IpAddr>()) else {
        return false;
    };
    match (network, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}
