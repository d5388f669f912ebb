//! The leftovers interrupted CI jobs leave in project `demo`, next to what must survive a cleanup,
//! created through the same operations the HTTP API uses.

use std::collections::BTreeMap;

use super::cinder::{SnapshotSpec, VolumeSpec};
use super::errors::ApiError;
use super::neutron::{
    FloatingIpReq, Interface, NetworkReq, PortReq, RouterReq, RuleReq, SecurityGroupReq, SubnetReq,
};
use super::nova::{Nic, ServerSpec};
use super::state::{
    Cloud, Ctx, FloatingIp, Network, Port, Router, SecurityGroup, SecurityGroupRule, Subnet, DEMO_PROJECT_ID,
    OTHER_PROJECT_ID,
};

/// The tag every CI resource carries; each also carries `job-<n>`. Volumes and snapshots, which have
/// no tags, carry metadata `ci-job=true` and `job=job-<n>` instead.
pub const CI_TAG: &str = "ci-job";

/// One interrupted job's leftovers, all tagged `ci-job` + `job-<n>` unless noted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeededJob {
    /// `job-<n>`.
    pub job: String,
    pub network: String,
    pub subnet: String,
    pub security_group: String,
    /// Ports created before boot (tagged); the first one is the floating IP's.
    pub ports: Vec<String>,
    pub router: Option<String>,
    pub floating_ip: Option<String>,
    /// Servers, tagged through Nova tags.
    pub servers: Vec<String>,
    /// Untagged ports Nova created for servers booted on the network (`device_owner` `compute:nova`):
    /// Nova deletes them with their server, and a member's DELETE gets 403.
    pub nova_ports: Vec<String>,
    /// Volumes with metadata `ci-job=true`, `job=job-<n>`.
    pub volumes: Vec<String>,
    pub snapshots: Vec<String>,
    /// Keypair name (`ci-job-<n>-key`): Nova keypairs have no tags.
    pub keypair: Option<String>,
    /// Server group id (name `ci-job-<n>-group`): Nova server groups have no tags.
    pub server_group: Option<String>,
}

/// Resources no selection by tag may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survivors {
    pub network: String,
    pub subnet: String,
    /// Untagged port on the untagged network that uses the tagged `ci-job-3-sg`.
    pub port: String,
    pub server: String,
    /// The untagged server's port, created by Nova.
    pub server_port: String,
    /// An untagged volume.
    pub volume: String,
    /// Project `demo`'s `default` security group.
    pub default_security_group: String,
    /// The external network `public` (project admin, `router:external`) and its subnet.
    pub public_network: String,
    pub public_subnet: String,
    /// The network `shared` that project `other` shares with every project, and its subnet.
    pub shared_network: String,
    pub shared_subnet: String,
}

/// What [`super::OpenStackSim::seed_ci_leftovers`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seeded {
    pub project_id: String,
    /// `job-1` and `job-2` left everything; `job-3` was killed early (network, subnet, group, port).
    pub jobs: Vec<SeededJob>,
    /// `ci-job-1-vm-b`: tagged but locked, so its DELETE answers 409 for good.
    pub locked_server: String,
    /// `ci-job-3-sg`: tagged, but the untagged `keep-port` uses it, so it stays in use for good.
    pub in_use_security_group: String,
    pub keep: Survivors,
}

impl Seeded {
    /// Every resource a `ci-job` selection picks, as `(kind, id)`; keypairs by name.
    pub fn tagged(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for job in &self.jobs {
            out.push(("network", job.network.clone()));
            out.push(("subnet", job.subnet.clone()));
            out.push(("security_group", job.security_group.clone()));
            out.extend(job.ports.iter().map(|id| ("port", id.clone())));
            out.extend(job.router.iter().map(|id| ("router", id.clone())));
            out.extend(job.floating_ip.iter().map(|id| ("floating_ip", id.clone())));
            out.extend(job.servers.iter().map(|id| ("server", id.clone())));
            out.extend(job.volumes.iter().map(|id| ("volume", id.clone())));
            out.extend(job.snapshots.iter().map(|id| ("volume_snapshot", id.clone())));
            out.extend(job.keypair.iter().map(|name| ("keypair", name.clone())));
            out.extend(job.server_group.iter().map(|id| ("server_group", id.clone())));
        }
        out
    }

    /// The tagged resources a correct cleanup cannot delete: the locked server and what only it holds
    /// (its volume, the job's security group on its Nova port, the job's subnet and network), and the
    /// security group the untagged port uses. Everything else in [`Seeded::tagged`] goes.
    pub fn expected_left(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("server", self.locked_server.clone())];
        if let Some(job) = self.jobs.first() {
            out.extend(job.volumes.get(1).map(|id| ("volume", id.clone())));
            out.push(("security_group", job.security_group.clone()));
            out.push(("subnet", job.subnet.clone()));
            out.push(("network", job.network.clone()));
        }
        out.push(("security_group", self.in_use_security_group.clone()));
        out
    }

    /// The untagged resources that must survive any cleanup, as `(kind, id)`.
    pub fn survivors(&self) -> Vec<(&'static str, String)> {
        let k = &self.keep;
        vec![
            ("network", k.network.clone()),
            ("subnet", k.subnet.clone()),
            ("port", k.port.clone()),
            ("server", k.server.clone()),
            ("port", k.server_port.clone()),
            ("volume", k.volume.clone()),
            ("security_group", k.default_security_group.clone()),
            ("network", k.public_network.clone()),
            ("subnet", k.public_subnet.clone()),
            ("network", k.shared_network.clone()),
            ("subnet", k.shared_subnet.clone()),
        ]
    }
}

fn tags(job: &str) -> Vec<String> {
    vec![CI_TAG.to_string(), job.to_string()]
}

fn ci_metadata(job: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CI_TAG.to_string(), "true".to_string()),
        ("job".to_string(), job.to_string()),
    ])
}

/// The network `which` picks with its first subnet, made by `create` the first time.
fn ensure_network(
    cloud: &mut Cloud,
    which: impl Fn(&Network) -> bool,
    create: impl FnOnce(&mut Cloud) -> Result<(String, String), ApiError>,
) -> Result<(String, String), ApiError> {
    let Some(network) = cloud.networks.values().find(|n| which(n)) else {
        return create(cloud);
    };
    let subnet = cloud
        .subnets
        .values()
        .find(|s| s.network_id == network.id)
        .map(|s| s.id.clone());
    Ok((network.id.clone(), subnet.unwrap_or_default()))
}

/// The external network `public` with its subnet, created once (as DevStack does) by admin.
pub(crate) fn ensure_public_network(cloud: &mut Cloud) -> Result<(String, String), ApiError> {
    ensure_external_network(cloud, "public", "172.24.4.0/24")
}

/// An external network `name` of project admin with one subnet of `cidr` (no DHCP), made once.
pub(crate) fn ensure_external_network(
    cloud: &mut Cloud,
    name: &str,
    cidr: &str,
) -> Result<(String, String), ApiError> {
    ensure_network(
        cloud,
        |n| n.external && n.name == name,
        |cloud| {
            let admin = Ctx::admin();
            let req = NetworkReq {
                external: true,
                ..NetworkReq::named(name, Vec::new())
            };
            let network = cloud.create::<Network>(&admin, req)?;
            let req = SubnetReq {
                enable_dhcp: Some(false),
                ..SubnetReq::new(&network, &format!("{name}-subnet"), cidr, Vec::new())
            };
            let subnet = cloud.create::<Subnet>(&admin, req)?;
            Ok((network, subnet))
        },
    )
}

/// The network `shared` (10.250.0.0/24) that project `other` owns and shares with every project,
/// created once, as on the real test stack: members see it and may put ports on it, but not delete it.
pub(crate) fn ensure_shared_network(cloud: &mut Cloud) -> Result<(String, String), ApiError> {
    ensure_network(
        cloud,
        |n| n.shared && n.name == "shared" && n.project_id == OTHER_PROJECT_ID,
        |cloud| {
            let mut req = NetworkReq {
                shared: true,
                ..NetworkReq::named("shared", Vec::new())
            };
            req.standard.project_id = Some(OTHER_PROJECT_ID.into());
            let network = cloud.create::<Network>(&Ctx::admin(), req)?;
            let req = SubnetReq::new(&network, "shared-subnet", "10.250.0.0/24", Vec::new());
            let subnet = cloud.create::<Subnet>(&Ctx::other(), req)?;
            Ok((network, subnet))
        },
    )
}

/// A network `{prefix}-net` with one subnet `{prefix}-subnet` of `cidr`, both carrying `tags`.
fn network_with_subnet(
    cloud: &mut Cloud,
    ctx: &Ctx,
    prefix: &str,
    cidr: &str,
    tags: Vec<String>,
) -> Result<(String, String), ApiError> {
    let network = cloud.create::<Network>(ctx, NetworkReq::named(&format!("{prefix}-net"), tags.clone()))?;
    let req = SubnetReq::new(&network, &format!("{prefix}-subnet"), cidr, tags);
    let subnet = cloud.create::<Subnet>(ctx, req)?;
    Ok((network, subnet))
}

/// The network, subnet and security group every job starts with, named `ci-job-<n>-...`.
struct JobNetwork {
    job: String,
    prefix: String,
    network: String,
    subnet: String,
    group: String,
}

impl JobNetwork {
    fn create(cloud: &mut Cloud, ctx: &Ctx, n: usize) -> Result<JobNetwork, ApiError> {
        let job = format!("job-{n}");
        let prefix = format!("ci-job-{n}");
        let cidr = format!("10.{n}.0.0/24");
        let (network, subnet) = network_with_subnet(cloud, ctx, &prefix, &cidr, tags(&job))?;
        let req = SecurityGroupReq::named(&format!("{prefix}-sg"), tags(&job));
        let group = cloud.create::<SecurityGroup>(ctx, req)?;
        Ok(JobNetwork {
            job,
            prefix,
            network,
            subnet,
            group,
        })
    }

    /// The job's tagged port `ci-job-<n>-port` on its network, in its group.
    fn port(&self, cloud: &mut Cloud, ctx: &Ctx) -> Result<String, ApiError> {
        let name = format!("{}-port", self.prefix);
        let req = PortReq::new(
            &self.network,
            &name,
            Some(vec![self.group.clone()]),
            tags(&self.job),
        );
        cloud.create::<Port>(ctx, req)
    }
}

/// A job that ran to the end before it was killed: see [`SeededJob`].
fn full_job(cloud: &mut Cloud, ctx: &Ctx, n: usize, public: &str) -> Result<SeededJob, ApiError> {
    let base = JobNetwork::create(cloud, ctx, n)?;
    for (protocol, port) in [("tcp", Some(22)), ("icmp", None)] {
        cloud
            .create::<SecurityGroupRule>(ctx, RuleReq::ingress_from_anywhere(&base.group, protocol, port))?;
    }
    let router = cloud.create::<Router>(
        ctx,
        RouterReq::new(&format!("{}-router", base.prefix), Some(public), tags(&base.job)),
    )?;
    cloud.add_router_interface(ctx, &router, Interface::Subnet(base.subnet.clone()))?;
    let vm_port = base.port(cloud, ctx)?;
    let JobNetwork {
        job,
        prefix,
        network,
        subnet,
        group,
    } = base;
    let keypair = cloud.create_keypair(ctx, &format!("{prefix}-key"), None)?.name;
    let server_group = cloud.create_server_group(ctx, &format!("{prefix}-group"), "anti-affinity")?;
    let boot = |name: &str, nic: Nic| ServerSpec::new(&format!("{prefix}-{name}"), vec![nic], tags(&job));
    // vm-a boots on the pre-created port, with the job's keypair, in the job's server group.
    let vm_a = cloud.create_server(
        ctx,
        ServerSpec {
            key_name: Some(keypair.clone()),
            group: Some(server_group.clone()),
            ..boot("vm-a", Nic::Port(vm_port.clone()))
        },
    )?;
    // vm-b boots on the network: Nova creates its (untagged) port, with the job's security group.
    let vm_b = cloud.create_server(
        ctx,
        ServerSpec {
            security_groups: vec![format!("{prefix}-sg")],
            ..boot("vm-b", Nic::Network(network.clone()))
        },
    )?;
    let nova_ports: Vec<String> = cloud
        .servers
        .get(&vm_b)
        .map(|s| s.nova_created_ports.clone())
        .unwrap_or_default();
    let floating_ip =
        cloud.create::<FloatingIp>(ctx, FloatingIpReq::new(public, Some(&vm_port), tags(&job)))?;
    let volume = |name: &str| VolumeSpec::new(&format!("{prefix}-{name}"), 1, ci_metadata(&job));
    let volume_a = cloud.create_volume(ctx, volume("vol-a"))?;
    let snapshot = cloud.create_snapshot(
        ctx,
        SnapshotSpec::new(&volume_a, &format!("{prefix}-snap"), ci_metadata(&job)),
    )?;
    let volume_b = cloud.create_volume(ctx, volume("vol-b"))?;
    cloud.attach_volume(ctx, &vm_a, &volume_a)?;
    cloud.attach_volume(ctx, &vm_b, &volume_b)?;
    Ok(SeededJob {
        job,
        network,
        subnet,
        security_group: group,
        ports: vec![vm_port],
        router: Some(router),
        floating_ip: Some(floating_ip),
        servers: vec![vm_a, vm_b],
        nova_ports,
        volumes: vec![volume_a, volume_b],
        snapshots: vec![snapshot],
        keypair: Some(keypair),
        server_group: Some(server_group),
    })
}

/// The number of the next CI job: one past the jobs whose networks exist.
pub(crate) fn next_job_number(cloud: &Cloud) -> usize {
    cloud
        .networks
        .values()
        .filter(|n| n.name.starts_with("ci-job-"))
        .count()
        + 1
}

/// Creates the whole topology (see [`Seeded`]) and makes it three hours old. Every request is built
/// here against resources made here, so an error means a bug in the simulator.
pub(crate) fn seed_ci_leftovers(cloud: &mut Cloud) -> Result<Seeded, ApiError> {
    let demo = Ctx::demo();
    let (public_network, public_subnet) = ensure_public_network(cloud)?;
    let (shared_network, shared_subnet) = ensure_shared_network(cloud)?;
    let default_security_group = cloud.ensure_default_security_group(DEMO_PROJECT_ID);

    // Seeding again numbers the jobs on (job-4, job-5, job-6), so names never collide.
    let first = next_job_number(cloud);
    let mut jobs = vec![
        full_job(cloud, &demo, first, &public_network)?,
        full_job(cloud, &demo, first + 1, &public_network)?,
    ];
    let locked_server = jobs[0].servers[1].clone();
    cloud.set_server_lock(&demo, &locked_server, true, Some("held for debugging".into()))?;

    // The third job was killed right after creating its network, group and one port.
    let killed = JobNetwork::create(cloud, &demo, first + 2)?;
    let killed_port = killed.port(cloud, &demo)?;
    let group = killed.group.clone();
    jobs.push(SeededJob {
        job: killed.job,
        network: killed.network,
        subnet: killed.subnet,
        security_group: killed.group,
        ports: vec![killed_port],
        ..SeededJob::default()
    });

    // Untagged resources of the same project, one of them holding the tagged ci-job-3-sg.
    let (keep_network, keep_subnet) = network_with_subnet(cloud, &demo, "keep", "10.99.0.0/24", Vec::new())?;
    let keep_port = cloud.create::<Port>(
        &demo,
        PortReq::new(&keep_network, "keep-port", Some(vec![group.clone()]), Vec::new()),
    )?;
    let keep_server = cloud.create_server(
        &demo,
        ServerSpec::new("keep-vm", vec![Nic::Network(keep_network.clone())], Vec::new()),
    )?;
    let server_port = cloud
        .servers
        .get(&keep_server)
        .and_then(|s| s.port_ids.first().cloned())
        .unwrap_or_default();
    let keep_volume = cloud.create_volume(&demo, VolumeSpec::new("keep-vol", 1, BTreeMap::new()))?;

    cloud.backdate(chrono::Duration::hours(3));
    Ok(Seeded {
        project_id: DEMO_PROJECT_ID.to_string(),
        jobs,
        locked_server,
        in_use_security_group: group,
        keep: Survivors {
            network: keep_network,
            subnet: keep_subnet,
            port: keep_port,
            server: keep_server,
            server_port,
            volume: keep_volume,
            default_security_group,
            public_network,
            public_subnet,
            shared_network,
            shared_subnet,
        },
    })
}
