//! Batched status reads: one `GET /cluster/resources?type=vm` answers for every guest of a batch
//! (present, locked, a template now, or gone), one storage's content for every disk on it. The
//! cluster list also tells whether a guest runs; the delete that follows the read uses that once
//! instead of reading `status/current` again (a wrong "stopped" costs a refused destroy, which
//! stops the guest and tries again; a wrong "running" a stop of a stopped guest).

use std::collections::{HashMap, HashSet};

use super::details::ProxmoxDetails;
use super::{cluster_guests, storage_content, ProxmoxProvider};
use crate::model::{Kind, Observed, Resource};
use crate::provider::{BatchKey, ProviderError};

/// Guests share one key; disks one per storage they are listed through.
pub(super) fn batch_key(resource: &Resource) -> Option<BatchKey> {
    match resource.key.kind {
        Kind::Vm | Kind::Container => Some(BatchKey::Borrowed("proxmox:guests")),
        Kind::Disk => ProxmoxDetails::disk(resource)
            .ok()
            .map(|disk| BatchKey::Owned(format!("proxmox:storage:{}/{}", disk.node, disk.storage))),
        _ => None,
    }
}

impl ProxmoxProvider {
    pub(super) async fn observe_batch(&self, batch: &[&Resource]) -> Vec<Result<Observed, ProviderError>> {
        match batch.first().map(|r| r.key.kind) {
            Some(Kind::Disk) => self.observe_disks(batch).await,
            _ => self.observe_guests(batch).await,
        }
    }

    async fn observe_guests(&self, batch: &[&Resource]) -> Vec<Result<Observed, ProviderError>> {
        let guests = match cluster_guests(&self.client).await {
            Ok(guests) => guests,
            Err(error) => return batch.iter().map(|_| Err(error.duplicate())).collect(),
        };
        let by_vmid: HashMap<u32, _> = guests.iter().map(|g| (g.vmid, g)).collect();
        let mut running = self.observed_running();
        batch
            .iter()
            .map(|resource| {
                let details = ProxmoxDetails::guest(resource)?;
                Ok(match by_vmid.get(&details.vmid) {
                    // Gone, or the vmid now belongs to another guest: the discovered one is gone.
                    None => Observed::Gone,
                    Some(entry)
                        if entry.kind != resource.key.kind
                            || (!resource.name.is_empty() && entry.name != resource.name) =>
                    {
                        Observed::Gone
                    }
                    Some(entry) if entry.template => Observed::Failed(
                        "the guest became a template since discovery; not touched".to_string(),
                    ),
                    Some(entry) => match &entry.lock {
                        Some(lock) => Observed::Busy(format!("locked ({lock})")),
                        None if entry.status == "unknown" => Observed::Busy("status unknown".to_string()),
                        None => {
                            running.insert(details.vmid, entry.status == "running");
                            Observed::Ready
                        }
                    },
                })
            })
            .collect()
    }

    async fn observe_disks(&self, batch: &[&Resource]) -> Vec<Result<Observed, ProviderError>> {
        // Every member is a disk of one storage; with no member's details readable, each gets its
        // own error (never a guess).
        let Some(disk) = batch.iter().find_map(|r| ProxmoxDetails::disk(r).ok()) else {
            return batch
                .iter()
                .map(|r| ProxmoxDetails::disk(r).map(|_| Observed::Gone))
                .collect();
        };
        let content = match storage_content(&self.client, &disk.node, &disk.storage).await {
            Ok(content) => content,
            Err(error) => return batch.iter().map(|_| Err(error.duplicate())).collect(),
        };
        let present: HashSet<&str> = content.iter().map(|item| item.volid.as_str()).collect();
        batch
            .iter()
            .map(|resource| {
                let disk = ProxmoxDetails::disk(resource)?;
                let present = present.contains(disk.volid.as_str());
                Ok(if present { Observed::Ready } else { Observed::Gone })
            })
            .collect()
    }
}
