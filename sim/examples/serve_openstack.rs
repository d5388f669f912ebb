//! Serves the simulated OpenStack and writes its clouds.yaml, so real clients (openstacksdk, the
//! `openstack` CLI, cloud-janitor itself) can be pointed at it.
//!
//! `cargo run -p cloud-janitor-sim --example serve_openstack -- [ADDR] [CLOUDS_YAML] [--seed]`
//! (defaults `127.0.0.1:0` and `clouds.yaml`); stops on Ctrl-C.

use cloud_janitor_sim::openstack::{OpenStackSim, SimConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let listen = positional.first().map_or("127.0.0.1:0", |a| a.as_str()).parse()?;
    let clouds_yaml = positional.get(1).map_or("clouds.yaml", |a| a.as_str());
    let sim = OpenStackSim::start(listen, SimConfig::default()).await?;
    if args.iter().any(|a| a == "--seed") {
        let seeded = sim.seed_ci_leftovers();
        println!(
            "seeded {} CI jobs in project {}",
            seeded.jobs.len(),
            seeded.project_id
        );
    }
    std::fs::write(clouds_yaml, sim.clouds_yaml())?;
    println!(
        "simulated OpenStack at {}; clouds.yaml written to {clouds_yaml}",
        sim.url()
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}
