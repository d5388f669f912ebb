//! A simulated Proxmox VE cluster served over HTTP (or HTTPS with a self-signed certificate) on
//! 127.0.0.1: the `/api2/json` paths, envelopes, 0/1 booleans, error codes and texts of a real
//! cluster, with guests, configs, locks, tasks and storage content, and the failure modes the janitor
//! must survive (a wedged guest, a backup lock, an offline node, slow or silent tasks). Every timed
//! behaviour reads the simulator's clock ([`crate::clock::SimClock`]), which tests move with
//! [`ProxmoxSim::advance_clock`] instead of sleeping.
//!
//! # Layout
//! - this module: [`ProxmoxSimConfig`], starting and stopping [`ProxmoxSim`], its credentials, clock
//!   and request log.
//! - `direct`: building and inspecting the cluster without HTTP ([`ProxmoxSim::add_guest`],
//!   [`ProxmoxSim::seed_ci_leftovers`], ...).
//! - `state`: the cluster model and what each call does to it (guests, tasks, storage).
//! - `auth`: API tokens and tickets with CSRF tokens.
//! - `api`: routing, parameters and Proxmox's response envelope; `errors`: its error answers.
//! - `tls`: the optional HTTPS listener (proxmoxer only speaks HTTPS).

mod api;
mod auth;
mod direct;
mod errors;
mod state;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use axum::Router;

use crate::clock::SimClock;
use crate::faults::{self, Faults};
pub use direct::{GuestSpec, ProxmoxSeeded};
use state::Cluster;
pub use state::{unix_now, GuestType, TaskQuirks};

/// How the simulated cluster behaves. Every duration is short by default so tests run fast.
#[derive(Debug, Clone)]
pub struct ProxmoxSimConfig {
    /// How long stop, shutdown, destroy, create and volume-free tasks run.
    pub task_duration: Duration,
    /// How long a ticket from `POST /access/ticket` stays valid (2 hours on a real cluster).
    pub ticket_ttl: Duration,
    /// How long a request waits for a guest's config lock file before "got timeout".
    pub lock_wait: Duration,
    /// How long the seeded backup keeps its guest locked.
    pub backup_duration: Duration,
    /// A shutdown's `timeout` parameter is honoured up to this long.
    pub shutdown_timeout_cap: Duration,
    /// Finished tasks report `status: stopped` without `exitstatus` for this long.
    pub exitstatus_lag: Duration,
    /// New tasks answer 400 "no such task" for this long.
    pub unknown_task_for: Duration,
    /// Serve HTTPS with a fresh self-signed certificate (see [`ProxmoxSim::ca_pem`]).
    pub tls: bool,
}

impl Default for ProxmoxSimConfig {
    fn default() -> Self {
        ProxmoxSimConfig {
            task_duration: Duration::from_millis(50),
            ticket_ttl: Duration::from_secs(7200),
            lock_wait: Duration::from_millis(200),
            backup_duration: Duration::from_millis(1500),
            shutdown_timeout_cap: Duration::from_secs(2),
            exitstatus_lag: Duration::ZERO,
            unknown_task_for: Duration::ZERO,
            tls: false,
        }
    }
}

pub(crate) struct Inner {
    /// The clock the cluster and the tickets read; kept here so advancing it needs no lock.
    clock: SimClock,
    cluster: Mutex<Cluster>,
    auth: Mutex<auth::Auth>,
    config: ProxmoxSimConfig,
    log: Mutex<Vec<(String, String, u16)>>,
    faults: Faults,
    shutdown: tokio::sync::watch::Sender<bool>,
    url: String,
    ca_pem: Option<String>,
}

// A panic while one of these locks is held leaves consistent data behind (every mutation completes
// before the guard drops), so a poisoned lock is still usable.
impl Inner {
    fn cluster_lock(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn auth_lock(&self) -> MutexGuard<'_, auth::Auth> {
        self.auth.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log_lock(&self) -> MutexGuard<'_, Vec<(String, String, u16)>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running simulated cluster; a cheap handle to clone.
#[derive(Clone)]
pub struct ProxmoxSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProxmoxSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxmoxSim")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl ProxmoxSim {
    /// Binds `listen` (port 0 for any) and serves until [`ProxmoxSim::shutdown`].
    pub async fn start(listen: SocketAddr, config: ProxmoxSimConfig) -> std::io::Result<ProxmoxSim> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tls_acceptor, ca_pem) = if config.tls {
            let (acceptor, pem) = tls::self_signed_acceptor()?;
            (Some(acceptor), Some(pem))
        } else {
            (None, None)
        };
        let scheme = if config.tls { "https" } else { "http" };
        let clock = SimClock::new();
        let mut cluster = Cluster::new(
            clock.clone(),
            config.task_duration,
            TaskQuirks {
                exitstatus_lag: config.exitstatus_lag,
                unknown_for: config.unknown_task_for,
            },
        );
        cluster.shutdown_timeout_cap = config.shutdown_timeout_cap;
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            clock: clock.clone(),
            cluster: Mutex::new(cluster),
            auth: Mutex::new(auth::Auth::new(config.ticket_ttl, clock)),
            config,
            log: Mutex::new(Vec::new()),
            faults: Faults::default(),
            shutdown,
            url: format!("{scheme}://{addr}/api2/json"),
            ca_pem,
        });
        let router = Router::new()
            .fallback(api::handle)
            .with_state(inner.clone())
            .layer(from_fn_with_state(inner.faults.clone(), faults::inject))
            .merge(faults::admin_router(inner.faults.clone()))
            .layer(from_fn_with_state(inner.clone(), api::log_requests));
        let mut stop = inner.shutdown.subscribe();
        match tls_acceptor {
            None => {
                tokio::spawn(async move {
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = stop.wait_for(|stopped| *stopped).await;
                        })
                        .await;
                    if let Err(err) = served {
                        tracing::warn!(error = %err, "proxmox sim server stopped");
                    }
                });
            }
            Some(acceptor) => {
                tokio::spawn(tls::serve(listener, acceptor, router, stop));
            }
        }
        Ok(ProxmoxSim { inner })
    }

    /// `http://127.0.0.1:PORT/api2/json` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// The PEM certificate of the TLS listener, to trust as a CA; `None` for plain HTTP.
    pub fn ca_pem(&self) -> Option<String> {
        self.inner.ca_pem.clone()
    }

    /// A valid API token id, `root@pam!janitor`.
    pub fn token_id(&self) -> String {
        self.inner.auth_lock().token_id.clone()
    }

    /// The secret of [`ProxmoxSim::token_id`].
    pub fn token_secret(&self) -> String {
        self.inner.auth_lock().token_secret.clone()
    }

    /// The ticket-auth user, `root@pam`.
    pub fn user(&self) -> String {
        self.inner.auth_lock().user.clone()
    }

    /// The password of [`ProxmoxSim::user`].
    pub fn password(&self) -> String {
        self.inner.auth_lock().password.clone()
    }

    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Stops serving; in-flight requests finish.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// The clock every timed behaviour reads (tasks, lock waits, tickets).
    pub fn clock(&self) -> &SimClock {
        &self.inner.clock
    }

    /// Moves the simulator's clock forward by `by`, as if that much time had passed: a task started
    /// `task_duration` ago has ended at the next request, a ticket older than `ticket_ttl` is refused.
    pub fn advance_clock(&self, by: Duration) {
        self.inner.clock.advance(by);
    }

    /// Every request so far as `(method, path?query, status)`.
    pub fn request_log(&self) -> Vec<(String, String, u16)> {
        self.inner.log_lock().clone()
    }

    pub fn clear_request_log(&self) {
        self.inner.log_lock().clear();
    }
}
