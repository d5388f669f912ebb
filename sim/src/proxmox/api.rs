//! The HTTP face of the simulated cluster: one handler that authenticates, reads parameters from the
//! query string and the body (form or JSON, as `pveproxy` accepts both), routes `/api2/json/...` to
//! [`Cluster`], and answers in Proxmox's envelope: `{"data": ...}` on success, the message in both the
//! status line's reason phrase and the body on failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::auth::{percent_decode, Caller};
use super::errors::ApiError;
use super::state::{Cluster, Effect, Ending, GuestRef, GuestType};
use super::Inner;

/// Records `(method, path?query, status)` of every request, injected faults included.
pub async fn log_requests(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = match request.uri().query() {
        Some(query) => format!("{}?{query}", request.uri().path()),
        None => request.uri().path().to_string(),
    };
    let response = next.run(request).await;
    inner.log_lock().push((method, path, response.status().as_u16()));
    response
}

/// The fallback handler serving every `/api2/json` path.
pub async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(rest) = uri.path().strip_prefix("/api2/json/") else {
        return error_response(&ApiError::bare(501, "no such uri"));
    };
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let params = match read_params(uri.query(), &headers, &body) {
        Ok(params) => params,
        Err(err) => return error_response(&err),
    };
    match route(&inner, &method, &segments, &params, &headers).await {
        Ok(data) => (StatusCode::OK, axum::Json(json!({ "data": data }))).into_response(),
        Err(err) => error_response(&err),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Query string and body parameters; JSON values become strings, booleans 0/1.
fn read_params(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut params: BTreeMap<String, String> = match query {
        Some(q) => serde_urlencoded::from_str(q).map_err(|e| ApiError::die(format!("bad query: {e}")))?,
        None => BTreeMap::new(),
    };
    if body.is_empty() {
        return Ok(params);
    }
    let is_json = header(headers, "content-type").is_some_and(|c| c.contains("json"));
    if is_json {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::die(format!("unable to parse JSON body: {e}")))?;
        if let Value::Object(map) = value {
            for (key, value) in map {
                let text = match value {
                    Value::String(s) => s,
                    Value::Bool(b) => u8::from(b).to_string(),
                    other => other.to_string(),
                };
                params.insert(key, text);
            }
        }
    } else {
        let form: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|e| ApiError::die(format!("bad form body: {e}")))?;
        params.extend(form);
    }
    Ok(params)
}

fn error_response(err: &ApiError) -> Response {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if err.empty_body {
        Body::empty()
    } else {
        let mut value = json!({"data": null, "message": format!("{}\n", err.message)});
        if let Some(errors) = &err.errors {
            value["errors"] = Value::Object(errors.clone());
        }
        Body::from(value.to_string())
    };
    let mut response = (status, body).into_response();
    if !err.empty_body {
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
    }
    let reason: String = err.message.chars().filter(|c| !c.is_control()).collect();
    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
        response.extensions_mut().insert(reason);
    }
    response
}

fn flag(params: &BTreeMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn parse_vmid(text: &str) -> Result<u32, ApiError> {
    text.parse()
        .map_err(|_| ApiError::param("vmid", format!("value '{text}' does not look like a valid VM ID")))
}

fn not_implemented(method: &Method, segments: &[String]) -> ApiError {
    ApiError::bare(
        501,
        format!("Method '{method} /{}' not implemented", segments.join("/")),
    )
}

async fn route(
    inner: &Arc<Inner>,
    method: &Method,
    segments: &[String],
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<Value, ApiError> {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    if method == Method::POST && segs == ["access", "ticket"] {
        let username = params.get("username").map(String::as_str).unwrap_or_default();
        let password = params.get("password").map(String::as_str).unwrap_or_default();
        return inner.auth_lock().issue_ticket(username, password);
    }
    let caller = inner.auth_lock().check(
        header(headers, "authorization"),
        header(headers, "cookie"),
        header(headers, "csrfpreventiontoken"),
        method != Method::GET,
    )?;

    // Writes that take a guest's config lock wait for it first, outside the state lock.
    if let ["nodes", _, kind, vmid, rest @ ..] = segs.as_slice() {
        let takes_lock = (method == Method::DELETE && rest.is_empty())
            || (method == Method::POST && matches!(rest, ["status", "stop"] | ["status", "shutdown"]));
        if GuestType::parse(kind).is_some() && takes_lock {
            let vmid = parse_vmid(vmid)?;
            wait_for_lock_file(inner, vmid).await?;
        }
    }

    let mut cluster = inner.cluster_lock();
    cluster.advance();
    dispatch(&mut cluster, &caller, method, &segs, params).map_err(|err| match err {
        e if e.status == 501 => not_implemented(method, segments),
        e => e,
    })
}

async fn wait_for_lock_file(inner: &Arc<Inner>, vmid: u32) -> Result<(), ApiError> {
    let deadline = inner.clock.now() + inner.config.lock_wait;
    loop {
        {
            let mut cluster = inner.cluster_lock();
            cluster.advance();
            if !cluster.holds_lock_file(vmid) {
                return Ok(());
            }
            if inner.clock.now() >= deadline {
                return Err(cluster.lock_timeout_error(vmid));
            }
        }
        tokio::time::sleep(Duration::from_millis(10).min(inner.config.lock_wait)).await;
    }
}

fn dispatch(
    cluster: &mut Cluster,
    caller: &Caller,
    method: &Method,
    segs: &[&str],
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    let delete = method == Method::DELETE;
    let user = caller.user.as_str();
    let upid = |text: String| Ok(Value::String(text));
    match segs {
        ["version"] if get => Ok(cluster.version()),
        ["cluster", "resources"] if get => cluster.cluster_resources(params.get("type").map(String::as_str)),
        ["nodes"] if get => Ok(cluster.list_nodes()),
        ["nodes", node] if get => {
            cluster.check_node(node)?;
            Ok(json!([{"name": "qemu"}, {"name": "lxc"}, {"name": "storage"}, {"name": "tasks"}]))
        }
        ["nodes", node, kind] if GuestType::parse(kind).is_some() => {
            let guest_type = GuestType::parse(kind).ok_or_else(|| ApiError::bare(501, ""))?;
            if get {
                cluster.list_guests(node, guest_type)
            } else if post {
                upid(cluster.create(node, guest_type, params, user)?)
            } else {
                Err(ApiError::bare(501, ""))
            }
        }
        ["nodes", node, kind, vmid, rest @ ..] if GuestType::parse(kind).is_some() => {
            let guest_type = GuestType::parse(kind).ok_or_else(|| ApiError::bare(501, ""))?;
            let at = GuestRef {
                node,
                guest_type,
                vmid: parse_vmid(vmid)?,
            };
            guest_call(cluster, at, method, rest, params, user)
        }
        ["nodes", node, "tasks", upid_text, "status"] if get => cluster.task_status(node, upid_text),
        ["nodes", node, "tasks", upid_text, "log"] if get => cluster.task_log(node, upid_text),
        ["nodes", node, "storage"] if get => cluster.list_storages(node),
        ["nodes", node, "storage", storage, "content"] if get => {
            let vmid = params.get("vmid").and_then(|v| v.parse().ok());
            cluster.storage_content(node, storage, params.get("content").map(String::as_str), vmid)
        }
        ["nodes", node, "storage", storage, "content", volume] if delete => {
            upid(cluster.free_volume(node, storage, volume, user)?)
        }
        ["pools"] if get => {
            let pools: Vec<Value> = cluster
                .pools
                .iter()
                .map(|(id, comment)| json!({"poolid": id, "comment": comment}))
                .collect();
            Ok(Value::Array(pools))
        }
        ["pools"] if post => {
            let id = params
                .get("poolid")
                .ok_or_else(|| ApiError::param("poolid", "property is missing and it is not optional"))?;
            if cluster.pools.contains_key(id) {
                return Err(ApiError::die(format!(
                    "create pool failed: pool '{id}' already exists"
                )));
            }
            cluster
                .pools
                .insert(id.clone(), params.get("comment").cloned().unwrap_or_default());
            Ok(Value::Null)
        }
        ["pools", id] if get => {
            let comment = cluster
                .pools
                .get(*id)
                .ok_or_else(|| ApiError::die(format!("pool '{id}' does not exist")))?;
            let members: Vec<Value> = cluster
                .guests
                .values()
                .filter(|g| g.pool.as_deref() == Some(*id))
                .map(|g| {
                    let kind = g.guest_type.as_str();
                    json!({"id": format!("{kind}/{}", g.vmid), "vmid": g.vmid, "node": g.node, "type": kind, "name": g.name()})
                })
                .collect();
            Ok(json!({"comment": comment, "members": members}))
        }
        _ => Err(ApiError::bare(501, "")),
    }
}

/// The calls on one guest, `/nodes/{node}/{type}/{vmid}/...` (`rest` is what follows the vmid).
fn guest_call(
    cluster: &mut Cluster,
    at: GuestRef<'_>,
    method: &Method,
    rest: &[&str],
    params: &BTreeMap<String, String>,
    user: &str,
) -> Result<Value, ApiError> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    let upid = |text: String| Ok(Value::String(text));
    match rest {
        [] if get => {
            cluster.reachable_guest(at)?;
            Ok(json!([{"subdir": "config"}, {"subdir": "status"}]))
        }
        [] if method == Method::DELETE => upid(cluster.destroy(
            at,
            user,
            flag(params, "purge"),
            flag(params, "destroy-unreferenced-disks"),
        )?),
        ["config"] if get => cluster.get_config(at),
        ["config"] if method == Method::PUT => {
            cluster.update_config(at, params)?;
            Ok(Value::Null)
        }
        ["config"] if post && at.guest_type == GuestType::Qemu => {
            cluster.update_config(at, params)?;
            let ending = Ending {
                after: Duration::ZERO,
                failure: None,
                effect: Effect::None,
            };
            upid(cluster.guest_task(at, "qmconfig", user, ending))
        }
        ["status", "current"] if get => cluster.status_current(at),
        ["template"] if post => cluster.template(at, user),
        ["status", "stop"] if post => upid(cluster.stop(at, user, flag(params, "overrule-shutdown"))?),
        ["status", "shutdown"] if post => {
            let seconds = params
                .get("timeout")
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(180);
            let timeout = Duration::from_secs(seconds).min(cluster.shutdown_timeout_cap);
            let force = flag(params, "forceStop") || flag(params, "force");
            upid(cluster.shutdown(at, user, timeout, force)?)
        }
        ["status", "start"] if post => {
            cluster.reachable_guest(at)?;
            let task_type = format!("{}start", at.guest_type.task_prefix());
            let ending = cluster.ending(None, Effect::Start(at.vmid));
            upid(cluster.guest_task(at, &task_type, user, ending))
        }
        _ => Err(ApiError::bare(501, "")),
    }
}
