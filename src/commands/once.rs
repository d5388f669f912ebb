//! `cloud-janitor once`: one pass, its report on stdout, and an exit status that says how it went.

use std::path::PathBuf;
use std::sync::Arc;

use super::{load, CommandError, Exit};
use crate::config::Overrides;
use crate::history::Access;
use crate::metrics::Metrics;
use crate::shutdown::shutdown_token;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportOutput {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "CLOUD_JANITOR_CONFIG")]
    pub config: PathBuf,
    /// Discover, plan and report what would be deleted; delete nothing, whatever the config's
    /// `mode` says.
    #[arg(long)]
    pub report_only: bool,
    /// Also write the Prometheus metrics to this file at the end.
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportOutput::Table)]
    pub output: ReportOutput,
}

pub async fn run(args: Args) -> Result<Exit, CommandError> {
    let metrics = Arc::new(Metrics::new());
    let overrides = Overrides {
        report_only: args.report_only,
    };
    let (_, janitor) = load(&args.config, overrides, metrics.clone(), Access::Exclusive)?;
    for note in janitor.notes() {
        tracing::warn!("{note}");
    }
    let report = janitor.run_pass(shutdown_token(), None).await;
    janitor.history().flush();
    match args.output {
        ReportOutput::Table => print!("{}", report.render_table()),
        ReportOutput::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(path) = args.metrics_file {
        std::fs::write(&path, metrics.render()).map_err(CommandError::io(format!(
            "cannot write metrics to {}",
            path.display()
        )))?;
    }
    Ok(report.result().into())
}
