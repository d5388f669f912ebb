//! Configuration: the TOML file (every key overridable by `CLOUD_JANITOR_*` environment variables)
//! read into raw serde structs, then validated into a typed [`Config`] before any socket opens.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::pass::Mode;
use crate::policy::RetryPolicy;
use crate::provider::openstack::OpenStackSettings;
use crate::provider::proxmox::config::ProxmoxSettings;
use crate::selection::{SelectionConfig, Selector};

/// Environment variables that configure the binary itself, not the file's keys.
const RESERVED_ENV: [&str; 2] = ["CLOUD_JANITOR_CONFIG", "CLOUD_JANITOR_LOG"];

/// Whether an environment variable is meant for the config file's keys. Kubernetes injects
/// `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT*` for a Service named `cloud-janitor`: those are not
/// config keys and must not fail the unknown-key check.
fn is_config_key(key: &str) -> bool {
    !RESERVED_ENV.contains(&key)
        && !key.starts_with("CLOUD_JANITOR_SERVICE_")
        && !key.starts_with("CLOUD_JANITOR_PORT")
}

/// Why the configuration cannot be used. Every message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {file}: {message}")]
    Invalid { file: String, message: String },
}

fn invalid(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.display().to_string(),
        message: message.into(),
    }
}

/// The file as written. Every field is documented where an operator reads it: `config/*.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// When passes run: a cron expression, in the 5-field crontab form
    /// `min hour day-of-month month day-of-week` (`*/15 * * * *`, at second 0) or with a seconds
    /// field first, `sec min hour day-of-month month day-of-week [year]` (`0 */15 * * * *`).
    schedule: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[serde(default = "default_listen")]
    listen: String,
    /// `text` (the default) or `json` (one object per line, for log collectors). The command line's
    /// `--log-format` wins over it.
    #[serde(default)]
    log_format: LogFormat,
    /// `delete` (the default) deletes what the selection picks; `report-only` discovers, plans,
    /// reports and exports what it would delete, and deletes nothing.
    #[serde(default)]
    mode: Mode,
    /// The longest one pass may take; no new delete starts after it.
    #[serde(default = "default_pass_timeout", with = "humantime_serde")]
    pass_timeout: Duration,
    /// Where per-resource history (first seen, sightings, attempts, errors) persists across
    /// restarts: one SQLite file, locked while a janitor runs.
    #[serde(default)]
    history_file: Option<PathBuf>,
    /// The JSON state file of earlier versions: imported into the history once, then left alone.
    /// Without `history_file`, the history is kept beside it, in `history.db`.
    #[serde(default)]
    state_file: Option<PathBuf>,
    /// How long the history remembers a resource that is gone.
    #[serde(default = "default_history_retention", with = "humantime_serde")]
    history_retention: Duration,
    /// At most this many delete calls per pass, across every cloud.
    #[serde(default = "default_max_deletes")]
    max_deletes_per_pass: usize,
    #[serde(default)]
    concurrency: ConcurrencyConfig,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    waits: WaitConfig,
    /// The clouds to clean; each a table with `name`, `type` and `select`, plus the provider's keys.
    clouds: Vec<serde_json::Value>,
}

fn default_listen() -> String {
    "0.0.0.0:9464".to_string()
}
fn default_pass_timeout() -> Duration {
    Duration::from_secs(20 * 60)
}
fn default_history_retention() -> Duration {
    crate::history::DEFAULT_RETENTION
}
fn default_max_deletes() -> usize {
    500
}

/// The `[concurrency]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrencyConfig {
    /// API calls in flight across every cloud.
    pub global: usize,
    /// API calls in flight against one cloud (where an adaptive limit starts).
    pub per_cloud: usize,
    /// Let each cloud's limit move: one more after a window of healthy calls, half on a 429, a 503
    /// or a timeout (AIMD), between `per_cloud_min` and `per_cloud_max`. On by default.
    pub adaptive: bool,
    /// The lowest an adaptive limit goes.
    pub per_cloud_min: usize,
    /// The highest an adaptive limit goes.
    pub per_cloud_max: usize,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            global: 16,
            per_cloud: 8,
            // On: the benchmark (docs/BENCHMARKS.md) measured it faster on an API that never
            // throttles and on one that answers 429 under load, with few 429s.
            adaptive: true,
            per_cloud_min: 2,
            per_cloud_max: 32,
        }
    }
}

impl ConcurrencyConfig {
    /// The executor's per-cloud limit.
    pub fn limit_policy(&self) -> crate::executor::LimitPolicy {
        if self.adaptive {
            crate::executor::LimitPolicy::Adaptive {
                initial: self.per_cloud,
                min: self.per_cloud_min,
                max: self.per_cloud_max,
            }
        } else {
            crate::executor::LimitPolicy::Fixed(self.per_cloud)
        }
    }
}

/// The `[waits]` table: bounds on every wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WaitConfig {
    /// How long a resource may stay in a transitional state (locked, deleting, pending) before it is
    /// left for the next pass.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// How long an asynchronous delete (Nova, Cinder) may take to reach 404.
    #[serde(with = "humantime_serde")]
    pub delete_timeout: Duration,
    /// The first interval between status reads while waiting; it grows to eight times that.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for WaitConfig {
    fn default() -> Self {
        WaitConfig {
            busy_timeout: Duration::from_secs(120),
            delete_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub log_format: LogFormat,
    pub mode: Mode,
    pub schedule: cron::Schedule,
    pub listen: SocketAddr,
    pub pass_timeout: Duration,
    /// The history's file; `None`: history in memory only.
    pub history_file: Option<PathBuf>,
    /// A JSON state file of earlier versions, to import once.
    pub state_file: Option<PathBuf>,
    pub history_retention: Duration,
    pub max_deletes_per_pass: usize,
    pub concurrency: ConcurrencyConfig,
    pub retry: RetryPolicy,
    pub waits: WaitConfig,
    pub clouds: Vec<CloudSpec>,
}

/// One configured cloud.
#[derive(Debug, Clone)]
pub struct CloudSpec {
    pub name: String,
    pub selector: Selector,
    pub provider: ProviderSpec,
}

/// The provider-specific part of a cloud's table, by its `type`.
#[derive(Debug, Clone)]
pub enum ProviderSpec {
    OpenStack(OpenStackSettings),
    Proxmox(Box<ProxmoxSettings>),
}

/// How logs are written on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// The format a config file asks for (with `CLOUD_JANITOR_LOG_FORMAT` over it), read before
    /// logging starts and so before the file is validated: an unreadable file gives `Text`, and
    /// its errors are reported when it is loaded for real.
    pub fn of_config_file(path: Option<&Path>, env: &std::collections::HashMap<String, String>) -> LogFormat {
        let from_env = env.get("CLOUD_JANITOR_LOG_FORMAT").cloned();
        let from_file = || {
            config::Config::builder()
                .add_source(config::File::from(path?).format(config::FileFormat::Toml))
                .build()
                .ok()?
                .get_string("log_format")
                .ok()
        };
        match from_env.or_else(from_file).as_deref() {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// What the command line changes in a loaded config. It can only make the janitor more careful.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--report-only`: delete nothing, whatever `mode` says.
    pub report_only: bool,
}

impl Overrides {
    pub fn apply(self, mut config: Config) -> Config {
        if self.report_only {
            config.mode = Mode::ReportOnly;
        }
        config
    }
}

impl Config {
    /// Reads `path`, applies `CLOUD_JANITOR_*` overrides (nested keys joined with `__`, e.g.
    /// `CLOUD_JANITOR_RETRY__MAX_ATTEMPTS`), and validates everything.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let env = std::env::vars().filter(|(key, _)| is_config_key(key)).collect();
        Self::load_with_env(path, env)
    }

    /// [`Config::load`] with the environment passed in, for tests.
    pub fn load_with_env(
        path: &Path,
        env: std::collections::HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        if !path.is_file() {
            return Err(invalid(path, "no such file"));
        }
        // Per-cloud keys go by the cloud's name, which the config crate cannot know: they are
        // applied to the `[[clouds]]` tables below, and everything else through the config crate.
        let (per_cloud, top_level): (Vec<_>, Vec<_>) = env
            .into_iter()
            .partition(|(key, _)| key.starts_with(PER_CLOUD_PREFIX));
        let source = config::File::from(path)
            .format(config::FileFormat::Toml)
            .required(true);
        let environment = config::Environment::with_prefix("CLOUD_JANITOR")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(top_level.into_iter().collect()));
        let mut raw: RawConfig = config::Config::builder()
            .add_source(source)
            .add_source(environment)
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|error| invalid(path, strip_origin(&error.to_string(), path)))?;
        let mut per_cloud: Vec<(String, String)> = per_cloud;
        per_cloud.sort();
        let mut overridden: HashMap<usize, Vec<String>> = HashMap::new();
        for (variable, value) in per_cloud {
            let position = apply_cloud_override(&mut raw.clouds, &variable, &value)
                .map_err(|message| invalid(path, message))?;
            overridden.entry(position).or_default().push(variable);
        }
        Self::validate(raw, path, &overridden)
    }

    /// `overridden`: per cloud position, the variables that changed its table (named in its errors).
    fn validate(
        raw: RawConfig,
        path: &Path,
        overridden: &HashMap<usize, Vec<String>>,
    ) -> Result<Config, ConfigError> {
        let schedule = crate::schedule::parse(&raw.schedule).map_err(|error| {
            invalid(
                path,
                format!(
                    "schedule: `{}` is not a cron expression in {}: {error}",
                    raw.schedule,
                    crate::schedule::FORMS
                ),
            )
        })?;
        let listen = raw.listen.parse::<SocketAddr>().map_err(|error| {
            invalid(
                path,
                format!("listen: `{}` is not an address:port: {error}", raw.listen),
            )
        })?;
        if raw.clouds.is_empty() {
            return Err(invalid(path, "clouds: configure at least one [[clouds]] table"));
        }
        if raw.concurrency.global == 0 || raw.concurrency.per_cloud == 0 {
            return Err(invalid(
                path,
                "concurrency: global and per_cloud must be at least 1",
            ));
        }
        let c = &raw.concurrency;
        if c.adaptive
            && !(1 <= c.per_cloud_min && c.per_cloud_min <= c.per_cloud && c.per_cloud <= c.per_cloud_max)
        {
            return Err(invalid(
                path,
                "concurrency: adaptive needs 1 <= per_cloud_min <= per_cloud <= per_cloud_max",
            ));
        }
        if raw.retry.max_attempts == 0 {
            return Err(invalid(path, "retry.max_attempts: must be at least 1"));
        }
        if raw.pass_timeout.is_zero() {
            return Err(invalid(path, "pass_timeout: must be longer than zero"));
        }
        let mut names = HashSet::new();
        let mut clouds = Vec::new();
        for (position, table) in raw.clouds.into_iter().enumerate() {
            let cloud = parse_cloud(table, position).map_err(|message| match overridden.get(&position) {
                Some(variables) => invalid(
                    path,
                    format!("{message} (set from the environment: {})", variables.join(", ")),
                ),
                None => invalid(path, message),
            })?;
            if !names.insert(cloud.name.clone()) {
                return Err(invalid(
                    path,
                    format!("clouds[{position}].name: `{}` is used twice", cloud.name),
                ));
            }
            clouds.push(cloud);
        }
        Ok(Config {
            log_format: raw.log_format,
            mode: raw.mode,
            schedule,
            listen,
            pass_timeout: raw.pass_timeout,
            history_file: raw.history_file.or_else(|| {
                raw.state_file
                    .as_ref()
                    .map(|json| json.with_file_name("history.db"))
            }),
            state_file: raw.state_file,
            history_retention: raw.history_retention,
            max_deletes_per_pass: raw.max_deletes_per_pass,
            concurrency: raw.concurrency,
            retry: raw.retry,
            waits: raw.waits,
            clouds,
        })
    }
}

/// `CLOUD_JANITOR_CLOUDS__<CLOUD>__<KEY>[__<KEY>...]`: one key of one `[[clouds]]` table.
const PER_CLOUD_PREFIX: &str = "CLOUD_JANITOR_CLOUDS__";

/// A cloud's name as it stands in a variable name: upper case, `-` and `.` written as `_`.
fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            other => other.to_ascii_uppercase(),
        })
        .collect()
}

/// Applies `CLOUD_JANITOR_CLOUDS__<CLOUD>__<KEY>...=value` to the cloud named so (or, for a number,
/// at that position). The value is read as JSON when it parses as JSON (numbers, `true`,
/// `["lists"]`), else as text.
fn apply_cloud_override(
    clouds: &mut [serde_json::Value],
    variable: &str,
    value: &str,
) -> Result<usize, String> {
    let rest = &variable[PER_CLOUD_PREFIX.len()..];
    let mut parts = rest.split("__");
    let wanted = parts.next().unwrap_or_default();
    let path: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
    if wanted.is_empty() || path.is_empty() || path.iter().any(String::is_empty) {
        return Err(format!(
            "{variable}: expected {PER_CLOUD_PREFIX}<CLOUD>__<KEY>, e.g. {PER_CLOUD_PREFIX}CI_OPENSTACK__SELECT__MIN_AGE"
        ));
    }
    let names: Vec<String> = clouds
        .iter()
        .map(|table| {
            table
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let position = match wanted.parse::<usize>() {
        Ok(index) if index < clouds.len() => Some(index),
        Ok(_) => None,
        Err(_) => names.iter().position(|name| env_name(name) == wanted),
    };
    let Some(position) = position else {
        return Err(format!(
            "{variable}: no cloud `{wanted}` (clouds, as variable names: {})",
            names.iter().map(|n| env_name(n)).collect::<Vec<_>>().join(", ")
        ));
    };
    let parsed = serde_json::from_str::<serde_json::Value>(value)
        .ok()
        .filter(|v| !v.is_object() && !v.is_null())
        .unwrap_or_else(|| serde_json::Value::String(value.to_string()));
    let mut table = &mut clouds[position];
    for (depth, key) in path.iter().enumerate() {
        let serde_json::Value::Object(map) = table else {
            return Err(format!(
                "{variable}: `{}` is not a table",
                path[..depth].join(".")
            ));
        };
        if depth + 1 == path.len() {
            map.insert(key.clone(), parsed);
            break;
        }
        table = map
            .entry(key.clone())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    }
    Ok(position)
}

/// The config crate appends "in FILE" to some messages; the file is named once, up front.
fn strip_origin(message: &str, path: &Path) -> String {
    message.replace(&format!(" in {}", path.display()), "")
}

fn parse_cloud(table: serde_json::Value, position: usize) -> Result<CloudSpec, String> {
    let serde_json::Value::Object(mut table) = table else {
        return Err(format!("clouds[{position}]: must be a table"));
    };
    let name = match table.remove("name") {
        Some(serde_json::Value::String(name)) if is_label_safe(&name) => name,
        Some(serde_json::Value::String(name)) => {
            return Err(format!(
            "clouds[{position}].name: `{name}` must be 1-63 characters of letters, digits, `-`, `_` or `.`"
        ))
        }
        _ => {
            return Err(format!(
                "clouds[{position}].name: missing (a short name used in metrics and reports)"
            ))
        }
    };
    let at = format!("clouds[{position}] (`{name}`)");
    let kind = match table.remove("type") {
        Some(serde_json::Value::String(kind)) => kind,
        _ => return Err(format!("{at}.type: missing; one of `openstack`, `proxmox`")),
    };
    let select = table.remove("select").ok_or_else(|| {
        format!("{at}.select: missing; say which resources are leftovers (tags_all, tags_any, name_pattern)")
    })?;
    let select: SelectionConfig =
        serde_json::from_value(select).map_err(|error| format!("{at}.select: {error}"))?;
    let selector = Selector::new(&select).map_err(|error| format!("{at}.{error}"))?;
    let rest = serde_json::Value::Object(table);
    let provider = match kind.as_str() {
        "openstack" => {
            let settings: OpenStackSettings =
                serde_json::from_value(rest).map_err(|error| format!("{at}: {error}"))?;
            settings.validate().map_err(|error| format!("{at}.{error}"))?;
            ProviderSpec::OpenStack(settings)
        }
        "proxmox" => {
            let settings: ProxmoxSettings =
                serde_json::from_value(rest).map_err(|error| format!("{at}: {error}"))?;
            settings.validate().map_err(|error| format!("{at}: {error}"))?;
            ProviderSpec::Proxmox(Box::new(settings))
        }
        other => {
            return Err(format!(
                "{at}.type: unknown provider `{other}`; one of `openstack`, `proxmox`"
            ))
        }
    };
    Ok(CloudSpec {
        name,
        selector,
        provider,
    })
}

/// Cloud names become metric label values and file names: keep them tame.
fn is_label_safe(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::Verdict;

    const GOOD_CLOUD: &str = r#"
[[clouds]]
name = "ci"
type = "openstack"
cloud = "ci"
[clouds.select]
tags_all = ["ci-job"]
"#;

    /// Loads `text` as a config file in a fresh directory, with `env` as the environment; the
    /// directory is shown as `DIR` so messages are the same on every machine.
    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("janitor.toml");
        std::fs::write(&path, text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load_with_env(&path, env).map_err(|error| {
            error
                .to_string()
                .replace(&dir.path().display().to_string(), "DIR")
        })
    }

    #[test]
    fn a_complete_config_loads_and_the_environment_overrides_a_key() {
        let text = format!("schedule = \"0 */15 * * * *\"\n{GOOD_CLOUD}");
        let config = load(&text, &[("CLOUD_JANITOR_MAX_DELETES_PER_PASS", "7")]).unwrap();
        assert_eq!(config.max_deletes_per_pass, 7);
        assert_eq!(config.clouds[0].name, "ci");
        // The crontab form runs at second 0, as the form with seconds does.
        let crontab = load(&format!("schedule = \"*/15 * * * *\"\n{GOOD_CLOUD}"), &[]).unwrap();
        assert_eq!(
            crontab.schedule.upcoming(chrono::Utc).take(3).collect::<Vec<_>>(),
            config.schedule.upcoming(chrono::Utc).take(3).collect::<Vec<_>>()
        );
    }

    #[test]
    fn per_cloud_keys_are_overridden_by_the_cloud_s_name_or_position() {
        let text = format!(
            "schedule = \"0 */15 * * * *\"\n{}",
            GOOD_CLOUD.replace("name = \"ci\"", "name = \"ci-open.stack\"")
        );
        let config = load(
            &text,
            &[
                ("CLOUD_JANITOR_CLOUDS__CI_OPEN_STACK__SELECT__MIN_AGE", "1h"),
                (
                    "CLOUD_JANITOR_CLOUDS__0__SELECT__TAGS_ANY",
                    r#"["job-1", "job-2"]"#,
                ),
                ("CLOUD_JANITOR_CLOUDS__CI_OPEN_STACK__PAGE_SIZE", "50"),
            ],
        )
        .unwrap();
        // The overridden `tags_any` picks a resource with one of its tags, and no other.
        let selector = &config.clouds[0].selector;
        let now = chrono::Utc::now();
        let verdict = |tag: &str| {
            let key = crate::model::ResourceKey::new("ci-open.stack", crate::model::Kind::Port, "p1");
            let mut port = crate::model::Resource::new(key, "p");
            port.tags = vec!["ci-job".into(), tag.into()];
            port.created = Some(now - chrono::Duration::hours(2));
            selector.judge(&port, None, now)
        };
        assert_eq!(
            (verdict("job-2"), verdict("job-3")),
            (Verdict::Selected, Verdict::NotMatched("tags_any"))
        );
        let ProviderSpec::OpenStack(settings) = &config.clouds[0].provider else {
            panic!("an OpenStack cloud");
        };
        assert_eq!(settings.page_size, 50);
        let errors = [
            load(&text, &[("CLOUD_JANITOR_CLOUDS__NOPE__SELECT__MIN_AGE", "1h")]).unwrap_err(),
            load(
                &text,
                &[("CLOUD_JANITOR_CLOUDS__CI_OPEN_STACK__SELECT__MIN_AGE", "soon")],
            )
            .unwrap_err(),
            load(&text, &[("CLOUD_JANITOR_CLOUDS__CI_OPEN_STACK__REGOIN", "x")]).unwrap_err(),
            load(&text, &[("CLOUD_JANITOR_CLOUDS__CI_OPEN_STACK", "x")]).unwrap_err(),
        ];
        insta::assert_snapshot!(errors.join("\n"));
    }

    #[test]
    fn the_log_format_comes_from_the_environment_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("janitor.toml");
        std::fs::write(&path, "log_format = \"json\"\n").unwrap();
        let none = std::collections::HashMap::new();
        assert_eq!(LogFormat::of_config_file(Some(&path), &none), LogFormat::Json);
        let text =
            std::collections::HashMap::from([("CLOUD_JANITOR_LOG_FORMAT".to_string(), "text".to_string())]);
        assert_eq!(LogFormat::of_config_file(Some(&path), &text), LogFormat::Text);
        assert_eq!(LogFormat::of_config_file(None, &none), LogFormat::Text);
        let missing = dir.path().join("missing.toml");
        assert_eq!(LogFormat::of_config_file(Some(&missing), &none), LogFormat::Text);
    }

    /// Every message names the file and the key, and says what would be right.
    #[test]
    fn bad_configs_are_refused_with_messages_naming_the_file_and_the_key() {
        let schedule = "schedule = \"0 */15 * * * *\"\n";
        type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
        let cases: Vec<Case> = vec![
            (
                "schedule of four fields",
                format!("schedule = \"*/15 * * *\"\n{GOOD_CLOUD}"),
                vec![],
            ),
            (
                "crontab day of the week out of range",
                format!("schedule = \"0 9 * * 8\"\n{GOOD_CLOUD}"),
                vec![],
            ),
            (
                "expiry prefix that is not a Proxmox tag",
                format!("{schedule}{GOOD_CLOUD}ttl_tag_prefix = \"TTL \"\n"),
                vec![],
            ),
            (
                "suspected leaks of a kind that cannot look leaked",
                format!("{schedule}{GOOD_CLOUD}delete_suspected_leaks = [\"router\"]\n"),
                vec![],
            ),
            (
                "unknown top-level key",
                format!("{schedule}colour = \"blue\"\n{GOOD_CLOUD}"),
                vec![],
            ),
            (
                "bad listen",
                format!("{schedule}listen = \"nowhere\"\n{GOOD_CLOUD}"),
                vec![],
            ),
            ("no clouds", format!("{schedule}clouds = []\n"), vec![]),
            (
                "zero concurrency",
                format!("{schedule}[concurrency]\nglobal = 0\n{GOOD_CLOUD}"),
                vec![],
            ),
            (
                "bad duration",
                format!("{schedule}pass_timeout = \"soon\"\n{GOOD_CLOUD}"),
                vec![],
            ),
            (
                "cloud without a name",
                format!("{schedule}[[clouds]]\ntype = \"openstack\"\n"),
                vec![],
            ),
            (
                "unknown provider",
                format!("{schedule}{}", GOOD_CLOUD.replace("\"openstack\"", "\"aws\"")),
                vec![],
            ),
            (
                "unbounded selection",
                format!("{schedule}{}", GOOD_CLOUD.replace("tags_all = [\"ci-job\"]", "")),
                vec![],
            ),
            (
                "bad name pattern",
                format!("{schedule}{GOOD_CLOUD}name_pattern = \"(\"\n"),
                vec![],
            ),
            (
                "unknown kind",
                format!("{schedule}{GOOD_CLOUD}kinds = [\"lambda\"]\n"),
                vec![],
            ),
            (
                "unknown provider key",
                format!(
                    "{schedule}{}",
                    GOOD_CLOUD.replace("cloud = \"ci\"", "cloud = \"ci\"\nregoin = \"x\"")
                ),
                vec![],
            ),
            (
                "duplicate cloud names",
                format!("{schedule}{GOOD_CLOUD}{GOOD_CLOUD}"),
                vec![],
            ),
            (
                "bad environment override",
                format!("{schedule}{GOOD_CLOUD}"),
                vec![("CLOUD_JANITOR_MAX_DELETES_PER_PASS", "many")],
            ),
        ];
        let mut messages = String::new();
        for (case, text, env) in cases {
            let error = load(&text, &env).expect_err(case);
            assert!(error.starts_with("config DIR/janitor.toml: "), "{case}: {error}");
            messages.push_str(&format!("{case}:\n  {error}\n"));
        }
        insta::assert_snapshot!(messages);
    }
}
