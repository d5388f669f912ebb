//! The Proxmox VE provider: QEMU VMs and LXC containers with their disks, and orphan disks, brought
//! down (stop by default, or a bounded graceful shutdown falling back to stop) and destroyed with
//! every task polled to its end under a deadline.
//!
//! # Layout
//! - `config`: the `[[clouds]]` settings and their validation.
//! - `classify`: the one function turning answers and task texts into decisions.
//! - `client`: authentication (token or ticket + CSRF) and the `{"data": ...}` envelope.
//! - `tasks`: UPIDs and waiting for a task.
//! - `discover`: cluster lists to [`Resource`]s (pure).
//! - `details`: what discovery records on a resource (node, vmid, storage, volid) for later calls.

pub mod classify;
pub mod client;
pub mod config;
pub mod details;
pub mod discover;
pub mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use reqwest::Method;
use serde_json::Value;

use self::classify::Verdict;
use self::client::{verdict_of, Login, PveClient};
use self::config::{Credentials, ProxmoxSettings, ShutdownPolicy};
pub use self::details::{DiskDetails, GuestDetails, ProxmoxDetails};
use self::discover::{GuestEntry, VolumeEntry};
use crate::metrics::Metrics;
use crate::model::{DeleteOutcome, Kind, Observed, Resource};
use crate::provider::http::{ApiClient, TlsTrust};
use crate::provider::{ErrorClass, Provider, ProviderError};

/// How many guest configs or storage listings are read at once during discovery.
const DISCOVERY_CONCURRENCY: usize = 4;

/// One Proxmox VE cluster.
pub struct ProxmoxProvider {
    cloud: String,
    client: PveClient,
    settings: ProxmoxSettings,
}

fn config_error(cloud: &str, error: impl std::fmt::Display) -> ProviderError {
    ProviderError::Config(format!("cloud {cloud}: {error}"))
}

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
            .with_rate_limit(settings.max_requests_per_second);
        let client = PveClient::new(http, settings.api_base(), login);
        Ok(ProxmoxProvider {
            cloud: cloud_name,
            client,
            settings: settings.clone(),
        })
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

    fn guest_path(resource: &Resource) -> Result<String, ProviderError> {
        let guest = ProxmoxDetails::guest(resource)?;
        let kind = match resource.key.kind {
            Kind::Vm => "qemu",
            Kind::Container => "lxc",
            other => return Err(ProviderError::Config(format!("{other} is not a Proxmox guest"))),
        };
        Ok(format!("/nodes/{}/{kind}/{}", guest.node, guest.vmid))
    }

    async fn wait(
        &self,
        upid_data: &Value,
        operation: &str,
        timeout: std::time::Duration,
    ) -> Result<(), ProviderError> {
        let upid = tasks::upid_of(upid_data, operation)?;
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
    async fn stop(&self, resource: &Resource, path: &str) -> Result<(), ProviderError> {
        let mut form = Vec::new();
        // HA-managed guests refuse `overrule-shutdown`; their stop goes through the HA manager.
        if ProxmoxDetails::guest(resource)?.hastate.is_none() {
            form.push(("overrule-shutdown", "1".to_string()));
        }
        let operation = format!("stop {}", resource.key);
        let started = self
            .client
            .call(Method::POST, &format!("{path}/status/stop"), &form)
            .await;
        let result = match started {
            Ok(data) => self.wait(&data, &operation, self.settings.task_timeout).await,
            Err(error) => Err(error),
        };
        match result {
            Err(error) if verdict_of(&error) == Some(Verdict::NotRunning) => Ok(()),
            other => other,
        }
    }

    /// ACPI shutdown bounded by `shutdown_timeout`; `Ok(true)` if the guest went down.
    async fn graceful_shutdown(&self, resource: &Resource, path: &str) -> Result<bool, ProviderError> {
        let seconds = self.settings.shutdown_timeout.as_secs().max(1);
        let form = [("timeout", seconds.to_string())];
        let operation = format!("shutdown {}", resource.key);
        let data = match self
            .client
            .call(Method::POST, &format!("{path}/status/shutdown"), &form)
            .await
        {
            Ok(data) => data,
            Err(error) if verdict_of(&error) == Some(Verdict::NotRunning) => return Ok(true),
            Err(error) if verdict_of(&error) == Some(Verdict::Conflict) => return Err(error),
            Err(error) => {
                tracing::warn!(cloud = %self.cloud, resource = %resource.key, error = %error, "shutdown refused; stopping instead");
                return Ok(false);
            }
        };
        // The task ends by itself after `timeout`; allow a little for the task to report it.
        let deadline = self.settings.shutdown_timeout + self.settings.poll_interval * 4;
        match self.wait(&data, &operation, deadline).await {
            Ok(()) => Ok(true),
            Err(error) => {
                tracing::warn!(cloud = %self.cloud, resource = %resource.key, error = %error, "graceful shutdown did not finish; stopping");
                Ok(false)
            }
        }
    }

    async fn bring_down(&self, resource: &Resource, path: &str) -> Result<(), ProviderError> {
        if self.settings.shutdown == ShutdownPolicy::Graceful
            && self.graceful_shutdown(resource, path).await?
        {
            return Ok(());
        }
        self.stop(resource, path).await
    }

    async fn delete_guest(&self, resource: &Resource) -> Result<DeleteOutcome, ProviderError> {
        let path = Self::guest_path(resource)?;
        let config = match self.client.get(&format!("{path}/config")).await {
            Ok(config) => config,
            Err(error) if error.class() == ErrorClass::NotFound => return Ok(DeleteOutcome::Completed),
            Err(error) => return Err(error),
        };
        // The vmid may have been freed and reused since discovery: never destroy someone else's guest.
        let name_key = if resource.key.kind == Kind::Container {
            "hostname"
        } else {
            "name"
        };
        let name_now = config.get(name_key).and_then(Value::as_str).unwrap_or_default();
        let created_now = config
            .get("meta")
            .and_then(Value::as_str)
            .and_then(discover::ctime_from_meta);
        let replaced = (!resource.name.is_empty() && name_now != resource.name)
            || (created_now.is_some() && resource.created.is_some() && created_now != resource.created);
        if replaced {
            tracing::warn!(cloud = %self.cloud, resource = %resource.key, "vmid now belongs to another guest; the discovered one is gone");
            return Ok(DeleteOutcome::Completed);
        }
        if discover::flag(&config, "template") || discover::flag(&config, "protection") {
            return Err(ProviderError::OperationFailed {
                class: ErrorClass::Permanent,
                operation: format!("delete {}", resource.key),
                message: "the guest became a template or protected since discovery; not touched".to_string(),
            });
        }
        if let Some(lock) = config.get("lock").and_then(Value::as_str) {
            return Err(ProviderError::OperationFailed {
                class: ErrorClass::Conflict,
                operation: format!("delete {}", resource.key),
                message: format!("guest is locked ({lock})"),
            });
        }
        let status = self.client.get(&format!("{path}/status/current")).await;
        let running = match status {
            Ok(status) => status.get("status").and_then(Value::as_str) != Some("stopped"),
            Err(error) if error.class() == ErrorClass::NotFound => return Ok(DeleteOutcome::Completed),
            Err(error) => return Err(error),
        };
        if running {
            self.bring_down(resource, &path).await?;
        }
        let form_query = "?purge=1&destroy-unreferenced-disks=1";
        let operation = format!("destroy {}", resource.key);
        // A guest that is still running (started again, or the stop raced) is stopped once more.
        for attempt in 0..2 {
            let result = match self
                .client
                .call(Method::DELETE, &format!("{path}{form_query}"), &[])
                .await
            {
                Ok(data) => self.wait(&data, &operation, self.settings.task_timeout).await,
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
        let guests = discover::parse_guests(&self.client.get("/cluster/resources?type=vm").await?);
        if guests.iter().any(|g| g.vmid == disk.vmid) {
            return Err(ProviderError::OperationFailed {
                class: ErrorClass::Permanent,
                operation: format!("delete {}", resource.key),
                message: format!("guest {} exists now; the disk is no longer an orphan", disk.vmid),
            });
        }
        let path = format!(
            "/nodes/{}/storage/{}/content/{}",
            disk.node, disk.storage, disk.volid
        );
        let operation = format!("delete {}", resource.key);
        let result = match self.client.call(Method::DELETE, &path, &[]).await {
            Ok(Value::Null) => Ok(()),
            Ok(data) => self.wait(&data, &operation, self.settings.task_timeout).await,
            Err(error) => Err(error),
        };
        match result {
            Err(error) if error.class() != ErrorClass::NotFound => Err(error),
            _ => Ok(DeleteOutcome::Completed),
        }
    }

    async fn observe_disk(&self, resource: &Resource) -> Result<Observed, ProviderError> {
        let disk = ProxmoxDetails::disk(resource)?;
        let content = self
            .client
            .get(&format!("/nodes/{}/storage/{}/content", disk.node, disk.storage))
            .await?;
        let present = content.as_array().is_some_and(|list| {
            list.iter()
                .any(|v| v.get("volid").and_then(Value::as_str) == Some(disk.volid.as_str()))
        });
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
                let path = format!("/nodes/{node}/storage/{storage}/content");
                let content = client.get(&path).await?;
                Ok(discover::parse_content(&node, &storage, shared, &content))
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
        let all_guests = discover::parse_guests(&self.client.get("/cluster/resources?type=vm").await?);
        let storage_list = self.client.get("/cluster/resources?type=storage").await?;
        let mut shared = BTreeSet::new();
        let mut storages: BTreeMap<String, (String, String, bool)> = BTreeMap::new();
        for entry in storage_list.as_array().map(Vec::as_slice).unwrap_or_default() {
            let field = |k: &str| {
                entry
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (storage, node, content, status) =
                (field("storage"), field("node"), field("content"), field("status"));
            let is_shared = discover::flag(entry, "shared");
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
        let configs: Vec<(usize, Result<Value, ProviderError>)> = stream::iter(owned)
            .map(|(index, guest): (usize, GuestEntry)| async move {
                if guest.status == "unknown" {
                    return (index, Err(ProviderError::Config("node unreachable".to_string())));
                }
                let kind = if guest.kind == Kind::Container {
                    "lxc"
                } else {
                    "qemu"
                };
                (
                    index,
                    client
                        .get(&format!("/nodes/{}/{kind}/{}/config", guest.node, guest.vmid))
                        .await,
                )
            })
            .buffer_unordered(DISCOVERY_CONCURRENCY)
            .collect()
            .await;
        let mut resources = Vec::new();
        let mut referenced = BTreeSet::new();
        let mut configs: BTreeMap<usize, Result<Value, ProviderError>> = configs.into_iter().collect();
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
                _ => None,
            };
            if let Some(config) = &config {
                referenced.extend(discover::config_volids(config));
            }
            resources.push(discover::guest_resource(
                &self.cloud,
                guest,
                config.as_ref(),
                &shared,
            ));
        }
        if self.settings.pools.is_none() {
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
        match self.client.get(&format!("{path}/status/current")).await {
            Ok(status) => {
                if let Some(lock) = status.get("lock").and_then(Value::as_str) {
                    return Ok(Observed::Busy(format!("locked ({lock})")));
                }
                Ok(Observed::Ready)
            }
            Err(error) if error.class() == ErrorClass::NotFound => Ok(Observed::Gone),
            Err(error) => Err(error),
        }
    }

    async fn delete(&self, resource: &Resource) -> Result<DeleteOutcome, ProviderError> {
        match resource.key.kind {
            Kind::Disk => self.delete_disk(resource).await,
            _ => self.delete_guest(resource).await,
        }
    }
}
