//! `cloud-janitor explain`: why one resource is (or is not) deleted. Discovers the clouds read-only
//! (nothing is deleted or remembered, and the history is opened without the janitor's lock), plans,
//! and prints [`crate::explain`]'s account of the resource. Exit 1 when nothing has that id or name.

use std::sync::Arc;

use super::{load, CloudScope, CommandError, Exit};
use crate::config::Overrides;
use crate::explain::{closest, explain, find, render_not_found, Explanation};
use crate::history::Access;
use crate::metrics::Metrics;
use crate::pass::{Janitor, Mode, Planned};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExplainOutput {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config, and only this cloud of it (discovers only it).
    #[command(flatten)]
    pub scope: CloudScope,
    /// The resource's id, or its name (every resource with that name is explained).
    pub resource: String,
    #[arg(long, value_enum, default_value_t = ExplainOutput::Text)]
    pub output: ExplainOutput,
}

/// How many close names a miss lists.
const CLOSEST: usize = 5;

/// Discovers (read-only) and explains every resource with id or name `wanted`, in `cloud` when
/// given, with each rule checked at the moment the verdicts were judged; the plan comes back too,
/// for the closest names when nothing matched.
pub async fn explain_in(
    janitor: &Janitor,
    mode: Mode,
    cloud: Option<&str>,
    wanted: &str,
) -> (Planned, Vec<Explanation>) {
    let planned = janitor.plan_clouds(false, cloud).await;
    let now = planned.judged;
    let plan = &planned.plan;
    let explanations = find(plan, cloud, wanted)
        .into_iter()
        .filter_map(|node| {
            let resource = &plan.graph[node].resource;
            let selector = janitor.selector(&resource.key.cloud)?;
            Some(explain(
                plan,
                node,
                selector,
                janitor.dry_run_history(resource),
                janitor.history().record(&resource.key),
                mode,
                now,
            ))
        })
        .collect();
    (planned, explanations)
}

pub async fn run(args: Args) -> Result<Exit, CommandError> {
    let (config, janitor) = load(
        &args.scope.config,
        Overrides::default(),
        Arc::new(Metrics::new()),
        Access::ReadOnly,
    )?;
    let cloud = args.scope.cloud(&config)?;
    let (planned, explanations) = explain_in(&janitor, config.mode, cloud, &args.resource).await;
    let now = planned.judged;
    for cloud in &planned.clouds {
        if let Some(error) = &cloud.error {
            eprintln!("error: cloud {} could not be listed: {error}", cloud.name);
        }
    }
    let plan = &planned.plan;
    if explanations.is_empty() {
        let clouds: Vec<&str> = planned.clouds.iter().map(|c| c.name.as_str()).collect();
        let near = closest(plan, cloud, &args.resource, CLOSEST);
        match args.output {
            ExplainOutput::Text => print!("{}", render_not_found(&args.resource, &clouds, &near)),
            ExplainOutput::Json => println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "found": false,
                    "resource": args.resource,
                    "clouds": clouds,
                    "closest": near,
                }))?
            ),
        }
        // Not found in a cloud that could not be listed says nothing: the pass failed.
        let failed = planned.clouds.iter().any(|c| c.error.is_some());
        return Ok(if failed { Exit::Failed } else { Exit::NotFound });
    }
    match args.output {
        ExplainOutput::Text => {
            let texts: Vec<String> = explanations.iter().map(|e| e.render_text(now)).collect();
            print!("{}", texts.join("\n"));
        }
        ExplainOutput::Json => println!("{}", serde_json::to_string_pretty(&explanations)?),
    }
    Ok(Exit::Clean)
}
