//! Storages and the volumes on them: local storages hold one set of volumes per node, shared ones
//! one for the cluster; disks are allocated when a guest is created and freed by a task.

use serde_json::{json, Value};

use super::{bool01, unix_now, Cluster, Effect, GuestType};
use crate::proxmox::errors::ApiError;

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

impl Cluster {
    /// Which node holds a volume `node` puts on `storage`: that node, or none for shared storage
    /// (an unknown storage counts as local).
    pub fn home_of(&self, storage: &str, node: &str) -> Option<String> {
        let shared = self.storages.get(storage).is_some_and(|s| s.shared);
        (!shared).then(|| node.to_string())
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

    /// [`Cluster::home_of`] for a storage that must exist.
    fn volume_node(&self, storage: &str, node: &str) -> Result<Option<String>, ApiError> {
        self.storage(storage)?;
        Ok(self.home_of(storage, node))
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

    /// Turns `storage:SIZE_GB[,opts]` into a new volume; an existing volid is kept as it is.
    pub(super) fn allocate_disk(
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
        let ending = self.ending(None, effect);
        Ok(self.start_task(node, "imgdel", "", user, ending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_name_their_vmid() {
        assert_eq!(volume_vmid("vm-105-disk-1"), Some(105));
        assert_eq!(volume_vmid("subvol-200-disk-0"), Some(200));
        assert_eq!(volume_vmid("iso/debian.iso"), None);
    }
}
