//! OpenStack listings (paginated, project-scoped, tag-filtered where safe) and the mapping of vendor
//! JSON to [`Resource`]s with their references; also the reading of one resource's status.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use super::session::Service;
use super::{OpenStackDetails, OpenStackProvider};
use crate::model::{Details, Guard, Kind, Observed, Removal, Resource, ResourceKey};
use crate::provider::ProviderError;

/// Device owners whose ports their owner removes (DHCP agent, floating IP, router gateway, DVR,
/// Octavia): never deleted directly, never leftovers of their own, so not modelled at all.
const OWNER_MANAGED_PREFIXES: [&str; 6] = [
    "network:dhcp",
    "network:floatingip",
    "network:router_gateway",
    "network:distributed",
    "network:router_ha_interface",
    "Octavia",
];
const ROUTER_INTERFACE_OWNERS: [&str; 3] = [
    "network:router_interface",
    "network:router_interface_distributed",
    "network:ha_router_replicated_interface",
];

fn text(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn required_id(value: &Value, what: &str, key: &str) -> Result<String, ProviderError> {
    text(value, key).ok_or_else(|| ProviderError::Decode {
        url: what.to_string(),
        message: format!("an item without `{key}`: {}", truncate(value)),
    })
}

fn truncate(value: &Value) -> String {
    value.to_string().chars().take(200).collect()
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// OpenStack timestamps come with or without a zone (`2026-11-22T01:02:03Z`, `...03.000000`).
fn timestamp(value: &Value, key: &str) -> Option<DateTime<Utc>> {
    let raw = value.get(key)?.as_str()?;
    if let Ok(parsed) = DateTime::parse_from_rfc3339(raw) {
        return Some(parsed.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
        .map(|naive| naive.and_utc())
}

fn joined_query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

impl OpenStackProvider {
    fn key(&self, kind: Kind, id: &str) -> ResourceKey {
        ResourceKey::new(self.cloud.clone(), kind, id)
    }

    /// Lists a whole collection, following `<collection>_links` next links (Nova, Neutron and Cinder
    /// all use that shape), with `limit` set to the configured page size.
    async fn list(
        &self,
        service: Service,
        path: &str,
        query: &str,
        collection: &str,
    ) -> Result<Vec<Value>, ProviderError> {
        let separator = if query.is_empty() { "" } else { "&" };
        let mut next = Some(format!("{path}?limit={}{separator}{query}", self.page_size));
        let mut items = Vec::new();
        let mut seen_pages = HashSet::new();
        while let Some(url) = next.take() {
            if !seen_pages.insert(url.clone()) {
                return Err(ProviderError::Decode {
                    url,
                    message: "pagination loops back to a page already read".into(),
                });
            }
            let page = self.session.get_json(service, &url).await?;
            let Some(batch) = page.get(collection).and_then(Value::as_array) else {
                return Err(ProviderError::Decode {
                    url,
                    message: format!("no `{collection}` list in the answer"),
                });
            };
            let batch_len = batch.len();
            items.extend(batch.iter().cloned());
            next = page
                .get(format!("{collection}_links"))
                .and_then(Value::as_array)
                .and_then(|links| {
                    links
                        .iter()
                        .find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))
                })
                .and_then(|l| l.get("href").and_then(Value::as_str))
                .filter(|_| batch_len > 0)
                .map(str::to_string);
        }
        Ok(items)
    }

    fn tag_query(&self) -> Vec<(&'static str, String)> {
        vec![
            ("tags", self.filter.all.join(",")),
            ("tags-any", self.filter.any.join(",")),
        ]
    }

    fn base_resource(&self, kind: Kind, item: &Value, what: &str) -> Result<Resource, ProviderError> {
        let id = required_id(item, what, "id")?;
        let mut resource = Resource::new(self.key(kind, &id), text(item, "name").unwrap_or_default());
        resource.tags = strings(item, "tags");
        resource.created = timestamp(item, "created_at").or_else(|| timestamp(item, "created"));
        resource.status = text(item, "status").unwrap_or_default();
        resource.details = Details::OpenStack(OpenStackDetails::Plain);
        Ok(resource)
    }
}

/// Discovers every resource of the project. Listings run concurrently; each is one paginated scan.
pub(super) async fn discover(provider: &OpenStackProvider) -> Result<Vec<Resource>, ProviderError> {
    let project = provider.session.project_id().await?;
    let scoped = format!("project_id={project}");
    let tagged = joined_query(&provider.tag_query());
    let fip_query = if tagged.is_empty() {
        scoped.clone()
    } else {
        format!("{scoped}&{tagged}")
    };
    let net = Service::Network;
    let (networks, subnets, ports, routers, floating_ips, security_groups) = futures::try_join!(
        provider.list(net, "/networks", &scoped, "networks"),
        provider.list(net, "/subnets", &scoped, "subnets"),
        provider.list(net, "/ports", &scoped, "ports"),
        provider.list(net, "/routers", &scoped, "routers"),
        provider.list(net, "/floatingips", &fip_query, "floatingips"),
        provider.list(net, "/security-groups", &scoped, "security_groups"),
    )?;
    let (servers, keypairs, server_groups) = futures::try_join!(
        provider.list(Service::Compute, "/servers/detail", &tagged, "servers"),
        provider.list(Service::Compute, "/os-keypairs", "", "keypairs"),
        provider.list(Service::Compute, "/os-server-groups", "", "server_groups"),
    )?;
    let (volumes, snapshots) = if provider.session.has(Service::BlockStorage).await? {
        futures::try_join!(
            provider.list(Service::BlockStorage, "/volumes/detail", "", "volumes"),
            provider.list(Service::BlockStorage, "/snapshots/detail", "", "snapshots"),
        )?
    } else {
        (Vec::new(), Vec::new())
    };

    let mut out = Vec::new();
    let other_project = |item: &Value| {
        let owner = text(item, "project_id").or_else(|| text(item, "tenant_id"));
        owner.is_some_and(|owner| owner != project)
    };

    // Networks and subnets: external and shared ones are never touched.
    let mut guarded_networks: HashMap<String, Guard> = HashMap::new();
    for item in &networks {
        let mut r = provider.base_resource(Kind::Network, item, "networks")?;
        if item.get("router:external").and_then(Value::as_bool) == Some(true) {
            r.guard = Some(Guard::ExternalNetwork);
        } else if item.get("shared").and_then(Value::as_bool) == Some(true) {
            r.guard = Some(Guard::SharedNetwork);
        } else if other_project(item) {
            r.guard = Some(Guard::OtherProject);
        }
        if let Some(guard) = r.guard {
            guarded_networks.insert(r.key.id.clone(), guard);
        }
        out.push(r);
    }
    for item in &subnets {
        let mut r = provider.base_resource(Kind::Subnet, item, "subnets")?;
        if let Some(network) = text(item, "network_id") {
            r.guard = guarded_networks.get(&network).copied();
            r.references.push(provider.key(Kind::Network, &network));
        }
        if other_project(item) {
            r.guard = Some(Guard::OtherProject);
        }
        out.push(r);
    }

    // Routers first: their interfaces inherit their selection-relevant fields.
    let mut router_by_id: HashMap<String, Resource> = HashMap::new();
    for item in &routers {
        let mut r = provider.base_resource(Kind::Router, item, "routers")?;
        r.details = Details::OpenStack(OpenStackDetails::Router {
            gateway_network_id: item
                .get("external_gateway_info")
                .and_then(|g| text(g, "network_id")),
            routes: item.get("routes").and_then(Value::as_array).map_or(0, Vec::len),
        });
        if other_project(item) {
            r.guard = Some(Guard::OtherProject);
        }
        router_by_id.insert(r.key.id.clone(), r.clone());
        out.push(r);
    }

    let mut interfaces_of_router: HashMap<String, Vec<ResourceKey>> = HashMap::new();
    for item in &ports {
        let owner = text(item, "device_owner").unwrap_or_default();
        if OWNER_MANAGED_PREFIXES.iter().any(|p| owner.starts_with(p)) {
            continue;
        }
        let id = required_id(item, "ports", "id")?;
        let network = text(item, "network_id");
        let subnets: Vec<String> = item
            .get("fixed_ips")
            .and_then(Value::as_array)
            .map(|ips| ips.iter().filter_map(|ip| text(ip, "subnet_id")).collect())
            .unwrap_or_default();
        let device = text(item, "device_id");
        let mut r = provider.base_resource(Kind::Port, item, "ports")?;
        if ROUTER_INTERFACE_OWNERS.contains(&owner.as_str()) {
            let Some(router_id) = device else { continue };
            r.key = provider.key(Kind::RouterInterface, &id);
            r.details = Details::OpenStack(OpenStackDetails::RouterInterface {
                router_id: router_id.clone(),
            });
            // An interface is the router's: it is selected when the router is.
            if let Some(router) = router_by_id.get(&router_id) {
                r.tags = router.tags.clone();
                r.created = router.created.or(r.created);
                r.name = format!("{} (interface)", router.name);
                r.guard = router.guard;
            } else {
                r.tags.clear();
            }
            r.references.push(provider.key(Kind::Router, &router_id));
            interfaces_of_router
                .entry(router_id)
                .or_default()
                .push(r.key.clone());
        } else {
            r.details = Details::OpenStack(OpenStackDetails::Port {
                device_owner: Some(owner.clone()).filter(|o| !o.is_empty()),
            });
            r.references.extend(
                strings(item, "security_groups")
                    .iter()
                    .map(|sg| provider.key(Kind::SecurityGroup, sg)),
            );
            if let Some(device) = device.filter(|_| owner.starts_with("compute:")) {
                let server = provider.key(Kind::Server, &device);
                r.used_by.push(server.clone());
                // Nova removes the ports it created with the server (and unbinds the others).
                r.removal = Removal::WithOwner(server);
            }
        }
        r.references
            .extend(subnets.iter().map(|s| provider.key(Kind::Subnet, s)));
        r.references
            .extend(network.iter().map(|n| provider.key(Kind::Network, n)));
        if other_project(item) {
            r.guard = Some(Guard::OtherProject);
        }
        out.push(r);
    }

    for item in &floating_ips {
        let mut r = provider.base_resource(Kind::FloatingIp, item, "floatingips")?;
        r.name = text(item, "floating_ip_address").unwrap_or_default();
        if let Some(port) = text(item, "port_id") {
            r.references.push(provider.key(Kind::Port, &port));
        }
        if let Some(router) = text(item, "router_id") {
            // RouterInterfaceInUseByFloatingIP: the FIP must go before its router's interfaces.
            r.references
                .extend(interfaces_of_router.get(&router).cloned().unwrap_or_default());
            r.references.push(provider.key(Kind::Router, &router));
        }
        if other_project(item) {
            r.guard = Some(Guard::OtherProject);
        }
        out.push(r);
    }

    for item in &security_groups {
        let mut r = provider.base_resource(Kind::SecurityGroup, item, "security_groups")?;
        if r.name == "default" {
            r.guard = Some(Guard::DefaultSecurityGroup);
        } else if other_project(item) {
            r.guard = Some(Guard::OtherProject);
        }
        out.push(r);
    }

    for item in &servers {
        let mut r = provider.base_resource(Kind::Server, item, "servers")?;
        if let Some(key_name) = text(item, "key_name") {
            r.references.push(provider.key(Kind::Keypair, &key_name));
        }
        if let Some(volumes) = item
            .get("os-extended-volumes:volumes_attached")
            .and_then(Value::as_array)
        {
            r.references.extend(
                volumes
                    .iter()
                    .filter_map(|v| text(v, "id"))
                    .map(|v| provider.key(Kind::Volume, &v)),
            );
        }
        if other_project(item) {
            r.guard = Some(Guard::OtherProject);
        }
        r.details = Details::OpenStack(OpenStackDetails::Server {
            locked: item.get("locked").and_then(Value::as_bool).unwrap_or(false),
        });
        out.push(r);
    }

    for entry in &keypairs {
        // `{"keypairs": [{"keypair": {...}}]}`; keypairs are named, not id'd, and carry no tags.
        let item = entry.get("keypair").unwrap_or(entry);
        let name = required_id(item, "os-keypairs", "name")?;
        let mut r = Resource::new(provider.key(Kind::Keypair, &name), name.clone());
        r.details = Details::OpenStack(OpenStackDetails::Plain);
        r.taggable = false;
        r.created = timestamp(item, "created_at");
        out.push(r);
    }
    for item in &server_groups {
        let mut r = provider.base_resource(Kind::ServerGroup, item, "os-server-groups")?;
        r.taggable = false;
        r.used_by = strings(item, "members")
            .iter()
            .map(|s| provider.key(Kind::Server, s))
            .collect();
        out.push(r);
    }

    for item in &volumes {
        let mut r = provider.base_resource(Kind::Volume, item, "volumes")?;
        r.tags = metadata_tags(item);
        if let Some(attachments) = item.get("attachments").and_then(Value::as_array) {
            r.used_by = attachments
                .iter()
                .filter_map(|a| text(a, "server_id"))
                .map(|s| provider.key(Kind::Server, &s))
                .collect();
        }
        out.push(r);
    }
    for item in &snapshots {
        let mut r = provider.base_resource(Kind::VolumeSnapshot, item, "snapshots")?;
        r.tags = metadata_tags(item);
        if let Some(volume) = text(item, "volume_id") {
            r.references.push(provider.key(Kind::Volume, &volume));
        }
        out.push(r);
    }
    Ok(out)
}

/// Cinder has no tags: a volume's or snapshot's metadata keys and values stand in for them, so
/// `{"ci-job": "job-42"}` matches both tag `ci-job` and tag `job-42`.
fn metadata_tags(item: &Value) -> Vec<String> {
    let Some(metadata) = item.get("metadata").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut tags = BTreeMap::new();
    for (key, value) in metadata {
        tags.insert(key.clone(), ());
        if let Some(value) = value.as_str().filter(|v| !v.is_empty()) {
            tags.insert(value.to_string(), ());
        }
    }
    tags.into_keys().collect()
}

/// Maps a single-resource GET to an [`Observed`] state. An empty or missing status is "busy", never
/// ready and never gone.
pub(super) fn observed_state(resource: &Resource, body: &Value) -> Observed {
    let item = body.as_object().and_then(|o| o.values().next()).unwrap_or(body);
    let status = text(item, "status").unwrap_or_default();
    let lower = status.to_ascii_lowercase();
    match resource.key.kind {
        Kind::Server => {
            let task = text(item, "OS-EXT-STS:task_state");
            if item.get("locked").and_then(Value::as_bool) == Some(true) {
                Observed::Busy("locked".into())
            } else if lower == "deleted" || lower == "soft_deleted" || task.as_deref() == Some("deleting") {
                Observed::Busy("deleting".into())
            } else if let Some(task) = task {
                Observed::Busy(format!("task {task}"))
            } else if status.is_empty() {
                Observed::Busy(String::new())
            } else {
                Observed::Ready
            }
        }
        Kind::Volume | Kind::VolumeSnapshot => match lower.as_str() {
            "available" | "error" | "error_restoring" | "error_extending" | "error_managing" => {
                Observed::Ready
            }
            "error_deleting" => Observed::Failed(format!("status {status}")),
            _ => Observed::Busy(status),
        },
        Kind::Port if matches!(resource.removal, Removal::WithOwner(_)) => {
            // Still bound to a server: Nova has not released it yet.
            match text(item, "device_id") {
                Some(device) if text(item, "device_owner").is_some_and(|o| o.starts_with("compute:")) => {
                    Observed::Busy(format!("bound to server {device}"))
                }
                _ => Observed::Ready,
            }
        }
        // Neutron's resources are deleted synchronously and have no transitional states that block it.
        _ => Observed::Ready,
    }
}
