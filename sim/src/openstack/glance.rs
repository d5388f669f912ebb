//! A minimal Glance v2 under `/image`: image records (no data is ever uploaded, so they stay
//! `queued`), listed with Glance's filters and `next` links, created, shown, deleted, and tagged.
//! Enough for the clients that walk every service of a project, as `openstack project cleanup` does.
//! Errors come as Glance's (webob's) plain-text bodies.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::call::Call;
use super::keystone::require_token;
use super::listing::{self, Params};
use super::state::{new_id, Ctx, Image};
use super::Inner;

const API: &str = "/image/v2";

/// Glance's error answer: status line, a blank line, the message.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let reason = status.canonical_reason().unwrap_or("");
    let text = format!("{} {reason}\n\n{}\n\n   ", status.as_u16(), message.into());
    (status, [("content-type", "text/plain; charset=UTF-8")], text).into_response()
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("No image found with ID {id}"))
}

pub(crate) fn routes(app: Arc<Inner>) -> Router {
    let authenticated = Router::new()
        .route(&format!("{API}/images"), get(list).post(create))
        .route(&format!("{API}/images/{{id}}"), get(show).delete(delete))
        .route(
            &format!("{API}/images/{{id}}/tags/{{tag}}"),
            put(add_tag).delete(remove_tag),
        )
        .route_layer(from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/image", get(versions))
        .route("/image/", get(versions))
        .route("/image/versions", get(versions))
        .merge(authenticated)
        .with_state(app)
}

async fn versions(State(app): State<Arc<Inner>>) -> Response {
    let body = json!({"versions": [{
        "id": "v2.16", "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{}{API}/", app.url)}],
    }]});
    (StatusCode::MULTIPLE_CHOICES, Json(body)).into_response()
}

/// Whether the caller sees the image: its own project's, and public or community ones.
fn visible(image: &Image, ctx: &Ctx) -> bool {
    ctx.admin
        || image.project_id == ctx.project_id
        || matches!(image.visibility.as_str(), "public" | "community")
}

fn view(image: &Image) -> Value {
    let time = |t: &chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "id": image.id, "name": image.name, "status": image.status, "visibility": image.visibility,
        "protected": image.protected, "os_hidden": false, "owner": image.project_id, "tags": image.tags,
        "container_format": image.container_format, "disk_format": image.disk_format,
        "min_disk": image.min_disk, "min_ram": image.min_ram, "size": null, "virtual_size": null,
        "checksum": null, "os_hash_algo": null, "os_hash_value": null,
        "created_at": time(&image.created), "updated_at": time(&image.updated),
        "self": format!("/v2/images/{}", image.id), "file": format!("/v2/images/{}/file", image.id),
        "schema": "/v2/schemas/image",
    })
}

/// `GET /v2/images`: filters `name`, `owner`, `status`, `visibility` (community only when asked)
/// and `tag` (each one required), newest first, `limit`/`marker` pages with a `next` link.
async fn list(call: Call, Query(params): Query<Params>) -> Response {
    let limit = match listing::param(&params, "limit").map(str::parse::<usize>) {
        None => 25,
        Some(Ok(limit)) => limit.min(1000),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "limit param must be an integer"),
    };
    let wanted = |key: &str| listing::param(&params, key);
    let tags: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.as_str())
        .collect();
    let cloud = call.cloud();
    let mut images: Vec<&Image> = cloud
        .images
        .values()
        .filter(|i| visible(i, &call.ctx))
        .filter(|i| wanted("name").is_none_or(|n| n == i.name))
        .filter(|i| wanted("owner").is_none_or(|o| o == i.project_id))
        .filter(|i| wanted("status").is_none_or(|s| s == i.status))
        .filter(|i| match wanted("visibility") {
            Some("all") => true,
            Some(v) => v == i.visibility,
            None => i.visibility != "community",
        })
        .filter(|i| tags.iter().all(|t| i.tags.iter().any(|tag| tag == t)))
        .collect();
    images.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let Some(page) = listing::paginate(images, |i| i.id.as_str(), Some(limit), wanted("marker")) else {
        return error(StatusCode::BAD_REQUEST, "marker not found");
    };
    let mut body = json!({
        "images": page.items.iter().map(|i| view(i)).collect::<Vec<_>>(),
        "first": "/v2/images", "schema": "/v2/schemas/images",
    });
    if let (true, Some(last)) = (page.more, page.items.last()) {
        body["next"] = json!(format!("/v2/images?marker={}&limit={limit}", last.id));
    }
    Json(body).into_response()
}

/// The attributes a create body may set.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NewImage {
    id: Option<String>,
    name: Option<String>,
    visibility: Option<String>,
    tags: Vec<String>,
    protected: bool,
    container_format: Option<String>,
    disk_format: Option<String>,
    min_disk: u64,
    min_ram: u64,
}

/// `POST /v2/images`: 201 with the new `queued` image; `shared` unless told otherwise.
async fn create(call: Call, body: Bytes) -> Response {
    let new: NewImage = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("Invalid body: {e}")),
    };
    let visibility = new.visibility.unwrap_or_else(|| "shared".to_string());
    if !matches!(visibility.as_str(), "public" | "private" | "shared" | "community") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Invalid visibility value: {visibility}"),
        );
    }
    if visibility == "public" && !call.ctx.admin {
        return error(
            StatusCode::FORBIDDEN,
            "You are not authorized to complete publicize_image action.",
        );
    }
    let mut cloud = call.cloud();
    let id = new.id.unwrap_or_else(new_id);
    if cloud.images.contains_key(&id) {
        return error(
            StatusCode::CONFLICT,
            format!("Image with identifier {id} already exists!"),
        );
    }
    let now = Utc::now();
    let image = Image {
        id: id.clone(),
        name: new.name.unwrap_or_default(),
        project_id: call.ctx.project_id.clone(),
        visibility,
        status: "queued".into(),
        tags: super::tags::dedup(&new.tags),
        protected: new.protected,
        container_format: new.container_format,
        disk_format: new.disk_format,
        min_disk: new.min_disk,
        min_ram: new.min_ram,
        created: now,
        updated: now,
    };
    let body = view(&image);
    cloud.images.insert(id, image);
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn show(call: Call, Path(id): Path<String>) -> Response {
    let cloud = call.cloud();
    match cloud.images.get(&id).filter(|i| visible(i, &call.ctx)) {
        Some(image) => Json(view(image)).into_response(),
        None => not_found(&id),
    }
}

/// Why an image cannot be changed by the caller: the status and message of the answer.
type Refusal = (StatusCode, String);

/// The caller's own image (any, for admins), for a change.
fn owned<'a>(
    images: &'a mut std::collections::BTreeMap<String, Image>,
    ctx: &Ctx,
    id: &str,
) -> Result<&'a mut Image, Refusal> {
    match images.get_mut(id) {
        Some(image) if ctx.admin || image.project_id == ctx.project_id => Ok(image),
        Some(image) if visible(image, ctx) => Err((
            StatusCode::FORBIDDEN,
            "You are not permitted to modify this image.".to_string(),
        )),
        _ => Err((StatusCode::NOT_FOUND, format!("No image found with ID {id}"))),
    }
}

/// `DELETE /v2/images/{id}`: 204; 403 for a protected image or another project's.
async fn delete(call: Call, Path(id): Path<String>) -> Response {
    let mut cloud = call.cloud();
    match owned(&mut cloud.images, &call.ctx, &id) {
        Ok(image) if image.protected => error(
            StatusCode::FORBIDDEN,
            format!("Image {id} is protected and cannot be deleted."),
        ),
        Ok(_) => {
            cloud.images.remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        Err((status, message)) => error(status, message),
    }
}

/// `PUT /v2/images/{id}/tags/{tag}`: 204, the tag added once.
async fn add_tag(call: Call, Path((id, tag)): Path<(String, String)>) -> Response {
    let mut cloud = call.cloud();
    match owned(&mut cloud.images, &call.ctx, &id) {
        Ok(image) => {
            if !image.tags.contains(&tag) {
                image.tags.push(tag);
                image.updated = Utc::now();
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err((status, message)) => error(status, message),
    }
}

/// `DELETE /v2/images/{id}/tags/{tag}`: 204, or 404 for a tag the image does not have.
async fn remove_tag(call: Call, Path((id, tag)): Path<(String, String)>) -> Response {
    let mut cloud = call.cloud();
    match owned(&mut cloud.images, &call.ctx, &id) {
        Ok(image) if image.tags.contains(&tag) => {
            image.tags.retain(|t| *t != tag);
            image.updated = Utc::now();
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(_) => error(StatusCode::NOT_FOUND, format!("Tag {tag} not found")),
        Err((status, message)) => error(status, message),
    }
}
