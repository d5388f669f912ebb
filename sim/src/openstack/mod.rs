//! A simulated OpenStack cloud (Keystone v3, Nova v2.1, Neutron v2.0, Cinder v3, Octavia v2, Glance
//! v2) on one HTTP listener, with in-memory state that tests seed and inspect through
//! [`OpenStackSim`].
//!
//! # URL layout
//! - `/identity` (versions; `/` answers the same), `/identity/v3`, `/identity/v3/auth/tokens`
//! - `/compute/v2.1/...` (Nova; microversions 2.1 to 2.96)
//! - `/network/v2.0/...` (Neutron; the catalog lists `/network`, discovered as v2.0)
//! - `/volume/v3/{project_id}/...` (Cinder; catalog types `block-storage` and `volumev3`)
//! - `/load-balancer/v2/lbaas/...` (Octavia; catalog type `load-balancer`, unless
//!   [`SimConfig::octavia`] is `None`)
//! - `/image/v2/...` (a minimal Glance: image records and their tags, no data)
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
//! - Cinder backups are `available` at once (real: `creating` while the data is copied) and keep no
//!   data; Glance images are records only and stay `queued`; Neutron has no service providers (an
//!   empty list); a member listing Keystone's projects sees its own (real default policy: 403).
//!
//! # Layout
//! - this module: [`SimConfig`], starting and stopping [`OpenStackSim`], its clock and request log,
//!   and one router for every service.
//! - `direct`: building and inspecting the cloud without HTTP ([`OpenStackSim::create_server`],
//!   [`OpenStackSim::exists`], ...) and the CI leftovers; `seed` builds those, `leaks` untagged
//!   resources that look leaked.
//! - `state`: the in-memory cloud every service acts on, its identities and records.
//! - `keystone` (and `projects`), `nova`, `neutron`, `cinder`, `octavia`, `glance`: one module per
//!   service, each its model and its URLs; `scenario` seeds the benchmark's CI jobs.
//! - `call`, `errors`, `listing`, `tags`: what the services share: the authenticated caller, error
//!   bodies in each service's shape, list filters and pages, and the tag URLs.

mod call;
mod cinder;
mod direct;
mod errors;
mod glance;
mod keystone;
mod leaks;
mod listing;
mod neutron;
mod nova;
mod octavia;
mod projects;
mod scenario;
mod seed;
mod state;
mod tags;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::Uri;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::clock::SimClock;
use crate::faults::{self, Faults};
use errors::{ApiError, Service};
use state::Cloud;

pub use direct::{NewServer, SimError};
pub use octavia::SeededLoadBalancerJob;
pub use scenario::{JobsSeeded, CENSUS_KINDS};
pub use seed::{Seeded, SeededJob, Survivors, CI_TAG};
pub use state::OctaviaTimings;

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
    /// Octavia (`load-balancer` in the catalog) and its timings; `None`: a cloud without it, like the
    /// real test stack.
    pub octavia: Option<OctaviaTimings>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            server_delete_delay: Duration::from_millis(300),
            volume_delete_delay: Duration::from_millis(300),
            token_ttl: Duration::from_secs(3600),
            dhcp_agent: false,
            octavia: Some(OctaviaTimings::default()),
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
    /// Requests to URLs no simulated service serves, as `(method, path with query)`.
    unserved: Mutex<Vec<(String, String)>>,
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
        cloud.load_balancing = config.octavia.map(state::LoadBalancing::new);
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
            unserved: Mutex::new(Vec::new()),
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

    /// Every request served so far, faults included, in order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.inner.log().clone()
    }

    /// Requests to URLs no simulated service serves (answered 404), as `(method, path)`: what a
    /// client asked that the simulator cannot answer.
    pub fn unserved_requests(&self) -> Vec<(String, String)> {
        self.inner
            .unserved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the requests logged so far.
    pub fn clear_request_log(&self) {
        self.inner.log().clear();
    }
}

/// A service's version documents, which answer without a token: `{root}` and `{root}/` list its
/// versions, `{api}` and `{api}/` describe the one it serves.
pub(crate) fn version_routes<V, T, W, U>(root: &str, versions: V, api: &str, version: W) -> Router<Arc<Inner>>
where
    V: Handler<T, Arc<Inner>>,
    T: 'static,
    W: Handler<U, Arc<Inner>>,
    U: 'static,
{
    Router::new()
        .route(root, get(versions.clone()))
        .route(&format!("{root}/"), get(versions))
        .route(api, get(version.clone()))
        .route(&format!("{api}/"), get(version))
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
        .merge(octavia::routes(inner.clone()))
        .merge(glance::routes(inner.clone()))
        .fallback({
            let inner = inner.clone();
            move |method: axum::http::Method, uri: Uri| async move {
                let path = uri.path_and_query().map(ToString::to_string).unwrap_or_default();
                inner
                    .unserved
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((method.to_string(), path));
                unknown_path(uri).await
            }
        })
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
    } else if path.starts_with("/load-balancer") {
        Service::Octavia
    } else {
        Service::Keystone
    };
    ApiError::unknown_path(service)
}
