//! Nova v2.1: servers (asynchronous delete, locks, tags, the ports Nova makes and unbinds), volume
//! attachments, keypairs and server groups, behind microversion negotiation.
//!
//! # Layout
//! - this module: microversions, the [`NovaCall`] every handler extracts, the show and delete URLs
//!   of an [`Element`], and the routes.
//! - `servers`: booting, deleting (the timeline [`Cloud::reap`] moves on) and locking servers.
//! - `server_api`: what the API accepts and shows of servers: boot requests, the server view,
//!   lists, actions and tags.
//! - `attachments`: volumes attached to servers (`os-volume_attachments`).
//! - `keypairs`, `server_groups`: the two kinds Nova keeps besides servers.

mod attachments;
mod keypairs;
mod server_api;
mod server_groups;
mod servers;

use std::sync::{Arc, MutexGuard};

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::call::Call;
use super::errors::ApiError;
use super::keystone::require_token;
use super::listing::View;
use super::state::{Cloud, Ctx, Keypair, Server, ServerGroup};
use super::{tags, version_routes, Inner};

pub(crate) use servers::{Nic, ServerSpec};

const API: &str = "/compute/v2.1";
/// The highest compute microversion served (`2.MAX_MINOR`; real Nova 34 serves 2.104).
pub(crate) const MAX_MINOR: u32 = 96;

/// The negotiated compute microversion `2.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Microversion(pub u32);

impl Microversion {
    fn at_least(self, minor: u32) -> bool {
        self.0 >= minor
    }
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::nova(StatusCode::NOT_FOUND, message)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::nova(StatusCode::BAD_REQUEST, message)
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::nova(StatusCode::CONFLICT, message)
}

/// The compute version a request asks for, from `OpenStack-API-Version: compute 2.x` or the legacy
/// `X-OpenStack-Nova-API-Version: 2.x`; 2.1 when it asks for none.
fn requested_version(headers: &HeaderMap) -> Result<Microversion, ApiError> {
    let modern = headers
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let mut words = part.split_whitespace();
            let service = words.next()?;
            service
                .eq_ignore_ascii_case("compute")
                .then(|| words.next())
                .flatten()
                .map(str::to_string)
        });
    let legacy = headers
        .get("x-openstack-nova-api-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(text) = modern.or(legacy) else {
        return Ok(Microversion(1));
    };
    if text.eq_ignore_ascii_case("latest") {
        return Ok(Microversion(MAX_MINOR));
    }
    let minor = text
        .strip_prefix("2.")
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| bad_request(format!("Invalid API version request string {text}")))?;
    if (1..=MAX_MINOR).contains(&minor) {
        Ok(Microversion(minor))
    } else {
        Err(ApiError::nova(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {text} is not supported by the API. Minimum is 2.1 and maximum is 2.{MAX_MINOR}."
            ),
        ))
    }
}

/// Middleware: negotiates the microversion and names it in the response headers, as Nova does.
async fn negotiate(mut request: Request, next: Next) -> Response {
    let version = match requested_version(request.headers()) {
        Ok(version) => version,
        Err(error) => return error.into_response(),
    };
    request.extensions_mut().insert(version);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("compute 2.{}", version.0)) {
        headers.insert("openstack-api-version", value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("2.{}", version.0)) {
        headers.insert("x-openstack-nova-api-version", value);
    }
    headers.insert(
        "vary",
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    response
}

/// What every Nova handler starts from: the simulator, the caller and the negotiated microversion.
pub(crate) struct NovaCall {
    pub app: Arc<Inner>,
    pub ctx: Ctx,
    pub version: Microversion,
}

impl NovaCall {
    /// The cloud, with every asynchronous delete that is due finished first.
    fn cloud(&self) -> MutexGuard<'_, Cloud> {
        self.app.cloud()
    }
}

impl FromRequestParts<Arc<Inner>> for NovaCall {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<Inner>) -> Result<Self, ApiError> {
        let Call { app, ctx } = Call::from_request_parts(parts, app).await?;
        // `negotiate` runs in front of every Nova route; a request it did not see asked for none.
        let version = parts
            .extensions
            .get::<Microversion>()
            .copied()
            .unwrap_or(Microversion(1));
        Ok(NovaCall { app, ctx, version })
    }
}

/// A Nova resource with a URL of its own (`/servers/{id}`, `/os-keypairs/{name}`,
/// `/os-server-groups/{id}`): how a GET shows it and what a DELETE does.
pub(crate) trait Element {
    /// The body key of one (`server`).
    const KEY: &'static str;
    /// The caller's view of the one `id` names, or its 404.
    fn show(cloud: &Cloud, call: &NovaCall, id: &str) -> Result<Value, ApiError>;
    /// Deletes it; returns the status of the accepted DELETE.
    fn delete(cloud: &mut Cloud, call: &NovaCall, id: &str) -> Result<StatusCode, ApiError>;
}

async fn show<E: Element>(call: NovaCall, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let cloud = call.cloud();
    Ok(Json(json!({ E::KEY: E::show(&cloud, &call, &id)? })))
}

async fn delete<E: Element>(call: NovaCall, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    E::delete(&mut call.cloud(), &call, &id)
}

pub(crate) fn routes(app: Arc<Inner>) -> Router {
    let authenticated = Router::new()
        .route(
            &format!("{API}/servers"),
            get(|call, query| server_api::list(call, query, View::Brief)).post(server_api::create),
        )
        .route(
            &format!("{API}/servers/detail"),
            get(|call, query| server_api::list(call, query, View::Detail)),
        )
        .route(
            &format!("{API}/servers/{{id}}"),
            get(show::<Server>).delete(delete::<Server>),
        )
        .route(&format!("{API}/servers/{{id}}/action"), post(server_api::action))
        .route(
            &format!("{API}/servers/{{id}}/os-volume_attachments"),
            get(attachments::list).post(attachments::attach),
        )
        .route(
            &format!("{API}/servers/{{id}}/os-volume_attachments/{{volume_id}}"),
            get(attachments::show).delete(attachments::detach),
        )
        .merge(tags::routes::<server_api::ServerTags>(&format!(
            "{API}/servers/{{id}}"
        )))
        .route(
            &format!("{API}/os-keypairs"),
            get(keypairs::list).post(keypairs::create),
        )
        .route(
            &format!("{API}/os-keypairs/{{id}}"),
            get(show::<Keypair>).delete(delete::<Keypair>),
        )
        .route(
            &format!("{API}/os-server-groups"),
            get(server_groups::list).post(server_groups::create),
        )
        .route(
            &format!("{API}/os-server-groups/{{id}}"),
            get(show::<ServerGroup>).delete(delete::<ServerGroup>),
        )
        .route_layer(from_fn(negotiate))
        .route_layer(from_fn_with_state(app.clone(), require_token));
    version_routes("/compute", versions, API, version)
        .merge(authenticated)
        .with_state(app)
}

fn version_body(url: &str) -> Value {
    json!({
        "id": "v2.1", "status": "CURRENT", "version": format!("2.{MAX_MINOR}"), "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{url}{API}/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    })
}

async fn versions(State(app): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"versions": [version_body(&app.url)]}))
}

async fn version(State(app): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"version": version_body(&app.url)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microversions_come_from_either_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(requested_version(&headers), Ok(Microversion(1)));
        headers.insert(
            "openstack-api-version",
            HeaderValue::from_static("volume 3.5, compute 2.79"),
        );
        assert_eq!(requested_version(&headers), Ok(Microversion(79)));
        let mut legacy = HeaderMap::new();
        legacy.insert("x-openstack-nova-api-version", HeaderValue::from_static("latest"));
        assert_eq!(requested_version(&legacy), Ok(Microversion(MAX_MINOR)));
        legacy.insert("x-openstack-nova-api-version", HeaderValue::from_static("2.999"));
        assert_eq!(
            requested_version(&legacy).map_err(|e| e.status),
            Err(StatusCode::NOT_ACCEPTABLE)
        );
    }
}
