//! Keystone v3: the fixed users, projects and application credential, token issue and validation,
//! the service catalog, and the token check every other service runs first.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};

use super::errors::{parse_json, ApiError, Service};
use super::state::{
    Cloud, Ctx, Token, ADMIN_PROJECT_ID, ADMIN_USER_ID, DEMO_PROJECT_ID, DEMO_USER_ID, DOMAIN_ID,
    OTHER_PROJECT_ID, OTHER_USER_ID,
};
use super::{version_routes, Inner};

pub(crate) const APP_CRED_ID: &str = "4c1f0a2e8b6d4f7a9c3e5b1d7f9a2c40";
pub(crate) const APP_CRED_NAME: &str = "cloud-janitor";
pub(crate) const APP_CRED_SECRET: &str = "janitor-appcred-secret";

/// A Keystone user with its one project and roles there.
pub(crate) struct User {
    pub id: &'static str,
    pub name: &'static str,
    password: &'static str,
    pub project_id: &'static str,
    pub project_name: &'static str,
    roles: &'static [&'static str],
}

pub(crate) const USERS: [User; 3] = [
    User {
        id: DEMO_USER_ID,
        name: "demo",
        password: "demopass",
        project_id: DEMO_PROJECT_ID,
        project_name: "demo",
        roles: &["member", "reader"],
    },
    User {
        id: ADMIN_USER_ID,
        name: "admin",
        password: "secret",
        project_id: ADMIN_PROJECT_ID,
        project_name: "admin",
        roles: &["admin", "member", "reader"],
    },
    User {
        id: OTHER_USER_ID,
        name: "other",
        password: "otherpass",
        project_id: OTHER_PROJECT_ID,
        project_name: "other",
        roles: &["member", "reader"],
    },
];

fn user_by_id(user_id: &str) -> Option<&'static User> {
    USERS.iter().find(|u| u.id == user_id)
}

pub(crate) fn routes(app: Arc<Inner>) -> Router {
    version_routes("/identity", versions, "/identity/v3", version)
        .route("/", get(versions))
        .route(
            "/identity/v3/auth/tokens",
            get(validate).head(validate).post(issue).delete(revoke),
        )
        .merge(super::projects::routes(app.clone()))
        .with_state(app)
}

fn version_body(url: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{url}/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

async fn versions(State(app): State<Arc<Inner>>) -> Response {
    let body = json!({"versions": {"values": [version_body(&app.url)]}});
    (StatusCode::MULTIPLE_CHOICES, Json(body)).into_response()
}

async fn version(State(app): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"version": version_body(&app.url)}))
}

/// The identity a credential proves, or `None` when it proves nothing.
fn authenticate(
    auth: &Value,
    tokens: &std::collections::HashMap<String, Token>,
) -> Option<(Ctx, Vec<String>, Option<String>)> {
    let identity = auth.get("identity")?;
    let methods: Vec<String> = identity
        .get("methods")?
        .as_array()?
        .iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    let method = methods.first()?.clone();
    let (user, app_cred) = match method.as_str() {
        "password" => {
            let given = identity.pointer("/password/user")?;
            let user = find_user(given)?;
            (given.get("password")?.as_str()? == user.password).then_some((user, None))?
        }
        "application_credential" => {
            let given = identity.get("application_credential")?;
            let by_id = given.get("id").and_then(Value::as_str) == Some(APP_CRED_ID);
            let by_name = given.get("name").and_then(Value::as_str) == Some(APP_CRED_NAME)
                && given.get("user").and_then(find_user).map(|u| u.id) == Some(DEMO_USER_ID);
            let secret_ok = given.get("secret").and_then(Value::as_str) == Some(APP_CRED_SECRET);
            let user = user_by_id(DEMO_USER_ID)?;
            ((by_id || by_name) && secret_ok).then_some((user, Some(APP_CRED_ID.to_string())))?
        }
        "token" => {
            let token = tokens.get(identity.pointer("/token/id")?.as_str()?)?;
            return Some((
                token.ctx.clone(),
                methods,
                token.application_credential_id.clone(),
            ));
        }
        _ => return None,
    };
    // Each user has one project; a scope naming another one is refused like a missing role.
    if app_cred.is_none() {
        if let Some(project) = auth.pointer("/scope/project") {
            let id_ok = project
                .get("id")
                .and_then(Value::as_str)
                .is_none_or(|id| id == user.project_id);
            let name_ok = project
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(|name| name == user.project_name);
            if !(id_ok && name_ok) {
                return None;
            }
        }
    }
    let ctx = Ctx {
        project_id: user.project_id.to_string(),
        user_id: user.id.to_string(),
        admin: user.roles.contains(&"admin"),
    };
    Some((ctx, methods, app_cred))
}

/// The user a `{"id"}` or `{"name", "domain"}` object names.
fn find_user(given: &Value) -> Option<&'static User> {
    if let Some(id) = given.get("id").and_then(Value::as_str) {
        return user_by_id(id);
    }
    let name = given.get("name")?.as_str()?;
    let domain = given.get("domain")?;
    let domain_ok = domain.get("id").and_then(Value::as_str) == Some(DOMAIN_ID)
        || domain
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case("default"));
    USERS.iter().find(|u| u.name == name).filter(|_| domain_ok)
}

async fn issue(State(app): State<Arc<Inner>>, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_json(Service::Keystone, &body)?;
    let auth = body
        .get("auth")
        .ok_or_else(|| ApiError::bad_request(Service::Keystone, "'auth' is a required property"))?;
    let mut cloud = app.cloud();
    let (ctx, methods, app_cred) = authenticate(auth, &cloud.tokens).ok_or_else(ApiError::unauthorized)?;
    let token_id = uuid::Uuid::new_v4().simple().to_string();
    let issued_at = Utc::now();
    let ttl = chrono::Duration::from_std(cloud.token_ttl).unwrap_or(chrono::Duration::hours(1));
    let token = Token {
        ctx,
        issued: cloud.clock.now(),
        issued_at,
        expires_at: issued_at + ttl,
        methods,
        application_credential_id: app_cred,
    };
    let body = token_body(&app.url, &token, cloud.load_balancing.is_some());
    cloud.tokens.insert(token_id.clone(), token);
    Ok(with_subject_token(StatusCode::CREATED, &token_id, body))
}

/// The `X-Subject-Token` of a request about a token, when its `X-Auth-Token` is valid; 401 when not.
fn subject_token(cloud: &Cloud, headers: &HeaderMap) -> Result<String, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    cloud
        .valid_token(&header("x-auth-token"))
        .ok_or_else(ApiError::unauthorized)?;
    Ok(header("x-subject-token"))
}

async fn validate(State(app): State<Arc<Inner>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let cloud = app.cloud();
    let subject = subject_token(&cloud, &headers)?;
    let token = cloud.valid_token(&subject).ok_or_else(|| {
        ApiError::keystone(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("Could not find token: {subject}."),
        )
    })?;
    Ok(with_subject_token(
        StatusCode::OK,
        &subject,
        token_body(&app.url, token, cloud.load_balancing.is_some()),
    ))
}

async fn revoke(State(app): State<Arc<Inner>>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let mut cloud = app.cloud();
    let subject = subject_token(&cloud, &headers)?;
    match cloud.tokens.remove(&subject) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::keystone(
            StatusCode::NOT_FOUND,
            "Not Found",
            "Could not find token.",
        )),
    }
}

fn with_subject_token(status: StatusCode, token_id: &str, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(token_id) {
        response.headers_mut().insert("x-subject-token", value);
    }
    response
}

/// The token as Keystone shows it; the catalog lists Octavia when `octavia`.
fn token_body(url: &str, token: &Token, octavia: bool) -> Value {
    let user = user_by_id(&token.ctx.user_id);
    let domain = json!({"id": DOMAIN_ID, "name": "Default"});
    let roles: Vec<Value> = user
        .map(|u| u.roles)
        .unwrap_or_default()
        .iter()
        .map(|role| json!({"id": format!("role-{role}"), "name": role}))
        .collect();
    let mut body = json!({"token": {
        "methods": token.methods,
        "user": {
            "id": token.ctx.user_id,
            "name": user.map(|u| u.name),
            "domain": domain,
            "password_expires_at": null,
        },
        "audit_ids": [uuid::Uuid::new_v4().simple().to_string()[..22].to_string()],
        "issued_at": token.issued_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "expires_at": token.expires_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "project": {
            "id": token.ctx.project_id,
            "name": user.map(|u| u.project_name),
            "domain": domain,
        },
        "is_domain": false,
        "roles": roles,
        "catalog": catalog(url, &token.ctx.project_id, octavia),
    }});
    if let Some(app_cred_id) = &token.application_credential_id {
        body["token"]["application_credential"] =
            json!({"id": app_cred_id, "name": APP_CRED_NAME, "restricted": true});
    }
    body
}

/// The service catalog: one listener serves every service under its own path prefix. Block storage
/// is listed under both `block-storage` and the older `volumev3` type, as DevStack does; Octavia
/// (`load-balancer`) when the cloud runs it.
fn catalog(url: &str, project_id: &str, octavia: bool) -> Value {
    let service = |id: &str, service_type: &str, name: &str, endpoint: String| {
        let endpoints: Vec<Value> = ["public", "internal", "admin"]
            .iter()
            .map(|interface| {
                json!({
                    "id": format!("{id}-{interface}"),
                    "interface": interface,
                    "region": "RegionOne",
                    "region_id": "RegionOne",
                    "url": endpoint,
                })
            })
            .collect();
        json!({"id": id, "type": service_type, "name": name, "endpoints": endpoints})
    };
    let mut services = json!([
        service(
            "identity0000000000000000000000001",
            "identity",
            "keystone",
            format!("{url}/identity")
        ),
        service(
            "compute00000000000000000000000002",
            "compute",
            "nova",
            format!("{url}/compute/v2.1")
        ),
        service(
            "network00000000000000000000000003",
            "network",
            "neutron",
            format!("{url}/network")
        ),
        service(
            "blockstorage000000000000000000004",
            "block-storage",
            "cinder",
            format!("{url}/volume/v3/{project_id}")
        ),
        service(
            "volumev3000000000000000000000005",
            "volumev3",
            "cinderv3",
            format!("{url}/volume/v3/{project_id}")
        ),
        service(
            "image0000000000000000000000000006",
            "image",
            "glance",
            format!("{url}/image")
        ),
    ]);
    if let (true, Some(list)) = (octavia, services.as_array_mut()) {
        list.push(service(
            "loadbalancer00000000000000000000007",
            "load-balancer",
            "octavia",
            format!("{url}/load-balancer"),
        ));
    }
    services
}

impl Cloud {
    /// The token's caller while the token is known and younger than `token_ttl`.
    pub(crate) fn valid_token(&self, token_id: &str) -> Option<&Token> {
        self.tokens
            .get(token_id)
            .filter(|t| self.clock.since(t.issued) < self.token_ttl)
    }
}

/// Middleware in front of every service's authenticated routes, as keystonemiddleware is: answers
/// 401 for a missing, unknown or expired `X-Auth-Token`, else hands the caller to the handler.
pub(crate) async fn require_token(
    State(app): State<Arc<Inner>>,
    mut request: Request,
    next: Next,
) -> Response {
    let token_id = request
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ctx = app.cloud().valid_token(token_id).map(|t| t.ctx.clone());
    match ctx {
        Some(ctx) => {
            request.extensions_mut().insert(ctx);
            next.run(request).await
        }
        None => ApiError::unauthorized().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn password_and_application_credentials_authenticate() {
        let tokens = HashMap::new();
        let password = json!({"identity": {"methods": ["password"], "password": {"user": {
            "name": "demo", "domain": {"id": "default"}, "password": "demopass"}}},
            "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}});
        assert_eq!(authenticate(&password, &tokens).map(|a| a.0), Some(Ctx::demo()));
        let wrong = json!({"identity": {"methods": ["password"], "password": {"user": {
            "name": "demo", "domain": {"name": "Default"}, "password": "nope"}}}});
        assert!(authenticate(&wrong, &tokens).is_none());
        let app_cred = json!({"identity": {"methods": ["application_credential"],
            "application_credential": {"id": APP_CRED_ID, "secret": APP_CRED_SECRET}}});
        let (ctx, _, cred) = authenticate(&app_cred, &tokens).unwrap();
        assert_eq!((ctx, cred.as_deref()), (Ctx::demo(), Some(APP_CRED_ID)));
        let admin = json!({"identity": {"methods": ["password"], "password": {"user": {
            "id": ADMIN_USER_ID, "password": "secret"}}}});
        assert!(authenticate(&admin, &tokens).unwrap().0.admin);
    }
}
