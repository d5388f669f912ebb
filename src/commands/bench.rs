//! `cloud-janitor bench`: the benchmark of `docs/BENCHMARKS.md`, against the simulated clouds.

use std::path::PathBuf;
use std::time::Duration;

use super::{CommandError, Exit};
use crate::bench::{idle_daemon_rss_kib, phases, run as run_bench, table, BenchSettings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// How long Nova and Cinder deletes take, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub async_delay_ms: u64,
    /// How long each Proxmox task (stop, destroy) runs, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub task_ms: u64,
    /// OpenStack scenarios: this many interrupted CI jobs (repeat for several).
    #[arg(long = "jobs", default_values_t = [100, 1000])]
    pub jobs: Vec<usize>,
    /// The Proxmox scenario's running tagged VMs with a disk each (0: skip it).
    #[arg(long, default_value_t = 500)]
    pub guests: usize,
    /// The janitor's calls in flight per cloud (where an adaptive limit starts).
    #[arg(long, default_value_t = 8)]
    pub per_cloud: usize,
    /// Run only with the fixed limit, not also with the adaptive one.
    #[arg(long)]
    pub fixed_only: bool,
    /// Also run the smallest OpenStack scenario against an API that answers 429 above this many
    /// requests in flight (0: skip it), with the fixed limit, four times it, and adaptive.
    #[arg(long, default_value_t = 16)]
    pub throttle_above: u32,
    /// python-openstackclient's `openstack`, run on the smallest OpenStack scenario beside the
    /// janitor (default: the one on PATH, if any).
    #[arg(long)]
    pub peer: Option<PathBuf>,
    /// Skip `openstack project cleanup`.
    #[arg(long)]
    pub no_peer: bool,
    /// Where configs, logs and metrics of each run are kept.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `openstack` on PATH.
fn openstack_on_path() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("openstack"))
            .find(|candidate| candidate.is_file())
    })
}

pub async fn run(args: Args) -> Result<Exit, CommandError> {
    let directory = args
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("cloud-janitor-bench-{}", std::process::id())));
    let peer = if args.no_peer {
        None
    } else {
        args.peer.or_else(openstack_on_path)
    };
    let settings = BenchSettings {
        latency: Duration::from_millis(args.latency_ms),
        async_delay: Duration::from_millis(args.async_delay_ms),
        task_duration: Duration::from_millis(args.task_ms),
        jobs: args.jobs,
        guests: args.guests,
        per_cloud: args.per_cloud,
        adaptive_too: !args.fixed_only,
        throttle: (args.throttle_above > 0 && !args.fixed_only).then_some(args.throttle_above),
        peer: peer.clone(),
        directory: directory.clone(),
    };
    println!(
        "cloud-janitor bench: {} ms per request, Nova and Cinder deletes {} ms, Proxmox tasks {} ms, \
         {} calls per cloud in flight; runs kept in {}",
        args.latency_ms,
        args.async_delay_ms,
        args.task_ms,
        args.per_cloud,
        directory.display()
    );
    if peer.is_none() {
        println!("(no `openstack` CLI: `openstack project cleanup` is not run)");
    }
    let rows = run_bench(&settings, |row| {
        println!(
            "  done: {}, {}: {:.1} s, {} requests",
            row.scenario, row.cleaner, row.wall, row.requests
        )
    })
    .await
    .map_err(|error| CommandError::Bench(Box::new(error)))?;
    let idle = idle_daemon_rss_kib(&directory, Duration::from_secs(3))
        .await
        .map_err(|error| CommandError::Bench(Box::new(error)))?;
    println!();
    print!("{}", table(&rows));
    println!();
    println!("Phases of each janitor pass (from its metrics):");
    print!("{}", phases(&rows));
    println!(
        "Idle daemon (`run`, before its first pass): {:.1} MiB resident",
        idle as f64 / 1024.0
    );
    Ok(Exit::Clean)
}
