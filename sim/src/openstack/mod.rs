//! A simulated OpenStack cloud (Keystone v3, Nova v2.1, Neutron v2.0, Cinder v3) on one HTTP
//! listener, with in-memory state that tests seed and inspect through [`OpenStackSim`].
//!
//! # URL layout
//! - `/identity` (versions; `/` answers the same), `/identity/v3`, `/identity/v3/auth/tokens`
//! - `/compute/v2.1/...` (Nova; microversions 2.1 to 2.96)
//! - `/network/v2.0/...` (Neutron; the catalog lists `/network`, discovered as v2.0)
//! - `/volume/v3/{project_id}/...` (Cinder; catalog types `block-storage` and `volumev3`)
//! - `/_sim/faults` (fault injection, see [`crate::faults`])
//!
//! # Credentials (domain `default`)
//! - `demo` / `demopass`, member of project `demo` (cloud `sim`)
//! - `admin` / `secret`, admin of project `admin` (cloud `sim-admin`)
//! - `other` / `otherpass`, member of project `other`, owner of the shared network (cloud `sim-other`)
//! - application credential of `demo`: see [`OpenStackSim::clouds_yaml`] (cloud `sim-appcred`)
//!
//! # What a fresh simulator holds
//! The external network `public` (project admin, 172.24.4.0/24), the network `shared` (project
//! other, `shared: true`, subnet `shared-subnet` 10.250.0.0/24) and project demo's `default` security
//! group, as on the real test stack (`tests/real-openstack`). [`OpenStackSim::seed_ci_leftovers`] adds
//! CI leftovers around them.
//!
//! # Where it knowingly differs from real OpenStack
//! (Measured against Keystone 30, Neutron 29, Nova 34 and Cinder 29 from PyPI: see
//! `tests/real-openstack/README.md`.)
//! - Servers are `ACTIVE` and volumes `available` at once (real: 3-4 s and 1 s), so there is no
//!   `BUILD` phase and no 409 "Cannot 'update tag' instance ... in vm_state building"; images and
//!   flavors are not checked.
//! - Deletes move on by the simulator's clock ([`crate::clock::SimClock`], which tests move with
//!   [`OpenStackSim::advance_clock`]), exactly: a server shows `ACTIVE`/`deleting` until 70 % of
//!   `server_delete_delay` (its volumes turn `available` at 50 %), then `DELETED` (its own ports gone,
//!   given ones unbound) until the full delay, then 404. Real Nova takes 1.0-1.3 s in all and drops
//!   the ports anywhere from a little before `DELETED` to just after the 404. Volumes and snapshots
//!   are gone `volume_delete_delay` after their DELETE; `error_deleting` happens only through
//!   [`OpenStackSim::fail_volume_delete`].
//! - No DHCP agent unless [`SimConfig::dhcp_agent`] (like the real test stack); with one, each network
//!   gets its `network:dhcp` port at once.
//! - Neutron sorts by id only and gives only `next` links (real also gives `previous` links after
//!   the first page); Nova and Cinder sort newest first. A marker must be in the filtered list (real
//!   Nova also accepts deleted or filtered-out markers).
//! - `revision_number` is fixed per kind (real Neutron counts every update: a network is 1 on create
//!   and 2 once it has a subnet; tags, fixed IPs and rules count too).
//! - Compute microversions stop at 2.96 (real: 2.104), so nothing of 2.97 on (e.g. `scheduler_hints`
//!   in server bodies from 2.100). The admin-only server attributes (`OS-EXT-SRV-ATTR:host`, ...) are
//!   fixed values.
//! - Router gateway and floating IP ports belong to no project, so members never list them.
//! - A member's DELETE of any port with `device_owner` `compute:*` answers 403.
//! - Unknown URLs answer 404 without checking the token; Cinder accepts any volume microversion.
//! - No quotas, no subnet overlap checks, no Cinder `cascade` delete or attachments API.

mod cinder;
mod errors;
mod keystone;
mod listing;
mod neutron;
mod nova;
mod seed;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::clock::SimClock;
use crate::faults::{self, Faults};
use errors::{ApiError, Service};
use state::{Cloud, Ctx};

pub use seed::{Seeded, SeededJob, Survivors, CI_TAG};

/// Timings of the simulated cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// How long a server takes from its DELETE to 404: `ACTIVE` with task_state `deleting` for the
    /// first 70 % (its volumes detached at 50 %), then status `DELETED` (its ports released).
    pub server_delete_delay: Duration,
    /// How long a volume or snapshot stays `deleting` after its DELETE before it is gone (404).
    pub volume_delete_delay: Duration,
    /// How long a token is accepted after it was issued; older tokens get 401 everywhere.
    pub token_ttl: Duration,
    /// Whether a DHCP agent runs, giving each network a `network:dhcp` port with its first DHCP
    /// subnet. Off by default, like the real test stack (`tests/real-openstack`), which runs none:
    /// there a network's ports are only those its users (or Nova, or routers) create.
    pub dhcp_agent: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            server_delete_delay: Duration::from_millis(300),
            volume_delete_delay: Duration::from_millis(300),
            token_ttl: Duration::from_secs(3600),
            dhcp_agent: false,
        }
    }
}

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

/// One served request: method, path with query, and answer status.
pub type LoggedRequest = (String, String, u16);

/// The state shared by the handle and every handler.
#[derive(Debug)]
pub(crate) struct Inner {
    /// `http://127.0.0.1:PORT`, the base of every link and catalog URL.
    pub(crate) url: String,
    /// The clock the cloud reads too; kept here so advancing it needs no lock.
    clock: SimClock,
    cloud: Mutex<Cloud>,
    faults: Faults,
    log: Mutex<Vec<LoggedRequest>>,
    shutdown: Notify,
}

impl Inner {
    /// The cloud, with every asynchronous delete that is due finished first.
    pub(crate) fn cloud(&self) -> MutexGuard<'_, Cloud> {
        // A handler that panicked left the cloud consistent enough for a simulator; keep serving.
        let mut cloud = self.cloud.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        cloud.reap(now);
        cloud
    }

    fn log(&self) -> MutexGuard<'_, Vec<LoggedRequest>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
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

/// A cheap, cloneable handle to a running simulator.
#[derive(Debug, Clone)]
pub struct OpenStackSim {
    inner: Arc<Inner>,
}

impl OpenStackSim {
    /// Binds `listen` (port 0 picks a free one), creates what every cloud has before any CI job runs
    /// (the external network `public` of project admin, the network `shared` that project `other`
    /// shares with everyone, project demo's `default` security group), and serves until
    /// [`OpenStackSim::shutdown`].
    pub async fn start(listen: SocketAddr, config: SimConfig) -> std::io::Result<OpenStackSim> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let clock = SimClock::new();
        let mut cloud = Cloud::new(
            clock.clone(),
            config.server_delete_delay,
            config.volume_delete_delay,
            config.token_ttl,
            config.dhcp_agent,
        );
        seed::ensure_public_network(&mut cloud)
            .map_err(|e| std::io::Error::other(format!("creating the public network: {e}")))?;
        seed::ensure_shared_network(&mut cloud)
            .map_err(|e| std::io::Error::other(format!("creating the shared network: {e}")))?;
        cloud.ensure_default_security_group(state::DEMO_PROJECT_ID);
        let inner = Arc::new(Inner {
            url: format!("http://{address}"),
            clock,
            cloud: Mutex::new(cloud),
            faults: Faults::default(),
            log: Mutex::new(Vec::new()),
            shutdown: Notify::new(),
        });
        let app = router(inner.clone());
        let serving = inner.clone();
        tokio::spawn(async move {
            let stop = async move { serving.shutdown.notified().await };
            if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                tracing::warn!(%error, "simulated OpenStack stopped serving");
            }
        });
        Ok(OpenStackSim { inner })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// The Keystone v3 URL, as `auth_url` in clouds.yaml.
    pub fn auth_url(&self) -> String {
        format!("{}/identity/v3", self.inner.url)
    }

    /// clouds.yaml with clouds `sim` (demo), `sim-admin`, `sim-other` and `sim-appcred` (demo's
    /// application credential).
    pub fn clouds_yaml(&self) -> String {
        let auth_url = self.auth_url();
        let password_cloud = |cloud: &str, user: &str, password: &str, project: &str| {
            format!(
                "  {cloud}:\n    auth:\n      auth_url: {auth_url}\n      username: {user}\n      password: {password}\n      \
                 project_name: {project}\n      user_domain_id: default\n      project_domain_id: default\n    \
                 region_name: RegionOne\n    interface: public\n    identity_api_version: 3\n"
            )
        };
        format!(
            "clouds:\n{}{}{}  sim-appcred:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: {auth_url}\n      \
             application_credential_id: {}\n      application_credential_secret: {}\n    region_name: RegionOne\n    \
             interface: public\n    identity_api_version: 3\n",
            password_cloud("sim", "demo", "demopass", "demo"),
            password_cloud("sim-admin", "admin", "secret", "admin"),
            password_cloud("sim-other", "other", "otherpass", "other"),
            keystone::APP_CRED_ID,
            keystone::APP_CRED_SECRET,
        )
    }

    /// The fault rules applied to every API request.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Stops accepting connections; requests in flight finish.
    pub fn shutdown(&self) {
        self.inner.shutdown.notify_one();
    }

    /// The clock every timed behaviour reads (deletes, token expiry).
    pub fn clock(&self) -> &SimClock {
        &self.inner.clock
    }

    /// Moves the simulator's clock forward by `by`, as if that much time had passed: a server deleted
    /// `server_delete_delay` ago answers 404 at the next request, a token older than `token_ttl` 401.
    pub fn advance_clock(&self, by: Duration) {
        self.inner.clock.advance(by);
    }

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

    /// Whether a resource exists (still `deleting` counts). Kinds: `server`, `port`, `network`,
    /// `subnet`, `router`, `floating_ip`, `security_group`, `security_group_rule`, `volume`,
    /// `volume_snapshot`, `keypair` (by name), `server_group`.
    pub fn exists(&self, kind: &str, id: &str) -> bool {
        self.inner.cloud().exists(kind, id)
    }

    /// How many resources of a kind exist in all projects (see [`OpenStackSim::exists`]).
    pub fn count(&self, kind: &str) -> usize {
        self.inner.cloud().count(kind)
    }

    /// Every request served so far, faults included, in order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.inner.log().clone()
    }

    /// Forgets the requests logged so far.
    pub fn clear_request_log(&self) {
        self.inner.log().clear();
    }

    /// The id of the network `shared` of project `other`.
    pub fn shared_network_id(&self) -> String {
        let cloud = self.inner.cloud();
        cloud
            .networks
            .values()
            .find(|n| n.shared && n.name == "shared")
            .map(|n| n.id.clone())
            .unwrap_or_default()
    }

    /// A server's status (`ACTIVE`, `SHUTOFF`, `DELETED` shortly before it is gone).
    pub fn server_status(&self, server_id: &str) -> Option<String> {
        self.inner
            .cloud()
            .servers
            .get(server_id)
            .map(|s| s.status.clone())
    }

    /// The id of the external network `public`.
    pub fn public_network_id(&self) -> String {
        let cloud = self.inner.cloud();
        cloud
            .networks
            .values()
            .find(|n| n.external && n.name == "public")
            .map(|n| n.id.clone())
            .unwrap_or_default()
    }

    /// Runs one operation as user `demo` in project `demo`.
    fn as_demo<T>(
        &self,
        action: &'static str,
        operation: impl FnOnce(&mut Cloud, &Ctx) -> Result<T, ApiError>,
    ) -> Result<T, SimError> {
        operation(&mut self.inner.cloud(), &Ctx::demo()).map_err(|e| SimError::from_api(action, e))
    }

    /// Creates a network in project `demo`; returns its id.
    pub fn create_network(&self, name: &str, tags: &[&str]) -> Result<String, SimError> {
        let req = neutron::NetworkReq {
            name: name.into(),
            tags: strings(tags),
            ..Default::default()
        };
        self.as_demo("create network", |cloud, ctx| cloud.create_network(ctx, req))
    }

    /// Creates a subnet (DHCP on, gateway `.1`), which gives the network its DHCP port.
    pub fn create_subnet(
        &self,
        network_id: &str,
        name: &str,
        cidr: &str,
        tags: &[&str],
    ) -> Result<String, SimError> {
        let req = neutron::SubnetReq {
            name: name.into(),
            network_id: network_id.into(),
            cidr: Some(cidr.into()),
            tags: strings(tags),
            ..Default::default()
        };
        self.as_demo("create subnet", |cloud, ctx| cloud.create_subnet(ctx, req))
    }

    /// Creates a security group (with Neutron's two egress rules).
    pub fn create_security_group(&self, name: &str, tags: &[&str]) -> Result<String, SimError> {
        let req = neutron::SecurityGroupReq {
            name: name.into(),
            tags: strings(tags),
            ..Default::default()
        };
        self.as_demo("create security group", |cloud, ctx| {
            cloud.create_security_group(ctx, req)
        })
    }

    /// Adds an ingress rule for `protocol` (and `port`, when given) from anywhere.
    pub fn add_security_group_rule(
        &self,
        group_id: &str,
        protocol: &str,
        port: Option<u16>,
    ) -> Result<String, SimError> {
        let req = neutron::RuleReq {
            security_group_id: group_id.into(),
            direction: "ingress".into(),
            protocol: Some(protocol.into()),
            port_range_min: port,
            port_range_max: port,
            remote_ip_prefix: Some("0.0.0.0/0".into()),
            ..Default::default()
        };
        self.as_demo("create security group rule", |cloud, ctx| {
            cloud.create_security_group_rule(ctx, req)
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
        let req = neutron::PortReq {
            name: name.into(),
            network_id: network_id.into(),
            security_groups: (!security_group_ids.is_empty()).then(|| strings(security_group_ids)),
            tags: strings(tags),
            ..Default::default()
        };
        self.as_demo("create port", |cloud, ctx| cloud.create_port(ctx, req))
    }

    /// Creates a router, with a gateway on `external_network_id` when given.
    pub fn create_router(
        &self,
        name: &str,
        external_network_id: Option<&str>,
        tags: &[&str],
    ) -> Result<String, SimError> {
        let req = neutron::RouterReq {
            name: name.into(),
            external_gateway_info: external_network_id.map(|n| neutron::GatewayReq {
                network_id: Some(n.into()),
            }),
            tags: strings(tags),
            ..Default::default()
        };
        self.as_demo("create router", |cloud, ctx| cloud.create_router(ctx, req))
    }

    /// Adds a router interface on the subnet's gateway address; returns the interface port's id.
    pub fn add_router_interface(&self, router_id: &str, subnet_id: &str) -> Result<String, SimError> {
        let interface = neutron::Interface::Subnet(subnet_id.into());
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
        let req = neutron::FloatingIpReq {
            floating_network_id: self.public_network_id(),
            port_id: port_id.map(str::to_string),
            tags: strings(tags),
            ..Default::default()
        };
        self.as_demo("create floating IP", |cloud, ctx| {
            cloud.create_floating_ip(ctx, req)
        })
    }

    /// Boots a server (ACTIVE at once); returns its id.
    pub fn create_server(&self, server: NewServer<'_>) -> Result<String, SimError> {
        let mut nics: Vec<nova::Nic> = server
            .ports
            .iter()
            .map(|p| nova::Nic::Port((*p).into()))
            .collect();
        nics.extend(server.networks.iter().map(|n| nova::Nic::Network((*n).into())));
        let spec = nova::ServerSpec {
            name: server.name.into(),
            image_ref: "cirros-0.6.2".into(),
            flavor_ref: "1".into(),
            nics,
            key_name: server.key_name.map(str::to_string),
            security_groups: strings(server.security_groups),
            tags: strings(server.tags),
            group: server.server_group.map(str::to_string),
            ..Default::default()
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
        let spec = cinder::VolumeSpec {
            name: name.into(),
            size: size_gb,
            metadata: map(metadata),
            ..Default::default()
        };
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
        let spec = cinder::SnapshotSpec {
            volume_id: volume_id.into(),
            name: name.into(),
            metadata: map(metadata),
            ..Default::default()
        };
        self.as_demo("create snapshot", |cloud, ctx| cloud.create_snapshot(ctx, spec))
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

    /// A port's `(device_id, device_owner)`, empty strings when unbound.
    pub fn port_binding(&self, port_id: &str) -> Option<(String, String)> {
        let cloud = self.inner.cloud();
        cloud
            .ports
            .get(port_id)
            .map(|p| (p.device_id.clone(), p.device_owner.clone()))
    }

    /// A volume's status (`available`, `in-use`, `deleting`, `error_deleting`).
    pub fn volume_status(&self, volume_id: &str) -> Option<String> {
        self.inner
            .cloud()
            .volumes
            .get(volume_id)
            .map(|v| v.status.clone())
    }

    /// A server's task state (`Some("deleting")` from its DELETE until it turns `DELETED`, at 70 % of
    /// `server_delete_delay`; `None` then, until it is gone).
    pub fn server_task_state(&self, server_id: &str) -> Option<Option<String>> {
        self.inner
            .cloud()
            .servers
            .get(server_id)
            .map(|s| s.task_state.clone())
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Every service's routes on one router: requests are logged, then faults are applied, then the
/// simulated API answers. The fault admin routes sit outside the fault layer, so a rule can never
/// lock tests out of clearing it.
fn router(inner: Arc<Inner>) -> Router {
    let api = Router::new()
        .merge(keystone::routes(inner.clone()))
        .merge(nova::routes(inner.clone()))
        .merge(neutron::routes(inner.clone()))
        .merge(cinder::routes(inner.clone()))
        .fallback(unknown_path)
        .layer(from_fn_with_state(inner.faults.clone(), faults::inject));
    api.merge(faults::admin_router(inner.faults.clone()))
        .layer(from_fn_with_state(inner, record))
}

async fn record(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_default();
    let response = next.run(request).await;
    inner.log().push((method, path, response.status().as_u16()));
    response
}

/// A 404 in the shape of the service whose prefix the path has.
async fn unknown_path(uri: Uri) -> ApiError {
    let path = uri.path();
    let service = if path.starts_with("/compute") {
        Service::Nova
    } else if path.starts_with("/network") {
        Service::Neutron
    } else if path.starts_with("/volume") {
        Service::Cinder
    } else {
        Service::Keystone
    };
    ApiError::unknown_path(service)
}
