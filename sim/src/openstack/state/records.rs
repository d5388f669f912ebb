//! The records each service keeps: tokens, Neutron's networks, subnets (and the addresses in them),
//! ports, routers, floating IPs and security groups, Nova's servers, keypairs and groups, and
//! Cinder's volumes, snapshots and backups, and Glance's images.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::Ctx;

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

/// A Cinder backup of a volume; it outlives the volume.
#[derive(Debug, Clone)]
pub(crate) struct Backup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub user_id: String,
    pub volume_id: String,
    pub size: u64,
    pub status: String,
    pub incremental: bool,
    pub metadata: BTreeMap<String, String>,
    pub delete_requested: Option<Instant>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// A Glance image record (no image data is stored).
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub id: String,
    pub name: String,
    /// Shown as `owner`.
    pub project_id: String,
    pub visibility: String,
    pub status: String,
    pub tags: Vec<String>,
    pub protected: bool,
    pub container_format: Option<String>,
    pub disk_format: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
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
