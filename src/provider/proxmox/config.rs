//! The `[[clouds]]` settings of a Proxmox VE cluster, and their validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How a running guest is brought down before it is destroyed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownPolicy {
    /// Hard stop (`status/stop` with `overrule-shutdown=1`): bounded even when the guest OS is wedged.
    #[default]
    Stop,
    /// ACPI shutdown bounded by `shutdown_timeout`, then a hard stop if the guest is still running.
    Graceful,
}

/// One Proxmox VE cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxSettings {
    /// API URL of any node of the cluster, `https://pve1.example.com:8006` (`/api2/json` is added
    /// when missing).
    pub url: String,
    /// API token id, `user@realm!tokenid`; use with `token_secret_file` or `token_secret_env`.
    #[serde(default)]
    pub token_id: Option<String>,
    /// File holding the API token's secret (a UUID).
    #[serde(default)]
    pub token_secret_file: Option<PathBuf>,
    /// Environment variable holding the API token's secret.
    #[serde(default)]
    pub token_secret_env: Option<String>,
    /// User for ticket authentication, `user@realm`; use with `password_file` or `password_env`.
    #[serde(default)]
    pub user: Option<String>,
    /// File holding the user's password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the user's password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// PEM file with the CA (or the self-signed certificate) the cluster's certificate chains to.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip TLS certificate checks entirely. An explicit opt-out for lab clusters; prefer `ca_file`.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// Only look at guests and disks on these nodes; every node when absent.
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
    /// Only look at guests in these pools; every guest when absent. Orphan disks belong to no pool,
    /// so they are not looked for when this is set.
    #[serde(default)]
    pub pools: Option<Vec<String>>,
    /// How running guests are brought down before destroy: `stop` (default) or `graceful`.
    #[serde(default)]
    pub shutdown: ShutdownPolicy,
    /// With `shutdown = "graceful"`: how long the guest OS gets before the hard stop ("60s").
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// The longest one task (stop, shutdown, destroy, volume delete) is waited for ("5m").
    #[serde(default = "default_task_timeout", with = "humantime_serde")]
    pub task_timeout: Duration,
    /// How often a running task's status is read at first ("1s"); the interval grows up to 8 times.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The longest one API request may take ("30s").
    #[serde(
        default = "crate::provider::http::default_request_timeout",
        with = "humantime_serde"
    )]
    pub request_timeout: Duration,
    /// How long the cluster's tickets live ("2h" on Proxmox VE); a ticket is renewed once three
    /// quarters of it have passed.
    #[serde(default = "default_ticket_lifetime", with = "humantime_serde")]
    pub ticket_lifetime: Duration,
    /// At most this many API requests per second to this cluster (unlimited when absent).
    #[serde(default)]
    pub max_requests_per_second: Option<f64>,
    /// The largest answer body read, in bytes; a larger one is refused with an error naming this
    /// key, and the listing it belongs to fails.
    #[serde(default = "crate::provider::http::default_max_response_bytes")]
    pub max_response_bytes: u64,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_task_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_ticket_lifetime() -> Duration {
    Duration::from_secs(7200)
}

/// A setting that cannot be used, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proxmox setting `{field}`: {message}")]
pub struct SettingsError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        field,
        message: message.into(),
    }
}

/// How the provider authenticates, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `PVEAPIToken=token_id=secret`.
    Token { token_id: String, secret: SecretSource },
    /// Ticket from `POST /access/ticket`.
    Ticket { user: String, password: SecretSource },
}

/// Where a secret is read from; the secret itself is never kept in the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl SecretSource {
    /// Reads the secret, trimming a trailing newline; the error names the field but not the value.
    pub fn read(&self, field: &'static str) -> Result<String, SettingsError> {
        let raw = match self {
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display())))?,
            SecretSource::Env(name) => std::env::var(name)
                .map_err(|_| invalid(field, format!("environment variable {name} is not set")))?,
        };
        let secret = raw.trim_end_matches(['\r', '\n']).to_string();
        if secret.is_empty() {
            return Err(invalid(field, "the secret is empty"));
        }
        Ok(secret)
    }
}

fn one_source(
    file: &Option<PathBuf>,
    env: &Option<String>,
    file_field: &'static str,
    env_field: &'static str,
) -> Result<SecretSource, SettingsError> {
    match (file, env) {
        (Some(path), None) => Ok(SecretSource::File(path.clone())),
        (None, Some(name)) if !name.trim().is_empty() => Ok(SecretSource::Env(name.clone())),
        (None, Some(_)) => Err(invalid(env_field, "must name an environment variable")),
        (Some(_), Some(_)) => Err(invalid(
            file_field,
            format!("set either {file_field} or {env_field}, not both"),
        )),
        (None, None) => Err(invalid(file_field, format!("set {file_field} or {env_field}"))),
    }
}

impl ProxmoxSettings {
    /// Checks the settings without touching the network or reading secrets.
    pub fn validate(&self) -> Result<Credentials, SettingsError> {
        crate::provider::http::validate_rate(self.max_requests_per_second)
            .map_err(|message| invalid("max_requests_per_second", message))?;
        crate::provider::http::validate_max_response_bytes(self.max_response_bytes)
            .map_err(|message| invalid("max_response_bytes", message))?;
        let url = self.url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(invalid(
                "url",
                format!("`{url}` must start with https:// (or http://)"),
            ));
        }
        if reqwest::Url::parse(url).is_err() {
            return Err(invalid("url", format!("`{url}` is not a valid URL")));
        }
        if self.ca_file.is_some() && self.insecure_skip_tls_verify {
            return Err(invalid(
                "insecure_skip_tls_verify",
                "set either ca_file or insecure_skip_tls_verify, not both",
            ));
        }
        for (field, value) in [
            ("task_timeout", self.task_timeout),
            ("poll_interval", self.poll_interval),
            ("request_timeout", self.request_timeout),
            ("ticket_lifetime", self.ticket_lifetime),
        ] {
            if value.is_zero() {
                return Err(invalid(field, "must be longer than zero"));
            }
        }
        if self.poll_interval >= self.task_timeout {
            return Err(invalid("poll_interval", "must be shorter than task_timeout"));
        }
        if self.shutdown == ShutdownPolicy::Graceful && self.shutdown_timeout.as_secs() == 0 {
            return Err(invalid(
                "shutdown_timeout",
                "must be at least 1s with shutdown = \"graceful\"",
            ));
        }
        if let Some(nodes) = &self.nodes {
            if nodes.is_empty() {
                return Err(invalid(
                    "nodes",
                    "an empty list would match nothing; remove it to look at every node",
                ));
            }
        }
        if let Some(pools) = &self.pools {
            if pools.is_empty() {
                return Err(invalid(
                    "pools",
                    "an empty list would match nothing; remove it to look at every pool",
                ));
            }
        }
        match (&self.token_id, &self.user) {
            (Some(token_id), None) => {
                let valid = token_id
                    .split_once('!')
                    .is_some_and(|(user, id)| user.contains('@') && !id.is_empty() && !id.contains('='));
                if !valid {
                    return Err(invalid(
                        "token_id",
                        format!("`{token_id}` is not of the form user@realm!tokenid"),
                    ));
                }
                if self.password_file.is_some() || self.password_env.is_some() {
                    return Err(invalid(
                        "password_file",
                        "password_file and password_env go with user, not token_id",
                    ));
                }
                let secret = one_source(
                    &self.token_secret_file,
                    &self.token_secret_env,
                    "token_secret_file",
                    "token_secret_env",
                )?;
                Ok(Credentials::Token {
                    token_id: token_id.clone(),
                    secret,
                })
            }
            (None, Some(user)) => {
                if !user.contains('@') {
                    return Err(invalid("user", format!("`{user}` is not of the form user@realm")));
                }
                if self.token_secret_file.is_some() || self.token_secret_env.is_some() {
                    return Err(invalid(
                        "token_secret_file",
                        "token_secret_file and token_secret_env go with token_id, not user",
                    ));
                }
                let password = one_source(
                    &self.password_file,
                    &self.password_env,
                    "password_file",
                    "password_env",
                )?;
                Ok(Credentials::Ticket {
                    user: user.clone(),
                    password,
                })
            }
            (Some(_), Some(_)) => Err(invalid("token_id", "set either token_id or user, not both")),
            (None, None) => Err(invalid(
                "token_id",
                "set token_id (API token) or user (ticket authentication)",
            )),
        }
    }

    /// The API base, ending in `/api2/json` without a trailing slash.
    pub fn api_base(&self) -> String {
        let trimmed = self.url.trim().trim_end_matches('/');
        if trimmed.ends_with("/api2/json") {
            trimmed.to_string()
        } else {
            format!("{trimmed}/api2/json")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ProxmoxSettings {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_token_config_validates_and_defaults_to_stop() {
        let settings = parse(
            r#"{"url": "https://pve:8006", "token_id": "ci@pve!janitor", "token_secret_env": "PVE_SECRET"}"#,
        );
        let credentials = settings.validate().unwrap();
        assert_eq!(
            credentials,
            Credentials::Token {
                token_id: "ci@pve!janitor".into(),
                secret: SecretSource::Env("PVE_SECRET".into())
            }
        );
        assert_eq!(settings.shutdown, ShutdownPolicy::Stop);
        assert_eq!(settings.api_base(), "https://pve:8006/api2/json");
        assert_eq!(settings.task_timeout, Duration::from_secs(300));
    }

    #[test]
    fn errors_name_the_field() {
        let both = parse(
            r#"{"url": "https://pve", "token_id": "a@pve!t", "user": "a@pve", "token_secret_env": "X"}"#,
        );
        assert_eq!(both.validate().unwrap_err().field, "token_id");
        let bad_token = parse(r#"{"url": "https://pve", "token_id": "janitor", "token_secret_env": "X"}"#);
        assert_eq!(bad_token.validate().unwrap_err().field, "token_id");
        let no_secret = parse(r#"{"url": "https://pve", "user": "root@pam"}"#);
        assert_eq!(no_secret.validate().unwrap_err().field, "password_file");
        let scheme = parse(r#"{"url": "pve:8006", "user": "root@pam", "password_env": "P"}"#);
        assert_eq!(scheme.validate().unwrap_err().field, "url");
        let tls = parse(
            r#"{"url": "https://pve", "user": "root@pam", "password_env": "P", "ca_file": "/ca.pem", "insecure_skip_tls_verify": true}"#,
        );
        assert_eq!(tls.validate().unwrap_err().field, "insecure_skip_tls_verify");
        let graceful = parse(
            r#"{"url": "https://pve", "user": "root@pam", "password_env": "P", "shutdown": "graceful", "shutdown_timeout": "0s"}"#,
        );
        assert_eq!(graceful.validate().unwrap_err().field, "shutdown_timeout");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let result: Result<ProxmoxSettings, _> =
            serde_json::from_str(r#"{"url": "https://pve", "user": "root@pam", "pasword_env": "P"}"#);
        let message = result.unwrap_err().to_string();
        assert!(
            message.starts_with("unknown field `pasword_env`, expected one of "),
            "{message}"
        );
    }
}
