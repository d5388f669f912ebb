//! `cloud-janitor bench` (feature `sim`): one pass against the simulated clouds with a fixed latency
//! per request and asynchronous deletes that take time, next to `openstack project cleanup` on the
//! same scenario, and one table of what each did: requests against the minimum, wall time against
//! the bound the API sets, peak memory, CPU, and what was left.
//!
//! The janitor runs as a child process (this binary's `once`), so its memory and CPU are its own,
//! not the simulators'; both are read from `/proc` while it runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cloud_janitor_sim::faults::FaultRule;
use cloud_janitor_sim::openstack::{JobsSeeded, OpenStackSim, SimConfig};
use cloud_janitor_sim::proxmox::{GuestSpec, ProxmoxSim, ProxmoxSimConfig};

use crate::cputime::stat_cpu_seconds;

/// What can stop the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("seeding the simulator: {0}")]
    Seed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub latency: Duration,
    /// Nova's and Cinder's delete time.
    pub async_delay: Duration,
    /// Each Proxmox task's (stop, destroy) duration.
    pub task_duration: Duration,
    /// OpenStack scenarios: this many interrupted CI jobs each.
    pub jobs: Vec<usize>,
    /// The Proxmox scenario's running tagged VMs (0: none).
    pub guests: usize,
    /// The janitor's concurrency per cloud (where an adaptive limit starts).
    pub per_cloud: usize,
    /// Run each janitor scenario with the adaptive limit too.
    pub adaptive_too: bool,
    /// Also run the smallest OpenStack scenario against an API that answers 429 above this many
    /// requests in flight: with the fixed limit, with four times it, and adaptive.
    pub throttle: Option<u32>,
    /// `openstack` (python-openstackclient) to run beside the janitor on the smallest OpenStack
    /// scenario; none to skip it.
    pub peer: Option<PathBuf>,
    /// Where configs, logs and reports go.
    pub directory: PathBuf,
}

/// One row of the table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub scenario: String,
    pub cleaner: String,
    pub resources: usize,
    pub requests: usize,
    pub minimum: usize,
    pub wall: f64,
    pub bound: f64,
    pub peak_rss_kib: u64,
    pub cpu: f64,
    /// The janitor's own figures from its metrics: discover, plan_cpu, execute.
    pub phases: BTreeMap<String, f64>,
    /// What was left of the scenario, by kind.
    pub left: BTreeMap<String, usize>,
    pub note: String,
}

/// What a child process cost: wall time, peak RSS and CPU, read from `/proc` every 20 ms.
struct Measured {
    wall: f64,
    peak_rss_kib: u64,
    cpu: f64,
}

async fn run_measured(mut command: tokio::process::Command, log: &Path) -> Result<Measured, BenchError> {
    let out = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
    let err = out.try_clone().map_err(io("duplicating a log file"))?;
    command
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .stdin(Stdio::null());
    let started = Instant::now();
    let mut child = command.spawn().map_err(io("starting a cleaner"))?;
    let pid = child.id().unwrap_or(0);
    let (mut peak_rss_kib, mut cpu) = (0, 0.0);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            status = child.wait() => {
                status.map_err(io("waiting for a cleaner"))?;
                break;
            }
            _ = tick.tick() => {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    peak_rss_kib = peak_rss_kib.max(status_kib(&status, "VmHWM:").unwrap_or(0));
                }
                if let Some(seconds) = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(stat_cpu_seconds) {
                    cpu = seconds;
                }
            }
        }
    }
    Ok(Measured {
        wall: started.elapsed().as_secs_f64(),
        peak_rss_kib,
        cpu,
    })
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How the janitor's per-cloud limit is set for one run.
#[derive(Debug, Clone, Copy)]
struct Limit {
    per_cloud: usize,
    adaptive: bool,
}

impl Limit {
    fn label(self) -> String {
        if self.adaptive {
            format!("AIMD from {}", self.per_cloud)
        } else {
            format!("fixed {}", self.per_cloud)
        }
    }
}

/// The janitor's config for one scenario.
fn janitor_config(settings: &BenchSettings, limit: Limit, clouds: &str) -> String {
    format!(
        "schedule = \"0 0 0 1 1 *\"\nlisten = \"127.0.0.1:0\"\npass_timeout = \"30m\"\n\
         max_deletes_per_pass = 1000000\n\n[concurrency]\nglobal = 64\nper_cloud = {}\nadaptive = {}\n\
         per_cloud_min = 2\nper_cloud_max = 32\n\n[waits]\nbusy_timeout = \"30s\"\ndelete_timeout = \"5m\"\n\
         poll_interval = \"{}ms\"\n\n{clouds}",
        limit.per_cloud,
        limit.adaptive,
        settings.async_delay.as_millis().max(100) / 2,
    )
}

/// The allocator settings the container image runs the janitor with (`ENV GLIBC_TUNABLES` in the
/// Dockerfile): the janitor measured here runs as it is shipped.
pub const IMAGE_GLIBC_TUNABLES: &str = "glibc.malloc.mmap_threshold=131072:glibc.malloc.arena_max=2";

/// This binary as a janitor child, logging warnings only, with the image's allocator settings
/// unless `GLIBC_TUNABLES` is set here (set it empty to measure glibc's defaults).
fn janitor_command() -> Result<tokio::process::Command, BenchError> {
    let exe = std::env::current_exe().map_err(io("finding this binary"))?;
    let mut command = tokio::process::Command::new(exe);
    command.env("CLOUD_JANITOR_LOG", "warn");
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        command.env("GLIBC_TUNABLES", IMAGE_GLIBC_TUNABLES);
    }
    Ok(command)
}

/// Runs `cloud-janitor once` with `limit` on `clouds`; its config, log and metrics land beside
/// the simulator's request log, which `log` reads when it is over.
async fn run_janitor(
    settings: &BenchSettings,
    limit: Limit,
    clouds: &str,
    name: &str,
    log: impl FnOnce() -> Vec<(String, String, u16)>,
) -> Result<(Measured, BTreeMap<String, f64>, Vec<(String, String, u16)>), BenchError> {
    let directory = settings.directory.as_path();
    let config_text = janitor_config(settings, limit, clouds);
    let config = directory.join(format!("{name}.toml"));
    std::fs::write(&config, config_text).map_err(io(format!("writing {}", config.display())))?;
    let metrics = directory.join(format!("{name}.prom"));
    let mut command = janitor_command()?;
    command
        .arg("once")
        .arg("--config")
        .arg(&config)
        .arg("--metrics-file")
        .arg(&metrics);
    let measured = run_measured(command, &directory.join(format!("{name}.log"))).await?;
    let text = std::fs::read_to_string(&metrics).unwrap_or_default();
    let phases = text
        .lines()
        .filter_map(|line| line.strip_prefix("cloud_janitor_last_pass_phase_seconds{phase=\""))
        .filter_map(|rest| {
            let (phase, value) = rest.split_once("\"} ")?;
            Some((phase.to_string(), value.trim().parse().ok()?))
        })
        .collect();
    let log = log();
    keep_log(directory, name, &log);
    Ok((measured, phases, log))
}

/// Per-kind counts of `after` above `before`.
fn left_over(
    before: &BTreeMap<&'static str, usize>,
    after: &BTreeMap<&'static str, usize>,
) -> BTreeMap<String, usize> {
    after
        .iter()
        .filter_map(|(kind, count)| {
            let extra = count.saturating_sub(before.get(kind).copied().unwrap_or(0));
            (extra > 0).then(|| ((*kind).to_string(), extra))
        })
        .collect()
}

/// Writes that one job of the OpenStack scenario needs at least: a delete each for the server,
/// floating IP, port, router interface, subnet, network, security group, volume and keypair, and two
/// for the router (clear its gateway, delete it). Nova's own port goes with its server.
const WRITES_PER_JOB: usize = 11;

/// The longest chain of one job, in requests that must follow each other, and the asynchronous
/// deletes on it: floating IP, server (then Nova's delete), port, router interface, subnet, network.
const CHAIN_REQUESTS: u32 = 6;
const CHAIN_ASYNC: u32 = 1;

async fn start_openstack(settings: &BenchSettings) -> Result<OpenStackSim, BenchError> {
    let config = SimConfig {
        server_delete_delay: settings.async_delay,
        volume_delete_delay: settings.async_delay,
        token_ttl: Duration::from_secs(24 * 3600),
        ..SimConfig::default()
    };
    let sim = OpenStackSim::start(([127, 0, 0, 1], 0).into(), config)
        .await
        .map_err(io("starting the simulated OpenStack"))?;
    sim.faults().add(FaultRule::latency("/", settings.latency));
    Ok(sim)
}

/// Seeds `jobs` jobs; returns what existed before them (the external networks included) too.
fn seed(sim: &OpenStackSim, jobs: usize) -> Result<(BTreeMap<&'static str, usize>, JobsSeeded), BenchError> {
    // No jobs: only the external network they need, which is not theirs to clean.
    sim.seed_ci_jobs(0).map_err(|e| BenchError::Seed(e.to_string()))?;
    let before = sim.census();
    let seeded = sim
        .seed_ci_jobs(jobs)
        .map_err(|e| BenchError::Seed(e.to_string()))?;
    Ok((before, seeded))
}

/// Keeps the simulator's request log of a run beside its other files.
fn keep_log(directory: &Path, name: &str, log: &[(String, String, u16)]) {
    let text: String = log.iter().map(|(m, p, s)| format!("{m} {p} {s}\n")).collect();
    let _ = std::fs::write(directory.join(format!("{name}.requests")), text);
}

/// The bound a pass cannot beat: the longest chain, or `minimum` requests through `concurrency`.
fn bound(settings: &BenchSettings, minimum: usize, concurrency: usize, chain: (u32, u32)) -> f64 {
    let latency = settings.latency.as_secs_f64();
    let chain = f64::from(chain.0) * latency + f64::from(chain.1) * settings.async_delay.as_secs_f64();
    let throughput = minimum as f64 * latency / concurrency.max(1) as f64;
    chain.max(throughput)
}

/// One OpenStack scenario cleaned by the janitor, against an API that throttles above `throttle`
/// requests in flight when set.
async fn openstack_janitor(
    settings: &BenchSettings,
    jobs: usize,
    limit: Limit,
    throttle: Option<u32>,
) -> Result<Row, BenchError> {
    let sim = start_openstack(settings).await?;
    if let Some(max) = throttle {
        sim.faults().add(FaultRule::throttle("/", max));
    }
    let (before, seeded) = seed(&sim, jobs)?;
    let clouds_yaml = settings.directory.join(format!("clouds-{jobs}.yaml"));
    std::fs::write(&clouds_yaml, sim.clouds_yaml()).map_err(io("writing clouds.yaml"))?;
    let clouds = format!(
        "[[clouds]]\nname = \"bench\"\ntype = \"openstack\"\ncloud = \"sim\"\nclouds_yaml = \"{}\"\n\n\
         [clouds.select]\ntags_all = [\"ci-job\"]\nuntaggable_name_pattern = \"^ci-job-\"\n",
        clouds_yaml.display()
    );
    sim.clear_request_log();
    let name = format!(
        "openstack-{jobs}-{}{}-{}",
        if limit.adaptive { "aimd" } else { "fixed" },
        limit.per_cloud,
        throttle.map_or_else(|| "open".to_string(), |max| format!("throttled{max}"))
    );
    let (measured, phases, log) = run_janitor(settings, limit, &clouds, &name, || sim.request_log()).await?;
    let listings = log
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.contains("limit="))
        .count();
    let tokens = log
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.contains("/auth/tokens"))
        .count();
    let minimum = WRITES_PER_JOB * jobs + listings + tokens;
    let throttled = log.iter().filter(|(_, _, status)| *status == 429).count();
    let row = Row {
        scenario: match throttle {
            None => format!("OpenStack, {jobs} jobs"),
            Some(max) => format!("OpenStack, {jobs} jobs, 429 above {max} in flight"),
        },
        cleaner: format!("cloud-janitor ({})", limit.label()),
        resources: seeded.resources,
        requests: log.len(),
        minimum,
        wall: measured.wall,
        bound: bound(
            settings,
            minimum,
            settings.per_cloud,
            (CHAIN_REQUESTS, CHAIN_ASYNC),
        ),
        peak_rss_kib: measured.peak_rss_kib,
        cpu: measured.cpu,
        phases,
        left: left_over(&before, &sim.census()),
        note: if throttled > 0 {
            format!("{throttled} answered 429")
        } else {
            String::new()
        },
    };
    sim.shutdown();
    Ok(row)
}

/// The same scenario cleaned by `openstack project cleanup --auto-approve --auth-project`.
async fn openstack_peer(settings: &BenchSettings, jobs: usize, openstack: &Path) -> Result<Row, BenchError> {
    let sim = start_openstack(settings).await?;
    let (before, seeded) = seed(&sim, jobs)?;
    let clouds_yaml = settings.directory.join(format!("clouds-peer-{jobs}.yaml"));
    std::fs::write(&clouds_yaml, sim.clouds_yaml()).map_err(io("writing clouds.yaml"))?;
    sim.clear_request_log();
    let mut command = tokio::process::Command::new(openstack);
    command
        .args([
            "--os-cloud",
            "sim",
            "project",
            "cleanup",
            "--auto-approve",
            "--auth-project",
        ])
        .env("OS_CLIENT_CONFIG_FILE", &clouds_yaml);
    let measured = run_measured(command, &settings.directory.join(format!("peer-{jobs}.log"))).await?;
    let log = sim.request_log();
    keep_log(&settings.directory, &format!("peer-{jobs}"), &log);
    let mut refusals: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, _, status) in log.iter().filter(|(_, _, status)| *status >= 400) {
        *refusals.entry(*status).or_default() += 1;
    }
    let refusals: Vec<String> = refusals
        .iter()
        .map(|(status, count)| format!("{count} answered {status}"))
        .collect();
    let unserved = sim.unserved_requests().len();
    let row = Row {
        scenario: format!("OpenStack, {jobs} jobs"),
        cleaner: "openstack project cleanup".to_string(),
        resources: seeded.resources,
        requests: log.len(),
        minimum: 0,
        wall: measured.wall,
        bound: 0.0,
        peak_rss_kib: measured.peak_rss_kib,
        cpu: measured.cpu,
        phases: BTreeMap::new(),
        left: left_over(&before, &sim.census()),
        note: format!("{}; {unserved} to URLs not served", refusals.join(", ")),
    };
    sim.shutdown();
    Ok(row)
}

/// `guests` running tagged VMs with one disk each, cleaned by the janitor.
async fn proxmox_janitor(settings: &BenchSettings, guests: usize, limit: Limit) -> Result<Row, BenchError> {
    let config = ProxmoxSimConfig {
        task_duration: settings.task_duration,
        tls: false,
        ..ProxmoxSimConfig::default()
    };
    let sim = ProxmoxSim::start(([127, 0, 0, 1], 0).into(), config)
        .await
        .map_err(io("starting the simulated Proxmox VE"))?;
    let first = 1000;
    for n in 0..guests {
        let vmid = first + u32::try_from(n).unwrap_or(u32::MAX - first);
        sim.add_guest(
            GuestSpec::vm(vmid, &format!("ci-bench-{vmid}"))
                .tags(&["ci-bench"])
                .running(),
        );
    }
    sim.faults().add(FaultRule::latency("/", settings.latency));
    let secret = settings.directory.join("proxmox-token-secret");
    std::fs::write(&secret, sim.token_secret()).map_err(io("writing the token secret"))?;
    let clouds = format!(
        "[[clouds]]\nname = \"bench-pve\"\ntype = \"proxmox\"\nurl = \"{}\"\ntoken_id = \"{}\"\n\
         token_secret_file = \"{}\"\npoll_interval = \"{}ms\"\n\n[clouds.select]\ntags_all = [\"ci-bench\"]\n",
        sim.url(),
        sim.token_id(),
        secret.display(),
        settings.task_duration.as_millis().max(20),
    );
    sim.clear_request_log();
    let name = format!(
        "proxmox-{guests}-{}",
        if limit.adaptive { "aimd" } else { "fixed" }
    );
    let (measured, phases, log) = run_janitor(settings, limit, &clouds, &name, || sim.request_log()).await?;
    let remaining = (0..guests)
        .filter(|n| sim.exists(first + u32::try_from(*n).unwrap_or(0)))
        .count();
    // Stop, its task, destroy, its task: four per guest; and the cluster's lists (guests, storages,
    // each storage's content).
    let storages = log
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.ends_with("/content"))
        .count();
    let minimum = 4 * guests + 2 + storages.min(8);
    let row = Row {
        scenario: format!("Proxmox, {guests} VMs"),
        cleaner: format!("cloud-janitor ({})", limit.label()),
        resources: guests,
        requests: log.len(),
        minimum,
        wall: measured.wall,
        bound: proxmox_bound(settings, minimum, guests),
        peak_rss_kib: measured.peak_rss_kib,
        cpu: measured.cpu,
        phases,
        left: if remaining > 0 {
            BTreeMap::from([("vm".to_string(), remaining)])
        } else {
            BTreeMap::new()
        },
        note: String::new(),
    };
    sim.shutdown();
    Ok(row)
}

/// The Proxmox bound: the requests through the concurrency limit, or, since a guest's stop and
/// destroy each wait for their task, every guest's two tasks through it, whichever is longer.
fn proxmox_bound(settings: &BenchSettings, minimum: usize, guests: usize) -> f64 {
    let concurrency = settings.per_cloud.max(1) as f64;
    let requests = minimum as f64 * settings.latency.as_secs_f64() / concurrency;
    let tasks = guests as f64 * 2.0 * settings.task_duration.as_secs_f64() / concurrency;
    requests.max(tasks)
}

/// Runs every scenario and returns the rows, in order.
pub async fn run(settings: &BenchSettings, progress: impl Fn(&Row)) -> Result<Vec<Row>, BenchError> {
    std::fs::create_dir_all(&settings.directory).map_err(io("creating the bench directory"))?;
    let mut rows = Vec::new();
    let fixed = Limit {
        per_cloud: settings.per_cloud,
        adaptive: false,
    };
    let adaptive = Limit {
        adaptive: true,
        ..fixed
    };
    let limits: &[Limit] = if settings.adaptive_too {
        &[fixed, adaptive]
    } else {
        &[fixed]
    };
    let mut push = |row: Row| {
        progress(&row);
        rows.push(row);
    };
    let smallest = settings.jobs.iter().copied().min();
    for &jobs in &settings.jobs {
        for &limit in limits {
            push(openstack_janitor(settings, jobs, limit, None).await?);
        }
        if let (Some(openstack), true) = (&settings.peer, Some(jobs) == smallest) {
            push(openstack_peer(settings, jobs, openstack).await?);
        }
    }
    if let (Some(max), Some(jobs)) = (settings.throttle, smallest) {
        let eager = Limit {
            per_cloud: settings.per_cloud * 4,
            adaptive: false,
        };
        for limit in [fixed, eager, adaptive] {
            push(openstack_janitor(settings, jobs, limit, Some(max)).await?);
        }
    }
    if settings.guests > 0 {
        for &limit in limits {
            push(proxmox_janitor(settings, settings.guests, limit).await?);
        }
    }
    Ok(rows)
}

/// An idle daemon's resident memory: `run` with a schedule a year away, read after `settle`.
pub async fn idle_daemon_rss_kib(directory: &Path, settle: Duration) -> Result<u64, BenchError> {
    let sim = OpenStackSim::start(([127, 0, 0, 1], 0).into(), SimConfig::default())
        .await
        .map_err(io("starting the simulated OpenStack"))?;
    let clouds_yaml = directory.join("clouds-idle.yaml");
    std::fs::write(&clouds_yaml, sim.clouds_yaml()).map_err(io("writing clouds.yaml"))?;
    let config = directory.join("idle.toml");
    let text = format!(
        "schedule = \"0 0 0 1 1 *\"\nlisten = \"127.0.0.1:0\"\n\n[[clouds]]\nname = \"idle\"\ntype = \"openstack\"\n\
         cloud = \"sim\"\nclouds_yaml = \"{}\"\n\n[clouds.select]\ntags_all = [\"ci-job\"]\n",
        clouds_yaml.display()
    );
    std::fs::write(&config, text).map_err(io("writing the idle config"))?;
    let log = std::fs::File::create(directory.join("idle.log")).map_err(io("creating idle.log"))?;
    let mut child = janitor_command()?
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(io("starting the daemon"))?;
    tokio::time::sleep(settle).await;
    let pid = child.id().unwrap_or(0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| status_kib(&status, "VmRSS:"))
        .unwrap_or(0);
    child.kill().await.ok();
    sim.shutdown();
    Ok(rss)
}

/// The table, as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | cleaner | resources | requests | minimum | req/resource | wall s | bound s | x bound | peak RSS MiB | CPU s | plan CPU s | left |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let left = if row.left.is_empty() {
            "nothing".to_string()
        } else {
            row.left
                .iter()
                .map(|(kind, count)| format!("{count} {kind}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let or_dash = |value: f64, text: String| if value > 0.0 { text } else { "-".to_string() };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {:.1} | {} | {} | {:.1} | {:.1} | {} | {}{} |",
            row.scenario,
            row.cleaner,
            row.resources,
            row.requests,
            if row.minimum > 0 {
                row.minimum.to_string()
            } else {
                "-".to_string()
            },
            row.requests as f64 / row.resources.max(1) as f64,
            row.wall,
            or_dash(row.bound, format!("{:.1}", row.bound)),
            or_dash(
                row.bound,
                format!("{:.2}", row.wall / row.bound.max(f64::EPSILON))
            ),
            row.peak_rss_kib as f64 / 1024.0,
            row.cpu,
            row.phases
                .get("plan_cpu")
                .map_or_else(|| "-".to_string(), |s| format!("{s:.2}")),
            left,
            if row.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", row.note)
            },
        );
    }
    out
}

/// Per-phase figures of the janitor's rows.
pub fn phases(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows.iter().filter(|row| !row.phases.is_empty()) {
        let phases: Vec<String> = row
            .phases
            .iter()
            .map(|(phase, s)| format!("{phase} {s:.2} s"))
            .collect();
        let _ = writeln!(out, "- {}, {}: {}", row.scenario, row.cleaner, phases.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::IMAGE_GLIBC_TUNABLES;

    #[test]
    fn the_benchmark_runs_the_janitor_with_the_images_allocator_settings() {
        let wanted = format!("ENV GLIBC_TUNABLES={IMAGE_GLIBC_TUNABLES}");
        let dockerfile = include_str!("../Dockerfile");
        assert!(
            dockerfile.lines().any(|line| line.trim() == wanted),
            "the Dockerfile has no line `{wanted}`"
        );
    }
}
