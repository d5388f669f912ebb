"""What an interrupted CI job leaves behind, created through openstacksdk as the demo user, plus the
resources around it that the janitor must leave alone.

Everything created is registered with the Tracker first thing, so the test's cleanup removes it even
when creation fails half-way.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from helpers import (FLOATING_IP, KEYPAIR, NETWORK, PORT, ROUTER, ROUTER_INTERFACE, SECURITY_GROUP,
                     SERVER, SERVER_GROUP, SUBNET, TAGLESS_KINDS_SELECTED_BY_NAME, VOLUME,
                     VOLUME_SNAPSHOT, Tracker, fingerprint, log,
                     wait_server_status, wait_snapshot_status, wait_volume_status)

VOLUME_METADATA_KEY = "ci-job"


def new_tag() -> str:
    return f"ci-job-{uuid.uuid4().hex[:8]}"


def ssh_public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@dataclasses.dataclass
class Topology:
    tag: str
    # kind -> ids the janitor must delete (keypairs by name)
    selected: dict = dataclasses.field(default_factory=dict)
    # kind -> ids that must still be there afterwards, unchanged
    survivors: dict = dataclasses.field(default_factory=dict)
    # (kind, id) -> fingerprint taken once everything was created
    fingerprints: dict = dataclasses.field(default_factory=dict)
    # ids of resources Nova creates and deletes itself (ports of servers booted on a network): gone
    # afterwards, but not necessarily deleted by the janitor
    owned_by_nova: list = dataclasses.field(default_factory=list)
    # a port with device_owner network:dhcp, removed by Neutron with its network: gone afterwards, never
    # deleted directly
    dhcp_port: str | None = None
    in_use_sg: str | None = None
    in_use_sg_name: str | None = None
    in_use_by_port: str | None = None
    has_volumes: bool = False
    names: dict = dataclasses.field(default_factory=dict)

    def select(self, kind: str, rid: str) -> str:
        self.selected.setdefault(kind, []).append(rid)
        return rid

    def survive(self, kind: str, rid: str) -> str:
        self.survivors.setdefault(kind, []).append(rid)
        return rid

    def count(self, kind: str) -> int:
        return len(self.selected.get(kind, []))


def _cidr(tag: str, n: int) -> str:
    # unique enough per test (overlapping CIDRs across networks are allowed anyway; not on one router)
    rnd = random.Random(f"{tag}-{n}")
    return f"10.{rnd.randint(100, 199)}.{rnd.randint(0, 255)}.0/24"


def build(conn, tracker: Tracker, target, tag: str, *, in_use: bool = True, volumes: bool = True,
          extras: bool = True) -> Topology:
    """Creates the CI-like leftover topology tagged `tag`, and untagged survivors.

    Selected (tagged `tag`): network + subnet; a router with an external gateway to `public` and an
    interface on the subnet; security groups A (rules, one referencing B as remote group) and B; port A
    (SG A) with a floating IP, a loose port C (SG B), a port on the shared network; server A booted on
    port A (keypair and server group named after the tag), server B booted on the network (Nova makes
    its port) with volume B attached (snapshot B taken before the attach); volume C with snapshot C.
    Survivors (untagged): a network + subnet + port + server; with `in_use`, a TAGGED security group that
    an UNTAGGED port on that network uses (the janitor must report it as left, in use by that port).
    With `extras`: the job tag is also put on things that are never selected: the external network
    `public` and the shared network of another project (where the credentials allow), the project's
    default security group, and a fake DHCP port sits on the tagged network.
    """
    t0 = time.monotonic()
    topo = Topology(tag=tag)
    net_api, compute = conn.network, conn.compute
    tags = [tag]

    def tag_neutron(res):
        net_api.set_tags(res, tags)
        return res

    # ---- networks
    net = tag_neutron(net_api.create_network(name=f"{tag}-net"))
    topo.select(NETWORK, tracker.add(NETWORK, net.id))
    subnet = tag_neutron(net_api.create_subnet(name=f"{tag}-subnet", network_id=net.id, ip_version=4,
                                               cidr=_cidr(tag, 1)))
    topo.select(SUBNET, subnet.id)  # deleted with its network by the cleanup

    unet = net_api.create_network(name=f"{tag}-keep-net")  # untagged; the name alone selects nothing
    topo.survive(NETWORK, tracker.add(NETWORK, unet.id))
    usubnet = net_api.create_subnet(name=f"{tag}-keep-subnet", network_id=unet.id, ip_version=4,
                                    cidr=_cidr(tag, 2))
    topo.survive(SUBNET, usubnet.id)

    # ---- security groups
    sg_a = tag_neutron(net_api.create_security_group(name=f"{tag}-sg-a", description="e2e"))
    topo.select(SECURITY_GROUP, tracker.add(SECURITY_GROUP, sg_a.id))
    sg_b = tag_neutron(net_api.create_security_group(name=f"{tag}-sg-b", description="e2e"))
    topo.select(SECURITY_GROUP, tracker.add(SECURITY_GROUP, sg_b.id))
    for rule in (dict(protocol="tcp", port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0"),
                 dict(protocol="icmp", remote_ip_prefix="0.0.0.0/0"),
                 dict(protocol="tcp", port_range_min=6443, port_range_max=6443, remote_group_id=sg_b.id)):
        net_api.create_security_group_rule(security_group_id=sg_a.id, direction="ingress",
                                           ethertype="IPv4", **rule)
    net_api.create_security_group_rule(security_group_id=sg_b.id, direction="ingress", ethertype="IPv4",
                                       protocol="udp", port_range_min=53, port_range_max=53,
                                       remote_ip_prefix="10.0.0.0/8")

    # ---- router with gateway and interface
    router = tag_neutron(net_api.create_router(
        name=f"{tag}-router", external_gateway_info={"network_id": target.public_network_id}))
    topo.select(ROUTER, tracker.add(ROUTER, router.id))
    net_api.add_interface_to_router(router, subnet=subnet.id)
    rif = [p.id for p in net_api.ports(device_id=router.id)
           if (p.device_owner or "").startswith("network:router_interface")]
    assert len(rif) == 1, f"router interface ports: {rif}"
    topo.select(ROUTER_INTERFACE, rif[0])

    # ---- ports and a floating IP
    port_a = tag_neutron(net_api.create_port(name=f"{tag}-port-a", network_id=net.id,
                                             security_group_ids=[sg_a.id]))
    topo.select(PORT, tracker.add(PORT, port_a.id))
    port_c = tag_neutron(net_api.create_port(name=f"{tag}-port-c", network_id=net.id,
                                             security_group_ids=[sg_b.id]))
    topo.select(PORT, tracker.add(PORT, port_c.id))
    fip = tag_neutron(net_api.create_ip(floating_network_id=target.public_network_id, port_id=port_a.id))
    topo.select(FLOATING_IP, tracker.add(FLOATING_IP, fip.id))
    if target.shared_network_id:
        port_s = tag_neutron(net_api.create_port(name=f"{tag}-port-shared",
                                                 network_id=target.shared_network_id))
        topo.select(PORT, tracker.add(PORT, port_s.id))

    uport = net_api.create_port(name=f"{tag}-keep-port", network_id=unet.id)
    topo.survive(PORT, tracker.add(PORT, uport.id))
    if in_use:
        sg_in_use = tag_neutron(net_api.create_security_group(name=f"{tag}-sg-in-use", description="e2e"))
        tracker.add(SECURITY_GROUP, sg_in_use.id)
        net_api.create_security_group_rule(security_group_id=sg_in_use.id, direction="ingress",
                                           ethertype="IPv4", protocol="tcp", port_range_min=80,
                                           port_range_max=80, remote_ip_prefix="0.0.0.0/0")
        user = net_api.create_port(name=f"{tag}-keep-port-sg", network_id=unet.id,
                                   security_group_ids=[sg_in_use.id])
        tracker.add(PORT, user.id)
        topo.survive(PORT, user.id)
        topo.survive(SECURITY_GROUP, sg_in_use.id)
        topo.in_use_sg, topo.in_use_sg_name, topo.in_use_by_port = sg_in_use.id, sg_in_use.name, user.id

    # ---- keypair and server group: no tags in Nova, named after the job
    by_name = topo.select if TAGLESS_KINDS_SELECTED_BY_NAME else topo.survive
    keypair = compute.create_keypair(name=f"{tag}-key", public_key=ssh_public_key())
    by_name(KEYPAIR, tracker.add(KEYPAIR, keypair.name))
    group = compute.create_server_group(name=f"{tag}-group", policy="affinity")
    by_name(SERVER_GROUP, tracker.add(SERVER_GROUP, group.id))

    # ---- servers (boot all, then wait: the fake driver takes a few seconds each)
    common = dict(image_id=target.image_id, flavor_id=target.flavor_id)
    srv_a = compute.create_server(name=f"{tag}-server-a", networks=[{"port": port_a.id}],
                                  key_name=keypair.name, scheduler_hints={"group": group.id}, **common)
    topo.select(SERVER, tracker.add(SERVER, srv_a.id))
    srv_b = compute.create_server(name=f"{tag}-server-b", networks=[{"uuid": net.id}], **common)
    topo.select(SERVER, tracker.add(SERVER, srv_b.id))
    usrv = compute.create_server(name=f"{tag}-keep-server", networks=[{"port": uport.id}], **common)
    topo.survive(SERVER, tracker.add(SERVER, usrv.id))

    # ---- volumes (while the servers build)
    if volumes and target.has_block_storage:
        topo.has_volumes = True
        bs = conn.block_storage
        meta = {VOLUME_METADATA_KEY: tag}
        vol_b = bs.create_volume(name=f"{tag}-vol-b", size=1, metadata=meta)
        topo.select(VOLUME, tracker.add(VOLUME, vol_b.id))
        vol_c = bs.create_volume(name=f"{tag}-vol-c", size=1, metadata=meta)
        topo.select(VOLUME, tracker.add(VOLUME, vol_c.id))
        uvol = bs.create_volume(name=f"{tag}-keep-vol", size=1)
        topo.survive(VOLUME, tracker.add(VOLUME, uvol.id))
        for v in (vol_b, vol_c, uvol):
            wait_volume_status(conn, v.id, "available")
        for v, name in ((vol_b, "snap-b"), (vol_c, "snap-c")):
            snap = bs.create_snapshot(volume_id=v.id, name=f"{tag}-{name}", metadata=meta)
            topo.select(VOLUME_SNAPSHOT, tracker.add(VOLUME_SNAPSHOT, snap.id))
        for sid in topo.selected[VOLUME_SNAPSHOT]:
            wait_snapshot_status(conn, sid, "available")

    for sid in (srv_a.id, srv_b.id, usrv.id):
        wait_server_status(conn, sid, "ACTIVE")
    # Nova accepts tag changes only once the server left vm_state building (409 before)
    compute.add_tag_to_server(srv_a, tag)
    compute.add_tag_to_server(srv_b, tag)
    nova_ports = [p.id for p in net_api.ports(device_id=srv_b.id)]
    assert len(nova_ports) == 1, f"ports of server B: {nova_ports}"
    topo.owned_by_nova.extend(nova_ports)

    if topo.has_volumes:
        compute.create_volume_attachment(srv_b, volume=topo.selected[VOLUME][0])
        wait_volume_status(conn, topo.selected[VOLUME][0], "in-use")

    # ---- never selected, whatever their tags say
    if extras:
        dhcp = net_api.create_port(name="", network_id=net.id, device_owner="network:dhcp",
                                   device_id=f"dhcp{uuid.uuid4().hex[:24]}")
        tracker.add(PORT, dhcp.id)
        topo.dhcp_port = dhcp.id
        default_sg = next(iter(net_api.security_groups(name="default", project_id=target.project_id)), None)
        if default_sg is not None:
            net_api.add_tag(default_sg, tag)
            tracker.foreign_tags.append((conn, SECURITY_GROUP, default_sg.id, tag))
            topo.survive(SECURITY_GROUP, default_sg.id)
        for owner_conn, net_id in ((target.admin_conn, target.public_network_id),
                                   (target.other_conn, target.shared_network_id)):
            if owner_conn is None or net_id is None:
                continue
            owner_conn.network.add_tag(owner_conn.network.get_network(net_id), tag)
            tracker.foreign_tags.append((owner_conn, NETWORK, net_id, tag))
            topo.survive(NETWORK, net_id)
        if target.other_conn is not None:
            # another project's tagged network: invisible to demo, so safe by construction; proves it
            other_net = target.other_conn.network.create_network(name=f"{tag}-other-net")
            target.other_conn.network.set_tags(other_net, tags)
            tracker.add(NETWORK, other_net.id, owner="other")
            topo.names["other_project_network"] = other_net.id

    for kind, ids in topo.survivors.items():
        for rid in ids:
            topo.fingerprints[(kind, rid)] = fingerprint(conn, kind, rid)
    log(f"topology {tag}: {sum(len(v) for v in topo.selected.values())} selected, "
        f"{sum(len(v) for v in topo.survivors.values())} survivors, built in {time.monotonic() - t0:.1f}s")
    return topo
