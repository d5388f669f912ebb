//! Fault and latency injection shared by both simulators: rules matched by method and path, applied
//! by an axum middleware before the request reaches the simulated API.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

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
    /// Latency added before the answer, injected or real.
    #[serde(default)]
    pub delay_ms: u64,
    /// Applies only while more than this many requests are in flight (this one included): an API
    /// that throttles under load.
    #[serde(default)]
    pub above_in_flight: Option<u32>,
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

    /// Applies the rules to one request: delays add up over every matching rule, the first matching
    /// rule with a status answers, and each rule that applied uses up one of its `count`.
    pub fn take(&self, method: &Method, path: &str) -> Injected {
        self.take_with(method, path, 0)
    }

    /// [`Faults::take`] while `in_flight` requests are in flight.
    fn take_with(&self, method: &Method, path: &str, in_flight: usize) -> Injected {
        let mut rules = self.lock();
        let mut injected = Injected::default();
        for rule in rules.iter_mut().filter(|r| r.matches(method, path, in_flight)) {
            injected.delay += Duration::from_millis(rule.delay_ms);
            if let Some(status) = rule.status {
                if injected.response.is_some() {
                    continue;
                }
                injected.response = Some((status, rule.body.clone(), rule.headers.clone()));
            }
            if let Some(count) = rule.count.as_mut() {
                *count = count.saturating_sub(1);
            }
        }
        rules.retain(|r| r.count != Some(0));
        injected
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
    let injected = faults.take_with(request.method(), request.uri().path(), in_flight);
    if !injected.delay.is_zero() {
        tokio::time::sleep(injected.delay).await;
    }
    let response = match injected.response {
        None => next.run(request).await,
        Some((status, body, headers)) => injected_response(status, body, headers),
    };
    response
}

/// One request in flight, counted until it is answered or dropped.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
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
