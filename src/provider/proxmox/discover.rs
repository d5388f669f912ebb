//! Turning Proxmox VE's lists into [`Resource`]s: guests from `/cluster/resources?type=vm` and their
//! configs, orphan disks from storage content. Pure functions over the decoded answers
//! ([`super::wire`]), tested with plain values.
//!
//! # Creation time
//! A guest's creation time is the `ctime` in its config's `meta` line (`creation-qemu=...,ctime=...`,
//! written by QEMU VMs' create). Containers have no `meta`, so a CI job that wants ages to count from
//! creation tags its guest `ci-created-<unix seconds>` (for example `ci-created-1718000000`). Without
//! either, `created` is `None` and the engine counts from the first time the janitor saw the guest.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::details::{DiskDetails, GuestDetails, ProxmoxDetails};
use super::wire::{ClusterGuest, ContentItem, GuestConfig, GuestEntry};
use crate::model::{Details, Guard, Kind, LeakSign, Resource, ResourceKey};

/// The tag prefix of the creation-time convention, see the module docs.
pub const CREATED_TAG_PREFIX: &str = "ci-created-";

/// Guests of a `/cluster/resources?type=vm` answer; entries of other types are skipped.
pub fn parse_guests(entries: Vec<ClusterGuest>) -> Vec<GuestEntry> {
    entries.into_iter().filter_map(ClusterGuest::into_guest).collect()
}

/// The creation time a `ci-created-<unix seconds>` tag carries.
pub fn ctime_from_tags(tags: &[String]) -> Option<DateTime<Utc>> {
    tags.iter()
        .find_map(|t| t.strip_prefix(CREATED_TAG_PREFIX))
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
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
    config: Option<&GuestConfig>,
    shared_storages: &BTreeSet<String>,
) -> Resource {
    let key = ResourceKey::new(cloud, entry.kind, entry.vmid.to_string());
    let mut resource = Resource::new(key, entry.name.clone());
    resource.tags = entry.tags.clone();
    resource.status = entry.status.clone();
    resource.project = entry.pool.clone();
    let mut lock = entry.lock.clone();
    let mut template = entry.template;
    let mut protected = false;
    if let Some(config) = config {
        if let Some(tags) = &config.tags {
            resource.tags = tags.clone();
        }
        lock = lock.or_else(|| config.lock.clone());
        template |= config.template;
        protected = config.protection;
        resource.created = config.created;
        for volid in &config.volids {
            let storage = volid.split(':').next().unwrap_or_default();
            let id = disk_id(&entry.node, volid, shared_storages.contains(storage));
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
pub fn parse_content(node: &str, storage: &str, shared: bool, content: Vec<ContentItem>) -> Vec<VolumeEntry> {
    content
        .into_iter()
        .map(|item| VolumeEntry {
            node: node.to_string(),
            storage: storage.to_string(),
            shared,
            volid: item.volid,
            ctime: item.ctime,
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
        // Not matched by `untaggable_name_pattern`, it can still be a suspected leak.
        resource.leak = Some(LeakSign::DiskWithoutGuest);
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
        let guests = parse_guests(serde_json::from_value(answer).expect("cluster entries"));
        assert_eq!(guests.len(), 2);
        assert_eq!(guests[0].tags, vec!["ci", "job-1"]);
        assert_eq!(guests[0].pool.as_deref(), Some("ci"));
        assert_eq!(guests[1].kind, Kind::Container);
        assert_eq!(guests[1].lock.as_deref(), Some("backup"));
    }

    #[test]
    fn guards_and_creation_time_and_disk_references() {
        let entry = parse_guests(
            serde_json::from_value(
                json!([{"type": "qemu", "vmid": 101, "node": "pve1", "name": "a", "status": "running"}]),
            )
            .expect("cluster entries"),
        )
        .remove(0);
        let config: GuestConfig = serde_json::from_value(json!({"meta": "creation-qemu=9.0.2,ctime=1700000000", "scsi0": "local-lvm:vm-101-disk-0,size=4G",
            "virtio1": "ceph:vm-101-disk-1,size=8G", "ide2": "local:iso/debian.iso,media=cdrom", "tags": "ci", "protection": 1}))
            .expect("a config");
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
            Some(&GuestConfig::default()),
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
            Some(&GuestConfig::default()),
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
            serde_json::from_value(json!([
                {"volid": "local-lvm:vm-999-disk-0", "ctime": 1700000000},
                {"volid": "local-lvm:vm-101-disk-0"},
                {"volid": "local-lvm:base-9000-disk-0"},
                {"volid": "local-lvm:vm-998-disk-0"},
                {"volid": "local-lvm:vm-997-cloudinit"}
            ]))
            .expect("storage content"),
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
        assert_eq!(disk.leak, Some(LeakSign::DiskWithoutGuest));
        assert!(disk.tags.is_empty());
        assert_eq!(volume_vmid("ceph:subvol-200-disk-1"), Some(200));
    }
}
