//! Keystone's projects: `GET /v3/projects/{id}`, `GET /v3/projects?name=...` and
//! `GET /v3/auth/projects`, as clients look a project up by name or id (`--project demo`).
//!
//! Knowingly different from Keystone's default policy: a member listing `/v3/projects` sees its
//! own project (Keystone answers 403 and clients fall back to `/v3/auth/projects`, which lists the
//! same), so a lookup by name works for every user, as it does on most deployed clouds.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::call::Call;
use super::errors::ApiError;
use super::keystone::{require_token, USERS};
use super::listing::{self, Params};
use super::state::{Ctx, DOMAIN_ID};
use super::Inner;

pub(crate) fn routes(app: Arc<Inner>) -> Router<Arc<Inner>> {
    Router::new()
        .route("/identity/v3/projects", get(list))
        .route("/identity/v3/projects/{id}", get(show))
        .route("/identity/v3/auth/projects", get(scopes))
        .route_layer(from_fn_with_state(app, require_token))
}

/// Every project: one per user (`demo`, `admin`, `other`), all in domain `default`.
fn projects() -> impl Iterator<Item = (&'static str, &'static str)> {
    USERS.iter().map(|user| (user.project_id, user.project_name))
}

fn view(url: &str, (id, name): (&str, &str)) -> Value {
    json!({
        "id": id, "name": name, "domain_id": DOMAIN_ID, "parent_id": DOMAIN_ID, "enabled": true,
        "is_domain": false, "description": "", "tags": [], "options": {},
        "links": {"self": format!("{url}/identity/v3/projects/{id}")},
    })
}

/// The projects `ctx` may read: every one for an admin, else its own.
fn readable(ctx: &Ctx, id: &str) -> bool {
    ctx.admin || ctx.project_id == id
}

fn collection(url: &str, items: Vec<Value>, path: &str) -> Json<Value> {
    Json(json!({
        "projects": items,
        "links": {"self": format!("{url}{path}"), "previous": null, "next": null},
    }))
}

/// `GET /v3/projects`, filtered by `name`, `domain_id` and `enabled`.
async fn list(call: Call, Query(params): Query<Params>) -> Json<Value> {
    let url = &call.app.url;
    let wanted = |key: &str| listing::param(&params, key);
    let items = projects()
        .filter(|(id, _)| readable(&call.ctx, id))
        .filter(|(_, name)| wanted("name").is_none_or(|n| n == *name))
        .filter(|_| wanted("domain_id").is_none_or(|d| d == DOMAIN_ID))
        .filter(|_| wanted("enabled").is_none_or(|e| matches!(e, "true" | "True" | "1")))
        .map(|project| view(url, project))
        .collect();
    collection(url, items, "/identity/v3/projects")
}

/// `GET /v3/projects/{id}`: the caller's own (any, for an admin); 403 for another that exists.
async fn show(call: Call, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let Some(project) = projects().find(|(project_id, _)| *project_id == id) else {
        return Err(ApiError::keystone(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("Could not find project: {id}."),
        ));
    };
    if !readable(&call.ctx, &id) {
        return Err(ApiError::keystone(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "You are not authorized to perform the requested action: identity:get_project.",
        ));
    }
    Ok(Json(json!({"project": view(&call.app.url, project)})))
}

/// `GET /v3/auth/projects`: the projects the token's user has a role on.
async fn scopes(State(app): State<Arc<Inner>>, call: Call) -> Json<Value> {
    let items = USERS
        .iter()
        .filter(|user| user.id == call.ctx.user_id)
        .map(|user| view(&app.url, (user.project_id, user.project_name)))
        .collect();
    collection(&app.url, items, "/identity/v3/auth/projects")
}
