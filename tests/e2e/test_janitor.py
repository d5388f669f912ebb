"""cloud-janitor against a CI-like leftover topology, created through openstacksdk on the simulator or a
real OpenStack (JANITOR_E2E_TARGET), checked through openstacksdk afterwards."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import topology
from helpers import (FLOATING_IP, KEYPAIR, NETWORK, PORT, ROUTER, ROUTER_INTERFACE, SECURITY_GROUP,
                     SERVER, SERVER_GROUP, SUBNET, VOLUME, VOLUME_SNAPSHOT, exists, fingerprint, flatten,
                     json_strings, log, metric, metric_series, parse_prometheus, run_janitor,
                     wait_server_status, write_janitor_config)

CLOUD_LABEL = "e2e"  # the `name` of the cloud in the janitor config: the `cloud` label of every metric

# Exit codes of `cloud-janitor once` (issue 2)
EXIT_CLEAN, EXIT_LEFTOVERS = 0, 1


# ------------------------------------------------------------------------------------ assertions
def assert_selected_gone(target, topo):
    conn = target.conn
    still = [(kind, rid) for kind, rid in flatten(topo.selected) if exists(conn, kind, rid)]
    still += [("port (Nova's)", pid) for pid in topo.owned_by_nova if exists(conn, PORT, pid)]
    if topo.dhcp_port and exists(conn, PORT, topo.dhcp_port):
        still.append(("port (network:dhcp)", topo.dhcp_port))
    assert not still, f"selected resources still there after the pass: {still}"


def assert_survivors_unchanged(target, topo, *, after: str):
    changed = {}
    for (kind, rid), before in topo.fingerprints.items():
        now = fingerprint(target.conn, kind, rid)
        if now != before:
            changed[f"{kind} {rid}"] = {"before": before, "now": now}
    if topo.names.get("other_project_network") and target.other_conn is not None:
        if not exists(target.other_conn, NETWORK, topo.names["other_project_network"]):
            changed["other project's network"] = "deleted"
    assert not changed, f"resources that must be left alone changed after {after}: {changed}"


def assert_still_there(target, topo):
    missing = [(kind, rid) for kind, rid in flatten(topo.selected) if not exists(target.conn, kind, rid)]
    assert not missing, f"plan deleted something: {missing}"


def expected_deletes(topo) -> dict:
    """kind -> (min, max) of cloud_janitor_deletes_total{outcome="deleted"} after one pass.
    Ports: the pre-created tagged ports; the janitor may or may not count the port Nova deletes with
    its server. Router interfaces: at least the one added. Everything else exactly."""
    exp = {}
    for kind in (SERVER, FLOATING_IP, ROUTER, SUBNET, NETWORK, SECURITY_GROUP, VOLUME, VOLUME_SNAPSHOT,
                 KEYPAIR, SERVER_GROUP):
        n = topo.count(kind)  # the in-use security group is a survivor, not in `selected`
        exp[kind] = (n, n)
    exp[PORT] = (topo.count(PORT), topo.count(PORT) + len(topo.owned_by_nova))
    exp[ROUTER_INTERFACE] = (topo.count(ROUTER_INTERFACE), topo.count(ROUTER_INTERFACE))
    return exp


def check_metrics(run, topo, *, leftovers: dict):
    """`leftovers`: (kind, reason) -> count expected in cloud_janitor_leftover_resources; every other
    series must be 0."""
    assert run.metrics_text is not None, "no metrics file written"
    samples = parse_prometheus(run.metrics_text)
    problems = []
    for (kind, reason), want in leftovers.items():
        got = metric(samples, "cloud_janitor_leftover_resources", cloud=CLOUD_LABEL, kind=kind, reason=reason)
        if got != want:
            problems.append(f"leftover_resources{{kind={kind},reason={reason}}} = {got}, want {want}")
    for labels, value in metric_series(samples, "cloud_janitor_leftover_resources", cloud=CLOUD_LABEL):
        if (labels.get("kind"), labels.get("reason")) not in leftovers and value != 0:
            problems.append(f"unexpected leftover series {labels} = {value}")
    for kind, (lo, hi) in expected_deletes(topo).items():
        got = metric(samples, "cloud_janitor_deletes_total", cloud=CLOUD_LABEL, kind=kind, outcome="deleted") or 0
        if not lo <= got <= hi:
            problems.append(f"deletes_total{{kind={kind},outcome=deleted}} = {got}, want {lo}..{hi}")
    for labels, value in metric_series(samples, "cloud_janitor_deletes_total", cloud=CLOUD_LABEL):
        if labels.get("outcome") != "deleted" and value:
            log(f"note: deletes_total {labels} = {value}")  # retried conflicts are not lost work
    assert not problems, "metrics disagree with the cloud:\n  " + "\n  ".join(problems) + \
        "\n--- metrics\n" + run.metrics_text


def run_once(target, workdir, tag, *, timeout=600, popen_hook=None, cloud=None):
    config = write_janitor_config(workdir / "janitor.toml", cloud=cloud or target.cloud,
                                  clouds_yaml=target.clouds_yaml, tag=tag, cloud_label=CLOUD_LABEL)
    metrics_file = workdir / "metrics.prom"
    run = run_janitor(["once", "--config", config, "--metrics-file", metrics_file], timeout=timeout,
                      popen_hook=popen_hook)
    run.metrics_text = metrics_file.read_text() if metrics_file.exists() else None
    print(run.describe())
    return run


# ------------------------------------------------------------------------------------ tests
def test_topology_builds_and_cleans_up(target, tracker, job_tag):
    """The fixtures themselves: the topology can be built on this target and the safety-net cleanup
    removes all of it (so a failing janitor test never leaves work for the next one)."""
    topo = topology.build(target.conn, tracker, target, job_tag)
    assert_still_there(target, topo)
    tracker.cleanup()
    left = [(k, r) for k, r in flatten(topo.selected) if exists(target.conn, k, r)]
    left += [(k, r) for k, r in flatten(topo.survivors)
             if exists(target.conn, k, r) and r not in (target.public_network_id, target.shared_network_id)
             and not (k == SECURITY_GROUP and target.conn.network.get_security_group(r).name == "default")]
    assert not left, f"cleanup left: {left}"
    tracker.created = {k: [] for k in tracker.created}
    tracker.foreign_tags = []


def test_plan_then_once_reports_security_group_in_use(target, tracker, job_tag, workdir):
    """The full topology with a tagged security group that an untagged port uses: `plan` deletes
    nothing and lists the selection; `once` deletes everything else, leaves the in-use group, says why,
    exits 1, and its metrics agree."""
    topo = topology.build(target.conn, tracker, target, job_tag, in_use=True)
    config = write_janitor_config(workdir / "janitor.toml", cloud=target.cloud,
                                  clouds_yaml=target.clouds_yaml, tag=job_tag, cloud_label=CLOUD_LABEL)

    plan = run_janitor(["plan", "--config", config, "--output", "json"], timeout=180)
    assert plan.returncode == 0, plan.describe()
    try:
        doc = json.loads(plan.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"plan --output json printed no JSON document on stdout: {e}\n{plan.describe()}")
    listed = json_strings(doc)
    unlisted = [(k, r) for k, r in flatten(topo.selected) if k != ROUTER_INTERFACE and r not in listed]
    if topo.in_use_sg not in listed:
        unlisted.append((SECURITY_GROUP + " (in use)", topo.in_use_sg))
    assert not unlisted, f"plan does not list selected resources: {unlisted}\n{plan.describe()}"
    assert_still_there(target, topo)
    assert_survivors_unchanged(target, topo, after="plan")

    run = run_once(target, workdir, job_tag)
    assert run.returncode == EXIT_LEFTOVERS, run.describe()
    assert_selected_gone(target, topo)
    assert_survivors_unchanged(target, topo, after="once")
    assert exists(target.conn, SECURITY_GROUP, topo.in_use_sg)

    needle = f"in use by port {topo.in_use_by_port}"
    lines = [ln for ln in run.stdout.splitlines() if needle in ln]
    assert lines, f"the report does not say {needle!r}\n{run.describe()}"
    assert any(topo.in_use_sg in ln or topo.in_use_sg_name in ln for ln in lines), \
        f"the report line saying {needle!r} does not name security group {topo.in_use_sg}: {lines}"

    check_metrics(run, topo, leftovers={(SECURITY_GROUP, "in_use"): 1})


def test_once_deletes_everything_selected(target, tracker, job_tag, workdir):
    """Nothing selected is in use by anything unselected: `once` leaves nothing and exits 0."""
    topo = topology.build(target.conn, tracker, target, job_tag, in_use=False)
    run = run_once(target, workdir, job_tag)
    assert run.returncode == EXIT_CLEAN, run.describe()
    assert_selected_gone(target, topo)
    assert_survivors_unchanged(target, topo, after="once")
    check_metrics(run, topo, leftovers={})


UNLOCK_AFTER_S = float(os.environ.get("JANITOR_E2E_UNLOCK_AFTER", "3"))


def small_topology(conn, tracker, tag, *, server_name):
    """network + subnet + security group + port (SG) + server on the port, all tagged `tag`."""
    net = conn.network.create_network(name=f"{tag}-net")
    tracker.add(NETWORK, net.id)
    conn.network.set_tags(net, [tag])
    subnet = conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.99.7.0/24", name=f"{tag}-subnet")
    conn.network.set_tags(subnet, [tag])
    sg = conn.network.create_security_group(name=f"{tag}-sg")
    tracker.add(SECURITY_GROUP, sg.id)
    conn.network.set_tags(sg, [tag])
    port = conn.network.create_port(network_id=net.id, security_group_ids=[sg.id], name=f"{tag}-port")
    tracker.add(PORT, port.id)
    conn.network.set_tags(port, [tag])
    return net, subnet, sg, port


def boot_tagged(conn, tracker, target, tag, port, name):
    server = conn.compute.create_server(name=name, image_id=target.image_id, flavor_id=target.flavor_id,
                                        networks=[{"port": port.id}])
    tracker.add(SERVER, server.id)
    wait_server_status(conn, server.id, "ACTIVE")
    conn.compute.add_tag_to_server(server, tag)
    return server


def test_locked_server_unlocked_during_the_pass(target, tracker, job_tag, workdir):
    """A tagged server is locked when the pass starts (Nova answers its delete with 409 "... is
    locked"; the janitor may also see `locked: true` and wait) and is unlocked a few seconds into the
    pass: the janitor deletes it once the lock is gone, then everything behind it, and exits 0."""
    conn = target.conn
    net, subnet, sg, port = small_topology(conn, tracker, job_tag, server_name="locked")
    server = boot_tagged(conn, tracker, target, job_tag, port, f"{job_tag}-locked")
    conn.compute.lock_server(server)
    assert conn.compute.get_server(server.id).is_locked

    unlocked = {}

    def unlock_later(live):
        def unlock():
            time.sleep(UNLOCK_AFTER_S)
            if live.proc.poll() is None:
                conn.compute.unlock_server(server.id)
                unlocked["t"] = time.monotonic()
                log(f"unlocked server {server.id} while the pass runs")
        threading.Thread(target=unlock, daemon=True).start()

    run = run_once(target, workdir, job_tag, popen_hook=unlock_later)
    assert "t" in unlocked, f"the pass ended before the unlock, after {UNLOCK_AFTER_S}s\n{run.describe()}"
    assert run.returncode == EXIT_CLEAN, run.describe()
    gone = {k: not exists(conn, k, r) for k, r in
            ((SERVER, server.id), (PORT, port.id), (SECURITY_GROUP, sg.id), (SUBNET, subnet.id), (NETWORK, net.id))}
    assert all(gone.values()), f"not deleted: {[k for k, g in gone.items() if not g]}\n{run.describe()}"
    samples = parse_prometheus(run.metrics_text or "")
    assert metric(samples, "cloud_janitor_deletes_total", cloud=CLOUD_LABEL, kind=SERVER, outcome="deleted") == 1


def test_unforeseen_conflict_is_requeued_until_it_clears(target, tracker, job_tag, workdir):
    """Right after discovery, an untagged port starts using the tagged security group: the plan cannot
    know, so the group's delete meets a real 409 SecurityGroupInUse. The janitor requeues it, the port
    goes away two seconds after that 409, and the requeued delete succeeds: exit 0, nothing left, the
    requeue counted. A locked tagged server in front of the group is the gate that makes this
    deterministic: the janitor waits for it, the test adds the blocker, then unlocks the server."""
    conn = target.conn
    net, subnet, sg, port = small_topology(conn, tracker, job_tag, server_name="gate")
    server = boot_tagged(conn, tracker, target, job_tag, port, f"{job_tag}-gate")
    conn.compute.lock_server(server)
    unet = conn.network.create_network(name=f"{job_tag}-keep-net")
    tracker.add(NETWORK, unet.id)
    conn.network.create_subnet(network_id=unet.id, ip_version=4, cidr="10.99.8.0/24")
    state = {}

    def block_then_clear(live):
        def act():
            try:
                if not live.wait_for(r"discovered", 120):
                    state["error"] = "the janitor never logged `discovered`"
                    return
                blocker = conn.network.create_port(network_id=unet.id, security_group_ids=[sg.id],
                                                   name=f"{job_tag}-late-user")
                tracker.add(PORT, blocker.id)
                log(f"port {blocker.id} now uses security group {sg.id}")
                conn.compute.unlock_server(server.id)
                line = live.wait_for(rf"(?i){sg.id}.*(409|conflict)|(409|conflict).*{sg.id}", 120)
                state["conflict_line"] = line
                time.sleep(2)
                conn.network.delete_port(blocker.id)
                log(f"deleted port {blocker.id}; the security group is free")
            except Exception as e:  # noqa: BLE001 - reported by the test body
                state["error"] = f"{type(e).__name__}: {e}"
        threading.Thread(target=act, daemon=True).start()

    run = run_once(target, workdir, job_tag, popen_hook=block_then_clear)
    assert "error" not in state, f"{state['error']}\n{run.describe()}"
    assert state.get("conflict_line"), f"the janitor never logged a 409 on security group {sg.id}\n{run.describe()}"
    assert run.returncode == EXIT_CLEAN, run.describe()
    gone = {k: not exists(conn, k, r) for k, r in
            ((SERVER, server.id), (PORT, port.id), (SECURITY_GROUP, sg.id), (SUBNET, subnet.id), (NETWORK, net.id))}
    assert all(gone.values()), f"not deleted: {[k for k, g in gone.items() if not g]}\n{run.describe()}"
    assert exists(conn, NETWORK, unet.id), "the untagged network was deleted"
    samples = parse_prometheus(run.metrics_text or "")
    requeued = metric(samples, "cloud_janitor_conflicts_requeued_total", cloud=CLOUD_LABEL, kind=SECURITY_GROUP)
    assert requeued and requeued >= 1, f"conflicts_requeued_total for the security group: {requeued}\n{run.metrics_text}"
    assert metric(samples, "cloud_janitor_deletes_total", cloud=CLOUD_LABEL, kind=SECURITY_GROUP, outcome="deleted") == 1


def test_application_credential_auth(target, tracker, job_tag, workdir):
    """The janitor authenticates with an application credential (Keystone v3) as well as a password."""
    if not target.appcred_cloud:
        pytest.skip("this target's clouds.yaml has no application credential entry")
    conn = target.conn
    net = conn.network.create_network(name=f"{job_tag}-net")
    tracker.add(NETWORK, net.id)
    conn.network.set_tags(net, [job_tag])
    sg = conn.network.create_security_group(name=f"{job_tag}-sg")
    tracker.add(SECURITY_GROUP, sg.id)
    conn.network.set_tags(sg, [job_tag])
    run = run_once(target, workdir, job_tag, cloud=target.appcred_cloud, timeout=180)
    assert run.returncode == EXIT_CLEAN, run.describe()
    assert not exists(conn, NETWORK, net.id) and not exists(conn, SECURITY_GROUP, sg.id), run.describe()
