//! `cloud-janitor history`: what the janitor remembers of each resource, what has been left longest
//! first. Opens the history read-only: safe while the daemon runs.

use std::fmt::Write as _;

use serde::Serialize;

use super::{CloudScope, CommandError, Exit, TableOrJson};
use crate::config::Config;
use crate::history::{Access, Record};
use crate::model::ResourceKey;
use crate::setup::{open_history, SetupError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config, and only this cloud's resources.
    #[command(flatten)]
    pub scope: CloudScope,
    /// Only the resource with this id or name.
    pub resource: Option<String>,
    #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
    pub output: TableOrJson,
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    key: &'a ResourceKey,
    #[serde(flatten)]
    record: &'a Record,
}

pub async fn run(args: Args) -> Result<Exit, CommandError> {
    let config = Config::load(&args.scope.config)?;
    let cloud = args.scope.cloud(&config)?;
    let history = open_history(&config, Access::ReadOnly).map_err(|source| CommandError::Setup {
        path: args.scope.config.clone(),
        source: SetupError::History(source),
    })?;
    let records: Vec<(ResourceKey, Record)> = history
        .records(cloud)
        .into_iter()
        .filter(|(key, record)| {
            args.resource
                .as_deref()
                .is_none_or(|wanted| key.id == wanted || record.name == wanted)
        })
        .collect();
    match args.output {
        TableOrJson::Table => print!("{}", table(&records)),
        TableOrJson::Json => {
            let rows: Vec<Row> = records.iter().map(|(key, record)| Row { key, record }).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
    }
    Ok(if args.resource.is_some() && records.is_empty() {
        Exit::Leftovers
    } else {
        Exit::Clean
    })
}

/// The records as a table, one line each.
pub fn table(records: &[(ResourceKey, Record)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<16} {:<38} {:<20} {:<20} {:>8} {:>8}  {:<16} LAST ERROR",
        "CLOUD", "KIND", "ID", "FIRST SEEN", "LAST SEEN", "ATTEMPTS", "LEFT", "LAST OUTCOME"
    );
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    for (key, record) in records {
        let last_seen = match record.gone_since {
            Some(gone) => format!("gone {}", gone.format("%Y-%m-%d %H:%M")),
            None => time(record.last_seen),
        };
        let _ = writeln!(
            out,
            "{:<12} {:<16} {:<38} {:<20} {:<20} {:>8} {:>8}  {:<16} {}",
            key.cloud,
            key.kind.as_str(),
            key.id,
            time(record.first_seen),
            last_seen,
            record.attempts,
            record.left_streak,
            record.last_outcome.as_deref().unwrap_or("-"),
            record.last_error.as_deref().unwrap_or("")
        );
    }
    if records.is_empty() {
        out.push_str("(no records)\n");
    }
    out
}
