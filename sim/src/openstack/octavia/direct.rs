//! Octavia without HTTP: a CI job's load balancer built through the same operations the API runs,
//! the state tests check, and the failures tests cause.

use std::collections::BTreeMap;

use super::health_monitors::HealthMonitorReq;
use super::listeners::ListenerReq;
use super::members::MemberReq;
use super::pools::PoolReq;
use super::{CommonReq, LoadBalancerReq, Object};
use crate::openstack::errors::ApiError;
use crate::openstack::neutron::{NetworkReq, SecurityGroupReq, SubnetReq};
use crate::openstack::seed::CI_TAG;
use crate::openstack::state::{
    Cloud, Ctx, HealthMonitor, Listener, LoadBalancer, Member, Network, Pool, Provisioning, Record,
    SecurityGroup, Subnet,
};
use crate::openstack::{OpenStackSim, SimError};

/// A CI job that created a load balancer and was killed: everything tagged `ci-job` + `job-<n>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeededLoadBalancerJob {
    /// `job-<n>`.
    pub job: String,
    pub network: String,
    pub subnet: String,
    /// The group the VIP port uses (`vip_sg_ids`).
    pub security_group: String,
    pub load_balancer: String,
    /// The VIP port Octavia made: untagged, removed by Octavia with the load balancer.
    pub vip_port: String,
    pub listener: String,
    pub pool: String,
    pub member: String,
    pub health_monitor: String,
}

fn refused(action: &'static str) -> impl FnOnce(ApiError) -> SimError {
    move |error| SimError {
        action,
        status: error.status.as_u16(),
        message: error.message,
    }
}

/// Moves one record's times `age` into the past.
fn backdate<R: Record>(table: &mut BTreeMap<String, R>, id: &str, age: chrono::Duration) {
    if let Some(record) = table.get_mut(id) {
        record.backdate(age);
    }
}

impl Cloud {
    /// Ends the pending step of the load balancer `id` now, as if its provisioning delay passed.
    fn finish_provisioning(&mut self, id: &str) {
        let now = self.clock.now();
        if let Some(lb) = self
            .load_balancing
            .as_mut()
            .and_then(|o| o.load_balancers.get_mut(id))
        {
            lb.pending_until = Some(now);
        }
        self.reap_load_balancers(now);
    }

    /// Creates an Octavia object as `ctx` and finishes the provisioning step it started.
    fn provisioned<O: Object>(
        &mut self,
        ctx: &Ctx,
        parent: Option<&str>,
        req: O::Create,
    ) -> Result<String, ApiError> {
        let id = O::create(self, ctx, parent, req)?;
        let lb = self
            .load_balancing
            .as_ref()
            .and_then(|o| O::table(o).get(&id).map(|object| object.load_balancer_id(o)))
            .unwrap_or_default();
        self.finish_provisioning(&lb);
        Ok(id)
    }

    /// The job, its network, subnet and group, and its load balancer with a listener, a pool, a
    /// member and a health monitor, all `ACTIVE` and three hours old.
    fn seed_load_balancer_job(&mut self) -> Result<SeededLoadBalancerJob, ApiError> {
        let demo = Ctx::demo();
        let n = self
            .networks
            .values()
            .filter(|n| n.name.starts_with("ci-job-"))
            .count()
            + 1;
        let job = format!("job-{n}");
        let prefix = format!("ci-job-{n}");
        let tags = vec![CI_TAG.to_string(), job.clone()];
        let named = |what: &str| format!("{prefix}-{what}");
        let network = self.create::<Network>(&demo, NetworkReq::named(&named("net"), tags.clone()))?;
        let cidr = format!("10.{n}.0.0/24");
        let subnet = self.create::<Subnet>(
            &demo,
            SubnetReq::new(&network, &named("subnet"), &cidr, tags.clone()),
        )?;
        let group =
            self.create::<SecurityGroup>(&demo, SecurityGroupReq::named(&named("lb-sg"), tags.clone()))?;
        let common = |what: &str| CommonReq {
            name: named(what),
            tags: tags.clone(),
            ..CommonReq::default()
        };
        let lb_req = LoadBalancerReq::new(&named("lb"), &subnet, vec![group.clone()], tags.clone());
        let load_balancer = self.provisioned::<LoadBalancer>(&demo, None, lb_req)?;
        let listener = self.provisioned::<Listener>(
            &demo,
            None,
            ListenerReq {
                common: common("listener"),
                loadbalancer_id: load_balancer.clone(),
                protocol: "HTTP".into(),
                protocol_port: Some(80),
                default_pool_id: None,
            },
        )?;
        let pool = self.provisioned::<Pool>(
            &demo,
            None,
            PoolReq {
                common: common("pool"),
                lb_algorithm: "ROUND_ROBIN".into(),
                protocol: "HTTP".into(),
                listener_id: Some(listener.clone()),
                loadbalancer_id: None,
            },
        )?;
        let member = self.provisioned::<Member>(
            &demo,
            Some(&pool),
            MemberReq {
                common: common("member"),
                address: format!("10.{n}.0.50"),
                protocol_port: Some(8080),
                subnet_id: Some(subnet.clone()),
                weight: None,
            },
        )?;
        let health_monitor = self.provisioned::<HealthMonitor>(
            &demo,
            None,
            HealthMonitorReq {
                common: common("monitor"),
                pool_id: pool.clone(),
                kind: "HTTP".into(),
                delay: Some(5),
                timeout: Some(3),
                max_retries: Some(3),
            },
        )?;
        let vip_port = self
            .load_balancing
            .as_ref()
            .and_then(|o| o.load_balancers.get(&load_balancer))
            .map(|lb| lb.vip_port_id.clone())
            .unwrap_or_default();
        let age = chrono::Duration::hours(3);
        backdate(&mut self.networks, &network, age);
        backdate(&mut self.subnets, &subnet, age);
        backdate(&mut self.security_groups, &group, age);
        backdate(&mut self.ports, &vip_port, age);
        if let Some(octavia) = self.load_balancing.as_mut() {
            backdate(&mut octavia.load_balancers, &load_balancer, age);
            backdate(&mut octavia.listeners, &listener, age);
            backdate(&mut octavia.pools, &pool, age);
            backdate(&mut octavia.members, &member, age);
            backdate(&mut octavia.health_monitors, &health_monitor, age);
        }
        Ok(SeededLoadBalancerJob {
            job,
            network,
            subnet,
            security_group: group,
            load_balancer,
            vip_port,
            listener,
            pool,
            member,
            health_monitor,
        })
    }
}

impl OpenStackSim {
    /// The leftovers of a CI job killed after it built a load balancer: see
    /// [`SeededLoadBalancerJob`]. Numbered after the `ci-job-<n>` networks already there.
    pub fn seed_load_balancer_job(&self) -> Result<SeededLoadBalancerJob, SimError> {
        self.inner
            .cloud()
            .seed_load_balancer_job()
            .map_err(refused("seed a load balancer job"))
    }

    /// Makes the load balancer's pending operation end in `ERROR`, or, when none is pending, puts
    /// it in `ERROR` at once (a failed failover); false if there is no such load balancer.
    pub fn fail_load_balancer(&self, id: &str) -> bool {
        let mut cloud = self.inner.cloud();
        let Some(lb) = cloud
            .load_balancing
            .as_mut()
            .and_then(|o| o.load_balancers.get_mut(id))
        else {
            return false;
        };
        if lb.pending_until.is_some() {
            lb.fail_pending = true;
        } else {
            lb.common.provisioning = Provisioning::Error;
        }
        true
    }

    /// Puts an `ACTIVE` load balancer in `PENDING_UPDATE` for `for_how_long` on the simulator's
    /// clock, as a running update would; false if it is not `ACTIVE`.
    pub fn hold_load_balancer(&self, id: &str, for_how_long: std::time::Duration) -> bool {
        let mut cloud = self.inner.cloud();
        let now = cloud.clock.now();
        let Some(lb) = cloud
            .load_balancing
            .as_mut()
            .and_then(|o| o.load_balancers.get_mut(id))
            .filter(|lb| lb.common.provisioning == Provisioning::Active)
        else {
            return false;
        };
        lb.common.provisioning = Provisioning::PendingUpdate;
        lb.pending_until = Some(now + for_how_long);
        true
    }
}
