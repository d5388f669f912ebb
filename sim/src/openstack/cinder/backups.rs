//! Backups: of an `available` volume (or an `in-use` one with `force`), `available` at once here
//! (real Cinder: `creating` while the data is copied), deletable when available or in error, gone
//! `volume_delete_delay` after their DELETE. A backup outlives its volume.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_request, Resource};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{iso_micros, new_id, Backup, Cloud, Ctx, Volume};

/// What a backup is created with (`POST /backups` `{"backup": {...}}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BackupSpec {
    pub volume_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub incremental: bool,
    pub force: bool,
    pub metadata: BTreeMap<String, String>,
}

impl Resource for Backup {
    const ELEMENT: &'static str = "backup";
    const NOT_FOUND: &'static str = "Backup {id} could not be found.";
    const FILTERS: &'static str = "name status volume_id";
    type Spec = BackupSpec;

    fn created(&self) -> DateTime<Utc> {
        self.created
    }

    fn brief(&self) -> Value {
        json!({"id": self.id, "name": self.name, "links": []})
    }

    fn detail(&self, _url: &str) -> Value {
        json!({
            "id": self.id, "name": self.name, "description": self.description, "status": self.status,
            "volume_id": self.volume_id, "size": self.size, "object_count": 0,
            "availability_zone": "nova", "container": "volumebackups", "fail_reason": null,
            "has_dependent_backups": false, "is_incremental": self.incremental, "snapshot_id": null,
            "data_timestamp": iso_micros(&self.created), "metadata": self.metadata,
            "created_at": iso_micros(&self.created), "updated_at": iso_micros(&self.updated),
            "user_id": self.user_id, "encryption_key_id": null, "links": [],
        })
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, spec: BackupSpec) -> Result<String, ApiError> {
        let volume = cloud.owned::<Volume>(ctx, &spec.volume_id)?;
        let allowed = volume.status == "available" || (spec.force && volume.status == "in-use");
        if !allowed {
            return Err(bad_request(format!(
                "Invalid volume: Volume to be backed up must be available or in-use, but the current status is \"{}\".",
                volume.status
            )));
        }
        let size = volume.size;
        let now = Utc::now();
        let id = new_id();
        cloud.backups.insert(
            id.clone(),
            Backup {
                id: id.clone(),
                name: spec.name.unwrap_or_default(),
                description: spec.description.unwrap_or_default(),
                project_id: ctx.project_id.clone(),
                user_id: ctx.user_id.clone(),
                volume_id: spec.volume_id,
                size,
                status: "available".into(),
                incremental: spec.incremental,
                metadata: spec.metadata,
                delete_requested: None,
                created: now,
                updated: now,
            },
        );
        Ok(id)
    }

    fn delete(cloud: &mut Cloud, ctx: &Ctx, backup_id: &str) -> Result<(), ApiError> {
        let now = cloud.clock.now();
        let backup = cloud.owned_mut::<Backup>(ctx, backup_id)?;
        if !matches!(backup.status.as_str(), "available" | "error") {
            return Err(bad_request(format!(
                "Invalid backup: Backup status must be available or error, but current status is: {}.",
                backup.status
            )));
        }
        backup.status = "deleting".into();
        backup.delete_requested = Some(now);
        backup.updated = Utc::now();
        Ok(())
    }
}
