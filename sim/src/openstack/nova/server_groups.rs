//! Server groups: a policy (`anti-affinity`, ...) and the servers booted into them, shown as
//! microversion 2.64 changed them; Nova deletes one even while it has members.

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{bad_request, not_found, Element, Microversion, NovaCall};
use crate::openstack::errors::{parse_json, ApiError, Service};
use crate::openstack::listing::{self, Params};
use crate::openstack::state::{new_id, Cloud, Ctx, ServerGroup};

impl Cloud {
    pub(crate) fn create_server_group(
        &mut self,
        ctx: &Ctx,
        name: &str,
        policy: &str,
    ) -> Result<String, ApiError> {
        if !matches!(
            policy,
            "affinity" | "anti-affinity" | "soft-affinity" | "soft-anti-affinity"
        ) {
            return Err(bad_request(format!(
                "Invalid input for field/attribute policy. Value: {policy}."
            )));
        }
        let id = new_id();
        self.server_groups.insert(
            id.clone(),
            ServerGroup {
                id: id.clone(),
                name: name.to_string(),
                project_id: ctx.project_id.clone(),
                user_id: ctx.user_id.clone(),
                policy: policy.to_string(),
                members: Vec::new(),
            },
        );
        Ok(id)
    }

    fn render_server_group(&self, group: &ServerGroup, version: Microversion) -> Value {
        let mut body = json!({
            "id": group.id, "name": group.name, "members": group.members,
            "project_id": group.project_id, "user_id": group.user_id,
        });
        if version.at_least(64) {
            body["policy"] = json!(group.policy);
            body["rules"] = json!({});
        } else {
            body["policies"] = json!([group.policy]);
            body["metadata"] = json!({});
        }
        body
    }

    /// The caller's group with this id, or Nova's 404.
    fn visible_group(&self, ctx: &Ctx, group_id: &str) -> Result<&ServerGroup, ApiError> {
        self.server_groups
            .get(group_id)
            .filter(|g| ctx.owns(&g.project_id))
            .ok_or_else(|| not_found(format!("Instance group {group_id} could not be found.")))
    }
}

impl Element for ServerGroup {
    const KEY: &'static str = "server_group";

    fn show(cloud: &Cloud, call: &NovaCall, id: &str) -> Result<Value, ApiError> {
        let group = cloud.visible_group(&call.ctx, id)?;
        Ok(cloud.render_server_group(group, call.version))
    }

    /// Even while the group has members.
    fn delete(cloud: &mut Cloud, call: &NovaCall, id: &str) -> Result<StatusCode, ApiError> {
        cloud.visible_group(&call.ctx, id)?;
        cloud.server_groups.remove(id);
        Ok(StatusCode::NO_CONTENT)
    }
}

/// `GET /os-server-groups`: the caller's project's, or every project's for an admin asking
/// `all_projects`.
pub(super) async fn list(call: NovaCall, Query(params): Query<Params>) -> Json<Value> {
    let cloud = call.cloud();
    let ctx = &call.ctx;
    let all = ctx.admin && listing::param(&params, "all_projects").is_some_and(|v| v != "0" && v != "false");
    let groups: Vec<Value> = cloud
        .server_groups
        .values()
        .filter(|g| all || g.project_id == ctx.project_id)
        .map(|g| cloud.render_server_group(g, call.version))
        .collect();
    Json(json!({"server_groups": groups}))
}

/// `POST /os-server-groups`: `policy`, or the first of the older `policies`.
pub(super) async fn create(call: NovaCall, body: Bytes) -> Result<Json<Value>, ApiError> {
    let body = parse_json(Service::Nova, &body)?;
    let group = body
        .get("server_group")
        .ok_or_else(|| bad_request("Invalid input for field/attribute server_group."))?;
    let name = group.get("name").and_then(Value::as_str).unwrap_or_default();
    let policy = group
        .get("policy")
        .and_then(Value::as_str)
        .or_else(|| group.pointer("/policies/0").and_then(Value::as_str))
        .unwrap_or_default();
    let mut cloud = call.cloud();
    let id = cloud.create_server_group(&call.ctx, name, policy)?;
    let rendered = cloud
        .server_groups
        .get(&id)
        .map(|g| cloud.render_server_group(g, call.version));
    Ok(Json(json!({"server_group": rendered})))
}
