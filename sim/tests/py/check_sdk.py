"""Proves openstacksdk understands the simulated OpenStack: auth, discovery, catalog, microversions,
the resources cloud-janitor deletes, tag filters, conflicts and asynchronous deletes.

Usage: start the simulator (cargo run -p cloud-janitor-sim --example serve_openstack -- 127.0.0.1:0
/tmp/clouds.yaml), then OS_CLIENT_CONFIG_FILE=/tmp/clouds.yaml python check_sdk.py. Needs
`pip install openstacksdk`. Exits non-zero on the first disagreement.
"""

import json
import sys
import time

import openstack
from openstack import exceptions

TAGS = ["ci-job", "job-sdk"]


def expect(exception_type, action, *args, **kwargs):
    """Runs action and returns the exception it must raise."""
    try:
        action(*args, **kwargs)
    except exception_type as error:
        return error
    raise AssertionError(f"{action.__name__} did not raise {exception_type.__name__}")


def wait_gone(get, resource_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            get(resource_id)
        except exceptions.NotFoundException:
            return
        time.sleep(0.05)
    raise AssertionError(f"{resource_id} still there after {timeout}s")


def main():
    conn = openstack.connect(cloud="sim")
    net_api, compute, storage = conn.network, conn.compute, conn.block_storage

    public = net_api.find_network("public")
    assert public is not None and public.is_router_external, public

    # Network, subnet, router with gateway and interface, security group with a rule, port.
    net = net_api.create_network(name="sdk-net")
    subnet = net_api.create_subnet(network_id=net.id, cidr="10.50.0.0/24", ip_version=4, name="sdk-subnet")
    router = net_api.create_router(name="sdk-router", external_gateway_info={"network_id": public.id})
    assert router.external_gateway_info["network_id"] == public.id, router
    net_api.add_interface_to_router(router, subnet_id=subnet.id)
    group = net_api.create_security_group(name="sdk-sg")
    net_api.create_security_group_rule(
        security_group_id=group.id, direction="ingress", protocol="tcp",
        port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0",
    )
    port = net_api.create_port(network_id=net.id, name="sdk-port", security_group_ids=[group.id])
    assert port.fixed_ips and port.fixed_ips[0]["subnet_id"] == subnet.id, port
    net_api.set_tags(port, TAGS)
    net_api.set_tags(net, TAGS)
    # Like the real test stack (no DHCP agent), the simulator makes no DHCP port by default.
    dhcp = list(net_api.ports(network_id=net.id, device_owner="network:dhcp"))
    assert dhcp == [], dhcp

    # Floating IP on the port, routed by the router.
    fip = net_api.create_ip(floating_network_id=public.id, port_id=port.id)
    assert fip.router_id == router.id and fip.port_id == port.id, fip

    # Server on the pre-created port, with tags (microversion >= 2.52 negotiated by the SDK).
    server = compute.create_server(
        name="sdk-vm", image_id="cirros", flavor_id="1", networks=[{"port": port.id}], tags=TAGS,
    )
    server = compute.wait_for_server(server, wait=30)
    assert server.status == "ACTIVE", server.status
    assert sorted(compute.get_server(server.id).tags) == sorted(TAGS)
    assert net_api.get_port(port.id).device_id == server.id

    # Volume, attach, snapshot (forced while attached).
    volume = storage.create_volume(size=1, name="sdk-vol", metadata={"ci-job": "true"})
    storage.wait_for_status(volume, "available", wait=30)
    compute.create_volume_attachment(server, volume_id=volume.id)
    volume = storage.wait_for_status(storage.get_volume(volume.id), "in-use", wait=30)
    assert volume.attachments[0]["server_id"] == server.id, volume.attachments
    snapshot = storage.create_snapshot(volume_id=volume.id, name="sdk-snap", force=True)
    storage.wait_for_status(snapshot, "available", wait=30)

    # Tag and metadata filters.
    assert [s.id for s in compute.servers(tags="ci-job")] == [server.id]
    assert [s.id for s in compute.servers(not_tags="ci-job")] == []
    assert [p.id for p in net_api.ports(tags="ci-job,job-sdk")] == [port.id]
    assert [n.id for n in net_api.networks(any_tags="job-sdk,nope")] == [net.id]
    assert net.id not in [n.id for n in net_api.networks(not_tags="ci-job")]
    # Cinder parses the metadata filter from a dict literal; the SDK passes the string through.
    assert [v.id for v in storage.volumes(properties=json.dumps({"ci-job": "true"}))] == [volume.id]

    # Pagination is followed by the SDK's generator.
    extra = [net_api.create_network(name=f"sdk-page-{i}") for i in range(5)]
    paged = [n.id for n in net_api.networks(limit=2)]
    assert len(paged) == len(set(paged)) and all(n.id in paged for n in extra), paged

    # Conflicts the janitor must order around.
    error = expect(exceptions.ConflictException, net_api.delete_security_group, group)
    assert "in use" in str(error), error
    expect(exceptions.BadRequestException, storage.delete_volume, volume)
    expect(exceptions.ConflictException, net_api.delete_network, net)
    expect(exceptions.ConflictException, net_api.remove_interface_from_router, router, subnet_id=subnet.id)
    expect(exceptions.ForbiddenException, net_api.delete_port, port)  # bound by Nova: compute:nova

    # Server delete: asynchronous, then the port is unbound and the volume detached.
    compute.delete_server(server)
    compute.wait_for_delete(server, wait=30)
    assert net_api.get_port(port.id).device_id == ""
    storage.wait_for_status(storage.get_volume(volume.id), "available", wait=30)

    # Delete the rest in dependency order.
    net_api.delete_ip(fip)
    net_api.remove_interface_from_router(router, subnet_id=subnet.id)
    net_api.delete_router(router)
    net_api.delete_port(port)
    net_api.delete_security_group(group)
    storage.delete_snapshot(snapshot)
    wait_gone(storage.get_snapshot, snapshot.id)
    storage.delete_volume(volume)
    wait_gone(storage.get_volume, volume.id)
    net_api.delete_network(net)
    for network in extra:
        net_api.delete_network(network)
    expect(exceptions.ForbiddenException, net_api.delete_network, public)

    # Keypair and server group, then the application credential cloud.
    keypair = compute.create_keypair(name="ci-sdk-key")
    assert [k.name for k in compute.keypairs()] == [keypair.name]
    compute.delete_keypair(keypair)
    group = compute.create_server_group(name="ci-sdk-group", policy="anti-affinity")
    assert compute.get_server_group(group.id).name == "ci-sdk-group"
    compute.delete_server_group(group)
    appcred = openstack.connect(cloud="sim-appcred")
    assert appcred.network.find_network("public") is not None
    assert list(openstack.connect(cloud="sim-admin").compute.servers(all_projects=True)) == []

    print("openstacksdk agrees with the simulator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
