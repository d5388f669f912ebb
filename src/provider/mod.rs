//! The `Provider` trait every cloud implements, and the one error type providers return, classified
//! once so the executor never looks at status codes or vendor text.

use std::time::Duration;

use async_trait::async_trait;

use crate::model::{DeleteOutcome, Observed, Resource};

pub mod decode;
pub mod http;
pub mod openstack;
pub mod proxmox;

/// Names a set of status reads one request can answer (`network:ports`, `proxmox:guests`).
pub type BatchKey = std::borrow::Cow<'static, str>;

/// How the executor should treat a failed call. Decided once, by the provider that saw the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 404 or "does not exist": the resource is gone, which is what a delete wants.
    NotFound,
    /// 409, Cinder's 400 "in use", a Proxmox lock timeout: something still holds the resource.
    /// Requeue behind its blockers.
    Conflict,
    /// 429 or 503: slow down, honouring `Retry-After` when the server sent one.
    RateLimited { retry_after: Option<Duration> },
    /// Other 5xx, network errors, timeouts: try again with backoff.
    Transient,
    /// Other 4xx (403 among them), undecodable answers, failed tasks: retrying will not help.
    Permanent,
}

impl ErrorClass {
    /// A bounded label for metrics.
    pub fn metric_label(self) -> &'static str {
        match self {
            ErrorClass::NotFound => "not_found",
            ErrorClass::Conflict => "conflict",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// Everything that can go wrong inside a provider.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The API answered with an error status.
    #[error("{method} {url}: HTTP {status}: {message}")]
    Api {
        class: ErrorClass,
        method: String,
        url: String,
        status: u16,
        message: String,
    },
    /// No answer: connection refused, reset, timed out.
    #[error("{method} {url}: {source}")]
    Network {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The credentials were refused or could not be used.
    #[error("authentication against {url} failed: {message}")]
    Auth { url: String, message: String },
    /// The answer could not be understood: nothing is deleted on a guess.
    #[error("{url}: unexpected response: {message}")]
    Decode { url: String, message: String },
    /// An asynchronous operation (a Proxmox task) finished and reported failure.
    #[error("{operation} failed: {message}")]
    OperationFailed {
        class: ErrorClass,
        operation: String,
        message: String,
    },
    /// A poll loop reached its deadline without the operation finishing.
    #[error("{operation} not finished after {waited:?}: last seen {last_state}")]
    Deadline {
        operation: String,
        waited: Duration,
        last_state: String,
    },
    /// A read failed every time it was tried.
    #[error("{source} (tried {attempts} times)")]
    Exhausted {
        attempts: u32,
        #[source]
        source: Box<ProviderError>,
    },
    /// Listing one kind failed: discovery of the cloud is incomplete.
    #[error("listing {what}: {source}")]
    Listing {
        what: String,
        #[source]
        source: Box<ProviderError>,
    },
    /// The provider's configuration cannot be used (a missing clouds.yaml entry, an unreadable secret).
    #[error("{0}")]
    Config(String),
    /// A resource without the details this provider records at discovery: another provider's, a
    /// stand-in, or details of another kind. Nothing is done to it on a guess.
    #[error("{resource} in cloud {cloud}: expected {expected} details, found {found}")]
    UnexpectedDetails {
        cloud: String,
        resource: String,
        expected: &'static str,
        found: String,
    },
}

impl ProviderError {
    /// The error for `resource` lacking the `expected` details (`OpenStack router`).
    pub fn unexpected_details(resource: &Resource, expected: &'static str) -> Self {
        ProviderError::UnexpectedDetails {
            cloud: resource.key.cloud.clone(),
            resource: resource.key.to_string(),
            expected,
            found: resource.details.describe(),
        }
    }

    /// The same failure again, for each resource of a batch whose one request failed: the class,
    /// status and message are kept (a network error's source becomes its text).
    pub fn duplicate(&self) -> ProviderError {
        match self {
            ProviderError::Api {
                class,
                method,
                url,
                status,
                message,
            } => ProviderError::Api {
                class: *class,
                method: method.clone(),
                url: url.clone(),
                status: *status,
                message: message.clone(),
            },
            ProviderError::Exhausted { attempts, source } => ProviderError::Exhausted {
                attempts: *attempts,
                source: Box::new(source.duplicate()),
            },
            ProviderError::Auth { url, message } => ProviderError::Auth {
                url: url.clone(),
                message: message.clone(),
            },
            ProviderError::Decode { url, message } => ProviderError::Decode {
                url: url.clone(),
                message: message.clone(),
            },
            other => ProviderError::OperationFailed {
                class: other.class(),
                operation: "status read".to_string(),
                message: other.to_string(),
            },
        }
    }

    /// How the executor should treat this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::Api { class, .. } | ProviderError::OperationFailed { class, .. } => *class,
            ProviderError::Exhausted { source, .. } | ProviderError::Listing { source, .. } => source.class(),
            ProviderError::Network { .. } | ProviderError::Deadline { .. } => ErrorClass::Transient,
            ProviderError::Auth { .. }
            | ProviderError::Decode { .. }
            | ProviderError::Config(_)
            | ProviderError::UnexpectedDetails { .. } => ErrorClass::Permanent,
        }
    }

    /// A bounded label for metrics and the report's reason column.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ProviderError::Auth { .. } => "auth",
            ProviderError::Decode { .. } => "decode",
            ProviderError::Config(_) => "config",
            ProviderError::Deadline { .. } => "deadline",
            ProviderError::Exhausted { source, .. } | ProviderError::Listing { source, .. } => {
                source.metric_label()
            }
            other => other.class().metric_label(),
        }
    }

    /// True when the error means the pass cannot run against this cloud at all (bad credentials,
    /// unreachable API), as opposed to one resource failing.
    pub fn is_fatal_for_cloud(&self) -> bool {
        match self {
            ProviderError::Exhausted { source, .. } | ProviderError::Listing { source, .. } => {
                source.is_fatal_for_cloud()
            }
            other => matches!(other, ProviderError::Auth { .. } | ProviderError::Config(_)),
        }
    }
}

/// A cloud that cloud-janitor can clean: discovery, status checks and deletes, all in terms of the
/// provider-agnostic model. The planner and executor see nothing else of a cloud.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured name of this cloud, as used in metrics and reports.
    fn cloud(&self) -> &str;

    /// `openstack` or `proxmox`, for metrics and logs.
    fn provider_type(&self) -> &'static str;

    /// Lists every resource in scope, selected or not, with its references, so the planner sees the
    /// unselected users of selected resources too.
    async fn discover(&self) -> Result<Vec<Resource>, ProviderError>;

    /// Reads the resource's current state; called right before each delete and while polling an
    /// asynchronous one. A 404 is `Ok(Observed::Gone)`, not an error.
    async fn observe(&self, resource: &Resource) -> Result<Observed, ProviderError>;

    /// Which status reads one request can answer together: resources with equal keys may be read
    /// by one [`Provider::observe_many`] call. `None`, the default, reads the resource alone.
    fn batch_key(&self, _resource: &Resource) -> Option<BatchKey> {
        None
    }

    /// Reads the current state of every resource in `batch` (all of one [`Provider::batch_key`]) in
    /// as few requests as the API allows, each sent after this call began: one answer per resource,
    /// in order. A resource missing from a complete answer is gone; one the answer cannot speak for
    /// is read alone. The default reads each with [`Provider::observe`].
    async fn observe_many(&self, batch: &[&Resource]) -> Vec<Result<Observed, ProviderError>> {
        let mut answers = Vec::with_capacity(batch.len());
        for resource in batch {
            answers.push(self.observe(resource).await);
        }
        answers
    }

    /// How many answers so far asked the janitor to slow down (429, 503) or never came (timeouts,
    /// refused connections), reads retried inside the provider included; an adaptive concurrency
    /// limit halves when this grows during a call.
    fn throttled(&self) -> u64 {
        0
    }

    /// Deletes the resource (with whatever preparation it needs: clearing a router's gateway,
    /// stopping a guest). A 404 is `Ok(DeleteOutcome::Completed)`.
    async fn delete(&self, resource: &Resource) -> Result<DeleteOutcome, ProviderError>;
}
