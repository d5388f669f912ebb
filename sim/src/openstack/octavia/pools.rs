//! Pools: the members traffic goes to, on a load balancer (and as a listener's default pool).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_request, common_json, ids, new_common, octavia_mut, one_of, operating, CommonReq, Object};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{new_id, Cloud, Ctx, Listener, LoadBalancer, LoadBalancing, Pool};

const ALGORITHMS: [&str; 4] = ["ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT"];
const PROTOCOLS: [&str; 7] = ["HTTP", "HTTPS", "TCP", "UDP", "PROXY", "PROXYV2", "SCTP"];

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct PoolReq {
    #[serde(flatten)]
    pub common: CommonReq,
    pub lb_algorithm: String,
    pub protocol: String,
    pub listener_id: Option<String>,
    pub loadbalancer_id: Option<String>,
}

impl Object for Pool {
    const SINGULAR: &'static str = "pool";
    const PLURAL: &'static str = "pools";
    const NAME: &'static str = "Pool";
    type Create = PoolReq;

    fn table(octavia: &LoadBalancing) -> &BTreeMap<String, Self> {
        &octavia.pools
    }

    fn table_mut(octavia: &mut LoadBalancing) -> &mut BTreeMap<String, Self> {
        &mut octavia.pools
    }

    fn load_balancer_id(&self, _octavia: &LoadBalancing) -> String {
        self.loadbalancer_id.clone()
    }

    fn render(&self, octavia: &LoadBalancing) -> Value {
        let c = &self.common;
        let mut map = common_json(c, operating(c.provisioning, c.admin_state_up));
        let members = octavia
            .members
            .values()
            .filter(|m| m.pool_id == c.id)
            .map(|m| &m.common.id);
        let monitor = octavia
            .health_monitors
            .values()
            .find(|h| h.pool_id == c.id)
            .map(|h| h.common.id.clone());
        for (key, value) in [
            ("protocol", json!(self.protocol)),
            ("lb_algorithm", json!(self.lb_algorithm)),
            ("loadbalancers", ids([&self.loadbalancer_id])),
            ("listeners", ids(self.listener_id.iter())),
            ("members", ids(members)),
            ("healthmonitor_id", json!(monitor)),
            ("session_persistence", Value::Null),
            ("tls_enabled", json!(false)),
        ] {
            map.insert(key.into(), value);
        }
        Value::Object(map)
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, _parent: Option<&str>, req: PoolReq) -> Result<String, ApiError> {
        let project_id = req.common.owner(ctx)?;
        one_of("lb_algorithm", &req.lb_algorithm, &ALGORITHMS)?;
        one_of("protocol", &req.protocol, &PROTOCOLS)?;
        let now = cloud.clock.now();
        let octavia = octavia_mut(cloud)?;
        let lb_id = match (&req.listener_id, &req.loadbalancer_id) {
            (Some(listener), _) => super::owned::<Listener>(octavia, ctx, listener)?
                .loadbalancer_id
                .clone(),
            (None, Some(lb)) => {
                super::owned::<LoadBalancer>(octavia, ctx, lb)?;
                lb.clone()
            }
            (None, None) => {
                return Err(bad_request(
                    "Validation failure: Missing field: loadbalancer_id or listener_id.",
                ))
            }
        };
        octavia.mutable_load_balancer(&lb_id)?;
        let id = new_id();
        if let Some(listener) = req
            .listener_id
            .as_ref()
            .and_then(|l| octavia.listeners.get_mut(l))
        {
            listener.default_pool_id.get_or_insert_with(|| id.clone());
        }
        let pool = Pool {
            common: new_common(&id, &req.common, &project_id),
            loadbalancer_id: lb_id.clone(),
            listener_id: req.listener_id,
            protocol: req.protocol,
            lb_algorithm: req.lb_algorithm,
        };
        octavia.pools.insert(id.clone(), pool);
        octavia.start_update(&lb_id, now);
        Ok(id)
    }
}
