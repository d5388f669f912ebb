//! The simulated cluster's state: nodes, guests and their configs, storages and volumes, tasks, and the
//! rules that decide what each API call does to them. Time-based effects (a task finishing, a backup
//! lock clearing) are applied lazily by [`Cluster::advance`] whenever the state is looked at.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::clock::SimClock;

/// An API error as Proxmox VE sends it: the status, the message (status line reason and body
/// `message`), and per-parameter `errors` for 400 "Parameter verification failed."
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Option<Map<String, Value>>,
    /// Proxy and authentication errors come with an empty body.
    pub empty_body: bool,
}

impl ApiError {
    /// A 500 with the text a Perl `die` leaves.
    pub fn die(message: impl Into<String>) -> Self {
        ApiError {
            status: 500,
            message: message.into(),
            errors: None,
            empty_body: false,
        }
    }

    /// A 400 "Parameter verification failed." naming the parameter.
    pub fn param(name: &str, message: impl Into<String>) -> Self {
        let mut errors = Map::new();
        errors.insert(name.to_string(), Value::String(message.into()));
        ApiError {
            status: 400,
            message: "Parameter verification failed.".to_string(),
            errors: Some(errors),
            empty_body: false,
        }
    }

    /// An error with an empty body (auth failures, proxy errors to an offline node).
    pub fn bare(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            errors: None,
            empty_body: true,
        }
    }
}

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

    fn config_dir(self) -> &'static str {
        match self {
            GuestType::Qemu => "qemu-server",
            GuestType::Lxc => "lxc",
        }
    }

    fn task_prefix(self) -> &'static str {
        match self {
            GuestType::Qemu => "qm",
            GuestType::Lxc => "vz",
        }
    }
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

/// A storage as `storage.cfg` defines it.
#[derive(Debug, Clone)]
pub struct Storage {
    pub id: String,
    pub plugin: String,
    pub content: String,
    /// Shared storages hold one set of volumes seen from every node.
    pub shared: bool,
}

/// One volume on a storage.
#[derive(Debug, Clone)]
pub struct Volume {
    pub storage: String,
    /// The node whose local storage holds it; `None` on shared storage.
    pub node: Option<String>,
    pub name: String,
    pub vmid: Option<u32>,
    pub size: u64,
    pub content: String,
    pub ctime: u64,
}

impl Volume {
    pub fn volid(&self) -> String {
        format!("{}:{}", self.storage, self.name)
    }
}

/// The vmid a volume name (`vm-100-disk-0`, `subvol-100-disk-1`, `base-100-disk-0`) belongs to.
pub fn volume_vmid(name: &str) -> Option<u32> {
    let rest = ["vm-", "subvol-", "base-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    rest.split('-').next()?.parse().ok()
}

/// What a finished task does to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    Stop(u32),
    Start(u32),
    Destroy {
        vmid: u32,
        unreferenced_disks: bool,
    },
    FreeVolume {
        storage: String,
        node: Option<String>,
        name: String,
    },
    ClearLock(u32),
}

/// How a new task ends: after how long, with which failure text (success when `None`), doing what.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub after: Duration,
    pub failure: Option<String>,
    pub effect: Effect,
}

/// One worker task.
#[derive(Debug, Clone)]
pub struct Task {
    pub upid: String,
    pub node: String,
    pub task_type: String,
    pub id: String,
    pub user: String,
    pub starttime: u64,
    pub pid: u32,
    pub pstart: u32,
    pub ends_at: Instant,
    /// `None` for success, else the error text (`TASK ERROR: ...`).
    pub failure: Option<String>,
    pub effect: Effect,
    pub log: Vec<String>,
    /// Set once [`Cluster::advance`] ran the task's end.
    pub finished: bool,
    /// Until then, a finished task reports `status: stopped` without `exitstatus`.
    pub exitstatus_hidden_until: Instant,
    /// Until then, the task status answers 400 "no such task".
    pub unknown_until: Instant,
}

impl Task {
    pub fn exitstatus(&self) -> String {
        match &self.failure {
            None => "OK".to_string(),
            Some(text) => text.clone(),
        }
    }
}

/// Task quirks that apply to the tasks started from now on.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskQuirks {
    /// How long a finished task reports `stopped` without `exitstatus`.
    pub exitstatus_lag: Duration,
    /// How long a new task answers 400 "no such task".
    pub unknown_for: Duration,
}

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

    /// Applies every time-based effect due by the clock's now, in the order they fall due.
    pub fn advance(&mut self) {
        let now = self.clock.now();
        loop {
            let due = self
                .tasks
                .values()
                .filter(|t| !t.finished && t.ends_at <= now)
                .min_by_key(|t| t.ends_at)
                .map(|t| t.upid.clone());
            let Some(upid) = due else { break };
            self.finish_task(&upid, None);
        }
    }

    /// Ends a task now; `interrupted` overrides its outcome with that failure.
    fn finish_task(&mut self, upid: &str, interrupted: Option<&str>) {
        let now = self.clock.now();
        let Some(task) = self.tasks.get_mut(upid) else {
            return;
        };
        task.finished = true;
        if let Some(text) = interrupted {
            task.failure = Some(text.to_string());
            task.effect = Effect::None;
            task.ends_at = now;
            task.exitstatus_hidden_until = task.exitstatus_hidden_until.min(now);
        }
        let line = match &task.failure {
            None => "TASK OK".to_string(),
            Some(text) => format!("TASK ERROR: {text}"),
        };
        task.log.push(line);
        let effect = if task.failure.is_none() {
            task.effect.clone()
        } else {
            Effect::None
        };
        self.apply(effect);
    }

    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::None => {}
            Effect::Stop(vmid) => {
                if let Some(guest) = self.guests.get_mut(&vmid) {
                    guest.running = false;
                }
            }
            Effect::Start(vmid) => {
                if let Some(guest) = self.guests.get_mut(&vmid) {
                    guest.running = true;
                }
            }
            Effect::ClearLock(vmid) => {
                if let Some(guest) = self.guests.get_mut(&vmid) {
                    guest.config.remove("lock");
                }
            }
            Effect::Destroy {
                vmid,
                unreferenced_disks,
            } => {
                let Some(guest) = self.guests.remove(&vmid) else {
                    return;
                };
                let referenced = guest.volids();
                let node = guest.node.clone();
                self.volumes.retain(|volume| {
                    let on_node = volume.node.as_ref().is_none_or(|n| *n == node);
                    let owned = referenced.contains(&volume.volid())
                        || (unreferenced_disks && volume.vmid == Some(vmid) && volume.content != "backup");
                    !(on_node && owned)
                });
            }
            Effect::FreeVolume { storage, node, name } => {
                self.volumes
                    .retain(|v| !(v.storage == storage && v.node == node && v.name == name));
            }
        }
    }

    /// Starts a worker task on `node`; it ends after `duration` with `failure` (or success).
    pub fn start_task(
        &mut self,
        node: &str,
        task_type: &str,
        id: &str,
        user: &str,
        ending: Ending,
    ) -> String {
        let Ending {
            after: duration,
            failure,
            effect,
        } = ending;
        self.next_pid += 1;
        let pid = self.next_pid;
        let pstart = pid.wrapping_mul(7);
        let starttime = unix_now();
        let upid = format!(
            "UPID:{node}:{pid:08X}:{pstart:08X}:{:08X}:{task_type}:{id}:{user}:",
            u32::try_from(starttime).unwrap_or(u32::MAX)
        );
        let now = self.clock.now();
        let ends_at = now + duration;
        let failure = match id
            .parse::<u32>()
            .ok()
            .and_then(|vmid| self.task_failures.remove(&vmid))
        {
            Some(injected) => Some(injected),
            None => failure,
        };
        let task = Task {
            upid: upid.clone(),
            node: node.to_string(),
            task_type: task_type.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            starttime,
            pid,
            pstart,
            ends_at,
            failure,
            effect,
            log: Vec::new(),
            finished: false,
            exitstatus_hidden_until: ends_at + self.quirks.exitstatus_lag,
            unknown_until: now + self.quirks.unknown_for,
        };
        self.tasks.insert(upid.clone(), task);
        upid
    }

    /// True while a task on `vmid` runs: it holds the guest's config lock file.
    pub fn holds_lock_file(&self, vmid: u32) -> bool {
        let id = vmid.to_string();
        self.tasks.values().any(|t| !t.finished && t.id == id)
    }

    pub fn lock_timeout_error(&self, vmid: u32) -> ApiError {
        let dir = self
            .guests
            .get(&vmid)
            .map_or("qemu-server", |g| g.guest_type.config_dir());
        ApiError::die(format!(
            "can't lock file '/var/lock/{dir}/lock-{vmid}.conf' - got timeout"
        ))
    }

    /// The guest `vmid` of `guest_type` on `node`, or Proxmox's "does not exist" error.
    pub fn guest(&self, node: &str, guest_type: GuestType, vmid: u32) -> Result<&Guest, ApiError> {
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

    fn guest_mut(&mut self, node: &str, guest_type: GuestType, vmid: u32) -> Result<&mut Guest, ApiError> {
        self.guest(node, guest_type, vmid)?;
        self.guests
            .get_mut(&vmid)
            .ok_or_else(|| ApiError::die("guest vanished"))
    }

    // ---- reads -------------------------------------------------------------------------------

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

    fn guest_summary(&self, guest: &Guest) -> Map<String, Value> {
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

    pub fn get_config(&self, node: &str, guest_type: GuestType, vmid: u32) -> Result<Value, ApiError> {
        self.check_node(node)?;
        let guest = self.guest(node, guest_type, vmid)?;
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
            json!(format!("{:040x}", u128::from(vmid) * 7919)),
        );
        Ok(Value::Object(config))
    }

    pub fn status_current(&self, node: &str, guest_type: GuestType, vmid: u32) -> Result<Value, ApiError> {
        self.check_node(node)?;
        let guest = self.guest(node, guest_type, vmid)?;
        let mut entry = self.guest_summary(guest);
        entry.insert(
            "ha".into(),
            match &guest.hastate {
                Some(state) => json!({"managed": 1, "state": state}),
                None => json!({"managed": 0}),
            },
        );
        if guest_type == GuestType::Qemu {
            entry.insert(
                "qmpstatus".into(),
                json!(if guest.running { "running" } else { "stopped" }),
            );
        } else {
            entry.insert("type".into(), json!("lxc"));
        }
        Ok(Value::Object(entry))
    }

    pub fn task_status(&self, node: &str, upid: &str) -> Result<Value, ApiError> {
        self.check_node(node)?;
        if !upid.starts_with("UPID:") || upid.split(':').count() != 9 {
            return Err(ApiError::param("upid", "unable to parse worker upid"));
        }
        let now = self.clock.now();
        let task = self
            .tasks
            .get(upid)
            .filter(|t| t.node == node && t.unknown_until <= now)
            .ok_or_else(|| ApiError::param("upid", "no such task"))?;
        let mut status = json!({
            "upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart,
            "starttime": task.starttime, "type": task.task_type, "id": task.id, "user": task.user,
            "status": if task.finished { "stopped" } else { "running" },
        });
        if task.finished && task.exitstatus_hidden_until <= now {
            status["exitstatus"] = json!(task.exitstatus());
        }
        Ok(status)
    }

    pub fn task_log(&self, node: &str, upid: &str) -> Result<Value, ApiError> {
        self.check_node(node)?;
        let task = self
            .tasks
            .get(upid)
            .filter(|t| t.node == node)
            .ok_or_else(|| ApiError::param("upid", "no such task"))?;
        let lines: Vec<Value> = task
            .log
            .iter()
            .enumerate()
            .map(|(n, t)| json!({"n": n + 1, "t": t}))
            .collect();
        Ok(Value::Array(lines))
    }

    pub fn list_storages(&self, node: &str) -> Result<Value, ApiError> {
        self.check_node(node)?;
        let list: Vec<Value> = self
            .storages
            .values()
            .map(|s| {
                json!({
                    "storage": s.id, "type": s.plugin, "content": s.content, "shared": bool01(s.shared),
                    "active": 1, "enabled": 1, "total": 107_374_182_400_u64, "used": 1_073_741_824_u64,
                    "avail": 106_300_440_576_u64,
                })
            })
            .collect();
        Ok(Value::Array(list))
    }

    fn storage(&self, storage: &str) -> Result<&Storage, ApiError> {
        self.storages
            .get(storage)
            .ok_or_else(|| ApiError::die(format!("storage '{storage}' does not exist")))
    }

    fn volume_node(&self, storage: &str, node: &str) -> Result<Option<String>, ApiError> {
        Ok(if self.storage(storage)?.shared {
            None
        } else {
            Some(node.to_string())
        })
    }

    pub fn storage_content(
        &self,
        node: &str,
        storage: &str,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> Result<Value, ApiError> {
        self.check_node(node)?;
        let on = self.volume_node(storage, node)?;
        let list: Vec<Value> = self
            .volumes
            .iter()
            .filter(|v| v.storage == storage && v.node == on)
            .filter(|v| content.is_none_or(|c| c == v.content))
            .filter(|v| vmid.is_none_or(|id| v.vmid == Some(id)))
            .map(|v| {
                let mut entry = json!({
                    "volid": v.volid(), "format": "raw", "size": v.size, "content": v.content,
                    "ctime": v.ctime,
                });
                if let Some(vmid) = v.vmid {
                    entry["vmid"] = json!(vmid);
                }
                entry
            })
            .collect();
        Ok(Value::Array(list))
    }

    // ---- writes ------------------------------------------------------------------------------

    /// `POST .../status/stop`. The caller has already waited for the config lock file.
    pub fn stop(
        &mut self,
        node: &str,
        guest_type: GuestType,
        vmid: u32,
        user: &str,
        overrule_shutdown: bool,
    ) -> Result<String, ApiError> {
        self.check_node(node)?;
        let guest = self.guest(node, guest_type, vmid)?;
        let label = guest.guest_type.label();
        let prefix = guest.guest_type.task_prefix();
        if guest.hastate.is_some() {
            if overrule_shutdown {
                return Err(ApiError::param(
                    "overrule-shutdown",
                    "Not applicable for HA resources.",
                ));
            }
            let upid = self.start_task(
                node,
                "hastop",
                &vmid.to_string(),
                user,
                Ending {
                    after: self.task_duration,
                    failure: None,
                    effect: Effect::Stop(vmid),
                },
            );
            return Ok(upid);
        }
        if guest_type == GuestType::Lxc && !guest.running {
            return Err(ApiError::die(format!("CT {vmid} not running")));
        }
        let lock_failure = guest.lock().map(|lock| format!("{label} is locked ({lock})"));
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
        let effect = if lock_failure.is_some() {
            Effect::None
        } else {
            Effect::Stop(vmid)
        };
        let upid = self.start_task(
            node,
            &format!("{prefix}stop"),
            &vmid.to_string(),
            user,
            Ending {
                after: self.task_duration,
                failure: lock_failure,
                effect,
            },
        );
        Ok(upid)
    }

    /// `POST .../status/shutdown` with `timeout` (seconds, or the sim's `shutdown_default`) and
    /// `forceStop`.
    pub fn shutdown(
        &mut self,
        node: &str,
        guest_type: GuestType,
        vmid: u32,
        user: &str,
        timeout: Duration,
        force_stop: bool,
    ) -> Result<String, ApiError> {
        self.check_node(node)?;
        let guest = self.guest(node, guest_type, vmid)?;
        let label = guest.guest_type.label();
        let prefix = guest.guest_type.task_prefix();
        if guest_type == GuestType::Lxc && !guest.running {
            return Err(ApiError::die(format!("CT {vmid} not running")));
        }
        let id = vmid.to_string();
        let task_type = format!("{prefix}shutdown");
        let (duration, failure, effect) = if let Some(lock) = guest.lock() {
            (
                self.task_duration,
                Some(format!("{label} is locked ({lock})")),
                Effect::None,
            )
        } else if !guest.running {
            (self.task_duration, None, Effect::None)
        } else if guest.wedged && force_stop {
            (timeout, None, Effect::Stop(vmid))
        } else if guest.wedged {
            let text = match guest_type {
                GuestType::Qemu => "VM quit/powerdown failed - got timeout".to_string(),
                GuestType::Lxc => "shutdown failed - got timeout".to_string(),
            };
            (timeout, Some(text), Effect::None)
        } else {
            (self.task_duration, None, Effect::Stop(vmid))
        };
        Ok(self.start_task(
            node,
            &task_type,
            &id,
            user,
            Ending {
                after: duration,
                failure,
                effect,
            },
        ))
    }

    /// `DELETE /nodes/{node}/{type}/{vmid}`. The caller has already waited for the lock file.
    pub fn destroy(
        &mut self,
        node: &str,
        guest_type: GuestType,
        vmid: u32,
        user: &str,
        purge: bool,
        unreferenced_disks: bool,
    ) -> Result<String, ApiError> {
        self.check_node(node)?;
        let guest = self.guest(node, guest_type, vmid)?;
        let label = guest.guest_type.label();
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
        let lock_failure = guest.lock().map(|lock| format!("{label} is locked ({lock})"));
        match guest_type {
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
        let effect = if lock_failure.is_some() {
            Effect::None
        } else {
            Effect::Destroy {
                vmid,
                unreferenced_disks,
            }
        };
        let task_type = format!("{}destroy", guest_type.task_prefix());
        Ok(self.start_task(
            node,
            &task_type,
            &vmid.to_string(),
            user,
            Ending {
                after: self.task_duration,
                failure: lock_failure,
                effect,
            },
        ))
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
        Ok(self.start_task(
            node,
            &task_type,
            &vmid.to_string(),
            user,
            Ending {
                after: self.task_duration,
                failure: None,
                effect,
            },
        ))
    }

    /// Turns `storage:SIZE_GB[,opts]` into a new volume; an existing volid is kept as it is.
    fn allocate_disk(
        &mut self,
        node: &str,
        vmid: u32,
        spec: &str,
        index: &mut u32,
        guest_type: GuestType,
    ) -> Result<String, ApiError> {
        let (first, options) = spec.split_once(',').map_or((spec, ""), |(a, b)| (a, b));
        let Some((storage, size)) = first.split_once(':') else {
            return Ok(spec.to_string());
        };
        let Ok(size_gb) = size.parse::<u64>() else {
            return Ok(spec.to_string());
        };
        let on = self.volume_node(storage, node)?;
        let name = loop {
            let name = format!("vm-{vmid}-disk-{index}");
            *index += 1;
            if !self
                .volumes
                .iter()
                .any(|v| v.storage == storage && v.node == on && v.name == name)
            {
                break name;
            }
        };
        let content = if guest_type == GuestType::Lxc {
            "rootdir"
        } else {
            "images"
        };
        self.volumes.push(Volume {
            storage: storage.to_string(),
            node: on,
            name: name.clone(),
            vmid: Some(vmid),
            size: size_gb << 30,
            content: content.to_string(),
            ctime: unix_now(),
        });
        let mut value = format!("{storage}:{name},size={size_gb}G");
        if !options.is_empty() {
            value.push(',');
            value.push_str(options);
        }
        Ok(value)
    }

    /// `PUT`/`POST .../config`: sets keys and removes those listed in `delete`.
    pub fn update_config(
        &mut self,
        node: &str,
        guest_type: GuestType,
        vmid: u32,
        params: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        self.check_node(node)?;
        let guest = self.guest_mut(node, guest_type, vmid)?;
        if let Some(lock) = guest.lock() {
            if !params.contains_key("skiplock") {
                let label = guest_type.label();
                return Err(ApiError::die(format!("{label} is locked ({lock})")));
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

    /// `DELETE /nodes/{node}/storage/{storage}/content/{volume}`.
    pub fn free_volume(
        &mut self,
        node: &str,
        storage: &str,
        volume: &str,
        user: &str,
    ) -> Result<String, ApiError> {
        self.check_node(node)?;
        let on = self.volume_node(storage, node)?;
        let name = volume
            .strip_prefix(&format!("{storage}:"))
            .unwrap_or(volume)
            .to_string();
        let volid = format!("{storage}:{name}");
        if !self
            .volumes
            .iter()
            .any(|v| v.storage == storage && v.node == on && v.name == name)
        {
            return Err(ApiError::die(format!("volume '{volid}' does not exist")));
        }
        if let Some(owner) = volume_vmid(&name).and_then(|vmid| self.guests.get(&vmid)) {
            if owner.volids().contains(&volid) {
                return Err(ApiError::die(format!(
                    "unable to delete volume '{volid}' - referenced by guest {}",
                    owner.vmid
                )));
            }
        }
        let effect = Effect::FreeVolume {
            storage: storage.to_string(),
            node: on,
            name,
        };
        Ok(self.start_task(
            node,
            "imgdel",
            "",
            user,
            Ending {
                after: self.task_duration,
                failure: None,
                effect,
            },
        ))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_keys_and_volume_vmids_are_recognised() {
        assert!(
            is_disk_key("scsi0") && is_disk_key("rootfs") && is_disk_key("mp3") && is_disk_key("unused0")
        );
        assert!(!is_disk_key("net0") && !is_disk_key("scsihw") && !is_disk_key("name"));
        assert_eq!(volume_vmid("vm-105-disk-1"), Some(105));
        assert_eq!(volume_vmid("subvol-200-disk-0"), Some(200));
        assert_eq!(volume_vmid("iso/debian.iso"), None);
    }

    #[test]
    fn a_finished_task_applies_its_effect_once() {
        let mut cluster = Cluster::new(SimClock::new(), Duration::ZERO, TaskQuirks::default());
        let mut params = BTreeMap::new();
        params.insert("vmid".to_string(), "100".to_string());
        params.insert("scsi0".to_string(), "local-lvm:4".to_string());
        params.insert("start".to_string(), "1".to_string());
        cluster
            .create("pve1", GuestType::Qemu, &params, "root@pam")
            .unwrap();
        cluster.advance();
        assert!(cluster.guests[&100].running);
        assert_eq!(cluster.volumes.len(), 1);
        let err = cluster
            .destroy("pve1", GuestType::Qemu, 100, "root@pam", true, true)
            .unwrap_err();
        assert_eq!(err.message, "VM 100 is running - destroy failed");
    }
}
