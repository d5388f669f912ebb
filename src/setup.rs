//! Turns a validated [`Config`] into ready clouds: a provider per `[[clouds]]` table with its selector.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{CloudSpec, Config, ProviderSpec};
use crate::history::{Access, HistoryError, HistoryStore};
use crate::metrics::Metrics;
use crate::pass::{Cloud, Janitor, PassSettings};
use crate::policy::RetryPolicy;
use crate::provider::openstack::OpenStackProvider;
use crate::provider::proxmox::ProxmoxProvider;
use crate::provider::{Provider, ProviderError};

/// Why the janitor could not be assembled. Both are configuration problems (exit code 64).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Provider(#[from] ProviderError),
    #[error("{0}")]
    History(#[from] HistoryError),
}

/// Builds one cloud's provider. `env` is the process environment (`OS_*` variables, secrets).
/// `retry` is the config's policy: reads are retried by it as deletes are.
pub fn build_cloud(
    spec: &CloudSpec,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
    env: &HashMap<String, String>,
) -> Result<Cloud, ProviderError> {
    let provider: Arc<dyn Provider> = match &spec.provider {
        ProviderSpec::OpenStack(settings) => {
            Arc::new(OpenStackProvider::new(&spec.name, settings, metrics, env)?.with_read_retry(retry))
        }
        ProviderSpec::Proxmox(settings) => {
            Arc::new(ProxmoxProvider::new(spec.name.clone(), settings, metrics)?.with_read_retry(retry))
        }
    };
    Ok(Cloud {
        name: spec.name.clone(),
        selector: spec.selector.clone(),
        provider,
    })
}

/// Opens the history a config names: exclusively for a janitor that cleans, read-only for one that
/// only looks. Without a file, history lives in memory.
pub fn open_history(config: &Config, access: Access) -> Result<HistoryStore, HistoryError> {
    match &config.history_file {
        Some(path) => HistoryStore::open(
            path,
            access,
            config.state_file.as_deref(),
            config.history_retention,
        ),
        None => Ok(HistoryStore::in_memory("no history_file configured")),
    }
}

/// Builds the janitor for a config: every provider, the history, the pass settings.
pub fn build_janitor(config: &Config, metrics: Arc<Metrics>, access: Access) -> Result<Janitor, SetupError> {
    let history = Arc::new(open_history(config, access)?);
    build_janitor_with(config, metrics, history)
}

/// Builds the janitor for a config around a history that is already open (the daemon keeps one
/// across config reloads). Credentials (clouds.yaml, token files, `OS_*`) are read now.
pub fn build_janitor_with(
    config: &Config,
    metrics: Arc<Metrics>,
    history: Arc<HistoryStore>,
) -> Result<Janitor, SetupError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let clouds = config
        .clouds
        .iter()
        .map(|spec| build_cloud(spec, config.retry, metrics.clone(), &env))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Janitor::new(clouds, PassSettings::from(config), metrics, history))
}
