//! Neutron v2.0: networks, subnets, ports, routers, floating IPs and security groups, with the real
//! service's conflicts, policy refusals, tags, filters and pages.
//!
//! # Layout
//! - this module: [`Resource`], what every collection tells the shared code about itself, and the
//!   parts of a create or update body every collection shares.
//! - `networks`, `subnets` (and address allocation), `ports`, `routers` (gateways and interfaces),
//!   `floating_ips`, `security_groups` (and their rules): each collection's model (who sees what,
//!   what a create, update or delete does, and its conflicts) and its JSON.
//! - `listing`: filters, `fields=` and pages of a list.
//! - `http`: the routes, dispatching a URL's collection to its [`Resource`], and the tag URLs.

mod floating_ips;
mod http;
mod listing;
mod networks;
mod ports;
mod routers;
mod security_groups;
mod subnets;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::errors::{ApiError, Service};
use super::state::{new_id, Cloud, Ctx, Stored};
use super::tags::dedup;

pub(crate) use floating_ips::FloatingIpReq;
pub(crate) use http::routes;
pub(crate) use networks::NetworkReq;
pub(crate) use ports::{FixedIpReq, PortReq};
pub(crate) use routers::{Interface, RouterReq};
pub(crate) use security_groups::{RuleReq, SecurityGroupReq};
pub(crate) use subnets::SubnetReq;

const API: &str = "/network/v2.0";

/// One Neutron collection's record type: what its URL and bodies call it, who sees its resources, and
/// what each call does to them. The HTTP layer and the list filters are written once against it.
pub(crate) trait Resource: Stored {
    /// The body key of one resource (`security_group`); a list's key adds `s`, its URL segment is
    /// that with `-` for `_` (`security-groups`).
    const SINGULAR: &'static str;
    /// Attributes a list may filter on besides `id`, `project_id`, `tenant_id`, `description`,
    /// `revision_number` and the tag filters, separated by spaces.
    const FILTERS: &'static str;
    /// Attributes policy shows to admins only, separated by spaces.
    const ADMIN_ONLY: &'static str = "";
    /// Neutron's exception type and message (`{id}` standing for the id) for an id the caller cannot
    /// see.
    const NOT_FOUND: (&'static str, &'static str);
    /// The create body's `{SINGULAR: ...}` object.
    type Create: DeserializeOwned;

    /// Neutron's 404 for an id the caller cannot see.
    fn not_found(id: &str) -> ApiError {
        let (kind, message) = Self::NOT_FOUND;
        ApiError::neutron_not_found(kind, message.replace("{id}", id))
    }
    /// Whether the caller sees the resource: by default its own project's (any, for admins).
    fn visible(&self, _cloud: &Cloud, ctx: &Ctx) -> bool {
        ctx.owns(self.project_id())
    }
    /// The admin's (full) view; lists filter on it.
    fn render(&self, cloud: &Cloud) -> Value;
    fn create(cloud: &mut Cloud, ctx: &Ctx, req: Self::Create) -> Result<String, ApiError>;
    /// Applies the updatable attributes of a PUT body; the resource is visible to the caller.
    fn update(cloud: &mut Cloud, ctx: &Ctx, id: &str, changes: &Changes) -> Result<(), ApiError>;
    fn delete(cloud: &mut Cloud, ctx: &Ctx, id: &str) -> Result<(), ApiError>;
    /// Runs before a list is read (the security group list makes the caller's `default` group).
    fn before_list(_cloud: &mut Cloud, _ctx: &Ctx) {}
}

/// What every create body may carry: name and description, the owner (an admin may name another
/// project) and tags. A collection without one of them ignores it, as it ignores any attribute it
/// does not know.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct Standard {
    pub name: String,
    pub description: String,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub tags: Vec<String>,
}

impl Standard {
    /// A body naming only `name` and `tags`.
    pub fn named(name: impl Into<String>, tags: Vec<String>) -> Self {
        Standard {
            name: name.into(),
            tags,
            ..Standard::default()
        }
    }

    /// The project a new resource belongs to: the caller's, or any project an admin names.
    pub fn owner(&self, ctx: &Ctx) -> Result<String, ApiError> {
        match self.project_id.as_ref().or(self.tenant_id.as_ref()) {
            Some(project) if project != &ctx.project_id && !ctx.admin => Err(ApiError::bad_request(
                Service::Neutron,
                "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request \
                 requires admin privileges",
            )),
            Some(project) => Ok(project.clone()),
            None => Ok(ctx.project_id.clone()),
        }
    }

    /// The tags, each once.
    pub fn tags(&self) -> Vec<String> {
        dedup(&self.tags)
    }
}

/// The attributes of a PUT body's `{SINGULAR: {...}}` object.
pub(crate) struct Changes(Map<String, Value>);

impl Changes {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Sets `field` to the string attribute `key`, when the body has one.
    pub fn set_text(&self, key: &str, field: &mut String) {
        if let Some(text) = self.0.get(key).and_then(Value::as_str) {
            *field = text.to_string();
        }
    }

    /// Sets the name and description the body has, and stamps the update.
    pub fn rename(&self, name: &mut String, description: &mut String, updated: &mut DateTime<Utc>) {
        self.set_text("name", name);
        self.set_text("description", description);
        *updated = Utc::now();
    }

    /// Sets `field` to the boolean attribute `key`, when the body has one.
    pub fn set_bool(&self, key: &str, field: &mut bool) {
        if let Some(value) = self.0.get(key).and_then(Value::as_bool) {
            *field = value;
        }
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::neutron(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn conflict(kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::neutron(StatusCode::CONFLICT, kind, message)
}

/// The object under `key` in a request body, typed.
fn body_of<T: DeserializeOwned>(body: &Value, key: &str) -> Result<T, ApiError> {
    let inner = body.get(key).cloned().ok_or_else(|| {
        ApiError::bad_request(
            Service::Neutron,
            format!("Unable to find '{key}' in request body"),
        )
    })?;
    serde_json::from_value(inner)
        .map_err(|e| ApiError::bad_request(Service::Neutron, format!("Invalid input for operation: {e}.")))
}

impl Cloud {
    /// Creates an `R` as the API's POST does; returns its id.
    pub(crate) fn create<R: Resource>(&mut self, ctx: &Ctx, req: R::Create) -> Result<String, ApiError> {
        R::create(self, ctx, req)
    }

    /// Whether the caller can see the `R` with this id.
    pub(crate) fn visible<R: Resource>(&self, ctx: &Ctx, id: &str) -> bool {
        R::table(self).get(id).is_some_and(|r| r.visible(self, ctx))
    }

    /// `Ok` when the caller can see the `R`, else `R`'s 404.
    fn visible_or_404<R: Resource>(&self, ctx: &Ctx, id: &str) -> Result<(), ApiError> {
        if self.visible::<R>(ctx, id) {
            Ok(())
        } else {
            Err(R::not_found(id))
        }
    }

    /// The `R` with this id; `R`'s 404 when there is none.
    fn record<R: Resource>(&self, id: &str) -> Result<&R, ApiError> {
        R::table(self).get(id).ok_or_else(|| R::not_found(id))
    }

    /// The `R` with this id, for a change; `R`'s 404 when there is none.
    fn record_mut<R: Resource>(&mut self, id: &str) -> Result<&mut R, ApiError> {
        R::table_mut(self).get_mut(id).ok_or_else(|| R::not_found(id))
    }

    /// The caller's view of the `R` with this id: its rendering less what policy shows admins only.
    fn view<R: Resource>(&self, ctx: &Ctx, id: &str) -> Option<Value> {
        R::table(self)
            .get(id)
            .map(|r| hide_admin_only::<R>(ctx, r.render(self)))
    }

    /// Stores the record `make` builds from a new id and the creation time; returns the id.
    fn insert_new<R: Resource>(&mut self, make: impl FnOnce(String, DateTime<Utc>) -> R) -> String {
        let id = new_id();
        let record = make(id.clone(), Utc::now());
        R::table_mut(self).insert(id.clone(), record);
        id
    }
}

/// What the caller may see of a rendered `R`: admins everything, members not `R::ADMIN_ONLY`.
fn hide_admin_only<R: Resource>(ctx: &Ctx, mut item: Value) -> Value {
    if !ctx.admin {
        if let Some(map) = item.as_object_mut() {
            for key in R::ADMIN_ONLY.split_whitespace() {
                map.remove(key);
            }
        }
    }
    item
}
