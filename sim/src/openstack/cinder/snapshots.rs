//! Snapshots: of an `available` volume (or an `in-use` one with `force`), and deletable when
//! available or in error.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_request, Resource};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{iso_micros, new_id, Cloud, Ctx, Snapshot, Volume};

/// What a snapshot is created with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SnapshotSpec {
    pub volume_id: String,
    pub name: String,
    pub description: String,
    pub force: bool,
    pub metadata: BTreeMap<String, String>,
}

impl SnapshotSpec {
    pub fn new(volume_id: &str, name: &str, metadata: BTreeMap<String, String>) -> Self {
        SnapshotSpec {
            volume_id: volume_id.into(),
            name: name.into(),
            metadata,
            ..SnapshotSpec::default()
        }
    }
}

impl Resource for Snapshot {
    const ELEMENT: &'static str = "snapshot";
    const NOT_FOUND: &'static str = "Snapshot {id} could not be found.";
    const FILTERS: &'static str = "volume_id name status";
    type Spec = SnapshotSpec;

    fn created(&self) -> DateTime<Utc> {
        self.created
    }

    fn brief(&self) -> Value {
        json!({"id": self.id, "name": self.name})
    }

    fn detail(&self, _url: &str) -> Value {
        json!({
            "id": self.id, "name": self.name, "description": self.description, "status": self.status,
            "size": self.size, "volume_id": self.volume_id, "metadata": self.metadata,
            "created_at": iso_micros(&self.created), "updated_at": iso_micros(&self.updated),
            "os-extended-snapshot-attributes:project_id": self.project_id,
            "os-extended-snapshot-attributes:progress": "100%",
            "user_id": self.user_id, "group_snapshot_id": null, "consumes_quota": true,
        })
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, spec: SnapshotSpec) -> Result<String, ApiError> {
        cloud.create_snapshot(ctx, spec)
    }

    fn delete(cloud: &mut Cloud, ctx: &Ctx, snapshot_id: &str) -> Result<(), ApiError> {
        let now = cloud.clock.now();
        let snapshot = cloud.owned_mut::<Snapshot>(ctx, snapshot_id)?;
        if !matches!(snapshot.status.as_str(), "available" | "error") {
            return Err(bad_request(format!(
                "Invalid snapshot: Volume Snapshot status must be available or error, but current status is: {}.",
                snapshot.status
            )));
        }
        snapshot.status = "deleting".into();
        snapshot.delete_requested = Some(now);
        snapshot.updated = Utc::now();
        Ok(())
    }
}

impl Cloud {
    pub(crate) fn create_snapshot(&mut self, ctx: &Ctx, spec: SnapshotSpec) -> Result<String, ApiError> {
        let volume = self.owned::<Volume>(ctx, &spec.volume_id)?;
        let allowed = volume.status == "available" || (spec.force && volume.status == "in-use");
        if !allowed {
            return Err(bad_request(format!(
                "Invalid volume: Volume {} status must be available, but current status is: {}.",
                volume.id, volume.status
            )));
        }
        let size = volume.size;
        let now = Utc::now();
        let id = new_id();
        self.snapshots.insert(
            id.clone(),
            Snapshot {
                id: id.clone(),
                name: spec.name,
                description: spec.description,
                project_id: ctx.project_id.clone(),
                user_id: ctx.user_id.clone(),
                volume_id: spec.volume_id,
                size,
                status: "available".into(),
                metadata: spec.metadata,
                delete_requested: None,
                created: now,
                updated: now,
            },
        );
        Ok(id)
    }
}
