//! Listeners: a protocol and port on a load balancer, with an optional default pool.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    common_json, conflict, ids, new_common, octavia_mut, one_of, operating, required, CommonReq, Object,
};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{new_id, Cloud, Ctx, Listener, LoadBalancer, LoadBalancing};

/// The protocols a listener takes.
const PROTOCOLS: [&str; 7] = [
    "HTTP",
    "HTTPS",
    "TCP",
    "UDP",
    "TERMINATED_HTTPS",
    "SCTP",
    "PROMETHEUS",
];

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ListenerReq {
    #[serde(flatten)]
    pub common: CommonReq,
    pub loadbalancer_id: String,
    pub protocol: String,
    pub protocol_port: Option<u16>,
    pub default_pool_id: Option<String>,
}

impl Object for Listener {
    const SINGULAR: &'static str = "listener";
    const PLURAL: &'static str = "listeners";
    const NAME: &'static str = "Listener";
    type Create = ListenerReq;

    fn table(octavia: &LoadBalancing) -> &BTreeMap<String, Self> {
        &octavia.listeners
    }

    fn table_mut(octavia: &mut LoadBalancing) -> &mut BTreeMap<String, Self> {
        &mut octavia.listeners
    }

    fn load_balancer_id(&self, _octavia: &LoadBalancing) -> String {
        self.loadbalancer_id.clone()
    }

    fn render(&self, _octavia: &LoadBalancing) -> Value {
        let c = &self.common;
        let mut map = common_json(c, operating(c.provisioning, c.admin_state_up));
        for (key, value) in [
            ("protocol", json!(self.protocol)),
            ("protocol_port", json!(self.protocol_port)),
            ("default_pool_id", json!(self.default_pool_id)),
            ("loadbalancers", ids([&self.loadbalancer_id])),
            ("connection_limit", json!(-1)),
            ("l7policies", json!([])),
            ("insert_headers", json!({})),
            ("allowed_cidrs", Value::Null),
            ("timeout_client_data", json!(50000)),
            ("timeout_member_connect", json!(5000)),
            ("timeout_member_data", json!(50000)),
            ("timeout_tcp_inspect", json!(0)),
        ] {
            map.insert(key.into(), value);
        }
        Value::Object(map)
    }

    fn create(
        cloud: &mut Cloud,
        ctx: &Ctx,
        _parent: Option<&str>,
        req: ListenerReq,
    ) -> Result<String, ApiError> {
        let project_id = req.common.owner(ctx)?;
        one_of("protocol", &req.protocol, &PROTOCOLS)?;
        let port = required("protocol_port", req.protocol_port)?;
        let now = cloud.clock.now();
        let octavia = octavia_mut(cloud)?;
        super::owned::<LoadBalancer>(octavia, ctx, &req.loadbalancer_id)?;
        if octavia
            .listeners
            .values()
            .any(|l| l.loadbalancer_id == req.loadbalancer_id && l.protocol_port == port)
        {
            return Err(conflict(format!(
                "Another Listener on this Load Balancer is already using protocol_port {port}"
            )));
        }
        octavia.mutable_load_balancer(&req.loadbalancer_id)?;
        let id = new_id();
        let listener = Listener {
            common: new_common(&id, &req.common, &project_id),
            loadbalancer_id: req.loadbalancer_id.clone(),
            protocol: req.protocol,
            protocol_port: port,
            default_pool_id: req.default_pool_id,
        };
        octavia.listeners.insert(id.clone(), listener);
        octavia.start_update(&req.loadbalancer_id, now);
        Ok(id)
    }
}
