//! A simulated Proxmox VE cluster served over HTTP (or HTTPS with a self-signed certificate) on
//! 127.0.0.1: the `/api2/json` paths, envelopes, 0/1 booleans, error codes and texts of a real
//! cluster, with guests, configs, locks, tasks and storage content, and the failure modes the janitor
//! must survive (a wedged guest, a backup lock, an offline node, slow or silent tasks). Every timed
//! behaviour reads the simulator's clock ([`crate::clock::SimClock`]), which tests move with
//! [`ProxmoxSim::advance_clock`] instead of sleeping.
//!
//! # Layout
//! - `state`: the cluster model and what each call does to it.
//! - `auth`: API tokens and tickets with CSRF tokens.
//! - `api`: routing, parameters and Proxmox's response envelope.
//! - `tls`: the optional HTTPS listener (proxmoxer only speaks HTTPS).

mod api;
mod auth;
mod state;
mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use axum::Router;

use crate::clock::SimClock;
use crate::faults::{self, Faults};
pub use state::{unix_now, GuestType, TaskQuirks};
use state::{Cluster, Effect, Ending, Guest, Volume};

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

/// A guest to add with [`ProxmoxSim::add_guest`].
#[derive(Debug, Clone)]
pub struct GuestSpec {
    pub vmid: u32,
    pub guest_type: GuestType,
    pub node: String,
    pub name: String,
    /// Stored lower-cased and `;`-separated, as Proxmox does.
    pub tags: Vec<String>,
    pub running: bool,
    /// Ignores a graceful shutdown.
    pub wedged: bool,
    pub protection: bool,
    pub template: bool,
    pub lock: Option<String>,
    pub pool: Option<String>,
    pub hastate: Option<String>,
    /// Seconds since the epoch for the VM's `meta: ctime`; QEMU VMs only.
    pub ctime: Option<u64>,
    /// Storages to allocate one disk each on (`local-lvm`, `ceph`).
    pub disks: Vec<String>,
}

impl GuestSpec {
    /// A stopped QEMU VM on `pve1` with one disk on `local-lvm`, created an hour ago.
    pub fn vm(vmid: u32, name: &str) -> Self {
        GuestSpec {
            vmid,
            guest_type: GuestType::Qemu,
            node: "pve1".to_string(),
            name: name.to_string(),
            tags: Vec::new(),
            running: false,
            wedged: false,
            protection: false,
            template: false,
            lock: None,
            pool: None,
            hastate: None,
            ctime: Some(unix_now().saturating_sub(3600)),
            disks: vec!["local-lvm".to_string()],
        }
    }

    /// A stopped LXC container on `pve1` with its rootfs on `local-lvm`.
    pub fn container(vmid: u32, name: &str) -> Self {
        GuestSpec {
            guest_type: GuestType::Lxc,
            ctime: None,
            ..GuestSpec::vm(vmid, name)
        }
    }

    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    pub fn running(mut self) -> Self {
        self.running = true;
        self
    }

    pub fn on(mut self, node: &str) -> Self {
        self.node = node.to_string();
        self
    }
}

/// What [`ProxmoxSim::seed_ci_leftovers`] created.
#[derive(Debug, Clone)]
pub struct ProxmoxSeeded {
    /// The tag every CI guest carries.
    pub ci_tag: String,
    /// Tagged, running, healthy VMs.
    pub running_vms: Vec<u32>,
    /// A tagged, stopped container.
    pub stopped_container: u32,
    /// A tagged, running VM that ignores a graceful shutdown.
    pub wedged_vm: u32,
    /// A tagged VM a backup holds locked for `backup_duration`.
    pub backup_locked_vm: u32,
    /// A tagged VM with `protection: 1`.
    pub protected_vm: u32,
    /// A tagged template.
    pub template_vm: u32,
    /// Guests without the CI tag.
    pub untagged: Vec<u32>,
    /// Volume ids of disks named for a vmid that has no guest (all on node `pve1`'s `local-lvm` or
    /// the shared `ceph`).
    pub orphan_disks: Vec<String>,
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

    fn with_cluster<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let mut cluster = self.inner.cluster_lock();
        cluster.advance();
        f(&mut cluster)
    }

    /// Adds a guest and allocates its disks; returns its vmid.
    pub fn add_guest(&self, spec: GuestSpec) -> u32 {
        self.with_cluster(|cluster| {
            let mut config = BTreeMap::new();
            let name_key = if spec.guest_type == GuestType::Lxc {
                "hostname"
            } else {
                "name"
            };
            config.insert(name_key.to_string(), spec.name.clone());
            if !spec.tags.is_empty() {
                config.insert("tags".to_string(), state::normalize_tags(&spec.tags.join(";")));
            }
            if spec.protection {
                config.insert("protection".to_string(), "1".to_string());
            }
            if spec.template {
                config.insert("template".to_string(), "1".to_string());
            }
            if let Some(lock) = &spec.lock {
                config.insert("lock".to_string(), lock.clone());
            }
            if let (GuestType::Qemu, Some(ctime)) = (spec.guest_type, spec.ctime) {
                config.insert("meta".to_string(), format!("creation-qemu=9.0.2,ctime={ctime}"));
            }
            config.insert("memory".to_string(), "2048".to_string());
            let prefix = if spec.template { "base" } else { "vm" };
            for (index, storage) in spec.disks.iter().enumerate() {
                let shared = cluster.storages.get(storage).is_some_and(|s| s.shared);
                let name = format!("{prefix}-{}-disk-{index}", spec.vmid);
                let (key, content) = match (spec.guest_type, index) {
                    (GuestType::Lxc, 0) => ("rootfs".to_string(), "rootdir"),
                    (GuestType::Lxc, n) => (format!("mp{}", n - 1), "rootdir"),
                    (GuestType::Qemu, n) => (format!("scsi{n}"), "images"),
                };
                config.insert(key, format!("{storage}:{name},size=4G"));
                cluster.volumes.push(Volume {
                    storage: storage.clone(),
                    node: (!shared).then(|| spec.node.clone()),
                    name,
                    vmid: Some(spec.vmid),
                    size: 4 << 30,
                    content: content.to_string(),
                    ctime: spec.ctime.unwrap_or_else(unix_now),
                });
            }
            if let Some(pool) = &spec.pool {
                cluster.pools.entry(pool.clone()).or_default();
            }
            cluster.guests.insert(
                spec.vmid,
                Guest {
                    vmid: spec.vmid,
                    guest_type: spec.guest_type,
                    node: spec.node.clone(),
                    running: spec.running,
                    wedged: spec.wedged,
                    pool: spec.pool.clone(),
                    hastate: spec.hastate.clone(),
                    config,
                },
            );
            spec.vmid
        })
    }

    /// Adds a volume `name` (`vm-999-disk-0`) on `storage`, local to `node` unless the storage is
    /// shared; returns its volid.
    pub fn add_volume(&self, node: &str, storage: &str, name: &str) -> String {
        self.with_cluster(|cluster| {
            let shared = cluster.storages.get(storage).is_some_and(|s| s.shared);
            let volume = Volume {
                storage: storage.to_string(),
                node: (!shared).then(|| node.to_string()),
                name: name.to_string(),
                vmid: state::volume_vmid(name),
                size: 4 << 30,
                content: "images".to_string(),
                ctime: unix_now().saturating_sub(7200),
            };
            let volid = volume.volid();
            cluster.volumes.push(volume);
            volid
        })
    }

    /// Seeds what interrupted CI jobs leave behind, and a few things that must survive.
    pub fn seed_ci_leftovers(&self) -> ProxmoxSeeded {
        let tag = "ci-janitor-test";
        let two_hours_ago = unix_now().saturating_sub(7200);
        let ci = |spec: GuestSpec| {
            GuestSpec {
                ctime: spec.ctime.map(|_| two_hours_ago),
                ..spec
            }
            .tags(&[tag, "job-4711"])
        };
        let running_vms = vec![
            self.add_guest(ci(GuestSpec::vm(101, "ci-k8s-node-1")).running()),
            self.add_guest(GuestSpec {
                disks: vec!["ceph".into()],
                ..ci(GuestSpec::vm(102, "ci-k8s-node-2")).running().on("pve2")
            }),
        ];
        let stopped_container = self.add_guest(
            ci(GuestSpec::container(201, "ci-runner-cache"))
                .tags(&[tag, &format!("ci-created-{two_hours_ago}")]),
        );
        let wedged_vm = self.add_guest(GuestSpec {
            wedged: true,
            ..ci(GuestSpec::vm(103, "ci-installer-stuck")).running()
        });
        let backup_locked_vm = self.add_guest(GuestSpec {
            lock: Some("backup".into()),
            ..ci(GuestSpec::vm(104, "ci-backed-up"))
        });
        let backup_duration = self.inner.config.backup_duration;
        self.with_cluster(|cluster| {
            let effect = Effect::ClearLock(backup_locked_vm);
            cluster.start_task(
                "pve1",
                "vzdump",
                &backup_locked_vm.to_string(),
                "root@pam",
                Ending {
                    after: backup_duration,
                    failure: None,
                    effect,
                },
            );
        });
        let protected_vm = self.add_guest(GuestSpec {
            protection: true,
            ..ci(GuestSpec::vm(105, "ci-keep-me"))
        });
        let template_vm = self.add_guest(GuestSpec {
            template: true,
            ..ci(GuestSpec::vm(9000, "ci-template"))
        });
        let untagged = vec![
            self.add_guest(GuestSpec::vm(110, "prod-db").running()),
            self.add_guest(GuestSpec::container(202, "prod-dns").running().on("pve2")),
        ];
        let orphan_disks = vec![
            self.add_volume("pve1", "local-lvm", "vm-999-disk-0"),
            self.add_volume("pve1", "local-lvm", "vm-999-disk-1"),
            self.add_volume("pve1", "ceph", "vm-998-disk-0"),
        ];
        ProxmoxSeeded {
            ci_tag: tag.to_string(),
            running_vms,
            stopped_container,
            wedged_vm,
            backup_locked_vm,
            protected_vm,
            template_vm,
            untagged,
            orphan_disks,
        }
    }

    /// True while a guest with this vmid exists anywhere in the cluster.
    pub fn exists(&self, vmid: u32) -> bool {
        self.with_cluster(|cluster| cluster.guests.contains_key(&vmid))
    }

    /// True while the guest runs.
    pub fn is_running(&self, vmid: u32) -> bool {
        self.with_cluster(|cluster| cluster.guests.get(&vmid).is_some_and(|g| g.running))
    }

    /// True while a volume with this volid exists on any node.
    pub fn disk_exists(&self, volid: &str) -> bool {
        self.with_cluster(|cluster| cluster.volumes.iter().any(|v| v.volid() == volid))
    }

    /// Sets or clears the guest's config `lock` (`backup`, `migrate`, ...).
    pub fn set_lock(&self, vmid: u32, lock: Option<&str>) {
        self.with_cluster(|cluster| {
            if let Some(guest) = cluster.guests.get_mut(&vmid) {
                match lock {
                    Some(lock) => guest.config.insert("lock".to_string(), lock.to_string()),
                    None => guest.config.remove("lock"),
                };
            }
        });
    }

    /// Holds the guest's config lock file for `duration` by running a `vzdump` task on it: stop and
    /// destroy wait `lock_wait`, then fail with "got timeout".
    pub fn hold_lock_file(&self, vmid: u32, duration: Duration) {
        self.with_cluster(|cluster| {
            let node = cluster
                .guests
                .get(&vmid)
                .map_or_else(|| "pve1".to_string(), |g| g.node.clone());
            cluster.start_task(
                &node,
                "vzdump",
                &vmid.to_string(),
                "root@pam",
                Ending {
                    after: duration,
                    failure: None,
                    effect: Effect::None,
                },
            );
        });
    }

    /// Takes a node offline (its guests show status `unknown`, requests to it answer 595) or back.
    pub fn set_node_online(&self, node: &str, online: bool) {
        self.with_cluster(|cluster| {
            cluster.nodes.insert(node.to_string(), online);
        });
    }

    /// Makes the guest ignore (or honour) a graceful shutdown.
    pub fn set_wedged(&self, vmid: u32, wedged: bool) {
        self.with_cluster(|cluster| {
            if let Some(guest) = cluster.guests.get_mut(&vmid) {
                guest.wedged = wedged;
            }
        });
    }

    /// Sets `protection` on the guest.
    pub fn set_protection(&self, vmid: u32, protection: bool) {
        self.with_cluster(|cluster| {
            if let Some(guest) = cluster.guests.get_mut(&vmid) {
                guest
                    .config
                    .insert("protection".to_string(), u8::from(protection).to_string());
            }
        });
    }

    /// The next task started on `vmid` fails with `text` as its exit status.
    pub fn fail_next_task(&self, vmid: u32, text: &str) {
        self.with_cluster(|cluster| {
            cluster.task_failures.insert(vmid, text.to_string());
        });
    }

    /// Changes the quirks of tasks started from now on (missing exit status, unknown task).
    pub fn set_task_quirks(&self, quirks: TaskQuirks) {
        self.with_cluster(|cluster| cluster.quirks = quirks);
    }

    /// The guest's config (`name`, `tags`, `lock`, disks, ...), if it exists.
    pub fn guest_config(&self, vmid: u32) -> Option<BTreeMap<String, String>> {
        self.with_cluster(|cluster| cluster.guests.get(&vmid).map(|g| g.config.clone()))
    }

    /// Every volid that exists on any node.
    pub fn volids(&self) -> Vec<String> {
        self.with_cluster(|cluster| cluster.volumes.iter().map(Volume::volid).collect())
    }
}
