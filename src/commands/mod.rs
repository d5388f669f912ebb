//! The subcommands of the `cloud-janitor` binary, one module each, and what they share: loading the
//! config into a janitor, the exit statuses, and the one error type commands return. `main.rs` only
//! parses the command line and dispatches here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, ConfigError, Overrides};
use crate::history::{Access, HistoryError};
use crate::metrics::Metrics;
use crate::pass::Janitor;
use crate::report::PassResult;
use crate::setup::{build_janitor, SetupError};

#[cfg(feature = "sim")]
pub mod bench;
#[cfg(feature = "sim")]
pub mod demo;
pub mod explain;
pub mod healthcheck;
pub mod history;
pub mod once;
pub mod plan;
pub mod run;
#[cfg(feature = "sim")]
pub mod simulate;

/// What `once` and `run` share: the config, and the report-only switch over it.
#[derive(Debug, clap::Args)]
pub struct PassArgs {
    #[arg(long, env = "CLOUD_JANITOR_CONFIG")]
    pub config: PathBuf,
    /// Discover, plan and report what would be deleted; delete nothing, whatever the config's
    /// `mode` says.
    #[arg(long)]
    pub report_only: bool,
}

impl PassArgs {
    /// The config and the janitor that runs passes on it (holding the history's lock), with fresh
    /// metrics that the janitor writes to.
    pub fn load(&self) -> Result<(Arc<Metrics>, Config, Janitor), CommandError> {
        let metrics = Arc::new(Metrics::new());
        let (config, janitor) = load(&self.config, self.overrides(), metrics.clone(), Access::Exclusive)?;
        Ok((metrics, config, janitor))
    }

    /// What the command line overrides in the config.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            report_only: self.report_only,
        }
    }
}

/// What `explain` and `history` look at: the config and, when given, one cloud of it.
#[derive(Debug, clap::Args)]
pub struct CloudScope {
    #[arg(long, env = "CLOUD_JANITOR_CONFIG")]
    pub config: PathBuf,
    /// Only this cloud of the config.
    #[arg(long)]
    pub cloud: Option<String>,
}

impl CloudScope {
    /// The cloud asked for, if any, once `config` is known to have it.
    pub fn cloud<'a>(&'a self, config: &Config) -> Result<Option<&'a str>, CommandError> {
        let Some(cloud) = self.cloud.as_deref() else {
            return Ok(None);
        };
        if config.clouds.iter().any(|c| c.name == cloud) {
            return Ok(Some(cloud));
        }
        Err(CommandError::UnknownCloud {
            path: self.config.clone(),
            cloud: cloud.to_string(),
            known: config
                .clouds
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// A listing's form on stdout, for `once` and `history`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TableOrJson {
    Table,
    Json,
}

/// How the process ends. Operators script against these numbers: keep them stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the pass left nothing selected behind (or the command simply worked).
    Clean,
    /// 1: selected resources stayed (`once`), or the daemon failed its health check.
    Leftovers,
    /// 2: the pass could not run against a cloud, or the command failed.
    Failed,
    /// 1, from `healthcheck`: the daemon did not answer `/healthz`.
    Unhealthy,
    /// 1, from `explain`: no resource has that id or name.
    NotFound,
    /// 64: the configuration cannot be used.
    BadConfig,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Clean => 0,
            Exit::Leftovers | Exit::Unhealthy | Exit::NotFound => 1,
            Exit::Failed => 2,
            Exit::BadConfig => 64,
        }
    }
}

impl From<PassResult> for Exit {
    fn from(result: PassResult) -> Self {
        match result {
            PassResult::Clean => Exit::Clean,
            PassResult::Leftovers => Exit::Leftovers,
            PassResult::Failed => Exit::Failed,
        }
    }
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("config {}: {source}", path.display())]
    Setup {
        path: PathBuf,
        #[source]
        source: SetupError,
    },
    /// A file, socket or simulator the command needs could not be used.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot render JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A command line argument names a cloud the config does not have.
    #[error("config {}: no cloud `{cloud}` (configured: {known})", path.display())]
    UnknownCloud {
        path: PathBuf,
        cloud: String,
        known: String,
    },
    /// The demo's own janitor could not be assembled (a bug, not the operator's config).
    #[cfg(feature = "sim")]
    #[error("cannot configure the demo janitor: {0}")]
    Demo(#[source] crate::provider::ProviderError),
    /// The benchmark could not run.
    #[cfg(feature = "sim")]
    #[error("benchmark: {0}")]
    Bench(#[source] Box<crate::bench::BenchError>),
}

impl CommandError {
    /// The exit status this error ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            // Another janitor holds the history: not a config problem, and nothing was done.
            CommandError::Setup {
                source: SetupError::History(HistoryError::Locked { .. }),
                ..
            } => Exit::Failed,
            CommandError::Config(_) | CommandError::Setup { .. } | CommandError::UnknownCloud { .. } => {
                Exit::BadConfig
            }
            CommandError::Io { .. } | CommandError::Json(_) => Exit::Failed,
            #[cfg(feature = "sim")]
            CommandError::Demo(_) | CommandError::Bench(_) => Exit::Failed,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CommandError {
        let what = what.into();
        move |source| CommandError::Io { what, source }
    }
}

/// Loads and validates the config file, applies the command line's overrides, then builds the
/// janitor: providers, selection, and the history opened with `access`.
pub fn load(
    path: &Path,
    overrides: Overrides,
    metrics: Arc<Metrics>,
    access: Access,
) -> Result<(Config, Janitor), CommandError> {
    let config = overrides.apply(Config::load(path)?);
    metrics.config_valid.set(1);
    let janitor = build_janitor(&config, metrics, access).map_err(|source| CommandError::Setup {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((config, janitor))
}
