//! OpenStack settings in cloud-janitor's config, and the credentials they resolve to, read the way
//! every OpenStack tool reads them: `clouds.yaml` (search path, `OS_CLOUD`) or `OS_*` variables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The keys of an `[[clouds]]` table with `type = "openstack"` (besides `name`, `type`, `select`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenStackSettings {
    /// The `clouds.yaml` entry to use; defaults to `OS_CLOUD`; when neither is set, the `OS_*`
    /// variables (`OS_AUTH_URL`, `OS_USERNAME`, ...) are used.
    #[serde(default)]
    pub cloud: Option<String>,
    /// The `clouds.yaml` file; defaults to `OS_CLIENT_CONFIG_FILE`, then `./clouds.yaml`,
    /// `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml`.
    #[serde(default)]
    pub clouds_yaml: Option<PathBuf>,
    /// The catalog interface to use (`public`, `internal`, `admin`); overrides `clouds.yaml`.
    #[serde(default)]
    pub interface: Option<String>,
    /// The catalog region; overrides `clouds.yaml`'s `region_name`.
    #[serde(default)]
    pub region: Option<String>,
    /// The longest one API request may take.
    #[serde(
        default = "crate::provider::http::default_request_timeout",
        with = "humantime_serde"
    )]
    pub request_timeout: Duration,
    /// Items per page when listing (`limit`); large pages mean fewer requests.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// At most this many API requests per second to this cloud (unlimited when absent).
    #[serde(default)]
    pub max_requests_per_second: Option<f64>,
    /// The largest answer body read, in bytes; a larger one is refused with an error naming this
    /// key, and the listing it belongs to fails.
    #[serde(default = "crate::provider::http::default_max_response_bytes")]
    pub max_response_bytes: u64,
}

fn default_page_size() -> u32 {
    1000
}

impl OpenStackSettings {
    /// Settings that take everything from `clouds.yaml` entry `cloud` in `clouds_yaml`.
    pub fn from_clouds_yaml(cloud: &str, clouds_yaml: PathBuf) -> Self {
        OpenStackSettings {
            cloud: Some(cloud.to_string()),
            clouds_yaml: Some(clouds_yaml),
            interface: None,
            region: None,
            request_timeout: crate::provider::http::default_request_timeout(),
            page_size: default_page_size(),
            max_requests_per_second: None,
            max_response_bytes: crate::provider::http::default_max_response_bytes(),
        }
    }

    /// Static checks; the credentials themselves are resolved when the provider starts.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(interface) = &self.interface {
            if !["public", "internal", "admin"].contains(&interface.as_str()) {
                return Err(format!(
                    "interface: `{interface}` is not one of public, internal, admin"
                ));
            }
        }
        if self.page_size == 0 {
            return Err("page_size: must be at least 1".to_string());
        }
        crate::provider::http::validate_rate(self.max_requests_per_second)?;
        crate::provider::http::validate_max_response_bytes(self.max_response_bytes)?;
        if self.request_timeout.is_zero() {
            return Err("request_timeout: must be longer than zero".to_string());
        }
        Ok(())
    }
}

/// How to authenticate against Keystone v3.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthMethod {
    Password {
        user: Identifier,
        password: String,
        project: Identifier,
    },
    ApplicationCredential {
        /// By id, or by name together with the owning user.
        credential: Identifier,
        user: Option<Identifier>,
        secret: String,
    },
}

/// A Keystone object named by id, or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    Id(String),
    Name {
        name: String,
        domain: Option<Box<Identifier>>,
    },
}

impl std::fmt::Debug for AuthMethod {
    // Secrets never reach logs, not even through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMethod::Password { user, project, .. } => {
                write!(
                    f,
                    "Password {{ user: {user:?}, project: {project:?}, password: <redacted> }}"
                )
            }
            AuthMethod::ApplicationCredential { credential, .. } => {
                write!(
                    f,
                    "ApplicationCredential {{ credential: {credential:?}, secret: <redacted> }}"
                )
            }
        }
    }
}

/// Everything needed to reach one OpenStack cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The Keystone v3 URL, ending in `/v3`.
    pub auth_url: String,
    pub method: AuthMethod,
    pub region: Option<String>,
    pub interface: String,
    /// `cacert` from clouds.yaml or `OS_CACERT`.
    pub ca_file: Option<PathBuf>,
    /// `verify: false` in clouds.yaml or `OS_INSECURE=true`.
    pub insecure: bool,
    /// Where the credentials came from, for error messages.
    pub origin: String,
}

#[derive(Debug, Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: HashMap<String, CloudEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct CloudEntry {
    #[serde(default)]
    auth: HashMap<String, serde_yaml::Value>,
    #[serde(default)]
    auth_type: Option<String>,
    #[serde(default)]
    region_name: Option<String>,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    verify: Option<bool>,
    #[serde(default)]
    cacert: Option<PathBuf>,
}

/// Resolves the settings to credentials, reading `clouds.yaml` or `env` (the process environment
/// in production; passed in for tests).
pub fn resolve(settings: &OpenStackSettings, env: &HashMap<String, String>) -> Result<Credentials, String> {
    let cloud = settings.cloud.clone().or_else(|| env.get("OS_CLOUD").cloned());
    let mut credentials = match cloud {
        Some(cloud) => from_clouds_yaml(&cloud, settings, env)?,
        None => from_env(env)?,
    };
    if let Some(interface) = &settings.interface {
        credentials.interface = interface.clone();
    }
    if settings.region.is_some() {
        credentials.region = settings.region.clone();
    }
    Ok(credentials)
}

fn search_path(settings: &OpenStackSettings, env: &HashMap<String, String>) -> Vec<PathBuf> {
    if let Some(path) = &settings.clouds_yaml {
        return vec![path.clone()];
    }
    if let Some(path) = env.get("OS_CLIENT_CONFIG_FILE") {
        return vec![PathBuf::from(path)];
    }
    let mut paths = vec![PathBuf::from("clouds.yaml")];
    if let Some(home) = env.get("HOME") {
        paths.push(Path::new(home).join(".config/openstack/clouds.yaml"));
    }
    paths.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    paths
}

fn from_clouds_yaml(
    cloud: &str,
    settings: &OpenStackSettings,
    env: &HashMap<String, String>,
) -> Result<Credentials, String> {
    let paths = search_path(settings, env);
    let Some(path) = paths.iter().find(|p| p.is_file()) else {
        let tried: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "cloud `{cloud}`: no clouds.yaml found (looked at {})",
            tried.join(", ")
        ));
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: CloudsFile =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: not a clouds.yaml: {e}", path.display()))?;
    let origin = format!("{} (cloud `{cloud}`)", path.display());
    let entry = file.clouds.get(cloud).ok_or_else(|| {
        let mut known: Vec<&String> = file.clouds.keys().collect();
        known.sort();
        format!("{}: no cloud named `{cloud}` (it has: {known:?})", path.display())
    })?;
    let text_of = |key: &str| -> Option<String> {
        match entry.auth.get(key)? {
            serde_yaml::Value::String(s) => Some(s.clone()),
            serde_yaml::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let fields = AuthFields {
        auth_type: entry.auth_type.clone(),
        auth_url: text_of("auth_url"),
        username: text_of("username"),
        user_id: text_of("user_id"),
        password: text_of("password"),
        project_name: text_of("project_name").or_else(|| text_of("tenant_name")),
        project_id: text_of("project_id").or_else(|| text_of("tenant_id")),
        user_domain_name: text_of("user_domain_name").or_else(|| text_of("domain_name")),
        user_domain_id: text_of("user_domain_id").or_else(|| text_of("domain_id")),
        project_domain_name: text_of("project_domain_name").or_else(|| text_of("domain_name")),
        project_domain_id: text_of("project_domain_id").or_else(|| text_of("domain_id")),
        credential_id: text_of("application_credential_id"),
        credential_name: text_of("application_credential_name"),
        credential_secret: text_of("application_credential_secret"),
    };
    Ok(Credentials {
        auth_url: normalise_auth_url(fields.auth_url()?),
        method: fields.method().map_err(|e| format!("{origin}: {e}"))?,
        region: entry.region_name.clone(),
        interface: entry.interface.clone().unwrap_or_else(|| "public".to_string()),
        ca_file: entry.cacert.clone(),
        insecure: entry.verify == Some(false),
        origin,
    })
}

fn from_env(env: &HashMap<String, String>) -> Result<Credentials, String> {
    let get = |key: &str| env.get(key).filter(|v| !v.is_empty()).cloned();
    let fields = AuthFields {
        auth_type: get("OS_AUTH_TYPE"),
        auth_url: get("OS_AUTH_URL"),
        username: get("OS_USERNAME"),
        user_id: get("OS_USER_ID"),
        password: get("OS_PASSWORD"),
        project_name: get("OS_PROJECT_NAME").or_else(|| get("OS_TENANT_NAME")),
        project_id: get("OS_PROJECT_ID").or_else(|| get("OS_TENANT_ID")),
        user_domain_name: get("OS_USER_DOMAIN_NAME"),
        user_domain_id: get("OS_USER_DOMAIN_ID"),
        project_domain_name: get("OS_PROJECT_DOMAIN_NAME"),
        project_domain_id: get("OS_PROJECT_DOMAIN_ID"),
        credential_id: get("OS_APPLICATION_CREDENTIAL_ID"),
        credential_name: get("OS_APPLICATION_CREDENTIAL_NAME"),
        credential_secret: get("OS_APPLICATION_CREDENTIAL_SECRET"),
    };
    let auth_url = fields.auth_url().map_err(|_| {
        "no `cloud` configured, OS_CLOUD unset and OS_AUTH_URL unset: nothing says how to reach OpenStack"
            .to_string()
    })?;
    Ok(Credentials {
        auth_url: normalise_auth_url(auth_url),
        method: fields.method().map_err(|e| format!("OS_* variables: {e}"))?,
        region: get("OS_REGION_NAME"),
        interface: get("OS_INTERFACE").unwrap_or_else(|| "public".to_string()),
        ca_file: get("OS_CACERT").map(PathBuf::from),
        insecure: get("OS_INSECURE").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
        origin: "OS_* environment variables".to_string(),
    })
}

struct AuthFields {
    auth_type: Option<String>,
    auth_url: Option<String>,
    username: Option<String>,
    user_id: Option<String>,
    password: Option<String>,
    project_name: Option<String>,
    project_id: Option<String>,
    user_domain_name: Option<String>,
    user_domain_id: Option<String>,
    project_domain_name: Option<String>,
    project_domain_id: Option<String>,
    credential_id: Option<String>,
    credential_name: Option<String>,
    credential_secret: Option<String>,
}

impl AuthFields {
    fn auth_url(&self) -> Result<&str, String> {
        self.auth_url
            .as_deref()
            .ok_or_else(|| "auth.auth_url is missing".to_string())
    }

    fn domain(name: &Option<String>, id: &Option<String>) -> Option<Identifier> {
        match (id, name) {
            (Some(id), _) => Some(Identifier::Id(id.clone())),
            (None, Some(name)) => Some(Identifier::Name {
                name: name.clone(),
                domain: None,
            }),
            (None, None) => None,
        }
    }

    fn user(&self) -> Option<Identifier> {
        match (&self.user_id, &self.username) {
            (Some(id), _) => Some(Identifier::Id(id.clone())),
            (None, Some(name)) => Some(Identifier::Name {
                name: name.clone(),
                domain: Some(Box::new(
                    Self::domain(&self.user_domain_name, &self.user_domain_id)
                        .unwrap_or_else(|| Identifier::Id("default".to_string())),
                )),
            }),
            (None, None) => None,
        }
    }

    fn method(&self) -> Result<AuthMethod, String> {
        let app_cred = self
            .auth_type
            .as_deref()
            .is_some_and(|t| t.contains("applicationcredential"))
            || self.credential_secret.is_some();
        if app_cred {
            let secret = self
                .credential_secret
                .clone()
                .ok_or("application_credential_secret is missing")?;
            let credential = match (&self.credential_id, &self.credential_name) {
                (Some(id), _) => Identifier::Id(id.clone()),
                (None, Some(name)) => Identifier::Name {
                    name: name.clone(),
                    domain: None,
                },
                (None, None) => {
                    return Err("application_credential_id (or _name) is missing".to_string());
                }
            };
            let user = match credential {
                Identifier::Name { .. } => Some(
                    self.user()
                        .ok_or("an application credential named by name needs username")?,
                ),
                Identifier::Id(_) => None,
            };
            return Ok(AuthMethod::ApplicationCredential {
                credential,
                user,
                secret,
            });
        }
        let user = self.user().ok_or("username (or user_id) is missing")?;
        let password = self.password.clone().ok_or("password is missing")?;
        let project = match (&self.project_id, &self.project_name) {
            (Some(id), _) => Identifier::Id(id.clone()),
            (None, Some(name)) => Identifier::Name {
                name: name.clone(),
                domain: Some(Box::new(
                    Self::domain(&self.project_domain_name, &self.project_domain_id)
                        .unwrap_or_else(|| Identifier::Id("default".to_string())),
                )),
            },
            (None, None) => {
                return Err(
                    "project_name (or project_id) is missing: the janitor works in one project".into(),
                )
            }
        };
        Ok(AuthMethod::Password {
            user,
            password,
            project,
        })
    }
}

fn normalise_auth_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/v3") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v3")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_for(cloud: Option<&str>, file: Option<PathBuf>) -> OpenStackSettings {
        let mut s = OpenStackSettings::from_clouds_yaml("x", PathBuf::new());
        s.cloud = cloud.map(str::to_string);
        s.clouds_yaml = file;
        s
    }

    #[test]
    fn clouds_yaml_password_and_application_credential_entries_resolve() {
        let dir = std::env::temp_dir().join(format!("cj-clouds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("clouds.yaml");
        std::fs::write(
            &file,
            "clouds:\n  ci:\n    auth: {auth_url: 'http://k:5000', username: demo, password: pw, project_name: demo, user_domain_id: default, project_domain_id: default}\n    region_name: RegionOne\n  app:\n    auth_type: v3applicationcredential\n    auth: {auth_url: 'http://k:5000/v3/', application_credential_id: abc, application_credential_secret: s3}\n    interface: internal\n",
        )
        .unwrap();
        let env = HashMap::new();
        let ci = resolve(&settings_for(Some("ci"), Some(file.clone())), &env).unwrap();
        assert_eq!(ci.auth_url, "http://k:5000/v3");
        assert_eq!(ci.region.as_deref(), Some("RegionOne"));
        assert!(matches!(ci.method, AuthMethod::Password { .. }));
        let app = resolve(&settings_for(Some("app"), Some(file.clone())), &env).unwrap();
        assert_eq!(app.interface, "internal");
        assert!(
            matches!(app.method, AuthMethod::ApplicationCredential { credential: Identifier::Id(ref id), .. } if id == "abc")
        );
        assert!(
            !format!("{:?}", app.method).contains("s3"),
            "secrets never in Debug output"
        );
        let missing = resolve(&settings_for(Some("nope"), Some(file)), &env).unwrap_err();
        assert!(
            missing.contains("no cloud named `nope`") && missing.contains("\"app\""),
            "{missing}"
        );
    }

    #[test]
    fn os_variables_are_used_without_a_cloud_and_their_absence_is_named() {
        let env: HashMap<String, String> = [
            ("OS_AUTH_URL", "http://k:5000/v3"),
            ("OS_USERNAME", "demo"),
            ("OS_PASSWORD", "pw"),
            ("OS_PROJECT_NAME", "demo"),
            ("OS_REGION_NAME", "R2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let credentials = resolve(&settings_for(None, None), &env).unwrap();
        assert_eq!(credentials.region.as_deref(), Some("R2"));
        let error = resolve(&settings_for(None, None), &HashMap::new()).unwrap_err();
        assert!(error.contains("OS_AUTH_URL"), "{error}");
        let mut no_project = env.clone();
        no_project.remove("OS_PROJECT_NAME");
        assert!(resolve(&settings_for(None, None), &no_project)
            .unwrap_err()
            .contains("project_name"));
    }
}
