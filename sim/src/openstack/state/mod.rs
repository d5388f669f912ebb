//! The in-memory cloud behind every simulated service: identities, the resource records, who may see
//! them, and the clock that finishes asynchronous deletes.
//!
//! # Layout
//! - this module: the fixed identities and the caller ([`Ctx`]), the [`Cloud`] of every table, the
//!   delete timeline [`Cloud::reap`] moves on, and what all records share ([`Stored`], [`Record`]).
//! - `records`: each record type; `octavia`: Octavia's.

mod octavia;
mod records;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::clock::SimClock;

pub use octavia::OctaviaTimings;

pub(crate) use octavia::{
    Common as OctaviaCommon, HasCommon, HealthMonitor, Listener, LoadBalancer, LoadBalancing, Member, Pool,
    Provisioning,
};
pub(crate) use records::{
    Backup, FloatingIp, Image, Keypair, Network, Port, Router, SecurityGroup, SecurityGroupRule, Server,
    ServerGroup, Snapshot, Subnet, Token, Volume, VolumeAttachment, OWNER_COMPUTE, OWNER_DHCP,
    OWNER_FLOATING_IP, OWNER_ROUTER_GATEWAY, OWNER_ROUTER_INTERFACE,
};

pub(crate) const DOMAIN_ID: &str = "default";
pub(crate) const DEMO_PROJECT_ID: &str = "5f1ad9e1c3b44c0c9b1f4e0a6d2c7b01";
pub(crate) const ADMIN_PROJECT_ID: &str = "9a7c2e4b1d3f4a6b8c0e2f4a6b8d0c02";
/// Owns the shared network that members of `demo` see but must never touch.
pub(crate) const OTHER_PROJECT_ID: &str = "c4e6a8b0d2f44e6a8c0b2d4f6a8e0c03";
pub(crate) const DEMO_USER_ID: &str = "0d7a1c5e3b9f4d2a8e6c4a2b0f8d6e11";
pub(crate) const ADMIN_USER_ID: &str = "7e5c3a1f9d7b4e5c3a1f9d7b5e3c1a12";
pub(crate) const OTHER_USER_ID: &str = "b2d4f6a8c0e24b4d6f8a0c2e4b6d8f13";

/// Who is calling: the project and user of the token, and whether it carries the admin role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ctx {
    pub project_id: String,
    pub user_id: String,
    pub admin: bool,
}

impl Ctx {
    pub fn demo() -> Self {
        Ctx {
            project_id: DEMO_PROJECT_ID.into(),
            user_id: DEMO_USER_ID.into(),
            admin: false,
        }
    }

    pub fn admin() -> Self {
        Ctx {
            project_id: ADMIN_PROJECT_ID.into(),
            user_id: ADMIN_USER_ID.into(),
            admin: true,
        }
    }

    pub fn other() -> Self {
        Ctx {
            project_id: OTHER_PROJECT_ID.into(),
            user_id: OTHER_USER_ID.into(),
            admin: false,
        }
    }

    /// Whether the caller acts on resources of `project_id` (its own, or any as admin).
    pub fn owns(&self, project_id: &str) -> bool {
        self.admin || self.project_id == project_id
    }
}
/// Every resource of every service. Handlers lock it, act, and unlock before answering.
#[derive(Debug)]
pub(crate) struct Cloud {
    /// What every timed behaviour (deletes, token expiry) reads; tests advance it.
    pub clock: SimClock,
    /// Whether a DHCP agent runs: it gives every network with a DHCP subnet a `network:dhcp` port.
    pub dhcp_agent: bool,
    pub server_delete_delay: Duration,
    pub volume_delete_delay: Duration,
    pub token_ttl: Duration,
    pub tokens: HashMap<String, Token>,
    pub networks: BTreeMap<String, Network>,
    pub subnets: BTreeMap<String, Subnet>,
    pub ports: BTreeMap<String, Port>,
    pub routers: BTreeMap<String, Router>,
    pub floating_ips: BTreeMap<String, FloatingIp>,
    pub security_groups: BTreeMap<String, SecurityGroup>,
    pub security_group_rules: BTreeMap<String, SecurityGroupRule>,
    pub servers: BTreeMap<String, Server>,
    /// Keyed by `(user_id, name)`: Nova keypairs belong to a user, not a project.
    pub keypairs: BTreeMap<(String, String), Keypair>,
    pub server_groups: BTreeMap<String, ServerGroup>,
    pub volumes: BTreeMap<String, Volume>,
    pub snapshots: BTreeMap<String, Snapshot>,
    /// Octavia's tables; `None` for a cloud without the load-balancer service.
    pub load_balancing: Option<LoadBalancing>,
    pub backups: BTreeMap<String, Backup>,
    pub images: BTreeMap<String, Image>,
    next_mac: u32,
    next_standard_attr_id: u64,
}

/// A new random id in the dashed UUID form Nova, Neutron and Cinder use.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Cloud {
    pub fn new(
        clock: SimClock,
        server_delete_delay: Duration,
        volume_delete_delay: Duration,
        token_ttl: Duration,
        dhcp_agent: bool,
    ) -> Self {
        Cloud {
            clock,
            dhcp_agent,
            server_delete_delay,
            volume_delete_delay,
            token_ttl,
            tokens: HashMap::new(),
            networks: BTreeMap::new(),
            subnets: BTreeMap::new(),
            ports: BTreeMap::new(),
            routers: BTreeMap::new(),
            floating_ips: BTreeMap::new(),
            security_groups: BTreeMap::new(),
            security_group_rules: BTreeMap::new(),
            servers: BTreeMap::new(),
            keypairs: BTreeMap::new(),
            server_groups: BTreeMap::new(),
            volumes: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            load_balancing: None,
            backups: BTreeMap::new(),
            images: BTreeMap::new(),
            next_mac: 0,
            next_standard_attr_id: 0,
        }
    }

    /// The next `standard_attr_id` (Neutron numbers its resources' standard attributes in one
    /// sequence).
    pub fn new_standard_attr_id(&mut self) -> u64 {
        self.next_standard_attr_id += 1;
        self.next_standard_attr_id
    }

    pub fn new_mac(&mut self) -> String {
        self.next_mac += 1;
        let [_, a, b, c] = self.next_mac.to_be_bytes();
        format!("fa:16:3e:{a:02x}:{b:02x}:{c:02x}")
    }

    /// Moves every asynchronous delete on as far as its time has come by `now` (the clock's reading).
    /// Called before each look at the state, so a deleted server detaches its volumes at half its `server_delete_delay`, turns
    /// `DELETED` (its own ports gone, pre-created ones unbound) at 70 % and answers 404 at the full
    /// delay; a volume, snapshot or backup in `deleting` disappears `volume_delete_delay` after its
    /// DELETE; and load balancers' pending operations end when their time has come.
    pub fn reap(&mut self, now: Instant) {
        let delay = self.server_delete_delay;
        let detach_after = delay / 2;
        let terminate_after = delay.checked_mul(7).map_or(delay, |d| d / 10);
        let mut detach = Vec::new();
        let mut terminate = Vec::new();
        let mut finish = Vec::new();
        for server in self.servers.values() {
            let Some(requested) = server.delete_requested else {
                continue;
            };
            let elapsed = now.saturating_duration_since(requested);
            if elapsed >= delay {
                finish.push(server.id.clone());
            } else if elapsed >= terminate_after {
                if !server.is_terminated() {
                    terminate.push(server.id.clone());
                }
            } else if elapsed >= detach_after {
                detach.push(server.id.clone());
            }
        }
        for server_id in detach {
            self.detach_all_volumes(&server_id);
        }
        for server_id in terminate {
            self.terminate_server(&server_id);
        }
        for server_id in finish {
            self.finish_server_delete(&server_id);
        }
        let delay = self.volume_delete_delay;
        self.snapshots
            .retain(|_, s| s.delete_requested.is_none_or(|t| now < t + delay));
        self.backups
            .retain(|_, b| b.delete_requested.is_none_or(|t| now < t + delay));
        let mut gone = Vec::new();
        for volume in self.volumes.values_mut() {
            if volume.delete_requested.is_some_and(|t| now >= t + delay) {
                if volume.fail_delete {
                    volume.status = "error_deleting".into();
                    volume.delete_requested = None;
                } else {
                    gone.push(volume.id.clone());
                }
            }
        }
        for volume_id in gone {
            self.volumes.remove(&volume_id);
        }
        self.reap_load_balancers(now);
    }

    /// Every table, by the kind names [`super::OpenStackSim::exists`] takes.
    fn tables(&mut self) -> Vec<(&'static str, &mut dyn Table)> {
        let mut tables: Vec<(&'static str, &mut dyn Table)> = vec![
            ("server", &mut self.servers),
            ("port", &mut self.ports),
            ("network", &mut self.networks),
            ("subnet", &mut self.subnets),
            ("router", &mut self.routers),
            ("floating_ip", &mut self.floating_ips),
            ("security_group", &mut self.security_groups),
            ("security_group_rule", &mut self.security_group_rules),
            ("volume", &mut self.volumes),
            ("volume_snapshot", &mut self.snapshots),
            ("keypair", &mut self.keypairs),
            ("server_group", &mut self.server_groups),
            ("volume_backup", &mut self.backups),
            ("image", &mut self.images),
        ];
        if let Some(octavia) = &mut self.load_balancing {
            tables.extend(octavia.tables());
        }
        tables
    }

    /// The table of a kind; `None` for a kind the simulator does not have.
    fn table(&mut self, kind: &str) -> Option<&mut dyn Table> {
        self.tables()
            .into_iter()
            .find(|(name, _)| *name == kind)
            .map(|(_, table)| table)
    }

    /// Whether a live resource of `kind` with that id exists; keypairs are looked up by name (see
    /// [`Record::live`]: a `DELETED` server does not).
    pub fn exists(&mut self, kind: &str, id: &str) -> bool {
        self.table(kind).is_some_and(|t| t.has(id))
    }

    /// How many live resources of `kind` exist in all projects (see [`Cloud::exists`]).
    pub fn count(&mut self, kind: &str) -> usize {
        self.table(kind).map_or(0, |t| t.len())
    }

    /// Moves every creation and update time `age` into the past, so seeded leftovers look old.
    pub fn backdate(&mut self, age: chrono::Duration) {
        for (_, table) in self.tables() {
            table.backdate(age);
        }
    }

    /// Moves one resource's times `age` into the past; false if there is no such resource.
    pub fn backdate_one(&mut self, kind: &str, id: &str, age: chrono::Duration) -> bool {
        self.table(kind).is_some_and(|t| t.backdate_one(id, age))
    }
}

/// Where the cloud keeps a record type (a table keyed by id), whose project a record is in, and its
/// tags when it has any; written by `stored!` below for every such type at once.
pub(crate) trait Stored: Sized + 'static {
    /// Whether the records carry tags.
    const TAGGED: bool;
    fn table(cloud: &Cloud) -> &BTreeMap<String, Self>;
    fn table_mut(cloud: &mut Cloud) -> &mut BTreeMap<String, Self>;
    fn project_id(&self) -> &str;
    /// The tag list; `None` when not [`Stored::TAGGED`].
    fn tags_mut(&mut self) -> Option<&mut Vec<String>>;
}

/// `Stored` for each record type kept in the named field of [`Cloud`], with or without tags.
macro_rules! stored {
    ($($record:ident in $field:ident $(with $tags:ident)?;)*) => {$(
        impl Stored for $record {
            const TAGGED: bool = stored!(@tagged $($tags)?);

            fn table(cloud: &Cloud) -> &BTreeMap<String, Self> {
                &cloud.$field
            }

            fn table_mut(cloud: &mut Cloud) -> &mut BTreeMap<String, Self> {
                &mut cloud.$field
            }

            fn project_id(&self) -> &str {
                &self.project_id
            }

            fn tags_mut(&mut self) -> Option<&mut Vec<String>> {
                stored!(@tags self $($tags)?)
            }
        }
    )*};
    (@tagged $tags:ident) => { true };
    (@tagged) => { false };
    (@tags $record:ident $tags:ident) => { Some(&mut $record.$tags) };
    (@tags $record:ident) => { None };
}

stored! {
    Network in networks with tags;
    Subnet in subnets with tags;
    Port in ports with tags;
    Router in routers with tags;
    FloatingIp in floating_ips with tags;
    SecurityGroup in security_groups with tags;
    SecurityGroupRule in security_group_rules;
    Server in servers with tags;
    ServerGroup in server_groups;
    Volume in volumes;
    Snapshot in snapshots;
    Backup in backups;
    Image in images with tags;
}

/// A stored record, as inspection and backdating see every kind alike.
pub(crate) trait Record {
    /// What `OpenStackSim::exists` looks it up by: its id (a keypair's name).
    fn key(&self) -> &str;
    /// Moves its creation and update times `age` into the past.
    fn backdate(&mut self, age: chrono::Duration);
    /// Whether it still exists for `exists` and `count`: all do but a tombstone.
    fn live(&self) -> bool {
        true
    }
}

/// A server [`Cloud::exists`] no more once `DELETED`: the hypervisor destroyed it and freed its
/// ports and volumes; what Nova shows for a moment, and leaves out of its lists, is a tombstone.
impl Record for Server {
    fn key(&self) -> &str {
        &self.id
    }

    fn backdate(&mut self, age: chrono::Duration) {
        self.created -= age;
        self.updated -= age;
    }

    fn live(&self) -> bool {
        !self.is_terminated()
    }
}

/// Implements [`Record`] for records with an `id` and `created` and `updated` times.
macro_rules! dated_records {
    ($($record:ty),* $(,)?) => {$(
        impl Record for $record {
            fn key(&self) -> &str {
                &self.id
            }

            fn backdate(&mut self, age: chrono::Duration) {
                self.created -= age;
                self.updated -= age;
            }
        }
    )*};
}

dated_records!(
    Network,
    Subnet,
    Port,
    Router,
    FloatingIp,
    SecurityGroup,
    SecurityGroupRule,
    Snapshot,
    Backup,
    Image,
);

impl Record for Volume {
    fn key(&self) -> &str {
        &self.id
    }

    /// Attachments move with the volume.
    fn backdate(&mut self, age: chrono::Duration) {
        self.created -= age;
        self.updated -= age;
        self.attachments.iter_mut().for_each(|a| a.attached_at -= age);
    }
}

impl Record for Keypair {
    fn key(&self) -> &str {
        &self.name
    }

    fn backdate(&mut self, age: chrono::Duration) {
        self.created -= age;
    }
}

impl Record for ServerGroup {
    fn key(&self) -> &str {
        &self.id
    }

    /// Server groups carry no times.
    fn backdate(&mut self, _age: chrono::Duration) {}
}

/// One kind's records, whatever they are keyed by.
trait Table {
    fn has(&self, key: &str) -> bool;
    fn len(&self) -> usize;
    fn backdate(&mut self, age: chrono::Duration);
    fn backdate_one(&mut self, key: &str, age: chrono::Duration) -> bool;
}

impl<K, R: Record> Table for BTreeMap<K, R> {
    fn has(&self, key: &str) -> bool {
        self.values().any(|r| r.key() == key && r.live())
    }

    fn len(&self) -> usize {
        self.values().filter(|r| r.live()).count()
    }

    fn backdate(&mut self, age: chrono::Duration) {
        self.values_mut().for_each(|r| r.backdate(age));
    }

    fn backdate_one(&mut self, key: &str, age: chrono::Duration) -> bool {
        self.values_mut()
            .find(|r| r.key() == key)
            .map(|r| r.backdate(age))
            .is_some()
    }
}

/// Neutron's and Nova's timestamp form.
pub(crate) fn iso(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Cinder's timestamp form (microseconds, no zone).
pub(crate) fn iso_micros(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}
