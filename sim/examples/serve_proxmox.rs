//! Serves the simulated Proxmox VE on an address (first argument, default 127.0.0.1:8006) over HTTPS
//! with a self-signed certificate, and prints its URL, API token, user and password as `KEY=value`
//! lines. `--seed` adds the CI leftovers; `--http` serves plain HTTP. Runs until killed.

use std::net::SocketAddr;

use cloud_janitor_sim::proxmox::{ProxmoxSim, ProxmoxSimConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen: SocketAddr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("127.0.0.1:8006", String::as_str)
        .parse()?;
    let tls = !args.iter().any(|a| a == "--http");
    let sim = ProxmoxSim::start(
        listen,
        ProxmoxSimConfig {
            tls,
            ..ProxmoxSimConfig::default()
        },
    )
    .await?;
    if args.iter().any(|a| a == "--seed") {
        sim.seed_ci_leftovers();
    }
    println!("PROXMOX_URL={}", sim.url());
    println!("PROXMOX_TOKEN_ID={}", sim.token_id());
    println!("PROXMOX_TOKEN_SECRET={}", sim.token_secret());
    println!("PROXMOX_USER={}", sim.user());
    println!("PROXMOX_PASSWORD={}", sim.password());
    if let Some(pem) = sim.ca_pem() {
        let path = std::env::temp_dir().join(format!("proxmox-sim-{}.pem", listen.port()));
        std::fs::write(&path, pem)?;
        println!("PROXMOX_CA_FILE={}", path.display());
    }
    println!("READY");
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}
