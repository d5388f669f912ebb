//! `cloud-janitor run`: the daemon. Serves `/metrics`, `/healthz` and `/readyz` from start-up and runs
//! a pass on every tick of the schedule until SIGTERM or SIGINT.

use std::sync::Arc;

use super::{CommandError, Exit, PassArgs};
use crate::daemon;
use crate::reload::Reloader;
use crate::shutdown::shutdown_token;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub pass: PassArgs,
}

pub async fn run(args: Args) -> Result<Exit, CommandError> {
    let (metrics, config, janitor) = args.pass.load()?;
    let reloader = Arc::new(Reloader::new(
        args.pass.config.clone(),
        args.pass.overrides(),
        config.clone(),
        janitor,
        metrics.clone(),
    ));
    let cancel = shutdown_token();
    let readiness = daemon::Readiness::default();
    for note in reloader.notes() {
        tracing::warn!("{note}");
    }
    let (address, serve) = daemon::serve_metrics(config.listen, metrics, readiness.clone(), cancel.clone())
        .await
        .map_err(CommandError::io(format!("cannot listen on {}", config.listen)))?;
    tracing::info!(%address, "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(serve);
    daemon::run_schedule(reloader, readiness, cancel).await;
    match server.await {
        Ok(served) => served.map_err(CommandError::io("metrics server"))?,
        Err(error) => tracing::error!(%error, "the metrics server task ended abnormally"),
    }
    Ok(Exit::Clean)
}
