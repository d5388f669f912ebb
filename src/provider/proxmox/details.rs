//! What Proxmox discovery records on a resource (where a guest or disk lives) for its later status
//! reads and deletes, and the one accessor that reads it back.

use serde::Serialize;

use crate::model::{Details, Resource};
use crate::provider::ProviderError;

/// The Proxmox side of [`Details`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxmoxDetails {
    /// A QEMU VM or LXC container.
    Guest(GuestDetails),
    /// A disk named for a vmid that has no guest, referenced by no guest config.
    OrphanDisk(DiskDetails),
}

/// Where a guest lives and what held it at discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestDetails {
    pub node: String,
    pub vmid: u32,
    pub pool: Option<String>,
    /// Set when the HA manager manages the guest: its stop then goes through the HA manager.
    pub hastate: Option<String>,
    pub lock: Option<String>,
}

/// Where an orphan disk lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskDetails {
    /// The node its storage was listed through.
    pub node: String,
    pub storage: String,
    pub volid: String,
    /// The vmid its name carries (`vm-999-disk-0`), which had no guest at discovery.
    pub vmid: u32,
}

impl ProxmoxDetails {
    /// The details Proxmox discovery recorded on `resource`, or an error naming the resource when
    /// another provider (or none) discovered it.
    pub fn of(resource: &Resource) -> Result<&ProxmoxDetails, ProviderError> {
        match &resource.details {
            Details::Proxmox(details) => Ok(details),
            Details::None | Details::OpenStack(_) => {
                Err(ProviderError::unexpected_details(resource, "Proxmox"))
            }
        }
    }

    /// The guest details of `resource`.
    pub fn guest(resource: &Resource) -> Result<&GuestDetails, ProviderError> {
        match ProxmoxDetails::of(resource)? {
            ProxmoxDetails::Guest(guest) => Ok(guest),
            ProxmoxDetails::OrphanDisk(_) => {
                Err(ProviderError::unexpected_details(resource, "Proxmox guest"))
            }
        }
    }

    /// The disk details of `resource`.
    pub fn disk(resource: &Resource) -> Result<&DiskDetails, ProviderError> {
        match ProxmoxDetails::of(resource)? {
            ProxmoxDetails::OrphanDisk(disk) => Ok(disk),
            ProxmoxDetails::Guest(_) => {
                Err(ProviderError::unexpected_details(resource, "Proxmox orphan disk"))
            }
        }
    }

    /// What these are details of, for messages.
    pub fn label(&self) -> &'static str {
        match self {
            ProxmoxDetails::Guest(_) => "guest",
            ProxmoxDetails::OrphanDisk(_) => "orphan disk",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, ResourceKey};
    use crate::provider::openstack::OpenStackDetails;

    #[test]
    fn another_providers_resource_and_a_mismatched_kind_are_refused_by_name() {
        let mut router = Resource::new(ResourceKey::new("sim", Kind::Router, "r1"), "ci-router");
        router.details = Details::OpenStack(OpenStackDetails::Router {
            gateway_network_id: None,
            routes: 0,
        });
        assert_eq!(
            ProxmoxDetails::guest(&router)
                .expect_err("an OpenStack router")
                .to_string(),
            "router r1 in cloud sim: expected Proxmox details, found OpenStack router"
        );
        let mut disk = Resource::new(ResourceKey::new("lab", Kind::Vm, "999"), "vm-999-disk-0");
        disk.details = Details::Proxmox(ProxmoxDetails::OrphanDisk(DiskDetails {
            node: "pve1".into(),
            storage: "local-lvm".into(),
            volid: "local-lvm:vm-999-disk-0".into(),
            vmid: 999,
        }));
        assert_eq!(
            ProxmoxDetails::guest(&disk).expect_err("a disk").to_string(),
            "vm 999 in cloud lab: expected Proxmox guest details, found Proxmox orphan disk"
        );
        assert_eq!(ProxmoxDetails::disk(&disk).map(|d| d.vmid).ok(), Some(999));
    }
}
