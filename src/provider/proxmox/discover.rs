//! Turning Proxmox VE's lists into [`Resource`]s: guests from `/cluster/resources?type=vm` and their
//! configs, orphan disks from storage content. Pure functions over JSON, tested with plain values.
//!
//! # Creation time
//! A guest's creation time is the `ctime` in its config's `meta` line (`creation-qemu=...,ctime=...`,
//! written by QEMU VMs' create). Containers have no `meta`, so a CI job that wants ages to count from
//! creation tags its guest `ci-created-<unix seconds>` (for example `ci-created-1718000000`). Without
//! either, `created` is `None` and the engine counts from the first time the janitor saw the guest.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::details::{DiskDetails, GuestDetails, ProxmoxDetails};
use crate::model::{Details, Guard, Kind, Resource, ResourceKey};

/// The tag prefix of the creation-time convention, see the module docs.
pub const CREATED_TAG_PREFIX: &str = "ci-created-";

/// One entry of `/cluster/resources?type=vm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestEntry {
    pub vmid: u32,
    pub kind: Kind,
    pub node: String,
    pub name: String,
    pub status: String,
    pub template: bool,
    pub lock: Option<String>,
    pub tags: Vec<String>,
    pub pool: Option<String>,
    pub hastate: Option<String>,
}

fn text(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Proxmox booleans arrive as 0/1 (numbers or strings); JSON booleans are accepted too.
pub fn flag(value: &Value, key: &str) -> bool {
    match value.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => s == "1",
        _ => false,
    }
}

/// Tags are `;`-separated (older releases also used `,` and spaces), compared lower-cased.
pub fn parse_tags(tags: &str) -> Vec<String> {
    let mut list: Vec<String> = tags
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect();
    list.dedup();
    list
}

/// Guests of a `/cluster/resources?type=vm` answer; entries of other types are skipped.
pub fn parse_guests(resources: &Value) -> Vec<GuestEntry> {
    let Some(list) = resources.as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let kind = match entry.get("type")?.as_str()? {
                "qemu" => Kind::Vm,
                "lxc" => Kind::Container,
                _ => return None,
            };
            Some(GuestEntry {
                vmid: text(entry, "vmid")?.parse().ok()?,
                kind,
                node: text(entry, "node")?,
                name: text(entry, "name").unwrap_or_default(),
                status: text(entry, "status").unwrap_or_else(|| "unknown".to_string()),
                template: flag(entry, "template"),
                lock: text(entry, "lock"),
                tags: text(entry, "tags").map(|t| parse_tags(&t)).unwrap_or_default(),
                pool: text(entry, "pool"),
                hastate: text(entry, "hastate"),
            })
        })
        .collect()
}

/// `ctime` from a `meta` config line.
pub fn ctime_from_meta(meta: &str) -> Option<DateTime<Utc>> {
    meta.split(',')
        .find_map(|kv| kv.trim().strip_prefix("ctime="))
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
}

/// The creation time a `ci-created-<unix seconds>` tag carries.
pub fn ctime_from_tags(tags: &[String]) -> Option<DateTime<Utc>> {
    tags.iter()
        .find_map(|t| t.strip_prefix(CREATED_TAG_PREFIX))
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
}

fn is_disk_key(key: &str) -> bool {
    if matches!(key, "rootfs" | "efidisk0" | "tpmstate0") {
        return true;
    }
    let digits = key.trim_start_matches(|c: char| c.is_ascii_lowercase());
    let prefix = &key[..key.len() - digits.len()];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && matches!(prefix, "scsi" | "virtio" | "sata" | "ide" | "mp" | "unused")
}

/// Volume ids a guest config references: disks, mount points, unused disks; not CD-ROMs, not bind
/// mounts (absolute paths), not `none`.
pub fn config_volids(config: &Value) -> Vec<String> {
    let Some(map) = config.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(key, _)| is_disk_key(key))
        .filter_map(|(_, value)| {
            let value = value.as_str()?;
            let volid = value.split(',').next()?;
            let is_volume = volid.contains(':') && !volid.starts_with('/') && !value.contains("media=cdrom");
            is_volume.then(|| volid.to_string())
        })
        .collect()
}

/// The vmid in a volume name (`vm-100-disk-0`, `subvol-100-disk-1`); base images of templates are
/// left out on purpose: they are never orphan leftovers of a CI job.
pub fn volume_vmid(volid: &str) -> Option<u32> {
    let name = volid.split_once(':').map_or(volid, |(_, name)| name);
    let name = name.rsplit('/').next().unwrap_or(name);
    let rest = name
        .strip_prefix("vm-")
        .or_else(|| name.strip_prefix("subvol-"))?;
    let (vmid, disk) = rest.split_once('-')?;
    disk.starts_with("disk-").then_some(())?;
    vmid.parse().ok()
}

/// The id of a disk resource: the volid on shared storage, `node/volid` on node-local storage (the
/// same volid can exist on several nodes).
pub fn disk_id(node: &str, volid: &str, shared: bool) -> String {
    if shared {
        volid.to_string()
    } else {
        format!("{node}/{volid}")
    }
}

/// A guest as a resource. `config` is `None` when it could not be read (node offline).
pub fn guest_resource(
    cloud: &str,
    entry: &GuestEntry,
    config: Option<&Value>,
    shared_storages: &BTreeSet<String>,
) -> Resource {
    let key = ResourceKey::new(cloud, entry.kind, entry.vmid.to_string());
    let mut resource = Resource::new(key, entry.name.clone());
    resource.tags = entry.tags.clone();
    resource.status = entry.status.clone();
    let mut lock = entry.lock.clone();
    let mut template = entry.template;
    let mut protected = false;
    if let Some(config) = config {
        if let Some(tags) = config.get("tags").and_then(Value::as_str) {
            resource.tags = parse_tags(tags);
        }
        lock = lock.or_else(|| text(config, "lock"));
        template |= flag(config, "template");
        protected = flag(config, "protection");
        resource.created = config
            .get("meta")
            .and_then(Value::as_str)
            .and_then(ctime_from_meta);
        for volid in config_volids(config) {
            let storage = volid.split(':').next().unwrap_or_default();
            let id = disk_id(&entry.node, &volid, shared_storages.contains(storage));
            resource.references.push(ResourceKey::new(cloud, Kind::Disk, id));
        }
    }
    resource.created = resource.created.or_else(|| ctime_from_tags(&resource.tags));
    resource.guard = if template {
        Some(Guard::Template)
    } else if protected {
        Some(Guard::Protected)
    } else if lock.is_some() {
        Some(Guard::Locked)
    } else if entry.status == "unknown" || config.is_none() {
        Some(Guard::UnknownState)
    } else {
        None
    };
    resource.details = Details::Proxmox(ProxmoxDetails::Guest(GuestDetails {
        node: entry.node.clone(),
        vmid: entry.vmid,
        pool: entry.pool.clone(),
        hastate: entry.hastate.clone(),
        lock,
    }));
    resource
}

/// One volume seen in storage content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeEntry {
    pub node: String,
    pub storage: String,
    pub shared: bool,
    pub volid: String,
    pub ctime: Option<i64>,
}

/// Volumes of a `GET /nodes/{node}/storage/{storage}/content` answer.
pub fn parse_content(node: &str, storage: &str, shared: bool, content: &Value) -> Vec<VolumeEntry> {
    let Some(list) = content.as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            Some(VolumeEntry {
                node: node.to_string(),
                storage: storage.to_string(),
                shared,
                volid: text(entry, "volid")?,
                ctime: entry.get("ctime").and_then(Value::as_i64),
            })
        })
        .collect()
}

/// The orphan disks among `volumes`: named for a vmid that has no guest anywhere in the cluster, and
/// referenced by no guest config the janitor read. Each needs two sightings before it is selected,
/// because a guest being created owns its disks for a moment before its config exists.
pub fn orphan_disks(
    cloud: &str,
    volumes: &[VolumeEntry],
    guest_vmids: &BTreeSet<u32>,
    referenced: &BTreeSet<String>,
) -> Vec<Resource> {
    let mut seen = BTreeMap::new();
    for volume in volumes {
        let Some(vmid) = volume_vmid(&volume.volid) else {
            continue;
        };
        if guest_vmids.contains(&vmid) || referenced.contains(&volume.volid) {
            continue;
        }
        let id = disk_id(&volume.node, &volume.volid, volume.shared);
        let name = volume
            .volid
            .split_once(':')
            .map_or(volume.volid.as_str(), |(_, n)| n)
            .to_string();
        let mut resource = Resource::new(ResourceKey::new(cloud, Kind::Disk, id.clone()), name);
        resource.status = "orphan".to_string();
        // Volumes have no tags: only `untaggable_name_pattern` can select them. Left taggable, a
        // tag rule (`tags_all`) would never match them and orphans would never be cleaned.
        resource.taggable = false;
        resource.sightings_required = 2;
        resource.created = volume.ctime.and_then(|s| DateTime::from_timestamp(s, 0));
        resource.details = Details::Proxmox(ProxmoxDetails::OrphanDisk(DiskDetails {
            node: volume.node.clone(),
            storage: volume.storage.clone(),
            volid: volume.volid.clone(),
            vmid,
        }));
        seen.entry(id).or_insert(resource);
    }
    seen.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn guests_parse_with_lowercased_tags_and_01_booleans() {
        let answer = json!([
            {"id": "qemu/101", "type": "qemu", "vmid": 101, "node": "pve1", "name": "ci-a", "status": "running",
             "template": 0, "tags": "CI;Job-1", "pool": "ci"},
            {"id": "lxc/201", "type": "lxc", "vmid": 201, "node": "pve2", "name": "ct", "status": "unknown", "lock": "backup"},
            {"id": "storage/pve1/local", "type": "storage"}
        ]);
        let guests = parse_guests(&answer);
        assert_eq!(guests.len(), 2);
        assert_eq!(guests[0].tags, vec!["ci", "job-1"]);
        assert_eq!(guests[0].pool.as_deref(), Some("ci"));
        assert_eq!(guests[1].kind, Kind::Container);
        assert_eq!(guests[1].lock.as_deref(), Some("backup"));
    }

    #[test]
    fn guards_and_creation_time_and_disk_references() {
        let entry = parse_guests(
            &json!([{"type": "qemu", "vmid": 101, "node": "pve1", "name": "a", "status": "running"}]),
        )
        .remove(0);
        let config = json!({"meta": "creation-qemu=9.0.2,ctime=1700000000", "scsi0": "local-lvm:vm-101-disk-0,size=4G",
            "virtio1": "ceph:vm-101-disk-1,size=8G", "ide2": "local:iso/debian.iso,media=cdrom", "tags": "ci", "protection": 1});
        let shared: BTreeSet<String> = ["ceph".to_string()].into();
        let resource = guest_resource("lab", &entry, Some(&config), &shared);
        assert_eq!(resource.guard, Some(Guard::Protected));
        assert_eq!(resource.created, DateTime::from_timestamp(1_700_000_000, 0));
        let ids: Vec<&str> = resource.references.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, vec!["pve1/local-lvm:vm-101-disk-0", "ceph:vm-101-disk-1"]);

        let template = guest_resource(
            "lab",
            &GuestEntry {
                template: true,
                ..entry.clone()
            },
            Some(&json!({})),
            &shared,
        );
        assert_eq!(template.guard, Some(Guard::Template));
        let offline = guest_resource(
            "lab",
            &GuestEntry {
                status: "unknown".into(),
                ..entry.clone()
            },
            None,
            &shared,
        );
        assert_eq!(offline.guard, Some(Guard::UnknownState));
        let tagged = guest_resource(
            "lab",
            &GuestEntry {
                tags: vec!["ci-created-1600000000".into()],
                ..entry
            },
            Some(&json!({})),
            &shared,
        );
        assert_eq!(tagged.created, DateTime::from_timestamp(1_600_000_000, 0));
        assert_eq!(tagged.guard, None);
    }

    #[test]
    fn only_disks_of_vmids_without_guest_are_orphans() {
        let volumes = parse_content(
            "pve1",
            "local-lvm",
            false,
            &json!([
                {"volid": "local-lvm:vm-999-disk-0", "ctime": 1700000000},
                {"volid": "local-lvm:vm-101-disk-0"},
                {"volid": "local-lvm:base-9000-disk-0"},
                {"volid": "local-lvm:vm-998-disk-0"},
                {"volid": "local-lvm:vm-997-cloudinit"}
            ]),
        );
        let guests: BTreeSet<u32> = [101].into();
        let referenced: BTreeSet<String> = ["local-lvm:vm-998-disk-0".to_string()].into();
        let orphans = orphan_disks("lab", &volumes, &guests, &referenced);
        assert_eq!(orphans.len(), 1);
        let disk = &orphans[0];
        assert_eq!(disk.key.id, "pve1/local-lvm:vm-999-disk-0");
        assert_eq!(disk.sightings_required, 2);
        assert_eq!(
            disk.details,
            Details::Proxmox(ProxmoxDetails::OrphanDisk(DiskDetails {
                node: "pve1".into(),
                storage: "local-lvm".into(),
                volid: "local-lvm:vm-999-disk-0".into(),
                vmid: 999,
            }))
        );
        assert!(!disk.taggable, "selected by name, never by tags");
        assert!(disk.tags.is_empty());
        assert_eq!(volume_vmid("ceph:subvol-200-disk-1"), Some(200));
    }
}
