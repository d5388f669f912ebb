//! The OpenStack provider: discovers Nova, Neutron and Cinder resources of one project, maps their
//! JSON to the provider-agnostic model with every real reference, and deletes them.
//!
//! Which listings are filtered by tag on the server: servers and floating IPs, because nothing else
//! refers to them, so an unlisted one can still be seen as a user through what it uses (a port's
//! `device_id`, a volume's attachments). Everything that others use (ports, subnets, networks,
//! security groups, routers, volumes) is listed whole for the project, so an untagged user is never
//! missed. Every listing is scoped to the token's project on the server side.

mod config;
mod details;
mod discover;
mod session;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::json;

pub use config::{resolve, AuthMethod, Credentials, Identifier, OpenStackSettings};
pub use details::OpenStackDetails;
pub use session::{classify, Service};

use self::session::Session;
use crate::metrics::Metrics;
use crate::model::{DeleteOutcome, Kind, Observed, Resource};
use crate::provider::http::{ApiClient, TlsTrust};
use crate::provider::{Provider, ProviderError};

/// Tags the selection rules require, passed down so servers and floating IPs can be filtered on the
/// server side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagFilter {
    pub all: Vec<String>,
    pub any: Vec<String>,
}

/// One OpenStack cloud (one project).
pub struct OpenStackProvider {
    cloud: String,
    session: Session,
    filter: TagFilter,
    page_size: u32,
}

impl OpenStackProvider {
    /// Resolves credentials (clouds.yaml or `OS_*` from `env`) and prepares the HTTP client; no
    /// request is made until the first pass.
    pub fn new(
        cloud: &str,
        settings: &OpenStackSettings,
        filter: TagFilter,
        metrics: Arc<Metrics>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ProviderError> {
        let credentials = resolve(settings, env)
            .map_err(|error| ProviderError::Config(format!("cloud {cloud}: {error}")))?;
        let trust = match (&credentials.ca_file, credentials.insecure) {
            (_, true) => TlsTrust::InsecureSkipVerify,
            (Some(file), false) => TlsTrust::CaFile(file.clone()),
            (None, false) => TlsTrust::BundledRoots,
        };
        let client = ApiClient::new(cloud, metrics, &trust, settings.request_timeout)?
            .with_rate_limit(settings.max_requests_per_second);
        Ok(OpenStackProvider {
            cloud: cloud.to_string(),
            session: Session::new(client, credentials),
            filter,
            page_size: settings.page_size,
        })
    }

    fn service_of(kind: Kind) -> Service {
        match kind {
            Kind::Server | Kind::Keypair | Kind::ServerGroup => Service::Compute,
            Kind::Volume | Kind::VolumeSnapshot => Service::BlockStorage,
            _ => Service::Network,
        }
    }

    /// The resource's own URL, relative to its service endpoint.
    fn path_of(resource: &Resource) -> Result<String, ProviderError> {
        let id = &resource.key.id;
        Ok(match resource.key.kind {
            Kind::Server => format!("/servers/{id}"),
            Kind::Keypair => format!("/os-keypairs/{id}"),
            Kind::ServerGroup => format!("/os-server-groups/{id}"),
            Kind::Volume => format!("/volumes/{id}"),
            Kind::VolumeSnapshot => format!("/snapshots/{id}"),
            Kind::FloatingIp => format!("/floatingips/{id}"),
            // A router interface is its port.
            Kind::Port | Kind::RouterInterface => format!("/ports/{id}"),
            Kind::Router => format!("/routers/{id}"),
            Kind::Subnet => format!("/subnets/{id}"),
            Kind::Network => format!("/networks/{id}"),
            Kind::SecurityGroup => format!("/security-groups/{id}"),
            Kind::Vm | Kind::Container | Kind::Disk => {
                return Err(ProviderError::Config(format!(
                    "{} is not an OpenStack resource",
                    resource.key
                )))
            }
        })
    }
}

#[async_trait]
impl Provider for OpenStackProvider {
    fn cloud(&self) -> &str {
        &self.cloud
    }

    fn provider_type(&self) -> &'static str {
        "openstack"
    }

    async fn discover(&self) -> Result<Vec<Resource>, ProviderError> {
        discover::discover(self).await
    }

    async fn observe(&self, resource: &Resource) -> Result<Observed, ProviderError> {
        OpenStackDetails::of(resource)?;
        let service = Self::service_of(resource.key.kind);
        let value = match self.session.get_json(service, &Self::path_of(resource)?).await {
            Ok(value) => value,
            Err(error) if error.class() == crate::provider::ErrorClass::NotFound => {
                return Ok(Observed::Gone)
            }
            Err(error) => return Err(error),
        };
        Ok(discover::observed_state(resource, &value))
    }

    async fn delete(&self, resource: &Resource) -> Result<DeleteOutcome, ProviderError> {
        let details = OpenStackDetails::of(resource)?;
        let service = Self::service_of(resource.key.kind);
        let not_found_is_done = |result: Result<_, ProviderError>| match result {
            Err(error) if error.class() == crate::provider::ErrorClass::NotFound => Ok(()),
            Err(error) => Err(error),
            Ok(_) => Ok(()),
        };
        match (resource.key.kind, details) {
            (Kind::RouterInterface, OpenStackDetails::RouterInterface { router_id }) => {
                // Never DELETE a router interface port (409 ServicePortInUse): detach it from its router.
                let body = json!({ "port_id": resource.key.id });
                let path = format!("/routers/{router_id}/remove_router_interface");
                not_found_is_done(
                    self.session
                        .call(Service::Network, Method::PUT, &path, Some(&body))
                        .await,
                )?;
                Ok(DeleteOutcome::Completed)
            }
            (
                Kind::Router,
                OpenStackDetails::Router {
                    gateway_network_id,
                    routes,
                },
            ) => {
                // A gateway and extra routes hold a router: clear them first.
                let path = Self::path_of(resource)?;
                if gateway_network_id.is_some() || *routes > 0 {
                    let body = json!({"router": {"external_gateway_info": {}, "routes": []}});
                    not_found_is_done(
                        self.session
                            .call(Service::Network, Method::PUT, &path, Some(&body))
                            .await,
                    )?;
                }
                not_found_is_done(self.session.call(service, Method::DELETE, &path, None).await)?;
                Ok(DeleteOutcome::Completed)
            }
            (Kind::RouterInterface, _) => Err(ProviderError::unexpected_details(
                resource,
                "OpenStack router interface",
            )),
            (Kind::Router, _) => Err(ProviderError::unexpected_details(resource, "OpenStack router")),
            (kind, _) => {
                let path = Self::path_of(resource)?;
                not_found_is_done(self.session.call(service, Method::DELETE, &path, None).await)?;
                Ok(match kind {
                    // Nova and Cinder complete deletes asynchronously: poll until 404.
                    Kind::Server | Kind::Volume | Kind::VolumeSnapshot => DeleteOutcome::Accepted,
                    _ => DeleteOutcome::Completed,
                })
            }
        }
    }
}
