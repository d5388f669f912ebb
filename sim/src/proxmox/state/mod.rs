//! The simulated cluster's state: nodes, guests and their configs, storages and volumes, tasks, and the
//! rules that decide what each API call does to them. Time-based effects (a task finishing, a backup
//! lock clearing) are applied lazily by [`Cluster::advance`] whenever the state is looked at.
//!
//! # Layout
//! - this module: the [`Cluster`], its nodes, and the cluster-wide reads (`/version`, `/nodes`,
//!   `/cluster/resources`).
//! - `guests`: VMs and containers, their configs and locks, and what stop, shutdown, destroy, create
//!   and config changes do to them.
//! - `tasks`: worker tasks, their UPIDs, endings and effects, and the config lock file they hold.
//! - `storage`: storages, volumes, disk allocation and freeing.

mod guests;
mod storage;
mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::errors::ApiError;
use crate::clock::SimClock;

pub use guests::{normalize_tags, Guest, GuestRef, GuestType};
pub use storage::{volume_vmid, Storage, Volume};
pub use tasks::{Effect, Ending, Task, TaskQuirks};

/// The whole simulated cluster.
#[derive(Debug)]
pub struct Cluster {
    /// What task ends and lock waits are measured on; tests advance it.
    pub clock: SimClock,
    pub nodes: BTreeMap<String, bool>,
    pub guests: BTreeMap<u32, Guest>,
    pub storages: BTreeMap<String, Storage>,
    pub volumes: Vec<Volume>,
    pub pools: BTreeMap<String, String>,
    pub tasks: BTreeMap<String, Task>,
    pub task_duration: Duration,
    /// The longest a shutdown's `timeout` is honoured for, so tests need not wait minutes.
    pub shutdown_timeout_cap: Duration,
    pub quirks: TaskQuirks,
    /// Error text the next task on a vmid fails with.
    pub task_failures: BTreeMap<u32, String>,
    /// Vmids whose tasks hang: they run (holding the config lock file) until released.
    pub hung: BTreeSet<u32>,
    next_pid: u32,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn bool01(value: bool) -> Value {
    json!(u8::from(value))
}

impl Cluster {
    pub fn new(clock: SimClock, task_duration: Duration, quirks: TaskQuirks) -> Self {
        let mut storages = BTreeMap::new();
        for (id, plugin, content, shared) in [
            ("local", "dir", "iso,vztmpl,backup", false),
            ("local-lvm", "lvmthin", "images,rootdir", false),
            ("ceph", "rbd", "images,rootdir", true),
        ] {
            let storage = Storage {
                id: id.to_string(),
                plugin: plugin.to_string(),
                content: content.to_string(),
                shared,
            };
            storages.insert(id.to_string(), storage);
        }
        Cluster {
            clock,
            nodes: [("pve1".to_string(), true), ("pve2".to_string(), true)]
                .into_iter()
                .collect(),
            guests: BTreeMap::new(),
            storages,
            volumes: Vec::new(),
            pools: BTreeMap::new(),
            tasks: BTreeMap::new(),
            task_duration,
            shutdown_timeout_cap: Duration::from_secs(180),
            quirks,
            task_failures: BTreeMap::new(),
            hung: BTreeSet::new(),
            next_pid: 0x1000,
        }
    }

    pub fn node_online(&self, node: &str) -> bool {
        self.nodes.get(node).copied().unwrap_or(false)
    }

    /// Fails like a request proxied to an unknown or unreachable node.
    pub fn check_node(&self, node: &str) -> Result<(), ApiError> {
        match self.nodes.get(node) {
            None => Err(ApiError::param("node", format!("no such cluster node '{node}'"))),
            Some(false) => Err(ApiError::bare(595, "No route to host")),
            Some(true) => Ok(()),
        }
    }

    pub fn version(&self) -> Value {
        json!({"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"})
    }

    pub fn list_nodes(&self) -> Value {
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|(node, online)| {
                json!({
                    "node": node, "id": format!("node/{node}"), "type": "node",
                    "status": if *online { "online" } else { "offline" },
                    "maxcpu": 16, "maxmem": 68_719_476_736_u64,
                })
            })
            .collect();
        Value::Array(nodes)
    }

    /// `GET /cluster/resources`, optionally filtered by `type` (`vm`, `storage`, `node`).
    pub fn cluster_resources(&self, filter: Option<&str>) -> Result<Value, ApiError> {
        if let Some(f) = filter {
            if !matches!(f, "vm" | "storage" | "node" | "sdn" | "pool") {
                return Err(ApiError::param(
                    "type",
                    format!(
                        "value '{f}' does not have a value in the enumeration 'vm, storage, node, sdn, pool'"
                    ),
                ));
            }
        }
        let mut out = Vec::new();
        if filter.is_none_or(|f| f == "vm") {
            for guest in self.guests.values() {
                let mut entry = self.guest_summary(guest);
                let kind = guest.guest_type.as_str();
                entry.insert("id".into(), json!(format!("{kind}/{}", guest.vmid)));
                entry.insert("type".into(), json!(kind));
                entry.insert("node".into(), json!(guest.node));
                if let Some(pool) = &guest.pool {
                    entry.insert("pool".into(), json!(pool));
                }
                if let Some(hastate) = &guest.hastate {
                    entry.insert("hastate".into(), json!(hastate));
                }
                out.push(Value::Object(entry));
            }
        }
        if filter.is_none_or(|f| f == "storage") {
            for (node, online) in &self.nodes {
                for storage in self.storages.values() {
                    out.push(json!({
                        "id": format!("storage/{node}/{}", storage.id), "type": "storage",
                        "storage": storage.id, "node": node, "plugintype": storage.plugin,
                        "content": storage.content, "shared": bool01(storage.shared),
                        "status": if *online { "available" } else { "unknown" },
                        "disk": 1_073_741_824_u64, "maxdisk": 107_374_182_400_u64,
                    }));
                }
            }
        }
        if filter.is_none_or(|f| f == "node") {
            if let Value::Array(nodes) = self.list_nodes() {
                out.extend(nodes);
            }
        }
        if filter.is_none_or(|f| f == "pool") {
            for pool in self.pools.keys() {
                out.push(json!({"id": format!("/pool/{pool}"), "type": "pool", "pool": pool}));
            }
        }
        Ok(Value::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_task_applies_its_effect_once() {
        let clock = SimClock::new();
        let mut cluster = Cluster::new(clock.clone(), Duration::from_secs(60), TaskQuirks::default());
        let mut params = BTreeMap::new();
        params.insert("vmid".to_string(), "100".to_string());
        params.insert("scsi0".to_string(), "local-lvm:4".to_string());
        params.insert("start".to_string(), "1".to_string());
        cluster
            .create("pve1", GuestType::Qemu, &params, "root@pam")
            .unwrap();
        cluster.advance();
        assert!(!cluster.guests[&100].running, "the create task still runs");
        clock.advance(Duration::from_secs(60));
        cluster.advance();
        assert!(cluster.guests[&100].running);
        assert_eq!(cluster.volumes.len(), 1);
        // Advancing again does not run the create's effect a second time: still one disk.
        clock.advance(Duration::from_secs(60));
        cluster.advance();
        assert_eq!(cluster.volumes.len(), 1);
        assert!(cluster.guests[&100].running);
        let at = GuestRef {
            node: "pve1",
            guest_type: GuestType::Qemu,
            vmid: 100,
        };
        let err = cluster.destroy(at, "root@pam", true, true).unwrap_err();
        assert_eq!(err.message, "VM 100 is running - destroy failed");
    }
}
