//! `cloud-janitor plan`: discovery and planning only, printed as a table, JSON or Graphviz dot.
//! Deletes nothing and records nothing.

use std::path::PathBuf;
use std::sync::Arc;

use super::{load, CommandError, Exit};
use crate::config::Overrides;
use crate::history::Access;
use crate::metrics::Metrics;
use crate::report;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PlanOutput {
    Table,
    Json,
    Dot,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "CLOUD_JANITOR_CONFIG")]
    pub config: PathBuf,
    #[arg(long, value_enum, default_value_t = PlanOutput::Table)]
    pub output: PlanOutput,
}

pub async fn run(args: Args) -> Result<Exit, CommandError> {
    let (_, janitor) = load(
        &args.config,
        Overrides::default(),
        Arc::new(Metrics::new()),
        Access::ReadOnly,
    )?;
    let planned = janitor.plan(false).await;
    for cloud in &planned.clouds {
        if let Some(error) = &cloud.error {
            eprintln!("error: cloud {} could not be listed: {error}", cloud.name);
        }
    }
    match args.output {
        PlanOutput::Table => print!("{}", report::plan_table(&planned.plan)),
        PlanOutput::Json => println!("{}", report::plan_json(&planned.plan)),
        PlanOutput::Dot => print!("{}", report::plan_dot(&planned.plan)),
    }
    let failed = planned.clouds.iter().any(|c| c.error.is_some());
    Ok(if failed { Exit::Failed } else { Exit::Clean })
}
