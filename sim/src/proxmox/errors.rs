//! Errors as Proxmox VE sends them: a Perl `die` (500), "Parameter verification failed." (400, with
//! per-parameter `errors`), and the bare statuses of authentication and proxy failures.

use serde_json::{Map, Value};

/// An API error as Proxmox VE sends it: the status, the message (status line reason and body
/// `message`), and per-parameter `errors` for 400 "Parameter verification failed."
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Option<Map<String, Value>>,
    /// Proxy and authentication errors come with an empty body.
    pub empty_body: bool,
}

impl ApiError {
    /// A 500 with the text a Perl `die` leaves.
    pub fn die(message: impl Into<String>) -> Self {
        ApiError {
            status: 500,
            message: message.into(),
            errors: None,
            empty_body: false,
        }
    }

    /// A 400 "Parameter verification failed." naming the parameter.
    pub fn param(name: &str, message: impl Into<String>) -> Self {
        let mut errors = Map::new();
        errors.insert(name.to_string(), Value::String(message.into()));
        ApiError {
            status: 400,
            message: "Parameter verification failed.".to_string(),
            errors: Some(errors),
            empty_body: false,
        }
    }

    /// An error with an empty body (auth failures, proxy errors to an offline node).
    pub fn bare(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            errors: None,
            empty_body: true,
        }
    }
}
