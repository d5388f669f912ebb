//! Benchmark scenarios: many interrupted CI jobs of one shape in project `demo`, on an external
//! network large enough for every job's router gateway and floating IP.

use std::collections::BTreeMap;

use super::cinder::VolumeSpec;
use super::errors::ApiError;
use super::neutron::{FloatingIpReq, Interface, NetworkReq, PortReq, RouterReq, SecurityGroupReq, SubnetReq};
use super::nova::{Nic, ServerSpec};
use super::seed::CI_TAG;
use super::state::{Cloud, Ctx, FloatingIp, Network, Port, Router, SecurityGroup, Subnet};
use super::OpenStackSim;

/// The kinds [`OpenStackSim::census`] counts, as [`OpenStackSim::count`] names them.
pub const CENSUS_KINDS: [&str; 10] = [
    "server",
    "port",
    "network",
    "subnet",
    "router",
    "floating_ip",
    "security_group",
    "volume",
    "volume_snapshot",
    "keypair",
];

/// What [`OpenStackSim::seed_ci_jobs`] made: the job count and the resources by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobsSeeded {
    pub jobs: usize,
    /// Resources the janitor models, by kind: each job's network, subnet, security group, router,
    /// router interface, tagged port, Nova's port, server, floating IP, volume and keypair.
    pub resources: usize,
}

/// One job, as the CI tooling makes it: a network with a subnet joined by a router to the external
/// network, a security group, a tagged port with a floating IP, a server on that port and on the
/// network (Nova makes the second port), its keypair and an attached volume. All tagged `ci-job` and
/// `job-<n>` (the volume through metadata; the keypair is named `ci-job-<n>-key`).
fn job(cloud: &mut Cloud, ctx: &Ctx, n: usize, external: &str) -> Result<(), ApiError> {
    let job = format!("job-{n}");
    let prefix = format!("ci-job-{n}");
    let tags = vec![CI_TAG.to_string(), job.clone()];
    // 10.x.y.0/24 for jobs up to 65,535, so no two jobs' subnets overlap.
    let cidr = format!("10.{}.{}.0/24", (n / 256) % 256, n % 256);
    let network = cloud.create::<Network>(ctx, NetworkReq::named(&format!("{prefix}-net"), tags.clone()))?;
    let subnet = cloud.create::<Subnet>(
        ctx,
        SubnetReq::new(&network, &format!("{prefix}-subnet"), &cidr, tags.clone()),
    )?;
    let group = cloud.create::<SecurityGroup>(
        ctx,
        SecurityGroupReq::named(&format!("{prefix}-sg"), tags.clone()),
    )?;
    let router = cloud.create::<Router>(
        ctx,
        RouterReq::new(&format!("{prefix}-router"), Some(external), tags.clone()),
    )?;
    cloud.add_router_interface(ctx, &router, Interface::Subnet(subnet))?;
    let port = cloud.create::<Port>(
        ctx,
        PortReq::new(
            &network,
            &format!("{prefix}-port"),
            Some(vec![group]),
            tags.clone(),
        ),
    )?;
    let key_name = cloud.create_keypair(ctx, &format!("{prefix}-key"), None)?.name;
    let server = cloud.create_server(
        ctx,
        ServerSpec {
            key_name: Some(key_name),
            security_groups: vec![format!("{prefix}-sg")],
            ..ServerSpec::new(
                &format!("{prefix}-vm"),
                vec![Nic::Port(port.clone()), Nic::Network(network)],
                tags.clone(),
            )
        },
    )?;
    cloud.create::<FloatingIp>(ctx, FloatingIpReq::new(external, Some(&port), tags))?;
    let metadata = BTreeMap::from([(CI_TAG.to_string(), "true".to_string()), ("job".to_string(), job)]);
    let volume = cloud.create_volume(ctx, VolumeSpec::new(&format!("{prefix}-vol"), 1, metadata))?;
    cloud.attach_volume(ctx, &server, &volume)?;
    Ok(())
}

/// Models' resources one job leaves (see [`job`]).
const RESOURCES_PER_JOB: usize = 11;

impl OpenStackSim {
    /// Seeds `jobs` interrupted CI jobs of one shape (see [`JobsSeeded`]) in project `demo`, three
    /// hours old, numbered after those already there.
    pub fn seed_ci_jobs(&self, jobs: usize) -> Result<JobsSeeded, super::SimError> {
        let mut cloud = self.inner.cloud();
        let seed = |cloud: &mut Cloud| -> Result<(), ApiError> {
            // 172.16.0.0/16: room for every job's router gateway and floating IP.
            let (external, _) = super::seed::ensure_external_network(cloud, "bench-public", "172.16.0.0/16")?;
            let first = super::seed::next_job_number(cloud);
            let demo = Ctx::demo();
            for n in first..first + jobs {
                job(cloud, &demo, n, &external)?;
            }
            cloud.backdate(chrono::Duration::hours(3));
            Ok(())
        };
        seed(&mut cloud).map_err(|error| super::SimError {
            action: "seed CI jobs",
            status: error.status.as_u16(),
            message: error.message,
        })?;
        Ok(JobsSeeded {
            jobs,
            resources: jobs * RESOURCES_PER_JOB,
        })
    }

    /// How many resources of each of [`CENSUS_KINDS`] exist, in all projects.
    pub fn census(&self) -> BTreeMap<&'static str, usize> {
        let mut cloud = self.inner.cloud();
        CENSUS_KINDS
            .iter()
            .map(|kind| (*kind, cloud.count(kind)))
            .collect()
    }
}
