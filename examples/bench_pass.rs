//! Benchmark: how close a pass comes to its floor, the longest chain of dependent deletes times the
//! API's latency. Runs against the simulated OpenStack with injected per-request latency and
//! Nova/Cinder delete times like a real cloud's, and prints figures; it asserts nothing.
//!
//! `cargo run --release --example bench_pass [LATENCY_MS] [SEED_ROUNDS]`
// A benchmark: a failed setup step ends it with a message, as a test would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_janitor::config::{CloudSpec, ConcurrencyConfig, ProviderSpec, WaitConfig};
use cloud_janitor::demo::demo_selection;
use cloud_janitor::history::HistoryStore;
use cloud_janitor::metrics::Metrics;
use cloud_janitor::pass::{Janitor, PassSettings};
use cloud_janitor::planner::Plan;
use cloud_janitor::policy::RetryPolicy;
use cloud_janitor::provider::openstack::OpenStackSettings;
use cloud_janitor::selection::Selector;
use cloud_janitor::setup::build_cloud;
use cloud_janitor_sim::faults::FaultRule;
use cloud_janitor_sim::openstack::{OpenStackSim, SimConfig};
use petgraph::Direction;

/// Deletes on the longest chain of the plan (each waits for the one before).
fn longest_chain(plan: &Plan) -> usize {
    let mut depth: HashMap<_, usize> = HashMap::new();
    for &node in &plan.order {
        let before = plan
            .graph
            .neighbors_directed(node, Direction::Incoming)
            .filter_map(|p| depth.get(&p))
            .max()
            .copied()
            .unwrap_or(0);
        depth.insert(node, before + 1);
    }
    depth.values().max().copied().unwrap_or(0)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn run(
    latency: Duration,
    rounds: usize,
    concurrency: ConcurrencyConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    let delete_delay = Duration::from_secs(1);
    let sim = OpenStackSim::start(
        "127.0.0.1:0".parse()?,
        SimConfig {
            server_delete_delay: delete_delay,
            volume_delete_delay: delete_delay,
            ..SimConfig::default()
        },
    )
    .await?;
    for _ in 0..rounds {
        // The locked server would make the pass wait out busy_timeout: the benchmark measures
        // speed, so it is unlocked. The in-use security group is held at plan time and costs nothing.
        let seeded = sim.seed_ci_leftovers();
        sim.set_server_locked(&seeded.locked_server, false)?;
    }
    let dir = std::env::temp_dir().join(format!("cj-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let clouds_yaml = dir.join("clouds.yaml");
    std::fs::write(&clouds_yaml, sim.clouds_yaml())?;
    sim.faults().add(FaultRule::latency("/", latency));

    let metrics = Arc::new(Metrics::new());
    let selection = demo_selection();
    let spec = CloudSpec {
        name: "bench".into(),
        selector: Selector::new(&selection)?,
        provider: ProviderSpec::OpenStack(OpenStackSettings::from_clouds_yaml("sim", clouds_yaml)),
    };
    let cloud = build_cloud(&spec, RetryPolicy::default(), metrics.clone(), &HashMap::new())?;
    let settings = PassSettings {
        mode: cloud_janitor::pass::Mode::Delete,
        pass_timeout: Duration::from_secs(600),
        max_deletes_per_pass: 10_000,
        concurrency,
        retry: RetryPolicy::default(),
        waits: WaitConfig {
            busy_timeout: Duration::from_secs(2),
            delete_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
        },
    };
    let janitor = Janitor::new(
        vec![cloud],
        settings,
        metrics,
        Arc::new(HistoryStore::in_memory("a benchmark keeps none")),
    );
    let chain = longest_chain(&janitor.plan(false).await.plan);
    sim.clear_request_log();
    let started = Instant::now();
    let report = janitor
        .run_pass(tokio_util::sync::CancellationToken::new(), None)
        .await;
    let elapsed = started.elapsed();
    let log = sim.request_log();
    let lists = log
        .iter()
        .filter(|(m, p, _)| m == "GET" && (p.contains("?") || p.ends_with("/detail")))
        .count();
    let deleted = report
        .items
        .iter()
        .filter(|i| matches!(i.status, cloud_janitor::outcome::Outcome::Deleted))
        .count();
    // Floor: each delete on the chain needs a status read and a delete (two round trips), and the
    // asynchronous ones on it (server, volume) their delete time: at least one server then one volume.
    let floor = latency * 2 * chain as u32 + delete_delay * 2;
    println!(
        "latency {:>4} ms  concurrency {:>2}/{:>2}  resources deleted {:>4}  left {:>2}  longest chain {:>2}  \
         pass {:>6.2} s  floor ~{:>5.2} s  ratio {:>4.2}  requests {:>4} (listings {:>2})",
        latency.as_millis(),
        concurrency.global,
        concurrency.per_cloud,
        deleted,
        report.left().count(),
        chain,
        elapsed.as_secs_f64(),
        floor.as_secs_f64(),
        elapsed.as_secs_f64() / floor.as_secs_f64(),
        log.len(),
        lists,
    );
    sim.shutdown();
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let latency = Duration::from_millis(args.next().and_then(|a| a.parse().ok()).unwrap_or(50));
    let rounds = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    println!("cloud-janitor pass benchmark: simulated OpenStack, Nova/Cinder deletes take 1 s, every request +latency");
    println!("(the in-use security group and what it holds stay, as they should)");
    for concurrency in [
        ConcurrencyConfig {
            global: 1,
            per_cloud: 1,
        },
        ConcurrencyConfig::default(),
    ] {
        run(latency, rounds, concurrency).await?;
    }
    run(latency, rounds * 4, ConcurrencyConfig::default()).await?;
    println!("peak RSS {} KiB", peak_rss_kib().unwrap_or(0));
    Ok(())
}
