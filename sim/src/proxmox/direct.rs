//! Building and looking at the simulated cluster without HTTP: guests and volumes added directly,
//! the CI leftovers, the failure modes tests switch on (locks, offline nodes, wedged guests, failing
//! tasks), and the state tests check.

use std::collections::BTreeMap;
use std::time::Duration;

use super::state::{
    normalize_tags, unix_now, volume_vmid, Cluster, Effect, Guest, GuestType, TaskQuirks, Volume,
};
use super::ProxmoxSim;

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

impl ProxmoxSim {
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
                config.insert("tags".to_string(), normalize_tags(&spec.tags.join(";")));
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
                let home = cluster.home_of(storage, &spec.node);
                let name = format!("{prefix}-{}-disk-{index}", spec.vmid);
                let (key, content) = match (spec.guest_type, index) {
                    (GuestType::Lxc, 0) => ("rootfs".to_string(), "rootdir"),
                    (GuestType::Lxc, n) => (format!("mp{}", n - 1), "rootdir"),
                    (GuestType::Qemu, n) => (format!("scsi{n}"), "images"),
                };
                config.insert(key, format!("{storage}:{name},size=4G"));
                cluster.volumes.push(Volume {
                    storage: storage.clone(),
                    node: home,
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
    /// shared, created two hours ago; returns its volid.
    pub fn add_volume(&self, node: &str, storage: &str, name: &str) -> String {
        self.add_volume_created(node, storage, name, unix_now().saturating_sub(7200))
    }

    /// [`ProxmoxSim::add_volume`], created at `ctime` (seconds since the epoch).
    pub fn add_volume_created(&self, node: &str, storage: &str, name: &str, ctime: u64) -> String {
        self.with_cluster(|cluster| {
            let home = cluster.home_of(storage, node);
            let volume = Volume {
                storage: storage.to_string(),
                node: home,
                name: name.to_string(),
                vmid: volume_vmid(name),
                size: 4 << 30,
                content: "images".to_string(),
                ctime,
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
            cluster.vzdump(
                backup_locked_vm,
                backup_duration,
                Effect::ClearLock(backup_locked_vm),
            )
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
        self.with_cluster(|cluster| cluster.vzdump(vmid, duration, Effect::None));
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

    /// Makes every task started on `vmid` from now on hang, holding the guest's config lock file
    /// (`true`); `false` ends the hung ones as a killed worker ends, failed with "interrupted by
    /// signal", and lets new ones run normally.
    pub fn hang_tasks(&self, vmid: u32, hang: bool) {
        self.with_cluster(|cluster| cluster.hang_tasks(vmid, hang));
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
