//! OpenStack listings (paginated, project-scoped, never filtered by tag) and the pure mapping of
//! the decoded items to [`Resource`]s with their references, guards and details.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::de::DeserializeOwned;

use super::session::Service;
use super::wire::{
    Common, FloatingIp, Item, KeypairEntry, LoadBalancer, Network, PageOf, Port, Router, SecurityGroup,
    Server, ServerGroup, Snapshot, Subnet, Volume,
};
use super::{OpenStackDetails, OpenStackProvider};
use crate::model::{Details, Guard, Kind, LeakSign, Removal, Resource, ResourceKey};
use crate::provider::decode::decode_seed;
use crate::provider::http::ApiPath;
use crate::provider::ProviderError;

/// Device owners whose ports their owner removes (DHCP agent, floating IP, router gateway, DVR,
/// HA routers): never deleted directly, never leftovers of their own, so not modelled at all.
const OWNER_MANAGED_PREFIXES: [&str; 5] = [
    "network:dhcp",
    "network:floatingip",
    "network:router_gateway",
    "network:distributed",
    "network:router_ha_interface",
];
/// Octavia's ports. A VIP port (`device_id` `lb-<load balancer id>`) is modelled: removed with its
/// load balancer, it holds its subnet, network and security groups until then. Octavia's other
/// ports (amphorae's) live in its service project and are not modelled.
pub(super) const OCTAVIA_OWNER: &str = "Octavia";

/// The load balancer whose VIP port this is, for a port Octavia made for one.
fn vip_port_owner(port: &Port) -> Option<&str> {
    (port.device_owner.as_deref() == Some(OCTAVIA_OWNER))
        .then_some(())
        .and(port.device_id.as_deref())
        .and_then(|device| device.strip_prefix("lb-"))
}
const ROUTER_INTERFACE_OWNERS: [&str; 3] = [
    "network:router_interface",
    "network:router_interface_distributed",
    "network:ha_router_replicated_interface",
];

/// Everything one discovery lists, decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Listings {
    pub networks: Vec<Network>,
    pub subnets: Vec<Subnet>,
    pub ports: Vec<Port>,
    pub routers: Vec<Router>,
    pub floating_ips: Vec<FloatingIp>,
    pub security_groups: Vec<SecurityGroup>,
    pub servers: Vec<Server>,
    pub keypairs: Vec<KeypairEntry>,
    pub server_groups: Vec<ServerGroup>,
    pub volumes: Vec<Volume>,
    pub snapshots: Vec<Snapshot>,
    pub load_balancers: Vec<LoadBalancer>,
}

impl OpenStackProvider {
    /// The first page of the collection at `segments`, `limit` set to the configured page size.
    fn collection(&self, segments: &[&str]) -> ApiPath {
        ApiPath::new(segments).query("limit", self.page_size.to_string())
    }

    /// Lists a whole collection, following `<collection>_links` next links (Nova, Neutron and Cinder
    /// all use that shape). Each page is decoded from its bytes straight into `T`.
    async fn list<T: DeserializeOwned>(
        &self,
        service: Service,
        first: ApiPath,
        collection: &str,
    ) -> Result<Vec<T>, ProviderError> {
        let what = format!("{}: {collection}", service.label());
        self.list_pages(service, first, collection, &what)
            .await
            .map_err(|error| match error {
                // A decode error names the listing already.
                ProviderError::Decode { .. } => error,
                other => ProviderError::Listing {
                    what: what.clone(),
                    source: Box::new(other),
                },
            })
    }

    async fn list_pages<T: DeserializeOwned>(
        &self,
        service: Service,
        first: ApiPath,
        collection: &str,
        what: &str,
    ) -> Result<Vec<T>, ProviderError> {
        let mut next = Some(self.session.url(service, &first).await?);
        let mut items = Vec::new();
        let mut seen_pages = HashSet::new();
        while let Some(url) = next.take() {
            if !seen_pages.insert(url.to_string()) {
                return Err(ProviderError::Decode {
                    url: url.to_string(),
                    message: format!("{what}: pagination loops back to a page already read"),
                });
            }
            let response = self.session.get(service, &url).await?;
            let page = decode_seed(&response.body, &url, what, PageOf::<T>::new(collection))?;
            let batch_len = page.items.len();
            items.extend(page.items);
            if let Some(link) = page.next.filter(|_| batch_len > 0) {
                next = Some(url.join(&link).map_err(|error| ProviderError::Decode {
                    url: url.to_string(),
                    message: format!("{what}: next link `{link}` is not a URL: {error}"),
                })?);
            }
        }
        Ok(items)
    }
}

/// Discovers every resource of the project. Listings run concurrently; each is one paginated scan.
pub(super) async fn discover(provider: &OpenStackProvider) -> Result<Vec<Resource>, ProviderError> {
    let project = provider.session.project_id().await?;
    let scoped = |segments: &[&str]| {
        provider
            .collection(segments)
            .query("project_id", project.as_str())
    };
    let (net, compute, block) = (Service::Network, Service::Compute, Service::BlockStorage);
    let (networks, subnets, ports, routers, floating_ips, security_groups) = futures::try_join!(
        provider.list(net, scoped(&["networks"]), "networks"),
        provider.list(net, scoped(&["subnets"]), "subnets"),
        provider.list(net, scoped(&["ports"]), "ports"),
        provider.list(net, scoped(&["routers"]), "routers"),
        // Whole, unselected ones too: a floating IP names its port and router, which do not name it.
        provider.list(net, scoped(&["floatingips"]), "floatingips"),
        provider.list(net, scoped(&["security-groups"]), "security_groups"),
    )?;
    let (servers, keypairs, server_groups) = futures::try_join!(
        // Whole, unselected ones too: a server names its keypair, which does not name its users.
        provider.list(compute, provider.collection(&["servers", "detail"]), "servers"),
        provider.list(compute, provider.collection(&["os-keypairs"]), "keypairs"),
        provider.list(
            compute,
            provider.collection(&["os-server-groups"]),
            "server_groups"
        ),
    )?;
    let (volumes, snapshots) = if provider.session.has(block).await? {
        futures::try_join!(
            provider.list(block, provider.collection(&["volumes", "detail"]), "volumes"),
            provider.list(block, provider.collection(&["snapshots", "detail"]), "snapshots"),
        )?
    } else {
        (Vec::new(), Vec::new())
    };
    let load_balancers = if provider.session.has(Service::LoadBalancer).await? {
        provider
            .list(
                Service::LoadBalancer,
                scoped(&["lbaas", "loadbalancers"]),
                "loadbalancers",
            )
            .await?
    } else {
        Vec::new()
    };
    let listings = Listings {
        networks,
        subnets,
        ports,
        routers,
        floating_ips,
        security_groups,
        servers,
        keypairs,
        server_groups,
        volumes,
        snapshots,
        load_balancers,
    };
    Ok(resources(&provider.cloud, &project, &listings))
}

/// A resource of `kind` from an item's shared fields.
fn base(cloud: &str, kind: Kind, common: Common<'_>, details: OpenStackDetails) -> Resource {
    let mut resource = Resource::new(ResourceKey::new(cloud, kind, common.id), common.name);
    resource.tags = common.tags.to_vec();
    resource.created = common.created;
    resource.project = common.owner.map(str::to_string);
    resource.status = common.status.to_string();
    resource.details = Details::OpenStack(details);
    resource
}

/// Maps one project's listings to resources with every real reference, guard and detail. Pure.
pub(super) fn resources(cloud: &str, project: &str, listings: &Listings) -> Vec<Resource> {
    let key = |kind: Kind, id: &str| ResourceKey::new(cloud, kind, id);
    let other_project = |common: Common<'_>| common.owner.is_some_and(|owner| owner != project);
    let mut out = Vec::new();

    // Networks and subnets: external and shared ones are never touched.
    let mut guarded_networks: HashMap<&str, Guard> = HashMap::new();
    for item in &listings.networks {
        let common = item.common();
        let mut r = base(cloud, Kind::Network, common, OpenStackDetails::Plain);
        r.guard = if item.external {
            Some(Guard::ExternalNetwork)
        } else if item.shared {
            Some(Guard::SharedNetwork)
        } else if other_project(common) {
            Some(Guard::OtherProject)
        } else {
            None
        };
        if let Some(guard) = r.guard {
            guarded_networks.insert(&item.id, guard);
        }
        out.push(r);
    }
    for item in &listings.subnets {
        let common = item.common();
        let mut r = base(cloud, Kind::Subnet, common, OpenStackDetails::Plain);
        if let Some(network) = &item.network_id {
            r.guard = guarded_networks.get(network.as_str()).copied();
            r.references.push(key(Kind::Network, network));
        }
        if other_project(common) {
            r.guard = Some(Guard::OtherProject);
        }
        out.push(r);
    }

    // Routers first: their interfaces inherit their selection-relevant fields.
    let mut router_at: HashMap<&str, usize> = HashMap::new();
    for item in &listings.routers {
        let common = item.common();
        let details = OpenStackDetails::Router {
            // The gateway is cleared before the delete; the external network itself is never deleted.
            gateway_network_id: item
                .external_gateway_info
                .as_ref()
                .and_then(|gateway| gateway.network_id.clone()),
            routes: item.routes,
        };
        let mut r = base(cloud, Kind::Router, common, details);
        if other_project(common) {
            r.guard = Some(Guard::OtherProject);
        }
        router_at.insert(&item.id, out.len());
        out.push(r);
    }

    // Load balancers: Octavia deletes their listeners, pools, members and health monitors with
    // them (cascade), then their VIP port.
    for item in &listings.load_balancers {
        let common = item.common();
        let mut r = base(cloud, Kind::LoadBalancer, common, OpenStackDetails::Plain);
        r.status = item.provisioning_status.clone();
        r.references
            .extend(item.vip_subnet_id.iter().map(|s| key(Kind::Subnet, s)));
        r.references
            .extend(item.vip_network_id.iter().map(|n| key(Kind::Network, n)));
        if other_project(common) {
            r.guard = Some(Guard::OtherProject);
        }
        out.push(r);
    }

    // Each router's interfaces, with the subnets each is on.
    let mut interfaces_of_router: HashMap<&str, Vec<(ResourceKey, Vec<&str>)>> = HashMap::new();
    for item in &listings.ports {
        let owner = item.device_owner.as_deref().unwrap_or_default();
        if OWNER_MANAGED_PREFIXES.iter().any(|p| owner.starts_with(p))
            || (owner == OCTAVIA_OWNER && vip_port_owner(item).is_none())
        {
            continue;
        }
        let common = item.common();
        let mut r = if ROUTER_INTERFACE_OWNERS.contains(&owner) {
            let Some(router_id) = item.device_id.as_deref() else {
                continue;
            };
            let details = OpenStackDetails::RouterInterface {
                router_id: router_id.to_string(),
            };
            let mut r = base(cloud, Kind::RouterInterface, common, details);
            // An interface is the router's: it is selected when the router is.
            if let Some(router) = router_at.get(router_id).map(|&at| &out[at]) {
                r.tags = router.tags.clone();
                r.created = router.created.or(r.created);
                r.name = format!("{} (interface)", router.name);
                r.guard = router.guard;
            } else {
                r.tags.clear();
            }
            r.references.push(key(Kind::Router, router_id));
            interfaces_of_router
                .entry(router_id)
                .or_default()
                .push((r.key.clone(), subnets_of(item)));
            r
        } else {
            let details = OpenStackDetails::Port {
                device_owner: item.device_owner.clone(),
            };
            let mut r = base(cloud, Kind::Port, common, details);
            r.references
                .extend(item.security_groups.iter().map(|sg| key(Kind::SecurityGroup, sg)));
            if item.status == "DOWN" && item.device_id.is_none() && item.device_owner.is_none() {
                r.leak = Some(LeakSign::PortWithoutDevice);
            }
            if let Some(device) = item
                .device_id
                .as_deref()
                .filter(|_| owner.starts_with("compute:"))
            {
                let server = key(Kind::Server, device);
                r.used_by.push(server.clone());
                // Nova removes the ports it created with the server (and unbinds the others).
                r.removal = Removal::WithOwner(server);
            }
            if let Some(load_balancer) = vip_port_owner(item) {
                let load_balancer = key(Kind::LoadBalancer, load_balancer);
                r.used_by.push(load_balancer.clone());
                r.removal = Removal::WithOwner(load_balancer);
            }
            r
        };
        r.references.extend(
            item.fixed_ips
                .iter()
                .filter_map(|ip| ip.subnet_id.as_deref())
                .map(|subnet| key(Kind::Subnet, subnet)),
        );
        r.references
            .extend(item.network_id.iter().map(|n| key(Kind::Network, n)));
        if other_project(common) {
            r.guard = Some(Guard::OtherProject);
        }
        out.push(r);
    }

    let port_subnets: HashMap<&str, Vec<&str>> = listings
        .ports
        .iter()
        .map(|port| (port.id.as_str(), subnets_of(port)))
        .collect();
    for item in &listings.floating_ips {
        let common = item.common();
        let mut r = base(cloud, Kind::FloatingIp, common, OpenStackDetails::Plain);
        r.name = item.floating_ip_address.clone().unwrap_or_default();
        match &item.port_id {
            Some(port) => r.references.push(key(Kind::Port, port)),
            None => r.leak = Some(LeakSign::FloatingIpWithoutPort),
        }
        if let Some(router) = &item.router_id {
            // RouterInterfaceInUseByFloatingIP: the FIP must go before the interface that joins its
            // port's subnet to the router; before every interface of the router when that port is
            // not listed.
            let on_port = item.port_id.as_deref().and_then(|port| port_subnets.get(port));
            let interfaces = interfaces_of_router.get(router.as_str()).into_iter().flatten();
            r.references.extend(
                interfaces
                    .filter(|(_, subnets)| {
                        on_port.is_none_or(|wanted| subnets.iter().any(|s| wanted.contains(s)))
                    })
                    .map(|(interface, _)| interface.clone()),
            );
            r.references.push(key(Kind::Router, router));
        }
        if other_project(common) {
            r.guard = Some(Guard::OtherProject);
        }
        out.push(r);
    }

    for item in &listings.security_groups {
        let common = item.common();
        let mut r = base(cloud, Kind::SecurityGroup, common, OpenStackDetails::Plain);
        if r.name == "default" {
            r.guard = Some(Guard::DefaultSecurityGroup);
        } else if other_project(common) {
            r.guard = Some(Guard::OtherProject);
        }
        out.push(r);
    }

    for item in &listings.servers {
        let common = item.common();
        let details = OpenStackDetails::Server { locked: item.locked };
        let mut r = base(cloud, Kind::Server, common, details);
        if let Some(key_name) = &item.key_name {
            r.references.push(key(Kind::Keypair, key_name));
        }
        r.references.extend(
            item.volumes_attached
                .iter()
                .filter_map(|volume| volume.id.as_deref())
                .map(|volume| key(Kind::Volume, volume)),
        );
        if other_project(common) {
            r.guard = Some(Guard::OtherProject);
        }
        out.push(r);
    }

    for KeypairEntry { keypair } in &listings.keypairs {
        let mut r = Resource::new(key(Kind::Keypair, &keypair.name), keypair.name.clone());
        r.details = Details::OpenStack(OpenStackDetails::Plain);
        r.taggable = false;
        r.created = keypair.created_at;
        out.push(r);
    }
    for item in &listings.server_groups {
        let mut r = base(cloud, Kind::ServerGroup, item.common(), OpenStackDetails::Plain);
        r.taggable = false;
        r.used_by = item
            .members
            .iter()
            .map(|server| key(Kind::Server, server))
            .collect();
        out.push(r);
    }

    for item in &listings.volumes {
        let mut r = base(cloud, Kind::Volume, item.common(), OpenStackDetails::Plain);
        r.tags = metadata_tags(&item.metadata);
        r.used_by = item
            .attachments
            .iter()
            .filter_map(|attachment| attachment.server_id.as_deref())
            .map(|server| key(Kind::Server, server))
            .collect();
        if item.status == "available" && item.attachments.is_empty() {
            r.leak = Some(LeakSign::VolumeWithoutAttachment);
        }
        out.push(r);
    }
    for item in &listings.snapshots {
        let mut r = base(
            cloud,
            Kind::VolumeSnapshot,
            item.common(),
            OpenStackDetails::Plain,
        );
        r.tags = metadata_tags(&item.metadata);
        if let Some(volume) = &item.volume_id {
            r.references.push(key(Kind::Volume, volume));
        }
        out.push(r);
    }
    out
}

/// The subnets a port has addresses on.
fn subnets_of(port: &Port) -> Vec<&str> {
    port.fixed_ips
        .iter()
        .filter_map(|ip| ip.subnet_id.as_deref())
        .collect()
}

/// Cinder has no tags: a volume's or snapshot's metadata keys and values stand in for them, so
/// `{"ci-job": "job-42"}` matches both tag `ci-job` and tag `job-42`.
fn metadata_tags(metadata: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut tags = BTreeSet::new();
    for (key, value) in metadata {
        tags.insert(key.clone());
        if !value.is_empty() {
            tags.insert(value.clone());
        }
    }
    tags.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items<T: DeserializeOwned>(json: &str) -> Vec<T> {
        serde_json::from_str(json).expect("valid items")
    }

    #[test]
    fn a_vip_port_is_removed_with_its_load_balancer_which_goes_before_what_it_uses() {
        let listings = Listings {
            load_balancers: items(
                r#"[{"id": "l1", "name": "ci-lb", "tags": ["ci-job"], "project_id": "demo",
                     "provisioning_status": "ERROR", "vip_port_id": "vip", "vip_subnet_id": "sn1",
                     "vip_network_id": "n1", "created_at": "2026-11-22T01:02:03"},
                    {"id": "l2", "project_id": "other", "provisioning_status": "ACTIVE"}]"#,
            ),
            ports: items(
                r#"[{"id": "vip", "device_owner": "Octavia", "device_id": "lb-l1", "status": "DOWN",
                     "network_id": "n1", "fixed_ips": [{"subnet_id": "sn1"}], "security_groups": ["sg1"],
                     "project_id": "demo"},
                    {"id": "amphora", "device_owner": "Octavia", "device_id": "c0ffee", "project_id": "demo"}]"#,
            ),
            ..Listings::default()
        };
        let resources = resources("sim", "demo", &listings);
        let find = |id: &str| resources.iter().find(|r| r.key.id == id);
        let lb = find("l1").expect("load balancer l1");
        assert_eq!(
            (lb.key.kind, lb.status.as_str(), lb.guard),
            (Kind::LoadBalancer, "ERROR", None)
        );
        assert_eq!(
            lb.references,
            vec![
                ResourceKey::new("sim", Kind::Subnet, "sn1"),
                ResourceKey::new("sim", Kind::Network, "n1")
            ]
        );
        assert_eq!(find("l2").and_then(|r| r.guard), Some(Guard::OtherProject));
        let vip = find("vip").expect("the VIP port");
        let owner = ResourceKey::new("sim", Kind::LoadBalancer, "l1");
        assert_eq!(vip.removal, Removal::WithOwner(owner.clone()));
        assert_eq!(vip.used_by, vec![owner]);
        assert_eq!(
            vip.references,
            vec![
                ResourceKey::new("sim", Kind::SecurityGroup, "sg1"),
                ResourceKey::new("sim", Kind::Subnet, "sn1"),
                ResourceKey::new("sim", Kind::Network, "n1"),
            ]
        );
        assert_eq!(vip.leak, None, "bound to its load balancer");
        assert_eq!(find("amphora"), None, "Octavia's other ports are its own");
    }

    /// The guard of each resource, by id.
    fn guards(resources: &[Resource]) -> HashMap<String, Option<Guard>> {
        resources.iter().map(|r| (r.key.id.clone(), r.guard)).collect()
    }

    #[test]
    fn external_and_shared_networks_with_their_subnets_the_default_group_and_other_projects_are_guarded() {
        let listings = Listings {
            networks: items(
                r#"[
                {"id": "public", "router:external": true, "shared": false, "project_id": "admin"},
                {"id": "shared", "router:external": false, "shared": true, "project_id": "other"},
                {"id": "theirs", "project_id": "other"},
                {"id": "ours", "project_id": "demo", "tenant_id": "demo"},
                {"id": "legacy", "tenant_id": "other"}
            ]"#,
            ),
            subnets: items(
                r#"[
                {"id": "public-subnet", "network_id": "public", "project_id": "admin"},
                {"id": "shared-subnet", "network_id": "shared", "project_id": "other"},
                {"id": "our-subnet-on-shared", "network_id": "shared", "project_id": "demo"},
                {"id": "our-subnet", "network_id": "ours", "project_id": "demo"}
            ]"#,
            ),
            security_groups: items(
                r#"[
                {"id": "sg-default", "name": "default", "project_id": "demo"},
                {"id": "sg-theirs", "name": "web", "project_id": "other"},
                {"id": "sg-ours", "name": "ci-sg", "project_id": "demo"}
            ]"#,
            ),
            ports: items(
                r#"[
                {"id": "port-theirs", "network_id": "ours", "project_id": "other"},
                {"id": "port-ours", "network_id": "shared", "project_id": "demo"}
            ]"#,
            ),
            ..Listings::default()
        };
        let guards = guards(&resources("sim", "demo", &listings));
        let expected: HashMap<String, Option<Guard>> = [
            ("public", Some(Guard::ExternalNetwork)),
            ("shared", Some(Guard::SharedNetwork)),
            ("theirs", Some(Guard::OtherProject)),
            ("ours", None),
            ("legacy", Some(Guard::OtherProject)),
            ("public-subnet", Some(Guard::OtherProject)),
            ("shared-subnet", Some(Guard::OtherProject)),
            ("our-subnet-on-shared", Some(Guard::SharedNetwork)),
            ("our-subnet", None),
            ("sg-default", Some(Guard::DefaultSecurityGroup)),
            ("sg-theirs", Some(Guard::OtherProject)),
            ("sg-ours", None),
            ("port-theirs", Some(Guard::OtherProject)),
            ("port-ours", None),
        ]
        .into_iter()
        .map(|(id, guard)| (id.to_string(), guard))
        .collect();
        assert_eq!(guards, expected);
    }

    #[test]
    fn a_subnet_of_our_own_external_network_is_guarded_as_external() {
        let listings = Listings {
            networks: items(r#"[{"id": "ext", "router:external": true, "project_id": "demo"}]"#),
            subnets: items(r#"[{"id": "ext-subnet", "network_id": "ext", "project_id": "demo"}]"#),
            ..Listings::default()
        };
        let guards = guards(&resources("sim", "demo", &listings));
        assert_eq!(guards.get("ext"), Some(&Some(Guard::ExternalNetwork)));
        assert_eq!(guards.get("ext-subnet"), Some(&Some(Guard::ExternalNetwork)));
    }

    #[test]
    fn routers_and_their_interfaces_carry_typed_details_and_owner_managed_ports_are_left_out() {
        let listings = Listings {
            routers: items(
                r#"[{"id": "r1", "name": "ci-router", "tags": ["ci-job"], "project_id": "demo",
                     "external_gateway_info": {"network_id": "public"}, "routes": [{"destination": "10.1.0.0/16"}]},
                    {"id": "r2", "project_id": "demo", "external_gateway_info": null, "routes": []}]"#,
            ),
            ports: items(
                r#"[{"id": "ri1", "device_owner": "network:router_interface", "device_id": "r1",
                     "fixed_ips": [{"subnet_id": "sn1"}], "network_id": "n1", "project_id": "demo"},
                    {"id": "gw1", "device_owner": "network:router_gateway", "device_id": "r1"},
                    {"id": "p1", "device_owner": "compute:nova", "device_id": "s1", "security_groups": ["sg1"]}]"#,
            ),
            ..Listings::default()
        };
        let resources = resources("sim", "demo", &listings);
        let find = |id: &str| resources.iter().find(|r| r.key.id == id);
        let router = find("r1").expect("router r1");
        assert_eq!(
            router.details,
            Details::OpenStack(OpenStackDetails::Router {
                gateway_network_id: Some("public".into()),
                routes: 1
            })
        );
        assert_eq!(
            find("r2").map(|r| &r.details),
            Some(&Details::OpenStack(OpenStackDetails::Router {
                gateway_network_id: None,
                routes: 0
            }))
        );
        let interface = find("ri1").expect("interface ri1");
        assert_eq!(interface.key.kind, Kind::RouterInterface);
        assert_eq!(
            interface.details,
            Details::OpenStack(OpenStackDetails::RouterInterface {
                router_id: "r1".into()
            })
        );
        assert_eq!(
            (interface.name.as_str(), interface.tags.as_slice()),
            ("ci-router (interface)", ["ci-job".to_string()].as_slice())
        );
        assert_eq!(
            interface.references,
            vec![
                ResourceKey::new("sim", Kind::Router, "r1"),
                ResourceKey::new("sim", Kind::Subnet, "sn1"),
                ResourceKey::new("sim", Kind::Network, "n1"),
            ]
        );
        assert_eq!(find("gw1"), None, "the router removes its gateway port");
        let port = find("p1").expect("port p1");
        assert_eq!(
            port.removal,
            Removal::WithOwner(ResourceKey::new("sim", Kind::Server, "s1"))
        );
        assert_eq!(
            port.details,
            Details::OpenStack(OpenStackDetails::Port {
                device_owner: Some("compute:nova".into())
            })
        );
    }

    /// Found by the property tests: a floating IP held every interface of its router, though
    /// Neutron refuses to remove only the one its port's subnet needs.
    #[test]
    fn a_floating_ip_holds_the_router_interface_its_port_needs_and_no_other() {
        let listings = Listings {
            routers: items(r#"[{"id": "r1", "project_id": "demo"}]"#),
            ports: items(
                r#"[{"id": "ri1", "device_owner": "network:router_interface", "device_id": "r1",
                     "fixed_ips": [{"subnet_id": "sn1"}], "network_id": "n1"},
                    {"id": "ri2", "device_owner": "network:router_interface", "device_id": "r1",
                     "fixed_ips": [{"subnet_id": "sn2"}], "network_id": "n2"},
                    {"id": "p1", "fixed_ips": [{"subnet_id": "sn1"}], "network_id": "n1"}]"#,
            ),
            floating_ips: items(
                r#"[{"id": "f1", "port_id": "p1", "router_id": "r1"},
                    {"id": "f2", "port_id": "not-listed", "router_id": "r1"}]"#,
            ),
            ..Listings::default()
        };
        let resources = resources("sim", "demo", &listings);
        let references = |id: &str| -> Vec<String> {
            let fip = resources.iter().find(|r| r.key.id == id).expect("listed");
            fip.references.iter().map(ToString::to_string).collect()
        };
        assert_eq!(references("f1"), ["port p1", "router_interface ri1", "router r1"]);
        assert_eq!(
            references("f2"),
            [
                "port not-listed",
                "router_interface ri1",
                "router_interface ri2",
                "router r1"
            ],
            "a port it cannot see: every interface, to be safe"
        );
    }

    #[test]
    fn floating_ips_without_a_port_ports_down_without_a_device_and_idle_volumes_look_leaked() {
        let listings = Listings {
            floating_ips: items(
                r#"[{"id": "fip-idle", "port_id": null, "project_id": "demo"},
                    {"id": "fip-used", "port_id": "p-used", "project_id": "demo"}]"#,
            ),
            ports: items(
                r#"[{"id": "p-idle", "status": "DOWN", "device_id": "", "device_owner": "", "project_id": "demo"},
                    {"id": "p-used", "status": "ACTIVE", "device_id": "s1", "device_owner": "compute:nova"},
                    {"id": "p-down-bound", "status": "DOWN", "device_id": "s2", "device_owner": "compute:nova"},
                    {"id": "p-build", "status": "BUILD", "device_id": ""}]"#,
            ),
            volumes: items(
                r#"[{"id": "v-idle", "status": "available", "attachments": []},
                    {"id": "v-used", "status": "in-use", "attachments": [{"server_id": "s1"}]},
                    {"id": "v-error", "status": "error", "attachments": []}]"#,
            ),
            ..Listings::default()
        };
        let signs: HashMap<String, Option<LeakSign>> = resources("sim", "demo", &listings)
            .into_iter()
            .map(|r| (r.key.id, r.leak))
            .collect();
        let expected: HashMap<String, Option<LeakSign>> = [
            ("fip-idle", Some(LeakSign::FloatingIpWithoutPort)),
            ("fip-used", None),
            ("p-idle", Some(LeakSign::PortWithoutDevice)),
            ("p-used", None),
            ("p-down-bound", None),
            ("p-build", None),
            ("v-idle", Some(LeakSign::VolumeWithoutAttachment)),
            ("v-used", None),
            ("v-error", None),
        ]
        .into_iter()
        .map(|(id, sign)| (id.to_string(), sign))
        .collect();
        assert_eq!(signs, expected);
    }

    #[test]
    fn cinder_metadata_keys_and_values_stand_in_for_tags() {
        let listings = Listings {
            volumes: items(
                r#"[{"id": "v1", "metadata": {"ci-job": "job-42", "empty": ""}, "attachments": [{"server_id": "s1"}]}]"#,
            ),
            ..Listings::default()
        };
        let resources = resources("sim", "demo", &listings);
        assert_eq!(resources[0].tags, vec!["ci-job", "empty", "job-42"]);
        assert_eq!(
            resources[0].used_by,
            vec![ResourceKey::new("sim", Kind::Server, "s1")]
        );
    }
}
