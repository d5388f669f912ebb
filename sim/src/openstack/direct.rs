//! Building and looking at the simulated cloud without HTTP: the CI leftovers, resources made as user
//! `demo` through the same operations the API runs, and the state tests check.

use std::collections::BTreeMap;

use super::cinder::{SnapshotSpec, VolumeSpec};
use super::errors::ApiError;
use super::neutron::{
    FloatingIpReq, Interface, NetworkReq, PortReq, RouterReq, RuleReq, SecurityGroupReq, SubnetReq,
};
use super::nova::{Nic, ServerSpec};
use super::seed::{self, Seeded};
use super::state::{
    Cloud, Ctx, FloatingIp, Network, Port, Router, SecurityGroup, SecurityGroupRule, Server, Stored, Subnet,
    DEMO_PROJECT_ID,
};
use super::OpenStackSim;

/// A seeding or inspection helper refused the request, as the API would have.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("simulated OpenStack refused to {action}: {status} {message}")]
pub struct SimError {
    pub action: &'static str,
    pub status: u16,
    pub message: String,
}

impl SimError {
    fn from_api(action: &'static str, error: ApiError) -> Self {
        SimError {
            action,
            status: error.status.as_u16(),
            message: error.message,
        }
    }
}

/// A server to boot with [`OpenStackSim::create_server`].
#[derive(Debug, Clone, Default)]
pub struct NewServer<'a> {
    pub name: &'a str,
    /// Pre-created ports to plug in; Nova unbinds them when the server is deleted.
    pub ports: &'a [&'a str],
    /// Networks to plug into; Nova creates a port on each and deletes it with the server.
    pub networks: &'a [&'a str],
    /// Nova tags.
    pub tags: &'a [&'a str],
    pub key_name: Option<&'a str>,
    pub server_group: Option<&'a str>,
    /// Security group names for the ports Nova creates (`default` when empty).
    pub security_groups: &'a [&'a str],
}

impl OpenStackSim {
    /// Creates the leftovers of three interrupted CI jobs and the resources that must survive them,
    /// all three hours old. See [`Seeded`] for the topology and the expected cleanup outcome. Calling
    /// it again adds three more jobs (`job-4` to `job-6`).
    pub fn seed_ci_leftovers(&self) -> Seeded {
        // Invariant: the seeder only sends requests it builds against resources it just made (the
        // HTTP test `seeded_leftovers_are_visible_through_the_api...` seeds twice), so a refusal is a
        // simulator bug.
        #[allow(clippy::expect_used)]
        seed::seed_ci_leftovers(&mut self.inner.cloud()).expect("the simulator refused its own seed")
    }

    /// What `look` reads off the cloud, every asynchronous delete that is due finished first.
    fn look<T>(&self, look: impl FnOnce(&mut Cloud) -> T) -> T {
        look(&mut self.inner.cloud())
    }

    /// Whether a resource exists (still `deleting` counts; a `DELETED` server does not). Kinds:
    /// `server`, `port`, `network`, `subnet`, `router`, `floating_ip`, `security_group`,
    /// `security_group_rule`, `volume`, `volume_snapshot`, `keypair` (by name), `server_group`,
    /// `volume_backup`, `image`, and with Octavia `load_balancer`, `listener`, `pool`, `member`,
    /// `health_monitor`.
    pub fn exists(&self, kind: &str, id: &str) -> bool {
        self.look(|cloud| cloud.exists(kind, id))
    }

    /// How many resources of a kind exist in all projects (see [`OpenStackSim::exists`]).
    pub fn count(&self, kind: &str) -> usize {
        self.look(|cloud| cloud.count(kind))
    }

    /// The id of the first network `which` picks; empty when there is none.
    fn network_id(&self, which: impl Fn(&Network) -> bool) -> String {
        self.look(|cloud| {
            cloud
                .networks
                .values()
                .find(|n| which(n))
                .map(|n| n.id.clone())
                .unwrap_or_default()
        })
    }

    /// The id of the network `shared` of project `other`.
    pub fn shared_network_id(&self) -> String {
        self.network_id(|n| n.shared && n.name == "shared")
    }

    /// The id of the external network `public`.
    pub fn public_network_id(&self) -> String {
        self.network_id(|n| n.external && n.name == "public")
    }

    /// The id of project `demo`'s `default` security group.
    pub fn default_security_group_id(&self) -> String {
        self.look(|cloud| cloud.ensure_default_security_group(DEMO_PROJECT_ID))
    }

    /// The subnets of a network, of any project.
    pub fn network_subnets(&self, network_id: &str) -> Vec<String> {
        self.look(|cloud| {
            cloud
                .subnets
                .values()
                .filter(|s| s.network_id == network_id)
                .map(|s| s.id.clone())
                .collect()
        })
    }

    /// Adds `tag` to a resource of any project, as an admin may: a CI tag on what no cleanup may
    /// touch (`public`, `shared`, the `default` group). Kinds with tags, as in
    /// [`OpenStackSim::exists`]; false if there is no such resource or its kind has no tags.
    pub fn add_tag(&self, kind: &str, id: &str, tag: &str) -> bool {
        fn add<T: Stored>(cloud: &mut Cloud, id: &str, tag: &str) -> bool {
            let Some(tags) = T::table_mut(cloud).get_mut(id).and_then(T::tags_mut) else {
                return false;
            };
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_string());
            }
            true
        }
        self.look(|cloud| match kind {
            "network" => add::<Network>(cloud, id, tag),
            "subnet" => add::<Subnet>(cloud, id, tag),
            "port" => add::<Port>(cloud, id, tag),
            "router" => add::<Router>(cloud, id, tag),
            "floating_ip" => add::<FloatingIp>(cloud, id, tag),
            "security_group" => add::<SecurityGroup>(cloud, id, tag),
            "server" => add::<Server>(cloud, id, tag),
            _ => false,
        })
    }

    /// A server's status (`ACTIVE`, `SHUTOFF`, `DELETED` shortly before it is gone).
    pub fn server_status(&self, server_id: &str) -> Option<String> {
        self.look(|cloud| cloud.servers.get(server_id).map(|s| s.status.clone()))
    }

    /// A server's task state (`Some("deleting")` from its DELETE until it turns `DELETED`, at 70 % of
    /// `server_delete_delay`; `None` then, until it is gone).
    pub fn server_task_state(&self, server_id: &str) -> Option<Option<String>> {
        self.look(|cloud| cloud.servers.get(server_id).map(|s| s.task_state.clone()))
    }

    /// A port's `(device_id, device_owner)`, empty strings when unbound.
    pub fn port_binding(&self, port_id: &str) -> Option<(String, String)> {
        self.look(|cloud| {
            cloud
                .ports
                .get(port_id)
                .map(|p| (p.device_id.clone(), p.device_owner.clone()))
        })
    }

    /// The subnets a port has addresses on (a port on a network without subnets has none).
    pub fn port_subnets(&self, port_id: &str) -> Vec<String> {
        self.look(|cloud| {
            cloud
                .ports
                .get(port_id)
                .map(|p| p.fixed_ips.iter().map(|(subnet, _)| subnet.clone()).collect())
                .unwrap_or_default()
        })
    }

    /// The ports Nova created for a server booted on networks, which it deletes with the server.
    pub fn nova_ports(&self, server_id: &str) -> Vec<String> {
        self.look(|cloud| {
            cloud
                .servers
                .get(server_id)
                .map(|s| s.nova_created_ports.clone())
                .unwrap_or_default()
        })
    }

    /// A volume's status (`available`, `in-use`, `deleting`, `error_deleting`).
    pub fn volume_status(&self, volume_id: &str) -> Option<String> {
        self.look(|cloud| cloud.volumes.get(volume_id).map(|v| v.status.clone()))
    }

    /// Makes the volume's next delete end in `error_deleting` instead of 404; false if no such volume.
    pub fn fail_volume_delete(&self, volume_id: &str) -> bool {
        let mut cloud = self.inner.cloud();
        cloud
            .volumes
            .get_mut(volume_id)
            .map(|v| v.fail_delete = true)
            .is_some()
    }

    /// Moves one resource's creation (and update) time `age` into the past, so it looks that old;
    /// false if there is no such resource. Kinds as in [`OpenStackSim::exists`]; server groups carry
    /// no times.
    pub fn backdate(&self, kind: &str, id: &str, age: chrono::Duration) -> bool {
        self.look(|cloud| cloud.backdate_one(kind, id, age))
    }

    /// Runs one operation as user `demo` in project `demo`.
    fn as_demo<T>(
        &self,
        action: &'static str,
        operation: impl FnOnce(&mut Cloud, &Ctx) -> Result<T, ApiError>,
    ) -> Result<T, SimError> {
        operation(&mut self.inner.cloud(), &Ctx::demo()).map_err(|e| SimError::from_api(action, e))
    }

    /// Runs one operation as user `other` in project `other`, whose resources project `demo` must
    /// never touch (and, but for what `other` shares, never sees).
    fn as_other<T>(
        &self,
        action: &'static str,
        operation: impl FnOnce(&mut Cloud, &Ctx) -> Result<T, ApiError>,
    ) -> Result<T, SimError> {
        operation(&mut self.inner.cloud(), &Ctx::other()).map_err(|e| SimError::from_api(action, e))
    }

    /// Creates a network in project `other`; returns its id.
    pub fn create_network_of_other_project(&self, name: &str, tags: &[&str]) -> Result<String, SimError> {
        let req = NetworkReq::named(name, strings(tags));
        self.as_other("create network", |cloud, ctx| cloud.create::<Network>(ctx, req))
    }

    /// Creates a security group in project `other`; returns its id.
    pub fn create_security_group_of_other_project(
        &self,
        name: &str,
        tags: &[&str],
    ) -> Result<String, SimError> {
        let req = SecurityGroupReq::named(name, strings(tags));
        self.as_other("create security group", |cloud, ctx| {
            cloud.create::<SecurityGroup>(ctx, req)
        })
    }

    /// Creates a network in project `demo`; returns its id.
    pub fn create_network(&self, name: &str, tags: &[&str]) -> Result<String, SimError> {
        let req = NetworkReq::named(name, strings(tags));
        self.as_demo("create network", |cloud, ctx| cloud.create::<Network>(ctx, req))
    }

    /// Creates a subnet (DHCP on, gateway `.1`), which gives the network its DHCP port.
    pub fn create_subnet(
        &self,
        network_id: &str,
        name: &str,
        cidr: &str,
        tags: &[&str],
    ) -> Result<String, SimError> {
        let req = SubnetReq::new(network_id, name, cidr, strings(tags));
        self.as_demo("create subnet", |cloud, ctx| cloud.create::<Subnet>(ctx, req))
    }

    /// Creates a security group (with Neutron's two egress rules).
    pub fn create_security_group(&self, name: &str, tags: &[&str]) -> Result<String, SimError> {
        let req = SecurityGroupReq::named(name, strings(tags));
        self.as_demo("create security group", |cloud, ctx| {
            cloud.create::<SecurityGroup>(ctx, req)
        })
    }

    /// Adds an ingress rule for `protocol` (and `port`, when given) from anywhere.
    pub fn add_security_group_rule(
        &self,
        group_id: &str,
        protocol: &str,
        port: Option<u16>,
    ) -> Result<String, SimError> {
        let req = RuleReq::ingress_from_anywhere(group_id, protocol, port);
        self.as_demo("create security group rule", |cloud, ctx| {
            cloud.create::<SecurityGroupRule>(ctx, req)
        })
    }

    /// Creates an unbound port with an address on the network's first subnet; no security groups
    /// given means the project's `default` group.
    pub fn create_port(
        &self,
        network_id: &str,
        name: &str,
        security_group_ids: &[&str],
        tags: &[&str],
    ) -> Result<String, SimError> {
        let groups = (!security_group_ids.is_empty()).then(|| strings(security_group_ids));
        let req = PortReq::new(network_id, name, groups, strings(tags));
        self.as_demo("create port", |cloud, ctx| cloud.create::<Port>(ctx, req))
    }

    /// Creates a router, with a gateway on `external_network_id` when given.
    pub fn create_router(
        &self,
        name: &str,
        external_network_id: Option<&str>,
        tags: &[&str],
    ) -> Result<String, SimError> {
        let req = RouterReq::new(name, external_network_id, strings(tags));
        self.as_demo("create router", |cloud, ctx| cloud.create::<Router>(ctx, req))
    }

    /// Adds a router interface on the subnet's gateway address; returns the interface port's id.
    pub fn add_router_interface(&self, router_id: &str, subnet_id: &str) -> Result<String, SimError> {
        let interface = Interface::Subnet(subnet_id.into());
        let body = self.as_demo("add router interface", |cloud, ctx| {
            cloud.add_router_interface(ctx, router_id, interface)
        })?;
        Ok(body
            .get("port_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    /// Allocates a floating IP on `public`, associated with `port_id` when given (which needs a
    /// router joining the port's subnet to `public`).
    pub fn create_floating_ip(&self, port_id: Option<&str>, tags: &[&str]) -> Result<String, SimError> {
        let req = FloatingIpReq::new(&self.public_network_id(), port_id, strings(tags));
        self.as_demo("create floating IP", |cloud, ctx| {
            cloud.create::<FloatingIp>(ctx, req)
        })
    }

    /// Boots a server (ACTIVE at once); returns its id.
    pub fn create_server(&self, server: NewServer<'_>) -> Result<String, SimError> {
        let mut nics: Vec<Nic> = server.ports.iter().map(|p| Nic::Port((*p).into())).collect();
        nics.extend(server.networks.iter().map(|n| Nic::Network((*n).into())));
        let spec = ServerSpec {
            key_name: server.key_name.map(str::to_string),
            security_groups: strings(server.security_groups),
            group: server.server_group.map(str::to_string),
            ..ServerSpec::new(server.name, nics, strings(server.tags))
        };
        self.as_demo("create server", |cloud, ctx| cloud.create_server(ctx, spec))
    }

    /// Locks or unlocks a server; a locked server's DELETE by a member answers 409.
    pub fn set_server_locked(&self, server_id: &str, locked: bool) -> Result<(), SimError> {
        self.as_demo("lock server", |cloud, ctx| {
            cloud.set_server_lock(ctx, server_id, locked, None)
        })
    }

    /// Creates a keypair for user `demo`; returns its name.
    pub fn create_keypair(&self, name: &str) -> Result<String, SimError> {
        self.as_demo("create keypair", |cloud, ctx| {
            cloud.create_keypair(ctx, name, None).map(|k| k.name)
        })
    }

    /// Creates a server group with `policy` (`affinity`, `anti-affinity`, ...); returns its id.
    pub fn create_server_group(&self, name: &str, policy: &str) -> Result<String, SimError> {
        self.as_demo("create server group", |cloud, ctx| {
            cloud.create_server_group(ctx, name, policy)
        })
    }

    /// Creates an `available` volume of `size_gb` with metadata; returns its id.
    pub fn create_volume(
        &self,
        name: &str,
        size_gb: u64,
        metadata: &[(&str, &str)],
    ) -> Result<String, SimError> {
        let spec = VolumeSpec::new(name, size_gb, map(metadata));
        self.as_demo("create volume", |cloud, ctx| cloud.create_volume(ctx, spec))
    }

    /// Attaches a volume to a server, as Nova's `os-volume_attachments` does.
    pub fn attach_volume(&self, server_id: &str, volume_id: &str) -> Result<(), SimError> {
        self.as_demo("attach volume", |cloud, ctx| {
            cloud.attach_volume(ctx, server_id, volume_id).map(|_| ())
        })
    }

    /// Snapshots an `available` volume; returns the snapshot's id.
    pub fn create_snapshot(
        &self,
        volume_id: &str,
        name: &str,
        metadata: &[(&str, &str)],
    ) -> Result<String, SimError> {
        let spec = SnapshotSpec::new(volume_id, name, map(metadata));
        self.as_demo("create snapshot", |cloud, ctx| cloud.create_snapshot(ctx, spec))
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}
