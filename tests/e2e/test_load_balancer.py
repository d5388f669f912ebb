"""cloud-janitor and Octavia: a CI job's load balancer, built through openstacksdk with a listener, a pool,
a member and a health monitor, cleaned by the janitor in order (the load balancer, with cascade, before
the subnet, network and security group its VIP port holds); and the Octavia behaviours the janitor relies
on, as the service answers them. Skipped on a target without the load-balancer service."""

from __future__ import annotations

import re

import pytest
from openstack import exceptions as os_exc

from helpers import (LOAD_BALANCER, NETWORK, SECURITY_GROUP, exists, log, metric, parse_prometheus,
                     run_janitor, write_janitor_config)

CLOUD_LABEL = "e2e"
EXIT_CLEAN = 0
# openstacksdk polls every 2 s by default; the simulator provisions in half a second.
POLL = 0.2


@pytest.fixture
def octavia(target):
    if not target.conn.has_service("load-balancer"):
        pytest.skip("this target has no load-balancer (Octavia) service")
    return target.conn.load_balancer


def wait_active(lb_api, lb_id):
    return lb_api.wait_for_load_balancer(lb_id, status="ACTIVE", failures=["ERROR"], interval=POLL, wait=600)


def job_network(conn, tracker, tag, cidr):
    """A tagged network, subnet and security group, as a CI job makes them."""
    net = conn.network.create_network(name=f"{tag}-net")
    tracker.add(NETWORK, net.id)
    conn.network.set_tags(net, [tag])
    subnet = conn.network.create_subnet(network_id=net.id, ip_version=4, cidr=cidr, name=f"{tag}-subnet")
    conn.network.set_tags(subnet, [tag])
    sg = conn.network.create_security_group(name=f"{tag}-lb-sg")
    tracker.add(SECURITY_GROUP, sg.id)
    conn.network.set_tags(sg, [tag])
    return net, subnet, sg


def job_load_balancer(octavia, tracker, tag, subnet, sg):
    """A tagged load balancer on the subnet (its VIP port in the group) with a listener, a pool, a member
    and a health monitor, each created once the load balancer is ACTIVE again."""
    lb = octavia.create_load_balancer(name=f"{tag}-lb", vip_subnet_id=subnet.id, vip_sg_ids=[sg.id],
                                      tags=[tag])
    tracker.add(LOAD_BALANCER, lb.id)
    wait_active(octavia, lb.id)
    listener = octavia.create_listener(name=f"{tag}-listener", loadbalancer_id=lb.id, protocol="HTTP",
                                       protocol_port=80, tags=[tag])
    wait_active(octavia, lb.id)
    pool = octavia.create_pool(name=f"{tag}-pool", listener_id=listener.id, protocol="HTTP",
                               lb_algorithm="ROUND_ROBIN", tags=[tag])
    wait_active(octavia, lb.id)
    member = octavia.create_member(pool, address="10.99.9.50", protocol_port=8080, subnet_id=subnet.id,
                                   tags=[tag])
    wait_active(octavia, lb.id)
    monitor = octavia.create_health_monitor(pool_id=pool.id, type="HTTP", delay=5, timeout=3, max_retries=3,
                                            tags=[tag])
    wait_active(octavia, lb.id)
    return octavia.get_load_balancer(lb.id), listener, pool, member, monitor


def first_line(lines, pattern):
    rx = re.compile(pattern)
    return next((i for i, line in enumerate(lines) if rx.search(line)), None)


def test_a_jobs_load_balancer_goes_before_what_its_vip_port_holds(target, octavia, tracker, job_tag, workdir):
    conn = target.conn
    net, subnet, sg = job_network(conn, tracker, job_tag, "10.99.9.0/24")
    lb, listener, pool, member, monitor = job_load_balancer(octavia, tracker, job_tag, subnet, sg)
    vip = conn.network.get_port(lb.vip_port_id)
    assert (vip.device_owner, vip.device_id) == ("Octavia", f"lb-{lb.id}"), vip
    # What the VIP port holds cannot go first: Neutron refuses.
    with pytest.raises(os_exc.ConflictException):
        conn.network.delete_subnet(subnet.id)

    config = write_janitor_config(workdir / "janitor.toml", cloud=target.cloud, clouds_yaml=target.clouds_yaml,
                                  tag=job_tag, cloud_label=CLOUD_LABEL)
    metrics_file = workdir / "metrics.prom"
    run = run_janitor(["once", "--config", config, "--metrics-file", metrics_file], timeout=600,
                      env={"CLOUD_JANITOR_LOG": "cloud_janitor=debug"})
    print(run.describe())
    assert run.returncode == EXIT_CLEAN, run.describe()

    lines = run.stderr.splitlines()
    lb_done = first_line(lines, rf"kind=load_balancer id={lb.id} outcome=\"?deleted")
    assert lb_done is not None, f"the janitor never reported the load balancer deleted\n{run.describe()}"
    for kind, rid in (("subnet", subnet.id), ("network", net.id), ("security_group", sg.id)):
        attempt = first_line(lines, rf"deleting .*kind={kind} id={rid}")
        assert attempt is not None, f"{kind} {rid} was never attempted\n{run.describe()}"
        assert lb_done < attempt, f"{kind} {rid} was attempted before the load balancer was gone\n{run.describe()}"
    assert first_line(lines, rf"deleting .*kind=port id={vip.id}") is None, "the VIP port is Octavia's to delete"

    assert not exists(conn, LOAD_BALANCER, lb.id)
    for what, get, rid in (("listener", octavia.get_listener, listener.id), ("pool", octavia.get_pool, pool.id),
                           ("health monitor", octavia.get_health_monitor, monitor.id)):
        with pytest.raises(os_exc.NotFoundException):
            get(rid)
        log(f"{what} {rid} went with its load balancer")
    with pytest.raises(os_exc.NotFoundException):
        conn.network.get_port(vip.id)
    for kind, rid in ((NETWORK, net.id), (SECURITY_GROUP, sg.id)):
        assert not exists(conn, kind, rid), f"{kind} {rid} is still there"
    samples = parse_prometheus(metrics_file.read_text())
    assert metric(samples, "cloud_janitor_deletes_total", cloud=CLOUD_LABEL, kind="load_balancer",
                  outcome="deleted") == 1


def test_octavia_refuses_a_delete_without_cascade_of_one_with_children_and_any_delete_while_pending(
        target, octavia, tracker, job_tag):
    """What the janitor relies on: a plain DELETE of a load balancer with a listener is refused (400; the
    janitor always sends cascade=true), and so is a DELETE while it is PENDING_* (409: the janitor waits
    for ACTIVE or ERROR first)."""
    conn = target.conn
    _, subnet, sg = job_network(conn, tracker, job_tag, "10.99.10.0/24")
    lb = octavia.create_load_balancer(name=f"{job_tag}-lb", vip_subnet_id=subnet.id, tags=[job_tag])
    tracker.add(LOAD_BALANCER, lb.id)
    if octavia.get_load_balancer(lb.id).provisioning_status.startswith("PENDING_"):
        with pytest.raises(os_exc.ConflictException):
            octavia.delete_load_balancer(lb.id, cascade=True)
    else:
        log("the load balancer was ACTIVE before the 409 could be seen")
    wait_active(octavia, lb.id)
    octavia.create_listener(loadbalancer_id=lb.id, protocol="TCP", protocol_port=22)
    wait_active(octavia, lb.id)
    with pytest.raises(os_exc.BadRequestException) as refused:
        octavia.delete_load_balancer(lb.id)
    assert "it has children" in str(refused.value), refused.value
    octavia.delete_load_balancer(lb.id, cascade=True)
    assert octavia.get_load_balancer(lb.id).provisioning_status == "PENDING_DELETE"
