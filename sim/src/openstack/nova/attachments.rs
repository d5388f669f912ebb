//! Volumes attached to servers (`os-volume_attachments`): attaching an `available` volume, detaching
//! it, and what each microversion shows of an attachment.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};

use super::{bad_request, not_found, Microversion, NovaCall};
use crate::openstack::errors::{parse_json, ApiError, Service};
use crate::openstack::state::{new_id, Cloud, Ctx, VolumeAttachment};

/// Nova's 404 for a volume the server does not have.
fn not_attached(server_id: &str, volume_id: &str) -> ApiError {
    not_found(format!(
        "Volume {volume_id} is not attached to server {server_id}"
    ))
}

impl Cloud {
    pub(crate) fn attach_volume(
        &mut self,
        ctx: &Ctx,
        server_id: &str,
        volume_id: &str,
    ) -> Result<String, ApiError> {
        self.changeable_server(ctx, server_id, "attach_volume")?;
        let n_attached = self
            .volumes
            .values()
            .filter(|v| v.attachments.iter().any(|a| a.server_id == server_id))
            .count();
        let volume = self
            .volumes
            .get_mut(volume_id)
            .filter(|v| ctx.owns(&v.project_id))
            .ok_or_else(|| not_found(format!("Volume {volume_id} could not be found.")))?;
        if volume.status != "available" {
            return Err(bad_request(format!(
                "Invalid input received: Invalid volume: Volume status must be available or downloading to \
                 reserve, but the current status is {}.",
                volume.status
            )));
        }
        let letter = char::from(b'b' + u8::try_from(n_attached.min(24)).unwrap_or(24));
        let device = format!("/dev/vd{letter}");
        volume.attachments.push(VolumeAttachment {
            attachment_id: new_id(),
            server_id: server_id.to_string(),
            device: device.clone(),
            attached_at: Utc::now(),
        });
        volume.status = "in-use".into();
        volume.updated = Utc::now();
        Ok(device)
    }

    pub(crate) fn detach_volume(
        &mut self,
        ctx: &Ctx,
        server_id: &str,
        volume_id: &str,
    ) -> Result<(), ApiError> {
        self.changeable_server(ctx, server_id, "detach_volume")?;
        let volume = self
            .volumes
            .get_mut(volume_id)
            .filter(|v| v.attachments.iter().any(|a| a.server_id == server_id))
            .ok_or_else(|| not_attached(server_id, volume_id))?;
        volume.attachments.retain(|a| a.server_id != server_id);
        if volume.attachments.is_empty() {
            volume.status = "available".into();
        }
        volume.updated = Utc::now();
        Ok(())
    }

    fn render_volume_attachment(
        &self,
        server_id: &str,
        volume_id: &str,
        version: Microversion,
    ) -> Option<Value> {
        let volume = self.volumes.get(volume_id)?;
        let attachment = volume.attachments.iter().find(|a| a.server_id == server_id)?;
        let mut body = json!({"serverId": server_id, "volumeId": volume_id, "device": attachment.device});
        if version.at_least(89) {
            body["attachment_id"] = json!(attachment.attachment_id);
            body["bdm_uuid"] = json!(attachment.attachment_id);
        } else {
            body["id"] = json!(volume_id);
        }
        if version.at_least(70) {
            body["tag"] = Value::Null;
        }
        if version.at_least(79) {
            body["delete_on_termination"] = json!(false);
        }
        Some(body)
    }
}

/// `GET /servers/{id}/os-volume_attachments`.
pub(super) async fn list(call: NovaCall, Path(server_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let cloud = call.cloud();
    cloud.live_server(&call.ctx, &server_id)?;
    let attachments: Vec<Value> = cloud
        .volumes
        .keys()
        .filter_map(|v| cloud.render_volume_attachment(&server_id, v, call.version))
        .collect();
    Ok(Json(json!({"volumeAttachments": attachments})))
}

/// `POST /servers/{id}/os-volume_attachments`.
pub(super) async fn attach(
    call: NovaCall,
    Path(server_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_json(Service::Nova, &body)?;
    let volume_id = body
        .pointer("/volumeAttachment/volumeId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Invalid input for field/attribute volumeAttachment."))?;
    let mut cloud = call.cloud();
    cloud.attach_volume(&call.ctx, &server_id, volume_id)?;
    let attachment = cloud
        .render_volume_attachment(&server_id, volume_id, call.version)
        .unwrap_or(Value::Null);
    Ok(Json(json!({"volumeAttachment": attachment})))
}

/// `GET /servers/{id}/os-volume_attachments/{volume_id}`.
pub(super) async fn show(
    call: NovaCall,
    Path((server_id, volume_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let cloud = call.cloud();
    cloud.live_server(&call.ctx, &server_id)?;
    let attachment = cloud
        .render_volume_attachment(&server_id, &volume_id, call.version)
        .ok_or_else(|| not_attached(&server_id, &volume_id))?;
    Ok(Json(json!({"volumeAttachment": attachment})))
}

/// `DELETE /servers/{id}/os-volume_attachments/{volume_id}`.
pub(super) async fn detach(
    call: NovaCall,
    Path((server_id, volume_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    call.cloud().detach_volume(&call.ctx, &server_id, &volume_id)?;
    Ok(StatusCode::ACCEPTED)
}
