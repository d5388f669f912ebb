//! What OpenStack discovery records on a resource for its later status reads and deletes, and the
//! one accessor that reads it back.

use serde::Serialize;

use crate::model::{Details, Resource};
use crate::provider::ProviderError;

/// The OpenStack side of [`Details`]: per kind, what acting on the resource needs beyond its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpenStackDetails {
    /// A router: a gateway or extra routes hold it, so they are cleared before its delete.
    Router {
        /// The external network of its gateway; that network itself is never deleted.
        gateway_network_id: Option<String>,
        /// How many extra routes it has.
        routes: usize,
    },
    /// A router interface: its port is detached from `router_id`, never deleted as a port.
    RouterInterface { router_id: String },
    /// A port, with its `device_owner` as listed (`compute:nova` for one Nova removes with its server).
    Port { device_owner: Option<String> },
    /// A server, with its `locked` flag as listed (the status read before its delete decides).
    Server { locked: bool },
    /// Every other kind: its id is all a delete needs.
    Plain,
}

impl OpenStackDetails {
    /// The details OpenStack discovery recorded on `resource`, or an error naming the resource when
    /// another provider (or none) discovered it.
    pub fn of(resource: &Resource) -> Result<&OpenStackDetails, ProviderError> {
        match &resource.details {
            Details::OpenStack(details) => Ok(details),
            Details::None | Details::Proxmox(_) => {
                Err(ProviderError::unexpected_details(resource, "OpenStack"))
            }
        }
    }

    /// What these are details of, for messages.
    pub fn label(&self) -> &'static str {
        match self {
            OpenStackDetails::Router { .. } => "router",
            OpenStackDetails::RouterInterface { .. } => "router interface",
            OpenStackDetails::Port { .. } => "port",
            OpenStackDetails::Server { .. } => "server",
            OpenStackDetails::Plain => "plain",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, ResourceKey};
    use crate::provider::proxmox::{GuestDetails, ProxmoxDetails};

    #[test]
    fn another_providers_resource_is_refused_by_name() {
        let mut guest = Resource::new(ResourceKey::new("lab", Kind::Vm, "101"), "ci-vm");
        guest.details = Details::Proxmox(ProxmoxDetails::Guest(GuestDetails {
            node: "pve1".into(),
            vmid: 101,
            pool: None,
            hastate: None,
            lock: None,
        }));
        let error = OpenStackDetails::of(&guest).expect_err("not an OpenStack resource");
        assert_eq!(
            error.to_string(),
            "vm 101 in cloud lab: expected OpenStack details, found Proxmox guest"
        );
        let stand_in = Resource::new(ResourceKey::new("sim", Kind::Server, "s1"), "");
        assert_eq!(
            OpenStackDetails::of(&stand_in)
                .expect_err("a stand-in")
                .to_string(),
            "server s1 in cloud sim: expected OpenStack details, found none"
        );
    }
}
