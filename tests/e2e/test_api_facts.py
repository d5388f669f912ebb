"""The API behaviours cloud-janitor's ordering and error handling rely on, pinned as the real services
answer them (Neutron 29, Nova 34, Cinder 29 on tests/real-openstack). Run against the simulator they
are the proof that it speaks the same: a status code, an error body, a field or an asynchronous step
that differs fails here, with the real answer in the assertion."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from helpers import (FLOATING_IP, NETWORK, PORT, ROUTER, SECURITY_GROUP, SERVER, VOLUME, VOLUME_SNAPSHOT,
                     exists, wait_server_status, wait_until, wait_volume_status)

pytestmark = pytest.mark.timeout(300)


def neutron_error(resp) -> str:
    """The `type` of a Neutron error body: {"NeutronError": {"type", "message", "detail"}}."""
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"not a JSON error body: {resp.status_code} {resp.text!r}")
    assert set(body) == {"NeutronError"}, f"Neutron error body: {body}"
    assert {"type", "message", "detail"} <= set(body["NeutronError"]), body
    return body["NeutronError"]["type"]


def expect(resp, status: int, error_type: str | None = None):
    detail = f"{resp.request.method} {resp.url} -> {resp.status_code} {resp.text[:400]}"
    assert resp.status_code == status, f"want {status} {error_type or ''}: {detail}"
    if error_type:
        assert neutron_error(resp) == error_type, f"want {error_type}: {detail}"
    return resp


def nova_cinder_error(resp, key: str, code: int) -> str:
    """Nova and Cinder errors: {"<key>": {"code": <status>, "message": "..."}}."""
    body = resp.json()
    assert list(body) == [key], f"want a {key!r} error body: {resp.status_code} {body}"
    assert body[key]["code"] == code, body
    return body[key]["message"]


@pytest.fixture
def net(target, tracker, job_tag):
    conn = target.conn
    n = conn.network.create_network(name=f"{job_tag}-facts")
    tracker.add(NETWORK, n.id)
    s = conn.network.create_subnet(network_id=n.id, ip_version=4, cidr="10.98.0.0/24")
    return n, s


# ---------------------------------------------------------------------------------------------- Neutron
def test_neutron_in_use_conflicts(target, tracker, net):
    conn = target.conn
    n, s = net
    sg = conn.network.create_security_group(name="facts-sg")
    tracker.add(SECURITY_GROUP, sg.id)
    port = conn.network.create_port(network_id=n.id, security_group_ids=[sg.id])
    tracker.add(PORT, port.id)
    router = conn.network.create_router(name="facts-router")
    tracker.add(ROUTER, router.id)
    conn.network.add_interface_to_router(router, subnet=s.id)
    rif = [p for p in conn.network.ports(device_id=router.id)]
    assert len(rif) == 1 and rif[0].device_owner == "network:router_interface", rif

    expect(conn.network.delete(f"/security-groups/{sg.id}", raise_exc=False), 409, "SecurityGroupInUse")
    expect(conn.network.delete(f"/ports/{rif[0].id}", raise_exc=False), 409, "ServicePortInUse")
    expect(conn.network.delete(f"/networks/{n.id}", raise_exc=False), 409, "NetworkInUse")
    expect(conn.network.delete(f"/subnets/{s.id}", raise_exc=False), 409, "SubnetInUse")
    expect(conn.network.delete(f"/routers/{router.id}", raise_exc=False), 409, "RouterInUse")

    # the order that works: port, router interface (PUT remove_router_interface answers 200 and the
    # interface's ids), router, security group, subnet, network: 204 each
    expect(conn.network.delete(f"/ports/{port.id}", raise_exc=False), 204)
    r = expect(conn.network.put(f"/routers/{router.id}/remove_router_interface", json={"subnet_id": s.id},
                                raise_exc=False), 200)
    assert r.json()["port_id"] == rif[0].id and r.json()["subnet_id"] == s.id, r.json()
    expect(conn.network.delete(f"/routers/{router.id}", raise_exc=False), 204)
    expect(conn.network.delete(f"/security-groups/{sg.id}", raise_exc=False), 204)
    expect(conn.network.delete(f"/subnets/{s.id}", raise_exc=False), 204)
    expect(conn.network.delete(f"/networks/{n.id}", raise_exc=False), 204)
    # deleting again: 404 with the kind's NotFound type
    for path, typ in ((f"/networks/{n.id}", "NetworkNotFound"), (f"/ports/{port.id}", "PortNotFound"),
                      (f"/subnets/{s.id}", "SubnetNotFound"), (f"/routers/{router.id}", "RouterNotFound"),
                      (f"/security-groups/{sg.id}", "SecurityGroupNotFound"),
                      (f"/floatingips/{uuid.uuid4()}", "FloatingIPNotFound")):
        expect(conn.network.delete(path, raise_exc=False), 404, typ)


def test_neutron_floating_ip_holds_router_interface(target, tracker, net):
    conn = target.conn
    n, s = net
    router = conn.network.create_router(name="facts-fip", external_gateway_info={"network_id": target.public_network_id})
    tracker.add(ROUTER, router.id)
    gw = conn.network.get_router(router.id).external_gateway_info
    assert gw["network_id"] == target.public_network_id and gw["external_fixed_ips"], gw
    conn.network.add_interface_to_router(router, subnet=s.id)
    port = conn.network.create_port(network_id=n.id)
    tracker.add(PORT, port.id)
    fip = conn.network.create_ip(floating_network_id=target.public_network_id, port_id=port.id)
    tracker.add(FLOATING_IP, fip.id)
    shown = conn.network.get(f"/floatingips/{fip.id}").json()["floatingip"]
    assert shown["router_id"] == router.id and shown["port_id"] == port.id, shown

    expect(conn.network.put(f"/routers/{router.id}/remove_router_interface", json={"subnet_id": s.id},
                            raise_exc=False), 409, "RouterInterfaceInUseByFloatingIP")
    expect(conn.network.delete(f"/routers/{router.id}", raise_exc=False), 409, "RouterInUse")
    # floating IP first, then the interface, then the router
    expect(conn.network.delete(f"/floatingips/{fip.id}", raise_exc=False), 204)
    expect(conn.network.put(f"/routers/{router.id}/remove_router_interface", json={"subnet_id": s.id},
                            raise_exc=False), 200)
    # a router whose only remaining port is its gateway is deleted without clearing the gateway first
    expect(conn.network.delete(f"/routers/{router.id}", raise_exc=False), 204)


def test_neutron_member_cannot_delete_what_it_does_not_own(target, tracker, net):
    conn = target.conn
    public = conn.network.get_network(target.public_network_id)
    assert public.is_router_external
    expect(conn.network.delete(f"/networks/{public.id}", raise_exc=False), 403, "PolicyNotAuthorized")
    expect(conn.network.delete(f"/subnets/{public.subnet_ids[0]}", raise_exc=False), 403, "PolicyNotAuthorized")
    if target.shared_network_id:
        shared = conn.network.get_network(target.shared_network_id)
        assert shared.is_shared and shared.project_id != target.project_id
        expect(conn.network.delete(f"/networks/{shared.id}", raise_exc=False), 403, "PolicyNotAuthorized")
        if shared.subnet_ids:
            expect(conn.network.delete(f"/subnets/{shared.subnet_ids[0]}", raise_exc=False), 403, "PolicyNotAuthorized")
    default = [sg for sg in conn.network.security_groups(name="default", project_id=target.project_id)]
    assert len(default) == 1, default
    expect(conn.network.delete(f"/security-groups/{default[0].id}", raise_exc=False), 409,
           "SecurityGroupCannotRemoveDefault")


def test_neutron_tags_filters_and_pagination(target, tracker, net, job_tag):
    conn = target.conn
    n, _ = net
    ids = []
    for _ in range(3):
        p = conn.network.create_port(network_id=n.id)
        tracker.add(PORT, p.id)
        ids.append(p.id)
    # PUT one tag: 201, body null; PUT the whole list: 200 {"tags": [...]}
    r = expect(conn.network.put(f"/ports/{ids[0]}/tags/{job_tag}", raise_exc=False), 201)
    assert r.text.strip() in ("", "null"), r.text
    r = expect(conn.network.put(f"/ports/{ids[1]}/tags", json={"tags": [job_tag, "other"]}, raise_exc=False), 200)
    assert sorted(r.json()["tags"]) == sorted([job_tag, "other"]), r.json()
    conn.network.set_tags(conn.network.get_port(ids[2]), [job_tag])
    assert job_tag in conn.network.get(f"/ports/{ids[0]}").json()["port"]["tags"]

    got = conn.network.get(f"/ports?tags={job_tag}&fields=id").json()["ports"]
    assert sorted(p["id"] for p in got) == sorted(ids)
    got = conn.network.get(f"/ports?tags-any={job_tag},nope&fields=id").json()["ports"]
    assert len(got) == 3, f"tags-any={job_tag},nope: {got}"
    got = conn.network.get(f"/ports?tags={job_tag},other&fields=id").json()["ports"]
    assert [p["id"] for p in got] == [ids[1]], f"tags={job_tag},other (all of): {got}"
    got = conn.network.get(f"/ports?not-tags=other&network_id={n.id}&fields=id").json()["ports"]
    assert sorted(p["id"] for p in got) == sorted([ids[0], ids[2]]), \
        f"not-tags=other must drop the port tagged `other` (Neutron does): {got}"
    got = conn.network.get(f"/ports?not-tags-any=other,nope&network_id={n.id}&fields=id").json()["ports"]
    assert sorted(p["id"] for p in got) == sorted([ids[0], ids[2]]), f"not-tags-any=other,nope: {got}"

    # pagination: `limit` + `marker`, `ports_links` with rel next while there is more
    page1 = conn.network.get(f"/ports?tags={job_tag}&limit=2").json()
    assert len(page1["ports"]) == 2
    nxt = [link["href"] for link in page1.get("ports_links", []) if link["rel"] == "next"]
    assert len(nxt) == 1 and "marker=" in nxt[0] and "limit=2" in nxt[0], page1.get("ports_links")
    marker = page1["ports"][-1]["id"]
    page2 = conn.network.get(f"/ports?tags={job_tag}&limit=2&marker={marker}").json()
    assert len(page2["ports"]) == 1
    assert not [link for link in page2.get("ports_links", []) if link["rel"] == "next"], page2
    assert sorted(p["id"] for p in page1["ports"] + page2["ports"]) == sorted(ids)


def test_neutron_network_delete_removes_its_dhcp_port(target, tracker, net):
    """Ports owned by network:dhcp go with their network: the janitor never deletes them itself."""
    conn = target.conn
    n, s = net
    dhcp = conn.network.create_port(network_id=n.id, device_owner="network:dhcp", device_id="dhcp-facts")
    tracker.add(PORT, dhcp.id)
    expect(conn.network.delete(f"/subnets/{s.id}", raise_exc=False), 204)
    expect(conn.network.delete(f"/networks/{n.id}", raise_exc=False), 204)
    assert not exists(conn, PORT, dhcp.id)


# ---------------------------------------------------------------------------------------------- Nova
def test_nova_server_lifecycle(target, tracker, net, job_tag):
    conn = target.conn
    n, _ = net
    pre = conn.network.create_port(network_id=n.id, name="facts-precreated")
    tracker.add(PORT, pre.id)
    server = conn.compute.create_server(name=f"{job_tag}-facts", image_id=target.image_id,
                                        flavor_id=target.flavor_id, networks=[{"port": pre.id}, {"uuid": n.id}])
    tracker.add(SERVER, server.id)
    # tags need vm_state active: 409 while building
    r = conn.compute.put(f"/servers/{server.id}/tags/{job_tag}", microversion="2.26", raise_exc=False)
    if r.status_code != 409:  # the server may already be active on a fast target
        assert r.status_code in (201, 204), r.text
    wait_server_status(conn, server.id, "ACTIVE")
    r = conn.compute.put(f"/servers/{server.id}/tags/{job_tag}", microversion="2.26", raise_exc=False)
    assert r.status_code in (201, 204), f"{r.status_code} {r.text}"
    # server-side tag filter (2.26)
    found = conn.compute.get(f"/servers?tags={job_tag}", microversion="2.26").json()["servers"]
    assert [s["id"] for s in found] == [server.id], found
    assert conn.compute.get(f"/servers?tags=nope-{job_tag}", microversion="2.26").json()["servers"] == []
    shown = conn.compute.get(f"/servers/{server.id}", microversion="2.26").json()["server"]
    assert shown["tags"] == [job_tag] and shown["locked"] is False, shown
    ports = {p.id: p for p in conn.network.ports(device_id=server.id)}
    assert pre.id in ports and len(ports) == 2, ports
    nova_port = next(p for pid, p in ports.items() if pid != pre.id)
    assert nova_port.device_owner.startswith("compute:"), nova_port.device_owner
    # a member may not delete the port Nova created for the server
    expect(conn.network.delete(f"/ports/{nova_port.id}", raise_exc=False), 403, "PolicyNotAuthorized")

    # locked: 409 conflictingRequest "... is locked"; `locked` shows in the server (2.9+)
    conn.compute.post(f"/servers/{server.id}/action", json={"lock": None})
    assert conn.compute.get(f"/servers/{server.id}", microversion="2.9").json()["server"]["locked"] is True
    r = conn.compute.delete(f"/servers/{server.id}", raise_exc=False)
    assert r.status_code == 409, r.text
    assert "is locked" in nova_cinder_error(r, "conflictingRequest", 409)
    conn.compute.post(f"/servers/{server.id}/action", json={"unlock": None})

    r = conn.compute.delete(f"/servers/{server.id}", raise_exc=False)
    assert r.status_code == 204, r.text
    seen = []
    t0 = time.monotonic()

    def gone():
        r = conn.compute.get(f"/servers/{server.id}", raise_exc=False)
        if r.status_code == 404:
            nova_cinder_error(r, "itemNotFound", 404)
            return True
        s = r.json()["server"]
        seen.append((s["status"], s.get("OS-EXT-STS:task_state")))
        return False

    wait_until(f"server {server.id} 404", gone, timeout=60, interval=0.1)
    print(f"server delete: {time.monotonic() - t0:.2f}s to 404; states seen: {sorted(set(seen))}")
    assert all(st in ("ACTIVE", "DELETED") for st, _ in seen), seen
    # Nova deletes the port it created; it only unbinds the pre-created one
    wait_until("Nova's port gone", lambda: not exists(conn, PORT, nova_port.id), timeout=30, interval=0.1)
    kept = conn.network.get_port(pre.id)
    assert kept.device_id == "" and kept.device_owner == "", (kept.device_id, kept.device_owner)
    r = conn.compute.delete(f"/servers/{server.id}", raise_exc=False)
    assert r.status_code == 404 and "could not be found" in nova_cinder_error(r, "itemNotFound", 404)


def test_nova_keypair_and_server_group(target, tracker, job_tag):
    from topology import ssh_public_key
    from helpers import KEYPAIR, SERVER_GROUP
    conn = target.conn
    kp = conn.compute.create_keypair(name=f"{job_tag}-facts-key", public_key=ssh_public_key())
    tracker.add(KEYPAIR, kp.name)
    g = conn.compute.create_server_group(name=f"{job_tag}-facts-group", policy="affinity")
    tracker.add(SERVER_GROUP, g.id)
    names = [k["keypair"]["name"] for k in conn.compute.get("/os-keypairs").json()["keypairs"]]
    assert kp.name in names
    groups = conn.compute.get("/os-server-groups", microversion="2.64").json()["server_groups"]
    assert any(x["id"] == g.id and x["policy"] == "affinity" for x in groups), groups
    assert conn.compute.delete(f"/os-keypairs/{kp.name}", raise_exc=False).status_code == 202
    assert conn.compute.delete(f"/os-server-groups/{g.id}", raise_exc=False).status_code == 204
    r = conn.compute.delete(f"/os-keypairs/{kp.name}", raise_exc=False)
    assert r.status_code == 404, r.text
    nova_cinder_error(r, "itemNotFound", 404)
    r = conn.compute.delete(f"/os-server-groups/{g.id}", raise_exc=False)
    assert r.status_code == 404, r.text
    nova_cinder_error(r, "itemNotFound", 404)


# ---------------------------------------------------------------------------------------------- Cinder
def test_cinder_in_use_and_async_delete(target, tracker, net, job_tag):
    if not target.has_block_storage:
        pytest.skip("no block-storage endpoint in this target's catalog")
    conn = target.conn
    bs = conn.block_storage
    n, _ = net
    vol = bs.create_volume(name=f"{job_tag}-facts", size=1, metadata={"ci-job": job_tag})
    tracker.add(VOLUME, vol.id)
    server = conn.compute.create_server(name=f"{job_tag}-facts-vol", image_id=target.image_id,
                                        flavor_id=target.flavor_id, networks=[{"uuid": n.id}])
    tracker.add(SERVER, server.id)
    wait_volume_status(conn, vol.id, "available")
    found = bs.get(f'/volumes/detail?metadata={json.dumps({"ci-job": job_tag})}').json()["volumes"]
    assert [v["id"] for v in found] == [vol.id], found
    wait_server_status(conn, server.id, "ACTIVE")
    conn.compute.create_volume_attachment(server, volume=vol.id)
    v = wait_volume_status(conn, vol.id, "in-use")
    assert [a["server_id"] for a in v.attachments] == [server.id], v.attachments

    r = bs.delete(f"/volumes/{vol.id}", raise_exc=False)
    assert r.status_code == 400, r.text
    assert nova_cinder_error(r, "badRequest", 400).startswith("Invalid volume: ")
    r = bs.post("/snapshots", json={"snapshot": {"volume_id": vol.id}}, raise_exc=False)
    assert r.status_code == 400 and "in-use" in nova_cinder_error(r, "badRequest", 400), r.text

    # deleting the server detaches the volume: no detach call needed
    t0 = time.monotonic()
    conn.compute.delete_server(server.id)
    wait_until("server gone", lambda: not exists(conn, SERVER, server.id), timeout=60, interval=0.2)
    wait_volume_status(conn, vol.id, "available", timeout=60)
    print(f"volume available {time.monotonic() - t0:.2f}s after the server delete")
    assert bs.get_volume(vol.id).attachments == []

    snap = bs.create_snapshot(volume_id=vol.id, name=f"{job_tag}-facts", metadata={"ci-job": job_tag})
    tracker.add(VOLUME_SNAPSHOT, snap.id)
    wait_until("snapshot available", lambda: bs.get_snapshot(snap.id).status == "available", timeout=60)
    r = bs.delete(f"/volumes/{vol.id}", raise_exc=False)
    assert r.status_code == 400 and "snapshots" in nova_cinder_error(r, "badRequest", 400), r.text

    for path, key in ((f"/snapshots/{snap.id}", "snapshot"), (f"/volumes/{vol.id}", "volume")):
        r = bs.delete(path, raise_exc=False)
        assert r.status_code == 202, f"DELETE {path}: {r.status_code} {r.text}"
        states = []

        def gone():
            r = bs.get(path, raise_exc=False)
            if r.status_code == 404:
                nova_cinder_error(r, "itemNotFound", 404)
                return True
            states.append(r.json()[key]["status"])
            return False

        wait_until(f"{path} 404", gone, timeout=60, interval=0.05)
        assert set(states) <= {"deleting", "available"}, states
        print(f"{key} delete: states seen {sorted(set(states))}")
