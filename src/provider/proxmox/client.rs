//! The Proxmox VE API client: authentication (API token, or ticket with CSRF token renewed before it
//! expires), the `{"data": ...}` envelope, and error answers turned into [`ProviderError`]s through
//! [`classify`](super::classify::classify).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::classify::{classify, Source, Verdict};
use super::wire::{Envelope, ErrorBody, TicketData};
use crate::policy::RetryPolicy;
use crate::provider::decode::decode;
use crate::provider::http::{ApiClient, ApiPath};
use crate::provider::{ErrorClass, ProviderError};

/// Metrics label for every Proxmox request.
const SERVICE: &str = "proxmox";

/// The authentication in use; secrets are kept here only, never logged.
pub enum Login {
    Token {
        header: String,
    },
    Ticket {
        user: String,
        password: String,
        lifetime: Duration,
    },
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Login::Token { .. } => f.write_str("Login::Token"),
            Login::Ticket { user, .. } => write!(f, "Login::Ticket({user})"),
        }
    }
}

#[derive(Debug, Clone)]
struct Ticket {
    ticket: String,
    csrf: String,
    issued: Instant,
}

/// One cluster's API.
#[derive(Clone)]
pub struct PveClient {
    http: ApiClient,
    /// `https://host:8006/api2/json`.
    base: Url,
    login: Arc<Login>,
    ticket: Arc<Mutex<Option<Ticket>>>,
}

/// An API error answer, before it becomes a [`ProviderError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: u16,
    pub message: String,
    pub verdict: Verdict,
    pub retry_after: Option<Duration>,
}

/// The message of an error answer: the body's `message` and `errors`, else the status.
pub fn error_message(status: u16, body: &[u8]) -> String {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let mut parts = Vec::new();
    if let Some(error) = &parsed {
        if let Some(message) = &error.message {
            parts.push(message.trim().to_string());
        }
        if !error.errors.is_empty() {
            let listed: Vec<String> = error
                .errors
                .iter()
                .map(|(key, text)| format!("{key}: {}", text.trim()))
                .collect();
            parts.push(listed.join("; "));
        }
    }
    if parts.is_empty() {
        let text = String::from_utf8_lossy(body).trim().to_string();
        if text.is_empty() || parsed.is_some() {
            return match status {
                595 => "proxy error: node unreachable".to_string(),
                401 => "authentication failure".to_string(),
                _ => format!("HTTP {status}"),
            };
        }
        return text.chars().take(300).collect();
    }
    parts.join(": ")
}

impl PveClient {
    pub fn new(http: ApiClient, base: Url, login: Login) -> Self {
        PveClient {
            http,
            base,
            login: Arc::new(login),
            ticket: Arc::new(Mutex::new(None)),
        }
    }

    /// `GET path` (below `/api2/json`), decoding `data` as a `T`; `what` names it in errors
    /// (`guest config`).
    /// A read: retried while it fails in a way that passes ([`ApiClient::read`]).
    pub async fn get<T: DeserializeOwned>(&self, path: &ApiPath, what: &str) -> Result<T, ProviderError> {
        self.http
            .read(SERVICE, what, || self.call(Method::GET, path, &[], what))
            .await
    }

    /// A read tried once: for a caller that polls and so retries at its own cadence and deadline
    /// (task status).
    pub async fn get_once<T: DeserializeOwned>(
        &self,
        path: &ApiPath,
        what: &str,
    ) -> Result<T, ProviderError> {
        self.call(Method::GET, path, &[], what).await
    }

    /// Retries reads by `policy`.
    pub fn with_read_retry(mut self, policy: RetryPolicy) -> Self {
        self.http = self.http.with_retry(policy);
        self
    }

    /// Answers so far that asked to slow down or never came (see [`ApiClient::throttled`]).
    pub fn throttled(&self) -> u64 {
        self.http.throttled()
    }

    /// Sends a request with form parameters and decodes `data` as a `T`; one re-authentication on a
    /// 401 with ticket auth.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &ApiPath,
        form: &[(&str, String)],
        what: &str,
    ) -> Result<T, ProviderError> {
        let url = path.url(&self.base)?;
        let body = match self.attempt(&method, &url, form).await? {
            Ok(body) => body,
            Err(failure)
                if failure.verdict == Verdict::Unauthorized
                    && matches!(*self.login, Login::Ticket { .. }) =>
            {
                *self.ticket.lock().await = None;
                self.attempt(&method, &url, form)
                    .await?
                    .map_err(|failure| to_error(&method, &url, failure))?
            }
            Err(failure) => return Err(to_error(&method, &url, failure)),
        };
        let envelope: Envelope<T> = decode(&body, &url, &format!("proxmox: {what}"))?;
        Ok(envelope.data)
    }

    /// One request: the body of a success, or the failure.
    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        form: &[(&str, String)],
    ) -> Result<Result<Bytes, ApiFailure>, ProviderError> {
        let mut request = self.http.request(method.clone(), url.clone());
        match &*self.login {
            Login::Token { header } => request = request.header("Authorization", header),
            Login::Ticket { .. } => {
                let ticket = self.current_ticket().await?;
                request = request.header("Cookie", format!("PVEAuthCookie={}", ticket.ticket));
                if method != Method::GET {
                    request = request.header("CSRFPreventionToken", ticket.csrf);
                }
            }
        }
        if !form.is_empty() {
            request = request.form(form);
        }
        let response = self.http.send(SERVICE, request).await?;
        let status = response.status.as_u16();
        if response.status.is_success() {
            return Ok(Ok(response.body));
        }
        let message = error_message(status, &response.body);
        let verdict = classify(Source::Http(status), &message);
        Ok(Err(ApiFailure {
            status,
            message,
            verdict,
            retry_after: response.retry_after(),
        }))
    }

    /// The ticket to use: a new one when none is held, a renewed one once three quarters of its
    /// lifetime have passed.
    async fn current_ticket(&self) -> Result<Ticket, ProviderError> {
        let Login::Ticket {
            user,
            password,
            lifetime,
        } = &*self.login
        else {
            return Err(ProviderError::Config(
                "ticket requested with API token auth".to_string(),
            ));
        };
        let mut held = self.ticket.lock().await;
        if let Some(ticket) = held.as_ref() {
            if ticket.issued.elapsed() < lifetime.mul_f64(0.75) {
                return Ok(ticket.clone());
            }
            // Renewal: a valid ticket stands in for the password. Fall back to the password if the
            // cluster refuses it (it expired meanwhile).
            if ticket.issued.elapsed() < *lifetime {
                if let Ok(renewed) = self.login_with(user, &ticket.ticket.clone()).await {
                    *held = Some(renewed.clone());
                    return Ok(renewed);
                }
            }
        }
        let fresh = self.login_with(user, password).await?;
        *held = Some(fresh.clone());
        Ok(fresh)
    }

    async fn login_with(&self, user: &str, password: &str) -> Result<Ticket, ProviderError> {
        let url = ApiPath::new(["access", "ticket"]).url(&self.base)?;
        let form = [("username", user), ("password", password)];
        let request = self.http.request(Method::POST, url.clone()).form(&form);
        let response = self.http.send(SERVICE, request).await?;
        if !response.status.is_success() {
            let message = error_message(response.status.as_u16(), &response.body);
            return Err(ProviderError::Auth {
                url: url.to_string(),
                message: format!("HTTP {}: {message}", response.status.as_u16()),
            });
        }
        let answer: Envelope<Option<TicketData>> = decode(&response.body, &url, "proxmox: ticket")?;
        let data = answer.data.unwrap_or_default();
        match (data.ticket, data.csrf) {
            (Some(ticket), Some(csrf)) => Ok(Ticket {
                ticket,
                csrf,
                issued: Instant::now(),
            }),
            _ if data.need_tfa.is_some() => Err(ProviderError::Auth {
                url: url.to_string(),
                message: "the user needs a second factor; use an API token".to_string(),
            }),
            _ => Err(ProviderError::Auth {
                url: url.to_string(),
                message: "no ticket in the answer".to_string(),
            }),
        }
    }
}

fn to_error(method: &Method, url: &Url, failure: ApiFailure) -> ProviderError {
    if failure.verdict == Verdict::Unauthorized {
        return ProviderError::Auth {
            url: url.to_string(),
            message: format!("HTTP {}: {}", failure.status, failure.message),
        };
    }
    let class = match failure.verdict.error_class() {
        ErrorClass::RateLimited { .. } => ErrorClass::RateLimited {
            retry_after: failure.retry_after,
        },
        other => other,
    };
    ProviderError::Api {
        class,
        method: method.to_string(),
        url: url.to_string(),
        status: failure.status,
        message: failure.message,
    }
}

/// The verdict behind an error this client returned, for the provider's own decisions ("is running"
/// means stop again, "not running" means nothing to stop).
pub fn verdict_of(error: &ProviderError) -> Option<Verdict> {
    match error {
        ProviderError::Api { status, message, .. } => Some(classify(Source::Http(*status), message)),
        ProviderError::OperationFailed { message, .. } => Some(classify(Source::Task, message)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_from_the_body_or_the_status() {
        let body = br#"{"data":null,"message":"VM 101 is running - destroy failed\n"}"#;
        assert_eq!(error_message(500, body), "VM 101 is running - destroy failed");
        let body =
            br#"{"data":null,"errors":{"upid":"no such task"},"message":"Parameter verification failed.\n"}"#;
        assert_eq!(
            error_message(400, body),
            "Parameter verification failed.: upid: no such task"
        );
        assert_eq!(error_message(595, b""), "proxy error: node unreachable");
        assert_eq!(error_message(502, b"Bad Gateway"), "Bad Gateway");
    }
}
