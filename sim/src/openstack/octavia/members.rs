//! Members: a backend address and port in a pool (`/lbaas/pools/{pool_id}/members`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_request, common_json, new_common, octavia_mut, operating, required, CommonReq, Object};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{new_id, Cloud, Ctx, LoadBalancing, Member, Pool, Provisioning};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct MemberReq {
    #[serde(flatten)]
    pub common: CommonReq,
    pub address: String,
    pub protocol_port: Option<u16>,
    pub subnet_id: Option<String>,
    pub weight: Option<u32>,
}

impl Object for Member {
    const SINGULAR: &'static str = "member";
    const PLURAL: &'static str = "members";
    const NAME: &'static str = "Member";
    type Create = MemberReq;

    fn table(octavia: &LoadBalancing) -> &BTreeMap<String, Self> {
        &octavia.members
    }

    fn table_mut(octavia: &mut LoadBalancing) -> &mut BTreeMap<String, Self> {
        &mut octavia.members
    }

    fn load_balancer_id(&self, octavia: &LoadBalancing) -> String {
        super::load_balancer_of_pool(octavia, &self.pool_id)
    }

    fn parent(&self) -> Option<&str> {
        Some(&self.pool_id)
    }

    fn render(&self, _octavia: &LoadBalancing) -> Value {
        let c = &self.common;
        let status = match c.provisioning {
            Provisioning::Active => "NO_MONITOR",
            other => operating(other, c.admin_state_up),
        };
        let mut map = common_json(c, status);
        map.remove("description");
        for (key, value) in [
            ("address", json!(self.address)),
            ("protocol_port", json!(self.protocol_port)),
            ("subnet_id", json!(self.subnet_id)),
            ("weight", json!(self.weight)),
            ("backup", json!(false)),
            ("monitor_address", Value::Null),
            ("monitor_port", Value::Null),
        ] {
            map.insert(key.into(), value);
        }
        Value::Object(map)
    }

    fn create(
        cloud: &mut Cloud,
        ctx: &Ctx,
        parent: Option<&str>,
        req: MemberReq,
    ) -> Result<String, ApiError> {
        let project_id = req.common.owner(ctx)?;
        if req.address.parse::<std::net::IpAddr>().is_err() {
            return Err(bad_request(format!(
                "Invalid input for field/attribute address. Value: '{}'. Value should be IPv4 or IPv6 format",
                req.address
            )));
        }
        let port = required("protocol_port", req.protocol_port)?;
        if let Some(subnet) = &req.subnet_id {
            if !cloud.subnets.contains_key(subnet) {
                return Err(bad_request(format!("Subnet {subnet} not found.")));
            }
        }
        let now = cloud.clock.now();
        let octavia = octavia_mut(cloud)?;
        let pool_id = parent.unwrap_or_default().to_string();
        let lb_id = super::owned::<Pool>(octavia, ctx, &pool_id)?
            .loadbalancer_id
            .clone();
        octavia.mutable_load_balancer(&lb_id)?;
        let id = new_id();
        let member = Member {
            common: new_common(&id, &req.common, &project_id),
            pool_id,
            address: req.address,
            protocol_port: port,
            subnet_id: req.subnet_id,
            weight: req.weight.unwrap_or(1),
        };
        octavia.members.insert(id.clone(), member);
        octavia.start_update(&lb_id, now);
        Ok(id)
    }
}
