//! The OpenStack provider: discovers Nova, Neutron, Cinder and Octavia resources of one project, maps
//! their JSON to the provider-agnostic model with every real reference, and deletes them.
//!
//! No listing is filtered by tag on the server: each is listed whole for the project (scoped to the
//! token's project on the server side), so an unselected user is never missed. Servers and floating
//! IPs too, though nothing refers to them: a server names its keypair and a floating IP its port
//! and router, and nothing on the keypair's, port's or router's side says so.

mod config;
mod details;
mod discover;
mod session;
mod states;
mod status;
mod wire;

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
use crate::policy::RetryPolicy;
use crate::provider::http::{ApiClient, ApiPath, TlsTrust};
use crate::provider::{BatchKey, ErrorClass, Provider, ProviderError};

/// One OpenStack cloud (one project).
pub struct OpenStackProvider {
    cloud: String,
    session: Session,
    page_size: u32,
}

impl OpenStackProvider {
    /// Resolves credentials (clouds.yaml or `OS_*` from `env`) and prepares the HTTP client; no
    /// request is made until the first pass.
    pub fn new(
        cloud: &str,
        settings: &OpenStackSettings,
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
            .with_rate_limit(settings.max_requests_per_second)
            .with_max_response_bytes(settings.max_response_bytes);
        Ok(OpenStackProvider {
            cloud: cloud.to_string(),
            session: Session::new(client, credentials),
            page_size: settings.page_size,
        })
    }

    /// Retries reads (list pages, status reads, token requests) by `policy`, the one the executor
    /// backs off deletes with.
    pub fn with_read_retry(mut self, policy: RetryPolicy) -> Self {
        self.session = self.session.with_read_retry(policy);
        self
    }

    fn service_of(kind: Kind) -> Service {
        match kind {
            Kind::Server | Kind::Keypair | Kind::ServerGroup => Service::Compute,
            Kind::Volume | Kind::VolumeSnapshot => Service::BlockStorage,
            Kind::LoadBalancer => Service::LoadBalancer,
            _ => Service::Network,
        }
    }

    /// The resource's own path, below its service endpoint.
    fn path_of(resource: &Resource) -> Result<ApiPath, ProviderError> {
        let id = resource.key.id.as_str();
        let collection = match resource.key.kind {
            Kind::LoadBalancer => return Ok(ApiPath::new(["lbaas", "loadbalancers", id])),
            Kind::Server => "servers",
            Kind::Keypair => "os-keypairs",
            Kind::ServerGroup => "os-server-groups",
            Kind::Volume => "volumes",
            Kind::VolumeSnapshot => "snapshots",
            Kind::FloatingIp => "floatingips",
            // A router interface is its port.
            Kind::Port | Kind::RouterInterface => "ports",
            Kind::Router => "routers",
            Kind::Subnet => "subnets",
            Kind::Network => "networks",
            Kind::SecurityGroup => "security-groups",
            Kind::Vm | Kind::Container | Kind::Disk => {
                return Err(ProviderError::Config(format!(
                    "{} is not an OpenStack resource",
                    resource.key
                )))
            }
        };
        Ok(ApiPath::new([collection, id]))
    }

    /// Sends `method` to `path` of `service`; a 404 means the work is done.
    async fn send_until_gone(
        &self,
        service: Service,
        method: Method,
        path: &ApiPath,
        body: Option<&serde_json::Value>,
    ) -> Result<(), ProviderError> {
        let url = self.session.url(service, path).await?;
        match self.session.call(service, method, &url, body).await {
            Ok(_) => Ok(()),
            Err(error) if error.class() == ErrorClass::NotFound => Ok(()),
            Err(error) => Err(error),
        }
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
        let url = self.session.url(service, &Self::path_of(resource)?).await?;
        match self.session.get(service, &url).await {
            Ok(response) => states::observed(resource, service, &url, &response.body),
            Err(error) if error.class() == ErrorClass::NotFound => Ok(Observed::Gone),
            Err(error) => Err(error),
        }
    }

    fn batch_key(&self, resource: &Resource) -> Option<BatchKey> {
        status::batch_key(resource.key.kind)
    }

    async fn observe_many(&self, batch: &[&Resource]) -> Vec<Result<Observed, ProviderError>> {
        self.observe_batch(batch).await
    }

    fn throttled(&self) -> u64 {
        self.session.throttled()
    }

    async fn delete(&self, resource: &Resource) -> Result<DeleteOutcome, ProviderError> {
        let details = OpenStackDetails::of(resource)?;
        let service = Self::service_of(resource.key.kind);
        let path = Self::path_of(resource)?;
        match (resource.key.kind, details) {
            (Kind::RouterInterface, OpenStackDetails::RouterInterface { router_id }) => {
                // Never DELETE a router interface port (409 ServicePortInUse): detach it from its router.
                let body = json!({ "port_id": resource.key.id });
                let detach = ApiPath::new(["routers", router_id.as_str(), "remove_router_interface"]);
                self.send_until_gone(Service::Network, Method::PUT, &detach, Some(&body))
                    .await?;
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
                if gateway_network_id.is_some() || *routes > 0 {
                    let body = json!({"router": {"external_gateway_info": {}, "routes": []}});
                    self.send_until_gone(Service::Network, Method::PUT, &path, Some(&body))
                        .await?;
                }
                self.send_until_gone(service, Method::DELETE, &path, None).await?;
                Ok(DeleteOutcome::Completed)
            }
            (Kind::LoadBalancer, _) => {
                // Octavia deletes listeners, pools, members and health monitors with it, then its VIP
                // port; asynchronously: PENDING_DELETE, then 404.
                let cascade = path.query("cascade", "true");
                self.send_until_gone(service, Method::DELETE, &cascade, None)
                    .await?;
                Ok(DeleteOutcome::Accepted)
            }
            (Kind::RouterInterface, _) => Err(ProviderError::unexpected_details(
                resource,
                "OpenStack router interface",
            )),
            (Kind::Router, _) => Err(ProviderError::unexpected_details(resource, "OpenStack router")),
            (kind, _) => {
                self.send_until_gone(service, Method::DELETE, &path, None).await?;
                Ok(match kind {
                    // Nova and Cinder complete deletes asynchronously: poll until 404.
                    Kind::Server | Kind::Volume | Kind::VolumeSnapshot => DeleteOutcome::Accepted,
                    _ => DeleteOutcome::Completed,
                })
            }
        }
    }
}
