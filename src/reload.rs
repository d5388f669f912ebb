//! The daemon's config, read again before every pass and on SIGHUP: a changed file (or changed
//! credentials: clouds.yaml, token files) takes effect at the next pass without a restart; an
//! invalid one is refused with an error log and a metric, and the last good one stays in use.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::commands::CommandError;
use crate::config::{Config, Overrides};
use crate::history::HistoryStore;
use crate::metrics::Metrics;
use crate::pass::Janitor;
use crate::setup::build_janitor_with;

/// The janitor the next pass uses, rebuilt from the config file each time.
pub struct Reloader {
    path: PathBuf,
    overrides: Overrides,
    metrics: Arc<Metrics>,
    history: Arc<HistoryStore>,
    current: Mutex<Current>,
    /// Why the file on disk was last refused; `None` while it is the one in use.
    rejected: Mutex<Option<String>>,
}

struct Current {
    config: Config,
    janitor: Arc<Janitor>,
    text: String,
}

impl Reloader {
    /// Starts from a config and janitor already loaded (and so known to be good).
    pub fn new(
        path: PathBuf,
        overrides: Overrides,
        config: Config,
        janitor: Janitor,
        metrics: Arc<Metrics>,
    ) -> Self {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        metrics.config_valid.set(1);
        Reloader {
            history: janitor.history().clone(),
            path,
            overrides,
            metrics,
            current: Mutex::new(Current {
                config,
                janitor: Arc::new(janitor),
                text,
            }),
            rejected: Mutex::new(None),
        }
    }

    /// What `/readyz` should say about the config and the history, one line each.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self.janitor().notes();
        if let Some(error) = self
            .rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            notes.push(format!(
                "config {} was rejected, the last good config is in use: {error}",
                self.path.display()
            ));
        }
        notes
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The janitor and config in use.
    pub fn janitor(&self) -> Arc<Janitor> {
        self.current().janitor.clone()
    }

    pub fn config(&self) -> Config {
        self.current().config.clone()
    }

    /// Reads the config file again and builds a janitor from it, sharing the history and metrics.
    /// On failure the last good janitor stays in use; the error is logged and counted.
    pub fn reload(&self) -> Result<(), CommandError> {
        let result = self.try_reload();
        let outcome = if result.is_ok() { "applied" } else { "rejected" };
        self.metrics
            .config_reloads_total
            .with_label_values(&[outcome])
            .inc();
        self.metrics.config_valid.set(i64::from(result.is_ok()));
        if let Err(error) = &result {
            tracing::error!(%error, "the config file was not applied; the last good config stays in use");
        }
        *self.rejected.lock().unwrap_or_else(PoisonError::into_inner) =
            result.as_ref().err().map(ToString::to_string);
        result
    }

    fn try_reload(&self) -> Result<(), CommandError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(CommandError::io(format!("cannot read {}", self.path.display())))?;
        let config = self.overrides.apply(Config::load(&self.path)?);
        let janitor =
            build_janitor_with(&config, self.metrics.clone(), self.history.clone()).map_err(|source| {
                CommandError::Setup {
                    path: self.path.clone(),
                    source,
                }
            })?;
        let mut current = self.current();
        if current.text != text {
            tracing::info!(file = %self.path.display(), "the config file changed; the next pass uses it");
            for (what, old, new) in [
                (
                    "listen",
                    current.config.listen.to_string(),
                    config.listen.to_string(),
                ),
                (
                    "history_file",
                    format!("{:?}", current.config.history_file),
                    format!("{:?}", config.history_file),
                ),
            ] {
                if old != new {
                    tracing::warn!(key = what, "a change of {what} takes effect only after a restart");
                }
            }
        }
        *current = Current {
            config,
            janitor: Arc::new(janitor),
            text,
        };
        Ok(())
    }
}
