//! Load balancers: created `PENDING_CREATE` with the VIP port Octavia makes in Neutron
//! (`device_owner` `Octavia`, `device_id` `lb-<id>`, named `octavia-lb-<id>`), `ACTIVE` once the
//! provisioning delay passed; deleted only without children or with `cascade=true`, which takes the
//! listeners, pools, members, health monitors and the VIP port along when the delete completes.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{bad_request, common_json, conflict, ids, new_common, operating, CommonReq, Object};
use crate::openstack::errors::ApiError;
use crate::openstack::listing::{self, Params};
use crate::openstack::neutron::{FixedIpReq, PortReq, Standard};
use crate::openstack::state::{
    new_id, Cloud, Ctx, HasCommon, LoadBalancer, LoadBalancing, Port, Provisioning, SecurityGroup,
};

/// The `device_owner` of the VIP ports Octavia makes (and removes).
pub(crate) const OWNER_OCTAVIA: &str = "Octavia";

/// What a load balancer is created with.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct LoadBalancerReq {
    #[serde(flatten)]
    pub common: CommonReq,
    pub vip_subnet_id: Option<String>,
    pub vip_network_id: Option<String>,
    pub vip_port_id: Option<String>,
    pub vip_address: Option<String>,
    pub vip_sg_ids: Vec<String>,
    pub provider: Option<String>,
    pub listeners: Option<Vec<Value>>,
}

impl LoadBalancerReq {
    /// A load balancer on the subnet, in the caller's project.
    pub fn new(name: &str, vip_subnet_id: &str, vip_sg_ids: Vec<String>, tags: Vec<String>) -> Self {
        LoadBalancerReq {
            common: CommonReq {
                name: name.into(),
                tags,
                ..CommonReq::default()
            },
            vip_subnet_id: Some(vip_subnet_id.into()),
            vip_sg_ids,
            ..LoadBalancerReq::default()
        }
    }
}

/// 409 for a change to a load balancer in a `PENDING_*` state.
pub(super) fn pending_state(lb: &LoadBalancer) -> ApiError {
    conflict(format!(
        "Invalid state {} of loadbalancer resource {}",
        lb.common.provisioning.as_str(),
        lb.common.id
    ))
}

/// Octavia reads booleans in the query with oslo's `bool_from_string`.
fn truthy(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "1" | "on" | "yes" | "y" | "t"
    )
}

impl Object for LoadBalancer {
    const SINGULAR: &'static str = "loadbalancer";
    const PLURAL: &'static str = "loadbalancers";
    const NAME: &'static str = "Load Balancer";
    type Create = LoadBalancerReq;

    fn table(octavia: &LoadBalancing) -> &std::collections::BTreeMap<String, Self> {
        &octavia.load_balancers
    }

    fn table_mut(octavia: &mut LoadBalancing) -> &mut std::collections::BTreeMap<String, Self> {
        &mut octavia.load_balancers
    }

    fn load_balancer_id(&self, _octavia: &LoadBalancing) -> String {
        self.common.id.clone()
    }

    fn render(&self, octavia: &LoadBalancing) -> Value {
        let c = &self.common;
        let mut map = common_json(c, operating(c.provisioning, c.admin_state_up));
        let listeners = octavia
            .listeners
            .values()
            .filter(|l| l.loadbalancer_id == c.id)
            .map(|l| &l.common.id);
        let pools = octavia
            .pools
            .values()
            .filter(|p| p.loadbalancer_id == c.id)
            .map(|p| &p.common.id);
        for (key, value) in [
            ("vip_subnet_id", json!(self.vip_subnet_id)),
            ("vip_network_id", json!(self.vip_network_id)),
            ("vip_port_id", json!(self.vip_port_id)),
            ("vip_address", json!(self.vip_address)),
            ("vip_sg_ids", json!(self.vip_sg_ids)),
            ("vip_qos_policy_id", Value::Null),
            ("vip_vnic_type", json!("normal")),
            ("additional_vips", json!([])),
            ("provider", json!("amphora")),
            ("flavor_id", Value::Null),
            ("availability_zone", Value::Null),
            ("listeners", ids(listeners)),
            ("pools", ids(pools)),
        ] {
            map.insert(key.into(), value);
        }
        Value::Object(map)
    }

    fn create(
        cloud: &mut Cloud,
        ctx: &Ctx,
        _parent: Option<&str>,
        req: LoadBalancerReq,
    ) -> Result<String, ApiError> {
        // Before the VIP port is made in Neutron: a cloud without Octavia is left as it was.
        super::octavia(cloud)?;
        let project_id = req.common.owner(ctx)?;
        if req.listeners.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(bad_request(
                "A fully populated load balancer (listeners in the create body) is not simulated",
            ));
        }
        if req.vip_port_id.is_some() {
            return Err(bad_request(
                "vip_port_id is not simulated: give vip_subnet_id or vip_network_id",
            ));
        }
        let subnet_id = match (&req.vip_subnet_id, &req.vip_network_id) {
            (Some(subnet), _) => subnet.clone(),
            (None, Some(network)) => cloud
                .subnets
                .values()
                .filter(|s| &s.network_id == network)
                .min_by_key(|s| (s.ip_version, s.created))
                .map(|s| s.id.clone())
                .ok_or_else(|| bad_request(format!("Network {network} not found.")))?,
            (None, None) => return Err(bad_request(
                "Validation failure: VIP must contain one of: vip_port_id, vip_network_id, vip_subnet_id.",
            )),
        };
        let network_id = match cloud.subnets.get(&subnet_id) {
            Some(subnet) if cloud.visible::<crate::openstack::state::Network>(ctx, &subnet.network_id) => {
                subnet.network_id.clone()
            }
            _ => return Err(bad_request(format!("Subnet {subnet_id} not found."))),
        };
        if req.vip_network_id.as_ref().is_some_and(|n| n != &network_id) {
            return Err(bad_request(format!(
                "Validation failure: Subnet {subnet_id} is not in network {}.",
                req.vip_network_id.as_deref().unwrap_or_default()
            )));
        }
        if let Some(missing) = req
            .vip_sg_ids
            .iter()
            .find(|sg| !cloud.visible::<SecurityGroup>(ctx, sg))
        {
            return Err(bad_request(format!("Security Group {missing} not found.")));
        }
        let id = new_id();
        // Octavia's service user makes the VIP port in the load balancer's project.
        let port = PortReq {
            standard: Standard {
                name: format!("octavia-lb-{id}"),
                project_id: Some(project_id.clone()),
                ..Standard::default()
            },
            network_id: network_id.clone(),
            fixed_ips: Some(vec![FixedIpReq {
                subnet_id: Some(subnet_id.clone()),
                ip_address: req.vip_address.clone(),
            }]),
            device_id: format!("lb-{id}"),
            device_owner: OWNER_OCTAVIA.into(),
            security_groups: Some(req.vip_sg_ids.clone()),
            admin_state_up: Some(false),
        };
        let port_id = cloud.create::<Port>(&Ctx::admin(), port).map_err(|error| {
            bad_request(format!(
                "Error creating neutron port on network {network_id}: {}",
                error.message
            ))
        })?;
        let vip_address = cloud
            .ports
            .get(&port_id)
            .and_then(|p| p.fixed_ips.first())
            .map(|(_, ip)| ip.clone())
            .unwrap_or_default();
        let now = cloud.clock.now();
        let octavia = super::octavia_mut(cloud)?;
        let lb = LoadBalancer {
            common: new_common(&id, &req.common, &project_id),
            vip_subnet_id: subnet_id,
            vip_network_id: network_id,
            vip_port_id: port_id,
            vip_address,
            vip_sg_ids: req.vip_sg_ids,
            pending_until: Some(now + octavia.timings.provision_delay),
            fail_pending: false,
        };
        octavia.load_balancers.insert(id.clone(), lb);
        Ok(id)
    }

    /// Children stop a delete without `cascade=true` (checked first, as Octavia does); a pending
    /// load balancer cannot be deleted; else everything goes `PENDING_DELETE` until the delay.
    fn delete(cloud: &mut Cloud, id: &str, params: &Params) -> Result<(), ApiError> {
        let cascade = listing::param(params, "cascade").is_some_and(truthy);
        let now = cloud.clock.now();
        let octavia = super::octavia_mut(cloud)?;
        let has_children = octavia.listeners.values().any(|l| l.loadbalancer_id == id)
            || octavia.pools.values().any(|p| p.loadbalancer_id == id);
        if has_children && !cascade {
            return Err(bad_request(format!(
                "Validation failure: Cannot delete Load Balancer {id} - it has children"
            )));
        }
        let delay = octavia.timings.delete_delay;
        let lb = octavia
            .load_balancers
            .get_mut(id)
            .ok_or_else(|| LoadBalancer::not_found(id))?;
        if lb.common.provisioning.is_pending() {
            return Err(pending_state(lb));
        }
        lb.common.provisioning = Provisioning::PendingDelete;
        lb.common.updated = Some(Utc::now());
        lb.pending_until = Some(now + delay);
        octavia.mark_children_deleted(id);
        Ok(())
    }
}

impl LoadBalancing {
    /// Everything under the load balancer `id` goes `PENDING_DELETE`.
    fn mark_children_deleted(&mut self, id: &str) {
        let pools: Vec<String> = self
            .pools
            .values()
            .filter(|p| p.loadbalancer_id == id)
            .map(|p| p.common.id.clone())
            .collect();
        let pending = |common: &mut crate::openstack::state::OctaviaCommon| {
            common.provisioning = Provisioning::PendingDelete;
        };
        self.listeners
            .values_mut()
            .filter(|l| l.loadbalancer_id == id)
            .for_each(|l| pending(&mut l.common));
        self.pools
            .values_mut()
            .filter(|p| p.loadbalancer_id == id)
            .for_each(|p| pending(&mut p.common));
        self.members
            .values_mut()
            .filter(|m| pools.contains(&m.pool_id))
            .for_each(|m| pending(&mut m.common));
        self.health_monitors
            .values_mut()
            .filter(|h| pools.contains(&h.pool_id))
            .for_each(|h| pending(&mut h.common));
    }

    /// Removes what is `PENDING_DELETE` under the load balancer `id` (a pool takes its members and
    /// health monitor along), and finishes what is being created or updated there.
    fn settle_children(&mut self, id: &str, outcome: Provisioning) {
        let gone_pools: Vec<String> = self
            .pools
            .values()
            .filter(|p| p.loadbalancer_id == id && p.common.provisioning == Provisioning::PendingDelete)
            .map(|p| p.common.id.clone())
            .collect();
        let lb_pools: Vec<String> = self
            .pools
            .values()
            .filter(|p| p.loadbalancer_id == id)
            .map(|p| p.common.id.clone())
            .collect();
        let deleted = |common: &crate::openstack::state::OctaviaCommon| {
            common.provisioning == Provisioning::PendingDelete
        };
        self.listeners
            .retain(|_, l| l.loadbalancer_id != id || !deleted(&l.common));
        self.pools.retain(|_, p| !gone_pools.contains(&p.common.id));
        self.members.retain(|_, m| {
            !(gone_pools.contains(&m.pool_id) || (lb_pools.contains(&m.pool_id) && deleted(&m.common)))
        });
        self.health_monitors.retain(|_, h| {
            !(gone_pools.contains(&h.pool_id) || (lb_pools.contains(&h.pool_id) && deleted(&h.common)))
        });
        let settle = |common: &mut crate::openstack::state::OctaviaCommon| {
            if common.provisioning.is_pending() {
                common.provisioning = outcome;
            }
        };
        self.listeners
            .values_mut()
            .filter(|l| l.loadbalancer_id == id)
            .for_each(|l| settle(l.common_mut()));
        for pool in self.pools.values_mut().filter(|p| p.loadbalancer_id == id) {
            if pool
                .listener_id
                .as_ref()
                .is_some_and(|l| !self.listeners.contains_key(l))
            {
                pool.listener_id = None;
            }
            settle(pool.common_mut());
        }
        for listener in self.listeners.values_mut() {
            if listener
                .default_pool_id
                .as_ref()
                .is_some_and(|p| !self.pools.contains_key(p))
            {
                listener.default_pool_id = None;
            }
        }
        self.members
            .values_mut()
            .filter(|m| lb_pools.contains(&m.pool_id))
            .for_each(|m| settle(m.common_mut()));
        self.health_monitors
            .values_mut()
            .filter(|h| lb_pools.contains(&h.pool_id))
            .for_each(|h| settle(h.common_mut()));
    }
}

impl Cloud {
    /// Moves every load balancer's pending operation on as far as `now`: a create or update ends
    /// `ACTIVE` (or `ERROR`, when the simulator was told to fail it), with whatever is being made
    /// or removed under it; a delete ends with the load balancer, its children and its VIP port
    /// gone.
    pub(crate) fn reap_load_balancers(&mut self, now: Instant) {
        let Some(octavia) = self.load_balancing.as_mut() else {
            return;
        };
        let due: Vec<String> = octavia
            .load_balancers
            .values()
            .filter(|lb| lb.pending_until.is_some_and(|at| at <= now))
            .map(|lb| lb.common.id.clone())
            .collect();
        let mut vip_ports = Vec::new();
        for id in due {
            let Some(lb) = octavia.load_balancers.get_mut(&id) else {
                continue;
            };
            lb.pending_until = None;
            if lb.common.provisioning == Provisioning::PendingDelete {
                vip_ports.push(lb.vip_port_id.clone());
                octavia.load_balancers.remove(&id);
                octavia.settle_children(&id, Provisioning::Error);
                continue;
            }
            let outcome = if std::mem::take(&mut lb.fail_pending) {
                Provisioning::Error
            } else {
                Provisioning::Active
            };
            lb.common.provisioning = outcome;
            octavia.settle_children(&id, outcome);
        }
        for port_id in vip_ports {
            if self
                .ports
                .get(&port_id)
                .is_some_and(|p| p.device_owner == OWNER_OCTAVIA)
            {
                self.remove_port(&port_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cascade_takes_octavias_yes_words() {
        assert!(["true", "True", "1", "yes", "on"].iter().all(|v| truthy(v)));
        assert!(["false", "0", "no", ""].iter().all(|v| !truthy(v)));
    }
}
