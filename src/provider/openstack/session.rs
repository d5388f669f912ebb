//! A Keystone v3 session: authenticates, finds endpoints in the token's catalog, re-authenticates
//! before expiry or on a 401, and classifies every error response once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::config::{AuthMethod, Credentials, Identifier};
use super::wire::{ErrorBody, ErrorMember};
use crate::policy::RetryPolicy;
use crate::provider::decode::decode;
use crate::provider::http::{ApiClient, ApiPath, HttpResponse};
use crate::provider::{ErrorClass, ProviderError};

/// The OpenStack services the janitor talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Keystone, reached through the configured `auth_url`, never through the catalog.
    Identity,
    Compute,
    Network,
    BlockStorage,
    /// Octavia: optional, like Cinder.
    LoadBalancer,
}

impl Service {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Compute => "compute",
            Service::Network => "network",
            Service::BlockStorage => "block-storage",
            Service::LoadBalancer => "load-balancer",
        }
    }

    /// Catalog types that name this service (block storage has had several).
    fn catalog_types(self) -> &'static [&'static str] {
        match self {
            Service::Identity => &[],
            Service::Compute => &["compute"],
            Service::Network => &["network"],
            Service::BlockStorage => &["block-storage", "volumev3", "volume"],
            Service::LoadBalancer => &["load-balancer"],
        }
    }
}

/// The compute microversion requested: 2.26 added server tags; 2.53 is widely available.
const COMPUTE_MICROVERSION: &str = "2.53";

#[derive(Debug, Clone)]
struct Token {
    value: String,
    expires_at: DateTime<Utc>,
    project_id: String,
    compute: Option<Url>,
    network: Option<Url>,
    block_storage: Option<Url>,
    load_balancer: Option<Url>,
}

/// An authenticated connection to one cloud.
pub struct Session {
    client: ApiClient,
    credentials: Credentials,
    token: Mutex<Option<Arc<Token>>>,
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenInfo,
}

#[derive(Deserialize)]
struct TokenInfo {
    expires_at: DateTime<Utc>,
    #[serde(default)]
    project: Option<ProjectRef>,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
struct ProjectRef {
    id: String,
}

#[derive(Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct Endpoint {
    interface: String,
    url: String,
    #[serde(default)]
    region_id: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

impl Session {
    pub fn new(client: ApiClient, credentials: Credentials) -> Self {
        Session {
            client,
            credentials,
            token: Mutex::new(None),
        }
    }

    /// Answers so far that asked to slow down or never came (see [`ApiClient::throttled`]).
    pub fn throttled(&self) -> u64 {
        self.client.throttled()
    }

    /// The project every listing is scoped to.
    pub async fn project_id(&self) -> Result<String, ProviderError> {
        Ok(self.token(false).await?.project_id.clone())
    }

    /// The token, fetched anew when there is none, it expires within a minute, or `force`.
    async fn token(&self, force: bool) -> Result<Arc<Token>, ProviderError> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref() {
            if !force && token.expires_at - chrono::Duration::seconds(60) > Utc::now() {
                return Ok(token.clone());
            }
        }
        let token = Arc::new(self.authenticate().await?);
        *slot = Some(token.clone());
        Ok(token)
    }

    fn identifier_json(identifier: &Identifier) -> Value {
        match identifier {
            Identifier::Id(id) => json!({ "id": id }),
            Identifier::Name {
                name,
                domain: Some(domain),
            } => {
                json!({ "name": name, "domain": Self::identifier_json(domain) })
            }
            Identifier::Name { name, domain: None } => json!({ "name": name }),
        }
    }

    async fn authenticate(&self) -> Result<Token, ProviderError> {
        let auth_url = &self.credentials.auth_url;
        let url = Url::parse(&format!("{auth_url}/auth/tokens")).map_err(|error| {
            ProviderError::Config(format!(
                "auth_url `{auth_url}` (from {}) is not a URL: {error}",
                self.credentials.origin
            ))
        })?;
        let body = match &self.credentials.method {
            AuthMethod::Password {
                user,
                password,
                project,
            } => {
                let mut user = Self::identifier_json(user);
                user["password"] = json!(password);
                json!({"auth": {
                    "identity": {"methods": ["password"], "password": {"user": user}},
                    "scope": {"project": Self::identifier_json(project)}
                }})
            }
            AuthMethod::ApplicationCredential {
                credential,
                user,
                secret,
            } => {
                let mut credential = Self::identifier_json(credential);
                credential["secret"] = json!(secret);
                if let Some(user) = user {
                    credential["user"] = Self::identifier_json(user);
                }
                json!({"auth": {"identity": {
                    "methods": ["application_credential"], "application_credential": credential
                }}})
            }
        };
        // A token request can be repeated safely: it is retried like a read.
        let identity = Service::Identity.label();
        let response = self
            .client
            .read(identity, "token", || {
                let request = self.client.request(Method::POST, url.clone()).json(&body);
                let url = &url;
                async move {
                    let response = self.client.send(identity, request).await?;
                    match response.status.as_u16() {
                        // 5xx and 429 are worth another try; the rest is decided below.
                        status @ (429 | 500..=599) => Err(ProviderError::Api {
                            class: classify(
                                Service::Identity,
                                status,
                                &error_message(&response),
                                response.retry_after(),
                            ),
                            method: "POST".into(),
                            url: url.to_string(),
                            status,
                            message: error_message(&response),
                        }),
                        _ => Ok(response),
                    }
                }
            })
            .await?;
        if !response.status.is_success() {
            let message = error_message(&response);
            let origin = &self.credentials.origin;
            return match response.status.as_u16() {
                400..=499 => Err(ProviderError::Auth {
                    url: url.to_string(),
                    message: format!(
                        "HTTP {}: {message} (credentials from {origin})",
                        response.status.as_u16()
                    ),
                }),
                status => Err(ProviderError::Api {
                    class: classify(Service::Identity, status, &message, response.retry_after()),
                    method: "POST".into(),
                    url: url.to_string(),
                    status,
                    message,
                }),
            };
        }
        let value = response
            .headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Decode {
                url: url.to_string(),
                message: "identity: token: no X-Subject-Token header".into(),
            })?;
        let body: TokenBody = decode(&response.body, &url, "identity: token")?;
        let project_id = body
            .token
            .project
            .map(|p| p.id)
            .ok_or_else(|| ProviderError::Auth {
                url: url.to_string(),
                message: "the token is not scoped to a project; the janitor works in exactly one".into(),
            })?;
        let find = |service: Service| {
            let endpoint = self.endpoint(&body.token.catalog, service, &project_id);
            let endpoint = match (service, endpoint) {
                // Neutron's and Octavia's catalog entries usually lack the version their paths start with.
                (Service::Network, Some(url)) if !url.ends_with("/v2.0") => Some(format!("{url}/v2.0")),
                (Service::LoadBalancer, Some(url)) if !url.ends_with("/v2") && !url.ends_with("/v2.0") => {
                    Some(format!("{url}/v2"))
                }
                (_, endpoint) => endpoint,
            };
            endpoint
                .map(|endpoint| {
                    Url::parse(&endpoint).map_err(|error| ProviderError::Decode {
                        url: url.to_string(),
                        message: format!(
                            "identity: token: the catalog's {} endpoint `{endpoint}` is not a URL: {error}",
                            service.label()
                        ),
                    })
                })
                .transpose()
        };
        Ok(Token {
            value,
            expires_at: body.token.expires_at,
            compute: find(Service::Compute)?,
            network: find(Service::Network)?,
            block_storage: find(Service::BlockStorage)?,
            load_balancer: find(Service::LoadBalancer)?,
            project_id,
        })
    }

    fn endpoint(&self, catalog: &[CatalogEntry], service: Service, project_id: &str) -> Option<String> {
        let region = self.credentials.region.as_deref();
        service.catalog_types().iter().find_map(|wanted| {
            catalog
                .iter()
                .filter(|entry| entry.service_type == *wanted)
                .find_map(|entry| {
                    entry
                        .endpoints
                        .iter()
                        .filter(|e| e.interface == self.credentials.interface)
                        .find(|e| {
                            region.is_none_or(|r| e.region_id.as_deref().or(e.region.as_deref()) == Some(r))
                        })
                        .map(|e| {
                            e.url
                                .replace("%(project_id)s", project_id)
                                .replace("$(project_id)s", project_id)
                                .trim_end_matches('/')
                                .to_string()
                        })
                })
        })
    }

    /// Whether the catalog has this service (Cinder and Octavia are optional).
    pub async fn has(&self, service: Service) -> Result<bool, ProviderError> {
        let token = self.token(false).await?;
        Ok(Self::base(&token, service).is_some())
    }

    fn base(token: &Token, service: Service) -> Option<&Url> {
        match service {
            // Keystone is reached through the auth_url; the session does not call it otherwise.
            Service::Identity => None,
            Service::Compute => token.compute.as_ref(),
            Service::Network => token.network.as_ref(),
            Service::BlockStorage => token.block_storage.as_ref(),
            Service::LoadBalancer => token.load_balancer.as_ref(),
        }
    }

    /// The URL of `path` below `service`'s endpoint in the token's catalog.
    pub async fn url(&self, service: Service, path: &ApiPath) -> Result<Url, ProviderError> {
        let token = self.token(false).await?;
        let base = Self::base(&token, service).ok_or_else(|| {
            ProviderError::Config(format!(
                "the token's catalog has no {} endpoint for interface {} in region {}",
                service.label(),
                self.credentials.interface,
                self.credentials.region.as_deref().unwrap_or("(any)")
            ))
        })?;
        path.url(base)
    }

    /// Retries this session's reads (token requests included) by `policy`.
    pub fn with_read_retry(mut self, policy: RetryPolicy) -> Self {
        self.client = self.client.with_retry(policy);
        self
    }

    /// `GET url` of `service`, retried while it fails in a way that passes ([`ApiClient::read`]).
    pub async fn get(&self, service: Service, url: &Url) -> Result<HttpResponse, ProviderError> {
        let what = url.path().to_string();
        self.client
            .read(service.label(), &what, || {
                self.call(service, Method::GET, url, None)
            })
            .await
    }

    /// Sends a request to `url` (from [`Session::url`], or a pagination link) of `service`. A 401
    /// re-authenticates once. Non-2xx answers become classified errors.
    pub async fn call(
        &self,
        service: Service,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<HttpResponse, ProviderError> {
        let mut reauthenticated = false;
        loop {
            let token = self.token(false).await?;
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .header("X-Auth-Token", &token.value);
            if service == Service::Compute {
                request = request
                    .header("OpenStack-API-Version", format!("compute {COMPUTE_MICROVERSION}"))
                    .header("X-OpenStack-Nova-API-Version", COMPUTE_MICROVERSION);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = self.client.send(service.label(), request).await?;
            if response.status.as_u16() == 401 && !reauthenticated {
                reauthenticated = true;
                self.token(true).await?;
                continue;
            }
            if response.status.is_success() {
                return Ok(response);
            }
            let status = response.status.as_u16();
            let message = error_message(&response);
            let class = classify(service, status, &message, response.retry_after());
            return Err(ProviderError::Api {
                class,
                method: method.to_string(),
                url: url.to_string(),
                status,
                message,
            });
        }
    }
}

/// The one place an OpenStack error status becomes an [`ErrorClass`]. Pure.
pub fn classify(service: Service, status: u16, message: &str, retry_after: Option<Duration>) -> ErrorClass {
    match status {
        404 => ErrorClass::NotFound,
        409 => ErrorClass::Conflict,
        // Cinder answers 400 "Invalid volume: ... attached ... have snapshots" for a volume in use.
        400 if service == Service::BlockStorage && message.contains("Invalid volume") => ErrorClass::Conflict,
        429 | 503 => ErrorClass::RateLimited { retry_after },
        500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// The human message of an OpenStack error body, whichever service's shape it has:
/// `{"NeutronError": {"type", "message"}}`, `{"itemNotFound": {"message"}}`, `{"error": {"message"}}`,
/// Octavia's `{"faultstring"}`.
pub fn error_message(response: &HttpResponse) -> String {
    let body: ErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
    body.into_iter()
        .find_map(|(key, member)| match member {
            ErrorMember::Detail {
                message,
                kind: Some(kind),
            } => Some(format!("{kind}: {message}")),
            ErrorMember::Detail { message, kind: None } if key == "error" || key == "NeutronError" => {
                Some(message)
            }
            ErrorMember::Detail { message, kind: None } => Some(format!("{key}: {message}")),
            // Octavia's (WSME's) `{"faultcode", "faultstring", "debuginfo"}`.
            ErrorMember::Text(message) if key == "message" || key == "faultstring" => Some(message),
            ErrorMember::Text(_) | ErrorMember::Other(_) => None,
        })
        .unwrap_or_else(|| response.text().chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_once_with_cinders_in_use_400_as_a_conflict() {
        let c = |service, status, message| classify(service, status, message, None);
        assert_eq!(c(Service::Network, 404, ""), ErrorClass::NotFound);
        assert_eq!(
            c(Service::Network, 409, "SecurityGroupInUse"),
            ErrorClass::Conflict
        );
        assert_eq!(
            c(
                Service::BlockStorage,
                400,
                "badRequest: Invalid volume: Volume status must be available"
            ),
            ErrorClass::Conflict
        );
        assert_eq!(c(Service::Compute, 400, "Invalid volume"), ErrorClass::Permanent);
        assert_eq!(c(Service::Network, 403, "forbidden"), ErrorClass::Permanent);
        assert_eq!(c(Service::Compute, 500, ""), ErrorClass::Transient);
        assert_eq!(
            classify(Service::Compute, 429, "", Some(Duration::from_secs(3))),
            ErrorClass::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            c(Service::Network, 503, ""),
            ErrorClass::RateLimited { retry_after: None }
        );
    }

    #[test]
    fn error_bodies_of_every_service_yield_their_message() {
        let response = |body: &str| HttpResponse {
            status: reqwest::StatusCode::CONFLICT,
            headers: Default::default(),
            body: bytes::Bytes::from(body.to_string()),
        };
        assert_eq!(
            error_message(&response(
                r#"{"NeutronError": {"type": "SecurityGroupInUse", "message": "in use", "detail": ""}}"#
            )),
            "SecurityGroupInUse: in use"
        );
        assert_eq!(
            error_message(&response(
                r#"{"conflictingRequest": {"code": 409, "message": "Instance x is locked"}}"#
            )),
            "conflictingRequest: Instance x is locked"
        );
        assert_eq!(
            error_message(&response("<html>gateway</html>")),
            "<html>gateway</html>"
        );
        assert_eq!(
            error_message(&response(
                r#"{"faultcode": "Client", "faultstring": "Invalid state PENDING_UPDATE of loadbalancer resource lb-1", "debuginfo": null}"#
            )),
            "Invalid state PENDING_UPDATE of loadbalancer resource lb-1"
        );
    }
}
