//! The provider-agnostic resource model: what the planner, executor, reports and metrics see.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::provider::openstack::OpenStackDetails;
use crate::provider::proxmox::ProxmoxDetails;

/// The kinds of resource cloud-janitor knows. Metrics and reports label by [`Kind::as_str`], so the
/// set is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Server,
    LoadBalancer,
    FloatingIp,
    Port,
    RouterInterface,
    Router,
    Subnet,
    Network,
    SecurityGroup,
    Volume,
    VolumeSnapshot,
    Keypair,
    ServerGroup,
    Vm,
    Container,
    Disk,
}

impl Kind {
    /// Every kind, in the order reports list them.
    pub const ALL: [Kind; 16] = [
        Kind::Server,
        Kind::LoadBalancer,
        Kind::FloatingIp,
        Kind::Port,
        Kind::RouterInterface,
        Kind::Router,
        Kind::Subnet,
        Kind::Network,
        Kind::SecurityGroup,
        Kind::Volume,
        Kind::VolumeSnapshot,
        Kind::Keypair,
        Kind::ServerGroup,
        Kind::Vm,
        Kind::Container,
        Kind::Disk,
    ];

    /// The stable, snake_case name used in metrics labels, reports and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::LoadBalancer => "load_balancer",
            Kind::FloatingIp => "floating_ip",
            Kind::Port => "port",
            Kind::RouterInterface => "router_interface",
            Kind::Router => "router",
            Kind::Subnet => "subnet",
            Kind::Network => "network",
            Kind::SecurityGroup => "security_group",
            Kind::Volume => "volume",
            Kind::VolumeSnapshot => "volume_snapshot",
            Kind::Keypair => "keypair",
            Kind::ServerGroup => "server_group",
            Kind::Vm => "vm",
            Kind::Container => "container",
            Kind::Disk => "disk",
        }
    }

    /// Parses [`Kind::as_str`] back.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one resource across every configured cloud.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceKey {
    pub cloud: String,
    pub kind: Kind,
    pub id: String,
}

impl ResourceKey {
    pub fn new(cloud: impl Into<String>, kind: Kind, id: impl Into<String>) -> Self {
        ResourceKey {
            cloud: cloud.into(),
            kind,
            id: id.into(),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

/// Why a provider says a resource must never be deleted, whatever the selection rules say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// The project's `default` security group.
    DefaultSecurityGroup,
    /// A `router:external` network, or a subnet of one.
    ExternalNetwork,
    /// A network shared with other projects, or a subnet of one.
    SharedNetwork,
    /// Owned by a project other than the one the credentials are scoped to.
    OtherProject,
    /// A Proxmox template.
    Template,
    /// A Proxmox guest with `protection: 1`.
    Protected,
    /// A Proxmox guest holding a lock (backup, migrate, ...).
    Locked,
    /// A Proxmox guest whose status is `unknown` (its node is unreachable).
    UnknownState,
}

impl Guard {
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::DefaultSecurityGroup => "default security group",
            Guard::ExternalNetwork => "external network",
            Guard::SharedNetwork => "shared network",
            Guard::OtherProject => "another project's resource",
            Guard::Template => "template",
            Guard::Protected => "protected",
            Guard::Locked => "locked",
            Guard::UnknownState => "status unknown",
        }
    }
}

/// Why an untagged resource looks leaked, as CI operators recognise leaks (nodepool's leak cleanup is
/// the model). Set by the provider that listed it; what it leads to is the selection's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakSign {
    /// A floating IP associated with no port.
    FloatingIpWithoutPort,
    /// A port that is `DOWN` and bound to no device.
    PortWithoutDevice,
    /// A volume `available` with no attachment.
    VolumeWithoutAttachment,
    /// A Proxmox VE disk that no guest references.
    DiskWithoutGuest,
}

impl LeakSign {
    /// What it looks like, for people.
    pub fn describe(self) -> &'static str {
        match self {
            LeakSign::FloatingIpWithoutPort => "a floating IP with no port",
            LeakSign::PortWithoutDevice => "a port DOWN with no device",
            LeakSign::VolumeWithoutAttachment => "a volume available with no attachment",
            LeakSign::DiskWithoutGuest => "a disk no guest references",
        }
    }

    /// The kind every resource with this sign is.
    pub fn kind(self) -> Kind {
        match self {
            LeakSign::FloatingIpWithoutPort => Kind::FloatingIp,
            LeakSign::PortWithoutDevice => Kind::Port,
            LeakSign::VolumeWithoutAttachment => Kind::Volume,
            LeakSign::DiskWithoutGuest => Kind::Disk,
        }
    }

    /// Every sign.
    pub const ALL: [LeakSign; 4] = [
        LeakSign::FloatingIpWithoutPort,
        LeakSign::PortWithoutDevice,
        LeakSign::VolumeWithoutAttachment,
        LeakSign::DiskWithoutGuest,
    ];
}

/// How a resource goes away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// The janitor deletes it through the provider.
    Delete,
    /// Its owner removes it (a port Nova created for a server, for example): never delete it
    /// directly; once the owner is gone, wait for it to disappear.
    WithOwner(ResourceKey),
}

/// One discovered resource, as every layer above the providers sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    pub key: ResourceKey,
    pub name: String,
    pub tags: Vec<String>,
    pub created: Option<DateTime<Utc>>,
    /// The project (OpenStack) or pool (Proxmox VE) it belongs to, as listed; shown by `explain`.
    pub project: Option<String>,
    /// The provider's status word, for reports (`ACTIVE`, `in-use`, `running`, ...).
    pub status: String,
    /// Resources this one uses: each must be deleted after this one (`device_id`, `fixed_ips`,
    /// `security_groups`, attachments, ...).
    pub references: Vec<ResourceKey>,
    /// Resources that use this one, where only this side knows it (a port's `device_id`, a volume's
    /// attachments). A user the provider did not list becomes an unselected stand-in in the graph, so
    /// this resource is reported "in use" rather than deleted from under it.
    pub used_by: Vec<ResourceKey>,
    pub removal: Removal,
    /// How many consecutive passes must have seen this resource before it may be selected (Proxmox
    /// orphan disks need two); 1 for everything else.
    pub sightings_required: u32,
    /// Set by the provider when the resource must never be touched.
    pub guard: Option<Guard>,
    /// False for kinds whose API has no tags (Nova keypairs and server groups, Proxmox disks): the
    /// selection's tag rules cannot apply, so only `name_pattern` can select them.
    pub taggable: bool,
    /// Set by the provider when the resource looks leaked (a floating IP with no port, ...); an
    /// untagged resource that keeps looking so becomes a suspected leak (see `selection`).
    pub leak: Option<LeakSign>,
    /// What the provider recorded at discovery for its own later calls, typed per provider.
    pub details: Details,
}

impl Resource {
    /// A resource with no tags, references or details, deleted directly; providers fill in the rest.
    pub fn new(key: ResourceKey, name: impl Into<String>) -> Self {
        Resource {
            key,
            name: name.into(),
            tags: Vec::new(),
            created: None,
            project: None,
            status: String::new(),
            references: Vec::new(),
            used_by: Vec::new(),
            removal: Removal::Delete,
            sightings_required: 1,
            guard: None,
            taggable: true,
            leak: None,
            details: Details::None,
        }
    }
}

/// What a provider recorded at discovery to act on a resource later (a router's gateway, a guest's
/// node, a disk's volume id), typed per provider. The planner and executor never look inside: each
/// provider reads its own variant back through one accessor that refuses any other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub enum Details {
    /// Nothing recorded: a stand-in for a user the provider did not list.
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "openstack")]
    OpenStack(OpenStackDetails),
    #[serde(rename = "proxmox")]
    Proxmox(ProxmoxDetails),
}

impl Details {
    /// Which provider's details these are, and of what, for error messages (`OpenStack router`).
    pub fn describe(&self) -> String {
        match self {
            Details::None => "none".to_string(),
            Details::OpenStack(details) => format!("OpenStack {}", details.label()),
            Details::Proxmox(details) => format!("Proxmox {}", details.label()),
        }
    }
}

/// What a status read right before (or after) a delete found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// 404: the resource is gone.
    Gone,
    /// Present and in a state that allows deleting it. For a resource removed with its owner, seen
    /// after the owner is gone, it means the owner released it instead of removing it.
    Ready,
    /// Present, in a transitional state (deleting, pending, locked, an empty status, ...): not done
    /// yet, look again later. The text says which state.
    Busy(String),
    /// Present and in a failed state that will not resolve by waiting (`error_deleting`).
    Failed(String),
}

/// What a delete call achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The resource is gone when the call returns.
    Completed,
    /// The API accepted the delete and completes it asynchronously: poll until [`Observed::Gone`].
    Accepted,
}

/// Fixtures the unit tests of the planner, the executor and the report share.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{Kind, Resource, ResourceKey};

    /// A key in cloud `ci`.
    pub fn key(kind: Kind, id: &str) -> ResourceKey {
        ResourceKey::new("ci", kind, id)
    }

    /// A resource in cloud `ci`, named like its id, using `references`.
    pub fn res(kind: Kind, id: &str, references: &[ResourceKey]) -> Resource {
        let mut resource = Resource::new(key(kind, id), id);
        resource.references = references.to_vec();
        resource
    }
}
