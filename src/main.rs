//! The `cloud-janitor` binary: parses the command line, loads config, starts telemetry, runs the
//! library, and maps the result to an exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use cloud_janitor::config::Config;
use cloud_janitor::metrics::Metrics;
use cloud_janitor::{daemon, demo, report, setup};
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration that cannot be used (sysexits' EX_USAGE... EX_CONFIG is 78, but
/// 64 is what operators of this tool are told to expect).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "cloud-janitor",
    version,
    about = "Deletes what interrupted CI jobs leave in OpenStack and Proxmox VE, in dependency order"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanOutput {
    Table,
    Json,
    Dot,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportOutput {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon: a pass on every tick of the config's schedule; serves /metrics, /healthz, /readyz.
    Run {
        #[arg(long, env = "CLOUD_JANITOR_CONFIG")]
        config: PathBuf,
    },
    /// One pass, then exit: 0 nothing selected is left, 1 leftovers remain, 2 the pass could not
    /// run (auth, unreachable API), 64 bad config.
    Once {
        #[arg(long, env = "CLOUD_JANITOR_CONFIG")]
        config: PathBuf,
        /// Also write the Prometheus metrics to this file at the end.
        #[arg(long)]
        metrics_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = ReportOutput::Table)]
        output: ReportOutput,
    },
    /// Discovery and planning only: shows what would be deleted, in which order, and what is held
    /// back. Deletes nothing.
    Plan {
        #[arg(long, env = "CLOUD_JANITOR_CONFIG")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = PlanOutput::Table)]
        output: PlanOutput,
    },
    /// Starts the simulated clouds seeded with CI leftovers and cleans them with a live display.
    Demo {
        /// Also serve /metrics here during the pass and after it, until interrupted.
        #[arg(long)]
        serve_metrics: Option<SocketAddr>,
    },
    /// Serves the simulated OpenStack (seeded, or empty) until interrupted, and writes a clouds.yaml
    /// any OpenStack client can use, and a janitor config.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, default_value = "clouds.yaml")]
        clouds_yaml: PathBuf,
        /// Write a cloud-janitor config for the simulated cloud here.
        #[arg(long)]
        config_out: Option<PathBuf>,
        /// Serve it empty (only the external network, shared network and default groups).
        #[arg(long)]
        empty: bool,
        /// Also serve the simulated Proxmox VE here, over HTTPS with a self-signed certificate; its
        /// token secret (`proxmox-token-secret`) and certificate (`proxmox-ca.pem`) go in files next
        /// to the clouds.yaml.
        #[arg(long)]
        proxmox_listen: Option<SocketAddr>,
    },
    /// Exits 0 if the daemon at URL answers /healthz (for container health checks without a shell).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
    },
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

/// One token for the whole process: the first SIGTERM/SIGINT cancels it (in-flight deletes finish,
/// nothing new starts); a second one exits at once.
fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut signals = 0;
        loop {
            wait_for_signal().await;
            signals += 1;
            if signals == 1 {
                tracing::warn!("shutdown requested: finishing in-flight deletes; signal again to exit now");
                cancel.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Loads the config and builds the janitor; any failure is a bad-config exit.
fn load(
    path: &std::path::Path,
    metrics: Arc<Metrics>,
) -> Result<(Config, cloud_janitor::pass::Janitor), ExitCode> {
    let config = Config::load(path).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_BAD_CONFIG)
    })?;
    let janitor = setup::build_janitor(&config, metrics).map_err(|error| {
        eprintln!("error: config {}: {error}", path.display());
        ExitCode::from(EXIT_BAD_CONFIG)
    })?;
    Ok((config, janitor))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(Metrics::new());
    match command {
        Command::Run { config } => {
            let (config, janitor) = match load(&config, metrics.clone()) {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            let cancel = shutdown_token();
            let ready = Arc::new(AtomicBool::new(false));
            let (address, serve) =
                daemon::serve_metrics(config.listen, metrics, ready.clone(), cancel.clone())
                    .await
                    .with_context(|| format!("cannot listen on {}", config.listen))?;
            tracing::info!(%address, "serving /metrics, /healthz, /readyz");
            let server = tokio::spawn(serve);
            daemon::run_schedule(Arc::new(janitor), config.schedule, ready, cancel).await;
            server
                .await
                .context("metrics server task")?
                .context("metrics server")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Once {
            config,
            metrics_file,
            output,
        } => {
            let (_, janitor) = match load(&config, metrics.clone()) {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            let report = janitor.run_pass(shutdown_token(), None).await;
            match output {
                ReportOutput::Table => print!("{}", report.render_table()),
                ReportOutput::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            if let Some(path) = metrics_file {
                std::fs::write(&path, metrics.render())
                    .with_context(|| format!("cannot write metrics to {}", path.display()))?;
            }
            Ok(exit(report.result().exit_code()))
        }
        Command::Plan { config, output } => {
            let (_, janitor) = match load(&config, metrics) {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            let planned = janitor.plan(false).await;
            for cloud in planned.clouds.iter().filter(|c| c.error.is_some()) {
                eprintln!(
                    "error: cloud {} could not be listed: {}",
                    cloud.name,
                    cloud.error.as_deref().unwrap_or("")
                );
            }
            match output {
                PlanOutput::Table => print!("{}", report::plan_table(&planned.plan)),
                PlanOutput::Json => println!("{}", report::plan_json(&planned.plan)),
                PlanOutput::Dot => print!("{}", report::plan_dot(&planned.plan)),
            }
            let failed = planned.clouds.iter().any(|c| c.error.is_some());
            Ok(exit(if failed { 2 } else { 0 }))
        }
        Command::Demo { serve_metrics } => run_demo(serve_metrics, metrics).await,
        Command::Simulate {
            listen,
            clouds_yaml,
            config_out,
            empty,
            proxmox_listen,
        } => {
            let cluster = match proxmox_listen {
                Some(address) => {
                    let secret = clouds_yaml.with_file_name("proxmox-token-secret");
                    let cluster = demo::start_proxmox(address, secret, empty, true)
                        .await
                        .with_context(|| format!("cannot start the simulated Proxmox VE on {address}"))?;
                    println!(
                        "simulated Proxmox VE: {} (token {})",
                        cluster.sim.url(),
                        cluster.sim.token_id()
                    );
                    println!("token secret file: {}", cluster.token_secret_file.display());
                    if let Some(ca_file) = &cluster.ca_file {
                        println!("Proxmox VE CA file: {}", ca_file.display());
                    }
                    Some(cluster)
                }
                None => None,
            };
            if let Some(path) = &config_out {
                // Written before the clouds.yaml, which callers wait for.
                let text = demo::config_text(&clouds_yaml, "127.0.0.1:9464", cluster.as_ref());
                demo::write_atomically(path, &text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            let cloud = demo::start_openstack(listen, clouds_yaml.clone(), empty)
                .await
                .with_context(|| format!("cannot start the simulated OpenStack on {listen}"))?;
            println!("simulated OpenStack: {}", cloud.sim.url());
            println!("Keystone (auth_url): {}", cloud.sim.auth_url());
            println!(
                "clouds.yaml: {} (clouds: sim, sim-admin, sim-other, sim-appcred)",
                clouds_yaml.display()
            );
            if let Some(path) = &config_out {
                println!("janitor config: {}", path.display());
            }
            println!("serving until interrupted");
            shutdown_token().cancelled().await;
            cloud.sim.shutdown();
            if let Some(cluster) = cluster {
                cluster.sim.shutdown();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck { url } => {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?;
            let healthy = client
                .get(&url)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}

async fn run_demo(serve_metrics: Option<SocketAddr>, metrics: Arc<Metrics>) -> anyhow::Result<ExitCode> {
    let directory = std::env::temp_dir().join(format!("cloud-janitor-demo-{}", std::process::id()));
    let cloud = demo::start_openstack("127.0.0.1:0".parse()?, directory.join("clouds.yaml"), false)
        .await
        .context("cannot start the simulated OpenStack")?;
    let cluster = demo::start_proxmox(
        "127.0.0.1:0".parse()?,
        directory.join("proxmox-token-secret"),
        false,
        false,
    )
    .await
    .context("cannot start the simulated Proxmox VE")?;
    println!(
        "Simulated OpenStack at {} seeded with the leftovers of three interrupted CI jobs",
        cloud.sim.url()
    );
    println!("(servers on ports, volumes attached, routers with interfaces and a floating IP, security groups in use,");
    println!(
        " a locked server; untagged resources, the default security group and shared networks must survive)"
    );
    println!(
        "Simulated Proxmox VE at {} with CI guests (one wedged, one held by a backup), a protected",
        cluster.sim.url()
    );
    println!("guest, a template, untagged guests and orphan disks\n");
    let janitor = demo::demo_janitor(&cloud, Some(&cluster), metrics.clone())
        .context("cannot configure the demo janitor")?;
    let cancel = shutdown_token();
    let server = match serve_metrics {
        Some(listen) => {
            let ready = Arc::new(AtomicBool::new(true));
            let (address, serve) = daemon::serve_metrics(listen, metrics.clone(), ready, cancel.clone())
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            println!("Serving metrics at http://{address}/metrics\n");
            Some(tokio::spawn(serve))
        }
        None => None,
    };
    println!(
        "Plan (dry run):\n{}",
        report::plan_table(&janitor.plan(false).await.plan)
    );
    println!("Injected, as a busy cloud would answer:");
    for line in demo::inject_demo_conflicts(&cloud.sim) {
        println!("  - {line}");
    }
    println!();
    println!("Pass:");
    let result = janitor
        .run_pass(cancel.clone(), Some(demo::progress_printer()))
        .await;
    println!("\nReport:\n{}", result.render_table());
    println!("Untouched (not selected), still there:");
    for item in &result.items {
        if let report::ItemStatus::Skipped(why) = &item.status {
            let name = if item.name.is_empty() {
                &item.key.id
            } else {
                &item.name
            };
            println!(
                "  {:<14} {:<16} {:<36} {why}",
                item.key.cloud,
                item.key.kind.as_str(),
                name
            );
        }
    }
    println!("  (never even listed: untagged servers and floating IPs, which the API filters by tag,");
    println!("   and other projects' resources, the external and shared networks among them)\n");
    println!("Leftover metrics (what Prometheus scrapes at /metrics):");
    for line in metrics.render().lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("cloud_janitor_leftover_resources")
                || l.starts_with("cloud_janitor_deletes_total")
                || l.starts_with("cloud_janitor_conflicts_requeued_total")
                || l.starts_with("cloud_janitor_passes_total"))
    }) {
        println!("  {line}");
    }
    if let Some(server) = server {
        println!("\nStill serving /metrics; interrupt (Ctrl-C) to stop.");
        server
            .await
            .context("metrics server task")?
            .context("metrics server")?;
    }
    cloud.sim.shutdown();
    cluster.sim.shutdown();
    std::fs::remove_dir_all(&directory).ok();
    Ok(ExitCode::SUCCESS)
}
