//! The in-memory cloud behind every simulated service: identities, the resource records, who may see
//! them, and the clock that finishes asynchronous deletes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::clock::SimClock;

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

/// An issued Keystone token.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub ctx: Ctx,
    pub issued: Instant,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub methods: Vec<String>,
    pub application_credential_id: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub shared: bool,
    pub external: bool,
    pub admin_state_up: bool,
    pub tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Subnet {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub network_id: String,
    pub cidr: String,
    pub ip_version: u8,
    pub gateway_ip: Option<String>,
    pub enable_dhcp: bool,
    /// The host number the next allocated address gets.
    pub next_host: u128,
    pub tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

impl Subnet {
    /// The network address and the prefix length of `cidr`.
    pub fn parse_cidr(cidr: &str) -> Option<(IpAddr, u8)> {
        let (address, prefix) = cidr.split_once('/')?;
        let address: IpAddr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some((address, prefix))
    }

    /// The address `host` hosts into the subnet, if the subnet has that many.
    pub fn host_address(cidr: &str, host: u128) -> Option<String> {
        let (address, prefix) = Subnet::parse_cidr(cidr)?;
        match address {
            IpAddr::V4(v4) => {
                let size = 1u128 << (32 - u32::from(prefix));
                let base = u128::from(u32::from(v4)) & !(size - 1);
                let host = u32::try_from(base + host).ok().filter(|_| host < size)?;
                Some(std::net::Ipv4Addr::from(host).to_string())
            }
            IpAddr::V6(v6) => {
                let bits = 128 - u32::from(prefix);
                let base = if bits == 128 {
                    0
                } else {
                    u128::from(v6) & !((1u128 << bits) - 1)
                };
                let fits = bits == 128 || host < (1u128 << bits);
                fits.then(|| std::net::Ipv6Addr::from(base + host).to_string())
            }
        }
    }

    /// The last host number usable for allocation (the broadcast address is kept back).
    pub fn last_host(&self) -> u128 {
        match Subnet::parse_cidr(&self.cidr) {
            Some((IpAddr::V4(_), prefix)) => (1u128 << (32 - u32::from(prefix))).saturating_sub(2),
            Some((IpAddr::V6(_), prefix)) if prefix > 64 => {
                (1u128 << (128 - u32::from(prefix))).saturating_sub(2)
            }
            Some((IpAddr::V6(_), _)) => u128::from(u64::MAX),
            None => 0,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Port {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub network_id: String,
    pub mac_address: String,
    /// `(subnet_id, ip_address)` pairs.
    pub fixed_ips: Vec<(String, String)>,
    pub device_id: String,
    pub device_owner: String,
    pub security_groups: Vec<String>,
    pub binding_host: String,
    pub admin_state_up: bool,
    pub tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// Device owners of the ports Neutron's own services manage.
pub(crate) const OWNER_DHCP: &str = "network:dhcp";
pub(crate) const OWNER_ROUTER_INTERFACE: &str = "network:router_interface";
pub(crate) const OWNER_ROUTER_GATEWAY: &str = "network:router_gateway";
pub(crate) const OWNER_FLOATING_IP: &str = "network:floatingip";
pub(crate) const OWNER_COMPUTE: &str = "compute:nova";

#[derive(Debug, Clone)]
pub(crate) struct Router {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    /// `(external network id, gateway port id)` while the router has a gateway.
    pub gateway: Option<(String, String)>,
    pub admin_state_up: bool,
    pub tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct FloatingIp {
    pub id: String,
    pub description: String,
    pub project_id: String,
    pub floating_network_id: String,
    pub floating_ip_address: String,
    /// The `network:floatingip` port that holds the address on the external network.
    pub own_port_id: String,
    pub port_id: Option<String>,
    pub fixed_ip_address: Option<String>,
    pub router_id: Option<String>,
    pub tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SecurityGroupRule {
    pub id: String,
    pub security_group_id: String,
    pub project_id: String,
    pub direction: String,
    pub ethertype: String,
    pub protocol: Option<String>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
    pub description: String,
    /// Neutron's `standard_attr_id`, shown only on the rules a security group embeds.
    pub standard_attr_id: u64,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub status: String,
    pub task_state: Option<String>,
    pub locked: bool,
    pub locked_reason: Option<String>,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub key_name: Option<String>,
    pub image_ref: String,
    pub flavor_ref: String,
    pub security_group_names: Vec<String>,
    /// Every port plugged into the server, in boot order.
    pub port_ids: Vec<String>,
    /// The ports Nova created itself (`networks: [{uuid}]`) and deletes with the server.
    pub nova_created_ports: Vec<String>,
    /// When the DELETE was accepted; the server is gone `server_delete_delay` later.
    pub delete_requested: Option<Instant>,
    /// When the hypervisor destroyed it (status `DELETED`, `OS-SRV-USG:terminated_at`).
    pub terminated: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

impl Server {
    /// Destroyed (status `DELETED`) but still answering GET until its record goes.
    pub fn is_terminated(&self) -> bool {
        self.terminated.is_some()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Keypair {
    pub name: String,
    pub user_id: String,
    pub public_key: String,
    pub fingerprint: String,
    pub key_type: String,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServerGroup {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub policy: String,
    pub members: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct VolumeAttachment {
    pub attachment_id: String,
    pub server_id: String,
    pub device: String,
    pub attached_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Volume {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub user_id: String,
    pub size: u64,
    pub status: String,
    pub metadata: BTreeMap<String, String>,
    pub attachments: Vec<VolumeAttachment>,
    pub snapshot_id: Option<String>,
    /// When set, a DELETE ends in `error_deleting` instead of removing the volume.
    pub fail_delete: bool,
    pub delete_requested: Option<Instant>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub user_id: String,
    pub volume_id: String,
    pub size: u64,
    pub status: String,
    pub metadata: BTreeMap<String, String>,
    pub delete_requested: Option<Instant>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
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
    /// delay, and a volume or snapshot in `deleting` disappears `volume_delete_delay` after its DELETE.
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
    }

    /// Whether a resource of `kind` (see `OpenStackSim::exists`) with that id exists; keypairs are
    /// looked up by name.
    pub fn exists(&self, kind: &str, id: &str) -> bool {
        match kind {
            "server" => self.servers.contains_key(id),
            "port" => self.ports.contains_key(id),
            "network" => self.networks.contains_key(id),
            "subnet" => self.subnets.contains_key(id),
            "router" => self.routers.contains_key(id),
            "floating_ip" => self.floating_ips.contains_key(id),
            "security_group" => self.security_groups.contains_key(id),
            "security_group_rule" => self.security_group_rules.contains_key(id),
            "volume" => self.volumes.contains_key(id),
            "volume_snapshot" => self.snapshots.contains_key(id),
            "keypair" => self.keypairs.keys().any(|(_, name)| name == id),
            "server_group" => self.server_groups.contains_key(id),
            _ => false,
        }
    }

    pub fn count(&self, kind: &str) -> usize {
        match kind {
            "server" => self.servers.len(),
            "port" => self.ports.len(),
            "network" => self.networks.len(),
            "subnet" => self.subnets.len(),
            "router" => self.routers.len(),
            "floating_ip" => self.floating_ips.len(),
            "security_group" => self.security_groups.len(),
            "security_group_rule" => self.security_group_rules.len(),
            "volume" => self.volumes.len(),
            "volume_snapshot" => self.snapshots.len(),
            "keypair" => self.keypairs.len(),
            "server_group" => self.server_groups.len(),
            _ => 0,
        }
    }

    /// Moves every creation and update time `age` into the past, so seeded leftovers look old.
    pub fn backdate(&mut self, age: chrono::Duration) {
        fn shift(created: &mut DateTime<Utc>, updated: &mut DateTime<Utc>, age: chrono::Duration) {
            *created -= age;
            *updated -= age;
        }
        self.networks
            .values_mut()
            .for_each(|r| shift(&mut r.created, &mut r.updated, age));
        self.subnets
            .values_mut()
            .for_each(|r| shift(&mut r.created, &mut r.updated, age));
        self.ports
            .values_mut()
            .for_each(|r| shift(&mut r.created, &mut r.updated, age));
        self.routers
            .values_mut()
            .for_each(|r| shift(&mut r.created, &mut r.updated, age));
        self.floating_ips
            .values_mut()
            .for_each(|r| shift(&mut r.created, &mut r.updated, age));
        self.security_groups
            .values_mut()
            .for_each(|r| shift(&mut r.created, &mut r.updated, age));
        self.security_group_rules
            .values_mut()
            .for_each(|r| shift(&mut r.created, &mut r.updated, age));
        self.servers
            .values_mut()
            .for_each(|r| shift(&mut r.created, &mut r.updated, age));
        self.volumes
            .values_mut()
            .for_each(|r| shift(&mut r.created, &mut r.updated, age));
        self.snapshots
            .values_mut()
            .for_each(|r| shift(&mut r.created, &mut r.updated, age));
        self.keypairs.values_mut().for_each(|k| k.created -= age);
        for volume in self.volumes.values_mut() {
            volume.attachments.iter_mut().for_each(|a| a.attached_at -= age);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_come_from_the_cidr() {
        assert_eq!(
            Subnet::host_address("10.1.0.0/24", 1).as_deref(),
            Some("10.1.0.1")
        );
        assert_eq!(
            Subnet::host_address("10.1.0.7/24", 5).as_deref(),
            Some("10.1.0.5")
        );
        assert_eq!(Subnet::host_address("10.1.0.0/30", 4), None);
        assert_eq!(
            Subnet::host_address("fd00:1::/64", 2).as_deref(),
            Some("fd00:1::2")
        );
        assert_eq!(Subnet::host_address("bogus", 2), None);
    }
}
