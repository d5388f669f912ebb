//! Keypairs: they belong to a user, not a project; generated ones come with a private key, and from
//! microversion 2.92 a public key is required.

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};

use super::{bad_request, conflict, not_found, Element, NovaCall, API};
use crate::openstack::errors::{parse_json, ApiError, Service};
use crate::openstack::listing::{self, PageOf, Params};
use crate::openstack::state::{Cloud, Ctx, Keypair};

impl Cloud {
    pub(crate) fn create_keypair(
        &mut self,
        ctx: &Ctx,
        name: &str,
        public_key: Option<String>,
    ) -> Result<Keypair, ApiError> {
        let key = (ctx.user_id.clone(), name.to_string());
        if self.keypairs.contains_key(&key) {
            return Err(conflict(format!("Key pair '{name}' already exists.")));
        }
        if name.is_empty() || name.len() > 255 {
            return Err(bad_request(
                "Keypair data is invalid: Keypair name must be string and between 1 and 255 characters long",
            ));
        }
        let digest = uuid::Uuid::new_v4();
        let fingerprint: Vec<String> = digest.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let fingerprint = fingerprint.join(":");
        let keypair = Keypair {
            name: name.to_string(),
            user_id: ctx.user_id.clone(),
            public_key: public_key
                .unwrap_or_else(|| format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{}", digest.simple())),
            fingerprint,
            key_type: "ssh".into(),
            created: Utc::now(),
        };
        self.keypairs.insert(key, keypair.clone());
        Ok(keypair)
    }
}

fn render_keypair(keypair: &Keypair, detail: bool) -> Value {
    let mut body = json!({
        "name": keypair.name, "public_key": keypair.public_key,
        "fingerprint": keypair.fingerprint, "type": keypair.key_type,
    });
    if detail {
        body["user_id"] = json!(keypair.user_id);
        body["created_at"] = json!(keypair.created.format("%Y-%m-%dT%H:%M:%S%.6f").to_string());
        body["deleted"] = json!(false);
        body["deleted_at"] = Value::Null;
        body["updated_at"] = Value::Null;
        body["id"] = json!(1);
    }
    body
}

fn keypair_not_found(name: &str, user_id: &str) -> ApiError {
    not_found(format!("Keypair {name} not found for user {user_id}"))
}

impl Element for Keypair {
    const KEY: &'static str = "keypair";

    fn show(cloud: &Cloud, call: &NovaCall, name: &str) -> Result<Value, ApiError> {
        let user_id = &call.ctx.user_id;
        let keypair = cloud
            .keypairs
            .get(&(user_id.clone(), name.to_string()))
            .ok_or_else(|| keypair_not_found(name, user_id))?;
        Ok(render_keypair(keypair, true))
    }

    fn delete(cloud: &mut Cloud, call: &NovaCall, name: &str) -> Result<StatusCode, ApiError> {
        let user_id = &call.ctx.user_id;
        cloud
            .keypairs
            .remove(&(user_id.clone(), name.to_string()))
            .ok_or_else(|| keypair_not_found(name, user_id))?;
        Ok(if call.version.at_least(2) {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::ACCEPTED
        })
    }
}

/// `GET /os-keypairs`: the caller's keypairs by name, each as `{"keypair": ...}`.
pub(super) async fn list(call: NovaCall, Query(params): Query<Params>) -> Result<Json<Value>, ApiError> {
    let cloud = call.cloud();
    let items = cloud
        .keypairs
        .values()
        .filter(|k| k.user_id == call.ctx.user_id)
        .map(|k| (k.name.clone(), json!({"keypair": render_keypair(k, false)})))
        .collect();
    let page = PageOf {
        url: &call.app.url,
        path: &format!("{API}/os-keypairs"),
        key: "keypairs",
        service: Service::Nova,
        max_limit: None,
    };
    listing::page_body(page, items, &params, |marker| {
        bad_request(format!("marker [{marker}] not found"))
    })
    .map(Json)
}

/// `POST /os-keypairs`.
pub(super) async fn create(call: NovaCall, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_json(Service::Nova, &body)?;
    let name = body
        .pointer("/keypair/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let public_key = body
        .pointer("/keypair/public_key")
        .and_then(Value::as_str)
        .map(str::to_string);
    let generated = public_key.is_none();
    if generated && call.version.at_least(92) {
        let given = body.get("keypair").map_or_else(String::new, python_repr);
        return Err(bad_request(format!(
            "Invalid input for field/attribute keypair. Value: {given}. 'public_key' is a required property"
        )));
    }
    let keypair = call.cloud().create_keypair(&call.ctx, name, public_key)?;
    let mut rendered = render_keypair(&keypair, false);
    rendered["user_id"] = json!(keypair.user_id);
    if generated {
        rendered["private_key"] =
            json!("-----BEGIN OPENSSH PRIVATE KEY-----\nsimulated\n-----END OPENSSH PRIVATE KEY-----\n");
    }
    let status = if call.version.at_least(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"keypair": rendered}))).into_response())
}

/// A JSON value as Python prints it, as Nova's schema errors quote the request.
fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("'{k}': {}", python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
