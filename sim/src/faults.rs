//! Fault and latency injection shared by both simulators: rules matched by method and path, applied
//! by an axum middleware before the request reaches the simulated API. Besides error answers and
//! latency, a rule can break the connection itself ([`Breakage`]): hang up without an answer, cut
//! an answer short, or stream a body that never ends. A rule can also edit the real answer
//! ([`Rewrite`]): one resource's fields, wherever the answer carries it (its own read or a list).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

/// A fault below HTTP: what no status code can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breakage {
    /// The connection closes before a byte of the answer, as after a reset or a crashed worker. The
    /// API never sees the request.
    Hangup,
    /// The API acts on the request, then its answer stops halfway: status, headers and the whole
    /// body's `Content-Length` go out, then half the body, then the connection closes. An answer
    /// without a body (a 204 to a DELETE) is lost whole: done, but the client never hears of it.
    Truncate,
    /// The answer's body never ends: after it, whitespace streams without end (chunked, no
    /// `Content-Length`), as from a runaway server.
    Endless,
}

/// An edit of the real answer: every JSON object in it whose `"id"` is `id` gets the fields of
/// `set` (a `null` stays a `null`) and loses those named in `remove`. A rule with a rewrite counts
/// (`skip`, `count`) the answers that carry the resource, not the requests; it adds no status of its
/// own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    pub id: String,
    #[serde(default)]
    pub set: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub remove: Vec<String>,
}

impl Rewrite {
    /// Whether `value` carries the resource anywhere.
    fn carried(&self, value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(object) => {
                object.get("id").and_then(serde_json::Value::as_str) == Some(self.id.as_str())
                    || object.values().any(|nested| self.carried(nested))
            }
            serde_json::Value::Array(items) => items.iter().any(|item| self.carried(item)),
            _ => false,
        }
    }

    /// Edits every object in `value` that is the resource; whether there was one.
    fn apply(&self, value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(object) => {
                let mut hit = false;
                if object.get("id").and_then(serde_json::Value::as_str) == Some(self.id.as_str()) {
                    for (field, new) in &self.set {
                        object.insert(field.clone(), new.clone());
                    }
                    for field in &self.remove {
                        object.remove(field);
                    }
                    hit = true;
                }
                for nested in object.values_mut() {
                    hit |= self.apply(nested);
                }
                hit
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().fold(false, |hit, item| self.apply(item) | hit)
            }
            _ => false,
        }
    }
}

/// One injected behaviour. A request matches when its method equals `method` (any method when
/// `None`) and its path contains `path`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    #[serde(default)]
    pub method: Option<String>,
    pub path: String,
    /// Answer with this status instead of the real handler; `None` only adds `delay_ms`.
    #[serde(default)]
    pub status: Option<u16>,
    /// The response body; a JSON error body in the simulated API's shape when absent.
    #[serde(default)]
    pub body: Option<String>,
    /// Extra response headers (`Retry-After`, ...).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// How many requests the rule applies to; forever when `None`.
    #[serde(default)]
    pub count: Option<u32>,
    /// How many matching requests pass untouched before the rule applies: a fault on the second
    /// read of a resource (a poll after its delete) skips the first (the read before it).
    #[serde(default)]
    pub skip: u32,
    /// Latency added before the answer, injected or real.
    #[serde(default)]
    pub delay_ms: u64,
    /// Applies only while more than this many requests are in flight (this one included): an API
    /// that throttles under load.
    #[serde(default)]
    pub above_in_flight: Option<u32>,
    /// Breaks the connection: instead of the answer ([`Breakage::Hangup`]), or the answer (`status`'s
    /// when set, else the real one) on its way out.
    #[serde(default)]
    pub breakage: Option<Breakage>,
    /// Edits the real answer instead (see [`Rewrite`]).
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
}

impl FaultRule {
    /// A rule that answers `status` to `method path` for the next `count` requests.
    pub fn status(method: &str, path: &str, status: u16, count: u32) -> Self {
        FaultRule {
            method: Some(method.to_string()),
            path: path.to_string(),
            status: Some(status),
            count: Some(count),
            ..FaultRule::default()
        }
    }

    /// A rule that breaks the connection of the next `count` requests `method path` (see [`Breakage`]).
    pub fn broken(method: &str, path: &str, breakage: Breakage, count: u32) -> Self {
        FaultRule {
            method: Some(method.to_string()),
            path: path.to_string(),
            count: Some(count),
            breakage: Some(breakage),
            ..FaultRule::default()
        }
    }

    /// A rule that edits resource `id` in the next `count` answers to `method path` that carry it,
    /// setting the fields of `set` (a JSON object).
    pub fn rewrite(method: &str, path: &str, id: &str, set: serde_json::Value, count: u32) -> Self {
        let set = match set {
            serde_json::Value::Object(set) => set,
            _ => serde_json::Map::new(),
        };
        FaultRule {
            method: Some(method.to_string()),
            path: path.to_string(),
            count: Some(count),
            rewrite: Some(Rewrite {
                id: id.to_string(),
                set,
                remove: Vec::new(),
            }),
            ..FaultRule::default()
        }
    }

    /// A rule that delays every request whose path contains `path`.
    pub fn latency(path: &str, delay: Duration) -> Self {
        FaultRule {
            path: path.to_string(),
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            ..FaultRule::default()
        }
    }

    /// A rule that answers 429 to every request whose path contains `path` while more than
    /// `max_in_flight` requests are in flight.
    pub fn throttle(path: &str, max_in_flight: u32) -> Self {
        FaultRule {
            path: path.to_string(),
            status: Some(429),
            above_in_flight: Some(max_in_flight),
            ..FaultRule::default()
        }
    }

    fn matches(&self, method: &Method, path: &str, in_flight: usize) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && path.contains(&self.path)
            && self
                .above_in_flight
                .is_none_or(|max| in_flight > usize::try_from(max).unwrap_or(usize::MAX))
    }
}

/// An injected answer: status, body (the default error body when `None`) and extra headers.
pub type InjectedResponse = (u16, Option<String>, Vec<(String, String)>);

/// What the middleware does for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Injected {
    pub delay: Duration,
    pub response: Option<InjectedResponse>,
    pub breakage: Option<Breakage>,
}

/// The shared, mutable set of rules of one simulator.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rules: Arc<Mutex<Vec<FaultRule>>>,
    /// Requests inside the middleware now.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl Faults {
    pub fn add(&self, rule: FaultRule) {
        self.lock().push(rule);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The rules still in force: those not used up.
    pub fn rules(&self) -> Vec<FaultRule> {
        self.lock().clone()
    }

    /// Applies the rules to one request: delays add up over every matching rule, the first matching
    /// rule with a status or a breakage decides the answer, and each rule that applied uses up one of
    /// its `count`.
    pub fn take(&self, method: &Method, path: &str) -> Injected {
        self.take_with(method, path, 0)
    }

    /// [`Faults::take`] while `in_flight` requests are in flight.
    fn take_with(&self, method: &Method, path: &str, in_flight: usize) -> Injected {
        let mut rules = self.lock();
        let mut injected = Injected::default();
        let mut decided = false;
        let applies = |r: &FaultRule| r.rewrite.is_none() && r.matches(method, path, in_flight);
        for rule in rules.iter_mut().filter(|r| applies(r)) {
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            injected.delay += Duration::from_millis(rule.delay_ms);
            if rule.status.is_some() || rule.breakage.is_some() {
                if decided {
                    continue;
                }
                decided = true;
                injected.response = rule
                    .status
                    .map(|status| (status, rule.body.clone(), rule.headers.clone()));
                injected.breakage = rule.breakage;
            }
            if let Some(count) = rule.count.as_mut() {
                *count = count.saturating_sub(1);
            }
        }
        rules.retain(|r| r.count != Some(0));
        injected
    }

    /// Whether a rewrite rule matches `method path`: its answer is then read whole and edited.
    fn rewrites(&self, method: &Method, path: &str) -> bool {
        self.lock()
            .iter()
            .any(|r| r.rewrite.is_some() && r.matches(method, path, 0))
    }

    /// Applies the rewrite rules of `method path` to its answer `value`; each rule whose resource
    /// is in it uses up one of its `skip`, else one of its `count`. Whether anything changed.
    fn rewrite(&self, method: &Method, path: &str, value: &mut serde_json::Value) -> bool {
        let mut rules = self.lock();
        let mut changed = false;
        for rule in rules.iter_mut().filter(|r| r.matches(method, path, 0)) {
            let Some(rewrite) = rule.rewrite.as_ref() else {
                continue;
            };
            // An answer to skip is only looked at; one to edit is edited in place (a miss leaves
            // it as it was).
            if rule.skip > 0 {
                if rewrite.carried(value) {
                    rule.skip -= 1;
                }
                continue;
            }
            if !rewrite.apply(value) {
                continue;
            }
            changed = true;
            if let Some(count) = rule.count.as_mut() {
                *count = count.saturating_sub(1);
            }
        }
        rules.retain(|r| r.count != Some(0));
        changed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        // A panic while holding this lock leaves the rules intact, so a poisoned lock is still usable.
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The axum middleware: `Router::layer(axum::middleware::from_fn_with_state(faults, inject))`.
pub async fn inject(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    use std::sync::atomic::Ordering;
    let in_flight = faults.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _counted = InFlight(faults.in_flight.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let injected = faults.take_with(&method, &path, in_flight);
    if !injected.delay.is_zero() {
        tokio::time::sleep(injected.delay).await;
    }
    if injected.breakage == Some(Breakage::Hangup) {
        return hang_up();
    }
    let response = match injected.response {
        None if faults.rewrites(&method, &path) => {
            rewritten(&faults, &method, &path, next.run(request).await).await
        }
        None => next.run(request).await,
        Some((status, body, headers)) => injected_response(status, body, headers),
    };
    match injected.breakage {
        Some(Breakage::Truncate) => truncated(response).await,
        Some(Breakage::Endless) => endless(response),
        Some(Breakage::Hangup) | None => response,
    }
}

/// `response` after the rewrite rules of `method path`; untouched unless its body is JSON that
/// carries a rule's resource.
async fn rewritten(faults: &Faults, method: &Method, path: &str, response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if !faults.rewrite(method, path, &mut value) {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let edited = value.to_string();
    parts.headers.insert(
        axum::http::header::CONTENT_LENGTH,
        HeaderValue::from(edited.len()),
    );
    Response::from_parts(parts, Body::from(edited))
}

/// One request in flight, counted until it is answered or dropped.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The error a broken body ends with; hyper closes the connection on it.
fn broken_pipe() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected breakage")
}

/// An answer whose body fails before its first byte: hyper closes the connection without writing
/// the head (it goes out with the first body bytes), so the client sees no answer at all. The
/// request log still shows the placeholder status, 200.
fn hang_up() -> Response {
    let body = stream::once(async { Err::<Bytes, _>(broken_pipe()) });
    Response::new(Body::from_stream(body))
}

/// `response` with its head and its whole body's `Content-Length`, but only the first half of the
/// body before the connection closes; nothing at all when it has no body.
async fn truncated(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    if bytes.is_empty() {
        return hang_up();
    }
    let half = bytes.slice(..bytes.len() / 2);
    parts
        .headers
        .insert(axum::http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    // The pause between the half and the failure lets hyper flush the half: it writes what it has
    // whenever the body makes it wait, and drops its buffer when the body fails.
    let failure = stream::once(async {
        tokio::task::yield_now().await;
        Err(broken_pipe())
    });
    let chunks = stream::once(async { Ok(half) }).chain(failure);
    Response::from_parts(parts, Body::from_stream(chunks))
}

/// `response` with its body followed by whitespace without end, chunked.
fn endless(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let filler = Bytes::from(vec![b' '; 64 * 1024]);
    let rest = stream::repeat_with(move || Ok::<Bytes, std::io::Error>(filler.clone()));
    let body = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    Response::from_parts(parts, Body::from_stream(body.chain(rest)))
}

fn injected_response(status: u16, body: Option<String>, headers: Vec<(String, String)>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = body.unwrap_or_else(|| {
        serde_json::json!({"error": {"code": status.as_u16(), "message": "injected fault"}}).to_string()
    });
    let mut response = (status, Body::from(body)).into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// `POST /_sim/faults` adds a [`FaultRule`] (JSON); `DELETE /_sim/faults` clears them. Lets tests
/// written in any language inject faults into a running simulator.
pub fn admin_router(faults: Faults) -> Router {
    Router::new()
        .route(
            "/_sim/faults",
            post(
                |State(faults): State<Faults>, Json(rule): Json<FaultRule>| async move {
                    faults.add(rule);
                    StatusCode::NO_CONTENT
                },
            )
            .delete(|State(faults): State<Faults>| async move {
                faults.clear();
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(faults)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_rule_applies_that_many_times_then_disappears() {
        let faults = Faults::default();
        faults.add(FaultRule::status("DELETE", "/v2.0/ports/", 409, 2));
        for _ in 0..2 {
            let injected = faults.take(&Method::DELETE, "/v2.0/ports/abc");
            assert_eq!(injected.response.map(|r| r.0), Some(409));
        }
        assert_eq!(
            faults.take(&Method::DELETE, "/v2.0/ports/abc"),
            Injected::default()
        );
    }

    #[test]
    fn a_throttle_applies_only_above_its_requests_in_flight() {
        let faults = Faults::default();
        faults.add(FaultRule::throttle("/", 2));
        assert_eq!(faults.take_with(&Method::GET, "/x", 2).response, None);
        let refused = faults.take_with(&Method::GET, "/x", 3).response;
        assert_eq!(refused.map(|r| r.0), Some(429));
        assert_eq!(
            faults.take_with(&Method::GET, "/x", 1).response,
            None,
            "the rule stays"
        );
    }

    #[test]
    fn a_rule_skips_its_first_matching_requests() {
        let faults = Faults::default();
        faults.add(FaultRule {
            skip: 2,
            ..FaultRule::status("GET", "/servers/s1", 200, 1)
        });
        let statuses: Vec<Option<u16>> = (0..4)
            .map(|_| {
                faults
                    .take(&Method::GET, "/compute/v2.1/servers/s1")
                    .response
                    .map(|r| r.0)
            })
            .collect();
        assert_eq!(statuses, [None, None, Some(200), None]);
    }

    #[test]
    fn a_rewrite_edits_the_resource_wherever_the_answer_carries_it_and_counts_those_answers() {
        let faults = Faults::default();
        faults.add(FaultRule {
            skip: 1,
            ..FaultRule::rewrite("GET", "/servers", "s1", serde_json::json!({"status": ""}), 1)
        });
        let list = serde_json::json!({"servers": [{"id": "s0", "status": "ACTIVE"}, {"id": "s1", "status": "ACTIVE"}]});
        let mut other = serde_json::json!({"server": {"id": "s0", "status": "ACTIVE"}});
        assert!(
            !faults.rewrite(&Method::GET, "/servers/s0", &mut other),
            "not the resource"
        );
        let mut first = list.clone();
        assert!(
            !faults.rewrite(&Method::GET, "/servers/detail", &mut first),
            "skipped"
        );
        assert_eq!(first, list);
        assert!(faults.take(&Method::GET, "/servers/detail").response.is_none());
        let mut second = list.clone();
        assert!(faults.rewrite(&Method::GET, "/servers/detail", &mut second));
        assert_eq!(second["servers"][1]["status"], "");
        assert_eq!(second["servers"][0]["status"], "ACTIVE");
        let mut third = list.clone();
        assert!(
            !faults.rewrite(&Method::GET, "/servers/detail", &mut third),
            "used up"
        );
    }

    #[test]
    fn other_methods_and_paths_do_not_match_and_delays_add_up() {
        let faults = Faults::default();
        faults.add(FaultRule::status("DELETE", "/ports/", 500, 1));
        faults.add(FaultRule::latency("/ports", Duration::from_millis(5)));
        faults.add(FaultRule::latency("/v2.0", Duration::from_millis(7)));
        let injected = faults.take(&Method::GET, "/v2.0/ports/abc");
        assert_eq!(injected.response, None);
        assert_eq!(injected.delay, Duration::from_millis(12));
        assert!(faults
            .take(&Method::DELETE, "/v2.0/networks/x")
            .response
            .is_none());
    }
}
