//! Neutron's routes: version and extension documents, the collection URLs (dispatched on their
//! `{collection}` segment to the collection's [`Resource`]), router interface actions, and the tag
//! URLs of [`crate::openstack::tags`].

use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::listing;
use super::routers::interface_of;
use super::{body_of, Changes, Resource, API};
use crate::openstack::call::Call;
use crate::openstack::errors::{parse_json, ApiError, Service};
use crate::openstack::keystone::require_token;
use crate::openstack::listing::Params;
use crate::openstack::state::{
    Cloud, Ctx, FloatingIp, Network, Port, Router as NeutronRouter, SecurityGroup, SecurityGroupRule, Subnet,
};
use crate::openstack::tags::{self, TagPath, Tagged};
use crate::openstack::{version_routes, Inner};

/// What the handlers do with one collection, whichever [`Resource`] it holds.
trait Collection: Sync {
    /// The URL segment (`security-groups`).
    fn segment(&self) -> String;
    fn singular(&self) -> &'static str;
    fn list(&self, cloud: &mut Cloud, url: &str, ctx: &Ctx, params: &Params) -> Result<Value, ApiError>;
    /// The caller's view of one resource, or the collection's 404.
    fn show(&self, cloud: &Cloud, ctx: &Ctx, id: &str) -> Result<Value, ApiError>;
    /// Creates from a body's `{singular: {...}}`; returns the caller's view (`null` if none).
    fn create(&self, cloud: &mut Cloud, ctx: &Ctx, body: &Value) -> Result<Value, ApiError>;
    fn update(&self, cloud: &mut Cloud, ctx: &Ctx, id: &str, body: &Value) -> Result<Value, ApiError>;
    fn delete(&self, cloud: &mut Cloud, ctx: &Ctx, id: &str) -> Result<(), ApiError>;
    /// The tags of a resource the caller sees; a 404 for collections without tags.
    fn tags<'a>(&self, cloud: &'a mut Cloud, ctx: &Ctx, id: &str) -> Result<&'a mut Vec<String>, ApiError>;
}

/// The [`Collection`] of `R`s.
struct Of<R>(PhantomData<fn() -> R>);

impl<R: Resource> Collection for Of<R> {
    fn segment(&self) -> String {
        format!("{}s", R::SINGULAR).replace('_', "-")
    }

    fn singular(&self) -> &'static str {
        R::SINGULAR
    }

    fn list(&self, cloud: &mut Cloud, url: &str, ctx: &Ctx, params: &Params) -> Result<Value, ApiError> {
        listing::list::<R>(cloud, url, ctx, params)
    }

    fn show(&self, cloud: &Cloud, ctx: &Ctx, id: &str) -> Result<Value, ApiError> {
        cloud.visible_or_404::<R>(ctx, id)?;
        cloud.view::<R>(ctx, id).ok_or_else(|| R::not_found(id))
    }

    fn create(&self, cloud: &mut Cloud, ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
        let id = R::create(cloud, ctx, body_of(body, R::SINGULAR)?)?;
        Ok(cloud.view::<R>(ctx, &id).unwrap_or(Value::Null))
    }

    fn update(&self, cloud: &mut Cloud, ctx: &Ctx, id: &str, body: &Value) -> Result<Value, ApiError> {
        cloud.visible_or_404::<R>(ctx, id)?;
        let changes = Changes(body_of(body, R::SINGULAR)?);
        R::update(cloud, ctx, id, &changes)?;
        cloud.view::<R>(ctx, id).ok_or_else(|| R::not_found(id))
    }

    fn delete(&self, cloud: &mut Cloud, ctx: &Ctx, id: &str) -> Result<(), ApiError> {
        R::delete(cloud, ctx, id)
    }

    fn tags<'a>(&self, cloud: &'a mut Cloud, ctx: &Ctx, id: &str) -> Result<&'a mut Vec<String>, ApiError> {
        if !R::TAGGED {
            return Err(ApiError::unknown_path(Service::Neutron));
        }
        cloud.visible_or_404::<R>(ctx, id)?;
        cloud
            .record_mut::<R>(id)?
            .tags_mut()
            .ok_or_else(|| ApiError::unknown_path(Service::Neutron))
    }
}

/// Every collection Neutron serves.
const COLLECTIONS: [&dyn Collection; 7] = [
    &Of::<Network>(PhantomData),
    &Of::<Subnet>(PhantomData),
    &Of::<Port>(PhantomData),
    &Of::<NeutronRouter>(PhantomData),
    &Of::<FloatingIp>(PhantomData),
    &Of::<SecurityGroup>(PhantomData),
    &Of::<SecurityGroupRule>(PhantomData),
];

/// The collection a URL segment names, or Neutron's 404 for an unknown URL.
fn collection(segment: &str) -> Result<&'static dyn Collection, ApiError> {
    COLLECTIONS
        .into_iter()
        .find(|c| c.segment() == segment)
        .ok_or_else(|| ApiError::unknown_path(Service::Neutron))
}

pub(crate) fn routes(app: Arc<Inner>) -> Router {
    let authenticated = Router::new()
        .route(&format!("{API}/{{collection}}"), get(list).post(create))
        .route(
            &format!("{API}/{{collection}}/{{id}}"),
            get(show).put(update).delete(delete),
        )
        .route(
            &format!("{API}/{{collection}}/{{id}}/{{member}}"),
            get(unknown_member).put(member_action).delete(unknown_member),
        )
        .merge(tags::routes::<NeutronTags>(&format!(
            "{API}/{{collection}}/{{id}}"
        )))
        .route_layer(from_fn_with_state(app.clone(), require_token));
    version_routes("/network", versions, API, resources)
        .merge(authenticated)
        .with_state(app)
}

async fn versions(State(app): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"versions": [{
        "id": "v2.0", "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{}{API}/", app.url)}],
    }]}))
}

async fn resources(State(app): State<Arc<Inner>>) -> Json<Value> {
    let resources: Vec<Value> = [
        "network",
        "subnet",
        "port",
        "router",
        "floatingip",
        "security_group",
    ]
    .iter()
    .map(|name| {
        let collection = format!("{name}s").replace('_', "-");
        json!({"name": name, "collection": collection,
                   "links": [{"rel": "self", "href": format!("{}{API}/{collection}", app.url)}]})
    })
    .collect();
    Json(json!({"resources": resources}))
}

/// The extensions this simulator implements, as `GET /v2.0/extensions` lists them.
const EXTENSIONS: [(&str, &str); 12] = [
    ("agent", "agent"),
    ("binding", "Port Binding"),
    ("external-net", "Neutron external network"),
    ("extraroute", "Neutron Extra Route"),
    ("project-id", "project_id field enabled"),
    ("router", "Neutron L3 Router"),
    ("security-group", "security-group"),
    ("standard-attr-description", "standard-attr-description"),
    (
        "standard-attr-tag",
        "Tag support for resources with standard attribute: port, subnet, network, ...",
    ),
    ("standard-attr-timestamp", "Resource timestamps"),
    ("pagination", "Pagination support"),
    ("filter-validation", "Filter parameters validation"),
];

fn extension_body(alias: &str, name: &str) -> Value {
    json!({"alias": alias, "name": name, "description": name, "updated": "2019-01-01T00:00:00-00:00", "links": []})
}

async fn list(
    call: Call,
    Path(segment): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    if segment == "extensions" {
        let extensions: Vec<Value> = EXTENSIONS.iter().map(|(a, n)| extension_body(a, n)).collect();
        return Ok(Json(json!({"extensions": extensions})));
    }
    if segment == "service-providers" {
        // No advanced service (VPN, load balancer, ...) is configured: none has a provider, and
        // the empty list is what Neutron answers then, filters and `fields` or not.
        return Ok(Json(json!({"service_providers": []})));
    }
    let collection = collection(&segment)?;
    let mut cloud = call.cloud();
    collection
        .list(&mut cloud, &call.app.url, &call.ctx, &params)
        .map(Json)
}

async fn create(call: Call, Path(segment): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let collection = collection(&segment)?;
    let body = parse_json(Service::Neutron, &body)?;
    let item = collection.create(&mut call.cloud(), &call.ctx, &body)?;
    Ok((StatusCode::CREATED, Json(json!({ collection.singular(): item }))).into_response())
}

async fn show(
    call: Call,
    Path((segment, id)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    if segment == "extensions" {
        return EXTENSIONS
            .iter()
            .find(|(alias, _)| *alias == id)
            .map(|(a, n)| Json(json!({"extension": extension_body(a, n)})))
            .ok_or_else(|| {
                ApiError::neutron_not_found(
                    "HTTPNotFound",
                    format!("Extension with alias {id} does not exist"),
                )
            });
    }
    let collection = collection(&segment)?;
    let item = collection.show(&call.cloud(), &call.ctx, &id)?;
    Ok(Json(
        json!({ collection.singular(): crate::openstack::listing::project_fields(item, &params) }),
    ))
}

async fn update(
    call: Call,
    Path((segment, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let collection = collection(&segment)?;
    let body = parse_json(Service::Neutron, &body)?;
    let item = collection.update(&mut call.cloud(), &call.ctx, &id, &body)?;
    Ok(Json(json!({ collection.singular(): item })))
}

async fn delete(call: Call, Path((segment, id)): Path<(String, String)>) -> Result<StatusCode, ApiError> {
    collection(&segment)?.delete(&mut call.cloud(), &call.ctx, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A GET or DELETE of a resource's member URL other than `tags`.
async fn unknown_member() -> ApiError {
    ApiError::unknown_path(Service::Neutron)
}

/// `PUT /v2.0/routers/{id}/add_router_interface` and `.../remove_router_interface`.
async fn member_action(
    call: Call,
    Path((segment, id, member)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_json(Service::Neutron, &body)?;
    if segment != "routers" {
        return Err(ApiError::unknown_path(Service::Neutron));
    }
    let mut cloud = call.cloud();
    match member.as_str() {
        "add_router_interface" => cloud.add_router_interface(&call.ctx, &id, interface_of(&body)?),
        "remove_router_interface" => cloud.remove_router_interface(&call.ctx, &id, interface_of(&body)?),
        _ => Err(ApiError::unknown_path(Service::Neutron)),
    }
    .map(Json)
}

/// The tags of `/v2.0/{collection}/{id}`.
struct NeutronTags;

impl Tagged for NeutronTags {
    type Call = Call;
    const PUT_EXISTING: StatusCode = StatusCode::CREATED;

    fn app(call: &Call) -> &Inner {
        &call.app
    }

    fn tags<'a>(cloud: &'a mut Cloud, call: &Call, path: &TagPath) -> Result<&'a mut Vec<String>, ApiError> {
        collection(&path.collection)?.tags(cloud, &call.ctx, &path.id)
    }

    fn parse_tags(body: &[u8]) -> Result<Vec<String>, ApiError> {
        body_of(&parse_json(Service::Neutron, body)?, "tags")
    }

    fn tag_not_found(tag: &str, path: &TagPath) -> ApiError {
        ApiError::neutron_not_found(
            "TagNotFound",
            format!("Tag {tag} could not be found for resource {}.", path.id),
        )
    }
}
