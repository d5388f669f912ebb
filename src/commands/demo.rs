//! `cloud-janitor demo`: starts the simulated OpenStack and Proxmox VE seeded with CI leftovers,
//! shows the plan, cleans them with a live display, shows the report and explains why one resource
//! stayed; a second pass then reports an untagged suspected leak; last, what survived and the
//! leftover metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use super::explain::explain_in;
use super::{CommandError, Exit};
use crate::daemon;
use crate::demo::{
    demo_janitor, inject_demo_conflicts, progress_printer, start_openstack, start_proxmox,
    IDLE_FLOATING_IP_HOURS,
};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::pass::Mode;
use crate::report;
use crate::shutdown::shutdown_token;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also serve /metrics here during the pass and after it, until interrupted.
    #[arg(long)]
    pub serve_metrics: Option<SocketAddr>,
}

/// The metric families the demo shows at the end.
const SHOWN_METRICS: [&str; 5] = [
    "cloud_janitor_leftover_resources",
    "cloud_janitor_suspected_leaks",
    "cloud_janitor_deletes_total",
    "cloud_janitor_conflicts_requeued_total",
    "cloud_janitor_passes_total",
];

/// The resource the demo explains: a tagged security group an untagged port still uses.
const EXPLAINED: &str = "ci-job-3-sg";

pub async fn run(args: Args) -> Result<Exit, CommandError> {
    let metrics = Arc::new(Metrics::new());
    let directory = std::env::temp_dir().join(format!("cloud-janitor-demo-{}", std::process::id()));
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let cloud = start_openstack(any_port, directory.join("clouds.yaml"), false)
        .await
        .map_err(CommandError::io("cannot start the simulated OpenStack"))?;
    let cluster = start_proxmox(any_port, directory.join("proxmox-token-secret"), false, false)
        .await
        .map_err(CommandError::io("cannot start the simulated Proxmox VE"))?;
    println!(
        "Simulated OpenStack at {} seeded with the leftovers of four interrupted CI jobs",
        cloud.sim.url()
    );
    println!("(servers on ports, volumes attached, routers with interfaces and a floating IP, security groups in use,");
    println!(
        " a locked server, an Octavia load balancer whose VIP port holds its job's network; untagged resources, the"
    );
    println!(
        " default security group and shared networks must survive; an untagged floating IP idle for {IDLE_FLOATING_IP_HOURS} hours)"
    );
    println!(
        "Simulated Proxmox VE at {} with CI guests (one wedged, one held by a backup), a protected",
        cluster.sim.url()
    );
    println!("guest, a template, untagged guests and orphan disks\n");
    let janitor = demo_janitor(&cloud, Some(&cluster), metrics.clone()).map_err(CommandError::Demo)?;
    let cancel = shutdown_token();
    let server = match args.serve_metrics {
        Some(listen) => {
            let readiness = daemon::Readiness::default();
            readiness.set_ready(true);
            let (address, serve) = daemon::serve_metrics(listen, metrics.clone(), readiness, cancel.clone())
                .await
                .map_err(CommandError::io(format!("cannot listen on {listen}")))?;
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
    for line in inject_demo_conflicts(&cloud.sim) {
        println!("  - {line}");
    }
    println!();
    println!("Pass 1:");
    let result = janitor.run_pass(cancel.clone(), Some(progress_printer())).await;
    println!("\nReport:\n{}", result.render_table());
    println!("Why is {EXPLAINED} still there? `cloud-janitor explain {EXPLAINED}`:\n");
    let (planned, explained) = explain_in(&janitor, Mode::Delete, None, EXPLAINED).await;
    for explanation in explained {
        for line in explanation.render_text(planned.judged).lines() {
            println!("  {line}");
        }
    }
    println!("\nPass 2 (the next tick of the schedule): what stayed stays, and the untagged floating IP,");
    println!("idle in both passes and older than leak_min_age (24h), is now a suspected leak (report-only):");
    let second = janitor.run_pass(cancel.clone(), None).await;
    println!("\nReport:\n{}", second.render_table());
    println!("Untouched (not selected), still there:");
    for item in &second.items {
        if let Outcome::Skipped(verdict) = &item.status {
            let name = if item.name.is_empty() {
                &item.key.id
            } else {
                &item.name
            };
            println!(
                "  {:<14} {:<16} {:<36} {}",
                item.key.cloud,
                item.key.kind.as_str(),
                name,
                verdict.describe()
            );
        }
    }
    println!(
        "  (never even listed: other projects' resources, the external and shared networks among them)\n"
    );
    println!("Leftover metrics (what Prometheus scrapes at /metrics):");
    for line in metrics
        .render()
        .lines()
        .filter(|l| SHOWN_METRICS.iter().any(|name| l.starts_with(name)))
    {
        println!("  {line}");
    }
    if let Some(server) = server {
        println!("\nStill serving /metrics; interrupt (Ctrl-C) to stop.");
        match server.await {
            Ok(served) => served.map_err(CommandError::io("metrics server"))?,
            Err(error) => tracing::error!(%error, "the metrics server task ended abnormally"),
        }
    }
    cloud.sim.shutdown();
    cluster.sim.shutdown();
    std::fs::remove_dir_all(&directory).ok();
    Ok(Exit::Clean)
}
