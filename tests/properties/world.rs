//! The generated world: random OpenStack and Proxmox VE plans (kinds, references, marks that
//! select or spare, guarded kinds), random rules and random fault schedules, as proptest strategies.

use super::*;

/// What makes a resource selected or not: its tags, age and name.
#[derive(Debug, Clone)]
pub(crate) struct Marks {
    pub(crate) ci: bool,
    pub(crate) keep: bool,
    /// An unrelated tag, which must change nothing.
    pub(crate) other: bool,
    pub(crate) old: bool,
    /// Named `ci-...` (else `x-...`).
    pub(crate) ci_name: bool,
}

impl Marks {
    pub(crate) fn tags(&self) -> Vec<&'static str> {
        let mut tags = Vec::new();
        if self.ci {
            tags.push(CI);
        }
        if self.keep {
            tags.push(KEEP);
        }
        if self.other {
            tags.push("team-a");
        }
        tags
    }

    pub(crate) fn name(&self, what: &str, n: usize) -> String {
        let prefix = if self.ci_name { "ci" } else { "x" };
        format!("{prefix}-{what}-{n}")
    }

    /// Cinder has no tags: metadata keys (and values) stand in for them.
    pub(crate) fn metadata(&self) -> Vec<(&'static str, &'static str)> {
        self.tags().into_iter().map(|tag| (tag, "1")).collect()
    }
}

pub(crate) fn marks() -> impl Strategy<Value = Marks> {
    (
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.75),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(ci, keep, other, old, ci_name)| Marks {
            ci,
            keep,
            other,
            old,
            ci_name,
        })
}

/// The rules of one cloud's `[clouds.select]`, besides `tags_all = ["ci-job"]` and `protect_tag`.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) min_age: bool,
    pub(crate) name_pattern: bool,
}

impl Rules {
    /// Whether a taggable resource with these marks (named by them) is selected.
    pub(crate) fn picks(&self, marks: &Marks) -> bool {
        marks.ci && !marks.keep && (!self.name_pattern || marks.ci_name) && (!self.min_age || marks.old)
    }

    /// Whether a kind without tags, selected by `untaggable_name_pattern`, is; `dated` when the API
    /// gives it a creation time (else its age counts from this pass).
    pub(crate) fn picks_untaggable(&self, name_matches: bool, old: bool, dated: bool) -> bool {
        name_matches && (!self.min_age || (old && dated))
    }

    pub(crate) fn select_table(&self, untaggable: &str) -> String {
        let mut table = format!(
            "[clouds.select]\ntags_all = [\"{CI}\"]\nprotect_tag = \"{KEEP}\"\nuntaggable_name_pattern = \"{untaggable}\"\n"
        );
        if self.min_age {
            table.push_str(&format!("min_age = \"{MIN_AGE}\"\n"));
        }
        if self.name_pattern {
            table.push_str("name_pattern = \"^ci-\"\n");
        }
        table
    }
}

pub(crate) fn rules() -> impl Strategy<Value = Rules> {
    (any::<bool>(), prop::bool::weighted(0.3)).prop_map(|(min_age, name_pattern)| Rules {
        min_age,
        name_pattern,
    })
}

/// A network a port or server is on: one of the project's, or the shared network of project
/// `other`.
#[derive(Debug, Clone)]
pub(crate) enum NetRef {
    Own(Index),
    Shared,
}

pub(crate) fn net_ref() -> impl Strategy<Value = NetRef> {
    prop_oneof![4 => any::<Index>().prop_map(NetRef::Own), 1 => Just(NetRef::Shared)]
}

#[derive(Debug, Clone)]
pub(crate) struct SubnetPlan {
    pub(crate) marks: Marks,
    /// The router this subnet gets an interface on, if any.
    pub(crate) router: Option<Index>,
}

#[derive(Debug, Clone)]
pub(crate) struct NetworkPlan {
    pub(crate) marks: Marks,
    pub(crate) subnets: Vec<SubnetPlan>,
}

#[derive(Debug, Clone)]
pub(crate) struct PortPlan {
    pub(crate) marks: Marks,
    pub(crate) network: NetRef,
    /// Security groups (none: the project's `default`).
    pub(crate) groups: Vec<Index>,
}

#[derive(Debug, Clone)]
pub(crate) struct RouterPlan {
    pub(crate) marks: Marks,
    pub(crate) gateway: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct FipPlan {
    pub(crate) marks: Marks,
    pub(crate) port: Option<Index>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServerPlan {
    pub(crate) marks: Marks,
    /// Ports made beforehand (Nova binds them, and only unbinds them when the server goes).
    pub(crate) ports: Vec<Index>,
    /// Networks Nova makes a port on (and deletes it with the server).
    pub(crate) networks: Vec<NetRef>,
    /// The security groups of Nova's ports (none: `default`).
    pub(crate) groups: Vec<Index>,
    pub(crate) keypair: Option<Index>,
    pub(crate) server_group: Option<Index>,
    pub(crate) locked: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct VolumePlan {
    pub(crate) marks: Marks,
    pub(crate) server: Option<Index>,
    pub(crate) snapshots: Vec<Marks>,
}

#[derive(Debug, Clone)]
pub(crate) struct OpenStackPlan {
    pub(crate) rules: Rules,
    pub(crate) page_size: u32,
    pub(crate) networks: Vec<NetworkPlan>,
    pub(crate) groups: Vec<Marks>,
    pub(crate) routers: Vec<RouterPlan>,
    pub(crate) ports: Vec<PortPlan>,
    pub(crate) keypairs: Vec<Marks>,
    pub(crate) server_groups: Vec<Marks>,
    pub(crate) servers: Vec<ServerPlan>,
    pub(crate) volumes: Vec<VolumePlan>,
    pub(crate) fips: Vec<FipPlan>,
    /// A tagged network and security group of project `other`.
    pub(crate) other_project: bool,
    /// The CI tag on what a fresh cloud has: project demo's `default` group, `public`, `shared`
    /// and its subnet.
    pub(crate) tagged_guards: bool,
}

pub(crate) fn openstack_plan() -> impl Strategy<Value = OpenStackPlan> {
    let subnet = (marks(), prop::option::weighted(0.5, any::<Index>()))
        .prop_map(|(marks, router)| SubnetPlan { marks, router });
    let network = (marks(), prop::collection::vec(subnet, 0..=2))
        .prop_map(|(marks, subnets)| NetworkPlan { marks, subnets });
    let port = (marks(), net_ref(), prop::collection::vec(any::<Index>(), 0..=2)).prop_map(
        |(marks, network, groups)| PortPlan {
            marks,
            network,
            groups,
        },
    );
    let router =
        (marks(), prop::bool::weighted(0.7)).prop_map(|(marks, gateway)| RouterPlan { marks, gateway });
    let fip = (marks(), prop::option::weighted(0.7, any::<Index>()))
        .prop_map(|(marks, port)| FipPlan { marks, port });
    let server = (
        marks(),
        prop::collection::vec(any::<Index>(), 0..=1),
        prop::collection::vec(net_ref(), 0..=1),
        prop::collection::vec(any::<Index>(), 0..=1),
        prop::option::weighted(0.5, any::<Index>()),
        prop::option::weighted(0.3, any::<Index>()),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(marks, ports, networks, groups, keypair, server_group, locked)| ServerPlan {
                marks,
                ports,
                networks,
                groups,
                keypair,
                server_group,
                locked,
            },
        );
    let volume = (
        marks(),
        prop::option::weighted(0.5, any::<Index>()),
        prop::collection::vec(marks(), 0..=1),
    )
        .prop_map(|(marks, server, snapshots)| VolumePlan {
            marks,
            server,
            snapshots,
        });
    let resources = (
        prop::collection::vec(network, 1..=3),
        prop::collection::vec(marks(), 0..=2),
        prop::collection::vec(router, 0..=2),
        prop::collection::vec(port, 0..=4),
        prop::collection::vec(marks(), 0..=2),
        prop::collection::vec(marks(), 0..=1),
        prop::collection::vec(server, 0..=3),
        prop::collection::vec(volume, 0..=2),
        prop::collection::vec(fip, 0..=2),
    );
    (
        rules(),
        prop_oneof![Just(2_u32), Just(1000)],
        resources,
        prop::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(
            |(
                rules,
                page_size,
                (networks, groups, routers, ports, keypairs, server_groups, servers, volumes, fips),
                other_project,
                tagged_guards,
            )| {
                OpenStackPlan {
                    rules,
                    page_size,
                    networks,
                    groups,
                    routers,
                    ports,
                    keypairs,
                    server_groups,
                    servers,
                    volumes,
                    fips,
                    other_project,
                    tagged_guards,
                }
            },
        )
}

#[derive(Debug, Clone)]
pub(crate) struct GuestPlan {
    pub(crate) container: bool,
    pub(crate) on_pve2: bool,
    pub(crate) marks: Marks,
    pub(crate) running: bool,
    pub(crate) protection: bool,
    pub(crate) template: bool,
    pub(crate) lock: Option<&'static str>,
    pub(crate) ceph: bool,
    /// A container's creation time as a `ci-created-<seconds>` tag (else it has none).
    pub(crate) created_tag: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct DiskPlan {
    /// `vm-99N-disk-0`, which the rules pick (else `vm-88N-disk-0`).
    pub(crate) matching: bool,
    pub(crate) on_pve2: bool,
    pub(crate) ceph: bool,
    pub(crate) old: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ProxmoxPlan {
    pub(crate) rules: Rules,
    pub(crate) guests: Vec<GuestPlan>,
    pub(crate) disks: Vec<DiskPlan>,
    pub(crate) pve2_offline: bool,
}

pub(crate) fn proxmox_plan() -> impl Strategy<Value = ProxmoxPlan> {
    let guest = (
        (any::<bool>(), any::<bool>(), marks(), any::<bool>()),
        (
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.1),
            prop::option::weighted(0.1, prop_oneof![Just("backup"), Just("migrate")]),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |((container, on_pve2, marks, running), (protection, template, lock, ceph, created_tag))| {
                GuestPlan {
                    container,
                    on_pve2,
                    marks,
                    running,
                    protection,
                    template,
                    lock,
                    ceph,
                    created_tag,
                }
            },
        );
    let disk = (
        prop::bool::weighted(0.8),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(matching, on_pve2, ceph, old)| DiskPlan {
            matching,
            on_pve2,
            ceph,
            old,
        });
    (
        rules(),
        prop::collection::vec(guest, 0..=4),
        prop::collection::vec(disk, 0..=3),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(rules, guests, disks, pve2_offline)| ProxmoxPlan {
            rules,
            guests,
            disks,
            pve2_offline,
        })
}

/// Which simulator a fault rule goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    OpenStack,
    Proxmox,
}

/// One injected fault: an answer (or latency) for some requests of one method and path.
#[derive(Debug, Clone)]
pub(crate) struct FaultPlan {
    pub(crate) target: Target,
    pub(crate) method: Option<&'static str>,
    pub(crate) path: &'static str,
    pub(crate) status: Option<u16>,
    pub(crate) retry_after: Option<&'static str>,
    /// A connection that breaks instead of answering, or after the API acted.
    pub(crate) breakage: Option<Breakage>,
    pub(crate) delay_ms: u64,
    /// Forever (until the faults stop) when `None`.
    pub(crate) count: Option<u32>,
}

impl FaultPlan {
    pub(crate) fn rule(&self) -> FaultRule {
        FaultRule {
            method: self.method.map(str::to_string),
            path: self.path.to_string(),
            status: self.status,
            headers: self
                .retry_after
                .map(|after| vec![("Retry-After".to_string(), after.to_string())])
                .unwrap_or_default(),
            count: self.count,
            delay_ms: self.delay_ms,
            breakage: self.breakage,
            ..FaultRule::default()
        }
    }
}

pub(crate) const OPENSTACK_PATHS: [&str; 13] = [
    "",
    "/auth/tokens",
    "/v2.0/ports",
    "/v2.0/networks",
    "/v2.0/subnets",
    "/v2.0/security-groups",
    "/v2.0/routers",
    "/v2.0/floatingips",
    "/servers",
    "/os-keypairs",
    "/os-server-groups",
    "/volumes",
    "/snapshots",
];
pub(crate) const PROXMOX_PATHS: [&str; 8] = [
    "",
    "/cluster/resources",
    "/qemu",
    "/lxc",
    "/status/",
    "/tasks/",
    "/storage/",
    "/config",
];

pub(crate) fn fault() -> impl Strategy<Value = FaultPlan> {
    let target = prop_oneof![2 => Just(Target::OpenStack), 1 => Just(Target::Proxmox)];
    let method = prop_oneof![
        Just(None),
        Just(Some("GET")),
        Just(Some("DELETE")),
        Just(Some("POST")),
        Just(Some("PUT"))
    ];
    // Retry-After is honoured in full, so only waits that are over at once: zero seconds, or a date
    // already past.
    let retry_after = prop_oneof![
        Just(None),
        Just(Some("0")),
        Just(Some("Sun, 06 Nov 1994 08:49:37 GMT"))
    ];
    let answer = prop_oneof![
        2 => Just((Some(409_u16), None, 0_u64)),
        1 => Just((Some(500), None, 0)),
        1 => Just((Some(502), None, 0)),
        2 => Just((Some(503), None, 0)),
        2 => Just((Some(429), None, 0)),
        1 => Just((None, Some(Breakage::Hangup), 0)),
        1 => Just((None, Some(Breakage::Truncate), 0)),
        2 => (1_u64..30).prop_map(|ms| (None, None, ms)),
    ];
    (
        target,
        method,
        any::<Index>(),
        answer,
        retry_after,
        prop::option::weighted(0.75, 1_u32..=3),
    )
        .prop_map(
            |(target, method, path, (status, breakage, delay_ms), retry_after, count)| {
                let path = match target {
                    Target::OpenStack => *path.get(&OPENSTACK_PATHS),
                    Target::Proxmox => *path.get(&PROXMOX_PATHS),
                };
                FaultPlan {
                    target,
                    method,
                    path,
                    status,
                    retry_after: retry_after.filter(|_| matches!(status, Some(429 | 503))),
                    breakage,
                    delay_ms,
                    count,
                }
            },
        )
}

#[derive(Debug, Clone)]
pub(crate) struct World {
    pub(crate) openstack: OpenStackPlan,
    pub(crate) proxmox: ProxmoxPlan,
    pub(crate) faults: Vec<FaultPlan>,
}

pub(crate) fn world() -> impl Strategy<Value = World> {
    let faults = prop_oneof![1 => Just(Vec::new()), 2 => prop::collection::vec(fault(), 1..=4)];
    (openstack_plan(), proxmox_plan(), faults).prop_map(|(openstack, proxmox, faults)| World {
        openstack,
        proxmox,
        faults,
    })
}
