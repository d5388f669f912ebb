//! Octavia v2 (`load-balancer` in the catalog, `/load-balancer/v2/lbaas/...`): load balancers with
//! a VIP port in Neutron, listeners, pools, members and health monitors; asynchronous provisioning
//! (`PENDING_*` until the simulator's clock passes [`OctaviaTimings::provision_delay`]) and cascade
//! delete; the real service's refusals. Built from the Octavia API reference and checked against
//! Octavia's API controllers:
//! - a change to a load balancer in a `PENDING_*` state: 409 `Invalid state PENDING_UPDATE of
//!   loadbalancer resource <id>`; a change under it: 409 `Load Balancer <id> is immutable and
//!   cannot be updated.`
//! - `DELETE /lbaas/loadbalancers/{id}` of one with listeners or pools and without `cascade=true`:
//!   400 `Validation failure: Cannot delete Load Balancer <id> - it has children` (checked before
//!   the status); with it, 204, everything `PENDING_DELETE`, then 404 and the VIP port gone.
//! - another project's object: 403 `Policy does not allow this request to be performed.`; lists
//!   show the caller's project (an admin's: every project, or `project_id=`).
//! - lists sort by `created_at` then `id`, ascending; pages of `limit` (at most 1000) after
//!   `marker` (400 for an unknown one), with a `next` link whenever the page is full and a
//!   `previous` one after a marker, keeping only `limit` and `marker` as real Octavia does.
//!
//! # Where it knowingly differs from real Octavia
//! - No amphorae, flavors, availability zones, L7 policies, quotas or statistics; `provider` is
//!   always `amphora`, and the VIP port's own security group (in Octavia's service project) is not
//!   made: the VIP port carries `vip_sg_ids` only.
//! - A load balancer is created from `vip_subnet_id` or `vip_network_id`, not `vip_port_id`, and not
//!   fully populated (`listeners` in the create body).
//! - A delete of a listener, pool, member or health monitor completes at the load balancer's next
//!   provisioning step, like a create.
//!
//! # Layout
//! - this module: [`Object`], what the routes know of each kind, the routes and their handlers.
//! - `listing`: filters, `fields`, sorting and pages.
//! - `load_balancers` (and the timeline [`Cloud::reap_load_balancers`]), `listeners`, `pools`,
//!   `members`, `health_monitors`: each kind's model, requests and JSON.
//! - `direct`: a CI job's load balancer seeded without HTTP, and what tests look at and cause.

mod direct;
mod health_monitors;
mod listeners;
mod listing;
mod load_balancers;
mod members;
mod pools;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::call::Call;
use super::errors::{parse_json, ApiError, Service};
use super::keystone::require_token;
use super::listing::Params;
use super::state::{
    Cloud, Ctx, HasCommon, HealthMonitor, Listener, LoadBalancer, LoadBalancing, Member, OctaviaCommon, Pool,
    Provisioning, Record,
};
use super::{version_routes, Inner};

pub use direct::SeededLoadBalancerJob;
pub(crate) use load_balancers::LoadBalancerReq;

/// Where the service's versions are listed (the catalog's URL).
const ROOT: &str = "/load-balancer";
/// The v2 API (`/v2.0` is an alias).
const API: &str = "/load-balancer/v2";

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::octavia(StatusCode::BAD_REQUEST, message)
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::octavia(StatusCode::CONFLICT, message)
}

fn forbidden() -> ApiError {
    ApiError::octavia(
        StatusCode::FORBIDDEN,
        "Policy does not allow this request to be performed.",
    )
}

/// 409 for a change to anything under a load balancer that is not `ACTIVE`.
fn immutable(load_balancer_id: &str) -> ApiError {
    conflict(format!(
        "Load Balancer {load_balancer_id} is immutable and cannot be updated."
    ))
}

/// Octavia's timestamp form (no zone).
fn timestamp(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// `[{"id": ...}]`, as Octavia links objects.
fn ids<'a>(ids: impl IntoIterator<Item = &'a String>) -> Value {
    Value::Array(ids.into_iter().map(|id| json!({ "id": id })).collect())
}

/// The attributes every object shows.
fn common_json(common: &OctaviaCommon, operating_status: &str) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    map.insert("id".into(), json!(common.id));
    map.insert("name".into(), json!(common.name));
    map.insert("description".into(), json!(common.description));
    map.insert("project_id".into(), json!(common.project_id));
    map.insert("provisioning_status".into(), json!(common.provisioning.as_str()));
    map.insert("operating_status".into(), json!(operating_status));
    map.insert("admin_state_up".into(), json!(common.admin_state_up));
    map.insert("tags".into(), json!(common.tags));
    map.insert("created_at".into(), json!(timestamp(&common.created)));
    map.insert("updated_at".into(), json!(common.updated.as_ref().map(timestamp)));
    map
}

/// The operating status that goes with a provisioning status (no health checks run here).
fn operating(provisioning: Provisioning, admin_state_up: bool) -> &'static str {
    match provisioning {
        Provisioning::Active if admin_state_up => "ONLINE",
        Provisioning::Error => "ERROR",
        _ => "OFFLINE",
    }
}

/// A new object's shared attributes, `PENDING_CREATE`, in `project_id`.
fn new_common(id: &str, create: &CommonReq, project_id: &str) -> OctaviaCommon {
    OctaviaCommon {
        id: id.to_string(),
        name: create.name.clone(),
        description: create.description.clone(),
        project_id: project_id.to_string(),
        provisioning: Provisioning::PendingCreate,
        admin_state_up: create.admin_state_up.unwrap_or(true),
        tags: super::tags::dedup(&create.tags),
        created: Utc::now(),
        updated: None,
    }
}

/// What every create body may carry.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub(crate) struct CommonReq {
    pub name: String,
    pub description: String,
    pub admin_state_up: Option<bool>,
    pub tags: Vec<String>,
    pub project_id: Option<String>,
}

impl CommonReq {
    /// The project the object goes to: the caller's, or any an admin names.
    fn owner(&self, ctx: &Ctx) -> Result<String, ApiError> {
        match &self.project_id {
            Some(project) if project != &ctx.project_id && !ctx.admin => Err(forbidden()),
            Some(project) => Ok(project.clone()),
            None => Ok(ctx.project_id.clone()),
        }
    }
}

/// One Octavia kind, as the shared routes see it.
pub(crate) trait Object: HasCommon + Record + Sized + 'static {
    /// The body key of one (`loadbalancer`).
    const SINGULAR: &'static str;
    /// The body key of a list and the URL segment (`loadbalancers`).
    const PLURAL: &'static str;
    /// How messages name the kind (`Load Balancer`).
    const NAME: &'static str;
    /// The create body's `{SINGULAR: ...}` object.
    type Create: DeserializeOwned;

    fn table(octavia: &LoadBalancing) -> &BTreeMap<String, Self>;
    fn table_mut(octavia: &mut LoadBalancing) -> &mut BTreeMap<String, Self>;
    /// The load balancer it belongs to (its own id for a load balancer).
    fn load_balancer_id(&self, octavia: &LoadBalancing) -> String;
    fn render(&self, octavia: &LoadBalancing) -> Value;
    /// Creates it (under `parent`, for a member: its pool); returns its id.
    fn create(
        cloud: &mut Cloud,
        ctx: &Ctx,
        parent: Option<&str>,
        req: Self::Create,
    ) -> Result<String, ApiError>;
    /// Accepts a DELETE of an object the caller owns. A listener, pool, member or health monitor
    /// turns `PENDING_DELETE` and its load balancer `PENDING_UPDATE` (409 while that is busy); a
    /// pool's members and health monitor go with it when the update ends.
    fn delete(cloud: &mut Cloud, id: &str, _params: &Params) -> Result<(), ApiError> {
        let now = cloud.clock.now();
        let octavia = octavia_mut(cloud)?;
        let lb_id = Self::table(octavia)
            .get(id)
            .map(|object| object.load_balancer_id(octavia))
            .ok_or_else(|| Self::not_found(id))?;
        octavia.mutable_load_balancer(&lb_id)?;
        if let Some(object) = Self::table_mut(octavia).get_mut(id) {
            object.common_mut().provisioning = Provisioning::PendingDelete;
        }
        octavia.start_update(&lb_id, now);
        Ok(())
    }

    /// The object a member's URL nests it under: its pool.
    fn parent(&self) -> Option<&str> {
        None
    }

    fn not_found(id: &str) -> ApiError {
        ApiError::octavia(StatusCode::NOT_FOUND, format!("{} {id} not found.", Self::NAME))
    }
}

/// The load balancer of the pool `pool_id`; empty when the pool is gone.
fn load_balancer_of_pool(octavia: &LoadBalancing, pool_id: &str) -> String {
    octavia
        .pools
        .get(pool_id)
        .map(|p| p.loadbalancer_id.clone())
        .unwrap_or_default()
}

/// A mandatory field's value, or Octavia's 400 naming the `field` that is missing.
fn required<T>(field: &str, value: Option<T>) -> Result<T, ApiError> {
    value.ok_or_else(|| {
        bad_request(format!(
            "Invalid input for field/attribute {field}. Value: 'None'. Mandatory field missing."
        ))
    })
}

/// Octavia's 400 for a `field` whose `value` is none of `allowed`.
fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(bad_request(format!(
        "Invalid input for field/attribute {field}. Value: '{value}'. Value should be one of: {}",
        allowed.join(", ")
    )))
}

/// Octavia's tables, or a 404 for a cloud without Octavia.
fn octavia(cloud: &Cloud) -> Result<&LoadBalancing, ApiError> {
    cloud
        .load_balancing
        .as_ref()
        .ok_or_else(|| ApiError::unknown_path(Service::Octavia))
}

fn octavia_mut(cloud: &mut Cloud) -> Result<&mut LoadBalancing, ApiError> {
    cloud
        .load_balancing
        .as_mut()
        .ok_or_else(|| ApiError::unknown_path(Service::Octavia))
}

/// The caller's `O` with this id: 404 when there is none (or it is being deleted and gone from
/// view), 403 when it is another project's.
fn owned<'a, O: Object>(octavia: &'a LoadBalancing, ctx: &Ctx, id: &str) -> Result<&'a O, ApiError> {
    let object = O::table(octavia).get(id).ok_or_else(|| O::not_found(id))?;
    if !ctx.owns(&object.common().project_id) {
        return Err(forbidden());
    }
    Ok(object)
}

impl LoadBalancing {
    /// The load balancer `id`, when it can take a change to something under it: else 409.
    fn mutable_load_balancer(&mut self, id: &str) -> Result<&mut LoadBalancer, ApiError> {
        let lb = self
            .load_balancers
            .get_mut(id)
            .ok_or_else(|| LoadBalancer::not_found(id))?;
        if lb.common.provisioning != Provisioning::Active {
            return Err(immutable(id));
        }
        Ok(lb)
    }

    /// Starts a provisioning step of the load balancer `id` (`PENDING_UPDATE` until the delay).
    fn start_update(&mut self, id: &str, now: tokio::time::Instant) {
        let delay = self.timings.provision_delay;
        if let Some(lb) = self.load_balancers.get_mut(id) {
            lb.common.provisioning = Provisioning::PendingUpdate;
            lb.common.updated = Some(Utc::now());
            lb.pending_until = Some(now + delay);
        }
    }
}

pub(crate) fn routes(app: Arc<Inner>) -> Router {
    let mut authenticated = Router::new();
    for api in [API, "/load-balancer/v2.0"] {
        authenticated = authenticated
            .merge(object_routes::<LoadBalancer>(api))
            .merge(object_routes::<Listener>(api))
            .merge(object_routes::<Pool>(api))
            .merge(object_routes::<HealthMonitor>(api))
            .route(
                &format!("{api}/lbaas/pools/{{parent}}/members"),
                get(list_members).post(create_member),
            )
            .route(
                &format!("{api}/lbaas/pools/{{parent}}/members/{{id}}"),
                get(show_member).put(update_member).delete(delete_member),
            );
    }
    let authenticated = authenticated.route_layer(from_fn_with_state(app.clone(), require_token));
    version_routes(ROOT, versions, API, versions)
        .merge(authenticated)
        .with_state(app)
}

/// The list, create, show, update and delete URLs of `O` under `api`.
fn object_routes<O: Object>(api: &str) -> Router<Arc<Inner>> {
    let collection = format!("{api}/lbaas/{}", O::PLURAL);
    Router::new()
        .route(&collection, get(list::<O>).post(create::<O>))
        .route(
            &format!("{collection}/{{id}}"),
            get(show::<O>).put(update::<O>).delete(delete::<O>),
        )
}

/// The versions document, as Octavia's root answers it (no token needed).
async fn versions(State(app): State<Arc<Inner>>) -> Json<Value> {
    let href = format!("{}{ROOT}/v2", app.url);
    let versions: Vec<Value> = (0..=30)
        .map(|minor| {
            let status = if minor == 30 { "CURRENT" } else { "SUPPORTED" };
            json!({"id": format!("v2.{minor}"), "status": status, "updated": "2025-02-26T00:00:00Z",
                   "links": [{"href": href, "rel": "self"}]})
        })
        .collect();
    Json(json!({ "versions": versions }))
}

/// The object under `O::SINGULAR` in a body, with Octavia's 400 for a malformed one.
fn body_of<T: DeserializeOwned>(body: &[u8], key: &str) -> Result<T, ApiError> {
    let value = parse_json(Service::Octavia, body)?;
    let inner = required(key, value.get(key).cloned())?;
    serde_json::from_value(inner)
        .map_err(|e| bad_request(format!("Invalid input for field/attribute {key}: {e}")))
}

async fn list<O: Object>(call: Call, Query(params): Query<Params>) -> Result<Json<Value>, ApiError> {
    list_under::<O>(&call, None, &params)
}

fn list_under<O: Object>(
    call: &Call,
    parent: Option<&str>,
    params: &Params,
) -> Result<Json<Value>, ApiError> {
    let cloud = call.cloud();
    let octavia = octavia(&cloud)?;
    let path = match parent {
        Some(pool) => format!("{API}/lbaas/pools/{pool}/members"),
        None => format!("{API}/lbaas/{}", O::PLURAL),
    };
    listing::list::<O>(
        octavia,
        &call.ctx,
        parent,
        params,
        &format!("{}{path}", call.app.url),
    )
    .map(Json)
}

async fn show<O: Object>(
    call: Call,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let cloud = call.cloud();
    let octavia = octavia(&cloud)?;
    let object = owned::<O>(octavia, &call.ctx, &id)?;
    let item = crate::openstack::listing::project_fields(object.render(octavia), &params);
    Ok(Json(json!({ O::SINGULAR: item })))
}

async fn create<O: Object>(call: Call, body: Bytes) -> Result<Response, ApiError> {
    let req: O::Create = body_of(&body, O::SINGULAR)?;
    created::<O>(&call, None, req)
}

fn created<O: Object>(call: &Call, parent: Option<&str>, req: O::Create) -> Result<Response, ApiError> {
    let mut cloud = call.cloud();
    let id = O::create(&mut cloud, &call.ctx, parent, req)?;
    let octavia = octavia(&cloud)?;
    let item = O::table(octavia).get(&id).map(|o| o.render(octavia));
    Ok((StatusCode::CREATED, Json(json!({ O::SINGULAR: item }))).into_response())
}

async fn update<O: Object>(call: Call, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    updated::<O>(&call, &id, &body)
}

/// `PUT`: name, description, `admin_state_up` and tags; a provisioning step of its load balancer.
fn updated<O: Object>(call: &Call, id: &str, body: &[u8]) -> Result<Json<Value>, ApiError> {
    let changes: serde_json::Map<String, Value> = body_of(body, O::SINGULAR)?;
    let mut cloud = call.cloud();
    let now = cloud.clock.now();
    let octavia = octavia_mut(&mut cloud)?;
    let lb_id = owned::<O>(octavia, &call.ctx, id)?.load_balancer_id(octavia);
    let lb = octavia
        .load_balancers
        .get(&lb_id)
        .ok_or_else(|| LoadBalancer::not_found(&lb_id))?;
    if lb.common.provisioning.is_pending() {
        return Err(if O::SINGULAR == LoadBalancer::SINGULAR {
            load_balancers::pending_state(lb)
        } else {
            immutable(&lb_id)
        });
    }
    let object = O::table_mut(octavia)
        .get_mut(id)
        .ok_or_else(|| O::not_found(id))?;
    let common = object.common_mut();
    if let Some(name) = changes.get("name").and_then(Value::as_str) {
        common.name = name.to_string();
    }
    if let Some(description) = changes.get("description").and_then(Value::as_str) {
        common.description = description.to_string();
    }
    if let Some(up) = changes.get("admin_state_up").and_then(Value::as_bool) {
        common.admin_state_up = up;
    }
    if let Some(tags) = changes.get("tags") {
        let tags: Vec<String> = serde_json::from_value(tags.clone())
            .map_err(|e| bad_request(format!("Invalid input for field/attribute tags: {e}")))?;
        common.tags = super::tags::dedup(&tags);
    }
    common.updated = Some(Utc::now());
    if O::SINGULAR != LoadBalancer::SINGULAR {
        common.provisioning = Provisioning::PendingUpdate;
    }
    octavia.start_update(&lb_id, now);
    let item = O::table(octavia).get(id).map(|o| o.render(octavia));
    Ok(Json(json!({ O::SINGULAR: item })))
}

async fn delete<O: Object>(
    call: Call,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Result<StatusCode, ApiError> {
    let mut cloud = call.cloud();
    owned::<O>(octavia(&cloud)?, &call.ctx, &id)?;
    O::delete(&mut cloud, &id, &params)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A member's URL: its pool must be the caller's, and the member must be in it.
fn member_in_pool(call: &Call, pool: &str, id: Option<&str>) -> Result<(), ApiError> {
    let cloud = call.cloud();
    let octavia = octavia(&cloud)?;
    owned::<Pool>(octavia, &call.ctx, pool)?;
    if let Some(id) = id {
        let member = owned::<Member>(octavia, &call.ctx, id)?;
        if member.pool_id != pool {
            return Err(Member::not_found(id));
        }
    }
    Ok(())
}

async fn list_members(
    call: Call,
    Path(parent): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    member_in_pool(&call, &parent, None)?;
    list_under::<Member>(&call, Some(&parent), &params)
}

async fn create_member(call: Call, Path(parent): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let req = body_of(&body, Member::SINGULAR)?;
    created::<Member>(&call, Some(&parent), req)
}

async fn show_member(
    call: Call,
    Path((parent, id)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    member_in_pool(&call, &parent, Some(&id))?;
    show::<Member>(call, Path(id), Query(params)).await
}

async fn update_member(
    call: Call,
    Path((parent, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    member_in_pool(&call, &parent, Some(&id))?;
    updated::<Member>(&call, &id, &body)
}

async fn delete_member(
    call: Call,
    Path((parent, id)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Result<StatusCode, ApiError> {
    member_in_pool(&call, &parent, Some(&id))?;
    delete::<Member>(call, Path(id), Query(params)).await
}
