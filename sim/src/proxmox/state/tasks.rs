//! Worker tasks: their UPIDs, how and when they end (a stop, a failed shutdown, a backup releasing
//! its lock), the config lock file a running task holds, and the status and log the API shows,
//! quirks included.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::{unix_now, Cluster, GuestRef};
use crate::proxmox::errors::ApiError;

/// How long a hung task runs: longer than any test, shorter than an `Instant` can overflow.
const HUNG_FOR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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
    /// The guest becomes a template.
    Template(u32),
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

impl Cluster {
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
    pub(super) fn finish_task(&mut self, upid: &str, interrupted: Option<&str>) {
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
            Effect::Template(vmid) => {
                if let Some(guest) = self.guests.get_mut(&vmid) {
                    guest.config.insert("template".to_string(), "1".to_string());
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
        let vmid = id.parse::<u32>().ok();
        let hangs = vmid.is_some_and(|vmid| self.hung.contains(&vmid));
        let ends_at = now + if hangs { HUNG_FOR } else { duration };
        let failure = match vmid.and_then(|vmid| self.task_failures.remove(&vmid)) {
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

    /// Ends after the usual `task_duration`, failing with `failure` (success when `None`), doing
    /// `effect` when it succeeds.
    pub fn ending(&self, failure: Option<String>, effect: Effect) -> Ending {
        Ending {
            after: self.task_duration,
            failure,
            effect,
        }
    }

    /// Starts a task on the guest `at` names; the task's id is the vmid.
    pub fn guest_task(&mut self, at: GuestRef<'_>, task_type: &str, user: &str, ending: Ending) -> String {
        self.start_task(at.node, task_type, &at.vmid.to_string(), user, ending)
    }

    /// Runs a backup (`vzdump`) of the guest for `duration` on its node (`pve1` when it has none): it
    /// holds the guest's config lock file meanwhile and does `effect` at its end.
    pub fn vzdump(&mut self, vmid: u32, duration: Duration, effect: Effect) -> String {
        let node = self
            .guests
            .get(&vmid)
            .map_or_else(|| "pve1".to_string(), |g| g.node.clone());
        let ending = Ending {
            after: duration,
            failure: None,
            effect,
        };
        self.start_task(&node, "vzdump", &vmid.to_string(), "root@pam", ending)
    }

    /// Makes the tasks started on `vmid` from now on hang (`true`), or ends the hung ones as a
    /// killed worker ends, failed (`false`).
    pub fn hang_tasks(&mut self, vmid: u32, hang: bool) {
        if hang {
            self.hung.insert(vmid);
            return;
        }
        self.hung.remove(&vmid);
        let now = self.clock.now();
        let id = vmid.to_string();
        let hung: Vec<String> = self
            .tasks
            .values()
            .filter(|t| !t.finished && t.id == id && t.ends_at > now + HUNG_FOR / 2)
            .map(|t| t.upid.clone())
            .collect();
        for upid in hung {
            self.finish_task(&upid, Some("interrupted by signal"));
        }
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
}
