//! The tag URLs Nova (`/servers/{id}/tags`) and Neutron (`/{collection}/{id}/tags`) share: list,
//! replace and clear a resource's tags, and check, add or remove one. Each service says through
//! [`Tagged`] where the tags are, what it checks first, and where its answers differ.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::errors::ApiError;
use super::state::Cloud;
use super::Inner;

/// The path of a tag URL: `/servers/{id}/tags/{tag}` or `/{collection}/{id}/tags/{tag}`.
#[derive(Debug, Deserialize)]
pub(crate) struct TagPath {
    /// The Neutron collection (`networks`); empty for Nova.
    #[serde(default)]
    pub collection: String,
    pub id: String,
    /// Empty on the URLs of the whole list.
    #[serde(default)]
    pub tag: String,
}

/// A service whose resources carry tags under `.../{id}/tags`.
pub(crate) trait Tagged: 'static {
    /// What the service's handlers extract (the caller, and Nova's microversion).
    type Call: FromRequestParts<Arc<Inner>, Rejection = ApiError> + Send;
    /// The simulator a call was made to.
    fn app(call: &Self::Call) -> &Inner;
    /// The tags of the resource `path` names, after the service's checks (microversion, visibility).
    fn tags<'a>(
        cloud: &'a mut Cloud,
        call: &Self::Call,
        path: &TagPath,
    ) -> Result<&'a mut Vec<String>, ApiError>;
    /// The list in a `PUT .../tags` body (`{"tags": [...]}`), with the service's 400s.
    fn parse_tags(body: &[u8]) -> Result<Vec<String>, ApiError>;
    /// The service's 404 for a tag the resource does not carry.
    fn tag_not_found(tag: &str, path: &TagPath) -> ApiError;
    /// What `PUT .../tags/{tag}` answers for a tag already there (Nova 204, Neutron 201).
    const PUT_EXISTING: StatusCode;
}

/// The tag URLs of the resources at `resource` (`/compute/v2.1/servers/{id}`).
pub(crate) fn routes<S: Tagged>(resource: &str) -> Router<Arc<Inner>> {
    Router::new()
        .route(
            &format!("{resource}/tags"),
            get(list::<S>).put(replace::<S>).delete(clear::<S>),
        )
        .route(
            &format!("{resource}/tags/{{tag}}"),
            get(check::<S>).put(add::<S>).delete(remove::<S>),
        )
}

/// `GET .../tags`.
async fn list<S: Tagged>(call: S::Call, Path(path): Path<TagPath>) -> Result<Json<Value>, ApiError> {
    let mut cloud = S::app(&call).cloud();
    Ok(Json(json!({"tags": S::tags(&mut cloud, &call, &path)?})))
}

/// `PUT .../tags`: replaces the list, dropping repeats.
async fn replace<S: Tagged>(
    call: S::Call,
    Path(path): Path<TagPath>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let wanted = S::parse_tags(&body)?;
    let mut cloud = S::app(&call).cloud();
    let tags = S::tags(&mut cloud, &call, &path)?;
    *tags = dedup(&wanted);
    Ok(Json(json!({"tags": tags})))
}

/// `DELETE .../tags`.
async fn clear<S: Tagged>(call: S::Call, Path(path): Path<TagPath>) -> Result<StatusCode, ApiError> {
    let mut cloud = S::app(&call).cloud();
    S::tags(&mut cloud, &call, &path)?.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../tags/{tag}`: 204 when the resource carries it.
async fn check<S: Tagged>(call: S::Call, Path(path): Path<TagPath>) -> Result<StatusCode, ApiError> {
    let mut cloud = S::app(&call).cloud();
    if S::tags(&mut cloud, &call, &path)?.contains(&path.tag) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(S::tag_not_found(&path.tag, &path))
    }
}

/// `PUT .../tags/{tag}`.
async fn add<S: Tagged>(call: S::Call, Path(path): Path<TagPath>) -> Result<StatusCode, ApiError> {
    let mut cloud = S::app(&call).cloud();
    let tags = S::tags(&mut cloud, &call, &path)?;
    if tags.contains(&path.tag) {
        return Ok(S::PUT_EXISTING);
    }
    tags.push(path.tag.clone());
    Ok(StatusCode::CREATED)
}

/// `DELETE .../tags/{tag}`.
async fn remove<S: Tagged>(call: S::Call, Path(path): Path<TagPath>) -> Result<StatusCode, ApiError> {
    let mut cloud = S::app(&call).cloud();
    let tags = S::tags(&mut cloud, &call, &path)?;
    let before = tags.len();
    tags.retain(|t| t != &path.tag);
    if tags.len() == before {
        return Err(S::tag_not_found(&path.tag, &path));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `tags` in order, each once.
pub(crate) fn dedup(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    out
}
