//! What the test knows of the clouds it built: each plan made real in its simulator through the
//! direct API, every resource recorded with where it lives and whether the model says it goes.

use super::*;

/// Where a resource lives, to ask its simulator whether it still exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// An OpenStack resource of this simulator kind (`exists(kind, id)`).
    OpenStack(&'static str),
    Guest(u32),
    /// An orphan volume, by volid.
    Disk(String),
}

/// One resource, as the test built it.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub(crate) cloud: &'static str,
    /// The janitor's kind name (`router_interface`, `vm`, ...).
    pub(crate) kind: &'static str,
    /// The janitor's id.
    pub(crate) id: String,
    pub(crate) place: Place,
    /// The rules pick it and no guard protects it.
    pub(crate) selected: bool,
    /// Never goes, though selected: a locked server, which stays busy.
    pub(crate) locked: bool,
    /// The owner that removes it (a port Nova made for a server).
    pub(crate) owner: Option<String>,
    /// The ids of what uses it.
    pub(crate) users: BTreeSet<String>,
}

impl Known {
    pub(crate) fn new(
        cloud: &'static str,
        kind: &'static str,
        id: &str,
        place: Place,
        selected: bool,
    ) -> Self {
        Known {
            cloud,
            kind,
            id: id.to_string(),
            place,
            selected,
            locked: false,
            owner: None,
            users: BTreeSet::new(),
        }
    }
}

/// The clouds as built: the simulators and every resource the test made or knows of.
pub(crate) struct Built {
    pub(crate) openstack: OpenStackSim,
    pub(crate) proxmox: ProxmoxSim,
    pub(crate) known: BTreeMap<String, Known>,
}

impl Built {
    pub(crate) fn add(&mut self, known: Known) {
        self.known.insert(known.id.clone(), known);
    }

    pub(crate) fn uses(&mut self, user: &str, used: &str) {
        if let Some(known) = self.known.get_mut(used) {
            known.users.insert(user.to_string());
        }
    }

    pub(crate) fn exists(&self, known: &Known) -> bool {
        match &known.place {
            Place::OpenStack(kind) => self.openstack.exists(kind, &known.id),
            Place::Guest(vmid) => self.proxmox.exists(*vmid),
            Place::Disk(volid) => self.proxmox.disk_exists(volid),
        }
    }

    /// Whether the resource goes once every pass is done, by the model: a selected resource goes
    /// when everything that uses it goes; one Nova made goes with its server; the rest stays.
    pub(crate) fn goes(&self, id: &str, memo: &mut HashMap<String, bool>) -> bool {
        if let Some(&goes) = memo.get(id) {
            return goes;
        }
        let Some(known) = self.known.get(id) else {
            return false;
        };
        let goes = match &known.owner {
            Some(owner) => self.goes(owner, memo),
            None => known.selected && !known.locked && known.users.iter().all(|user| self.goes(user, memo)),
        };
        memo.insert(id.to_string(), goes);
        goes
    }
}

pub(crate) fn pick<'a, T>(items: &'a [T], index: &Index) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[index.index(items.len())])
}

/// Builds the OpenStack plan in the simulator as project `demo` does, recording what it made.
pub(crate) fn build_openstack(plan: &OpenStackPlan, built: &mut Built) {
    let sim = built.openstack.clone();
    let rules = &plan.rules;
    let old = |built: &mut Built, kind: &str, id: &str, marks: &Marks| {
        if marks.old {
            assert!(built.openstack.backdate(kind, id, OLD), "{kind} {id}");
        }
    };
    let os = |kind: &'static str, sim_kind: &'static str, id: &str, selected: bool| {
        Known::new(OS, kind, id, Place::OpenStack(sim_kind), selected)
    };
    // What a fresh cloud has: never selected whatever its tags.
    let shared = sim.shared_network_id();
    let public = sim.public_network_id();
    let default_group = sim.default_security_group_id();
    let mut guarded = vec![
        ("network", shared.clone()),
        ("network", public.clone()),
        ("security_group", default_group.clone()),
    ];
    guarded.extend(sim.network_subnets(&shared).into_iter().map(|s| ("subnet", s)));
    for (kind, id) in guarded {
        if plan.tagged_guards {
            assert!(sim.add_tag(kind, &id, CI), "{kind} {id}");
        }
        built.add(os(kind, kind, &id, false));
    }

    let mut networks = Vec::new();
    // Per subnet: its id, its network, and the router index it is to join.
    let mut subnets: Vec<(String, String, Option<Index>)> = Vec::new();
    for (n, network) in plan.networks.iter().enumerate() {
        let id = sim
            .create_network(&network.marks.name("net", n), &network.marks.tags())
            .unwrap();
        old(built, "network", &id, &network.marks);
        built.add(os("network", "network", &id, rules.picks(&network.marks)));
        for (s, subnet) in network.subnets.iter().enumerate() {
            let cidr = format!("10.{n}.{s}.0/24");
            let subnet_id = sim
                .create_subnet(&id, &subnet.marks.name("subnet", s), &cidr, &subnet.marks.tags())
                .unwrap();
            old(built, "subnet", &subnet_id, &subnet.marks);
            built.add(os("subnet", "subnet", &subnet_id, rules.picks(&subnet.marks)));
            built.uses(&subnet_id, &id);
            subnets.push((subnet_id, id.clone(), subnet.router));
        }
        networks.push(id);
    }
    let network_of = |net: &NetRef| match net {
        NetRef::Own(index) => pick(&networks, index).cloned(),
        NetRef::Shared => Some(shared.clone()),
    };

    let mut groups = Vec::new();
    for (g, marks) in plan.groups.iter().enumerate() {
        let id = sim
            .create_security_group(&marks.name("sg", g), &marks.tags())
            .unwrap();
        old(built, "security_group", &id, marks);
        built.add(os("security_group", "security_group", &id, rules.picks(marks)));
        groups.push(id);
    }
    let group_ids = |indices: &[Index]| -> Vec<String> {
        let mut ids: Vec<String> = indices.iter().filter_map(|i| pick(&groups, i).cloned()).collect();
        ids.sort();
        ids.dedup();
        ids
    };

    // Routers, and their interfaces: an interface is selected with its router.
    let mut routers = Vec::new();
    for (r, router) in plan.routers.iter().enumerate() {
        let gateway = router.gateway.then_some(public.as_str());
        let id = sim
            .create_router(&router.marks.name("router", r), gateway, &router.marks.tags())
            .unwrap();
        old(built, "router", &id, &router.marks);
        built.add(os("router", "router", &id, rules.picks(&router.marks)));
        routers.push((id, router.clone()));
    }
    // Per subnet with an interface: the router it joins (for floating IPs).
    let mut router_of_subnet: HashMap<String, (String, bool)> = HashMap::new();
    let mut interface_of_subnet: HashMap<String, String> = HashMap::new();
    for (subnet_id, network_id, router) in &subnets {
        let Some((router_id, router_plan)) = router.as_ref().and_then(|r| pick(&routers, r)) else {
            continue;
        };
        let port = sim.add_router_interface(router_id, subnet_id).unwrap();
        built.add(os(
            "router_interface",
            "port",
            &port,
            rules.picks(&router_plan.marks),
        ));
        built.uses(&port, router_id);
        built.uses(&port, subnet_id);
        built.uses(&port, network_id);
        router_of_subnet.insert(subnet_id.clone(), (router_id.clone(), router_plan.gateway));
        interface_of_subnet.insert(subnet_id.clone(), port);
    }

    // Ports made beforehand.
    let mut ports = Vec::new();
    for (p, port) in plan.ports.iter().enumerate() {
        let Some(network) = network_of(&port.network) else {
            continue;
        };
        let port_groups = group_ids(&port.groups);
        let refs: Vec<&str> = port_groups.iter().map(String::as_str).collect();
        let id = sim
            .create_port(&network, &port.marks.name("port", p), &refs, &port.marks.tags())
            .unwrap();
        old(built, "port", &id, &port.marks);
        built.add(os("port", "port", &id, rules.picks(&port.marks)));
        built.uses(&id, &network);
        for subnet in sim.port_subnets(&id) {
            built.uses(&id, &subnet);
        }
        if port_groups.is_empty() {
            built.uses(&id, &default_group);
        }
        for group in &port_groups {
            built.uses(&id, group);
        }
        ports.push(id);
    }

    let mut keypairs = Vec::new();
    for (k, marks) in plan.keypairs.iter().enumerate() {
        let name = sim.create_keypair(&marks.name("key", k)).unwrap();
        old(built, "keypair", &name, marks);
        // Nova lists keypairs without their creation time: their age counts from this pass.
        let selected = rules.picks_untaggable(marks.ci_name, marks.old, false);
        built.add(os("keypair", "keypair", &name, selected));
        keypairs.push(name);
    }
    let mut server_groups = Vec::new();
    for (g, marks) in plan.server_groups.iter().enumerate() {
        let id = sim
            .create_server_group(&marks.name("group", g), "anti-affinity")
            .unwrap();
        let selected = rules.picks_untaggable(marks.ci_name, marks.old, false);
        built.add(os("server_group", "server_group", &id, selected));
        server_groups.push(id);
    }

    // Volumes and their snapshots (a snapshot needs an available volume: before any attachment).
    let mut volumes = Vec::new();
    for (v, volume) in plan.volumes.iter().enumerate() {
        let id = sim
            .create_volume(&volume.marks.name("vol", v), 1, &volume.marks.metadata())
            .unwrap();
        old(built, "volume", &id, &volume.marks);
        built.add(os("volume", "volume", &id, rules.picks(&volume.marks)));
        for (s, marks) in volume.snapshots.iter().enumerate() {
            let snapshot = sim
                .create_snapshot(&id, &marks.name(&format!("snap-{v}"), s), &marks.metadata())
                .unwrap();
            old(built, "volume_snapshot", &snapshot, marks);
            built.add(os(
                "volume_snapshot",
                "volume_snapshot",
                &snapshot,
                rules.picks(marks),
            ));
            built.uses(&snapshot, &id);
        }
        volumes.push((id, volume.server));
    }

    let mut bound: BTreeSet<String> = BTreeSet::new();
    let mut servers = Vec::new();
    for (s, server) in plan.servers.iter().enumerate() {
        let given: Vec<String> = server
            .ports
            .iter()
            .filter_map(|i| pick(&ports, i).cloned())
            .filter(|p| !bound.contains(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let on_networks: Vec<String> = server.networks.iter().filter_map(&network_of).collect();
        let nova_groups = group_ids(&server.groups);
        let keypair = server.keypair.as_ref().and_then(|i| pick(&keypairs, i)).cloned();
        let server_group = server
            .server_group
            .as_ref()
            .and_then(|i| pick(&server_groups, i))
            .cloned();
        let name = server.marks.name("vm", s);
        let tags = server.marks.tags();
        let given_refs: Vec<&str> = given.iter().map(String::as_str).collect();
        let network_refs: Vec<&str> = on_networks.iter().map(String::as_str).collect();
        let group_refs: Vec<&str> = nova_groups.iter().map(String::as_str).collect();
        let id = sim
            .create_server(NewServer {
                name: &name,
                ports: &given_refs,
                networks: &network_refs,
                tags: &tags,
                key_name: keypair.as_deref(),
                server_group: server_group.as_deref(),
                security_groups: &group_refs,
            })
            .unwrap();
        old(built, "server", &id, &server.marks);
        let mut known = os("server", "server", &id, rules.picks(&server.marks));
        known.locked = server.locked;
        built.add(known);
        for port in &given {
            built.uses(&id, port);
            bound.insert(port.clone());
        }
        // Nova makes one port per network, in their order.
        for (port, network) in sim.nova_ports(&id).into_iter().zip(&on_networks) {
            let mut known = os("port", "port", &port, false);
            known.owner = Some(id.clone());
            built.add(known);
            built.uses(&id, &port);
            built.uses(&port, network);
            for subnet in sim.port_subnets(&port) {
                built.uses(&port, &subnet);
            }
            if nova_groups.is_empty() {
                built.uses(&port, &default_group);
            }
            for group in &nova_groups {
                built.uses(&port, group);
            }
        }
        if let Some(keypair) = &keypair {
            built.uses(&id, keypair);
        }
        if let Some(group) = &server_group {
            built.uses(&id, group);
        }
        servers.push(id);
    }
    for (volume, server) in &volumes {
        let Some(server) = server.as_ref().and_then(|i| pick(&servers, i)) else {
            continue;
        };
        sim.attach_volume(server, volume).unwrap();
        built.uses(server, volume);
    }
    // Locked last: a locked server refuses attachments too.
    for (server, plan) in servers.iter().zip(&plan.servers) {
        if plan.locked {
            sim.set_server_locked(server, true).unwrap();
        }
    }

    // Floating IPs: on a port (one each) whose subnet a router joins to `public`, else unassociated.
    let mut with_fip: BTreeSet<String> = BTreeSet::new();
    for fip in &plan.fips {
        let port = fip
            .port
            .as_ref()
            .and_then(|i| pick(&ports, i))
            .filter(|port| !with_fip.contains(*port))
            .cloned();
        let route = port.as_ref().and_then(|port| {
            sim.port_subnets(port).into_iter().find_map(|subnet| {
                let (router, gateway) = router_of_subnet.get(&subnet)?;
                gateway.then(|| (port.clone(), router.clone(), interface_of_subnet[&subnet].clone()))
            })
        });
        let id = sim
            .create_floating_ip(route.as_ref().map(|(port, ..)| port.as_str()), &fip.marks.tags())
            .unwrap();
        old(built, "floating_ip", &id, &fip.marks);
        // A floating IP is named by its address: no name pattern matches it.
        let selected = rules.picks(&fip.marks) && !rules.name_pattern;
        built.add(os("floating_ip", "floating_ip", &id, selected));
        if let Some((port, router, interface)) = route {
            built.uses(&id, &port);
            built.uses(&id, &router);
            built.uses(&id, &interface);
            with_fip.insert(port);
        }
    }

    if plan.other_project {
        let network = sim.create_network_of_other_project("ci-theirs", &[CI]).unwrap();
        let group = sim
            .create_security_group_of_other_project("ci-theirs", &[CI])
            .unwrap();
        built.add(os("network", "network", &network, false));
        built.add(os("security_group", "security_group", &group, false));
    }
}

/// Builds the Proxmox plan in the simulator, recording what it made.
pub(crate) fn build_proxmox(plan: &ProxmoxPlan, built: &mut Built) {
    let sim = built.proxmox.clone();
    let rules = &plan.rules;
    let now = unix_now();
    let age = |old: bool| {
        if old {
            now - 3 * 3600
        } else {
            now.saturating_sub(60)
        }
    };
    for (g, guest) in plan.guests.iter().enumerate() {
        let vmid = 100 + u32::try_from(g).unwrap();
        let node = if guest.on_pve2 { "pve2" } else { "pve1" };
        let name = guest.marks.name("guest", g);
        let mut tags: Vec<String> = guest.marks.tags().into_iter().map(str::to_string).collect();
        let dated = if guest.container {
            if guest.created_tag {
                tags.push(format!("ci-created-{}", age(guest.marks.old)));
            }
            guest.created_tag
        } else {
            true
        };
        let base = if guest.container {
            GuestSpec::container(vmid, &name)
        } else {
            GuestSpec::vm(vmid, &name)
        };
        let spec = GuestSpec {
            guest_type: if guest.container {
                GuestType::Lxc
            } else {
                GuestType::Qemu
            },
            node: node.to_string(),
            tags,
            running: guest.running,
            protection: guest.protection,
            template: guest.template,
            lock: guest.lock.map(str::to_string),
            ctime: (!guest.container).then(|| age(guest.marks.old)),
            disks: vec![if guest.ceph { "ceph" } else { "local-lvm" }.to_string()],
            ..base
        };
        sim.add_guest(spec);
        let guarded = guest.template
            || guest.protection
            || guest.lock.is_some()
            || (guest.on_pve2 && plan.pve2_offline);
        // Old only if its age can be known: an undated container's counts from this pass.
        let aged = Marks {
            old: guest.marks.old && dated,
            ..guest.marks.clone()
        };
        let picked = rules.picks(&aged);
        let kind = if guest.container { "container" } else { "vm" };
        built.add(Known::new(
            PVE,
            kind,
            &vmid.to_string(),
            Place::Guest(vmid),
            picked && !guarded,
        ));
    }
    for (d, disk) in plan.disks.iter().enumerate() {
        let node = if disk.on_pve2 { "pve2" } else { "pve1" };
        let storage = if disk.ceph { "ceph" } else { "local-lvm" };
        let name = if disk.matching {
            format!("vm-99{d}-disk-0")
        } else {
            format!("vm-88{d}-disk-0")
        };
        let volid = sim.add_volume_created(node, storage, &name, age(disk.old));
        let id = if disk.ceph {
            volid.clone()
        } else {
            format!("{node}/{volid}")
        };
        let listed = disk.ceph || !(disk.on_pve2 && plan.pve2_offline);
        let selected = listed && rules.picks_untaggable(disk.matching, disk.old, true);
        built.add(Known::new(PVE, "disk", &id, Place::Disk(volid), selected));
    }
    if plan.pve2_offline {
        sim.set_node_online("pve2", false);
    }
}
