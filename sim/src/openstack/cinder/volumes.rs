//! Volumes: created `available`, snapshotted, attached through Nova, and deletable only when
//! available (or in error), unattached and without snapshots.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_request, CinderCall, Resource, API};
use crate::openstack::errors::{parse_json, ApiError, Service};
use crate::openstack::state::{iso_micros, new_id, Cloud, Ctx, Snapshot, Volume};

/// The message real Cinder gives for every refused volume delete.
pub(crate) const VOLUME_NOT_DELETABLE: &str = "Invalid volume: Volume status must be available or error or \
    error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a \
    group, have snapshots or be disassociated from snapshots after volume transfer.";

/// What a volume is created with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct VolumeSpec {
    pub name: String,
    pub description: String,
    pub size: u64,
    pub metadata: BTreeMap<String, String>,
    pub snapshot_id: Option<String>,
}

impl VolumeSpec {
    pub fn new(name: &str, size: u64, metadata: BTreeMap<String, String>) -> Self {
        VolumeSpec {
            name: name.into(),
            size,
            metadata,
            ..VolumeSpec::default()
        }
    }
}

impl Resource for Volume {
    const ELEMENT: &'static str = "volume";
    const NOT_FOUND: &'static str = "Volume {id} could not be found.";
    const FILTERS: &'static str = "name status";
    type Spec = VolumeSpec;

    fn created(&self) -> DateTime<Utc> {
        self.created
    }

    fn brief(&self) -> Value {
        json!({"id": self.id, "name": self.name, "links": []})
    }

    fn detail(&self, url: &str) -> Value {
        let attachments: Vec<Value> = self
            .attachments
            .iter()
            .map(|a| {
                json!({
                    "id": self.id, "volume_id": self.id, "server_id": a.server_id,
                    "attachment_id": a.attachment_id, "device": a.device,
                    "host_name": null, "attached_at": iso_micros(&a.attached_at),
                })
            })
            .collect();
        let link = format!("{url}{API}/{}/volumes/{}", self.project_id, self.id);
        json!({
            "id": self.id, "name": self.name, "description": self.description, "status": self.status,
            "size": self.size, "availability_zone": "nova",
            "created_at": iso_micros(&self.created), "updated_at": iso_micros(&self.updated),
            "attachments": attachments, "metadata": self.metadata,
            "links": [{"rel": "self", "href": link}, {"rel": "bookmark", "href": link}],
            "volume_type": "lvmdriver-1", "volume_type_id": "5b3b4a2c-7f1e-4d4e-9c1a-3e2f6b8d9a01",
            "snapshot_id": self.snapshot_id, "source_volid": null, "bootable": "false", "encrypted": false,
            "multiattach": false, "replication_status": null, "consistencygroup_id": null, "group_id": null,
            "migration_status": null, "user_id": self.user_id, "os-vol-tenant-attr:tenant_id": self.project_id,
            "provider_id": null, "service_uuid": null, "shared_targets": false, "cluster_name": null,
            "consumes_quota": true,
        })
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, spec: VolumeSpec) -> Result<String, ApiError> {
        cloud.create_volume(ctx, spec)
    }

    fn delete(cloud: &mut Cloud, ctx: &Ctx, volume_id: &str) -> Result<(), ApiError> {
        let has_snapshots = cloud.snapshots.values().any(|s| s.volume_id == volume_id);
        let now = cloud.clock.now();
        let volume = cloud.owned_mut::<Volume>(ctx, volume_id)?;
        let deletable_status = matches!(
            volume.status.as_str(),
            "available" | "error" | "error_restoring" | "error_extending" | "error_managing"
        );
        if !deletable_status || !volume.attachments.is_empty() || has_snapshots {
            return Err(bad_request(VOLUME_NOT_DELETABLE));
        }
        volume.status = "deleting".into();
        volume.delete_requested = Some(now);
        volume.updated = Utc::now();
        Ok(())
    }
}

impl Cloud {
    pub(crate) fn create_volume(&mut self, ctx: &Ctx, spec: VolumeSpec) -> Result<String, ApiError> {
        if spec.size == 0 {
            return Err(bad_request(
                "Invalid input received: Volume size '0' must be an integer and greater than 0.",
            ));
        }
        if let Some(snapshot_id) = &spec.snapshot_id {
            self.owned::<Snapshot>(ctx, snapshot_id)?;
        }
        let now = Utc::now();
        let id = new_id();
        self.volumes.insert(
            id.clone(),
            Volume {
                id: id.clone(),
                name: spec.name,
                description: spec.description,
                project_id: ctx.project_id.clone(),
                user_id: ctx.user_id.clone(),
                size: spec.size,
                status: "available".into(),
                metadata: spec.metadata,
                attachments: Vec::new(),
                snapshot_id: spec.snapshot_id,
                fail_delete: false,
                delete_requested: None,
                created: now,
                updated: now,
            },
        );
        Ok(id)
    }
}

/// `PUT /{project_id}/volumes/{id}`: name, description and metadata.
pub(super) async fn update(call: CinderCall, body: Bytes) -> Result<Json<Value>, ApiError> {
    let body = parse_json(Service::Cinder, &body)?;
    let mut cloud = call.cloud();
    let volume = cloud.owned_mut::<Volume>(&call.ctx, &call.id)?;
    if let Some(name) = body.pointer("/volume/name").and_then(Value::as_str) {
        volume.name = name.to_string();
    }
    if let Some(description) = body.pointer("/volume/description").and_then(Value::as_str) {
        volume.description = description.to_string();
    }
    if let Some(metadata) = body
        .pointer("/volume/metadata")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
    {
        volume.metadata = metadata;
    }
    volume.updated = Utc::now();
    Ok(Json(json!({"volume": volume.detail(&call.app.url)})))
}
