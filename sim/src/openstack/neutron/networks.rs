//! Networks: who sees them (their project, and everyone for shared and external ones), the policy
//! that keeps members off shared and external networks, and the 409 for a network with ports.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{conflict, Changes, Resource, Standard};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{iso, Cloud, Ctx, Network, OWNER_DHCP};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NetworkReq {
    #[serde(flatten)]
    pub standard: Standard,
    pub shared: bool,
    #[serde(rename = "router:external")]
    pub external: bool,
    pub admin_state_up: Option<bool>,
}

impl NetworkReq {
    /// A private network of the caller's project.
    pub fn named(name: &str, tags: Vec<String>) -> Self {
        NetworkReq {
            standard: Standard::named(name, tags),
            ..NetworkReq::default()
        }
    }
}

impl Network {
    /// Members see their own networks and every shared or external one.
    pub(crate) fn visible_to(&self, ctx: &Ctx) -> bool {
        ctx.owns(&self.project_id) || self.shared || self.external
    }
}

impl Cloud {
    /// Whether the network exists and passes `test` (what its subnets' and ports' rules ask of it).
    pub(super) fn network_is(&self, network_id: &str, test: impl FnOnce(&Network) -> bool) -> bool {
        self.networks.get(network_id).is_some_and(test)
    }
}

impl Resource for Network {
    const NOT_FOUND: (&'static str, &'static str) = ("NetworkNotFound", "Network {id} could not be found.");
    const SINGULAR: &'static str = "network";
    const FILTERS: &'static str = "name status admin_state_up shared router:external mtu is_default";
    type Create = NetworkReq;

    fn visible(&self, _cloud: &Cloud, ctx: &Ctx) -> bool {
        self.visible_to(ctx)
    }

    fn render(&self, cloud: &Cloud) -> Value {
        let subnets: Vec<&str> = cloud
            .subnets
            .values()
            .filter(|s| s.network_id == self.id)
            .map(|s| s.id.as_str())
            .collect();
        let mut body = json!({
            "id": self.id, "name": self.name, "description": self.description,
            "project_id": self.project_id, "tenant_id": self.project_id,
            "status": "ACTIVE", "admin_state_up": self.admin_state_up,
            "shared": self.shared, "router:external": self.external,
            "subnets": subnets, "mtu": 1500,
            "availability_zone_hints": [], "availability_zones": [],
            "ipv4_address_scope": null, "ipv6_address_scope": null,
            "port_security_enabled": true, "qinq": false, "vlan_transparent": false, "tags": self.tags,
            "created_at": iso(&self.created), "updated_at": iso(&self.updated), "revision_number": 1,
        });
        // Only external networks carry `is_default` (auto-allocated topology).
        if self.external {
            body["is_default"] = json!(false);
        }
        body
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, req: NetworkReq) -> Result<String, ApiError> {
        let project_id = req.standard.owner(ctx)?;
        if (req.shared || req.external) && !ctx.admin {
            return Err(ApiError::neutron_policy("create_network:shared"));
        }
        cloud.ensure_default_security_group(&project_id);
        let tags = req.standard.tags();
        Ok(cloud.insert_new(|id, now| Network {
            id,
            name: req.standard.name,
            description: req.standard.description,
            project_id,
            shared: req.shared,
            external: req.external,
            admin_state_up: req.admin_state_up.unwrap_or(true),
            tags,
            created: now,
            updated: now,
        }))
    }

    fn update(cloud: &mut Cloud, ctx: &Ctx, id: &str, changes: &Changes) -> Result<(), ApiError> {
        let network = cloud.record_mut::<Network>(id)?;
        if !ctx.owns(&network.project_id) {
            return Err(ApiError::neutron_policy("update_network"));
        }
        changes.set_bool("admin_state_up", &mut network.admin_state_up);
        changes.rename(&mut network.name, &mut network.description, &mut network.updated);
        Ok(())
    }

    /// Deletes the network with its subnets and DHCP ports; any other port keeps it in use.
    fn delete(cloud: &mut Cloud, ctx: &Ctx, network_id: &str) -> Result<(), ApiError> {
        cloud.visible_or_404::<Network>(ctx, network_id)?;
        let network = cloud.record::<Network>(network_id)?;
        if !ctx.owns(&network.project_id) {
            return Err(ApiError::neutron_policy("delete_network"));
        }
        if cloud
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
        cloud.ports.retain(|_, p| p.network_id != network_id);
        cloud.subnets.retain(|_, s| s.network_id != network_id);
        cloud.networks.remove(network_id);
        Ok(())
    }
}

impl Cloud {}
