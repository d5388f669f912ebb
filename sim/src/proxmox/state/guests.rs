//! Guests (QEMU VMs and LXC containers): their configs, tags and locks, what the node and type in
//! a URL must match, the summaries lists show, and what stop, shutdown, destroy, create and config
//! changes do.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{bool01, unix_now, Cluster, Effect, Ending};
use crate::proxmox::errors::ApiError;

/// QEMU VM or LXC container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuestType {
    Qemu,
    Lxc,
}

impl GuestType {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Qemu => "qemu",
            GuestType::Lxc => "lxc",
        }
    }

    pub fn parse(text: &str) -> Option<GuestType> {
        match text {
            "qemu" => Some(GuestType::Qemu),
            "lxc" => Some(GuestType::Lxc),
            _ => None,
        }
    }

    /// `VM` or `CT`, as Proxmox's messages name the guest.
    fn label(self) -> &'static str {
        match self {
            GuestType::Qemu => "VM",
            GuestType::Lxc => "CT",
        }
    }

    pub(super) fn config_dir(self) -> &'static str {
        match self {
            GuestType::Qemu => "qemu-server",
            GuestType::Lxc => "lxc",
        }
    }

    /// The prefix of its task types (`qm` for `qmstop`, `vz` for `vzstop`).
    pub fn task_prefix(self) -> &'static str {
        match self {
            GuestType::Qemu => "qm",
            GuestType::Lxc => "vz",
        }
    }
}

/// A guest as URLs name it: `/nodes/{node}/{qemu|lxc}/{vmid}`.
#[derive(Debug, Clone, Copy)]
pub struct GuestRef<'a> {
    pub node: &'a str,
    pub guest_type: GuestType,
    pub vmid: u32,
}

/// One guest and its config.
#[derive(Debug, Clone)]
pub struct Guest {
    pub vmid: u32,
    pub guest_type: GuestType,
    pub node: String,
    pub running: bool,
    /// Ignores a graceful shutdown (a stuck installer, a kernel panic).
    pub wedged: bool,
    pub pool: Option<String>,
    /// HA state (`started`, ...) when the guest is HA-managed.
    pub hastate: Option<String>,
    /// The config as `GET .../config` returns it: `name`/`hostname`, `tags`, `meta`, `protection`,
    /// `template`, `lock`, disks.
    pub config: BTreeMap<String, String>,
}

impl Guest {
    pub fn name(&self) -> String {
        let key = if self.guest_type == GuestType::Lxc {
            "hostname"
        } else {
            "name"
        };
        self.config.get(key).cloned().unwrap_or_default()
    }

    pub fn lock(&self) -> Option<&str> {
        self.config.get("lock").map(String::as_str)
    }

    fn flag(&self, key: &str) -> bool {
        self.config.get(key).is_some_and(|v| v == "1")
    }

    /// What a config lock refuses with (`VM is locked (backup)`), when the guest has one.
    fn locked(&self) -> Option<String> {
        self.lock()
            .map(|lock| format!("{} is locked ({lock})", self.guest_type.label()))
    }

    fn status_word(&self, node_online: bool) -> &'static str {
        if !node_online {
            "unknown"
        } else if self.running {
            "running"
        } else {
            "stopped"
        }
    }

    /// Volume ids this guest's config references (disks, mount points, unused disks).
    pub fn volids(&self) -> Vec<String> {
        self.config
            .iter()
            .filter(|(key, _)| is_disk_key(key))
            .filter_map(|(_, value)| {
                let first = value.split(',').next()?;
                (first.contains(':') && !value.contains("media=cdrom")).then(|| first.to_string())
            })
            .collect()
    }
}

fn is_disk_key(key: &str) -> bool {
    let digits = key.trim_start_matches(|c: char| c.is_ascii_lowercase());
    let prefix = &key[..key.len() - digits.len()];
    (key == "rootfs" || key == "efidisk0" || key == "tpmstate0")
        || (!digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && matches!(prefix, "scsi" | "virtio" | "sata" | "ide" | "mp" | "unused"))
}

/// Proxmox stores tags `;`-separated, lower-cased, sorted.
pub fn normalize_tags(tags: &str) -> String {
    let mut list: Vec<String> = tags
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect();
    list.sort();
    list.dedup();
    list.join(";")
}

impl Cluster {
    /// The guest `at` names, or Proxmox's "does not exist" error.
    pub fn guest(&self, at: GuestRef<'_>) -> Result<&Guest, ApiError> {
        let GuestRef {
            node,
            guest_type,
            vmid,
        } = at;
        self.guests
            .get(&vmid)
            .filter(|g| g.node == node && g.guest_type == guest_type)
            .ok_or_else(|| {
                ApiError::die(format!(
                    "Configuration file 'nodes/{node}/{}/{vmid}.conf' does not exist",
                    guest_type.config_dir()
                ))
            })
    }

    /// The guest `at` names, on a node that answers: the errors of a real request, in its order.
    pub fn reachable_guest(&self, at: GuestRef<'_>) -> Result<&Guest, ApiError> {
        self.check_node(at.node)?;
        self.guest(at)
    }

    fn reachable_guest_mut(&mut self, at: GuestRef<'_>) -> Result<&mut Guest, ApiError> {
        self.reachable_guest(at)?;
        // Invariant: `reachable_guest` just found it under the same lock.
        self.guests
            .get_mut(&at.vmid)
            .ok_or_else(|| ApiError::die(format!("guest {} vanished", at.vmid)))
    }

    /// What lists and `status/current` show of every guest.
    pub(super) fn guest_summary(&self, guest: &Guest) -> Map<String, Value> {
        let online = self.node_online(&guest.node);
        let mut entry = Map::new();
        entry.insert("vmid".into(), json!(guest.vmid));
        entry.insert("name".into(), json!(guest.name()));
        entry.insert("status".into(), json!(guest.status_word(online)));
        entry.insert("template".into(), bool01(guest.flag("template")));
        entry.insert("maxmem".into(), json!(2_147_483_648_u64));
        entry.insert("maxdisk".into(), json!(8_589_934_592_u64));
        entry.insert("uptime".into(), json!(if guest.running { 1234 } else { 0 }));
        if let Some(tags) = guest.config.get("tags") {
            entry.insert("tags".into(), json!(tags));
        }
        if let Some(lock) = guest.lock() {
            entry.insert("lock".into(), json!(lock));
        }
        entry
    }

    /// `GET /nodes/{node}/{type}`: containers show `vmid` as text and a `type`.
    pub fn list_guests(&self, node: &str, guest_type: GuestType) -> Result<Value, ApiError> {
        self.check_node(node)?;
        let list: Vec<Value> = self
            .guests
            .values()
            .filter(|g| g.node == node && g.guest_type == guest_type)
            .map(|g| {
                let mut entry = self.guest_summary(g);
                if guest_type == GuestType::Lxc {
                    entry.insert("type".into(), json!("lxc"));
                    entry.insert("vmid".into(), json!(g.vmid.to_string()));
                }
                Value::Object(entry)
            })
            .collect();
        Ok(Value::Array(list))
    }

    /// `GET .../config`: numbers as numbers (but names, tags and NICs as text), and a digest.
    pub fn get_config(&self, at: GuestRef<'_>) -> Result<Value, ApiError> {
        let guest = self.reachable_guest(at)?;
        let mut config = Map::new();
        for (key, value) in &guest.config {
            let value = match value.parse::<i64>() {
                Ok(number) if !key.starts_with("net") && key != "tags" && key != "name" => json!(number),
                _ => json!(value),
            };
            config.insert(key.clone(), value);
        }
        config.insert(
            "digest".into(),
            json!(format!("{:040x}", u128::from(at.vmid) * 7919)),
        );
        Ok(Value::Object(config))
    }

    /// `GET .../status/current`: the summary with HA state, and QEMU's `qmpstatus`.
    pub fn status_current(&self, at: GuestRef<'_>) -> Result<Value, ApiError> {
        let guest = self.reachable_guest(at)?;
        let mut entry = self.guest_summary(guest);
        entry.insert(
            "ha".into(),
            match &guest.hastate {
                Some(state) => json!({"managed": 1, "state": state}),
                None => json!({"managed": 0}),
            },
        );
        if at.guest_type == GuestType::Qemu {
            entry.insert(
                "qmpstatus".into(),
                json!(if guest.running { "running" } else { "stopped" }),
            );
        } else {
            entry.insert("type".into(), json!("lxc"));
        }
        Ok(Value::Object(entry))
    }

    /// `POST .../status/stop`. The caller has already waited for the config lock file.
    pub fn stop(
        &mut self,
        at: GuestRef<'_>,
        user: &str,
        overrule_shutdown: bool,
    ) -> Result<String, ApiError> {
        let guest = self.reachable_guest(at)?;
        let vmid = at.vmid;
        if guest.hastate.is_some() {
            if overrule_shutdown {
                return Err(ApiError::param(
                    "overrule-shutdown",
                    "Not applicable for HA resources.",
                ));
            }
            let ending = self.ending(None, Effect::Stop(vmid));
            return Ok(self.guest_task(at, "hastop", user, ending));
        }
        if at.guest_type == GuestType::Lxc && !guest.running {
            return Err(ApiError::die(format!("CT {vmid} not running")));
        }
        let lock_failure = guest.locked();
        let prefix = at.guest_type.task_prefix();
        if overrule_shutdown {
            let shutdown_type = format!("{prefix}shutdown");
            let id = vmid.to_string();
            let running: Vec<String> = self
                .tasks
                .values()
                .filter(|t| !t.finished && t.id == id && t.task_type == shutdown_type)
                .map(|t| t.upid.clone())
                .collect();
            for upid in running {
                self.finish_task(&upid, Some("interrupted by signal"));
            }
        }
        let ending = self.ending(lock_failure, Effect::Stop(vmid));
        Ok(self.guest_task(at, &format!("{prefix}stop"), user, ending))
    }

    /// `POST .../status/shutdown` with `timeout` (already capped) and `forceStop`: a wedged guest
    /// ignores the request until the timeout, then is stopped or the task fails.
    pub fn shutdown(
        &mut self,
        at: GuestRef<'_>,
        user: &str,
        timeout: Duration,
        force_stop: bool,
    ) -> Result<String, ApiError> {
        let guest = self.reachable_guest(at)?;
        let vmid = at.vmid;
        if at.guest_type == GuestType::Lxc && !guest.running {
            return Err(ApiError::die(format!("CT {vmid} not running")));
        }
        let usual = self.task_duration;
        let (after, failure, effect) = if let Some(locked) = guest.locked() {
            (usual, Some(locked), Effect::None)
        } else if !guest.running {
            (usual, None, Effect::None)
        } else if guest.wedged && force_stop {
            (timeout, None, Effect::Stop(vmid))
        } else if guest.wedged {
            let text = match at.guest_type {
                GuestType::Qemu => "VM quit/powerdown failed - got timeout",
                GuestType::Lxc => "shutdown failed - got timeout",
            };
            (timeout, Some(text.to_string()), Effect::None)
        } else {
            (usual, None, Effect::Stop(vmid))
        };
        let task_type = format!("{}shutdown", at.guest_type.task_prefix());
        let ending = Ending {
            after,
            failure,
            effect,
        };
        Ok(self.guest_task(at, &task_type, user, ending))
    }

    /// `POST .../{vmid}/template`: a stopped, unlocked guest becomes a template; a VM by a
    /// `qmtemplate` task (its UPID returned), a container at once (`null`).
    pub fn template(&mut self, at: GuestRef<'_>, user: &str) -> Result<Value, ApiError> {
        let guest = self.reachable_guest(at)?;
        let vmid = at.vmid;
        if guest.flag("template") {
            return Err(ApiError::die("you can't convert a template to a template"));
        }
        if guest.running {
            let what = match at.guest_type {
                GuestType::Qemu => "VM",
                GuestType::Lxc => "CT",
            };
            return Err(ApiError::die(format!(
                "you can't convert a {what} to template if {what} is running"
            )));
        }
        if let Some(locked) = guest.locked() {
            return Err(ApiError::die(locked));
        }
        match at.guest_type {
            GuestType::Qemu => {
                let ending = self.ending(None, Effect::Template(vmid));
                Ok(Value::String(self.guest_task(at, "qmtemplate", user, ending)))
            }
            GuestType::Lxc => {
                if let Some(guest) = self.guests.get_mut(&vmid) {
                    guest.config.insert("template".to_string(), "1".to_string());
                }
                Ok(Value::Null)
            }
        }
    }

    /// `DELETE /nodes/{node}/{type}/{vmid}`. The caller has already waited for the lock file.
    pub fn destroy(
        &mut self,
        at: GuestRef<'_>,
        user: &str,
        purge: bool,
        unreferenced_disks: bool,
    ) -> Result<String, ApiError> {
        let guest = self.reachable_guest(at)?;
        let vmid = at.vmid;
        let label = at.guest_type.label();
        if guest.flag("protection") {
            return Err(ApiError::die(format!(
                "can't remove {label} {vmid} - protection mode enabled"
            )));
        }
        if guest.hastate.is_some() && !purge {
            return Err(ApiError::die(format!(
                "unable to remove {label} {vmid} - used in HA resources and purge parameter not set."
            )));
        }
        let lock_failure = guest.locked();
        match at.guest_type {
            GuestType::Qemu if guest.running => {
                return Err(ApiError::die(format!("VM {vmid} is running - destroy failed")));
            }
            GuestType::Lxc => {
                if let Some(text) = lock_failure {
                    return Err(ApiError::die(text));
                }
                if guest.running {
                    return Err(ApiError::die(format!(
                        "unable to destroy CT {vmid} - container is running"
                    )));
                }
            }
            GuestType::Qemu => {}
        }
        let effect = Effect::Destroy {
            vmid,
            unreferenced_disks,
        };
        let task_type = format!("{}destroy", at.guest_type.task_prefix());
        let ending = self.ending(lock_failure, effect);
        Ok(self.guest_task(at, &task_type, user, ending))
    }

    /// `POST /nodes/{node}/qemu` or `/lxc`: creates the guest at once (stopped), allocating the
    /// disks named `storage:size` in `params`; the task starts it when `start=1`.
    pub fn create(
        &mut self,
        node: &str,
        guest_type: GuestType,
        params: &BTreeMap<String, String>,
        user: &str,
    ) -> Result<String, ApiError> {
        self.check_node(node)?;
        let vmid: u32 = params
            .get("vmid")
            .and_then(|v| v.parse().ok())
            .filter(|v| (100..1_000_000_000).contains(v))
            .ok_or_else(|| ApiError::param("vmid", "property is missing or invalid"))?;
        if self.guests.contains_key(&vmid) {
            let label = guest_type.label();
            return Err(ApiError::die(format!(
                "unable to create {label} {vmid} - {label} {vmid} already exists on node '{node}'"
            )));
        }
        if let Some(pool) = params.get("pool") {
            if !self.pools.contains_key(pool) {
                return Err(ApiError::die(format!("pool '{pool}' does not exist")));
            }
        }
        let mut config = BTreeMap::new();
        let mut disk_index = 0;
        for (key, value) in params {
            if matches!(
                key.as_str(),
                "vmid" | "start" | "pool" | "ostemplate" | "password" | "node"
            ) {
                continue;
            }
            let mut value = value.clone();
            if is_disk_key(key) {
                value = self.allocate_disk(node, vmid, &value, &mut disk_index, guest_type)?;
            }
            config.insert(key.clone(), value);
        }
        if let Some(tags) = config.get("tags").cloned() {
            config.insert("tags".into(), normalize_tags(&tags));
        }
        if guest_type == GuestType::Qemu && !config.contains_key("meta") {
            config.insert("meta".into(), format!("creation-qemu=9.0.2,ctime={}", unix_now()));
        }
        let guest = Guest {
            vmid,
            guest_type,
            node: node.to_string(),
            running: false,
            wedged: false,
            pool: params.get("pool").cloned(),
            hastate: None,
            config,
        };
        self.guests.insert(vmid, guest);
        let start = params.get("start").is_some_and(|v| v == "1" || v == "true");
        let effect = if start { Effect::Start(vmid) } else { Effect::None };
        let task_type = format!("{}create", guest_type.task_prefix());
        let at = GuestRef {
            node,
            guest_type,
            vmid,
        };
        let ending = self.ending(None, effect);
        Ok(self.guest_task(at, &task_type, user, ending))
    }

    /// `PUT`/`POST .../config`: sets keys and removes those listed in `delete`.
    pub fn update_config(
        &mut self,
        at: GuestRef<'_>,
        params: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let guest = self.reachable_guest_mut(at)?;
        if let Some(locked) = guest.locked() {
            if !params.contains_key("skiplock") {
                return Err(ApiError::die(locked));
            }
        }
        for (key, value) in params {
            match key.as_str() {
                "delete" => {
                    for name in value.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                        guest.config.remove(name);
                    }
                }
                "digest" | "skiplock" | "node" | "vmid" => {}
                "tags" => {
                    guest.config.insert(key.clone(), normalize_tags(value));
                }
                _ => {
                    guest.config.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_keys_are_recognised() {
        assert!(
            is_disk_key("scsi0") && is_disk_key("rootfs") && is_disk_key("mp3") && is_disk_key("unused0")
        );
        assert!(!is_disk_key("net0") && !is_disk_key("scsihw") && !is_disk_key("name"));
    }
}
