//! Health monitors: one per pool, checking its members.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    common_json, conflict, ids, new_common, octavia_mut, one_of, operating, required, CommonReq, Object,
};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{new_id, Cloud, Ctx, HealthMonitor, LoadBalancing, Pool};

const TYPES: [&str; 7] = ["HTTP", "HTTPS", "PING", "TCP", "TLS-HELLO", "UDP-CONNECT", "SCTP"];

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct HealthMonitorReq {
    #[serde(flatten)]
    pub common: CommonReq,
    pub pool_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub delay: Option<u32>,
    pub timeout: Option<u32>,
    pub max_retries: Option<u32>,
}

impl Object for HealthMonitor {
    const SINGULAR: &'static str = "healthmonitor";
    const PLURAL: &'static str = "healthmonitors";
    const NAME: &'static str = "Health Monitor";
    type Create = HealthMonitorReq;

    fn table(octavia: &LoadBalancing) -> &BTreeMap<String, Self> {
        &octavia.health_monitors
    }

    fn table_mut(octavia: &mut LoadBalancing) -> &mut BTreeMap<String, Self> {
        &mut octavia.health_monitors
    }

    fn load_balancer_id(&self, octavia: &LoadBalancing) -> String {
        super::load_balancer_of_pool(octavia, &self.pool_id)
    }

    fn render(&self, _octavia: &LoadBalancing) -> Value {
        let c = &self.common;
        let mut map = common_json(c, operating(c.provisioning, c.admin_state_up));
        map.remove("description");
        let http = self.kind.starts_with("HTTP");
        for (key, value) in [
            ("type", json!(self.kind)),
            ("delay", json!(self.delay)),
            ("timeout", json!(self.timeout)),
            ("max_retries", json!(self.max_retries)),
            ("max_retries_down", json!(3)),
            ("pools", ids([&self.pool_id])),
            ("http_method", if http { json!("GET") } else { Value::Null }),
            ("url_path", if http { json!("/") } else { Value::Null }),
            ("expected_codes", if http { json!("200") } else { Value::Null }),
        ] {
            map.insert(key.into(), value);
        }
        Value::Object(map)
    }

    fn create(
        cloud: &mut Cloud,
        ctx: &Ctx,
        _parent: Option<&str>,
        req: HealthMonitorReq,
    ) -> Result<String, ApiError> {
        let project_id = req.common.owner(ctx)?;
        one_of("type", &req.kind, &TYPES)?;
        let delay = required("delay", req.delay)?;
        let timeout = required("timeout", req.timeout)?;
        let max_retries = required("max_retries", req.max_retries)?;
        let now = cloud.clock.now();
        let octavia = octavia_mut(cloud)?;
        let lb_id = super::owned::<Pool>(octavia, ctx, &req.pool_id)?
            .loadbalancer_id
            .clone();
        if octavia.health_monitors.values().any(|h| h.pool_id == req.pool_id) {
            return Err(conflict(format!(
                "This Pool {} already has a Health Monitor",
                req.pool_id
            )));
        }
        octavia.mutable_load_balancer(&lb_id)?;
        let id = new_id();
        let monitor = HealthMonitor {
            common: new_common(&id, &req.common, &project_id),
            pool_id: req.pool_id,
            kind: req.kind,
            delay,
            timeout,
            max_retries,
        };
        octavia.health_monitors.insert(id.clone(), monitor);
        octavia.start_update(&lb_id, now);
        Ok(id)
    }
}
