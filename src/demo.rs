//! `cloud-janitor demo` and `simulate`: the simulated clouds seeded with what interrupted CI jobs
//! leave behind, and a ready configuration pointing at them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_janitor_sim::faults::FaultRule;
use cloud_janitor_sim::openstack::{OctaviaTimings, OpenStackSim, Seeded, SeededLoadBalancerJob, SimConfig};
use cloud_janitor_sim::proxmox::{ProxmoxSim, ProxmoxSimConfig};

use crate::config::{CloudSpec, ConcurrencyConfig, ProviderSpec, WaitConfig};
use crate::events::{Event, EventSink};
use crate::history::HistoryStore;
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::pass::{Cloud, Janitor, PassSettings};
use crate::policy::RetryPolicy;
use crate::provider::openstack::OpenStackSettings;
use crate::provider::proxmox::config::ProxmoxSettings;
use crate::selection::{SelectionConfig, Selector};
use crate::setup::build_cloud;

/// The tag the simulator's CI leftovers carry.
pub const DEMO_TAG: &str = cloud_janitor_sim::openstack::CI_TAG;

/// The selection the demo and `simulate`'s config use: the CI tag, plus names for untaggable kinds.
pub fn demo_selection() -> SelectionConfig {
    SelectionConfig {
        tags_all: vec![DEMO_TAG.to_string()],
        untaggable_name_pattern: Some(format!("^{DEMO_TAG}-")),
        ..SelectionConfig::default()
    }
}

/// Writes `text` to `path` atomically, so a reader polling for the file never sees half of it.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

/// A janitor config for the simulated clouds, as `simulate --config-out` writes it.
pub fn config_text(clouds_yaml: &Path, listen: &str, cluster: Option<&DemoCluster>) -> String {
    let proxmox = cluster.map_or_else(String::new, |cluster| {
        let ca_file = cluster
            .ca_file
            .as_ref()
            .map_or_else(String::new, |path| format!("ca_file = \"{}\"\n", path.display()));
        format!(
            "\n[[clouds]]\nname = \"sim-proxmox\"\ntype = \"proxmox\"\nurl = \"{}\"\ntoken_id = \"{}\"\n\
             token_secret_file = \"{}\"\n{ca_file}poll_interval = \"200ms\"\n\n[clouds.select]\n\
             tags_all = [\"{PROXMOX_DEMO_TAG}\"]\nuntaggable_name_pattern = \"{PROXMOX_ORPHAN_DISKS}\"\n",
            cluster.sim.url(),
            cluster.sim.token_id(),
            cluster.token_secret_file.display()
        )
    });
    let openstack = format!(
        "# Written by `cloud-janitor simulate`: cleans the simulated cloud's CI leftovers.\n\
         schedule = \"*/10 * * * * *\"   # sec min hour day-of-month month day-of-week\n\
         listen = \"{listen}\"\n\
         pass_timeout = \"5m\"\n\n\
         [waits]\nbusy_timeout = \"5s\"\npoll_interval = \"200ms\"\n\n\
         [[clouds]]\nname = \"sim\"\ntype = \"openstack\"\ncloud = \"sim\"\nclouds_yaml = \"{}\"\n\n\
         [clouds.select]\ntags_all = [\"{DEMO_TAG}\"]\nuntaggable_name_pattern = \"^{DEMO_TAG}-\"\n",
        clouds_yaml.display()
    );
    format!("{openstack}{proxmox}")
}

/// Prints a line per executor event worth watching, with the time since the pass started.
pub fn progress_printer() -> Arc<dyn EventSink> {
    let started = Instant::now();
    Arc::new(move |event: &Event| {
        let at = started.elapsed().as_secs_f64();
        let line = match event {
            Event::Attempted { key, .. } => format!("[{at:6.2}s] deleting   {key}"),
            Event::Requeued {
                key, after, error, ..
            } => {
                format!(
                    "[{at:6.2}s] requeued   {key} in {:.1}s: {error}",
                    after.as_secs_f64()
                )
            }
            Event::Retrying { .. } | Event::ConcurrencyChanged { .. } => return,
            Event::Finished { key, outcome, .. } => match outcome {
                Outcome::Deleted => format!("[{at:6.2}s] deleted    {key}"),
                Outcome::AlreadyGone => format!("[{at:6.2}s] was gone   {key}"),
                Outcome::RemovedWithOwner => format!("[{at:6.2}s] went with its owner: {key}"),
                Outcome::Left(reason) => format!("[{at:6.2}s] LEFT       {key}: {reason}"),
                Outcome::WouldDelete | Outcome::Skipped(_) => return,
            },
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    })
}

/// How long the seeded untagged floating IP without a port has been idle: past the default
/// `leak_min_age` (24h), so two passes make it a suspected leak.
pub const IDLE_FLOATING_IP_HOURS: i64 = 30;

/// A started, seeded simulated OpenStack, with its clouds.yaml on disk.
pub struct DemoCloud {
    pub sim: OpenStackSim,
    pub clouds_yaml: PathBuf,
    /// What the seed made (`None` when started empty): tests check survivors against it.
    pub seeded: Option<Seeded>,
    /// The CI job with a load balancer the seed adds (`None` when started empty).
    pub load_balancer_job: Option<SeededLoadBalancerJob>,
    /// The untagged floating IP with no port the seed adds, a suspected leak after two passes.
    pub idle_floating_ip: Option<String>,
}

/// Starts the simulated OpenStack on `listen`, seeds it unless `empty` (the CI leftovers, a job's
/// load balancer, an idle untagged floating IP), and writes its clouds.yaml.
pub async fn start_openstack(
    listen: std::net::SocketAddr,
    clouds_yaml: PathBuf,
    empty: bool,
) -> std::io::Result<DemoCloud> {
    let config = SimConfig {
        server_delete_delay: Duration::from_millis(400),
        volume_delete_delay: Duration::from_millis(300),
        octavia: Some(OctaviaTimings {
            provision_delay: Duration::from_millis(500),
            delete_delay: Duration::from_millis(500),
        }),
        ..SimConfig::default()
    };
    let sim = OpenStackSim::start(listen, config).await?;
    let (seeded, load_balancer_job, idle_floating_ip) = if empty {
        (None, None, None)
    } else {
        let seeded = sim.seed_ci_leftovers();
        let load_balancer_job = sim
            .seed_load_balancer_job()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let idle = sim
            .seed_idle_floating_ip(chrono::Duration::hours(IDLE_FLOATING_IP_HOURS))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        (Some(seeded), Some(load_balancer_job), Some(idle))
    };
    write_atomically(&clouds_yaml, &sim.clouds_yaml())?;
    Ok(DemoCloud {
        sim,
        clouds_yaml,
        seeded,
        load_balancer_job,
        idle_floating_ip,
    })
}

/// The tag the simulated Proxmox VE's CI guests carry.
pub const PROXMOX_DEMO_TAG: &str = "ci-janitor-test";

/// CI jobs in the simulated cluster use vmids 990-999: orphan disks of that range are leftovers.
pub const PROXMOX_ORPHAN_DISKS: &str = "^vm-99[0-9]-disk-";

/// A started, seeded simulated Proxmox VE cluster, with its API token secret in a file.
pub struct DemoCluster {
    pub sim: ProxmoxSim,
    pub token_secret_file: PathBuf,
    /// The PEM certificate to trust, `proxmox-ca.pem` beside the token secret, when serving HTTPS.
    pub ca_file: Option<PathBuf>,
}

/// Starts the simulated Proxmox VE on `listen`, seeds it unless `empty`, and writes its API token
/// secret to `token_secret_file`. With `tls` it serves HTTPS with a fresh self-signed certificate
/// (clients such as proxmoxer only speak HTTPS) and writes that certificate to `proxmox-ca.pem` in
/// the same directory; otherwise plain HTTP.
pub async fn start_proxmox(
    listen: std::net::SocketAddr,
    token_secret_file: PathBuf,
    empty: bool,
    tls: bool,
) -> std::io::Result<DemoCluster> {
    let config = ProxmoxSimConfig {
        tls,
        ..ProxmoxSimConfig::default()
    };
    let sim = ProxmoxSim::start(listen, config).await?;
    if !empty {
        sim.seed_ci_leftovers();
    }
    let ca_file = match sim.ca_pem() {
        Some(pem) => {
            let path = token_secret_file.with_file_name("proxmox-ca.pem");
            write_atomically(&path, &pem)?;
            Some(path)
        }
        None => None,
    };
    write_atomically(&token_secret_file, &sim.token_secret())?;
    Ok(DemoCluster {
        sim,
        token_secret_file,
        ca_file,
    })
}

fn proxmox_settings(cluster: &DemoCluster) -> Result<ProxmoxSettings, String> {
    let settings: ProxmoxSettings = serde_json::from_value(serde_json::json!({
        "url": cluster.sim.url(),
        "token_id": cluster.sim.token_id(),
        "token_secret_file": cluster.token_secret_file,
        "ca_file": cluster.ca_file,
        "poll_interval": "100ms",
        "task_timeout": "20s",
    }))
    .map_err(|e| e.to_string())?;
    settings.validate().map_err(|e| e.to_string())?;
    Ok(settings)
}

fn spec(name: &str, selection: SelectionConfig, provider: ProviderSpec) -> Result<CloudSpec, String> {
    let selector = Selector::new(&selection).map_err(|e| e.to_string())?;
    Ok(CloudSpec {
        name: name.to_string(),
        selector,
        provider,
    })
}

/// The janitor the demo runs: the simulated OpenStack and, when given, the simulated Proxmox VE;
/// short waits so the locked server does not hold the demo up for minutes.
pub fn demo_janitor(
    cloud: &DemoCloud,
    cluster: Option<&DemoCluster>,
    metrics: Arc<Metrics>,
) -> Result<Janitor, crate::provider::ProviderError> {
    let config_error = crate::provider::ProviderError::Config;
    let openstack = ProviderSpec::OpenStack(OpenStackSettings::from_clouds_yaml(
        "sim",
        cloud.clouds_yaml.clone(),
    ));
    let mut specs = vec![spec("demo-openstack", demo_selection(), openstack).map_err(config_error)?];
    if let Some(cluster) = cluster {
        let selection = SelectionConfig {
            tags_all: vec![PROXMOX_DEMO_TAG.to_string()],
            untaggable_name_pattern: Some(PROXMOX_ORPHAN_DISKS.to_string()),
            ..SelectionConfig::default()
        };
        let proxmox = ProviderSpec::Proxmox(Box::new(proxmox_settings(cluster).map_err(config_error)?));
        specs.push(spec("demo-proxmox", selection, proxmox).map_err(config_error)?);
    }
    let settings = PassSettings {
        mode: crate::pass::Mode::Delete,
        pass_timeout: Duration::from_secs(120),
        max_deletes_per_pass: 500,
        concurrency: ConcurrencyConfig::default(),
        retry: RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        },
        waits: WaitConfig {
            busy_timeout: Duration::from_secs(3),
            delete_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(150),
        },
    };
    let env = std::collections::HashMap::new();
    let clouds: Vec<Cloud> = specs
        .iter()
        .map(|spec| build_cloud(spec, settings.retry, metrics.clone(), &env))
        .collect::<Result<_, _>>()?;
    Ok(Janitor::new(
        clouds,
        settings,
        metrics,
        Arc::new(HistoryStore::in_memory("the demo keeps none")),
    ))
}

/// The conflicts a real cloud produces under load, injected so the demo shows requeues: Neutron
/// answers 409 `SecurityGroupInUse` twice (as while Nova is still unplugging a port), and Cinder
/// answers 400 "Invalid volume" once (as while a detach is still in flight).
pub fn inject_demo_conflicts(sim: &OpenStackSim) -> Vec<String> {
    let mut neutron = FaultRule::status("DELETE", "/security-groups/", 409, 2);
    neutron.body = Some(
        r#"{"NeutronError": {"type": "SecurityGroupInUse", "message": "Security Group is in use by a port being unplugged.", "detail": ""}}"#
            .to_string(),
    );
    let mut cinder = FaultRule::status("DELETE", "/volumes/", 400, 1);
    cinder.body = Some(
        r#"{"badRequest": {"code": 400, "message": "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or be disassociated from snapshots after volume transfer."}}"#
            .to_string(),
    );
    sim.faults().add(neutron);
    sim.faults().add(cinder);
    vec![
        "Neutron answers the next 2 security group deletes with 409 SecurityGroupInUse".to_string(),
        "Cinder answers the next volume delete with 400 \"Invalid volume\" (in use)".to_string(),
    ]
}
