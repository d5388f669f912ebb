"""Helpers for cloud-janitor's end-to-end tests: waiting, existence checks, the cleanup tracker, the
janitor config and invocation, and the Prometheus text parser.

The CI-like topology itself lives in `topology.py`; fixtures that tie these together in `conftest.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from openstack import exceptions as os_exc

REPO = Path(__file__).resolve().parents[2]

# Every kind the janitor knows for OpenStack, with its metrics/report name (src/model.rs Kind::as_str).
SERVER = "server"
FLOATING_IP = "floating_ip"
PORT = "port"
ROUTER_INTERFACE = "router_interface"
ROUTER = "router"
SUBNET = "subnet"
NETWORK = "network"
SECURITY_GROUP = "security_group"
VOLUME = "volume"
VOLUME_SNAPSHOT = "volume_snapshot"
KEYPAIR = "keypair"
SERVER_GROUP = "server_group"
LOAD_BALANCER = "load_balancer"


# Keypairs and server groups have no tags in Nova, so a tags-only selection never picks them: the tests
# expect them left alone (JANITOR_E2E_TAGLESS_BY_NAME=0, the default). With =1 they expect the janitor to
# select them when their name starts with one of `tags_any` (CI jobs name them after the job).
TAGLESS_KINDS_SELECTED_BY_NAME = os.environ.get("JANITOR_E2E_TAGLESS_BY_NAME", "0") == "1"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ waiting
class Timeout(AssertionError):
    pass


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Polls `probe` until it returns a truthy value; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def wait_status(what: str, get: Callable[[], Any], want: str, failed: tuple[str, ...], timeout: float = 120.0):
    """Polls `get()` until its `status` is `want`; fails at once on a status in `failed`."""
    def probe():
        r = get()
        if r.status in failed and r.status != want:
            raise AssertionError(f"{what} went to {r.status}: {getattr(r, 'fault', None) or ''}")
        return r if r.status == want else None

    return wait_until(f"{what} {want}", probe, timeout)


def wait_server_status(conn, server_id: str, want: str = "ACTIVE", timeout: float = 120.0):
    return wait_status(f"server {server_id}", lambda: conn.compute.get_server(server_id), want, ("ERROR",), timeout)


def wait_volume_status(conn, volume_id: str, want: str, timeout: float = 120.0):
    return wait_status(f"volume {volume_id}", lambda: conn.block_storage.get_volume(volume_id), want,
                       ("error", "error_deleting"), timeout)


def wait_snapshot_status(conn, snapshot_id: str, want: str, timeout: float = 120.0):
    return wait_status(f"snapshot {snapshot_id}", lambda: conn.block_storage.get_snapshot(snapshot_id), want,
                       ("error",), timeout)


# --------------------------------------------------------------------------------- existence
def get_resource(conn, kind: str, rid: str):
    """The resource as the API shows it now, or None after a 404. `rid` of a keypair is its name."""
    # Looked up lazily: a proxy of a service missing from the catalog (Octavia on the real
    # OpenStack CI brings up) raises as soon as one of its methods is named.
    getter = {
        SERVER: lambda: conn.compute.get_server,
        FLOATING_IP: lambda: conn.network.get_ip,
        PORT: lambda: conn.network.get_port,
        ROUTER_INTERFACE: lambda: conn.network.get_port,  # a router interface is its port
        ROUTER: lambda: conn.network.get_router,
        SUBNET: lambda: conn.network.get_subnet,
        NETWORK: lambda: conn.network.get_network,
        SECURITY_GROUP: lambda: conn.network.get_security_group,
        VOLUME: lambda: conn.block_storage.get_volume,
        VOLUME_SNAPSHOT: lambda: conn.block_storage.get_snapshot,
        KEYPAIR: lambda: conn.compute.get_keypair,
        SERVER_GROUP: lambda: conn.compute.get_server_group,
        LOAD_BALANCER: lambda: conn.load_balancer.get_load_balancer,
    }[kind]()
    try:
        return getter(rid)
    except os_exc.NotFoundException:
        return None


def exists(conn, kind: str, rid: str) -> bool:
    r = get_resource(conn, kind, rid)
    if r is None:
        return False
    # Nova keeps answering for a moment with status DELETED on some versions; that is gone too
    return not (kind == SERVER and (r.status or "").upper() == "DELETED")


def fingerprint(conn, kind: str, rid: str) -> dict | None:
    """What must not change on a resource the janitor has to leave alone. Neutron's revision_number
    counts every update (tags, fixed IPs, rules), so it alone proves "untouched"; Nova and Cinder
    resources are compared on their visible state."""
    r = get_resource(conn, kind, rid)
    if r is None:
        return None
    if kind in (PORT, NETWORK, SUBNET, ROUTER, SECURITY_GROUP, FLOATING_IP):
        fp = {"name": r.name, "revision_number": r.revision_number, "tags": sorted(r.tags or [])}
        if kind == PORT:
            fp["device_id"] = r.device_id
            fp["security_group_ids"] = sorted(r.security_group_ids or [])
        if kind == SECURITY_GROUP:
            fp["rules"] = sorted(rule["id"] for rule in (r.security_group_rules or []))
        return fp
    if kind == SERVER:
        return {"name": r.name, "status": r.status, "tags": sorted(r.tags or []), "locked": r.is_locked}
    if kind in (VOLUME, VOLUME_SNAPSHOT):
        return {"name": r.name, "status": r.status, "metadata": dict(r.metadata or {})}
    return {"name": r.name}


# --------------------------------------------------------------------------------- cleanup tracker
# Delete order of the safety-net cleanup: dependents first, as the janitor does (DESIGN.md).
CLEANUP_ORDER = [LOAD_BALANCER, SERVER, FLOATING_IP, ROUTER, PORT, VOLUME_SNAPSHOT, VOLUME, SUBNET, NETWORK,
                 SECURITY_GROUP, KEYPAIR, SERVER_GROUP]


@dataclasses.dataclass
class Tracker:
    """Everything a test created, so the test can delete it afterwards whatever happened (the janitor
    failing, an assertion, a timeout). Deletes go through `conn` (the owner, needed for keypairs) and
    fall back to `admin` (which may delete ports Nova made, other projects' resources, ...)."""

    conn: Any
    admin: Any | None = None
    created: dict = dataclasses.field(default_factory=lambda: {k: [] for k in CLEANUP_ORDER})
    # (conn, kind, id, tag): tags the test put on resources it did not create (the external network,
    # the shared network, the default security group), removed again at cleanup
    foreign_tags: list = dataclasses.field(default_factory=list)
    # extra connections that own resources (the `other` project)
    owners: dict = dataclasses.field(default_factory=dict)

    def add(self, kind: str, rid: str, owner: str | None = None) -> str:
        self.created[kind].append((rid, owner))
        return rid

    def _conns(self, owner: str | None):
        first = self.owners.get(owner, self.conn) if owner else self.conn
        return [c for c in (first, self.admin) if c is not None]

    def _try(self, what: str, fn, *conns) -> None:
        errors = []
        for c in conns:
            try:
                fn(c)
                return
            except os_exc.NotFoundException:
                return
            except Exception as e:  # noqa: BLE001 - best effort, report and go on
                errors.append(f"{type(e).__name__}: {e}")
        if errors:
            log(f"cleanup: {what}: {'; '.join(errors)}")

    def cleanup(self, deadline_s: float = 240.0) -> None:
        t0 = time.monotonic()
        left = lambda: max(5.0, deadline_s - (time.monotonic() - t0))  # noqa: E731
        for conn, kind, rid, tag in self.foreign_tags:
            self._try(f"untag {kind} {rid}", lambda c: c.network.remove_tag(get_resource(c, kind, rid), tag), conn)

        # Load balancers first, with everything under them (cascade); their VIP ports go with them.
        def delete_load_balancer(c, lid):
            # Octavia answers 409 while a load balancer is PENDING_*: wait that out.
            def attempt():
                try:
                    c.load_balancer.delete_load_balancer(lid, cascade=True, ignore_missing=True)
                    return True
                except os_exc.ConflictException:
                    return False
            wait_until(f"load balancer {lid} deletable", attempt, min(120, left()), interval=0.5)

        for lid, owner in self.created[LOAD_BALANCER]:
            self._try(f"delete load balancer {lid}", lambda c: delete_load_balancer(c, lid), *self._conns(owner))
        for lid, owner in self.created[LOAD_BALANCER]:
            try:
                wait_until(f"load balancer {lid} gone", lambda: not exists(self.conn, LOAD_BALANCER, lid),
                           min(120, left()), interval=0.2)
            except Exception as e:  # noqa: BLE001
                log(f"cleanup: {e}")

        servers = self.created[SERVER]
        for sid, owner in servers:
            self._try(f"unlock server {sid}", lambda c: c.compute.unlock_server(sid), *self._conns(owner))
            self._try(f"delete server {sid}", lambda c: c.compute.delete_server(sid, ignore_missing=True), *self._conns(owner))
        for sid, owner in servers:
            try:
                wait_until(f"server {sid} gone", lambda: not exists(self.conn if not owner else self.owners.get(owner, self.conn), SERVER, sid), min(120, left()))
            except Exception as e:  # noqa: BLE001
                log(f"cleanup: {e}")
        for fid, owner in self.created[FLOATING_IP]:
            self._try(f"delete floating ip {fid}", lambda c: c.network.delete_ip(fid, ignore_missing=True), *self._conns(owner))
        for rid, owner in self.created[ROUTER]:
            def clear_router(c, rid=rid):
                router = c.network.get_router(rid)
                if router.external_gateway_info:
                    # clearing the gateway is `PUT /routers/{id}` with external_gateway_info {} (the
                    # SDK's remove_gateway_from_router calls a `remove_gateway_router` action instead)
                    c.network.put(f"/routers/{rid}", json={"router": {"external_gateway_info": {}}})
                for p in c.network.ports(device_id=rid):
                    if (p.device_owner or "").startswith("network:router_interface"):
                        for ip in p.fixed_ips:
                            c.network.remove_interface_from_router(router, subnet=ip["subnet_id"])
                c.network.delete_router(rid, ignore_missing=True)
            self._try(f"delete router {rid}", clear_router, *self._conns(owner))
        for pid, owner in self.created[PORT]:
            self._try(f"delete port {pid}", lambda c: c.network.delete_port(pid, ignore_missing=True), *self._conns(owner))
        if any(self.created[k] for k in (VOLUME, VOLUME_SNAPSHOT)):
            for snap_id, owner in self.created[VOLUME_SNAPSHOT]:
                self._try(f"delete snapshot {snap_id}", lambda c: c.block_storage.delete_snapshot(snap_id, ignore_missing=True), *self._conns(owner))
            for snap_id, owner in self.created[VOLUME_SNAPSHOT]:
                try:
                    wait_until(f"snapshot {snap_id} gone", lambda: not exists(self.conn, VOLUME_SNAPSHOT, snap_id), min(60, left()))
                except Exception as e:  # noqa: BLE001
                    log(f"cleanup: {e}")
            for vid, owner in self.created[VOLUME]:
                def delete_volume(c, vid=vid):
                    v = c.block_storage.get_volume(vid)
                    for att in v.attachments or []:
                        try:
                            c.compute.delete_volume_attachment(att["server_id"], vid)
                        except Exception:  # noqa: BLE001 - the server may be gone already
                            pass
                    if v.status == "in-use":
                        wait_volume_status(c, vid, "available", min(60, left()))
                    c.block_storage.delete_volume(vid, ignore_missing=True)
                self._try(f"delete volume {vid}", delete_volume, *self._conns(owner))
            for vid, owner in self.created[VOLUME]:
                try:
                    wait_until(f"volume {vid} gone", lambda: not exists(self.conn, VOLUME, vid), min(60, left()))
                except Exception as e:  # noqa: BLE001
                    log(f"cleanup: {e}")
        for nid, owner in self.created[NETWORK]:
            # ports left on the network (Nova's, a fake DHCP port, one the test lost track of)
            def delete_network(c, nid=nid):
                for p in c.network.ports(network_id=nid):
                    if (p.device_owner or "").startswith("network:router_interface"):
                        c.network.remove_interface_from_router(p.device_id, port_id=p.id)
                    else:
                        c.network.delete_port(p.id, ignore_missing=True)
                c.network.delete_network(nid, ignore_missing=True)
            self._try(f"delete network {nid}", delete_network, *reversed(self._conns(owner)))
        for sgid, owner in self.created[SECURITY_GROUP]:
            self._try(f"delete security group {sgid}", lambda c: c.network.delete_security_group(sgid, ignore_missing=True), *self._conns(owner))
        for name, owner in self.created[KEYPAIR]:
            self._try(f"delete keypair {name}", lambda c: c.compute.delete_keypair(name, ignore_missing=True), *self._conns(owner))
        for gid, owner in self.created[SERVER_GROUP]:
            self._try(f"delete server group {gid}", lambda c: c.compute.delete_server_group(gid, ignore_missing=True), *self._conns(owner))
        log(f"cleanup done in {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------------- janitor
def janitor_bin() -> Path:
    p = Path(os.environ.get("JANITOR_BIN", REPO / "target" / "debug" / "cloud-janitor"))
    return p if p.is_absolute() else (REPO / p)


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def write_janitor_config(path: Path, *, cloud: str, clouds_yaml: Path, tag: str,
                         cloud_label: str = "e2e") -> Path:
    """The one place that knows the janitor's config format. Selects by the job tag: Neutron and Nova
    resources by their tags, Cinder volumes and snapshots by metadata key or value equal to the tag,
    keypairs and server groups (which have no tags) by their names starting with the tag."""
    path.write_text(f"""\
# Written by tests/e2e for one test run.
schedule = "*/30 * * * * *"
listen = "127.0.0.1:0"
pass_timeout = "5m"

[[clouds]]
name = {toml_str(cloud_label)}
type = "openstack"
cloud = {toml_str(cloud)}
clouds_yaml = {toml_str(str(clouds_yaml))}

[clouds.select]
tags_any = [{toml_str(tag)}]
""")
    return path


@dataclasses.dataclass
class JanitorRun:
    args: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    metrics_text: str | None = None

    def describe(self) -> str:
        return (f"$ {' '.join(map(str, self.args))}\nexit {self.returncode} after {self.seconds:.1f}s\n"
                f"--- stdout\n{self.stdout}\n--- stderr (last 8000 chars)\n{self.stderr[-8000:]}")


class LiveRun:
    """A janitor process whose output is read as it comes, so a test can act on the cloud when the
    janitor reaches a point (`wait_for` a log line)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(proc.stdout, self.stdout), daemon=True),
                         threading.Thread(target=self._read, args=(proc.stderr, self.stderr), daemon=True)]
        for r in self._readers:
            r.start()

    def _read(self, stream, sink):
        for line in stream:
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        stream.close()

    def wait_for(self, pattern: str, timeout: float) -> str | None:
        """The first stderr line matching the regular expression `pattern`, or None after `timeout`
        seconds or when the process ended without printing one."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.stderr[seen:]:
                    if rx.search(line):
                        return line
                seen = len(self.stderr)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    return None
                self._cond.wait(min(left, 0.2))

    def finish(self, timeout: float) -> None:
        self.proc.wait(timeout)
        for r in self._readers:
            r.join(10)


def run_janitor(args: list, *, timeout: float = 600.0, env: dict | None = None,
                popen_hook: Callable[[LiveRun], None] | None = None) -> JanitorRun:
    """Runs the janitor binary with `args`, capturing its output; never hangs longer than `timeout`
    (the process group is killed and the test fails with what was captured). `popen_hook` is called
    right after the process starts, for tests that act on the cloud while the pass runs."""
    cmd = [str(janitor_bin()), *map(str, args)]
    full_env = {**os.environ, "RUST_BACKTRACE": "1", "NO_COLOR": "1", **(env or {})}
    full_env.setdefault("RUST_LOG", "info")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, start_new_session=True, cwd=REPO)
    live = LiveRun(proc)
    try:
        if popen_hook:
            popen_hook(live)
        live.finish(max(1.0, timeout - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        live.finish(30)
        raise AssertionError(f"janitor did not finish within {timeout}s: {' '.join(cmd)}\n--- stdout\n"
                             f"{''.join(live.stdout)}\n--- stderr\n{''.join(live.stderr)[-8000:]}")
    except BaseException:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            live.finish(30)
        raise
    run = JanitorRun(cmd, proc.returncode, "".join(live.stdout), "".join(live.stderr), time.monotonic() - t0)
    log(f"janitor {args[0]}: exit {run.returncode} in {run.seconds:.1f}s")
    return run


# --------------------------------------------------------------------------------- metrics
_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_prometheus(text: str) -> list[tuple[str, dict, float]]:
    """Samples of a Prometheus text exposition: (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError(f"not a Prometheus sample line: {line!r}")
        labels = {}
        raw = m.group("labels") or ""
        pos = 0
        while pos < len(raw):
            lm = _LABEL.match(raw, pos)
            if not lm:
                raise AssertionError(f"bad labels in {line!r}")
            labels[lm.group(1)] = bytes(lm.group(2), "utf-8").decode("unicode_escape")
            pos = lm.end()
        samples.append((m.group("name"), labels, float(m.group("value"))))
    return samples


def metric(samples, name: str, **labels) -> float | None:
    """The one sample of `name` whose labels include `labels`; the sum if several match; None if none."""
    values = [v for n, ls, v in samples if n == name and all(ls.get(k) == want for k, want in labels.items())]
    return sum(values) if values else None


def metric_series(samples, name: str, **labels) -> list[tuple[dict, float]]:
    return [(ls, v) for n, ls, v in samples if n == name and all(ls.get(k) == want for k, want in labels.items())]


# --------------------------------------------------------------------------------- plan JSON
def json_strings(doc: Any) -> set[str]:
    """Every string anywhere in a JSON document (ids are found without knowing the layout)."""
    out: set[str] = set()
    stack = [doc]
    while stack:
        d = stack.pop()
        if isinstance(d, dict):
            stack.extend(d.keys())
            stack.extend(d.values())
        elif isinstance(d, list):
            stack.extend(d)
        elif isinstance(d, str):
            out.add(d)
    return out


def flatten(ids_by_kind: dict) -> Iterable[tuple[str, str]]:
    for kind, ids in ids_by_kind.items():
        for rid in ids:
            yield kind, rid
