//! Error answers of the simulated services, each rendered in its real service's JSON shape.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Which service answers, since each one shapes its error bodies differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Keystone and keystonemiddleware: `{"error": {"code", "title", "message"}}`.
    Keystone,
    /// Nova: `{"itemNotFound": {"code", "message"}}`, key chosen by status.
    Nova,
    /// Neutron: `{"NeutronError": {"type", "message", "detail"}}`.
    Neutron,
    /// Cinder: the same shape as Nova.
    Cinder,
    /// Octavia (WSME): `{"faultcode": "Client", "faultstring", "debuginfo": null}`.
    Octavia,
}

/// One error answer: what a handler returns when the real service would refuse the request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{service:?} answered {status} {kind}: {message}")]
pub struct ApiError {
    pub service: Service,
    pub status: StatusCode,
    /// Neutron's exception type (`SecurityGroupInUse`) or Keystone's title; unused by Nova and Cinder.
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn neutron(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            service: Service::Neutron,
            status,
            kind,
            message: message.into(),
        }
    }

    /// Neutron's 404 for a resource of a kind (`NetworkNotFound`) that is not there.
    pub fn neutron_not_found(kind: &'static str, message: impl Into<String>) -> Self {
        ApiError::neutron(StatusCode::NOT_FOUND, kind, message)
    }

    pub fn nova(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            service: Service::Nova,
            status,
            kind: "",
            message: message.into(),
        }
    }

    pub fn octavia(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            service: Service::Octavia,
            status,
            kind: "",
            message: message.into(),
        }
    }

    pub fn cinder(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            service: Service::Cinder,
            status,
            kind: "",
            message: message.into(),
        }
    }

    /// What keystonemiddleware answers in front of every service for a missing, unknown or expired
    /// token, and what Keystone answers for bad credentials.
    pub fn unauthorized() -> Self {
        ApiError {
            service: Service::Keystone,
            status: StatusCode::UNAUTHORIZED,
            kind: "Unauthorized",
            message: "The request you have made requires authentication.".to_string(),
        }
    }

    pub fn keystone(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            service: Service::Keystone,
            status,
            kind: title,
            message: message.into(),
        }
    }

    /// Neutron's answer when policy forbids an action on a resource the caller can see.
    pub fn neutron_policy(action: &str) -> Self {
        ApiError::neutron(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            format!("rule:{action} is disallowed by policy"),
        )
    }

    /// A 400 in the service's own shape, for malformed bodies.
    pub fn bad_request(service: Service, message: impl Into<String>) -> Self {
        let status = StatusCode::BAD_REQUEST;
        match service {
            Service::Neutron => ApiError::neutron(status, "HTTPBadRequest", message),
            Service::Keystone => ApiError::keystone(status, "Bad Request", message),
            Service::Nova | Service::Cinder | Service::Octavia => ApiError {
                service,
                status,
                kind: "",
                message: message.into(),
            },
        }
    }

    /// A 404 for a URL the service does not serve at all.
    pub fn unknown_path(service: Service) -> Self {
        let status = StatusCode::NOT_FOUND;
        let message = "The resource could not be found.";
        match service {
            Service::Neutron => ApiError::neutron(status, "HTTPNotFound", message),
            Service::Keystone => ApiError::keystone(status, "Not Found", message),
            Service::Nova | Service::Cinder | Service::Octavia => ApiError {
                service,
                status,
                kind: "",
                message: message.to_string(),
            },
        }
    }

    fn body(&self) -> serde_json::Value {
        let code = self.status.as_u16();
        match self.service {
            Service::Keystone => {
                json!({"error": {"code": code, "title": self.kind, "message": self.message}})
            }
            Service::Neutron => {
                json!({"NeutronError": {"type": self.kind, "message": self.message, "detail": ""}})
            }
            Service::Nova | Service::Cinder => {
                let key = fault_key(self.status);
                json!({ key: {"code": code, "message": self.message} })
            }
            Service::Octavia => {
                let fault = if self.status.is_server_error() {
                    "Server"
                } else {
                    "Client"
                };
                json!({"faultcode": fault, "faultstring": self.message, "debuginfo": null})
            }
        }
    }
}

/// A request body as JSON, or the service's 400 for a malformed one.
pub fn parse_json(service: Service, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = match service {
            Service::Keystone => "Invalid JSON body",
            Service::Neutron => "Malformed JSON",
            Service::Nova | Service::Cinder => "Malformed request body",
            Service::Octavia => "Invalid JSON body",
        };
        ApiError::bad_request(service, format!("{what}: {e}"))
    })
}

/// The top-level key Nova's and Cinder's fault wrappers choose for a status.
fn fault_key(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_renders_its_own_shape() {
        let neutron = ApiError::neutron(
            StatusCode::CONFLICT,
            "SecurityGroupInUse",
            "Security Group x in use.",
        );
        assert_eq!(
            neutron.body(),
            json!({"NeutronError": {"type": "SecurityGroupInUse", "message": "Security Group x in use.", "detail": ""}})
        );
        let nova = ApiError::nova(StatusCode::CONFLICT, "Instance x is locked");
        assert_eq!(
            nova.body(),
            json!({"conflictingRequest": {"code": 409, "message": "Instance x is locked"}})
        );
        let cinder = ApiError::cinder(StatusCode::NOT_FOUND, "Volume x could not be found.");
        assert_eq!(cinder.body()["itemNotFound"]["code"], 404);
        assert_eq!(ApiError::unauthorized().body()["error"]["title"], "Unauthorized");
    }
}
