//! Routers: the external gateway and its port, interfaces on subnets or given ports, and the 409s
//! for a router that still has interfaces or whose gateway or interface a floating IP needs.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_request, conflict, Changes, Resource, Standard};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{
    iso, new_id, Cloud, Ctx, Network, Port, Router, Subnet, OWNER_ROUTER_GATEWAY, OWNER_ROUTER_INTERFACE,
};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GatewayReq {
    pub network_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RouterReq {
    #[serde(flatten)]
    pub standard: Standard,
    pub admin_state_up: Option<bool>,
    pub external_gateway_info: Option<GatewayReq>,
}

/// What `add_router_interface` and `remove_router_interface` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interface {
    Subnet(String),
    Port(String),
}

impl RouterReq {
    /// A router with a gateway on `external_network_id`, when given.
    pub fn new(name: &str, external_network_id: Option<&str>, tags: Vec<String>) -> Self {
        RouterReq {
            standard: Standard::named(name, tags),
            external_gateway_info: external_network_id.map(|network_id| GatewayReq {
                network_id: Some(network_id.into()),
            }),
            ..RouterReq::default()
        }
    }
}

impl Resource for Router {
    const NOT_FOUND: (&'static str, &'static str) = ("RouterNotFound", "Router {id} could not be found.");
    const SINGULAR: &'static str = "router";
    const FILTERS: &'static str = "name status admin_state_up distributed ha";
    type Create = RouterReq;

    fn render(&self, cloud: &Cloud) -> Value {
        let gateway = self.gateway.as_ref().map(|(network_id, port_id)| {
            let fixed: Vec<Value> = cloud
                .ports
                .get(port_id)
                .map(|p| {
                    p.fixed_ips
                        .iter()
                        .map(|(s, ip)| json!({"subnet_id": s, "ip_address": ip}))
                        .collect()
                })
                .unwrap_or_default();
            json!({"network_id": network_id, "enable_snat": true, "external_fixed_ips": fixed})
        });
        json!({
            "id": self.id, "name": self.name, "description": self.description,
            "project_id": self.project_id, "tenant_id": self.project_id,
            "status": "ACTIVE", "admin_state_up": self.admin_state_up,
            "external_gateway_info": gateway, "routes": [],
            "distributed": false, "ha": false, "flavor_id": null,
            "availability_zone_hints": [], "availability_zones": ["nova"],
            "tags": self.tags, "created_at": iso(&self.created), "updated_at": iso(&self.updated),
            "revision_number": 3,
        })
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, req: RouterReq) -> Result<String, ApiError> {
        let project_id = req.standard.owner(ctx)?;
        let gateway_network = req.external_gateway_info.and_then(|g| g.network_id);
        if let Some(network_id) = &gateway_network {
            cloud.check_external(network_id)?;
        }
        let tags = req.standard.tags();
        let id = cloud.insert_new(|id, now| Router {
            id,
            name: req.standard.name,
            description: req.standard.description,
            project_id,
            gateway: None,
            admin_state_up: req.admin_state_up.unwrap_or(true),
            tags,
            created: now,
            updated: now,
        });
        if let Some(network_id) = gateway_network {
            cloud.set_router_gateway(ctx, &id, Some(&network_id))?;
        }
        Ok(id)
    }

    fn update(cloud: &mut Cloud, ctx: &Ctx, id: &str, changes: &Changes) -> Result<(), ApiError> {
        if let Some(gateway) = changes.get("external_gateway_info") {
            let network_id = gateway
                .get("network_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            cloud.set_router_gateway(ctx, id, network_id.as_deref())?;
        }
        let router = cloud.record_mut::<Router>(id)?;
        changes.rename(&mut router.name, &mut router.description, &mut router.updated);
        Ok(())
    }

    /// Deletes a router without interfaces, with its gateway port.
    fn delete(cloud: &mut Cloud, ctx: &Ctx, router_id: &str) -> Result<(), ApiError> {
        cloud.visible_or_404::<Router>(ctx, router_id)?;
        if cloud.router_interfaces(router_id).next().is_some() {
            return Err(conflict(
                "RouterInUse",
                format!("Router {router_id} still has ports"),
            ));
        }
        if let Some((_, gateway_port)) = cloud.routers.get(router_id).and_then(|r| r.gateway.clone()) {
            cloud.ports.remove(&gateway_port);
        }
        cloud.routers.remove(router_id);
        Ok(())
    }
}

impl Cloud {
    /// `Ok` for an external network; a 400 for another network, its 404 for none.
    pub(super) fn check_external(&self, network_id: &str) -> Result<(), ApiError> {
        match self.networks.get(network_id) {
            Some(network) if network.external => Ok(()),
            Some(_) => Err(bad_request(format!(
                "Bad router request: Network {network_id} is not a valid external network."
            ))),
            None => Err(Network::not_found(network_id)),
        }
    }

    /// Sets (`Some`) or clears (`None`) the router's external gateway and its gateway port.
    pub(crate) fn set_router_gateway(
        &mut self,
        ctx: &Ctx,
        router_id: &str,
        network_id: Option<&str>,
    ) -> Result<(), ApiError> {
        self.visible_or_404::<Router>(ctx, router_id)?;
        let current = self.routers.get(router_id).and_then(|r| r.gateway.clone());
        if current.as_ref().map(|(n, _)| n.as_str()) == network_id {
            return Ok(());
        }
        if let Some(network_id) = network_id {
            self.check_external(network_id)?;
        }
        if let Some((old_network, old_port)) = current {
            if self
                .floating_ips
                .values()
                .any(|f| f.router_id.as_deref() == Some(router_id))
            {
                return Err(conflict(
                    "RouterExternalGatewayInUseByFloatingIp",
                    format!(
                        "Gateway cannot be updated for router {router_id}, since a gateway to external network \
                         {old_network} is required by one or more floating IPs."
                    ),
                ));
            }
            self.ports.remove(&old_port);
            if let Some(router) = self.routers.get_mut(router_id) {
                router.gateway = None;
            }
        }
        if let Some(network_id) = network_id {
            let subnet_id = self
                .first_subnet(network_id)
                .map(|s| s.id.clone())
                .ok_or_else(|| {
                    bad_request(format!(
                        "Bad router request: No subnet on external network {network_id}."
                    ))
                })?;
            let ip = self.allocate_ip(&subnet_id, None)?;
            let port_id = new_id();
            // Gateway ports belong to no project, so members never list them.
            let mut port = self.new_port(&port_id, network_id, "", vec![(subnet_id, ip)]);
            port.device_owner = OWNER_ROUTER_GATEWAY.into();
            port.device_id = router_id.into();
            port.binding_host = "sim-network".into();
            self.ports.insert(port_id.clone(), port);
            if let Some(router) = self.routers.get_mut(router_id) {
                router.gateway = Some((network_id.to_string(), port_id));
                router.updated = Utc::now();
            }
        }
        Ok(())
    }

    /// What adding or removing an interface answers.
    fn interface_body(&self, router_id: &str, port_id: &str) -> Value {
        let router_project = self
            .routers
            .get(router_id)
            .map(|r| r.project_id.clone())
            .unwrap_or_default();
        let port = self.ports.get(port_id);
        let subnet_ids: Vec<String> = port
            .map(|p| p.fixed_ips.iter().map(|(s, _)| s.clone()).collect())
            .unwrap_or_default();
        json!({
            "id": router_id,
            "tenant_id": router_project,
            "project_id": router_project,
            "port_id": port_id,
            "network_id": port.map(|p| p.network_id.clone()),
            "subnet_id": subnet_ids.first(),
            "subnet_ids": subnet_ids,
        })
    }

    pub(crate) fn add_router_interface(
        &mut self,
        ctx: &Ctx,
        router_id: &str,
        interface: Interface,
    ) -> Result<Value, ApiError> {
        self.visible_or_404::<Router>(ctx, router_id)?;
        let router_project = self.record::<Router>(router_id)?.project_id.clone();
        let port_id = match interface {
            Interface::Subnet(subnet_id) => {
                self.visible_or_404::<Subnet>(ctx, &subnet_id)?;
                let subnet = self.record::<Subnet>(&subnet_id)?;
                let (network_id, gateway) = (subnet.network_id.clone(), subnet.gateway_ip.clone());
                let gateway = gateway.ok_or_else(|| {
                    bad_request("Bad router request: Subnet for router interface must have a gateway IP.")
                })?;
                if self
                    .router_interfaces(router_id)
                    .any(|p| p.fixed_ips.iter().any(|(s, _)| s == &subnet_id))
                {
                    return Err(bad_request(format!(
                        "Bad router request: Router already has a port on subnet {subnet_id}."
                    )));
                }
                let ip = self.allocate_ip(&subnet_id, Some(&gateway))?;
                let port_id = new_id();
                let mut port = self.new_port(&port_id, &network_id, &router_project, vec![(subnet_id, ip)]);
                port.device_owner = OWNER_ROUTER_INTERFACE.into();
                port.device_id = router_id.into();
                port.binding_host = "sim-network".into();
                self.ports.insert(port_id.clone(), port);
                port_id
            }
            Interface::Port(port_id) => {
                self.visible_or_404::<Port>(ctx, &port_id)?;
                let port = self.record_mut::<Port>(&port_id)?;
                if !port.device_id.is_empty() {
                    return Err(conflict(
                        "PortInUse",
                        format!(
                            "Unable to complete operation on port {port_id} for network {}. Port already has an \
                             attached device {}.",
                            port.network_id, port.device_id
                        ),
                    ));
                }
                if port.fixed_ips.is_empty() {
                    return Err(bad_request(
                        "Bad router request: Router port must have at least one fixed IP.",
                    ));
                }
                port.device_owner = OWNER_ROUTER_INTERFACE.into();
                port.device_id = router_id.into();
                port.security_groups.clear();
                port_id
            }
        };
        Ok(self.interface_body(router_id, &port_id))
    }

    pub(super) fn router_interfaces<'a>(&'a self, router_id: &'a str) -> impl Iterator<Item = &'a Port> + 'a {
        self.ports
            .values()
            .filter(move |p| p.device_id == router_id && p.device_owner.starts_with(OWNER_ROUTER_INTERFACE))
    }

    pub(crate) fn remove_router_interface(
        &mut self,
        ctx: &Ctx,
        router_id: &str,
        interface: Interface,
    ) -> Result<Value, ApiError> {
        self.visible_or_404::<Router>(ctx, router_id)?;
        let port = match &interface {
            Interface::Subnet(subnet_id) => {
                self.visible_or_404::<Subnet>(ctx, subnet_id)?;
                self.router_interfaces(router_id)
                    .find(|p| p.fixed_ips.iter().any(|(s, _)| s == subnet_id))
                    .ok_or_else(|| {
                        ApiError::neutron_not_found(
                            "RouterInterfaceNotFoundForSubnet",
                            format!("Router {router_id} has no interface on subnet {subnet_id}"),
                        )
                    })?
            }
            Interface::Port(port_id) => self
                .router_interfaces(router_id)
                .find(|p| &p.id == port_id)
                .ok_or_else(|| {
                    ApiError::neutron_not_found(
                        "RouterInterfaceNotFound",
                        format!("Router {router_id} does not have an interface with id {port_id}"),
                    )
                })?,
        };
        let port_id = port.id.clone();
        let subnets: Vec<String> = port.fixed_ips.iter().map(|(s, _)| s.clone()).collect();
        // A floating IP routed by this router to a port on one of these subnets needs the interface.
        for fip in self
            .floating_ips
            .values()
            .filter(|f| f.router_id.as_deref() == Some(router_id))
        {
            let target = fip.port_id.as_ref().and_then(|p| self.ports.get(p));
            if let Some(subnet_id) =
                target.and_then(|t| t.fixed_ips.iter().map(|(s, _)| s).find(|s| subnets.contains(s)))
            {
                return Err(conflict(
                    "RouterInterfaceInUseByFloatingIP",
                    format!(
                        "Router interface for subnet {subnet_id} on router {router_id} cannot be deleted, as it \
                         is required by one or more floating IPs."
                    ),
                ));
            }
        }
        let body = self.interface_body(router_id, &port_id);
        self.ports.remove(&port_id);
        Ok(body)
    }
}

/// What a router interface request body names: a subnet or a port, exactly one of them.
pub(super) fn interface_of(body: &Value) -> Result<Interface, ApiError> {
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    match (text("subnet_id"), text("port_id")) {
        (Some(_), Some(_)) => Err(bad_request(
            "Bad router request: Cannot specify both subnet-id and port-id.",
        )),
        (Some(subnet), None) => Ok(Interface::Subnet(subnet)),
        (None, Some(port)) => Ok(Interface::Port(port)),
        (None, None) => Err(bad_request(
            "Bad router request: Either subnet_id or port_id must be specified.",
        )),
    }
}
