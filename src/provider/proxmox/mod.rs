//! The Proxmox VE provider: QEMU VMs and LXC containers with their disks, and orphan disks, brought
//! down (stop by default, or a bounded graceful shutdown falling back to stop) and destroyed with
//! every task polled to its end under a deadline.
//!
//! # Layout
//! - `config`: the `[[clouds]]` settings and their validation.
//! - `classify`: the one function turning answers and task texts into decisions.
//! - `client`: authentication (token or ticket + CSRF) and the `{"data": ...}` envelope.
//! - `wire`: the answers the janitor reads, as serde types.
//! - `tasks`: UPIDs and waiting for a task.
//! - `discover`: cluster lists to [`Resource`]s (pure).
//! - `details`: what discovery records on a resource (node, vmid, storage, volid) for later calls.

pub mod classify;
pub mod client;
pub mod config;
pub mod details;
pub mod discover;
mod status;
pub mod tasks;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use reqwest::{Method, Url};

use self::classify::Verdict;
use self::client::{verdict_of, Login, PveClient};
use self::config::{Credentials, ProxmoxSettings, ShutdownPolicy};
pub use self::details::{DiskDetails, GuestDetails, ProxmoxDetails};
use self::discover::VolumeEntry;
use self::wire::{ClusterGuest, ContentItem, GuestConfig, GuestEntry, GuestStatus, StorageEntry};
use crate::metrics::Metrics;
use crate::model::{DeleteOutcome, Kind, Observed, Resource};
use crate::policy::RetryPolicy;
use crate::provider::decode::Listed;
use crate::provider::http::{ApiClient, ApiPath, TlsTrust};
use crate::provider::{BatchKey, ErrorClass, Provider, ProviderError};

/// How many guest configs or storage listings are read at once during discovery: as many as the
/// default per-cloud limit lets deletes run, since a config read per guest is most of discovery.
const DISCOVERY_CONCURRENCY: usize = 8;

/// One Proxmox VE cluster.
pub struct ProxmoxProvider {
    cloud: String,
    client: PveClient,
    settings: ProxmoxSettings,
    /// Whether each guest ran, by vmid, as the status read right before its delete saw it; taken
    /// (and so used once) by that delete.
    running: std::sync::Mutex<std::collections::HashMap<u32, bool>>,
}

fn config_error(cloud: &str, error: impl std::fmt::Display) -> ProviderError {
    ProviderError::Config(format!("cloud {cloud}: {error}"))
}

/// `/cluster/resources?type={kind}`.
fn cluster_resources(kind: &str) -> ApiPath {
    ApiPath::new(["cluster", "resources"]).query("type", kind)
}

/// `/nodes/{node}/{qemu|lxc}/{vmid}`.
fn guest_api_path(node: &str, kind: Kind, vmid: u32) -> ApiPath {
    let guest_type = if kind == Kind::Container { "lxc" } else { "qemu" };
    ApiPath::new(["nodes", node, guest_type, &vmid.to_string()])
}

/// `/nodes/{node}/storage/{storage}/content`.
fn content_path(node: &str, storage: &str) -> ApiPath {
    ApiPath::new(["nodes", node, "storage", storage, "content"])
}

/// Every guest of the cluster.
async fn cluster_guests(client: &PveClient) -> Result<Vec<GuestEntry>, ProviderError> {
    let entries: Listed<ClusterGuest> = client
        .get(&cluster_resources("vm"), "cluster guests")
        .await
        .map_err(|error| listing("cluster guests", error))?;
    Ok(discover::parse_guests(entries.0))
}

/// Names the listing in an error, unless it is a decode error, which names it already.
fn listing(what: &str, error: ProviderError) -> ProviderError {
    match error {
        ProviderError::Decode { .. } => error,
        other => ProviderError::Listing {
            what: format!("proxmox: {what}"),
            source: Box::new(other),
        },
    }
}

/// The volumes on `storage` as `node` sees it.
async fn storage_content(
    client: &PveClient,
    node: &str,
    storage: &str,
) -> Result<Vec<ContentItem>, ProviderError> {
    let content: Listed<ContentItem> = client
        .get(&content_path(node, storage), "storage content")
        .await?;
    Ok(content.0)
}

/// The `data` of an answer that starts a task: its UPID, or nothing when the work is already done.
type TaskId = Option<String>;

impl ProxmoxProvider {
    /// Validates the settings, reads the secret and builds the HTTP client; opens no connection.
    pub fn new(
        cloud_name: String,
        settings: &ProxmoxSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ProviderError> {
        let credentials = settings.validate().map_err(|e| config_error(&cloud_name, e))?;
        let login = match credentials {
            Credentials::Token { token_id, secret } => {
                let secret = secret
                    .read("token_secret_file")
                    .map_err(|e| config_error(&cloud_name, e))?;
                Login::Token {
                    header: format!("PVEAPIToken={token_id}={secret}"),
                }
            }
            Credentials::Ticket { user, password } => {
                let password = password
                    .read("password_file")
                    .map_err(|e| config_error(&cloud_name, e))?;
                Login::Ticket {
                    user,
                    password,
                    lifetime: settings.ticket_lifetime,
                }
            }
        };
        let trust = match (&settings.ca_file, settings.insecure_skip_tls_verify) {
            (Some(path), _) => TlsTrust::CaFile(path.clone()),
            (None, true) => TlsTrust::InsecureSkipVerify,
            (None, false) => TlsTrust::BundledRoots,
        };
        let http = ApiClient::new(&cloud_name, metrics, &trust, settings.request_timeout)?
            .with_rate_limit(settings.max_requests_per_second)
            .with_max_response_bytes(settings.max_response_bytes);
        let base = settings.api_base();
        let base = Url::parse(&base).map_err(|e| config_error(&cloud_name, format!("url `{base}`: {e}")))?;
        let client = PveClient::new(http, base, login);
        Ok(ProxmoxProvider {
            cloud: cloud_name,
            client,
            settings: settings.clone(),
            running: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Retries reads (listings, configs, task status, tickets) by `policy`, the one the executor
    /// backs off deletes with.
    pub fn with_read_retry(mut self, policy: RetryPolicy) -> Self {
        self.client = self.client.with_read_retry(policy);
        self
    }

    fn observed_running(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u32, bool>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn node_in_scope(&self, node: &str) -> bool {
        self.settings
            .nodes
            .as_ref()
            .is_none_or(|nodes| nodes.iter().any(|n| n == node))
    }

    fn guest_in_scope(&self, guest: &GuestEntry) -> bool {
        let pool_ok = match &self.settings.pools {
            None => true,
            Some(pools) => guest.pool.as_ref().is_some_and(|p| pools.contains(p)),
        };
        pool_ok && self.node_in_scope(&guest.node)
    }

    fn guest_path(resource: &Resource) -> Result<ApiPath, ProviderError> {
        let guest = ProxmoxDetails::guest(resource)?;
        match resource.key.kind {
            kind @ (Kind::Vm | Kind::Container) => Ok(guest_api_path(&guest.node, kind, guest.vmid)),
            other => Err(ProviderError::Config(format!("{other} is not a Proxmox guest"))),
        }
    }

    async fn wait(
        &self,
        task: TaskId,
        operation: &str,
        timeout: std::time::Duration,
    ) -> Result<(), ProviderError> {
        let upid = tasks::upid_of(task, operation)?;
        tasks::wait_for_task(
            &self.client,
            &upid,
            operation,
            self.settings.poll_interval,
            timeout,
        )
        .await
    }

    /// Hard stop, overruling a pending shutdown task. A guest that is not running is fine.
    async fn stop(&self, resource: &Resource, path: &ApiPath) -> Result<(), ProviderError> {
        let mut form = Vec::new();
        // HA-managed guests refuse `overrule-shutdown`; their stop goes through the HA manager.
        if ProxmoxDetails::guest(resource)?.hastate.is_none() {
            form.push(("overrule-shutdown", "1".to_string()));
        }
        let operation = format!("stop {}", resource.key);
        let started = self
            .client
            .call(Method::POST, &path.join(["status", "stop"]), &form, "task id")
            .await;
        let result = match started {
            Ok(task) => self.wait(task, &operation, self.settings.task_timeout).await,
            Err(error) => Err(error),
        };
        match result {
            Err(error) if verdict_of(&error) == Some(Verdict::NotRunning) => Ok(()),
            other => other,
        }
    }

    /// ACPI shutdown bounded by `shutdown_timeout`; `Ok(true)` if the guest went down.
    async fn graceful_shutdown(&self, resource: &Resource, path: &ApiPath) -> Result<bool, ProviderError> {
        let seconds = self.settings.shutdown_timeout.as_secs().max(1);
        let form = [("timeout", seconds.to_string())];
        let operation = format!("shutdown {}", resource.key);
        let task = match self
            .client
            .call(Method::POST, &path.join(["status", "shutdown"]), &form, "task id")
            .await
        {
            Ok(task) => task,
            Err(error) if verdict_of(&error) == Some(Verdict::NotRunning) => return Ok(true),
            Err(error) if verdict_of(&error) == Some(Verdict::Conflict) => return Err(error),
            Err(error) => {
                tracing::warn!(cloud = %self.cloud, resource = %resource.key, error = %error, "shutdown refused; stopping instead");
                return Ok(false);
            }
        };
        // The task ends by itself after `timeout`; allow a little for the task to report it.
        let deadline = self.settings.shutdown_timeout + self.settings.poll_interval * 4;
        match self.wait(task, &operation, deadline).await {
            Ok(()) => Ok(true),
            Err(error) => {
                tracing::warn!(cloud = %self.cloud, resource = %resource.key, error = %error, "graceful shutdown did not finish; stopping");
                Ok(false)
            }
        }
    }

    async fn bring_down(&self, resource: &Resource, path: &ApiPath) -> Result<(), ProviderError> {
        if self.settings.shutdown == ShutdownPolicy::Graceful
            && self.graceful_shutdown(resource, path).await?
        {
            return Ok(());
        }
        self.stop(resource, path).await
    }

    /// The current status of the guest at `path`.
    async fn guest_status(&self, path: &ApiPath) -> Result<GuestStatus, ProviderError> {
        self.client
            .get(&path.join(["status", "current"]), "guest status")
            .await
    }

    async fn delete_guest(&self, resource: &Resource) -> Result<DeleteOutcome, ProviderError> {
        let path = Self::guest_path(resource)?;
        let config: GuestConfig = match self.client.get(&path.join(["config"]), "guest config").await {
            Ok(config) => config,
            Err(error) if error.class() == ErrorClass::NotFound => return Ok(DeleteOutcome::Completed),
            Err(error) => return Err(error),
        };
        // The vmid may have been freed and reused since discovery: never destroy someone else's guest.
        let name_now = config.name_of(resource.key.kind);
        let created_now = config.created;
        let replaced = (!resource.name.is_empty() && name_now != resource.name)
            || (created_now.is_some() && resource.created.is_some() && created_now != resource.created);
        if replaced {
            tracing::warn!(cloud = %self.cloud, resource = %resource.key, "vmid now belongs to another guest; the discovered one is gone");
            return Ok(DeleteOutcome::Completed);
        }
        if config.template || config.protection {
            return Err(ProviderError::OperationFailed {
                class: ErrorClass::Permanent,
                operation: format!("delete {}", resource.key),
                message: "the guest became a template or protected since discovery; not touched".to_string(),
            });
        }
        if let Some(lock) = &config.lock {
            return Err(ProviderError::OperationFailed {
                class: ErrorClass::Conflict,
                operation: format!("delete {}", resource.key),
                message: format!("guest is locked ({lock})"),
            });
        }
        let seen = self
            .observed_running()
            .remove(&ProxmoxDetails::guest(resource)?.vmid);
        let running = match seen {
            Some(running) => running,
            None => match self.guest_status(&path).await {
                Ok(status) => status.status.as_deref() != Some("stopped"),
                Err(error) if error.class() == ErrorClass::NotFound => return Ok(DeleteOutcome::Completed),
                Err(error) => return Err(error),
            },
        };
        if running {
            self.bring_down(resource, &path).await?;
        }
        let destroy = path
            .clone()
            .query("purge", "1")
            .query("destroy-unreferenced-disks", "1");
        let operation = format!("destroy {}", resource.key);
        // A guest that is still running (started again, or the stop raced) is stopped once more.
        for attempt in 0..2 {
            let result = match self.client.call(Method::DELETE, &destroy, &[], "task id").await {
                Ok(task) => self.wait(task, &operation, self.settings.task_timeout).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(()) => return Ok(DeleteOutcome::Completed),
                Err(error) if error.class() == ErrorClass::NotFound => return Ok(DeleteOutcome::Completed),
                Err(error) if verdict_of(&error) == Some(Verdict::StillRunning) && attempt == 0 => {
                    self.stop(resource, &path).await?;
                }
                Err(error) => return Err(error),
            }
        }
        Err(ProviderError::OperationFailed {
            class: ErrorClass::Conflict,
            operation,
            message: "the guest keeps running".to_string(),
        })
    }

    async fn delete_disk(&self, resource: &Resource) -> Result<DeleteOutcome, ProviderError> {
        let disk = ProxmoxDetails::disk(resource)?;
        // A guest may have taken the vmid since discovery; its disks are no longer orphans.
        let guests = cluster_guests(&self.client).await?;
        if guests.iter().any(|g| g.vmid == disk.vmid) {
            return Err(ProviderError::OperationFailed {
                class: ErrorClass::Permanent,
                operation: format!("delete {}", resource.key),
                message: format!("guest {} exists now; the disk is no longer an orphan", disk.vmid),
            });
        }
        // A volid's own `/` (`local:100/vm-100-disk-0.qcow2`) stays a separator: Proxmox routes the
        // rest of the path to the volume. Every other character is encoded.
        let path = content_path(&disk.node, &disk.storage).join(disk.volid.split('/'));
        let operation = format!("delete {}", resource.key);
        let result = match self
            .client
            .call::<TaskId>(Method::DELETE, &path, &[], "task id")
            .await
        {
            Ok(None) => Ok(()),
            Ok(task) => self.wait(task, &operation, self.settings.task_timeout).await,
            Err(error) => Err(error),
        };
        match result {
            Err(error) if error.class() != ErrorClass::NotFound => Err(error),
            _ => Ok(DeleteOutcome::Completed),
        }
    }

    async fn observe_disk(&self, resource: &Resource) -> Result<Observed, ProviderError> {
        let disk = ProxmoxDetails::disk(resource)?;
        let content = storage_content(&self.client, &disk.node, &disk.storage).await?;
        let present = content.iter().any(|item| item.volid == disk.volid);
        Ok(if present { Observed::Ready } else { Observed::Gone })
    }

    async fn discover_disks(
        &self,
        guest_vmids: &BTreeSet<u32>,
        referenced: &BTreeSet<String>,
        storages: &[(String, String, bool)],
    ) -> Result<Vec<Resource>, ProviderError> {
        let client = &self.client;
        let listings: Vec<Result<Vec<VolumeEntry>, ProviderError>> = stream::iter(storages.to_vec())
            .map(|(node, storage, shared): (String, String, bool)| async move {
                let content = storage_content(client, &node, &storage).await?;
                Ok(discover::parse_content(&node, &storage, shared, content))
            })
            .buffer_unordered(DISCOVERY_CONCURRENCY)
            .collect()
            .await;
        let mut volumes = Vec::new();
        for listing in listings {
            match listing {
                Ok(list) => volumes.extend(list),
                // An unreachable node's disks are simply not seen this pass; two consecutive
                // sightings are needed anyway.
                Err(error) if error.class() == ErrorClass::Transient => {
                    tracing::warn!(cloud = %self.cloud, error = %error, "storage content not listed");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(discover::orphan_disks(
            &self.cloud,
            &volumes,
            guest_vmids,
            referenced,
        ))
    }
}

#[async_trait]
impl Provider for ProxmoxProvider {
    fn cloud(&self) -> &str {
        &self.cloud
    }

    fn provider_type(&self) -> &'static str {
        "proxmox"
    }

    async fn discover(&self) -> Result<Vec<Resource>, ProviderError> {
        let all_guests = cluster_guests(&self.client).await?;
        let storage_list: Listed<StorageEntry> = self
            .client
            .get(&cluster_resources("storage"), "cluster storages")
            .await
            .map_err(|error| listing("cluster storages", error))?;
        let mut shared = BTreeSet::new();
        let mut storages: BTreeMap<String, (String, String, bool)> = BTreeMap::new();
        for entry in storage_list.0 {
            let StorageEntry {
                storage,
                node,
                content,
                status,
                shared: is_shared,
            } = entry;
            if is_shared {
                shared.insert(storage.clone());
            }
            let holds_disks = content.split(',').any(|c| c == "images" || c == "rootdir");
            if !holds_disks || status != "available" || !self.node_in_scope(&node) {
                continue;
            }
            // A shared storage is listed once, through the first node that can see it.
            let key = if is_shared {
                storage.clone()
            } else {
                format!("{node}/{storage}")
            };
            storages.entry(key).or_insert((node, storage, is_shared));
        }

        let in_scope: Vec<&GuestEntry> = all_guests.iter().filter(|g| self.guest_in_scope(g)).collect();
        let owned: Vec<(usize, GuestEntry)> = in_scope.iter().map(|g| (*g).clone()).enumerate().collect();
        let client = &self.client;
        let configs: Vec<(usize, Result<GuestConfig, ProviderError>)> = stream::iter(owned)
            .map(|(index, guest): (usize, GuestEntry)| async move {
                if guest.status == "unknown" {
                    return (index, Err(ProviderError::Config("node unreachable".to_string())));
                }
                let path = guest_api_path(&guest.node, guest.kind, guest.vmid).join(["config"]);
                (index, client.get(&path, "guest config").await)
            })
            .buffer_unordered(DISCOVERY_CONCURRENCY)
            .collect()
            .await;
        let mut resources = Vec::new();
        let mut referenced = BTreeSet::new();
        let mut unread_configs = 0;
        let mut configs: BTreeMap<usize, Result<GuestConfig, ProviderError>> = configs.into_iter().collect();
        for (index, guest) in in_scope.iter().enumerate() {
            let config = match configs.remove(&index) {
                Some(Ok(config)) => Some(config),
                // Deleted between the list and the config read.
                Some(Err(error)) if error.class() == ErrorClass::NotFound => continue,
                Some(Err(error))
                    if error.is_fatal_for_cloud() && !matches!(error, ProviderError::Config(_)) =>
                {
                    return Err(error)
                }
                Some(Err(_)) if guest.status != "unknown" => {
                    unread_configs += 1;
                    None
                }
                _ => None,
            };
            if let Some(config) = &config {
                referenced.extend(config.volids.iter().cloned());
            }
            resources.push(discover::guest_resource(
                &self.cloud,
                guest,
                config.as_ref(),
                &shared,
            ));
        }
        if unread_configs > 0 {
            // A guest whose config could not be read may use any disk: none is an orphan this pass.
            tracing::warn!(cloud = %self.cloud, guests = unread_configs, "guest configs unread; orphan disks are not looked for this pass");
        } else if self.settings.pools.is_none() {
            let vmids: BTreeSet<u32> = all_guests.iter().map(|g| g.vmid).collect();
            let storage_list: Vec<(String, String, bool)> = storages.into_values().collect();
            resources.extend(self.discover_disks(&vmids, &referenced, &storage_list).await?);
        }
        Ok(resources)
    }

    async fn observe(&self, resource: &Resource) -> Result<Observed, ProviderError> {
        if resource.key.kind == Kind::Disk {
            return self.observe_disk(resource).await;
        }
        let path = Self::guest_path(resource)?;
        match self.guest_status(&path).await {
            Ok(GuestStatus { lock: Some(lock), .. }) => Ok(Observed::Busy(format!("locked ({lock})"))),
            Ok(_) => Ok(Observed::Ready),
            Err(error) if error.class() == ErrorClass::NotFound => Ok(Observed::Gone),
            Err(error) => Err(error),
        }
    }

    fn batch_key(&self, resource: &Resource) -> Option<BatchKey> {
        status::batch_key(resource)
    }

    async fn observe_many(&self, batch: &[&Resource]) -> Vec<Result<Observed, ProviderError>> {
        self.observe_batch(batch).await
    }

    fn throttled(&self) -> u64 {
        self.client.throttled()
    }

    async fn delete(&self, resource: &Resource) -> Result<DeleteOutcome, ProviderError> {
        match resource.key.kind {
            Kind::Disk => self.delete_disk(resource).await,
            _ => self.delete_guest(resource).await,
        }
    }
}
