//! Cinder v3: volumes and snapshots under `/volume/v3/{project_id}`, their metadata filters, the
//! 400 for a volume in use or with snapshots, and asynchronous deletes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::errors::{ApiError, Service};
use super::keystone::require_token;
use super::listing::{self, Params};
use super::state::{iso_micros, new_id, Cloud, Ctx, Snapshot, Volume};
use super::Inner;

const API: &str = "/volume/v3";
const MAX_VERSION: &str = "3.70";

/// The message real Cinder gives for every refused volume delete.
pub(crate) const VOLUME_NOT_DELETABLE: &str = "Invalid volume: Volume status must be available or error or \
    error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a \
    group, have snapshots or be disassociated from snapshots after volume transfer.";

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::cinder(StatusCode::BAD_REQUEST, message)
}

fn volume_not_found(volume_id: &str) -> ApiError {
    ApiError::cinder(
        StatusCode::NOT_FOUND,
        format!("Volume {volume_id} could not be found."),
    )
}

fn snapshot_not_found(snapshot_id: &str) -> ApiError {
    ApiError::cinder(
        StatusCode::NOT_FOUND,
        format!("Snapshot {snapshot_id} could not be found."),
    )
}

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

impl Cloud {
    pub(crate) fn create_volume(&mut self, ctx: &Ctx, spec: VolumeSpec) -> Result<String, ApiError> {
        if spec.size == 0 {
            return Err(bad_request(
                "Invalid input received: Volume size '0' must be an integer and greater than 0.",
            ));
        }
        if let Some(snapshot_id) = &spec.snapshot_id {
            if !self
                .snapshots
                .get(snapshot_id)
                .is_some_and(|s| ctx.owns(&s.project_id))
            {
                return Err(snapshot_not_found(snapshot_id));
            }
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

    pub(crate) fn create_snapshot(&mut self, ctx: &Ctx, spec: SnapshotSpec) -> Result<String, ApiError> {
        let volume = self
            .volumes
            .get(&spec.volume_id)
            .filter(|v| ctx.owns(&v.project_id))
            .ok_or_else(|| volume_not_found(&spec.volume_id))?;
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

    /// Accepts a DELETE: the volume shows `deleting` until `volume_delete_delay` passes.
    pub(crate) fn delete_volume(&mut self, ctx: &Ctx, volume_id: &str) -> Result<(), ApiError> {
        let has_snapshots = self.snapshots.values().any(|s| s.volume_id == volume_id);
        let volume = self
            .volumes
            .get_mut(volume_id)
            .filter(|v| ctx.owns(&v.project_id))
            .ok_or_else(|| volume_not_found(volume_id))?;
        let deletable_status = matches!(
            volume.status.as_str(),
            "available" | "error" | "error_restoring" | "error_extending" | "error_managing"
        );
        if !deletable_status || !volume.attachments.is_empty() || has_snapshots {
            return Err(bad_request(VOLUME_NOT_DELETABLE));
        }
        volume.status = "deleting".into();
        volume.delete_requested = Some(self.clock.now());
        volume.updated = Utc::now();
        Ok(())
    }

    pub(crate) fn delete_snapshot(&mut self, ctx: &Ctx, snapshot_id: &str) -> Result<(), ApiError> {
        let snapshot = self
            .snapshots
            .get_mut(snapshot_id)
            .filter(|s| ctx.owns(&s.project_id))
            .ok_or_else(|| snapshot_not_found(snapshot_id))?;
        if !matches!(snapshot.status.as_str(), "available" | "error") {
            return Err(bad_request(format!(
                "Invalid snapshot: Volume Snapshot status must be available or error, but current status is: {}.",
                snapshot.status
            )));
        }
        snapshot.status = "deleting".into();
        snapshot.delete_requested = Some(self.clock.now());
        snapshot.updated = Utc::now();
        Ok(())
    }

    fn render_volume(&self, url: &str, v: &Volume) -> Value {
        let attachments: Vec<Value> = v
            .attachments
            .iter()
            .map(|a| {
                json!({
                    "id": v.id, "volume_id": v.id, "server_id": a.server_id,
                    "attachment_id": a.attachment_id, "device": a.device,
                    "host_name": null, "attached_at": iso_micros(&a.attached_at),
                })
            })
            .collect();
        let link = format!("{url}{API}/{}/volumes/{}", v.project_id, v.id);
        json!({
            "id": v.id, "name": v.name, "description": v.description, "status": v.status, "size": v.size,
            "availability_zone": "nova", "created_at": iso_micros(&v.created), "updated_at": iso_micros(&v.updated),
            "attachments": attachments, "metadata": v.metadata,
            "links": [{"rel": "self", "href": link}, {"rel": "bookmark", "href": link}],
            "volume_type": "lvmdriver-1", "volume_type_id": "5b3b4a2c-7f1e-4d4e-9c1a-3e2f6b8d9a01",
            "snapshot_id": v.snapshot_id, "source_volid": null, "bootable": "false", "encrypted": false,
            "multiattach": false, "replication_status": null, "consistencygroup_id": null, "group_id": null,
            "migration_status": null, "user_id": v.user_id, "os-vol-tenant-attr:tenant_id": v.project_id,
            "provider_id": null, "service_uuid": null, "shared_targets": false, "cluster_name": null,
            "consumes_quota": true,
        })
    }
}

fn render_snapshot(s: &Snapshot) -> Value {
    json!({
        "id": s.id, "name": s.name, "description": s.description, "status": s.status, "size": s.size,
        "volume_id": s.volume_id, "metadata": s.metadata,
        "created_at": iso_micros(&s.created), "updated_at": iso_micros(&s.updated),
        "os-extended-snapshot-attributes:project_id": s.project_id,
        "os-extended-snapshot-attributes:progress": "100%",
        "user_id": s.user_id, "group_snapshot_id": null, "consumes_quota": true,
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

pub(crate) fn routes(app: Arc<Inner>) -> Router {
    let authenticated = Router::new()
        .route(
            &format!("{API}/{{project_id}}/volumes"),
            get(list_volumes_brief).post(create_volume),
        )
        .route(
            &format!("{API}/{{project_id}}/volumes/detail"),
            get(list_volumes_detail),
        )
        .route(
            &format!("{API}/{{project_id}}/volumes/{{id}}"),
            get(show_volume).put(update_volume).delete(delete_volume),
        )
        .route(
            &format!("{API}/{{project_id}}/snapshots"),
            get(list_snapshots_brief).post(create_snapshot),
        )
        .route(
            &format!("{API}/{{project_id}}/snapshots/detail"),
            get(list_snapshots_detail),
        )
        .route(
            &format!("{API}/{{project_id}}/snapshots/{{id}}"),
            get(show_snapshot).delete(delete_snapshot),
        )
        .route_layer(from_fn(echo_version))
        .route_layer(from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/volume", get(versions))
        .route("/volume/", get(versions))
        .route(API, get(version))
        .route(&format!("{API}/"), get(version))
        .route(&format!("{API}/{{project_id}}"), get(version))
        .route(&format!("{API}/{{project_id}}/"), get(version))
        .merge(authenticated)
        .with_state(app)
}

fn version_body(url: &str) -> Value {
    json!({
        "id": "v3.0", "status": "CURRENT", "version": MAX_VERSION, "min_version": "3.0",
        "updated": "2023-08-31T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{url}{API}/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}],
    })
}

async fn versions(State(app): State<Arc<Inner>>) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": [version_body(&app.url)]})),
    )
        .into_response()
}

async fn version(State(app): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"versions": [version_body(&app.url)]}))
}

/// Middleware: names the volume microversion served (the one asked for, else 3.0) in the answer.
async fn echo_version(request: Request, next: Next) -> Response {
    let asked = request
        .headers()
        .get("openstack-api-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|part| {
                let mut words = part.split_whitespace();
                (words.next()? == "volume")
                    .then(|| words.next().map(str::to_string))
                    .flatten()
            })
        });
    let version = match asked.as_deref() {
        Some("latest") => MAX_VERSION.to_string(),
        Some(v) => v.to_string(),
        None => "3.0".to_string(),
    };
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&format!("volume {version}")) {
        response.headers_mut().insert("openstack-api-version", value);
    }
    response
        .headers_mut()
        .insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
    response
}

/// Refuses a URL naming another project than the token's, as Cinder does.
fn check_project(ctx: &Ctx, project_id: &str) -> Result<(), ApiError> {
    if ctx.project_id == project_id {
        Ok(())
    } else {
        Err(bad_request(format!(
            "Malformed request URL: URL's project_id '{project_id}' doesn't match Context's project_id '{}'",
            ctx.project_id
        )))
    }
}

/// The object under `element` in a request body (`{"volume": {...}}`), with Cinder's messages for a
/// missing or malformed one.
fn body_element<T: serde::de::DeserializeOwned>(body: &[u8], element: &str) -> Result<T, ApiError> {
    parse_json(body)?
        .get(element)
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| bad_request(format!("Invalid input received: {e}")))?
        .ok_or_else(|| bad_request(format!("Missing required element '{element}' in request body.")))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(Service::Cinder, format!("Malformed request body: {e}")))
}

/// The `metadata` filter: a JSON (or Python-literal) dict every listed item's metadata must contain.
fn metadata_filter(params: &Params) -> Result<BTreeMap<String, String>, ApiError> {
    match listing::param(params, "metadata") {
        None => Ok(BTreeMap::new()),
        Some(text) => serde_json::from_str(text)
            .or_else(|_| serde_json::from_str(&text.replace('\'', "\"")))
            .map_err(|_| bad_request(format!("Invalid input received: Invalid metadata filter {text}"))),
    }
}

fn all_tenants(ctx: &Ctx, params: &Params) -> bool {
    ctx.admin && listing::param(params, "all_tenants").is_some_and(|v| !matches!(v, "0" | "false" | "False"))
}

/// One page of `items` (already filtered, newest first) with `{key}_links` when the page is full.
fn page_body(
    url: &str,
    path: &str,
    key: &str,
    items: Vec<(String, Value)>,
    params: &Params,
) -> Result<Json<Value>, ApiError> {
    let limit = listing::limit(params, Service::Cinder)?.unwrap_or(1000).min(1000);
    let marker = listing::param(params, "marker");
    let page = listing::paginate(items, |(id, _)| id.as_str(), Some(limit), marker).ok_or_else(|| {
        ApiError::cinder(
            StatusCode::NOT_FOUND,
            format!("Marker {} could not be found.", marker.unwrap_or("")),
        )
    })?;
    let last = page.items.last().map(|(id, _)| id.clone());
    let full = page.items.len() == limit;
    let mut body = json!({ key: page.items.into_iter().map(|(_, v)| v).collect::<Vec<_>>() });
    if let (true, Some(last)) = (full, last) {
        body[format!("{key}_links")] =
            json!([{"rel": "next", "href": listing::next_link(url, path, params, limit, &last)}]);
    }
    Ok(Json(body))
}

fn list_volumes(
    app: &Inner,
    ctx: &Ctx,
    project_id: &str,
    params: &Params,
    detail: bool,
) -> Result<Json<Value>, ApiError> {
    check_project(ctx, project_id)?;
    let metadata = metadata_filter(params)?;
    let everyone = all_tenants(ctx, params);
    let name = listing::param(params, "name");
    let status = listing::param(params, "status");
    let cloud = app.cloud();
    let mut volumes: Vec<&Volume> = cloud
        .volumes
        .values()
        .filter(|v| everyone || v.project_id == ctx.project_id)
        .filter(|v| name.is_none_or(|n| n == v.name))
        .filter(|v| status.is_none_or(|s| s == v.status))
        .filter(|v| metadata.iter().all(|(k, want)| v.metadata.get(k) == Some(want)))
        .collect();
    volumes.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let items = volumes
        .iter()
        .map(|v| {
            let body = if detail {
                cloud.render_volume(&app.url, v)
            } else {
                json!({"id": v.id, "name": v.name, "links": []})
            };
            (v.id.clone(), body)
        })
        .collect();
    let path = format!(
        "{API}/{project_id}/volumes{}",
        if detail { "/detail" } else { "" }
    );
    page_body(&app.url, &path, "volumes", items, params)
}

async fn list_volumes_detail(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(project_id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    list_volumes(&app, &ctx, &project_id, &params, true)
}

async fn list_volumes_brief(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(project_id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    list_volumes(&app, &ctx, &project_id, &params, false)
}

async fn create_volume(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(project_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_project(&ctx, &project_id)?;
    let spec: VolumeSpec = body_element(&body, "volume")?;
    let mut cloud = app.cloud();
    let id = cloud.create_volume(&ctx, spec)?;
    let rendered = cloud.volumes.get(&id).map(|v| cloud.render_volume(&app.url, v));
    Ok((StatusCode::ACCEPTED, Json(json!({"volume": rendered}))).into_response())
}

async fn show_volume(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((project_id, volume_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_project(&ctx, &project_id)?;
    let cloud = app.cloud();
    let volume = cloud
        .volumes
        .get(&volume_id)
        .filter(|v| ctx.owns(&v.project_id))
        .ok_or_else(|| volume_not_found(&volume_id))?;
    Ok(Json(json!({"volume": cloud.render_volume(&app.url, volume)})))
}

async fn update_volume(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((project_id, volume_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_project(&ctx, &project_id)?;
    let body = parse_json(&body)?;
    let mut cloud = app.cloud();
    let volume = cloud
        .volumes
        .get_mut(&volume_id)
        .filter(|v| ctx.owns(&v.project_id))
        .ok_or_else(|| volume_not_found(&volume_id))?;
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
    let rendered = cloud
        .volumes
        .get(&volume_id)
        .map(|v| cloud.render_volume(&app.url, v));
    Ok(Json(json!({"volume": rendered})))
}

async fn delete_volume(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((project_id, volume_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_project(&ctx, &project_id)?;
    app.cloud().delete_volume(&ctx, &volume_id)?;
    Ok(StatusCode::ACCEPTED)
}

fn list_snapshots(
    app: &Inner,
    ctx: &Ctx,
    project_id: &str,
    params: &Params,
    detail: bool,
) -> Result<Json<Value>, ApiError> {
    check_project(ctx, project_id)?;
    let metadata = metadata_filter(params)?;
    let everyone = all_tenants(ctx, params);
    let volume_id = listing::param(params, "volume_id");
    let name = listing::param(params, "name");
    let status = listing::param(params, "status");
    let cloud = app.cloud();
    let mut snapshots: Vec<&Snapshot> = cloud
        .snapshots
        .values()
        .filter(|s| everyone || s.project_id == ctx.project_id)
        .filter(|s| volume_id.is_none_or(|v| v == s.volume_id))
        .filter(|s| name.is_none_or(|n| n == s.name))
        .filter(|s| status.is_none_or(|st| st == s.status))
        .filter(|s| metadata.iter().all(|(k, want)| s.metadata.get(k) == Some(want)))
        .collect();
    snapshots.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let items = snapshots
        .iter()
        .map(|s| {
            let body = if detail {
                render_snapshot(s)
            } else {
                json!({"id": s.id, "name": s.name})
            };
            (s.id.clone(), body)
        })
        .collect();
    let path = format!(
        "{API}/{project_id}/snapshots{}",
        if detail { "/detail" } else { "" }
    );
    page_body(&app.url, &path, "snapshots", items, params)
}

async fn list_snapshots_detail(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(project_id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    list_snapshots(&app, &ctx, &project_id, &params, true)
}

async fn list_snapshots_brief(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(project_id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    list_snapshots(&app, &ctx, &project_id, &params, false)
}

async fn create_snapshot(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path(project_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_project(&ctx, &project_id)?;
    let spec: SnapshotSpec = body_element(&body, "snapshot")?;
    let mut cloud = app.cloud();
    let id = cloud.create_snapshot(&ctx, spec)?;
    let rendered = cloud.snapshots.get(&id).map(render_snapshot);
    Ok((StatusCode::ACCEPTED, Json(json!({"snapshot": rendered}))).into_response())
}

async fn show_snapshot(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((project_id, snapshot_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_project(&ctx, &project_id)?;
    let cloud = app.cloud();
    let snapshot = cloud
        .snapshots
        .get(&snapshot_id)
        .filter(|s| ctx.owns(&s.project_id))
        .ok_or_else(|| snapshot_not_found(&snapshot_id))?;
    Ok(Json(json!({"snapshot": render_snapshot(snapshot)})))
}

async fn delete_snapshot(
    State(app): State<Arc<Inner>>,
    Extension(ctx): Extension<Ctx>,
    Path((project_id, snapshot_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_project(&ctx, &project_id)?;
    app.cloud().delete_snapshot(&ctx, &snapshot_id)?;
    Ok(StatusCode::ACCEPTED)
}
