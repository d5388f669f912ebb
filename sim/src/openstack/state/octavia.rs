//! Octavia's records: load balancers and their listeners, pools, members and health monitors, with
//! the provisioning status every one of them carries, and the timings of their asynchronous work.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Record, Table};

/// How long Octavia takes, in the simulator's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OctaviaTimings {
    /// From a create or update (of a load balancer or of anything under it) to `ACTIVE`.
    pub provision_delay: Duration,
    /// From an accepted load balancer delete to 404 (children and VIP port gone with it).
    pub delete_delay: Duration,
}

impl Default for OctaviaTimings {
    fn default() -> Self {
        OctaviaTimings {
            provision_delay: Duration::from_millis(300),
            delete_delay: Duration::from_millis(300),
        }
    }
}

/// `provisioning_status`: the lifecycle of every Octavia object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provisioning {
    Active,
    PendingCreate,
    PendingUpdate,
    PendingDelete,
    Error,
}

impl Provisioning {
    pub fn as_str(self) -> &'static str {
        match self {
            Provisioning::Active => "ACTIVE",
            Provisioning::PendingCreate => "PENDING_CREATE",
            Provisioning::PendingUpdate => "PENDING_UPDATE",
            Provisioning::PendingDelete => "PENDING_DELETE",
            Provisioning::Error => "ERROR",
        }
    }

    /// `PENDING_*`: Octavia refuses every change until the operation completes.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            Provisioning::PendingCreate | Provisioning::PendingUpdate | Provisioning::PendingDelete
        )
    }
}

/// What every Octavia object has besides its own attributes.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub provisioning: Provisioning,
    pub admin_state_up: bool,
    pub tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub(crate) struct LoadBalancer {
    pub common: Common,
    pub vip_subnet_id: String,
    pub vip_network_id: String,
    pub vip_port_id: String,
    pub vip_address: String,
    pub vip_sg_ids: Vec<String>,
    /// When the pending operation (create, update, delete) completes.
    pub pending_until: Option<Instant>,
    /// Set through the simulator's handle: the pending operation ends in `ERROR`.
    pub fail_pending: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pub common: Common,
    pub loadbalancer_id: String,
    pub protocol: String,
    pub protocol_port: u16,
    pub default_pool_id: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub common: Common,
    pub loadbalancer_id: String,
    pub listener_id: Option<String>,
    pub protocol: String,
    pub lb_algorithm: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub common: Common,
    pub pool_id: String,
    pub address: String,
    pub protocol_port: u16,
    pub subnet_id: Option<String>,
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct HealthMonitor {
    pub common: Common,
    pub pool_id: String,
    pub kind: String,
    pub delay: u32,
    pub timeout: u32,
    pub max_retries: u32,
}

/// Every Octavia table, present when the cloud runs Octavia.
#[derive(Debug, Default)]
pub(crate) struct LoadBalancing {
    pub timings: OctaviaTimings,
    pub load_balancers: BTreeMap<String, LoadBalancer>,
    pub listeners: BTreeMap<String, Listener>,
    pub pools: BTreeMap<String, Pool>,
    pub members: BTreeMap<String, Member>,
    pub health_monitors: BTreeMap<String, HealthMonitor>,
}

impl LoadBalancing {
    pub fn new(timings: OctaviaTimings) -> Self {
        LoadBalancing {
            timings,
            ..LoadBalancing::default()
        }
    }

    /// Every table, by the kind names `OpenStackSim::exists` takes.
    pub(super) fn tables(&mut self) -> [(&'static str, &mut dyn Table); 5] {
        [
            ("load_balancer", &mut self.load_balancers),
            ("listener", &mut self.listeners),
            ("pool", &mut self.pools),
            ("member", &mut self.members),
            ("health_monitor", &mut self.health_monitors),
        ]
    }
}

/// The [`Common`] part of every Octavia record.
pub(crate) trait HasCommon {
    fn common(&self) -> &Common;
    fn common_mut(&mut self) -> &mut Common;
}

macro_rules! octavia_records {
    ($($record:ty),* $(,)?) => {$(
        impl HasCommon for $record {
            fn common(&self) -> &Common {
                &self.common
            }

            fn common_mut(&mut self) -> &mut Common {
                &mut self.common
            }
        }

        impl Record for $record {
            fn key(&self) -> &str {
                &self.common.id
            }

            fn backdate(&mut self, age: chrono::Duration) {
                self.common.created -= age;
                if let Some(updated) = &mut self.common.updated {
                    *updated -= age;
                }
            }
        }
    )*};
}

octavia_records!(LoadBalancer, Listener, Pool, Member, HealthMonitor);
