//! Floating IPs: an address (and the port holding it) on an external network, associated with a port
//! only through a router joining the port's subnet to that network.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_request, conflict, Changes, Resource, Standard};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{iso, new_id, Cloud, Ctx, FloatingIp, Port, OWNER_FLOATING_IP};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct FloatingIpReq {
    #[serde(flatten)]
    pub standard: Standard,
    pub floating_network_id: String,
    pub port_id: Option<String>,
}

impl FloatingIpReq {
    /// An address on the external network, associated with `port_id` when given.
    pub fn new(floating_network_id: &str, port_id: Option<&str>, tags: Vec<String>) -> Self {
        FloatingIpReq {
            standard: Standard::named("", tags),
            floating_network_id: floating_network_id.into(),
            port_id: port_id.map(str::to_string),
        }
    }
}

impl Resource for FloatingIp {
    const NOT_FOUND: (&'static str, &'static str) =
        ("FloatingIPNotFound", "Floating IP {id} could not be found");
    const SINGULAR: &'static str = "floatingip";
    const FILTERS: &'static str =
        "floating_network_id floating_ip_address router_id port_id fixed_ip_address status";
    type Create = FloatingIpReq;

    fn render(&self, cloud: &Cloud) -> Value {
        let port_details = self.port_id.as_ref().and_then(|p| cloud.ports.get(p)).map(|p| {
            json!({
                "name": p.name, "network_id": p.network_id, "mac_address": p.mac_address,
                "admin_state_up": p.admin_state_up, "status": p.status(),
                "device_id": p.device_id, "device_owner": p.device_owner,
            })
        });
        json!({
            "id": self.id, "description": self.description,
            "project_id": self.project_id, "tenant_id": self.project_id,
            "floating_network_id": self.floating_network_id, "floating_ip_address": self.floating_ip_address,
            "router_id": self.router_id, "port_id": self.port_id, "fixed_ip_address": self.fixed_ip_address,
            "status": if self.port_id.is_some() { "ACTIVE" } else { "DOWN" },
            "port_details": port_details, "port_forwardings": [],
            "dns_domain": "", "dns_name": "", "qos_policy_id": null,
            "tags": self.tags, "created_at": iso(&self.created), "updated_at": iso(&self.updated),
            "revision_number": 1,
        })
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, req: FloatingIpReq) -> Result<String, ApiError> {
        let project_id = req.standard.owner(ctx)?;
        match cloud.networks.get(&req.floating_network_id) {
            Some(network) if network.external => {}
            Some(_) => {
                return Err(bad_request(format!(
                    "Bad floatingip request: Network {} is not a valid external network.",
                    req.floating_network_id
                )))
            }
            None => {
                return Err(<crate::openstack::state::Network as Resource>::not_found(
                    &req.floating_network_id,
                ))
            }
        }
        let target = match &req.port_id {
            Some(port_id) => Some(cloud.floating_ip_target(ctx, None, &req.floating_network_id, port_id)?),
            None => None,
        };
        let subnet_id = cloud
            .first_subnet(&req.floating_network_id)
            .map(|s| s.id.clone())
            .ok_or_else(|| {
                conflict(
                    "IpAddressGenerationFailure",
                    format!(
                        "No more IP addresses available on network {}.",
                        req.floating_network_id
                    ),
                )
            })?;
        let address = cloud.allocate_ip(&subnet_id, None)?;
        let own_port_id = new_id();
        let mut own_port = cloud.new_port(
            &own_port_id,
            &req.floating_network_id,
            "",
            vec![(subnet_id, address.clone())],
        );
        own_port.device_owner = OWNER_FLOATING_IP.into();
        let (fixed_ip_address, router_id) =
            target.map_or((None, None), |(ip, router)| (Some(ip), Some(router)));
        let tags = req.standard.tags();
        let id = cloud.insert_new(|id, now| FloatingIp {
            id,
            description: req.standard.description,
            project_id,
            floating_network_id: req.floating_network_id,
            floating_ip_address: address,
            own_port_id: own_port_id.clone(),
            port_id: req.port_id,
            fixed_ip_address,
            router_id,
            tags,
            created: now,
            updated: now,
        });
        own_port.device_id.clone_from(&id);
        cloud.ports.insert(own_port_id, own_port);
        Ok(id)
    }

    fn update(cloud: &mut Cloud, ctx: &Ctx, id: &str, changes: &Changes) -> Result<(), ApiError> {
        if let Some(port) = changes.get("port_id") {
            cloud.associate_floating_ip(ctx, id, port.as_str())?;
        }
        let fip = cloud.record_mut::<FloatingIp>(id)?;
        changes.set_text("description", &mut fip.description);
        Ok(())
    }

    /// Releases the address with the port that held it.
    fn delete(cloud: &mut Cloud, ctx: &Ctx, id: &str) -> Result<(), ApiError> {
        cloud.visible_or_404::<FloatingIp>(ctx, id)?;
        if let Some(fip) = cloud.floating_ips.remove(id) {
            cloud.ports.remove(&fip.own_port_id);
        }
        Ok(())
    }
}

impl Cloud {
    /// Where a floating IP on `floating_network_id` for `port_id` would be routed: the port's fixed
    /// address and the router joining its subnet to the external network.
    fn floating_ip_target(
        &self,
        ctx: &Ctx,
        fip_id: Option<&str>,
        floating_network_id: &str,
        port_id: &str,
    ) -> Result<(String, String), ApiError> {
        self.visible_or_404::<Port>(ctx, port_id)?;
        let port = self.record::<Port>(port_id)?;
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
            None => Err(ApiError::neutron_not_found(
                "ExternalGatewayForFloatingIPNotFound",
                format!(
                    "External network {floating_network_id} is not reachable from subnet {subnet_id}.  Therefore, \
                     cannot associate Port {port_id} with a Floating IP."
                ),
            )),
        }
    }

    /// Associates the floating IP with a port (`Some`) or disassociates it (`None`).
    pub(crate) fn associate_floating_ip(
        &mut self,
        ctx: &Ctx,
        fip_id: &str,
        port_id: Option<&str>,
    ) -> Result<(), ApiError> {
        self.visible_or_404::<FloatingIp>(ctx, fip_id)?;
        let network_id = self.record::<FloatingIp>(fip_id)?.floating_network_id.clone();
        let target = match port_id {
            Some(port_id) => Some(self.floating_ip_target(ctx, Some(fip_id), &network_id, port_id)?),
            None => None,
        };
        let fip = self.record_mut::<FloatingIp>(fip_id)?;
        fip.port_id = port_id.map(str::to_string);
        (fip.fixed_ip_address, fip.router_id) = target.map_or((None, None), |(ip, r)| (Some(ip), Some(r)));
        fip.updated = Utc::now();
        Ok(())
    }
}
