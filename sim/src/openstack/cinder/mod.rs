//! Cinder v3: volumes, snapshots and backups under `/volume/v3/{project_id}`, their metadata filters, the
//! 400 for a volume in use or with snapshots, and asynchronous deletes.
//!
//! # Layout
//! - this module: the [`CinderCall`] every handler extracts (with the URL's project checked),
//!   the list, show, create and delete URLs of a [`Resource`], microversions, and the routes.
//! - `volumes`, `snapshots`, `backups`: each kind's model (what a create or delete does, and when Cinder
//!   refuses) and its JSON.

mod backups;
mod snapshots;
mod volumes;

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::call::Call;
use super::errors::{parse_json, ApiError, Service};
use super::keystone::require_token;
use super::listing::{self, PageOf, Params, View};
use super::state::{Backup, Cloud, Ctx, Snapshot, Stored, Volume};
use super::{version_routes, Inner};

pub(crate) use snapshots::SnapshotSpec;
pub(crate) use volumes::VolumeSpec;

const API: &str = "/volume/v3";
const MAX_VERSION: &str = "3.70";

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::cinder(StatusCode::BAD_REQUEST, message)
}

/// A Cinder resource kind, as the shared list, show, create and delete URLs see it.
pub(crate) trait Resource: Stored {
    /// The body key of one (`volume`); the collection's URL segment and body key add `s`.
    const ELEMENT: &'static str;
    /// Cinder's 404 message, `{id}` standing for the id.
    const NOT_FOUND: &'static str;
    /// Attributes of the detailed view a list filters on by equality (besides `metadata`),
    /// separated by spaces.
    const FILTERS: &'static str;
    /// The create body's `{ELEMENT: ...}` object.
    type Spec: DeserializeOwned;

    fn not_found(id: &str) -> ApiError {
        ApiError::cinder(StatusCode::NOT_FOUND, Self::NOT_FOUND.replace("{id}", id))
    }
    /// Lists show the newest first.
    fn created(&self) -> DateTime<Utc>;
    /// What a brief list shows of one.
    fn brief(&self) -> Value;
    /// Everything, as show and detailed lists answer.
    fn detail(&self, url: &str) -> Value;
    fn create(cloud: &mut Cloud, ctx: &Ctx, spec: Self::Spec) -> Result<String, ApiError>;
    /// Accepts a DELETE; the resource shows `deleting` until `volume_delete_delay` passes.
    fn delete(cloud: &mut Cloud, ctx: &Ctx, id: &str) -> Result<(), ApiError>;
}

impl Cloud {
    /// The caller's `R` with this id (any project's, for admins), or Cinder's 404.
    fn owned<R: Resource>(&self, ctx: &Ctx, id: &str) -> Result<&R, ApiError> {
        R::table(self)
            .get(id)
            .filter(|r| ctx.owns(r.project_id()))
            .ok_or_else(|| R::not_found(id))
    }

    /// [`Cloud::owned`], for a change.
    fn owned_mut<R: Resource>(&mut self, ctx: &Ctx, id: &str) -> Result<&mut R, ApiError> {
        R::table_mut(self)
            .get_mut(id)
            .filter(|r| ctx.owns(r.project_id()))
            .ok_or_else(|| R::not_found(id))
    }
}

/// The path of a Cinder URL: the project, and the resource when it names one.
#[derive(Debug, Deserialize)]
struct CinderPath {
    project_id: String,
    #[serde(default)]
    id: String,
}

/// What every Cinder handler starts from: the caller, and the URL's project, which must be the
/// token's (Cinder answers 400 for another one), with the resource id when the URL names one.
pub(crate) struct CinderCall {
    app: Arc<Inner>,
    ctx: Ctx,
    project_id: String,
    id: String,
}

impl CinderCall {
    /// The cloud, with every asynchronous delete that is due finished first.
    fn cloud(&self) -> MutexGuard<'_, Cloud> {
        self.app.cloud()
    }
}

impl FromRequestParts<Arc<Inner>> for CinderCall {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<Inner>) -> Result<Self, ApiError> {
        let Call { app, ctx } = Call::from_request_parts(parts, app).await?;
        // Every Cinder route has `{project_id}`; a path that does not parse is no Cinder URL.
        let Path(path) = Path::<CinderPath>::from_request_parts(parts, &app)
            .await
            .map_err(|_| ApiError::unknown_path(Service::Cinder))?;
        if ctx.project_id != path.project_id {
            return Err(bad_request(format!(
                "Malformed request URL: URL's project_id '{}' doesn't match Context's project_id '{}'",
                path.project_id, ctx.project_id
            )));
        }
        Ok(CinderCall {
            app,
            ctx,
            project_id: path.project_id,
            id: path.id,
        })
    }
}

pub(crate) fn routes(app: Arc<Inner>) -> Router {
    let authenticated = Router::new()
        .merge(resource_routes::<Volume>())
        .route(
            &format!("{API}/{{project_id}}/volumes/{{id}}"),
            get(show::<Volume>).put(volumes::update).delete(delete::<Volume>),
        )
        .merge(resource_routes::<Snapshot>())
        .route(
            &format!("{API}/{{project_id}}/snapshots/{{id}}"),
            get(show::<Snapshot>).delete(delete::<Snapshot>),
        )
        .merge(resource_routes::<Backup>())
        .route(
            &format!("{API}/{{project_id}}/backups/{{id}}"),
            get(show::<Backup>).delete(delete::<Backup>),
        )
        .route_layer(from_fn(echo_version))
        .route_layer(from_fn_with_state(app.clone(), require_token));
    version_routes("/volume", versions, API, version)
        .route(&format!("{API}/{{project_id}}"), get(version))
        .route(&format!("{API}/{{project_id}}/"), get(version))
        .merge(authenticated)
        .with_state(app)
}

/// The list and create URLs of `R`: `/{project_id}/{ELEMENT}s` and its `/detail`.
fn resource_routes<R: Resource>() -> Router<Arc<Inner>> {
    let collection = format!("{API}/{{project_id}}/{}s", R::ELEMENT);
    Router::new()
        .route(
            &collection,
            get(|call, query| list::<R>(call, query, View::Brief)).post(create::<R>),
        )
        .route(
            &format!("{collection}/detail"),
            get(|call, query| list::<R>(call, query, View::Detail)),
        )
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

/// The object under `element` in a request body (`{"volume": {...}}`), with Cinder's messages for a
/// missing or malformed one.
fn body_element<T: DeserializeOwned>(body: &[u8], element: &str) -> Result<T, ApiError> {
    parse_json(Service::Cinder, body)?
        .get(element)
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| bad_request(format!("Invalid input received: {e}")))?
        .ok_or_else(|| bad_request(format!("Missing required element '{element}' in request body.")))
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

/// Whether a detailed view passes the equality filters and the `metadata` filter.
fn matches(detail: &Value, params: &Params, filters: &str, metadata: &BTreeMap<String, String>) -> bool {
    filters
        .split_whitespace()
        .all(|key| listing::param(params, key).is_none_or(|wanted| detail[key].as_str() == Some(wanted)))
        && metadata
            .iter()
            .all(|(key, wanted)| detail["metadata"][key].as_str() == Some(wanted.as_str()))
}

/// `GET /{project_id}/{collection}` and `.../detail`: the caller's project's (every project's for
/// an admin asking `all_tenants`), newest first, one page of them.
async fn list<R: Resource>(
    call: CinderCall,
    Query(params): Query<Params>,
    view: View,
) -> Result<Json<Value>, ApiError> {
    let metadata = metadata_filter(&params)?;
    let everyone = call.ctx.admin
        && listing::param(&params, "all_tenants").is_some_and(|v| !matches!(v, "0" | "false" | "False"));
    let url = &call.app.url;
    let cloud = call.cloud();
    let mut records: Vec<(&String, &R)> = R::table(&cloud)
        .iter()
        .filter(|(_, r)| everyone || r.project_id() == call.ctx.project_id)
        .collect();
    records.sort_by(|(a_id, a), (b_id, b)| b.created().cmp(&a.created()).then_with(|| b_id.cmp(a_id)));
    let items = records
        .into_iter()
        .filter_map(|(id, r)| {
            let detail = r.detail(url);
            let shown = match view {
                View::Detail => detail.clone(),
                View::Brief => r.brief(),
            };
            matches(&detail, &params, R::FILTERS, &metadata).then(|| (id.clone(), shown))
        })
        .collect();
    let collection = format!("{}s", R::ELEMENT);
    let page = PageOf {
        url,
        path: &format!("{API}/{}/{collection}{}", call.project_id, view.suffix()),
        key: &collection,
        service: Service::Cinder,
        max_limit: Some(1000),
    };
    listing::page_body(page, items, &params, |marker| {
        ApiError::cinder(
            StatusCode::NOT_FOUND,
            format!("Marker {marker} could not be found."),
        )
    })
    .map(Json)
}

/// `POST /{project_id}/{collection}`: 202 with the new resource.
async fn create<R: Resource>(call: CinderCall, body: Bytes) -> Result<Response, ApiError> {
    let spec: R::Spec = body_element(&body, R::ELEMENT)?;
    let mut cloud = call.cloud();
    let id = R::create(&mut cloud, &call.ctx, spec)?;
    let detail = R::table(&cloud).get(&id).map(|r| r.detail(&call.app.url));
    Ok((StatusCode::ACCEPTED, Json(json!({ R::ELEMENT: detail }))).into_response())
}

/// `GET /{project_id}/{collection}/{id}`.
async fn show<R: Resource>(call: CinderCall) -> Result<Json<Value>, ApiError> {
    let cloud = call.cloud();
    let record = cloud.owned::<R>(&call.ctx, &call.id)?;
    Ok(Json(json!({ R::ELEMENT: record.detail(&call.app.url) })))
}

/// `DELETE /{project_id}/{collection}/{id}`: 202, then `deleting` until gone.
async fn delete<R: Resource>(call: CinderCall) -> Result<StatusCode, ApiError> {
    R::delete(&mut call.cloud(), &call.ctx, &call.id)?;
    Ok(StatusCode::ACCEPTED)
}
