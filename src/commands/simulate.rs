//! `cloud-janitor simulate`: serves the simulated OpenStack (and Proxmox VE) for any client until
//! interrupted, with a clouds.yaml and, on request, a janitor config pointing at them.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{CommandError, Exit};
use crate::demo::{config_text, start_openstack, start_proxmox, write_atomically};
use crate::shutdown::shutdown_token;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "clouds.yaml")]
    pub clouds_yaml: PathBuf,
    /// Write a cloud-janitor config for the simulated cloud here.
    #[arg(long)]
    pub config_out: Option<PathBuf>,
    /// Serve it empty (only the external network, shared network and default groups).
    #[arg(long)]
    pub empty: bool,
    /// Also serve the simulated Proxmox VE here, over HTTPS with a self-signed certificate; its
    /// token secret (`proxmox-token-secret`) and certificate (`proxmox-ca.pem`) go in files next
    /// to the clouds.yaml.
    #[arg(long)]
    pub proxmox_listen: Option<SocketAddr>,
    /// Seed this many interrupted CI jobs of the benchmark's shape (docs/BENCHMARKS.md) instead of
    /// the demo's leftovers.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// On exit, write every request served (`METHOD PATH STATUS`, `unserved` after those to URLs
    /// the simulator does not serve) to this file.
    #[arg(long)]
    pub request_log: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<Exit, CommandError> {
    let cluster = match args.proxmox_listen {
        Some(address) => {
            let secret = args.clouds_yaml.with_file_name("proxmox-token-secret");
            let cluster =
                start_proxmox(address, secret, args.empty, true)
                    .await
                    .map_err(CommandError::io(format!(
                        "cannot start the simulated Proxmox VE on {address}"
                    )))?;
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
    if let Some(path) = &args.config_out {
        // Written before the clouds.yaml, which callers wait for.
        let text = config_text(&args.clouds_yaml, "127.0.0.1:9464", cluster.as_ref());
        write_atomically(path, &text)
            .map_err(CommandError::io(format!("cannot write {}", path.display())))?;
    }
    let cloud = start_openstack(
        args.listen,
        args.clouds_yaml.clone(),
        args.empty || args.jobs.is_some(),
    )
    .await
    .map_err(CommandError::io(format!(
        "cannot start the simulated OpenStack on {}",
        args.listen
    )))?;
    if let Some(jobs) = args.jobs {
        let seeded = cloud
            .sim
            .seed_ci_jobs(jobs)
            .map_err(|error| CommandError::io("cannot seed the CI jobs")(std::io::Error::other(error)))?;
        println!("seeded {} CI jobs ({} resources)", seeded.jobs, seeded.resources);
    }
    println!("simulated OpenStack: {}", cloud.sim.url());
    println!("Keystone (auth_url): {}", cloud.sim.auth_url());
    println!(
        "clouds.yaml: {} (clouds: sim, sim-admin, sim-other, sim-appcred)",
        args.clouds_yaml.display()
    );
    if let Some(path) = &args.config_out {
        println!("janitor config: {}", path.display());
    }
    println!("serving until interrupted");
    shutdown_token().cancelled().await;
    cloud.sim.shutdown();
    if let Some(path) = &args.request_log {
        let unserved: std::collections::HashSet<(String, String)> =
            cloud.sim.unserved_requests().into_iter().collect();
        let text: String = cloud
            .sim
            .request_log()
            .into_iter()
            .map(|(method, path, status)| {
                let mark = if unserved.contains(&(method.clone(), path.clone())) {
                    " unserved"
                } else {
                    ""
                };
                format!("{method} {path} {status}{mark}\n")
            })
            .collect();
        write_atomically(path, &text)
            .map_err(CommandError::io(format!("cannot write {}", path.display())))?;
    }
    if let Some(cluster) = cluster {
        cluster.sim.shutdown();
    }
    Ok(Exit::Clean)
}
