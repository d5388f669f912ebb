//! The `cloud-janitor` binary: parses the command line, starts logging, runs the chosen command from
//! the library and turns its result into the exit status.

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cloud_janitor::commands;
use cloud_janitor::config::LogFormat;

#[derive(Parser)]
#[command(
    name = "cloud-janitor",
    version,
    about = "Deletes what interrupted CI jobs leave in OpenStack and Proxmox VE, in dependency order"
)]
struct Cli {
    /// Log format on stderr; by default the config's `log_format` (or `CLOUD_JANITOR_LOG_FORMAT`),
    /// else text.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon: a pass on every tick of the config's schedule; serves /metrics, /healthz, /readyz.
    Run(commands::run::Args),
    /// One pass, then exit: 0 nothing selected is left, 1 leftovers remain, 2 the pass could not
    /// run (auth, unreachable API), 64 bad config.
    Once(commands::once::Args),
    /// Discovery and planning only: shows what would be deleted, in which order, and what is held
    /// back. Deletes nothing.
    Plan(commands::plan::Args),
    /// Why one resource is (or is not) deleted: each selection rule with the value it saw, the
    /// guards, what it uses and what uses it, its place in the plan, its history, and the verdict.
    /// Read-only: discovers without remembering, safe while the daemon runs. Exit 1 when nothing has
    /// that id or name (the closest are listed), 64 on a bad config.
    Explain(commands::explain::Args),
    /// What the janitor remembers of each resource (first seen, attempts, last error), what has been
    /// left longest first. Read-only: safe while the daemon runs.
    History(commands::history::Args),
    /// Starts the simulated clouds seeded with CI leftovers and cleans them with a live display.
    #[cfg(feature = "sim")]
    Demo(commands::demo::Args),
    /// Serves the simulated OpenStack (seeded, or empty) until interrupted, and writes a clouds.yaml
    /// any OpenStack client can use, and a janitor config.
    #[cfg(feature = "sim")]
    Simulate(commands::simulate::Args),
    /// The benchmark (docs/BENCHMARKS.md): one pass per scenario against the simulated clouds with
    /// a fixed latency, beside `openstack project cleanup`, and one table of figures.
    #[cfg(feature = "sim")]
    Bench(commands::bench::Args),
    /// Exits 0 if the daemon at URL answers /healthz (for container health checks without a shell).
    Healthcheck(commands::healthcheck::Args),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOUD_JANITOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

impl Command {
    /// The config file the command reads, if any.
    fn config(&self) -> Option<&Path> {
        match self {
            Command::Run(args) => Some(&args.pass.config),
            Command::Once(args) => Some(&args.pass.config),
            Command::Plan(args) => Some(&args.config),
            Command::Explain(args) => Some(&args.scope.config),
            Command::History(args) => Some(&args.scope.config),
            #[cfg(feature = "sim")]
            Command::Demo(_) | Command::Simulate(_) | Command::Bench(_) => None,
            Command::Healthcheck(_) => None,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = std::env::vars().collect();
    let log_format = cli
        .log_format
        .unwrap_or_else(|| LogFormat::of_config_file(cli.command.config(), &env));
    init_logging(log_format);
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args).await,
        Command::Once(args) => commands::once::run(args).await,
        Command::Plan(args) => commands::plan::run(args).await,
        Command::Explain(args) => commands::explain::run(args).await,
        Command::History(args) => commands::history::run(args).await,
        #[cfg(feature = "sim")]
        Command::Demo(args) => commands::demo::run(args).await,
        #[cfg(feature = "sim")]
        Command::Simulate(args) => commands::simulate::run(args).await,
        #[cfg(feature = "sim")]
        Command::Bench(args) => commands::bench::run(args).await,
        Command::Healthcheck(args) => commands::healthcheck::run(args).await,
    };
    let exit = result.unwrap_or_else(|error| {
        eprintln!("error: {error}");
        error.exit()
    });
    ExitCode::from(exit.code())
}
